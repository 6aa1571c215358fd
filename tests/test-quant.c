/* test-quant.c -- every tensor type: dequantize and dot products, fast paths against the scalar reference. */
#include "config.h"

#include <math.h>
#include <stdint.h>

#include "natter/quant.h"
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

enum mode { RANDOM, ZERO, EXTREME_BIG, EXTREME_SMALL, NEGATIVE };
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

/* Fills NBLK blocks of type T with random bits, then sets scale fields. */
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
	GGML_TYPE_Q6_K,
};

/* Each dot product against the exact sum over the dequantized values. */
static void
test_type(enum ggml_type t, const struct q_traits *scalar, const struct q_traits *fast)
{
	enum { N = 1024 };
	static uint8_t x[N * 4 + 64], y[N * 4 + 64];
	static float xf[N], xf2[N], yf[N], yraw[N];
	const struct q_traits *vt = q_traits_get(scalar->vec_dot_type);
	const char *name = ggml_type_info_get(t)->name;
	int fails_ref = 0, fails_fast = 0, fails_deq = 0, trials = 0;

	for (int mode = RANDOM; mode <= NEGATIVE; mode++) {
		for (int trial = 0; trial < 40; trial++) {
			double exact = 0, mag = 0;
			float s_ref, s_fast;

			fill_blocks(t, x, N, (enum mode)mode);
			for (int i = 0; i < N; i++)
				yraw[i] = mode == ZERO && trial % 2 ? 0 : rndf() * (trial % 3 ? 1.0f : 100.0f);
			vt->from_float(yraw, y, N);
			vt->to_float(y, yf, N);
			scalar->to_float(x, xf, N);
			fast->to_float_fast(x, xf2, N);
			for (int i = 0; i < N; i++) {
				exact += (double)xf[i] * yf[i];
				mag += fabs((double)xf[i] * yf[i]);
			}
			if (memcmp(xf, xf2, sizeof(xf)) != 0)
				fails_deq++;
			scalar->vec_dot_ref(N, &s_ref, x, y);
			fast->vec_dot(N, &s_fast, x, y);
			/* float accumulation over N products: allow relative 1e-5 of the magnitudes. */
			double tol = 1e-5 * mag + 1e-30;
			if (!(fabs(s_ref - exact) <= tol) || !isfinite(s_ref))
				fails_ref++;
			if (!(fabs(s_fast - s_ref) <= tol) || !isfinite(s_fast))
				fails_fast++;
			if (mode == ZERO && (s_ref != 0 || s_fast != 0 || xf[0] != 0 || xf[N - 1] != 0))
				fails_ref++;
			trials++;
			if (fails_ref + fails_fast + fails_deq == 1 && trial == 0)
				fprintf(stderr, "  %s %s: exact %g ref %g fast %g\n", name, mode_name[mode], exact, s_ref, s_fast);
		}
	}
	printf("%-5s dot ref %3d/%d, dot fast %3d/%d, dequant fast %3d/%d\n", name, trials - fails_ref,
	    trials, trials - fails_fast, trials, trials - fails_deq, trials);
	CHECK(fails_ref == 0, "%s: scalar dot disagrees with the exact sum in %d trials", name, fails_ref);
	CHECK(fails_fast == 0, "%s: fast dot disagrees with the scalar one in %d trials", name, fails_fast);
	CHECK(fails_deq == 0, "%s: fast dequantize differs in %d trials", name, fails_deq);
}

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
	printf("%-5s quantize round trip: relative RMS error %.4f (bound %.4f)\n",
	    ggml_type_info_get(t)->name, rel, bound);
	CHECK(rel <= bound, "%s round trip error %.4f > %.4f", ggml_type_info_get(t)->name, rel, bound);
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

