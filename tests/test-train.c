/* test-train.c -- adapter files, the training operations' gradients, AdamW, and the training model against the engine. */
#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include "llm/pool.h"
#include "natter/gguf-write.h"
#include "natter/gguf.h"
#include "natter/llm.h"
#include "natter/lora.h"
#include "natter/quant.h"
#include "natter/sha256.h"
#include "natter/tok.h"
#include "natter/train.h"
#include "test.h"

static char tmpdir[256];

/* --- helpers --- */

static uint64_t rng_state = 12345;

static double
rnd(void)   /* uniform in [-1, 1) */
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return (double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static void
fill(float *x, size_t n, double amp)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(amp * rnd());
}

static double
dot_d(const float *a, const float *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

/*
 * Central finite differences.  LOSS evaluates the scalar in double from the op's float32
 * outputs; each of the N parameters P[i] is moved by +-H (the step actually taken in float
 * is used as the denominator).  The error of component i is |fd - G[i]| / max_j |G[j]|:
 * relative to the gradient's largest component, so that components near zero do not
 * divide by nothing.  Returns the worst.
 */
typedef double (*loss_fn)(void *ctx);

static double
fd_check(loss_fn loss, void *ctx, float *p, const float *g, size_t n, double h, size_t max_checks)
{
	double gmax = 0, worst = 0;
	size_t stride = n > max_checks ? n / max_checks : 1;

	for (size_t i = 0; i < n; i++)
		if (fabs(g[i]) > gmax)
			gmax = fabs(g[i]);
	if (gmax == 0)
		return INFINITY;   /* a gradient of all zeros checks nothing */
	for (size_t i = 0; i < n; i += stride) {
		float v = p[i], vp = (float)(v + h), vm = (float)(v - h);
		double lp, lm, fd;
		p[i] = vp;
		lp = loss(ctx);
		p[i] = vm;
		lm = loss(ctx);
		p[i] = v;
		fd = (lp - lm) / ((double)vp - (double)vm);
		if (fabs(fd - g[i]) / gmax > worst)
			worst = fabs(fd - g[i]) / gmax;
	}
	return worst;
}

/* The worst relative error of every gradient check, printed at the end. */
static double worst_op = 0, worst_model = 0;

#define OP_TOL 2e-3

static void
report_op(const char *what, double err)
{
	printf("  %-44s worst rel. error %.2e\n", what, err);
	if (err > worst_op)
		worst_op = err;
	CHECK(err <= OP_TOL, "%s: gradient error %.3g above %.0e", what, err, OP_TOL);
}

/* --- operations against finite differences --- */

struct op_ctx {
	int kind;
	int T, D, rows, n_head, n;
	float *x, *y, *r, *w, *g, *u, *h;
	const struct trope *rope;
	const struct tattn *attn;
	float *q, *k, *v, *o, *lse, *qn, *kn;
	float *qnw, *knw;
	int32_t *pos, *tok, *target;
	uint8_t *mask;
	enum tops_act act;
	float cap, scale, eps;
	struct tweight emb;
	const struct tlinear *lin;
	float *lu, *scratch;
	int train;
	uint64_t seed;
	double norm;
};

enum { OP_EMBED, OP_RMSNORM, OP_ROPE, OP_ATTN, OP_QKNORM_ATTN, OP_GLU, OP_SOFTCAP, OP_XENT, OP_LINEAR };

/* Sum of R . (op output), in double. */
static double
op_loss(void *vctx)
{
	struct op_ctx *c = vctx;
	switch (c->kind) {
	case OP_EMBED:
		tops_embed_fwd(&c->emb, c->tok, c->T, c->scale, c->y);
		return dot_d(c->r, c->y, (size_t)c->T * c->D);
	case OP_RMSNORM:
		tops_rmsnorm_fwd(c->x, c->w, c->rows, c->D, c->eps, c->y);
		return dot_d(c->r, c->y, (size_t)c->rows * c->D);
	case OP_ROPE:
		memcpy(c->y, c->x, (size_t)c->T * c->n_head * c->rope->head_dim * sizeof(float));
		tops_rope_fwd(c->rope, c->y, c->T, c->n_head, c->pos);
		return dot_d(c->r, c->y, (size_t)c->T * c->n_head * c->rope->head_dim);
	case OP_ATTN:
		tops_attn_fwd(c->attn, c->q, c->k, c->v, c->T, c->o, c->lse);
		return dot_d(c->r, c->o, (size_t)c->T * c->attn->n_head * c->attn->head_dim);
	case OP_QKNORM_ATTN: {
		/* per-head RMSNorm of q and k, then RoPE, then attention: qwen3 / gemma3's order */
		const struct tattn *a = c->attn;
		tops_rmsnorm_fwd(c->q, c->qnw, c->T * a->n_head, a->head_dim, c->eps, c->qn);
		tops_rmsnorm_fwd(c->k, c->knw, c->T * a->n_head_kv, a->head_dim, c->eps, c->kn);
		tops_rope_fwd(c->rope, c->qn, c->T, a->n_head, c->pos);
		tops_rope_fwd(c->rope, c->kn, c->T, a->n_head_kv, c->pos);
		tops_attn_fwd(a, c->qn, c->kn, c->v, c->T, c->o, c->lse);
		return dot_d(c->r, c->o, (size_t)c->T * a->n_head * a->head_dim);
	}
	case OP_GLU:
		tops_glu_fwd(c->act, c->g, c->u, 2 * c->n, c->rows, c->n, c->h);
		return dot_d(c->r, c->h, (size_t)c->rows * c->n);
	case OP_SOFTCAP:
		memcpy(c->y, c->x, (size_t)c->n * sizeof(float));
		tops_softcap_fwd(c->y, c->n, c->cap);
		return dot_d(c->r, c->y, c->n);
	case OP_XENT:
		return tops_xent(c->x, c->T, c->D, c->target, c->mask, c->norm, NULL, NULL) / c->norm;
	case OP_LINEAR:
		tlinear_fwd(c->lin, NULL, c->x, c->T, c->train, c->seed, c->y, c->lu, c->scratch);
		return dot_d(c->r, c->y, (size_t)c->T * c->lin->w.n_out);
	}
	return 0;
}

static void
test_embed(void)
{
	enum { V = 7, E = 32, T = 6 };
	float emb[V * E], demb[V * E] = { 0 }, y[T * E], r[T * E];
	int32_t tok[T] = { 3, 0, 3, 6, 1, 3 };
	struct op_ctx c = { .kind = OP_EMBED, .T = T, .D = E, .y = y, .r = r, .tok = tok, .scale = 1.5f };
	uint8_t q8[V * (E / 32) * 34];
	float deq[E];

	fill(emb, V * E, 1.0);
	fill(r, T * E, 1.0);
	c.emb = (struct tweight){ emb, GGML_TYPE_F32, E, V, E * sizeof(float) };
	tops_embed_bwd(tok, T, E, 1.5f, r, demb);
	report_op("embedding (repeated tokens, scale 1.5)", fd_check(op_loss, &c, emb, demb, V * E, 1e-2, 400));
	/* A quantized table: each row is the dequantized row. */
	q_traits_get(GGML_TYPE_Q8_0)->from_float(emb, q8, V * E);
	c.emb = (struct tweight){ q8, GGML_TYPE_Q8_0, E, V, q_row_size(GGML_TYPE_Q8_0, E) };
	CHECK(tops_embed_fwd(&c.emb, tok, T, 1.0f, y) == 0, "embedding of a Q8_0 table");
	q_traits_get(GGML_TYPE_Q8_0)->to_float(q8 + 6 * c.emb.row_bytes, deq, E);
	CHECK(memcmp(deq, y + 3 * E, sizeof(deq)) == 0, "Q8_0 embedding row differs from its dequantization");
	tok[2] = V;
	CHECK(tops_embed_fwd(&c.emb, tok, T, 1.0f, y) < 0, "a token past the table is refused");
}

static void
test_rmsnorm(void)
{
	enum { R = 3, D = 24 };
	float x[R * D], w[D], y[R * D], r[R * D], dx[R * D];
	struct op_ctx c = { .kind = OP_RMSNORM, .rows = R, .D = D, .x = x, .w = w, .y = y, .r = r, .eps = 1e-5f };

	fill(x, R * D, 2.0);
	fill(w, D, 1.5);
	fill(r, R * D, 1.0);
	memset(dx, 0, sizeof(dx));
	tops_rmsnorm_bwd(x, w, R, D, c.eps, r, dx);
	report_op("RMSNorm (weighted)", fd_check(op_loss, &c, x, dx, R * D, 1e-2, 400));
	c.w = NULL;
	c.eps = 0.5f;   /* a large epsilon: its term must be right too */
	memset(dx, 0, sizeof(dx));
	tops_rmsnorm_bwd(x, NULL, R, D, c.eps, r, dx);
	report_op("RMSNorm (no weight, eps 0.5)", fd_check(op_loss, &c, x, dx, R * D, 1e-2, 400));
}

static void
test_rope(void)
{
	enum { T = 4, H = 3, HD = 16 };
	float x[T * H * HD], y[T * H * HD], r[T * H * HD], d[T * H * HD], factors[6];
	int32_t pos[T] = { 0, 3, 7, 100 };
	struct trope ro = { HD, 12, 1, 10000.0f, 0.25f, factors, 1.3f };
	struct op_ctx c = { .kind = OP_ROPE, .T = T, .n_head = H, .x = x, .y = y, .r = r, .rope = &ro, .pos = pos };

	for (int i = 0; i < 6; i++)
		factors[i] = 1.0f + 0.5f * i;
	fill(x, T * H * HD, 1.0);
	fill(r, T * H * HD, 1.0);
	for (int neox = 0; neox < 2; neox++) {
		ro.neox = neox;
		memcpy(d, r, sizeof(d));
		tops_rope_bwd(&ro, d, T, H, pos);
		report_op(neox ? "RoPE NeoX, partial 12/16, factors, scale, attn_factor"
			       : "RoPE pairs, partial 12/16, factors, scale, attn_factor",
		    fd_check(op_loss, &c, x, d, T * H * HD, 1e-2, 400));
	}
	/* The rotation keeps norms (attn_factor 1) and leaves the pass-through dims alone. */
	ro.attn_factor = 1.0f;
	memcpy(y, x, sizeof(x));
	tops_rope_fwd(&ro, y, T, H, pos);
	CHECK(fabs(dot_d(y, y, T * H * HD) - dot_d(x, x, T * H * HD)) < 1e-3, "RoPE changes the norm");
	CHECK(memcmp(y + 12, x + 12, 4 * sizeof(float)) == 0, "RoPE touched a dimension past n_rot");
	CHECK(memcmp(y, x, HD * sizeof(float)) == 0, "RoPE at position 0 is not the identity");
}

static void
test_attention(void)
{
	enum { T = 7, H = 4, HKV = 2, HD = 8 };
	float q[T * H * HD], k[T * HKV * HD], v[T * HKV * HD], o[T * H * HD], lse[H * T], r[T * H * HD];
	float dq[T * H * HD], dk[T * HKV * HD], dv[T * HKV * HD];
	float qn[T * H * HD], kn[T * HKV * HD], qnw[HD], knw[HD];
	struct tattn a = { H, HKV, HD, 0.35f, 0, 0.0f, 0 };
	struct op_ctx c = { .kind = OP_ATTN, .T = T, .attn = &a, .q = q, .k = k, .v = v, .o = o, .lse = lse, .r = r };
	static const struct { int window; float cap; const char *name; } cases[] = {
		{ 0, 0.0f, "attention GQA 4/2 heads" },
		{ 3, 0.0f, "attention, sliding window 3" },
		{ 0, 1.5f, "attention, soft-capping 1.5" },
		{ 2, 1.5f, "attention, window 2 and soft-capping" },
	};

	fill(q, sizeof(q) / 4, 1.5);
	fill(k, sizeof(k) / 4, 1.5);
	fill(v, sizeof(v) / 4, 1.0);
	fill(r, sizeof(r) / 4, 1.0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char name[96];
		a.window = cases[i].window;
		a.softcap = cases[i].cap;
		tops_attn_fwd(&a, q, k, v, T, o, lse);
		memset(dq, 0, sizeof(dq));
		memset(dk, 0, sizeof(dk));
		memset(dv, 0, sizeof(dv));
		tops_attn_bwd(&a, q, k, v, o, lse, r, T, dq, dk, dv);
		snprintf(name, sizeof(name), "%s: dq", cases[i].name);
		report_op(name, fd_check(op_loss, &c, q, dq, sizeof(q) / 4, 1e-2, 300));
		snprintf(name, sizeof(name), "%s: dk", cases[i].name);
		report_op(name, fd_check(op_loss, &c, k, dk, sizeof(k) / 4, 1e-2, 300));
		snprintf(name, sizeof(name), "%s: dv", cases[i].name);
		report_op(name, fd_check(op_loss, &c, v, dv, sizeof(v) / 4, 1e-2, 300));
	}
	/* Masking: with window 1 each token sees only itself, so o = v of its KV head. */
	a.window = 1;
	a.softcap = 0;
	tops_attn_fwd(&a, q, k, v, T, o, lse);
	CHECK(memcmp(o + (5 * H + 3) * HD, v + (5 * HKV + 1) * HD, HD * sizeof(float)) == 0,
	    "window 1 should copy the token's own value");
	/* Causality: changing the last token's key and value leaves earlier outputs alone. */
	a.window = 0;
	tops_attn_fwd(&a, q, k, v, T, o, lse);
	memcpy(dq, o, sizeof(o));
	k[(T - 1) * HKV * HD] += 1.0f;
	v[(T - 1) * HKV * HD] += 1.0f;
	tops_attn_fwd(&a, q, k, v, T, o, lse);
	CHECK(memcmp(dq, o, (T - 1) * H * HD * sizeof(float)) == 0, "a later token changed an earlier output");
	CHECK(memcmp(dq + (T - 1) * H * HD, o + (T - 1) * H * HD, H * HD * sizeof(float)) != 0,
	    "the last token ignores its own key");

	/* Per-head q/k RMSNorm, then RoPE (NeoX), then attention, as one chain. */
	{
		struct trope ro = { HD, HD, 1, 10000.0f, 1.0f, NULL, 1.0f };
		int32_t pos[T] = { 0, 1, 2, 3, 4, 5, 6 };
		float dqn[T * H * HD], dkn[T * HKV * HD];
		c.kind = OP_QKNORM_ATTN;
		c.rope = &ro;
		c.pos = pos;
		c.qn = qn;
		c.kn = kn;
		c.qnw = qnw;
		c.knw = knw;
		c.eps = 1e-6f;
		fill(qnw, HD, 1.5);
		fill(knw, HD, 1.5);
		a.window = 0;
		a.softcap = 0;
		op_loss(&c);
		memset(dqn, 0, sizeof(dqn));
		memset(dkn, 0, sizeof(dkn));
		memset(dv, 0, sizeof(dv));
		tops_attn_bwd(&a, qn, kn, v, o, lse, r, T, dqn, dkn, dv);
		tops_rope_bwd(&ro, dqn, T, H, pos);
		tops_rope_bwd(&ro, dkn, T, HKV, pos);
		memset(dq, 0, sizeof(dq));
		memset(dk, 0, sizeof(dk));
		tops_rmsnorm_bwd(q, qnw, T * H, HD, c.eps, dqn, dq);
		tops_rmsnorm_bwd(k, knw, T * HKV, HD, c.eps, dkn, dk);
		report_op("q/k head RMSNorm + RoPE + attention: dq", fd_check(op_loss, &c, q, dq, sizeof(q) / 4, 1e-2, 300));
		report_op("q/k head RMSNorm + RoPE + attention: dk", fd_check(op_loss, &c, k, dk, sizeof(k) / 4, 1e-2, 300));
	}
}

/* The blocked attention (sgemm over blocks of 64 queries, what the training model runs)
 * against the scalar reference, across block boundaries, with each KV head done by its own
 * call as the threads split them. */
static void
test_attention_blocked(void)
{
	enum { T = 150, H = 6, HKV = 2, HD = 16 };
	static const struct { int window; float cap; int hdv; } cases[] = {
		{ 0, 0.0f, 0 }, { 70, 0.0f, 0 }, { 0, 2.0f, 0 }, { 9, 2.0f, 0 }, { 9, 2.0f, 10 },   /* values of 10 < 16 */
	};
	const size_t NQ = (size_t)T * H * HD, NK = (size_t)T * HKV * HD;
	float *buf = malloc(sizeof(float) * (4 * NQ + 2 * NK + 2 * (size_t)H * T + 6 * NK + 2 * NQ));
	float *q = buf, *r = q + NQ, *o[2], *lse[2], *k, *v, *dk[2], *dv[2], *dq[2];
	float *scr = malloc(tops_attn_scratch_floats(T) * sizeof(float));
	double worst = 0;

	o[0] = r + NQ;
	o[1] = o[0] + NQ;
	k = o[1] + NQ;
	v = k + NK;
	lse[0] = v + NK;
	lse[1] = lse[0] + (size_t)H * T;
	dk[0] = lse[1] + (size_t)H * T;
	dk[1] = dk[0] + NK;
	dv[0] = dk[1] + NK;
	dv[1] = dv[0] + NK;
	dq[0] = dv[1] + NK;
	dq[1] = dq[0] + NQ;
	fill(q, NQ, 1.0);
	fill(k, NK, 1.0);
	fill(v, NK, 1.0);
	fill(r, NQ, 1.0);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct tattn a = { H, HKV, HD, 0.25f, cases[c].window, cases[c].cap, cases[c].hdv };
		const size_t NO = (size_t)T * H * (cases[c].hdv ? cases[c].hdv : HD);
		const size_t NV = (size_t)T * HKV * (cases[c].hdv ? cases[c].hdv : HD);
		double e = 0, m = 0;
		memset(dk[0], 0, sizeof(float) * (4 * NK + 2 * NQ));
		tops_attn_fwd(&a, q, k, v, T, o[0], lse[0]);
		tops_attn_bwd(&a, q, k, v, o[0], lse[0], r, T, dq[0], dk[0], dv[0]);
		for (int kv = 0; kv < HKV; kv++)
			tops_attn_fwd_blocked(&a, q, k, v, T, o[1], lse[1], kv, kv + 1, scr);
		for (int kv = 0; kv < HKV; kv++)
			tops_attn_bwd_blocked(&a, q, k, v, o[1], lse[1], r, T, dq[1], dk[1], dv[1], kv, kv + 1, scr);
		for (size_t i = 0; i < NQ; i++) {
			e = fmax(e, fabs((double)dq[0][i] - dq[1][i]));
			m = fmax(m, fabs(dq[0][i]));
		}
		for (size_t i = 0; i < NO; i++) {
			e = fmax(e, fabs((double)o[0][i] - o[1][i]));
			m = fmax(m, fabs(o[0][i]));
		}
		for (size_t i = 0; i < NK; i++) {
			e = fmax(e, fabs((double)dk[0][i] - dk[1][i]));
			m = fmax(m, fabs(dk[0][i]));
		}
		for (size_t i = 0; i < NV; i++) {
			e = fmax(e, fabs((double)dv[0][i] - dv[1][i]));
			m = fmax(m, fabs(dv[0][i]));
		}
		for (size_t i = 0; i < (size_t)H * T; i++)
			e = fmax(e, fabs((double)lse[0][i] - lse[1][i]));
		worst = fmax(worst, e / m);
	}
	printf("  blocked attention (sgemm) vs the scalar reference, %d tokens (value heads of 16 and 10): max rel. error "
	    "%.1e\n", T, worst);
	CHECK(worst <= 1e-5, "blocked attention differs from the reference by %.3g", worst);
	free(buf);
	free(scr);
}

static void
test_glu(void)
{
	enum { R = 3, N = 10 };
	float gu[R * 2 * N], h[R * N], r[R * N], dgu[R * 2 * N];
	struct op_ctx c = { .kind = OP_GLU, .rows = R, .n = N, .g = gu, .u = gu + N, .h = h, .r = r };

	fill(gu, R * 2 * N, 3.0);
	fill(r, R * N, 1.0);
	for (int act = 0; act < 2; act++) {
		c.act = act ? TOPS_GELU_TANH : TOPS_SILU;
		memset(dgu, 0, sizeof(dgu));
		tops_glu_bwd(c.act, gu, gu + N, 2 * N, R, N, r, dgu, dgu + N);
		report_op(act ? "GELU-tanh gate (fused rows)" : "SwiGLU (fused rows)",
		    fd_check(op_loss, &c, gu, dgu, R * 2 * N, 1e-2, 400));
	}
	/* Values: silu(1) = 1/(1+e^-1); gelu_tanh(1) = 0.5 (1 + tanh(sqrt(2/pi) 1.044715)). */
	{
		float g1 = 1.0f, u1 = 2.0f, out;
		tops_glu_fwd(TOPS_SILU, &g1, &u1, 1, 1, 1, &out);
		CHECK(fabs(out - 2.0 * 0.7310585786300049) < 1e-6, "silu(1) * 2 = %g", out);
		tops_glu_fwd(TOPS_GELU_TANH, &g1, &u1, 1, 1, 1, &out);
		CHECK(fabs(out - 2.0 * 0.8411919906082768) < 1e-6, "gelu_tanh(1) * 2 = %g", out);
	}
}

static void
test_softcap_xent(void)
{
	enum { N = 20, T = 4, V = 9 };
	float x[N], y[N], r[N], d[N], lg[T * V], dl[T * V];
	int32_t target[T] = { 3, 8, 0, 5 };
	uint8_t mask[T] = { 1, 0, 1, 1 };
	struct op_ctx c = { .kind = OP_SOFTCAP, .n = N, .x = x, .y = y, .r = r, .cap = 2.5f };
	int cnt;
	double nll;

	fill(x, N, 5.0);
	fill(r, N, 1.0);
	memcpy(y, x, sizeof(x));
	tops_softcap_fwd(y, N, c.cap);
	memcpy(d, r, sizeof(r));
	tops_softcap_bwd(y, N, c.cap, d);
	report_op("logit soft-capping", fd_check(op_loss, &c, x, d, N, 1e-2, 400));

	fill(lg, T * V, 3.0);
	c = (struct op_ctx){ .kind = OP_XENT, .T = T, .D = V, .x = lg, .target = target, .mask = mask, .norm = 3.0 };
	nll = tops_xent(lg, T, V, target, mask, 3.0, dl, &cnt);
	CHECK(cnt == 3, "loss mask: %d rows counted", cnt);
	for (int j = 0; j < V; j++)
		CHECK(dl[V + j] == 0.0f, "a masked row has a gradient");
	{
		/* -log softmax by hand for row 0. */
		double z = 0;
		for (int j = 0; j < V; j++)
			z += exp(lg[j]);
		double row0 = log(z) - lg[target[0]];
		double sum = row0;
		for (int t = 2; t < T; t++) {
			z = 0;
			for (int j = 0; j < V; j++)
				z += exp(lg[t * V + j]);
			sum += log(z) - lg[t * V + target[t]];
		}
		CHECK(fabs(nll - sum) < 1e-9 * fabs(sum), "cross-entropy %.12g, by hand %.12g", nll, sum);
	}
	report_op("softmax cross-entropy with a loss mask", fd_check(op_loss, &c, lg, dl, T * V, 1e-2, 400));
}

/* --- the newer operations against finite differences in double precision --- */

/*
 * Each check below has its own forward written here in double (not the operation's code),
 * differentiates it by central differences with a step of 1e-6 (truncation error about
 * 1e-12, rounding about 1e-10), and compares the operation's analytic gradient, computed
 * in float, with it: what remains is float's own rounding.  Errors are relative to the
 * gradient's largest component.
 */
#define OPD_TOL 1e-5
#define OPD_H 1e-6

static double worst_opd = 0;

static void
report_opd(const char *what, double err)
{
	printf("  %-52s worst rel. error %.2e\n", what, err);
	worst_opd = fmax(worst_opd, err);
	CHECK(err <= OPD_TOL, "%s: gradient error %.3g above %.0e (double-precision differences)", what, err, OPD_TOL);
}

/* Central differences of LOSS (double) over the N doubles P, against the float gradient G. */
typedef double (*dloss_fn)(void *ctx);

static double
fd_check_d(dloss_fn loss, void *ctx, double *p, const float *g, size_t n)
{
	double gmax = 0, worst = 0;
	for (size_t i = 0; i < n; i++)
		gmax = fmax(gmax, fabs(g[i]));
	if (gmax == 0)
		return INFINITY;
	for (size_t i = 0; i < n; i++) {
		double v = p[i], lp, lm;
		p[i] = v + OPD_H;
		lp = loss(ctx);
		p[i] = v - OPD_H;
		lm = loss(ctx);
		p[i] = v;
		worst = fmax(worst, fabs((lp - lm) / (2 * OPD_H) - g[i]) / gmax);
	}
	return worst;
}

static void
to_float(const double *d, float *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		f[i] = (float)d[i];
}

static void
fill_d(double *x, size_t n, double amp)
{
	for (size_t i = 0; i < n; i++)
		x[i] = amp * rnd();
}

/* Soft-capping and the GELU-tanh gate. */
struct capglu_ctx {
	int n;
	double cap, *x, *r, *g, *u;
};

static double
softcap_loss_d(void *vc)
{
	struct capglu_ctx *c = vc;
	double s = 0;
	for (int i = 0; i < c->n; i++)
		s += c->r[i] * c->cap * tanh(c->x[i] / c->cap);
	return s;
}

