/* deltanet.c -- the Gated DeltaNet layer of Qwen3.5 hybrids: conv, delta rule (recurrent and chunked), gated norm. */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/deltanet.h"

#define SNAP_MAGIC 0x31534e44u  /* "DNS1" */

struct dn_kernels;

struct dn_state {
	struct dn_shape sh;
	int conv_dim;
	float *conv;            /* (d_conv - 1, conv_dim) */
	float *s;               /* (H_v, Dk, Dv) */
	size_t conv_floats, s_floats;
	const struct dn_kernels *k;
	int tier;
	int owned;              /* conv (and s after it) are ours to free */
};

/* The snapshot's header; the conv state then S follow as floats. */
struct snap_head {
	uint32_t magic;
	int32_t shape[5];
	uint32_t pad[2];
};

/* ------------------------------------------------------------------------ */
/* Shapes */

int
dn_shape_check(const struct dn_shape *sh, char *err, size_t errlen)
{
	const char *what = NULL;

	if (!sh)
		what = "no shape";
	else if (sh->n_k_heads <= 0 || sh->n_k_heads > DN_MAX_HEADS)
		what = "key head count (ssm.group_count) out of range";
	else if (sh->n_v_heads <= 0 || sh->n_v_heads > DN_MAX_HEADS)
		what = "value head count (ssm.time_step_rank) out of range";
	else if (sh->n_v_heads % sh->n_k_heads)
		what = "value head count is not a multiple of the key head count";
	else if (sh->d_k <= 0 || sh->d_k > DN_MAX_HEAD_DIM)
		what = "key head size (ssm.state_size) out of range";
	else if (sh->d_v <= 0 || sh->d_v > DN_MAX_HEAD_DIM)
		what = "value head size (ssm.inner_size / time_step_rank) out of range";
	else if (sh->d_conv <= 0 || sh->d_conv > DN_MAX_CONV)
		what = "conv kernel (ssm.conv_kernel) out of range";
	else if ((size_t)sh->n_v_heads * sh->d_k * sh->d_v > DN_MAX_STATE_FLOATS)
		what = "recurrent state too large";
	if (what) {
		if (err && errlen) {
			if (sh)
				snprintf(err, errlen, "Gated DeltaNet shape refused: %s (H_k %d, H_v %d, Dk %d, Dv %d, conv %d)",
					 what, sh->n_k_heads, sh->n_v_heads, sh->d_k, sh->d_v, sh->d_conv);
			else
				snprintf(err, errlen, "Gated DeltaNet shape refused: %s", what);
		}
		return -1;
	}
	return 0;
}

/* With the limits above, every size below fits an int: conv_dim is at most
 * 2 * 4096 * 1024 + 4096 * 1024 < 2^24. */
int
dn_conv_dim(const struct dn_shape *sh)
{
	return 2 * sh->n_k_heads * sh->d_k + sh->n_v_heads * sh->d_v;
}

int
dn_conv_units(const struct dn_shape *sh)
{
	return 2 * sh->n_k_heads + sh->n_v_heads;
}

size_t
dn_xc_floats(const struct dn_shape *sh, int nt)
{
	return (size_t)(nt > 0 ? nt : 0) * (size_t)dn_conv_dim(sh);
}

/* Chunk work space, in this order (C = DN_CHUNK):
 *   pack (2C, Dk)  the chunk's k rows then its q rows, contiguous
 *   kt   (Dk, C)   k transposed; scaled for the state update at the end
 *   kq   (2C, C)   k.k (becomes -L, the strictly lower system) then q.k
 *   ro   (2C, Dv)  k S0 (becomes the right-hand side, then d) then q S0 (becomes o)
 * The recurrent form uses the first 3 Dv floats. */
size_t
dn_work_floats(const struct dn_shape *sh)
{
	size_t c = DN_CHUNK;
	return 3 * c * (size_t)sh->d_k + 2 * c * c + 2 * c * (size_t)sh->d_v;
}

static size_t
state_s_floats(const struct dn_shape *sh)
{
	return (size_t)sh->n_v_heads * sh->d_k * sh->d_v;
}

static size_t
state_conv_floats(const struct dn_shape *sh)
{
	return (size_t)(sh->d_conv - 1) * dn_conv_dim(sh);
}

size_t
dn_state_bytes(const struct dn_shape *sh)
{
	return (state_s_floats(sh) + state_conv_floats(sh)) * sizeof(float);
}

/* ------------------------------------------------------------------------ */
/* Kernels: the scalar reference, then SIMD tiers.  Each tier is one entry
 * of the table below; a state calls the kernels of its tier. */

