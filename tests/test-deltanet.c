/* test-deltanet.c -- the Gated DeltaNet unit against a float64 reference written from QWEN35.md; --bench times it. */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "llm/deltanet.h"
#include "test.h"

/* ------------------------------------------------------------------------ */
/* Random numbers (xorshift; reproducible) */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float
frand(float lo, float hi)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return lo + (hi - lo) * (float)((rng >> 11) * (1.0 / 9007199254740992.0));
}

static void
fill(float *x, size_t n, float lo, float hi)
{
	for (size_t i = 0; i < n; i++)
		x[i] = frand(lo, hi);
}

/* ------------------------------------------------------------------------ */
/* One layer's weights and a sequence of inputs */

struct layer {
	struct dn_shape sh;
	int cd, hv, dv;
	float *conv1d, *ssm_a, *dt_bias, *norm;
	struct dn_weights w;
};

struct seq {
	int T;
	float *qkv, *z, *alpha, *beta;  /* (T, ...) */
};

static void
layer_init(struct layer *L, const struct dn_shape *sh)
{
	L->sh = *sh;
	L->cd = dn_conv_dim(sh);
	L->hv = sh->n_v_heads;
	L->dv = sh->d_v;
	L->conv1d = malloc((size_t)L->cd * sh->d_conv * sizeof(float));
	L->ssm_a = malloc((size_t)L->hv * sizeof(float));
	L->dt_bias = malloc((size_t)L->hv * sizeof(float));
	L->norm = malloc((size_t)L->dv * sizeof(float));
	fill(L->conv1d, (size_t)L->cd * sh->d_conv, -0.7f, 0.7f);
	for (int h = 0; h < L->hv; h++) {
		L->ssm_a[h] = -expf(frand(-1.0f, 1.5f));   /* -exp(A_log) */
		L->dt_bias[h] = frand(-1.0f, 1.0f);
	}
	fill(L->norm, L->dv, 0.5f, 1.5f);
	L->w = (struct dn_weights){ L->conv1d, L->ssm_a, L->dt_bias, L->norm, 1e-6f };
}

static void
layer_free(struct layer *L)
{
	free(L->conv1d);
	free(L->ssm_a);
	free(L->dt_bias);
	free(L->norm);
}

static void
seq_init(struct seq *s, const struct layer *L, int T)
{
	s->T = T;
	s->qkv = malloc((size_t)T * L->cd * sizeof(float));
	s->z = malloc((size_t)T * L->hv * L->dv * sizeof(float));
	s->alpha = malloc((size_t)T * L->hv * sizeof(float));
	s->beta = malloc((size_t)T * L->hv * sizeof(float));
	fill(s->qkv, (size_t)T * L->cd, -2.0f, 2.0f);
	fill(s->z, (size_t)T * L->hv * L->dv, -2.0f, 2.0f);
	/* alpha + dt from about -4 (g near 0: long memory) to 4 (g down to -18) */
	fill(s->alpha, (size_t)T * L->hv, -3.0f, 3.0f);
	fill(s->beta, (size_t)T * L->hv, -3.0f, 3.0f);
}

static void
seq_free(struct seq *s)
{
	free(s->qkv);
	free(s->z);
	free(s->alpha);
	free(s->beta);
}

/* ------------------------------------------------------------------------ */
/* The reference: QWEN35.md's pseudo-code, one token at a time, in double */

struct ref {
	double *conv;   /* (d_conv - 1, cd) */
	double *S;      /* (H_v, Dk, Dv), S[h][i][j] as in the pseudo-code */
};

static double dsilu(double x) { return x / (1.0 + exp(-x)); }
static double dsigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double dsoftplus(double x) { return x > 30.0 ? x : log1p(exp(x)); }

/* One token t of SEQ; Y (H_v Dv) out.  GROUPED reads key head h / (H_v/H_k)
 * instead of h % H_k: the misreading, to show the tests can see it. */
