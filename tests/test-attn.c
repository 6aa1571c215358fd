/* test-attn.c -- the tiled attention against a plain double-precision reference; the cache types; the binary16 conversions of every CPU tier. */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "natter/llm.h"
#include "natter/quant.h"
#include "llm/attn.h"
#include "llm/kv.h"
#include "llm/pool.h"
#include "test.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t
rnext(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Uniform in [-1, 1). */
static float
frand(void)
{
	return (float)((rnext() >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* --- binary16 conversions, tier by tier --- */

static int
same_f16(qhalf a, qhalf b)
{
	/* NaNs may differ in payload; both must be NaN. */
	if ((a & 0x7C00) == 0x7C00 && (a & 0x3FF) && (b & 0x7C00) == 0x7C00 && (b & 0x3FF))
		return 1;
	return a == b;
}

static void
test_conversions(void)
{
	static float x[70000], y[70000];
	static qhalf h[70000], href[70000];
	int n = 0;

	/* Every binary16 value, then floats around every binary16 value:
	 * exact, half-way (ties to even), just off half-way, and random
	 * floats over the whole range including subnormals and overflow. */
	for (int i = 0; i < 65536; i++)
		h[i] = (qhalf)i;
	for (int i = 0; i < 2048; i++) {
		float a = q_f16_to_f32((qhalf)(i * 29 % 0x7C00)), b = q_f16_to_f32((qhalf)(i * 29 % 0x7C00 + 1));
		x[n++] = a;
		x[n++] = (a + b) / 2;
		x[n++] = nextafterf((a + b) / 2, INFINITY);
		x[n++] = -nextafterf((a + b) / 2, -INFINITY);
	}
	while (n < 69990) {
		uint32_t bits = (uint32_t)rnext();
		float f;
		memcpy(&f, &bits, 4);
		x[n++] = f;
	}
	x[n++] = 65504.0f;
	x[n++] = 65520.0f;      /* rounds to infinity */
	x[n++] = 65519.99f;
	x[n++] = 5.9604645e-8f;  /* the smallest subnormal */
	x[n++] = 2.9802322e-8f;  /* half of it: ties to even, 0 */
	x[n++] = 2.9802326e-8f;
	x[n++] = -0.0f;
	x[n++] = INFINITY;
	x[n++] = -INFINITY;
	x[n++] = NAN;
	for (int i = 0; i < n; i++)
		href[i] = q_f32_to_f16(x[i]);

	for (int t = 0; t < attn_tier_count(); t++) {
		const char *name = attn_tier_name(t);
		int bad = 0, at = -1;
		if (attn_tier_set(t) < 0) {
			SKIP_CPU_TIER(name);
			continue;
		}
		const struct attn_ops *o = attn_ops_get();
		CHECK(!strcmp(o->name, name), "tier %d is %s, not %s", t, o->name, name);
		/* Lengths that leave every tail: 65536 - 5 is 3 past a multiple of 8 and 11 past one of 16. */
		o->f16_to_f32(h, y, 65531);
		for (int i = 0; i < 65531; i++) {
			float want = q_f16_to_f32(h[i]);
			if (!(memcmp(&want, &y[i], 4) == 0 || (isnan(want) && isnan(y[i])))) {
				bad++;
				at = i;
			}
		}
		CHECK(bad == 0, "%s: f16 to f32 differs from the reference at %d values (e.g. 0x%04x)", name, bad, at);
		qhalf *hh = (qhalf *)y;   /* reuse as output */
		bad = 0;
		for (int len = 0; len < 40; len++) {
			o->f32_to_f16(x + 1000, hh, len);
			for (int i = 0; i < len; i++)
				bad += !same_f16(hh[i], href[1000 + i]);
		}
		o->f32_to_f16(x, hh, n);
		for (int i = 0; i < n; i++) {
			if (!same_f16(hh[i], href[i])) {
				bad++;
				at = i;
			}
		}
		CHECK(bad == 0, "%s: f32 to f16 (round to nearest even) differs at %d values (e.g. %a)", name, bad,
		    at >= 0 ? x[at] : 0.0f);
	}
	attn_tier_set(-1);
}

/* --- which tier attention runs --- */

/* Attention runs the tier of the kernels (cpu.c's choice, NATTER_CPU
 * included) or the nearest below it that it has. */
static void
test_default_tier(void)
{
	static const struct {
		const char *kernels, *attn;
	} map[] = {
		{ "scalar", "scalar" }, { "avx2", "avx2" }, { "avxvnni", "avx2" },
		{ "avx512", "avx512" }, { "avx512vnni", "avx512" }, { "avx512bf16", "avx512" },
		{ "amx", "avx512" },
	};
	const char *k = q_cpu_features(), *a = attn_ops_get()->name, *want = NULL;

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(map[i].kernels, k))
			want = map[i].attn;
	printf("kernels %s: attention tier %s\n", k, a);
	CHECK(want && !strcmp(a, want), "kernels %s: attention runs tier %s, not %s", k, a, want ? want : "(unknown)");
}

/* --- the vector steps of each tier against the scalar tier's --- */

/* Largest |a - b| / (1 + |b|) over N floats. */
static double
rel_diff(const float *a, const float *b, size_t n)
{
	double w = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]) / (1 + fabs((double)b[i]));
		if (!(d <= w))
			w = isnan(d) ? INFINITY : d;
	}
	return w;
}

