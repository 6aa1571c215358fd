/* kv.c -- the per-layer cache: its types, sizing, rows of a ring, recurrent checkpoints, what a truncation can keep. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "llm/attn.h"
#include "llm/hugemem.h"
#include "llm/kv.h"

/*
 * The layers' rows: zeroed, and untouched until written, so that
 * positions never reached take no memory; from 2 MiB on, mapped on their
 * own and in 2 MiB pages where the kernel gives them (hugemem.c):
 * attention streams through every row at every token, and 4 KiB pages cost
 * a page walk each 4 KiB.  Measured on one thread (avx512bf16 machine,
 * busy): a token's attention over 4000 positions of Qwen3.5-0.8B (49 MB)
 * took 5.3-5.5 ms in 4 KiB pages, 4.7 ms in 2 MiB pages.  Under the
 * sanitizers, calloc for each array, so that they watch its ends.
 *
 * Every layer's rows lie in one block (each array on lines of its own),
 * so that a cache of 2 MiB or more is in 2 MiB pages even where each of
 * its arrays is smaller: in 4 KiB pages every new page of rows was a page
 * fault at the token that first wrote it.  Qwen3-0.6B shapes (2 KiB rows)
 * in a context of 129 positions, 2 threads: writing a token's K and V
 * took 1.5 us a layer at even positions and 15.5 us at odd ones, which
 * began a page of each (a KVM guest, where a first touch is slow), so
 * every other token took 4.6-8% longer (token times by turns, two runs);
 * in one block, 129 positions, 0.98-1.01 (three runs), as with arrays of
 * 2 MiB pages of their own (a context of 1229: 1.00).
 */
#ifndef NATTER_ASAN
#define KV_MAP 1
#else
#define KV_MAP 0
#endif

static size_t
rows_mapped(size_t bytes)
{
	return KV_MAP && bytes >= HUGE_PAGE ? (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE : 0;
}

static void *
rows_alloc(size_t bytes)
{
	size_t len;

	if (rows_mapped(bytes))
		return huge_alloc(bytes, &len);
	/* A block under 2 MiB on a line (written through at once); the
	 * sanitizers' arrays by calloc. */
	return KV_MAP ? line_calloc(1, bytes ? bytes : 1) : calloc(1, bytes ? bytes : 1);
}

static void
rows_free(void *p, size_t bytes)
{
	const size_t body = rows_mapped(bytes);

	if (body)
		huge_free(p, body);
	else
		free(p);
}

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
			/* One block, so that conv is never NULL (a conv of width 1
			 * keeps no rows) and a checkpoint copies it in one go. */
			l->conv = calloc(l->conv_n + l->state_n + 1, sizeof(float));
			if (!l->conv)
				return -1;
			l->state = l->conv + l->conv_n;
			kv->snap_floats += l->conv_n + l->state_n;
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
		kv->rows_bytes += line_bytes((size_t)l->slots * l->row_k) + line_bytes((size_t)l->slots * l->row_v);
	}
	if (KV_MAP && kv->rows_bytes > 0 && !(kv->rows = rows_alloc(kv->rows_bytes)))
		return -1;
	uint8_t *at = kv->rows;
	for (int il = 0; il < kv->n_layer; il++) {
		struct kv_layer *l = &kv->l[il];
		const size_t kb = (size_t)l->slots * l->row_k, vb = (size_t)l->slots * l->row_v;
		if (l->kind == LLM_CACHE_RECURRENT)
			continue;
		if (!kv->rows) {
			l->k = rows_alloc(kb);
			l->v = rows_alloc(vb);
			if (!l->k || !l->v)
				return -1;
			continue;
		}
		l->k = at;
		l->v = at + line_bytes(kb);
		at += line_bytes(kb) + line_bytes(vb);
	}
	return 0;
}

