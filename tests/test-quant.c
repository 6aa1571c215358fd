/* test-quant.c -- every tensor type on every CPU tier present: the SIMD kernels against the scalar references. */
/*
 * The scalar tier's dot products are checked against exact (double) sums
 * over the reference dequantization; every other tier the CPU has is
 * checked against the scalar tier: dequantization bit for bit, dot
 * products and GEMV within float rounding of the same inputs, activation
 * quantizers within one step, and the GEMM kernels (odd row counts, 1 to
 * 67 tokens, k-block tails) against a double product over the weights'
 * reference dequantization and the kernel's own activation rows.  A tier
 * the CPU lacks is reported as SKIP.  mm_matmul (threads, row chunks,
 * the GEMV/GEMM switch) is checked on the tier NATTER_CPU chooses
 * (tests/test-tiers.sh runs this program once per tier).
 */
#include "config.h"

#include <math.h>
#include <stdint.h>

#include "natter/quant.h"
#include "llm/cpu.h"
#include "llm/matmul.h"
#include "llm/pool.h"
#include "llm/quant-impl.h"
#include "test.h"

static uint64_t rng = 0x1234567887654321ull;

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

static float
rndf(void)   /* uniform in [-1, 1) */
{
	return (float)((rnd() & 0xFFFFFF) / 8388608.0 - 1.0);
}

enum mode { RANDOM, ZERO, EXTREME_BIG, EXTREME_SMALL, NEGATIVE, N_MODES };
static const char *mode_name[] = { "random", "all-zero", "huge scales", "tiny scales", "negative scales" };

static qhalf
pick_scale(enum mode m)
{
	switch (m) {
	case EXTREME_BIG: return q_f32_to_f16(65504.0f);          /* largest binary16 */
	case EXTREME_SMALL: return (qhalf)(1 + rnd() % 8);        /* subnormal binary16 */
	case NEGATIVE: return q_f32_to_f16(-0.01f - 0.05f * fabsf(rndf()));
	default: return q_f32_to_f16(0.001f + 0.05f * fabsf(rndf()));
	}
}

/* Fills a row of N elements of type T with random bits, then sets the scale fields. */
static void
fill_blocks(enum ggml_type t, void *buf, int n, enum mode m)
{
	const struct ggml_type_info *ti = ggml_type_info_get(t);
	size_t bytes = q_row_size(t, n);
	uint8_t *p = buf;

	if (m == ZERO) {
		memset(buf, 0, bytes);
		return;
	}
	for (size_t i = 0; i < bytes; i++)
		p[i] = (uint8_t)rnd();
	for (int b = 0; b < n / (int)ti->blck_size; b++) {
		void *blk = p + (size_t)b * ti->type_size;
		switch (t) {
		case GGML_TYPE_F32: {
			float v = rndf() * (m == EXTREME_BIG ? 1e30f : m == EXTREME_SMALL ? 1e-30f : 2.0f);
			memcpy(blk, &v, 4);
			break;
		}
		case GGML_TYPE_F16: {
			qhalf h = m == EXTREME_BIG ? q_f32_to_f16(rndf() * 65504.0f) :
			    m == EXTREME_SMALL ? (qhalf)(rnd() % 1024) : q_f32_to_f16(rndf() * 2);
			memcpy(blk, &h, 2);
			break;
		}
		case GGML_TYPE_BF16: {
			uint16_t h = q_f32_to_bf16(rndf() * (m == EXTREME_BIG ? 1e30f : m == EXTREME_SMALL ? 1e-30f : 2.0f));
			memcpy(blk, &h, 2);
			break;
		}
		case GGML_TYPE_Q4_0: ((block_q4_0 *)blk)->d = pick_scale(m); break;
		case GGML_TYPE_Q5_0: ((block_q5_0 *)blk)->d = pick_scale(m); break;
		case GGML_TYPE_Q8_0: ((block_q8_0 *)blk)->d = pick_scale(m); break;
		case GGML_TYPE_IQ4_NL: ((block_iq4_nl *)blk)->d = pick_scale(m); break;
		case GGML_TYPE_IQ4_XS: ((block_iq4_xs *)blk)->d = pick_scale(m); break;
		case GGML_TYPE_Q4_1: ((block_q4_1 *)blk)->d = pick_scale(m); ((block_q4_1 *)blk)->m = pick_scale(m); break;
		case GGML_TYPE_Q5_1: ((block_q5_1 *)blk)->d = pick_scale(m); ((block_q5_1 *)blk)->m = pick_scale(m); break;
		case GGML_TYPE_Q2_K: ((block_q2_K *)blk)->d = pick_scale(m); ((block_q2_K *)blk)->dmin = pick_scale(m); break;
		case GGML_TYPE_Q3_K: ((block_q3_K *)blk)->d = pick_scale(m); break;
		case GGML_TYPE_Q4_K: ((block_q4_K *)blk)->d = pick_scale(m); ((block_q4_K *)blk)->dmin = pick_scale(m); break;
		case GGML_TYPE_Q5_K: ((block_q5_K *)blk)->d = pick_scale(m); ((block_q5_K *)blk)->dmin = pick_scale(m); break;
		case GGML_TYPE_Q6_K: ((block_q6_K *)blk)->d = pick_scale(m); break;
		default: break;
		}
	}
}

static const enum ggml_type types[] = {
	GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0,
	GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
	GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS,
};
#define N_TYPES (int)(sizeof(types) / sizeof(types[0]))

static const char *
tname(enum ggml_type t)
{
	return ggml_type_info_get(t)->name;
}

/* Activations in the weight type's vec_dot_type (the reference quantizer),
 * and their values as floats. */
static size_t
make_act(enum ggml_type t, const float *raw, int n, uint8_t *y, float *yf)
{
	enum ggml_type vt = q_traits_get(t)->vec_dot_type;
	if (vt == GGML_TYPE_F32) {
		memcpy(y, raw, n * sizeof(float));
		memcpy(yf, raw, n * sizeof(float));
		return n * sizeof(float);
	}
	q_traits_get(vt)->from_float(raw, y, n);
	q_traits_get(vt)->to_float(y, yf, n);
	return q_row_size(vt, n);
}

/* --- the scalar tier: reference dot products against exact sums --- */

static void
test_reference(enum ggml_type t)
{
	enum { N = 1024 };
	static uint8_t x[N * 4 + 64], y[N * 4 + 64];
	static float xf[N], yf[N], yraw[N];
	const struct q_traits *qt = q_traits_get(t);
	int fails = 0, trials = 0;

	for (int mode = RANDOM; mode < N_MODES; mode++) {
		for (int trial = 0; trial < 20; trial++) {
			double exact = 0, mag = 0;
			float s;
			fill_blocks(t, x, N, (enum mode)mode);
			for (int i = 0; i < N; i++)
				yraw[i] = mode == ZERO && trial % 2 ? 0 : rndf() * (trial % 3 ? 1.0f : 100.0f);
			make_act(t, yraw, N, y, yf);
			qt->to_float(x, xf, N);
			for (int i = 0; i < N; i++) {
				exact += (double)xf[i] * yf[i];
				mag += fabs((double)xf[i] * yf[i]);
			}
			qt->vec_dot_ref(N, &s, x, y);
			/* float accumulation over N products: relative 1e-5 of the magnitudes. */
			if (!(fabs(s - exact) <= 1e-5 * mag + 1e-30) || !isfinite(s))
				fails++;
			if (mode == ZERO && (s != 0 || xf[0] != 0 || xf[N - 1] != 0))
				fails++;
			if (fails == 1 && trial == 0)
				fprintf(stderr, "  %s %s: exact %g ref %g\n", tname(t), mode_name[mode], exact, s);
			trials++;
		}
	}
	printf("%-6s scalar dot vs exact sums: %d/%d\n", tname(t), trials - fails, trials);
	CHECK(fails == 0, "%s: scalar dot disagrees with the exact sum in %d trials", tname(t), fails);
}

