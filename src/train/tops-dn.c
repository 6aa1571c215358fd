/* tops-dn.c -- the operations of Gated DeltaNet layers and gated attention (Qwen3.5 hybrids), each with its backward. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "natter/train.h"

static inline double
sigmoid_d(double x)
{
	return 1.0 / (1.0 + exp(-x));
}

/* --- causal depthwise convolution and SiLU --- */

/* The convolution's output (before SiLU) of channel C at token T. */
static inline double
conv_at(const float *x, size_t ld, int t, int c, const float *w, int K)
{
	double s = 0;
	for (int j = 0; j < K; j++) {
		int tau = t - (K - 1) + j;
		if (tau >= 0)
			s += (double)w[(size_t)c * K + j] * x[(size_t)tau * ld + c];
	}
	return s;
}

void
tops_conv_silu_fwd(const float *x, size_t ld, int T, int C, const float *w, int K, float *y)
{
	for (int t = 0; t < T; t++)
		for (int c = 0; c < C; c++) {
			double p = conv_at(x, ld, t, c, w, K);
			y[(size_t)t * ld + c] = (float)(p * sigmoid_d(p));
		}
}

/* y = silu(p), p_t = sum_j w_j x_{t-K+1+j}: dp = dy s (1 + p (1 - s)) with s = sigmoid(p),
 * and dx_{t-K+1+j} += w_j dp_t. */
void
tops_conv_silu_bwd(const float *x, size_t ld, int T, int C, const float *w, int K, const float *dy, float *dx)
{
	for (int t = 0; t < T; t++)
		for (int c = 0; c < C; c++) {
			double p = conv_at(x, ld, t, c, w, K), s = sigmoid_d(p);
			double dp = dy[(size_t)t * ld + c] * s * (1.0 + p * (1.0 - s));
			for (int j = 0; j < K; j++) {
				int tau = t - (K - 1) + j;
				if (tau >= 0)
					dx[(size_t)tau * ld + c] += (float)(w[(size_t)c * K + j] * dp);
			}
		}
}

/* --- L2 norm --- */

static double
norm2(const float *x, int D)
{
	double ss = 0;
	for (int i = 0; i < D; i++)
		ss += (double)x[i] * x[i];
	return sqrt(ss);
}

void
tops_l2norm_fwd(const float *x, int rows, int D, float eps, float scale, float *y)
{
	for (int r = 0; r < rows; r++) {
		const float *xr = x + (size_t)r * D;
		double n = fmax(norm2(xr, D), eps), s = scale / n;
		for (int i = 0; i < D; i++)
			y[(size_t)r * D + i] = (float)(xr[i] * s);
	}
}

/* y = c x / n with n = ||x|| (above eps): dx = c / n (dy - x (x . dy) / n^2).  Below eps
 * n is the constant eps: dx = c dy / eps. */
void
tops_l2norm_bwd(const float *x, int rows, int D, float eps, float scale, const float *dy, float *dx)
{
	for (int r = 0; r < rows; r++) {
		const float *xr = x + (size_t)r * D, *dyr = dy + (size_t)r * D;
		float *dxr = dx + (size_t)r * D;
		double n = norm2(xr, D), dot = 0, c;
		if (n <= eps) {
			for (int i = 0; i < D; i++)
				dxr[i] += (float)(scale * dyr[i] / eps);
			continue;
		}
		for (int i = 0; i < D; i++)
			dot += (double)xr[i] * dyr[i];
		c = dot / (n * n);
		for (int i = 0; i < D; i++)
			dxr[i] += (float)(scale / n * (dyr[i] - xr[i] * c));
	}
}

/* --- the gates of the delta rule --- */

/* ggml's softplus: the identity above 20 (where log1p(e^x) rounds to x), as inference. */
static inline double
softplus_d(double x)
{
	return x > 20.0 ? x : log1p(exp(x));
}

void
tops_dn_gates_fwd(const float *alpha, const float *b, int T, int H, const float *ssm_a, const float *dt_bias,
		  float *g, float *beta)
{
	for (int t = 0; t < T; t++)
		for (int h = 0; h < H; h++) {
			const size_t i = (size_t)t * H + h;
			g[i] = (float)(ssm_a[h] * softplus_d((double)alpha[i] + dt_bias[h]));
			beta[i] = (float)sigmoid_d(b[i]);
		}
}

