/* tensor.h -- the one handle for a weight tensor of the core: a typed view into the model's map. */
#ifndef NATTER_TENSOR_H
#define NATTER_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "natter/gguf.h"

/*
 * A matrix W (ne1 rows of ne0 elements, used as y = W x) or a vector
 * (ne1 = 1), or a stack of ne2 such matrices (the experts of a
 * mixture-of-experts layer, GGUF dims {ne0, ne1, ne2}).  DATA is borrowed
 * from the map (or, for a repacked or converted copy, from whoever made
 * it); a tensor that a file does not have has DATA NULL.
 */
struct ltensor {
	const void *data;
	enum ggml_type type;
	int64_t ne0;            /* row length: the inputs */
	int64_t ne1;            /* rows: the outputs */
	int64_t ne2;            /* matrices in the stack (1 unless experts) */
	size_t row_bytes;       /* bytes of one row */
	size_t mat_bytes;       /* bytes of one ne0 x ne1 matrix: the stride between experts */
	int packed;             /* each matrix's rows packed in groups of this many (pack.c), or 0: as in the file */
};

/* The E-th matrix of a stack, as a 2-D tensor (E < ne2). */
static inline struct ltensor
ltensor_slice(const struct ltensor *t, int64_t e)
{
	struct ltensor s = *t;
	s.data = (const uint8_t *)t->data + (size_t)e * t->mat_bytes;
	s.ne2 = 1;
	return s;
}

#endif