/* --- a SIMD tier against the scalar one --- */

/*
 * Dequantization bit for bit; dot products within relative 1e-5 of the
 * sum of |products| of the scalar ones (float accumulation in another
 * order); GEMV (nr rows by nt tokens) against a double product over the
 * reference dequantization and its own activations (vec_dot_type rows, or
 * q8p rows made by the tier's quantizer), bound as the dot products' or,
 * for q8p, as the GEMM's (see gemm_case).
 */
static void
test_dot_gemv(const struct q_kernels *k, const struct q_kernels *s, enum ggml_type t)
{
	enum { N = 1024, R = 7 };
	static uint8_t w[R][N * 4 + 64], y[4][N * 4 + 64], yp[4][Q8P_ROW_BYTES(N)];
	static float wf[N], wf2[N], yf[4][N], ypf[4][N], yraw[N];
	const int q8p = k->t[t].gemv_act == Q_ACT_Q8P;
	float out[4 * R];
	int fail_deq = 0, fail_dot = 0, fail_gemv = 0, trials = 0;

	for (int mode = RANDOM; mode < N_MODES; mode++) {
		for (int trial = 0; trial < 8; trial++) {
			for (int r = 0; r < R; r++)
				fill_blocks(t, w[r], N, (enum mode)mode);
			for (int tok = 0; tok < 4; tok++) {
				for (int i = 0; i < N; i++)
					yraw[i] = mode == ZERO && trial % 2 ? 0 : rndf() * (trial % 3 ? 1.0f : 100.0f);
				make_act(t, yraw, N, y[tok], yf[tok]);
				k->act_q8p(yraw, yp[tok], N);
				q_q8p_to_float(yp[tok], ypf[tok], N);
			}
			s->t[t].to_float(w[0], wf, N);
			k->t[t].to_float(w[0], wf2, N);
			if (memcmp(wf, wf2, sizeof(wf)) != 0)
				fail_deq++;
			/* GEMV over nr rows (w rows N*4+64 bytes apart) and nt tokens. */
			int nr = 1 + trial % R, nt = 1 + (trial + mode) % 4;
			if (q8p)
				k->t[t].gemv(N, out, R, w[0], sizeof(w[0]), nr, yp[0], sizeof(yp[0]), nt);
			else
				k->t[t].gemv(N, out, R, w[0], sizeof(w[0]), nr, y[0], sizeof(y[0]), nt);
			for (int r = 0; r < nr; r++) {
				s->t[t].to_float(w[r], wf, N);
				for (int tok = 0; tok < nt; tok++) {
					const float *a = q8p ? ypf[tok] : yf[tok];
					double mag = 0, exact = 0, gmag = 0, bmax = 0;
					float sr, sf;
					for (int i = 0; i < N; i++) {
						if (i % 32 == 0) {
							bmax = 0;
							for (int j = i; j < i + 32; j++)
								bmax = fmax(bmax, fabs(wf[j]));
						}
						mag += fabs((double)wf[i] * yf[tok][i]);
						exact += (double)wf[i] * a[i];
						gmag += q8p ? fabs(a[i]) * (fabs(wf[i]) + 2 * bmax) : fabs((double)wf[i] * a[i]);
					}
					s->t[t].vec_dot(N, &sr, w[r], y[tok]);
					k->t[t].vec_dot(N, &sf, w[r], y[tok]);
					double tol = 1e-5 * mag + 1e-30;
					if (!(fabs(sf - sr) <= tol) || !isfinite(sf))
						fail_dot++;
					double gtol = (q8p ? (N / 32 + 4) * 0x1p-23 : 1e-5) * gmag + 1e-30;
					if (!(fabs(out[tok * R + r] - exact) <= gtol)) {
						if (!fail_gemv)
							fprintf(stderr, "  %s %s %s GEMV row %d token %d: %.9g, exact %.9g\n", k->name,
							    tname(t), mode_name[mode], r, tok, out[tok * R + r], exact);
						fail_gemv++;
					}
					if (mode == ZERO && (sf != 0 || out[tok * R + r] != 0))
						fail_dot++;
				}
			}
			trials++;
		}
	}
	CHECK(fail_deq == 0, "%s %s: dequantization differs from the reference in %d of %d trials", k->name,
	    tname(t), fail_deq, trials);
	CHECK(fail_dot == 0, "%s %s: dot products differ from the scalar ones (%d)", k->name, tname(t), fail_dot);
	CHECK(fail_gemv == 0, "%s %s: GEMV%s outside the bound (%d)", k->name, tname(t), q8p ? " (q8p)" : "",
	    fail_gemv);
}

/*
 * The float weights' GEMV (F32, F16, BF16) on rows of odd lengths: every
 * path of the tier's loop (four vectors a step, one, the elements past
 * the last vector), 1 to 5 rows, 1 to 4 tokens, against the exact sums
 * of the scalar tier's floats; relative to the sum of |w x|, 1e-5.
 */
static void
test_float_gemv(const struct q_kernels *k, const struct q_kernels *s)
{
	static const int lens[] = { 1, 5, 8, 15, 16, 17, 31, 32, 33, 47, 64, 65, 95, 129, 200, 1003 };
	static const enum ggml_type ft[] = { GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16 };
	enum { NMAX = 1003, RMAX = 5, STRIDE = NMAX * 4 + 64 };
	static uint8_t w[RMAX][STRIDE], x[4][STRIDE];
	static float wf[RMAX][NMAX], xf[4][NMAX];
	float out[4 * RMAX];

	for (size_t ti = 0; ti < sizeof(ft) / sizeof(ft[0]); ti++) {
		const enum ggml_type t = ft[ti];
		int fails = 0, cases = 0;
		for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
			const int n = lens[li], nr = 1 + (int)li % RMAX, nt = 1 + (int)li % 4;
			for (int r = 0; r < nr; r++) {
				float raw[NMAX];
				for (int i = 0; i < n; i++)
					raw[i] = rndf();
				if (t == GGML_TYPE_F32)
					memcpy(w[r], raw, (size_t)n * sizeof(float));
				else if (t == GGML_TYPE_F16)
					for (int i = 0; i < n; i++)
						((qhalf *)w[r])[i] = q_f32_to_f16(raw[i]);
				else
					for (int i = 0; i < n; i++)
						((uint16_t *)w[r])[i] = q_f32_to_bf16(raw[i]);
				s->t[t].to_float(w[r], wf[r], n);
			}
			for (int tok = 0; tok < nt; tok++)
				for (int i = 0; i < n; i++)
					xf[tok][i] = ((float *)x[tok])[i] = rndf() * 4;
			for (int i = 0; i < 4 * RMAX; i++)
				out[i] = NAN;
			k->t[t].gemv(n, out, RMAX, w[0], STRIDE, nr, x[0], STRIDE, nt);
			for (int r = 0; r < nr; r++)
				for (int tok = 0; tok < nt; tok++) {
					double exact = 0, mag = 0;
					for (int i = 0; i < n; i++) {
						exact += (double)wf[r][i] * xf[tok][i];
						mag += fabs((double)wf[r][i] * xf[tok][i]);
					}
					cases++;
					if (!(fabs(out[tok * RMAX + r] - exact) <= 1e-5 * mag + 1e-30)) {
						if (!fails)
							fprintf(stderr, "  %s %s GEMV n %d row %d token %d: %.9g, exact %.9g\n", k->name,
							    tname(t), n, r, tok, out[tok * RMAX + r], exact);
						fails++;
					}
				}
		}
		CHECK(fails == 0, "%s %s: GEMV of odd lengths (1 to 1003) outside 1e-5 in %d of %d sums", k->name,
		    tname(t), fails, cases);
	}
}

