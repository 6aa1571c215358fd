/* attn.h -- tiled attention with an online softmax over a layer's cache of F32, F16 or Q8_0 rows; the row conversions of each CPU tier. */
#ifndef NATTER_ATTN_H
#define NATTER_ATTN_H

#include <stddef.h>

#include "natter/quant.h"

struct pool;
struct kv_layer;

/*
 * What one CPU tier brings to attention: binary16 rows to float and back
 * (round to nearest even, as q_f32_to_f16), and the vector steps of the
 * online softmax.  Each tier lives in its own file compiled with its own
 * flags (attn-avx2.c, attn-avx512.c: one template, attn-x86.h, at two
 * vector widths); the kernels' tier decides which (attn_pick_best).
 * N may be any length, 0 included.
 */
struct attn_ops {
	const char *name;
	void (*f16_to_f32)(const qhalf *x, float *y, int n);
	void (*f32_to_f16)(const float *x, qhalf *y, int n);
	/* The largest of X[0..N) (N >= 1). */
	float (*max)(const float *x, int n);
	/* X[i] = exp(X[i] - M) (X[i] <= M; relative error below 1e-6, 0
	 * below M - 87); returns their sum. */
	float (*exp_sum)(float *x, int n, float m);
	/* Y[i] = A * X[i] (Y may be X). */
	void (*scale)(float *y, const float *x, int n, float a);
	/* S (R rows of LDS) = Q (R rows of N) K^T, K: NK rows of LDK; for
	 * the few rows of a token or two, where sgemm's packing costs more
	 * than the product. */
	void (*qk)(const float *q, int r, int n, const float *k, int ldk, int nk, float *s, int lds);
	/* O (R rows of LDO) += P (R rows of LDP) V, V: NK rows of N (LDV). */
	void (*pv)(const float *p, int ldp, int r, const float *v, int ldv, int nk, int n, float *o, int ldo);
	/* qk and pv with K and V binary16 rows straight from the cache (LDK,
	 * LDV in elements), for a few rows of queries: each key is read once,
	 * in order, and never written out as floats.  PF (NULL: none): while
	 * key j is read, PFL cache lines from PF + 64 j PFL are asked for,
	 * so that memory brings what comes next while these are computed. */
	void (*qk_h)(const float *q, int r, int n, const qhalf *k, int ldk, int nk, float *s, int lds, const uint8_t *pf,
		     int pfl);
	void (*pv_h)(const float *p, int ldp, int r, const qhalf *v, int ldv, int nk, int n, float *o, int ldo,
		     const uint8_t *pf, int pfl);
	/*
	 * A prompt's wide blocks, scores transposed: a column per query row,
	 * so that the softmax runs down the columns a vector of rows at a
	 * time.  qk_t: S^T (NK rows of LDS) = K QT, K: NK rows of N (LDK),
	 * QT: N rows of LDQ, the columns 0 .. NC-1; it may read QT's and
	 * write S^T's columns up to NC rounded up to 16 (the buffers have
	 * them; what lands there is not a score).  softmax_t: the online
	 * softmax's step over those NK x NC scores (every column has a key
	 * above -inf): M[c] becomes the larger of M[c] and its column's
	 * largest, the scores e^(s - M[c]), SUM[c] = SUM[c] ALPHA[c] + their
	 * sum with ALPHA[c] = e^(old M[c] - M[c]) (0 from -inf); past NC, up
	 * to NC rounded up to 16, MX, SUM and ALPHA may be read and written
	 * back unchanged, S^T's scores changed.  pv_t:
	 * row i of O (NR rows of N, LDO) = ALPHA[i] O_i + sum_j P^T[j][i]
	 * V_j, V: NK rows of LDV.  T_TILES: attention sends wide blocks
	 * through these, not through sgemm (the tiers whose kernels measure
	 * faster than OpenBLAS).
	 */
	void (*qk_t)(const float *qt, int ldq, int nc, int n, const float *k, int ldk, int nk, float *st, int lds);
	void (*softmax_t)(float *st, int lds, int nk, int nc, float *mx, float *sum, float *alpha);
	void (*pv_t)(const float *pt, int ldp, int nr, const float *v, int ldv, int nk, int n, const float *alpha,
		     float *o, int ldo);
	int t_tiles;
};

