/* attn-avx512.c -- attention's AVX-512 tier: binary16 rows, exp, max and the small products sixteen floats at a time; compiled for AVX-512 F/BW/VL, chosen at run time. */
#include "config.h"

#include "llm/attn.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>

/* The first N (0..16) lanes. */
static inline __mmask16
lanes(int n)
{
	return (__mmask16)((1u << n) - 1);
}

static void
f16_to_f32(const qhalf *x, float *y, int n)
{
	int i = 0;
	for (; i + 32 <= n; i += 32) {
		_mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))));
		_mm512_storeu_ps(y + i + 16, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i + 16))));
	}
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))));
	if (i < n) {
		/* The tail under a mask: no element past N is read or written. */
		const __mmask16 k = lanes(n - i);
		_mm512_mask_storeu_ps(y + i, k, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, x + i)));
	}
}

/* The hardware rounds to nearest even, as q_f32_to_f16 does. */
static void
f32_to_f16(const float *x, qhalf *y, int n)
{
	int i = 0;
	for (; i + 16 <= n; i += 16)
		_mm256_storeu_si256((__m256i *)(y + i),
		    _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
	if (i < n) {
		const __mmask16 k = lanes(n - i);
		__m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(k, x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		_mm256_mask_storeu_epi16(y + i, k, h);
	}
}

static float
vmax(const float *x, int n)
{
	__m512 a = _mm512_set1_ps(x[0]);
	int i = 0;
	for (; i + 16 <= n; i += 16)
		a = _mm512_max_ps(a, _mm512_loadu_ps(x + i));
	if (i < n)
		a = _mm512_mask_max_ps(a, lanes(n - i), a, _mm512_maskz_loadu_ps(lanes(n - i), x + i));
	return _mm512_reduce_max_ps(a);
}

/* e^x for x <= 0 as in attn-avx2.c: x = k ln 2 + r, Taylor to r^7, 2^k
 * scaled in (vscalefps); below -87: 0. */
static inline __m512
exp16(__m512 x)
{
	const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
	__m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.4426950408889634f)),
	    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693145751953125f), x);
	r = _mm512_fnmadd_ps(k, _mm512_set1_ps(1.428606820309417e-6f), r);
	__m512 p = _mm512_set1_ps(1.0f / 5040);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	return _mm512_maskz_scalef_ps(keep, p, k);
}

static float
vexp_sum(float *x, int n, float m)
{
	const __m512 vm = _mm512_set1_ps(m);
	__m512 acc = _mm512_setzero_ps();
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
		_mm512_storeu_ps(x + i, e);
		acc = _mm512_add_ps(acc, e);
	}
	if (i < n) {
		const __mmask16 k = lanes(n - i);
		__m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm)));
		_mm512_mask_storeu_ps(x + i, k, e);
		acc = _mm512_add_ps(acc, e);
	}
	return _mm512_reduce_add_ps(acc);
}

static void
vscale(float *y, const float *x, int n, float a)
{
	const __m512 va = _mm512_set1_ps(a);
	int i = 0;
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, _mm512_mul_ps(va, _mm512_loadu_ps(x + i)));
	if (i < n)
		_mm512_mask_storeu_ps(y + i, lanes(n - i), _mm512_mul_ps(va, _mm512_maskz_loadu_ps(lanes(n - i), x + i)));
}

/* The sums of A0..A3 in order, into S[0..3]. */
static inline void
sum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3, float *s)
{
	/* 512 -> 256 bits, then two rounds of pairwise sums and the two
	 * 128-bit lanes added. */
#define HALVES(a) _mm256_add_ps(_mm512_castps512_ps256(a), \
	_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)))
	__m256 h = _mm256_hadd_ps(_mm256_hadd_ps(HALVES(a0), HALVES(a1)), _mm256_hadd_ps(HALVES(a2), HALVES(a3)));
#undef HALVES
	_mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