struct dn_kernels {
	const char *name;
	int (*available)(void);
	/* C (m, n; ldc) += A (m, p; lda) B (p, n; ldb).  With LOWER, A is lower
	 * triangular (a[i][l] = 0 for l > i; p >= m) and is not read there. */
	void (*gemm)(int m, int n, int p, const float *a, int lda, const float *b, int ldb,
		     float *c, int ldc, int lower);
	/* One token of the delta rule on one head's S (dk, dv):
	 * S = a S; d = beta (v - S^T k); S += k d^T; o = S^T q.  TMP: 2 dv floats. */
	void (*step)(float *s, int dk, int dv, const float *q, const float *k, const float *v,
		     float a, float beta, float *o, float *tmp);
	/* OUT[t][c] = silu(sum_j w[c dc + j] in[t - nst + j][c]) for t < nt,
	 * c < n, where input row tau < 0 is row nst + tau of ST and row
	 * tau >= 0 row tau of X; OUT, ST and X rows are LD floats apart. */
	void (*conv)(float *out, const float *st, const float *x, size_t ld, int nst, int nt,
		     const float *w, int dc, int n);
	/* X = X * SCALE / max(||X||, eps) */
	void (*l2norm)(float *x, int n, float eps, float scale);
	/* Y = O / sqrt(mean(O^2) + eps) * NORM * silu(Z) */
	void (*gnorm)(float *y, const float *o, const float *z, const float *norm, int n, float eps);
	/* X = e^X */
	void (*expv)(float *x, int n);
};

static inline float
silu(float x)
{
	return x / (1.0f + expf(-x));
}

static inline float
sigmoid(float x)
{
	return 1.0f / (1.0f + expf(-x));
}

/* ggml's softplus: the identity above 20, where log1p(e^x) rounds to x. */
static inline float
softplus(float x)
{
	return x > 20.0f ? x : log1pf(expf(x));
}

static int
avail_always(void)
{
	return 1;
}

static void
gemm_ref(int m, int n, int p, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
	 int lower)
{
	for (int i = 0; i < m; i++) {
		int pe = lower ? i + 1 : p;
		float *ci = c + (size_t)i * ldc;
		for (int l = 0; l < pe; l++) {
			float ail = a[(size_t)i * lda + l];
			const float *bl = b + (size_t)l * ldb;
			for (int j = 0; j < n; j++)
				ci[j] += ail * bl[j];
		}
	}
}

/* Columns [j0, j1) of one step (KQ = k . q): both products of S with k
 * and q in one pass over S, then the update; S'^T q = a S^T q + d (k . q)
 * since S' = a S + k d^T.  The columns are independent. */
static void
step_cols_ref(float *s, int dk, int dv, int j0, int j1, const float *q, const float *k, const float *v,
	      float a, float beta, float kq, float *o, float *tmp)
{
	float *sk = tmp, *d = tmp + dv;

	for (int j = j0; j < j1; j++)
		sk[j] = o[j] = 0;
	for (int i = 0; i < dk; i++) {
		const float *si = s + (size_t)i * dv;
		for (int j = j0; j < j1; j++) {
			sk[j] += k[i] * si[j];
			o[j] += q[i] * si[j];
		}
	}
	for (int j = j0; j < j1; j++) {
		d[j] = beta * (v[j] - a * sk[j]);
		o[j] = a * o[j] + kq * d[j];
	}
	for (int i = 0; i < dk; i++) {
		float *si = s + (size_t)i * dv;
		for (int j = j0; j < j1; j++)
			si[j] = a * si[j] + k[i] * d[j];
	}
}

static void
step_ref(float *s, int dk, int dv, const float *q, const float *k, const float *v, float a, float beta,
	 float *o, float *tmp)
{
	float kq = 0;
	for (int i = 0; i < dk; i++)
		kq += k[i] * q[i];
	step_cols_ref(s, dk, dv, 0, dv, q, k, v, a, beta, kq, o, tmp);
}

static void
conv_ref(float *out, const float *st, const float *x, size_t ld, int nst, int nt, const float *w, int dc,
	 int n)
{
	for (int t = 0; t < nt; t++) {
		float *o = out + (size_t)t * ld;
		for (int c = 0; c < n; c++) {
			const float *wc = w + (size_t)c * dc;
			float acc = 0;
			for (int j = 0; j < dc; j++) {
				int tau = t - nst + j;
				acc += wc[j] * (tau < 0 ? st[(size_t)(nst + tau) * ld + c] : x[(size_t)tau * ld + c]);
			}
			o[c] = silu(acc);
		}
	}
}