static double
gelu_d(double x)
{
	return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

static double
glu_loss_d(void *vc)
{
	struct capglu_ctx *c = vc;
	double s = 0;
	for (int i = 0; i < c->n; i++)
		s += c->r[i] * gelu_d(c->g[i]) * c->u[i];
	return s;
}

static void
test_capglu_d(void)
{
	enum { N = 48 };
	double x[N], r[N], g[N], u[N];
	float xf[N], yf[N], d[N], gf[N], uf[N], hf[N], dg[N] = { 0 }, du[N] = { 0 }, rf[N];
	struct capglu_ctx c = { N, 4.0, x, r, g, u };
	double fwd = 0;

	fill_d(x, N, 12.0);   /* well into the cap's flat part, and across it */
	fill_d(r, N, 1.0);
	to_float(x, xf, N);
	to_float(r, rf, N);
	memcpy(yf, xf, sizeof(xf));
	tops_softcap_fwd(yf, N, (float)c.cap);
	for (int i = 0; i < N; i++)
		fwd = fmax(fwd, fabs(yf[i] - c.cap * tanh(xf[i] / c.cap)));
	memcpy(d, rf, sizeof(rf));
	tops_softcap_bwd(yf, N, (float)c.cap, d);
	CHECK(fwd <= 4e-6, "soft-capping forward differs from tanh in double by %.3g", fwd);
	report_opd("soft-capping (cap 4, inputs to +-12)", fd_check_d(softcap_loss_d, &c, x, d, N));

	fill_d(g, N, 4.0);
	fill_d(u, N, 2.0);
	to_float(g, gf, N);
	to_float(u, uf, N);
	tops_glu_fwd(TOPS_GELU_TANH, gf, uf, N, 1, N, hf);
	fwd = 0;
	for (int i = 0; i < N; i++)
		fwd = fmax(fwd, fabs(hf[i] - gelu_d(gf[i]) * uf[i]));
	CHECK(fwd <= 1e-5, "GELU-tanh gate forward differs from the double reference by %.3g", fwd);
	tops_glu_bwd(TOPS_GELU_TANH, gf, uf, N, 1, N, rf, dg, du);
	report_opd("GELU-tanh gate: d gate", fd_check_d(glu_loss_d, &c, g, dg, N));
	report_opd("GELU-tanh gate: d up", fd_check_d(glu_loss_d, &c, u, du, N));
}

/* Per-head q/k RMSNorm, then RoPE (NeoX, partial, factors, scaling, attn_factor), then
 * attention (GQA, window, soft-capping, value heads narrower than the key heads). */
enum { QK_T = 7, QK_H = 4, QK_HKV = 2, QK_HD = 16, QK_HDV = 12, QK_ROT = 12 };

struct qkchain_ctx {
	double *q, *k, *v, *qw, *kw, *r, *factors;
	double eps, base, freq_scale, attn_factor, scale, cap;
	int window;
};

/*
 * The readout of causal GQA attention in double: the sum over t, h, i of
 * R (T, H, HDV) times the attention of Q (T, H, HD) over K (T, HKV, HD)
 * and V (T, HKV, HDV), scores times SCALE, soft-capped when CAP > 0, each
 * query seeing its last WINDOW keys when WINDOW > 0.  T at most 64.  The
 * forward of the attention gradient checks.
 */
static double
attn_readout_d(const double *q, const double *k, const double *v, const double *r, int T, int H, int HKV, int HD,
	       int HDV, int window, double scale, double cap)
{
	double loss = 0;

	for (int t = 0; t < T; t++)
		for (int h = 0; h < H; h++) {
			const int kvh = h / (H / HKV), lo = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
			double sc[64], m = -INFINITY, z = 0;
			for (int j = lo; j <= t; j++) {
				double d = 0;
				for (int i = 0; i < HD; i++)
					d += q[((size_t)t * H + h) * HD + i] * k[((size_t)j * HKV + kvh) * HD + i];
				sc[j] = d * scale;
				if (cap > 0)
					sc[j] = cap * tanh(sc[j] / cap);
				m = fmax(m, sc[j]);
			}
			for (int j = lo; j <= t; j++)
				z += exp(sc[j] - m);
			for (int i = 0; i < HDV; i++) {
				double o = 0;
				for (int j = lo; j <= t; j++)
					o += exp(sc[j] - m) / z * v[((size_t)j * HKV + kvh) * HDV + i];
				loss += r[((size_t)t * H + h) * HDV + i] * o;
			}
		}
	return loss;
}

static void
headnorm_rope_d(const struct qkchain_ctx *c, const double *x, const double *w, int t, double *y)
{
	double ss = 0, s;
	for (int i = 0; i < QK_HD; i++)
		ss += x[i] * x[i];
	s = 1.0 / sqrt(ss / QK_HD + c->eps);
	for (int i = 0; i < QK_HD; i++)
		y[i] = x[i] * s * w[i];
	for (int i = 0; i < QK_ROT / 2; i++) {
		double th = t * c->freq_scale * pow(c->base, -2.0 * i / QK_ROT) / c->factors[i];
		double a = y[i], b = y[i + QK_ROT / 2];
		y[i] = (a * cos(th) - b * sin(th)) * c->attn_factor;
		y[i + QK_ROT / 2] = (a * sin(th) + b * cos(th)) * c->attn_factor;
	}
}

static double
qkchain_loss_d(void *vc)
{
	const struct qkchain_ctx *c = vc;
	double qn[QK_T][QK_H][QK_HD], kn[QK_T][QK_HKV][QK_HD];

	for (int t = 0; t < QK_T; t++) {
		for (int h = 0; h < QK_H; h++)
			headnorm_rope_d(c, c->q + ((size_t)t * QK_H + h) * QK_HD, c->qw, t, qn[t][h]);
		for (int h = 0; h < QK_HKV; h++)
			headnorm_rope_d(c, c->k + ((size_t)t * QK_HKV + h) * QK_HD, c->kw, t, kn[t][h]);
	}
	return attn_readout_d(&qn[0][0][0], &kn[0][0][0], c->v, c->r, QK_T, QK_H, QK_HKV, QK_HD, QK_HDV, c->window, c->scale,
	    c->cap);
}

static void
test_qkchain_d(void)
{
	enum { NQ = QK_T * QK_H * QK_HD, NK = QK_T * QK_HKV * QK_HD, NV = QK_T * QK_HKV * QK_HDV, NO = QK_T * QK_H * QK_HDV };
	double q[NQ], k[NK], v[NV], qw[QK_HD], kw[QK_HD], r[NO], factors[QK_ROT / 2];
	float qf[NQ], kf[NK], vf[NV], qwf[QK_HD], kwf[QK_HD], rf[NO], ff[QK_ROT / 2];
	float qn[NQ], kn[NK], o[NO], lse[QK_H * QK_T], dqn[NQ] = { 0 }, dkn[NK] = { 0 }, dv[NV] = { 0 };
	float dq[NQ] = { 0 }, dk[NK] = { 0 }, *scr = malloc(tops_attn_scratch_floats(QK_T) * sizeof(float));
	int32_t pos[QK_T];
	struct qkchain_ctx c = { q, k, v, qw, kw, r, factors, 1e-6, 10000.0, 0.5, 1.2, 0.3, 2.0, 3 };
	struct trope ro = { QK_HD, QK_ROT, 1, 10000.0f, 0.5f, ff, 1.2f };
	struct tattn a = { QK_H, QK_HKV, QK_HD, 0.3f, 3, 2.0f, QK_HDV };
	double fwd = 0;

	fill_d(q, NQ, 1.5);
	fill_d(k, NK, 1.5);
	fill_d(v, NV, 1.0);
	fill_d(r, NO, 1.0);
	for (int i = 0; i < QK_HD; i++) {
		qw[i] = 1.0 + 0.5 * rnd();   /* Gemma files hold 1 + w */
		kw[i] = 1.0 + 0.5 * rnd();
	}
	for (int i = 0; i < QK_ROT / 2; i++)
		factors[i] = 1.0 + 0.75 * i;
	for (int t = 0; t < QK_T; t++)
		pos[t] = t;
	to_float(q, qf, NQ);
	to_float(k, kf, NK);
	to_float(v, vf, NV);
	to_float(r, rf, NO);
	to_float(qw, qwf, QK_HD);
	to_float(kw, kwf, QK_HD);
	to_float(factors, ff, QK_ROT / 2);
	/* The forward as the training model runs it (the blocked attention). */
	tops_rmsnorm_fwd(qf, qwf, QK_T * QK_H, QK_HD, (float)c.eps, qn);
	tops_rmsnorm_fwd(kf, kwf, QK_T * QK_HKV, QK_HD, (float)c.eps, kn);
	tops_rope_fwd(&ro, qn, QK_T, QK_H, pos);
	tops_rope_fwd(&ro, kn, QK_T, QK_HKV, pos);
	tops_attn_fwd_blocked(&a, qn, kn, vf, QK_T, o, lse, 0, QK_HKV, scr);
	for (int i = 0; i < NO; i++)
		fwd += (double)rf[i] * o[i];
	fwd = fabs(fwd - qkchain_loss_d(&c)) / fabs(qkchain_loss_d(&c));
	CHECK(fwd <= 1e-5, "q/k norm chain: forward differs from the double reference by %.3g", fwd);
	tops_attn_bwd_blocked(&a, qn, kn, vf, o, lse, rf, QK_T, dqn, dkn, dv, 0, QK_HKV, scr);
	tops_rope_bwd(&ro, dqn, QK_T, QK_H, pos);
	tops_rope_bwd(&ro, dkn, QK_T, QK_HKV, pos);
	tops_rmsnorm_bwd(qf, qwf, QK_T * QK_H, QK_HD, (float)c.eps, dqn, dq);
	tops_rmsnorm_bwd(kf, kwf, QK_T * QK_HKV, QK_HD, (float)c.eps, dkn, dk);
	report_opd("q/k head norm, partial RoPE, capped GQA attention: dq", fd_check_d(qkchain_loss_d, &c, q, dq, NQ));
	report_opd("q/k head norm, partial RoPE, capped GQA attention: dk", fd_check_d(qkchain_loss_d, &c, k, dk, NK));
	report_opd("q/k head norm, partial RoPE, capped GQA attention: dv", fd_check_d(qkchain_loss_d, &c, v, dv, NV));
	free(scr);
}

/* Routing: softmax, top k, weights renormalised or not. */
enum { RT_T = 6, RT_N = 5, RT_K = 2 };

struct route_ctx {
	double *logits, *c;   /* (T, N); c: what each expert's output contributes per unit weight */
	int norm;
	int32_t sel[RT_T * RT_K];
};

static double
route_loss_d(void *vc)
{
	const struct route_ctx *rc = vc;
	double loss = 0;
	for (int t = 0; t < RT_T; t++) {
		const double *l = rc->logits + t * RT_N;
		double m = -INFINITY, z = 0, w[RT_K], s = 0;
		for (int i = 0; i < RT_N; i++)
			m = fmax(m, l[i]);
		for (int i = 0; i < RT_N; i++)
			z += exp(l[i] - m);
		for (int j = 0; j < RT_K; j++) {
			w[j] = exp(l[rc->sel[t * RT_K + j]] - m) / z;
			s += w[j];
		}
		for (int j = 0; j < RT_K; j++)
			loss += (rc->norm ? w[j] / s : w[j]) * rc->c[t * RT_N + rc->sel[t * RT_K + j]];
	}
	return loss;
}

static void
test_route_d(void)
{
	double lg[RT_T * RT_N], cc[RT_T * RT_N];
	float lf[RT_T * RT_N], probs[RT_T * RT_N], w[RT_T * RT_K], dw[RT_T * RT_K];
	int32_t sel[RT_T * RT_K];
	struct route_ctx c = { lg, cc, 0, { 0 } };
	double gap = INFINITY;

	fill_d(lg, RT_T * RT_N, 2.0);
	fill_d(cc, RT_T * RT_N, 1.0);
	to_float(lg, lf, RT_T * RT_N);
	for (int norm = 0; norm < 2; norm++) {
		float dl[RT_T * RT_N] = { 0 };
		double e = 0;
		c.norm = norm;
		tops_moe_route_fwd(lf, RT_T, RT_N, RT_K, norm, 0, probs, sel, w);
		for (int t = 0; t < RT_T; t++) {
			/* the choice: the K largest logits, highest first; the step never flips it */
			double kth = lf[t * RT_N + sel[t * RT_K + RT_K - 1]], next = -INFINITY;
			for (int i = 0; i < RT_N; i++) {
				int taken = 0;
				for (int j = 0; j < RT_K; j++)
					taken |= sel[t * RT_K + j] == i;
				if (!taken)
					next = fmax(next, lf[t * RT_N + i]);
			}
			gap = fmin(gap, kth - next);
			CHECK(lf[t * RT_N + sel[t * RT_K]] >= kth, "routing: not highest first");
		}
		memcpy(c.sel, sel, sizeof(sel));
		for (int t = 0; t < RT_T * RT_K; t++)
			dw[t] = (float)cc[(t / RT_K) * RT_N + sel[t]];
		/* The weights against the double reference (the loss with unit contributions). */
		for (int t = 0; t < RT_T; t++) {
			double m = -INFINITY, z = 0, s = 0;
			for (int i = 0; i < RT_N; i++)
				m = fmax(m, lg[t * RT_N + i]);
			for (int i = 0; i < RT_N; i++)
				z += exp(lg[t * RT_N + i] - m);
			for (int j = 0; j < RT_K; j++)
				s += exp(lg[t * RT_N + sel[t * RT_K + j]] - m) / z;
			for (int j = 0; j < RT_K; j++) {
				double ref = exp(lg[t * RT_N + sel[t * RT_K + j]] - m) / z / (norm ? s : 1.0);
				e = fmax(e, fabs(ref - w[t * RT_K + j]));
			}
		}
		CHECK(e <= 1e-6, "routing weights differ from the double reference by %.3g", e);
		tops_moe_route_bwd(probs, sel, w, RT_T, RT_N, RT_K, norm, dw, dl);
		report_opd(norm ? "MoE routing, top 2 of 5, renormalised: d logits" : "MoE routing, top 2 of 5: d logits",
		    fd_check_d(route_loss_d, &c, lg, dl, RT_T * RT_N));
	}
	CHECK(gap > 1e3 * OPD_H, "routing test: a gap of %.3g lets the step flip a choice", gap);
	/* A tie goes to the lower index; KEEP keeps a choice the logits no longer make. */
	{
		float l[4] = { 0.5f, 2.0f, 0.5f, 2.0f }, p[4], ww[2];
		int32_t s[2];
		tops_moe_route_fwd(l, 1, 4, 2, 1, 0, p, s, ww);
		CHECK(s[0] == 1 && s[1] == 3 && ww[0] == 0.5f, "routing of 2.0 and 2.0: experts %d, %d", s[0], s[1]);
		tops_moe_route_fwd(l, 1, 4, 1, 0, 0, p, s, ww);
		CHECK(s[0] == 1, "routing tie: expert %d, not the lower index 1", s[0]);
		s[0] = 2;
		s[1] = 0;
		tops_moe_route_fwd(l, 1, 4, 2, 1, 1, p, s, ww);
		CHECK(s[0] == 2 && s[1] == 0 && ww[0] == 0.5f && ww[1] == 0.5f, "routing kept: %d %d %g", s[0], s[1], ww[0]);
	}
}

/* --- the Gated DeltaNet layer's operations and the gated attention's output gate --- */

/* The causal depthwise convolution and SiLU: T tokens of C channels, width K. */
enum { CV_T = 9, CV_C = 5, CV_K = 4 };

struct conv_ctx {
	double *x, *w, *r;
};

static double
sig_d(double x)
{
	return 1.0 / (1.0 + exp(-x));
}

static double
conv_loss_d(void *vc)
{
	const struct conv_ctx *c = vc;
	double loss = 0;
	for (int t = 0; t < CV_T; t++)
		for (int ch = 0; ch < CV_C; ch++) {
			double p = 0;
			for (int j = 0; j < CV_K; j++)
				if (t - (CV_K - 1) + j >= 0)
					p += c->w[ch * CV_K + j] * c->x[(t - (CV_K - 1) + j) * CV_C + ch];
			loss += c->r[t * CV_C + ch] * p * sig_d(p);
		}
	return loss;
}

static void
test_conv_d(void)
{
	enum { N = CV_T * CV_C };
	double x[N], w[CV_C * CV_K], r[N];
	float xf[N], wf[CV_C * CV_K], rf[N], y[N], dx[N] = { 0 };
	struct conv_ctx c = { x, w, r };
	double fwd = 0, ref;

	fill_d(x, N, 1.5);
	fill_d(w, CV_C * CV_K, 1.0);
	fill_d(r, N, 1.0);
	to_float(x, xf, N);
	to_float(w, wf, CV_C * CV_K);
	to_float(r, rf, N);
	/* two calls over channels [0, 2) and [2, 5), as threads split them */
	tops_conv_silu_fwd(xf, CV_C, CV_T, 2, wf, CV_K, y);
	tops_conv_silu_fwd(xf + 2, CV_C, CV_T, CV_C - 2, wf + 2 * CV_K, CV_K, y + 2);
	for (int i = 0; i < N; i++)
		fwd += (double)rf[i] * y[i];
	ref = conv_loss_d(&c);
	CHECK(fabs(fwd - ref) <= 1e-5 * fabs(ref), "conv1d + SiLU: forward %.8g, double %.8g", fwd, ref);
	tops_conv_silu_bwd(xf, CV_C, CV_T, 2, wf, CV_K, rf, dx);
	tops_conv_silu_bwd(xf + 2, CV_C, CV_T, CV_C - 2, wf + 2 * CV_K, CV_K, rf + 2, dx + 2);
	report_opd("causal depthwise conv1d (width 4) + SiLU: dx", fd_check_d(conv_loss_d, &c, x, dx, N));
}

/* L2-normed q and k, the gates from alpha, b, A_log and dt_bias, and the delta rule over
 * a sequence long enough for several of the backward's chunks (13 tokens: chunks of 4). */
enum { DL_T = 13, DL_HK = 2, DL_HV = 4, DL_DK = 5, DL_DV = 3 };

struct delta_ctx {
	double *q, *k, *v, *alpha, *b, *alog, *dt, *r;
	double eps;
};

static void
l2n_d(const double *x, int D, double eps, double scale, double *y)
{
	double ss = 0;
	for (int i = 0; i < D; i++)
		ss += x[i] * x[i];
	ss = fmax(sqrt(ss), eps);
	for (int i = 0; i < D; i++)
		y[i] = x[i] * scale / ss;
}

static double
delta_loss_d(void *vc)
{
	const struct delta_ctx *c = vc;
	double loss = 0;
	for (int h = 0; h < DL_HV; h++) {
		const int kh = h % DL_HK;   /* tiled */
		double S[DL_DK][DL_DV] = { { 0 } };
		for (int t = 0; t < DL_T; t++) {
			double q[DL_DK], k[DL_DK], u[DL_DV] = { 0 }, d[DL_DV];
			const double *v = c->v + ((size_t)t * DL_HV + h) * DL_DV;
			const double x = c->alpha[t * DL_HV + h] + c->dt[h];
			const double g = -exp(c->alog[h]) * (x > 20 ? x : log1p(exp(x))), beta = sig_d(c->b[t * DL_HV + h]);
			l2n_d(c->q + ((size_t)t * DL_HK + kh) * DL_DK, DL_DK, c->eps, 1.0 / sqrt(DL_DK), q);
			l2n_d(c->k + ((size_t)t * DL_HK + kh) * DL_DK, DL_DK, c->eps, 1.0, k);
			for (int i = 0; i < DL_DK; i++)
				for (int j = 0; j < DL_DV; j++) {
					S[i][j] *= exp(g);
					u[j] += S[i][j] * k[i];
				}
			for (int j = 0; j < DL_DV; j++)
				d[j] = beta * (v[j] - u[j]);
			for (int i = 0; i < DL_DK; i++)
				for (int j = 0; j < DL_DV; j++)
					S[i][j] += k[i] * d[j];
			for (int j = 0; j < DL_DV; j++) {
				double o = 0;
				for (int i = 0; i < DL_DK; i++)
					o += S[i][j] * q[i];
				loss += c->r[((size_t)t * DL_HV + h) * DL_DV + j] * o;
			}
		}
	}
	return loss;
}

static void
test_delta_d(void)
{
	enum { NQ = DL_T * DL_HK * DL_DK, NV = DL_T * DL_HV * DL_DV, NG = DL_T * DL_HV };
	double q[NQ], k[NQ], v[NV], al[NG], b[NG], alog[DL_HV], dt[DL_HV], r[NV];
	float qf[NQ], kf[NQ], vf[NV], alf[NG], bf[NG], af[DL_HV], dtf[DL_HV], rf[NV];
	float qn[NQ], kn[NQ], g[NG], beta[NG], o[NV];
	float dqn[NQ] = { 0 }, dkn[NQ] = { 0 }, dq[NQ] = { 0 }, dk[NQ] = { 0 }, dv[NV] = { 0 }, dg[NG] = { 0 };
	float dbeta[NG] = { 0 }, dal[NG] = { 0 }, db[NG] = { 0 }, da[DL_HV] = { 0 }, ddt[DL_HV] = { 0 };
	float dalog[DL_HV];
	const struct tdelta dl = { DL_HK, DL_HV, DL_DK, DL_DV };
	struct delta_ctx c = { q, k, v, al, b, alog, dt, r, 1e-6 };
	float *scr = malloc(tops_delta_scratch_floats(&dl, DL_T) * sizeof(float));
	double fwd = 0, ref;

	fill_d(q, NQ, 1.0);
	fill_d(k, NQ, 1.0);
	fill_d(v, NV, 1.0);
	fill_d(al, NG, 1.5);
	fill_d(b, NG, 2.0);
	fill_d(alog, DL_HV, 0.7);
	fill_d(dt, DL_HV, 0.5);
	fill_d(r, NV, 1.0);
	to_float(q, qf, NQ);
	to_float(k, kf, NQ);
	to_float(v, vf, NV);
	to_float(al, alf, NG);
	to_float(b, bf, NG);
	to_float(dt, dtf, DL_HV);
	to_float(r, rf, NV);
	for (int h = 0; h < DL_HV; h++)
		af[h] = (float)-exp(alog[h]);   /* the file's ssm_a */
	tops_l2norm_fwd(qf, DL_T * DL_HK, DL_DK, (float)c.eps, 1.0f / sqrtf(DL_DK), qn);
	tops_l2norm_fwd(kf, DL_T * DL_HK, DL_DK, (float)c.eps, 1.0f, kn);
	tops_dn_gates_fwd(alf, bf, DL_T, DL_HV, af, dtf, g, beta);
	/* two calls over key heads 0 and 1, as threads split them */
	tops_delta_fwd(&dl, qn, kn, vf, g, beta, DL_T, o, 0, 1, scr);
	tops_delta_fwd(&dl, qn, kn, vf, g, beta, DL_T, o, 1, 2, scr);
	for (int i = 0; i < NV; i++)
		fwd += (double)rf[i] * o[i];
	ref = delta_loss_d(&c);
	CHECK(fabs(fwd - ref) <= 1e-5 * fabs(ref), "gated delta rule: forward %.8g, double %.8g", fwd, ref);
	tops_delta_bwd(&dl, qn, kn, vf, g, beta, rf, DL_T, dqn, dkn, dv, dg, dbeta, 1, 2, scr);
	tops_delta_bwd(&dl, qn, kn, vf, g, beta, rf, DL_T, dqn, dkn, dv, dg, dbeta, 0, 1, scr);
	tops_dn_gates_bwd(alf, bf, DL_T, DL_HV, af, dtf, dg, dbeta, dal, db, da, ddt);
	for (int h = 0; h < DL_HV; h++)
		dalog[h] = da[h] * af[h];   /* ssm_a = -exp(A_log) */
	tops_l2norm_bwd(qf, DL_T * DL_HK, DL_DK, (float)c.eps, 1.0f / sqrtf(DL_DK), dqn, dq);
	tops_l2norm_bwd(kf, DL_T * DL_HK, DL_DK, (float)c.eps, 1.0f, dkn, dk);
	report_opd("L2 norm + gated delta rule (13 tokens, 2/4 heads): dq", fd_check_d(delta_loss_d, &c, q, dq, NQ));
	report_opd("L2 norm + gated delta rule: dk", fd_check_d(delta_loss_d, &c, k, dk, NQ));
	report_opd("gated delta rule: dv", fd_check_d(delta_loss_d, &c, v, dv, NV));
	report_opd("gated delta rule, decay softplus(alpha + dt_bias): d alpha", fd_check_d(delta_loss_d, &c, al, dal, NG));
	report_opd("gated delta rule, beta = sigmoid(b): d b", fd_check_d(delta_loss_d, &c, b, db, NG));
	report_opd("gated delta rule, decay -exp(A_log): d A_log", fd_check_d(delta_loss_d, &c, alog, dalog, DL_HV));
	report_opd("gated delta rule, decay: d dt_bias", fd_check_d(delta_loss_d, &c, dt, ddt, DL_HV));
	/* a row below eps: L2 norm divides by eps, a constant */
	{
		float x[3] = { 1e-7f, -2e-7f, 0 }, y[3], dy[3] = { 1, 2, 3 }, dx[3] = { 0 };
		tops_l2norm_fwd(x, 1, 3, 1e-6f, 1.0f, y);
		tops_l2norm_bwd(x, 1, 3, 1e-6f, 1.0f, dy, dx);
		CHECK(fabs(y[1] + 0.2) < 1e-6 && fabs(dx[2] - 3e6) < 1, "L2 norm below eps: y %g, dx %g", y[1], dx[2]);
	}
	free(scr);
}

/* The gated RMSNorm and the sigmoid output gate. */
enum { GN_R = 6, GN_D = 7, SG_N = 23 };

struct gnorm_ctx {
	double *o, *z, *w, *r, eps;
	double *x, *gate, *rs;
};

static double
gnorm_loss_d(void *vc)
{
	const struct gnorm_ctx *c = vc;
	double loss = 0;
	for (int i = 0; i < GN_R; i++) {
		const double *o = c->o + i * GN_D, *z = c->z + i * GN_D;
		double ss = 0, s;
		for (int j = 0; j < GN_D; j++)
			ss += o[j] * o[j];
		s = 1.0 / sqrt(ss / GN_D + c->eps);
		for (int j = 0; j < GN_D; j++)
			loss += c->r[i * GN_D + j] * o[j] * s * c->w[j] * z[j] * sig_d(z[j]);
	}
	return loss;
}

static double
sgate_loss_d(void *vc)
{
	const struct gnorm_ctx *c = vc;
	double loss = 0;
	for (int i = 0; i < SG_N; i++)
		loss += c->rs[i] * c->x[i] * sig_d(c->gate[i]);
	return loss;
}

static void
test_gates_d(void)
{
	enum { N = GN_R * GN_D };
	double o[N], z[N], w[GN_D], r[N], x[SG_N], gate[SG_N], rs[SG_N];
	float of[N], zf[N], wf[GN_D], rf[N], y[N], dout[N] = { 0 }, dz[N] = { 0 };
	float xf[SG_N], gf[SG_N], rsf[SG_N], ys[SG_N], dx[SG_N] = { 0 }, dgate[SG_N] = { 0 };
	struct gnorm_ctx c = { o, z, w, r, 1e-6, x, gate, rs };
	double fwd = 0, ref;

	fill_d(o, N, 1.5);
	fill_d(z, N, 3.0);
	for (int j = 0; j < GN_D; j++)
		w[j] = 1.0 + 0.5 * rnd();
	fill_d(r, N, 1.0);
	to_float(o, of, N);
	to_float(z, zf, N);
	to_float(w, wf, GN_D);
	to_float(r, rf, N);
	tops_gnorm_fwd(of, zf, wf, GN_R, GN_D, (float)c.eps, y);
	for (int i = 0; i < N; i++)
		fwd += (double)rf[i] * y[i];
	ref = gnorm_loss_d(&c);
	CHECK(fabs(fwd - ref) <= 1e-5 * fabs(ref), "gated RMSNorm: forward %.8g, double %.8g", fwd, ref);
	tops_gnorm_bwd(of, zf, wf, GN_R, GN_D, (float)c.eps, rf, dout, dz);
	report_opd("gated RMSNorm rms(o) w silu(z): d o", fd_check_d(gnorm_loss_d, &c, o, dout, N));
	report_opd("gated RMSNorm rms(o) w silu(z): d z", fd_check_d(gnorm_loss_d, &c, z, dz, N));

	fill_d(x, SG_N, 2.0);
	fill_d(gate, SG_N, 4.0);
	fill_d(rs, SG_N, 1.0);
	to_float(x, xf, SG_N);
	to_float(gate, gf, SG_N);
	to_float(rs, rsf, SG_N);
	tops_sigmoid_gate_fwd(xf, gf, SG_N, ys);
	fwd = 0;
	for (int i = 0; i < SG_N; i++)
		fwd = fmax(fwd, fabs(ys[i] - (double)xf[i] * sig_d(gf[i])));
	CHECK(fwd <= 1e-6, "sigmoid gate: forward differs by %.3g", fwd);
	tops_sigmoid_gate_bwd(xf, gf, SG_N, rsf, dx, dgate);
	report_opd("attention output gate x sigmoid(g): d x", fd_check_d(sgate_loss_d, &c, x, dx, SG_N));
	report_opd("attention output gate x sigmoid(g): d g", fd_check_d(sgate_loss_d, &c, gate, dgate, SG_N));
}

/* The frozen linear layer with its LoRA branch, over a float32 base. */
static void
test_linear(void)
{
	enum { T = 5, NI = 64, NO = 48, RK = 3 };
	float W[NO * NI], bias[NO], x[T * NI], y[T * NO], r[T * NO], dx[T * NI], u[T * RK];
	float A[RK * NI], B[NO * RK], dA[RK * NI], dB[NO * RK];
	struct tlora lo = { RK, 0.7f, 0.25f, A, B, dA, dB };
	struct tlinear l = { { W, GGML_TYPE_F32, NI, NO, NI * sizeof(float) }, bias, &lo };
	float *scratch = malloc(tlinear_scratch_floats(&l, T, 1) * sizeof(float));
	struct op_ctx c = { .kind = OP_LINEAR, .T = T, .x = x, .y = y, .r = r, .lin = &l, .lu = u, .scratch = scratch };

	fill(W, NO * NI, 0.3);
	fill(bias, NO, 1.0);
	fill(x, T * NI, 1.0);
	fill(r, T * NO, 1.0);
	fill(A, RK * NI, 0.3);
	fill(B, NO * RK, 0.3);
	for (int train = 0; train < 2; train++) {
		char name[96];
		c.train = train;
		c.seed = 99;
		tlinear_fwd(&l, NULL, x, T, train, 99, y, u, scratch);
		memset(dx, 0, sizeof(dx));
		memset(dA, 0, sizeof(dA));
		memset(dB, 0, sizeof(dB));
		tlinear_bwd(&l, NULL, x, T, train, 99, u, r, dx, scratch);
		snprintf(name, sizeof(name), "linear + LoRA%s: dx", train ? ", dropout 0.25" : "");
		report_op(name, fd_check(op_loss, &c, x, dx, T * NI, 1e-2, 320));
		snprintf(name, sizeof(name), "linear + LoRA%s: dA", train ? ", dropout 0.25" : "");
		report_op(name, fd_check(op_loss, &c, A, dA, RK * NI, 1e-2, 192));
		snprintf(name, sizeof(name), "linear + LoRA%s: dB", train ? ", dropout 0.25" : "");
		report_op(name, fd_check(op_loss, &c, B, dB, NO * RK, 1e-2, 144));
	}
	/* Dropout drops about a quarter of the branch's inputs, and no more in evaluation. */
	{
		float y0[T * NO], y1[T * NO];
		int differ = 0;
		tlinear_fwd(&l, NULL, x, T, 0, 99, y0, u, scratch);
		tlinear_fwd(&l, NULL, x, T, 1, 99, y1, u, scratch);
		for (int i = 0; i < T * NO; i++)
			differ += y0[i] != y1[i];
		CHECK(differ > T * NO / 2, "dropout changed only %d of %d outputs", differ, T * NO);
		tlinear_fwd(&l, NULL, x, T, 1, 100, y0, u, scratch);
		CHECK(memcmp(y0, y1, sizeof(y0)) != 0, "another seed gives the same dropout mask");
	}
	free(scratch);
}

/* The frozen linear layer over quantized weights from a fixture file, against a full
 * dequantization done here in double, across the tile boundary (512 rows, tiles of 256). */
static void
test_linear_quant(const char *dir)
{
	static const char *const files[] = { "tiny-llama-q4_k_m.gguf", "tiny-llama-q8_0.gguf", "tiny-llama-q4_0.gguf" };
	char path[4096], err[512];

	for (size_t fi = 0; fi < sizeof(files) / sizeof(files[0]); fi++) {
		struct gguf_file *f = NULL;
		const struct gguf_tensor *t;
		snprintf(path, sizeof(path), "%s/models/%s", dir, files[fi]);
		if (gguf_open(path, &f, err, sizeof(err)) < 0) {
			CHECK(0, "%s", err);
			continue;
		}
		t = gguf_find_tensor(f, "blk.0.ffn_up.weight");
		if (!t) {
			CHECK(0, "%s: no ffn_up", path);
			gguf_close(f);
			continue;
		}
		{
			const int NI = (int)t->ne[0], NO = (int)t->ne[1], T = 3;
			struct tlinear l = { { t->data, t->type, NI, NO, q_row_size(t->type, NI) }, NULL, NULL };
			float *W = malloc(sizeof(float) * NI * NO), *x = malloc(sizeof(float) * T * NI);
			float *y = malloc(sizeof(float) * T * NO), *dy = malloc(sizeof(float) * T * NO);
			float *dx = calloc((size_t)T * NI, sizeof(float));
			float *scr = malloc(tlinear_scratch_floats(&l, T, 1) * sizeof(float));
			double e_fwd = 0, e_bwd = 0, ymax = 0, dxmax = 0;

			q_traits_get(t->type)->to_float(t->data, W, (int64_t)NI * NO);
			fill(x, (size_t)T * NI, 1.0);
			fill(dy, (size_t)T * NO, 1.0);
			CHECK(tlinear_fwd(&l, NULL, x, T, 0, 0, y, NULL, scr) == 0, "%s: forward", files[fi]);
			CHECK(tlinear_bwd(&l, NULL, x, T, 0, 0, NULL, dy, dx, scr) == 0, "%s: backward", files[fi]);
			for (int tt = 0; tt < T; tt++) {
				for (int o = 0; o < NO; o++) {
					double ref = dot_d(W + (size_t)o * NI, x + (size_t)tt * NI, NI);
					e_fwd = fmax(e_fwd, fabs(ref - y[tt * NO + o]));
					ymax = fmax(ymax, fabs(ref));
				}
				for (int i = 0; i < NI; i++) {
					double ref = 0;
					for (int o = 0; o < NO; o++)
						ref += (double)W[(size_t)o * NI + i] * dy[tt * NO + o];
					e_bwd = fmax(e_bwd, fabs(ref - dx[tt * NI + i]));
					dxmax = fmax(dxmax, fabs(ref));
				}
			}
			printf("  frozen %-5s linear %dx%d: max rel. error W x %.1e, W^T dy %.1e\n",
			    ggml_type_info_get(t->type)->name, NO, NI, e_fwd / ymax, e_bwd / dxmax);
			CHECK(e_fwd <= 1e-5 * ymax && e_bwd <= 1e-5 * dxmax, "%s: tiled product differs from the dequantized one",
			    files[fi]);
			free(W);
			free(x);
			free(y);
			free(dy);
			free(dx);
			free(scr);
		}
		gguf_close(f);
	}
}

/*
 * The first operations against double-precision differences: embedding, RMSNorm, RoPE (both
 * pairings), the scalar causal GQA attention, SwiGLU, the masked cross-entropy and the
 * linear layer with its LoRA branch, each with a forward of its own written here in double.
 * (The float checks above move float inputs by 1e-2 and allow 2e-3; these allow 1e-5.)
 */
struct first_ctx {
	int kind;
	double *x, *r, *w, *aux, *aux2;      /* the parameters differentiated, the readout, frozen weights */
	const int32_t *tok, *pos, *target;
	const uint8_t *mask;
	double eps, scale, norm;
	const struct trope *rope;
	const struct tattn *attn;
	const float *drop;                   /* LINEAR: the forward's dropout factors (0 or 1/(1-p)) */
	int T, D, rows, n_head, V, rank, n_in, n_out;
};

enum { F_EMBED, F_RMSNORM, F_ROPE, F_ATTN, F_SWIGLU, F_XENT, F_LINEAR };

static double
first_loss_d(void *vc)
{
	const struct first_ctx *c = vc;
	double loss = 0;

	switch (c->kind) {
	case F_EMBED:   /* x: the table (V, D) */
		for (int t = 0; t < c->T; t++)
			for (int i = 0; i < c->D; i++)
				loss += c->r[(size_t)t * c->D + i] * c->scale * c->x[(size_t)c->tok[t] * c->D + i];
		break;
	case F_RMSNORM:
		for (int t = 0; t < c->rows; t++) {
			const double *x = c->x + (size_t)t * c->D;
			double ss = 0, s;
			for (int i = 0; i < c->D; i++)
				ss += x[i] * x[i];
			s = 1.0 / sqrt(ss / c->D + c->eps);
			for (int i = 0; i < c->D; i++)
				loss += c->r[(size_t)t * c->D + i] * x[i] * s * (c->w ? c->w[i] : 1.0);
		}
		break;
	case F_ROPE: {
		const struct trope *ro = c->rope;
		for (int t = 0; t < c->T; t++)
			for (int h = 0; h < c->n_head; h++) {
				const size_t o = ((size_t)t * c->n_head + h) * ro->head_dim;
				for (int i = 0; i < ro->n_rot / 2; i++) {
					const int ia = ro->neox ? i : 2 * i, ib = ro->neox ? i + ro->n_rot / 2 : 2 * i + 1;
					double th = c->pos[t] * (double)ro->freq_scale * pow(ro->base, -2.0 * i / ro->n_rot) /
					    (ro->factors ? ro->factors[i] : 1.0);
					double a = c->x[o + ia], b = c->x[o + ib];
					loss += c->r[o + ia] * (a * cos(th) - b * sin(th)) * ro->attn_factor;
					loss += c->r[o + ib] * (a * sin(th) + b * cos(th)) * ro->attn_factor;
				}
				for (int i = ro->n_rot; i < ro->head_dim; i++)
					loss += c->r[o + i] * c->x[o + i];
			}
		break;
	}
	case F_ATTN: {   /* x: q (T, H, HD); aux: k (T, HKV, HD); aux2: v (T, HKV, HD) */
		const struct tattn *a = c->attn;
		loss = attn_readout_d(c->x, c->aux, c->aux2, c->r, c->T, a->n_head, a->n_head_kv, a->head_dim, a->head_dim,
		    a->window, a->scale, a->softcap);
		break;
	}
	case F_SWIGLU:   /* x: fused rows (rows, 2D): gate then up */
		for (int t = 0; t < c->rows; t++)
			for (int i = 0; i < c->D; i++) {
				const double g = c->x[(size_t)t * 2 * c->D + i], u = c->x[(size_t)t * 2 * c->D + c->D + i];
				loss += c->r[(size_t)t * c->D + i] * g / (1.0 + exp(-g)) * u;
			}
		break;
	case F_XENT:   /* x: logits (T, V) */
		for (int t = 0; t < c->T; t++) {
			const double *l = c->x + (size_t)t * c->V;
			double m = -INFINITY, z = 0;
			if (c->mask && !c->mask[t])
				continue;
			for (int j = 0; j < c->V; j++)
				m = fmax(m, l[j]);
			for (int j = 0; j < c->V; j++)
				z += exp(l[j] - m);
			loss += (log(z) + m - l[c->target[t]]) / c->norm;
		}
		break;
	case F_LINEAR: {   /* y = W x + bias + scale B (A drop(x)); aux: W, bias; aux2: A, B, x */
		const double *A = c->aux2, *B = A + (size_t)c->rank * c->n_in, *x = B + (size_t)c->n_out * c->rank;
		for (int t = 0; t < c->T; t++) {
			double u[16] = { 0 };
			for (int k = 0; k < c->rank; k++)
				for (int i = 0; i < c->n_in; i++)
					u[k] += A[(size_t)k * c->n_in + i] * x[(size_t)t * c->n_in + i] *
					    (c->drop ? c->drop[(size_t)t * c->n_in + i] : 1.0);
			for (int o = 0; o < c->n_out; o++) {
				double y = c->aux[(size_t)c->n_out * c->n_in + o];
				for (int i = 0; i < c->n_in; i++)
					y += c->aux[(size_t)o * c->n_in + i] * x[(size_t)t * c->n_in + i];
				for (int k = 0; k < c->rank; k++)
					y += c->scale * B[(size_t)o * c->rank + k] * u[k];
				loss += c->r[(size_t)t * c->n_out + o] * y;
			}
		}
		break;
	}
	}
	return loss;
}

static void
test_first_ops_d(void)
{
	enum { T = 6, V = 7, E = 24, H = 4, HKV = 2, HD = 16, NI = 40, NO = 24, RK = 3 };
	static double x[T * H * HD * 2], r[T * H * HD], w[E], k[T * HKV * HD], v[T * HKV * HD];
	static float xf[T * H * HD * 2], rf[T * H * HD], wf[E], kf[T * HKV * HD], vf[T * HKV * HD];
	static float g[T * H * HD * 2], g2[T * HKV * HD], g3[T * HKV * HD], o[T * H * HD], lse[H * T];
	int32_t tok[T] = { 3, 0, 3, 6, 1, 3 }, pos[T] = { 0, 1, 5, 9, 40, 300 }, target[T] = { 3, 6, 0, 5, 1, 2 };
	uint8_t mask[T] = { 1, 0, 1, 1, 0, 1 };
	struct first_ctx c = { 0 };
	char name[96];

	/* Embedding: the scaled rows of repeated tokens. */
	fill_d(x, V * E, 1.0);
	fill_d(r, T * E, 1.0);
	to_float(r, rf, T * E);
	memset(g, 0, sizeof(g));
	tops_embed_bwd(tok, T, E, 1.5f, rf, g);
	c = (struct first_ctx){ .kind = F_EMBED, .x = x, .r = r, .tok = tok, .scale = 1.5, .T = T, .D = E };
	report_opd("embedding (repeated tokens, scale 1.5)", fd_check_d(first_loss_d, &c, x, g, V * E));

	/* RMSNorm, weighted and not (a large epsilon: its term must be right too). */
	for (int weighted = 1; weighted >= 0; weighted--) {
		fill_d(x, T * E, 2.0);
		fill_d(w, E, 1.5);
		to_float(x, xf, T * E);
		to_float(w, wf, E);
		c = (struct first_ctx){ .kind = F_RMSNORM, .x = x, .r = r, .w = weighted ? w : NULL,
			.eps = weighted ? 1e-5 : 0.5, .rows = T, .D = E };
		memset(g, 0, sizeof(g));
		tops_rmsnorm_bwd(xf, weighted ? wf : NULL, T, E, (float)c.eps, rf, g);
		report_opd(weighted ? "RMSNorm (weighted)" : "RMSNorm (no weight, eps 0.5)",
		    fd_check_d(first_loss_d, &c, x, g, T * E));
	}

	/* RoPE: both pairings, partial 12/16, factors, linear scale, attn_factor. */
	{
		float factors[6];
		struct trope ro = { HD, 12, 0, 10000.0f, 0.25f, factors, 1.3f };
		for (int i = 0; i < 6; i++)
			factors[i] = 1.0f + 0.5f * i;
		fill_d(r, T * H * HD, 1.0);
		to_float(r, rf, T * H * HD);
		fill_d(x, T * H * HD, 1.0);
		for (int neox = 0; neox < 2; neox++) {
			ro.neox = neox;
			memcpy(g, rf, (size_t)T * H * HD * sizeof(float));
			tops_rope_bwd(&ro, g, T, H, pos);
			c = (struct first_ctx){ .kind = F_ROPE, .x = x, .r = r, .rope = &ro, .pos = pos, .T = T, .n_head = H };
			report_opd(neox ? "RoPE NeoX, partial 12/16, factors, scale, attn_factor"
				       : "RoPE pairs, partial 12/16, factors, scale, attn_factor",
			    fd_check_d(first_loss_d, &c, x, g, T * H * HD));
		}
	}

	/* The scalar causal attention (the reference the blocked one is checked against). */
	{
		static const struct { int window; float cap; const char *name; } cases[] = {
			{ 0, 0.0f, "attention GQA 4/2 heads" },
			{ 3, 0.0f, "attention, sliding window 3" },
			{ 2, 1.5f, "attention, window 2 and soft-capping 1.5" },
		};
		fill_d(x, T * H * HD, 1.5);
		fill_d(k, T * HKV * HD, 1.5);
		fill_d(v, T * HKV * HD, 1.0);
		to_float(x, xf, T * H * HD);
		to_float(k, kf, T * HKV * HD);
		to_float(v, vf, T * HKV * HD);
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			struct tattn a = { H, HKV, HD, 0.35f, cases[i].window, cases[i].cap, 0 };
			c = (struct first_ctx){ .kind = F_ATTN, .r = r, .attn = &a, .T = T };
			tops_attn_fwd(&a, xf, kf, vf, T, o, lse);
			memset(g, 0, sizeof(g));
			memset(g2, 0, sizeof(g2));
			memset(g3, 0, sizeof(g3));
			tops_attn_bwd(&a, xf, kf, vf, o, lse, rf, T, g, g2, g3);
			c.x = x, c.aux = k, c.aux2 = v;   /* q, k, v: each moved in place */
			snprintf(name, sizeof(name), "%s: dq", cases[i].name);
			report_opd(name, fd_check_d(first_loss_d, &c, x, g, T * H * HD));
			snprintf(name, sizeof(name), "%s: dk", cases[i].name);
			report_opd(name, fd_check_d(first_loss_d, &c, k, g2, T * HKV * HD));
			snprintf(name, sizeof(name), "%s: dv", cases[i].name);
			report_opd(name, fd_check_d(first_loss_d, &c, v, g3, T * HKV * HD));
		}
	}

	/* SwiGLU over fused rows (gate and up in one row, as phi3's ffn_up). */
	fill_d(x, T * 2 * E, 3.0);
	to_float(x, xf, T * 2 * E);
	fill_d(r, T * E, 1.0);
	to_float(r, rf, T * E);
	memset(g, 0, sizeof(g));
	tops_glu_bwd(TOPS_SILU, xf, xf + E, 2 * E, T, E, rf, g, g + E);
	c = (struct first_ctx){ .kind = F_SWIGLU, .x = x, .r = r, .rows = T, .D = E };
	report_opd("SwiGLU (fused rows): d gate, d up", fd_check_d(first_loss_d, &c, x, g, T * 2 * E));

	/* The masked cross-entropy, normalised by a count that is not the rows'. */
	fill_d(x, T * V, 3.0);
	to_float(x, xf, T * V);
	memset(g, 0, sizeof(g));
	tops_xent(xf, T, V, target, mask, 3.0, g, NULL);
	c = (struct first_ctx){ .kind = F_XENT, .x = x, .target = target, .mask = mask, .norm = 3.0, .T = T, .V = V };
	report_opd("softmax cross-entropy with a loss mask", fd_check_d(first_loss_d, &c, x, g, T * V));

	/* The linear layer (float32 W, bias) with its LoRA branch, without and with dropout: the
	 * forward's mask is read back through a probe of rank n_in with A = I (the mask depends
	 * on the seed and the element only). */
	{
		static double wb[NO * NI + NO], pr[RK * NI + NO * RK + T * NI];   /* W, bias; A, B, x */
		static float W[NO * NI + NO], A[RK * NI], B[NO * RK], X[T * NI], dA[RK * NI], dB[NO * RK], dX[T * NI];
		static float u[T * NI], y[T * NO], drop[T * NI], eye[NI * NI], R[T * NO];
		static double rr[T * NO];
		float *scratch;
		struct tlora lo = { RK, 0.7f, 0.25f, A, B, dA, dB };
		struct tlinear l = { { W, GGML_TYPE_F32, NI, NO, NI * sizeof(float) }, W + NO * NI, &lo };

		fill_d(wb, NO * NI + NO, 0.3);
		fill_d(pr, RK * NI + NO * RK, 0.3);
		fill_d(pr + RK * NI + NO * RK, T * NI, 1.0);
		fill_d(rr, T * NO, 1.0);
		to_float(wb, W, NO * NI + NO);
		to_float(pr, A, RK * NI);
		to_float(pr + RK * NI, B, NO * RK);
		to_float(pr + RK * NI + NO * RK, X, T * NI);
		to_float(rr, R, T * NO);
		{
			struct tlora probe = { NI, 1.0f, 0.25f, eye, NULL, NULL, NULL };
			struct tlinear pl = { l.w, NULL, &probe };
			float ones[T * NI], yp[T * NO];
			for (int i = 0; i < NI; i++)
				eye[i * NI + i] = 1.0f;
			for (int i = 0; i < T * NI; i++)
				ones[i] = 1.0f;
			probe.b = calloc((size_t)NO * NI, sizeof(float));
			scratch = malloc(tlinear_scratch_floats(&pl, T, 1) * sizeof(float));
			tlinear_fwd(&pl, NULL, ones, T, 1, 99, yp, drop, scratch);
			free(scratch);
			free(probe.b);
		}
		scratch = malloc(tlinear_scratch_floats(&l, T, 1) * sizeof(float));
		for (int train = 0; train < 2; train++) {
			double dropped = 0;
			tlinear_fwd(&l, NULL, X, T, train, 99, y, u, scratch);
			memset(dX, 0, sizeof(dX));
			memset(dA, 0, sizeof(dA));
			memset(dB, 0, sizeof(dB));
			tlinear_bwd(&l, NULL, X, T, train, 99, u, R, dX, scratch);
			c = (struct first_ctx){ .kind = F_LINEAR, .r = rr, .aux = wb, .aux2 = pr, .scale = 0.7,
				.drop = train ? drop : NULL, .T = T, .rank = RK, .n_in = NI, .n_out = NO };
			for (int i = 0; train && i < T * NI; i++)
				dropped += drop[i] == 0.0f;
			CHECK(!train || (dropped > 0.1 * T * NI && dropped < 0.4 * T * NI), "dropout 0.25 dropped %.0f of %d",
			    dropped, T * NI);
			for (int wrt = 0; wrt < 3; wrt++) {   /* x, A, B: each moved inside pr */
				double *p = wrt == 0 ? pr + RK * NI + NO * RK : wrt == 1 ? pr : pr + RK * NI;
				snprintf(name, sizeof(name), "linear + LoRA%s: %s", train ? ", dropout 0.25" : "",
				    wrt == 0 ? "dx" : wrt == 1 ? "dA" : "dB");
				report_opd(name, fd_check_d(first_loss_d, &c, p, wrt == 0 ? dX : wrt == 1 ? dA : dB,
				    wrt == 0 ? T * NI : wrt == 1 ? RK * NI : NO * RK));
			}
		}
		free(scratch);
	}
}

