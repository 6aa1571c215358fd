/* test-abort.c -- stopping an evaluation part-way: asked inside the layers, nothing run after the stop, the session as if the batch never came. */
#include "config.h"

#include <pthread.h>
#include <string.h>

#include "natter/llm.h"
#include "llm/model.h"
#include "llm/pool.h"
#include "test.h"

enum { N_TOK = 48, N_FIRST = 20, N_CTX = 128, N_BATCH = 64 };

/* Says stop at its FIRE-th call (0: never); counts the pool's tasks run
 * up to each call; notes calls on another thread than the evaluating one. */
struct counter {
	int calls, fire;
	pthread_t owner;
	int foreign;
};

static int
counter_fn(void *arg)
{
	struct counter *k = arg;
	if (!pthread_equal(pthread_self(), k->owner))
		k->foreign++;
	return ++k->calls == k->fire;
}

static void
make_tokens(int32_t *t, int n, int n_vocab)
{
	uint64_t s = 777;
	for (int i = 0; i < n; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		t[i] = 3 + (int32_t)((s >> 33) % (uint64_t)(n_vocab - 3));
	}
}

/*
 * For the model at PATH on THREADS threads: the tokens evaluated without a
 * stop (first N_FIRST, then the rest) give the reference logits of the last
 * one.  Then, for several N, the second batch is stopped at the callback's
 * N-th call: llm_eval returns LLM_ESTOPPED, the callback is not asked
 * again, n_past stays at N_FIRST, and evaluating the batch again gives the
 * reference logits exactly.  On one thread the pool's task count shows
 * where the stop came: the callback is asked before every task, so N - 1
 * tasks at most have run, far fewer than one layer has.
 */
