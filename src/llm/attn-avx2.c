/* attn-avx2.c -- attention's AVX2/FMA/F16C tier: binary16 rows, exp, max and the small products eight floats at a time; compiled for those ISAs, chosen at run time. */
#include "config.h"

#include "llm/attn.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

static void
f16_to_f32(const qhalf *x, float *y, int n)
{
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		_mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
		_mm256_storeu_ps(y + i + 8, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + 8))));
	}
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
	for (; i < n; i++)
		y[i] = _cvtsh_ss(x[i]);
}

/* The hardware rounds to nearest even, as q_f32_to_f16 does. */
static void
f32_to_f16(const float *x, qhalf *y, int n)
{
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
	for (; i < n; i++)
		y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

static inline float
hsum(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

static inline float
hmax(__m256 v)
{
	__m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_max_ps(s, _mm_movehl_ps(s, s));
	s = _mm_max_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

static float
vmax(const float *x, int n)
{
	float m = x[0];
	int i = 0;
	if (n >= 8) {
		__m256 a = _mm256_loadu_ps(x);
		for (i = 8; i + 8 <= n; i += 8)
			a = _mm256_max_ps(a, _mm256_loadu_ps(x + i));
		m = hmax(a);
	}
	for (; i < n; i++)
		m = x[i] > m ? x[i] : m;
	return m;
}

/*
 * e^x for x <= 0: x = k ln 2 + r with |r| <= ln 2 / 2 (ln 2 in two parts,
 * so that k ln 2 is exact enough), e^r by its Taylor series to r^7
 * (truncation below 1e-8 relative), 2^k into the exponent.  Below -87
 * (e^x under 1.7e-38): 0.
 */
static inline __m256
exp8(__m256 x)
{
	const __m256 zero_below = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
	x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
	__m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.4426950408889634f)),
	    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693145751953125f), x);
	r = _mm256_fnmadd_ps(k, _mm256_set1_ps(1.428606820309417e-6f), r);
	__m256 p = _mm256_set1_ps(1.0f / 5040);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
	__m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
	return _mm256_andnot_ps(zero_below, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

static float
vexp_sum(float *x, int n, float m)
{
	const __m256 vm = _mm256_set1_ps(m);
	__m256 acc = _mm256_setzero_ps();
	int i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
		_mm256_storeu_ps(x + i, e);
		acc = _mm256_add_ps(acc, e);
	}
	if (i < n) {
		/* The tail through a masked load and store. */
		const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
		const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - i), idx);
		__m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, mask), vm));
		e = _mm256_and_ps(e, _mm256_castsi256_ps(mask));
		_mm256_maskstore_ps(x + i, mask, e);
		acc = _mm256_add_ps(acc, e);
	}
	return hsum(acc);
}

static void
vscale(float *y, const float *x, int n, float a)
{
	const __m256 va = _mm256_set1_ps(a);
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(x + i)));
	for (; i < n; i++)
		y[i] = a * x[i];
}

/* The sums of A0..A3 in order, into S[0..3]. */
static inline void
sum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3, float *s)
{
	__m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
	_mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

static void
qk(const float *q, int r, int n, const float *k, int ldk, int nk, float *s, int lds)
{
	const int nf = n - n % 8;

	for (int i = 0; i < r; i++) {
		const float *qi = q + (size_t)i * n;
		float *si = s + (size_t)i * lds;
		int j = 0;
		for (; j + 4 <= nk; j += 4) {
			const float *k0 = k + (size_t)j * ldk, *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
			__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
			for (int c = 0; c < nf; c += 8) {
				const __m256 x = _mm256_loadu_ps(qi + c);
				a0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k0 + c), a0);
				a1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k1 + c), a1);
				a2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k2 + c), a2);
				a3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k3 + c), a3);
			}
			sum4(a0, a1, a2, a3, si + j);
			for (int c = nf; c < n; c++) {
				si[j] += qi[c] * k0[c];
				si[j + 1] += qi[c] * k1[c];
				si[j + 2] += qi[c] * k2[c];
				si[j + 3] += qi[c] * k3[c];
			}
		}
		for (; j < nk; j++) {
			const float *kj = k + (size_t)j * ldk;
			__m256 a = _mm256_setzero_ps();
			for (int c = 0; c < nf; c += 8)
				a = _mm256_fmadd_ps(_mm256_loadu_ps(qi + c), _mm256_loadu_ps(kj + c), a);
			float d = hsum(a);
			for (int c = nf; c < n; c++)
				d += qi[c] * kj[c];
			si[j] = d;
		}
	}
}