/* --- AdamW and the schedule --- */

static void
test_adamw(void)
{
	struct adamw_cfg c = { 0.9, 0.999, 1e-8, 0.01 };
	float p = 1.0f, g, m = 0, v = 0, p2 = 1.0f, m2 = 0, v2 = 0, g2 = 1.0f;
	struct adamw_sched s = { 1e-3f, 1e-4f, 10, 110 };
	static const struct { int64_t step; double lr; } sched[] = {
		{ 0, 1e-4 }, { 4, 5e-4 }, { 9, 1e-3 }, { 10, 1e-3 },
		{ 35, 8.681980515339464e-4 },   /* 1e-4 + 0.9e-3 * (1 + cos(pi/4)) / 2 */
		{ 60, 5.5e-4 },                 /* half way: the mean of max and min */
		{ 109, 1.0022204783542078e-4 }, { 110, 1e-4 }, { 1000, 1e-4 },
	};

	/* Step 1, g = 0.5, lr 0.1: decay p = 1 - 0.1 * 0.01 = 0.999; m = 0.05, v = 0.00025;
	 * m^ = 0.5, v^ = 0.25; p = 0.999 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.899000002. */
	g = 0.5f;
	adamw_update(&c, 1, 0.1f, 1.0f, &p, &g, &m, &v, 1);
	CHECK(fabs(p - 0.899000002) < 1e-7 && fabs(m - 0.05) < 1e-7 * 0.05 && fabs(v - 0.00025) < 1e-7 * 0.00025,
	    "AdamW step 1: p %.9g m %.9g v %.9g", p, m, v);
	/* Step 2, g = -0.25: p = 0.899000002 * 0.999 = 0.898101002; m = 0.045 - 0.025 = 0.02;
	 * v = 0.00024975 + 0.0000625 = 0.00031225; m^ = 0.02 / 0.19 = 0.10526316;
	 * v^ = 0.00031225 / 0.001999 = 0.15620310, sqrt 0.39522538;
	 * p = 0.898101002 - 0.1 * 0.10526316 / 0.39522538 = 0.87146730. */
	g = -0.25f;
	adamw_update(&c, 2, 0.1f, 1.0f, &p, &g, &m, &v, 1);
	CHECK(fabs(p - 0.8714673) < 2e-7 && fabs(m - 0.02) < 1e-7 * 0.02 && fabs(v - 0.00031225) < 1e-7 * 0.00031225,
	    "AdamW step 2: p %.9g m %.9g v %.9g", p, m, v);
	/* GSCALE scales the gradient before anything else (gradient accumulation). */
	p = 1.0f;
	m = v = 0;
	g = 0.5f;
	adamw_update(&c, 1, 0.1f, 1.0f, &p, &g, &m, &v, 1);
	CHECK(adamw_update(&c, 1, 0.1f, 0.5f, &p2, &g2, &m2, &v2, 1) == 0, "a finite step said it diverged");
	CHECK(p == p2 && m == m2 && v == v2, "gscale 0.5 on g = 1 differs from g = 0.5");
	/* A gradient that overflowed makes the parameter NaN: said, so that it is not saved. */
	{
		float pp[3] = { 1, 2, 3 }, gg[3] = { 0.5f, INFINITY, 0.5f }, mm[3] = { 0 }, vv[3] = { 0 };
		CHECK(adamw_update(&c, 1, 0.1f, 1.0f, pp, gg, mm, vv, 3) == -1 && isnan(pp[1]), "an infinite gradient: %d %g",
		    adamw_update(&c, 1, 0.1f, 1.0f, pp, gg, mm, vv, 3), pp[1]);
	}

	for (size_t i = 0; i < sizeof(sched) / sizeof(sched[0]); i++) {
		float lr = adamw_sched_lr(&s, sched[i].step);
		CHECK(fabs(lr - sched[i].lr) < 1e-6 * sched[i].lr, "schedule at step %lld: %.9g, expected %.9g",
		    (long long)sched[i].step, lr, sched[i].lr);
	}
}

