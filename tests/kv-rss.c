/* kv-rss.c -- for test-kv.sh: the peak RSS of a session whose whole cache is written, evaluating at the end of its context. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "natter/llm.h"
#include "llm/kv.h"
#include "llm/model.h"

/*
 * usage: kv-rss MODEL N_CTX KV_TYPE
 * Makes a session of N_CTX positions with a KV_TYPE cache, writes K and V
 * (random) at every position of every layer, so that every page of the
 * cache is touched, as a conversation that filled the context would have
 * it; then evaluates 16 tokens as a batch and one more alone at the last
 * positions, each attending over the whole context.  Prints
 * "peak_rss BYTES cache BYTES" and exits 0, or 1 with a message.
 */
int
main(int argc, char **argv)
{
	struct llm_model *m = NULL;
	struct llm_ctx *c = NULL;
	struct llm_ctx_params cp;
	struct rusage ru;
	char err[512];
	int32_t tok[17];
	float *logits, *k, *v;
	uint64_t s = 1;
	int n_ctx, bad = 0;

	if (argc != 4) {
		fprintf(stderr, "usage: kv-rss MODEL N_CTX KV_TYPE\n");
		return 2;
	}
	n_ctx = atoi(argv[2]);
	llm_ctx_params_default(&cp);
	if (n_ctx < 32 || llm_kv_type_parse(argv[3], &cp.kv_type) < 0) {
		fprintf(stderr, "kv-rss: bad context size or KV type\n");
		return 2;
	}
	if (llm_model_load(argv[1], &m, err, sizeof(err)) < 0) {
		fprintf(stderr, "kv-rss: %s\n", err);
		return 1;
	}
	cp.n_ctx = n_ctx;
	cp.n_batch = 16;
	c = llm_ctx_new_ex(m, &cp, err, sizeof(err));
	if (!c) {
		fprintf(stderr, "kv-rss: %s\n", err);
		llm_model_free(m);
		return 1;
	}
	logits = malloc((size_t)llm_model_hparams(m)->n_vocab * sizeof(float));
	k = malloc(8192 * sizeof(float));
	v = malloc(8192 * sizeof(float));
	if (!logits || !k || !v) {
		fprintf(stderr, "kv-rss: out of memory\n");
		return 1;
	}
	for (int il = 0; il < c->kv.n_layer; il++) {
		struct kv_layer *l = &c->kv.l[il];
		if (l->kind == LLM_CACHE_RECURRENT || l->width_k > 8192 || l->width_v > 8192)
			continue;
		for (int p = 0; p < n_ctx; p++) {
			for (int i = 0; i < l->width_k || i < l->width_v; i++) {
				s ^= s << 13;
				s ^= s >> 7;
				s ^= s << 17;
				k[i] = (float)(s % 2001) / 1000.0f - 1.0f;
				v[i] = (float)(s / 2001 % 2001) / 1000.0f - 1.0f;
			}
			kv_layer_put(l, p, k, v);
		}
	}
	/* The cache now holds n_ctx - 17 positions; 17 more fill it. */
	c->kv.n_past = n_ctx - 17;
	for (int i = 0; i < 17; i++)
		tok[i] = 100 + i;
	if (llm_eval(c, tok, 16, logits, 0, err, sizeof(err)) < 0 || llm_eval(c, tok + 16, 1, logits, 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "kv-rss: %s\n", err);
		return 1;
	}
	for (int i = 0; i < llm_model_hparams(m)->n_vocab; i++)
		bad += !isfinite(logits[i]);
	if (bad || llm_ctx_n_past(c) != n_ctx) {
		fprintf(stderr, "kv-rss: %d logits not finite, %d positions of %d\n", bad, llm_ctx_n_past(c), n_ctx);
		return 1;
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("peak_rss %lld cache %zu\n", (long long)ru.ru_maxrss * 1024, llm_ctx_cache_bytes(c));
	free(logits);
	free(k);
	free(v);
	llm_ctx_free(c);
	llm_model_free(m);
	return 0;
}
