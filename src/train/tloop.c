/* tloop.c -- the training loop: SFT and DPO steps over a training model, gradient accumulation, checkpoints. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "natter/gguf-write.h"
#include "natter/gguf.h"
#include "natter/train.h"
#include "train/splitmix.h"

struct tloop {
	struct tmodel *tm;
	const struct tdata_set *s;
	struct tloop_cfg cfg;
	char *config;                       /* owned copy of cfg.config */
	const volatile sig_atomic_t *stop;
	int64_t done;                       /* optimizer steps taken */
	int32_t *target;                    /* (max_tokens) */
	uint8_t *mask;
	int *perm;                          /* (n) the order of epoch perm_epoch */
	int64_t perm_epoch;
	double *ref;                        /* DPO: (2 n) reference log-probabilities, chosen then rejected */
	float *gacc, *gc, *gr;              /* DPO: (n_params) the step's gradient, one chosen's, one rejected's */
};

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The example at position G of the stream of examples: epoch G / n in an order drawn
 * from the seed and the epoch (Fisher-Yates), so that any step can be found again. */
static const struct tdata_example *
example_at(struct tloop *l, int64_t g)
{
	const int n = l->s->n;
	int64_t epoch = g / n;

	if (epoch != l->perm_epoch) {
		uint64_t st = splitmix64(l->cfg.seed ^ splitmix64((uint64_t)epoch + 1));
		for (int i = 0; i < n; i++)
			l->perm[i] = i;
		for (int i = n - 1; i > 0; i--) {
			int j;
			st = splitmix64(st);
			j = (int)(st % (uint64_t)(i + 1));
			int t = l->perm[i];
			l->perm[i] = l->perm[j];
			l->perm[j] = t;
		}
		l->perm_epoch = epoch;
	}
	return &l->s->ex[l->perm[g % n]];
}

/* A forward and the loss of sequence Q (its scored tokens), with the gradient of the
 * summed NLL / NORM added when GRAD.  *NLL gets the summed NLL. */
static int
seq_pass(struct tloop *l, const struct tdata_seq *q, int train, uint64_t seed, int grad, double norm, double *nll,
	 char *err, size_t errlen)
{
	const int T = q->n - 1;

	for (int t = 0; t < T; t++) {
		l->target[t] = q->tok[t + 1];
		l->mask[t] = q->loss[t + 1];
	}
	if (tmodel_forward(l->tm, q->tok, T, train, seed, NULL, err, errlen) < 0)
		return -1;
	return tmodel_backward(l->tm, l->target, l->mask, norm, grad, nll, NULL, err, errlen);
}

static int
stopped(const struct tloop *l)
{
	return l->stop && *l->stop;
}

int
tloop_new(struct tmodel *tm, const struct tdata_set *s, const struct tloop_cfg *cfg, const volatile sig_atomic_t *stop,
	  struct tloop **out, char *err, size_t errlen)
{
	struct tloop *l;