static void
l2norm_ref(float *x, int n, float eps, float scale)
{
	double ss = 0;
	for (int i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	double nrm = sqrt(ss);
	float f = (float)(scale / (nrm > eps ? nrm : eps));
	for (int i = 0; i < n; i++)
		x[i] *= f;
}

static void
gnorm_ref(float *y, const float *o, const float *z, const float *norm, int n, float eps)
{
	double ss = 0;
	for (int j = 0; j < n; j++)
		ss += (double)o[j] * o[j];
	float f = (float)(1.0 / sqrt(ss / n + eps));
	for (int j = 0; j < n; j++)
		y[j] = o[j] * f * norm[j] * silu(z[j]);
}

static void
expv_ref(float *x, int n)
{
	for (int i = 0; i < n; i++)
		x[i] = expf(x[i]);
}

#if defined(__x86_64__) && defined(__GNUC__)
/*
 * The x86 tiers.  They live here, compiled through target attributes, so
 * that the unit stays one file with its template; the rest of the file is
 * built for the baseline and calls them only on a CPU that has the
 * instructions.  Widths are whole vectors; the columns past the last whole
 * vector go to the scalar reference, which handles any column range.  The
 * kernels the two widths share are written once, in deltanet-x86.h, and
 * included once per width with the intrinsics of that width.
 */
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))