static void
test_ops(void)
{
	enum { N = 300, R = 7, NK = 37, HD = 72 };
	static float x[N], y0[N], y1[N], q[R * HD], k[NK * 80], s0[R * 40], s1[R * 40], v[NK * 80], o0[R * 80],
	    o1[R * 80];
	static qhalf kh[NK * 80], vh[NK * 80];
	const struct attn_ops *ref;

	attn_tier_set(0);
	ref = attn_ops_get();
	for (int i = 0; i < N; i++)
		x[i] = frand() * 60;
	for (int i = 0; i < R * HD; i++)
		q[i] = frand();
	for (int i = 0; i < NK * 80; i++) {
		kh[i] = q_f32_to_f16(frand());
		vh[i] = q_f32_to_f16(frand());
		k[i] = q_f16_to_f32(kh[i]);   /* the same values as floats */
		v[i] = q_f16_to_f32(vh[i]);
	}
	for (int t = 1; t < attn_tier_count(); t++) {
		const char *name = attn_tier_name(t);
		double w_max = 0, w_exp = 0, w_sum = 0, w_scale = 0, w_qk = 0, w_pv = 0, w_qkh = 0, w_pvh = 0;
		if (attn_tier_set(t) < 0) {
			SKIP_CPU_TIER(name);
			continue;
		}
		const struct attn_ops *o = attn_ops_get();
		/* Every length 1 .. 40 (each tail of 8 and 16 lanes) and long runs. */
		for (int n = 1; n <= N; n += n < 40 ? 1 : 37) {
			float m0 = ref->max(x, n), m1 = o->max(x, n), e0, e1;
			w_max += m0 != m1;
			memcpy(y0, x, sizeof(x));
			memcpy(y1, x, sizeof(x));
			e0 = ref->exp_sum(y0, n, m0);
			e1 = o->exp_sum(y1, n, m0);
			for (int i = 0; i < n; i++)   /* relative: e^x spans 1 .. e^-120 here */
				if (y0[i] > 1e-30f)
					w_exp = fmax(w_exp, fabs((double)y1[i] - y0[i]) / y0[i]);
			w_sum = fmax(w_sum, fabs((double)e1 - e0) / e0);
			/* nothing past N written */
			w_exp += memcmp(y1 + n, x + n, (size_t)(N - n) * sizeof(float)) != 0;
			ref->scale(y0, x, n, 0.37f);
			o->scale(y1, x, n, 0.37f);
			w_scale = fmax(w_scale, rel_diff(y1, y0, (size_t)n));
		}
		/* Scores and P V: rows 1 .. R, keys 1 .. NK, head lengths off
		 * the vector widths, leading dimensions wider than the rows. */
		for (int r = 1; r <= R; r += r < 4 ? 1 : 3) {
			for (int nk = 1; nk <= NK; nk += 9) {
				for (int hd = 5; hd <= HD; hd += 67 / 3) {
					memset(s0, 0, sizeof(s0));
					memset(s1, 0, sizeof(s1));
					ref->qk(q, r, hd, k, 80, nk, s0, 40);
					o->qk(q, r, hd, k, 80, nk, s1, 40);
					w_qk = fmax(w_qk, rel_diff(s1, s0, sizeof(s0) / sizeof(s0[0])));
					for (int i = 0; i < R * 80; i++)
						o0[i] = o1[i] = (float)i / 100;
					ref->pv(s0, 40, r, v, 80, nk, hd, o0, 80);
					o->pv(s0, 40, r, v, 80, nk, hd, o1, 80);
					w_pv = fmax(w_pv, rel_diff(o1, o0, sizeof(o0) / sizeof(o0[0])));
					/* The binary16 forms against the float ones on the
					 * same values (and nothing else written). */
					memset(s1, 0, sizeof(s1));
					o->qk_h(q, r, hd, kh, 80, nk, s1, 40, (const uint8_t *)vh, 1);
					w_qkh = fmax(w_qkh, rel_diff(s1, s0, sizeof(s0) / sizeof(s0[0])));
					for (int i = 0; i < R * 80; i++)
						o1[i] = (float)i / 100;
					o->pv_h(s0, 40, r, vh, 80, nk, hd, o1, 80, NULL, 0);
					w_pvh = fmax(w_pvh, rel_diff(o1, o0, sizeof(o0) / sizeof(o0[0])));
					if (t == 1) {   /* the scalar tier's own, once */
						memset(s1, 0, sizeof(s1));
						ref->qk_h(q, r, hd, kh, 80, nk, s1, 40, NULL, 0);
						w_qkh = fmax(w_qkh, rel_diff(s1, s0, sizeof(s0) / sizeof(s0[0])));
						for (int i = 0; i < R * 80; i++)
							o1[i] = (float)i / 100;
						ref->pv_h(s0, 40, r, vh, 80, nk, hd, o1, 80, (const uint8_t *)kh, 1);
						w_pvh = fmax(w_pvh, rel_diff(o1, o0, sizeof(o0) / sizeof(o0[0])));
					}
				}
			}
		}
		printf("tier %s against scalar: max %s, exp %.1e (sum %.1e), scale %.1e, qk %.1e, pv %.1e, "
		    "binary16 qk %.1e, pv %.1e\n", name, w_max ? "differs" : "equal", w_exp, w_sum, w_scale, w_qk, w_pv,
		    w_qkh, w_pvh);
		CHECK(w_max == 0, "%s: max differs from the scalar tier", name);
		CHECK(w_exp <= 1e-6 && w_sum <= 1e-6, "%s: exp %.3g, sum %.3g from the scalar tier's (bound 1e-6)", name,
		    w_exp, w_sum);
		CHECK(w_scale == 0, "%s: scale differs from the scalar tier (%.3g)", name, w_scale);
		CHECK(w_qk <= 1e-5 && w_pv <= 1e-5, "%s: qk %.3g, pv %.3g from the scalar tier's (bound 1e-5)", name, w_qk,
		    w_pv);
		CHECK(w_qkh <= 1e-5 && w_pvh <= 1e-5, "%s: binary16 qk %.3g, pv %.3g from the scalar float ones (bound 1e-5)",
		    name, w_qkh, w_pvh);
	}
	attn_tier_set(-1);
}

