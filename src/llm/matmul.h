/* matmul.h -- out = W x for a batch of activation rows, over any weight type, on the pool. */
#ifndef NATTER_MATMUL_H
#define NATTER_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "natter/gguf.h"

#include "llm/tensor.h"

struct pool;

/* On the scalar tier (which has no GEMM kernels of its own), batches at
 * least this large go through OpenBLAS sgemm on dequantized panels; on
 * the others, float weights' batches do when OpenBLAS measured faster
 * (q_float_gemm_choice). */
#define MM_BLAS_MIN_BATCH 32
/* Bytes of dequantized weights per thread per sgemm call. */
#define MM_PANEL_BYTES (2u << 20)

/*
 * Rows per task of the float GEMM on float activations (F32, F16, BF16
 * weights, but the avx512bf16 tier's BF16 GEMM; D rows, NTH
 * threads, the tier's GEMM_ROWS per panel): up to 8 panels, so that each
 * panel's weights are fetched while the one before is multiplied
 * (quant-x86.h's prefetch_f), in at least 8 tasks per thread.  Packed
 * rows (PACKED) stream in order with nothing to fetch ahead: one panel a
 * task, so that the threads end together (4864 rows in tasks of 8 panels
 * were 19 tasks: one thread did 10, the other waited for it).
 */
static inline int
mm_gemm_f_rows(int d, int nth, int gemm_rows, int packed)
{
	if (packed)
		return gemm_rows;
	int per = d / (8 * (nth > 0 ? nth : 1) * gemm_rows);
	per = per < 1 ? 1 : per > 8 ? 8 : per;
	return per * gemm_rows;
}

/* The most matrices one product takes (mm_matmul_many). */
#define MM_MAX_PARTS 4

/* The weights one GEMV job reads: its matrices' bytes, in order. */
struct mm_reads {
	const uint8_t *p[MM_MAX_PARTS];
	size_t len[MM_MAX_PARTS];
	int n;
};
/* GEMV jobs of a token remembered (mm_scratch.trace). */
#define MM_TRACE_MAX 1024

/*
 * A context's room for one matrix product at a time: the activations
 * converted once per product (at most n_batch rows of max_in inputs, in
 * the largest of the formats the kernels use) and each thread's panel of
 * packed weights (a few tens of KiB) for the GEMM kernels, or its
 * dequantized panel for the BLAS path of the scalar tier.
 */
struct mm_scratch {
	/* The GEMV jobs of the last token, in order (the first matrix seen
	 * again starts a token): what job i + 1 read is what the threads
	 * read ahead after job i (pool_read_ahead). */
	struct mm_reads *trace;
	int trace_at, trace_len;
	uint8_t *xq;            /* converted activations */
	size_t cap;             /* bytes of xq */
	void **gemm;            /* (n_threads) GEMM scratch, 64-byte aligned, or NULL */
	int n_gemm;
	float **panel;          /* (n_threads) BLAS panels of panel_bytes, or NULL */
	int n_panels;
	size_t panel_bytes;
	int n_batch;
	size_t max_in;
	/* Exact activations (mm_scratch_exact): each token's row as two q8p
	 * rows, its 8-bit rounding and the rounding of what that left over,
	 * whose products the GEMM sums; or, on the scalar tier, the floats as
	 * they are into sgemm.  NULL/0 when off. */
	int exact;
	uint8_t *ex;            /* 2 * n_batch q8p rows of max_in */
	float *eo;              /* products of the two rows, eo_floats of them */
	size_t eo_floats;
	float **er;             /* (n_threads) a float row of max_in: the leftover */
	int n_er;
};

/* Sizes the scratch for products of up to N_BATCH tokens with rows of up
 * to MAX_IN inputs on a pool of N_THREADS threads.  Returns 0 or -1 (out
 * of memory; the scratch can then be freed).  Chooses the CPU tier if it
 * is not chosen yet (q_cpu_init). */