/* --- adapter files --- */

static void
digest(const void *data, size_t len, char hex[65])
{
	struct sha256 s;
	sha256_init(&s);
	sha256_update(&s, data, len);
	sha256_final_hex(&s, hex);
}

static int
file_equal(const char *a, const char *b)
{
	size_t la = 0, lb = 0;
	char *x = test_read_file(a, &la), *y = test_read_file(b, &lb);
	int eq = x && y && la == lb && memcmp(x, y, la) == 0;
	free(x);
	free(y);
	return eq;
}

/* Compares two GGUF files' metadata (keys, types, values), tensor names, types and shapes. */
static void
compare_gguf(const char *a, const char *b)
{
	struct gguf_file *fa = NULL, *fb = NULL;
	char err[512];

	if (gguf_open(a, &fa, err, sizeof(err)) < 0 || gguf_open(b, &fb, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		gguf_close(fa);
		return;
	}
	CHECK(fa->n_kv == fb->n_kv, "%s: %llu metadata keys, the fixture has %llu", a, (unsigned long long)fa->n_kv,
	    (unsigned long long)fb->n_kv);
	for (uint64_t i = 0; i < fa->n_kv && i < fb->n_kv; i++) {
		const struct gguf_kv *x = &fa->kv[i], *y = &fb->kv[i];
		int same = x->key.len == y->key.len && memcmp(x->key.ptr, y->key.ptr, x->key.len) == 0 &&
		    x->val.type == y->val.type;
		if (same && x->val.type == GGUF_VT_STRING)
			same = x->val.v.str.len == y->val.v.str.len &&
			    memcmp(x->val.v.str.ptr, y->val.v.str.ptr, x->val.v.str.len) == 0;
		else if (same && x->val.type == GGUF_VT_FLOAT32)
			same = x->val.v.f64 == y->val.v.f64;
		CHECK(same, "%s: metadata %llu (%.*s) differs from the fixture's", a, (unsigned long long)i,
		    (int)x->key.len, x->key.ptr);
	}
	CHECK(fa->n_tensors == fb->n_tensors, "%s: %llu tensors, the fixture has %llu", a,
	    (unsigned long long)fa->n_tensors, (unsigned long long)fb->n_tensors);
	for (uint64_t i = 0; i < fa->n_tensors && i < fb->n_tensors; i++) {
		const struct gguf_tensor *x = &fa->tensors[i], *y = &fb->tensors[i];
		CHECK(x->name.len == y->name.len && memcmp(x->name.ptr, y->name.ptr, x->name.len) == 0 &&
		    x->n_dims == y->n_dims && x->ne[0] == y->ne[0] && x->ne[1] == y->ne[1] && x->type == y->type &&
		    x->offset == y->offset,
		    "%s: tensor %llu (%.*s) differs from the fixture's (%.*s)", a, (unsigned long long)i,
		    (int)x->name.len, x->name.ptr, (int)y->name.len, y->name.ptr);
	}
	gguf_close(fa);
	gguf_close(fb);
}

static const struct {
	const char *adapter, *model;
	int pairs, rank;
	float alpha;
	enum ggml_type type;
} adapters[] = {
	{ "lora-tiny-llama-all-r8", "tiny-llama-f32", 14, 8, 16.0f, GGML_TYPE_F32 },
	{ "lora-tiny-qwen2-qv-r4", "tiny-qwen2-f32", 4, 4, 8.0f, GGML_TYPE_F16 },
	{ "lora-tiny-phi3-qkv-r4", "tiny-phi3-f32", 4, 4, 4.0f, GGML_TYPE_F32 },
};

static void
test_adapter_files(const char *dir)
{
	char path[4096], model[4096], out[4096], err[512], hex[65];

	for (size_t i = 0; i < sizeof(adapters) / sizeof(adapters[0]); i++) {
		struct llm_model *m = NULL;
		struct lora_adapter *a = NULL;
		struct gguf_file *f = NULL;
		const struct lora_pair *p;

		snprintf(path, sizeof(path), "%s/lora/%s.gguf", dir, adapters[i].adapter);
		snprintf(model, sizeof(model), "%s/models/%s.gguf", dir, adapters[i].model);
		if (llm_model_load(model, &m, err, sizeof(err)) < 0) {
			CHECK(0, "%s", err);
			continue;
		}
		if (lora_open(path, m, 0.5f, digest, &a, err, sizeof(err)) < 0) {
			CHECK(0, "%s", err);
			llm_model_free(m);
			continue;
		}
		CHECK(lora_count(a) == adapters[i].pairs, "%s: %d pairs", path, lora_count(a));
		CHECK(lora_alpha(a) == adapters[i].alpha, "%s: alpha %g", path, lora_alpha(a));
		CHECK(strcmp(lora_name(a), adapters[i].adapter) == 0, "%s: name '%s'", path, lora_name(a));
		CHECK(sha256_file(path, hex, err, sizeof(err)) == 0 && strcmp(hex, lora_sha256(a)) == 0,
		    "%s: digest %s, sha256_file %s", path, lora_sha256(a), hex);
		p = lora_get(a, 0);
		CHECK(p && p->rank == adapters[i].rank && p->scale == 0.5f * adapters[i].alpha / adapters[i].rank,
		    "%s: rank %d scale %g", path, p ? p->rank : -1, p ? p->scale : 0);
		lora_set_scale(a, 2.0f);
		CHECK(p->scale == 2.0f * adapters[i].alpha / adapters[i].rank, "%s: scale after set %g", path, p->scale);
		/* The values are the file's, converted to float. */
		if (gguf_open(path, &f, err, sizeof(err)) == 0) {
			const struct gguf_tensor *tb = gguf_find_tensor(f, "blk.1.attn_v.weight.lora_b");
			const struct lora_pair *pv = lora_find(a, "blk.1.attn_v.weight");
			if (!tb) {
				tb = gguf_find_tensor(f, "blk.1.attn_qkv.weight.lora_b");
				pv = lora_find(a, "blk.1.attn_qkv.weight");
			}
			CHECK(tb && pv && pv->n_in == 256 && pv->n_out == (int)tb->ne[1], "%s: blk.1 pair", path);
			if (tb && pv) {
				size_t n = tb->ne[0] * tb->ne[1];
				float *ref = malloc(n * sizeof(float));
				q_traits_get(tb->type)->to_float(tb->data, ref, (int64_t)n);
				CHECK(memcmp(ref, pv->b, n * sizeof(float)) == 0, "%s: B differs from the file", path);
				free(ref);
			}
			gguf_close(f);
		}
		/* Writing the pairs back, in reverse order, gives the fixture byte for byte. */
		{
			int n = lora_count(a);
			struct lora_pair *rev = malloc(n * sizeof(*rev));
			struct lora_file_info info = { .arch = llm_model_hparams(m)->arch_name, .name = adapters[i].adapter,
				.alpha = lora_alpha(a), .type = adapters[i].type };
			for (int j = 0; j < n; j++)
				rev[j] = *lora_get(a, n - 1 - j);
			snprintf(out, sizeof(out), "%s/%s.gguf", tmpdir, adapters[i].adapter);
			CHECK(lora_write(out, &info, rev, n, err, sizeof(err)) == 0, "lora_write: %s", err);
			compare_gguf(out, path);
			CHECK(file_equal(out, path), "%s: written adapter is not byte-identical to the fixture", out);
			/* and it reads back */
			{
				struct lora_adapter *b = NULL;
				CHECK(lora_open(out, m, 1.0f, NULL, &b, err, sizeof(err)) == 0, "reopen: %s", err);
				CHECK(b && lora_count(b) == n && strcmp(lora_sha256(b), "") == 0, "reopened adapter");
				lora_free(b);
			}
			free(rev);
		}
		lora_free(a);
		llm_model_free(m);
	}
}

/* Writes a small adapter with the given tensors into the temporary folder. */
struct wt {
	const char *name;
	uint64_t ne0, ne1;
};

static void
write_adapter(const char *path, const char *gtype, const char *atype, const char *arch, int with_alpha,
	      const struct wt *t, int n, float poison)
{
	struct gguf_writer *w = gguf_writer_new(0);
	static float data[600 * 16];
	char err[256];

	for (size_t i = 0; i < sizeof(data) / sizeof(data[0]); i++)
		data[i] = (float)(0.01 * rnd());
	data[5] = poison;
	if (arch)
		gguf_w_str(w, "general.architecture", arch);
	if (gtype)
		gguf_w_str(w, "general.type", gtype);
	if (atype)
		gguf_w_str(w, "adapter.type", atype);
	if (with_alpha)
		gguf_w_f32(w, "adapter.lora.alpha", 8.0f);
	for (int i = 0; i < n; i++) {
		uint64_t ne[2] = { t[i].ne0, t[i].ne1 };
		gguf_w_tensor(w, t[i].name, GGML_TYPE_F32, 2, ne, data, NULL, NULL);
	}
	if (gguf_writer_write(w, path, err, sizeof(err)) < 0)
		fprintf(stderr, "%s\n", err);
	gguf_writer_free(w);
}

static void
test_adapter_errors(const char *dir)
{
	char model[4096], path[4096], err[512];
	struct llm_model *m = NULL;
	struct lora_adapter *a = NULL;
	static const struct wt good[] = {
		{ "blk.0.attn_q.weight.lora_a", 256, 4 }, { "blk.0.attn_q.weight.lora_b", 4, 256 },
		{ "blk.0.attn_norm.weight", 256, 1 },
	};
	static const struct {
		const char *what, *gtype, *atype, *arch;
		struct wt t[3];
		int n;
		const char *expect, *expect2;
	} bad[] = {
		{ "not an adapter", "model", "lora", "llama", { { "blk.0.attn_q.weight.lora_a", 256, 4 },
		    { "blk.0.attn_q.weight.lora_b", 4, 256 } }, 2, "not an adapter", "general.type" },
		{ "no general.type", NULL, "lora", "llama", { { "blk.0.attn_q.weight.lora_a", 256, 4 },
		    { "blk.0.attn_q.weight.lora_b", 4, 256 } }, 2, "not an adapter", "missing" },
		{ "not LoRA", "adapter", "control_vector", "llama", { { "blk.0.attn_q.weight.lora_a", 256, 4 },
		    { "blk.0.attn_q.weight.lora_b", 4, 256 } }, 2, "adapter type \"control_vector\"", "LoRA" },
		{ "other architecture", "adapter", "lora", "qwen2", { { "blk.0.attn_q.weight.lora_a", 256, 4 },
		    { "blk.0.attn_q.weight.lora_b", 4, 256 } }, 2, "architecture 'qwen2'", "'llama'" },
		{ "missing lora_b", "adapter", "lora", "llama", { { "blk.0.attn_q.weight.lora_a", 256, 4 } }, 1,
		    "'blk.0.attn_q.weight.lora_a' has no matching '.lora_b'", NULL },
		{ "missing lora_a", "adapter", "lora", "llama", { { "blk.0.attn_k.weight.lora_b", 4, 128 } }, 1,
		    "'blk.0.attn_k.weight.lora_b' has no matching '.lora_a'", NULL },
		{ "unknown tensor", "adapter", "lora", "llama", { { "blk.0.attn_q.weight.lora_a", 256, 4 },
		    { "blk.0.attn_q.weight.lora_b", 4, 256 }, { "blk.0.attn_q.weight.delta", 256, 4 } }, 3,
		    "unknown tensor 'blk.0.attn_q.weight.delta'", NULL },
		{ "wrong shape of A", "adapter", "lora", "llama", { { "blk.0.attn_q.weight.lora_a", 128, 4 },
		    { "blk.0.attn_q.weight.lora_b", 4, 256 } }, 2, "'blk.0.attn_q.weight.lora_a' has shape [128, 4], expected [256, r]", NULL },
		{ "wrong shape of B", "adapter", "lora", "llama", { { "blk.0.attn_k.weight.lora_a", 256, 4 },
		    { "blk.0.attn_k.weight.lora_b", 4, 256 } }, 2, "'blk.0.attn_k.weight.lora_b' has shape [4, 256], expected [4, 128]", NULL },
		{ "rank mismatch", "adapter", "lora", "llama", { { "blk.0.attn_q.weight.lora_a", 256, 8 },
		    { "blk.0.attn_q.weight.lora_b", 4, 256 } }, 2, "rank mismatch", "rank 8" },
		{ "no such base", "adapter", "lora", "llama", { { "blk.7.attn_q.weight.lora_a", 256, 4 },
		    { "blk.7.attn_q.weight.lora_b", 4, 256 } }, 2, "adapts 'blk.7.attn_q.weight', which the model does not have", NULL },
		{ "vector base", "adapter", "lora", "llama", { { "blk.0.ffn_norm.weight.lora_a", 256, 4 },
		    { "blk.0.ffn_norm.weight.lora_b", 4, 1 } }, 2, "which is a vector", NULL },
		{ "no pairs", "adapter", "lora", "llama", { { "blk.0.attn_norm.weight", 256, 1 } }, 1,
		    "holds no LoRA tensors", NULL },
	};

	snprintf(model, sizeof(model), "%s/models/tiny-llama-f32.gguf", dir);
	if (llm_model_load(model, &m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return;
	}
	/* A model file is not an adapter. */
	CHECK(lora_open(model, m, 1.0f, NULL, &a, err, sizeof(err)) < 0 && strstr(err, "not an adapter") &&
	    strstr(err, "tiny-llama-f32.gguf"), "a model as adapter: %s", err);
	/* The real adapter of another architecture. */
	snprintf(path, sizeof(path), "%s/lora/lora-tiny-qwen2-qv-r4.gguf", dir);
	CHECK(lora_open(path, m, 1.0f, NULL, &a, err, sizeof(err)) < 0 && strstr(err, "architecture 'qwen2'") &&
	    strstr(err, "lora-tiny-qwen2-qv-r4.gguf"), "qwen2 adapter on llama: %s", err);
	/* Not a GGUF at all. */
	snprintf(path, sizeof(path), "%s/junk.gguf", tmpdir);
	{
		FILE *jf = fopen(path, "w");
		fputs("not a gguf", jf);
		fclose(jf);
	}
	CHECK(lora_open(path, m, 1.0f, NULL, &a, err, sizeof(err)) < 0 && strstr(err, "junk.gguf"), "junk: %s", err);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(path, sizeof(path), "%s/bad-%zu.gguf", tmpdir, i);
		write_adapter(path, bad[i].gtype, bad[i].atype, bad[i].arch, 1, bad[i].t, bad[i].n, 0.0f);
		err[0] = 0;
		a = NULL;
		int rc = lora_open(path, m, 1.0f, NULL, &a, err, sizeof(err));
		CHECK(rc < 0 && a == NULL && strstr(err, bad[i].expect) && (!bad[i].expect2 || strstr(err, bad[i].expect2)) &&
		    strstr(err, path), "%s: got '%s'", bad[i].what, err);
		lora_free(a);
	}
	/* A non-finite value. */
	snprintf(path, sizeof(path), "%s/nan.gguf", tmpdir);
	write_adapter(path, "adapter", "lora", "llama", 1, good, 2, NAN);
	CHECK(lora_open(path, m, 1.0f, NULL, &a, err, sizeof(err)) < 0 && strstr(err, "not a finite number") &&
	    strstr(err, "blk.0.attn_q.weight.lora_a"), "NaN: %s", err);
	/* A norm tensor is skipped; no alpha means the user's scale alone. */
	snprintf(path, sizeof(path), "%s/good.gguf", tmpdir);
	write_adapter(path, "adapter", "lora", "llama", 0, good, 3, 0.0f);
	CHECK(lora_open(path, m, 0.75f, NULL, &a, err, sizeof(err)) == 0, "good adapter: %s", err);
	if (a) {
		CHECK(lora_count(a) == 1 && lora_n_ignored(a) == 1, "pairs %d ignored %d", lora_count(a), lora_n_ignored(a));
		CHECK(lora_alpha(a) == 0.0f && lora_get(a, 0)->scale == 0.75f, "no alpha: scale %g", lora_get(a, 0)->scale);
		CHECK(lora_find(a, "blk.0.attn_q.weight") != NULL && lora_find(a, "blk.0.attn_k.weight") == NULL, "lora_find");
		lora_free(a);
	}
	/* The writer refuses a pair adapted twice and a quantized type. */
	{
		float A[4 * 256] = { 0 }, B[256 * 4] = { 0 };
		struct lora_pair p[2] = { { "blk.0.attn_q.weight", 256, 256, 4, A, B, 1 },
			{ "blk.0.attn_q.weight", 256, 256, 4, A, B, 1 } };
		struct lora_file_info info = { .arch = "llama", .alpha = 8.0f, .type = GGML_TYPE_F32 };
		snprintf(path, sizeof(path), "%s/dup.gguf", tmpdir);
		CHECK(lora_write(path, &info, p, 2, err, sizeof(err)) < 0 && strstr(err, "adapted twice"), "dup: %s", err);
		CHECK(access(path, F_OK) != 0, "a refused adapter left a file");
		info.type = GGML_TYPE_Q8_0;
		CHECK(lora_write(path, &info, p, 1, err, sizeof(err)) < 0 && strstr(err, "Q8_0"), "q8_0: %s", err);
		/* Nor a value a chat would refuse: not finite, or past what F16 (BF16) holds. */
		info.type = GGML_TYPE_F32;
		B[77] = NAN;
		CHECK(lora_write(path, &info, p, 1, err, sizeof(err)) == -1 && strstr(err, "lora_b holds a value that is not a "
		    "finite number") && access(path, F_OK) != 0, "NaN written: %s", err);
		B[77] = 0;
		A[5] = 70000.0f;
		info.type = GGML_TYPE_F16;
		/* LORA_ERR_RANGE: finetune's advice is then --out-type f32. */
		CHECK(lora_write(path, &info, p, 1, err, sizeof(err)) == LORA_ERR_RANGE && strstr(err, "lora_a holds 70000, past the "
		    "largest F16") && access(path, F_OK) != 0, "70000 in F16: %s", err);
		A[5] = 65504.0f;
		CHECK(lora_write(path, &info, p, 1, err, sizeof(err)) == 0, "65504 in F16: %s", err);
		A[5] = 3.4e38f;
		info.type = GGML_TYPE_BF16;
		CHECK(lora_write(path, &info, p, 1, err, sizeof(err)) == LORA_ERR_RANGE && strstr(err, "largest BF16"),
		    "3.4e38 in BF16: %s",
		    err);
		info.type = GGML_TYPE_F32;
		CHECK(lora_write(path, &info, p, 1, err, sizeof(err)) == 0, "3.4e38 in F32: %s", err);
		unlink(path);
	}
	lora_free(NULL);
	llm_model_free(m);
}

/* The base model an adapter records (lora_write's provenance) read back, and
 * lora_base_notice against models that are and are not that base. */
static void
test_adapter_base(const char *dir)
{
	static float A[4 * 256], B[256 * 4];
	const struct lora_pair p = { "blk.0.attn_q.weight", 256, 256, 4, A, B, 1 };
	char model[4096], path[4096], err[512], note[1024];
	struct llm_model *m = NULL;
	struct lora_adapter *a = NULL;
	static const struct {
		const char *what, *base_name, *base_file;   /* recorded: NULL for none */
		const char *model_name, *model_path;        /* the model it is applied to */
		int notice;
	} cases[] = {
		{ "the same base", "Qwen2.5 0.5B Instruct", "qwen-instruct.gguf", "Qwen2.5 0.5B Instruct",
		  "qwen-instruct.gguf", 0 },
		{ "the same base moved to another folder", "Qwen2.5 0.5B Instruct", "qwen-instruct.gguf",
		  "Qwen2.5 0.5B Instruct", "/elsewhere/models/qwen-instruct.gguf", 0 },
		{ "another name", "Qwen2.5 0.5B Instruct", "qwen-instruct.gguf", "Qwen2.5 0.5B", "models/qwen-instruct.gguf", 1 },
		{ "another file only", "Qwen2.5 0.5B Instruct", "qwen-instruct.gguf", "Qwen2.5 0.5B Instruct",
		  "qwen-instruct-q4.gguf", 1 },
		{ "a model without a name", "Qwen2.5 0.5B Instruct", "qwen-instruct.gguf", NULL, "qwen-instruct.gguf", 1 },
		{ "only the name recorded, the same", "Qwen2.5 0.5B Instruct", NULL, "Qwen2.5 0.5B Instruct", "any.gguf", 0 },
		{ "only the name recorded, another", "Qwen2.5 0.5B Instruct", NULL, "Qwen2.5 0.5B", "any.gguf", 1 },
		{ "only the file recorded, the same", NULL, "qwen-instruct.gguf", "Any Name", "m/qwen-instruct.gguf", 0 },
		{ "only the file recorded, another", NULL, "qwen-instruct.gguf", "Any Name", "qwen-base.gguf", 1 },
		{ "nothing recorded", NULL, NULL, "Any Name", "any.gguf", 0 },
	};

	snprintf(model, sizeof(model), "%s/models/tiny-llama-f32.gguf", dir);
	if (llm_model_load(model, &m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return;
	}
	/* The fixtures come from llama.cpp's converter without the base's name: no notice. */
	snprintf(path, sizeof(path), "%s/lora/lora-tiny-llama-all-r8.gguf", dir);
	CHECK(lora_open(path, m, 1.0f, NULL, &a, err, sizeof(err)) == 0, "%s", err);
	if (a) {
		CHECK(!strcmp(lora_base_name(a), "") && !strcmp(lora_base_file(a), ""), "fixture base: '%s' '%s'",
		    lora_base_name(a), lora_base_file(a));
		strcpy(note, "x");
		CHECK(lora_base_notice(a, "Something Else", "/m/other.gguf", note, sizeof(note)) == 0 && !note[0],
		    "fixture adapter: notice '%s'", note);
		lora_free(a);
		a = NULL;
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lora_file_info info = { .arch = "llama", .alpha = 8.0f, .type = GGML_TYPE_F32,
			.base_name = cases[i].base_name, .base_file = cases[i].base_file };
		int rc;

		snprintf(path, sizeof(path), "%s/based-%zu.gguf", tmpdir, i);
		if (lora_write(path, &info, &p, 1, err, sizeof(err)) < 0 || lora_open(path, m, 1.0f, NULL, &a, err,
		    sizeof(err)) < 0) {
			CHECK(0, "%s: %s", cases[i].what, err);
			continue;
		}
		CHECK(!strcmp(lora_base_name(a), cases[i].base_name ? cases[i].base_name : "") &&
		    !strcmp(lora_base_file(a), cases[i].base_file ? cases[i].base_file : ""), "%s: read back '%s' '%s'",
		    cases[i].what, lora_base_name(a), lora_base_file(a));
		strcpy(note, "x");
		rc = lora_base_notice(a, cases[i].model_name, cases[i].model_path, note, sizeof(note));
		CHECK(rc == cases[i].notice && (rc ? note[0] != 0 : note[0] == 0), "%s: %d '%s'", cases[i].what, rc, note);
		if (rc) {
			/* It names the adapter and both sides, on one line. */
			const char *mfile = strrchr(cases[i].model_path, '/');
			char adname[64];
			snprintf(adname, sizeof(adname), "adapter based-%zu.gguf was trained on ", i);
			mfile = mfile ? mfile + 1 : cases[i].model_path;
			CHECK(strstr(note, adname) == note, "%s: '%s'", cases[i].what, note);
			CHECK(!cases[i].base_name || strstr(note, cases[i].base_name), "%s: '%s'", cases[i].what, note);
			CHECK(!cases[i].base_file || strstr(note, cases[i].base_file), "%s: '%s'", cases[i].what, note);
			CHECK(strstr(note, "; this model is ") && strstr(note, mfile), "%s: '%s'", cases[i].what, note);
			CHECK(!cases[i].model_name || strstr(note, cases[i].model_name), "%s: '%s'", cases[i].what, note);
			CHECK(!strchr(note, '\n'), "%s: more than one line", cases[i].what);
		}
		if (i == 2)
			CHECK(!strcmp(note, "adapter based-2.gguf was trained on \"Qwen2.5 0.5B Instruct\" (qwen-instruct.gguf); "
			    "this model is \"Qwen2.5 0.5B\" (qwen-instruct.gguf)"), "the whole notice: '%s'", note);
		lora_free(a);
		a = NULL;
	}
	/* A name from a file is shown as text: no escape, no newline reaches the terminal. */
	{
		struct lora_file_info info = { .arch = "llama", .alpha = 8.0f, .type = GGML_TYPE_F32,
			.base_name = "Evil\033[2J\nName", .base_file = "dir/evil\tfile.gguf" };
		snprintf(path, sizeof(path), "%s/evil.gguf", tmpdir);
		CHECK(lora_write(path, &info, &p, 1, err, sizeof(err)) == 0 && lora_open(path, m, 1.0f, NULL, &a, err,
		    sizeof(err)) == 0, "%s", err);
		if (a) {
			CHECK(lora_base_notice(a, "Good", "good.gguf", note, sizeof(note)) == 1 && !strchr(note, '\033') &&
			    !strchr(note, '\n') && !strchr(note, '\t') && strstr(note, "\"Evil\xe2\x90\x9b[2J Name\" (evil file.gguf)"),
			    "hostile names: '%s'", note);
			lora_free(a);
		}
	}
	llm_model_free(m);
}

/* --- the training model --- */

struct golden {
	int32_t tokens[64];
	int n, n_prompt, n_vocab;
	float *logits;
};

static int
golden_load(const char *dir, const char *sub, const char *name, struct golden *g)
{
	char path[4096];
	size_t len;
	char *js;
	cJSON *root, *it;

	memset(g, 0, sizeof(*g));
	snprintf(path, sizeof(path), "%s/%s/%s.json", dir, sub, name);
	js = test_read_file(path, &len);
	if (!js)
		return -1;
	root = cJSON_Parse(js);
	free(js);
	if (!root)
		return -1;
	cJSON_ArrayForEach(it, cJSON_GetObjectItem(root, "tokens")) {
		if (g->n < 64)
			g->tokens[g->n++] = (int32_t)it->valuedouble;
	}
	g->n_prompt = cJSON_GetObjectItem(root, "n_prompt")->valueint;
	g->n_vocab = cJSON_GetObjectItem(root, "n_vocab")->valueint;
	cJSON_Delete(root);
	snprintf(path, sizeof(path), "%s/%s/%s.logits", dir, sub, name);
	g->logits = test_read_file(path, &len);
	if (!g->logits || len != (size_t)g->n * g->n_vocab * sizeof(float)) {
		free(g->logits);
		return -1;
	}
	return 0;
}

/* Mean KL(ref || ours) per position, max |difference|, argmax agreement where the
 * reference's top-two margin exceeds 0.5. */
static void
compare_logits(const float *ref, const float *ours, int n, int V, double *kl, double *maxd, int *disagree)
{
	*kl = 0;
	*maxd = 0;
	*disagree = 0;
	for (int i = 0; i < n; i++) {
		const float *r = ref + (size_t)i * V, *o = ours + (size_t)i * V;
		double mr = -INFINITY, mo = -INFINITY, zr = 0, zo = 0, k = 0, t1 = -INFINITY, t2 = -INFINITY;
		int ar = 0, ao = 0;
		for (int j = 0; j < V; j++) {
			if (r[j] > mr) { mr = r[j]; ar = j; }
			if (o[j] > mo) { mo = o[j]; ao = j; }
			if (r[j] > t1) { t2 = t1; t1 = r[j]; } else if (r[j] > t2) t2 = r[j];
			*maxd = fmax(*maxd, fabs((double)r[j] - o[j]));
		}
		for (int j = 0; j < V; j++) {
			zr += exp(r[j] - mr);
			zo += exp(o[j] - mo);
		}
		for (int j = 0; j < V; j++) {
			double lp = r[j] - mr - log(zr), lq = o[j] - mo - log(zo);
			k += exp(lp) * (lp - lq);
		}
		*kl += k / n;
		if (t1 - t2 > 0.5 && ar != ao)
			(*disagree)++;
	}
}

/*
 * How close the training forward must come to the engine's, which depends on what the
 * engine's KV cache holds.  In float32 the two differ by the order of sums alone (mean KL
 * measured at most 7.4e-12 over the ten fixture families).  Stored as F16 (a branch makes
 * that the default) the engine's keys and values are rounded: simulated by rounding them
 * to binary16, that moved the mean KL to 1.5e-7 .. 7.7e-7, the largest logit by up to
 * 2e-2 and the loss by 2.4e-4 of itself; the tolerances then keep five to ten times that,
 * still far below what a missed feature moves (a KL of 1e-3 to 10).  A cache of float32
 * is one of exactly slots x (K + V) floats per layer.
 */
struct engine_tol {
	double kl, maxd, nll;
	const char *kv;
};

static struct engine_tol
engine_tol(const struct llm_ctx *c, const struct llm_model *m)
{
	static const struct engine_tol f32 = { 1e-9, 1e-3, 1e-5, "f32 KV" }, f16 = { 5e-6, 0.1, 2e-3, "KV not f32" };
	const struct llm_hparams *hp = llm_model_hparams(m);
	const size_t width = (size_t)hp->n_head_kv * (hp->head_dim + hp->head_dim_v);

	for (int il = 0; il < hp->n_layer; il++) {
		struct llm_cache_info info;
		if (llm_ctx_cache_layer(c, il, &info) == 0 && info.kind == LLM_CACHE_RECURRENT)
			continue;   /* a state in float32, no keys nor values */
		if (llm_ctx_cache_layer(c, il, &info) < 0 || info.bytes != (size_t)info.slots * width * sizeof(float))
			return f16;
	}
	return f32;
}

struct model_ctx {
	struct tmodel *tm;
	const int32_t *tok, *target;
	const uint8_t *mask;
	int T, train;
	double norm;
};

static double
model_loss(void *vctx)
{
	struct model_ctx *c = vctx;
	char err[256];
	double nll = 0;
	if (tmodel_forward(c->tm, c->tok, c->T, c->train, 7, NULL, err, sizeof(err)) < 0 ||
	    tmodel_backward(c->tm, c->target, c->mask, c->norm, 0, &nll, NULL, err, sizeof(err)) < 0)
		return NAN;
	return nll / c->norm;
}

/* Sets every LoRA parameter to BASE + H * DIR (both laid out pair by pair, a then b);
 * BASE NULL: reads the parameters into DIR instead. */
static void
set_params(struct tmodel *tm, const double *base, double *dir, double h)
{
	size_t at = 0;
	for (int i = 0; i < tmodel_lora_count(tm); i++) {
		struct tlora *lo = tmodel_lora(tm, i);
		size_t na = (size_t)lo->rank * tmodel_lora_n_in(tm, i), nb = (size_t)tmodel_lora_n_out(tm, i) * lo->rank;
		for (size_t j = 0; j < na + nb; j++, at++) {
			float *p = j < na ? &lo->a[j] : &lo->b[j - na];
			if (base)
				*p = (float)(base[at] + h * dir[at]);
			else
				dir[at] = *p;
		}
	}
}

static size_t
n_params(struct tmodel *tm)
{
	size_t n = 0;
	for (int i = 0; i < tmodel_lora_count(tm); i++)
		n += (size_t)tmodel_lora(tm, i)->rank * (tmodel_lora_n_in(tm, i) + tmodel_lora_n_out(tm, i));
	return n;
}

/* The gradient laid out as move_params reads directions. */
static void
gather_grad(struct tmodel *tm, double *g)
{
	size_t at = 0;
	for (int i = 0; i < tmodel_lora_count(tm); i++) {
		struct tlora *lo = tmodel_lora(tm, i);
		size_t na = (size_t)lo->rank * tmodel_lora_n_in(tm, i), nb = (size_t)tmodel_lora_n_out(tm, i) * lo->rank;
		for (size_t j = 0; j < na; j++)
			g[at++] = lo->da[j];
		for (size_t j = 0; j < nb; j++)
			g[at++] = lo->db[j];
	}
}

#define MODEL_TOL 5e-3

/* Central differences with steps H and H/2 combined (Richardson): the h^2 error term
 * cancels, so a step large enough to rise above the float32 forward's rounding keeps its
 * truncation error small.  Along direction DIR over every parameter: */
static double
richardson_dir(struct model_ctx *c, const double *base, double *dir, double h)
{
	double d[2];
	for (int k = 0; k < 2; k++) {
		double hk = k ? h / 2 : h, lp, lm;
		set_params(c->tm, base, dir, hk);
		lp = model_loss(c);
		set_params(c->tm, base, dir, -hk);
		lm = model_loss(c);
		d[k] = (lp - lm) / (2 * hk);
	}
	set_params(c->tm, base, dir, 0);
	return (4 * d[1] - d[0]) / 3;
}

/* and on the single parameter *P (the steps actually taken in float are used). */
static double
richardson_one(struct model_ctx *c, float *p, double h)
{
	float v = *p;
	double d[2];
	for (int k = 0; k < 2; k++) {
		double hk = k ? h / 2 : h, lp, lm;
		float vp = (float)(v + hk), vm = (float)(v - hk);
		*p = vp;
		lp = model_loss(c);
		*p = vm;
		lm = model_loss(c);
		*p = v;
		d[k] = (lp - lm) / ((double)vp - vm);
	}
	return (4 * d[1] - d[0]) / 3;
}

/*
 * End to end: the gradient of the mean masked NLL with respect to every LoRA parameter,
 * checked by central differences along directions (the gradient's own, and random ones,
 * each the sum over all parameters) and on single parameters: the largest-gradient
 * component of every pair's A and B.
 */
static void
check_model_grad_n(const char *label, struct model_ctx *c, int max_single)
{
	char err[256];
	double nll, worst = 0;
	size_t n = n_params(c->tm);
	double *g = malloc(n * sizeof(double)), *dir = malloc(n * sizeof(double)), gnorm = 0;
	double *base = malloc(n * sizeof(double));
	int cnt;
	const double h = 2e-2;

	tmodel_zero_grad(c->tm);
	CHECK(tmodel_forward(c->tm, c->tok, c->T, c->train, 7, NULL, err, sizeof(err)) == 0, "%s", err);
	CHECK(tmodel_backward(c->tm, c->target, c->mask, c->norm, 1, &nll, &cnt, err, sizeof(err)) == 0, "%s", err);
	gather_grad(c->tm, g);
	set_params(c->tm, NULL, base, 0);
	/* Experts stay as this forward chose them: the gradient is that of the loss with the
	 * choice held fixed, and on these tiny random models some tokens' k-th and (k+1)-th
	 * router logits lie within 1e-3, where a step would flip the choice. */
	tmodel_moe_freeze(c->tm, 1);
	for (size_t i = 0; i < n; i++)
		gnorm += g[i] * g[i];
	gnorm = sqrt(gnorm);
	CHECK(gnorm > 0, "%s: the gradient is zero", label);
	for (int d = 0; d < 4 && gnorm > 0; d++) {
		double an = 0, fd, dn = 0;
		for (size_t i = 0; i < n; i++)
			dir[i] = d == 0 ? g[i] : rnd();
		for (size_t i = 0; i < n; i++)
			dn += dir[i] * dir[i];
		dn = sqrt(dn);
		for (size_t i = 0; i < n; i++) {
			dir[i] /= dn;
			an += dir[i] * g[i];
		}
		/* A unit step along the gradient moves the loss by |g| h: a shorter step keeps
		 * the curvature of the sharper models (qwen3moe) out of the difference. */
		fd = richardson_dir(c, base, dir, h / 4);
		/* relative to |g|, the largest a directional derivative can be */
		worst = fmax(worst, fabs(fd - an) / gnorm);
	}
	/* Single parameters: the largest component of each pair's A and B (of the first and
	 * last MAX_SINGLE / 2 pairs when MAX_SINGLE is not 0). */
	for (int i = 0; i < tmodel_lora_count(c->tm); i++) {
		struct tlora *lo = tmodel_lora(c->tm, i);
		if (max_single && i >= max_single / 2 && i < tmodel_lora_count(c->tm) - max_single / 2)
			continue;
		size_t na = (size_t)lo->rank * tmodel_lora_n_in(c->tm, i), nb = (size_t)tmodel_lora_n_out(c->tm, i) * lo->rank;
		for (int half = 0; half < 2; half++) {
			float *p = half ? lo->b : lo->a, *gp = half ? lo->db : lo->da;
			size_t np = half ? nb : na, best = 0;
			for (size_t j = 1; j < np; j++)
				if (fabs(gp[j]) > fabs(gp[best]))
					best = j;
			double gj = gp[best];
			worst = fmax(worst, fabs(richardson_one(c, p + best, h) - gj) / fmax(fabs(gj), 1e-30));
		}
	}
	tmodel_moe_freeze(c->tm, 0);
	printf("  %-52s %2d pairs, %6zu params, |g| %.3g: worst rel. error %.2e\n", label,
	    tmodel_lora_count(c->tm), n, gnorm, worst);
	worst_model = fmax(worst_model, worst);
	CHECK(worst <= MODEL_TOL, "%s: LoRA gradient error %.3g above %.0e", label, worst, MODEL_TOL);
	free(g);
	free(dir);
	free(base);
}

static void
check_model_grad(const char *label, struct model_ctx *c)
{
	check_model_grad_n(label, c, 0);
}

/*
 * One model against its golden, what test_model, test_family and test_hybrid start from:
 * the golden G (DIR/SUB/NAME), the model, an engine context (64 tokens, one thread, the
 * cache type KV) with its logits of the golden's tokens (ENG) and the tolerance that cache
 * allows, room for the training model's logits (OURS), and SEQ's next-token targets with
 * the mask of the reply's tokens.
 */
struct fwd_case {
	const char *name;
	struct golden g;
	struct llm_model *m;
	struct llm_ctx *ctx;      /* NULL if it could not be made (a CHECK failed) */
	float *eng, *ours;        /* (g.n, V) */
	int V, T;                 /* T = seq->n - 1: inputs seq[0..T), targets seq[1..T] */
	int32_t target[64];
	uint8_t mask[64];
	struct engine_tol tol;
};

/* Returns 0 (fwd_case_close then), or -1 after a failed CHECK when the golden or the
 * model is missing (nothing held). */
static int
fwd_case_open(struct fwd_case *fc, const char *dir, const char *sub, const char *name, enum llm_kv_type kv,
	      const struct golden *seq)
{
	char path[4096], err[512];
	struct llm_ctx_params cp;

	memset(fc, 0, sizeof(*fc));
	fc->name = name;
	fc->tol.kv = "";
	if (golden_load(dir, sub, name, &fc->g) < 0) {
		CHECK(0, "%s: golden missing", name);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/models/%s.gguf", dir, name);
	if (llm_model_load(path, &fc->m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		free(fc->g.logits);
		return -1;
	}
	fc->V = llm_model_hparams(fc->m)->n_vocab;
	fc->T = seq->n - 1;
	fc->eng = malloc((size_t)fc->g.n * fc->V * sizeof(float));
	fc->ours = malloc((size_t)fc->g.n * fc->V * sizeof(float));
	for (int t = 0; t < fc->T; t++) {
		fc->target[t] = seq->tokens[t + 1];
		fc->mask[t] = t + 1 >= seq->n_prompt;   /* the reply's tokens only, as for an assistant turn */
	}
	llm_ctx_params_default(&cp);
	cp.n_ctx = 64;
	cp.n_batch = 64;
	cp.n_threads = 1;
	cp.kv_type = kv;
	fc->ctx = llm_ctx_new_ex(fc->m, &cp, err, sizeof(err));
	CHECK(fc->ctx && llm_eval(fc->ctx, fc->g.tokens, fc->g.n, fc->eng, 1, err, sizeof(err)) == 0, "%s: eval: %s",
	    name, err);
	if (fc->ctx)
		fc->tol = engine_tol(fc->ctx, fc->m);
	return 0;
}

static void
fwd_case_close(struct fwd_case *fc)
{
	llm_ctx_free(fc->ctx);
	llm_model_free(fc->m);
	free(fc->eng);
	free(fc->ours);
	free(fc->g.logits);
}

/* The training forward TM is the model: its logits of the golden's tokens against the
 * engine's (within the case's tolerance) and the golden's, called GOLDEN in the printed
 * line (mean KL at most GOLDEN_KL); both argmaxes the same throughout. */
static void
fwd_case_check(struct fwd_case *fc, struct tmodel *tm, const char *golden, double golden_kl)
{
	char err[512];
	double kl, maxd;
	int dis;

	CHECK(tmodel_forward(tm, fc->g.tokens, fc->g.n, 0, 0, fc->ours, err, sizeof(err)) == 0, "%s", err);
	compare_logits(fc->eng, fc->ours, fc->g.n, fc->V, &kl, &maxd, &dis);
	printf("  %-18s training forward vs llm_eval (%s): mean KL %.2e, max |dlogit| %.2e\n", fc->name, fc->tol.kv, kl,
	    maxd);
	CHECK(kl <= fc->tol.kl && maxd <= fc->tol.maxd && dis == 0, "%s: training forward differs from llm_eval (KL "
	    "%.3g, max %.3g, %d argmax)", fc->name, kl, maxd, dis);
	compare_logits(fc->g.logits, fc->ours, fc->g.n, fc->V, &kl, &maxd, &dis);
	printf("  %-18s training forward vs %s: mean KL %.2e, max |dlogit| %.2e\n", fc->name, golden, kl, maxd);
	CHECK(kl <= golden_kl && dis == 0, "%s: training forward vs golden KL %.3g, %d argmax differ", fc->name, kl, dis);
}

/* The loss agrees with the logits: TM's masked NLL of SEQ against the one from the
 * engine's rows (the engine's context is reused). */
static void
fwd_case_check_loss(struct fwd_case *fc, struct tmodel *tm, const struct golden *seq)
{
	const int T = fc->T, V = fc->V;
	char err[512];
	double nll, ref = 0;
	int cnt;

	llm_ctx_truncate(fc->ctx, 0);
	CHECK(llm_eval(fc->ctx, seq->tokens, seq->n, fc->eng, 1, err, sizeof(err)) == 0, "%s", err);
	CHECK(tmodel_forward(tm, seq->tokens, T, 0, 0, NULL, err, sizeof(err)) == 0, "%s", err);
	CHECK(tmodel_backward(tm, fc->target, fc->mask, 1.0, 0, &nll, &cnt, err, sizeof(err)) == 0, "%s", err);
	for (int t = 0; t < T; t++) {
		const float *r = fc->eng + (size_t)t * V;
		double mx = -INFINITY, z = 0;
		if (!fc->mask[t])
			continue;
		for (int j = 0; j < V; j++)
			mx = fmax(mx, r[j]);
		for (int j = 0; j < V; j++)
			z += exp(r[j] - mx);
		ref += log(z) + mx - r[fc->target[t]];
	}
	CHECK(cnt == T + 1 - seq->n_prompt && fabs(nll - ref) <= fc->tol.nll * ref, "%s: loss %.8g, from llm_eval %.8g",
	    fc->name, nll, ref);
}

/* SEQ: the token sequence trained on (the same for every model: not a model's own greedy
 * continuation, whose loss is near zero on the models that repeat themselves). */
static void
test_model(const char *dir, const char *model_name, const char *adapter, const struct golden *seq)
{
	char path[4096], err[512];
	struct fwd_case fc;
	struct tmodel *tm = NULL;
	double kl, maxd;
	int dis;

	/* 1. The training forward is the model: its logits against the engine's and the golden's.
	 * An f32 cache: the engine's default f16 rounds keys and values, which the training
	 * forward (float throughout) does not. */
	if (fwd_case_open(&fc, dir, "golden", model_name, LLM_KV_F32, seq) < 0)
		return;
	{
		struct tmodel_opts o = { .max_tokens = 40, .targets = TMODEL_ALL_LINEAR, .rank = 4, .alpha = 8.0f,
			.seed = 1 };
		CHECK(tmodel_new(fc.m, &o, &tm, err, sizeof(err)) == 0, "%s: tmodel_new: %s", model_name, err);
	}
	if (tm) {
		fwd_case_check(&fc, tm, "llama.cpp", 1e-5);
		fwd_case_check_loss(&fc, tm, seq);
		/* 2. The gradient of every LoRA parameter, by finite differences.  B drawn non-zero
		 * so that A's gradient is not zero. */
		tmodel_free(tm);
		tm = NULL;
		{
			struct tmodel_opts o = { .max_tokens = 40, .targets = TMODEL_ALL_LINEAR | TMODEL_OUTPUT, .rank = 3,
				.alpha = 6.0f, .init_b = 0.05f, .seed = 2 };
			if (strstr(model_name, "qwen2"))
				o.targets = TMODEL_ALL_LINEAR;   /* tied output */
			CHECK(tmodel_new(fc.m, &o, &tm, err, sizeof(err)) == 0, "%s: %s", model_name, err);
		}
		if (tm) {
			struct model_ctx c = { tm, seq->tokens, fc.target, fc.mask, fc.T, 0,
				(double)(fc.T + 1 - seq->n_prompt) };
			char label[128];
			snprintf(label, sizeof(label), "%s, every linear, rank 3", model_name);
			check_model_grad(label, &c);
			if (strstr(model_name, "llama")) {
				tmodel_free(tm);
				tm = NULL;
				struct tmodel_opts o = { .max_tokens = 40, .targets = TMODEL_Q | TMODEL_V | TMODEL_DOWN, .rank = 2,
					.alpha = 4.0f, .init_b = 0.05f, .dropout = 0.2f, .seed = 3 };
				CHECK(tmodel_new(fc.m, &o, &tm, err, sizeof(err)) == 0, "%s", err);
				c.tm = tm;
				c.train = 1;
				check_model_grad("tiny-llama-f32, q v down, dropout 0.2 (fixed mask)", &c);
			}
		}
	}
	tmodel_free(tm);
	tm = NULL;

	/* A tied model: an adapter to start from that adapts token_embd.weight is refused (its
	 * pair would be trained as the output's; a chat applies it to the lookup). */
	if (strstr(model_name, "qwen2")) {
		const int E = llm_model_hparams(fc.m)->n_embd;
		float *A = calloc((size_t)E * 2, sizeof(float)), *B = calloc((size_t)fc.V * 2, sizeof(float));
		struct lora_pair p = { "token_embd.weight", E, fc.V, 2, A, B, 1 };
		struct lora_file_info info = { .arch = llm_model_hparams(fc.m)->arch_name, .alpha = 2.0f,
			.type = GGML_TYPE_F32 };
		struct lora_adapter *a = NULL;
		snprintf(path, sizeof(path), "%s/tied-init.gguf", tmpdir);
		if (A && B && lora_write(path, &info, &p, 1, err, sizeof(err)) == 0 &&
		    lora_open(path, fc.m, 1.0f, NULL, &a, err, sizeof(err)) == 0) {
			struct tmodel_opts o = { .max_tokens = 40, .init = a };
			CHECK(tmodel_new(fc.m, &o, &tm, err, sizeof(err)) < 0 && strstr(err, "ties to its output projection"),
			    "%s: an init pair on the tied token_embd.weight: '%s'", model_name, tm ? "accepted" : err);
			tmodel_free(tm);
			tm = NULL;
		} else {
			CHECK(0, "%s: the tied adapter: %s", model_name, err);
		}
		lora_free(a);
		unlink(path);
		free(A);
		free(B);
	}

	/* 3. With the fixture adapter: the logits against llama.cpp's with the adapter applied. */
	if (adapter) {
		struct lora_adapter *a = NULL;
		char gname[128];
		snprintf(path, sizeof(path), "%s/lora/%s.gguf", dir, adapter);
		CHECK(lora_open(path, fc.m, 1.0f, NULL, &a, err, sizeof(err)) == 0, "%s", err);
		struct tmodel_opts o = { .max_tokens = 40, .init = a };
		if (a && tmodel_new(fc.m, &o, &tm, err, sizeof(err)) == 0) {
			struct golden lg;
			snprintf(gname, sizeof(gname), "%s-s1", adapter);
			if (golden_load(dir, "lora", gname, &lg) == 0) {
				CHECK(tmodel_forward(tm, lg.tokens, lg.n, 0, 0, fc.ours, err, sizeof(err)) == 0, "%s", err);
				compare_logits(lg.logits, fc.ours, lg.n, fc.V, &kl, &maxd, &dis);
				printf("  %-18s with %s vs llama.cpp: mean KL %.2e, max |dlogit| %.2e\n", model_name, adapter, kl,
				    maxd);
				CHECK(kl <= 1e-5 && dis == 0, "%s + %s: KL %.3g vs llama.cpp, %d argmax differ", model_name, adapter,
				    kl, dis);
				free(lg.logits);
			} else {
				CHECK(0, "%s: golden missing", gname);
			}
			{
				struct model_ctx c = { tm, seq->tokens, fc.target, fc.mask, fc.T, 0,
					(double)(fc.T + 1 - seq->n_prompt) };
				char label[128];
				snprintf(label, sizeof(label), "%s, from %s", model_name, adapter);
				check_model_grad(label, &c);
			}
			tmodel_free(tm);
			tm = NULL;
		} else {
			CHECK(0, "tmodel with %s: %s", adapter, err);
		}
		lora_free(a);
	}
	fwd_case_close(&fc);
}

/* The q4_k_m base with the llama adapter: the training forward over quantized weights. */
static void
test_model_quant(const char *dir)
{
	char path[4096], err[512];
	struct llm_model *m = NULL;
	struct lora_adapter *a = NULL;
	struct tmodel *tm = NULL;
	struct golden g;
	double kl, maxd;
	int dis;

	snprintf(path, sizeof(path), "%s/models/tiny-llama-q4_k_m.gguf", dir);
	if (golden_load(dir, "lora", "lora-tiny-llama-all-r8-q4_k_m", &g) < 0 ||
	    llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "q4_k_m golden or model: %s", err);
		return;
	}
	snprintf(path, sizeof(path), "%s/lora/lora-tiny-llama-all-r8.gguf", dir);
	if (lora_open(path, m, 1.0f, NULL, &a, err, sizeof(err)) == 0) {
		struct tmodel_opts o = { .max_tokens = g.n, .init = a };
		if (tmodel_new(m, &o, &tm, err, sizeof(err)) == 0) {
			float *ours = malloc((size_t)g.n * g.n_vocab * sizeof(float));
			CHECK(tmodel_forward(tm, g.tokens, g.n, 0, 0, ours, err, sizeof(err)) == 0, "%s", err);
			compare_logits(g.logits, ours, g.n, g.n_vocab, &kl, &maxd, &dis);
			printf("  tiny-llama-q4_k_m  with lora-tiny-llama-all-r8 vs llama.cpp: mean KL %.2e, max |dlogit| %.2e\n",
			    kl, maxd);
			CHECK(kl <= 5e-3 && dis == 0, "q4_k_m + adapter: KL %.3g, %d argmax differ", kl, dis);
			free(ours);
		} else {
			CHECK(0, "%s", err);
		}
	} else {
		CHECK(0, "%s", err);
	}
	tmodel_free(tm);
	lora_free(a);
	llm_model_free(m);
	free(g.logits);
}

/* --- the families of the architecture registry --- */

static const struct {
	const char *model;
	unsigned targets;   /* of the gradient check (the tied ones have no output to adapt) */
	int max_single;     /* pairs checked one parameter at a time: the first and last half (0: all) */
} families[] = {
	{ "tiny-gemma2-f32", TMODEL_Q | TMODEL_K | TMODEL_V | TMODEL_O | TMODEL_DOWN, 6 },
	{ "tiny-gemma3-f32", TMODEL_ALL_LINEAR, 8 },
	{ "tiny-qwen3-f32", TMODEL_ALL_LINEAR, 0 },
	{ "tiny-qwen3moe-f32", TMODEL_ALL_LINEAR | TMODEL_OUTPUT, 0 },
	{ "tiny-qwen2moe-f32", TMODEL_ALL_LINEAR | TMODEL_OUTPUT, 0 },
	{ "tiny-llamamoe-f32", TMODEL_ALL_LINEAR | TMODEL_OUTPUT, 0 },
	{ "tiny-phi3lr-f32", TMODEL_ALL_LINEAR | TMODEL_OUTPUT, 0 },
};

/* One family: (1) the training forward against llm_eval and the family's golden; (2) the
 * LoRA gradients end to end by central differences on SEQ (the same tokens as the other
 * models: not the model's own continuation). */
static void
test_family(const char *dir, int fi, const struct golden *seq)
{
	const char *name = families[fi].model;
	char err[512], label[128];
	struct fwd_case fc;
	struct tmodel *tm = NULL;

	/* A context of 64 (and a training model of 40 tokens): past phi3lr's original context
	 * of 32, so both take LongRoPE's long factors, as the golden does. */
	if (fwd_case_open(&fc, dir, "golden-archs", name, LLM_KV_F16, seq) < 0)
		return;
	{
		struct tmodel_opts o = { .max_tokens = 40, .targets = TMODEL_Q, .rank = 4, .alpha = 8.0f, .seed = 1 };
		CHECK(tmodel_new(fc.m, &o, &tm, err, sizeof(err)) == 0, "%s: tmodel_new: %s", name, err);
	}
	if (tm) {
		fwd_case_check(&fc, tm, "its golden", 1e-5);
		tmodel_free(tm);
		tm = NULL;
	}
	{
		struct tmodel_opts o = { .max_tokens = 40, .targets = families[fi].targets, .rank = 3, .alpha = 6.0f,
			.init_b = 0.05f, .seed = 2 };
		CHECK(tmodel_new(fc.m, &o, &tm, err, sizeof(err)) == 0, "%s: %s", name, err);
	}
	if (tm) {
		struct model_ctx c = { tm, seq->tokens, fc.target, fc.mask, fc.T, 0,
			(double)(fc.T + 1 - seq->n_prompt) };
		snprintf(label, sizeof(label), "%s, rank 3%s", name, families[fi].max_single ? " (pairs: some one by one)" : "");
		check_model_grad_n(label, &c, families[fi].max_single);
	}
	tmodel_free(tm);
	fwd_case_close(&fc);
}

/* --- the hybrid (Qwen3.5: Gated DeltaNet and gated attention layers) --- */

/*
 * NAME (golden-hybrid/): (1) the training forward against llm_eval and the golden, and its
 * loss against the engine's logits; with GRAD, (2) every LoRA parameter's gradient by
 * central differences on SEQ (as the other models), and (3) the pairs it adapts, by name.
 */
static void
test_hybrid(const char *dir, const char *name, int grad, const struct golden *seq)
{
	char err[512], label[128];
	struct fwd_case fc;
	struct tmodel *tm = NULL;
	int q8 = strstr(name, "q8_0") != NULL;

	if (fwd_case_open(&fc, dir, "golden-hybrid", name, LLM_KV_F32, seq) < 0)
		return;
	{
		struct tmodel_opts o = { .max_tokens = 40, .targets = TMODEL_ALL_LINEAR, .rank = 4, .alpha = 8.0f, .seed = 1,
			.n_threads = 2 };
		CHECK(tmodel_new(fc.m, &o, &tm, err, sizeof(err)) == 0, "%s: tmodel_new: %s", name, err);
	}
	if (tm) {
		if (q8) {
			/* The engine rounds the activations to Q8_0 before each Q8_0 product, as
			 * llama.cpp does (QWEN35.md: a KL of 1.5e-3 on this file); the training
			 * forward multiplies them in float32, as the float64 golden of the same
			 * weights does.  The README's tolerance for the file then. */
			fc.tol.kl = 5e-3;
			fc.tol.maxd = 1.0;
			fc.tol.nll = 5e-3;
			fc.tol.kv = "f32 KV, activations Q8_0";
		}
		fwd_case_check(&fc, tm, "its golden (numpy float64)", q8 ? 5e-3 : 1e-5);
		/* the loss from the engine's rows */
		fwd_case_check_loss(&fc, tm, seq);
		tmodel_free(tm);
		tm = NULL;
	}
	if (grad) {
		struct tmodel_opts o = { .max_tokens = 40, .targets = TMODEL_ALL_LINEAR | TMODEL_OUTPUT, .rank = 3,
			.alpha = 6.0f, .init_b = 0.05f, .seed = 2 };
		CHECK(tmodel_new(fc.m, &o, &tm, err, sizeof(err)) == 0, "%s: %s", name, err);
		if (tm) {
			struct model_ctx c = { tm, seq->tokens, fc.target, fc.mask, fc.T, 0,
				(double)(fc.T + 1 - seq->n_prompt) };
			/* Every layer's pairs: the recurrent ones adapt attn_qkv and ssm_out, the
			 * attention one attn_q (query and gate), attn_k, attn_v, attn_output. */
			static const char *const want_names[] = { "blk.0.attn_qkv.weight", "blk.0.ssm_out.weight",
				"blk.2.attn_qkv.weight", "blk.3.attn_q.weight", "blk.3.attn_k.weight", "blk.3.attn_v.weight",
				"blk.3.attn_output.weight", "blk.1.ffn_gate.weight", "blk.3.ffn_down.weight", "output.weight" };
			for (size_t i = 0; i < sizeof(want_names) / sizeof(want_names[0]); i++) {
				int found = 0;
				for (int p = 0; p < tmodel_lora_count(tm); p++)
					found |= strcmp(tmodel_lora_base(tm, p), want_names[i]) == 0;
				CHECK(found, "%s: no pair on %s", name, want_names[i]);
			}
			CHECK(tmodel_lora_count(tm) == 3 * 5 + 7 + 1, "%s: %d pairs", name, tmodel_lora_count(tm));
			for (int p = 0; p < tmodel_lora_count(tm); p++)
				CHECK(!strstr(tmodel_lora_base(tm, p), "attn_gate") && !strstr(tmodel_lora_base(tm, p), "ssm_"
				    "alpha") && !strstr(tmodel_lora_base(tm, p), "ssm_beta"), "a pair on %s", tmodel_lora_base(tm, p));
			snprintf(label, sizeof(label), "%s, every linear + output, rank 3", name);
			check_model_grad(label, &c);
			/* o and down alone, with dropout: the first layer's DeltaNet backward stops at
			 * ssm_out, nothing below it being trained */
			tmodel_free(tm);
			tm = NULL;
			o.targets = TMODEL_O | TMODEL_DOWN;
			o.dropout = 0.2f;
			o.seed = 3;
			CHECK(tmodel_new(fc.m, &o, &tm, err, sizeof(err)) == 0, "%s: %s", name, err);
			if (tm) {
				c.tm = tm;
				c.train = 1;
				snprintf(label, sizeof(label), "%s, o down, dropout 0.2 (fixed mask)", name);
				check_model_grad(label, &c);
			}
		}
	}
	tmodel_free(tm);
	fwd_case_close(&fc);
}

/* What the training model cannot compute is refused by name: a layer kind, block features
 * or an activation it does not know, a recurrent layer without a usable shape, a gate over
 * value heads narrower than the queries (hyperparameters made here from tiny-llama's), FFN
 * targets on experts.  The hybrid qwen35 trains. */
static void
test_refusals(const char *dir)
{
	static const char *const runs[] = { "tiny-llama-f32", "tiny-qwen2-f32", "tiny-phi3-f32", "tiny-gemma2-f32",
		"tiny-gemma3-f32", "tiny-qwen3-f32", "tiny-qwen3moe-f32", "tiny-qwen2moe-f32", "tiny-llamamoe-f32",
		"tiny-phi3lr-f32" };
	char path[4096], err[512];
	struct llm_model *m = NULL;
	struct tmodel *tm = NULL;

	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		snprintf(path, sizeof(path), "%s/models/%s.gguf", dir, runs[i]);
		if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
			CHECK(0, "%s", err);
			continue;
		}
		CHECK(tmodel_check(llm_model_hparams(m), err, sizeof(err)) == 0, "%s refused: %s", runs[i], err);
		if (i == 0) {
			struct llm_hparams hp = *llm_model_hparams(m);
			struct llm_layer_hparams layer[2];
			memcpy(layer, hp.layer, sizeof(layer));
			hp.layer = layer;
			layer[1].kind = LLM_LAYER_RECURRENT;
			CHECK(tmodel_check(&hp, err, sizeof(err)) < 0 && strstr(err, "layer 1 of this llama model is recurrent") &&
			    strstr(err, "not usable") && strstr(err, "group_count"), "a recurrent layer without its shape: %s", err);
			hp.ssm_n_group = 2;
			hp.ssm_dt_rank = 4;
			hp.ssm_d_state = 8;
			hp.ssm_d_inner = 32;
			hp.ssm_d_conv = 4;
			CHECK(tmodel_check(&hp, err, sizeof(err)) == 0, "a recurrent layer with its shape: %s", err);
			hp.ssm_d_inner = 30;
			CHECK(tmodel_check(&hp, err, sizeof(err)) < 0 && strstr(err, "not usable"), "inner size 30 of 4 heads: %s",
			    err);
			layer[1].flags |= LLM_LAYER_ATTN_GATE;
			layer[1].kind = LLM_LAYER_FULL;
			hp.head_dim_v = hp.head_dim / 2;
			CHECK(tmodel_check(&hp, err, sizeof(err)) < 0 && strstr(err, "layer 1") && strstr(err, "gates its attention"),
			    "a gate over narrower values: %s", err);
			hp.head_dim_v = hp.head_dim;
			CHECK(tmodel_check(&hp, err, sizeof(err)) == 0, "a gated attention layer: %s", err);
			layer[1].flags &= ~(unsigned)LLM_LAYER_ATTN_GATE;
			layer[1].kind = LLM_LAYER_SLIDING;
			layer[1].window = 4;
			CHECK(tmodel_check(&hp, err, sizeof(err)) == 0, "a sliding layer: %s", err);
			layer[0].flags |= 1u << 9;
			CHECK(tmodel_check(&hp, err, sizeof(err)) < 0 && strstr(err, "layer 0") && strstr(err, "flags 0x200"),
			    "an unknown block feature: %s", err);
			layer[0].flags &= ~(1u << 9);
			hp.ffn_act = (enum llm_ffn_act)7;
			CHECK(tmodel_check(&hp, err, sizeof(err)) < 0 && strstr(err, "activation (7)"), "an unknown activation: %s",
			    err);
		}
		if (strstr(runs[i], "llamamoe")) {
			/* The FFN targets select nothing in a layer of experts; alone, nothing at all. */
			struct tmodel_opts o = { .max_tokens = 8, .targets = TMODEL_GATE | TMODEL_UP | TMODEL_DOWN, .rank = 2,
				.alpha = 4.0f };
			CHECK(tmodel_new(m, &o, &tm, err, sizeof(err)) < 0 && strstr(err, "no weight to train") &&
			    strstr(err, "layer of experts"), "FFN targets on experts: %s", err);
			o.targets = TMODEL_ALL_LINEAR;
			CHECK(tmodel_new(m, &o, &tm, err, sizeof(err)) == 0 && tmodel_lora_count(tm) == 8, "all on experts: %s "
			    "(%d pairs)", err, tm ? tmodel_lora_count(tm) : -1);
			for (int p = 0; tm && p < tmodel_lora_count(tm); p++)
				CHECK(strstr(tmodel_lora_base(tm, p), "attn_") != NULL, "a pair on %s", tmodel_lora_base(tm, p));
			tmodel_free(tm);
			tm = NULL;
		}
		llm_model_free(m);
		m = NULL;
	}
	/* The hybrid trains (its own block is described by its layers' kinds and flags); the
	 * targets that select none of its weights are refused as for any model. */
	snprintf(path, sizeof(path), "%s/models/tiny-qwen35-f32.gguf", dir);
	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "qwen35: %s", err);
	} else {
		struct tmodel_opts o = { .max_tokens = 8, .targets = TMODEL_O, .rank = 2, .alpha = 4.0f };
		CHECK(tmodel_check(llm_model_hparams(m), err, sizeof(err)) == 0, "qwen35 refused: %s", err);
		CHECK(tmodel_new(m, &o, &tm, err, sizeof(err)) == 0 && tmodel_lora_count(tm) == 4, "qwen35, o: %s (%d pairs)",
		    err, tm ? tmodel_lora_count(tm) : -1);
		for (int p = 0; tm && p < tmodel_lora_count(tm); p++)
			CHECK(strcmp(tmodel_lora_base(tm, p), p == 3 ? "blk.3.attn_output.weight" : "") == 0 ||
			    (p < 3 && strstr(tmodel_lora_base(tm, p), "ssm_out")), "o selects %s", tmodel_lora_base(tm, p));
		tmodel_free(tm);
		llm_model_free(m);
	}
	/* Weights packed for inference (llm_model_pack) are not the file's
	 * layout, which training reads: refused, by name. */
	snprintf(path, sizeof(path), "%s/models/tiny-llama-q4_0.gguf", dir);
	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
	} else {
		struct tmodel_opts o = { .max_tokens = 8, .targets = TMODEL_O, .rank = 2, .alpha = 4.0f };
		tm = NULL;
		if (llm_model_pack(m) > 0)
			CHECK(tmodel_new(m, &o, &tm, err, sizeof(err)) < 0 && strstr(err, "rearranged for inference"),
			    "a packed model: %s", tm ? "accepted" : err);
		else
			printf("note: %s not packed here (tier %s, weights %s)\n", path, q_cpu_features(),
			    llm_model_weights_copied(m) ? "copied" : "mapped");
		tmodel_free(tm);
		llm_model_free(m);
	}
}