/*
 * The transposed forms of a prompt's wide blocks (qk_t, softmax_t, pv_t)
 * of each tier against the scalar tier's: columns and rows off every
 * tile (1 .. 50 columns, 1 .. 37 keys, 1 .. 13 rows), head lengths on
 * and off the vector widths, masked scores, maxima from -inf; and
 * nothing written past what each may touch.
 */
static void
test_ops_t(void)
{
	enum { LD = 80, NK = 37, HD = 80, NR = 13 };
	static float qt[HD * LD], k[NK * LD], s0[NK * LD], s1[NK * LD], v[NK * LD], o0[NR * LD], o1[NR * LD];
	static float m0[LD], m1[LD], l0[LD], l1[LD], a0[LD], a1[LD];
	static const int ncs[] = { 1, 7, 16, 17, 33, 50 }, nks[] = { 1, 5, 9, 37 }, hds[] = { 5, 16, 20, 64, 80 };
	const struct attn_ops *ref;

	attn_tier_set(0);
	ref = attn_ops_get();
	CHECK(ref->t_tiles == 0, "the scalar tier sends wide blocks to its transposed forms, not sgemm");
	for (int i = 0; i < HD * LD; i++)
		qt[i] = frand();
	for (int i = 0; i < NK * LD; i++) {
		k[i] = frand();
		v[i] = frand();
	}
	for (int t = 1; t < attn_tier_count(); t++) {
		const char *name = attn_tier_name(t);
		double w_qk = 0, w_p = 0, w_ml = 0, w_pv = 0;
		int past = 0;
		if (attn_tier_set(t) < 0) {
			SKIP_CPU_TIER(name);
			continue;
		}
		const struct attn_ops *o = attn_ops_get();
		CHECK(o->t_tiles, "tier %s sends wide blocks to sgemm", name);
		for (size_t a = 0; a < sizeof(ncs) / sizeof(ncs[0]); a++) {
			const int nc = ncs[a], wide = (nc + 15) / 16 * 16;
			for (size_t b = 0; b < sizeof(nks) / sizeof(nks[0]); b++) {
				const int nk = nks[b];
				for (size_t c = 0; c < sizeof(hds) / sizeof(hds[0]); c++) {
					const int hd = hds[c];
					for (int i = 0; i < NK * LD; i++)
						s0[i] = s1[i] = 7.0f;
					ref->qk_t(qt, LD, nc, hd, k, LD, nk, s0, LD);
					o->qk_t(qt, LD, nc, hd, k, LD, nk, s1, LD);
					for (int j = 0; j < NK; j++) {
						w_qk = fmax(w_qk, rel_diff(s1 + j * LD, s0 + j * LD, (size_t)(j < nk ? nc : 0)));
						for (int x = j < nk ? wide : 0; x < LD; x++)
							past += s1[j * LD + x] != 7.0f;
					}
					/* Scores of 4 hd's size, some masked (never a whole
					 * column); maxima from -inf or above some of the
					 * column's scores. */
					for (int j = 0; j < nk; j++)
						for (int x = 0; x < nc; x++) {
							float *e = s0 + j * LD + x;
							*e *= 4;
							if ((j + x) % 3 == 1 && j != x % nk)
								*e = -INFINITY;
						}
					memcpy(s1, s0, sizeof(s0));
					for (int x = 0; x < LD; x++) {
						m0[x] = m1[x] = x % 4 == 0 ? -INFINITY : frand() * 8;
						l0[x] = l1[x] = x % 4 == 0 ? 0 : 1 + frand() * 0.5f;
						a0[x] = a1[x] = 5.0f;
					}
					ref->softmax_t(s0, LD, nk, nc, m0, l0, a0);
					o->softmax_t(s1, LD, nk, nc, m1, l1, a1);
					for (int j = 0; j < nk; j++)
						w_p = fmax(w_p, rel_diff(s1 + j * LD, s0 + j * LD, (size_t)nc));
					w_ml = fmax(w_ml, rel_diff(m1, m0, (size_t)nc));
					w_ml = fmax(w_ml, rel_diff(l1, l0, (size_t)nc));
					w_ml = fmax(w_ml, rel_diff(a1, a0, (size_t)nc));
					past += memcmp(m1 + nc, m0 + nc, (LD - nc) * sizeof(float)) != 0;
					past += memcmp(l1 + nc, l0 + nc, (LD - nc) * sizeof(float)) != 0;
					for (int x = wide; x < LD; x++)
						past += a1[x] != 5.0f;
					/* P V over the probabilities, rows 1 .. 13 (the
					 * columns as rows), alphas of 0 .. 1. */
					for (int nr = 1; nr <= NR && nr <= nc; nr += 4) {
						for (int i = 0; i < NR * LD; i++)
							o0[i] = o1[i] = (float)i / 100;
						ref->pv_t(s0, LD, nr, v, LD, nk, hd, a0, o0, LD);
						o->pv_t(s0, LD, nr, v, LD, nk, hd, a0, o1, LD);
						w_pv = fmax(w_pv, rel_diff(o1, o0, sizeof(o0) / sizeof(o0[0])));
					}
				}
			}
		}
		printf("tier %s, transposed forms against scalar: qk %.1e, softmax %.1e (max, sum, alpha %.1e), pv %.1e, "
		    "%d written past their columns\n", name, w_qk, w_p, w_ml, w_pv, past);
		CHECK(w_qk <= 1e-5 && w_pv <= 1e-5, "%s: qk_t %.3g, pv_t %.3g from the scalar tier's (bound 1e-5)", name,
		    w_qk, w_pv);
		CHECK(w_p <= 1e-6 && w_ml <= 1e-6, "%s: softmax_t %.3g, its max / sum / alpha %.3g from the scalar tier's "
		    "(bound 1e-6)", name, w_p, w_ml);
		CHECK(past == 0, "%s: %d runs written past where they may be", name, past);
	}
	attn_tier_set(-1);
}