static void
qk(const float *q, int r, int n, const float *k, int ldk, int nk, float *s, int lds)
{
	const __mmask16 tail = lanes(n % 16);
	const int nf = n - n % 16;

	for (int i = 0; i < r; i++) {
		const float *qi = q + (size_t)i * n;
		float *si = s + (size_t)i * lds;
		int j = 0;
		for (; j + 4 <= nk; j += 4) {
			const float *k0 = k + (size_t)j * ldk, *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
			__m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, x;
			for (int c = 0; c < nf; c += 16) {
				x = _mm512_loadu_ps(qi + c);
				a0 = _mm512_fmadd_ps(x, _mm512_loadu_ps(k0 + c), a0);
				a1 = _mm512_fmadd_ps(x, _mm512_loadu_ps(k1 + c), a1);
				a2 = _mm512_fmadd_ps(x, _mm512_loadu_ps(k2 + c), a2);
				a3 = _mm512_fmadd_ps(x, _mm512_loadu_ps(k3 + c), a3);
			}
			if (tail) {
				x = _mm512_maskz_loadu_ps(tail, qi + nf);
				a0 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(tail, k0 + nf), a0);
				a1 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(tail, k1 + nf), a1);
				a2 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(tail, k2 + nf), a2);
				a3 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(tail, k3 + nf), a3);
			}
			sum4(a0, a1, a2, a3, si + j);
		}
		for (; j < nk; j++) {
			const float *kj = k + (size_t)j * ldk;
			__m512 a = _mm512_setzero_ps();
			for (int c = 0; c < nf; c += 16)
				a = _mm512_fmadd_ps(_mm512_loadu_ps(qi + c), _mm512_loadu_ps(kj + c), a);
			if (tail)
				a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, qi + nf), _mm512_maskz_loadu_ps(tail, kj + nf), a);
			si[j] = _mm512_reduce_add_ps(a);
		}
	}
}

/* Four rows of O at a time, 32 of their columns in eight registers, over
 * every key; rows past R repeat row 0 (the same inputs, so the same sums
 * written to the same place). */
static void
pv(const float *p, int ldp, int r, const float *v, int ldv, int nk, int n, float *o, int ldo)
{
	for (int i0 = 0; i0 < r; i0 += 4) {
		const int ri = r - i0 < 4 ? r - i0 : 4;
		const float *p0 = p + (size_t)i0 * ldp;
		const float *p1 = ri > 1 ? p0 + ldp : p0, *p2 = ri > 2 ? p0 + 2 * (size_t)ldp : p0;
		const float *p3 = ri > 3 ? p0 + 3 * (size_t)ldp : p0;
		float *o0 = o + (size_t)i0 * ldo;
		float *o1 = ri > 1 ? o0 + ldo : o0, *o2 = ri > 2 ? o0 + 2 * (size_t)ldo : o0;
		float *o3 = ri > 3 ? o0 + 3 * (size_t)ldo : o0;
		for (int c = 0; c < n; c += 32) {
			const __mmask16 m0 = lanes(n - c >= 16 ? 16 : n - c);
			const __mmask16 m1 = lanes(n - c >= 32 ? 16 : n - c > 16 ? n - c - 16 : 0);
			__m512 a00 = _mm512_maskz_loadu_ps(m0, o0 + c), a01 = _mm512_maskz_loadu_ps(m1, o0 + c + 16);
			__m512 a10 = _mm512_maskz_loadu_ps(m0, o1 + c), a11 = _mm512_maskz_loadu_ps(m1, o1 + c + 16);
			__m512 a20 = _mm512_maskz_loadu_ps(m0, o2 + c), a21 = _mm512_maskz_loadu_ps(m1, o2 + c + 16);
			__m512 a30 = _mm512_maskz_loadu_ps(m0, o3 + c), a31 = _mm512_maskz_loadu_ps(m1, o3 + c + 16);
			for (int j = 0; j < nk; j++) {
				const float *vj = v + (size_t)j * ldv + c;
				const __m512 x0 = _mm512_maskz_loadu_ps(m0, vj), x1 = _mm512_maskz_loadu_ps(m1, vj + 16);
				__m512 b = _mm512_set1_ps(p0[j]);
				a00 = _mm512_fmadd_ps(b, x0, a00);
				a01 = _mm512_fmadd_ps(b, x1, a01);
				b = _mm512_set1_ps(p1[j]);
				a10 = _mm512_fmadd_ps(b, x0, a10);
				a11 = _mm512_fmadd_ps(b, x1, a11);
				b = _mm512_set1_ps(p2[j]);
				a20 = _mm512_fmadd_ps(b, x0, a20);
				a21 = _mm512_fmadd_ps(b, x1, a21);
				b = _mm512_set1_ps(p3[j]);
				a30 = _mm512_fmadd_ps(b, x0, a30);
				a31 = _mm512_fmadd_ps(b, x1, a31);
			}
			_mm512_mask_storeu_ps(o3 + c, m0, a30);
			_mm512_mask_storeu_ps(o3 + c + 16, m1, a31);
			_mm512_mask_storeu_ps(o2 + c, m0, a20);
			_mm512_mask_storeu_ps(o2 + c + 16, m1, a21);
			_mm512_mask_storeu_ps(o1 + c, m0, a10);
			_mm512_mask_storeu_ps(o1 + c + 16, m1, a11);
			_mm512_mask_storeu_ps(o0 + c, m0, a00);
			_mm512_mask_storeu_ps(o0 + c + 16, m1, a01);
		}
	}
}

