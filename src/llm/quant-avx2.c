/* quant-avx2.c -- AVX2/FMA/F16C kernels, compiled for those ISAs and chosen at run time. */
#include "config.h"

#include <string.h>

#include "llm/quant-impl.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#define F16(h) _cvtsh_ss(h)

static inline float
hsum8(__m256 v)
{
	__m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
	lo = _mm_add_ps(lo, hi);
	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
	return _mm_cvtss_f32(lo);
}

static inline int
hsum8i(__m256i v)
{
	__m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
	return _mm_cvtsi128_si32(s);
}

/* Signed bytes times signed bytes, pairs summed, as 8 int32. */
static inline __m256i
dot_i8(__m256i x, __m256i y)
{
	const __m256i ax = _mm256_sign_epi8(x, x);
	const __m256i sy = _mm256_sign_epi8(y, x);
	return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

/* Unsigned bytes (< 128) times signed bytes, as 8 int32. */
static inline __m256i
dot_u8i8(__m256i x, __m256i y)
{
	return _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1));
}

/* 16 bytes of nibbles to 32 bytes: low nibbles first, then high nibbles. */
static inline __m256i
nibbles32(const uint8_t *p)
{
	__m128i t = _mm_loadu_si128((const __m128i *)p);
	__m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
	return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/* 32 bits to 32 bytes: 0xFF where the bit is set. */
static inline __m256i
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

/* --- float types --- */

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
	float sum = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
	for (; i < n; i++)
		sum += F16(x[i]) * y[i];
	*s = sum;
}

static inline __m256
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

/* --- 32-element blocks --- */

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
q8_0_from_float(const float *x, void *vy, int64_t n)
{
	block_q8_0 *y = vy;
	const __m256 sign = _mm256_set1_ps(-0.0f);
	for (int64_t i = 0; i < n / 32; i++) {
		__m256 v[4], m;
		for (int k = 0; k < 4; k++)
			v[k] = _mm256_loadu_ps(x + i * 32 + k * 8);
		m = _mm256_andnot_ps(sign, v[0]);
		for (int k = 1; k < 4; k++)
			m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
		__m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
		m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
		m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
		float amax = _mm_cvtss_f32(m4);
		float d = amax / 127, id = d ? 1 / d : 0;
		y[i].d = q_f32_to_f16(d);
		__m256 mul = _mm256_set1_ps(id);
		__m256i q[4];
		for (int k = 0; k < 4; k++)
			q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], mul),
			    _MM_ROUND_NEAREST | _MM_FROUND_NO_EXC));
		/* Pack 32 int32 to 32 int8, restoring order after the lane-wise packs. */
		__m256i a = _mm256_packs_epi32(q[0], q[1]), b = _mm256_packs_epi32(q[2], q[3]);
		__m256i p = _mm256_packs_epi16(a, b);
		p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
		_mm256_storeu_si256((__m256i *)y[i].qs, p);
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

/* --- K-quants --- */

static inline void
scale_min_k4(const uint8_t *q, uint8_t *sc, uint8_t *mn)
{
	for (int j = 0; j < 4; j++) {
		sc[j] = q[j] & 63;
		mn[j] = q[j + 4] & 63;
	}
	for (int j = 4; j < 8; j++) {
		sc[j] = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
		mn[j] = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
	}
}

/* Two 16-bit scales, one per 128-bit lane (16 elements each). */
static inline __m256i
lane_scales(int a, int b)
{
	return _mm256_set_m128i(_mm_set1_epi16((short)b), _mm_set1_epi16((short)a));
}

static void
dot_q4_K(int n, float *s, const void *vx, const void *vy)
{
	const block_q4_K *x = vx;
	const block_q8_K *y = vy;
	__m256 acc = _mm256_setzero_ps();
	float accm = 0;
	const __m256i m4 = _mm256_set1_epi8(0xF);

	for (int i = 0; i < n / QK_K; i++) {
		uint8_t sc[8], mn[8];
		int msum = 0;
		scale_min_k4(x[i].scales, sc, mn);
		for (int j = 0; j < 8; j++)
			msum += mn[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
		accm -= y[i].d * F16(x[i].dmin) * msum;
		__m256i sumi = _mm256_setzero_si256();
		const uint8_t *q4 = x[i].qs;
		const int8_t *q8 = y[i].qs;
		for (int c = 0; c < 4; c++) {
			__m256i bits = _mm256_loadu_si256((const __m256i *)(q4 + 32 * c));
			__m256i lo = _mm256_and_si256(bits, m4);
			__m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
			__m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c)));
			__m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c + 32)));
			pl = _mm256_madd_epi16(_mm256_set1_epi16(sc[2 * c]), pl);
			ph = _mm256_madd_epi16(_mm256_set1_epi16(sc[2 * c + 1]), ph);
			sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
		}
		acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * F16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
	}
	*s = hsum8(acc) + accm;
}