int mm_scratch_init(struct mm_scratch *s, int n_batch, size_t max_in, int n_threads);
/* Turns on exact activations for every product of S: quantized weights
 * then meet activations accurate to about 16 bits instead of llama.cpp's
 * 8-bit rounding (the type's Q8_0 / Q8_1 / Q8_K), at twice the integer
 * work.  Allocates the room for it; returns 0 or -1 (out of memory; the
 * scratch can then be freed).  Call after mm_scratch_init, before any
 * product. */
int mm_scratch_exact(struct mm_scratch *s, int n_threads);
/* Frees what init allocated; a zeroed scratch is fine. */
void mm_scratch_free(struct mm_scratch *s);

/* OUT (nt, d) = X (nt, n) @ W^T, W (d, n): a 2-D tensor (one matrix of a
 * stack is taken with ltensor_slice).  NT <= the scratch's n_batch and
 * N <= its max_in.  No allocation; the calling thread owns P and S.
 * Batches below the tier's threshold for the type (q_type_kern.
 * gemm_min_nt: 2 to 16 tokens) take each weight row's dot products
 * (GEMV); larger ones the tier's GEMM on packed panels, the activations
 * quantized to int8 once per call for quantized weights.  When P is
 * stopped (pool_set_abort) part-way, the rest is skipped and OUT is left
 * partly unwritten. */
void mm_matmul(struct pool *p, struct mm_scratch *s, float *out, int d, const float *x, int n,
	       const struct ltensor *w, int nt);
/* The products of up to MM_MAX_PARTS matrices by the same X (NT, N): each
 * part's OUT (nt, w->ne1) = X @ W^T, as mm_matmul would make them.  When
 * every one takes the GEMV (few tokens), the activations are converted
 * once per format and all the rows are one job for the pool: one wait at
 * the end instead of one per matrix (the attention's Q, K and V; the FFN's
 * gate and up). */
struct mm_part {
	float *out;
	const struct ltensor *w;
};
void mm_matmul_many(struct pool *p, struct mm_scratch *s, const struct mm_part *parts, int n_parts, const float *x,
		    int n, int nt);
/* Records in S's trace that a GEMV job read CUR (a job whose first
 * matrix is the trace's first starts it again: the next token) and
 * returns what the job after it read at the last token (after the last,
 * the first job's), or NULL (no token traced yet; more than MM_TRACE_MAX
 * jobs). */
const struct mm_reads *mm_trace_step(struct mm_scratch *s, const struct mm_reads *cur);
/* The front of share TASK of R's bytes laid end to end in N equal shares
 * (as a GEMV job splits its rows among its tasks), at most MAX bytes: its
 * extents in PTR and LEN (room for MM_MAX_PARTS); returns their number. */
int mm_reads_share(const struct mm_reads *r, int task, int n, size_t max, const void **ptr, size_t *len);
/* Whether W's rows, packed, come out of their groups for OpenBLAS
 * (mm_float_rows): half floats (pack.c keeps each pair of inputs as a
 * 4-byte unit) in groups of at most MM_UNPACK_MAX_G rows. */
#define MM_UNPACK_MAX_G 16
static inline int
mm_float_unpacks(const struct ltensor *w)
{
	return w->packed <= MM_UNPACK_MAX_G && (w->type == GGML_TYPE_F16 || w->type == GGML_TYPE_BF16);
}
/* Rows [R, R + ROWS) of W (N = W->ne0 inputs each) as floats into PANEL
 * (the tier's to_float, or unpack_f), as OpenBLAS takes them.  Packed
 * rows (mm_float_unpacks) come out of their groups: R is then a group's
 * first row, and the rows end on a group's end or at the matrix's. */
void mm_float_rows(const struct ltensor *w, int r, int rows, float *panel);
/* Products that went through OpenBLAS's sgemm so far, in this process
 * (tests: which way a product took).  Any thread. */
unsigned long mm_blas_products(void);

#endif
