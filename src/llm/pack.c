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
 * d and m, then 4 of nibbles; Q5_0 (Q5_1: after d and m): 5 units of
 * 5-bit levels recoded (recode_q5); Q8_0: 8 of levels; Q4_K: the 12
 * bytes of sub-block scales, then 32 units of nibbles; Q5_K: scales, high
 * bits, nibbles; Q6_K's d its last 2: its 208 other bytes recoded
 * (recode_q6); IQ4_XS: its header d and scales_h, then scales_l,
 * nibbles; F16 and BF16: blocks of two inputs, one unit, no header, rows
 * of an even length).  Rows go in groups of G (the tier's vector of 32-bit lanes:
 * 16 on AVX-512, 8 on AVX2) from the matrix's first row; a group holds,
 * block column by block column, each scale of the G rows side by side,
 * then each unit of the G rows side by side:
 *   [b][scale 0 of rows 0..G-1][scale 1 ...][unit 0 of rows 0..G-1]...
 * so that one vector of G lanes is the same 4 bytes of every row (a
 * header of one scale goes after the units where that puts them on whole
 * vectors: q_pack_header_after).  A
 * group takes the bytes its rows took, so packing is done in place; the
 * rows past the last whole group stay as they were.
 */
/* Little-endian words: one load or store on the hosts natter runs on
 * (byte by byte, the put was a quarter of Q6_K's recoding time). */
static uint32_t
le32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	return v;
}

static void
put_le32(uint8_t *p, uint32_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	memcpy(p, &v, 4);
}

/*
 * Q5_0's and Q5_1's 20 bytes after the header: in the file 4 of fifth
 * bits (element e's at bit e of the little-endian word), then 16 of
 * nibbles (byte j: element j low, j + 16 high).  Packed, as levels L
 * (0..31) of elements 4g + i and 16 + 4g + i want to come out of byte i
 * of units 1 + g and 0 (g < 4): unit 1 + g's byte i is L(4g + i) in bits
 * 0..4 and L(16 + 4g + i)'s top 3 bits in bits 5..7; unit 0's byte i
 * holds L(16 + 4g + i)'s low 2 bits at bits 2g, 2g + 1.  TO_PACKED, or
 * back.
 */
static void
recode_q5(uint8_t *u, int to_packed)
{
	uint8_t lv[32];

	if (to_packed) {
		const uint32_t h = le32(u);
		for (int e = 0; e < 32; e++)
			lv[e] = (uint8_t)((u[4 + e % 16] >> 4 * (e / 16) & 15) | (h >> e & 1) << 4);
		memset(u, 0, 4);
		for (int e = 0; e < 16; e++) {
			const int g = e / 4, i = e % 4;
			u[4 + e] = (uint8_t)(lv[e] | (lv[e + 16] >> 2) << 5);
			u[i] |= (uint8_t)((lv[e + 16] & 3) << 2 * g);
		}
	} else {
		uint32_t h = 0;
		for (int e = 0; e < 16; e++) {
			const int g = e / 4, i = e % 4;
			lv[e] = u[4 + e] & 31;
			lv[e + 16] = (uint8_t)((u[4 + e] >> 5) << 2 | (u[i] >> 2 * g & 3));
		}
		for (int e = 0; e < 32; e++)
			h |= (uint32_t)(lv[e] >> 4) << e;
		put_le32(u, h);
		for (int j = 0; j < 16; j++)
			u[4 + j] = (uint8_t)((lv[j] & 15) | (lv[j + 16] & 15) << 4);
	}
}

/*
 * Q6_K's 208 bytes around d: in the file 128 of low nibbles, 64 of high
 * bit pairs, 16 of scales, each byte serving elements 32 or 64 apart
 * (32 elements h * 128 + q * 32 + l: nibble q / 2 of ql byte 64 h + 32
 * (q % 2) + l, bits 2 q of qh byte 32 h + l).  Packed: the scales, then
 * each 32 elements' 24 bytes together (read once, in order): 16 of
 * nibbles (byte m: element m low, m + 16 high), 8 of high bit pairs
 * (element 16 c + 4 i + j's at bits 2 i of byte 4 c + j).  TO_PACKED, or
 * back; four bytes at a time.
 */