static void
ref_token(const struct layer *L, struct ref *r, const struct seq *s, int t, double *y, int grouped)
{
	const struct dn_shape *sh = &L->sh;
	int cd = L->cd, dc = sh->d_conv, hk = sh->n_k_heads, dk = sh->d_k, dv = sh->d_v;
	const float *x = s->qkv + (size_t)t * cd;
	double *c = malloc((size_t)cd * sizeof(double));
	double *d = malloc((size_t)dv * sizeof(double));
	double *o = malloc((size_t)dv * sizeof(double));

	/* c[ch] = sum_j conv1d[j, ch] * qkv_{t-(dc-1)+j}[ch]; silu */
	for (int ch = 0; ch < cd; ch++) {
		double acc = 0;
		for (int j = 0; j < dc; j++) {
			double xin = j < dc - 1 ? r->conv[(size_t)j * cd + ch] : x[ch];
			acc += (double)L->conv1d[(size_t)ch * dc + j] * xin;
		}
		c[ch] = dsilu(acc);
	}
	for (int j = 0; j + 1 < dc - 1; j++)
		memcpy(r->conv + (size_t)j * cd, r->conv + (size_t)(j + 1) * cd, (size_t)cd * sizeof(double));
	if (dc > 1)
		for (int ch = 0; ch < cd; ch++)
			r->conv[(size_t)(dc - 2) * cd + ch] = x[ch];
	/* q_i, k_i = x / max(||x||, eps) */
	for (int u = 0; u < 2 * hk; u++) {
		double ss = 0, *p = c + (size_t)u * dk;
		for (int i = 0; i < dk; i++)
			ss += p[i] * p[i];
		double n = sqrt(ss) > L->w.eps ? sqrt(ss) : L->w.eps;
		for (int i = 0; i < dk; i++)
			p[i] /= n;
	}
	for (int h = 0; h < sh->n_v_heads; h++) {
		int ki = grouped ? h / (sh->n_v_heads / hk) : h % hk;
		const double *q = c + (size_t)ki * dk, *k = c + (size_t)(hk + ki) * dk;
		const double *v = c + (size_t)2 * hk * dk + (size_t)h * dv;
		double beta = dsigmoid(s->beta[(size_t)t * L->hv + h]);
		double g = L->ssm_a[h] * dsoftplus((double)s->alpha[(size_t)t * L->hv + h] + L->dt_bias[h]);
		double *S = r->S + (size_t)h * dk * dv;
		for (int e = 0; e < dk * dv; e++)
			S[e] *= exp(g);
		for (int j = 0; j < dv; j++) {
			double skj = 0;
			for (int i = 0; i < dk; i++)
				skj += S[(size_t)i * dv + j] * k[i];
			d[j] = beta * (v[j] - skj);
		}
		for (int i = 0; i < dk; i++)
			for (int j = 0; j < dv; j++)
				S[(size_t)i * dv + j] += k[i] * d[j];
		double ss = 0;
		for (int j = 0; j < dv; j++) {
			o[j] = 0;
			for (int i = 0; i < dk; i++)
				o[j] += S[(size_t)i * dv + j] * (q[i] / sqrt((double)dk));
			ss += o[j] * o[j];
		}
		double scale = 1.0 / sqrt(ss / dv + L->w.eps);
		for (int j = 0; j < dv; j++) {
			double zj = s->z[(size_t)t * L->hv * dv + (size_t)h * dv + j];
			y[(size_t)h * dv + j] = o[j] * scale * L->norm[j] * dsilu(zj);
		}
	}
	free(c);
	free(d);
	free(o);
}

/* ------------------------------------------------------------------------ */
/* Running the unit */

struct run {
	struct dn_state *st;
	float *xc, *y, *work;
};

static int
run_init(struct run *R, const struct layer *L, int tmax)
{
	char err[256];
	R->st = dn_state_new(&L->sh, err, sizeof(err));
	R->xc = malloc(dn_xc_floats(&L->sh, tmax) * sizeof(float));
	R->y = malloc((size_t)tmax * L->hv * L->dv * sizeof(float));
	R->work = malloc(dn_work_floats(&L->sh) * sizeof(float));
	return R->st && R->xc && R->y && R->work ? 0 : -1;
}

static void
run_free(struct run *R)
{
	dn_state_free(R->st);
	free(R->xc);
	free(R->y);
	free(R->work);
}

/* Tokens [t0, t0 + n) of SEQ in one call; y rows land at row t0 of YOUT. */
static int
run_call(struct run *R, const struct layer *L, const struct seq *s, int t0, int n, enum dn_mode mode,
	 float *yout)
{
	struct dn_batch b = {
		.nt = n,
		.qkv = s->qkv + (size_t)t0 * L->cd,
		.z = s->z + (size_t)t0 * L->hv * L->dv,
		.alpha = s->alpha + (size_t)t0 * L->hv,
		.beta = s->beta + (size_t)t0 * L->hv,
		.xc = R->xc,
		.y = yout + (size_t)t0 * L->hv * L->dv,
	};
	return dn_layer_run(R->st, &L->w, &b, mode, R->work);
}

/* Error of float X against double REF, relative to max(1, |ref|). */
static double
err_of(const float *x, const double *ref, size_t n)
{
	double e = 0;
	for (size_t i = 0; i < n; i++) {
		double a = fabs(ref[i]), d = fabs((double)x[i] - ref[i]) / (a > 1 ? a : 1);
		if (!(d <= e))
			e = d;   /* NaN counts as the worst */
	}
	return e;
}

