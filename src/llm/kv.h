/* kv.h -- a session's cache, per layer and of the layer's own kind: full KV, a sliding-window ring, a recurrent state with checkpoints. */
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
	float *conv, *state;    /* RECURRENT: zero for an empty cache; one block,
	                           state right after the conv_n floats of conv */
};

/* A checkpoint: every recurrent layer's conv and state, in layer order. */
struct kv_snap {
	int pos;                /* n_past when taken; -1: the slot is free */
	unsigned seq;           /* when it was taken: the oldest goes first */
	float *data;            /* (snap_floats) */
};

struct kv_cache {
	int n_layer;
	int n_past;             /* positions every layer has seen */
	struct kv_layer *l;     /* (n_layer) */
	uint8_t *rows;          /* every layer's K and V rows, or NULL: each its own (kv.c) */
	size_t rows_bytes;
	/* Recurrent layers only (kv_snap_init): checkpoints, and the copy of
	 * the states a batch started from, put back if it stops midway. */
	size_t snap_floats;     /* floats of all recurrent states together */
	int n_snap;
	struct kv_snap *snap;   /* (n_snap) */
	float *undo;            /* (snap_floats) */
	unsigned snap_seq;
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
 * Keeps positions 0 .. N-1 if every layer can go back there; else goes
 * back to the latest checkpoint at or before N that every ring can
 * continue from (its states restored), else to 0; returns what is kept.
 * A ring can go back to N when it still holds N-window+1 .. N-1; a
 * recurrent state only stays where it is (N = n_past), goes back to a
 * checkpoint, or restarts (0).  Checkpoints after what is kept go.
 */
int kv_cache_truncate(struct kv_cache *kv, int n);

/*
 * Checkpoint slots for the recurrent layers: MAX_SLOTS at most, fewer when
 * they would take more than BUDGET bytes, never fewer than 2 (or
 * MAX_SLOTS if smaller); none without recurrent layers.  Also the undo
 * copy.  Returns 0, or -1 when memory is short (kv_cache_free is safe).
 */
int kv_snap_init(struct kv_cache *kv, int max_slots, size_t budget);
/* Bytes of the slots and the undo copy. */
size_t kv_snap_bytes(const struct kv_cache *kv);
/* Bytes of the recurrent states themselves. */
size_t kv_state_bytes(const struct kv_cache *kv);
/* Keeps the states at n_past in a slot (the one already at n_past, a free
 * one, or the oldest taken).  Returns 0, or 1 when there are no slots. */
int kv_snap_save(struct kv_cache *kv);
/* The positions held, ascending, into POS (at most MAX); returns how many. */
int kv_snap_list(const struct kv_cache *kv, int *pos, int max);
/* The undo copy: the states now, and back to them. */
void kv_undo_save(struct kv_cache *kv);
void kv_undo_restore(struct kv_cache *kv);

/* Stores the K and V (floats) of position POS (a FULL or RING layer),
 * converted to the layer's type. */
void kv_layer_put(struct kv_layer *l, int pos, const float *k, const float *v);

/* The rows of positions LO .. HI (inclusive; all held) as at most two runs
 * in position order.  Returns the number of runs. */
int kv_layer_runs(const struct kv_layer *l, int lo, int hi, struct kv_run run[2]);

#endif