/* --- the cache types --- */

static void
test_kv_types(void)
{
	struct llm_layer_hparams layer = { .kind = LLM_LAYER_FULL };
	struct llm_hparams hp = { .n_layer = 1, .n_head = 4, .n_head_kv = 2, .head_dim = 64, .head_dim_v = 64,
	    .layer = &layer };
	struct kv_cache kv;
	enum llm_kv_type t;
	static const size_t row_bytes[LLM_KV_TYPE_COUNT] = {
		[LLM_KV_F16] = 128 * 2, [LLM_KV_Q8_0] = 4 * 34, [LLM_KV_F32] = 128 * 4,
	};

	for (int i = 0; i < LLM_KV_TYPE_COUNT; i++) {
		const char *name = llm_kv_type_name((enum llm_kv_type)i);
		CHECK(name && llm_kv_type_parse(name, &t) == 0 && t == (enum llm_kv_type)i, "type %d round trip", i);
		CHECK(kv_cache_init(&kv, &hp, 100, 8, 0, (enum llm_kv_type)i) == 0, "kv_cache_init %s", name);
		CHECK(kv_cache_bytes(&kv) == 100 * 2 * row_bytes[i], "%s: %zu bytes for 100 positions", name,
		    kv_cache_bytes(&kv));
		kv_cache_free(&kv);
	}
	CHECK(llm_kv_type_parse("F16", &t) < 0 && llm_kv_type_parse("bf16", &t) < 0 && llm_kv_type_parse("", &t) < 0,
	    "only the table's names parse");
	CHECK(llm_kv_type_name(LLM_KV_TYPE_COUNT) == NULL, "no name past the table");
	hp.head_dim = hp.head_dim_v = 48;
	CHECK(kv_cache_init(&kv, &hp, 100, 8, 0, LLM_KV_Q8_0) == -2, "q8_0 refuses heads of 48");
	kv_cache_free(&kv);
	CHECK(kv_cache_init(&kv, &hp, 100, 8, 0, LLM_KV_F16) == 0, "f16 takes heads of 48");
	kv_cache_free(&kv);
}