/* g = a softplus(alpha + dt): dalpha = dg a sigmoid(alpha + dt) (1 past 20, as softplus
 * is the identity there), da = dg softplus(...), ddt = the sum of dalpha; beta =
 * sigmoid(b): db = dbeta beta (1 - beta). */
void
tops_dn_gates_bwd(const float *alpha, const float *b, int T, int H, const float *ssm_a, const float *dt_bias,
		  const float *dg, const float *dbeta, float *dalpha, float *db, float *da, float *ddt)
{
	for (int t = 0; t < T; t++)
		for (int h = 0; h < H; h++) {
			const size_t i = (size_t)t * H + h;
			const double x = (double)alpha[i] + dt_bias[h], s = sigmoid_d(b[i]);
			const double dx = dg[i] * ssm_a[h] * (x > 20.0 ? 1.0 : sigmoid_d(x));
			dalpha[i] += (float)dx;
			db[i] += (float)(dbeta[i] * s * (1.0 - s));
			if (da)
				da[h] += (float)(dg[i] * softplus_d(x));
			if (ddt)
				ddt[h] += (float)dx;
		}
}

/* --- the gated delta rule --- */

/* Tokens between two saved states in the backward: about sqrt(T), which makes the saved
 * states (T / C) and the recomputed ones (C) fewest. */
static int
delta_chunk(int T)
{
	int c = (int)ceil(sqrt((double)(T > 0 ? T : 1)));
	return c < 1 ? 1 : c;
}

size_t
tops_delta_scratch_floats(const struct tdelta *d, int T)
{
	/* T / C <= C: 2 C + 1 states, enough for any shorter sequence too */
	return (2 * (size_t)delta_chunk(T) + 1) * d->d_k * d->d_v + 3 * (size_t)d->d_v;
}

/* One token of value head H on its state S (Dk, Dv): S = a S; u = S^T k; d = beta (v - u);
 * S += k d^T; o = S^T q (when O is not NULL).  U and DD receive u and d (Dv each). */
static void
delta_step(const struct tdelta *dl, float *S, const float *q, const float *k, const float *v, float g, float beta,
	   float *o, float *u, float *d)
{
	const int Dk = dl->d_k, Dv = dl->d_v;
	const float a = expf(g);

	for (int j = 0; j < Dv; j++)
		u[j] = 0;
	for (int i = 0; i < Dk; i++) {
		float *Si = S + (size_t)i * Dv;
		for (int j = 0; j < Dv; j++) {
			Si[j] *= a;
			u[j] += Si[j] * k[i];
		}
	}
	for (int j = 0; j < Dv; j++)
		d[j] = beta * (v[j] - u[j]);
	if (o)
		for (int j = 0; j < Dv; j++)
			o[j] = 0;
	for (int i = 0; i < Dk; i++) {
		float *Si = S + (size_t)i * Dv;
		for (int j = 0; j < Dv; j++) {
			Si[j] += k[i] * d[j];
			if (o)
				o[j] += Si[j] * q[i];
		}
	}
}

/* Pointers to token T's vectors of value head H. */
#define DQ(p, t) ((p) + ((size_t)(t) * dl->n_k_heads + kh) * dl->d_k)
#define DV(p, t) ((p) + ((size_t)(t) * dl->n_v_heads + h) * dl->d_v)
#define DG(p, t) ((p)[(size_t)(t) * dl->n_v_heads + h])

void
tops_delta_fwd(const struct tdelta *dl, const float *q, const float *k, const float *v, const float *g,
	       const float *beta, int T, float *o, int i0, int i1, float *scratch)
{
	const size_t SS = (size_t)dl->d_k * dl->d_v;
	float *S = scratch, *u = S + SS, *d = u + dl->d_v;

	for (int h = 0; h < dl->n_v_heads; h++) {
		const int kh = h % dl->n_k_heads;
		if (kh < i0 || kh >= i1)
			continue;
		memset(S, 0, SS * sizeof(float));
		for (int t = 0; t < T; t++)
			delta_step(dl, S, DQ(q, t), DQ(k, t), DV(v, t), DG(g, t), DG(beta, t), DV(o, t), u, d);
	}
}