static int
avail_avx2(void)
{
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

AVX2_INLINE float
hsum8(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* p 2^n, through the exponent field (n integral, a normal result). */
AVX2_INLINE __m256
ldexp8(__m256 p, __m256 n)
{
	__m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

#define DX_TIER avx2
#define DX_TARGET "avx2,fma"
#define DX_V __m256
#define DX_W 8
#define DX_SET1(x) _mm256_set1_ps(x)
#define DX_ZERO() _mm256_setzero_ps()
#define DX_LOAD(p) _mm256_loadu_ps(p)
#define DX_STORE(p, v) _mm256_storeu_ps(p, v)
#define DX_ADD(a, b) _mm256_add_ps(a, b)
#define DX_SUB(a, b) _mm256_sub_ps(a, b)
#define DX_MUL(a, b) _mm256_mul_ps(a, b)
#define DX_DIV(a, b) _mm256_div_ps(a, b)
#define DX_MIN(a, b) _mm256_min_ps(a, b)
#define DX_MAX(a, b) _mm256_max_ps(a, b)
#define DX_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define DX_FNMA(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define DX_BCAST(p) _mm256_broadcast_ss(p)
#define DX_ROUND(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define DX_LDEXP(p, n) ldexp8(p, n)
#define DX_HSUM(v) hsum8(v)
#define DX_GEMM_REST gemm_ref
#include "llm/deltanet-x86.h"

/* W[j] = the weights of tap j for channels [0, 8): the weights are stored
 * channel-major (c dc + j), so this is a transpose; done in registers
 * when dc is 4 (every Qwen3.5 file), by a gather otherwise.  (Building it
 * through memory with scalar stores stalls store forwarding, and costs
 * more than the conv itself when a batch is one token.) */
AVX2_INLINE void
conv_taps8(__m256 *wj, const float *w, int dc)
{
	if (dc == 4) {
		__m256 v0 = _mm256_loadu_ps(w), v1 = _mm256_loadu_ps(w + 8);
		__m256 v2 = _mm256_loadu_ps(w + 16), v3 = _mm256_loadu_ps(w + 24);
		/* lanes hold channels 0 4 2 6 | 1 5 3 7 after two unpacks */
		__m256 t0 = _mm256_unpacklo_ps(v0, v1), t1 = _mm256_unpackhi_ps(v0, v1);
		__m256 t2 = _mm256_unpacklo_ps(v2, v3), t3 = _mm256_unpackhi_ps(v2, v3);
		__m256i perm = _mm256_setr_epi32(0, 4, 2, 6, 1, 5, 3, 7);
		wj[0] = _mm256_permutevar8x32_ps(_mm256_unpacklo_ps(t0, t2), perm);
		wj[1] = _mm256_permutevar8x32_ps(_mm256_unpackhi_ps(t0, t2), perm);
		wj[2] = _mm256_permutevar8x32_ps(_mm256_unpacklo_ps(t1, t3), perm);
		wj[3] = _mm256_permutevar8x32_ps(_mm256_unpackhi_ps(t1, t3), perm);
		return;
	}
	__m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(dc));
	for (int j = 0; j < dc; j++)
		wj[j] = _mm256_i32gather_ps(w + j, idx, 4);
}

/* 16 channels at a time (a cache line of every row), over tiles of 16
 * tokens, so that a tile's rows stay in L1 while its channels go by. */
static AVX2 void
conv_avx2(float *out, const float *st, const float *x, size_t ld, int nst, int nt, const float *w, int dc, int n)
{
	int n16 = n & ~15;

	for (int t0 = 0; t0 < nt; t0 += 16)
	for (int c = 0; c < n16; c += 16) {
		__m256 w0[DN_MAX_CONV], w1[DN_MAX_CONV];
		int t1 = nt - t0 < 16 ? nt : t0 + 16;
		conv_taps8(w0, w + (size_t)c * dc, dc);
		conv_taps8(w1, w + (size_t)(c + 8) * dc, dc);
		for (int t = t0; t < t1; t++) {
			__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
			for (int j = 0; j < dc; j++) {
				int tau = t - nst + j;
				const float *row = (tau < 0 ? st + (size_t)(nst + tau) * ld : x + (size_t)tau * ld) + c;
				a0 = _mm256_fmadd_ps(w0[j], _mm256_loadu_ps(row), a0);
				a1 = _mm256_fmadd_ps(w1[j], _mm256_loadu_ps(row + 8), a1);
			}
			_mm256_storeu_ps(out + (size_t)t * ld + c, vsilu_avx2(a0));
			_mm256_storeu_ps(out + (size_t)t * ld + c + 8, vsilu_avx2(a1));
		}
	}
	if (n16 < n)
		conv_ref(out + n16, st + n16, x + n16, ld, nst, nt, w + (size_t)n16 * dc, dc, n - n16);
}

static AVX2 void
l2norm_avx2(float *x, int n, float eps, float scale)
{
	float nrm = sqrtf(dot_avx2(x, x, n));
	float f = scale / (nrm > eps ? nrm : eps);
	__m256 vf = _mm256_set1_ps(f);
	int i;

	for (i = 0; i + 8 <= n; i += 8)
		_mm256_storeu_ps(x + i, _mm256_mul_ps(vf, _mm256_loadu_ps(x + i)));
	for (; i < n; i++)
		x[i] *= f;
}

static AVX2 void
expv_avx2(float *x, int n)
{
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(x + i, vexp_avx2(_mm256_loadu_ps(x + i)));
	for (; i < n; i++)
		x[i] = expf(x[i]);
}

/* AVX-512: the same shapes twice as wide (6 x 32 floats; a 6 x 64 tile,
 * 24 of the 32 registers, measured no faster). */
static int
avail_avx512(void)
{
	return avail_avx2() && __builtin_cpu_supports("avx512f");
}

#define DX_TIER avx512
#define DX_TARGET "avx512f,avx2,fma"
#define DX_V __m512
#define DX_W 16
#define DX_SET1(x) _mm512_set1_ps(x)
#define DX_ZERO() _mm512_setzero_ps()
#define DX_LOAD(p) _mm512_loadu_ps(p)
#define DX_STORE(p, v) _mm512_storeu_ps(p, v)
#define DX_ADD(a, b) _mm512_add_ps(a, b)
#define DX_SUB(a, b) _mm512_sub_ps(a, b)
#define DX_MUL(a, b) _mm512_mul_ps(a, b)
#define DX_DIV(a, b) _mm512_div_ps(a, b)
#define DX_MIN(a, b) _mm512_min_ps(a, b)
#define DX_MAX(a, b) _mm512_max_ps(a, b)
#define DX_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define DX_FNMA(a, b, c) _mm512_fnmadd_ps(a, b, c)
#define DX_BCAST(p) _mm512_set1_ps(*(p))
#define DX_ROUND(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define DX_LDEXP(p, n) _mm512_scalef_ps(p, n)
#define DX_HSUM(v) _mm512_reduce_add_ps(v)
#define DX_GEMM_REST gemm_avx2
#include "llm/deltanet-x86.h"
#endif

/* The tiers, best last.  AVX-512 keeps AVX2's conv (memory-bound: a
 * 16-wide version measured no faster), L2 norm and exp (little work). */
static const struct dn_kernels tiers[] = {
	{ "scalar", avail_always, gemm_ref, step_ref, conv_ref, l2norm_ref, gnorm_ref, expv_ref },
#if defined(__x86_64__) && defined(__GNUC__)
	{ "avx2", avail_avx2, gemm_avx2, step_avx2, conv_avx2, l2norm_avx2, gnorm_avx2, expv_avx2 },
	{ "avx512", avail_avx512, gemm_avx512, step_avx512, conv_avx2, l2norm_avx2, gnorm_avx512, expv_avx2 },
#endif
};
#define N_TIERS ((int)(sizeof(tiers) / sizeof(tiers[0])))

/* ------------------------------------------------------------------------ */
/* Tiers */

int
dn_tier_count(void)
{
	return N_TIERS;
}

const char *
dn_tier_name(int tier)
{
	return tier >= 0 && tier < N_TIERS ? tiers[tier].name : NULL;
}

int
dn_tier_available(int tier)
{
	return tier >= 0 && tier < N_TIERS && tiers[tier].available();
}

int
dn_state_set_tier(struct dn_state *st, int tier)
{
	if (!dn_tier_available(tier))
		return -1;
	st->k = &tiers[tier];
	st->tier = tier;
	return 0;
}

int
dn_state_tier(const struct dn_state *st)
{
	return st->tier;
}

/* ------------------------------------------------------------------------ */
/* The state */

struct dn_state *
dn_state_new(const struct dn_shape *sh, char *err, size_t errlen)
{
	struct dn_state *st;

	if (dn_shape_check(sh, err, errlen) < 0)
		return NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		goto oom;
	st->sh = *sh;
	st->conv_dim = dn_conv_dim(sh);
	st->conv_floats = state_conv_floats(sh);
	st->s_floats = state_s_floats(sh);
	/* One block: conv rows then S. */
	st->conv = calloc(st->conv_floats + st->s_floats, sizeof(float));
	if (!st->conv)
		goto oom;
	st->s = st->conv + st->conv_floats;
	st->owned = 1;
	for (int t = N_TIERS - 1; t >= 0; t--)
		if (dn_state_set_tier(st, t) == 0)
			break;
	return st;
oom:
	free(st);
	if (err && errlen)
		snprintf(err, errlen, "Gated DeltaNet state: out of memory (%zu bytes)", dn_state_bytes(sh));
	return NULL;
}

struct dn_state *
dn_state_view(const struct dn_shape *sh, float *conv, float *s, char *err, size_t errlen)
{
	struct dn_state *st;

	if (dn_shape_check(sh, err, errlen) < 0)
		return NULL;
	if (!conv || !s) {
		if (err && errlen)
			snprintf(err, errlen, "Gated DeltaNet state: no memory given");
		return NULL;
	}
	st = calloc(1, sizeof(*st));
	if (!st) {
		if (err && errlen)
			snprintf(err, errlen, "Gated DeltaNet state: out of memory");
		return NULL;
	}
	st->sh = *sh;
	st->conv_dim = dn_conv_dim(sh);
	st->conv_floats = state_conv_floats(sh);
	st->s_floats = state_s_floats(sh);
	st->conv = conv;
	st->s = s;
	for (int t = N_TIERS - 1; t >= 0; t--)
		if (dn_state_set_tier(st, t) == 0)
			break;
	return st;
}

void
dn_state_free(struct dn_state *st)
{
	if (!st)
		return;
	if (st->owned)
		free(st->conv);
	free(st);
}

void
dn_state_clear(struct dn_state *st)
{
	if (st->conv_floats)
		memset(st->conv, 0, st->conv_floats * sizeof(float));
	memset(st->s, 0, st->s_floats * sizeof(float));
}

const struct dn_shape *
dn_state_shape(const struct dn_state *st)
{
	return &st->sh;
}

const float *
dn_state_conv(const struct dn_state *st)
{
	return st->conv;
}

const float *
dn_state_head(const struct dn_state *st, int h)
{
	if (h < 0 || h >= st->sh.n_v_heads)
		return NULL;
	return st->s + (size_t)h * st->sh.d_k * st->sh.d_v;
}

size_t
dn_snapshot_size(const struct dn_state *st)
{
	return sizeof(struct snap_head) + (st->conv_floats + st->s_floats) * sizeof(float);
}

static void
snap_head_fill(struct snap_head *h, const struct dn_shape *sh)
{
	memset(h, 0, sizeof(*h));
	h->magic = SNAP_MAGIC;
	h->shape[0] = sh->n_k_heads;
	h->shape[1] = sh->n_v_heads;
	h->shape[2] = sh->d_k;
	h->shape[3] = sh->d_v;
	h->shape[4] = sh->d_conv;
}

int
dn_snapshot_save(const struct dn_state *st, void *buf, size_t len)
{
	struct snap_head h;

	if (!buf || len < dn_snapshot_size(st))
		return -1;
	snap_head_fill(&h, &st->sh);
	memcpy(buf, &h, sizeof(h));
	if (st->conv_floats)
		memcpy((char *)buf + sizeof(h), st->conv, st->conv_floats * sizeof(float));
	memcpy((char *)buf + sizeof(h) + st->conv_floats * sizeof(float), st->s, st->s_floats * sizeof(float));
	return 0;
}

int
dn_snapshot_load(struct dn_state *st, const void *buf, size_t len, char *err, size_t errlen)
{
	struct snap_head want, got;

	if (!buf || len != dn_snapshot_size(st)) {
		if (err && errlen)
			snprintf(err, errlen, "Gated DeltaNet snapshot: %zu bytes, expected %zu", buf ? len : 0,
				 dn_snapshot_size(st));
		return -1;
	}
	snap_head_fill(&want, &st->sh);
	memcpy(&got, buf, sizeof(got));
	if (memcmp(&want, &got, sizeof(got)) != 0) {
		if (err && errlen)
			snprintf(err, errlen, "Gated DeltaNet snapshot: not a state of this layer's shape");
		return -1;
	}
	if (st->conv_floats)
		memcpy(st->conv, (const char *)buf + sizeof(got), st->conv_floats * sizeof(float));
	memcpy(st->s, (const char *)buf + sizeof(got) + st->conv_floats * sizeof(float), st->s_floats * sizeof(float));
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Phase 1: the conv */

static int
batch_ok(const struct dn_state *st, const struct dn_batch *b)
{
	return st && b && b->nt >= 0 && (b->nt == 0 || (b->qkv && b->z && b->alpha && b->beta && b->xc && b->y));
}

/* First channel and size of conv unit U. */
static void
unit_channels(const struct dn_shape *sh, int u, int *c0, int *n)
{
	int hk = sh->n_k_heads;
	if (u < 2 * hk) {
		*c0 = u * sh->d_k;
		*n = sh->d_k;
	} else {
		*c0 = 2 * hk * sh->d_k + (u - 2 * hk) * sh->d_v;
		*n = sh->d_v;
	}
}

int
dn_conv_run(struct dn_state *st, const struct dn_weights *w, const struct dn_batch *b, int u0, int u1)
{
	const struct dn_shape *sh;
	size_t cd;
	int nst;
	float qscale;

	if (!batch_ok(st, b) || !w || !w->conv1d || u0 < 0 || u1 < u0 || u1 > dn_conv_units(&st->sh))
		return -1;
	sh = &st->sh;
	cd = (size_t)st->conv_dim;
	nst = sh->d_conv - 1;
	qscale = (float)(1.0 / sqrt((double)sh->d_k));
	for (int u = u0; u < u1; u++) {
		int c0, n;
		unit_channels(sh, u, &c0, &n);
		st->k->conv(b->xc + c0, st->conv + c0, b->qkv + c0, cd, nst, b->nt, w->conv1d + (size_t)c0 * sh->d_conv,
			    sh->d_conv, n);
		/* ggml_l2_norm, x / max(||x||, eps), on q and k; q also takes the
		 * delta rule's 1/sqrt(Dk) */
		if (u < 2 * sh->n_k_heads)
			for (int t = 0; t < b->nt; t++)
				st->k->l2norm(b->xc + (size_t)t * cd + c0, n, w->eps, u < sh->n_k_heads ? qscale : 1.0f);
		/* the state keeps the last nst input rows: new row r is row nt + r
		 * of (state ++ qkv); going up, row nt + r > r is read before it is
		 * overwritten */
		for (int r = 0; r < nst; r++) {
			int src = b->nt + r;
			float *dst = st->conv + (size_t)r * cd + c0;
			const float *x = src < nst ? st->conv + (size_t)src * cd + c0
						   : b->qkv + (size_t)(src - nst) * cd + c0;
			if (x != dst)
				memcpy(dst, x, (size_t)n * sizeof(float));
		}
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Phase 2: gates, delta rule, gated norm */

/* Where one value head finds its inputs in a batch. */
struct head_io {
	const float *q, *k, *v;   /* rows of xc, LD apart */
	size_t ld;
	const float *z;           /* rows of z and y, LDZ apart */
	float *y;
	size_t ldz;
	const float *alpha, *beta;
	size_t ldg;               /* H_v */
	float a, dt;              /* ssm_a, dt_bias of the head */
};

static inline void
head_gates(const struct head_io *io, int t, float *g, float *beta)
{
	*beta = sigmoid(io->beta[(size_t)t * io->ldg]);
	*g = io->a * softplus(io->alpha[(size_t)t * io->ldg] + io->dt);
}

static void
head_recurrent(const struct dn_state *st, const struct dn_weights *w, float *s, const struct head_io *io,
	       int nt, float *work)
{
	const struct dn_shape *sh = &st->sh;
	float *o = work, *tmp = work + sh->d_v;

	for (int t = 0; t < nt; t++) {
		float g, beta;
		head_gates(io, t, &g, &beta);
		st->k->step(s, sh->d_k, sh->d_v, io->q + t * io->ld, io->k + t * io->ld, io->v + t * io->ld,
			    expf(g), beta, o, tmp);
		st->k->gnorm(io->y + t * io->ldz, o, io->z + t * io->ldz, w->norm, sh->d_v, w->eps);
	}
}

/* Rows of the forward substitution solved together (a GEMM against the
 * rows already solved, then the small triangle row by row). */
#define SUBST_BLOCK 8

/*
 * One chunk of n <= DN_CHUNK tokens, from the state S0 before it.  With
 * G_t the cumulative sum of g over the chunk (t inclusive), unrolling the
 * recurrence gives, for every token t,
 *   d_t = beta_t (v_t - e^{G_t} S0^T k_t) - sum_{s<t} beta_t e^{G_t-G_s} (k_t.k_s) d_s
 *   o_t = e^{G_t} S0^T q_t + sum_{s<=t} e^{G_t-G_s} (q_t.k_s) d_s
 *   S   = e^{G_n-1} S0 + sum_s e^{G_n-1 - G_s} k_s d_s^T
 * d is the UT transform (I + L)^-1 of the right-hand side, L the strictly
 * lower beta_t e^{G_t-G_s} (k_t.k_s); Hugging Face and llama.cpp form that
 * inverse, here it is applied by blocked forward substitution, which costs
 * n^2 Dv / 2 instead of n^3 / 6 + n^2 (Dk + Dv).  G is summed in double:
 * a float sum over 64 tokens of strong decay loses the small differences
 * G_t - G_s.  Returns o (n, Dv), inside WORK.
 */
static float *
head_chunk(const struct dn_state *st, float *s, const struct head_io *io, int n, float *work)
{
	const struct dn_kernels *K = st->k;
	const struct dn_shape *sh = &st->sh;
	const int dk = sh->d_k, dv = sh->d_v, C = DN_CHUNK;
	float *pack = work;                              /* (2n, dk) k rows then q rows */
	float *kt = pack + (size_t)2 * C * dk;           /* (dk, C) */
	float *kq = kt + (size_t)dk * C;                 /* (2n, C) */
	float *ro = kq + (size_t)2 * C * C;              /* (2n, dv) */
	float *rhs = ro, *o = ro + (size_t)n * dv;
	float *kk = kq, *qk = kq + (size_t)n * C;
	double G[DN_CHUNK];
	float beta[DN_CHUNK], eg[DN_CHUNK], dec[DN_CHUNK];
	double acc = 0;

	for (int t = 0; t < n; t++) {
		float g;
		head_gates(io, t, &g, &beta[t]);
		acc += g;
		G[t] = acc;
		eg[t] = expf((float)acc);
		memcpy(pack + (size_t)t * dk, io->k + t * io->ld, (size_t)dk * sizeof(float));
		memcpy(pack + (size_t)(n + t) * dk, io->q + t * io->ld, (size_t)dk * sizeof(float));
		for (int i = 0; i < dk; i++)
			kt[(size_t)i * C + t] = io->k[t * io->ld + i];
	}
	/* [k.k ; q.k] = pack kt, only the lower triangles (u <= t): rows by
	 * blocks of 16, columns up to the block's last row */
	memset(kq, 0, (size_t)2 * n * C * sizeof(float));
	for (int h = 0; h < 2; h++)
		for (int t0 = 0; t0 < n; t0 += 16) {
			int nb = n - t0 < 16 ? n - t0 : 16;
			K->gemm(nb, t0 + nb, dk, pack + (size_t)(h * n + t0) * dk, dk, kt, C,
				kq + (size_t)(h * n + t0) * C, C, 0);
		}
	for (int t = 0; t < n; t++) {
		float *rk = kk + (size_t)t * C, *rq = qk + (size_t)t * C;
		for (int u = 0; u <= t; u++)
			dec[u] = (float)(G[t] - G[u]);
		K->expv(dec, t + 1);
		for (int u = 0; u <= t; u++) {
			rk[u] = u < t ? -beta[t] * dec[u] * rk[u] : 0.0f;
			rq[u] *= dec[u];
		}
		for (int u = t + 1; u < n; u++)
			rk[u] = rq[u] = 0.0f;
	}
	/* [k S0 ; q S0] = pack S0 */
	memset(ro, 0, (size_t)2 * n * dv * sizeof(float));
	K->gemm(2 * n, dv, dk, pack, dk, s, dv, ro, dv, 0);
	for (int t = 0; t < n; t++) {
		float *r = rhs + (size_t)t * dv, *ot = o + (size_t)t * dv;
		const float *v = io->v + t * io->ld;
		for (int j = 0; j < dv; j++) {
			r[j] = beta[t] * (v[j] - eg[t] * r[j]);
			ot[j] *= eg[t];
		}
	}
	/* d_t = rhs_t - sum_{s<t} L[t][s] d_s (kk holds -L): each block of rows
	 * takes the solved rows above it in one product, then its triangle */
	for (int t0 = 0; t0 < n; t0 += SUBST_BLOCK) {
		int nb = n - t0 < SUBST_BLOCK ? n - t0 : SUBST_BLOCK;
		if (t0)
			K->gemm(nb, dv, t0, kk + (size_t)t0 * C, C, rhs, dv, rhs + (size_t)t0 * dv, dv, 0);
		for (int r = 1; r < nb; r++)
			K->gemm(1, dv, r, kk + (size_t)(t0 + r) * C + t0, C, rhs + (size_t)t0 * dv, dv,
				rhs + (size_t)(t0 + r) * dv, dv, 0);
	}
	/* o += (q.k decayed, lower) d */
	K->gemm(n, dv, n, qk, C, rhs, dv, o, dv, 1);
	/* S = e^{G_last} S0 + (k_s e^{G_last - G_s})^T d */
	for (int t = 0; t < n; t++)
		dec[t] = (float)(G[n - 1] - G[t]);
	K->expv(dec, n);
	for (int i = 0; i < dk; i++)
		for (int t = 0; t < n; t++)
			kt[(size_t)i * C + t] *= dec[t];
	for (size_t i = 0; i < (size_t)dk * dv; i++)
		s[i] *= eg[n - 1];
	K->gemm(dk, dv, n, kt, C, rhs, dv, s, dv, 0);
	return o;
}

static void
head_chunked(const struct dn_state *st, const struct dn_weights *w, float *s, const struct head_io *io,
	     int nt, float *work)
{
	const struct dn_shape *sh = &st->sh;

	for (int t0 = 0; t0 < nt; t0 += DN_CHUNK) {
		int n = nt - t0 < DN_CHUNK ? nt - t0 : DN_CHUNK;
		struct head_io c = *io;
		float *o;
		c.q += t0 * io->ld;
		c.k += t0 * io->ld;
		c.v += t0 * io->ld;
		c.alpha += t0 * io->ldg;
		c.beta += t0 * io->ldg;
		o = head_chunk(st, s, &c, n, work);   /* (n, Dv), inside WORK */
		for (int t = 0; t < n; t++)
			st->k->gnorm(io->y + (t0 + t) * io->ldz, o + (size_t)t * sh->d_v,
				     io->z + (t0 + t) * io->ldz, w->norm, sh->d_v, w->eps);
	}
}

int
dn_heads_run(struct dn_state *st, const struct dn_weights *w, const struct dn_batch *b, enum dn_mode mode,
	     int h0, int h1, float *work)
{
	const struct dn_shape *sh;

	if (!batch_ok(st, b) || !w || !w->ssm_a || !w->dt_bias || !w->norm || !work)
		return -1;
	sh = &st->sh;
	if (h0 < 0 || h1 < h0 || h1 > sh->n_v_heads || (mode != DN_RECURRENT && mode != DN_CHUNKED))
		return -1;
	for (int h = h0; h < h1; h++) {
		int i = h % sh->n_k_heads;   /* tiled: not h / (H_v / H_k) */
		struct head_io io = {
			.q = b->xc + (size_t)i * sh->d_k,
			.k = b->xc + (size_t)(sh->n_k_heads + i) * sh->d_k,
			.v = b->xc + (size_t)2 * sh->n_k_heads * sh->d_k + (size_t)h * sh->d_v,
			.ld = (size_t)st->conv_dim,
			.z = b->z + (size_t)h * sh->d_v,
			.y = b->y + (size_t)h * sh->d_v,
			.ldz = (size_t)sh->n_v_heads * sh->d_v,
			.alpha = b->alpha + h,
			.beta = b->beta + h,
			.ldg = (size_t)sh->n_v_heads,
			.a = w->ssm_a[h],
			.dt = w->dt_bias[h],
		};
		float *s = st->s + (size_t)h * sh->d_k * sh->d_v;
		if (mode == DN_RECURRENT)
			head_recurrent(st, w, s, &io, b->nt, work);
		else
			head_chunked(st, w, s, &io, b->nt, work);
	}
	return 0;
}

int
dn_layer_run(struct dn_state *st, const struct dn_weights *w, const struct dn_batch *b, enum dn_mode mode,
	     float *work)
{
	if (!st || dn_conv_run(st, w, b, 0, dn_conv_units(&st->sh)) < 0)
		return -1;
	return dn_heads_run(st, w, b, mode, 0, st->sh.n_v_heads, work);
}