static double
err_ff(const float *x, const float *y, size_t n)
{
	double e = 0;
	for (size_t i = 0; i < n; i++) {
		double a = fabs((double)y[i]), d = fabs((double)x[i] - y[i]) / (a > 1 ? a : 1);
		if (!(d <= e))
			e = d;
	}
	return e;
}

/* ------------------------------------------------------------------------ */
/* Chunked vs recurrent vs the reference */

#define TMAX 130
#define TOL 1e-5


/* The state after running from the initial one, as doubles. */
static void
state_err(const struct run *R, const struct layer *L, const double *conv_ref, const double *s_ref,
	  double *econv, double *es)
{
	const struct dn_shape *sh = &L->sh;
	*econv = err_of(dn_state_conv(R->st), conv_ref, (size_t)(sh->d_conv - 1) * L->cd);
	*es = 0;
	for (int h = 0; h < sh->n_v_heads; h++) {
		size_t n = (size_t)sh->d_k * sh->d_v;
		double e = err_of(dn_state_head(R->st, h), s_ref + h * n, n);
		if (!(e <= *es))
			*es = e;
	}
}

static void
state_set(struct run *R, const struct layer *L, const float *conv0, const float *s0)
{
	/* through a snapshot: the only way in, and it is under test too */
	size_t n = dn_snapshot_size(R->st);
	size_t cf = (size_t)(L->sh.d_conv - 1) * L->cd, sf = (size_t)L->hv * L->sh.d_k * L->dv;
	unsigned char *buf = malloc(n);
	char err[256];
	dn_snapshot_save(R->st, buf, n);
	memcpy(buf + n - (cf + sf) * sizeof(float), conv0, cf * sizeof(float));
	memcpy(buf + n - sf * sizeof(float), s0, sf * sizeof(float));
	if (dn_snapshot_load(R->st, buf, n, err, sizeof(err)) < 0)
		CHECK(0, "snapshot load: %s", err);
	free(buf);
}

/* FULL: every length 1..TMAX and every call size; otherwise a few (for
 * the real head size, where the float64 reference is slow). */