/* Gradient accumulation, a few AdamW steps that learn, saving and reloading. */
static void
test_training(const char *dir)
{
	char path[4096], err[512];
	struct llm_model *m = NULL;
	struct tmodel *tm = NULL, *tm2 = NULL;
	struct golden g;
	int32_t target[64];
	uint8_t mask[64];
	int T;

	snprintf(path, sizeof(path), "%s/models/tiny-qwen2-q8_0.gguf", dir);
	if (golden_load(dir, "golden", "tiny-llama-f32", &g) < 0 || llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "qwen2 q8_0: %s", err);
		return;
	}
	T = g.n - 1;
	for (int t = 0; t < T; t++) {
		target[t] = g.tokens[t + 1];
		mask[t] = t + 1 >= g.n_prompt;
	}
	struct tmodel_opts o = { .max_tokens = T, .targets = TMODEL_ALL_LINEAR, .rank = 4, .alpha = 8.0f,
		.dropout = 0.05f, .seed = 5 };
	if (tmodel_new(m, &o, &tm, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		goto out;
	}
	/* Accumulation: the gradient of two micro-batches (the sequence's two halves of the
	 * targets, one normaliser) is the gradient of the whole. */
	{
		uint8_t m1[64], m2[64];
		size_t n = n_params(tm);
		double *g1 = malloc(n * sizeof(double)), *g2 = malloc(n * sizeof(double)), nll, scale = 0, diff = 0;
		int cnt = 0;
		for (int t = 0; t < T; t++) {
			m1[t] = mask[t] && t < 20;
			m2[t] = mask[t] && t >= 20;
			cnt += mask[t];
		}
		/* B = 0 at the start makes A's gradient zero: take one step first. */
		struct adamw_cfg ac = adamw_cfg_default();
		tmodel_zero_grad(tm);
		tmodel_forward(tm, g.tokens, T, 1, 1, NULL, err, sizeof(err));
		tmodel_backward(tm, target, mask, cnt, 1, &nll, NULL, err, sizeof(err));
		tmodel_adamw_step(tm, &ac, 1e-2f, 1.0f);

		tmodel_zero_grad(tm);
		tmodel_forward(tm, g.tokens, T, 1, 9, NULL, err, sizeof(err));
		tmodel_backward(tm, target, mask, cnt, 1, &nll, NULL, err, sizeof(err));
		gather_grad(tm, g1);
		tmodel_zero_grad(tm);
		tmodel_forward(tm, g.tokens, T, 1, 9, NULL, err, sizeof(err));
		tmodel_backward(tm, target, m1, cnt, 1, &nll, NULL, err, sizeof(err));
		tmodel_forward(tm, g.tokens, T, 1, 9, NULL, err, sizeof(err));
		tmodel_backward(tm, target, m2, cnt, 1, &nll, NULL, err, sizeof(err));
		gather_grad(tm, g2);
		for (size_t i = 0; i < n; i++) {
			scale = fmax(scale, fabs(g1[i]));
			diff = fmax(diff, fabs(g1[i] - g2[i]));
		}
		CHECK(scale > 0 && diff <= 1e-5 * scale, "accumulated gradient differs by %.3g (of %.3g)", diff, scale);
		free(g1);
		free(g2);
	}
	/* Learning: 30 steps of AdamW on this one sequence lower its loss (dropout on). */
	{
		struct adamw_cfg ac = adamw_cfg_default();
		struct adamw_sched sc = { 1e-2f, 1e-3f, 5, 30 };
		double first = 0, last = 0, nll;
		int cnt;
		for (int step = 0; step < 30; step++) {
			tmodel_zero_grad(tm);
			tmodel_forward(tm, g.tokens, T, 1, (uint64_t)step, NULL, err, sizeof(err));
			tmodel_backward(tm, target, mask, 1.0, 1, &nll, &cnt, err, sizeof(err));
			if (step == 0)
				first = nll / cnt;
			tmodel_adamw_step(tm, &ac, adamw_sched_lr(&sc, step), 1.0f / cnt);
		}
		tmodel_forward(tm, g.tokens, T, 0, 0, NULL, err, sizeof(err));
		tmodel_backward(tm, target, mask, 1.0, 0, &nll, &cnt, err, sizeof(err));
		last = nll / cnt;
		printf("  30 AdamW steps on tiny-qwen2-q8_0 (rank 4, all linears): mean NLL %.3f -> %.3f\n", first, last);
		CHECK(last < 0.5 * first, "training did not learn: %.3f -> %.3f", first, last);
	}
	/* Saved, reopened as an adapter and loaded again: the same logits. */
	{
		struct lora_adapter *a = NULL;
		float *l1 = malloc((size_t)T * g.n_vocab * sizeof(float)), *l2 = malloc((size_t)T * g.n_vocab * sizeof(float));
		snprintf(path, sizeof(path), "%s/trained.gguf", tmpdir);
		CHECK(tmodel_lora_save(tm, path, "trained", GGML_TYPE_F32, NULL, err, sizeof(err)) == 0, "save: %s", err);
		CHECK(lora_open(path, m, 1.0f, NULL, &a, err, sizeof(err)) == 0, "reopen: %s", err);
		if (a) {
			struct tmodel_opts o2 = { .max_tokens = T, .init = a };
			CHECK(lora_count(a) == tmodel_lora_count(tm) && lora_alpha(a) == 8.0f, "saved pairs");
			CHECK(tmodel_new(m, &o2, &tm2, err, sizeof(err)) == 0, "%s", err);
			if (tm2) {
				tmodel_forward(tm, g.tokens, T, 0, 0, l1, err, sizeof(err));
				tmodel_forward(tm2, g.tokens, T, 0, 0, l2, err, sizeof(err));
				CHECK(memcmp(l1, l2, (size_t)T * g.n_vocab * sizeof(float)) == 0, "reloaded adapter changes logits");
			}
		}
		lora_free(a);
		free(l1);
		free(l2);
	}
	/* Errors: a sequence too long, a target out of range. */
	{
		double nll;
		CHECK(tmodel_forward(tm, g.tokens, T + 1, 0, 0, NULL, err, sizeof(err)) < 0 && strstr(err, "at most"),
		    "too long: %s", err);
		tmodel_forward(tm, g.tokens, T, 0, 0, NULL, err, sizeof(err));
		target[3] = 100000;
		CHECK(tmodel_backward(tm, target, NULL, 1.0, 0, &nll, NULL, err, sizeof(err)) < 0 && strstr(err, "out of range"),
		    "bad target: %s", err);
	}
out:
	tmodel_free(tm);
	tmodel_free(tm2);
	llm_model_free(m);
	free(g.logits);
}