/* Every layer's rows in one block, each array on lines of its own (rows
 * of 160 bytes, 101 and 40 positions: not whole lines), none overlapping;
 * the block on a line, from 2 MiB on on a 2 MiB boundary (kv.c).  Under the
 * sanitizers each array is allocated alone. */
static void
test_kv_block(void)
{
	const struct llm_layer_hparams layers[3] = { { .kind = LLM_LAYER_FULL },
		{ .kind = LLM_LAYER_SLIDING, .window = 33 }, { .kind = LLM_LAYER_FULL } };
	struct llm_hparams hp = { .n_layer = 3, .n_head = 4, .n_head_kv = 2, .head_dim = 40, .head_dim_v = 40,
	    .layer = layers };
	struct kv_cache kv;

	for (int big = 0; big < 2; big++) {
		const int n_ctx = big ? 8192 : 101;
		const uint8_t *lo[6], *hi[6];
		CHECK(kv_cache_init(&kv, &hp, n_ctx, 8, 0, LLM_KV_F16) == 0, "kv_cache_init of 3 layers");
		CHECK(kv.l[1].kind == LLM_CACHE_RING && kv.l[1].slots == 40, "layer 1 a ring of 40 rows");
		for (int i = 0; i < 6; i++) {
			const struct kv_layer *l = &kv.l[i / 2];
			lo[i] = i % 2 ? l->v : l->k;
			hi[i] = lo[i] + (size_t)l->slots * (i % 2 ? l->row_v : l->row_k);
			for (int j = 0; j < i; j++)
				CHECK(hi[i] <= lo[j] || hi[j] <= lo[i], "arrays %d and %d overlap", j, i);
#ifndef NATTER_ASAN
			CHECK(kv.rows && lo[i] >= kv.rows && hi[i] <= kv.rows + kv.rows_bytes && (lo[i] - kv.rows) % 64 == 0,
			    "array %d of %d positions: %td bytes into the block of %zu", i, n_ctx, lo[i] - kv.rows,
			    kv.rows_bytes);
#endif
		}
#ifndef NATTER_ASAN
		CHECK((uintptr_t)kv.rows % (big ? 2u << 20 : 64) == 0, "a block of %zu bytes on a %s boundary",
		    kv.rows_bytes, big ? "2 MiB" : "line's");
#endif
		kv_cache_free(&kv);
	}
}

/* --- attention against a double-precision reference --- */

/*
 * One shape: KV heads, query heads per KV head, head lengths, window,
 * soft-cap, query scale, and how large the queries are (large ones make
 * the softmax peaked, so that its running maximum moves often).
 */