static void
test_against_reference(const struct dn_shape *sh, int tier, int full)
{
	static const int few[] = { 1, 2, 3, 7, 63, 64, 65, 100, 129, 130 };
	double wcr = 0, wref = 0;
	struct layer L;
	struct seq s;
	struct run R;
	size_t cf, sf, yw;
	float *conv0, *s0, *y_rec, *y_chk, *y_tmp;
	double *y_ref, *conv_ref, *s_ref;
	struct ref r;
	char name[96];
	unsigned char *snap_rec, *snap_chk;
	size_t snap_n;

	layer_init(&L, sh);
	seq_init(&s, &L, TMAX);
	cf = (size_t)(sh->d_conv - 1) * L.cd;
	sf = (size_t)L.hv * sh->d_k * L.dv;
	yw = (size_t)L.hv * L.dv;
	snprintf(name, sizeof(name), "[%s H_k %d H_v %d Dk %d Dv %d conv %d]", dn_tier_name(tier), sh->n_k_heads,
		 sh->n_v_heads, sh->d_k, sh->d_v, sh->d_conv);
	if (run_init(&R, &L, TMAX) < 0 || dn_state_set_tier(R.st, tier) < 0) {
		CHECK(0, "%s: cannot set up", name);
		return;
	}
	/* a nonzero starting state: conv rows and S */
	conv0 = malloc((cf + 1) * sizeof(float));
	s0 = malloc(sf * sizeof(float));
	fill(conv0, cf, -2.0f, 2.0f);
	fill(s0, sf, -0.5f, 0.5f);

	/* the reference over all TMAX tokens, keeping the state after each prefix */
	y_ref = malloc((size_t)TMAX * yw * sizeof(double));
	conv_ref = malloc((size_t)(TMAX + 1) * (cf + 1) * sizeof(double));
	s_ref = malloc((size_t)(TMAX + 1) * sf * sizeof(double));
	r.conv = conv_ref;
	r.S = s_ref;
	for (size_t i = 0; i < cf; i++)
		r.conv[i] = conv0[i];
	for (size_t i = 0; i < sf; i++)
		r.S[i] = s0[i];
	for (int t = 0; t < TMAX; t++) {
		double *nc = conv_ref + (size_t)(t + 1) * (cf + 1), *ns = s_ref + (size_t)(t + 1) * sf;
		memcpy(nc, r.conv, cf * sizeof(double));
		memcpy(ns, r.S, sf * sizeof(double));
		r.conv = nc;
		r.S = ns;
		ref_token(&L, &r, &s, t, y_ref + (size_t)t * yw, 0);
	}

	snap_n = dn_snapshot_size(R.st);
	snap_rec = malloc(snap_n);
	snap_chk = malloc(snap_n);
	y_rec = malloc((size_t)TMAX * yw * sizeof(float));
	y_chk = malloc((size_t)TMAX * yw * sizeof(float));
	y_tmp = malloc((size_t)TMAX * yw * sizeof(float));

	/* one call of every length 1..TMAX in each mode */
	for (int ni = 0; ni < (full ? TMAX : (int)(sizeof(few) / sizeof(few[0]))); ni++) {
		int n = full ? ni + 1 : few[ni];
		double e1, e2, e3, ec, es;
		int rc;
		state_set(&R, &L, conv0, s0);
		rc = run_call(&R, &L, &s, 0, n, DN_RECURRENT, y_rec);
		state_err(&R, &L, conv_ref + (size_t)n * (cf + 1), s_ref + (size_t)n * sf, &ec, &es);
		CHECK(rc == 0 && ec == 0, "%s recurrent, %d tokens: conv state differs (%g)", name, n, ec);
		CHECK(es <= TOL, "%s recurrent, %d tokens: state off the reference by %g", name, n, es);
		if (es > wref)
			wref = es;
		dn_snapshot_save(R.st, snap_rec, snap_n);
		state_set(&R, &L, conv0, s0);
		rc = run_call(&R, &L, &s, 0, n, DN_CHUNKED, y_chk);
		dn_snapshot_save(R.st, snap_chk, snap_n);
		e3 = err_ff((const float *)(snap_chk + 32), (const float *)(snap_rec + 32), (snap_n - 32) / sizeof(float));
		CHECK(e3 <= TOL, "%s %d tokens: chunked and recurrent states differ by %g", name, n, e3);
		if (e3 > wcr)
			wcr = e3;
		state_err(&R, &L, conv_ref + (size_t)n * (cf + 1), s_ref + (size_t)n * sf, &ec, &es);
		CHECK(rc == 0 && ec == 0, "%s chunked, %d tokens: conv state differs (%g)", name, n, ec);
		CHECK(es <= TOL, "%s chunked, %d tokens: state off the reference by %g", name, n, es);
		if (es > wref)
			wref = es;
		e1 = err_of(y_rec, y_ref, (size_t)n * yw);
		e2 = err_of(y_chk, y_ref, (size_t)n * yw);
		e3 = err_ff(y_chk, y_rec, (size_t)n * yw);
		CHECK(e1 <= TOL && e2 <= TOL && e3 <= TOL,
		      "%s %d tokens: y off: recurrent/ref %g, chunked/ref %g, chunked/recurrent %g", name, n, e1, e2, e3);
		if (e1 > wref)
			wref = e1;
		if (e2 > wref)
			wref = e2;
		if (e3 > wcr)
			wcr = e3;
	}

	/* TMAX tokens in calls of M tokens, for every M: calls start mid-chunk;
	 * chunked throughout, then the two modes alternating call by call */
	for (int alt = 0; alt < 2; alt++) {
		for (int mi = 0; mi < (full ? TMAX : (int)(sizeof(few) / sizeof(few[0]))); mi++) {
			int m = full ? mi + 1 : few[mi];
			double e, ec, es;
			int rc = 0, k = 0;
			state_set(&R, &L, conv0, s0);
			for (int t0 = 0; t0 < TMAX; t0 += m, k++) {
				int n = TMAX - t0 < m ? TMAX - t0 : m;
				enum dn_mode mode = alt && (k & 1) ? DN_RECURRENT : DN_CHUNKED;
				rc |= run_call(&R, &L, &s, t0, n, mode, y_tmp);
			}
			e = err_of(y_tmp, y_ref, (size_t)TMAX * yw);
			state_err(&R, &L, conv_ref + (size_t)TMAX * (cf + 1), s_ref + (size_t)TMAX * sf, &ec, &es);
			CHECK(rc == 0 && e <= TOL && ec == 0 && es <= TOL,
			      "%s calls of %d tokens%s: y off by %g, conv state by %g, S by %g", name, m,
			      alt ? " (modes alternating)" : "", e, ec, es);
			if (e > wref)
				wref = e;
			if (es > wref)
				wref = es;
			e = err_ff(y_tmp, y_rec, (size_t)TMAX * yw);
			if (e > wcr)
				wcr = e;
		}
	}

	printf("%-7s H_k %d H_v %d Dk %3d Dv %3d conv %d: worst error chunked vs recurrent %.2g, vs the float64 reference %.2g\n",
	       dn_tier_name(tier), sh->n_k_heads, sh->n_v_heads, sh->d_k, sh->d_v, sh->d_conv, wcr, wref);
	free(snap_rec);
	free(snap_chk);
	free(conv0);
	free(s0);
	free(y_ref);
	free(conv_ref);
	free(s_ref);
	free(y_rec);
	free(y_chk);
	free(y_tmp);
	run_free(&R);
	seq_free(&s);
	layer_free(&L);
}

