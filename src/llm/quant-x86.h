/* quant-x86.h -- the x86 kernels, written once and compiled once per tier by quant-<tier>.c. */
/*
 * Each tier's file defines QX_KERN (the name of its table function) and,
 * when the compiler targets that tier's instructions, QX_BUILD; then it
 * includes this file.  The instructions follow from the compiler flags
 * Makefile.am gives that file: __AVX512F__ (with BW, VL, DQ) selects
 * 512-bit tiles, __AVX512VNNI__ / __AVXVNNI__ the vpdpbusd int8 product,
 * __AVX512BF16__ the bfloat16 product.  Nothing here runs before cpu.c
 * has seen that the CPU has the tier.
 */
#ifndef QX_KERN
#error "quant-x86.h is included by a tier's file, which defines QX_KERN"
#endif

#include <stddef.h>

#include "llm/quant-impl.h"

#if !defined(QX_BUILD)

const struct q_kernels *
QX_KERN(void)
{
	return NULL;   /* this tier is not built: another CPU family, or --disable-simd */
}

#else

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "llm/quant-impl.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#define QX_512 1
#endif
#if (defined(__AVX512VNNI__) && defined(QX_512)) || defined(__AVXVNNI__)
#define QX_VNNI 1
#endif
#if defined(__AVX512BF16__) && defined(QX_512)
#define QX_BF16 1
#endif
#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(QX_512) && defined(QX_VNNI)
#define QX_AMX 1
#endif

#define ALWAYS static inline __attribute__((always_inline))
/* Full unrolling of the loops over a microkernel's tokens and groups, so
 * that its arrays of accumulators live in registers. */
#define UNROLL _Pragma("GCC unroll 16")
#define F16(h) _cvtsh_ss(h)

/* ------------------------------------------------------------------ */
/* 256-bit helpers (the per-block dot products use one block per ymm) */

ALWAYS float
hsum8(__m256 v)
{
	__m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
	lo = _mm_add_ps(lo, hi);
	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
	return _mm_cvtss_f32(lo);
}

ALWAYS float
hmax8(__m256 v)
{
	__m128 lo = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	lo = _mm_max_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_max_ss(lo, _mm_movehdup_ps(lo));
	return _mm_cvtss_f32(lo);
}

/* ACC + the sums of four products of unsigned bytes U and signed bytes S
 * per int32 lane.  Without VNNI the pair sums pass through int16 with
 * saturation: callers keep 2 * U * |S| below 32768. */
ALWAYS __m256i
dp256(__m256i acc, __m256i u, __m256i s)
{
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
	return _mm256_dpbusd_epi32(acc, u, s);
#elif defined(__AVXVNNI__)
	return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
	return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/* Signed bytes times signed bytes, as 8 int32 (|x| <= 128, |y| <= 127). */
ALWAYS __m256i
dot_i8(__m256i x, __m256i y)
{
	return dp256(_mm256_setzero_si256(), _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* Unsigned bytes (< 128) times signed bytes, as 8 int32. */
ALWAYS __m256i
dot_u8i8(__m256i x, __m256i y)
{
	return dp256(_mm256_setzero_si256(), x, y);
}

/* 16 bytes of nibbles to 32 bytes: low nibbles first, then high nibbles. */
ALWAYS __m256i
nibbles32(const uint8_t *p)
{
	__m128i t = _mm_loadu_si128((const __m128i *)p);
	__m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
	return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/* 32 bits to 32 bytes: 0xFF where the bit is set. */
ALWAYS __m256i
bits32(const uint8_t *p)
{
	uint32_t x;
	memcpy(&x, p, 4);
	const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
	    0x0101010101010101, 0x0000000000000000);
	const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
	__m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
	return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* The IQ4 grid, in both 128-bit lanes, for byte shuffles. */
ALWAYS __m256i
iq4_grid(void)
{
	return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q_iq4nl_values));
}

/* ------------------------------------------------------------------ */
/* float types: one row times one float vector */

static void
dot_f32(int n, float *s, const void *vx, const void *vy)
{
	const float *x = vx, *y = vy;
	__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	int i = 0;
	for (; i + 32 <= n; i += 32) {
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
		a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
		a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
		a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
	}
	for (; i + 8 <= n; i += 8)
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
	float sum = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
	for (; i < n; i++)
		sum += x[i] * y[i];
	*s = sum;
}

static void
dot_f16(int n, float *s, const void *vx, const void *vy)
{
	const qhalf *x = vx;
	const float *y = vy;
	__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	int i = 0;
	for (; i + 32 <= n; i += 32) {
		a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))), _mm256_loadu_ps(y + i), a0);
		a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + 8))), _mm256_loadu_ps(y + i + 8), a1);
		a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + 16))), _mm256_loadu_ps(y + i + 16), a2);
		a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + 24))), _mm256_loadu_ps(y + i + 24), a3);
	}
	for (; i + 8 <= n; i += 8)
		a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))), _mm256_loadu_ps(y + i), a0);
	float sum = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
	for (; i < n; i++)
		sum += F16(x[i]) * y[i];
	*s = sum;
}

ALWAYS __m256
bf16x8(const uint16_t *p)
{
	__m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
	return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

static void
dot_bf16(int n, float *s, const void *vx, const void *vy)
{
	const uint16_t *x = vx;
	const float *y = vy;
	__m256 a0 = _mm256_setzero_ps(), a1 = a0;
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		a0 = _mm256_fmadd_ps(bf16x8(x + i), _mm256_loadu_ps(y + i), a0);
		a1 = _mm256_fmadd_ps(bf16x8(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
	}
	for (; i + 8 <= n; i += 8)
		a0 = _mm256_fmadd_ps(bf16x8(x + i), _mm256_loadu_ps(y + i), a0);
	float sum = hsum8(_mm256_add_ps(a0, a1));
	for (; i < n; i++)
		sum += q_bf16_to_f32(x[i]) * y[i];
	*s = sum;
}

static void
f16_to_float(const void *vx, float *y, int64_t n)
{
	const qhalf *x = vx;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
	for (; i < n; i++)
		y[i] = F16(x[i]);
}

static void
bf16_to_float(const void *vx, float *y, int64_t n)
{
	const uint16_t *x = vx;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, bf16x8(x + i));
	for (; i < n; i++)
		y[i] = q_bf16_to_f32(x[i]);
}

/* ------------------------------------------------------------------ */
/* 32-element blocks: one weight row times one activation row */

static void
dot_q4_0(int n, float *s, const void *vx, const void *vy)
{
	const block_q4_0 *x = vx;
	const block_q8_0 *y = vy;
	__m256 acc = _mm256_setzero_ps();
	for (int i = 0; i < n / 32; i++) {
		__m256 d = _mm256_set1_ps(F16(x[i].d) * F16(y[i].d));
		__m256i qx = _mm256_sub_epi8(nibbles32(x[i].qs), _mm256_set1_epi8(8));
		__m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
		acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, qy)), acc);
	}
	*s = hsum8(acc);
}

static void
dot_q4_1(int n, float *s, const void *vx, const void *vy)
{
	const block_q4_1 *x = vx;
	const block_q8_1 *y = vy;
	__m256 acc = _mm256_setzero_ps();
	float summ = 0;
	for (int i = 0; i < n / 32; i++) {
		__m256 d = _mm256_set1_ps(F16(x[i].d) * F16(y[i].d));
		__m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
		acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8i8(nibbles32(x[i].qs), qy)), acc);
		summ += F16(x[i].m) * F16(y[i].s);
	}
	*s = hsum8(acc) + summ;
}

static void
dot_q5_0(int n, float *s, const void *vx, const void *vy)
{
	const block_q5_0 *x = vx;
	const block_q8_0 *y = vy;
	__m256 acc = _mm256_setzero_ps();
	for (int i = 0; i < n / 32; i++) {
		__m256 d = _mm256_set1_ps(F16(x[i].d) * F16(y[i].d));
		__m256i hi = _mm256_and_si256(bits32(x[i].qh), _mm256_set1_epi8(0x10));
		__m256i qx = _mm256_sub_epi8(_mm256_or_si256(nibbles32(x[i].qs), hi), _mm256_set1_epi8(16));
		__m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
		acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, qy)), acc);
	}
	*s = hsum8(acc);
}

static void
dot_q5_1(int n, float *s, const void *vx, const void *vy)
{
	const block_q5_1 *x = vx;
	const block_q8_1 *y = vy;
	__m256 acc = _mm256_setzero_ps();
	float summ = 0;
	for (int i = 0; i < n / 32; i++) {
		__m256 d = _mm256_set1_ps(F16(x[i].d) * F16(y[i].d));
		__m256i hi = _mm256_and_si256(bits32(x[i].qh), _mm256_set1_epi8(0x10));
		__m256i qx = _mm256_or_si256(nibbles32(x[i].qs), hi);
		__m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
		acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8i8(qx, qy)), acc);
		summ += F16(x[i].m) * F16(y[i].s);
	}
	*s = hsum8(acc) + summ;
}

static void
dot_q8_0(int n, float *s, const void *vx, const void *vy)
{
	const block_q8_0 *x = vx, *y = vy;
	__m256 acc = _mm256_setzero_ps();
	for (int i = 0; i < n / 32; i++) {
		__m256 d = _mm256_set1_ps(F16(x[i].d) * F16(y[i].d));
		__m256i qx = _mm256_loadu_si256((const __m256i *)x[i].qs);
		__m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
		acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, qy)), acc);
	}
	*s = hsum8(acc);
}

static void
dot_iq4_nl(int n, float *s, const void *vx, const void *vy)
{
	const block_iq4_nl *x = vx;
	const block_q8_0 *y = vy;
	const __m256i grid = iq4_grid();
	__m256 acc = _mm256_setzero_ps();
	for (int i = 0; i < n / 32; i++) {
		__m256 d = _mm256_set1_ps(F16(x[i].d) * F16(y[i].d));
		__m256i qx = _mm256_shuffle_epi8(grid, nibbles32(x[i].qs));
		__m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
		acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, qy)), acc);
	}
	*s = hsum8(acc);
}

/* --- activations: blocks of 32 floats to 32 signed bytes --- */

/* The 32 floats at X into V (four vectors, unrolled: GCC 12 at -O2 kept
 * such arrays on the stack, written 16 bytes at a time and read back 32,
 * a store-forwarding stall a block). */
ALWAYS void
blk32_get(const float *x, __m256 v[4])
{
	UNROLL
	for (int k = 0; k < 4; k++)
		v[k] = _mm256_loadu_ps(x + 8 * k);
}

/* V times MUL rounded to nearest even (the default rounding), saturated
 * to 32 signed bytes in V's order (the packs work lane by lane; the
 * permute restores the order). */
ALWAYS __m256i
blk32_round(const __m256 v[4], __m256 mul)
{
	__m256i q[4];
	UNROLL
	for (int k = 0; k < 4; k++)
		q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], mul));
	__m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
	return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* The 32 floats at X as 32 signed bytes times *D, D their largest
 * magnitude over 127 (Q8_0's, Q8_1's and q8p's rounding). */
ALWAYS __m256i
blk32_q8(const float *x, float *d)
{
	const __m256 sign = _mm256_set1_ps(-0.0f);
	__m256 v[4];
	blk32_get(x, v);
	*d = hmax8(_mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
	    _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])))) / 127;
	return blk32_round(v, _mm256_set1_ps(*d ? 1 / *d : 0));
}

/* The sums of P's signed bytes 0-15 (*S0) and 16-31 (*S1): pair sums
 * (maddubs by ones), 4 bytes a lane (madd), then each 128-bit half's
 * lanes by two horizontal adds. */
ALWAYS void
blk32_sums(__m256i p, int *s0, int *s1)
{
	__m256i w = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), p), _mm256_set1_epi16(1));
	w = _mm256_hadd_epi32(w, w);
	w = _mm256_hadd_epi32(w, w);
	*s0 = _mm256_extract_epi32(w, 0);
	*s1 = _mm256_extract_epi32(w, 4);
}

static void
q8_0_from_float(const float *x, void *vy, int64_t n)
{
	block_q8_0 *y = vy;
	for (int64_t i = 0; i < n / 32; i++) {
		float d;
		_mm256_storeu_si256((__m256i *)y[i].qs, blk32_q8(x + i * 32, &d));
		y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
	}
}

/* Q8_1: Q8_0 plus s = d * (sum of the levels). */
static void
q8_1_from_float(const float *x, void *vy, int64_t n)
{
	block_q8_1 *y = vy;
	for (int64_t i = 0; i < n / 32; i++) {
		float d;
		int s0, s1;
		__m256i p = blk32_q8(x + i * 32, &d);
		_mm256_storeu_si256((__m256i *)y[i].qs, p);
		blk32_sums(p, &s0, &s1);
		y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
		y[i].s = q_f32_to_f16(F16(y[i].d) * (s0 + s1));
	}
}

static void
q8_0_to_float(const void *vx, float *y, int64_t n)
{
	const block_q8_0 *x = vx;
	for (int64_t i = 0; i < n / 32; i++) {
		__m256 d = _mm256_set1_ps(F16(x[i].d));
		for (int k = 0; k < 4; k++) {
			__m256i w = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(x[i].qs + 8 * k)));
			_mm256_storeu_ps(y + i * 32 + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(w), d));
		}
	}
}

static void
q4_0_to_float(const void *vx, float *y, int64_t n)
{
	const block_q4_0 *x = vx;
	for (int64_t i = 0; i < n / 32; i++) {
		__m256 d = _mm256_set1_ps(F16(x[i].d));
		uint8_t q[32];
		_mm256_storeu_si256((__m256i *)q, _mm256_sub_epi8(nibbles32(x[i].qs), _mm256_set1_epi8(8)));
		for (int k = 0; k < 4; k++) {
			__m256i w = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + 8 * k)));
			_mm256_storeu_ps(y + i * 32 + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(w), d));
		}
	}
}

/* ------------------------------------------------------------------ */
/* K-quants: one weight row times one Q8_K row */

/* Q4_K/Q5_K's 6-bit scales and mins of a superblock (12 bytes), 8 bytes
 * each (sub-blocks 0-7, byte j sub-block j), by 32-bit operations. */
ALWAYS void
k4_scales(const uint8_t *q, uint64_t *sc, uint64_t *mn)
{
	const uint32_t m6 = 0x3F3F3F3F, m4 = 0x0F0F0F0F, m2 = 0x03030303;
	uint32_t u[3];

	memcpy(u, q, 12);
	*sc = (u[0] & m6) | (uint64_t)((u[2] & m4) | ((u[0] >> 6 & m2) << 4)) << 32;
	*mn = (u[1] & m6) | (uint64_t)((u[2] >> 4 & m4) | ((u[1] >> 6 & m2) << 4)) << 32;
}

ALWAYS void
scale_min_k4(const uint8_t *q, uint8_t *sc, uint8_t *mn)
{
	uint64_t s, m;
	k4_scales(q, &s, &m);
	memcpy(sc, &s, 8);
	memcpy(mn, &m, 8);
}

/*
 * Q4_K and Q5_K by Q8_K on 256-bit vectors: the sub-blocks' integer dot
 * products scaled by their 6-bit scales in the integers, the mins against
 * the activations' sums of 32 (pairs of bsums) in a vector.  K_SC(c):
 * the shuffle that spreads 16-bit scale C of [sc0..sc7] over a lane.
 */
#define K_SC(c) _mm256_set1_epi16((short)(0x0100 + 0x0202 * (c)))

ALWAYS void
k4_sb_scales(const block_q8_K *y, const uint8_t *scales, float dmin, __m128 *accm, __m256i *sc16)
{
	uint64_t sc, mn;
	k4_scales(scales, &sc, &mn);
	const __m256i scm = _mm256_cvtepu8_epi16(_mm_set_epi64x((long long)mn, (long long)sc));
	const __m256i bs = _mm256_loadu_si256((const __m256i *)y->bsums);
	const __m128i bs32 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
	const __m128i pm = _mm_madd_epi16(_mm256_extracti128_si256(scm, 1), bs32);
	*accm = _mm_fmadd_ps(_mm_set1_ps(-y->d * dmin), _mm_cvtepi32_ps(pm), *accm);
	*sc16 = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(scm));
}

/* Q4_K, or (K5) Q5_K, by Q8_K: the two share their scales, mins and
 * nibbles; Q5_K adds 16 where its qh has the sub-block's bit. */
ALWAYS void
dot_k45(const int K5, int n, float *s, const void *vx, const void *vy)
{
	const block_q8_K *y = vy;
	__m256 acc = _mm256_setzero_ps();
	__m128 accm = _mm_setzero_ps();
	const __m256i m4 = _mm256_set1_epi8(0xF), one = _mm256_set1_epi8(1);
	const size_t bsz = K5 ? sizeof(block_q5_K) : sizeof(block_q4_K);

	for (int i = 0; i < n / QK_K; i++) {
		/* d, dmin and scales lie alike in both types. */
		const block_q4_K *x4 = (const block_q4_K *)((const uint8_t *)vx + (size_t)i * bsz);
		const block_q5_K *x5 = (const block_q5_K *)x4;
		__m256i sc16, sumi = _mm256_setzero_si256(), hb = _mm256_setzero_si256();
		k4_sb_scales(&y[i], x4->scales, F16(x4->dmin), &accm, &sc16);
		if (K5)
			hb = _mm256_loadu_si256((const __m256i *)x5->qh);
		const uint8_t *qs = K5 ? x5->qs : x4->qs;
		const int8_t *q8 = y[i].qs;
		UNROLL
		for (int c = 0; c < 4; c++) {
			__m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
			__m256i lo = _mm256_and_si256(bits, m4);
			__m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
			if (K5) {
				lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), one), 4));
				hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), one),
				    4));
			}
			__m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c)));
			__m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c + 32)));
			pl = _mm256_madd_epi16(_mm256_shuffle_epi8(sc16, K_SC(2 * c)), pl);
			ph = _mm256_madd_epi16(_mm256_shuffle_epi8(sc16, K_SC(2 * c + 1)), ph);
			sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
		}
		acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * F16(x4->d)), _mm256_cvtepi32_ps(sumi), acc);
	}
	*s = hsum8(acc) + hsum8(_mm256_castps128_ps256(accm));
}

static void
dot_q4_K(int n, float *s, const void *vx, const void *vy)
{
	dot_k45(0, n, s, vx, vy);
}

static void
dot_q5_K(int n, float *s, const void *vx, const void *vy)
{
	dot_k45(1, n, s, vx, vy);
}

/* The shuffle that takes 16-bit scale 2J to the low lane and 2J + 1 to the
 * high one, of eight scales held in both lanes (sub-blocks of 16). */
#define K_SC2(j) _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * (j) + 1))), \
				  _mm_set1_epi16((short)(0x0100 + 0x0202 * 2 * (j))))

/* Sums of sixteen 16-bit scales SC16 times the activations' sums of 16,
 * as 8 int32 (the mins and offsets of the K-quants with 16 sub-blocks). */
ALWAYS __m256i
k16_bsums(__m256i sc16, const block_q8_K *y)
{
	return _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y->bsums));
}

/* Half H's eight of the sixteen 16-bit scales SC16 in both lanes (the
 * immediate a constant in each branch, as clang requires). */
ALWAYS __m256i
k16_half(__m256i sc16, int h)
{
	return h ? _mm256_permute4x64_epi64(sc16, 0xEE) : _mm256_permute4x64_epi64(sc16, 0x44);
}

static void
dot_q6_K(int n, float *s, const void *vx, const void *vy)
{
	const block_q6_K *x = vx;
	const block_q8_K *y = vy;
	__m256 acc = _mm256_setzero_ps();
	const __m256i m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(3);

	for (int i = 0; i < n / QK_K; i++) {
		/* The scales as 16-bit integers [sc0..7 | sc8..15]; the -32 of
		 * every level against the activations' sums of 16 at once. */
		const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
		__m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(k16_bsums(sc16, &y[i]), 5));
		UNROLL
		for (int h = 0; h < 2; h++) {
			const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
			const int8_t *q8 = y[i].qs + 128 * h;
			const __m256i sch = k16_half(sc16, h);
			__m256i b1 = _mm256_loadu_si256((const __m256i *)ql);
			__m256i b2 = _mm256_loadu_si256((const __m256i *)(ql + 32));
			__m256i bh = _mm256_loadu_si256((const __m256i *)qh);
			__m256i q[4];
			q[0] = _mm256_or_si256(_mm256_and_si256(b1, m4), _mm256_slli_epi16(_mm256_and_si256(bh, m2), 4));
			q[1] = _mm256_or_si256(_mm256_and_si256(b2, m4),
			    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 2), m2), 4));
			q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m4),
			    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 4), m2), 4));
			q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m4),
			    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 6), m2), 4));
			UNROLL
			for (int k = 0; k < 4; k++) {
				__m256i y8 = _mm256_loadu_si256((const __m256i *)(q8 + 32 * k));
				/* Scale 2k on the low lane's 16 elements, 2k + 1 on the high's. */
				__m256i p = _mm256_maddubs_epi16(q[k], y8);
				p = _mm256_madd_epi16(_mm256_shuffle_epi8(sch, K_SC2(k)), p);
				sumi = _mm256_add_epi32(sumi, p);
			}
		}
		acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * F16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
	}
	*s = hsum8(acc);
}

static void
dot_q2_K(int n, float *s, const void *vx, const void *vy)
{
	const block_q2_K *x = vx;
	const block_q8_K *y = vy;
	__m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
	const __m256i m2 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi16(0xF);

	for (int i = 0; i < n / QK_K; i++) {
		/* Byte j: scale j in the low nibble, min j in the high. */
		const __m256i sm = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
		const __m256i sc16 = _mm256_and_si256(sm, m4);
		accm = _mm256_fmadd_ps(_mm256_set1_ps(-y[i].d * F16(x[i].dmin)),
		    _mm256_cvtepi32_ps(k16_bsums(_mm256_srli_epi16(sm, 4), &y[i])), accm);
		__m256i sumi = _mm256_setzero_si256();
		UNROLL
		for (int h = 0; h < 2; h++) {
			__m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
			const __m256i sch = k16_half(sc16, h);
			const int8_t *q8 = y[i].qs + 128 * h;
			UNROLL
			for (int j = 0; j < 4; j++) {
				__m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), m2);
				__m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(q8 + 32 * j)));
				sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(sch, K_SC2(j)), p));
			}
		}
		acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * F16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
	}
	*s = hsum8(acc) + hsum8(accm);
}