static void
dot_q5_K(int n, float *s, const void *vx, const void *vy)
{
	const block_q5_K *x = vx;
	const block_q8_K *y = vy;
	__m256 acc = _mm256_setzero_ps();
	float accm = 0;
	const __m256i m4 = _mm256_set1_epi8(0xF), one = _mm256_set1_epi8(1);

	for (int i = 0; i < n / QK_K; i++) {
		uint8_t sc[8], mn[8];
		int msum = 0;
		scale_min_k4(x[i].scales, sc, mn);
		for (int j = 0; j < 8; j++)
			msum += mn[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
		accm -= y[i].d * F16(x[i].dmin) * msum;
		__m256i sumi = _mm256_setzero_si256();
		__m256i hb = _mm256_loadu_si256((const __m256i *)x[i].qh);
		const uint8_t *q5 = x[i].qs;
		const int8_t *q8 = y[i].qs;
		for (int c = 0; c < 4; c++) {
			__m256i bits = _mm256_loadu_si256((const __m256i *)(q5 + 32 * c));
			__m256i hl = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), one), 4);
			__m256i hh = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), one), 4);
			__m256i lo = _mm256_or_si256(_mm256_and_si256(bits, m4), hl);
			__m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4), hh);
			__m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c)));
			__m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c + 32)));
			pl = _mm256_madd_epi16(_mm256_set1_epi16(sc[2 * c]), pl);
			ph = _mm256_madd_epi16(_mm256_set1_epi16(sc[2 * c + 1]), ph);
			sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
		}
		acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * F16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
	}
	*s = hsum8(acc) + accm;
}

static void
dot_q6_K(int n, float *s, const void *vx, const void *vy)
{
	const block_q6_K *x = vx;
	const block_q8_K *y = vy;
	__m256 acc = _mm256_setzero_ps();
	const __m256i m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(3), m32 = _mm256_set1_epi8(32);

	for (int i = 0; i < n / QK_K; i++) {
		__m256i sumi = _mm256_setzero_si256();
		for (int h = 0; h < 2; h++) {
			const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
			const int8_t *q8 = y[i].qs + 128 * h, *sc = x[i].scales + 8 * h;
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
			for (int k = 0; k < 4; k++) {
				__m256i y8 = _mm256_loadu_si256((const __m256i *)(q8 + 32 * k));
				/* (q - 32) . y = q . y - 32 * sum(y) */
				__m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[k], y8), _mm256_maddubs_epi16(m32, y8));
				p = _mm256_madd_epi16(lane_scales(sc[2 * k], sc[2 * k + 1]), p);
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
	__m256 acc = _mm256_setzero_ps();
	float accm = 0;
	const __m256i m2 = _mm256_set1_epi8(3);

	for (int i = 0; i < n / QK_K; i++) {
		const uint8_t *sc = x[i].scales;
		int msum = 0;
		for (int j = 0; j < 16; j++)
			msum += (sc[j] >> 4) * y[i].bsums[j];
		accm -= y[i].d * F16(x[i].dmin) * msum;
		__m256i sumi = _mm256_setzero_si256();
		for (int h = 0; h < 2; h++) {
			__m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
			const int8_t *q8 = y[i].qs + 128 * h;
			for (int j = 0; j < 4; j++) {
				__m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), m2);
				__m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(q8 + 32 * j)));
				int s0 = sc[8 * h + 2 * j] & 0xF, s1 = sc[8 * h + 2 * j + 1] & 0xF;
				sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(lane_scales(s0, s1), p));
			}
		}
		acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * F16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
	}
	*s = hsum8(acc) + accm;
}

static void
dot_q3_K(int n, float *s, const void *vx, const void *vy)
{
	const block_q3_K *x = vx;
	const block_q8_K *y = vy;
	__m256 acc = _mm256_setzero_ps();
	const __m256i m2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1), m4 = _mm256_set1_epi8(4);

	for (int i = 0; i < n / QK_K; i++) {
		const uint8_t *sb = x[i].scales;
		int sc[16];
		for (int j = 0; j < 16; j++) {
			int lo = j < 8 ? (sb[j] & 0xF) : (sb[j - 8] >> 4);
			int hi = (sb[8 + j % 4] >> (2 * (j / 4))) & 3;
			sc[j] = (lo | (hi << 4)) - 32;
		}
		__m256i hm = _mm256_loadu_si256((const __m256i *)x[i].hmask);
		__m256i sumi = _mm256_setzero_si256();
		for (int h = 0; h < 2; h++) {
			__m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
			const int8_t *q8 = y[i].qs + 128 * h;
			for (int j = 0; j < 4; j++) {
				__m256i q2 = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), m2);
				__m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), one);
				__m256i q = _mm256_or_si256(q2, _mm256_slli_epi16(hb, 2));   /* q2 + 4h in 0..7 */
				__m256i y8 = _mm256_loadu_si256((const __m256i *)(q8 + 32 * j));
				__m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q, y8), _mm256_maddubs_epi16(m4, y8));
				sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(lane_scales(sc[8 * h + 2 * j], sc[8 * h + 2 * j + 1]), p));
			}
		}
		acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * F16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
	}
	*s = hsum8(acc);
}