	*out = NULL;
	if (s->n < 1) {
		snprintf(err, errlen, "no examples to train on");
		return -1;
	}
	if (cfg->batch < 1 || cfg->grad_accum < 1 || cfg->steps < 0 || !(cfg->beta > 0 || cfg->method != TDATA_DPO)) {
		snprintf(err, errlen, "training options out of range");
		return -1;
	}
	if ((int64_t)cfg->batch * cfg->grad_accum > TLOOP_MAX_STEP_EXAMPLES) {
		snprintf(err, errlen, "batch %d times grad_accum %d is more than %d examples a step", cfg->batch,
		    cfg->grad_accum, TLOOP_MAX_STEP_EXAMPLES);
		return -1;
	}
	if (!(l = calloc(1, sizeof(*l)))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	l->tm = tm;
	l->s = s;
	l->cfg = *cfg;
	l->stop = stop;
	l->perm_epoch = -1;
	l->config = strdup(cfg->config ? cfg->config : "");
	l->target = malloc((size_t)s->max_tokens * sizeof(*l->target));
	l->mask = malloc((size_t)s->max_tokens);
	l->perm = malloc((size_t)s->n * sizeof(*l->perm));
	if (!l->config || !l->target || !l->mask || !l->perm)
		goto nomem;
	l->cfg.config = l->config;
	if (cfg->method == TDATA_DPO) {
		size_t np = tmodel_n_params(tm);
		l->ref = malloc(2 * (size_t)s->n * sizeof(*l->ref));
		l->gacc = malloc(np * sizeof(float));
		l->gc = malloc(np * sizeof(float));
		l->gr = malloc(np * sizeof(float));
		if (!l->ref || !l->gacc || !l->gc || !l->gr)
			goto nomem;
		/* The reference: the model as it starts, without dropout, once per reply. */
		for (int i = 0; i < s->n; i++) {
			for (int k = 0; k < 2; k++) {
				double nll;
				if (stopped(l)) {
					tloop_free(l);
					return 1;
				}
				if (seq_pass(l, &s->ex[i].seq[k], 0, 0, 0, 1.0, &nll, err, errlen) < 0) {
					tloop_free(l);
					return -1;
				}
				l->ref[2 * i + k] = -nll;
			}
		}
	}
	*out = l;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	tloop_free(l);
	return -1;
}

void
tloop_free(struct tloop *l)
{
	if (!l)
		return;
	free(l->config);
	free(l->target);
	free(l->mask);
	free(l->perm);
	free(l->ref);
	free(l->gacc);
	free(l->gc);
	free(l->gr);
	free(l);
}

int64_t tloop_steps_done(const struct tloop *l) { return l->done; }

/* The dropout seed of sequence K (0 chosen / SFT, 1 rejected) of stream position G. */
static uint64_t
seq_seed(const struct tloop *l, int64_t g, int k)
{
	return splitmix64(l->cfg.seed ^ splitmix64(2 * (uint64_t)g + (uint64_t)k + 1));
}

/* One SFT step: the mean NLL per scored token over the step's examples.  Returns 0, 1
 * when stopped part way, -1. */
static int
step_sft(struct tloop *l, int64_t g0, int P, struct tloop_step *st, char *err, size_t errlen)
{
	double sum = 0, norm = 0;

	for (int j = 0; j < P; j++)
		norm += example_at(l, g0 + j)->seq[0].n_loss;
	tmodel_zero_grad(l->tm);
	for (int j = 0; j < P; j++) {
		const struct tdata_seq *q = &example_at(l, g0 + j)->seq[0];
		double nll;
		if (stopped(l))
			return 1;
		if (seq_pass(l, q, 1, seq_seed(l, g0 + j, 0), 1, norm, &nll, err, errlen) < 0)
			return -1;
		sum += nll;
		st->tokens += q->n - 1;
	}
	st->loss = sum / norm;
	return 0;
}

static double
softplus(double x)
{
	return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

/*
 * One DPO step.  Per pair, z = beta ((pi_c - ref_c) - (pi_r - ref_r)) with pi the summed
 * log-probability of the reply's tokens, and the loss -log sigmoid(z) = softplus(-z), whose
 * gradient is beta sigmoid(-z) (g_c - g_r) with g the gradient of a reply's summed NLL.
 * The weight is known only once both replies are scored, so each reply's gradient is
 * taken alone (two passes per pair, not four) and combined here.
 */
static int
step_dpo(struct tloop *l, int64_t g0, int P, struct tloop_step *st, char *err, size_t errlen)
{
	const size_t np = tmodel_n_params(l->tm);
	const double beta = l->cfg.beta;
	double loss = 0, margin = 0;
	int right = 0;

	memset(l->gacc, 0, np * sizeof(float));
	for (int j = 0; j < P; j++) {
		const int64_t g = g0 + j;
		const struct tdata_example *e = example_at(l, g);
		const int idx = (int)(e - l->s->ex);
		double nll_c, nll_r, z, w;

		if (stopped(l))
			return 1;
		tmodel_zero_grad(l->tm);
		if (seq_pass(l, &e->seq[0], 1, seq_seed(l, g, 0), 1, 1.0, &nll_c, err, errlen) < 0)
			return -1;
		tmodel_grad_get(l->tm, l->gc);
		if (stopped(l))
			return 1;
		tmodel_zero_grad(l->tm);
		if (seq_pass(l, &e->seq[1], 1, seq_seed(l, g, 1), 1, 1.0, &nll_r, err, errlen) < 0)
			return -1;
		tmodel_grad_get(l->tm, l->gr);
		st->tokens += e->seq[0].n - 1 + e->seq[1].n - 1;

		z = beta * ((-nll_c - l->ref[2 * idx]) - (-nll_r - l->ref[2 * idx + 1]));
		loss += softplus(-z);
		margin += z;
		right += z > 0;
		w = beta / (1.0 + exp(z)) / P;
		for (size_t i = 0; i < np; i++)
			l->gacc[i] += (float)(w * ((double)l->gc[i] - l->gr[i]));
	}
	tmodel_grad_set(l->tm, l->gacc);
	st->loss = loss / P;
	st->margin = margin / P;
	st->accuracy = (double)right / P;
	return 0;
}

int
tloop_run(struct tloop *l, int64_t until, tloop_step_fn cb, void *ctx, char *err, size_t errlen)
{
	const int P = l->cfg.batch * l->cfg.grad_accum;
	const int64_t end = until > 0 && until < l->cfg.steps ? until : l->cfg.steps;

	while (l->done < end) {
		struct tloop_step st = { 0 };
		const int64_t g0 = l->done * P;
		double t0 = now_s();
		int rc;

		st.step = l->done + 1;
		st.steps = l->cfg.steps;
		st.lr = adamw_sched_lr(&l->cfg.sched, l->done);
		rc = l->cfg.method == TDATA_DPO ? step_dpo(l, g0, P, &st, err, errlen) : step_sft(l, g0, P, &st, err, errlen);
		if (rc != 0)
			return rc;
		/* A step that overflowed would write NaN into every weight it updates. */
		if (!isfinite(st.loss)) {
			snprintf(err, errlen, "step %lld: the loss is not a finite number: training diverged (a lower "
			    "learning rate may help)", (long long)st.step);
			return -1;
		}
		/* The loss is a mean over the step's tokens (SFT) or pairs (DPO): nothing more to scale. */
		if (tmodel_adamw_step(l->tm, &l->cfg.adam, (float)st.lr, 1.0f) < 0) {
			snprintf(err, errlen, "step %lld left a LoRA weight that is not a finite number: training diverged "
			    "(a lower learning rate or weight decay may help)", (long long)st.step);
			return -1;
		}
		l->done++;
		st.seconds = now_s() - t0;
		if (cb && cb(ctx, &st))
			return 1;
	}
	return 0;
}

/* --- checkpoints --- */


/* The tensors of pair I: A, B, and the moments of each. */
enum { CK_A, CK_B, CK_A_M1, CK_A_M2, CK_B_M1, CK_B_M2, CK_COUNT };
static const char *const ck_suffix[CK_COUNT] = {
	".lora_a", ".lora_b", ".lora_a.adam_m1", ".lora_a.adam_m2", ".lora_b.adam_m1", ".lora_b.adam_m2",
};

/* Pair I's tensor K: its data and GGUF dims. */
static float *
ck_tensor(struct tmodel *tm, int i, int k, uint64_t ne[2])
{
	struct tlora *lo = tmodel_lora(tm, i);
	float *m1[2], *m2[2];
	int a = k == CK_A || k == CK_A_M1 || k == CK_A_M2;

	tmodel_adamw_moments(tm, i, m1, m2);
	ne[0] = a ? (uint64_t)tmodel_lora_n_in(tm, i) : (uint64_t)lo->rank;
	ne[1] = a ? (uint64_t)lo->rank : (uint64_t)tmodel_lora_n_out(tm, i);
	switch (k) {
	case CK_A: return lo->a;
	case CK_B: return lo->b;
	case CK_A_M1: return m1[0];
	case CK_A_M2: return m2[0];
	case CK_B_M1: return m1[1];
	default: return m2[1];
	}
}

int
tloop_save(const struct tloop *l, const char *path, char *err, size_t errlen)
{
	struct gguf_writer *w = gguf_writer_new(GGUF_WRITE_ALIGNMENT);
	struct tmodel *tm = l->tm;
	const uint64_t steps = (uint64_t)l->done, t = (uint64_t)tmodel_adamw_t(tm);
	int ok;

	if (!w) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	ok = gguf_w_str(w, "general.architecture", tmodel_arch(tm)) == 0 &&
	    gguf_w_str(w, "general.type", TLOOP_CKPT_TYPE) == 0 &&
	    gguf_w_f32(w, "adapter.lora.alpha", tmodel_alpha(tm)) == 0 &&
	    gguf_w_scalar(w, "natter.checkpoint.steps", GGUF_VT_UINT64, &steps) == 0 &&
	    gguf_w_scalar(w, "natter.checkpoint.adamw_t", GGUF_VT_UINT64, &t) == 0 &&
	    gguf_w_str(w, "natter.checkpoint.config", l->config) == 0;
	for (int i = 0; ok && i < tmodel_lora_count(tm); i++) {
		for (int k = 0; ok && k < CK_COUNT; k++) {
			char name[160];
			uint64_t ne[2];
			const float *data = ck_tensor(tm, i, k, ne);
			snprintf(name, sizeof(name), "%s%s", tmodel_lora_base(tm, i), ck_suffix[k]);
			ok = gguf_w_tensor(w, name, GGML_TYPE_F32, 2, ne, data, NULL, NULL) == 0;
		}
	}
	if (!ok) {
		snprintf(err, errlen, "%s: out of memory", path);
		gguf_writer_free(w);
		return -1;
	}
	ok = gguf_writer_write(w, path, err, errlen) == 0;
	gguf_writer_free(w);
	return ok ? 0 : -1;
}

/* ERR gets the first line in which the configs A (the checkpoint's) and B differ. */
static void
config_diff(const char *path, const char *a, const char *b, char *err, size_t errlen)
{
	while (*a || *b) {
		size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
		if (la != lb || memcmp(a, b, la) != 0) {
			snprintf(err, errlen, "%s was made with '%.*s', this run has '%.*s': resume with the options it was made "
			    "with", path, (int)(la > 80 ? 80 : la), a, (int)(lb > 80 ? 80 : lb), b);
			return;
		}
		a += la + (a[la] == '\n');
		b += lb + (b[lb] == '\n');
	}
	snprintf(err, errlen, "%s: its configuration differs", path);
}

int
tloop_resume(struct tloop *l, const char *path, char *err, size_t errlen)
{
	struct tmodel *tm = l->tm;
	struct gguf_file *f = NULL;
	char *type = NULL, *arch = NULL, *config = NULL;
	uint64_t steps, t;
	int rc = -1;

	if (gguf_open(path, &f, err, errlen) < 0)
		return -1;
	type = gguf_get_str(f, "general.type");
	arch = gguf_get_str(f, "general.architecture");
	config = gguf_get_str(f, "natter.checkpoint.config");
	if (!type || strcmp(type, TLOOP_CKPT_TYPE) != 0) {
		snprintf(err, errlen, "%s is not a natter checkpoint (general.type is %s)", path, type ? type : "absent");
		goto out;
	}
	if (!arch || strcmp(arch, tmodel_arch(tm)) != 0) {
		snprintf(err, errlen, "%s is a checkpoint for architecture %s, the model is %s", path, arch ? arch : "(none)",
		    tmodel_arch(tm));
		goto out;
	}
	if (!config || gguf_get_u64(f, "natter.checkpoint.steps", &steps) < 0 ||
	    gguf_get_u64(f, "natter.checkpoint.adamw_t", &t) < 0) {
		snprintf(err, errlen, "%s: the checkpoint's step count or configuration is missing", path);
		goto out;
	}
	if (strcmp(config, l->config) != 0) {
		config_diff(path, config, l->config, err, errlen);
		goto out;
	}
	if (steps > (uint64_t)l->cfg.steps) {
		snprintf(err, errlen, "%s: %llu steps done, more than the %lld of this run", path, (unsigned long long)steps,
		    (long long)l->cfg.steps);
		goto out;
	}
	if (f->n_tensors != (uint64_t)tmodel_lora_count(tm) * CK_COUNT) {
		snprintf(err, errlen, "%s holds %llu tensors; this run trains %d pairs (%d tensors)", path,
		    (unsigned long long)f->n_tensors, tmodel_lora_count(tm), tmodel_lora_count(tm) * CK_COUNT);
		goto out;
	}
	/* Every tensor checked before any is copied: a bad file changes nothing. */
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < tmodel_lora_count(tm); i++) {
			for (int k = 0; k < CK_COUNT; k++) {
				char name[160];
				uint64_t ne[2];
				float *dst = ck_tensor(tm, i, k, ne);
				const struct gguf_tensor *g;
				snprintf(name, sizeof(name), "%s%s", tmodel_lora_base(tm, i), ck_suffix[k]);
				g = gguf_find_tensor(f, name);
				if (pass == 0 && (!g || g->type != GGML_TYPE_F32 || g->ne[0] != ne[0] || g->ne[1] != ne[1] ||
				    g->ne[2] != 1 || g->ne[3] != 1)) {
					snprintf(err, errlen, "%s: tensor %s is %s (expected F32 [%llu, %llu])", path, name,
					    g ? "of another type or shape" : "missing", (unsigned long long)ne[0],
					    (unsigned long long)ne[1]);
					goto out;
				}
				if (pass == 1)
					memcpy(dst, g->data, (size_t)(ne[0] * ne[1]) * sizeof(float));
			}
		}
	}
	tmodel_adamw_set_t(tm, (int64_t)t);
	l->done = (int64_t)steps;
	rc = 0;
out:
	free(type);
	free(arch);
	free(config);
	gguf_close(f);
	return rc;
}