static void
dot_q3_K(int n, float *s, const void *vx, const void *vy)
{
	const block_q3_K *x = vx;
	const block_q8_K *y = vy;
	__m256 acc = _mm256_setzero_ps();
	const __m256i m2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);

	for (int i = 0; i < n / QK_K; i++) {
		/* Scale j (6 bits, less 32): low 4 bits in byte j (j < 8, low
		 * nibble) or j - 8 (high nibble), high 2 bits in byte 8 + j % 4 at
		 * bit 2 (j / 4). */
		const uint8_t *sb = x[i].scales;
		uint64_t lo8;
		uint32_t hb;
		memcpy(&lo8, sb, 8);
		memcpy(&hb, sb + 8, 4);
		const __m128i lo = _mm_set_epi64x((long long)(lo8 >> 4 & 0x0F0F0F0F0F0F0F0Full),
		    (long long)(lo8 & 0x0F0F0F0F0F0F0F0Full));
		const __m128i hi = _mm_set_epi32((int)(hb >> 6 & 0x03030303), (int)(hb >> 4 & 0x03030303),
		    (int)(hb >> 2 & 0x03030303), (int)(hb & 0x03030303));
		const __m256i sc16 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_or_si128(lo, _mm_slli_epi16(hi, 4))),
		    _mm256_set1_epi16(32));
		__m256i hm = _mm256_loadu_si256((const __m256i *)x[i].hmask);
		/* Levels q2 + 4 h - 4: the -4 against the activations' sums of 16. */
		__m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(k16_bsums(sc16, &y[i]), 2));
		UNROLL
		for (int h = 0; h < 2; h++) {
			__m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
			const __m256i sch = k16_half(sc16, h);
			const int8_t *q8 = y[i].qs + 128 * h;
			UNROLL
			for (int j = 0; j < 4; j++) {
				__m256i q2 = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), m2);
				__m256i hbit = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), one);
				__m256i q = _mm256_or_si256(q2, _mm256_slli_epi16(hbit, 2));   /* q2 + 4h in 0..7 */
				__m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(q8 + 32 * j)));
				sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(sch, K_SC2(j)), p));
			}
		}
		acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * F16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
	}
	*s = hsum8(acc);
}

static void
dot_iq4_xs(int n, float *s, const void *vx, const void *vy)
{
	const block_iq4_xs *x = vx;
	const block_q8_K *y = vy;
	const __m256i grid = iq4_grid();
	__m256 acc = _mm256_setzero_ps();

	for (int i = 0; i < n / QK_K; i++) {
		/* The 8 scales (ls - 32) as 16-bit lanes, in both halves: the low
		 * nibbles interleaved from scales_l, the 2-bit fields of scales_h
		 * moved from bit 2j to bit 8j + 4. */
		uint32_t l;
		uint64_t h = x[i].scales_h;
		memcpy(&l, x[i].scales_l, 4);
		h = (h & 0xFF) | (h & 0xFF00) << 24;
		h = (h & 0x0000000F0000000Full) | (h & 0x000000F0000000F0ull) << 12;
		h = (h & 0x0003000300030003ull) | (h & 0x000C000C000C000Cull) << 6;
		const __m128i lo = _mm_unpacklo_epi8(_mm_cvtsi32_si128((int)(l & 0x0F0F0F0F)),
		    _mm_cvtsi32_si128((int)(l >> 4 & 0x0F0F0F0F)));
		const __m128i ls = _mm_sub_epi16(_mm_cvtepu8_epi16(_mm_or_si128(lo, _mm_cvtsi64_si128((long long)(h << 4)))),
		    _mm_set1_epi16(32));
		const __m256i ls16 = _mm256_broadcastsi128_si256(ls);
		__m256i sumi = _mm256_setzero_si256();
		UNROLL
		for (int ib = 0; ib < 8; ib++) {
			__m256i v = _mm256_shuffle_epi8(grid, nibbles32(x[i].qs + 16 * ib));
			__m256i y8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * ib));
			/* |v| * sign(y, v): pairs stay within int16 (|v|, |y| <= 127). */
			__m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(y8, v));
			sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(ls16, K_SC(ib)), p));
		}
		acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * F16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
	}
	*s = hsum8(acc);
}

/* Q8_K activations: signed maximum sets the scale; sums of 16 for the mins.
 * The maximum magnitude by vectors (NaNs passed over, as the reference's
 * comparison does), then the first element that has it: the reference's
 * choice between X and -X.  (Its branchy scalar search was a fifth of a
 * generating token's serial work.) */
static void
q8_K_from_float(const float *x, void *vy, int64_t n)
{
	block_q8_K *y = vy;
	for (int64_t i = 0; i < n / QK_K; i++) {
		const float *v = x + i * QK_K;
		/* Four chains of max (its latency, not its rate, bounds one). */
		__m256 m4[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
		for (int j = 0; j < QK_K; j += 32) {
			UNROLL
			for (int k = 0; k < 4; k++)
				m4[k] = _mm256_max_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(v + j + 8 * k)), m4[k]);
		}
		const float amax = hmax8(_mm256_max_ps(_mm256_max_ps(m4[0], m4[1]), _mm256_max_ps(m4[2], m4[3])));
		float max = 0;
		for (int j = 0; j < QK_K; j += 8) {
			const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(v + j));
			const int hit = _mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_set1_ps(amax), _CMP_EQ_OQ));
			if (hit) {
				max = v[j + __builtin_ctz((unsigned)hit)];
				break;
			}
		}
		if (amax == 0) {
			memset(&y[i], 0, sizeof(y[i]));
			continue;
		}
		float iscale = -127.f / max;
		__m256 mul = _mm256_set1_ps(iscale);
		for (int j = 0; j < QK_K; j += 32) {
			__m256 w[4];
			int s0, s1;
			blk32_get(v + j, w);
			__m256i p = _mm256_min_epi8(blk32_round(w, mul), _mm256_set1_epi8(127));
			_mm256_storeu_si256((__m256i *)(y[i].qs + j), p);
			blk32_sums(p, &s0, &s1);
			y[i].bsums[j / 16] = (int16_t)s0;
			y[i].bsums[j / 16 + 1] = (int16_t)s1;
		}
		y[i].d = 1 / iscale;
	}
}

/* ------------------------------------------------------------------ */
/* GEMV: a few rows by a few tokens, one dot product each */

#define GEMV_FROM_DOT(T) \
	static void gemv_##T(int n, float *out, size_t ldo, const uint8_t *w, size_t ws, int nr, \
			     const uint8_t *x, size_t xs, int nt) \
	{ \
		for (int r = 0; r < nr; r++) \
			for (int t = 0; t < nt; t++) \
				dot_##T(n, &out[(size_t)t * ldo + r], w + (size_t)r * ws, x + (size_t)t * xs); \
	}
GEMV_FROM_DOT(q4_0) GEMV_FROM_DOT(q4_1)
GEMV_FROM_DOT(q5_0) GEMV_FROM_DOT(q5_1) GEMV_FROM_DOT(q8_0) GEMV_FROM_DOT(q2_K) GEMV_FROM_DOT(q3_K)
GEMV_FROM_DOT(q4_K) GEMV_FROM_DOT(q5_K) GEMV_FROM_DOT(q6_K) GEMV_FROM_DOT(iq4_nl) GEMV_FROM_DOT(iq4_xs)

/* ------------------------------------------------------------------ */
/* Vectors of the tier's full width */

#ifdef QX_512
#define VL 16                           /* 32-bit lanes */
typedef __m512 vf;
typedef __m512i vi;
#define vf_zero() _mm512_setzero_ps()
#define vi_zero() _mm512_setzero_si512()
#define vf_load(p) _mm512_loadu_ps(p)
#define vi_load(p) _mm512_loadu_si512((const void *)(p))
#define vf_set1(x) _mm512_set1_ps(x)
#define vi_set1(x) _mm512_set1_epi32(x)
#define vi_set1_8(x) _mm512_set1_epi8(x)
#define vi_set1_16(x) _mm512_set1_epi16(x)
#define vf_fma(a, b, c) _mm512_fmadd_ps(a, b, c)
#define vf_mul(a, b) _mm512_mul_ps(a, b)
#define vf_add(a, b) _mm512_add_ps(a, b)
#define vi_cvt(a) _mm512_cvtepi32_ps(a)
#define vi_add32(a, b) _mm512_add_epi32(a, b)
#define vi_add16(a, b) _mm512_add_epi16(a, b)
#define vi_and(a, b) _mm512_and_si512(a, b)
#define vi_or(a, b) _mm512_or_si512(a, b)
#define VI_SRLI32(a, k) _mm512_srli_epi32(a, k)
#define VI_SLLI32(a, k) _mm512_slli_epi32(a, k)
#define VI_SRAI32(a, k) _mm512_srai_epi32(a, k)
#define vi_sub32(a, b) _mm512_sub_epi32(a, b)
#define vi_load_u16(p) _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p)))
#define VI_MULLO32(a, b) _mm512_mullo_epi32(a, b)
#define vi_slli16(a, k) _mm512_slli_epi16(a, k)
#define vf_sub(a, b) _mm512_sub_ps(a, b)
#define vf_fnmadd(a, b, c) _mm512_fnmadd_ps(a, b, c)
#define vi_xor(a, b) _mm512_xor_si512(a, b)
#define vi_shuffle8(a, i) _mm512_shuffle_epi8(a, i)
#define vi_bcast128(p) _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(p)))
#define vi_srli16(a, k) _mm512_srli_epi16(a, k)
#define vi_maddubs(a, b) _mm512_maddubs_epi16(a, b)
#define vi_madd(a, b) _mm512_madd_epi16(a, b)
#define vi_dpbusd(acc, u, s) _mm512_dpbusd_epi32(acc, u, s)
#define VI_SLL(a, c) _mm512_sll_epi32(a, c)
#define vf_store(p, v) _mm512_storeu_ps(p, v)
#define vi_store(p, v) _mm512_storeu_si512((void *)(p), v)
/* The first NR lanes. */
ALWAYS vf
vf_loadn(const float *p, int nr)
{
	return nr >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps((__mmask16)((1u << nr) - 1), p);
}
ALWAYS void
vf_storen(float *p, vf v, int nr)
{
	if (nr >= 16)
		_mm512_storeu_ps(p, v);
	else
		_mm512_mask_storeu_ps(p, (__mmask16)((1u << nr) - 1), v);
}
#else
#define VL 8
typedef __m256 vf;
typedef __m256i vi;
#define vf_zero() _mm256_setzero_ps()
#define vi_zero() _mm256_setzero_si256()
#define vf_load(p) _mm256_loadu_ps(p)
#define vi_load(p) _mm256_loadu_si256((const __m256i *)(p))
#define vf_set1(x) _mm256_set1_ps(x)
#define vi_set1(x) _mm256_set1_epi32(x)
#define vi_set1_8(x) _mm256_set1_epi8(x)
#define vi_set1_16(x) _mm256_set1_epi16(x)
#define vf_fma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define vf_mul(a, b) _mm256_mul_ps(a, b)
#define vf_add(a, b) _mm256_add_ps(a, b)
#define vi_cvt(a) _mm256_cvtepi32_ps(a)
#define vi_add32(a, b) _mm256_add_epi32(a, b)
#define vi_add16(a, b) _mm256_add_epi16(a, b)
#define vi_and(a, b) _mm256_and_si256(a, b)
#define vi_or(a, b) _mm256_or_si256(a, b)
#define VI_SRLI32(a, k) _mm256_srli_epi32(a, k)
#define VI_SLLI32(a, k) _mm256_slli_epi32(a, k)
#define VI_SRAI32(a, k) _mm256_srai_epi32(a, k)
#define vi_sub32(a, b) _mm256_sub_epi32(a, b)
#define vi_load_u16(p) _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p)))
#define VI_MULLO32(a, b) _mm256_mullo_epi32(a, b)
#define vi_slli16(a, k) _mm256_slli_epi16(a, k)
#define vf_sub(a, b) _mm256_sub_ps(a, b)
#define vf_fnmadd(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define vi_xor(a, b) _mm256_xor_si256(a, b)
#define vi_shuffle8(a, i) _mm256_shuffle_epi8(a, i)
#define vi_bcast128(p) _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p)))
#define vi_srli16(a, k) _mm256_srli_epi16(a, k)
#define vi_maddubs(a, b) _mm256_maddubs_epi16(a, b)
#define vi_madd(a, b) _mm256_madd_epi16(a, b)
#if defined(__AVXVNNI__)
#define vi_dpbusd(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
#endif
#define VI_SLL(a, c) _mm256_sll_epi32(a, c)
#define vf_store(p, v) _mm256_storeu_ps(p, v)
#define vi_store(p, v) _mm256_storeu_si256((__m256i *)(p), v)
ALWAYS __m256i
lanes_mask(int nr)
{
	return _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* vmaskmovps is microcoded (slow) on AMD: whole vectors go without. */
ALWAYS vf
vf_loadn(const float *p, int nr)
{
	return nr >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes_mask(nr));
}
ALWAYS void
vf_storen(float *p, vf v, int nr)
{
	if (nr >= 8)
		_mm256_storeu_ps(p, v);
	else
		_mm256_maskstore_ps(p, lanes_mask(nr), v);
}
#endif

ALWAYS int32_t
ld32(const void *p)
{
	int32_t v;
	memcpy(&v, p, 4);
	return v;
}

#ifdef QX_VNNI
/* ACC + the products of W's unsigned bytes and the 4 signed bytes at S,
 * the same 4 in every lane.  With 512-bit vectors the broadcast rides in
 * vpdpbusd's memory operand ({1to16}), which GCC 12 does not fold by
 * itself: a separate vpbroadcastd per token and group held 40% of the
 * int8 GEMM's samples on an Intel Xeon (perf annotate), and folding it
 * measured 4-10% faster there (ChangeLog).  VEX (AVX-VNNI) has no
 * embedded broadcast.  AddressSanitizer does not see an asm's memory
 * operand: its builds (the fuzz targets) take the intrinsics. */
#if defined(__SANITIZE_ADDRESS__)
#define QX_ASM_OK 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QX_ASM_OK 0
#endif
#endif
#ifndef QX_ASM_OK
#define QX_ASM_OK 1
#endif
ALWAYS vi
vi_dpbusd_x4(vi acc, vi w, const uint8_t *s)
{
#if defined(QX_512) && QX_ASM_OK
	typedef int32_t i32u __attribute__((may_alias, aligned(1)));
	__asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const i32u *)s));
	return acc;
#else
	return vi_dpbusd(acc, w, vi_set1(ld32(s)));
#endif
}
#endif

/*
 * A VL x VL transpose of 32-bit elements: row r of SRC (SSTRIDE elements
 * apart) becomes column r of DST (rows DSTRIDE elements apart).
 */
#ifdef QX_512
/* (transpose_tile_n: of each source row its first COLS elements alone are
 * read, the rest taken as 0.) */
ALWAYS void
transpose_tile_n(const uint32_t *src, size_t sstride, uint32_t *dst, size_t dstride, int cols)
{
	const __mmask16 m = cols >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << cols) - 1);
	__m512i r[16];
	UNROLL
	for (int i = 0; i < 16; i++)
		r[i] = _mm512_maskz_loadu_epi32(m, (const void *)(src + i * sstride));
	/* In place (16 live vectors): r[2i], r[2i+1] <- 32-bit interleaves. */
	UNROLL
	for (int i = 0; i < 8; i++) {
		__m512i lo = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
		__m512i hi = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
		r[2 * i] = lo;
		r[2 * i + 1] = hi;
	}
	/* r[4i + j], 128-bit lane L: rows 4i..4i+3, element 4L + j. */
	UNROLL
	for (int i = 0; i < 4; i++) {
		__m512i b0 = _mm512_unpacklo_epi64(r[4 * i], r[4 * i + 2]);
		__m512i b1 = _mm512_unpackhi_epi64(r[4 * i], r[4 * i + 2]);
		__m512i b2 = _mm512_unpacklo_epi64(r[4 * i + 1], r[4 * i + 3]);
		__m512i b3 = _mm512_unpackhi_epi64(r[4 * i + 1], r[4 * i + 3]);
		r[4 * i] = b0;
		r[4 * i + 1] = b1;
		r[4 * i + 2] = b2;
		r[4 * i + 3] = b3;
	}
	UNROLL
	for (int j = 0; j < 4; j++) {
		__m512i e0 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x44), e1 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xEE);
		__m512i f0 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x44), f1 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xEE);
		_mm512_storeu_si512((void *)(dst + (0 + j) * dstride), _mm512_shuffle_i32x4(e0, f0, 0x88));
		_mm512_storeu_si512((void *)(dst + (4 + j) * dstride), _mm512_shuffle_i32x4(e0, f0, 0xDD));
		_mm512_storeu_si512((void *)(dst + (8 + j) * dstride), _mm512_shuffle_i32x4(e1, f1, 0x88));
		_mm512_storeu_si512((void *)(dst + (12 + j) * dstride), _mm512_shuffle_i32x4(e1, f1, 0xDD));
	}
}

ALWAYS void
transpose_tile(const uint32_t *src, size_t sstride, uint32_t *dst, size_t dstride)
{
	transpose_tile_n(src, sstride, dst, dstride, 16);
}
#else
ALWAYS void
transpose_tile(const uint32_t *src, size_t sstride, uint32_t *dst, size_t dstride)
{
	__m256i r[8];
	UNROLL
	for (int i = 0; i < 8; i++)
		r[i] = _mm256_loadu_si256((const __m256i *)(src + i * sstride));
	UNROLL
	for (int i = 0; i < 4; i++) {
		__m256i lo = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
		__m256i hi = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
		r[2 * i] = lo;
		r[2 * i + 1] = hi;
	}
	UNROLL
	for (int i = 0; i < 2; i++) {
		__m256i b0 = _mm256_unpacklo_epi64(r[4 * i], r[4 * i + 2]);
		__m256i b1 = _mm256_unpackhi_epi64(r[4 * i], r[4 * i + 2]);
		__m256i b2 = _mm256_unpacklo_epi64(r[4 * i + 1], r[4 * i + 3]);
		__m256i b3 = _mm256_unpackhi_epi64(r[4 * i + 1], r[4 * i + 3]);
		r[4 * i] = b0;
		r[4 * i + 1] = b1;
		r[4 * i + 2] = b2;
		r[4 * i + 3] = b3;
	}
	UNROLL
	for (int j = 0; j < 4; j++) {
		_mm256_storeu_si256((__m256i *)(dst + j * dstride), _mm256_permute2x128_si256(r[j], r[4 + j], 0x20));
		_mm256_storeu_si256((__m256i *)(dst + (4 + j) * dstride), _mm256_permute2x128_si256(r[j], r[4 + j], 0x31));
	}
}
#endif

/* VL rows of COLS 32-bit elements (SSTRIDE apart) into COLS rows of VL. */
static void
transpose_rows(const uint32_t *src, size_t sstride, int cols, uint32_t *dst)
{
	int c = 0;
	for (; c + VL <= cols; c += VL)
		transpose_tile(src + c, sstride, dst + (size_t)c * VL, VL);
	for (; c < cols; c++)
		for (int r = 0; r < VL; r++)
			dst[(size_t)c * VL + r] = src[r * sstride + c];
}

#ifdef QX_512
/* ------------------------------------------------------------------ */
/*
 * GEMV for the 32-element block types on 512-bit vectors, with q8p
 * activations.  Two blocks per vector, each type decoded to its
 * elements' order, as the activations lie.  The 16 block
 * scales of a row are converted at once (g_halfs or a gather), multiplied by the
 * activations' block scales; each block's offset or min enters through
 * the activations' block sums, once per 16 blocks:
 *   sum_b (d_b dx_b sum_i L_i q_i + m_b dx_b sum_i q_i),  w = d L + m.
 */
enum { G_Q4_0, G_Q4_1, G_Q5_0, G_Q5_1, G_Q8_0, G_IQ4_NL };

ALWAYS int g_bs(const int TY)
{
	return TY == G_Q4_0 || TY == G_IQ4_NL ? 18 : TY == G_Q4_1 ? 20 : TY == G_Q5_0 ? 22 : TY == G_Q5_1 ? 24 : 34;
}

/* Blocks B0 and B1 (NULL: absent, zeros) as unsigned levels, in the
 * order of the elements: [B0 0-15 | B0 16-31 | B1 0-15 | B1 16-31], as the
 * activations lie.  A nibble type's 16 bytes of B0 go to the low two
 * lanes, B1's to the high two (broadcasts, which are loads here), and the
 * odd lanes are shifted down to their high nibbles. */
ALWAYS __m512i
g_decode(const int TY, const uint8_t *b0, const uint8_t *b1)
{
	if (TY == G_Q8_0) {
		__m256i a = _mm256_loadu_si256((const __m256i *)(b0 + 2));
		__m256i c = b1 ? _mm256_loadu_si256((const __m256i *)(b1 + 2)) : _mm256_setzero_si256();
		return _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(a), c, 1), _mm512_set1_epi8((char)0x80));
	}
	const int qs = TY == G_Q4_0 || TY == G_IQ4_NL ? 2 : TY == G_Q4_1 ? 4 : TY == G_Q5_0 ? 6 : 8;
	__m512i w = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(b0 + qs)));
	w = b1 ? _mm512_mask_broadcast_i32x4(w, 0xFF00, _mm_loadu_si128((const __m128i *)(b1 + qs))) :
	    _mm512_maskz_mov_epi32(0x00FF, w);
	w = _mm512_and_si512(_mm512_mask_srli_epi16(w, 0xFF00FF00u, w, 4), _mm512_set1_epi8(0x0F));
	if (TY == G_Q5_0 || TY == G_Q5_1) {
		/* Bit j of a block's qh is element j's fifth bit. */
		const int qh = TY == G_Q5_0 ? 2 : 4;
		uint32_t h0, h1 = 0;
		memcpy(&h0, b0 + qh, 4);
		if (b1)
			memcpy(&h1, b1 + qh, 4);
		w = _mm512_mask_add_epi8(w, (__mmask64)(h0 | (uint64_t)h1 << 32), w, _mm512_set1_epi8(0x10));
	}
	if (TY == G_IQ4_NL) {
		const __m512i grid = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)q_iq4nl_values));
		w = _mm512_xor_si512(_mm512_shuffle_epi8(grid, w), _mm512_set1_epi8((char)0x80));
	}
	return w;
}