/* ------------------------------------------------------------------------ */
/* The value heads read key head h % H_k */

static void
test_tiled_heads(void)
{
	/* H_k 2, H_v 4: tiled reads key heads 0 1 0 1, grouped would read 0 0 1 1 */
	struct dn_shape sh = { 2, 4, 4, 4, 2 };
	struct layer L;
	struct seq s;
	struct run R;
	double yref[16], ygrp[16];
	struct ref r;
	int nz[4];

	layer_init(&L, &sh);
	seq_init(&s, &L, 1);
	/* conv: the current token only, weight 1, so c = silu(qkv); silu(0) = 0 */
	memset(L.conv1d, 0, (size_t)L.cd * sh.d_conv * sizeof(float));
	for (int c = 0; c < L.cd; c++)
		L.conv1d[(size_t)c * sh.d_conv + sh.d_conv - 1] = 1.0f;
	/* key head 0: q and k along channel 0 (q.k > 0); key head 1: q along
	 * channel 0, k along channel 1 (q.k = 0, so o = d (q.k) = 0) */
	memset(s.qkv, 0, (size_t)L.cd * sizeof(float));
	s.qkv[0 * 4 + 0] = 1.0f;  /* q head 0 */
	s.qkv[1 * 4 + 0] = 1.0f;  /* q head 1 */
	s.qkv[2 * 4 + 0] = 1.0f;  /* k head 0 */
	s.qkv[3 * 4 + 1] = 1.0f;  /* k head 1 */
	for (int c = 16; c < 32; c++)
		s.qkv[c] = 1.0f;  /* v of every head */
	if (run_init(&R, &L, 1) < 0) {
		CHECK(0, "tiled: cannot set up");
		return;
	}
	CHECK(run_call(&R, &L, &s, 0, 1, DN_RECURRENT, R.y) == 0, "tiled: run failed");
	for (int h = 0; h < 4; h++) {
		nz[h] = 0;
		for (int j = 0; j < 4; j++)
			nz[h] |= R.y[h * 4 + j] != 0.0f;
	}
	CHECK(nz[0] && !nz[1] && nz[2] && !nz[3],
	      "value heads do not read key head h %% H_k: heads with output %d %d %d %d (tiled: 1 0 1 0, grouped: 1 1 0 0)",
	      nz[0], nz[1], nz[2], nz[3]);
	/* and the reference agrees with the unit, not with the grouped misreading */
	r.conv = calloc((size_t)L.cd, sizeof(double));
	r.S = calloc(64, sizeof(double));
	ref_token(&L, &r, &s, 0, yref, 0);
	memset(r.S, 0, 64 * sizeof(double));
	ref_token(&L, &r, &s, 0, ygrp, 1);
	CHECK(err_of(R.y, yref, 16) < TOL && err_of(R.y, ygrp, 16) > 0.1, "tiled: reference (tiled) off by %g, grouped off by %g",
	      err_of(R.y, yref, 16), err_of(R.y, ygrp, 16));
	free(r.conv);
	free(r.S);
	run_free(&R);
	seq_free(&s);
	layer_free(&L);
}

/* ------------------------------------------------------------------------ */
/* Snapshots */