static const struct acase {
	int n_kv, group, hd, hdv, window;
	float cap, qamp;
	int len;            /* positions evaluated */
	int tokenwise;      /* also one token at a time, on this many threads
	                     * (2: past 256 keys the keys are split in parts) */
} cases[] = {
	{ 2, 1, 64, 64, 0, 0, 4, 300, 2 },
	{ 1, 2, 64, 64, 0, 0, 16, 300, 0 },
	{ 2, 4, 32, 64, 0, 0, 4, 260, 0 },
	{ 1, 8, 64, 32, 0, 0, 8, 300, 2 },
	{ 2, 2, 64, 64, 6, 4.0f, 8, 280, 1 },      /* Gemma 2's window and cap */
	{ 1, 4, 32, 32, 5, 0, 4, 300, 0 },         /* Gemma 3's local layers */
	{ 2, 4, 64, 64, 130, 0, 8, 300, 1 },       /* a window wider than a block of keys */
	{ 1, 8, 96, 96, 0, 50.0f, 16, 200, 0 },
	{ 2, 1, 36, 20, 0, 0, 8, 150, 1 },         /* lengths off the vector widths (not q8_0) */
	{ 4, 2, 256, 256, 0, 0, 4, 300, 2 },       /* heads of 256 (Qwen3.5): a task of every KV
	                                              head reads keys 32 at a time */
	{ 8, 2, 128, 128, 0, 0, 4, 300, 2 },       /* Qwen3-0.6B: 8 KV heads, a token's keys split
	                                              too (the parts' slots sized by its rows) */
};
#define ODD_CASE 8

/* The batches of a run: sizes that put query and key blocks' edges
 * everywhere (the blocks are 128 keys; query blocks 128 / group tokens). */
static const int mixed[] = { 1, 126, 1, 1, 129, 2, 3, 40, 1, 17, 64, 128 };

struct errs {
	double vs_cache;     /* against the reference over the cache's own rows */
	double vs_float;     /* against the reference over the floats written */
};

/* Rows LO .. HI of KL as doubles from their stored bits, into KC and VC
 * (rows of the cache's widths, by position). */
static void
cached_rows(const struct kv_layer *kl, int lo, int hi, double *kc, double *vc)
{
	static float tmp[8192];
	for (int p = lo; p <= hi; p++) {
		struct kv_run run[2];
		kv_layer_runs(kl, p, p, run);
		q_traits_get(kl->type)->to_float(run[0].k, tmp, kl->width_k);
		for (int i = 0; i < kl->width_k; i++)
			kc[(size_t)p * kl->width_k + i] = tmp[i];
		q_traits_get(kl->type)->to_float(run[0].v, tmp, kl->width_v);
		for (int i = 0; i < kl->width_v; i++)
			vc[(size_t)p * kl->width_v + i] = tmp[i];
	}
}

/* The reference for query Q at position P over head H, in double, from
 * the keys and values K and V (rows by position). */
static void
reference(const struct acase *c, const double *q, const double *K, const double *V, int p, int h, double scale,
	  double *o)
{
	const int hd = c->hd, hdv = c->hdv, kvh = h / c->group, W = c->n_kv * hd, WV = c->n_kv * hdv;
	const int lo = c->window && p - c->window + 1 > 0 ? p - c->window + 1 : 0;
	static double s[512];
	double mx = -INFINITY, z = 0;

	for (int k = lo; k <= p; k++) {
		const double *kr = K + (size_t)k * W + kvh * hd;
		double d = 0;
		for (int i = 0; i < hd; i++)
			d += q[i] * kr[i];
		d *= scale;
		if (c->cap > 0)
			d = c->cap * tanh(d / c->cap);
		s[k - lo] = d;
		if (d > mx)
			mx = d;
	}
	for (int k = lo; k <= p; k++)
		z += s[k - lo] = exp(s[k - lo] - mx);
	for (int i = 0; i < hdv; i++)
		o[i] = 0;
	for (int k = lo; k <= p; k++) {
		const double *vr = V + (size_t)k * WV + kvh * hdv, w = s[k - lo] / z;
		for (int i = 0; i < hdv; i++)
			o[i] += w * vr[i];
	}
}

/*
 * Runs case C with cache TYPE on NTH threads in batches SIZES (cycled;
 * NULL: all at once) and folds the worst errors into E.  Returns 0, or -1
 * if a session part could not be made.
 */