/*
 * The tier's one-pass q8p rows (act_q8p_h, act_q8p_k) are byte for byte
 * what its Q8_0, Q8_1 and Q8_K quantizers then q_q8p_from_vdt make (the
 * rounding the dot products see), on X (N floats, N a multiple of 256),
 * with a block of zeros, a block whose largest magnitude ties between X
 * and -X, and shorter rows.
 */
static void
test_act_via(const struct q_kernels *k, const float *x0, int n)
{
	const enum ggml_type vts[] = { GGML_TYPE_Q8_0, GGML_TYPE_Q8_1, GGML_TYPE_Q8_K };
	float *x = malloc((size_t)n * sizeof(float));
	uint8_t *v = malloc(q_row_size(GGML_TYPE_Q8_1, n) + q_row_size(GGML_TYPE_Q8_K, n));
	uint8_t *a = malloc(Q8P_ROW_BYTES(n)), *b = malloc(Q8P_ROW_BYTES(n));
	int bad = 0, rows = 0;

	if (!k->act_q8p_h || !k->act_q8p_k) {
		CHECK(!k->act_q8p_h && !k->act_q8p_k && strcmp(k->name, "scalar") == 0,
		    "%s: only the scalar tier goes through the vec_dot_type rows", k->name);
		goto out;
	}
	memcpy(x, x0, (size_t)n * sizeof(float));
	memset(x + 64, 0, 32 * sizeof(float));
	x[256 + 5] = -50, x[256 + 77] = 50;
	for (int len = n; len >= 256; len -= 768)
		for (int i = 0; i < 3; i++) {
			const q_act_fn one = vts[i] == GGML_TYPE_Q8_K ? k->act_q8p_k : k->act_q8p_h;
			memset(a, 0xa5, Q8P_ROW_BYTES(len));
			memset(b, 0x5a, Q8P_ROW_BYTES(len));
			q_kern_act_vdt(k, vts[i])(x, v, len);
			q_q8p_from_vdt(v, vts[i], a, len);
			one(x, b, len);
			bad += memcmp(a, b, (size_t)len * 15 / 8) != 0;
			rows++;
		}
	printf("%-10s q8p in one pass: %d/%d rows as through Q8_0, Q8_1, Q8_K\n", k->name, rows - bad, rows);
	CHECK(bad == 0, "%s: one-pass q8p rows differ from the vec_dot_type's in %d of %d", k->name, bad, rows);
out:
	free(x);
	free(v);
	free(a);
	free(b);
}

/* The activation quantizers give the same values up to one step (rounding ties). */
static void
test_act(const struct q_kernels *k, const struct q_kernels *s)
{
	enum { N = 2048 };
	static float x[N], a[N], b[N];
	static uint8_t qa[N * 2], qb[N * 2];
	const enum ggml_type vts[] = { GGML_TYPE_Q8_0, GGML_TYPE_Q8_1, GGML_TYPE_Q8_K };

	for (int i = 0; i < N; i++)
		x[i] = rndf() * (i % 61 == 0 ? 30 : 1);
	for (int v = 0; v < 4; v++) {
		double maxd = 0, step = 0;
		if (v < 3) {
			q_kern_act_vdt(s, vts[v])(x, qa, N);
			q_kern_act_vdt(k, vts[v])(x, qb, N);
			q_traits_get(vts[v])->to_float(qa, a, N);
			q_traits_get(vts[v])->to_float(qb, b, N);
		} else {
			s->act_q8p(x, qa, N);
			k->act_q8p(x, qb, N);
			q_q8p_to_float(qa, a, N);
			q_q8p_to_float(qb, b, N);
		}
		for (int i = 0; i < N; i++) {
			if (fabs(a[i] - b[i]) > maxd)
				maxd = fabs(a[i] - b[i]);
			if (fabs(x[i]) > step)
				step = fabs(x[i]);
		}
		step /= 127;   /* one step at the largest scale */
		CHECK(maxd <= step * 1.001, "%s: the %s activation quantizer differs by %g (> one step %g)", k->name,
		    v < 3 ? tname(vts[v]) : "q8p", maxd, step);
		if (v == 2) {
			/* Q8_K is the int8 products' via (and llama.cpp's): the same
			 * bytes as the reference, also where X and -X tie for the
			 * largest magnitude (the first sets the scale's sign). */
			static float xt[N];
			memcpy(xt, x, sizeof(xt));
			xt[3] = -40, xt[200] = 40;                /* block 0: -40 first */
			xt[256 + 7] = 40, xt[256 + 100] = -40;    /* block 1: 40 first */
			q_kern_act_vdt(s, GGML_TYPE_Q8_K)(xt, qa, N);
			q_kern_act_vdt(k, GGML_TYPE_Q8_K)(xt, qb, N);
			CHECK(memcmp(qa, qb, q_row_size(GGML_TYPE_Q8_K, N)) == 0,
			    "%s: Q8_K activations differ from the reference's bytes", k->name);
		}
		if (v == 3) {
			/* The block sums are the sums of the levels, scaled. */
			const int8_t *q = (const int8_t *)qb;
			int bad = 0;
			for (int blk = 0; blk < N / 32; blk++) {
				int sum[2] = { 0, 0 };
				for (int j = 0; j < 32; j++)
					sum[j / 16] += q[32 * blk + j];
				float d = Q8P_D(qb, N)[blk];
				bad += Q8P_S32(qb, N)[blk] != d * (sum[0] + sum[1]) ||
				    Q8P_S16(qb, N)[2 * blk] != d * sum[0] || Q8P_S16(qb, N)[2 * blk + 1] != d * sum[1] ||
				    Q8P_N32(qb, N)[blk] != -(sum[0] + sum[1]) || Q8P_N16(qb, N)[2 * blk] != -sum[0] ||
				    Q8P_N16(qb, N)[2 * blk + 1] != -sum[1];
			}
			CHECK(bad == 0, "%s: q8p block sums wrong in %d blocks", k->name, bad);
		}
	}
	test_act_via(k, x, N);
}