/* --- threads and recomputation --- */

/* The gradient of one forward and backward (dropout on) of TM over SEQ, into G. */
static void
grad_of(struct tmodel *tm, const struct golden *seq, const int32_t *target, const uint8_t *mask, float *g)
{
	char err[256];
	double nll;
	tmodel_zero_grad(tm);
	CHECK(tmodel_forward(tm, seq->tokens, seq->n - 1, 1, 77, NULL, err, sizeof(err)) == 0, "%s", err);
	CHECK(tmodel_backward(tm, target, mask, 10.0, 1, &nll, NULL, err, sizeof(err)) == 0, "%s", err);
	tmodel_grad_get(tm, g);
}

/*
 * The same gradient on 1 and 3 threads (to rounding: BLAS sums the split rows in another
 * order) and, with recomputation of each layer in the backward, bit for bit the same as
 * without it on the same threads.  Dropout on, so that the recomputed layers must draw the
 * same masks.
 */
static void
test_threads_recompute(const char *dir, const char *model_name, int output, const struct golden *seq)
{
	char path[4096], err[512];
	struct llm_model *m = NULL;
	struct tmodel *tm[4] = { NULL };
	float *g[4] = { NULL };
	int32_t target[64];
	uint8_t mask[64];
	size_t n = 0;

	snprintf(path, sizeof(path), "%s/models/%s.gguf", dir, model_name);
	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return;
	}
	for (int t = 0; t < seq->n - 1; t++) {
		target[t] = seq->tokens[t + 1];
		mask[t] = t + 1 >= seq->n_prompt;
	}
	for (int k = 0; k < 4; k++) {
		struct tmodel_opts o = { .max_tokens = 40, .targets = TMODEL_ALL_LINEAR, .rank = 4, .alpha = 8.0f,
			.init_b = 0.05f, .dropout = 0.1f, .seed = 4, .n_threads = k & 1 ? 3 : 1, .recompute = k >= 2 };
		if (output)
			o.targets |= TMODEL_OUTPUT;
		if (tmodel_new(m, &o, &tm[k], err, sizeof(err)) < 0) {
			CHECK(0, "%s: %s", model_name, err);
			goto out;
		}
		n = tmodel_n_params(tm[k]);
		g[k] = malloc(n * sizeof(float));
		grad_of(tm[k], seq, target, mask, g[k]);
	}
	{
		double scale = 0, diff = 0;
		for (size_t i = 0; i < n; i++) {
			scale = fmax(scale, fabs(g[0][i]));
			diff = fmax(diff, fabs((double)g[0][i] - g[1][i]));
		}
		printf("  %-18s 3 threads vs 1: max |dg| %.1e of %.2g; recomputed layers: %s, %s\n", model_name, diff,
		    scale, memcmp(g[0], g[2], n * sizeof(float)) ? "DIFFER" : "identical",
		    memcmp(g[1], g[3], n * sizeof(float)) ? "DIFFER" : "identical");
		CHECK(scale > 0 && diff <= 1e-5 * scale, "%s: gradient on 3 threads differs by %.3g (of %.3g)", model_name,
		    diff, scale);
		CHECK(memcmp(g[0], g[2], n * sizeof(float)) == 0, "%s: recomputation changes the gradient (1 thread)",
		    model_name);
		CHECK(memcmp(g[1], g[3], n * sizeof(float)) == 0, "%s: recomputation changes the gradient (3 threads)",
		    model_name);
	}
out:
	for (int k = 0; k < 4; k++) {
		tmodel_free(tm[k]);
		free(g[k]);
	}
	llm_model_free(m);
}

/* The frozen linear layer split among threads, against the calling thread alone. */
static void
test_linear_threads(void)
{
	enum { T = 37, NI = 96, NO = 1000, RK = 5 };
	struct pool *p = pool_new(3);
	float *W = malloc(sizeof(float) * NO * NI), *x = malloc(sizeof(float) * T * NI), *dy = malloc(sizeof(float) * T * NO);
	float *y[2], *dx[2], *u[2], *da[2], *db[2], A[RK * NI], B[NO * RK];
	double e = 0, s = 0;

	fill(W, (size_t)NO * NI, 0.3);
	fill(x, (size_t)T * NI, 1.0);
	fill(dy, (size_t)T * NO, 1.0);
	fill(A, RK * NI, 0.3);
	fill(B, NO * RK, 0.3);
	for (int k = 0; k < 2; k++) {
		struct tlora lo = { RK, 0.7f, 0.2f, A, B, NULL, NULL };
		struct tlinear l = { { W, GGML_TYPE_F32, NI, NO, NI * sizeof(float) }, NULL, &lo };
		float *scr = malloc(tlinear_scratch_floats(&l, T, 3) * sizeof(float));
		y[k] = malloc(sizeof(float) * T * NO);
		u[k] = malloc(sizeof(float) * T * RK);
		dx[k] = calloc((size_t)T * NI, sizeof(float));
		lo.da = da[k] = calloc(RK * NI, sizeof(float));
		lo.db = db[k] = calloc(NO * RK, sizeof(float));
		CHECK(tlinear_fwd(&l, k ? p : NULL, x, T, 1, 5, y[k], u[k], scr) == 0, "threaded forward");
		CHECK(tlinear_bwd(&l, k ? p : NULL, x, T, 1, 5, u[k], dy, dx[k], scr) == 0, "threaded backward");
		free(scr);
	}
	for (size_t i = 0; i < (size_t)T * NO; i++) {
		e = fmax(e, fabs((double)y[0][i] - y[1][i]));
		s = fmax(s, fabs(y[0][i]));
	}
	for (size_t i = 0; i < (size_t)T * NI; i++)
		e = fmax(e, fabs((double)dx[0][i] - dx[1][i]) / 1e2);
	for (size_t i = 0; i < RK * NI; i++)
		e = fmax(e, fabs((double)da[0][i] - da[1][i]) / 1e2);
	for (size_t i = 0; i < NO * RK; i++)
		e = fmax(e, fabs((double)db[0][i] - db[1][i]) / 1e2);
	CHECK(p && e <= 1e-5 * s, "linear on 3 threads differs by %.3g", e);
	for (int k = 0; k < 2; k++) {
		free(y[k]);
		free(u[k]);
		free(dx[k]);
		free(da[k]);
		free(db[k]);
	}
	free(W);
	free(x);
	free(dy);
	pool_free(p);
}

/* --- training data: templates, the loss mask, JSON lines --- */

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

/* The text of SEQ's tokens [I0, I1) with LOSS[i] == WANT (all when WANT < 0), as pieces. */
static void
seq_text(const struct tok_vocab *v, const struct tdata_seq *q, int want, char *out, size_t cap)
{
	size_t at = 0;
	out[0] = 0;
	for (int i = 0; i < q->n; i++) {
		char piece[256];
		int n;
		if (want >= 0 && q->loss[i] != want)
			continue;
		n = tok_piece(v, q->tok[i], 1, piece, sizeof(piece));
		if (n > 0 && at + (size_t)n < cap) {
			memcpy(out + at, piece, (size_t)n);
			at += (size_t)n;
			out[at] = 0;
		}
	}
}

