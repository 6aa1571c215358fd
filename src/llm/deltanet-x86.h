/* deltanet-x86.h -- the Gated DeltaNet kernels both x86 widths share, written once and included by deltanet.c once per width. */
/*
 * deltanet.c defines, before each inclusion, what differs between the
 * widths, and this file makes the functions NAME_<DX_TIER> from them:
 *
 *   DX_TIER        the tier's name, the functions' suffix (avx2, avx512)
 *   DX_TARGET      the target attribute's string ("avx2,fma", ...)
 *   DX_V, DX_W     the vector type and its width in floats
 *   DX_SET1(x) DX_ZERO() DX_LOAD(p) DX_STORE(p, v) DX_ADD DX_SUB DX_MUL
 *   DX_DIV DX_MIN DX_MAX DX_FMA(a, b, c) = a b + c  DX_FNMA(a, b, c) = c - a b
 *                  the intrinsics of that width
 *   DX_BCAST(p)    *p in every lane
 *   DX_ROUND(x)    x rounded to the nearest integer
 *   DX_LDEXP(p, n) p 2^n, n integral and -126 <= n <= 127
 *   DX_HSUM(v)     the sum of v's lanes
 *   DX_GEMM_REST   the gemm that takes the columns past the last whole vector
 *
 * Everything it defines is static, and every macro it defines or was given
 * is undefined at its end, so that the next width can be included.  The
 * code runs only on a CPU the tier table found able to (dn_tier_available).
 */
#ifndef DX_TIER
#error "deltanet-x86.h is included by deltanet.c, which defines DX_TIER"
#endif

#define DX_CAT2(a, b) a##_##b
#define DX_CAT(a, b) DX_CAT2(a, b)
#define DX_FN(name) DX_CAT(name, DX_TIER)
#define DX_KERNEL static __attribute__((target(DX_TARGET)))
#define DX_INLINE static inline __attribute__((always_inline, target(DX_TARGET)))

/* e^x: Cody-Waite reduction by ln 2, the Cephes degree-6 polynomial on
 * [-ln2/2, ln2/2], 2^n put into the exponent; x clamped to where the
 * result is a normal float.  Measured on [-87, 88] (avx2): relative error
 * at most 1.2e-7 (silu through it: 3.0e-7; through libm's expf: 2.6e-7). */
DX_INLINE DX_V
DX_FN(vexp)(DX_V x)
{
	x = DX_MIN(DX_MAX(x, DX_SET1(-87.33f)), DX_SET1(88.37f));
	DX_V n = DX_ROUND(DX_MUL(x, DX_SET1(1.44269504f)));
	DX_V r = DX_FNMA(n, DX_SET1(0.693359375f), x);
	r = DX_FNMA(n, DX_SET1(-2.12194440e-4f), r);
	DX_V p = DX_SET1(1.9875691500e-4f);
	p = DX_FMA(p, r, DX_SET1(1.3981999507e-3f));
	p = DX_FMA(p, r, DX_SET1(8.3334519073e-3f));
	p = DX_FMA(p, r, DX_SET1(4.1665795894e-2f));
	p = DX_FMA(p, r, DX_SET1(1.6666665459e-1f));
	p = DX_FMA(p, r, DX_SET1(5.0000001201e-1f));
	p = DX_FMA(p, DX_MUL(r, r), DX_ADD(r, DX_SET1(1.0f)));
	return DX_LDEXP(p, n);
}

DX_INLINE DX_V
DX_FN(vsilu)(DX_V x)
{
	DX_V e = DX_FN(vexp)(DX_SUB(DX_ZERO(), x));
	return DX_DIV(x, DX_ADD(DX_SET1(1.0f), e));
}

/* x . y: one vector of sums, then the lanes, then the scalar tail. */
DX_INLINE float
DX_FN(dot)(const float *x, const float *y, int n)
{
	DX_V acc = DX_ZERO();
	int i = 0;

	for (; i + DX_W <= n; i += DX_W)
		acc = DX_FMA(DX_LOAD(x + i), DX_LOAD(y + i), acc);
	float s = DX_HSUM(acc);
	for (; i < n; i++)
		s += x[i] * y[i];
	return s;
}