static void
check_model(const char *path, int threads)
{
	char err[512];
	struct llm_model *m = NULL;
	struct llm_ctx *c;
	struct counter k = { 0, 0, pthread_self(), 0 };
	int32_t tok[N_TOK];
	float *ref, *lg;
	const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	int polls, rc, n_layer, V;
	unsigned long tasks, t0, jobs, j0;

	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return;
	}
	n_layer = llm_model_hparams(m)->n_layer;
	V = llm_model_hparams(m)->n_vocab;
	make_tokens(tok, N_TOK, V);
	ref = malloc((size_t)V * sizeof(float));
	lg = malloc((size_t)V * sizeof(float));
	c = llm_ctx_new(m, N_CTX, N_BATCH, threads, err, sizeof(err));
	CHECK(c && ref && lg, "%s: %s", name, err);
	if (!c || !ref || !lg)
		goto out;
	llm_ctx_set_abort(c, counter_fn, &k);

	/* The reference, counting the callback's calls and the tasks. */
	rc = llm_eval(c, tok, N_FIRST, NULL, 0, err, sizeof(err));
	CHECK(rc == 0, "%s: %s", name, err);
	k.calls = 0;
	t0 = pool_tasks_run(c->pool);
	j0 = pool_jobs(c->pool);
	rc = llm_eval(c, tok + N_FIRST, N_TOK - N_FIRST, ref, 0, err, sizeof(err));
	tasks = pool_tasks_run(c->pool) - t0;
	jobs = pool_jobs(c->pool) - j0;
	polls = k.calls;
	CHECK(rc == 0 && llm_ctx_n_past(c) == N_TOK, "%s: %s (n_past %d)", name, err, llm_ctx_n_past(c));
	/* Between layers alone it would be n_layer + 1 calls.  Each job
	 * asks at least once, however its tasks fall between the threads
	 * (the workers may take all of a short job's). */
	CHECK(polls > 4 * (n_layer + 1), "%s, %d threads: the callback was asked %d times for %d layers", name,
	    pool_size(c->pool), polls, n_layer);
	CHECK((unsigned long)polls >= jobs, "%s, %d threads: the callback was asked %d times in %lu jobs", name,
	    pool_size(c->pool), polls, jobs);
	if (pool_size(c->pool) == 1)
		CHECK((unsigned long)polls > tasks, "%s: asked %d times for %lu tasks (once before each, at least)",
		    name, polls, tasks);

	int fires[] = { 2, 3, polls / 3, polls / 2, polls - 1, polls };
	for (size_t i = 0; i < sizeof(fires) / sizeof(fires[0]); i++) {
		int n = fires[i];
		if (n < 1)
			continue;
		llm_ctx_truncate(c, N_FIRST);
		k.calls = 0;
		k.fire = n;
		t0 = pool_tasks_run(c->pool);
		rc = llm_eval(c, tok + N_FIRST, N_TOK - N_FIRST, lg, 0, err, sizeof(err));
		unsigned long ran = pool_tasks_run(c->pool) - t0;
		if (pool_size(c->pool) > 1 && rc == 0 && k.calls < n) {
			/* Several threads: the owner asks before its own tasks
			 * only, which may be fewer this time. */
			CHECK(llm_ctx_n_past(c) == N_TOK, "%s: not stopped, n_past %d", name, llm_ctx_n_past(c));
		} else {
			CHECK(rc == LLM_ESTOPPED && k.calls == n, "%s, %d threads, stop at call %d of %d: rc %d, asked %d "
			    "times", name, pool_size(c->pool), n, polls, rc, k.calls);
			CHECK(llm_ctx_n_past(c) == N_FIRST, "%s, stop at call %d: n_past %d, not %d", name, n,
			    llm_ctx_n_past(c), N_FIRST);
			CHECK(ran < tasks, "%s, stop at call %d: %lu of %lu tasks ran", name, n, ran, tasks);
			if (pool_size(c->pool) == 1)
				CHECK(ran <= (unsigned long)n - 1, "%s, one thread, stop at call %d: %lu tasks ran", name,
				    n, ran);
		}
		if (n == 3 && pool_size(c->pool) == 1)
			printf("%s: stopped at the 3rd of %d calls after %lu of %lu tasks (a layer has %lu on average)\n",
			    name, polls, ran, tasks, tasks / (n_layer + 1));
		/* The session goes on as if the stopped batch never came. */
		k.fire = 0;
		llm_ctx_truncate(c, N_FIRST);   /* when not stopped */
		rc = llm_eval(c, tok + N_FIRST, N_TOK - N_FIRST, lg, 0, err, sizeof(err));
		CHECK(rc == 0 && llm_ctx_n_past(c) == N_TOK, "%s after a stop at call %d: %s", name, n, err);
		CHECK(memcmp(lg, ref, (size_t)V * sizeof(float)) == 0,
		    "%s, %d threads: after a stop at call %d the logits differ from an evaluation never stopped",
		    name, pool_size(c->pool), n);
	}

	/* Stopped in the first batch: nothing kept, and again as fresh. */
	llm_ctx_truncate(c, 0);
	k.calls = 0;
	k.fire = 2;
	rc = llm_eval(c, tok, N_TOK, lg, 0, err, sizeof(err));
	CHECK(rc == LLM_ESTOPPED && llm_ctx_n_past(c) == 0, "%s: first batch stopped: rc %d, n_past %d", name, rc,
	    llm_ctx_n_past(c));
	k.fire = 0;
	rc = llm_eval(c, tok, N_TOK, lg, 0, err, sizeof(err));
	/* One batch of 48 is not two batches of 20 and 28: compare with a
	 * fresh session that reads it the same way. */
	{
		struct llm_ctx *f = llm_ctx_new(m, N_CTX, N_BATCH, threads, err, sizeof(err));
		float *fl = malloc((size_t)V * sizeof(float));
		int frc = f && fl ? llm_eval(f, tok, N_TOK, fl, 0, err, sizeof(err)) : -1;
		CHECK(rc == 0 && frc == 0 && memcmp(lg, fl, (size_t)V * sizeof(float)) == 0,
		    "%s: after a stopped first batch the logits differ from a fresh session's", name);
		free(fl);
		llm_ctx_free(f);
	}
	CHECK(k.foreign == 0, "%s: the callback was called %d times on another thread", name, k.foreign);
	printf("%s on %d thread%s: the callback asked %d times per batch of %d (%d layers), %lu jobs, %lu tasks; "
	    "stops honoured, logits unchanged after them\n", name, pool_size(c->pool),
	    pool_size(c->pool) > 1 ? "s" : "", polls, N_TOK - N_FIRST, n_layer, jobs, tasks);
out:
	free(ref);
	free(lg);
	llm_ctx_free(c);
	llm_model_free(m);
}

int
main(void)
{
	/* f32 (float GEMM), q4_k_m (int8 GEMM, activations quantized in
	 * tasks) and gemma2's sliding-window rings. */
	static const char *models[] = { "tiny-llama-f32.gguf", "tiny-llama-q4_k_m.gguf", "tiny-gemma2-f32.gguf" };
	const char *fx = test_fixtures();
	char path[4096];

	if (!fx) {
		SKIP("no fixtures folder");
		return test_done("test-abort");
	}
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
		snprintf(path, sizeof(path), "%s/models/%s", fx, models[i]);
		check_model(path, 1);
		check_model(path, 2);
	}
	return test_done("test-abort");
}
