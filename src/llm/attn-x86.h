/* attn-x86.h -- attention's x86 kernels, written once over vectors of VL floats and compiled once per tier by attn-<tier>.c. */
/*
 * Each tier's file defines AX_OPS (the name of its table function),
 * AX_NAME (the tier's name), AX_CPU_TIER (the kernel tier whose
 * detection in cpu.c says whether the CPU runs it: not the compiler's
 * __builtin_cpu_supports, whose feature names differ between GCC and
 * clang) and, when the compiler targets that tier's instructions,
 * AX_BUILD; then it includes this file.  The vector width follows from
 * the compiler flags Makefile.am gives that file: __AVX512F__ (with BW,
 * VL) selects 512-bit vectors of 16 floats, otherwise 256-bit vectors of
 * 8 (AVX2, FMA, F16C).  Only the helpers below the width's #ifdef know
 * the width; the kernels after them are written once.
 */
#ifndef AX_OPS
#error "attn-x86.h is included by a tier's file, which defines AX_OPS"
#endif

#include "natter/quant.h"
#include "llm/attn.h"
#include "llm/cpu.h"

#if defined(AX_BUILD)
#include <immintrin.h>

#define ALWAYS static inline __attribute__((always_inline))
/* Full unrolling of the loops over a tile's keys, so that its arrays of
 * vectors live in registers. */
#define UNROLL _Pragma("GCC unroll 8")

/* ------------------------------------------------------------------ */
/* Vectors of the tier's width.  A vmask names the first lanes of a
 * vector (vm_first); the masked forms neither read nor write the others. */

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define VL 16                           /* floats a vector */
/* Keys per step of pv_h: 4 rows x 4 keys of weights in 16 registers, of
 * the 32. */
#define PVH_KEYS 4
/* The transposed tiles: keys x column vectors of qk_t's, rows x vectors
 * of O of pv_t's (24 sums of the 32 registers each). */
#define QKT_KEYS 8
#define QKT_COLS 3
#define PVT_ROWS 6
#define PVT_VECS 4
typedef __m512 vf;
typedef __mmask16 vmask;
#define vf_zero() _mm512_setzero_ps()
#define vf_set1(x) _mm512_set1_ps(x)
#define vf_load(p) _mm512_loadu_ps(p)
#define vf_store(p, v) _mm512_storeu_ps(p, v)
#define vf_add(a, b) _mm512_add_ps(a, b)
#define vf_sub(a, b) _mm512_sub_ps(a, b)
#define vf_mul(a, b) _mm512_mul_ps(a, b)
#define vf_max(a, b) _mm512_max_ps(a, b)
#define vf_fma(a, b, c) _mm512_fmadd_ps(a, b, c)
#define vf_fnma(a, b, c) _mm512_fnmadd_ps(a, b, c)
#define vf_sum(v) _mm512_reduce_add_ps(v)
#define vf_hmax(v) _mm512_reduce_max_ps(v)
/* The first N (0..16) lanes. */
ALWAYS vmask
vm_first(int n)
{
	return (__mmask16)((1u << n) - 1);
}
#define vf_loadz(m, p) _mm512_maskz_loadu_ps(m, p)
#define vf_storem(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define vf_maskz(m, v) _mm512_maskz_mov_ps(m, v)
/* A with its lanes of M raised to B's where B's are larger. */
#define vf_max_m(a, m, b) _mm512_mask_max_ps(a, m, a, b)
/* The lanes of M from B, the others from A. */
#define vf_blend(m, a, b) _mm512_mask_blend_ps(m, a, b)
/* VL halves from X as floats (the lanes of M only); VL floats to halves
 * (the hardware rounds to nearest even, as q_f32_to_f16 does). */
#define vh_load(x) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x)))
#define vh_loadz(m, x) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x))
#define VH_ROUND (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vh_store(y, v) _mm256_storeu_si256((__m256i *)(y), _mm512_cvtps_ph(v, VH_ROUND))
#define vh_storem(y, m, v) _mm256_mask_storeu_epi16(y, m, _mm512_cvtps_ph(v, VH_ROUND))

/* The sums of A0..A3 in order, into S[0..3]: 512 -> 256 bits, then two
 * rounds of pairwise sums and the two 128-bit lanes added. */
ALWAYS __m256
halves(__m512 a)
{
	return _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}