ALWAYS __m512i
dp512(__m512i u, __m512i s)
{
#ifdef QX_VNNI
	return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s);
#else
	return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
#endif
}

/* Whether type TY's block scales are read by g_halfs (else by a gather):
 * measured per type on the avx512bf16 tier (AMD EPYC), in-cache GEMV, the
 * windows won for the 18- and 22-byte blocks without a min (Q4_0 8%, Q5_0
 * 3%) and lost where they take 4 or 6 windows (Q8_0, Q4_1, Q5_1). */
ALWAYS int g_windows(const int TY) { return TY == G_Q4_0 || TY == G_IQ4_NL || TY == G_Q5_0; }

/*
 * The f16 scales (the first word) of blocks [0, CNT) of a group (BSZ
 * bytes apart; CNT <= 16), as 16 floats
 * (zeros past CNT).  Without a gather, which costs about as much as the
 * rest of the group's work on AMD Zen 4: each window of 128 bytes gives the
 * blocks that lie in it by one permute of words (8 of Q4_0's 18-byte
 * blocks, 4 of Q8_0's).  The loads are masked to the bytes wanted, so that
 * nothing past the last block is read.
 */
ALWAYS __m512
g_halfs(const int BSZ, const uint8_t *g, int cnt)
{
	const int k = (128 - 2) / BSZ + 1;              /* blocks per window */
	const __m512i base = _mm512_mullo_epi16(_mm512_setr_epi64(0x0003000200010000, 0x0007000600050004,
	    0x000B000A00090008, 0x000F000E000D000C, 0x0013001200110010, 0x0017001600150014, 0x001B001A00190018,
	    0x001F001E001D001C), _mm512_set1_epi16(BSZ / 2));
	__m256i h = _mm256_setzero_si256();

	for (int b = 0; b < cnt; b += k) {
		const int nblk = cnt - b < k ? cnt - b : k;
		const int words = ((nblk - 1) * BSZ + 2) / 2;
		const __mmask32 m0 = words >= 32 ? 0xFFFFFFFFu : (1u << words) - 1;
		const __mmask32 m1 = words > 32 ? (words >= 64 ? 0xFFFFFFFFu : (1u << (words - 32)) - 1) : 0;
		const uint8_t *p = g + (size_t)b * BSZ;
		/* Word j of the result: block j - b's word, for j in [b, b + nblk). */
		const __m512i idx = _mm512_sub_epi16(base, _mm512_set1_epi16((short)(b * (BSZ / 2))));
		__m512i r = _mm512_permutex2var_epi16(_mm512_maskz_loadu_epi16(m0, p), idx,
		    _mm512_maskz_loadu_epi16(m1, p + 64));
		h = _mm256_mask_mov_epi16(h, (__mmask16)(((1u << nblk) - 1) << b), _mm512_castsi512_si256(r));
	}
	return _mm512_cvtph_ps(h);
}

/* One pair of blocks (TWO 0: the last block of a row alone) of R rows
 * (W, WS bytes apart) by T tokens (X, XS apart), scaled by the lanes PIDX
 * of S, into ACC.  The branch on TWO is resolved at compile time, so that
 * the loop over pairs has none. */
ALWAYS void
g_pair(const int TY, const int R, const int T, const int TWO, __m512 acc[4][4], __m512 S[4][4], __m512i pidx,
       const uint8_t *w, size_t ws, const uint8_t *x, size_t xs)
{
	__m512i X[4];
	UNROLL
	for (int t = 0; t < T; t++)
		X[t] = _mm512_loadu_si512((const void *)(x + (size_t)t * xs));
	UNROLL
	for (int r = 0; r < R; r++) {
		const uint8_t *b0 = w + (size_t)r * ws;
		__m512i W = g_decode(TY, b0, TWO ? b0 + g_bs(TY) : NULL);
		UNROLL
		for (int t = 0; t < T; t++)
			acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp512(W, X[t])), _mm512_permutexvar_ps(pidx, S[r][t]),
			    acc[r][t]);
	}
}

/* R rows by T tokens (q8p rows XS bytes apart). */
ALWAYS void
g_tile(const int TY, const int R, const int T, int n, float *out, size_t ldo, const uint8_t *w, size_t ws,
       const uint8_t *x, size_t xs)
{
	const int nb = n / 32, bs = g_bs(TY);
	/* Lanes of the scale of a pair of blocks (pair 0; +2 for the next). */
	const __m512i pidx0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
	__m512 acc[4][4];

	UNROLL
	for (int r = 0; r < R; r++)
		UNROLL
		for (int t = 0; t < T; t++)
			acc[r][t] = _mm512_setzero_ps();
	for (int b16 = 0; b16 < nb; b16 += 16) {
		const int cnt = nb - b16 < 16 ? nb - b16 : 16;
		const __mmask16 gm = (__mmask16)(cnt == 16 ? 0xFFFF : (1u << cnt) - 1);
		__m512 S[4][4];
		UNROLL
		for (int r = 0; r < R; r++) {
			const uint8_t *row = w + (size_t)r * ws + (size_t)b16 * bs;
			/* The same group of the next tile's rows (R rows further: the rows
			 * are contiguous, so this is one stream ahead of us). */

			__m512 dw, mb;
			if (g_windows(TY)) {
				dw = g_halfs(g_bs(TY), row, cnt);
				mb = _mm512_mul_ps(dw, _mm512_set1_ps(TY == G_Q4_0 ? -8.0f : TY == G_Q5_0 ? -16.0f : -128.0f));
			} else {
				const __m512i gidx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
				    12, 13, 14, 15), _mm512_set1_epi32(bs));
				__m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), gm, gidx, row, 1);
				dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
				if (TY == G_Q4_1 || TY == G_Q5_1) {
					g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), gm, gidx, row + 2, 1);
					mb = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
				} else {
					mb = _mm512_mul_ps(dw, _mm512_set1_ps(-128.0f));
				}
			}
			UNROLL
			for (int t = 0; t < T; t++) {
				const uint8_t *xt = x + (size_t)t * xs;
				__m512 dx = _mm512_maskz_loadu_ps(gm, Q8P_D(xt, n) + b16);
				__m512 sx = _mm512_maskz_loadu_ps(gm, Q8P_S32(xt, n) + b16);
				acc[r][t] = _mm512_fmadd_ps(mb, sx, acc[r][t]);
				S[r][t] = _mm512_mul_ps(dw, dx);
			}
		}
		__m512i pidx = pidx0;
		int p = 0;
		for (; p + 1 < cnt; p += 2) {
			g_pair(TY, R, T, 1, acc, S, pidx, w + (size_t)(b16 + p) * bs, ws, x + (size_t)(b16 + p) * 32, xs);
			pidx = _mm512_add_epi32(pidx, _mm512_set1_epi32(2));
		}
		if (p < cnt)
			g_pair(TY, R, T, 0, acc, S, pidx, w + (size_t)(b16 + p) * bs, ws, x + (size_t)(b16 + p) * 32, xs);
	}
	UNROLL
	for (int r = 0; r < R; r++)
		UNROLL
		for (int t = 0; t < T; t++)
			out[(size_t)t * ldo + r] = _mm512_reduce_add_ps(acc[r][t]);
}

ALWAYS void
g_gemv(const int TY, int n, float *out, size_t ldo, const uint8_t *w, size_t ws, int nr, const uint8_t *x, size_t xs,
       int nt)
{
	/* One row at a time: a single sequential stream through memory.  Tiles
	 * of 4 rows (each activation load shared), with or without software
	 * prefetch, measured 2 to 2.5 times slower from DRAM on the development
	 * machine, though no slower from cache. */
	for (int r = 0; r < nr; r++) {
		switch (nt) {
		case 1: g_tile(TY, 1, 1, n, out + r, ldo, w + (size_t)r * ws, ws, x, xs); break;
		case 2: g_tile(TY, 1, 2, n, out + r, ldo, w + (size_t)r * ws, ws, x, xs); break;
		case 3: g_tile(TY, 1, 3, n, out + r, ldo, w + (size_t)r * ws, ws, x, xs); break;
		default: g_tile(TY, 1, 4, n, out + r, ldo, w + (size_t)r * ws, ws, x, xs); break;
		}
	}
}

#define G_GEMV(T, TY) \
	static void gemv8_##T(int n, float *out, size_t ldo, const uint8_t *w, size_t ws, int nr, \
			      const uint8_t *x, size_t xs, int nt) \
	{ g_gemv(TY, n, out, ldo, w, ws, nr, x, xs, nt); }
G_GEMV(q4_0, G_Q4_0) G_GEMV(q4_1, G_Q4_1) G_GEMV(q5_0, G_Q5_0) G_GEMV(q5_1, G_Q5_1)
#ifdef QX_VNNI
G_GEMV(q8_0, G_Q8_0) G_GEMV(iq4_nl, G_IQ4_NL)
#endif
#endif

/* ------------------------------------------------------------------ */
/*
 * The int8 GEMM.  Weights are decoded, one panel of VL rows and KB blocks
 * of 32 at a time, into unsigned levels L (0..255) with per sub-block
 * (32 or 16 elements) scale d and bias m such that w = d * L + m; the
 * levels are interleaved so that one vector holds 4 consecutive levels of
 * each of the VL rows.  An activation block (q8p) is x = dx * q, so
 *   sum_i w_i x_i = d * dx * sum_i L_i q_i + m * dx * sum_i q_i,
 * the first sum by vpdpbusd (or maddubs) on whole vectors of rows, the
 * second from the q8p row's block sums.  Each product of a panel is
 * computed for GT tokens at a time, the weight vector loaded once for all.
 */
#define KC_BLOCKS 32                    /* 32-blocks per k-block (1024 inputs; a multiple of 8) */
#define AMX_T 16                        /* tokens per AMX tile (tier amx) */
#ifdef QX_512
#define GT 8                            /* tokens per microkernel call */
#else
#define GT 4
#endif

struct panel {
	uint8_t *q;     /* [KB * 8 groups][VL rows][4 levels] */
	float *d, *m;   /* [KB * ns][VL] */
	uint8_t *lv;    /* scratch: [VL][KB * 32] levels, row-major */
	float *td, *tm; /* scratch: [VL][KB * 2] */
};

static size_t
gemm_i8_scratch(void)
{
	return (size_t)KC_BLOCKS * 32 * VL * 2 + (size_t)KC_BLOCKS * 2 * VL * sizeof(float) * 4 + 256;
}

static void
panel_carve(void *scratch, struct panel *p)
{
	uint8_t *s = scratch;
	p->q = s;
	s += (size_t)KC_BLOCKS * 32 * VL;
	p->lv = s;
	s += (size_t)KC_BLOCKS * 32 * VL;
	p->d = (float *)s;
	p->m = p->d + KC_BLOCKS * 2 * VL;
	p->td = p->m + KC_BLOCKS * 2 * VL;
	p->tm = p->td + KC_BLOCKS * 2 * VL;
}

/* Decoders: blocks [B0, B0 + NB) of one row into levels LV (NB * 32),
 * scales D and biases M (NB * ns).  K-quant ranges start and end on
 * whole 256-blocks. */
typedef void (*dec_fn)(const uint8_t *row, int b0, int nb, uint8_t *lv, float *d, float *m);

static void
dec_q4_0(const uint8_t *row, int b0, int nb, uint8_t *lv, float *d, float *m)
{
	const block_q4_0 *b = (const block_q4_0 *)row + b0;
	for (int i = 0; i < nb; i++) {
		_mm256_storeu_si256((__m256i *)(lv + 32 * i), nibbles32(b[i].qs));
		d[i] = F16(b[i].d);
		m[i] = -8 * d[i];
	}
}

static void
dec_q4_1(const uint8_t *row, int b0, int nb, uint8_t *lv, float *d, float *m)
{
	const block_q4_1 *b = (const block_q4_1 *)row + b0;
	for (int i = 0; i < nb; i++) {
		_mm256_storeu_si256((__m256i *)(lv + 32 * i), nibbles32(b[i].qs));
		d[i] = F16(b[i].d);
		m[i] = F16(b[i].m);
	}
}

static void
dec_q5_0(const uint8_t *row, int b0, int nb, uint8_t *lv, float *d, float *m)
{
	const block_q5_0 *b = (const block_q5_0 *)row + b0;
	for (int i = 0; i < nb; i++) {
		__m256i hi = _mm256_and_si256(bits32(b[i].qh), _mm256_set1_epi8(0x10));
		_mm256_storeu_si256((__m256i *)(lv + 32 * i), _mm256_or_si256(nibbles32(b[i].qs), hi));
		d[i] = F16(b[i].d);
		m[i] = -16 * d[i];
	}
}

static void
dec_q5_1(const uint8_t *row, int b0, int nb, uint8_t *lv, float *d, float *m)
{
	const block_q5_1 *b = (const block_q5_1 *)row + b0;
	for (int i = 0; i < nb; i++) {
		__m256i hi = _mm256_and_si256(bits32(b[i].qh), _mm256_set1_epi8(0x10));
		_mm256_storeu_si256((__m256i *)(lv + 32 * i), _mm256_or_si256(nibbles32(b[i].qs), hi));
		d[i] = F16(b[i].d);
		m[i] = F16(b[i].m);
	}
}

static void
dec_q8_0(const uint8_t *row, int b0, int nb, uint8_t *lv, float *d, float *m)
{
	const block_q8_0 *b = (const block_q8_0 *)row + b0;
	for (int i = 0; i < nb; i++) {
		__m256i q = _mm256_loadu_si256((const __m256i *)b[i].qs);
		_mm256_storeu_si256((__m256i *)(lv + 32 * i), _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80)));
		d[i] = F16(b[i].d);
		m[i] = -128 * d[i];
	}
}

static void
dec_iq4_nl(const uint8_t *row, int b0, int nb, uint8_t *lv, float *d, float *m)
{
	const block_iq4_nl *b = (const block_iq4_nl *)row + b0;
	const __m256i grid = iq4_grid();
	for (int i = 0; i < nb; i++) {
		__m256i v = _mm256_shuffle_epi8(grid, nibbles32(b[i].qs));
		_mm256_storeu_si256((__m256i *)(lv + 32 * i), _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)));
		d[i] = F16(b[i].d);
		m[i] = -128 * d[i];
	}
}

static void
dec_iq4_xs(const uint8_t *row, int b0, int nb, uint8_t *lv, float *d, float *m)
{
	const block_iq4_xs *b = (const block_iq4_xs *)row + b0 / 8;
	const __m256i grid = iq4_grid();
	for (int i = 0; i < nb / 8; i++) {
		float D = F16(b[i].d);
		for (int ib = 0; ib < 8; ib++) {
			int ls = ((b[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b[i].scales_h >> (2 * ib)) & 3) << 4);
			__m256i v = _mm256_shuffle_epi8(grid, nibbles32(b[i].qs + 16 * ib));
			_mm256_storeu_si256((__m256i *)(lv + 256 * i + 32 * ib),
			    _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)));
			d[8 * i + ib] = D * (ls - 32);
			m[8 * i + ib] = -128 * d[8 * i + ib];
		}
	}
}

static void
dec_q4_K(const uint8_t *row, int b0, int nb, uint8_t *lv, float *d, float *m)
{
	const block_q4_K *b = (const block_q4_K *)row + b0 / 8;
	const __m256i m4 = _mm256_set1_epi8(0xF);
	for (int i = 0; i < nb / 8; i++) {
		uint8_t sc[8], mn[8];
		float D = F16(b[i].d), M = F16(b[i].dmin);
		scale_min_k4(b[i].scales, sc, mn);
		for (int c = 0; c < 4; c++) {
			__m256i bits = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * c));
			_mm256_storeu_si256((__m256i *)(lv + 256 * i + 64 * c), _mm256_and_si256(bits, m4));
			_mm256_storeu_si256((__m256i *)(lv + 256 * i + 64 * c + 32),
			    _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4));
		}
		for (int j = 0; j < 8; j++) {
			d[8 * i + j] = D * sc[j];
			m[8 * i + j] = -M * mn[j];
		}
	}
}

static void
dec_q5_K(const uint8_t *row, int b0, int nb, uint8_t *lv, float *d, float *m)
{
	const block_q5_K *b = (const block_q5_K *)row + b0 / 8;
	const __m256i m4 = _mm256_set1_epi8(0xF), one = _mm256_set1_epi8(1);
	for (int i = 0; i < nb / 8; i++) {
		uint8_t sc[8], mn[8];
		float D = F16(b[i].d), M = F16(b[i].dmin);
		scale_min_k4(b[i].scales, sc, mn);
		__m256i hb = _mm256_loadu_si256((const __m256i *)b[i].qh);
		for (int c = 0; c < 4; c++) {
			__m256i bits = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * c));
			__m256i hl = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), one), 4);
			__m256i hh = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), one), 4);
			_mm256_storeu_si256((__m256i *)(lv + 256 * i + 64 * c), _mm256_or_si256(_mm256_and_si256(bits, m4), hl));
			_mm256_storeu_si256((__m256i *)(lv + 256 * i + 64 * c + 32),
			    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4), hh));
		}
		for (int j = 0; j < 8; j++) {
			d[8 * i + j] = D * sc[j];
			m[8 * i + j] = -M * mn[j];
		}
	}
}

/* The 16-element sub-block types: two scales and biases per 32-block. */
static void
dec_q6_K(const uint8_t *row, int b0, int nb, uint8_t *lv, float *d, float *m)
{
	const block_q6_K *b = (const block_q6_K *)row + b0 / 8;
	const __m256i m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(3);
	for (int i = 0; i < nb / 8; i++) {
		float D = F16(b[i].d);
		for (int h = 0; h < 2; h++) {
			const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
			__m256i b1 = _mm256_loadu_si256((const __m256i *)ql);
			__m256i b2 = _mm256_loadu_si256((const __m256i *)(ql + 32));
			__m256i bh = _mm256_loadu_si256((const __m256i *)qh);
			uint8_t *o = lv + 256 * i + 128 * h;
			_mm256_storeu_si256((__m256i *)o,
			    _mm256_or_si256(_mm256_and_si256(b1, m4), _mm256_slli_epi16(_mm256_and_si256(bh, m2), 4)));
			_mm256_storeu_si256((__m256i *)(o + 32), _mm256_or_si256(_mm256_and_si256(b2, m4),
			    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 2), m2), 4)));
			_mm256_storeu_si256((__m256i *)(o + 64), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m4),
			    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 4), m2), 4)));
			_mm256_storeu_si256((__m256i *)(o + 96), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m4),
			    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 6), m2), 4)));
		}
		for (int j = 0; j < 16; j++) {
			d[16 * i + j] = D * b[i].scales[j];
			m[16 * i + j] = -32 * d[16 * i + j];
		}
	}
}

static void
dec_q2_K(const uint8_t *row, int b0, int nb, uint8_t *lv, float *d, float *m)
{
	const block_q2_K *b = (const block_q2_K *)row + b0 / 8;
	const __m256i m2 = _mm256_set1_epi8(3);
	for (int i = 0; i < nb / 8; i++) {
		float D = F16(b[i].d), M = F16(b[i].dmin);
		for (int h = 0; h < 2; h++) {
			__m256i bits = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * h));
			for (int j = 0; j < 4; j++)
				_mm256_storeu_si256((__m256i *)(lv + 256 * i + 128 * h + 32 * j),
				    _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), m2));
		}
		for (int j = 0; j < 16; j++) {
			d[16 * i + j] = D * (b[i].scales[j] & 0xF);
			m[16 * i + j] = -M * (b[i].scales[j] >> 4);
		}
	}
}

static void
dec_q3_K(const uint8_t *row, int b0, int nb, uint8_t *lv, float *d, float *m)
{
	const block_q3_K *b = (const block_q3_K *)row + b0 / 8;
	const __m256i m2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
	for (int i = 0; i < nb / 8; i++) {
		const uint8_t *sb = b[i].scales;
		float D = F16(b[i].d);
		__m256i hm = _mm256_loadu_si256((const __m256i *)b[i].hmask);
		for (int h = 0; h < 2; h++) {
			__m256i bits = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * h));
			for (int j = 0; j < 4; j++) {
				__m256i q2 = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), m2);
				__m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), one);
				_mm256_storeu_si256((__m256i *)(lv + 256 * i + 128 * h + 32 * j),
				    _mm256_or_si256(q2, _mm256_slli_epi16(hb, 2)));   /* q + 4 in 0..7 */
			}
		}
		for (int j = 0; j < 16; j++) {
			int lo = j < 8 ? (sb[j] & 0xF) : (sb[j - 8] >> 4);
			int hi = (sb[8 + j % 4] >> (2 * (j / 4))) & 3;
			d[16 * i + j] = D * ((lo | (hi << 4)) - 32);
			m[16 * i + j] = -4 * d[16 * i + j];
		}
	}
}

/* Decodes rows [0, NR) of a panel (zeros for rows NR..VL-1) and
 * interleaves them.  NS sub-blocks per 32-block. */
static void
panel_pack(struct panel *p, dec_fn dec, int ns, int mins, const uint8_t *w, size_t ws, int nr, int b0, int nb)
{
	size_t lrow = (size_t)nb * 32, srow = (size_t)nb * ns;
	for (int r = 0; r < VL; r++) {
		if (r < nr) {
			dec(w + (size_t)r * ws, b0, nb, p->lv + r * lrow, p->td + r * srow, p->tm + r * srow);
		} else {
			memset(p->lv + r * lrow, 0, lrow);
			memset(p->td + r * srow, 0, srow * sizeof(float));
			memset(p->tm + r * srow, 0, srow * sizeof(float));
		}
	}
	transpose_rows((const uint32_t *)p->lv, lrow / 4, nb * 8, (uint32_t *)p->q);
	transpose_rows((const uint32_t *)p->td, srow, (int)srow, (uint32_t *)p->d);
	if (mins)   /* otherwise the offsets enter through the activations' sums */
		transpose_rows((const uint32_t *)p->tm, srow, (int)srow, (uint32_t *)p->m);
}

#ifndef QX_VNNI
/* ACC + the products of signed bytes W and S, 4 per lane, by maddubs on
 * |W| and S with W's sign (8-bit levels would saturate its int16 pairs
 * as unsigned bytes; |W| <= 128, |S| <= 127 do not). */
