/* quant-impl.h -- internals shared by the reference kernels, the per-tier kernel files and matmul.c. */
#ifndef NATTER_QUANT_IMPL_H
#define NATTER_QUANT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "natter/quant.h"

extern struct q_traits q_traits_table[GGML_TYPE_COUNT];

/* A K-quant block decoded to integer levels:
 * x[e] = d * sc[e / sub] * q[e] - dmin * mn[e / sub]. */
struct kdec {
	int8_t q[QK_K];
	int16_t sc[16];
	int16_t mn[16];
	int sub;            /* 16 or 32 */
	float d, dmin;
};

void q_kdec_q2_K(const void *blk, struct kdec *k);
void q_kdec_q3_K(const void *blk, struct kdec *k);
void q_kdec_q4_K(const void *blk, struct kdec *k);
void q_kdec_q5_K(const void *blk, struct kdec *k);
void q_kdec_q6_K(const void *blk, struct kdec *k);
void q_q8_K_from_float_ref(const float *x, void *y, int64_t n);

/*
 * Activation formats of the matrix products.  A product quantizes (or
 * converts) its activations once per call into one of these, row by row
 * (one row per token), then runs a tier's kernel over the weight rows.
 */
enum q_act {
	Q_ACT_F32,      /* the floats as they are */
	Q_ACT_VDT,      /* the weight type's vec_dot_type (Q8_0, Q8_1, Q8_K): the dot/GEMV path */
	Q_ACT_Q8P,      /* "q8p", the int8 GEMM's rows, below */
	Q_ACT_BF16,     /* bfloat16, rounded to nearest (the BF16 GEMM of the avx512bf16 tier) */
};

/*
 * A q8p row of N elements (N a multiple of 32, NB = N / 32 blocks):
 *   int8    qs[N]       levels, x ~ d[b] * qs[i] for i in block b
 *   float   d[NB]       block scales
 *   float   s32[NB]     d[b] * (sum of the block's levels)
 *   float   s16[2*NB]   d[b] * (sum of each half of the block's levels)
 *   int32_t n32[NB]     minus the sum of the block's levels
 *   int32_t n16[2*NB]   minus the sum of each half's
 * Rows are Q8P_ROW_BYTES(N) apart (a multiple of 64).
 */
#define Q8P_ROW_BYTES(n) ((((size_t)(n) * 15 / 8) + 63) & ~(size_t)63)
#define Q8P_D(row, n) ((float *)((uint8_t *)(row) + (n)))
#define Q8P_S32(row, n) (Q8P_D(row, n) + (n) / 32)
#define Q8P_S16(row, n) (Q8P_D(row, n) + 2 * ((n) / 32))
#define Q8P_N32(row, n) ((int32_t *)(Q8P_D(row, n) + 4 * ((n) / 32)))
#define Q8P_N16(row, n) (Q8P_N32(row, n) + (n) / 32)
/* Reference q8p quantizer and its inverse (tests, and the scalar tier). */
void q_q8p_from_float_ref(const float *x, void *row, int n);
void q_q8p_to_float(const void *row, float *x, int n);
void q_q8p_from_vdt(const void *vrow, enum ggml_type vt, void *row, int n);
/* Bytes of one activation row in format A for weights of type T. */
size_t q_act_row_bytes(enum q_act a, enum ggml_type t, int n);

/* Rows of W (W_STRIDE bytes apart; NR of them) times NT activation rows (in
 * the type's vec_dot_type, X_STRIDE bytes apart; or floats for F32, F16
 * and BF16): OUT[t * LDO + r] for r < NR, t < NT.  NT <= Q_GEMV_MAX_T. */
#define Q_GEMV_MAX_T 4
typedef void (*q_gemv_fn)(int n, float *out, size_t ldo, const uint8_t *w, size_t w_stride, int nr,
			  const uint8_t *x, size_t x_stride, int nt);