/* The tiers, best last: "scalar", "avx2" (AVX2 F16C FMA), "avx512"
 * (AVX-512 F/BW/VL), named as the kernel tiers of cpu.c are; by default
 * attention runs the one of the kernels' chosen tier (NATTER_CPU
 * included), or the nearest below it.  I from 0 to attn_tier_count() - 1.
 * Any thread. */
int attn_tier_count(void);
const char *attn_tier_name(int i);
int attn_tier_available(int i);
/*
 * Makes tier I the one used (-1: back to the default).
 * Returns 0, or -1 when the CPU lacks it (nothing changed).  For tests and
 * start-up: no session may be evaluating meanwhile.
 */
int attn_tier_set(int i);
/* The tier in use (the default until attn_tier_set says otherwise). */
const struct attn_ops *attn_ops_get(void);

/* The cache types attention reads: F32, F16, Q8_0 (its rows are whole
 * blocks of 32 within each head). */
int attn_type_supported(enum ggml_type t);
/* Bytes of a row of N elements of T. */
size_t attn_row_bytes(enum ggml_type t, int n);
/* X (N floats) into Y as type T (the cache's write: F16 rounds to nearest
 * even, Q8_0 per block of 32). */
void attn_row_from_float(enum ggml_type t, const float *x, void *y, int n);
/* ROWS rows of N elements of type T, STRIDE bytes apart from X, into Y
 * (rows of LDY floats). */
void attn_rows_to_float(enum ggml_type t, const void *x, size_t stride, int rows, int n, float *y, int ldy);

/* One layer's attention: heads, their lengths, window, scale and cap. */
struct attn_shape {
	int n_head, n_head_kv;      /* n_head a multiple of n_head_kv (GQA) */
	int head_dim, head_dim_v;   /* q and k; v */
	int window;                 /* a query at p sees keys p-window+1 .. p; 0: all */
	float scale;                /* q.k multiplied by it */
	float softcap;              /* s -> cap tanh(s / cap) before the softmax; 0: none */
};

/*
 * Working space of attn_forward for N_THREADS threads: per thread a block
 * of queries, its accumulators and one block of keys and values as
 * floats; and the partial results of tasks split along the keys.  Sized
 * by the shape's heads, never by the context.  Returns 0 or -1 (out of
 * memory; attn_scratch_free is safe).
 */
struct attn_scratch {
	int n_threads;
	int rows;                   /* query rows (tokens x heads of a group) per task, at most */
	int bk;                     /* keys per block */
	int bk_all;                 /* keys per block when a task takes every KV head */
	int head_dim, head_dim_v;
	int ldr;                    /* columns of transposed queries and scores: rows + 16, rounded up to 16 */
	size_t kf_floats, vf_floats;   /* of a block of keys and of values as floats */
	size_t per_thread;          /* floats of BUF per thread */
	float *buf;                 /* (n_threads, per_thread) */
	size_t part_floats;         /* of PART: (attn.c's ATTN_SLOTS_PER_THREAD x n_threads)
				     * blocks of rows x (head_dim_v + 2) */
	float *part;                /* split parts' O, max and sum, in slots of whole lines */
};
int attn_scratch_init(struct attn_scratch *s, const struct attn_shape *sh, int n_threads);
void attn_scratch_free(struct attn_scratch *s);

/*
 * OUT (NT, n_head * head_dim_v) = softmax(scale Q K^T, causal, windowed,
 * soft-capped) V for the NT queries Q (NT, n_head * head_dim) at positions
 * POS0 .. POS0+NT-1 over KL, which holds every key those queries see.
 * No score matrix: per block of queries (all heads of one KV head
 * together, so that each block of keys is read once for the group), the
 * keys are streamed a block at a time, converted to float, and folded into
 * running maxima, sums and accumulators.  Long key ranges with few queries
 * are split across threads and merged.  Runs on P; no allocation.
 */
void attn_forward(struct pool *p, struct attn_scratch *s, const struct attn_shape *sh, const struct kv_layer *kl,
		  const float *q, int nt, int pos0, float *out);
/* Calls of attn_forward that split the keys into parts, in this process
 * (tests: whether a shape was split).  Any thread. */
unsigned long attn_split_calls(void);

/* AVX2 and AVX-512 tiers (their own files): NULL when not compiled in or
 * the CPU lacks them. */
const struct attn_ops *attn_avx2_ops(void);
const struct attn_ops *attn_avx512_ops(void);

#endif
