/* quant.h -- tensor element types: block layouts, conversions and dot products. */
#ifndef NATTER_QUANT_H
#define NATTER_QUANT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "natter/gguf.h"

typedef uint16_t qhalf;          /* IEEE binary16, as stored in files */

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

/* Every layout below is the one ggml writes into GGUF files. */

typedef struct { qhalf d; uint8_t qs[QK4_0 / 2]; } block_q4_0;   /* x = (q - 8) * d; low nibbles first half */
static_assert(sizeof(block_q4_0) == 18, "q4_0 size");

typedef struct { qhalf d, m; uint8_t qs[QK4_1 / 2]; } block_q4_1;  /* x = q * d + m */
static_assert(sizeof(block_q4_1) == 20, "q4_1 size");

typedef struct { qhalf d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } block_q5_0;   /* x = (q - 16) * d */
static_assert(sizeof(block_q5_0) == 22, "q5_0 size");

typedef struct { qhalf d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } block_q5_1;  /* x = q * d + m */
static_assert(sizeof(block_q5_1) == 24, "q5_1 size");

typedef struct { qhalf d; int8_t qs[QK8_0]; } block_q8_0;          /* x = q * d */
static_assert(sizeof(block_q8_0) == 34, "q8_0 size");

typedef struct { qhalf d, s; int8_t qs[QK8_1]; } block_q8_1;       /* s = d * sum(qs) */
static_assert(sizeof(block_q8_1) == 36, "q8_1 size");

/* 16 sub-blocks of 16: 4-bit scale and 4-bit min each; 2-bit quants. */
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; qhalf d, dmin; } block_q2_K;
static_assert(sizeof(block_q2_K) == 84, "q2_K size");

/* 16 sub-blocks of 16: 6-bit scales; 2 low bits in qs, high bit in hmask. */
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; qhalf d; } block_q3_K;
static_assert(sizeof(block_q3_K) == 110, "q3_K size");

/* 8 sub-blocks of 32: 6-bit scales and mins packed in 12 bytes; 4-bit quants. */
typedef struct { qhalf d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; } block_q4_K;
static_assert(sizeof(block_q4_K) == 144, "q4_K size");

typedef struct { qhalf d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;
static_assert(sizeof(block_q5_K) == 176, "q5_K size");

/* 16 sub-blocks of 16: 8-bit scales; 4 low bits in ql, 2 high bits in qh. */
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; qhalf d; } block_q6_K;
static_assert(sizeof(block_q6_K) == 210, "q6_K size");

/* Non-linear 4-bit: each nibble indexes q_iq4nl_values; x = d * value. */
#define QK4_NL 32
typedef struct { qhalf d; uint8_t qs[QK4_NL / 2]; } block_iq4_nl;  /* low nibbles first half, as Q4_0 */
static_assert(sizeof(block_iq4_nl) == 18, "iq4_nl size");

/* 8 sub-blocks of 32 with 6-bit scales (x = d * (ls - 32) * value): low 4
 * bits in scales_l (two per byte), high 2 bits in scales_h; nibbles as IQ4_NL. */
typedef struct { qhalf d; uint16_t scales_h; uint8_t scales_l[QK_K / 64]; uint8_t qs[QK_K / 2]; } block_iq4_xs;
static_assert(sizeof(block_iq4_xs) == 136, "iq4_xs size");

/* The 16 levels of the IQ4 grids. */
extern const int8_t q_iq4nl_values[16];

/* Activations for K-quant dot products: float scale, sums of each 16. */
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K;
static_assert(sizeof(block_q8_K) == 292, "q8_K size");

/* Conversions between binary16 / bfloat16 and float. */
float q_f16_to_f32(qhalf h);
qhalf q_f32_to_f16(float f);
float q_bf16_to_f32(uint16_t h);
uint16_t q_f32_to_bf16(float f);

/* A row dot product: *S = sum over N elements of X (weight type) times Y
 * (activations, in the type's vec_dot_type).  N is a multiple of the block. */
typedef void (*q_vec_dot_fn)(int n, float *s, const void *x, const void *y);
typedef void (*q_to_float_fn)(const void *x, float *y, int64_t n);
typedef void (*q_from_float_fn)(const float *x, void *y, int64_t n);

struct q_traits {
	int supported;                 /* natter can compute with this type */
	enum ggml_type vec_dot_type;   /* what activations are converted to */
	q_to_float_fn to_float;        /* reference dequantization */
	q_from_float_fn from_float;    /* reference quantization (NULL if none) */
	q_vec_dot_fn vec_dot_ref;      /* portable scalar dot product */
	q_vec_dot_fn vec_dot;          /* the fastest for this CPU (set by q_init) */
	q_to_float_fn to_float_fast;   /* same, for dequantization */
	q_from_float_fn from_float_fast; /* same, for quantizing activations */
};