ALWAYS vi
vi_dp_signed(vi acc, vi w, vi s)
{
#ifdef QX_512
	const vi sw = _mm512_mask_sub_epi8(s, _mm512_movepi8_mask(w), _mm512_setzero_si512(), s);
	return vi_add32(acc, vi_madd(vi_maddubs(_mm512_abs_epi8(w), sw), vi_set1_16(1)));
#else
	return vi_add32(acc, vi_madd(vi_maddubs(_mm256_sign_epi8(w, w), _mm256_sign_epi8(s, w)), vi_set1_16(1)));
#endif
}
#endif

/*
 * The microkernel: VL rows (one panel) by T tokens over NB blocks.  X is
 * token 0's q8p row (XS bytes between tokens), B0 the first block, N the
 * row length.  NS is 1 (32-element sub-blocks) or 2 (16).  WIDE: levels
 * use 8 bits (without VNNI they are split into nibbles to keep maddubs'
 * int16 pairs from saturating; 6 bits or fewer pass as they are).
 */
ALWAYS void
mk_i8(const int T, const int NS, const int WIDE, const int MINS, int offsh, const struct panel *p, int nb,
      const uint8_t *x, size_t xs, int n, int b0, float *out, size_t ldo, int nr, int first)
{
	vf acc[16];
	const uint8_t *xq = x + (size_t)b0 * 32;
	const float *xd = Q8P_D(x, n) + b0, *x32 = Q8P_S32(x, n) + b0, *x16 = Q8P_S16(x, n) + 2 * b0;
	const int32_t *n32 = Q8P_N32(x, n) + b0, *n16 = Q8P_N16(x, n) + 2 * b0;
	const size_t xf = xs / sizeof(float);   /* the float and int arrays' token stride */
	const __m128i sh = _mm_cvtsi32_si128(offsh);

	UNROLL
	for (int t = 0; t < T; t++)
		acc[t] = first ? vf_zero() : vf_loadn(out + t * ldo, nr);
	for (int b = 0; b < nb; b++) {
		const uint8_t *pq = p->q + (size_t)b * 8 * VL * 4;
		UNROLL
		for (int h = 0; h < NS; h++) {
			vi ai[16];
			const int g0 = h * (8 / NS), g1 = (h + 1) * (8 / NS);
			/* A level offset L = q + 2^offsh enters as -2^offsh * sum(x)
			 * (8-bit levels without VNNI: q itself, signed). */
#ifdef QX_VNNI
			const int signed8 = 0;
#else
			const int signed8 = WIDE;
#endif
			UNROLL
			for (int t = 0; t < T; t++)
				ai[t] = MINS || signed8 ? vi_zero() :
				    VI_SLL(vi_set1(NS == 1 ? n32[t * xf + b] : n16[t * xf + 2 * b + h]), sh);
#ifdef QX_VNNI
			(void)WIDE;
			UNROLL
			for (int g = g0; g < g1; g++) {
				vi w = vi_load(pq + (size_t)g * VL * 4);
				UNROLL
				for (int t = 0; t < T; t++)
					ai[t] = vi_dpbusd_x4(ai[t], w, xq + t * xs + b * 32 + g * 4);
			}
#else
			UNROLL
			for (int g = g0; g < g1; g += 2) {
				vi w0 = vi_load(pq + (size_t)g * VL * 4), w1 = vi_load(pq + (size_t)(g + 1) * VL * 4);
				if (!WIDE) {
					UNROLL
					for (int t = 0; t < T; t++) {
						vi s0 = vi_set1(ld32(xq + t * xs + b * 32 + g * 4));
						vi s1 = vi_set1(ld32(xq + t * xs + b * 32 + g * 4 + 4));
						vi p16 = vi_add16(vi_maddubs(w0, s0), vi_maddubs(w1, s1));
						ai[t] = vi_add32(ai[t], vi_madd(p16, vi_set1_16(1)));
					}
				} else {
					/* q = L - 128 by magnitude and sign (vi_dp_signed): two
					 * maddubs a pair of groups, where splitting L into
					 * nibbles took four (their int16 pairs would saturate). */
					const vi q0 = vi_xor(w0, vi_set1_8((char)0x80)), q1 = vi_xor(w1, vi_set1_8((char)0x80));
					UNROLL
					for (int t = 0; t < T; t++) {
						vi s0 = vi_set1(ld32(xq + t * xs + b * 32 + g * 4));
						vi s1 = vi_set1(ld32(xq + t * xs + b * 32 + g * 4 + 4));
						ai[t] = vi_dp_signed(vi_dp_signed(ai[t], q0, s0), q1, s1);
					}
				}
			}
#endif
			vf d = vf_load(p->d + (size_t)(b * NS + h) * VL);
			vf m = MINS ? vf_load(p->m + (size_t)(b * NS + h) * VL) : vf_zero();
			UNROLL
			for (int t = 0; t < T; t++) {
				float dx = xd[t * xf + b];
				acc[t] = vf_fma(vi_cvt(ai[t]), vf_mul(d, vf_set1(dx)), acc[t]);
				if (MINS)
					acc[t] = vf_fma(m, vf_set1(NS == 1 ? x32[t * xf + b] : x16[t * xf + 2 * b + h]), acc[t]);
			}
		}
	}
	UNROLL
	for (int t = 0; t < T; t++)
		vf_storen(out + t * ldo, acc[t], nr);
}

typedef void (*mk_i8_fn)(int tt, int offsh, const struct panel *p, int nb, const uint8_t *x, size_t xs, int n,
			 int b0, float *out, size_t ldo, int nr, int first);

#define MK_I8_CASE(T, NS, WIDE, MINS) \
		case T: mk_i8(T, NS, WIDE, MINS, offsh, p, nb, x, xs, n, b0, out, ldo, nr, first); break;
#if GT == 8
#define MK_I8_MORE(NS, WIDE, MINS) MK_I8_CASE(5, NS, WIDE, MINS) MK_I8_CASE(6, NS, WIDE, MINS) \
		MK_I8_CASE(7, NS, WIDE, MINS) MK_I8_CASE(8, NS, WIDE, MINS)
#else
#define MK_I8_MORE(NS, WIDE, MINS)
#endif
#define MK_I8_SWITCH(NAME, NS, WIDE, MINS) \
	static void NAME(int tt, int offsh, const struct panel *p, int nb, const uint8_t *x, size_t xs, int n, \
			 int b0, float *out, size_t ldo, int nr, int first) \
	{ \
		switch (tt) { \
		MK_I8_CASE(1, NS, WIDE, MINS) MK_I8_CASE(2, NS, WIDE, MINS) MK_I8_CASE(3, NS, WIDE, MINS) \
		MK_I8_CASE(4, NS, WIDE, MINS) MK_I8_MORE(NS, WIDE, MINS) \
		} \
	}
MK_I8_SWITCH(mk_i8_s1, 1, 0, 0)       /* 32-element sub-blocks, level offsets */
MK_I8_SWITCH(mk_i8_s1m, 1, 0, 1)      /* ... with mins */
MK_I8_SWITCH(mk_i8_s1w, 1, 1, 0)      /* 8-bit levels */
MK_I8_SWITCH(mk_i8_s2, 2, 0, 0)       /* 16-element sub-blocks, offsets */
MK_I8_SWITCH(mk_i8_s2m, 2, 0, 1)      /* ... with mins */

#ifdef QX_AMX
/*
 * The int8 GEMM on AMX tiles (tier amx).  TDPBSSD (TDPBSUD for the types
 * with mins) multiplies A, 16 tokens' signed activations of one 32-block
 * (16 rows of 32 bytes, read straight from their q8p rows), by B, the
 * panel's levels of that block (made signed by amx_signed, or unsigned
 * with mins), whose [group][row][4 levels] layout is already the B tile's
 * (8 rows of 64 bytes), into C: 16 tokens x 16 weight rows of int32 -- one
 * token's row of C is what mk_i8 sums in a vector.  The scales are per
 * block, so K stays 32 (a tile could take 64) and each block's C is stored
 * and scaled with AVX-512 as mk_i8 scales its sums; two C tiles let one
 * block's product run while the previous one is scaled.  Only 32-element
 * sub-blocks (NS 1); the 16-element ones and token tails take mk_i8.
 */
struct amx_cfg {
	uint8_t palette, start_row, reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
};

/* Configures the thread's tiles 0 .. N-1: tile i ROWS[i] rows of
 * COLSB[i] bytes. */
static void
amx_config(int n, const uint8_t *rows, const uint16_t *colsb)
{
	struct amx_cfg c;
	memset(&c, 0, sizeof(c));
	c.palette = 1;
	for (int i = 0; i < n; i++) {
		c.rows[i] = rows[i];
		c.colsb[i] = colsb[i];
	}
	_tile_loadconfig(&c);
}

/* Tiles 0, 1: C; 2, 3: A; 4, 5: B.  Per thread, before its first tile
 * instruction; amx_end frees the thread's tile state. */
static void
amx_begin(void)
{
	static const uint8_t rows[6] = { AMX_T, AMX_T, AMX_T, AMX_T, 8, 8 };
	static const uint16_t colsb[6] = { VL * 4, VL * 4, 32, 32, VL * 4, VL * 4 };
	amx_config(6, rows, colsb);
}

static void
amx_end(void)
{
	_tile_release();
}

/* ACC[t] += token t's row of C (block B) scaled, as in mk_i8; XD and X32
 * the tokens' block scales and sums, AMX_T a block. */
ALWAYS void
amx_scale(const int MINS, vf *acc, const int32_t *c, const struct panel *p, int b, const float *xd,
	  const float *x32)
{
	vf d = vf_load(p->d + (size_t)b * VL);
	vf m = MINS ? vf_load(p->m + (size_t)b * VL) : vf_zero();
	UNROLL
	for (int t = 0; t < AMX_T; t++) {
		acc[t] = vf_fma(vi_cvt(vi_load(c + t * VL)), vf_mul(d, vf_set1(xd[b * AMX_T + t])), acc[t]);
		if (MINS)
			acc[t] = vf_fma(m, vf_set1(x32[b * AMX_T + t]), acc[t]);
	}
}

/* The levels of a panel of a type without mins made signed (q = L -
 * 2^OFFSH) for TDPBSSD: then no offset is left to take out of each
 * block's sums (in mk_i8, 3 of a token's 7 operations a block).  After
 * mk_i8 has had the panel. */
static void
amx_signed(struct panel *p, int nb, int offsh)
{
	const vi o = vi_set1_8((char)(1 << offsh));
	for (size_t i = 0; i < (size_t)nb * 32 * VL; i += sizeof(vi))
		vi_store(p->q + i, _mm512_sub_epi8(vi_load(p->q + i), o));
}

/* mk_i8 for AMX_T tokens on tiles (NS 1).  MINS: unsigned levels, the
 * bias the panel's m; else signed levels (amx_signed). */
ALWAYS void
mk_amx(const int MINS, const struct panel *p, int nb, const uint8_t *x, size_t xs, int n, int b0, float *out,
       size_t ldo, int nr, int first)
{
	vf acc[AMX_T];
	int32_t c0[AMX_T * VL] __attribute__((aligned(64))), c1[AMX_T * VL] __attribute__((aligned(64)));
	float xd[KC_BLOCKS * AMX_T] __attribute__((aligned(64))), x32[KC_BLOCKS * AMX_T] __attribute__((aligned(64)));
	const uint8_t *xq = x + (size_t)b0 * 32;
	const size_t xf = xs / sizeof(float);

	/* The tokens' block scales (and sums), a block's side by side: the
	 * scaling's broadcasts then come from one base, not 16 rows. */
	for (int c = 0; c < nb; c += AMX_T) {
		transpose_tile_n((const uint32_t *)(Q8P_D(x, n) + b0 + c), xf, (uint32_t *)xd + c * AMX_T, AMX_T, nb - c);
		if (MINS)
			transpose_tile_n((const uint32_t *)(Q8P_S32(x, n) + b0 + c), xf, (uint32_t *)x32 + c * AMX_T,
			    AMX_T, nb - c);
	}

	UNROLL
	for (int t = 0; t < AMX_T; t++)
		acc[t] = first ? vf_zero() : vf_loadn(out + t * ldo, nr);
	/* Block b + 1's product is issued before block b's C is read. */
#define AMX_BLOCK(C, A, B, BB) \
	do { \
		_tile_zero(C); \
		_tile_loadd(A, xq + (size_t)(BB) * 32, xs); \
		_tile_loadd(B, p->q + (size_t)(BB) * 8 * VL * 4, VL * 4); \
		if (MINS) \
			_tile_dpbsud(C, A, B); \
		else \
			_tile_dpbssd(C, A, B); \
	} while (0)
	AMX_BLOCK(0, 2, 4, 0);
	for (int b = 0; b < nb; b += 2) {
		if (b + 1 < nb)
			AMX_BLOCK(1, 3, 5, b + 1);
		_tile_stored(0, c0, VL * 4);
		amx_scale(MINS, acc, c0, p, b, xd, x32);
		if (b + 1 == nb)
			break;
		if (b + 2 < nb)
			AMX_BLOCK(0, 2, 4, b + 2);
		_tile_stored(1, c1, VL * 4);
		amx_scale(MINS, acc, c1, p, b + 1, xd, x32);
	}
#undef AMX_BLOCK
	UNROLL
	for (int t = 0; t < AMX_T; t++)
		vf_storen(out + t * ldo, acc[t], nr);
}

static void
mk_amx_s(const struct panel *p, int nb, const uint8_t *x, size_t xs, int n, int b0, float *out, size_t ldo, int nr,
	 int first)
{
	mk_amx(0, p, nb, x, xs, n, b0, out, ldo, nr, first);
}

static void
mk_amx_m(const struct panel *p, int nb, const uint8_t *x, size_t xs, int n, int b0, float *out, size_t ldo, int nr,
	 int first)
{
	mk_amx(1, p, nb, x, xs, n, b0, out, ldo, nr, first);
}
#endif

/* ------------------------------------------------------------------ */
/*
 * Packed weights (pack.c): a group of VL rows holds, block by block, the
 * VL rows' f16 scales (Q4_1, Q5_1: then their mins), then the rest of the
 * block (Q5_0, Q5_1: recoded, see pk_levels) in 4-byte units,
 * unit u of the VL rows side by side.
 * One vector is then the same 4 bytes of every row -- for Q4_0, levels
 * of elements 4u..4u+3 in the low nibbles and 16+4u..16+4u+3 in the high
 * ones -- so vpdpbusd (or maddubs) with a token's 4 activations
 * broadcast adds each row's products in its own lane: no horizontal
 * sums, no gathers, one load per 4 bytes of VL rows.
 */
ALWAYS vf
vf_halfs(const uint8_t *p)
{
#ifdef QX_512
	return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
#else
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
#endif
}

/* ACC + the products of U (unsigned) and S (signed) bytes, 4 per lane. */
ALWAYS vi
vi_dp(vi acc, vi u, vi s)
{
#ifdef QX_VNNI
	return vi_dpbusd(acc, u, s);
#else
	return vi_add32(acc, vi_madd(vi_maddubs(u, s), vi_set1_16(1)));
#endif
}


/* Bytes of a packed type's block; whether a block has a min (w = d L +
 * m: Q4_1, Q5_1), the header's second half; the header's bytes per row;
 * whether its levels take 8 bits; their offset (w = d (L - off)), 0 where
 * the GEMV takes 8-bit levels signed, or the block has a min. */
ALWAYS int
pk_bs(const int TY)
{
	return TY == GGML_TYPE_Q8_0 ? 34 : TY == GGML_TYPE_Q5_0 ? 22 : TY == GGML_TYPE_Q4_1 ? 20 : TY == GGML_TYPE_Q5_1 ? 24 : 18;
}
ALWAYS int pk_mins(const int TY) { return TY == GGML_TYPE_Q4_1 || TY == GGML_TYPE_Q5_1; }
ALWAYS int pk_hb(const int TY) { return pk_mins(TY) ? 4 : 2; }
ALWAYS int pk_wide(const int TY) { return TY == GGML_TYPE_Q8_0 || TY == GGML_TYPE_IQ4_NL || TY == GGML_TYPE_IQ4_XS; }

/* A packed column C of COL bytes with a header of HB bytes a row: where
 * the header is, and the address its units are taken from (as if the
 * header came first: units at + HB * VL).  A header of 2 bytes a row
 * follows the units in a column on a vector's boundary (pack.c). */
ALWAYS const uint8_t *pk_head(int hb, const uint8_t *c, size_t col) { return q_pack_header_after(hb, c, VL) ? c + col - 2 * VL : c; }
ALWAYS const uint8_t *pk_ubase(int hb, const uint8_t *c) { return q_pack_header_after(hb, c, VL) ? c - 2 * VL : c; }

/* IQ4's grid values, offset by 128 (unsigned levels), filled by
 * kern_build: the VNNI tiers look their levels up in it, one XOR less a
 * vector of levels. */
static uint8_t iq4nl_u[16];

/* The IQ4 grid's levels (unsigned, offset 128) of the nibbles L. */
ALWAYS vi
iq4_levels(vi l)
{
#ifdef QX_VNNI
	return vi_shuffle8(vi_bcast128((const int8_t *)iq4nl_u), l);
#else
	/* maddubs takes them signed again (pk_dot_n): the two XORs fold. */
	return vi_xor(vi_shuffle8(vi_bcast128(q_iq4nl_values), l), vi_set1_8((char)0x80));
#endif
}
ALWAYS int
pk_off(const int TY)
{
#ifndef QX_VNNI
	if (pk_wide(TY))
		return 0;
#endif
	return TY == GGML_TYPE_Q4_0 ? 8 : TY == GGML_TYPE_Q5_0 ? 16 : pk_mins(TY) ? 0 : 128;
}

/* Bits FROM.. of each byte of V moved to bits TO.. (the bits MASK keeps). */
ALWAYS vi
vi_bits_to(vi v, int from, int to, int mask)
{
	return vi_and(from <= to ? vi_slli16(v, to - from) : vi_srli16(v, from - to), vi_set1_8((char)mask));
}

/* LV with bit B of each byte of QH as its fifth bit (bit 4). */
ALWAYS vi
vi_fifth_bit(vi lv, vi qh, int b)
{
#ifdef QX_512
	/* LV's bit 4 is clear: the masked add sets it. */
	return _mm512_mask_add_epi8(lv, _mm512_test_epi8_mask(qh, vi_set1_8((char)(1 << b))), lv, vi_set1_8(0x10));
#else
	return vi_or(lv, vi_bits_to(qh, b, 4, 0x10));
#endif
}

/*
 * Levels (unsigned bytes) of elements 4G..4G+3 of the VL rows of one
 * block column C of a packed group.  Q5_0's (Q5_1's) 5-bit levels
 * (recode_q5): elements 4g + i (g < 4) in bits 0..4 of unit 1 + g,
 * elements 16 + 4g + i with their top 3 bits in its bits 5..7, their low
 * 2 at bits 2g of unit 0.
 */
ALWAYS vi
pk_levels(const int TY, const uint8_t *c, int g)
{
	const uint8_t *u = c + (size_t)pk_hb(TY) * VL;   /* the units */
	if (TY == GGML_TYPE_Q8_0)
		return vi_xor(vi_load(u + (size_t)g * 4 * VL), vi_set1_8((char)0x80));
	if (TY == GGML_TYPE_Q5_0 || TY == GGML_TYPE_Q5_1) {
		const vi v = vi_load(u + (size_t)(1 + g % 4) * 4 * VL);
		if (g < 4)
			return vi_and(v, vi_set1_8(0x1F));
		return vi_or(vi_bits_to(v, 5, 2, 0x1C), vi_bits_to(vi_load(u), 2 * (g - 4), 0, 0x03));
	}
	vi v = vi_load(u + (size_t)(g % 4) * 4 * VL);
	vi l = vi_and(g < 4 ? v : vi_srli16(v, 4), vi_set1_8(0x0F));
	if (TY == GGML_TYPE_IQ4_NL)
		l = iq4_levels(l);
	return l;
}

/* A row of type TYPE as in the file (past the last whole group) with a
 * q8p row (half floats: a float row): the few rows a matrix has beyond a
 * multiple of VL.  Through the scalar dequantizer, summed in double (half
 * floats: their dot product). */
static float
pk_tail(enum ggml_type type, int n, const uint8_t *row, const uint8_t *x)
{
	const int8_t *q = (const int8_t *)x;
	const float *xd = Q8P_D(x, n);
	const int bk = (int)ggml_type_info_get(type)->blck_size;
	const size_t bs = ggml_type_info_get(type)->type_size;
	float lv[256];
	double sum = 0;

	if (type == GGML_TYPE_F16 || type == GGML_TYPE_BF16) {   /* float activations */
		float s;
		(type == GGML_TYPE_F16 ? dot_f16 : dot_bf16)(n, &s, row, x);
		return s;
	}
	for (int i = 0; i < n / bk; i++) {
		q_traits_get(type)->to_float(row + (size_t)i * bs, lv, bk);
		for (int j = 0; j < bk; j++)
			sum += (double)lv[j] * xd[(i * bk + j) / 32] * q[i * bk + j];
	}
	return (float)sum;
}

/* A GEMM panel straight from a packed group G, blocks [B0, B0 + NB):
 * the levels as pk_levels gives them, the scales converted; no
 * transpose. */
ALWAYS void
pk_panel(const int TY, struct panel *p, const uint8_t *g, int b0, int nb)
{
	for (int b = 0; b < nb; b++) {
		const size_t col = (size_t)VL * pk_bs(TY);
		const uint8_t *c = g + (size_t)(b0 + b) * col, *h = pk_head(pk_hb(TY), c, col);
		uint8_t *pq = p->q + (size_t)b * 8 * VL * 4;
		c = pk_ubase(pk_hb(TY), c);
		UNROLL
		for (int k = 0; k < 8; k++)
			vi_store(pq + (size_t)k * VL * 4, pk_levels(TY, c, k));
		vf_store(p->d + (size_t)b * VL, vf_halfs(h));
		if (pk_mins(TY))
			vf_store(p->m + (size_t)b * VL, vf_halfs(h + 2 * VL));
	}
}