static void
recode_q6(uint8_t *u, int to_packed)
{
	uint8_t out[208];
	const uint32_t m4 = 0x0F0F0F0F, m2 = 0x03030303;

	if (to_packed) {
		for (int s = 0; s < 8; s++) {
			const int h = s / 4, q = s % 4, nib = 4 * (q / 2);
			const uint8_t *ql = u + 64 * h + 32 * (q % 2), *qh = u + 128 + 32 * h;
			uint8_t *pk = out + 16 + 24 * s;
			for (int m = 0; m < 16; m += 4)
				put_le32(pk + m, (le32(ql + m) >> nib & m4) | (le32(ql + m + 16) >> nib & m4) << 4);
			for (int c = 0; c < 2; c++) {
				uint32_t w = 0;
				for (int i = 0; i < 4; i++)
					w |= (le32(qh + 16 * c + 4 * i) >> 2 * q & m2) << 2 * i;
				put_le32(pk + 16 + 4 * c, w);
			}
		}
		memcpy(out, u + 192, 16);   /* the scales */
	} else {
		uint32_t ql[32] = { 0 }, qh[16] = { 0 };   /* the file's 128 + 64 bytes as words */
		for (int s = 0; s < 8; s++) {
			const int h = s / 4, q = s % 4, nib = 4 * (q / 2);
			const uint8_t *pk = u + 16 + 24 * s;
			uint32_t *l = ql + 16 * h + 8 * (q % 2), *hw = qh + 8 * h;
			for (int m = 0; m < 4; m++) {
				const uint32_t v = le32(pk + 4 * m);
				l[m] |= (v & m4) << nib;
				l[m + 4] |= (v >> 4 & m4) << nib;
			}
			for (int c = 0; c < 2; c++) {
				const uint32_t v = le32(pk + 16 + 4 * c);
				for (int i = 0; i < 4; i++)
					hw[4 * c + i] |= (v >> 2 * i & m2) << 2 * q;
			}
		}
		for (int i = 0; i < 32; i++)
			put_le32(out + 4 * i, ql[i]);
		for (int i = 0; i < 16; i++)
			put_le32(out + 128 + 4 * i, qh[i]);
		memcpy(out + 192, u, 16);
	}
	memcpy(u, out, sizeof(out));
}

/* A type's packed layout: its header and, where the GEMV wants the bits
 * elsewhere, the recoding of the units (all of them, in the block's
 * order, without the header).  A header is a block's first bytes (hoff
 * 0) or its last (hoff + hlen the block's size): move_block relies on
 * it. */
struct layout {
	enum ggml_type type;
	int hlen, hoff;   /* the header's bytes and where the block has them */
	void (*recode)(uint8_t *units, int to_packed);
	int bs;           /* bytes per block, when not the type's (0) */
};

static const struct layout packed_types[] = {
	{ GGML_TYPE_Q4_0, 2, 0, NULL, 0 }, { GGML_TYPE_Q4_1, 4, 0, NULL, 0 }, { GGML_TYPE_Q5_0, 2, 0, recode_q5, 0 },
	{ GGML_TYPE_Q5_1, 4, 0, recode_q5, 0 }, { GGML_TYPE_Q8_0, 2, 0, NULL, 0 }, { GGML_TYPE_IQ4_NL, 2, 0, NULL, 0 },
	{ GGML_TYPE_Q2_K, 4, 80, NULL, 0 }, { GGML_TYPE_Q3_K, 2, 108, NULL, 0 }, { GGML_TYPE_Q4_K, 4, 0, NULL, 0 },
	{ GGML_TYPE_Q5_K, 4, 0, NULL, 0 }, { GGML_TYPE_Q6_K, 2, 208, recode_q6, 0 }, { GGML_TYPE_IQ4_XS, 4, 0, NULL, 0 },
	/* Half floats: each unit a pair of inputs, no header. */
	{ GGML_TYPE_F16, 0, 0, NULL, 4 }, { GGML_TYPE_BF16, 0, 0, NULL, 4 },
};

/* TYPE's packed layout (NULL: TYPE has none). */
static const struct layout *
layout_of(enum ggml_type type)
{
	for (size_t i = 0; i < sizeof(packed_types) / sizeof(packed_types[0]); i++)
		if (packed_types[i].type == type)
			return &packed_types[i];
	return NULL;
}

/* Bytes of L's blocks. */
static size_t
block_bytes(const struct layout *l)
{
	return l->bs ? (size_t)l->bs : ggml_type_info_get(l->type)->type_size;
}

int
q_pack_supported(enum ggml_type type, size_t row_bytes)
{
	const struct layout *l = layout_of(type);
	return l && row_bytes % block_bytes(l) == 0;
}

int
q_packs(const struct q_kernels *k, enum ggml_type type, size_t row_bytes)
{
	return (unsigned)type < GGML_TYPE_COUNT && k->pack_rows && k->t[type].gemv_packed &&
	    q_pack_supported(type, row_bytes);
}