/* Q8_K activations: signed maximum sets the scale; sums of 16 for the mins. */
static void
q8_K_from_float(const float *x, void *vy, int64_t n)
{
	block_q8_K *y = vy;
	for (int64_t i = 0; i < n / QK_K; i++) {
		const float *v = x + i * QK_K;
		float amax = 0, max = 0;
		for (int j = 0; j < QK_K; j++) {
			float a = v[j] < 0 ? -v[j] : v[j];
			if (a > amax) {
				amax = a;
				max = v[j];
			}
		}
		if (amax == 0) {
			memset(&y[i], 0, sizeof(y[i]));
			continue;
		}
		float iscale = -127.f / max;
		__m256 mul = _mm256_set1_ps(iscale);
		for (int j = 0; j < QK_K; j += 32) {
			__m256i q[4];
			for (int k = 0; k < 4; k++)
				q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(v + j + 8 * k), mul));
			__m256i a = _mm256_packs_epi32(q[0], q[1]), b = _mm256_packs_epi32(q[2], q[3]);
			__m256i p = _mm256_packs_epi16(a, b);
			p = _mm256_min_epi8(p, _mm256_set1_epi8(127));
			p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
			_mm256_storeu_si256((__m256i *)(y[i].qs + j), p);
		}
		for (int j = 0; j < QK_K / 16; j++) {
			__m128i b = _mm_loadu_si128((const __m128i *)(y[i].qs + 16 * j));
			__m256i w = _mm256_cvtepi8_epi16(b);
			__m256i sum = _mm256_madd_epi16(w, _mm256_set1_epi16(1));
			y[i].bsums[j] = (int16_t)hsum8i(sum);
		}
		y[i].d = 1 / iscale;
	}
}

/* exp(x) for 8 floats: x = n ln2 + r, a degree-6 polynomial for e^r
 * (the Cephes coefficients), 2^n put into the exponent.  Relative error
 * about 1e-7 over the range; below -87.3 the result is 0. */
static inline __m256
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

static float
v_exp_sum(float *x, int n, float max)
{
	__m256 m = _mm256_set1_ps(max), acc = _mm256_setzero_ps();
	int i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
		_mm256_storeu_ps(x + i, e);
		acc = _mm256_add_ps(acc, e);
	}
	float sum = hsum8(acc);
	if (i < n) {
		float tmp[8] = { 0 };
		int k = n - i;
		memcpy(tmp, x + i, k * sizeof(float));
		_mm256_storeu_ps(tmp, exp8(_mm256_sub_ps(_mm256_loadu_ps(tmp), m)));
		for (int j = 0; j < k; j++) {
			x[i + j] = tmp[j];
			sum += tmp[j];
		}
	}
	return sum;
}

static void
v_axpy(int n, float a, const float *x, float *y)
{
	__m256 va = _mm256_set1_ps(a);
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
	for (; i < n; i++)
		y[i] += a * x[i];
}

static float
v_dot(int n, const float *x, const float *y)
{
	float s;
	dot_f32(n, &s, x, y);
	return s;
}

void
q_avx2_install_vops(struct q_vops *v)
{
	v->exp_sum = v_exp_sum;
	v->axpy = v_axpy;
	v->dot = v_dot;
}

int
q_avx2_available(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
	    __builtin_cpu_supports("f16c");
}

void
q_avx2_install(struct q_traits *t)
{
	t[GGML_TYPE_F32].vec_dot = dot_f32;
	t[GGML_TYPE_F16].vec_dot = dot_f16;
	t[GGML_TYPE_F16].to_float_fast = f16_to_float;
	t[GGML_TYPE_BF16].vec_dot = dot_bf16;
	t[GGML_TYPE_BF16].to_float_fast = bf16_to_float;
	t[GGML_TYPE_Q4_0].vec_dot = dot_q4_0;
	t[GGML_TYPE_Q4_0].to_float_fast = q4_0_to_float;
	t[GGML_TYPE_Q4_1].vec_dot = dot_q4_1;
	t[GGML_TYPE_Q5_0].vec_dot = dot_q5_0;
	t[GGML_TYPE_Q5_1].vec_dot = dot_q5_1;
	t[GGML_TYPE_Q8_0].vec_dot = dot_q8_0;
	t[GGML_TYPE_Q8_0].to_float_fast = q8_0_to_float;
	t[GGML_TYPE_Q2_K].vec_dot = dot_q2_K;
	t[GGML_TYPE_Q3_K].vec_dot = dot_q3_K;
	t[GGML_TYPE_Q4_K].vec_dot = dot_q4_K;
	t[GGML_TYPE_Q5_K].vec_dot = dot_q5_K;
	t[GGML_TYPE_Q6_K].vec_dot = dot_q6_K;
	/* Activation quantizers: the matmul uses the target type's from_float. */
	t[GGML_TYPE_Q8_0].from_float_fast = q8_0_from_float;
	t[GGML_TYPE_Q8_K].from_float_fast = q8_K_from_float;
}

#else   /* not built for AVX2: the scalar references stay in place */

void
q_avx2_install_vops(struct q_vops *v)
{
	(void)v;
}

int
q_avx2_available(void)
{
	return 0;
}

void
q_avx2_install(struct q_traits *t)
{
	(void)t;
}

#endif