static void
test_snapshot(void)
{
	struct dn_shape sh = { 2, 4, 32, 16, 4 }, other = { 2, 4, 16, 32, 4 };  /* same byte size */
	struct layer L;
	struct seq s;
	struct run R;
	size_t yn, n;
	unsigned char *snap, *snap2, *bad;
	float *y1, *y2;
	struct dn_state *st2;
	char err[256];

	layer_init(&L, &sh);
	seq_init(&s, &L, 100);
	yn = (size_t)100 * L.hv * L.dv;
	y1 = calloc(yn, sizeof(float));
	y2 = calloc(yn, sizeof(float));
	if (run_init(&R, &L, 100) < 0) {
		CHECK(0, "snapshot: cannot set up");
		return;
	}
	n = dn_snapshot_size(R.st);
	CHECK(n == dn_state_bytes(&sh) + 32, "snapshot size %zu, state %zu", n, dn_state_bytes(&sh));
	snap = malloc(n);
	snap2 = malloc(n);
	bad = malloc(n);
	run_call(&R, &L, &s, 0, 37, DN_CHUNKED, y1);
	CHECK(dn_snapshot_save(R.st, snap, n - 1) < 0, "snapshot saved into too small a buffer");
	CHECK(dn_snapshot_save(R.st, snap, n) == 0, "snapshot save failed");
	run_call(&R, &L, &s, 37, 50, DN_CHUNKED, y1);
	run_call(&R, &L, &s, 87, 1, DN_RECURRENT, y1);
	dn_snapshot_save(R.st, snap2, n);
	CHECK(dn_snapshot_load(R.st, snap, n, err, sizeof(err)) == 0, "snapshot load: %s", err);
	run_call(&R, &L, &s, 37, 50, DN_CHUNKED, y2);
	run_call(&R, &L, &s, 87, 1, DN_RECURRENT, y2);
	CHECK(memcmp(y1 + (size_t)37 * L.hv * L.dv, y2 + (size_t)37 * L.hv * L.dv,
		     (size_t)51 * L.hv * L.dv * sizeof(float)) == 0,
	      "after restoring a snapshot, the same tokens give other outputs");
	dn_snapshot_save(R.st, bad, n);
	CHECK(memcmp(bad, snap2, n) == 0, "after restoring a snapshot, the same tokens leave another state");

	/* refused: wrong length, other shape of the same size, bad magic; the
	 * state stays as it was */
	st2 = dn_state_new(&other, err, sizeof(err));
	CHECK(st2 && dn_snapshot_size(st2) == n, "the other shape's snapshot should be as large");
	CHECK(dn_snapshot_load(R.st, snap, n - 4, err, sizeof(err)) < 0 && strstr(err, "bytes"),
	      "a short snapshot was accepted");
	CHECK(dn_snapshot_load(R.st, NULL, n, err, sizeof(err)) < 0, "a NULL snapshot was accepted");
	if (st2) {
		dn_snapshot_save(st2, bad, n);
		err[0] = 0;
		CHECK(dn_snapshot_load(R.st, bad, n, err, sizeof(err)) < 0 && strstr(err, "shape"),
		      "a snapshot of another shape was accepted (%s)", err);
	}
	memcpy(bad, snap, n);
	bad[0] ^= 1;
	CHECK(dn_snapshot_load(R.st, bad, n, err, sizeof(err)) < 0, "a snapshot with a bad magic was accepted");
	dn_snapshot_save(R.st, bad, n);
	CHECK(memcmp(bad, snap2, n) == 0, "a refused snapshot changed the state");
	/* clear: back to zeros, as a new state */
	dn_state_clear(R.st);
	dn_snapshot_save(R.st, bad, n);
	dn_snapshot_save(st2 ? st2 : R.st, snap2, n);
	CHECK(memcmp(bad + 32, snap2 + 32, n - 32) == 0, "dn_state_clear does not zero the state");

	dn_state_free(st2);
	free(snap);
	free(snap2);
	free(bad);
	free(y1);
	free(y2);
	run_free(&R);
	seq_free(&s);
	layer_free(&L);
}

/* ------------------------------------------------------------------------ */
/* Threads' view: phases over ranges give what one call gives */