/*
 * The GEMM kernel of tier K for type T: D rows of N inputs by NT tokens.
 * Reference: a double product of the reference dequantization with the
 * kernel's own activation rows, dequantized.  Bound: (blocks + 4) * 2^-23
 * of sum |x| (|w| + 2 * max |w| of the 32-block) for the int8 kernels
 * (unsigned levels times activations, scaled per block, plus the bias of
 * the block: each term at most that big), N * 2^-23 of sum |w x| for the
 * float ones (N sequential fused multiply-adds).
 */
static int
gemm_case(const struct q_kernels *k, enum ggml_type t, int d, int n, int nt, enum mode m, int packed, double *worst)
{
	const struct q_type_kern *tk = &k->t[t];
	/* The packed GEMV of float weights takes the floats (as matmul.c
	 * gives them), whatever its GEMM takes. */
	const int gemv = packed && nt <= Q_GEMV_MAX_T;
	const enum q_act act = gemv && q_traits_get(t)->vec_dot_type == GGML_TYPE_F32 ? Q_ACT_F32 : tk->gemm_act;
	size_t rb = q_row_size(t, n), xs = q_act_row_bytes(act, t, n);
	/* Packed rows at each 16-byte offset from a cache line in turn: a
	 * column's header goes before or after its units by its address
	 * (q_pack_header_after). */
	static int turn;
	const size_t shift = packed ? 16 * (size_t)(turn++ % 4) : 0;
	uint8_t *wbase = aligned_alloc(64, (rb * d + 64 + 63) & ~(size_t)63), *w = wbase + shift;
	uint8_t *xa = aligned_alloc(64, (xs * nt + 63) & ~(size_t)63);
	float *x = malloc((size_t)n * nt * sizeof(float)), *xr = malloc((size_t)n * sizeof(float));
	float *wf = malloc((size_t)n * d * sizeof(float)), *out = malloc((size_t)nt * d * sizeof(float));
	void *scratch = aligned_alloc(64, (k->gemm_scratch(n) + 63) & ~(size_t)63);
	int bad = 0;

	for (int r = 0; r < d; r++) {
		fill_blocks(t, w + rb * r, n, m);
		q_traits_get(t)->to_float(w + rb * r, wf + (size_t)r * n, n);
	}
	for (int i = 0; i < n * nt; i++)
		x[i] = rndf() * (i % 97 == 0 ? 50 : 1);
	for (int tok = 0; tok < nt; tok++) {
		float *xt = x + (size_t)tok * n;
		uint8_t *row = xa + (size_t)tok * xs;
		if (act == Q_ACT_F32)
			memcpy(row, xt, n * sizeof(float));
		else if (act == Q_ACT_BF16)
			k->act_bf16(xt, row, n);
		else
			k->act_q8p(xt, row, n);
	}
	struct q_gemm_args a = { t, w, rb, n, xa, xs, nt, out, (size_t)d, packed };
	/* Rows in two calls, as the pool splits them (chunks of gemm_rows,
	 * which the GEMV of packed rows also gets, whole groups). */
	int split = d > k->gemm_rows ? k->gemm_rows : d;
	if (packed) {
		uint8_t *tmp = malloc(rb * k->pack_rows);
		q_pack_matrix(t, w, d, rb, k->pack_rows, tmp);
		free(tmp);
	}
	if (gemv) {
		tk->gemv_packed(n, out, (size_t)d, w, rb, split, xa, xs, nt);
		if (split < d)
			tk->gemv_packed(n, out + split, (size_t)d, w + rb * split, rb, d - split, xa, xs, nt);
	} else {
		tk->gemm(&a, 0, split, scratch);
		if (split < d)
			tk->gemm(&a, split, d, scratch);
	}
	for (int tok = 0; tok < nt; tok++) {
		const uint8_t *row = xa + (size_t)tok * xs;
		if (act == Q_ACT_F32)
			memcpy(xr, row, n * sizeof(float));
		else if (act == Q_ACT_BF16)
			for (int i = 0; i < n; i++)
				xr[i] = q_bf16_to_f32(((const uint16_t *)row)[i]);
		else
			q_q8p_to_float(row, xr, n);
		for (int r = 0; r < d; r++) {
			const float *wr = wf + (size_t)r * n;
			double exact = 0, mag = 0;
			for (int b = 0; b < n; b += 32) {
				double bmax = 0;
				for (int i = b; i < b + 32 && i < n; i++)
					bmax = fmax(bmax, fabs(wr[i]));
				for (int i = b; i < b + 32 && i < n; i++) {
					exact += (double)wr[i] * xr[i];
					mag += act == Q_ACT_Q8P ? fabs(xr[i]) * (fabs(wr[i]) + 2 * bmax) :
					    fabs((double)wr[i] * xr[i]);
				}
			}
			double tol = (act == Q_ACT_Q8P ? n / 32 + 4 : n) * 0x1p-23 * mag + 1e-30;
			double err = fabs(out[(size_t)tok * d + r] - exact);
			if (!(err <= tol)) {
				if (!bad)
					fprintf(stderr, "  %s %s %s d %d n %d nt %d: row %d token %d: %.9g, exact %.9g\n",
					    k->name, tname(t), mode_name[m], d, n, nt, r, tok, out[(size_t)tok * d + r], exact);
				bad++;
			}
			if (mag > 0 && err / mag > *worst)
				*worst = err / mag;
		}
	}
	free(wbase);
	free(xa);
	free(x);
	free(xr);
	free(wf);
	free(out);
	free(scratch);
	return bad;
}

static void
test_gemm(const struct q_kernels *k, enum ggml_type t)
{
	/* Rows around the panel sizes, tokens around the tile sizes and past a
	 * chunk of the float GEMM's (197: two), inputs with k-block tails
	 * (1280 = 1024 + 256; 288 = 9 blocks of 32). */
	static const int shapes[][3] = {
		{ 1, 256, 1 }, { 5, 512, 2 }, { 17, 1280, 9 }, { 33, 256, 67 }, { 67, 512, 13 }, { 3, 1280, 31 },
		{ 16, 288, 8 }, { 40, 256, 5 }, { 17, 288, 197 },
	};
	double worst = 0;
	int bad = 0, cases = 0;

	if (!k->t[t].gemm)
		return;
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		int n = shapes[i][1];
		if (n % ggml_type_info_get(t)->blck_size)
			continue;
		for (int m = RANDOM; m < N_MODES; m++) {
			if (m == EXTREME_BIG && (t == GGML_TYPE_F32 || t == GGML_TYPE_BF16))
				continue;   /* 1e30 squared: float overflow, not the kernel's fault */
			bad += gemm_case(k, t, shapes[i][0], n, shapes[i][2], (enum mode)m, 0, &worst) > 0;
			cases++;
		}
	}
	printf("%-10s %-6s GEMM: %d/%d cases within bound, worst error %.2g of the magnitude\n", k->name, tname(t),
	    cases - bad, cases, worst);
	CHECK(bad == 0, "%s %s: GEMM outside the bound in %d of %d cases", k->name, tname(t), bad, cases);
}

/* Packed rows (pack.c): each row read back is the row packed; a whole
 * group's first block column starts with its rows' scales side by side;
 * the rows past the last whole group are untouched. */
