/* matmul.h -- out = W x for a batch of activation rows, over any weight type, on the pool. */
#ifndef NATTER_MATMUL_H
#define NATTER_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "natter/gguf.h"

#include "llm/tensor.h"

struct pool;

/* Batches at least this large go through sgemm on dequantized panels. */
#define MM_BLAS_MIN_BATCH 32
/* Bytes of dequantized weights per thread per sgemm call. */
#define MM_PANEL_BYTES (2u << 20)

/* Room for activations converted to a weight's vec_dot_type, and for each
 * thread's dequantized weight panel. */
struct mm_scratch {
	uint8_t *xq;
	size_t cap;
	float **panel;          /* (n_threads) panels of MM_PANEL_BYTES, or NULL */
	int n_panels;
	size_t panel_bytes;
};

/* N_THREADS panels are allocated only if N_BATCH can reach the BLAS path. */
int mm_scratch_init(struct mm_scratch *s, int n_batch, size_t max_in, int n_threads);
void mm_scratch_free(struct mm_scratch *s);

/* OUT (nt, d) = X (nt, n) @ W^T, W (d, n): a 2-D tensor (one matrix of a
 * stack is taken with ltensor_slice).  No allocation. */
void mm_matmul(struct pool *p, struct mm_scratch *s, float *out, int d, const float *x, int n,
	       const struct ltensor *w, int nt);

#endif
