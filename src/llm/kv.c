/* kv.c -- the per-layer cache: sizing, rows of a ring, what a truncation can keep. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "llm/kv.h"

int
kv_cache_init(struct kv_cache *kv, const struct llm_hparams *hp, int n_ctx, int n_batch, unsigned flags)
{
	memset(kv, 0, sizeof(*kv));
	kv->l = calloc(hp->n_layer, sizeof(*kv->l));
	if (!kv->l)
		return -1;
	kv->n_layer = hp->n_layer;
	for (int il = 0; il < hp->n_layer; il++) {
		const struct llm_layer_hparams *lh = &hp->layer[il];
		struct kv_layer *l = &kv->l[il];

		if (lh->kind == LLM_LAYER_RECURRENT) {
			l->kind = LLM_CACHE_RECURRENT;
			l->conv_n = lh->conv_floats;
			l->state_n = lh->state_floats;
			l->conv = l->conv_n ? calloc(l->conv_n, sizeof(float)) : NULL;
			l->state = l->state_n ? calloc(l->state_n, sizeof(float)) : NULL;
			if ((l->conv_n && !l->conv) || (l->state_n && !l->state))
				return -1;
			continue;
		}
		l->width_k = hp->n_head_kv * hp->head_dim;
		l->width_v = hp->n_head_kv * hp->head_dim_v;
		l->kind = LLM_CACHE_FULL;
		l->slots = n_ctx;
		if (lh->kind == LLM_LAYER_SLIDING && !(flags & KV_NO_RING) &&
		    (long long)lh->window - 1 + n_batch < n_ctx) {
			l->kind = LLM_CACHE_RING;
			l->slots = lh->window - 1 + n_batch;
			l->window = lh->window;
		}
		l->k = malloc((size_t)l->slots * l->width_k * sizeof(float));
		l->v = malloc((size_t)l->slots * l->width_v * sizeof(float));
		if (!l->k || !l->v)
			return -1;
	}
	return 0;
}

void
kv_cache_free(struct kv_cache *kv)
{
	for (int il = 0; kv->l && il < kv->n_layer; il++) {
		free(kv->l[il].k);
		free(kv->l[il].v);
		free(kv->l[il].conv);
		free(kv->l[il].state);
	}
	free(kv->l);
	memset(kv, 0, sizeof(*kv));
}

size_t
kv_layer_bytes(const struct kv_layer *l)
{
	return ((size_t)l->slots * (l->width_k + l->width_v) + l->conv_n + l->state_n) * sizeof(float);
}

size_t
kv_cache_bytes(const struct kv_cache *kv)
{
	size_t b = 0;
	for (int il = 0; il < kv->n_layer; il++)
		b += kv_layer_bytes(&kv->l[il]);
	return b;
}

/* Whether layer L can continue from position N. */
static int
layer_can_keep(const struct kv_layer *l, int n, int n_past)
{
	switch (l->kind) {
	case LLM_CACHE_FULL:
		return 1;
	case LLM_CACHE_RING: {
		int need = n - l->window + 1;   /* the oldest key a query at N reads */
		return (need < 0 ? 0 : need) >= l->oldest;
	}
	case LLM_CACHE_RECURRENT:
		return n == n_past;
	}
	return 0;
}

int
kv_cache_truncate(struct kv_cache *kv, int n)
{
	if (n < 0)
		n = 0;
	if (n > kv->n_past)
		n = kv->n_past;
	for (int il = 0; il < kv->n_layer && n > 0; il++)
		if (!layer_can_keep(&kv->l[il], n, kv->n_past))
			n = 0;
	if (n == 0) {
		for (int il = 0; il < kv->n_layer; il++) {
			struct kv_layer *l = &kv->l[il];
			l->oldest = 0;
			if (l->conv)
				memset(l->conv, 0, l->conv_n * sizeof(float));
			if (l->state)
				memset(l->state, 0, l->state_n * sizeof(float));
		}
	}
	kv->n_past = n;
	return n;
}

void
kv_layer_put(struct kv_layer *l, int pos, const float *k, const float *v)
{
	int row = pos;

	if (l->kind == LLM_CACHE_RING) {
		row = pos % l->slots;
		/* The row held pos - slots (or an abandoned later position). */
		if (pos - l->slots + 1 > l->oldest)
			l->oldest = pos - l->slots + 1;
	}
	memcpy(l->k + (size_t)row * l->width_k, k, (size_t)l->width_k * sizeof(float));
	memcpy(l->v + (size_t)row * l->width_v, v, (size_t)l->width_v * sizeof(float));
}

int
kv_layer_runs(const struct kv_layer *l, int lo, int hi, struct kv_run run[2])
{
	int n = hi - lo + 1, r0 = lo, first;

	if (n <= 0)
		return 0;
	if (l->kind == LLM_CACHE_RING)
		r0 = lo % l->slots;
	first = l->kind == LLM_CACHE_RING && r0 + n > l->slots ? l->slots - r0 : n;
	run[0].k = l->k + (size_t)r0 * l->width_k;
	run[0].v = l->v + (size_t)r0 * l->width_v;
	run[0].n = first;
	if (first == n)
		return 1;
	run[1].k = l->k;
	run[1].v = l->v;
	run[1].n = n - first;
	return 2;
}