static void
test_pack_layout(void)
{
	static const int rows[] = { 1, 7, 8, 16, 17, 33, 40 };
	static const enum ggml_type packable[] = { GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
		GGML_TYPE_Q8_0, GGML_TYPE_IQ4_NL, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
		GGML_TYPE_Q6_K, GGML_TYPE_IQ4_XS, GGML_TYPE_F16, GGML_TYPE_BF16 };
	int bad = 0, cases = 0, straddle = 0, hfirst = 0, hafter = 0;

	for (size_t ti = 0; ti < sizeof(packable) / sizeof(packable[0]); ti++)
	for (int g = 8; g <= 16; g += 8)
		for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
			const enum ggml_type t = packable[ti];
			const int n = ggml_type_info_get(t)->blck_size == 256 ? 512 : 288;
			const size_t rb = q_row_size(t, n), bs = ggml_type_info_get(t)->type_size;
			const int d = rows[i];
			/* At each 16-byte offset from a cache line in turn. */
			const size_t shift = 16 * ((ti + i + (size_t)g) % 4);
			uint8_t *wbase = aligned_alloc(64, (rb * d + 64 + 63) & ~(size_t)63), *w = wbase + shift;
			uint8_t *orig = malloc(rb * d), *row = malloc(rb);
			for (int r = 0; r < d; r++)
				fill_blocks(t, w + rb * r, n, RANDOM);
			memcpy(orig, w, rb * d);
			uint8_t *tmp = malloc(rb * g);
			q_pack_matrix(t, w, d, rb, g, tmp);
			free(tmp);
			for (int r = 0; r < d; r++) {
				q_unpack_row(t, w, d, rb, g, r, row);
				bad += memcmp(row, orig + rb * r, rb) != 0;
				/* Block 0's first scale (where the file's block has
				 * it: Q2_K's at its end), first among the group's;
				 * half floats (no header): the row's first pair. */
				const uint8_t *grp = w + (size_t)(r / g * g) * rb;
				if (r < d / g * g && q_pack_header_offset(t) < 0)
					bad += memcmp(grp + 4 * (r % g), orig + rb * r, 4) != 0;
				else if (r < d / g * g)
					bad += memcmp(grp + q_pack_header_pos(t, grp, g) + 2 * (r % g),
					    orig + rb * r + q_pack_header_offset(t), 2) != 0;
				else
					bad += memcmp(w + rb * r, orig + rb * r, rb) != 0;
			}
			cases += d;
			if (d >= g)   /* the layout did change */
				bad += memcmp(w, orig, rb * d) == 0;
			/* Each column's units (vectors of 4 g bytes) within cache
			 * lines wherever the group starts on a multiple of its
			 * header (a whole vector for headers of 4 bytes a row, half
			 * a vector for those of 2). */
			const int hlen = q_pack_header_bytes(t);
			for (int64_t b = 0; hlen && d >= g && b < (int64_t)(rb / bs); b++) {
				const uint8_t *col = w + (size_t)b * g * bs;
				const size_t hp = q_pack_header_pos(t, col, g);
				const uintptr_t u = (uintptr_t)(col + (hp ? 0 : (size_t)hlen * g));
				if ((uintptr_t)w % ((uintptr_t)hlen * g) == 0)
					straddle += u % (4 * (uintptr_t)g) != 0;
				hfirst += hp == 0;
				hafter += hp != 0;
			}
			free(wbase);
			free(orig);
			free(row);
		}
	printf("packed rows (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS, F16, BF16), groups "
	    "of 8 and 16: %d/%d rows read back as packed; columns with the header first %d, after the units %d\n",
	    cases - bad, cases, hfirst, hafter);
	CHECK(bad == 0, "packed rows: %d wrong", bad);
	CHECK(straddle == 0, "packed rows: %d columns with units across cache lines", straddle);
	CHECK(hfirst > 0 && hafter > 0, "packed rows: headers first in %d columns, after in %d", hfirst, hafter);
	for (size_t ti = 0; ti < sizeof(packable) / sizeof(packable[0]); ti++)
		CHECK(q_pack_supported(packable[ti], q_row_size(packable[ti], 256)), "%s has a packed layout",
		    tname(packable[ti]));
	CHECK(!q_pack_supported(GGML_TYPE_F32, 1024) && !q_pack_supported(GGML_TYPE_Q8_1, q_row_size(GGML_TYPE_Q8_1, 256)) &&
	    q_pack_header_offset(GGML_TYPE_F16) == -1, "types without a packed layout");
	/* Half floats pack in pairs of inputs: an odd row stays as it is. */
	{
		uint16_t h[3 * 17], o[3 * 17], tmp[3 * 16];
		for (int i = 0; i < 3 * 17; i++)
			h[i] = o[i] = (uint16_t)(0x3c00 + i);
		CHECK(!q_pack_supported(GGML_TYPE_F16, 6), "F16 rows of 3 have no packed layout");
		q_pack_matrix(GGML_TYPE_F16, h, 17, 6, 16, tmp);
		CHECK(memcmp(h, o, sizeof(h)) == 0, "F16 rows of 3 left as they were");
	}
}

/* A tier's kernels of packed rows: the GEMV (1 to 4 tokens) and the GEMM
 * panels straight from the groups, against the exact products of the
 * unpacked weights, as test_gemm bounds them; rows not a multiple of the
 * group (the tail as in the file), one to 67 tokens. */
static void
test_packed(const struct q_kernels *k, enum ggml_type t)
{
	static const int shapes[][3] = {
		{ 16, 256, 1 }, { 17, 288, 2 }, { 33, 1280, 3 }, { 40, 512, 4 }, { 67, 288, 1 }, { 130, 256, 4 },
		{ 7, 256, 2 }, { 17, 1280, 9 }, { 33, 256, 67 }, { 67, 512, 13 }, { 48, 288, 5 }, { 40, 256, 31 },
		{ 33, 4352, 9 },   /* half floats: two blocks of columns (HP_KC) */
	};
	double worst = 0;
	int bad = 0, cases = 0;

	if (!k->t[t].gemv_packed)
		return;
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		for (int m = RANDOM; m < N_MODES && shapes[i][1] % ggml_type_info_get(t)->blck_size == 0; m++) {
			bad += gemm_case(k, t, shapes[i][0], shapes[i][1], shapes[i][2], (enum mode)m, 1, &worst) > 0;
			cases++;
		}
	printf("%-10s %-6s packed rows (groups of %d), GEMV and GEMM: %d/%d cases within bound, worst error %.2g of "
	    "the magnitude\n", k->name, tname(t), k->pack_rows, cases - bad, cases, worst);
	CHECK(bad == 0, "%s %s: packed rows outside the bound in %d of %d cases", k->name, tname(t), bad, cases);
}

/* --- mm_matmul on the chosen tier: threads, row chunks, GEMV and GEMM --- */