/*
 * The loss falls on the replies and their end-of-turn token, found by rendering prefixes;
 * what precedes a reply is exactly the prompt a chat sends for it.  Qwen2's vocabulary
 * and template (<|im_end|> is an end-of-generation token) and aidreams' with chatml (it is
 * not a token there: the whole closing text is learned).
 */
static void
test_tdata_mask(const char *dir)
{
	static const struct tdata_msg conv[] = {
		{ "system", "Be brief.", 0 },
		{ "user", "Hello there", 0 },
		{ "assistant", "Hi! How can I help?", 1 },
		{ "user", "Name a colour.", 0 },
		{ "assistant", " Blue, of course.", 1 },
	};
	char path[4096], err[512], text[4096];
	struct gguf_file *f = NULL;
	struct tok_vocab *v = NULL;
	struct tdata_tmpl *t = NULL;
	struct tdata_seq q, pr;

	char tpath[4096];

	snprintf(path, sizeof(path), "%s/vocab/vocab-qwen2.gguf", dir);
	snprintf(tpath, sizeof(tpath), "%s/templates/Qwen-Qwen2.5-7B-Instruct.jinja", dir);
	if (gguf_open(path, &f, err, sizeof(err)) < 0 || tok_vocab_load(f, &v, err, sizeof(err)) < 0 ||
	    tdata_tmpl_new(f, "qwen2", v, tpath, &t, err, sizeof(err)) < 0) {
		CHECK(0, "qwen2 vocabulary: %s", err);
		goto out;
	}
	CHECK(strcmp(tdata_tmpl_name(t), tpath) == 0, "qwen2 template: %s", tdata_tmpl_name(t));
	CHECK(tdata_encode(t, conv, 5, &q, err, sizeof(err)) == 0, "encode: %s", err);
	seq_text(v, &q, 1, text, sizeof(text));
	CHECK(strcmp(text, "Hi! How can I help?<|im_end|> Blue, of course.<|im_end|>") == 0, "qwen2 loss tokens: '%s'",
	    text);
	CHECK(q.n_loss > 0 && q.loss[q.n - 1] && tok_is_eog(v, q.tok[q.n - 1]), "qwen2: ends on the scored <|im_end|>");
	/* The tokens before the first reply are the prompt chat.c sends for it. */
	CHECK(tdata_encode_prompt(t, conv, 2, &pr, err, sizeof(err)) == 0, "prompt: %s", err);
	CHECK(pr.n > 0 && pr.n < q.n && memcmp(pr.tok, q.tok, pr.n * sizeof(int32_t)) == 0 && q.loss[pr.n] &&
	    !q.loss[pr.n - 1], "qwen2: the first reply does not start right after its prompt");
	tdata_seq_free(&pr);
	seq_text(v, &q, -1, text, sizeof(text));
	CHECK(strstr(text, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello there<|im_end|>\n"
	    "<|im_start|>assistant\nHi!") == text, "qwen2 rendering: '%s'", text);
	tdata_seq_free(&q);
	tdata_tmpl_free(t);
	t = NULL;
	/* The file's own template is Qwen3's: it writes an empty <think> block into the last
	 * reply only, so an earlier reply is not rendered as the prompt for it continues: the
	 * last reply can be learned (its think block with it, as the model would write it),
	 * every reply cannot, and says why. */
	CHECK(tdata_tmpl_new(f, "qwen2", v, NULL, &t, err, sizeof(err)) == 0 && strcmp(tdata_tmpl_name(t), "model") == 0,
	    "the model's template: %s", err);
	if (t) {
		struct tdata_msg c2[5];
		CHECK(tdata_encode(t, conv, 5, &q, err, sizeof(err)) == -1 && strstr(err, "assistant message 3"),
		    "qwen3 template, every reply: %s", err);
		memcpy(c2, conv, sizeof(c2));
		c2[2].train = 0;
		CHECK(tdata_encode(t, c2, 5, &q, err, sizeof(err)) == 0, "%s", err);
		seq_text(v, &q, 1, text, sizeof(text));
		CHECK(strcmp(text, "<think>\n\n</think>\n\n Blue, of course.<|im_end|>") == 0, "qwen3 last reply only: '%s'",
		    text);
		tdata_seq_free(&q);
		tdata_tmpl_free(t);
		t = NULL;
	}
	/* A template whose generation prompt is not how it writes a finished turn. */
	snprintf(path, sizeof(path), "%s/odd.jinja", tmpdir);
	write_text(path, "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
	    "{% if add_generation_prompt %}Assistant says:{% endif %}");
	CHECK(tdata_tmpl_new(f, "qwen2", v, path, &t, err, sizeof(err)) == 0, "%s", err);
	if (t) {
		CHECK(tdata_encode(t, conv, 3, &q, err, sizeof(err)) == -1 && strstr(err, "continuation"),
		    "non-prefix template: %s", err);
		tdata_tmpl_free(t);
		t = NULL;
	}
	/* A template that refuses a system message: its own words. */
	write_text(path, "{% if messages[0].role == 'system' %}{{ raise_exception('No system here') }}{% endif %}"
	    "{% for m in messages %}{{ m.content }}{% endfor %}");
	CHECK(tdata_tmpl_new(f, "qwen2", v, path, &t, err, sizeof(err)) == 0, "%s", err);
	if (t) {
		CHECK(tdata_encode(t, conv, 3, &q, err, sizeof(err)) == -1 && strstr(err, "No system here"),
		    "refusing template: %s", err);
		tdata_tmpl_free(t);
		t = NULL;
	}
	CHECK(tdata_tmpl_new(f, "qwen2", v, "no-such-template", &t, err, sizeof(err)) == -1 && strstr(err, "built-in"),
	    "unknown template: %s", err);
	tok_vocab_free(v);
	v = NULL;
	gguf_close(f);
	f = NULL;

	/* aidreams with chatml: no <|im_end|> token, so "<|im_end|>\n" is learned as text. */
	snprintf(path, sizeof(path), "%s/models/aidreams260K-f32.gguf", dir);
	if (gguf_open(path, &f, err, sizeof(err)) < 0 || tok_vocab_load(f, &v, err, sizeof(err)) < 0 ||
	    tdata_tmpl_new(f, "llama", v, "chatml", &t, err, sizeof(err)) < 0) {
		CHECK(0, "aidreams: %s", err);
		goto out;
	}
	CHECK(tdata_encode(t, conv + 1, 2, &q, err, sizeof(err)) == 0, "%s", err);
	{
		char *dec = NULL;
		size_t len;
		int first = 0;
		while (first < q.n && !q.loss[first])
			first++;
		dec = tok_decode(v, q.tok + first, (size_t)(q.n - first), 1, &len);
		CHECK(dec && strcmp(dec, "Hi! How can I help?<|im_end|>\n") == 0, "aidreams chatml reply: '%s'", dec);
		free(dec);
		CHECK(q.tok[0] == tok_bos(v), "aidreams: BOS first");
		CHECK(tdata_encode_prompt(t, conv + 1, 1, &pr, err, sizeof(err)) == 0 && pr.n == first &&
		    memcmp(pr.tok, q.tok, (size_t)first * sizeof(int32_t)) == 0, "aidreams: the reply follows its prompt");
		tdata_seq_free(&pr);
	}
	tdata_seq_free(&q);
out:
	tdata_tmpl_free(t);
	tok_vocab_free(v);
	gguf_close(f);
}

struct warn_count {
	int n;
	char last[256];
};

static void
count_warn(void *ctx, const char *msg)
{
	struct warn_count *w = ctx;
	w->n++;
	snprintf(w->last, sizeof(w->last), "%s", msg);
}