static void
test_ranges(void)
{
	struct dn_shape sh = { 2, 6, 8, 12, 4 };
	struct layer L;
	struct seq s;
	struct run A, B;
	float *ya, *yb, *w2;
	struct dn_batch b;
	int nu;

	layer_init(&L, &sh);
	seq_init(&s, &L, 70);
	if (run_init(&A, &L, 70) < 0 || run_init(&B, &L, 70) < 0) {
		CHECK(0, "ranges: cannot set up");
		return;
	}
	ya = calloc((size_t)70 * L.hv * L.dv, sizeof(float));
	yb = calloc((size_t)70 * L.hv * L.dv, sizeof(float));
	w2 = malloc(dn_work_floats(&sh) * sizeof(float));
	nu = dn_conv_units(&sh);
	CHECK(nu == 10, "conv units %d", nu);
	for (int mode = 0; mode < 2; mode++) {
		run_call(&A, &L, &s, 0, 70, (enum dn_mode)mode, ya);
		b = (struct dn_batch){ 70, s.qkv, s.z, s.alpha, s.beta, B.xc, yb };
		CHECK(dn_conv_run(B.st, &L.w, &b, 0, 3) == 0 && dn_conv_run(B.st, &L.w, &b, 3, 4) == 0 &&
			      dn_conv_run(B.st, &L.w, &b, 4, nu) == 0,
		      "conv over ranges failed");
		CHECK(dn_heads_run(B.st, &L.w, &b, (enum dn_mode)mode, 4, 6, B.work) == 0 &&
			      dn_heads_run(B.st, &L.w, &b, (enum dn_mode)mode, 0, 1, w2) == 0 &&
			      dn_heads_run(B.st, &L.w, &b, (enum dn_mode)mode, 1, 4, B.work) == 0,
		      "heads over ranges failed");
		CHECK(memcmp(ya, yb, (size_t)70 * L.hv * L.dv * sizeof(float)) == 0,
		      "mode %d: head and unit ranges give other outputs than one call", mode);
		CHECK(memcmp(dn_state_conv(A.st), dn_state_conv(B.st), (size_t)3 * L.cd * sizeof(float)) == 0 &&
			      memcmp(dn_state_head(A.st, 0), dn_state_head(B.st, 0),
				     (size_t)6 * 8 * 12 * sizeof(float)) == 0,
		      "mode %d: ranges leave another state", mode);
	}
	/* bad calls fail and write nothing */
	b = (struct dn_batch){ 70, s.qkv, s.z, s.alpha, s.beta, B.xc, yb };
	CHECK(dn_conv_run(B.st, &L.w, &b, 0, nu + 1) < 0, "conv range past the end accepted");
	CHECK(dn_conv_run(B.st, &L.w, &b, -1, 2) < 0, "negative conv range accepted");
	CHECK(dn_heads_run(B.st, &L.w, &b, DN_CHUNKED, 0, 7, B.work) < 0, "head range past the end accepted");
	CHECK(dn_heads_run(B.st, &L.w, &b, DN_CHUNKED, 3, 2, B.work) < 0, "reversed head range accepted");
	CHECK(dn_heads_run(B.st, &L.w, &b, (enum dn_mode)7, 0, 6, B.work) < 0, "unknown mode accepted");
	CHECK(dn_heads_run(B.st, &L.w, &b, DN_CHUNKED, 0, 6, NULL) < 0, "no work buffer accepted");
	b.nt = -1;
	CHECK(dn_layer_run(B.st, &L.w, &b, DN_CHUNKED, B.work) < 0, "negative token count accepted");
	b.nt = 5;
	b.qkv = NULL;
	CHECK(dn_layer_run(B.st, &L.w, &b, DN_CHUNKED, B.work) < 0, "missing input accepted");
	b.nt = 0;
	CHECK(dn_layer_run(B.st, &L.w, &b, DN_CHUNKED, B.work) == 0, "an empty batch is refused");
	free(ya);
	free(yb);
	free(w2);
	run_free(&A);
	run_free(&B);
	seq_free(&s);
	layer_free(&L);
}

/* ------------------------------------------------------------------------ */
/* Hostile shapes */

static void
test_hostile(void)
{
	static const struct { struct dn_shape sh; const char *why; } bad[] = {
		{ { 0, 4, 32, 32, 4 }, "no key heads" },
		{ { 2, 0, 32, 32, 4 }, "no value heads" },
		{ { -2, 4, 32, 32, 4 }, "negative key heads" },
		{ { 2, 4, -32, 32, 4 }, "negative Dk" },
		{ { 2, 4, 32, 0, 4 }, "Dv 0" },
		{ { 2, 4, 32, 32, 0 }, "conv kernel 0" },
		{ { 2, 4, 32, 32, -1 }, "conv kernel -1" },
		{ { 3, 4, 32, 32, 4 }, "H_v not a multiple of H_k" },
		{ { 4, 2, 32, 32, 4 }, "fewer value heads than key heads" },
		{ { 2, 4, 1 << 20, 32, 4 }, "Dk 2^20" },
		{ { 2, 4, 32, INT_MAX, 4 }, "Dv INT_MAX" },
		{ { INT_MAX, INT_MAX, 32, 32, 4 }, "INT_MAX heads" },
		{ { 1, 1 << 16, 32, 32, 4 }, "65536 value heads" },
		{ { 2, 4, 32, 32, 1 << 30 }, "conv kernel 2^30" },
		{ { 4096, 4096, 1024, 1024, 4 }, "a 16 GiB state" },
		/* 1 GiB a layer from a file of a few MB a layer: each layer's
		 * state was taken and written at once. */
		{ { 16, 256, 1024, 1024, 1 }, "a 1 GiB state" },
		{ { 16, 64, 256, 257, 4 }, "a state of 2^22 + 2^14 floats" },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		struct dn_state *st = dn_state_new(&bad[i].sh, err, sizeof(err));
		CHECK(!st && strstr(err, "refused"), "shape with %s: not refused (%s)", bad[i].why, err);
		dn_state_free(st);
	}
	CHECK(dn_state_new(NULL, err, sizeof(err)) == NULL, "no shape accepted");
	dn_state_free(NULL);
	/* The largest state taken: 2^22 floats (Qwen3.5's is 2^19). */
	{
		struct dn_shape big = { 16, 64, 256, 256, 4 };
		struct dn_state *st = dn_state_new(&big, err, sizeof(err));
		CHECK(st != NULL, "a state of %d floats: %s", big.n_v_heads * big.d_k * big.d_v, err);
		dn_state_free(st);
	}
	/* the smallest legal shape works: conv kernel 1 (no conv state), 1x1 heads */
	struct dn_shape one = { 1, 1, 1, 1, 1 };
	struct dn_state *st = dn_state_new(&one, err, sizeof(err));
	CHECK(st && dn_snapshot_size(st) == 32 + 4, "shape 1x1x1x1x1: %s", st ? "wrong snapshot size" : err);
	dn_state_free(st);
}