/*
 * Packed K-quants (Q4_K, Q5_K) and IQ4_XS: a column is one superblock of
 * the group's VL rows -- d and dmin (IQ4_XS: d and scales_h) of each row,
 * then the rest of the block in units: the 12 bytes of sub-block scales
 * and mins (IQ4_XS: 4 of scales_l), (Q5_K) the high bits, the nibbles
 * (pack.c).  Levels of elements 4k..4k+3 of every row
 * come from one or two units as for the 32-element types; each
 * sub-block's integer sum is scaled by its integer scale and converted to
 * float once per 32 inputs (a q8p block, with its scale).  Q6_K's
 * column is its scales, then 6 units per 32 inputs, each read once
 * (pack.c recodes its bits).  With the file's units in the file's order
 * (the GEMV going back and forth between nibbles and high bits) it ran
 * at a third of the file layout's speed from memory on one thread (8
 * GB/s against 24); merely reordered, still behind on two.
 */
/* Whether TY's packed column is a superblock of 256 (pkk_*). */
ALWAYS int
pkk_type(const int TY)
{
	return TY == GGML_TYPE_Q2_K || TY == GGML_TYPE_Q3_K || TY == GGML_TYPE_Q4_K || TY == GGML_TYPE_Q5_K ||
	    TY == GGML_TYPE_Q6_K || TY == GGML_TYPE_IQ4_XS;
}

/*
 * Whether the GEMV prefetches a column's lines as it starts it: Q3_K on
 * the AVX-512 tiers, whose 1760-byte columns take long enough to read
 * that the hardware's prefetch alone fell behind.  kbench, avx512bf16,
 * medians of 4 interleaved pairs, GB/s without / with: from memory, one
 * thread, 131072 x 1024 12.8 / 17.8, 65536 x 2048 9.4 / 16.9; two
 * threads 25.8 / 37.8 and 19.7 / 23.3; in cache (1024 x 1024, one
 * thread) 23.3 / 20.4.  Q2_K gained less from memory than it lost in
 * cache (27.7 / 23.0); on AVX2 neither gained (13.2 / 13.1, 15.9 /
 * 15.5); Q4_K on both tiers and AVX2's Q6_K were level or behind with
 * it, IQ4_XS behind.  AVX-512's Q6_K packed went from 13.3 to 25.1 GB/s
 * with it (one thread), level with its file layout and no faster in a
 * model (qwen3-0.6b Q4_K_M tg64 69.8 / 65.7 t/s on two threads, 56.7 /
 * 56.4 on one, file layout / packed), so it stays as in the file.
 */
ALWAYS int
pkk_prefetch(const int TY)
{
#ifdef QX_512
	return TY == GGML_TYPE_Q3_K;
#else
	(void)TY;
	return 0;
#endif
}

/*
 * How far past the column it is at the packed GEMV asks for the weights
 * (bytes, struct q_ahead: chosen in cpu.c by the CPU's maker; the
 * measurements on AMD CPUs follow, Intel's are in cpu.c).  On AMD
 * CPUs the hardware's prefetch alone left generation at 76-88% of
 * the rate the weights read at without arithmetic.  AVX2 tier, 2 cores of
 * a Zen 3 EPYC, Qwen2.5-0.5B shapes, 2 threads, tg32 as a share of the
 * bound (bench --sys), four interleaved runs: Q4_0 0.76-0.81 -> 0.87-0.96,
 * Q5_0 0.80-0.86 -> 0.87-0.93, Q8_0 0.86-0.88 -> 0.93-0.99; Qwen3-0.6B
 * Q4_K_M 0.76-0.82 -> 0.82-0.86, IQ4_XS 0.72-0.74 -> 0.83-0.87 (three
 * runs, pkk_gemv's prefetch alone).  kbench from memory (65536 x 1024,
 * one thread) Q4_0 10.6-11.0 -> 13.5-13.8 GB/s, Q4_K 8.6-10.6 ->
 * 10.5-13.6; in L3 (1024 x 1024) up to 23% slower.  2048 was no
 * better; float rows (one dot product per row) gained nothing.
 *
 * AVX-512 (avx512bf16 tier, 2 cores of a Zen 5 EPYC, kbench from memory,
 * 131072 x 1024 (IQ4_XS 65536), best of 8, four interleaved rounds):
 * the K-quants' and IQ4_XS's groups gain in every pair, one thread Q4_K
 * 21-25 -> 29-35 GB/s, Q5_K 16-17 -> 26-33, IQ4_XS 18-27 -> 31-36, two
 * threads 1.03-1.8x; the 32-block groups (pk_gemv) were level (Q4_0,
 * Q8_0) or behind (Q5_0, medians 30 -> 23 GB/s on two threads), so
 * there the hardware's prefetch works alone (b32 0).  The AVX-VNNI
 * tier on the same machine (four rounds): its 32-block groups faster
 * without (two threads, every pair: Q4_0 31-51 -> 46-58 GB/s, Q8_0
 * 31-69 -> 32-72, Q5_0 31-54 -> 32-64), its K-quants and IQ4_XS level;
 * so it goes as AVX-512 does.  The 32-block read-ahead is the AVX2
 * tier's alone (measured on Zen 3, above).  Zen 5 forced to the AVX2
 * tier runs faster without either (Qwen2.5-0.5B tg128, 2 threads, the
 * read-ahead on and off by turns token by token in one run, 3 runs:
 * token times without it 0.905-0.916 of with it for Q4_0, 0.920-0.949
 * for Q4_K_M): its own prefetchers keep up there, and its AVX-512 tiers
 * gain from the K-quants' (0.933-0.935 of the time without); the AVX2
 * tier keeps it for the machines it serves.
 *
 * 4 KiB ahead on the AVX-512 and AVX-VNNI tiers (a column and more:
 * Q4_K's 2304 bytes, Q6_K's 3360 on AVX-512), where 1 KiB left the
 * K-quants' GEMV behind the memory in a fast hour (kbench 131072 x 4096
 * Q4_K, two threads: 86-88% of the rate the weights read at alone).
 * Zen 5, 2 threads, tg128 with the distance changed token by token in
 * one run, both orders, token time 4096 / 1024: avx512bf16 Qwen3-0.6B
 * Q4_K_M 0.859, 0.904; IQ4_XS 0.877, 0.910; Q4_0 (its Q6_K output
 * alone) 0.946, 0.985; llama-1b Q4_K_M 0.863, 0.921; the avx512 tier
 * 0.871, 0.899; avxvnni 0.938, 0.945.  8192 against 4096 level (0.981
 * both ways round, the order's own bias), 2048 behind it (1.071 of
 * 4096's time both ways round); in cache (1024 x 1024, one thread)
 * level or ahead (Q5_K 59-60 -> 64-67 GB/s).  Their 32-block groups
 * stay without (4096 there: 0.980 and 1.002 of the time, level).  Zen 5
 * forced to the AVX2 tier also gains from 4096 over 1024 (0.930,
 * 0.953), but Zen 3, the kind of machine that tier is for, measured 2048
 * no better than 1024, and only 1024 against none was measured there.
 */
#if defined(QX_512) || defined(QX_VNNI)
#define PK_AHEAD q_ahead_wide
#else
#define PK_AHEAD q_ahead_avx2
#endif

/*
 * Asks for the LEN bytes at P into L1.  Always inlined: GCC 12 drops
 * calls to a static function that only prefetches.  A loop: its add,
 * compare and branch per line are 14% of Q6_K's packed GEMV in cache
 * (perf, 53 lines a column), and unrolled (whole, or spread over the
 * column's sub-blocks) the K-quants ran faster in cache (one thread, Zen
 * 5, avx512bf16: Q6_K 41-62 -> 54-69 GB/s, Q4_K 81-85 -> 91-93, IQ4_XS
 * 69-74 -> 77) but generation from memory slower (Qwen3-0.6B Q4_K_M
 * tg64 at 92-95% of the bound against 97-101%, IQ4_XS 93-94 against
 * 95-100, three interleaved pairs each).
 */
ALWAYS void
prefetch_l1(const uint8_t *p, size_t len)
{
	for (size_t o = 0; o < len; o += 64)
		_mm_prefetch((const char *)p + o, _MM_HINT_T0);
}

/* How far past its L1 read-ahead a 32-weight block group asks L2 for its
 * weights (struct q_ahead's l2): 2048 bytes (cpu.c has the measurements). */
#define PK_L2_B32 2048

/* Asks for the LEN bytes at P into L2 (not L1): the packed groups'
 * second read-ahead (struct q_ahead's l2). */
ALWAYS void
prefetch_l2(const uint8_t *p, size_t len)
{
	for (size_t o = 0; o < len; o += 64)
		_mm_prefetch((const char *)p + o, _MM_HINT_T1);
}

/* The header's bytes per row (Q3_K and Q6_K: d alone). */
ALWAYS int pkk_hb(const int TY) { return TY == GGML_TYPE_Q3_K || TY == GGML_TYPE_Q6_K ? 2 : 4; }

ALWAYS int
pkk_bs(const int TY)
{
	return TY == GGML_TYPE_Q4_K ? 144 : TY == GGML_TYPE_Q5_K ? 176 : TY == GGML_TYPE_Q2_K ? 84 :
	    TY == GGML_TYPE_Q3_K ? 110 : TY == GGML_TYPE_Q6_K ? 210 : 136;
}

/* Unit U of column C (behind a header of 4 bytes a row; Q3_K's, 2: pkk_unit_h). */
ALWAYS vi pkk_unit_h(const uint8_t *c, int hb, int u) { return vi_load(c + (size_t)hb * VL + (size_t)u * 4 * VL); }
ALWAYS vi pkk_unit(const uint8_t *c, int u) { return pkk_unit_h(c, 4, u); }

/* Byte J of each lane of V. */
#define PKK_BYTE(v, j) vi_and(VI_SRLI32(v, 8 * (j)), vi_set1(0xFF))

/* Q3_K's signed 6-bit scale of sub-block J (of 16) of each row, from its
 * 3 units of scales: the low 4 bits in byte J % 8 (the high nibble for J
 * >= 8), the high 2 in byte 8 + J % 4 at bit 2 (J / 4). */
ALWAYS vi
q3_scale(const uint8_t *c, int j)
{
	const vi lo = vi_and(VI_SRLI32(PKK_BYTE(pkk_unit_h(c, 2, 24 + j % 8 / 4), j % 4), 4 * (j / 8)), vi_set1(0x0F));
	const vi hi = vi_and(VI_SRLI32(PKK_BYTE(pkk_unit_h(c, 2, 26), j % 4), 2 * (j / 4)), vi_set1(0x03));
	return vi_sub32(vi_or(lo, VI_SLLI32(hi, 4)), vi_set1(32));
}

/* Q2_K's byte of sub-block J (of 16): its scale in the low nibble, its
 * min in the high one. */
ALWAYS vi q2_byte(const uint8_t *c, int j) { return PKK_BYTE(pkk_unit(c, j / 4), j % 4); }

/* Q6_K's signed 8-bit scale of sub-block J (of 16): byte J % 4 of its
 * packed unit J / 4. */
ALWAYS vi
q6_scale(const uint8_t *c, int j)
{
	return VI_SRAI32(VI_SLLI32(pkk_unit_h(c, 2, j / 4), 24 - 8 * (j % 4)), 24);
}

/* The integer scale of sub-block J of a type with sub-blocks of 16 (Q2_K,
 * Q3_K, Q6_K). */
ALWAYS vi
q16_scale(const int TY, const uint8_t *c, int j)
{
	return TY == GGML_TYPE_Q3_K ? q3_scale(c, j) : TY == GGML_TYPE_Q6_K ? q6_scale(c, j) :
	    vi_and(q2_byte(c, j), vi_set1(0x0F));
}

/* Levels of elements 4K..4K+3 of a superblock (K < 64). */
ALWAYS vi
pkk_levels(const int TY, const uint8_t *c, int k)
{
	const int e = 4 * k;
	const vi m4 = vi_set1_8(0x0F);
	if (TY == GGML_TYPE_Q3_K) {
		/* 2 bits as Q2_K's (behind 8 units of high bits), plus 4 where
		 * the high bit (bit e / 32 of byte e % 32 of hmask) is set: 0..7,
		 * offset 4. */
		vi v = pkk_unit_h(c, 2, 8 + e / 128 * 8 + e % 32 / 4), hm = pkk_unit_h(c, 2, e % 32 / 4);
		return vi_or(vi_and(vi_srli16(v, 2 * (e % 128 / 32)), vi_set1_8(3)), vi_bits_to(hm, e / 32, 2, 4));
	}
	if (TY == GGML_TYPE_Q6_K) {
		/* Behind d and 4 units of scales, 6 units per 32 inputs
		 * (pack.c): 4 of nibbles (elements 4k..4k+3 of the 32: unit
		 * k % 4, the high nibbles from k = 4), 2 of high bit pairs (unit
		 * k / 4, bits 2 (k % 4)): 0..63, offset 32. */
		const int base = 4 + 6 * (e / 32), kk = e % 32 / 4, q = kk % 4;
		vi v = pkk_unit_h(c, 2, base + q), hm = pkk_unit_h(c, 2, base + 4 + kk / 4);
		return vi_or(vi_and(kk < 4 ? v : vi_srli16(v, 4), m4), vi_bits_to(hm, 2 * q, 4, 0x30));
	}
	if (TY == GGML_TYPE_Q2_K) {
		/* Behind 4 units of scales and mins: per 128 inputs 32 bytes,
		 * element e in byte e % 32 at bit 2 ((e % 128) / 32). */
		vi v = pkk_unit(c, 4 + e / 128 * 8 + e % 32 / 4);
		return vi_and(vi_srli16(v, 2 * (e % 128 / 32)), vi_set1_8(3));
	}
	if (TY == GGML_TYPE_IQ4_XS) {
		/* As IQ4_NL's, 16 bytes of nibbles per 32 inputs, behind the
		 * unit of 4-bit scales: the grid's values, offset by 128. */
		vi v = pkk_unit(c, 1 + e / 32 * 4 + e % 16 / 4);
		vi l = vi_and(e % 32 < 16 ? v : vi_srli16(v, 4), m4);
		return iq4_levels(l);
	}
	/* Q4_K, Q5_K: 64 inputs per 32 bytes of nibbles, the low ones first. */
	const int qs0 = TY == GGML_TYPE_Q4_K ? 3 : 11, j = e / 64, sb = e / 32;
	vi v = pkk_unit(c, qs0 + 8 * j + e % 32 / 4);
	vi lv = vi_and(e % 64 < 32 ? v : vi_srli16(v, 4), m4);
	if (TY == GGML_TYPE_Q5_K) {
		/* The fifth bit of element e: bit e / 32 of high-bit byte e % 32. */
		lv = vi_fifth_bit(lv, pkk_unit(c, 3 + e % 32 / 4), sb);
	}
	return lv;
}

/* Sub-block scales and mins of Q4_K/Q5_K, bytes J..J+3 of each lane
 * (SC[0]: scales 0-3, SC[1]: 4-7; MN likewise), from the 12 bytes of
 * 6-bit fields. */
ALWAYS void
pkk_scales(const uint8_t *c, vi sc[2], vi mn[2])
{
	const vi u0 = pkk_unit(c, 0), u1 = pkk_unit(c, 1), u2 = pkk_unit(c, 2);
	const vi m6 = vi_set1(0x3F3F3F3F), m4 = vi_set1(0x0F0F0F0F), top = vi_set1(0x30303030);
	sc[0] = vi_and(u0, m6);
	mn[0] = vi_and(u1, m6);
	sc[1] = vi_or(vi_and(u2, m4), vi_and(VI_SRLI32(u0, 2), top));
	mn[1] = vi_or(vi_and(VI_SRLI32(u2, 4), m4), vi_and(VI_SRLI32(u1, 2), top));
}


/* Levels of elements 4K..4K+3 of a column of any packed type. */
ALWAYS vi
pk_lv(const int TY, const uint8_t *c, int k)
{
	return pkk_type(TY) ? pkk_levels(TY, c, k) : pk_levels(TY, c, k);
}

/* The integer sums of levels and activations over the 4 NK inputs of
 * groups K0..K0+NK-1 of column C (NK 8: a q8p block; 4: its half), added
 * to ACC, for T tokens (q8p rows X, XS apart, from input XOFF). */
ALWAYS void
pk_dot_n(const int TY, const int T, const int NK, const uint8_t *c, int k0, vi *acc, const uint8_t *x, size_t xs,
	 int xoff)
{
#ifdef QX_VNNI
	UNROLL
	for (int k = 0; k < NK; k++) {
		vi l = pk_lv(TY, c, k0 + k);
		UNROLL
		for (int t = 0; t < T; t++)
			acc[t] = vi_dp(acc[t], l, vi_set1(ld32(x + (size_t)t * xs + xoff + 4 * k)));
	}
#else
	if (pk_wide(TY)) {   /* 8-bit levels: signed, by magnitudes */
		UNROLL
		for (int k = 0; k < NK; k++) {
			vi l = vi_xor(pk_lv(TY, c, k0 + k), vi_set1_8((char)0x80));
			UNROLL
			for (int t = 0; t < T; t++)
				acc[t] = vi_dp_signed(acc[t], l, vi_set1(ld32(x + (size_t)t * xs + xoff + 4 * k)));
		}
		return;
	}
	/* maddubs' int16 pairs summed over groups before one madd: at most
	 * 2 * 15 * 127 per group for 4-bit levels (all 8 fit int16), 2 * 31 *
	 * 127 for 5 bits (4 do). */
	const int per = TY == GGML_TYPE_Q4_0 || TY == GGML_TYPE_Q4_1 || TY == GGML_TYPE_Q4_K ||
	    TY == GGML_TYPE_Q2_K || TY == GGML_TYPE_Q3_K ? (NK < 8 ? NK : 8) : TY == GGML_TYPE_Q6_K ? 2 : 4;
	UNROLL
	for (int g0 = 0; g0 < NK; g0 += per) {
		vi p16[Q_GEMV_MAX_T];
		UNROLL
		for (int k = g0; k < g0 + per; k++) {
			vi l = pk_lv(TY, c, k0 + k);
			UNROLL
			for (int t = 0; t < T; t++) {
				vi pr = vi_maddubs(l, vi_set1(ld32(x + (size_t)t * xs + xoff + 4 * k)));
				p16[t] = k == g0 ? pr : vi_add16(p16[t], pr);
			}
		}
		UNROLL
		for (int t = 0; t < T; t++)
			acc[t] = vi_add32(acc[t], vi_madd(p16[t], vi_set1_16(1)));
	}
#endif
}

ALWAYS void
pk_dot(const int TY, const int T, const uint8_t *c, int k0, vi *acc, const uint8_t *x, size_t xs, int xoff)
{
	pk_dot_n(TY, T, 8, c, k0, acc, x, xs, xoff);
}

/* One packed group G of type TY by T tokens (q8p rows X, XS bytes
 * apart): OUT[t * LDO + r] for the group's VL rows. */
ALWAYS void
pk_gemv(const int TY, const int T, int n, float *out, size_t ldo, const uint8_t *g, const uint8_t *x, size_t xs)
{
	const int nb = n / 32;
	const size_t col = (size_t)VL * pk_bs(TY), xf = xs / sizeof(float);
	const float *xd = Q8P_D(x, n), *s32 = Q8P_S32(x, n);
	const int32_t *n32 = Q8P_N32(x, n);
	const size_t ahead = (size_t)PK_AHEAD.b32;
	vf acc[Q_GEMV_MAX_T];

	UNROLL
	for (int t = 0; t < T; t++)
		acc[t] = vf_zero();
	for (int b = 0; b < nb; b++) {
		const uint8_t *c = g + (size_t)b * col, *h = pk_head(pk_hb(TY), c, col);
		vi s[Q_GEMV_MAX_T];
		if (ahead)
			prefetch_l1(c + ahead, col);
		if (ahead && PK_AHEAD.l2)
			prefetch_l2(c + ahead + PK_L2_B32, col);
		c = pk_ubase(pk_hb(TY), c);
		/* The level offset enters as -off * sum(x). */
		UNROLL
		for (int t = 0; t < T; t++)
			s[t] = vi_set1(pk_off(TY) * n32[t * xf + b]);
		pk_dot(TY, T, c, 0, s, x, xs, b * 32);
		vf d = vf_halfs(h);
		UNROLL
		for (int t = 0; t < T; t++)
			acc[t] = vf_fma(vi_cvt(s[t]), vf_mul(d, vf_set1(xd[t * xf + b])), acc[t]);
		if (pk_mins(TY)) {
			/* The min against the activations' block sum. */
			vf m = vf_halfs(h + 2 * VL);
			UNROLL
			for (int t = 0; t < T; t++)
				acc[t] = vf_fma(m, vf_set1(s32[t * xf + b]), acc[t]);
		}
	}
	UNROLL
	for (int t = 0; t < T; t++)
		vf_store(out + (size_t)t * ldo, acc[t]);
}

/* IQ4_XS's signed 6-bit scale of sub-block B of each row: its low 4 bits
 * nibble B of LO4 (the unit of scales_l), its high 2 bits bits 2B of HI
 * (scales_h, the header's second half). */
ALWAYS vi
xs_scale(vi lo4, vi hi, int b)
{
	const vi l = vi_and(VI_SRLI32(lo4, 4 * b), vi_set1(0x0F)), h = vi_and(VI_SRLI32(hi, 2 * b), vi_set1(0x03));
	return vi_sub32(vi_or(l, VI_SLLI32(h, 4)), vi_set1(32));
}

/*
 * One packed group G of a K-quant or IQ4_XS by T tokens: per sub-block,
 * the integer sum times the integer scale, converted with the q8p block's
 * scale; the K-quants' mins against the activations' sums, IQ4_XS's level
 * offset 128 (where its levels are unsigned) as -128 times them.
 */