ALWAYS void
vf_sum4(vf a0, vf a1, vf a2, vf a3, float *s)
{
	__m256 h = _mm256_hadd_ps(_mm256_hadd_ps(halves(a0), halves(a1)), _mm256_hadd_ps(halves(a2), halves(a3)));
	_mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

/* vf_exp's ends: the lanes where X >= -87 (taken first, so that X need
 * not stay live); its argument needs no clamp (vscalefps takes any
 * power); P 2^K in those lanes, 0 in the others. */
typedef __mmask16 vexpm;
#define exp_keep(x) _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ)
#define exp_arg(x) (x)
#define exp_scale(p, k, keep) _mm512_maskz_scalef_ps(keep, p, k)
#define vf_round(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

#else   /* 256 bits: AVX2, FMA, F16C */

#define VL 8
/* Keys per step of pv_h: 4 rows x 2 keys of weights in 8 registers, of
 * the 16. */
#define PVH_KEYS 2
/* The transposed tiles (12 sums of the 16 registers each). */
#define QKT_KEYS 6
#define QKT_COLS 2
#define PVT_ROWS 6
#define PVT_VECS 2
typedef __m256 vf;
typedef int vmask;                      /* a count of lanes: AVX2 masks are vectors */
#define vf_zero() _mm256_setzero_ps()
#define vf_set1(x) _mm256_set1_ps(x)
#define vf_load(p) _mm256_loadu_ps(p)
#define vf_store(p, v) _mm256_storeu_ps(p, v)
#define vf_add(a, b) _mm256_add_ps(a, b)
#define vf_sub(a, b) _mm256_sub_ps(a, b)
#define vf_mul(a, b) _mm256_mul_ps(a, b)
#define vf_max(a, b) _mm256_max_ps(a, b)
#define vf_fma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define vf_fnma(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define vm_first(n) (n)
/* The first N lanes (any N: none below 1, all above 7), as vmaskmovps
 * wants them. */
ALWAYS __m256i
lanes(int n)
{
	return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#define vf_loadz(m, p) _mm256_maskload_ps(p, lanes(m))
#define vf_storem(p, m, v) _mm256_maskstore_ps(p, lanes(m), v)
#define vf_maskz(m, v) _mm256_and_ps(v, _mm256_castsi256_ps(lanes(m)))
#define vf_blend(m, a, b) _mm256_blendv_ps(a, b, _mm256_castsi256_ps(lanes(m)))
#define vf_max_m(a, m, b) vf_blend(m, a, _mm256_max_ps(a, b))
#define vh_load(x) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x)))
#define vh_store(y, v) _mm_storeu_si128((__m128i *)(y), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT))
/* AVX2 masks no 16-bit lanes: the first N halves are shifted in or out
 * one at a time (registers only, so that a kernel's tail needs no stack
 * frame). */
ALWAYS vf
vh_loadz(vmask n, const qhalf *x)
{
	__m128i h = _mm_setzero_si128();
	for (int i = n - 1; i >= 0; i--)
		h = _mm_or_si128(_mm_slli_si128(h, 2), _mm_cvtsi32_si128(x[i]));
	return _mm256_cvtph_ps(h);
}
ALWAYS void
vh_storem(qhalf *y, vmask n, vf v)
{
	__m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
	for (int i = 0; i < n; i++, h = _mm_srli_si128(h, 2))
		y[i] = (qhalf)_mm_cvtsi128_si32(h);
}

/* The sum (MAX 0) or the largest (MAX 1) of V's lanes: halves folded
 * together three times. */
ALWAYS float
fold(vf v, int max)
{
	__m128 s = _mm256_castps256_ps128(v), h = _mm256_extractf128_ps(v, 1);
	s = max ? _mm_max_ps(s, h) : _mm_add_ps(s, h);
	h = _mm_movehl_ps(s, s);
	s = max ? _mm_max_ps(s, h) : _mm_add_ps(s, h);
	h = _mm_movehdup_ps(s);
	s = max ? _mm_max_ss(s, h) : _mm_add_ss(s, h);
	return _mm_cvtss_f32(s);
}
#define vf_sum(v) fold(v, 0)
#define vf_hmax(v) fold(v, 1)
/* The sums of A0..A3 in order, into S[0..3]. */
ALWAYS void
vf_sum4(vf a0, vf a1, vf a2, vf a3, float *s)
{
	__m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
	_mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

/* vf_exp's ends: the lanes where X < -87, as a vector; its argument
 * clamped there, so that 2^k fits the exponent field; P 2^K, 0 in those
 * lanes. */
typedef __m256 vexpm;
#define exp_keep(x) _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ)
#define exp_arg(x) _mm256_max_ps(x, _mm256_set1_ps(-87.0f))
ALWAYS vf
exp_scale(vf p, vf k, vexpm below)
{
	__m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
	return _mm256_andnot_ps(below, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}
#define vf_round(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

#endif

/* A whole vector from P, or (WHOLE 0) the lanes of M; WHOLE is a
 * constant where these are inlined, so each use is one instruction. */
ALWAYS vf
vf_loadw(const float *p, vmask m, int whole)
{
	return whole ? vf_load(p) : vf_loadz(m, p);
}
ALWAYS void
vf_storew(float *p, vmask m, vf v, int whole)
{
	if (whole)
		vf_store(p, v);
	else
		vf_storem(p, m, v);
}
ALWAYS vf
vh_loadw(const qhalf *x, vmask m, int whole)
{
	return whole ? vh_load(x) : vh_loadz(m, x);
}

/* Asks for N cache lines from P, into L2. */
ALWAYS void
ask(const uint8_t *p, int n)
{
	for (int i = 0; i < n; i++)
		_mm_prefetch((const char *)p + 64 * i, _MM_HINT_T1);
}

/* ------------------------------------------------------------------ */
/* The kernels (attn.h, struct attn_ops, says what each computes) */

static void
f16_to_f32(const qhalf *x, float *y, int n)
{
	int i = 0;
	for (; i + 2 * VL <= n; i += 2 * VL) {
		vf_store(y + i, vh_load(x + i));
		vf_store(y + i + VL, vh_load(x + i + VL));
	}
	for (; i + VL <= n; i += VL)
		vf_store(y + i, vh_load(x + i));
	if (i < n)
		vf_storem(y + i, vm_first(n - i), vh_loadz(vm_first(n - i), x + i));
}

static void
f32_to_f16(const float *x, qhalf *y, int n)
{
	int i = 0;
	for (; i + VL <= n; i += VL)
		vh_store(y + i, vf_load(x + i));
	if (i < n)
		vh_storem(y + i, vm_first(n - i), vf_loadz(vm_first(n - i), x + i));
}

static float
vmax(const float *x, int n)
{
	vf a = vf_set1(x[0]);
	int i = 0;
	for (; i + VL <= n; i += VL)
		a = vf_max(a, vf_load(x + i));
	if (i < n)
		a = vf_max_m(a, vm_first(n - i), vf_loadz(vm_first(n - i), x + i));
	return vf_hmax(a);
}

/*
 * e^x for x <= 0: x = k ln 2 + r with |r| <= ln 2 / 2 (ln 2 in two parts,
 * so that k ln 2 is exact enough), e^r by its Taylor series to r^7
 * (truncation below 1e-8 relative), times 2^k.  Below -87 (e^x under
 * 1.7e-38): 0.
 */
ALWAYS vf
vf_exp(vf x)
{
	const vexpm keep = exp_keep(x);
	const vf xc = exp_arg(x);
	const vf k = vf_round(vf_mul(xc, vf_set1(1.4426950408889634f)));
	vf r = vf_fnma(k, vf_set1(0.693145751953125f), xc);
	r = vf_fnma(k, vf_set1(1.428606820309417e-6f), r);
	vf p = vf_set1(1.0f / 5040);
	p = vf_fma(p, r, vf_set1(1.0f / 720));
	p = vf_fma(p, r, vf_set1(1.0f / 120));
	p = vf_fma(p, r, vf_set1(1.0f / 24));
	p = vf_fma(p, r, vf_set1(1.0f / 6));
	p = vf_fma(p, r, vf_set1(0.5f));
	p = vf_fma(p, r, vf_set1(1.0f));
	p = vf_fma(p, r, vf_set1(1.0f));
	return exp_scale(p, k, keep);
}

static float
vexp_sum(float *x, int n, float m)
{
	const vf vm = vf_set1(m);
	vf acc = vf_zero();
	int i = 0;
	for (; i + VL <= n; i += VL) {
		const vf e = vf_exp(vf_sub(vf_load(x + i), vm));
		vf_store(x + i, e);
		acc = vf_add(acc, e);
	}
	if (i < n) {
		const vmask t = vm_first(n - i);
		const vf e = vf_maskz(t, vf_exp(vf_sub(vf_loadz(t, x + i), vm)));
		vf_storem(x + i, t, e);
		acc = vf_add(acc, e);
	}
	return vf_sum(acc);
}

static void
vscale(float *y, const float *x, int n, float a)
{
	const vf va = vf_set1(a);
	int i = 0;
	for (; i + VL <= n; i += VL)
		vf_store(y + i, vf_mul(va, vf_load(x + i)));
	if (i < n)
		vf_storem(y + i, vm_first(n - i), vf_mul(va, vf_loadz(vm_first(n - i), x + i)));
}

/* A[u] += columns C.. of X times those of K_u (a whole vector, or the
 * lanes of M), for the four keys K0..K3. */
ALWAYS void
qk_cols4(vf *a, const float *x, const float *k0, const float *k1, const float *k2, const float *k3, int c, vmask m,
	 int whole)
{
	const vf y = vf_loadw(x + c, m, whole);
	a[0] = vf_fma(y, vf_loadw(k0 + c, m, whole), a[0]);
	a[1] = vf_fma(y, vf_loadw(k1 + c, m, whole), a[1]);
	a[2] = vf_fma(y, vf_loadw(k2 + c, m, whole), a[2]);
	a[3] = vf_fma(y, vf_loadw(k3 + c, m, whole), a[3]);
}

/* Each row of Q against keys four at a time, four sums in registers;
 * the columns past the last whole vector under a mask. */
static void
qk(const float *q, int r, int n, const float *k, int ldk, int nk, float *s, int lds)
{
	const vmask tail = vm_first(n % VL);
	const int nf = n - n % VL;

	for (int i = 0; i < r; i++) {
		const float *qi = q + (size_t)i * n;
		float *si = s + (size_t)i * lds;
		int j = 0;
		for (; j + 4 <= nk; j += 4) {
			const float *k0 = k + (size_t)j * ldk, *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
			vf a[4] = { vf_zero(), vf_zero(), vf_zero(), vf_zero() };
			for (int c = 0; c < nf; c += VL)
				qk_cols4(a, qi, k0, k1, k2, k3, c, tail, 1);
			if (nf < n)
				qk_cols4(a, qi, k0, k1, k2, k3, nf, tail, 0);
			vf_sum4(a[0], a[1], a[2], a[3], si + j);
		}
		for (; j < nk; j++) {
			const float *kj = k + (size_t)j * ldk;
			vf a = vf_zero();
			for (int c = 0; c < nf; c += VL)
				a = vf_fma(vf_load(qi + c), vf_load(kj + c), a);
			if (nf < n)
				a = vf_fma(vf_loadz(tail, qi + nf), vf_loadz(tail, kj + nf), a);
			si[j] = vf_sum(a);
		}
	}
}

/* One row of O: 4 VL of its columns in four registers over every key,
 * whole vectors unmasked (masked stores are slow on AMD's cores). */
static void
pv_row(const float *p, const float *v, int ldv, int nk, int n, float *o)
{
	int c = 0;
	for (; c + 4 * VL <= n; c += 4 * VL) {
		vf a0 = vf_load(o + c), a1 = vf_load(o + c + VL), a2 = vf_load(o + c + 2 * VL), a3 = vf_load(o + c + 3 * VL);
		for (int j = 0; j < nk; j++) {
			const float *vj = v + (size_t)j * ldv + c;
			const vf b = vf_set1(p[j]);
			a0 = vf_fma(b, vf_load(vj), a0);
			a1 = vf_fma(b, vf_load(vj + VL), a1);
			a2 = vf_fma(b, vf_load(vj + 2 * VL), a2);
			a3 = vf_fma(b, vf_load(vj + 3 * VL), a3);
		}
		vf_store(o + c, a0);
		vf_store(o + c + VL, a1);
		vf_store(o + c + 2 * VL, a2);
		vf_store(o + c + 3 * VL, a3);
	}
	for (; c < n; c += VL) {
		const vmask m = vm_first(n - c >= VL ? VL : n - c);
		const int whole = n - c >= VL;
		vf a = vf_loadw(o + c, m, whole);
		for (int j = 0; j < nk; j++)
			a = vf_fma(vf_set1(p[j]), vf_loadw(v + (size_t)j * ldv + c, m, whole), a);
		vf_storew(o + c, m, a, whole);
	}
}

/* Four rows of O at a time, 2 VL of their columns in eight registers,
 * over every key; rows past R repeat row 0 (the same inputs, so the same
 * sums written to the same place).  A single row its own way (pv_row):
 * the merge of a generated token's parts of attention. */
static void
pv(const float *p, int ldp, int r, const float *v, int ldv, int nk, int n, float *o, int ldo)
{
	for (int i0 = 0; i0 < r; i0 += 4) {
		const int ri = r - i0 < 4 ? r - i0 : 4;
		if (ri == 1) {
			pv_row(p + (size_t)i0 * ldp, v, ldv, nk, n, o + (size_t)i0 * ldo);
			continue;
		}
		const float *p0 = p + (size_t)i0 * ldp;
		const float *p1 = ri > 1 ? p0 + ldp : p0, *p2 = ri > 2 ? p0 + 2 * (size_t)ldp : p0;
		const float *p3 = ri > 3 ? p0 + 3 * (size_t)ldp : p0;
		float *o0 = o + (size_t)i0 * ldo;
		float *o1 = ri > 1 ? o0 + ldo : o0, *o2 = ri > 2 ? o0 + 2 * (size_t)ldo : o0;
		float *o3 = ri > 3 ? o0 + 3 * (size_t)ldo : o0;
		for (int c = 0; c < n; c += 2 * VL) {
			const vmask m0 = vm_first(n - c >= VL ? VL : n - c);
			const vmask m1 = vm_first(n - c >= 2 * VL ? VL : n - c > VL ? n - c - VL : 0);
			vf a00 = vf_loadz(m0, o0 + c), a01 = vf_loadz(m1, o0 + c + VL);
			vf a10 = vf_loadz(m0, o1 + c), a11 = vf_loadz(m1, o1 + c + VL);
			vf a20 = vf_loadz(m0, o2 + c), a21 = vf_loadz(m1, o2 + c + VL);
			vf a30 = vf_loadz(m0, o3 + c), a31 = vf_loadz(m1, o3 + c + VL);
			for (int j = 0; j < nk; j++) {
				const float *vj = v + (size_t)j * ldv + c;
				const vf x0 = vf_loadz(m0, vj), x1 = vf_loadz(m1, vj + VL);
				vf b = vf_set1(p0[j]);
				a00 = vf_fma(b, x0, a00);
				a01 = vf_fma(b, x1, a01);
				b = vf_set1(p1[j]);
				a10 = vf_fma(b, x0, a10);
				a11 = vf_fma(b, x1, a11);
				b = vf_set1(p2[j]);
				a20 = vf_fma(b, x0, a20);
				a21 = vf_fma(b, x1, a21);
				b = vf_set1(p3[j]);
				a30 = vf_fma(b, x0, a30);
				a31 = vf_fma(b, x1, a31);
			}
			/* Row 3 first: where rows repeat row 0, row 0's sums are
			 * the ones left. */
			vf_storem(o3 + c, m0, a30);
			vf_storem(o3 + c + VL, m1, a31);
			vf_storem(o2 + c, m0, a20);
			vf_storem(o2 + c + VL, m1, a21);
			vf_storem(o1 + c, m0, a10);
			vf_storem(o1 + c + VL, m1, a11);
			vf_storem(o0 + c, m0, a00);
			vf_storem(o0 + c + VL, m1, a01);
		}
	}
}

/* A[i KU + u] += columns C.. of row Q_i times those of key K_u (a whole
 * vector, or the lanes of M), for RI rows against KU keys (constants
 * where this is inlined, RI KU = 8): each row's floats loaded once for
 * the keys, then each key's halves converted once for the rows. */
ALWAYS void
qkh_cols(const int RI, const int KU, vf a[8], const float *const qr[4], const qhalf *const kp[8], int c, vmask m,
	 int whole)
{
	vf y[4];
	UNROLL
	for (int i = 0; i < RI; i++)
		y[i] = vf_loadw(qr[i] + c, m, whole);
	UNROLL
	for (int u = 0; u < KU; u++) {
		const vf x = vh_loadw(kp[u] + c, m, whole);
		UNROLL
		for (int i = 0; i < RI; i++)
			a[i * KU + u] = vf_fma(y[i], x, a[i * KU + u]);
	}
}

/* Rows QR (RI of them, RN written: rows past RN repeat row 0) against
 * keys KU at a time, eight sums in registers: the scores into S (rows
 * LDS apart). */
ALWAYS void
qkh_rows(const int RI, const int KU, const float *const qr[4], int rn, int n, const qhalf *k, int ldk, int nk,
	 float *s, int lds, const uint8_t *pf, int pfl)
{
	const vmask tail = vm_first(n % VL);
	const int nf = n - n % VL;

	for (int j = 0; j < nk; j += KU) {
		const qhalf *kp[8];
		vf a[8];
		float t[8];
		const int ku = nk - j < KU ? nk - j : KU;
		UNROLL
		for (int u = 0; u < KU; u++)
			kp[u] = k + (size_t)(j + (u < ku ? u : 0)) * ldk;   /* keys past NK repeat key j */
		UNROLL
		for (int u = 0; u < 8; u++)
			a[u] = vf_zero();
		if (pf)
			ask(pf + (size_t)j * pfl * 64, ku * pfl);
		for (int c = 0; c < nf; c += VL)
			qkh_cols(RI, KU, a, qr, kp, c, tail, 1);
		if (nf < n)
			qkh_cols(RI, KU, a, qr, kp, nf, tail, 0);
		vf_sum4(a[0], a[1], a[2], a[3], t);
		vf_sum4(a[4], a[5], a[6], a[7], t + 4);
		if (rn == RI && ku == KU) {
			UNROLL
			for (int i = 0; i < RI; i++)
				UNROLL
				for (int u = 0; u < KU; u++)
					s[(size_t)i * lds + j + u] = t[i * KU + u];
			continue;
		}
		for (int i = 0; i < rn; i++)
			for (int u = 0; u < ku; u++)
				s[(size_t)i * lds + j + u] = t[i * KU + u];
	}
}

/* Rows of Q four at a time against keys two at a time, two rows against
 * four, one against eight: eight sums in registers, none spent on a row
 * that is not there (a query's heads of a KV head are often 1 or 2 when
 * a token is generated).  Three rows take the four rows' tile, the
 * fourth repeating row 0, unwritten. */
static void
qk_h(const float *q, int r, int n, const qhalf *k, int ldk, int nk, float *s, int lds, const uint8_t *pf, int pfl)
{
	for (int i0 = 0; i0 < r; i0 += 4) {
		const int ri = r - i0 < 4 ? r - i0 : 4;
		const float *q0 = q + (size_t)i0 * n;
		const float *const qr[4] = { q0, ri > 1 ? q0 + n : q0, ri > 2 ? q0 + 2 * (size_t)n : q0,
			ri > 3 ? q0 + 3 * (size_t)n : q0 };
		const uint8_t *pfi = i0 == 0 ? pf : NULL;   /* the first block of rows asks */
		float *si = s + (size_t)i0 * lds;
		if (ri > 2)
			qkh_rows(4, 2, qr, ri, n, k, ldk, nk, si, lds, pfi, pfl);
		else if (ri == 2)
			qkh_rows(2, 4, qr, 2, n, k, ldk, nk, si, lds, pfi, pfl);
		else
			qkh_rows(1, 8, qr, 1, n, k, ldk, nk, si, lds, pfi, pfl);
	}
}

/* Columns C.. (a whole vector, or the lanes of M) of the RI rows of O
 * (LDO apart) += B[i][u] times key V_u's, for NU keys (a constant where
 * this is inlined), each key's halves converted once for the rows. */
ALWAYS void
pvh_cols(float *o, int ldo, int ri, const vf b[4][2 * PVH_KEYS], const qhalf *v, int ldv, int nu, int c, vmask m,
	 int whole)
{
	vf x[2 * PVH_KEYS];
	UNROLL
	for (int u = 0; u < nu; u++)
		x[u] = vh_loadw(v + (size_t)u * ldv + c, m, whole);
	for (int i = 0; i < ri; i++) {
		float *oi = o + (size_t)i * ldo + c;
		vf a = vf_loadw(oi, m, whole);
		UNROLL
		for (int u = 0; u < nu; u++)
			a = vf_fma(b[i][u], x[u], a);
		vf_storew(oi, m, a, whole);
	}
}

/* Keys j0 .. j0+NU-1 (NU a constant where this is inlined) into the RI
 * rows of O: the NF columns of whole vectors, then those of TAIL. */
ALWAYS void
pvh_keys(const float *p, int ldp, int ri, const qhalf *v, int ldv, int nu, int nf, vmask tail, int n, float *o,
	 int ldo)
{
	vf b[4][2 * PVH_KEYS];

	for (int i = 0; i < ri; i++) {
		UNROLL
		for (int u = 0; u < nu; u++)
			b[i][u] = vf_set1(p[(size_t)i * ldp + u]);
	}
	for (int c = 0; c < nf; c += VL)
		pvh_cols(o, ldo, ri, b, v, ldv, nu, c, tail, 1);
	if (nf < n)
		pvh_cols(o, ldo, ri, b, v, ldv, nu, nf, tail, 0);
}

/* Keys KU at a time (a constant where this is inlined), the rest from
 * J on: *J past the last whole step. */
ALWAYS void
pvh_steps(const int KU, const float *p, int ldp, int ri, const qhalf *v, int ldv, int nk, int nf, vmask tail, int n,
	  float *o, int ldo, const uint8_t *pf, int pfl, int *j)
{
	for (; *j + KU <= nk; *j += KU) {
		if (pf)
			ask(pf + (size_t)*j * pfl * 64, KU * pfl);
		pvh_keys(p + *j, ldp, ri, v + (size_t)*j * ldv, ldv, KU, nf, tail, n, o, ldo);
	}
}

/* Keys PVH_KEYS at a time (the width's tile; twice as many for one or
 * two rows, which leave the registers room), then one at a time: each
 * key's row converted VL halves at a time and added, times each row's
 * weight, into the rows of O (which stay in the L1 cache); the values are
 * read once, in order. */
static void
pv_h(const float *p, int ldp, int r, const qhalf *v, int ldv, int nk, int n, float *o, int ldo, const uint8_t *pf,
     int pfl)
{
	const vmask tail = vm_first(n % VL);
	const int nf = n - n % VL;

	for (int i0 = 0; i0 < r; i0 += 4) {
		const int ri = r - i0 < 4 ? r - i0 : 4;
		const float *pi = p + (size_t)i0 * ldp;
		float *oi = o + (size_t)i0 * ldo;
		const uint8_t *pfi = i0 == 0 ? pf : NULL;   /* the first block of rows asks */
		int j = 0;
		if (ri <= 2)
			pvh_steps(2 * PVH_KEYS, pi, ldp, ri, v, ldv, nk, nf, tail, n, oi, ldo, pfi, pfl, &j);
		pvh_steps(PVH_KEYS, pi, ldp, ri, v, ldv, nk, nf, tail, n, oi, ldo, pfi, pfl, &j);
		for (; j < nk; j++) {
			if (pfi)
				ask(pfi + (size_t)j * pfl * 64, pfl);
			pvh_keys(pi + j, ldp, ri, v + (size_t)j * ldv, ldv, 1, nf, tail, n, oi, ldo);
		}
	}
}

/* ------------------------------------------------------------------ */
/* A prompt's wide blocks, scores transposed (attn.h): the tiles broadcast
 * single floats (a key's in qk_t, a weight's in pv_t) against vectors,
 * and the softmax runs down the columns, VL query rows at a time. */

/* CN column vectors (a constant where this is inlined) of the keys KP
 * (QKT_KEYS of them, KU written) into S^T from ST (rows LDS apart). */
ALWAYS void
qkt_tile(const int CN, const float *qt, int ldq, int n, const float *const kp[QKT_KEYS], int ku, float *st, int lds)
{
	vf a[QKT_KEYS][QKT_COLS];

	UNROLL
	for (int u = 0; u < QKT_KEYS; u++)
		UNROLL
		for (int v = 0; v < CN; v++)
			a[u][v] = vf_zero();
	for (int d = 0; d < n; d++) {
		const float *qd = qt + (size_t)d * ldq;
		vf y[QKT_COLS];
		UNROLL
		for (int v = 0; v < CN; v++)
			y[v] = vf_load(qd + v * VL);
		UNROLL
		for (int u = 0; u < QKT_KEYS; u++) {
			const vf b = vf_set1(kp[u][d]);
			UNROLL
			for (int v = 0; v < CN; v++)
				a[u][v] = vf_fma(b, y[v], a[u][v]);
		}
	}
	UNROLL
	for (int u = 0; u < QKT_KEYS; u++)
		if (u < ku)
			UNROLL
			for (int v = 0; v < CN; v++)
				vf_store(st + (size_t)u * lds + v * VL, a[u][v]);
}

/* Keys QKT_KEYS at a time (keys past NK repeat the tile's first, their
 * sums unwritten), against the columns QKT_COLS vectors at a time: the
 * keys' rows stay in the L1 cache while the queries stream past. */
static void
qk_t(const float *qt, int ldq, int nc, int n, const float *k, int ldk, int nk, float *st, int lds)
{
	const int ncv = (nc + VL - 1) / VL;

	for (int j = 0; j < nk; j += QKT_KEYS) {
		const int ku = nk - j < QKT_KEYS ? nk - j : QKT_KEYS;
		const float *kp[QKT_KEYS];
		float *sj = st + (size_t)j * lds;
		int cv = 0;
		UNROLL
		for (int u = 0; u < QKT_KEYS; u++)
			kp[u] = k + (size_t)(j + (u < ku ? u : 0)) * ldk;
		for (; cv + QKT_COLS <= ncv; cv += QKT_COLS)
			qkt_tile(QKT_COLS, qt + cv * VL, ldq, n, kp, ku, sj + cv * VL, lds);
#if QKT_COLS > 2
		if (ncv - cv == 2)
			qkt_tile(2, qt + cv * VL, ldq, n, kp, ku, sj + cv * VL, lds);
#endif
		if (ncv - cv == 1)
			qkt_tile(1, qt + cv * VL, ldq, n, kp, ku, sj + cv * VL, lds);
	}
}

/* Each vector of columns: its maximum down the NK scores, then the
 * scores' exponentials and their sum; the columns past NC (in the last
 * vector) keep their MX, SUM and ALPHA. */
static void
softmax_t(float *st, int lds, int nk, int nc, float *mx, float *sum, float *alpha)
{
	for (int c = 0; c < nc; c += VL) {
		const vmask lm = vm_first(nc - c >= VL ? VL : nc - c);
		const vf mo = vf_load(mx + c), so = vf_load(sum + c);
		vf m = mo, l = vf_zero(), al;
		for (int j = 0; j < nk; j++)
			m = vf_max(m, vf_load(st + (size_t)j * lds + c));
		for (int j = 0; j < nk; j++) {
			float *e = st + (size_t)j * lds + c;
			const vf x = vf_exp(vf_sub(vf_load(e), m));
			vf_store(e, x);
			l = vf_add(l, x);
		}
		al = vf_exp(vf_sub(mo, m));
		vf_store(sum + c, vf_blend(lm, so, vf_fma(so, al, l)));
		vf_store(alpha + c, vf_blend(lm, vf_load(alpha + c), al));
		vf_store(mx + c, vf_blend(lm, mo, m));
	}
}

/* DN vectors of O's columns from C (DN a constant where this is
 * inlined) for the PVT_ROWS rows from I0 (FULL, a constant: all of them;
 * else RN, the rows past RN repeating row I0, stored first so that row
 * I0's sums are the ones left). */
ALWAYS void
pvt_tile(const int FULL, const int DN, const float *pt, int ldp, int i0, int rn, const float *v, int ldv, int nk,
	 const float *alpha, float *o, int ldo, int c)
{
	vf a[PVT_ROWS][PVT_VECS];
	int r[PVT_ROWS];

	UNROLL
	for (int i = 0; i < PVT_ROWS; i++)
		r[i] = i0 + (FULL || i < rn ? i : 0);
	UNROLL
	for (int i = 0; i < PVT_ROWS; i++) {
		const vf al = vf_set1(alpha[r[i]]);
		UNROLL
		for (int x = 0; x < DN; x++)
			a[i][x] = vf_mul(al, vf_load(o + (size_t)r[i] * ldo + c + x * VL));
	}
	for (int j = 0; j < nk; j++) {
		const float *vj = v + (size_t)j * ldv + c, *pj = pt + (size_t)j * ldp;
		vf y[PVT_VECS];
		UNROLL
		for (int x = 0; x < DN; x++)
			y[x] = vf_load(vj + x * VL);
		UNROLL
		for (int i = 0; i < PVT_ROWS; i++) {
			const vf b = vf_set1(pj[r[i]]);
			UNROLL
			for (int x = 0; x < DN; x++)
				a[i][x] = vf_fma(b, y[x], a[i][x]);
		}
	}
	UNROLL
	for (int i = PVT_ROWS - 1; i >= 0; i--)
		UNROLL
		for (int x = 0; x < DN; x++)
			vf_store(o + (size_t)r[i] * ldo + c + x * VL, a[i][x]);
}

/* Rows I0 .. (FULL, or the RN of a last tile) over O's columns, PVT_VECS
 * vectors at a time, then the rest (N a multiple of VL). */
ALWAYS void
pvt_rows(const int FULL, const float *pt, int ldp, int i0, int rn, const float *v, int ldv, int nk, int n,
	 const float *alpha, float *o, int ldo)
{
	int c = 0;
	for (; c + PVT_VECS * VL <= n; c += PVT_VECS * VL)
		pvt_tile(FULL, PVT_VECS, pt, ldp, i0, rn, v, ldv, nk, alpha, o, ldo, c);
	switch ((n - c) / VL) {
#if PVT_VECS > 3
	case 3:
		pvt_tile(FULL, 3, pt, ldp, i0, rn, v, ldv, nk, alpha, o, ldo, c);
		break;
#endif
#if PVT_VECS > 2
	case 2:
		pvt_tile(FULL, 2, pt, ldp, i0, rn, v, ldv, nk, alpha, o, ldo, c);
		break;
#endif
	case 1:
		pvt_tile(FULL, 1, pt, ldp, i0, rn, v, ldv, nk, alpha, o, ldo, c);
		break;
	default:
		break;
	}
}

/* PVT_ROWS rows at a time, each key's values loaded once for them; a
 * row length off the vector width (no model's) a row and a vector at a
 * time, the last under a mask. */
static void
pv_t(const float *pt, int ldp, int nr, const float *v, int ldv, int nk, int n, const float *alpha, float *o, int ldo)
{
	if (n % VL) {
		for (int i = 0; i < nr; i++) {
			for (int c = 0; c < n; c += VL) {
				const int whole = n - c >= VL;
				const vmask m = vm_first(whole ? VL : n - c);
				float *oi = o + (size_t)i * ldo + c;
				vf a = vf_mul(vf_set1(alpha[i]), vf_loadw(oi, m, whole));
				for (int j = 0; j < nk; j++)
					a = vf_fma(vf_set1(pt[(size_t)j * ldp + i]), vf_loadw(v + (size_t)j * ldv + c, m, whole), a);
				vf_storew(oi, m, a, whole);
			}
		}
		return;
	}
	int i0 = 0;
	for (; i0 + PVT_ROWS <= nr; i0 += PVT_ROWS)
		pvt_rows(1, pt, ldp, i0, PVT_ROWS, v, ldv, nk, n, alpha, o, ldo);
	if (i0 < nr)
		pvt_rows(0, pt, ldp, i0, nr - i0, v, ldv, nk, n, alpha, o, ldo);
}

static const struct attn_ops ops = { AX_NAME, f16_to_f32, f32_to_f16, vmax, vexp_sum, vscale, qk, pv, qk_h, pv_h,
	qk_t, softmax_t, pv_t, 1 };

#endif   /* AX_BUILD */

const struct attn_ops *
AX_OPS(void)
{
#if defined(AX_BUILD)
	return q_cpu_tier_available(AX_CPU_TIER) ? &ops : NULL;
#else
	return NULL;   /* this tier is not built: another CPU family, or --disable-simd */
#endif
}