/* ------------------------------------------------------------------------ */
/* Timing (not part of make check: tests/test-deltanet --bench) */

/* This thread's CPU time: on a shared machine, wall time counts the other
 * processes too. */
static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int
bench(void)
{
	/* Qwen3.5-0.8B: 16 key heads, 16 value heads, 128 x 128, kernel 4 */
	struct dn_shape sh = { 16, 16, 128, 128, 4 };
	struct layer L;
	struct seq s;
	struct run R;
	const int T = 512;

	static const struct { const char *name; struct dn_shape sh; } sizes[] = {
		{ "tiny-qwen35", { 2, 4, 32, 32, 4 } },
		{ "Qwen3.5-0.8B", { 16, 16, 128, 128, 4 } },
	};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		const struct dn_shape *z = &sizes[i].sh;
		struct dn_state *st = dn_state_new(z, NULL, 0);
		printf("%-13s H_k %2d H_v %2d Dk %3d Dv %3d conv %d: state %zu bytes, snapshot %zu, "
		       "work %zu floats per thread, xc %zu floats per token\n", sizes[i].name, z->n_k_heads,
		       z->n_v_heads, z->d_k, z->d_v, z->d_conv, dn_state_bytes(z), st ? dn_snapshot_size(st) : 0,
		       dn_work_floats(z), dn_xc_floats(z, 1));
		dn_state_free(st);
	}
	layer_init(&L, &sh);
	seq_init(&s, &L, T);
	if (run_init(&R, &L, T) < 0)
		return 1;
	for (int tier = 0; tier < dn_tier_count(); tier++) {
		if (!dn_tier_available(tier))
			continue;
		dn_state_set_tier(R.st, tier);
		for (int mode = 0; mode < 2; mode++) {
			double best = 1e9;
			for (int rep = 0; rep < 5; rep++) {
				dn_state_clear(R.st);
				double t0 = now();
				run_call(&R, &L, &s, 0, T, (enum dn_mode)mode, R.y);
				double t1 = now() - t0;
				if (t1 < best)
					best = t1;
			}
			printf("%-8s %-9s prompt of %d tokens: %8.3f ms  (%.2f us/token)\n", dn_tier_name(tier),
			       mode ? "chunked" : "recurrent", T, best * 1e3, best * 1e6 / T);
		}
		double best = 1e9;
		for (int rep = 0; rep < 5; rep++) {
			double t0 = now();
			for (int t = 0; t < 64; t++)
				run_call(&R, &L, &s, t, 1, DN_RECURRENT, R.y);
			double t1 = (now() - t0) / 64;
			if (t1 < best)
				best = t1;
		}
			printf("%-8s decode step (1 token, recurrent):     %8.2f us\n", dn_tier_name(tier), best * 1e6);
	}
	run_free(&R);
	seq_free(&s);
	layer_free(&L);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct dn_shape shapes[] = {
		{ 2, 4, 32, 32, 4 },    /* the tiny qwen35 fixture */
		{ 1, 3, 5, 7, 3 },      /* odd sizes: every SIMD tail */
		{ 3, 6, 17, 9, 1 },     /* no conv state */
		{ 2, 2, 40, 33, 2 },
		{ 2, 4, 128, 128, 4 },  /* Qwen3.5's head size (fewer heads) */
	};

	if (argc > 1 && strcmp(argv[1], "--bench") == 0)
		return bench();
	test_hostile();
	test_tiled_heads();
	test_snapshot();
	test_ranges();
	for (int tier = 0; tier < dn_tier_count(); tier++) {
		if (!dn_tier_available(tier)) {
			SKIP_CPU_TIER(dn_tier_name(tier));
			continue;
		}
		for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
			test_against_reference(&shapes[i], tier, shapes[i].d_k < 128);
	}
	printf("(errors relative to max(1, |value|), over y and both states; tolerance %g)\n", TOL);
	return test_done("test-deltanet");
}