/* C[0..MR)[0..W NV) += A[0..MR)[0..p) B[0..p)[0..W NV): the MR NV
 * accumulators stay in registers (6 x 2 leaves the 16 ymm registers room
 * for the B row and a broadcast; 1 x 8 folds the B loads into the FMAs). */
DX_INLINE void
DX_FN(gemm_tile)(const int MR, const int NV, int p, const float *a, int lda, const float *b, int ldb, float *c,
		 int ldc)
{
	DX_V acc[6][8];

#pragma GCC unroll 6
	for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
		for (int u = 0; u < NV; u++)
			acc[r][u] = DX_LOAD(c + (size_t)r * ldc + DX_W * u);
	for (int l = 0; l < p; l++) {
		const float *bl = b + (size_t)l * ldb;
		DX_V bv[8];
#pragma GCC unroll 8
		for (int u = 0; u < NV; u++)
			bv[u] = DX_LOAD(bl + DX_W * u);
#pragma GCC unroll 6
		for (int r = 0; r < MR; r++) {
			DX_V ar = DX_BCAST(a + (size_t)r * lda + l);
#pragma GCC unroll 8
			for (int u = 0; u < NV; u++)
				acc[r][u] = DX_FMA(ar, bv[u], acc[r][u]);
		}
	}
#pragma GCC unroll 6
	for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
		for (int u = 0; u < NV; u++)
			DX_STORE(c + (size_t)r * ldc + DX_W * u, acc[r][u]);
}

/* One tile of MR <= 6 rows: the tile takes its row count as a constant,
 * so that its accumulators are registers; hence one call per count. */
DX_INLINE void
DX_FN(gemm_rows)(const int NV, int mr, int p, const float *a, int lda, const float *b, int ldb, float *c, int ldc)
{
	switch (mr) {
	case 6: DX_FN(gemm_tile)(6, NV, p, a, lda, b, ldb, c, ldc); break;
	case 5: DX_FN(gemm_tile)(5, NV, p, a, lda, b, ldb, c, ldc); break;
	case 4: DX_FN(gemm_tile)(4, NV, p, a, lda, b, ldb, c, ldc); break;
	case 3: DX_FN(gemm_tile)(3, NV, p, a, lda, b, ldb, c, ldc); break;
	case 2: DX_FN(gemm_tile)(2, NV, p, a, lda, b, ldb, c, ldc); break;
	default: DX_FN(gemm_tile)(1, NV, p, a, lda, b, ldb, c, ldc); break;
	}
}

/* Rows in blocks of 6 and columns in blocks of 2 vectors (one row alone:
 * 8, so that eight independent sums hide the FMA latency). */
DX_KERNEL void
DX_FN(gemm)(int m, int n, int p, const float *a, int lda, const float *b, int ldb, float *c, int ldc, int lower)
{
	int nw = n & ~(DX_W - 1);

	for (int i0 = 0; i0 < m; i0 += 6) {
		int mr = m - i0 < 6 ? m - i0 : 6;
		int pe = lower ? (i0 + mr < p ? i0 + mr : p) : p;
		const float *ai = a + (size_t)i0 * lda;
		float *ci = c + (size_t)i0 * ldc;
		int j = 0;
		if (mr == 1)
			for (; j + 8 * DX_W <= nw; j += 8 * DX_W)
				DX_FN(gemm_tile)(1, 8, pe, ai, lda, b + j, ldb, ci + j, ldc);
		for (; j + 2 * DX_W <= nw; j += 2 * DX_W)
			DX_FN(gemm_rows)(2, mr, pe, ai, lda, b + j, ldb, ci + j, ldc);
		for (; j < nw; j += DX_W)
			DX_FN(gemm_rows)(1, mr, pe, ai, lda, b + j, ldb, ci + j, ldc);
	}
	if (nw < n)
		DX_GEMM_REST(m, n - nw, p, a, lda, b + nw, ldb, c + nw, ldc, lower);
}