/* One GEMM call: OUT (nt, d) = X (nt, n) @ W^T for weight rows [r0, r1). */
struct q_gemm_args {
	enum ggml_type type;
	const uint8_t *w;       /* row 0 of W */
	size_t w_stride;        /* bytes between rows */
	int n;                  /* inputs: the row length */
	const uint8_t *x;       /* activations in the kernel's format */
	size_t x_stride;
	int nt;                 /* tokens */
	float *out;             /* (nt, ldo) */
	size_t ldo;
	int packed;             /* W's rows are packed (pack.c) in groups of the tier's pack_rows */
};
/* Computes rows [R0, R1) of the product for all tokens; SCRATCH holds
 * gemm_scratch(n) bytes, 64-byte aligned, owned by the calling thread. */
typedef void (*q_gemm_fn)(const struct q_gemm_args *a, int r0, int r1, void *scratch);
/* A packed group of half floats (pack_rows rows of N inputs, N even;
 * pack.c) as float rows, row q at OUT + q * LDO. */
typedef void (*q_unpack_fn)(const uint8_t *g, int n, float *out, size_t ldo);
/* Converts one activation row of N floats into the kernel's format. */
typedef void (*q_act_fn)(const float *x, void *row, int n);

struct q_type_kern {
	q_vec_dot_fn vec_dot;   /* one row, one token */
	q_to_float_fn to_float;
	q_gemv_fn gemv;         /* a few rows by up to Q_GEMV_MAX_T tokens */
	/* The GEMV of packed rows (pack.c; groups of the tier's pack_rows
	 * from W's first row, the rows past the last whole group as in the
	 * file), with q8p activations; NULL: this tier does not pack the
	 * type.  Its gemm takes packed rows too when q_gemm_args.packed. */
	q_gemv_fn gemv_packed;
	enum q_act gemv_act;    /* the activations gemv wants: VDT (the default) or Q8P */
	q_gemm_fn gemm;         /* NULL: this tier has none for the type */
	enum q_act gemm_act;    /* the activations gemm wants */
	int gemm_min_nt;        /* batches from this size use gemm (measured) */
	q_unpack_fn unpack_f;   /* NULL: matmul.c's mm_float_rows unpacks in two passes */
};

/* Everything one tier provides.  Entries it leaves NULL fall back to the
 * scalar tier's (filled by q_kern_complete). */
struct q_kernels {
	const char *name;
	struct q_type_kern t[GGML_TYPE_COUNT];
	q_from_float_fn act_q8_0, act_q8_1, act_q8_K;   /* vec_dot_type quantizers */
	q_act_fn act_q8p;
	/* The q8p rows q_q8p_from_vdt makes of this tier's Q8_0 or Q8_1 rows
	 * (_h: their scales in half precision) and of its Q8_K rows (_k; N a
	 * multiple of 256), in one pass; NULL: through those rows (the
	 * scalar tier). */
	q_act_fn act_q8p_h, act_q8p_k;
	q_act_fn act_bf16;
	size_t (*gemm_scratch)(int n);
	int gemm_rows;          /* row chunks handed to gemm are multiples of this */
	int pack_rows;          /* rows per packed group (pack.c); 0: the tier packs nothing */
	struct q_vops vops;
	/* Microbenchmarks of the machine's limits (sysbench.c), each run for
	 * about SECONDS on the calling thread: float fused multiply-adds
	 * (GFLOP/s, 2 per lane), int8 products as the GEMM does them (GOPS,
	 * a multiply and an add per byte pair), and a read of BYTES (a
	 * multiple of 256) that touches every byte, asking for the line
	 * AHEAD bytes on as it reads each (0: the hardware's prefetch
	 * alone); returns a checksum. */
	double (*peak_fma)(double seconds);
	double (*peak_i8)(double seconds);
	/* bfloat16 pair products as the BF16 GEMM does them (vdpbf16ps:
	 * GFLOP/s, a multiply and an add per pair's element); NULL where the
	 * tier has none (its BF16 weights go through float FMAs). */
	double (*peak_bf16)(double seconds);
	uint64_t (*read_sum)(const void *buf, size_t bytes, size_t ahead);
};

/*
 * Packed weights (pack.c): the rows of a matrix interleaved, G at a time,
 * so that one vector of a tier holds the same 4 bytes of G rows.
 * q_pack_supported: TYPE has a packed layout that rows of ROW_BYTES
 * take (F16 and BF16: rows of an even length).  q_pack_matrix: packs, in
 * place, each whole group of G rows of a matrix of ROWS rows (ROW_BYTES
 * apart), with SCRATCH of G * ROW_BYTES bytes.  q_unpack_row: row R of
 * such a matrix, as in the file, into OUT (ROW_BYTES).
 */