static int
run_case(const struct acase *c, enum llm_kv_type type, int nth, const int *sizes, int n_sizes, struct errs *e)
{
	const int nh = c->n_kv * c->group, QW = nh * c->hd, OW = nh * c->hdv;
	const int W = c->n_kv * c->hd, WV = c->n_kv * c->hdv;
	int max_batch = c->len;
	struct llm_layer_hparams layer = { .kind = c->window ? LLM_LAYER_SLIDING : LLM_LAYER_FULL, .window = c->window };
	struct llm_hparams hp = { .n_layer = 1, .n_head = nh, .n_head_kv = c->n_kv, .head_dim = c->hd,
	    .head_dim_v = c->hdv, .layer = &layer };
	const struct attn_shape sh = { nh, c->n_kv, c->hd, c->hdv, c->window, 1.0f / sqrtf((float)c->hd), c->cap };
	struct kv_cache kv;
	struct attn_scratch scr;
	struct pool *pool = pool_new(nth);
	float *Q = malloc((size_t)c->len * QW * sizeof(float));
	float *K = malloc((size_t)c->len * W * sizeof(float));
	float *V = malloc((size_t)c->len * WV * sizeof(float));
	float *out = malloc((size_t)c->len * OW * sizeof(float));
	double *ref = malloc((size_t)c->hdv * sizeof(double)), *qd = malloc((size_t)c->hd * sizeof(double));
	double *Kd = malloc((size_t)c->len * W * sizeof(double)), *Vd = malloc((size_t)c->len * WV * sizeof(double));
	double *Kc = malloc((size_t)c->len * W * sizeof(double)), *Vc = malloc((size_t)c->len * WV * sizeof(double));
	int rc = -1;

	if (sizes) {
		max_batch = 0;
		for (int i = 0; i < n_sizes; i++)
			if (sizes[i] > max_batch)
				max_batch = sizes[i];
	}
	memset(&kv, 0, sizeof(kv));
	memset(&scr, 0, sizeof(scr));
	if (!pool || !Q || !K || !V || !out || !ref || !qd || !Kd || !Vd || !Kc || !Vc || kv_cache_init(&kv, &hp, c->len, max_batch, 0, type) < 0 ||
	    attn_scratch_init(&scr, &sh, nth) < 0)
		goto out;
	for (size_t i = 0; i < (size_t)c->len * QW; i++)
		Q[i] = frand() * c->qamp;
	for (size_t i = 0; i < (size_t)c->len * W; i++)
		K[i] = frand();
	for (size_t i = 0; i < (size_t)c->len * WV; i++)
		V[i] = frand();
	for (size_t i = 0; i < (size_t)c->len * W; i++)
		Kd[i] = K[i];
	for (size_t i = 0; i < (size_t)c->len * WV; i++)
		Vd[i] = V[i];
	for (int pos0 = 0, b = 0; pos0 < c->len; b++) {
		int nt = sizes ? sizes[b % n_sizes] : c->len;
		if (nt > c->len - pos0)
			nt = c->len - pos0;
		for (int t = 0; t < nt; t++)
			kv_layer_put(&kv.l[0], pos0 + t, K + (size_t)(pos0 + t) * W, V + (size_t)(pos0 + t) * WV);
		attn_forward(pool, &scr, &sh, &kv.l[0], Q + (size_t)pos0 * QW, nt, pos0, out);
		/* What the cache holds now (a ring may drop it later). */
		cached_rows(&kv.l[0], c->window && pos0 - c->window + 1 > 0 ? pos0 - c->window + 1 : 0, pos0 + nt - 1,
		    Kc, Vc);
		for (int t = 0; t < nt; t++) {
			for (int h = 0; h < nh; h++) {
				const float *o = out + (size_t)t * OW + (size_t)h * c->hdv;
				for (int i = 0; i < c->hd; i++)
					qd[i] = Q[(size_t)(pos0 + t) * QW + (size_t)h * c->hd + i];
				for (int from_cache = 0; from_cache < 2; from_cache++) {
					double *worst = from_cache ? &e->vs_cache : &e->vs_float;
					reference(c, qd, from_cache ? Kc : Kd, from_cache ? Vc : Vd, pos0 + t, h, sh.scale, ref);
					for (int i = 0; i < c->hdv; i++) {
						double d = fabs(o[i] - ref[i]);
						if (!(d <= *worst))
							*worst = isnan(d) ? INFINITY : d;
					}
				}
			}
		}
		pos0 += nt;
	}
	rc = 0;
out:
	attn_scratch_free(&scr);
	kv_cache_free(&kv);
	pool_free(pool);
	free(Q);
	free(K);
	free(V);
	free(out);
	free(ref);
	free(qd);
	free(Kd);
	free(Vd);
	free(Kc);
	free(Vc);
	return rc;
}

