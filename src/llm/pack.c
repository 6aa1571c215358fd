/* pack.c -- weight rows interleaved at load for the tiers' packed kernels, and rows read back from them. */
#include "config.h"

#include <string.h>

#include "llm/quant-impl.h"

/*
 * The packed layout of a matrix of a 32-element block type whose blocks
 * are a 2-byte scale and a payload of whole 4-byte units (Q4_0 and
 * IQ4_NL: 4 units of nibbles; Q5_0: its 32 high bits, then 4 of nibbles;
 * Q8_0: 8 of levels).  Rows go in groups of G (the tier's vector of 32-bit
 * lanes: 16 on AVX-512, 8 on AVX2) from the matrix's first row; a group
 * holds, block column by block column, the G rows' scales side by side,
 * then each unit of the G rows side by side:
 *   [b][scale of rows 0..G-1][unit 0 of rows 0..G-1][unit 1 ...]...
 * so that one vector of G lanes is the same 4 bytes of every row.  A
 * group takes the bytes its rows took, so packing is done in place; the
 * rows past the last whole group stay as they were.
 */

int
q_pack_supported(enum ggml_type type)
{
	return type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q5_0 || type == GGML_TYPE_Q8_0 || type == GGML_TYPE_IQ4_NL;
}

void
q_pack_matrix(enum ggml_type type, void *data, int64_t rows, size_t row_bytes, int g, void *scratch)
{
	const size_t bs = ggml_type_info_get(type)->type_size, units = (bs - 2) / 4;
	const int64_t nb = (int64_t)(row_bytes / bs);
	uint8_t *tmp = scratch;

	if (!q_pack_supported(type) || g < 1)
		return;
	for (int64_t r0 = 0; r0 + g <= rows; r0 += g) {
		uint8_t *grp = (uint8_t *)data + (size_t)r0 * row_bytes;
		memcpy(tmp, grp, (size_t)g * row_bytes);
		for (int64_t b = 0; b < nb; b++) {
			uint8_t *col = grp + (size_t)b * g * bs;
			for (int j = 0; j < g; j++) {
				const uint8_t *blk = tmp + (size_t)j * row_bytes + (size_t)b * bs;
				memcpy(col + 2 * j, blk, 2);
				for (size_t u = 0; u < units; u++)
					memcpy(col + 2 * (size_t)g + (u * g + j) * 4, blk + 2 + 4 * u, 4);
			}
		}
	}
}

void
q_unpack_row(enum ggml_type type, const void *data, int64_t rows, size_t row_bytes, int g, int64_t r, void *out)
{
	const size_t bs = ggml_type_info_get(type)->type_size, units = (bs - 2) / 4;
	const int64_t nb = (int64_t)(row_bytes / bs);
	const uint8_t *src = (const uint8_t *)data + (size_t)r * row_bytes;
	uint8_t *o = out;

	if (g < 1 || r >= rows / g * g) {
		memcpy(out, src, row_bytes);
		return;
	}
	const uint8_t *grp = (const uint8_t *)data + (size_t)(r / g * g) * row_bytes;
	const int j = (int)(r % g);
	for (int64_t b = 0; b < nb; b++) {
		const uint8_t *col = grp + (size_t)b * g * bs;
		uint8_t *blk = o + (size_t)b * bs;
		memcpy(blk, col + 2 * j, 2);
		for (size_t u = 0; u < units; u++)
			memcpy(blk + 2 + 4 * u, col + 2 * (size_t)g + (u * g + j) * 4, 4);
	}
}
