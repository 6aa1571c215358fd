/* kv.c -- the per-layer cache: its types, sizing, rows of a ring, what a truncation can keep. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "llm/attn.h"
#include "llm/kv.h"

/* The cache types, by enum llm_kv_type: how options spell them, and the
 * ggml type of their rows. */
static const struct {
	const char *name;
	enum ggml_type type;
} kv_types[LLM_KV_TYPE_COUNT] = {
	[LLM_KV_F16] = { "f16", GGML_TYPE_F16 },
	[LLM_KV_Q8_0] = { "q8_0", GGML_TYPE_Q8_0 },
	[LLM_KV_F32] = { "f32", GGML_TYPE_F32 },
};

const char *
llm_kv_type_name(enum llm_kv_type t)
{
	return (unsigned)t < LLM_KV_TYPE_COUNT ? kv_types[t].name : NULL;
}

int
llm_kv_type_parse(const char *s, enum llm_kv_type *t)
{
	for (int i = 0; i < LLM_KV_TYPE_COUNT; i++) {
		if (!strcmp(s, kv_types[i].name)) {
			*t = (enum llm_kv_type)i;
			return 0;
		}
	}
	return -1;
}

enum ggml_type
kv_type_ggml(enum llm_kv_type t)
{
	return (unsigned)t < LLM_KV_TYPE_COUNT ? kv_types[t].type : GGML_TYPE_F32;
}

int
kv_cache_init(struct kv_cache *kv, const struct llm_hparams *hp, int n_ctx, int n_batch, unsigned flags,
	      enum llm_kv_type type)
{
	const enum ggml_type gt = kv_type_ggml(type);

	memset(kv, 0, sizeof(*kv));
	if ((unsigned)type >= LLM_KV_TYPE_COUNT || (gt == GGML_TYPE_Q8_0 && (hp->head_dim % QK8_0 || hp->head_dim_v % QK8_0)))
		return -2;
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
		l->type = gt;
		l->width_k = hp->n_head_kv * hp->head_dim;
		l->width_v = hp->n_head_kv * hp->head_dim_v;
		l->row_k = attn_row_bytes(gt, l->width_k);
		l->row_v = attn_row_bytes(gt, l->width_v);
		l->kind = LLM_CACHE_FULL;
		l->slots = n_ctx;
		if (lh->kind == LLM_LAYER_SLIDING && !(flags & KV_NO_RING) &&
		    (long long)lh->window - 1 + n_batch < n_ctx) {
			l->kind = LLM_CACHE_RING;
			l->slots = lh->window - 1 + n_batch;
			l->window = lh->window;
		}
		/* calloc: a large block comes from fresh zero pages, so
		 * positions never reached take no memory. */
		l->k = calloc((size_t)l->slots, l->row_k);
		l->v = calloc((size_t)l->slots, l->row_v);
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
	return (size_t)l->slots * (l->row_k + l->row_v) + (l->conv_n + l->state_n) * sizeof(float);
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
	attn_row_from_float(l->type, k, l->k + (size_t)row * l->row_k, l->width_k);
	attn_row_from_float(l->type, v, l->v + (size_t)row * l->row_v, l->width_v);
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
	run[0].k = l->k + (size_t)r0 * l->row_k;
	run[0].v = l->v + (size_t)r0 * l->row_v;
	run[0].n = first;
	if (first == n)
		return 1;
	run[1].k = l->k;
	run[1].v = l->v;
	run[1].n = n - first;
	return 2;
}