/* Asks for N cache lines from P, into L2. */
static inline void
ask(const uint8_t *p, int n)
{
	for (int i = 0; i < n; i++)
		_mm_prefetch((const char *)p + 64 * i, _MM_HINT_T1);
}

/* Sixteen halves from X (the first N under a mask) as floats. */
static inline __m512
half16(const qhalf *x, __mmask16 m, int whole)
{
	return _mm512_cvtph_ps(whole ? _mm256_loadu_si256((const __m256i *)x) : _mm256_maskz_loadu_epi16(m, x));
}

/* Rows of Q four at a time against keys two at a time: eight sums in
 * registers, each key's halves converted once per four rows; rows past R
 * repeat row 0 and are not written. */
static void
qk_h(const float *q, int r, int n, const qhalf *k, int ldk, int nk, float *s, int lds, const uint8_t *pf, int pfl)
{
	const __mmask16 tail = lanes(n % 16);
	const int nf = n - n % 16;

	for (int i0 = 0; i0 < r; i0 += 4) {
		const int ri = r - i0 < 4 ? r - i0 : 4;
		const float *q0 = q + (size_t)i0 * n;
		const float *q1 = ri > 1 ? q0 + n : q0, *q2 = ri > 2 ? q0 + 2 * (size_t)n : q0;
		const float *q3 = ri > 3 ? q0 + 3 * (size_t)n : q0;
		for (int j = 0; j < nk; j += 2) {
			const qhalf *k0 = k + (size_t)j * ldk, *k1 = j + 1 < nk ? k0 + ldk : k0;
			__m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00,
			    a31 = a00;
			float t0[4], t1[4];
			if (pf && i0 == 0)
				ask(pf + (size_t)j * pfl * 64, (j + 1 < nk ? 2 : 1) * pfl);
			for (int c = 0; c <= nf; c += 16) {
				if (c == nf && !tail)
					break;
				const int whole = c < nf;
				const __m512 x0 = half16(k0 + c, tail, whole), x1 = half16(k1 + c, tail, whole);
				__m512 y = whole ? _mm512_loadu_ps(q0 + c) : _mm512_maskz_loadu_ps(tail, q0 + c);
				a00 = _mm512_fmadd_ps(y, x0, a00);
				a01 = _mm512_fmadd_ps(y, x1, a01);
				y = whole ? _mm512_loadu_ps(q1 + c) : _mm512_maskz_loadu_ps(tail, q1 + c);
				a10 = _mm512_fmadd_ps(y, x0, a10);
				a11 = _mm512_fmadd_ps(y, x1, a11);
				y = whole ? _mm512_loadu_ps(q2 + c) : _mm512_maskz_loadu_ps(tail, q2 + c);
				a20 = _mm512_fmadd_ps(y, x0, a20);
				a21 = _mm512_fmadd_ps(y, x1, a21);
				y = whole ? _mm512_loadu_ps(q3 + c) : _mm512_maskz_loadu_ps(tail, q3 + c);
				a30 = _mm512_fmadd_ps(y, x0, a30);
				a31 = _mm512_fmadd_ps(y, x1, a31);
			}
			sum4(a00, a10, a20, a30, t0);
			sum4(a01, a11, a21, a31, t1);
			for (int i = 0; i < ri; i++) {
				s[(size_t)(i0 + i) * lds + j] = t0[i];
				if (j + 1 < nk)
					s[(size_t)(i0 + i) * lds + j + 1] = t1[i];
			}
		}
	}
}

