/* kv.h -- a session's cache, per layer and of the layer's own kind: full KV, a sliding-window ring, a recurrent state. */
#ifndef NATTER_KV_H
#define NATTER_KV_H

#include <stddef.h>
#include <stdint.h>

#include "natter/gguf.h"
#include "natter/llm.h"

/*
 * One layer's cache.  FULL: position p in row p.  RING: position p in row
 * p % slots, where slots = window - 1 + n_batch: a batch of n_batch tokens
 * starting at p0 writes its keys before attending, and its first query
 * still needs keys p0-window+1 .. p0-1, so window - 1 + n_batch rows are
 * the least that serves every query of the batch.  RECURRENT: a state that
 * stands for all n_past positions at once.  FULL and RING rows are of the
 * session's cache type (F16 by default; F32; Q8_0), converted as they are
 * written; the memory is calloc'ed, so rows never written cost no RAM.
 */
struct kv_layer {
	enum llm_cache_kind kind;
	int slots;              /* rows of k and v */
	int window;             /* RING: a query at p reads p-window+1 .. p */
	int oldest;             /* RING: the lowest position still in its row */
	enum ggml_type type;    /* of the rows: F32, F16 or Q8_0 */
	int width_k, width_v;   /* elements of one position's K and V */
	size_t row_k, row_v;    /* bytes of one position's K and V */
	uint8_t *k;             /* (slots, row_k) */
	uint8_t *v;             /* (slots, row_v) */
	size_t conv_n, state_n;
	float *conv, *state;    /* RECURRENT: zero for an empty cache */
};

struct kv_cache {
	int n_layer;
	int n_past;             /* positions every layer has seen */
	struct kv_layer *l;     /* (n_layer) */
};

/* A run of consecutive rows: N positions starting at K and V (rows of
 * row_k and row_v bytes). */
struct kv_run {
	const uint8_t *k, *v;
	int n;
};

#define KV_NO_RING 1    /* flag: sliding layers keep full KV (a reference for tests) */

/* The ggml type of a cache type (the table in kv.c). */
enum ggml_type kv_type_ggml(enum llm_kv_type t);

/*
 * Sizes and allocates every layer's cache for N_CTX positions and batches
 * of N_BATCH from HP's layer descriptions, K and V rows of TYPE.  Returns
 * 0, -1 when memory is short, -2 when TYPE cannot hold these heads (Q8_0
 * needs head dimensions that are multiples of 32); kv_cache_free is safe
 * either way.  Any thread.
 */
int kv_cache_init(struct kv_cache *kv, const struct llm_hparams *hp, int n_ctx, int n_batch, unsigned flags,
		  enum llm_kv_type type);
void kv_cache_free(struct kv_cache *kv);
size_t kv_cache_bytes(const struct kv_cache *kv);
size_t kv_layer_bytes(const struct kv_layer *l);

/*
 * Keeps positions 0 .. N-1 if every layer can go back there, else none;
 * returns what is kept (N clamped to 0 .. n_past, or 0).  A ring can go
 * back to N when it still holds N-window+1 .. N-1; a recurrent state only
 * stays where it is (N = n_past) or restarts (0).
 */
int kv_cache_truncate(struct kv_cache *kv, int n);

/* Stores the K and V (floats) of position POS (a FULL or RING layer),
 * converted to the layer's type. */
void kv_layer_put(struct kv_layer *l, int pos, const float *k, const float *v);

/* The rows of positions LO .. HI (inclusive; all held) as at most two runs
 * in position order.  Returns the number of runs. */
int kv_layer_runs(const struct kv_layer *l, int lo, int hi, struct kv_run run[2]);

#endif