ALWAYS void
pkk_gemv(const int TY, const int T, int n, float *out, size_t ldo, const uint8_t *g, const uint8_t *x, size_t xs)
{
	const int ns = n / 256, xsq = TY == GGML_TYPE_IQ4_XS;
	const int off16 = TY == GGML_TYPE_Q3_K ? 4 : TY == GGML_TYPE_Q6_K ? 32 : 0;   /* signed scales, levels offset */
	const int q2 = TY == GGML_TYPE_Q2_K || off16;   /* sub-blocks of 16 */
	const size_t col = (size_t)VL * pkk_bs(TY), xf = xs / sizeof(float);
	const float *xd = Q8P_D(x, n), *x32 = Q8P_S32(x, n), *x16 = Q8P_S16(x, n);
	const int32_t *n32 = Q8P_N32(x, n), *n16 = Q8P_N16(x, n);
	const size_t ahead = (size_t)PK_AHEAD.k;
	vf acc[Q_GEMV_MAX_T];

	UNROLL
	for (int t = 0; t < T; t++)
		acc[t] = vf_zero();
	for (int i = 0; i < ns; i++) {
		const uint8_t *c = g + (size_t)i * col;
		vf ts[Q_GEMV_MAX_T], tm[Q_GEMV_MAX_T];
		if (pkk_prefetch(TY))
			prefetch_l1(c, col);
		if (ahead)
			prefetch_l1(c + ahead, col);
		if (ahead && PK_AHEAD.l2)
			prefetch_l2(c + ahead + col, col);
		const uint8_t *h = pk_head(pkk_hb(TY), c, col);
		c = pk_ubase(pkk_hb(TY), c);
		vi sc[2], mn[2], lo4, hi;
		UNROLL
		for (int t = 0; t < T; t++)
			ts[t] = tm[t] = vf_zero();
		if (xsq) {
			lo4 = pkk_unit(c, 0);
			hi = vi_load_u16(h + 2 * VL);
		} else if (!q2) {
			pkk_scales(c, sc, mn);
		}
		if (q2) {
			/* 16 sub-blocks of 16, each half of a q8p block its own
			 * integer sum times its scale.  Q2_K: byte j of unit u is
			 * sub-block 4u + j's scale (low nibble) and min (high), the
			 * min against the half's activation sum; Q3_K (Q6_K): signed
			 * 6-bit (8-bit) scales, levels offset by 4 (32), as -4 (-32)
			 * times the half's sum of activation levels. */
			UNROLL
			for (int b = 0; b < 8; b++) {
				vi a[Q_GEMV_MAX_T], a1[Q_GEMV_MAX_T];
				UNROLL
				for (int t = 0; t < T; t++) {
					const int32_t *h16 = n16 + t * xf + 2 * (8 * i + b);
					a[t] = vi_set1(off16 * h16[0]);
					a1[t] = vi_set1(off16 * h16[1]);
				}
				pk_dot_n(TY, T, 4, c, 8 * b, a, x, xs, 256 * i + 32 * b);
				pk_dot_n(TY, T, 4, c, 8 * b + 4, a1, x, xs, 256 * i + 32 * b + 16);
				const vi s0 = q16_scale(TY, c, 2 * b), s1 = q16_scale(TY, c, 2 * b + 1);
				UNROLL
				for (int t = 0; t < T; t++)
					ts[t] = vf_fma(vi_cvt(vi_add32(VI_MULLO32(a[t], s0), VI_MULLO32(a1[t], s1))),
					    vf_set1(xd[t * xf + 8 * i + b]), ts[t]);
				if (!off16) {
					const vf m0 = vi_cvt(VI_SRLI32(q2_byte(c, 2 * b), 4));
					const vf m1 = vi_cvt(VI_SRLI32(q2_byte(c, 2 * b + 1), 4));
					UNROLL
					for (int t = 0; t < T; t++) {
						const float *hs = x16 + t * xf + 2 * (8 * i + b);
						tm[t] = vf_fma(m1, vf_set1(hs[1]), vf_fma(m0, vf_set1(hs[0]), tm[t]));
					}
				}
			}
		}
		if (!q2) {
			UNROLL
			for (int b = 0; b < 8; b++) {
				vi a[Q_GEMV_MAX_T];
				UNROLL
				for (int t = 0; t < T; t++)
					a[t] = xsq ? vi_set1(pk_off(TY) * n32[t * xf + 8 * i + b]) : vi_zero();
				pk_dot(TY, T, c, 8 * b, a, x, xs, 256 * i + 32 * b);
				const vi scb = xsq ? xs_scale(lo4, hi, b) : PKK_BYTE(sc[b / 4], b % 4);
				UNROLL
				for (int t = 0; t < T; t++)
					ts[t] = vf_fma(vi_cvt(VI_MULLO32(a[t], scb)), vf_set1(xd[t * xf + 8 * i + b]), ts[t]);
				if (!xsq) {
					const vf mnb = vi_cvt(PKK_BYTE(mn[b / 4], b % 4));
					UNROLL
					for (int t = 0; t < T; t++)
						tm[t] = vf_fma(mnb, vf_set1(x32[t * xf + 8 * i + b]), tm[t]);
				}
			}
		}
		const vf d = vf_halfs(h);
		UNROLL
		for (int t = 0; t < T; t++)
			acc[t] = xsq || off16 ? vf_fma(d, ts[t], acc[t]) :
			    vf_fnmadd(vf_halfs(h + 2 * VL), tm[t], vf_fma(d, ts[t], acc[t]));
	}
	UNROLL
	for (int t = 0; t < T; t++)
		vf_store(out + (size_t)t * ldo, acc[t]);
}

/* A GEMM panel from a packed group of a K-quant, blocks of 32 [B0, B0 +
 * NB) (whole superblocks): levels, and each sub-block's d * scale (and
 * -dmin * min; Q2_K's sub-blocks are 16 inputs, two per block). */
ALWAYS void
pkk_panel(const int TY, struct panel *p, const uint8_t *g, int b0, int nb)
{
	for (int i = 0; i < nb / 8; i++) {
		const size_t col = (size_t)VL * pkk_bs(TY);
		const uint8_t *c = g + (size_t)(b0 / 8 + i) * col, *h = pk_head(pkk_hb(TY), c, col);
		c = pk_ubase(pkk_hb(TY), c);
		const vf d = vf_halfs(h);
		UNROLL
		for (int k = 0; k < 64; k++)
			vi_store(p->q + ((size_t)(8 * i + k / 8) * 8 + k % 8) * VL * 4, pkk_levels(TY, c, k));
		if (TY == GGML_TYPE_IQ4_XS) {
			const vi lo4 = pkk_unit(c, 0), hi = vi_load_u16(h + 2 * VL);
			UNROLL
			for (int b = 0; b < 8; b++)
				vf_store(p->d + (size_t)(8 * i + b) * VL, vf_mul(d, vi_cvt(xs_scale(lo4, hi, b))));
			continue;
		}
		if (TY == GGML_TYPE_Q2_K || TY == GGML_TYPE_Q3_K || TY == GGML_TYPE_Q6_K) {
			/* Two sub-blocks of 16 per block of 32: the scale of each;
			 * Q2_K's min too (Q3_K's offset 4, Q6_K's 32, enter through
			 * the activations' sums, offsh). */
			UNROLL
			for (int sb = 0; sb < 16; sb++) {
				vf_store(p->d + (size_t)(16 * i + sb) * VL, vf_mul(d, vi_cvt(q16_scale(TY, c, sb))));
				if (TY == GGML_TYPE_Q2_K)
					vf_store(p->m + (size_t)(16 * i + sb) * VL, vf_mul(vf_sub(vf_zero(), vf_halfs(h + 2 * VL)),
					    vi_cvt(VI_SRLI32(q2_byte(c, sb), 4))));
			}
			continue;
		}
		vi sc[2], mn[2];
		const vf dmin = vf_halfs(h + 2 * VL);
		pkk_scales(c, sc, mn);
		UNROLL
		for (int b = 0; b < 8; b++) {
			vf_store(p->d + (size_t)(8 * i + b) * VL, vf_mul(d, vi_cvt(PKK_BYTE(sc[b / 4], b % 4))));
			vf_store(p->m + (size_t)(8 * i + b) * VL, vf_mul(vf_sub(vf_zero(), dmin),
			    vi_cvt(PKK_BYTE(mn[b / 4], b % 4))));
		}
	}
}

/*
 * Packed half floats (F16, BF16; pack.c): a group of VL rows holds, pair
 * of inputs by pair, each row's two halves side by side ([c][VL][2]).
 * Half a group column as floats is a vector of VL / 2 rows by the pair of
 * inputs: it multiplies the pair of activations put in every two lanes,
 * and a row's product is the sum of its two lanes (hp_sums, once at the
 * end).  Nothing is converted ahead: the weights stream in order, as
 * packed, into the conversions and the FMAs.
 */
ALWAYS vf
hp_cvt(const int TY, const uint8_t *p)
{
#ifdef QX_512
	const __m256i h = _mm256_loadu_si256((const __m256i *)p);
	if (TY == GGML_TYPE_F16)
		return _mm512_cvtph_ps(h);
	return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
#else
	if (TY == GGML_TYPE_F16)
		return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
	return bf16x8((const uint16_t *)p);
#endif
}

/* X[0], X[1] in every two lanes. */
ALWAYS vf
hp_pair(const float *x)
{
	double d;
	memcpy(&d, x, sizeof(d));
#ifdef QX_512
	return _mm512_castpd_ps(_mm512_set1_pd(d));
#else
	return _mm256_castpd_ps(_mm256_set1_pd(d));
#endif
}

/* The VL row sums of A (rows 0 .. VL / 2 - 1, two lanes each) and B (the
 * rest), in row order. */
ALWAYS vf
hp_sums(vf a, vf b)
{
#ifdef QX_512
	const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
	const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
	return _mm512_add_ps(_mm512_permutex2var_ps(a, ev, b), _mm512_permutex2var_ps(a, od, b));
#else
	/* a01 a23 b01 b23 | a45 a67 b45 b67, then the 64-bit quarters 0 2 1 3. */
	const __m256 h = _mm256_hadd_ps(a, b);
	return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(h), 0xD8));
#endif
}

/*
 * The packed F16 and BF16 GEMV reads PK_AHEAD.f bytes ahead: 2048 on
 * Intel (cpu.c), 0 elsewhere, where the hardware's prefetch follows a
 * group's one stream.  Asking for the weights 8 KiB
 * ahead (HP_AHEAD, b026e6e to ad14fc1) measured both ways on Zen 5
 * (avx512bf16, 2 threads, tg with the read-ahead on and off token by
 * token in one run, both ways round), token time with it / without:
 * one afternoon, Qwen3-0.6B F16, six runs, 0.89-0.98 (mean 0.95), BF16
 * 0.96-0.99; an evening later, Qwen2.5-0.5B F16 1.04-1.19 (ten runs),
 * Qwen3-0.6B F16 1.07-1.13 (four), BF16 0.99-1.11 (six); 4 KiB
 * 0.97-1.04 then, 16 KiB into L2 1.00-1.06.  The machine's memory, not
 * the code, changed between the two; without it loses less where it
 * loses.  The AVX2 tiers went without before (Zen 3: float rows gained
 * nothing from 1 KiB, PK_AHEAD).
 */

/*
 * Float weights (F32, F16, BF16) as in the file: R rows by T float
 * activation rows, VL inputs per step, each activation vector loaded
 * once for the R rows, the weights read AHEAD bytes ahead (0: left to
 * the hardware; struct q_ahead's f).
 */
ALWAYS vf
f_load(const int TY, const uint8_t *row, int i)
{
	if (TY == GGML_TYPE_F32)
		return vf_load((const float *)row + i);
	return hp_cvt(TY, row + (size_t)i * 2);
}

ALWAYS float
f_elem(const int TY, const uint8_t *row, int i)
{
	return TY == GGML_TYPE_F16 ? F16(((const qhalf *)row)[i]) :
	    TY == GGML_TYPE_BF16 ? q_bf16_to_f32(((const uint16_t *)row)[i]) : ((const float *)row)[i];
}

ALWAYS float
vf_hsum(vf v)
{
#ifdef QX_512
	return _mm512_reduce_add_ps(v);
#else
	return hsum8(v);
#endif
}

ALWAYS void
f_tile(const int TY, const int R, const int T, int n, float *out, size_t ldo, const uint8_t *w, size_t ws,
       const uint8_t *x, size_t xs, size_t ahead)
{
	const size_t esz = TY == GGML_TYPE_F32 ? 4 : 2;
	vf acc[4][4];
	int i = 0;
	UNROLL
	for (int r = 0; r < R; r++)
		UNROLL
		for (int t = 0; t < T; t++)
			acc[r][t] = vf_zero();
	if (R == 1 && T == 1) {
		/* One row by one token: four chains of FMA, not one waiting on
		 * its latency every VL inputs. */
		const float *x0 = (const float *)x;
		vf a1 = vf_zero(), a2 = a1, a3 = a1;
		for (; i + 4 * VL <= n; i += 4 * VL) {
			if (ahead)
				prefetch_l1(w + (size_t)i * esz + ahead, 4 * VL * esz);
			acc[0][0] = vf_fma(f_load(TY, w, i), vf_load(x0 + i), acc[0][0]);
			a1 = vf_fma(f_load(TY, w, i + VL), vf_load(x0 + i + VL), a1);
			a2 = vf_fma(f_load(TY, w, i + 2 * VL), vf_load(x0 + i + 2 * VL), a2);
			a3 = vf_fma(f_load(TY, w, i + 3 * VL), vf_load(x0 + i + 3 * VL), a3);
		}
		acc[0][0] = vf_add(vf_add(acc[0][0], a1), vf_add(a2, a3));
	}
	for (; i + VL <= n; i += VL) {
		vf X[4];
		UNROLL
		for (int t = 0; t < T; t++)
			X[t] = vf_load((const float *)(x + (size_t)t * xs) + i);
		UNROLL
		for (int r = 0; r < R; r++) {
			const uint8_t *row = w + (size_t)r * ws;
			const vf W = f_load(TY, row, i);
			if (ahead && (i * esz) % 64 == 0)
				prefetch_l1(row + (size_t)i * esz + ahead, 64);
			UNROLL
			for (int t = 0; t < T; t++)
				acc[r][t] = vf_fma(W, X[t], acc[r][t]);
		}
	}
	UNROLL
	for (int r = 0; r < R; r++) {
		UNROLL
		for (int t = 0; t < T; t++) {
			float sum = vf_hsum(acc[r][t]);
			for (int j = i; j < n; j++)
				sum += f_elem(TY, w + (size_t)r * ws, j) * ((const float *)(x + (size_t)t * xs))[j];
			out[(size_t)t * ldo + r] = sum;
		}
	}
}

ALWAYS void
f_gemv(const int TY, int n, float *out, size_t ldo, const uint8_t *w, size_t ws, int nr, const uint8_t *x, size_t xs,
       int nt)
{
	/* One row at a time: a single sequential stream through memory (the
	 * next row's bytes follow, so the read-ahead runs on into it).  Tiles
	 * of 4 rows (each activation load shared), with or without software
	 * prefetch, measured 2 to 2.5 times slower from DRAM on the development
	 * machine, though no slower from cache. */
	const size_t ahead = (size_t)PK_AHEAD.f;
	for (int r = 0; r < nr; r++) {
		switch (nt) {
		case 1: f_tile(TY, 1, 1, n, out + r, ldo, w + (size_t)r * ws, ws, x, xs, ahead); break;
		case 2: f_tile(TY, 1, 2, n, out + r, ldo, w + (size_t)r * ws, ws, x, xs, ahead); break;
		case 3: f_tile(TY, 1, 3, n, out + r, ldo, w + (size_t)r * ws, ws, x, xs, ahead); break;
		default: f_tile(TY, 1, 4, n, out + r, ldo, w + (size_t)r * ws, ws, x, xs, ahead); break;
		}
	}
}

#ifndef QX_512
/*
 * A packed group of half floats (VL = 8 rows) as float rows, for
 * OpenBLAS's panels (matmul.c mm_float_rows), in one pass: half a group
 * column converted is 4 rows by a pair of inputs (hp_cvt), 4 columns of
 * it a 4 x 4 transpose of 64-bit pairs, one 32-byte store per row.  In
 * place of converting the group as it lies, then moving each pair to
 * its row: that second pass took Qwen2.5-0.5B F16 pp128 through OpenBLAS
 * 1-5% below the rows as in the file (ChangeLog).
 */
ALWAYS void
hp_unpack(const int TY, const uint8_t *g, int n, float *out, size_t ldo)
{
	int c = 0;
	for (; c + 4 <= n / 2; c += 4) {
		UNROLL
		for (int h = 0; h < 2; h++) {
			__m256d a[4];
			UNROLL
			for (int j = 0; j < 4; j++)
				a[j] = _mm256_castps_pd(hp_cvt(TY, g + (size_t)(c + j) * 4 * VL + h * 2 * VL));
			/* a[j]: pairs of rows 4h + 0, 1 | 2, 3 of column c + j */
			const __m256d t0 = _mm256_unpacklo_pd(a[0], a[1]), t1 = _mm256_unpackhi_pd(a[0], a[1]);
			const __m256d t2 = _mm256_unpacklo_pd(a[2], a[3]), t3 = _mm256_unpackhi_pd(a[2], a[3]);
			float *o = out + (size_t)4 * h * ldo + 2 * c;
			vf_store(o, _mm256_castpd_ps(_mm256_permute2f128_pd(t0, t2, 0x20)));
			vf_store(o + ldo, _mm256_castpd_ps(_mm256_permute2f128_pd(t1, t3, 0x20)));
			vf_store(o + 2 * ldo, _mm256_castpd_ps(_mm256_permute2f128_pd(t0, t2, 0x31)));
			vf_store(o + 3 * ldo, _mm256_castpd_ps(_mm256_permute2f128_pd(t1, t3, 0x31)));
		}
	}
	for (; c < n / 2; c++)
		for (int q = 0; q < VL; q++)
			for (int e = 0; e < 2; e++)
				out[(size_t)q * ldo + 2 * c + e] = f_elem(TY, g + (size_t)c * 4 * VL + (size_t)q * 4, e);
}

static void unpackf_f16(const uint8_t *g, int n, float *out, size_t ldo) { hp_unpack(GGML_TYPE_F16, g, n, out, ldo); }
static void unpackf_bf16(const uint8_t *g, int n, float *out, size_t ldo) { hp_unpack(GGML_TYPE_BF16, g, n, out, ldo); }
#endif

#define F_GEMV(T, TY) \
	static void gemvf_##T(int n, float *out, size_t ldo, const uint8_t *w, size_t ws, int nr, \
			      const uint8_t *x, size_t xs, int nt) \
	{ f_gemv(TY, n, out, ldo, w, ws, nr, x, xs, nt); }
F_GEMV(f32, GGML_TYPE_F32) F_GEMV(f16, GGML_TYPE_F16) F_GEMV(bf16, GGML_TYPE_BF16)

/* One packed group G of half floats TY by T float activation rows (XS
 * bytes apart): OUT[t * LDO + r] for its VL rows.  Two columns a step,
 * each into accumulators of its own (the FMA's latency), on AVX2 one
 * for more than two tokens (its 16 registers). */
ALWAYS void
hp_gemv(const int TY, const int T, int n, float *out, size_t ldo, const uint8_t *g, const uint8_t *x, size_t xs)
{
#ifdef QX_512
	const int U = 2;
#else
	const int U = T <= 2 ? 2 : 1;
#endif
	const int nc = n / 2;
	const size_t ahead = (size_t)PK_AHEAD.f;
	vf acc[2][2][Q_GEMV_MAX_T];
	int c = 0;

	UNROLL
	for (int u = 0; u < U; u++)
		UNROLL
		for (int t = 0; t < T; t++)
			acc[u][0][t] = acc[u][1][t] = vf_zero();
	for (; c + U <= nc; c += U) {
		if (ahead)
			prefetch_l1(g + (size_t)c * 4 * VL + ahead, (size_t)U * 4 * VL);
		UNROLL
		for (int u = 0; u < U; u++) {
			const uint8_t *col = g + (size_t)(c + u) * 4 * VL;
			const vf w0 = hp_cvt(TY, col), w1 = hp_cvt(TY, col + 2 * VL);
			UNROLL
			for (int t = 0; t < T; t++) {
				const vf xp = hp_pair((const float *)(x + (size_t)t * xs) + 2 * (c + u));
				acc[u][0][t] = vf_fma(w0, xp, acc[u][0][t]);
				acc[u][1][t] = vf_fma(w1, xp, acc[u][1][t]);
			}
		}
	}
	for (; c < nc; c++) {
		const uint8_t *col = g + (size_t)c * 4 * VL;
		const vf w0 = hp_cvt(TY, col), w1 = hp_cvt(TY, col + 2 * VL);
		UNROLL
		for (int t = 0; t < T; t++) {
			const vf xp = hp_pair((const float *)(x + (size_t)t * xs) + 2 * c);
			acc[0][0][t] = vf_fma(w0, xp, acc[0][0][t]);
			acc[0][1][t] = vf_fma(w1, xp, acc[0][1][t]);
		}
	}
	UNROLL
	for (int t = 0; t < T; t++) {
		UNROLL
		for (int u = 1; u < U; u++) {
			acc[0][0][t] = vf_add(acc[0][0][t], acc[u][0][t]);
			acc[0][1][t] = vf_add(acc[0][1][t], acc[u][1][t]);
		}
		vf_store(out + (size_t)t * ldo, hp_sums(acc[0][0][t], acc[0][1][t]));
	}
}

/* One packed group of type TY by T tokens, by the type's kernel. */
ALWAYS void
pk_group(const int TY, const int T, int n, float *out, size_t ldo, const uint8_t *g, const uint8_t *x, size_t xs)
{
	if (TY == GGML_TYPE_F16 || TY == GGML_TYPE_BF16)
		hp_gemv(TY, T, n, out, ldo, g, x, xs);
	else if (pkk_type(TY))
		pkk_gemv(TY, T, n, out, ldo, g, x, xs);
	else
		pk_gemv(TY, T, n, out, ldo, g, x, xs);
}

/* The GEMV of packed rows (q_type_kern.gemv_packed): whole groups, then
 * the rows past the last one as in the file. */
ALWAYS void
pk_gemv_rows(const int TY, int n, float *out, size_t ldo, const uint8_t *w, size_t ws, int nr, const uint8_t *x,
	     size_t xs, int nt)
{
	int r = 0;
	for (; r + VL <= nr; r += VL) {
		switch (nt) {
		case 1: pk_group(TY, 1, n, out + r, ldo, w + (size_t)r * ws, x, xs); break;
		case 2: pk_group(TY, 2, n, out + r, ldo, w + (size_t)r * ws, x, xs); break;
		case 3: pk_group(TY, 3, n, out + r, ldo, w + (size_t)r * ws, x, xs); break;
		default: pk_group(TY, 4, n, out + r, ldo, w + (size_t)r * ws, x, xs); break;
		}
	}
	for (; r < nr; r++)
		for (int t = 0; t < nt; t++)
			out[(size_t)t * ldo + r] = pk_tail((enum ggml_type)TY, n, w + (size_t)r * ws, x + (size_t)t * xs);
}

/* Each packed type's GEMV (q_type_kern.gemv_packed) and, for the
 * quantized ones, its GEMM panel. */