/* Keys four at a time, each key's row converted sixteen halves at a time
 * and added, times each row's weight, into the rows of O (which stay in
 * the L1 cache): the values are read once, in order. */
static void
pv_h(const float *p, int ldp, int r, const qhalf *v, int ldv, int nk, int n, float *o, int ldo, const uint8_t *pf,
     int pfl)
{
	const __mmask16 tail = lanes(n % 16);
	const int nf = n - n % 16;

	for (int i0 = 0; i0 < r; i0 += 4) {
		const int ri = r - i0 < 4 ? r - i0 : 4;
		int j = 0;
		for (; j + 4 <= nk; j += 4) {
			const qhalf *v0 = v + (size_t)j * ldv, *v1 = v0 + ldv, *v2 = v1 + ldv, *v3 = v2 + ldv;
			__m512 b[4][4];
			if (pf && i0 == 0)
				ask(pf + (size_t)j * pfl * 64, 4 * pfl);
			for (int i = 0; i < ri; i++)
				for (int u = 0; u < 4; u++)
					b[i][u] = _mm512_set1_ps(p[(size_t)(i0 + i) * ldp + j + u]);
			for (int c = 0; c <= nf; c += 16) {
				if (c == nf && !tail)
					break;
				const int whole = c < nf;
				const __m512 x0 = half16(v0 + c, tail, whole), x1 = half16(v1 + c, tail, whole);
				const __m512 x2 = half16(v2 + c, tail, whole), x3 = half16(v3 + c, tail, whole);
				for (int i = 0; i < ri; i++) {
					float *oi = o + (size_t)(i0 + i) * ldo + c;
					__m512 a = whole ? _mm512_loadu_ps(oi) : _mm512_maskz_loadu_ps(tail, oi);
					a = _mm512_fmadd_ps(b[i][0], x0, a);
					a = _mm512_fmadd_ps(b[i][1], x1, a);
					a = _mm512_fmadd_ps(b[i][2], x2, a);
					a = _mm512_fmadd_ps(b[i][3], x3, a);
					if (whole)
						_mm512_storeu_ps(oi, a);
					else
						_mm512_mask_storeu_ps(oi, tail, a);
				}
			}
		}
		for (; j < nk; j++) {
			const qhalf *vj = v + (size_t)j * ldv;
			if (pf && i0 == 0)
				ask(pf + (size_t)j * pfl * 64, pfl);
			for (int c = 0; c <= nf; c += 16) {
				if (c == nf && !tail)
					break;
				const int whole = c < nf;
				const __m512 x = half16(vj + c, tail, whole);
				for (int i = 0; i < ri; i++) {
					float *oi = o + (size_t)(i0 + i) * ldo + c;
					const __m512 bb = _mm512_set1_ps(p[(size_t)(i0 + i) * ldp + j]);
					if (whole)
						_mm512_storeu_ps(oi, _mm512_fmadd_ps(bb, x, _mm512_loadu_ps(oi)));
					else
						_mm512_mask_storeu_ps(oi, tail, _mm512_fmadd_ps(bb, x, _mm512_maskz_loadu_ps(tail, oi)));
				}
			}
		}
	}
}

static const struct attn_ops ops = { "avx512", f16_to_f32, f32_to_f16, vmax, vexp_sum, vscale, qk, pv, qk_h, pv_h };

const struct attn_ops *
attn_avx512_ops(void)
{
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
	    !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("f16c"))
		return NULL;
	return &ops;
}

#else   /* not built for AVX-512 */

const struct attn_ops *
attn_avx512_ops(void)
{
	return NULL;
}

#endif