/* The first N (0..8) lanes, as maskload wants them. */
static inline __m256i
lanes8(int n)
{
	return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Four rows of O at a time, 16 of their columns in eight registers, over
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
		for (int c = 0; c < n; c += 16) {
			const __m256i m0 = lanes8(n - c), m1 = lanes8(n - c - 8);
			__m256 a00 = _mm256_maskload_ps(o0 + c, m0), a01 = _mm256_maskload_ps(o0 + c + 8, m1);
			__m256 a10 = _mm256_maskload_ps(o1 + c, m0), a11 = _mm256_maskload_ps(o1 + c + 8, m1);
			__m256 a20 = _mm256_maskload_ps(o2 + c, m0), a21 = _mm256_maskload_ps(o2 + c + 8, m1);
			__m256 a30 = _mm256_maskload_ps(o3 + c, m0), a31 = _mm256_maskload_ps(o3 + c + 8, m1);
			for (int j = 0; j < nk; j++) {
				const float *vj = v + (size_t)j * ldv + c;
				const __m256 x0 = _mm256_maskload_ps(vj, m0), x1 = _mm256_maskload_ps(vj + 8, m1);
				__m256 b = _mm256_broadcast_ss(p0 + j);
				a00 = _mm256_fmadd_ps(b, x0, a00);
				a01 = _mm256_fmadd_ps(b, x1, a01);
				b = _mm256_broadcast_ss(p1 + j);
				a10 = _mm256_fmadd_ps(b, x0, a10);
				a11 = _mm256_fmadd_ps(b, x1, a11);
				b = _mm256_broadcast_ss(p2 + j);
				a20 = _mm256_fmadd_ps(b, x0, a20);
				a21 = _mm256_fmadd_ps(b, x1, a21);
				b = _mm256_broadcast_ss(p3 + j);
				a30 = _mm256_fmadd_ps(b, x0, a30);
				a31 = _mm256_fmadd_ps(b, x1, a31);
			}
			_mm256_maskstore_ps(o3 + c, m0, a30);
			_mm256_maskstore_ps(o3 + c + 8, m1, a31);
			_mm256_maskstore_ps(o2 + c, m0, a20);
			_mm256_maskstore_ps(o2 + c + 8, m1, a21);
			_mm256_maskstore_ps(o1 + c, m0, a10);
			_mm256_maskstore_ps(o1 + c + 8, m1, a11);
			_mm256_maskstore_ps(o0 + c, m0, a00);
			_mm256_maskstore_ps(o0 + c + 8, m1, a01);
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

/* Eight halves from X as floats. */
static inline __m256
half8(const qhalf *x)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)x));
}

/* As attn-avx512.c's: rows of Q four at a time against keys two at a
 * time, eight sums in registers; rows past R repeat row 0, not written. */
static void
qk_h(const float *q, int r, int n, const qhalf *k, int ldk, int nk, float *s, int lds, const uint8_t *pf, int pfl)
{
	const int nf = n - n % 8;

	for (int i0 = 0; i0 < r; i0 += 4) {
		const int ri = r - i0 < 4 ? r - i0 : 4;
		const float *q0 = q + (size_t)i0 * n;
		const float *q1 = ri > 1 ? q0 + n : q0, *q2 = ri > 2 ? q0 + 2 * (size_t)n : q0;
		const float *q3 = ri > 3 ? q0 + 3 * (size_t)n : q0;
		const float *qr[4] = { q0, q1, q2, q3 };
		for (int j = 0; j < nk; j += 2) {
			const qhalf *k0 = k + (size_t)j * ldk, *k1 = j + 1 < nk ? k0 + ldk : k0;
			__m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00,
			    a31 = a00;
			float t0[4], t1[4];
			if (pf && i0 == 0)
				ask(pf + (size_t)j * pfl * 64, (j + 1 < nk ? 2 : 1) * pfl);
			for (int c = 0; c < nf; c += 8) {
				const __m256 x0 = half8(k0 + c), x1 = half8(k1 + c);
				__m256 y = _mm256_loadu_ps(q0 + c);
				a00 = _mm256_fmadd_ps(y, x0, a00);
				a01 = _mm256_fmadd_ps(y, x1, a01);
				y = _mm256_loadu_ps(q1 + c);
				a10 = _mm256_fmadd_ps(y, x0, a10);
				a11 = _mm256_fmadd_ps(y, x1, a11);
				y = _mm256_loadu_ps(q2 + c);
				a20 = _mm256_fmadd_ps(y, x0, a20);
				a21 = _mm256_fmadd_ps(y, x1, a21);
				y = _mm256_loadu_ps(q3 + c);
				a30 = _mm256_fmadd_ps(y, x0, a30);
				a31 = _mm256_fmadd_ps(y, x1, a31);
			}
			sum4(a00, a10, a20, a30, t0);
			sum4(a01, a11, a21, a31, t1);
			for (int c = nf; c < n; c++) {
				const float h0 = _cvtsh_ss(k0[c]), h1 = _cvtsh_ss(k1[c]);
				for (int i = 0; i < 4; i++) {
					t0[i] += qr[i][c] * h0;
					t1[i] += qr[i][c] * h1;
				}
			}
			for (int i = 0; i < ri; i++) {
				s[(size_t)(i0 + i) * lds + j] = t0[i];
				if (j + 1 < nk)
					s[(size_t)(i0 + i) * lds + j + 1] = t1[i];
			}
		}
	}
}