#define PK_GEMV(T, TY) \
	static void gemvp_##T(int n, float *out, size_t ldo, const uint8_t *w, size_t ws, int nr, const uint8_t *x, \
			      size_t xs, int nt) \
	{ pk_gemv_rows(TY, n, out, ldo, w, ws, nr, x, xs, nt); }
#define PK(T, TY, PANEL) \
	PK_GEMV(T, TY) \
	static void panelp_##T(struct panel *p, const uint8_t *g, int b0, int nb) { PANEL(TY, p, g, b0, nb); }
PK(q4_0, GGML_TYPE_Q4_0, pk_panel) PK(q4_1, GGML_TYPE_Q4_1, pk_panel) PK(q5_0, GGML_TYPE_Q5_0, pk_panel)
PK(q5_1, GGML_TYPE_Q5_1, pk_panel) PK(q8_0, GGML_TYPE_Q8_0, pk_panel)
PK(iq4_nl, GGML_TYPE_IQ4_NL, pk_panel) PK(q4_K, GGML_TYPE_Q4_K, pkk_panel) PK(q5_K, GGML_TYPE_Q5_K, pkk_panel)
PK(iq4_xs, GGML_TYPE_IQ4_XS, pkk_panel) PK(q2_K, GGML_TYPE_Q2_K, pkk_panel) PK(q3_K, GGML_TYPE_Q3_K, pkk_panel)
PK(q6_K, GGML_TYPE_Q6_K, pkk_panel)
PK_GEMV(f16, GGML_TYPE_F16) PK_GEMV(bf16, GGML_TYPE_BF16)
#undef PK
#undef PK_GEMV

typedef void (*panel_packed_fn)(struct panel *p, const uint8_t *g, int b0, int nb);

/* Rows [R0, R1) of W for all tokens: panel by panel, k-block by k-block.
 * PK: the panel of a packed group (a->packed), else NULL. */
static void
gemm_i8_run(const struct q_gemm_args *a, int r0, int r1, void *scratch, dec_fn dec, int ns, int offsh, mk_i8_fn mk,
	    panel_packed_fn pk)
{
	struct panel p;
	const int nbt = a->n / 32;

	const size_t bbytes = a->w_stride / nbt;   /* bytes per 32 inputs */

	panel_carve(scratch, &p);
#ifdef QX_AMX
	const int amx = ns == 1 && a->nt >= AMX_T;
	if (amx)
		amx_begin();
#endif
	for (int r = r0; r < r1; r += VL) {
		int nr = r1 - r < VL ? r1 - r : VL;
		for (int b0 = 0; b0 < nbt; b0 += KC_BLOCKS) {
			int nb = nbt - b0 < KC_BLOCKS ? nbt - b0 : KC_BLOCKS;
			/* Row chunks are multiples of 2 VL: a group cut short is the
			 * matrix's last rows, which are not packed. */
			if (pk && a->packed && nr == VL)
				pk(&p, a->w + (size_t)r * a->w_stride, b0, nb);
			else
				panel_pack(&p, dec, ns, offsh == 0, a->w + (size_t)r * a->w_stride, a->w_stride, nr, b0, nb);
			/* The next panel's weights arrive while this one is multiplied. */
			int r2 = b0 + KC_BLOCKS < nbt ? r : r + VL, c0 = b0 + KC_BLOCKS < nbt ? b0 + KC_BLOCKS : 0;
			if (r2 < r1) {
				int n2 = nbt - c0 < KC_BLOCKS ? nbt - c0 : KC_BLOCKS, rows = r1 - r2 < VL ? r1 - r2 : VL;
				for (int k = 0; k < rows; k++) {
					const char *q = (const char *)a->w + (size_t)(r2 + k) * a->w_stride + c0 * bbytes;
					for (size_t o = 0; o < n2 * bbytes; o += 64)
						_mm_prefetch(q + o, _MM_HINT_T1);
				}
			}
			/* AMX: whole tiles of tokens after mk_i8 has had the rest. */
			int t = 0, t_amx = 0;
#ifdef QX_AMX
			if (amx)
				t = t_amx = a->nt - a->nt % AMX_T;
#endif
			for (; t < a->nt; t += GT) {
				int tt = a->nt - t < GT ? a->nt - t : GT;
				mk(tt, offsh, &p, nb, a->x + (size_t)t * a->x_stride, a->x_stride, a->n, b0,
				    a->out + (size_t)t * a->ldo + r, a->ldo, nr, b0 == 0);
			}
#ifdef QX_AMX
			if (amx && offsh)
				amx_signed(&p, nb, offsh);
			for (t = 0; t < t_amx; t += AMX_T)
				(offsh ? mk_amx_s : mk_amx_m)(&p, nb, a->x + (size_t)t * a->x_stride, a->x_stride, a->n,
				    b0, a->out + (size_t)t * a->ldo + r, a->ldo, nr, b0 == 0);
#else
			(void)t_amx;
#endif
		}
	}
#ifdef QX_AMX
	if (amx)
		amx_end();
#endif
}