/*
 * Backward through token t, from dS (the gradient of S_t, from the later tokens and o_t)
 * with P = S_{t-1}, a = e^g, S' = a P, u = S'^T k, d = beta (v - u), S_t = S' + k d^T:
 *   o_t = S_t^T q:   dq += S_t do = a P do + k (d . do);  dS += q do^T
 *   S_t = S' + k d^T: dk += dS d;  dd = dS^T k
 *   d = beta (v - u): dbeta = dd . (v - u);  dv = beta dd;  du = -beta dd
 *   u = S'^T k:       dS' = dS + k du^T;  dk += S' du = a P du
 *   S' = a P:         dg = a <dS', P>;  dS_{t-1} = a dS'
 * The states are recomputed: the forward again from zero keeping every C-th state, then
 * chunk by chunk from the last, the chunk's states from its saved one.
 */
void
tops_delta_bwd(const struct tdelta *dl, const float *q, const float *k, const float *v, const float *g,
	       const float *beta, const float *dout, int T, float *dq, float *dk, float *dv, float *dg, float *dbeta,
	       int i0, int i1, float *scratch)
{
	const int Dk = dl->d_k, Dv = dl->d_v, C = delta_chunk(T), nc = (T + C - 1) / C;
	const size_t SS = (size_t)Dk * Dv;
	float *ck = scratch, *st = ck + (size_t)nc * SS, *dS = st + (size_t)C * SS;
	float *u = dS + SS, *d = u + Dv, *dd = d + Dv;

	for (int h = 0; h < dl->n_v_heads; h++) {
		const int kh = h % dl->n_k_heads;
		if (kh < i0 || kh >= i1)
			continue;
		/* the state before every C-th token */
		memset(ck, 0, SS * sizeof(float));
		for (int c = 1; c < nc; c++) {
			memcpy(ck + (size_t)c * SS, ck + (size_t)(c - 1) * SS, SS * sizeof(float));
			for (int t = (c - 1) * C; t < c * C; t++)
				delta_step(dl, ck + (size_t)c * SS, NULL, DQ(k, t), DV(v, t), DG(g, t), DG(beta, t), NULL, u, d);
		}
		memset(dS, 0, SS * sizeof(float));
		for (int c = nc - 1; c >= 0; c--) {
			const int t0 = c * C, t1 = t0 + C < T ? t0 + C : T;
			/* st[j]: the state before token t0 + j */
			memcpy(st, ck + (size_t)c * SS, SS * sizeof(float));
			for (int t = t0; t + 1 < t1; t++) {
				float *nx = st + (size_t)(t - t0 + 1) * SS;
				memcpy(nx, nx - SS, SS * sizeof(float));
				delta_step(dl, nx, NULL, DQ(k, t), DV(v, t), DG(g, t), DG(beta, t), NULL, u, d);
			}
			for (int t = t1 - 1; t >= t0; t--) {
				const float *P = st + (size_t)(t - t0) * SS, *qt = DQ(q, t), *kt = DQ(k, t), *vt = DV(v, t);
				const float *dot = DV(dout, t);
				const float a = expf(DG(g, t)), bt = DG(beta, t);
				float *dqt = DQ(dq, t), *dkt = DQ(dk, t), *dvt = DV(dv, t);
				double ddo = 0, db = 0, da = 0;

				for (int j = 0; j < Dv; j++)
					u[j] = 0;
				for (int i = 0; i < Dk; i++)
					for (int j = 0; j < Dv; j++)
						u[j] += a * P[(size_t)i * Dv + j] * kt[i];
				for (int j = 0; j < Dv; j++) {
					d[j] = bt * (vt[j] - u[j]);
					ddo += (double)d[j] * dot[j];
				}
				/* o_t */
				for (int i = 0; i < Dk; i++) {
					const float *Pi = P + (size_t)i * Dv;
					float *dSi = dS + (size_t)i * Dv;
					double s = 0;
					for (int j = 0; j < Dv; j++) {
						s += (double)Pi[j] * dot[j];
						dSi[j] += qt[i] * dot[j];
					}
					dqt[i] += (float)(a * s + kt[i] * ddo);
				}
				/* S_t = S' + k d^T */
				for (int j = 0; j < Dv; j++)
					dd[j] = 0;
				for (int i = 0; i < Dk; i++) {
					const float *dSi = dS + (size_t)i * Dv;
					double s = 0;
					for (int j = 0; j < Dv; j++) {
						s += (double)dSi[j] * d[j];
						dd[j] += dSi[j] * kt[i];
					}
					dkt[i] += (float)s;
				}
				/* d = beta (v - u); dd becomes du */
				for (int j = 0; j < Dv; j++) {
					db += (double)dd[j] * (vt[j] - u[j]);
					dvt[j] += bt * dd[j];
					dd[j] = -bt * dd[j];
				}
				DG(dbeta, t) += (float)db;
				/* u = S'^T k, S' = a P */
				for (int i = 0; i < Dk; i++) {
					const float *Pi = P + (size_t)i * Dv;
					float *dSi = dS + (size_t)i * Dv;
					double s = 0;
					for (int j = 0; j < Dv; j++) {
						s += (double)Pi[j] * dd[j];
						dSi[j] += kt[i] * dd[j];
						da += (double)dSi[j] * Pi[j];
						dSi[j] *= a;
					}
					dkt[i] += (float)(a * s);
				}
				DG(dg, t) += (float)(a * da);
			}
		}
	}
}