/* The fast activation quantizers give the same levels, up to rounding ties. */
static void
test_act_quant(enum ggml_type t, const struct q_traits *scalar, const struct q_traits *fast)
{
	enum { N = 2048 };
	static float x[N], a[N], b[N];
	static uint8_t qa[N * 2], qb[N * 2];
	double maxd = 0, step = 0;

	for (int i = 0; i < N; i++)
		x[i] = rndf() * (i % 61 == 0 ? 30 : 1);
	scalar->from_float(x, qa, N);
	fast->from_float_fast(x, qb, N);
	scalar->to_float(qa, a, N);
	scalar->to_float(qb, b, N);
	for (int i = 0; i < N; i++) {
		if (fabs(a[i] - b[i]) > maxd)
			maxd = fabs(a[i] - b[i]);
		if (fabs(x[i]) > step)
			step = fabs(x[i]);
	}
	step /= 127;   /* one quantization step at the largest scale */
	printf("%-5s fast activation quantizer: max difference %.3g (one step %.3g)\n",
	    ggml_type_info_get(t)->name, maxd, step);
	CHECK(maxd <= step * 1.001, "%s fast quantizer differs by more than one step", ggml_type_info_get(t)->name);
}

/* The vector helpers against their scalar references. */
static void
test_vops(void)
{
	const struct q_vops *f = q_vops_get(), *r = q_vops_ref();
	enum { N = 1003 };
	static float a[N], b[N], c1[N], c2[N];
	double maxrel = 0;

	for (int i = 0; i < N; i++) {
		a[i] = rndf() * 90;       /* exp over the whole useful range */
		b[i] = rndf();
		c1[i] = c2[i] = rndf();
	}
	memcpy(c1, a, sizeof(a));
	memcpy(c2, a, sizeof(a));
	float s1 = r->exp_sum(c1, N, 10.0f), s2 = f->exp_sum(c2, N, 10.0f);
	for (int i = 0; i < N; i++) {
		double rel = c1[i] > 1e-30f ? fabs(c2[i] - c1[i]) / c1[i] : fabs(c2[i]);
		if (rel > maxrel)
			maxrel = rel;
	}
	printf("vector exp: max relative error %.2g, sums %.7g / %.7g\n", maxrel, s1, s2);
	CHECK(maxrel < 1e-6, "fast exp relative error %.3g", maxrel);
	CHECK(fabs(s1 - s2) <= 1e-6 * fabs(s1), "exp sums differ");
	{
		float big = -INFINITY;
		float x[3] = { -1000, -INFINITY, 0 };
		float e = f->exp_sum(x, 3, 0);
		CHECK(x[0] == 0 && x[1] == 0 && x[2] == 1 && e == 1, "exp of -1000, -inf and 0");
		(void)big;
	}
	for (int i = 0; i < N; i++)
		c1[i] = c2[i] = b[i];
	r->axpy(N, 0.37f, a, c1);
	f->axpy(N, 0.37f, a, c2);
	double maxd = 0;
	for (int i = 0; i < N; i++)
		if (fabs(c1[i] - c2[i]) > maxd)
			maxd = fabs(c1[i] - c2[i]);
	CHECK(maxd < 1e-5, "axpy differs by %g", maxd);
	float d1 = r->dot(N, a, b), d2 = f->dot(N, a, b);
	double mag = 0;
	for (int i = 0; i < N; i++)
		mag += fabs((double)a[i] * b[i]);
	/* Different summation orders: allow float rounding of the magnitudes. */
	CHECK(fabs(d1 - d2) <= 1e-6 * mag, "dot %.9g vs %.9g", d1, d2);
}

int
main(void)
{
	struct q_traits scalar[GGML_TYPE_COUNT], fast[GGML_TYPE_COUNT];

	q_init(1);
	for (int t = 0; t < GGML_TYPE_COUNT; t++)
		scalar[t] = *q_traits_get(t);
	q_init(0);
	for (int t = 0; t < GGML_TYPE_COUNT; t++)
		fast[t] = *q_traits_get(t);
	printf("fast kernels: %s\n", q_cpu_features());

	test_f16();
	test_vops();
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		test_type(types[i], &scalar[types[i]], &fast[types[i]]);
	test_act_quant(GGML_TYPE_Q8_0, &scalar[GGML_TYPE_Q8_0], &fast[GGML_TYPE_Q8_0]);
	test_act_quant(GGML_TYPE_Q8_K, &scalar[GGML_TYPE_Q8_K], &fast[GGML_TYPE_Q8_K]);
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
	/* One scale per 256 values: the 9x outliers in the input set the step. */
	test_round_trip(GGML_TYPE_Q8_K, 0.03);
	return test_done("test-quant");
}