static void
test_matmul(void)
{
	static const int shapes[][3] = { { 67, 512, 1 }, { 33, 256, 3 }, { 130, 1280, 4 }, { 67, 512, 17 }, { 200, 256, 67 },
	    { 9, 288, 1 }, { 9, 288, 2 }, { 5, 1312, 1 }, { 3, 96, 5 },
	    { 9, 256, 800 },     /* two GEMM token chunks (matmul.c MM_GEMM_TOKENS), the second short */
	    { 531, 256, 40 },    /* the float GEMM's tasks of two panels, the last one and a bit (mm_gemm_f_rows) */
	    { 37, 262, 35 } };   /* float types alone: pairs not a multiple of 4 (hp_unpack's tail) */
	struct pool *p = pool_new(2);
	int bad_total = 0, cases = 0, forced_blas = 0, pk_cases = 0, pk_blas = 0;

	CHECK(p != NULL, "pool_new");
	if (!p)
		return;
	/* Twice: the default rounding, then exact activations
	 * (mm_scratch_exact), whose bound is 254 times tighter; every other
	 * exact case with room for the products of 25 rows only, so that they
	 * go in slices of rows and chunks of tokens. */
	/* And again with the weights packed as at load, for the types the
	 * tier packs (pk): tasks and slices of rows in whole groups. */
	for (int pk = 0; pk < 2; pk++)
	for (int ex = 0; ex < 2; ex++)
	for (int ti = 0; ti < N_TYPES; ti++) {
		enum ggml_type t = types[ti];
		if (pk && !q_kern()->t[t].gemv_packed)
			continue;
		for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
			int d = shapes[i][0], n = shapes[i][1], nt = shapes[i][2], bad = 0;
			if (n % ggml_type_info_get(t)->blck_size)
				continue;
			size_t rb = q_row_size(t, n);
			uint8_t *w = malloc(rb * d);
			float *wf = malloc((size_t)n * d * sizeof(float)), *x = malloc((size_t)n * nt * sizeof(float));
			float *out = malloc((size_t)nt * d * sizeof(float));
			struct mm_scratch s;
			struct ltensor lt = { w, t, n, d, 1, rb, rb * d, pk ? q_kern()->pack_rows : 0 };
			for (int r = 0; r < d; r++) {
				fill_blocks(t, w + rb * r, n, RANDOM);
				q_traits_get(t)->to_float(w + rb * r, wf + (size_t)r * n, n);
			}
			if (pk) {
				uint8_t *tmp = malloc(rb * lt.packed);
				q_pack_matrix(t, w, d, rb, lt.packed, tmp);
				free(tmp);
			}
			pk_cases += pk;
			for (int j = 0; j < n * nt; j++)
				x[j] = rndf() * (j % 97 == 0 ? 50 : 1);
			if (mm_scratch_init(&s, nt, n, pool_size(p)) < 0 || (ex && mm_scratch_exact(&s, pool_size(p)) < 0)) {
				CHECK(0, "mm_scratch_init");
				break;
			}
			if (ex && i % 2)
				s.eo_floats = 50;
			/* Float weights' batches: as measured (auto), then each way
			 * forced, each within the bound and through the way forced
			 * (on tiers with tiles; the scalar tier has only OpenBLAS). */
			const int ways = !ex && nt >= MM_BLAS_MIN_BATCH &&
			    (t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16) ? 3 : 1;
			for (int way = 0; way < ways; way++) {
			const unsigned long blas0 = mm_blas_products();
			q_float_gemm_set(way == 0 ? Q_FLOAT_GEMM_AUTO : way == 1 ? Q_FLOAT_GEMM_TILES : Q_FLOAT_GEMM_OPENBLAS);
			mm_matmul(p, &s, out, d, x, n, &lt, nt);
			if (way && strcmp(q_cpu_features(), "scalar")) {
				/* BF16 on avx512bf16 has one way (its own GEMM):
				 * the choice says so.  Packed half floats come out
				 * of their groups for OpenBLAS (mm_float_rows). */
				const int via_blas = mm_blas_products() != blas0;
				const int want = (!pk || mm_float_unpacks(&lt)) &&
				    q_float_gemm_choice(t, nt, NULL) == Q_FLOAT_GEMM_OPENBLAS;
				CHECK(via_blas == want, "%s: mm_matmul %s nt %d forced to %s went %s",
				    q_cpu_features(), tname(t), nt, way == 2 ? "openblas" : "tiles",
				    via_blas ? "through OpenBLAS" : "through the tiles");
				if (way == 2 && via_blas) {
					forced_blas++;
					pk_blas += pk;
				}
			}
			/* Bound: the activations' int8 rounding (half a step of the largest
			 * scale of a 256-block, the coarsest format used: Q8_K), or bf16's,
			 * plus float rounding as in the GEMM test.  Exact: the leftover's
			 * own step is at most 1/254 of the first. */
			for (int tok = 0; tok < nt; tok++) {
				const float *xt = x + (size_t)tok * n;
				for (int r = 0; r < d; r++) {
					const float *wr = wf + (size_t)r * n;
					double exact = 0, mag = 0, qerr = 0;
					for (int b = 0; b < n; b += 256) {
						double amax = 0, bmax = 0;
						for (int j = b; j < b + 256 && j < n; j++) {
							amax = fmax(amax, fabs(xt[j]));
							bmax = fmax(bmax, fabs(wr[j]));
						}
						for (int j = b; j < b + 256 && j < n; j++) {
							exact += (double)wr[j] * xt[j];
							mag += fabs(xt[j]) * (fabs(wr[j]) + 2 * bmax);
							qerr += fabs(wr[j]) * (t == GGML_TYPE_BF16 ? fabs(xt[j]) / (ex ? 65536 : 256) :
							    t == GGML_TYPE_F32 || t == GGML_TYPE_F16 ? 0 : amax / 127 / 2 / (ex ? 254 : 1));
						}
					}
					double tol = qerr * 1.01 + n * 0x1p-23 * mag + 1e-30;
					if (!(fabs(out[(size_t)tok * d + r] - exact) <= tol))
						bad++;
				}
			}
			CHECK(bad == 0, "%s: mm_matmul%s%s%s %s d %d n %d nt %d: %d outputs outside the bound", q_cpu_features(),
			    pk ? " (packed)" : "", ex ? " (exact)" : "", way == 1 ? " (tiles)" : way == 2 ? " (openblas)" : "", tname(t), d, n, nt, bad);
			bad_total += bad > 0;
			cases++;
			bad = 0;
			}
			q_float_gemm_set(Q_FLOAT_GEMM_AUTO);
			mm_scratch_free(&s);
			free(w);
			free(wf);
			free(x);
			free(out);
		}
	}
	printf("mm_matmul on %s, 2 threads, default and exact activations: %d/%d cases within bound (%d float "
	    "batches forced through OpenBLAS, %d of them packed; %d cases of packed rows)\n", q_cpu_features(),
	    cases - bad_total, cases, forced_blas, pk_blas, pk_cases);
	if (q_kern()->t[GGML_TYPE_F16].gemv_packed)
		CHECK(pk_blas > 0, "%s packs F16 rows, but none went through OpenBLAS when forced", q_cpu_features());
	if (q_kern()->pack_rows)
		CHECK(pk_cases > 0, "%s packs rows, but no product of packed rows was tested", q_cpu_features());
	if (strcmp(q_cpu_features(), "scalar"))
		CHECK(forced_blas > 0, "%s: no float batch went through OpenBLAS when forced", q_cpu_features());
	pool_free(p);
}

/* --- mm_matmul_many: several matrices by the same activations --- */

/* Each part's products as mm_matmul makes them alone, bit for bit, with
 * nothing written past a part's outputs; one job for the pool when all
 * are GEMVs (one token).  Parts mix packed and file-layout
 * rows, activation formats (q8p, the type's own, floats) and sizes below
 * one task. */
