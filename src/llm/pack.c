/* pack.c -- weight rows interleaved at load for the tiers' packed kernels, and rows read back from them. */
#include "config.h"

#include <string.h>

#include "llm/quant-impl.h"

/*
 * The packed layout of a matrix.  A block is a few f16 scales (the
 * header: HLEN bytes at its start) and the rest, whole 4-byte units in
 * the block's order, around the header (Q2_K's d and dmin are its last 4
 * bytes: its units are the 4 of scales and mins, then 16 of 2-bit levels;
 * Q3_K's d its last 2: 8 units of high bits, 16 of 2-bit levels, 3 of
 * scales;
 * Q4_0, IQ4_NL: 4 units of nibbles; Q4_1: its header
 * d and m, then 4 of nibbles; Q5_0: its high bits, then 4 of nibbles;
 * Q5_1: d and m, high bits, nibbles (the high bits transposed: element
 * e's at bit e / 4 of byte e % 4, as the 4 elements of a 4-byte unit of
 * levels want them, Q5_K's order); Q8_0: 8 of levels; Q4_K: the 12
 * bytes of sub-block scales, then 32 units of nibbles; Q5_K: scales, high
 * bits, nibbles; IQ4_XS: its header d and scales_h, then scales_l,
 * nibbles).  Rows go in groups of G (the tier's vector of 32-bit lanes:
 * 16 on AVX-512, 8 on AVX2) from the matrix's first row; a group holds,
 * block column by block column, each scale of the G rows side by side,
 * then each unit of the G rows side by side:
 *   [b][scale 0 of rows 0..G-1][scale 1 ...][unit 0 of rows 0..G-1]...
 * so that one vector of G lanes is the same 4 bytes of every row.  A
 * group takes the bytes its rows took, so packing is done in place; the
 * rows past the last whole group stay as they were.
 */
static const struct {
	enum ggml_type type;
	int hlen, hoff;     /* the header's bytes and where the block has them */
	int qh5;            /* unit 0 is 32 fifth bits, transposed */
} packed_types[] = {
	{ GGML_TYPE_Q4_0, 2, 0, 0 }, { GGML_TYPE_Q4_1, 4, 0, 0 }, { GGML_TYPE_Q5_0, 2, 0, 1 }, { GGML_TYPE_Q5_1, 4, 0, 1 },
	{ GGML_TYPE_Q8_0, 2, 0, 0 }, { GGML_TYPE_IQ4_NL, 2, 0, 0 },
	{ GGML_TYPE_Q2_K, 4, 80, 0 }, { GGML_TYPE_Q3_K, 2, 108, 0 }, { GGML_TYPE_Q4_K, 4, 0, 0 },
	{ GGML_TYPE_Q5_K, 4, 0, 0 }, { GGML_TYPE_IQ4_XS, 4, 0, 0 },
};

/* The header's bytes of TYPE's packed layout (0: TYPE has none), its
 * offset in a block as in the file, whether its unit 0 is transposed. */
static int
header_bytes(enum ggml_type type, int *hoff, int *qh5)
{
	for (size_t i = 0; i < sizeof(packed_types) / sizeof(packed_types[0]); i++)
		if (packed_types[i].type == type) {
			*hoff = packed_types[i].hoff;
			*qh5 = packed_types[i].qh5;
			return packed_types[i].hlen;
		}
	return 0;
}

/* 32 fifth bits, element e's at bit e of the little-endian word (the
 * file's order), moved to bit e / 4 of byte e % 4 (TO_PACKED), or back. */
static void
transpose_bits(uint8_t *u, int to_packed)
{
	uint32_t w = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24, o = 0;
	for (int e = 0; e < 32; e++) {
		const int p = 8 * (e % 4) + e / 4;
		o |= (w >> (to_packed ? e : p) & 1u) << (to_packed ? p : e);
	}
	for (int i = 0; i < 4; i++)
		u[i] = (uint8_t)(o >> 8 * i);
}

int
q_pack_supported(enum ggml_type type)
{
	int hoff = 0, qh5 = 0;
	return header_bytes(type, &hoff, &qh5) > 0;
}

int
q_pack_header_offset(enum ggml_type type)
{
	int hoff = -1, qh5 = 0;
	return header_bytes(type, &hoff, &qh5) > 0 ? hoff : -1;
}

/* Block BLK of a row to (TO_PACKED) or from its place in column COL of a
 * group of G, as row J.  The units are the block's bytes around the
 * header, in their order; QH5: unit 0's bits transposed. */
static void
move_block(uint8_t *col, uint8_t *blk, size_t bs, int hlen, int hoff, int qh5, int g, int j, int to_packed)
{
	const size_t units = (bs - (size_t)hlen) / 4;
	for (int h = 0; h < hlen / 2; h++) {
		uint8_t *pc = col + ((size_t)h * g + j) * 2, *pb = blk + hoff + 2 * h;
		memcpy(to_packed ? pc : pb, to_packed ? pb : pc, 2);
	}
	for (size_t u = 0; u < units; u++) {
		const size_t at = 4 * u < (size_t)hoff ? 4 * u : 4 * u + (size_t)hlen;
		uint8_t *pc = col + (size_t)hlen * g + (u * g + j) * 4, *pb = blk + at;
		memcpy(to_packed ? pc : pb, to_packed ? pb : pc, 4);
		if (qh5 && u == 0)
			transpose_bits(to_packed ? pc : pb, to_packed);
	}
}

void
q_pack_matrix(enum ggml_type type, void *data, int64_t rows, size_t row_bytes, int g, void *scratch)
{
	const size_t bs = ggml_type_info_get(type)->type_size;
	const int64_t nb = (int64_t)(row_bytes / bs);
	int hoff = 0, qh5 = 0;
	const int hlen = header_bytes(type, &hoff, &qh5);
	uint8_t *tmp = scratch;

	if (!hlen || g < 1)
		return;
	for (int64_t r0 = 0; r0 + g <= rows; r0 += g) {
		uint8_t *grp = (uint8_t *)data + (size_t)r0 * row_bytes;
		memcpy(tmp, grp, (size_t)g * row_bytes);
		for (int64_t b = 0; b < nb; b++)
			for (int j = 0; j < g; j++)
				move_block(grp + (size_t)b * g * bs, tmp + (size_t)j * row_bytes + (size_t)b * bs, bs, hlen,
				    hoff, qh5, g, j, 1);
	}
}

void
q_unpack_row(enum ggml_type type, const void *data, int64_t rows, size_t row_bytes, int g, int64_t r, void *out)
{
	const size_t bs = ggml_type_info_get(type)->type_size;
	const int64_t nb = (int64_t)(row_bytes / bs);
	int hoff = 0, qh5 = 0;
	const int hlen = header_bytes(type, &hoff, &qh5);

	if (g < 1 || r >= rows / g * g || !hlen) {
		memcpy(out, (const uint8_t *)data + (size_t)r * row_bytes, row_bytes);
		return;
	}
	uint8_t *grp = (uint8_t *)data + (size_t)(r / g * g) * row_bytes;   /* only read */
	for (int64_t b = 0; b < nb; b++)
		move_block(grp + (size_t)b * g * bs, (uint8_t *)out + (size_t)b * bs, bs, hlen, hoff, qh5, g, (int)(r % g),
		    0);
}