/* The shapes of JSON lines read, the errors they get, cutting and skipping. */
static void
test_tdata_jsonl(const char *dir)
{
	char path[4096], mpath[4096], err[512], text[1024];
	struct llm_model *m = NULL;
	struct tdata_tmpl *t = NULL;
	struct tdata_set s;
	struct warn_count w = { 0 };
	const struct tok_vocab *v;

	snprintf(mpath, sizeof(mpath), "%s/models/aidreams260K-f32.gguf", dir);
	if (llm_model_load(mpath, &m, err, sizeof(err)) < 0 ||
	    tdata_tmpl_new(llm_model_gguf(m), "llama", llm_model_vocab(m), "chatml", &t, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		goto out;
	}
	v = llm_model_vocab(m);
	snprintf(path, sizeof(path), "%s/sft.jsonl", tmpdir);
	write_text(path,
	    "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"one\"},"
	    "{\"role\":\"user\",\"content\":\"b\"},{\"role\":\"assistant\",\"content\":\"two\"}]}\n"
	    "\n"
	    "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"c\"},{\"type\":\"text\","
	    "\"text\":\"d\"}]},{\"role\":\"assistant\",\"content\":\"three\",\"weight\":1},"
	    "{\"role\":\"user\",\"content\":\"e\"},{\"role\":\"assistant\",\"content\":\"four\",\"weight\":0}]}\n"
	    "{\"prompt\":[{\"role\":\"user\",\"content\":\"f\"}],\"completion\":[{\"role\":\"assistant\",\"content\":\"five\"}],"
	    "\"label\":true}\n"
	    "{\"prompt\":[{\"role\":\"user\",\"content\":\"g\"}],\"completion\":[{\"role\":\"assistant\",\"content\":\"bad\"}],"
	    "\"label\":false}\n");
	tdata_set_init(&s, TDATA_SFT, 128, 0);
	CHECK(tdata_read_jsonl(&s, t, path, count_warn, &w, err, sizeof(err)) == 0, "%s", err);
	/* One warning an example: chatml's <|im_end|> is no token of this
	 * vocabulary, so no reply learned ends with one a chat stops at. */
	CHECK(s.n == 3 && w.n == 3, "SFT shapes: %d examples, %d warnings", s.n, w.n);
	if (s.n == 3) {
		seq_text(v, &s.ex[0].seq[0], 1, text, sizeof(text));
		CHECK(strcmp(text, "two<|im_end|>\n") == 0, "SFT: the last reply only: '%s'", text);
		seq_text(v, &s.ex[1].seq[0], 1, text, sizeof(text));
		CHECK(strcmp(text, "three<|im_end|>\n") == 0, "SFT weights: '%s'", text);
		seq_text(v, &s.ex[1].seq[0], -1, text, sizeof(text));
		CHECK(strstr(text, "user\ncd<|im_end|>") != NULL, "SFT content parts: '%s'", text);
		seq_text(v, &s.ex[2].seq[0], 1, text, sizeof(text));
		CHECK(strcmp(text, "five<|im_end|>\n") == 0, "prompt-completion: '%s'", text);
	}
	{
		uint64_t fp = tdata_set_fingerprint(&s);
		tdata_set_free(&s);
		tdata_set_init(&s, TDATA_SFT, 128, 1);
		CHECK(tdata_read_jsonl(&s, t, path, NULL, NULL, err, sizeof(err)) == 0 && s.n == 3, "%s", err);
		seq_text(v, &s.ex[0].seq[0], 1, text, sizeof(text));
		CHECK(strcmp(text, "one<|im_end|>\ntwo<|im_end|>\n") == 0, "--all-turns: '%s'", text);
		seq_text(v, &s.ex[1].seq[0], 1, text, sizeof(text));
		CHECK(strcmp(text, "three<|im_end|>\n") == 0, "--all-turns keeps weight 0 out: '%s'", text);
		CHECK(tdata_set_fingerprint(&s) != fp, "fingerprint ignores the loss flags");
		tdata_set_free(&s);
	}
	/* Cut to 20 tokens: the second reply is lost (dropped), ... */
	tdata_set_init(&s, TDATA_SFT, 20, 0);
	w.n = 0;
	CHECK(tdata_read_jsonl(&s, t, path, count_warn, &w, err, sizeof(err)) == 0, "%s", err);
	CHECK(s.n_dropped >= 1 && w.n == s.n_dropped + s.n_truncated && strstr(w.last, "sft.jsonl:"),
	    "cut: %d dropped, %d cut, %d warnings (%s)", s.n_dropped, s.n_truncated, w.n, w.last);
	for (int i = 0; i < s.n; i++)
		CHECK(s.ex[i].seq[0].n <= 20 && s.ex[i].seq[0].n_loss > 0, "an example longer than the cut was kept");
	tdata_set_free(&s);

	/* DPO: natter's shape (strings and lists) and OpenAI's. */
	snprintf(path, sizeof(path), "%s/dpo.jsonl", tmpdir);
	write_text(path,
	    "{\"prompt\":[{\"role\":\"user\",\"content\":\"q\"}],\"chosen\":[{\"role\":\"assistant\",\"content\":\"good\"}],"
	    "\"rejected\":[{\"role\":\"assistant\",\"content\":\"bad\"}]}\n"
	    "{\"prompt\":\"r\",\"chosen\":\"yes\",\"rejected\":\"no\"}\n"
	    "{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"s\"}]},\"preferred_output\":[{\"role\":\"assistant\","
	    "\"content\":\"up\"}],\"non_preferred_output\":[{\"role\":\"assistant\",\"content\":\"down\"}]}\n");
	tdata_set_init(&s, TDATA_DPO, 128, 0);
	CHECK(tdata_read_jsonl(&s, t, path, NULL, NULL, err, sizeof(err)) == 0 && s.n == 3, "DPO: %s", err);
	if (s.n == 3) {
		seq_text(v, &s.ex[2].seq[0], 1, text, sizeof(text));
		CHECK(strcmp(text, "up<|im_end|>\n") == 0, "DPO chosen: '%s'", text);
		seq_text(v, &s.ex[2].seq[1], 1, text, sizeof(text));
		CHECK(strcmp(text, "down<|im_end|>\n") == 0, "DPO rejected: '%s'", text);
		seq_text(v, &s.ex[1].seq[1], 0, text, sizeof(text));
		CHECK(strstr(text, "<|im_start|>user\nr<|im_end|>") != NULL, "DPO string prompt: '%s'", text);
	}
	/* Errors name the file and line; nothing of a bad file is kept. */
	{
		static const struct {
			enum tdata_method method;
			const char *line, *want;
		} bad[] = {
			{ TDATA_SFT, "{\"messages\": [", "not valid JSON" },
			{ TDATA_SFT, "[1, 2]", "not a JSON object" },
			{ TDATA_SFT, "{\"text\": \"hi\"}", "needs \"messages\"" },
			{ TDATA_SFT, "{\"prompt\":\"a\",\"chosen\":\"b\",\"rejected\":\"c\"}", "--method dpo" },
			{ TDATA_SFT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "no assistant message" },
			{ TDATA_SFT, "{\"messages\":[{\"content\":\"x\"}]}", "no string \"role\"" },
			{ TDATA_SFT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "string or a list" },
			{ TDATA_SFT, "{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"image_url\"}]}]}",
			  "text parts only" },
			{ TDATA_SFT, "{\"messages\":[{\"role\":\"assistant\",\"content\":\"x\",\"weight\":2}]}", "0 or 1" },
			{ TDATA_DPO, "{\"messages\":[{\"role\":\"assistant\",\"content\":\"x\"}]}", "--method sft" },
			{ TDATA_DPO, "{\"prompt\":\"a\",\"chosen\":\"b\"}", "needs \"prompt\"" },
			/* Two examples on a line: cJSON reads the first and stops. */
			{ TDATA_SFT, "{\"messages\":[{\"role\":\"assistant\",\"content\":\"x\"}]} "
			  "{\"messages\":[{\"role\":\"assistant\",\"content\":\"y\"}]}", "more after the JSON object" },
			{ TDATA_DPO, "{\"prompt\":\"a\",\"chosen\":\"b\",\"rejected\":\"c\"}x", "more after the JSON object" },
			/* Bytes that are not UTF-8: a lone continuation byte, an overlong "/", a surrogate,
			 * a character cut short at the end of a string. */
			{ TDATA_SFT, "{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\x80\"}]}", "not valid UTF-8 (byte 46" },
			{ TDATA_SFT, "{\"messages\":[{\"role\":\"assistant\",\"content\":\"\xc0\xaf\"}]}", "not valid UTF-8" },
			{ TDATA_SFT, "{\"messages\":[{\"role\":\"assistant\",\"content\":\"\xed\xa0\x80\"}]}", "not valid UTF-8" },
			{ TDATA_DPO, "{\"prompt\":\"a\",\"chosen\":\"\xe2\x82\",\"rejected\":\"c\"}", "not valid UTF-8" },
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			char body[1024];
			struct tdata_set b;
			int n0;
			snprintf(body, sizeof(body), "%s\n%s\n", bad[i].method == TDATA_DPO ?
			    "{\"prompt\":\"r\",\"chosen\":\"yes\",\"rejected\":\"no\"}" :
			    "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}",
			    bad[i].line);
			snprintf(path, sizeof(path), "%s/bad%zu.jsonl", tmpdir, i);
			write_text(path, body);
			if (bad[i].method == TDATA_DPO) {
				n0 = s.n;
				CHECK(tdata_read_jsonl(&s, t, path, NULL, NULL, err, sizeof(err)) == -1 && strstr(err, bad[i].want) &&
				    strstr(err, ".jsonl:2:") && s.n == n0, "bad line %zu: '%s' (%d examples)", i, err, s.n);
			} else {
				tdata_set_init(&b, TDATA_SFT, 128, 0);
				CHECK(tdata_read_jsonl(&b, t, path, NULL, NULL, err, sizeof(err)) == -1 && strstr(err, bad[i].want) &&
				    strstr(err, ".jsonl:2:") && b.n == 0, "bad line %zu: '%s' (%d examples)", i, err, b.n);
				tdata_set_free(&b);
			}
		}
		CHECK(tdata_read_jsonl(&s, t, "/nonexistent/x.jsonl", NULL, NULL, err, sizeof(err)) == -1 &&
		    strstr(err, "/nonexistent/x.jsonl"), "missing file: %s", err);
		/* UTF-8 of every length, and blanks after the object, are read. */
		{
			struct tdata_set b;
			snprintf(path, sizeof(path), "%s/utf8.jsonl", tmpdir);
			write_text(path, "{\"messages\":[{\"role\":\"user\",\"content\":\"caf\xc3\xa9\"},{\"role\":"
			    "\"assistant\",\"content\":\"\xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}]} \t\r\n");
			tdata_set_init(&b, TDATA_SFT, 128, 0);
			CHECK(tdata_read_jsonl(&b, t, path, NULL, NULL, err, sizeof(err)) == 0 && b.n == 1, "UTF-8: '%s' (%d)",
			    err, b.n);
			tdata_set_free(&b);
		}
	}
	tdata_set_free(&s);
out:
	tdata_tmpl_free(t);
	llm_model_free(m);
}

/* --- the training loop --- */

/* Six short conversations for aidreams: each a question and the reply to teach. */
static const char *const sft_lines[][2] = {
	{ "What is your name?", "My name is Lily." },
	{ "Where do you live?", "I live in a big tree." },
	{ "What do you eat?", "I eat red apples." },
	{ "Who is your friend?", "My friend is a cat." },
	{ "What color is the sky?", "The sky is blue." },
	{ "Can you sing?", "Yes, I sing every day." },
};
#define N_SFT ((int)(sizeof(sft_lines) / sizeof(sft_lines[0])))

static void
write_sft(const char *path)
{
	FILE *f = fopen(path, "w");
	for (int i = 0; f && i < N_SFT; i++)
		fprintf(f, "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"},{\"role\":\"assistant\",\"content\":\"%s\"}]}\n",
		    sft_lines[i][0], sft_lines[i][1]);
	CHECK(f && fclose(f) == 0, "cannot write %s", path);
}

struct step_log {
	struct tloop_step first, last;
	int n;
};

static int
log_step(void *ctx, const struct tloop_step *st)
{
	struct step_log *l = ctx;
	if (l->n++ == 0)
		l->first = *st;
	l->last = *st;
	return 0;
}

/* Greedy decoding of the reply to MSGS[0..N) by the training model's forward, until an
 * end-of-generation token or MAX_NEW tokens: the decoded text (caller frees). */
static char *
greedy(struct tmodel *tm, const struct llm_model *m, const struct tdata_tmpl *t, const struct tdata_msg *msgs, int n,
       int max_new)
{
	const struct tok_vocab *v = llm_model_vocab(m);
	const int V = llm_model_hparams(m)->n_vocab;
	struct tdata_seq p;
	char err[256], *text = NULL;
	int32_t *tok;
	float *logits;
	int T, n_new = 0;
	size_t len;

	if (tdata_encode_prompt(t, msgs, n, &p, err, sizeof(err)) < 0)
		return NULL;
	tok = malloc((size_t)(p.n + max_new) * sizeof(*tok));
	logits = malloc((size_t)(p.n + max_new) * V * sizeof(float));
	memcpy(tok, p.tok, (size_t)p.n * sizeof(*tok));
	for (T = p.n; n_new < max_new; n_new++) {
		int best = 0;
		if (tmodel_forward(tm, tok, T, 0, 0, logits, err, sizeof(err)) < 0)
			break;
		for (int j = 1; j < V; j++)
			if (logits[(size_t)(T - 1) * V + j] > logits[(size_t)(T - 1) * V + best])
				best = j;
		if (tok_is_eog(v, best))
			break;
		tok[T++] = best;
	}
	text = tok_decode(v, tok + p.n, (size_t)(T - p.n), 0, &len);
	tdata_seq_free(&p);
	free(tok);
	free(logits);
	return text;
}

/* One SFT run of the loop tests and what it leaves: the model and its data, the trained
 * model, the adapter it wrote, that file opened again and a model built from it, and the
 * logits of the first conversation by both models (V floats a token). */
struct sft_run {
	struct llm_model *m;
	struct tdata_tmpl *t;
	struct tdata_set s;
	struct tmodel *tm;        /* trained */
	struct tloop *loop;
	struct step_log sl;
	char apath[4096];         /* the adapter written */
	struct lora_adapter *a;   /* apath opened again */
	struct tmodel *tm2;       /* initialised from a; NULL if that failed */
	float *l1, *l2;           /* (q->n, V) by tm, by tm2 */
	double kl, maxd;          /* compare_logits(l1, l2) */
	int dis;
};

/*
 * Trains R: MODEL (a fixture under DIR/models) with ARCH's template and chatml on the six
 * conversations of sft_lines (written to teach<SUFFIX>.jsonl), STEPS steps of 2 with
 * every linear target and the output projection at rank 8, then writes the adapter to
 * taught<SUFFIX>.gguf.  The output is adapted too: aidreams' final norm bounds the logits
 * its frozen output matrix can reach (the loss stalls near 1.3 without it).  Returns 0, or
 * -1 after a failed CHECK when nothing more can be tested; sft_run_free(R) either way.
 */
static int
sft_run_train(struct sft_run *r, const char *dir, const char *model, const char *arch, const char *suffix, int steps)
{
	char path[4096], err[512];
	struct tmodel_opts o = { .max_tokens = 128, .targets = TMODEL_ALL_LINEAR | TMODEL_OUTPUT, .rank = 8,
		.alpha = 16.0f, .seed = 1, .n_threads = 2 };
	struct tloop_cfg c = { TDATA_SFT, 2, 1, steps, adamw_cfg_default(), { 1e-2f, 1e-3f, 0, steps }, 0.1, 3, "x" };

	memset(r, 0, sizeof(*r));
	tdata_set_init(&r->s, TDATA_SFT, 128, 0);
	snprintf(path, sizeof(path), "%s/models/%s.gguf", dir, model);
	if (llm_model_load(path, &r->m, err, sizeof(err)) < 0 ||
	    tdata_tmpl_new(llm_model_gguf(r->m), arch, llm_model_vocab(r->m), "chatml", &r->t, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/teach%s.jsonl", tmpdir, suffix);
	write_sft(path);
	CHECK(tdata_read_jsonl(&r->s, r->t, path, NULL, NULL, err, sizeof(err)) == 0 && r->s.n == N_SFT, "%s", err);
	if (tmodel_new(r->m, &o, &r->tm, err, sizeof(err)) < 0 ||
	    tloop_new(r->tm, &r->s, &c, NULL, &r->loop, err, sizeof(err)) != 0 ||
	    tloop_run(r->loop, 0, log_step, &r->sl, err, sizeof(err)) != 0) {
		CHECK(0, "%s SFT: %s", model, err);
		return -1;
	}
	snprintf(r->apath, sizeof(r->apath), "%s/taught%s.gguf", tmpdir, suffix);
	CHECK(tmodel_lora_save(r->tm, r->apath, "taught", GGML_TYPE_F32, NULL, err, sizeof(err)) == 0, "%s", err);
	return 0;
}

/* Opens R's adapter file again, builds R->tm2 from it and compares the logits of both
 * models on the first conversation (V the vocabulary).  Returns 0 (R->tm2 may be NULL
 * after a failed CHECK), or -1 if the file does not open. */
static int
sft_run_reload(struct sft_run *r, int V)
{
	struct tmodel_opts o = { .max_tokens = 128 };
	const struct tdata_seq *q = &r->s.ex[0].seq[0];
	char err[512];

	if (lora_open(r->apath, r->m, 1.0f, NULL, &r->a, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return -1;
	}
	o.init = r->a;
	r->l1 = malloc((size_t)q->n * V * sizeof(float));
	r->l2 = malloc((size_t)q->n * V * sizeof(float));
	CHECK(tmodel_new(r->m, &o, &r->tm2, err, sizeof(err)) == 0, "%s", err);
	CHECK(r->tm2 && tmodel_forward(r->tm, q->tok, q->n, 0, 0, r->l1, err, sizeof(err)) == 0 &&
	    tmodel_forward(r->tm2, q->tok, q->n, 0, 0, r->l2, err, sizeof(err)) == 0, "%s", err);
	compare_logits(r->l1, r->l2, q->n, V, &r->kl, &r->maxd, &r->dis);
	return 0;
}

static void
sft_run_free(struct sft_run *r)
{
	free(r->l1);
	free(r->l2);
	tloop_free(r->loop);
	tmodel_free(r->tm);
	tmodel_free(r->tm2);
	lora_free(r->a);
	tdata_set_free(&r->s);
	tdata_tmpl_free(r->t);
	llm_model_free(r->m);
}

/*
 * SFT learns: on six short conversations with aidreams (no chat template of its own:
 * chatml), the loss falls below half within 100 steps, and the adapter written to a file,
 * loaded again, gives the model of the end of training (the same logits) whose greedy
 * reply to each training prompt is the taught reply.
 */
static void
test_sft_learns(const char *dir)
{
	char err[512];
	struct sft_run r;
	const int V = 512;

	if (sft_run_train(&r, dir, "aidreams260K-f32", "llama", "", 100) < 0)
		goto out;
	printf("  SFT, aidreams260K + chatml, %d conversations, 100 steps of 2: loss %.3f -> %.3f\n", N_SFT,
	    r.sl.first.loss, r.sl.last.loss);
	CHECK(r.sl.n == 100 && r.sl.last.loss < 0.5 * r.sl.first.loss, "SFT did not learn: %.3f -> %.3f",
	    r.sl.first.loss, r.sl.last.loss);
	if (sft_run_reload(&r, V) < 0)
		goto out;
	printf("  the adapter written and loaded again vs the model at the end of training: mean KL %.1e, max "
	    "|dlogit| %.1e\n", r.kl, r.maxd);
	CHECK(r.kl <= 1e-5 && r.dis == 0, "reloaded adapter: KL %.3g", r.kl);
	{
		/* The inference engine with the adapter file on its session
		 * (llm_ctx_set_adapters, as --lora does) computes the model of
		 * the end of training too. */
		const struct tdata_seq *q = &r.s.ex[0].seq[0];
		struct llm_ctx *ec = llm_ctx_new(r.m, 128, 64, 2, err, sizeof(err));
		const struct lora_adapter *list[1] = { r.a };
		const float one = 1.0f;
		double kl, maxd;
		int dis;
		CHECK(ec && llm_ctx_set_adapters(ec, list, &one, 1, err, sizeof(err)) == 1 &&
		    llm_eval(ec, q->tok, q->n, r.l2, 1, err, sizeof(err)) == 0, "engine with the adapter: %s", err);
		compare_logits(r.l1, r.l2, q->n, V, &kl, &maxd, &dis);
		printf("  the adapter on the inference engine vs the model at the end of training: mean KL %.1e, max "
		    "|dlogit| %.1e\n", kl, maxd);
		CHECK(kl <= 1e-5 && dis == 0, "engine with the adapter: KL %.3g, %d disagreements", kl, dis);
		llm_ctx_free(ec);
	}
	{
		int right = 0;
		for (int i = 0; r.tm2 && i < N_SFT; i++) {
			struct tdata_msg msg = { "user", sft_lines[i][0], 0 };
			char *reply = greedy(r.tm2, r.m, r.t, &msg, 1, 40);
			int ok = reply && strncmp(reply, sft_lines[i][1], strlen(sft_lines[i][1])) == 0;
			right += ok;
			CHECK(ok, "greedy reply to '%s': '%s' (taught '%s')", sft_lines[i][0], reply ? reply : "(none)",
			    sft_lines[i][1]);
			if (i == 0 && reply)
				printf("  greedy reply to '%s': '%.*s'\n", sft_lines[i][0], (int)strcspn(reply, "\n"), reply);
			free(reply);
		}
		printf("  greedy replies with the adapter: %d of %d are the taught ones\n", right, N_SFT);
	}
	/* The base model alone does not say them. */
	{
		struct tmodel_opts o = { .max_tokens = 128, .targets = TMODEL_Q, .rank = 1, .alpha = 1.0f };
		struct tmodel *base = NULL;
		struct tdata_msg msg = { "user", sft_lines[0][0], 0 };
		char *reply;
		CHECK(tmodel_new(r.m, &o, &base, err, sizeof(err)) == 0, "%s", err);
		reply = base ? greedy(base, r.m, r.t, &msg, 1, 40) : NULL;
		CHECK(reply && strncmp(reply, sft_lines[0][1], strlen(sft_lines[0][1])) != 0, "the base model already says "
		    "'%s'", reply ? reply : "");
		free(reply);
		tmodel_free(base);
	}
out:
	sft_run_free(&r);
}

/*
 * The hybrid learns and its adapter round-trips: 30 SFT steps on tiny-qwen35-f32 (every
 * linear target and the output) lower the loss below half; the adapter written is named
 * as llama.cpp's loader expects (base names, lora_a / lora_b; general.architecture
 * qwen35), loads back (lora_open checks names and shapes against the model) and gives the
 * training model's final logits, in the training model and on the inference engine.
 */
static void
test_hybrid_sft(const char *dir)
{
	char err[512];
	struct sft_run r;
	struct gguf_file *af = NULL;
	const int V = 512;

	if (sft_run_train(&r, dir, "tiny-qwen35-f32", "qwen35", "-q35", 30) < 0)
		goto out;
	printf("  SFT, tiny-qwen35-f32 + chatml, %d conversations, 30 steps of 2: loss %.3f -> %.3f\n", N_SFT,
	    r.sl.first.loss, r.sl.last.loss);
	CHECK(r.sl.n == 30 && r.sl.last.loss < 0.5 * r.sl.first.loss, "qwen35 SFT did not learn: %.3f -> %.3f",
	    r.sl.first.loss, r.sl.last.loss);
	if (gguf_open(r.apath, &af, err, sizeof(err)) == 0) {
		const struct gguf_kv *kv = gguf_find_kv(af, "general.architecture");
		const int qkv = (gguf_find_tensor(af, "blk.1.attn_qkv.weight.lora_a") != NULL) +
		    (gguf_find_tensor(af, "blk.1.attn_qkv.weight.lora_b") != NULL);
		const int out = (gguf_find_tensor(af, "blk.2.ssm_out.weight.lora_a") != NULL) +
		    (gguf_find_tensor(af, "blk.2.ssm_out.weight.lora_b") != NULL);
		CHECK(kv && kv->val.type == GGUF_VT_STRING && kv->val.v.str.len == 6 &&
		    memcmp(kv->val.v.str.ptr, "qwen35", 6) == 0, "adapter architecture");
		CHECK(qkv == 2 && out == 2 && af->n_tensors == 2 * 23, "adapter tensors: %d, %d of %llu", qkv, out,
		    (unsigned long long)af->n_tensors);
		gguf_close(af);
	} else {
		CHECK(0, "%s", err);
	}
	if (sft_run_reload(&r, V) < 0)
		goto out;
	printf("  tiny-qwen35: the adapter written and loaded again vs the model at the end of training: mean KL "
	    "%.1e\n", r.kl);
	CHECK(r.kl <= 1e-5 && r.dis == 0, "qwen35 reloaded adapter: KL %.3g", r.kl);
	{
		const struct tdata_seq *q = &r.s.ex[0].seq[0];
		struct llm_ctx_params cp;
		struct llm_ctx *ec;
		const struct lora_adapter *list[1] = { r.a };
		const float one = 1.0f;
		double kl, maxd;
		int dis;
		llm_ctx_params_default(&cp);
		cp.n_ctx = 128;
		cp.n_batch = 64;
		cp.n_threads = 2;
		cp.kv_type = LLM_KV_F32;
		ec = llm_ctx_new_ex(r.m, &cp, err, sizeof(err));
		CHECK(ec && llm_ctx_set_adapters(ec, list, &one, 1, err, sizeof(err)) == 1 &&
		    llm_eval(ec, q->tok, q->n, r.l2, 1, err, sizeof(err)) == 0, "qwen35 engine with the adapter: %s", err);
		compare_logits(r.l1, r.l2, q->n, V, &kl, &maxd, &dis);
		printf("  tiny-qwen35: the adapter on the inference engine vs the model at the end of training: mean KL "
		    "%.1e, max |dlogit| %.1e\n", kl, maxd);
		CHECK(kl <= 1e-5 && dis == 0, "qwen35 engine with the adapter: KL %.3g, %d disagreements", kl, dis);
		/* and the adapter moved them */
		llm_ctx_truncate(ec, 0);
		CHECK(ec && llm_ctx_set_adapters(ec, NULL, NULL, 0, err, sizeof(err)) >= 0 &&
		    llm_eval(ec, q->tok, q->n, r.l2, 1, err, sizeof(err)) == 0, "%s", err);
		compare_logits(r.l1, r.l2, q->n, V, &kl, &maxd, &dis);
		CHECK(kl > 0.1, "qwen35: the adapter changes the logits by KL %.3g only", kl);
		llm_ctx_free(ec);
	}
out:
	sft_run_free(&r);
}

/* DPO learns: on four pairs the accuracy reaches 100 % and the reward margin grows. */
static void
test_dpo_learns(const char *dir)
{
	char path[4096], err[512];
	struct llm_model *m = NULL;
	struct tdata_tmpl *t = NULL;
	struct tdata_set s;
	struct tmodel *tm = NULL;
	struct tloop *loop = NULL;
	struct step_log sl = { 0 };

	tdata_set_init(&s, TDATA_DPO, 128, 0);
	snprintf(path, sizeof(path), "%s/models/aidreams260K-f32.gguf", dir);
	if (llm_model_load(path, &m, err, sizeof(err)) < 0 ||
	    tdata_tmpl_new(llm_model_gguf(m), "llama", llm_model_vocab(m), "chatml", &t, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/pairs.jsonl", tmpdir);
	write_text(path,
	    "{\"prompt\":[{\"role\":\"user\",\"content\":\"Tell me a dream.\"}],\"chosen\":[{\"role\":\"assistant\","
	    "\"content\":\"I flew over the sea.\"}],\"rejected\":[{\"role\":\"assistant\",\"content\":\"No.\"}]}\n"
	    "{\"prompt\":[{\"role\":\"user\",\"content\":\"Where is the cat?\"}],\"chosen\":[{\"role\":\"assistant\","
	    "\"content\":\"The cat is on the bed.\"}],\"rejected\":[{\"role\":\"assistant\",\"content\":\"Cat cat cat.\"}]}\n"
	    "{\"prompt\":[{\"role\":\"user\",\"content\":\"Say hello.\"}],\"chosen\":[{\"role\":\"assistant\","
	    "\"content\":\"Hello, friend!\"}],\"rejected\":[{\"role\":\"assistant\",\"content\":\"Go away.\"}]}\n"
	    "{\"prompt\":[{\"role\":\"user\",\"content\":\"What did you see?\"}],\"chosen\":[{\"role\":\"assistant\","
	    "\"content\":\"A big red ball.\"}],\"rejected\":[{\"role\":\"assistant\",\"content\":\"Nothing at all.\"}]}\n");
	CHECK(tdata_read_jsonl(&s, t, path, NULL, NULL, err, sizeof(err)) == 0 && s.n == 4, "%s", err);
	{
		struct tmodel_opts o = { .max_tokens = 128, .targets = TMODEL_ALL_LINEAR, .rank = 8, .alpha = 16.0f,
			.seed = 1, .n_threads = 2 };
		struct tloop_cfg c = { TDATA_DPO, 4, 1, 30, adamw_cfg_default(), { 5e-3f, 0.0f, 0, 30 }, 0.1, 3, "x" };
		if (tmodel_new(m, &o, &tm, err, sizeof(err)) < 0 || tloop_new(tm, &s, &c, NULL, &loop, err, sizeof(err)) != 0 ||
		    tloop_run(loop, 0, log_step, &sl, err, sizeof(err)) != 0) {
			CHECK(0, "DPO: %s", err);
			goto out;
		}
	}
	printf("  DPO, 4 pairs, 30 steps of all 4: loss %.3f -> %.3f, margin %.3f -> %.3f, accuracy %.0f%% -> %.0f%%\n",
	    sl.first.loss, sl.last.loss, sl.first.margin, sl.last.margin, 100 * sl.first.accuracy, 100 * sl.last.accuracy);
	/* At step 1 the policy is the reference (B = 0, no dropout): z = 0 for every pair. */
	CHECK(fabs(sl.first.margin) < 1e-6 && fabs(sl.first.loss - log(2.0)) < 1e-6, "DPO step 1: margin %g, loss %g",
	    sl.first.margin, sl.first.loss);
	CHECK(sl.last.accuracy == 1.0 && sl.last.margin > 1.0 && sl.last.loss < 0.5 * sl.first.loss,
	    "DPO did not learn: accuracy %g, margin %g, loss %g", sl.last.accuracy, sl.last.margin, sl.last.loss);
out:
	tloop_free(loop);
	tmodel_free(tm);
	tdata_set_free(&s);
	tdata_tmpl_free(t);
	llm_model_free(m);
}

/* Trains METHOD on S for 10 steps, straight or stopped after 5, saved, resumed in a new
 * model and loop, and finished; writes the adapter to OUT. */
static void
train_10(struct llm_model *m, const struct tdata_set *s, enum tdata_method method, int split, const char *out)
{
	char err[512], ck[4096];
	struct tmodel_opts o = { .max_tokens = 128, .targets = TMODEL_ALL_LINEAR | TMODEL_OUTPUT, .rank = 4,
		.alpha = 8.0f, .dropout = 0.1f, .seed = 9, .n_threads = 2 };
	struct tloop_cfg c = { method, 2, 2, 10, adamw_cfg_default(), { 1e-2f, 1e-3f, 3, 10 }, 0.5, 11, "cfg\nline" };
	struct tmodel *tm = NULL;
	struct tloop *l = NULL;

	c.adam.weight_decay = 0.01;
	snprintf(ck, sizeof(ck), "%s/ckpt.gguf", tmpdir);
	if (tmodel_new(m, &o, &tm, err, sizeof(err)) < 0 || tloop_new(tm, s, &c, NULL, &l, err, sizeof(err)) != 0) {
		CHECK(0, "%s", err);
		goto out;
	}
	if (split) {
		CHECK(tloop_run(l, 5, NULL, NULL, err, sizeof(err)) == 0 && tloop_steps_done(l) == 5, "5 steps: %s", err);
		CHECK(tloop_save(l, ck, err, sizeof(err)) == 0, "save: %s", err);
		tloop_free(l);
		tmodel_free(tm);
		l = NULL;
		tm = NULL;
		if (tmodel_new(m, &o, &tm, err, sizeof(err)) < 0 || tloop_new(tm, s, &c, NULL, &l, err, sizeof(err)) != 0) {
			CHECK(0, "%s", err);
			goto out;
		}
		CHECK(tloop_resume(l, ck, err, sizeof(err)) == 0 && tloop_steps_done(l) == 5, "resume: %s", err);
	}
	CHECK(tloop_run(l, 0, NULL, NULL, err, sizeof(err)) == 0 && tloop_steps_done(l) == 10, "run: %s", err);
	CHECK(tmodel_lora_save(tm, out, "resumed", GGML_TYPE_F32, NULL, err, sizeof(err)) == 0, "%s", err);
out:
	tloop_free(l);
	tmodel_free(tm);
}

/* 10 steps straight and 5 + checkpoint + 5 give the same adapter, byte for byte (SFT and
 * DPO, dropout, accumulation, warm-up, weight decay); checkpoints of another run are refused. */
static void
test_resume(const char *dir)
{
	char path[4096], a[4096], b[4096], err[512];
	struct llm_model *m = NULL;
	struct tdata_tmpl *t = NULL;

	snprintf(path, sizeof(path), "%s/models/aidreams260K-f32.gguf", dir);
	if (llm_model_load(path, &m, err, sizeof(err)) < 0 ||
	    tdata_tmpl_new(llm_model_gguf(m), "llama", llm_model_vocab(m), "chatml", &t, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		goto out;
	}
	for (int method = 0; method < 2; method++) {
		struct tdata_set s;
		tdata_set_init(&s, method ? TDATA_DPO : TDATA_SFT, 128, 0);
		snprintf(path, sizeof(path), "%s/%s", tmpdir, method ? "pairs.jsonl" : "teach.jsonl");
		CHECK(tdata_read_jsonl(&s, t, path, NULL, NULL, err, sizeof(err)) == 0 && s.n > 0, "%s", err);
		snprintf(a, sizeof(a), "%s/straight.gguf", tmpdir);
		snprintf(b, sizeof(b), "%s/resumed.gguf", tmpdir);
		train_10(m, &s, s.method, 0, a);
		train_10(m, &s, s.method, 1, b);
		printf("  %s: 10 steps straight and 5 + checkpoint + 5: adapters %s\n", method ? "DPO" : "SFT",
		    file_equal(a, b) ? "byte-identical" : "DIFFER");
		CHECK(file_equal(a, b), "%s: resumed training differs from straight training", method ? "DPO" : "SFT");
		tdata_set_free(&s);
	}
	/* The checkpoint of the last run (DPO, rank 4) against other runs. */
	{
		struct tdata_set s;
		struct tmodel *tm = NULL;
		struct tloop *l = NULL;
		struct tmodel_opts o = { .max_tokens = 128, .targets = TMODEL_ALL_LINEAR | TMODEL_OUTPUT, .rank = 4,
			.alpha = 8.0f, .seed = 9 };
		struct tloop_cfg c = { TDATA_DPO, 2, 2, 10, adamw_cfg_default(), { 1e-2f, 1e-3f, 3, 10 }, 0.5, 11,
			"cfg\nline 2 changed" };
		char ck[4096];
		snprintf(ck, sizeof(ck), "%s/ckpt.gguf", tmpdir);
		tdata_set_init(&s, TDATA_DPO, 128, 0);
		snprintf(path, sizeof(path), "%s/pairs.jsonl", tmpdir);
		tdata_read_jsonl(&s, t, path, NULL, NULL, err, sizeof(err));
		if (tmodel_new(m, &o, &tm, err, sizeof(err)) == 0 && tloop_new(tm, &s, &c, NULL, &l, err, sizeof(err)) == 0) {
			CHECK(tloop_resume(l, ck, err, sizeof(err)) == -1 && strstr(err, "'line',") &&
			    strstr(err, "'line 2 changed'"), "another config: %s", err);
			CHECK(tloop_resume(l, a, err, sizeof(err)) == -1 && strstr(err, "not a natter checkpoint"),
			    "an adapter as checkpoint: %s", err);
			CHECK(tloop_steps_done(l) == 0, "a refused checkpoint changed the loop");
		} else {
			CHECK(0, "%s", err);
		}
		tloop_free(l);
		tmodel_free(tm);
		l = NULL;
		tm = NULL;
		/* batch times grad_accum overflowed an int: refused, not an untrained adapter. */
		{
			struct tloop_cfg big = c;
			struct tloop *lb = (struct tloop *)1;
			big.batch = 65536;
			big.grad_accum = 65536;
			if (tmodel_new(m, &o, &tm, err, sizeof(err)) == 0)
				CHECK(tloop_new(tm, &s, &big, NULL, &lb, err, sizeof(err)) == -1 && !lb &&
				    strstr(err, "batch 65536 times grad_accum 65536 is more than 1048576 examples a step"),
				    "batch times grad_accum overflowing: %s", err);
			big.batch = 1024;
			big.grad_accum = 1024;
			CHECK(tm && tloop_new(tm, &s, &big, NULL, &lb, err, sizeof(err)) == 0, "1024 x 1024: %s", err);
			tloop_free(lb);
			tmodel_free(tm);
			tm = NULL;
		}
		o.rank = 2;
		c.config = "cfg\nline";
		if (tmodel_new(m, &o, &tm, err, sizeof(err)) == 0 && tloop_new(tm, &s, &c, NULL, &l, err, sizeof(err)) == 0)
			CHECK(tloop_resume(l, ck, err, sizeof(err)) == -1 && strstr(err, "F32 ["), "another rank: %s", err);
		/* Training that diverged (here a weight made NaN after 2 steps) stops with an
		 * error at the step whose loss is not finite, not a NaN adapter. */
		if (l) {
			CHECK(tloop_run(l, 2, NULL, NULL, err, sizeof(err)) == 0 && tloop_steps_done(l) == 2, "2 steps: %s", err);
			tmodel_lora(tm, 0)->a[0] = NAN;
			CHECK(tloop_run(l, 0, NULL, NULL, err, sizeof(err)) == -1 && strstr(err, "step 3: the loss is not a "
			    "finite number: training diverged") && tloop_steps_done(l) == 2, "NaN weight: '%s', %lld steps", err,
			    (long long)tloop_steps_done(l));
		}
		tloop_free(l);
		tmodel_free(tm);
		tdata_set_free(&s);
	}
out:
	tdata_tmpl_free(t);
	llm_model_free(m);
}

/* An adapter trained on tiny-llama with the fixture's options is the fixture's layout:
 * metadata, tensor names, order, types, shapes and offsets (compare_gguf), and loads. */
static void
test_trained_layout(const char *dir)
{
	char path[4096], out[4096], err[512];
	struct llm_model *m = NULL;
	struct tdata_tmpl *t = NULL;
	struct tdata_set s;
	struct tmodel *tm = NULL;
	struct tloop *l = NULL;

	tdata_set_init(&s, TDATA_SFT, 128, 0);
	snprintf(path, sizeof(path), "%s/models/tiny-llama-f32.gguf", dir);
	if (llm_model_load(path, &m, err, sizeof(err)) < 0 ||
	    tdata_tmpl_new(llm_model_gguf(m), "llama", llm_model_vocab(m), "chatml", &t, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/teach.jsonl", tmpdir);
	CHECK(tdata_read_jsonl(&s, t, path, NULL, NULL, err, sizeof(err)) == 0, "%s", err);
	{
		struct tmodel_opts o = { .max_tokens = 128, .targets = TMODEL_ALL_LINEAR, .rank = 8, .alpha = 16.0f };
		struct tloop_cfg c = { TDATA_SFT, 1, 1, 2, adamw_cfg_default(), { 1e-3f, 0.0f, 0, 2 }, 0.1, 3, "x" };
		if (tmodel_new(m, &o, &tm, err, sizeof(err)) < 0 || tloop_new(tm, &s, &c, NULL, &l, err, sizeof(err)) != 0 ||
		    tloop_run(l, 0, NULL, NULL, err, sizeof(err)) != 0) {
			CHECK(0, "%s", err);
			goto out;
		}
	}
	snprintf(out, sizeof(out), "%s/lora-tiny-llama-all-r8.gguf", tmpdir);
	snprintf(path, sizeof(path), "%s/lora/lora-tiny-llama-all-r8.gguf", dir);
	CHECK(tmodel_lora_save(tm, out, "lora-tiny-llama-all-r8", GGML_TYPE_F32, NULL, err, sizeof(err)) == 0, "%s", err);
	compare_gguf(out, path);
	{
		struct lora_adapter *a = NULL;
		CHECK(lora_open(out, m, 1.0f, NULL, &a, err, sizeof(err)) == 0 && lora_count(a) == 14, "%s", err);
		lora_free(a);
	}
out:
	tloop_free(l);
	tmodel_free(tm);
	tdata_set_free(&s);
	tdata_tmpl_free(t);
	llm_model_free(m);
}

/* With arguments, only the groups named run (e.g. "test-train sft dpo"). */
static int g_argc;
static char **g_argv;

static int
want(const char *group)
{
	if (g_argc < 2)
		return 1;
	for (int i = 1; i < g_argc; i++)
		if (strcmp(g_argv[i], group) == 0)
			return 1;
	return 0;
}

int
main(int argc, char **argv)
{
	const char *dir = test_fixtures();
	struct golden seq;

	g_argc = argc;
	g_argv = argv;
	q_init(0);
	snprintf(tmpdir, sizeof(tmpdir), "tests/tmp-train-%ld", (long)getpid());
	mkdir("tests", 0755);
	if (mkdir(tmpdir, 0755) < 0) {
		perror(tmpdir);
		return 1;
	}
	if (want("ops")) {
		printf("operations against central differences (tolerance %.0e of the gradient's largest component):\n",
		    OP_TOL);
		test_embed();
		test_rmsnorm();
		test_rope();
		test_attention();
		test_attention_blocked();
		test_glu();
		test_softcap_xent();
		test_linear();
		printf("the newer operations against double-precision differences (tolerance %.0e):\n", OPD_TOL);
		test_capglu_d();
		test_qkchain_d();
		test_route_d();
		test_conv_d();
		test_delta_d();
		test_gates_d();
		test_first_ops_d();
		test_adamw();
	}
	if (!dir) {
		SKIP("fixtures folder not found (set NATTER_FIXTURES): adapters and models not tested");
	} else {
		if (want("adapters")) {
			test_linear_quant(dir);
			test_adapter_files(dir);
			test_adapter_errors(dir);
			test_adapter_base(dir);
		}
		if (want("model")) {
			printf("the training model (gradient tolerance %.0e):\n", MODEL_TOL);
			if (golden_load(dir, "golden", "tiny-llama-f32", &seq) == 0) {
				test_model(dir, "tiny-llama-f32", "lora-tiny-llama-all-r8", &seq);
				test_model(dir, "tiny-qwen2-f32", "lora-tiny-qwen2-qv-r4", &seq);
				test_model(dir, "tiny-phi3-f32", "lora-tiny-phi3-qkv-r4", &seq);
				free(seq.logits);
			} else {
				CHECK(0, "tiny-llama-f32 golden missing");
			}
			test_model_quant(dir);
			test_training(dir);
		}
		if (want("families")) {
			printf("the families of the registry (gradient tolerance %.0e):\n", MODEL_TOL);
			if (golden_load(dir, "golden", "tiny-llama-f32", &seq) == 0) {
				for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
					test_family(dir, (int)i, &seq);
				test_hybrid(dir, "tiny-qwen35-f32", 1, &seq);
				test_hybrid(dir, "tiny-qwen35-q8_0", 0, &seq);
				free(seq.logits);
			} else {
				CHECK(0, "tiny-llama-f32 golden missing");
			}
			test_refusals(dir);
		}
		if (want("threads")) {
			printf("threads and recomputation:\n");
			test_linear_threads();
			if (golden_load(dir, "golden", "tiny-llama-f32", &seq) == 0) {
				test_threads_recompute(dir, "tiny-llama-f32", 1, &seq);
				test_threads_recompute(dir, "tiny-qwen2-q4_k_m", 0, &seq);
				test_threads_recompute(dir, "tiny-phi3-f32", 1, &seq);
				test_threads_recompute(dir, "tiny-qwen2moe-q8_0", 1, &seq);
				test_threads_recompute(dir, "tiny-gemma3-q4_k_m", 0, &seq);
				test_threads_recompute(dir, "tiny-qwen35-q8_0", 1, &seq);
				free(seq.logits);
			}
		}
		if (want("data")) {
			printf("training data:\n");
			test_tdata_mask(dir);
			test_tdata_jsonl(dir);
		}
		if (want("loop")) {
			printf("the training loop:\n");
			test_sft_learns(dir);
			test_hybrid_sft(dir);
			test_dpo_learns(dir);
			test_resume(dir);
			test_trained_layout(dir);
		}
	}
	printf("worst gradient errors: operations %.2e, in double %.2e, training model %.2e\n", worst_op, worst_opd,
	    worst_model);
	{
		char cmd[512];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
	return test_done("test-train");
}