/* TYPE, sub-blocks per 32, log2 of the level offset (mins types: 0, unused), kernel, packed panels. */
#define GEMM_I8(T, NS, OFFSH, MK, PK) \
	static void gemm_##T(const struct q_gemm_args *a, int r0, int r1, void *scratch) \
	{ gemm_i8_run(a, r0, r1, scratch, dec_##T, NS, OFFSH, MK, PK); }
GEMM_I8(q4_0, 1, 3, mk_i8_s1, panelp_q4_0)
GEMM_I8(q4_1, 1, 0, mk_i8_s1m, panelp_q4_1)
GEMM_I8(q5_0, 1, 4, mk_i8_s1, panelp_q5_0)
GEMM_I8(q5_1, 1, 0, mk_i8_s1m, panelp_q5_1)
GEMM_I8(q8_0, 1, 7, mk_i8_s1w, panelp_q8_0)
GEMM_I8(iq4_nl, 1, 7, mk_i8_s1w, panelp_iq4_nl)
GEMM_I8(iq4_xs, 1, 7, mk_i8_s1w, panelp_iq4_xs)
GEMM_I8(q4_K, 1, 0, mk_i8_s1m, panelp_q4_K)
GEMM_I8(q5_K, 1, 0, mk_i8_s1m, panelp_q5_K)
GEMM_I8(q2_K, 2, 0, mk_i8_s2m, panelp_q2_K)
GEMM_I8(q3_K, 2, 2, mk_i8_s2, panelp_q3_K)
GEMM_I8(q6_K, 2, 5, mk_i8_s2, panelp_q6_K)

/* q8p activations: levels, block scales and block sums (quant-impl.h). */

/* Block B of a q8p row of N: levels P, scale DB, sums of halves SA, SB. */
ALWAYS void
q8p_put(void *row, int n, int b, __m256i p, float db, int sa, int sb)
{
	_mm256_storeu_si256((__m256i *)((int8_t *)row + 32 * b), p);
	Q8P_D(row, n)[b] = db;
	Q8P_S32(row, n)[b] = db * (sa + sb);
	Q8P_S16(row, n)[2 * b] = db * sa;
	Q8P_S16(row, n)[2 * b + 1] = db * sb;
	Q8P_N32(row, n)[b] = -(sa + sb);
	Q8P_N16(row, n)[2 * b] = -sa;
	Q8P_N16(row, n)[2 * b + 1] = -sb;
}

/* The levels of blk32_q8; the scale as is or (HALF) rounded to half
 * precision, as a Q8_0 or Q8_1 row holds it. */
ALWAYS void
q8p_rows(const float *x, void *row, int n, const int half)
{
	for (int b = 0; b < n / 32; b++) {
		float db;
		int sa, sb;
		__m256i p = blk32_q8(x + 32 * b, &db);
		blk32_sums(p, &sa, &sb);
		if (half)
			db = F16(_cvtss_sh(db, _MM_FROUND_TO_NEAREST_INT));
		q8p_put(row, n, b, p, db, sa, sb);
	}
}

static void
q8p_from_float(const float *x, void *row, int n)
{
	q8p_rows(x, row, n, 0);
}

/* What q8_0_from_float (or q8_1_from_float) then q_q8p_from_vdt make, in
 * one pass. */
static void
q8p_from_float_h(const float *x, void *row, int n)
{
	q8p_rows(x, row, n, 1);
}

/* What q8_K_from_float then q_q8p_from_vdt make (N a multiple of 256),
 * a block of 256 at a time through the stack. */
static void
q8p_from_float_k(const float *x, void *row, int n)
{
	block_q8_K k;

	for (int b8 = 0; b8 < n / QK_K; b8++) {
		q8_K_from_float(x + (size_t)QK_K * b8, &k, QK_K);
		UNROLL
		for (int s = 0; s < QK_K / 32; s++)
			q8p_put(row, n, QK_K / 32 * b8 + s, _mm256_loadu_si256((const __m256i *)(k.qs + 32 * s)), k.d,
			    k.bsums[2 * s], k.bsums[2 * s + 1]);
	}
}

/* ------------------------------------------------------------------ */
/*
 * The float GEMM (F32, F16, BF16 weights, float activations).  A panel
 * holds 2 * VL rows over KCF inputs as floats, input-major: [k][2 VL];
 * the microkernel multiplies it with FT tokens, each input of a token
 * broadcast to both row vectors.
 */
#define KCF 128
#ifdef QX_512
#define FT 12
#else
#define FT 6
#endif

static size_t
gemm_f_scratch(void)
{
	return (size_t)KCF * 2 * VL * sizeof(float) + (size_t)2 * VL * KCF * sizeof(float) + 256;
}

/* Rows [0, NR) of W (ws bytes apart, type T) inputs [K0, K0 + KC) as floats
 * into TMP (2 VL rows of KC), then interleaved into P ([KC][2 VL]). */
static void
panel_pack_f(float *p, float *tmp, enum ggml_type type, const uint8_t *w, size_t ws, int nr, int k0, int kc)
{
	for (int r = 0; r < 2 * VL; r++) {
		float *o = tmp + (size_t)r * kc;
		if (r >= nr) {
			memset(o, 0, (size_t)kc * sizeof(float));
			continue;
		}
		const uint8_t *row = w + (size_t)r * ws;
		if (type == GGML_TYPE_F16)
			f16_to_float((const qhalf *)row + k0, o, kc);
		else if (type == GGML_TYPE_BF16)
			bf16_to_float((const uint16_t *)row + k0, o, kc);
		else
			memcpy(o, (const float *)row + k0, (size_t)kc * sizeof(float));
	}
	/* [2 VL][kc] -> [kc][2 VL]: two VL-row halves side by side. */
	for (int half = 0; half < 2; half++) {
		const uint32_t *src = (const uint32_t *)tmp + (size_t)half * VL * kc;
		int c = 0;
		for (; c + VL <= kc; c += VL)
			transpose_tile(src + c, kc, (uint32_t *)p + (size_t)c * 2 * VL + half * VL, 2 * VL);
		for (; c < kc; c++)
			for (int r = 0; r < VL; r++)
				((uint32_t *)p)[(size_t)c * 2 * VL + half * VL + r] = src[(size_t)r * kc + c];
	}
}

ALWAYS void
mk_f(const int T, const float *p, int kc, const float *x, size_t xs, float *out, size_t ldo, int nr, int first)
{
	vf a0[T], a1[T];
	int n0 = nr < VL ? nr : VL, n1 = nr > VL ? nr - VL : 0;
	UNROLL
	for (int t = 0; t < T; t++) {
		a0[t] = first ? vf_zero() : vf_loadn(out + t * ldo, n0);
		a1[t] = first || !n1 ? vf_zero() : vf_loadn(out + t * ldo + VL, n1);
	}
	for (int k = 0; k < kc; k++) {
		vf w0 = vf_load(p + (size_t)k * 2 * VL), w1 = vf_load(p + (size_t)k * 2 * VL + VL);
		UNROLL
		for (int t = 0; t < T; t++) {
			vf b = vf_set1(x[t * xs + k]);
			a0[t] = vf_fma(w0, b, a0[t]);
			a1[t] = vf_fma(w1, b, a1[t]);
		}
	}
	UNROLL
	for (int t = 0; t < T; t++) {
		vf_storen(out + t * ldo, a0[t], n0);
		if (n1)
			vf_storen(out + t * ldo + VL, a1[t], n1);
	}
}

static void
mk_f_any(int tt, const float *p, int kc, const float *x, size_t xs, float *out, size_t ldo, int nr, int first)
{
	switch (tt) {
	case 1: mk_f(1, p, kc, x, xs, out, ldo, nr, first); break;
	case 2: mk_f(2, p, kc, x, xs, out, ldo, nr, first); break;
	case 3: mk_f(3, p, kc, x, xs, out, ldo, nr, first); break;
	case 4: mk_f(4, p, kc, x, xs, out, ldo, nr, first); break;
	case 5: mk_f(5, p, kc, x, xs, out, ldo, nr, first); break;
	case 6: mk_f(6, p, kc, x, xs, out, ldo, nr, first); break;
#if FT == 12
	case 7: mk_f(7, p, kc, x, xs, out, ldo, nr, first); break;
	case 8: mk_f(8, p, kc, x, xs, out, ldo, nr, first); break;
	case 9: mk_f(9, p, kc, x, xs, out, ldo, nr, first); break;
	case 10: mk_f(10, p, kc, x, xs, out, ldo, nr, first); break;
	case 11: mk_f(11, p, kc, x, xs, out, ldo, nr, first); break;
	case 12: mk_f(12, p, kc, x, xs, out, ldo, nr, first); break;
#endif
	}
}

/* The weights the next panel_pack_f reads (block K0 of the panel at R,
 * else the first block of the next panel), into L2 while the
 * microkernels run: 2 VL rows a stride apart are 2 VL short streams the
 * hardware prefetchers do not follow.  Inlined: GCC 12 takes a function
 * that only prefetches for one without effects and drops its calls. */
ALWAYS void
prefetch_f(const struct q_gemm_args *a, int r, int r1, int k0)
{
	const size_t es = a->type == GGML_TYPE_F32 ? 4 : 2;
	if (k0 >= a->n) {
		r += 2 * VL;
		k0 = 0;
	}
	const int nr = r1 - r < 2 * VL ? r1 - r : 2 * VL;
	const int kc = a->n - k0 < KCF ? a->n - k0 : KCF;
	for (int i = 0; i < nr; i++) {
		const char *row = (const char *)(a->w + (size_t)(r + i) * a->w_stride) + (size_t)k0 * es;
		for (size_t o = 0; o < (size_t)kc * es; o += 64)
			_mm_prefetch(row + o, _MM_HINT_T1);
	}
}

/*
 * The GEMM's tile of packed half floats: NG groups (G0, the next GS bytes
 * further) by T tokens over columns [C0, C0 + NC), added to OUT (or
 * stored, FIRST).  AVX-512: two groups by 6 tokens (24 accumulators);
 * AVX2: one by 6 (12).
 */
#ifdef QX_512
#define HP_NG 2
#else
#define HP_NG 1
#endif
#define HP_T 6
/* The most columns (pairs of inputs) per block; a row's columns are
 * split into blocks of about equal length.  A block's two groups (256
 * KiB at most on AVX-512, 128 on AVX2) are read from L2 once per tile of
 * tokens; the accumulators stay in registers across the block.  Blocks of
 * 256 columns (32 KiB, two groups in L1) were slower: Qwen2.5-0.5B F16
 * pp128, avx512bf16 (Zen 5), 2 threads, 10 interleaved pairs: 373-417
 * t/s against 380-435 with blocks of up to 2048 (ahead in 9 of 10, by
 * 3.5% on average), its avx2 tier 217-223 against 226-231 (4 of 4); a
 * model of the loop alone, one thread, 896 x 4864: 168 against 182
 * GFLOP/s.  Smaller blocks lost more (128: 162, 64: 145). */
#define HP_KC 2048

ALWAYS void
mk_hp(const int TY, const int NG, const int T, const uint8_t *g0, size_t gs, int c0, int nc, const float *x, size_t xs,
      float *out, size_t ldo, int first)
{
	vf acc[HP_NG][2][HP_T];

	UNROLL
	for (int g = 0; g < NG; g++)
		UNROLL
		for (int t = 0; t < T; t++)
			acc[g][0][t] = acc[g][1][t] = vf_zero();
	for (int c = c0; c < c0 + nc; c++) {
		vf w[HP_NG][2];
		UNROLL
		for (int g = 0; g < NG; g++) {
			const uint8_t *col = g0 + (size_t)g * gs + (size_t)c * 4 * VL;
			w[g][0] = hp_cvt(TY, col);
			w[g][1] = hp_cvt(TY, col + 2 * VL);
		}
		UNROLL
		for (int t = 0; t < T; t++) {
			const vf xp = hp_pair(x + (size_t)t * xs + 2 * c);
			UNROLL
			for (int g = 0; g < NG; g++) {
				acc[g][0][t] = vf_fma(w[g][0], xp, acc[g][0][t]);
				acc[g][1][t] = vf_fma(w[g][1], xp, acc[g][1][t]);
			}
		}
	}
	UNROLL
	for (int t = 0; t < T; t++)
		UNROLL
		for (int g = 0; g < NG; g++) {
			float *o = out + (size_t)t * ldo + g * VL;
			const vf s = hp_sums(acc[g][0][t], acc[g][1][t]);
			vf_store(o, first ? s : vf_add(s, vf_load(o)));
		}
}

#define MK_HP_T(TY, NG) \
	switch (tt) { \
	case 1: mk_hp(TY, NG, 1, g0, gs, c0, nc, x, xs, out, ldo, first); break; \
	case 2: mk_hp(TY, NG, 2, g0, gs, c0, nc, x, xs, out, ldo, first); break; \
	case 3: mk_hp(TY, NG, 3, g0, gs, c0, nc, x, xs, out, ldo, first); break; \
	case 4: mk_hp(TY, NG, 4, g0, gs, c0, nc, x, xs, out, ldo, first); break; \
	case 5: mk_hp(TY, NG, 5, g0, gs, c0, nc, x, xs, out, ldo, first); break; \
	default: mk_hp(TY, NG, 6, g0, gs, c0, nc, x, xs, out, ldo, first); break; \
	}

static void
mk_hp_any(enum ggml_type type, int ng, int tt, const uint8_t *g0, size_t gs, int c0, int nc, const float *x, size_t xs,
	  float *out, size_t ldo, int first)
{
	if (type == GGML_TYPE_F16) {
		if (ng == 2 && HP_NG == 2)
			MK_HP_T(GGML_TYPE_F16, HP_NG)
		else
			MK_HP_T(GGML_TYPE_F16, 1)
	} else {
		if (ng == 2 && HP_NG == 2)
			MK_HP_T(GGML_TYPE_BF16, HP_NG)
		else
			MK_HP_T(GGML_TYPE_BF16, 1)
	}
}
#undef MK_HP_T

/* Rows [R0, R1) (whole packed groups) of packed half floats, all tokens:
 * tiles of HP_NG groups, block of columns by block. */
static void
gemm_hp(const struct q_gemm_args *a, int r0, int r1)
{
	const float *x = (const float *)a->x;
	const size_t xs = a->x_stride / sizeof(float), gs = (size_t)VL * a->w_stride;
	const int nc = a->n / 2;

	/* Two groups a tile, the kernel's HP_NG at a time: AVX2's two calls
	 * find the block of activations in L1 (with one group a tile, the
	 * activations of a long row came from L3 twice as often: 896 x 4864,
	 * 128 tokens, 4-14% behind the rows as in the file). */
	for (int r = r0; r < r1; r += 2 * VL) {
		const int ng = (r1 - r) / VL < 2 ? (r1 - r) / VL : 2;
		const uint8_t *g0 = a->w + (size_t)r * a->w_stride;
		const int nb = (nc + HP_KC - 1) / HP_KC;
		for (int b = 0; b < nb; b++) {
			const int c0 = (int)((int64_t)nc * b / nb), kc = (int)((int64_t)nc * (b + 1) / nb) - c0;
			for (int t = 0; t < a->nt; t += HP_T) {
				const int tt = a->nt - t < HP_T ? a->nt - t : HP_T;
				for (int g = 0; g < ng; g += HP_NG)
					mk_hp_any(a->type, ng - g < HP_NG ? ng - g : HP_NG, tt, g0 + (size_t)g * gs, gs, c0, kc,
					    x + (size_t)t * xs, xs, a->out + (size_t)t * a->ldo + r + g * VL, a->ldo, c0 == 0);
			}
		}
	}
}

static void
gemm_f(const struct q_gemm_args *a, int r0, int r1, void *scratch)
{
	float *p = scratch, *tmp = p + (size_t)KCF * 2 * VL;
	const float *x = (const float *)a->x;
	const size_t xs = a->x_stride / sizeof(float);

	/* Packed rows: the whole groups (a chunk is cut short only by the
	 * matrix's end, whose last rows are not packed). */
	if (a->packed && (a->type == GGML_TYPE_F16 || a->type == GGML_TYPE_BF16)) {
		const int whole = r0 + (r1 - r0) / VL * VL;
		gemm_hp(a, r0, whole);
		r0 = whole;
	}
	for (int r = r0; r < r1; r += 2 * VL) {
		int nr = r1 - r < 2 * VL ? r1 - r : 2 * VL;
		for (int k0 = 0; k0 < a->n; k0 += KCF) {
			int kc = a->n - k0 < KCF ? a->n - k0 : KCF;
			panel_pack_f(p, tmp, a->type, a->w + (size_t)r * a->w_stride, a->w_stride, nr, k0, kc);
			prefetch_f(a, r, r1, k0 + KCF);
			for (int t = 0; t < a->nt; t += FT) {
				int tt = a->nt - t < FT ? a->nt - t : FT;
				mk_f_any(tt, p, kc, x + (size_t)t * xs + k0, xs, a->out + (size_t)t * a->ldo + r, a->ldo,
				    nr, k0 == 0);
			}
		}
	}
}

#ifdef QX_BF16
/*
 * The BF16 GEMM (avx512bf16): weights stay bfloat16, activations are
 * rounded to bfloat16 (as llama.cpp does for BF16 weights), and vdpbf16ps
 * adds the products of pairs of inputs into float lanes.  A panel holds
 * 2 * VL rows over KCF inputs as pairs: [k / 2][2 VL] of 32 bits.
 */
static void
bf16_act(const float *x, void *row, int n)
{
	uint16_t *o = row;
	int i = 0;
	for (; i + 16 <= n; i += 16)
		_mm256_storeu_si256((__m256i *)(o + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
	for (; i < n; i++)
		o[i] = q_f32_to_bf16(x[i]);
}

ALWAYS void
mk_bf(const int T, const uint32_t *p0, const uint32_t *p1, size_t ps, int kp, const uint32_t *x, size_t xs, float *out,
      size_t ldo, int nr, int first)
{
	__m512 a0[T], a1[T];
	int n0 = nr < VL ? nr : VL, n1 = nr > VL ? nr - VL : 0;
	UNROLL
	for (int t = 0; t < T; t++) {
		a0[t] = first ? vf_zero() : vf_loadn(out + t * ldo, n0);
		a1[t] = first || !n1 ? vf_zero() : vf_loadn(out + t * ldo + VL, n1);
	}
	for (int k = 0; k < kp; k++) {
		__m512bh w0 = (__m512bh)_mm512_loadu_si512((const void *)(p0 + (size_t)k * ps));
		__m512bh w1 = (__m512bh)_mm512_loadu_si512((const void *)(p1 + (size_t)k * ps));
		UNROLL
		for (int t = 0; t < T; t++) {
			__m512bh b = (__m512bh)_mm512_set1_epi32((int)x[t * xs + k]);
			a0[t] = _mm512_dpbf16_ps(a0[t], w0, b);
			a1[t] = _mm512_dpbf16_ps(a1[t], w1, b);
		}
	}
	UNROLL
	for (int t = 0; t < T; t++) {
		vf_storen(out + t * ldo, a0[t], n0);
		if (n1)
			vf_storen(out + t * ldo + VL, a1[t], n1);
	}
}

/* Rows 0 .. VL - 1 of the pair of inputs k at P0 + k PS, the next VL at
 * P1 + k PS (a panel, or two packed groups). */
static void
mk_bf_any(int tt, const uint32_t *p0, const uint32_t *p1, size_t ps, int kp, const uint32_t *x, size_t xs, float *out,
	  size_t ldo, int nr, int first)
{
	switch (tt) {
	case 1: mk_bf(1, p0, p1, ps, kp, x, xs, out, ldo, nr, first); break;
	case 2: mk_bf(2, p0, p1, ps, kp, x, xs, out, ldo, nr, first); break;
	case 3: mk_bf(3, p0, p1, ps, kp, x, xs, out, ldo, nr, first); break;
	case 4: mk_bf(4, p0, p1, ps, kp, x, xs, out, ldo, nr, first); break;
	case 5: mk_bf(5, p0, p1, ps, kp, x, xs, out, ldo, nr, first); break;
	case 6: mk_bf(6, p0, p1, ps, kp, x, xs, out, ldo, nr, first); break;
	case 7: mk_bf(7, p0, p1, ps, kp, x, xs, out, ldo, nr, first); break;
	case 8: mk_bf(8, p0, p1, ps, kp, x, xs, out, ldo, nr, first); break;
	case 9: mk_bf(9, p0, p1, ps, kp, x, xs, out, ldo, nr, first); break;
	case 10: mk_bf(10, p0, p1, ps, kp, x, xs, out, ldo, nr, first); break;
	case 11: mk_bf(11, p0, p1, ps, kp, x, xs, out, ldo, nr, first); break;
	case 12: mk_bf(12, p0, p1, ps, kp, x, xs, out, ldo, nr, first); break;
	}
}

/* N must be even (the kernel table sends odd rows to the float GEMM). */
static void
gemm_bf16(const struct q_gemm_args *a, int r0, int r1, void *scratch)
{
	uint32_t *p = scratch;
	const uint32_t *x = (const uint32_t *)a->x;
	const size_t xs = a->x_stride / 4;
	const size_t ws = a->w_stride / 4;

	/* Packed groups are a panel's halves as they are: the whole groups
	 * (a chunk is cut short only by the matrix's end, whose rows past the
	 * last whole group are not packed). */
	if (a->packed) {
		const int whole = r0 + (r1 - r0) / VL * VL;
		for (int r = r0; r < whole; r += 2 * VL) {
			const int nr = whole - r < 2 * VL ? VL : 2 * VL;
			const uint32_t *g0 = (const uint32_t *)(a->w + (size_t)r * a->w_stride);
			const uint32_t *g1 = nr == 2 * VL ? g0 + (size_t)VL * ws : g0;
			for (int k0 = 0; k0 < a->n / 2; k0 += KCF / 2) {
				int kp = a->n / 2 - k0 < KCF / 2 ? a->n / 2 - k0 : KCF / 2;
				for (int t = 0; t < a->nt; t += 12) {
					int tt = a->nt - t < 12 ? a->nt - t : 12;
					mk_bf_any(tt, g0 + (size_t)k0 * VL, g1 + (size_t)k0 * VL, VL, kp, x + (size_t)t * xs + k0,
					    xs, a->out + (size_t)t * a->ldo + r, a->ldo, nr, k0 == 0);
				}
			}
		}
		r0 = whole;
	}
	for (int r = r0; r < r1; r += 2 * VL) {
		int nr = r1 - r < 2 * VL ? r1 - r : 2 * VL;
		const uint32_t *w = (const uint32_t *)(a->w + (size_t)r * a->w_stride);
		for (int k0 = 0; k0 < a->n / 2; k0 += KCF / 2) {
			int kp = a->n / 2 - k0 < KCF / 2 ? a->n / 2 - k0 : KCF / 2;
			/* [rows][pairs] -> [pairs][2 VL]; missing rows are zero. */
			for (int half = 0; half < 2; half++) {
				int rows = nr - half * VL;
				if (rows >= VL) {
					int c = 0;
					for (; c + VL <= kp; c += VL)
						transpose_tile(w + (size_t)half * VL * ws + k0 + c, ws,
						    p + (size_t)c * 2 * VL + half * VL, 2 * VL);
					for (; c < kp; c++)
						for (int rr = 0; rr < VL; rr++)
							p[(size_t)c * 2 * VL + half * VL + rr] =
							    w[(size_t)(half * VL + rr) * ws + k0 + c];
				} else {
					for (int c = 0; c < kp; c++)
						for (int rr = 0; rr < VL; rr++)
							p[(size_t)c * 2 * VL + half * VL + rr] = rr < rows ?
							    w[(size_t)(half * VL + rr) * ws + k0 + c] : 0;
				}
			}
			for (int t = 0; t < a->nt; t += 12) {
				int tt = a->nt - t < 12 ? a->nt - t : 12;
				mk_bf_any(tt, p, p + VL, 2 * VL, kp, x + (size_t)t * xs + k0, xs, a->out + (size_t)t * a->ldo + r,
				    a->ldo, nr, k0 == 0);
			}
		}
	}
}
#endif

static size_t
gemm_scratch(int n)
{
	size_t a = gemm_i8_scratch(), b = gemm_f_scratch();
	(void)n;
	return a > b ? a : b;
}

/* ------------------------------------------------------------------ */
/* vector helpers of the layers (q_vops) */

/* exp(x) for 8 floats: x = n ln2 + r, a degree-6 polynomial for e^r
 * (the Cephes coefficients), 2^n put into the exponent.  Relative error
 * about 1e-7 over the range; below -87.3 the result is 0. */
ALWAYS __m256
exp8(__m256 x)
{
	const __m256 lo = _mm256_set1_ps(-87.3f), hi = _mm256_set1_ps(88.3f);
	__m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
	x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
	__m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
	    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
	r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
	__m256 p = _mm256_set1_ps(1.9875691500e-4f);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
	p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
	__m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
	return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* silu(g) * u with the vector exp; exp8 clamps its argument, so a large
 * negative g gives g / (1 + huge) ~ 0 and a large positive one g. */
static void
v_silu_mul(int n, float *g, const float *u)
{
	int i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 x = _mm256_loadu_ps(g + i);
		__m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
		__m256 s = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
		_mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
	}
	for (; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void
v_rmsnorm(int n, float *o, const float *x, const float *w, float eps)
{
	__m256d a0 = _mm256_setzero_pd(), a1 = a0;
	int i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_loadu_ps(x + i);
		__m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
		a0 = _mm256_fmadd_pd(lo, lo, a0);
		a1 = _mm256_fmadd_pd(hi, hi, a1);
	}
	double t[4], ss;
	_mm256_storeu_pd(t, _mm256_add_pd(a0, a1));
	ss = t[0] + t[1] + t[2] + t[3];
	for (int j = i; j < n; j++)
		ss += (double)x[j] * x[j];
	float scale = (float)(1.0 / sqrt(ss / n + eps));
	__m256 sc = _mm256_set1_ps(scale);
	for (i = 0; i + 8 <= n; i += 8)
		_mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sc), _mm256_loadu_ps(w + i)));
	for (; i < n; i++)
		o[i] = x[i] * scale * w[i];
}

/* ------------------------------------------------------------------ */
/* the machine's limits, measured with this tier's instructions */

static double
bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Twelve independent chains of float products on full vectors, as the
 * tier's GEMMs do them: fused multiply-adds (BF16 0: 2 operations a
 * lane), or, on the avx512bf16 tier, bfloat16 pair products (BF16 1,
 * vdpbf16ps: 2 products and 2 adds a lane).  GFLOP/s. */
ALWAYS double
peak_float(const int BF16, double seconds)
{
	vf a[12], m = vf_set1(0.999999f), c = vf_set1(1e-7f);
#ifdef QX_BF16
	__m512bh u = (__m512bh)_mm512_set1_epi16(0x3F80), x = (__m512bh)_mm512_set1_epi16(0x3380);   /* 1, ~6e-8 */
#endif
	double t0 = bench_now(), t;
	long iters = 0;
	UNROLL
	for (int i = 0; i < 12; i++)
		a[i] = vf_set1((float)i);
	do {
		for (int r = 0; r < 4096; r++) {
#ifdef QX_BF16
			if (BF16) {
				UNROLL
				for (int i = 0; i < 12; i++)
					a[i] = _mm512_dpbf16_ps(a[i], u, x);
				__asm__ volatile("" : "+v"(u));
				continue;
			}
#endif
			UNROLL
			for (int i = 0; i < 12; i++)
				a[i] = vf_fma(a[i], m, c);
			__asm__ volatile("" : "+x"(m));
		}
		iters += 4096;
		t = bench_now() - t0;
	} while (t < seconds);
	float sink[VL];
	vf s = a[0];
	UNROLL
	for (int i = 1; i < 12; i++)
		s = vf_add(s, a[i]);
	vf_store(sink, s);
	__asm__ volatile("" : : "r"(sink) : "memory");
	return iters * 12.0 * VL * (BF16 ? 4 : 2) / t / 1e9;
}

static double peak_fma(double seconds) { return peak_float(0, seconds); }
#ifdef QX_BF16
static double peak_bf16(double seconds) { return peak_float(1, seconds); }
#endif

#ifdef QX_AMX
/* The tiles' int8 peak: four independent 16 x 16 sums of full 64-byte
 * rows (the GEMM's blocks use half of each row: ChangeLog). */
static double
peak_i8(double seconds)
{
	static const int8_t src[16 * 64] __attribute__((aligned(64))) = { 1, 2, 3 };
	static const uint8_t rows[8] = { 16, 16, 16, 16, 16, 16, 16, 16 };
	static const uint16_t colsb[8] = { 64, 64, 64, 64, 64, 64, 64, 64 };
	double t0 = bench_now(), t;
	long iters = 0;

	amx_config(8, rows, colsb);
	_tile_loadd(4, src, 64);
	_tile_loadd(5, src, 64);
	_tile_loadd(6, src, 64);
	_tile_loadd(7, src, 64);
	_tile_zero(0);
	_tile_zero(1);
	_tile_zero(2);
	_tile_zero(3);
	do {
		for (int r = 0; r < 1024; r++) {
			_tile_dpbssd(0, 4, 6);
			_tile_dpbssd(1, 4, 7);
			_tile_dpbssd(2, 5, 6);
			_tile_dpbssd(3, 5, 7);
		}
		iters += 1024;
		t = bench_now() - t0;
	} while (t < seconds);
	int32_t sink[16 * 16];
	_tile_stored(0, sink, 64);
	__asm__ volatile("" : : "r"(sink) : "memory");
	_tile_release();
	return iters * 4.0 * 16 * 16 * 64 * 2 / t / 1e9;
}
#else
/* Twelve independent int8 product chains, as the GEMM does them. */
static double
peak_i8(double seconds)
{
	vi a[12], u = vi_set1_8(3), x = vi_set1_8(-5);
	double t0 = bench_now(), t;
	long iters = 0;
	UNROLL
	for (int i = 0; i < 12; i++)
		a[i] = vi_set1(i);
	do {
		for (int r = 0; r < 1024; r++) {
			UNROLL
			for (int i = 0; i < 12; i++) {
#ifdef QX_VNNI
				a[i] = vi_dpbusd(a[i], u, x);
#else
				a[i] = vi_add32(a[i], vi_madd(vi_maddubs(u, x), vi_set1_16(1)));
#endif
			}
			__asm__ volatile("" : "+x"(u), "+x"(x));
		}
		iters += 1024;
		t = bench_now() - t0;
	} while (t < seconds);
	int32_t sink[VL];
	vi s = a[0];
	UNROLL
	for (int i = 1; i < 12; i++)
		s = vi_add32(s, a[i]);
	vi_store(sink, s);
	__asm__ volatile("" : : "r"(sink) : "memory");
	return iters * 12.0 * VL * 4 * 2 / t / 1e9;
}
#endif

static uint64_t
read_sum(const void *buf, size_t bytes, size_t ahead)
{
	const uint8_t *p = buf;
	vi s0 = vi_zero(), s1 = s0, s2 = s0, s3 = s0;
	for (size_t i = 0; i + 4 * sizeof(vi) <= bytes; i += 4 * sizeof(vi)) {
		if (ahead)
			prefetch_l1(p + i + ahead, 4 * sizeof(vi));
		s0 = vi_add32(s0, vi_load(p + i));
		s1 = vi_add32(s1, vi_load(p + i + sizeof(vi)));
		s2 = vi_add32(s2, vi_load(p + i + 2 * sizeof(vi)));
		s3 = vi_add32(s3, vi_load(p + i + 3 * sizeof(vi)));
	}
	uint32_t out[VL];
	vi_store(out, vi_add32(vi_add32(s0, s1), vi_add32(s2, s3)));
	uint64_t sum = 0;
	for (int i = 0; i < VL; i++)
		sum += out[i];
	return sum;
}

/* ------------------------------------------------------------------ */
/* the table */

static struct q_kernels kern;
static pthread_once_t kern_once = PTHREAD_ONCE_INIT;

static void
kern_build(void)
{
	struct q_kernels *k = &kern;
	for (int i = 0; i < 16; i++)
		iq4nl_u[i] = (uint8_t)(q_iq4nl_values[i] + 128);
#define K(TY, T) k->t[TY].vec_dot = dot_##T; k->t[TY].gemv = gemv_##T;
	k->t[GGML_TYPE_F32].vec_dot = dot_f32;
	k->t[GGML_TYPE_F16].vec_dot = dot_f16;
	k->t[GGML_TYPE_BF16].vec_dot = dot_bf16;
	K(GGML_TYPE_Q4_0, q4_0) K(GGML_TYPE_Q4_1, q4_1) K(GGML_TYPE_Q5_0, q5_0) K(GGML_TYPE_Q5_1, q5_1)
	K(GGML_TYPE_Q8_0, q8_0) K(GGML_TYPE_Q2_K, q2_K) K(GGML_TYPE_Q3_K, q3_K) K(GGML_TYPE_Q4_K, q4_K)
	K(GGML_TYPE_Q5_K, q5_K) K(GGML_TYPE_Q6_K, q6_K) K(GGML_TYPE_IQ4_NL, iq4_nl) K(GGML_TYPE_IQ4_XS, iq4_xs)
#undef K
#define G(TY, T) k->t[TY].gemm = gemm_##T; k->t[TY].gemm_act = Q_ACT_Q8P; k->t[TY].gemm_min_nt = 4;
	G(GGML_TYPE_Q4_0, q4_0) G(GGML_TYPE_Q4_1, q4_1) G(GGML_TYPE_Q5_0, q5_0) G(GGML_TYPE_Q5_1, q5_1)
	G(GGML_TYPE_Q8_0, q8_0) G(GGML_TYPE_Q2_K, q2_K) G(GGML_TYPE_Q3_K, q3_K) G(GGML_TYPE_Q4_K, q4_K)
	G(GGML_TYPE_Q5_K, q5_K) G(GGML_TYPE_Q6_K, q6_K) G(GGML_TYPE_IQ4_NL, iq4_nl) G(GGML_TYPE_IQ4_XS, iq4_xs)
#undef G
	/* From how many tokens the GEMM beats the GEMV (tests/bench/kbench,
	 * 896 x 896 and 1024 x 1024, one thread): 4 for the 32-element block
	 * types, 2 for the K-quants and IQ4_XS (their GEMV is a dot product per
	 * token), 8 for F32 and 16 for F16 and BF16 (whose GEMM converts each
	 * panel to float). */
	for (int t = GGML_TYPE_F32; t <= GGML_TYPE_BF16; t++) {
		if (t != GGML_TYPE_F32 && t != GGML_TYPE_F16 && t != GGML_TYPE_BF16)
			continue;
		k->t[t].gemm = gemm_f;
		k->t[t].gemm_act = Q_ACT_F32;
		k->t[t].gemm_min_nt = t == GGML_TYPE_F32 ? 8 : 16;
	}
	k->t[GGML_TYPE_Q2_K].gemm_min_nt = k->t[GGML_TYPE_Q3_K].gemm_min_nt = k->t[GGML_TYPE_Q4_K].gemm_min_nt = 2;
	k->t[GGML_TYPE_Q5_K].gemm_min_nt = k->t[GGML_TYPE_Q6_K].gemm_min_nt = k->t[GGML_TYPE_IQ4_XS].gemm_min_nt = 2;
	k->t[GGML_TYPE_F32].gemv = gemvf_f32;
	k->t[GGML_TYPE_F16].gemv = gemvf_f16;
	k->t[GGML_TYPE_BF16].gemv = gemvf_bf16;
#ifdef QX_512
#define G8(TY, T) k->t[TY].gemv = gemv8_##T; k->t[TY].gemv_act = Q_ACT_Q8P;
	G8(GGML_TYPE_Q4_0, q4_0) G8(GGML_TYPE_Q4_1, q4_1) G8(GGML_TYPE_Q5_0, q5_0) G8(GGML_TYPE_Q5_1, q5_1)
#ifdef QX_VNNI
	G8(GGML_TYPE_Q8_0, q8_0) G8(GGML_TYPE_IQ4_NL, iq4_nl)
#endif
#undef G8
#endif
#ifdef QX_BF16
	k->t[GGML_TYPE_BF16].gemm = gemm_bf16;
	k->t[GGML_TYPE_BF16].gemm_act = Q_ACT_BF16;
	k->act_bf16 = bf16_act;
#endif
	k->t[GGML_TYPE_F16].to_float = f16_to_float;
	k->t[GGML_TYPE_BF16].to_float = bf16_to_float;
	k->t[GGML_TYPE_Q4_0].to_float = q4_0_to_float;
	k->t[GGML_TYPE_Q8_0].to_float = q8_0_to_float;
	k->act_q8_0 = q8_0_from_float;
	k->act_q8_1 = q8_1_from_float;
	k->act_q8_K = q8_K_from_float;
	k->act_q8p = q8p_from_float;
	k->act_q8p_h = q8p_from_float_h;
	k->act_q8p_k = q8p_from_float_k;
	k->name = QX_NAME;
	k->gemm_scratch = gemm_scratch;
	k->gemm_rows = 2 * VL;
	k->pack_rows = VL;
	k->t[GGML_TYPE_Q4_0].gemv_packed = gemvp_q4_0;
	k->t[GGML_TYPE_Q4_1].gemv_packed = gemvp_q4_1;
	k->t[GGML_TYPE_Q5_0].gemv_packed = gemvp_q5_0;
	k->t[GGML_TYPE_Q5_1].gemv_packed = gemvp_q5_1;
	k->t[GGML_TYPE_Q8_0].gemv_packed = gemvp_q8_0;
	k->t[GGML_TYPE_IQ4_NL].gemv_packed = gemvp_iq4_nl;
	k->t[GGML_TYPE_Q2_K].gemv_packed = gemvp_q2_K;
	k->t[GGML_TYPE_Q3_K].gemv_packed = gemvp_q3_K;
	k->t[GGML_TYPE_Q4_K].gemv_packed = gemvp_q4_K;
	k->t[GGML_TYPE_Q5_K].gemv_packed = gemvp_q5_K;
	/* Q6_K packed: 2x the GEMV in cache on both tiers; from memory
	 * ahead on AVX2 with 1 thread (qwen3-0.6b Q4_K_M tg64, ABBA medians
	 * 56.4 against 51.2 t/s), level with 2 (65.0 against 66.8).  On
	 * AVX-512 it was behind (1 thread 51.9 against 55.3) until pkk_gemv
	 * read 1 KiB ahead there (PK_AHEAD): then, Zen 5, one thread, in
	 * cache 31-32 -> 51-56 GB/s, from memory 12-13.5 -> 30-32.5 in three
	 * of four pairs (level in one, another job running).  Every tier
	 * packs it. */
	k->t[GGML_TYPE_Q6_K].gemv_packed = gemvp_q6_K;
	k->t[GGML_TYPE_IQ4_XS].gemv_packed = gemvp_iq4_xs;
	k->t[GGML_TYPE_F16].gemv_packed = gemvp_f16;
	k->t[GGML_TYPE_BF16].gemv_packed = gemvp_bf16;
#ifndef QX_512
	k->t[GGML_TYPE_F16].unpack_f = unpackf_f16;
	k->t[GGML_TYPE_BF16].unpack_f = unpackf_bf16;
#endif
	k->vops.silu_mul = v_silu_mul;
	k->vops.rmsnorm = v_rmsnorm;
	k->peak_fma = peak_fma;
	k->peak_i8 = peak_i8;
#ifdef QX_BF16
	k->peak_bf16 = peak_bf16;
#endif
	k->read_sum = read_sum;
	q_kern_complete(k);
}

const struct q_kernels *
QX_KERN(void)
{
	pthread_once(&kern_once, kern_build);
	return &kern;
}

#endif