/*
 * The bounds, per cache type, on max |out - reference| (values in [-1, 1]):
 * against the reference over the cache's own rows, only the float
 * arithmetic of the kernel (sums of at most 300 terms, an exp accurate to
 * a few ulps); against the floats written, also the rounding of K and V
 * into the cache (binary16: relative 2^-11; Q8_0: amax / 254 per block).
 */
static const struct {
	enum llm_kv_type type;
	double vs_cache, vs_float;
} bounds[] = {
	{ LLM_KV_F32, 2e-5, 2e-5 },
	{ LLM_KV_F16, 2e-5, 5e-3 },
	{ LLM_KV_Q8_0, 2e-5, 5e-2 },
};

static void
test_attention(void)
{
	const int ncase = (int)(sizeof(cases) / sizeof(cases[0]));

	printf("%-10s %-34s %12s %12s\n", "KV type", "case (kv heads x group, hd/hdv, window, cap)", "vs its cache",
	    "vs floats");
	for (size_t b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++) {
		const char *tn = llm_kv_type_name(bounds[b].type);
		for (int ci = 0; ci < ncase; ci++) {
			const struct acase *c = &cases[ci];
			struct errs e = { 0, 0 };
			char label[64];
			int ok;
			if (bounds[b].type == LLM_KV_Q8_0 && (c->hd % 32 || c->hdv % 32))
				continue;
			/* Threads 1, 2, 3 by turns; each case all at once, in
			 * mixed batches, and (some) a token at a time. */
			ok = run_case(c, bounds[b].type, 1 + ci % 3, NULL, 0, &e) == 0;
			ok &= run_case(c, bounds[b].type, 1 + (ci + 1) % 3, mixed, (int)(sizeof(mixed) / sizeof(mixed[0])),
			    &e) == 0;
			if (c->tokenwise) {
				static const int one[] = { 1 };
				const unsigned long s0 = attn_split_calls();
				ok &= run_case(c, bounds[b].type, c->tokenwise, one, 1, &e) == 0;
				/* On 2 threads, a token past 256 keys has them in parts. */
				CHECK(c->tokenwise < 2 || attn_split_calls() > s0, "%s case %d: no token's keys were split",
				    tn, ci);
			}
			CHECK(ok, "%s case %d: out of memory", tn, ci);
			snprintf(label, sizeof(label), "%dx%d, %d/%d, w %d, cap %g", c->n_kv, c->group, c->hd, c->hdv,
			    c->window, c->cap);
			printf("%-10s %-34s %12.2e %12.2e\n", tn, label, e.vs_cache, e.vs_float);
			CHECK(e.vs_cache <= bounds[b].vs_cache, "%s %s: %.3g from the reference over the cache (bound %.0e)",
			    tn, label, e.vs_cache, bounds[b].vs_cache);
			CHECK(e.vs_float <= bounds[b].vs_float, "%s %s: %.3g from the float reference (bound %.0e)", tn,
			    label, e.vs_float, bounds[b].vs_float);
		}
	}
	/* Every tier through a case with each type, and through head lengths
	 * off its vector widths. */
	for (int t = 0; t < attn_tier_count(); t++) {
		if (attn_tier_set(t) < 0) {
			SKIP_CPU_TIER(attn_tier_name(t));
			continue;
		}
		for (size_t b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++) {
			struct errs e = { 0, 0 };
			CHECK(run_case(&cases[4], bounds[b].type, 2, mixed, (int)(sizeof(mixed) / sizeof(mixed[0])), &e) == 0,
			    "out of memory");
			if (bounds[b].type != LLM_KV_Q8_0)
				CHECK(run_case(&cases[ODD_CASE], bounds[b].type, 2, mixed, (int)(sizeof(mixed) / sizeof(mixed[0])),
				    &e) == 0, "out of memory");
			CHECK(e.vs_cache <= bounds[b].vs_cache && e.vs_float <= bounds[b].vs_float,
			    "tier %s, %s: %.3g / %.3g from the references", attn_tier_name(t),
			    llm_kv_type_name(bounds[b].type), e.vs_cache, e.vs_float);
		}
		printf("tier %s: every cache type within its bounds\n", attn_tier_name(t));
	}
	attn_tier_set(-1);
}

int
main(void)
{
	q_init(0);
	test_default_tier();
	if (getenv("TEST_ATTN_TIER_ONLY"))   /* test-tiers.sh: once per NATTER_CPU */
		return test_done("test-attn");
	test_conversions();
	test_ops();
	test_ops_t();
	test_kv_types();
	test_kv_block();
	test_attention();
	return test_done("test-attn");
}