/* Float vector helpers used around the matrix products (the FFN's SiLU, RMS norm). */
struct q_vops {
	/* G[i] = silu(G[i]) * U[i] = G[i] / (1 + exp(-G[i])) * U[i], i < N. */
	void (*silu_mul)(int n, float *g, const float *u);
	/* O[i] = X[i] / sqrt(mean(X^2) + EPS) * W[i] (the mean in double). */
	void (*rmsnorm)(int n, float *o, const float *x, const float *w, float eps);
};
/* The fastest helpers for this CPU (after q_init), or the scalar ones. */
const struct q_vops *q_vops_get(void);
const struct q_vops *q_vops_ref(void);

/*
 * CPU tiers.  The kernels of every tier are built into the one binary; the
 * best tier this CPU (and OS) supports is chosen once, on first use, unless
 * the environment variable NATTER_CPU names a lower one.  Tier numbers
 * follow the table in src/llm/cpu.c (0 is "scalar", the portable C).
 */
/* Chooses the tier (once; thread-safe; every later call returns the same
 * result).  Returns 0, or -1 with ERR filled when NATTER_CPU names an
 * unknown tier or one this CPU lacks: the kernels are then the best tier's,
 * and a front end should refuse to run. */
int q_cpu_init(char *err, size_t errlen);
/* Same as q_cpu_init without the message (kept for older callers). */
void q_init(int unused);
int q_cpu_tier_count(void);
const char *q_cpu_tier_name(int tier);       /* "avx2", ... (NULL if out of range) */
const char *q_cpu_tier_isa(int tier);        /* what the tier needs, for people */
int q_cpu_tier_available(int tier);          /* built in and supported here */
int q_cpu_tier_best(void);                   /* the best available tier */
int q_cpu_tier_chosen(void);                 /* the tier in use (after init) */
/* The chosen tier's name: what the kernels are. */
const char *q_cpu_features(void);
/* How far ahead (bytes) TIER's GEMVs ask for the weights, in packed
 * 32-weight block groups (*B32), in packed K-quant ones (*K) and in F32,
 * F16 and BF16 rows (*F); 0: the hardware alone (the scalar tier always).
 * *L2: 1 when the packed groups also ask for what follows into L2.
 * *WHY: the CPU maker whose measured distances they are, or
 * "NATTER_PREFETCH" (B32,K[,F[,L2]]) when set. */
void q_cpu_prefetch(int tier, int *b32, int *k, int *f, int *l2, const char **why);

/*
 * Float weights (F32, F16, and BF16 where the tier's GEMM takes float
 * activations) in batches of MM_BLAS_MIN_BATCH (32) tokens or more go
 * through natter's own tiles or through OpenBLAS's sgemm on converted
 * panels, whichever measured faster on this machine: each type is timed
 * once per class of batches (below Q_FLOAT_GEMM_SPLIT tokens, on 128;
 * from it, on 512), on first use, from the calling thread
 * (src/llm/gemm-choice.c).
 * The environment variable NATTER_FLOAT_GEMM=tiles|openblas|auto forces
 * one way.  Any thread.
 */
#define Q_FLOAT_GEMM_SPLIT 256
enum q_float_gemm { Q_FLOAT_GEMM_AUTO = -1, Q_FLOAT_GEMM_TILES = 0, Q_FLOAT_GEMM_OPENBLAS = 1 };
/* Reads NATTER_FLOAT_GEMM (once).  Returns 0, or -1 with ERR filled when
 * it is none of the three (it then counts as auto; a front end should
 * refuse to run). */
int q_float_gemm_init(char *err, size_t errlen);
/* Forces a way for every type (AUTO: back to measuring).  For tests; no
 * product may run meanwhile. */
void q_float_gemm_set(enum q_float_gemm g);
/* The way type T's batches of NT tokens go, measured now if not yet (for
 * NT's class); MS (may be NULL)
 * gets the tiles' and OpenBLAS's best times in milliseconds, 0 when not
 * measured (forced, or a type with one way only). */
enum q_float_gemm q_float_gemm_choice(enum ggml_type t, int nt, double ms[2]);
/* Whether the tier packs T's rows at load (src/llm/pack.c): its tiles
 * are then timed on packed rows, and a model's T matrices are packed
 * only where both classes chose the tiles (packed rows have no OpenBLAS
 * way). */
int q_float_gemm_packs(enum ggml_type t);
/* "tiles", "openblas", "auto". */
const char *q_float_gemm_name(enum q_float_gemm g);

const struct q_traits *q_traits_get(enum ggml_type t);

/* Bytes of one row of N elements of type T. */
size_t q_row_size(enum ggml_type t, int64_t n);

#endif