static void
test_matmul_many(void)
{
	static const struct {
		enum ggml_type t;
		int d, pk;
	} mix[][MM_MAX_PARTS] = {
		{ { GGML_TYPE_Q4_K, 67, 1 }, { GGML_TYPE_Q4_K, 40, 1 }, { GGML_TYPE_Q6_K, 33, 0 }, { GGML_TYPE_F16, 9, 0 } },
		{ { GGML_TYPE_Q8_0, 1000, 1 }, { GGML_TYPE_Q4_0, 24, 1 }, { GGML_TYPE_Q8_0, 5, 0 }, { GGML_TYPE_Q5_K, 300, 0 } },
		{ { GGML_TYPE_F32, 130, 0 }, { GGML_TYPE_IQ4_XS, 77, 1 }, { GGML_TYPE_BF16, 17, 0 }, { GGML_TYPE_Q2_K, 64, 0 } },
	};
	static const int nts[] = { 1, 3, 5, 17 };
	const int n = 512, guard = 16, pack = q_kern()->pack_rows;
	struct pool *p = pool_new(2);
	int cases = 0, bad_cases = 0, fused = 0;

	CHECK(p != NULL, "pool_new");
	if (!p)
		return;
	for (size_t mi = 0; mi < sizeof(mix) / sizeof(mix[0]); mi++)
	for (size_t ni = 0; ni < sizeof(nts) / sizeof(nts[0]); ni++) {
		const int nt = nts[ni];
		struct ltensor lt[MM_MAX_PARTS];
		struct mm_part parts[MM_MAX_PARTS];
		float *one[MM_MAX_PARTS], *many[MM_MAX_PARTS], *x = malloc((size_t)n * nt * sizeof(float));
		struct mm_scratch s;
		int bad = 0;

		for (int j = 0; j < n * nt; j++)
			x[j] = rndf() * (j % 97 == 0 ? 50 : 1);
		for (int i = 0; i < MM_MAX_PARTS; i++) {
			const enum ggml_type t = mix[mi][i].t;
			const int d = mix[mi][i].d;
			const size_t rb = q_row_size(t, n);
			uint8_t *w = malloc(rb * d);
			for (int r = 0; r < d; r++)
				fill_blocks(t, w + rb * r, n, RANDOM);
			lt[i] = (struct ltensor){ w, t, n, d, 1, rb, rb * d, 0 };
			if (mix[mi][i].pk && pack && q_kern()->t[t].gemv_packed) {
				uint8_t *tmp = malloc(rb * pack);
				lt[i].packed = pack;
				q_pack_matrix(t, w, d, rb, pack, tmp);
				free(tmp);
			}
			one[i] = malloc(((size_t)nt * d + guard) * sizeof(float));
			many[i] = malloc(((size_t)nt * d + guard) * sizeof(float));
			for (size_t k = 0; k < (size_t)nt * d + guard; k++)
				many[i][k] = -7.0f;
			parts[i] = (struct mm_part){ many[i], &lt[i] };
		}
		/* Room for 17 tokens, as a session has for its batches: the
		 * formats of a few tokens fit side by side. */
		if (mm_scratch_init(&s, 17, n, pool_size(p)) < 0) {
			CHECK(0, "mm_scratch_init");
			break;
		}
		for (int i = 0; i < MM_MAX_PARTS; i++)
			mm_matmul(p, &s, one[i], lt[i].ne1, x, n, &lt[i], nt);
		const unsigned long jobs0 = pool_jobs(p);
		mm_matmul_many(p, &s, parts, MM_MAX_PARTS, x, n, nt);
		const unsigned long jobs = pool_jobs(p) - jobs0;
		for (int i = 0; i < MM_MAX_PARTS; i++) {
			const size_t m = (size_t)nt * lt[i].ne1;
			bad += memcmp(one[i], many[i], m * sizeof(float)) != 0;
			for (int k = 0; k < guard; k++)
				bad += many[i][m + k] != -7.0f;
		}
		/* One token is a GEMV for every type (gemm_min_nt >= 2): one job
		 * (the conversion of 512 inputs runs on the caller). */
		fused += nt == 1;
		CHECK(bad == 0, "%s: mm_matmul_many mix %zu nt %d: %d parts differ from mm_matmul or wrote past their "
		    "end", q_cpu_features(), mi, nt, bad);
		CHECK(nt > 1 || jobs == 1, "%s: mm_matmul_many mix %zu, one token, ran %lu jobs, not one", q_cpu_features(),
		    mi, jobs);
		bad_cases += bad > 0;
		cases++;
		mm_scratch_free(&s);
		for (int i = 0; i < MM_MAX_PARTS; i++) {
			free((void *)lt[i].data);
			free(one[i]);
			free(many[i]);
		}
		free(x);
	}
	printf("mm_matmul_many on %s, 2 threads: %d/%d cases equal to mm_matmul part by part (%d in one job)\n",
	    q_cpu_features(), cases - bad_cases, cases, fused);
	pool_free(p);
}

/* --- quantizers, binary16, IQ4 layouts, vector helpers --- */

/* Quantize then dequantize: the error stays within what the format allows. */
static void
test_round_trip(enum ggml_type t, double bound)
{
	enum { N = 4096 };
	static float x[N], back[N];
	static uint8_t q[N * 4 + 64];
	const struct q_traits *qt = q_traits_get(t);
	double err = 0, ss = 0;

	for (int i = 0; i < N; i++)
		x[i] = rndf() * (1 + (i % 97 == 0) * 8);
	qt->from_float(x, q, N);
	qt->to_float(q, back, N);
	for (int i = 0; i < N; i++) {
		err += (x[i] - back[i]) * (double)(x[i] - back[i]);
		ss += (double)x[i] * x[i];
	}
	double rel = sqrt(err / ss);
	printf("%-6s quantize round trip: relative RMS error %.4f (bound %.4f)\n", tname(t), rel, bound);
	CHECK(rel <= bound, "%s round trip error %.4f > %.4f", tname(t), rel, bound);
	/* All zeros stay zeros. */
	memset(x, 0, sizeof(x));
	qt->from_float(x, q, N);
	qt->to_float(q, back, N);
	int nz = 0;
	for (int i = 0; i < N; i++)
		nz += back[i] != 0;
	CHECK(nz == 0, "%s: zeros come back as %d non-zeros", tname(t), nz);
}

static void
test_f16(void)
{
	int bad = 0;
	for (uint32_t h = 0; h < 65536; h++) {
		float f = q_f16_to_f32((qhalf)h);
		qhalf back = q_f32_to_f16(f);
		if (isnan(f) ? (back & 0x7C00) != 0x7C00 || (back & 0x3FF) == 0 : back != h)
			bad++;
	}
	CHECK(bad == 0, "binary16 round trip fails for %d values", bad);
	CHECK(q_f32_to_f16(1.0f + 1.0f / 2048) == 0x3C00, "ties round to even (down)");
	CHECK(q_f32_to_f16(1.0f + 3.0f / 2048) == 0x3C02, "ties round to even (up)");
	CHECK(q_f32_to_f16(1e6f) == 0x7C00, "overflow gives infinity");
	CHECK(q_f32_to_f16(65519.0f) == 0x7BFF && q_f32_to_f16(65520.0f) == 0x7C00, "overflow threshold");
	CHECK(q_f32_to_f16(5.9604645e-08f) == 0x0001, "smallest subnormal");
	CHECK(q_f32_to_f16(2.0e-08f) == 0x0000, "underflow to zero");
	CHECK(q_bf16_to_f32(q_f32_to_bf16(1.00390625f)) == 1.0f, "bf16 ties to even");
	CHECK(isnan(q_bf16_to_f32(q_f32_to_bf16(NAN))), "bf16 NaN stays NaN");
}

