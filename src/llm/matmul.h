/* matmul.h -- out = W x for a batch of activation rows, over any weight type, on the pool. */
#ifndef NATTER_MATMUL_H
#define NATTER_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "natter/gguf.h"

struct pool;

struct mm_weight {
	const void *data;       /* (ne1 rows of ne0 elements) in TYPE */
	enum ggml_type type;
	int64_t ne0, ne1;
	size_t row_bytes;
};

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

/* OUT (nt, d) = X (nt, n) @ W^T, W (d, n).  No allocation. */
void mm_matmul(struct pool *p, struct mm_scratch *s, float *out, int d, const float *x, int n,
	       const struct mm_weight *w, int nt);

#endif