int q_pack_supported(enum ggml_type type, size_t row_bytes);
/* Whether kernel set K packs rows of TYPE, ROW_BYTES long: a packed GEMV
 * and a layout that takes them (a model's tensors at load, gemm-choice's
 * timing, alike). */
int q_packs(const struct q_kernels *k, enum ggml_type type, size_t row_bytes);
void q_pack_matrix(enum ggml_type type, void *data, int64_t rows, size_t row_bytes, int g, void *scratch);
void q_unpack_row(enum ggml_type type, const void *data, int64_t rows, size_t row_bytes, int g, int64_t r, void *out);
/* Where a block of TYPE has its packed header (the f16 scales), or -1 (none). */
int q_pack_header_offset(enum ggml_type type);
/*
 * A column of a group whose header is 2 bytes a row (Q4_0, Q5_0, Q8_0,
 * IQ4_NL, Q3_K, Q6_K: half a vector of G lanes) starts either on such a
 * vector's boundary or half-way: every other one.  Its units are the
 * vectors the kernels load; so where the column starts on the boundary
 * they come first and the header after them, elsewhere the header first:
 * either way no unit straddles two cache lines (on AVX-512 each of the
 * other half did, and the kernels ran 1.5 times slower on them).  The
 * choice follows the column's address (a file's tensors are aligned to
 * 32 bytes, not always 64), so packed rows stay where they were packed.
 * Whether column COL of G rows with HLEN bytes of header a row has it
 * after its units.
 */
static inline int
q_pack_header_after(int hlen, const void *col, int g)
{
	return hlen == 2 && ((uintptr_t)col & (4 * (uintptr_t)g - 1)) == 0;
}
/* The bytes a row of TYPE has in a packed column's header (0: none). */
int q_pack_header_bytes(enum ggml_type type);
/* Bytes from the start of column COL of a group of G rows of TYPE to its
 * header (0: first; none: 0). */
size_t q_pack_header_pos(enum ggml_type type, const void *col, int g);

/* The scalar tier (quant.c) and the x86 tiers (quant-<tier>.c): NULL when
 * a tier is not built (another architecture, or --disable-simd). */
const struct q_kernels *q_kern_scalar(void);
const struct q_kernels *q_kern_avx2(void);
const struct q_kernels *q_kern_avxvnni(void);
const struct q_kernels *q_kern_avx512(void);
const struct q_kernels *q_kern_avx512vnni(void);
const struct q_kernels *q_kern_avx512bf16(void);
const struct q_kernels *q_kern_amx(void);
/* Fills a tier's empty entries from the scalar tier's. */
void q_kern_complete(struct q_kernels *k);

/*
 * How far ahead (bytes) the GEMVs ask for the weights they will read: b32
 * in the packed 32-weight block groups (Q4_0 ... Q8_0, IQ4_NL), k in the
 * packed K-quants' and IQ4_XS's, f in F32, F16 and BF16 rows (packed or
 * not); 0 leaves it to the hardware.  l2 (0 or 1): the packed groups also
 * ask for what follows the stretch they read ahead, into L2 only (a
 * K-quant group's next column, a 32-weight block group's 2048 bytes).  Set
 * once, before any kernel runs, by cpu.c for the CPU at hand
 * (NATTER_PREFETCH to override); q_ahead_avx2 for the AVX2 tier,
 * q_ahead_wide for the AVX-VNNI and AVX-512 ones.
 */
struct q_ahead {
	int b32, k, f, l2;
};
extern struct q_ahead q_ahead_avx2, q_ahead_wide;

/* The chosen tier's kernels (initialising on first use), and any tier's
 * (NULL if that tier is not available here): tests compare them. */
const struct q_kernels *q_kern(void);
const struct q_kernels *q_kern_tier(int tier);
/* The activation quantizer of vec_dot_type VT in kernel set K. */
q_from_float_fn q_kern_act_vdt(const struct q_kernels *k, enum ggml_type vt);

#endif