/* The IQ4 layouts, decoded by hand: nibble order, grid, 6-bit sub-scales. */
static void
test_iq4_layout(void)
{
	block_iq4_nl nl;
	block_iq4_xs xs;
	float y[256];

	memset(&nl, 0, sizeof(nl));
	nl.d = q_f32_to_f16(0.5f);
	nl.qs[0] = 0x80;   /* element 0: level 0 (-127); element 16: level 8 (1) */
	nl.qs[15] = 0xF3;  /* element 15: level 3 (-65); element 31: level 15 (113) */
	q_traits_get(GGML_TYPE_IQ4_NL)->to_float(&nl, y, 32);
	CHECK(y[0] == -63.5f && y[16] == 0.5f && y[15] == -32.5f && y[31] == 56.5f && y[1] == -63.5f,
	    "IQ4_NL decodes %g %g %g %g", y[0], y[16], y[15], y[31]);

	memset(&xs, 0, sizeof(xs));
	xs.d = q_f32_to_f16(1.0f);
	/* Sub-block 3: ls = 0x2 | (0x3 << 4) = 50 -> scale 18; sub-block 0: ls 0 -> -32. */
	xs.scales_l[1] = 0x20;          /* sub-block 3's low nibble in the high half of byte 1 */
	xs.scales_h = 0x3 << 6;         /* sub-block 3's high bits */
	xs.qs[16 * 3] = 0x9F;           /* sub-block 3, element 0: level 15; element 16: level 9 */
	q_traits_get(GGML_TYPE_IQ4_XS)->to_float(&xs, y, 256);
	CHECK(y[96] == 18 * 113.0f && y[112] == 18 * 13.0f && y[0] == -32 * -127.0f && y[32] == -32 * -127.0f,
	    "IQ4_XS decodes %g %g %g", y[96], y[112], y[0]);
}

/* The vector helpers against their scalar references. */
static void
test_vops(const struct q_kernels *k)
{
	const struct q_vops *f = &k->vops, *r = q_vops_ref();
	enum { N = 1003 };
	static float a[N], b[N], c1[N], c2[N];
	double maxd = 0;

	/* silu(g) * u over the whole range (a uses +-90: exp saturates). */
	for (int i = 0; i < N; i++) {
		a[i] = c1[i] = c2[i] = rndf() * 90;
		b[i] = rndf();
	}
	r->silu_mul(N, c1, b);
	f->silu_mul(N, c2, b);
	for (int i = 0; i < N; i++) {
		double e = fabs(c1[i] - c2[i]) / (fabs(c1[i]) + 1e-6);
		if (e > maxd)
			maxd = e;
	}
	CHECK(maxd < 1e-5, "%s: silu_mul relative error %.3g", k->name, maxd);
	r->rmsnorm(N, c1, a, b, 1e-6f);
	f->rmsnorm(N, c2, a, b, 1e-6f);
	maxd = 0;
	for (int i = 0; i < N; i++)
		if (fabs(c1[i] - c2[i]) > maxd * (fabs(c1[i]) + 1e-30))
			maxd = fabs(c1[i] - c2[i]) / (fabs(c1[i]) + 1e-30);
	CHECK(maxd < 1e-6, "%s: rmsnorm relative error %.3g", k->name, maxd);
}

/* NATTER_CPU, when set, is the tier in use. */
static void
test_forced_tier(void)
{
	const char *env = getenv("NATTER_CPU");
	char err[256];
	int rc = q_cpu_init(err, sizeof(err));

	printf("tiers: best %s, chosen %s%s%s\n", q_cpu_tier_name(q_cpu_tier_best()), q_cpu_features(),
	    env ? ", NATTER_CPU=" : "", env ? env : "");
	if (env && *env) {
		CHECK(rc == 0, "NATTER_CPU=%s refused: %s", env, err);
		CHECK(rc < 0 || strcasecmp(q_cpu_features(), env) == 0, "NATTER_CPU=%s but the kernels are %s", env,
		    q_cpu_features());
	} else {
		CHECK(rc == 0 && q_cpu_tier_chosen() == q_cpu_tier_best(), "without NATTER_CPU the best tier is used");
	}
	CHECK(q_cpu_tier_available(CPU_SCALAR), "the scalar tier is always there");
	CHECK(q_kern_tier(q_cpu_tier_chosen()) == q_kern(), "the chosen tier's kernels are the active ones");
}

int
main(void)
{
	const struct q_kernels *s = q_kern_scalar();
	/* tests/test-tiers.sh runs this once per tier for mm_matmul alone. */
	const char *only = getenv("TEST_QUANT_MATMUL_ONLY");

	test_forced_tier();
	if (only && *only == '1') {
		test_matmul();
		test_matmul_many();
		return test_done("test-quant");
	}
	test_f16();
	test_iq4_layout();
	test_pack_layout();
	for (int i = 0; i < N_TYPES; i++)
		test_reference(types[i]);
	test_round_trip(GGML_TYPE_F16, 0.001);
	test_round_trip(GGML_TYPE_BF16, 0.005);
	test_round_trip(GGML_TYPE_Q8_0, 0.01);
	test_round_trip(GGML_TYPE_Q4_0, 0.15);
	test_round_trip(GGML_TYPE_Q4_1, 0.12);
	test_round_trip(GGML_TYPE_Q5_0, 0.08);
	test_round_trip(GGML_TYPE_Q5_1, 0.06);
	test_round_trip(GGML_TYPE_Q4_K, 0.12);
	test_round_trip(GGML_TYPE_Q5_K, 0.06);
	test_round_trip(GGML_TYPE_Q6_K, 0.04);
	test_round_trip(GGML_TYPE_IQ4_NL, 0.12);
	test_round_trip(GGML_TYPE_IQ4_XS, 0.12);
	/* One scale per 256 values: the 9x outliers in the input set the step. */
	test_round_trip(GGML_TYPE_Q8_K, 0.03);

	for (int tier = 1; tier < q_cpu_tier_count(); tier++) {
		const struct q_kernels *k = q_kern_tier(tier);
		if (!k) {
			/* Only a tier the CPU has may be asked whether it is built. */
			if (cpu_tier_get(tier)->detect())
				/* Not a skip: this build has the scalar tier alone
				 * (configure --disable-simd, or a compiler without
				 * the tier's flags), which the tests above cover. */
				printf("note: tier %s not built in this configuration\n", q_cpu_tier_name(tier));
			else
				SKIP_CPU_TIER(q_cpu_tier_name(tier));
			continue;
		}
		printf("== tier %s (%s)\n", k->name, q_cpu_tier_isa(tier));
		test_vops(k);
		test_act(k, s);
		test_float_gemv(k, s);
		for (int i = 0; i < N_TYPES; i++) {
			test_dot_gemv(k, s, types[i]);
			test_gemm(k, types[i]);
			test_packed(k, types[i]);
		}
	}
	test_matmul();
	test_matmul_many();
	return test_done("test-quant");
}