#undef DQ
#undef DV
#undef DG

/* --- gated RMSNorm --- */

void
tops_gnorm_fwd(const float *o, const float *z, const float *w, int rows, int D, float eps, float *y)
{
	for (int r = 0; r < rows; r++) {
		const float *orow = o + (size_t)r * D, *zr = z + (size_t)r * D;
		double ss = 0, s;
		for (int i = 0; i < D; i++)
			ss += (double)orow[i] * orow[i];
		s = 1.0 / sqrt(ss / D + eps);
		for (int i = 0; i < D; i++)
			y[(size_t)r * D + i] = (float)(orow[i] * s * w[i] * zr[i] * sigmoid_d(zr[i]));
	}
}

/* y = n_i silu(z_i) with n = rms(o) w: dz = dy n silu'(z); do = the RMSNorm's backward of
 * dy silu(z). */
void
tops_gnorm_bwd(const float *o, const float *z, const float *w, int rows, int D, float eps, const float *dy,
	       float *dout, float *dz)
{
	for (int r = 0; r < rows; r++) {
		const float *orow = o + (size_t)r * D, *zr = z + (size_t)r * D, *dyr = dy + (size_t)r * D;
		float *dor = dout + (size_t)r * D, *dzr = dz + (size_t)r * D;
		double ss = 0, s, dot = 0, c;
		for (int i = 0; i < D; i++)
			ss += (double)orow[i] * orow[i];
		s = 1.0 / sqrt(ss / D + eps);
		for (int i = 0; i < D; i++) {
			double sg = sigmoid_d(zr[i]), n = orow[i] * s * w[i];
			dzr[i] += (float)(dyr[i] * n * sg * (1.0 + zr[i] * (1.0 - sg)));
			dot += (double)w[i] * dyr[i] * zr[i] * sg * orow[i];
		}
		c = dot * s * s * s / D;
		for (int i = 0; i < D; i++) {
			double sz = zr[i] * sigmoid_d(zr[i]);
			dor[i] += (float)(s * w[i] * dyr[i] * sz - orow[i] * c);
		}
	}
}

/* --- the sigmoid output gate --- */

void
tops_sigmoid_gate_fwd(const float *x, const float *gate, size_t n, float *y)
{
	for (size_t i = 0; i < n; i++)
		y[i] = (float)(x[i] * sigmoid_d(gate[i]));
}

void
tops_sigmoid_gate_bwd(const float *x, const float *gate, size_t n, const float *dy, float *dx, float *dgate)
{
	for (size_t i = 0; i < n; i++) {
		double s = sigmoid_d(gate[i]);
		dx[i] += (float)(dy[i] * s);
		dgate[i] += (float)(dy[i] * x[i] * s * (1.0 - s));
	}
}