int
q_pack_header_offset(enum ggml_type type)
{
	const struct layout *l = layout_of(type);
	return l && l->hlen ? l->hoff : -1;
}

/* Where a column COL of G blocks of L (BS bytes each) has its header:
 * after the units (q_pack_header_after) or first. */
static size_t
header_pos(const struct layout *l, size_t bs, const void *col, int g)
{
	return q_pack_header_after(l->hlen, col, g) ? (bs - (size_t)l->hlen) * g : 0;
}

int
q_pack_header_bytes(enum ggml_type type)
{
	const struct layout *l = layout_of(type);
	return l ? l->hlen : 0;
}

size_t
q_pack_header_pos(enum ggml_type type, const void *col, int g)
{
	const struct layout *l = layout_of(type);
	return l && l->hlen ? header_pos(l, block_bytes(l), col, g) : 0;
}

/* Block BLK of a row to (TO_PACKED) or from its place in column COL of a
 * group of G, as row J, in layout L.  The header is the block's first or
 * last bytes, so its units are contiguous; they are recoded in BLK (a
 * copy of the row when packing, the row read back when not). */
static void
move_block(const struct layout *l, uint8_t *col, uint8_t *blk, size_t bs, int g, int j, int to_packed)
{
	const size_t units = (bs - (size_t)l->hlen) / 4, step = (size_t)g * 4, hpos = header_pos(l, bs, col, g);
	uint8_t *hc = col + hpos;
	uint8_t *ub = blk + (l->hoff ? 0 : l->hlen), *uc = col + (hpos ? 0 : (size_t)l->hlen * g) + (size_t)j * 4;

	for (int h = 0; h < l->hlen / 2; h++) {
		uint8_t *pc = hc + ((size_t)h * g + j) * 2, *pb = blk + l->hoff + 2 * h;
		memcpy(to_packed ? pc : pb, to_packed ? pb : pc, 2);
	}
	if (to_packed) {
		if (l->recode)
			l->recode(ub, 1);
		for (size_t u = 0; u < units; u++)
			memcpy(uc + u * step, ub + 4 * u, 4);
	} else {
		for (size_t u = 0; u < units; u++)
			memcpy(ub + 4 * u, uc + u * step, 4);
		if (l->recode)
			l->recode(ub, 0);
	}
}

void
q_pack_matrix(enum ggml_type type, void *data, int64_t rows, size_t row_bytes, int g, void *scratch)
{
	const struct layout *l = layout_of(type);
	uint8_t *tmp = scratch;

	if (!q_pack_supported(type, row_bytes) || g < 1)
		return;
	const size_t bs = block_bytes(l);
	const int64_t nb = (int64_t)(row_bytes / bs);
	for (int64_t r0 = 0; r0 + g <= rows; r0 += g) {
		uint8_t *grp = (uint8_t *)data + (size_t)r0 * row_bytes;
		memcpy(tmp, grp, (size_t)g * row_bytes);
		if (bs == 4 && !l->hlen && !l->recode) {
			/* A block is a unit, as it is: a transpose of 4-byte words
			 * (move_block a word at a time took most of a 1 GB F16
			 * model's load). */
			for (int j = 0; j < g; j++)
				for (int64_t b = 0; b < nb; b++)
					memcpy(grp + ((size_t)b * g + j) * 4, tmp + (size_t)j * row_bytes + (size_t)b * 4, 4);
			continue;
		}
		for (int64_t b = 0; b < nb; b++)
			for (int j = 0; j < g; j++)
				move_block(l, grp + (size_t)b * g * bs, tmp + (size_t)j * row_bytes + (size_t)b * bs, bs, g,
				    j, 1);
	}
}

void
q_unpack_row(enum ggml_type type, const void *data, int64_t rows, size_t row_bytes, int g, int64_t r, void *out)
{
	const struct layout *l = layout_of(type);

	if (g < 1 || r >= rows / g * g || !q_pack_supported(type, row_bytes)) {
		memcpy(out, (const uint8_t *)data + (size_t)r * row_bytes, row_bytes);
		return;
	}
	const size_t bs = block_bytes(l);
	const int64_t nb = (int64_t)(row_bytes / bs);
	uint8_t *grp = (uint8_t *)data + (size_t)(r / g * g) * row_bytes;   /* only read */
	for (int64_t b = 0; b < nb; b++)
		move_block(l, grp + (size_t)b * g * bs, (uint8_t *)out + (size_t)b * bs, bs, g, (int)(r % g), 0);
}