/* As attn-avx512.c's, keys two at a time: each key's row converted eight
 * halves at a time and added, times each row's weight, into the rows of
 * O; the values are read once, in order. */
static void
pv_h(const float *p, int ldp, int r, const qhalf *v, int ldv, int nk, int n, float *o, int ldo, const uint8_t *pf,
     int pfl)
{
	const int nf = n - n % 8;

	for (int i0 = 0; i0 < r; i0 += 4) {
		const int ri = r - i0 < 4 ? r - i0 : 4;
		int j = 0;
		for (; j + 2 <= nk; j += 2) {
			const qhalf *v0 = v + (size_t)j * ldv, *v1 = v0 + ldv;
			__m256 b[4][2];
			if (pf && i0 == 0)
				ask(pf + (size_t)j * pfl * 64, 2 * pfl);
			for (int i = 0; i < ri; i++)
				for (int u = 0; u < 2; u++)
					b[i][u] = _mm256_set1_ps(p[(size_t)(i0 + i) * ldp + j + u]);
			for (int c = 0; c < nf; c += 8) {
				const __m256 x0 = half8(v0 + c), x1 = half8(v1 + c);
				for (int i = 0; i < ri; i++) {
					float *oi = o + (size_t)(i0 + i) * ldo + c;
					_mm256_storeu_ps(oi, _mm256_fmadd_ps(b[i][1], x1, _mm256_fmadd_ps(b[i][0], x0, _mm256_loadu_ps(oi))));
				}
			}
			for (int c = nf; c < n; c++) {
				const float h0 = _cvtsh_ss(v0[c]), h1 = _cvtsh_ss(v1[c]);
				for (int i = 0; i < ri; i++) {
					const float *pi = p + (size_t)(i0 + i) * ldp + j;
					float *oi = o + (size_t)(i0 + i) * ldo + c;
					*oi = *oi + pi[0] * h0 + pi[1] * h1;
				}
			}
		}
		for (; j < nk; j++) {
			const qhalf *vj = v + (size_t)j * ldv;
			if (pf && i0 == 0)
				ask(pf + (size_t)j * pfl * 64, pfl);
			for (int i = 0; i < ri; i++) {
				const float w = p[(size_t)(i0 + i) * ldp + j];
				const __m256 bb = _mm256_set1_ps(w);
				float *oi = o + (size_t)(i0 + i) * ldo;
				int c = 0;
				for (; c < nf; c += 8)
					_mm256_storeu_ps(oi + c, _mm256_fmadd_ps(bb, half8(vj + c), _mm256_loadu_ps(oi + c)));
				for (; c < n; c++)
					oi[c] += w * _cvtsh_ss(vj[c]);
			}
		}
	}
}

static const struct attn_ops ops = { "avx2", f16_to_f32, f32_to_f16, vmax, vexp_sum, vscale, qk, pv, qk_h, pv_h };

const struct attn_ops *
attn_avx2_ops(void)
{
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("f16c"))
		return NULL;
	return &ops;
}

#else   /* not built for AVX2 */

const struct attn_ops *
attn_avx2_ops(void)
{
	return NULL;
}

#endif