void
kv_cache_free(struct kv_cache *kv)
{
	for (int il = 0; kv->l && il < kv->n_layer; il++) {
		if (!kv->rows) {
			rows_free(kv->l[il].k, (size_t)kv->l[il].slots * kv->l[il].row_k);
			rows_free(kv->l[il].v, (size_t)kv->l[il].slots * kv->l[il].row_v);
		}
		free(kv->l[il].conv);   /* and state, in the same block */
	}
	if (kv->rows)
		rows_free(kv->rows, kv->rows_bytes);
	free(kv->l);
	for (int i = 0; kv->snap && i < kv->n_snap; i++)
		free(kv->snap[i].data);
	free(kv->snap);
	free(kv->undo);
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

/* Copies every recurrent layer's conv and state into DST, or back from SRC. */
static void
states_copy(struct kv_cache *kv, float *dst, const float *src)
{
	size_t off = 0;

	for (int il = 0; il < kv->n_layer; il++) {
		struct kv_layer *l = &kv->l[il];
		const size_t n = l->conv_n + l->state_n;
		if (l->kind != LLM_CACHE_RECURRENT)
			continue;
		if (dst)
			memcpy(dst + off, l->conv, n * sizeof(float));
		else
			memcpy(l->conv, src + off, n * sizeof(float));
		off += n;
	}
}

/* Whether every ring can continue from position N (recurrent layers aside). */
static int
rings_can_keep(const struct kv_cache *kv, int n)
{
	for (int il = 0; il < kv->n_layer; il++)
		if (kv->l[il].kind == LLM_CACHE_RING && !layer_can_keep(&kv->l[il], n, kv->n_past))
			return 0;
	return 1;
}

int
kv_cache_truncate(struct kv_cache *kv, int n)
{
	if (n < 0)
		n = 0;
	if (n > kv->n_past)
		n = kv->n_past;
	for (int il = 0; il < kv->n_layer && n > 0; il++) {
		if (!layer_can_keep(&kv->l[il], n, kv->n_past)) {
			/* The latest checkpoint at or before N the rings allow. */
			const struct kv_snap *best = NULL;
			for (int i = 0; i < kv->n_snap; i++) {
				const struct kv_snap *sn = &kv->snap[i];
				if (sn->pos > 0 && sn->pos <= n && (!best || sn->pos > best->pos) && rings_can_keep(kv, sn->pos))
					best = sn;
			}
			n = best ? best->pos : 0;
			if (best)
				states_copy(kv, NULL, best->data);
			break;
		}
	}
	/* What follows N will be evaluated again, perhaps differently. */
	for (int i = 0; i < kv->n_snap; i++)
		if (kv->snap[i].pos > n)
			kv->snap[i].pos = -1;
	if (n == 0) {
		for (int il = 0; il < kv->n_layer; il++) {
			struct kv_layer *l = &kv->l[il];
			l->oldest = 0;
			if (l->conv)
				memset(l->conv, 0, (l->conv_n + l->state_n) * sizeof(float));
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

/* --- checkpoints of the recurrent layers --- */

int
kv_snap_init(struct kv_cache *kv, int max_slots, size_t budget)
{
	const size_t per = kv->snap_floats * sizeof(float);
	size_t n;

	if (per == 0 || max_slots < 1)
		return 0;
	n = budget / per;
	if (n < 2)
		n = 2;
	if (n > (size_t)max_slots)
		n = (size_t)max_slots;
	kv->snap = calloc(n, sizeof(*kv->snap));
	if (!kv->snap)
		return -1;
	kv->n_snap = (int)n;
	for (int i = 0; i < kv->n_snap; i++) {
		kv->snap[i].pos = -1;
		/* calloc: pages are touched only when a checkpoint is taken */
		kv->snap[i].data = calloc(kv->snap_floats, sizeof(float));
		if (!kv->snap[i].data)
			return -1;
	}
	kv->undo = calloc(kv->snap_floats, sizeof(float));
	return kv->undo ? 0 : -1;
}

size_t
kv_snap_bytes(const struct kv_cache *kv)
{
	return kv->snap ? (size_t)(kv->n_snap + 1) * kv->snap_floats * sizeof(float) : 0;
}

size_t
kv_state_bytes(const struct kv_cache *kv)
{
	return kv->snap_floats * sizeof(float);
}

int
kv_snap_save(struct kv_cache *kv)
{
	struct kv_snap *slot = NULL;

	if (kv->n_snap == 0)
		return 1;
	for (int i = 0; i < kv->n_snap && !slot; i++)
		if (kv->snap[i].pos == kv->n_past)
			slot = &kv->snap[i];
	for (int i = 0; i < kv->n_snap && !slot; i++)
		if (kv->snap[i].pos < 0)
			slot = &kv->snap[i];
	if (!slot) {
		slot = &kv->snap[0];
		for (int i = 1; i < kv->n_snap; i++)
			if (kv->snap[i].seq - slot->seq > (1u << 31))   /* earlier, across a wrap too */
				slot = &kv->snap[i];
	}
	states_copy(kv, slot->data, NULL);
	slot->pos = kv->n_past;
	slot->seq = ++kv->snap_seq;
	return 0;
}

int
kv_snap_list(const struct kv_cache *kv, int *pos, int max)
{
	int n = 0;

	for (int i = 0; i < kv->n_snap; i++) {
		int p = kv->snap[i].pos, j;
		if (p < 0)
			continue;
		/* insertion into the sorted prefix of what fits */
		for (j = n < max ? n : max; j > 0 && pos[j - 1] > p; j--)
			if (j < max)
				pos[j] = pos[j - 1];
		if (j < max)
			pos[j] = p;
		n++;
	}
	return n;
}

void
kv_undo_save(struct kv_cache *kv)
{
	if (kv->undo)
		states_copy(kv, kv->undo, NULL);
}

void
kv_undo_restore(struct kv_cache *kv)
{
	if (kv->undo)
		states_copy(kv, NULL, kv->undo);
}