/* One step over W NV columns: two passes over those columns of S, the
 * second while they are still in L1. */
DX_INLINE void
DX_FN(step_blk)(const int NV, float *s, int dk, int dv, const float *q, const float *k, const float *v, float a,
		float beta, float kq, float *o)
{
	DX_V sk[4], sq[4], d[4];
	DX_V va = DX_SET1(a), vb = DX_SET1(beta), vkq = DX_SET1(kq);

#pragma GCC unroll 4
	for (int u = 0; u < NV; u++)
		sk[u] = sq[u] = DX_ZERO();
	for (int i = 0; i < dk; i++) {
		const float *si = s + (size_t)i * dv;
		DX_V ki = DX_BCAST(k + i), qi = DX_BCAST(q + i);
#pragma GCC unroll 4
		for (int u = 0; u < NV; u++) {
			DX_V x = DX_LOAD(si + DX_W * u);
			sk[u] = DX_FMA(ki, x, sk[u]);
			sq[u] = DX_FMA(qi, x, sq[u]);
		}
	}
#pragma GCC unroll 4
	for (int u = 0; u < NV; u++) {
		d[u] = DX_MUL(vb, DX_FNMA(va, sk[u], DX_LOAD(v + DX_W * u)));
		DX_STORE(o + DX_W * u, DX_FMA(va, sq[u], DX_MUL(vkq, d[u])));
	}
	for (int i = 0; i < dk; i++) {
		float *si = s + (size_t)i * dv;
		DX_V ki = DX_BCAST(k + i);
#pragma GCC unroll 4
		for (int u = 0; u < NV; u++)
			DX_STORE(si + DX_W * u, DX_FMA(ki, d[u], DX_MUL(va, DX_LOAD(si + DX_W * u))));
	}
}

/* k . q is the avx2 tier's dot product on every tier: kq, a number every
 * column of the step uses, is then the same whichever tier runs. */
DX_KERNEL void
DX_FN(step)(float *s, int dk, int dv, const float *q, const float *k, const float *v, float a, float beta, float *o,
	    float *tmp)
{
	float kq = dot_avx2(k, q, dk);
	int j = 0;

	for (; j + 4 * DX_W <= dv; j += 4 * DX_W)
		DX_FN(step_blk)(4, s + j, dk, dv, q, k, v + j, a, beta, kq, o + j);
	for (; j + DX_W <= dv; j += DX_W)
		DX_FN(step_blk)(1, s + j, dk, dv, q, k, v + j, a, beta, kq, o + j);
	if (j < dv)
		step_cols_ref(s, dk, dv, j, dv, q, k, v, a, beta, kq, o, tmp);
}

DX_KERNEL void
DX_FN(gnorm)(float *y, const float *o, const float *z, const float *norm, int n, float eps)
{
	float f = 1.0f / sqrtf(DX_FN(dot)(o, o, n) / n + eps);
	DX_V vf = DX_SET1(f);
	int j;

	for (j = 0; j + DX_W <= n; j += DX_W) {
		DX_V g = DX_MUL(DX_LOAD(norm + j), DX_FN(vsilu)(DX_LOAD(z + j)));
		DX_STORE(y + j, DX_MUL(DX_MUL(DX_LOAD(o + j), vf), g));
	}
	for (; j < n; j++)
		y[j] = o[j] * f * norm[j] * silu(z[j]);
}

#undef DX_CAT2
#undef DX_CAT
#undef DX_FN
#undef DX_KERNEL
#undef DX_INLINE
#undef DX_TIER
#undef DX_TARGET
#undef DX_V
#undef DX_W
#undef DX_SET1
#undef DX_ZERO
#undef DX_LOAD
#undef DX_STORE
#undef DX_ADD
#undef DX_SUB
#undef DX_MUL
#undef DX_DIV
#undef DX_MIN
#undef DX_MAX
#undef DX_FMA
#undef DX_FNMA
#undef DX_BCAST
#undef DX_ROUND
#undef DX_LDEXP
#undef DX_HSUM
#undef DX_GEMM_REST
