/* tops.c -- the operations of a transformer's training pass, each with its backward. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <cblas.h>

#include "natter/quant.h"
#include "natter/train.h"

/* --- embedding --- */

int
tops_embed_fwd(const struct tweight *emb, const int32_t *tok, int T, float scale, float *x)
{
	const struct q_traits *qt = q_traits_get(emb->type);
	q_to_float_fn to_float = qt->to_float_fast ? qt->to_float_fast : qt->to_float;
	const int E = emb->n_in;

	if (!qt->supported || !to_float)
		return -1;
	for (int t = 0; t < T; t++) {
		if (tok[t] < 0 || tok[t] >= emb->n_out)
			return -1;
		to_float((const uint8_t *)emb->data + (size_t)tok[t] * emb->row_bytes, x + (size_t)t * E, E);
		if (scale != 1.0f)
			for (int i = 0; i < E; i++)
				x[(size_t)t * E + i] *= scale;
	}
	return 0;
}

void
tops_embed_bwd(const int32_t *tok, int T, int n_embd, float scale, const float *dx, float *demb)
{
	for (int t = 0; t < T; t++) {
		float *row = demb + (size_t)tok[t] * n_embd;
		for (int i = 0; i < n_embd; i++)
			row[i] += scale * dx[(size_t)t * n_embd + i];
	}
}

/* --- RMSNorm --- */

static double
inv_rms(const float *x, int D, float eps)
{
	double ss = 0;
	for (int i = 0; i < D; i++)
		ss += (double)x[i] * x[i];
	return 1.0 / sqrt(ss / D + eps);
}

void
tops_rmsnorm_fwd(const float *x, const float *w, int rows, int D, float eps, float *y)
{
	for (int r = 0; r < rows; r++) {
		const float *xr = x + (size_t)r * D;
		float *yr = y + (size_t)r * D;
		double s = inv_rms(xr, D, eps);
		for (int i = 0; i < D; i++)
			yr[i] = (float)(xr[i] * s * (w ? w[i] : 1.0f));
	}
}

/* y_i = w_i x_i s with s = (mean x^2 + eps)^-1/2, so
 * dx_k = s w_k dy_k - x_k s^3 / D * sum_i w_i dy_i x_i. */
void
tops_rmsnorm_bwd(const float *x, const float *w, int rows, int D, float eps, const float *dy, float *dx)
{
	for (int r = 0; r < rows; r++) {
		const float *xr = x + (size_t)r * D, *dyr = dy + (size_t)r * D;
		float *dxr = dx + (size_t)r * D;
		double s = inv_rms(xr, D, eps), dot = 0;
		for (int i = 0; i < D; i++)
			dot += (double)(w ? w[i] : 1.0f) * dyr[i] * xr[i];
		double c = dot * s * s * s / D;
		for (int i = 0; i < D; i++)
			dxr[i] += (float)(s * (w ? w[i] : 1.0f) * dyr[i] - xr[i] * c);
	}
}

/* --- RoPE --- */

/* Rotates every head of one token by its position's angles; SIGN -1 rotates back. */
static void
rope_token(const struct trope *r, float *x, int n_head, int32_t pos, int sign)
{
	const int half = r->n_rot / 2;

	for (int i = 0; i < half; i++) {
		double f = pow((double)r->base, -2.0 * i / r->n_rot);
		if (r->factors)
			f /= r->factors[i];
		double th = (double)pos * r->freq_scale * f;
		float c = (float)(cos(th) * r->attn_factor), s = (float)(sign * sin(th) * r->attn_factor);
		for (int h = 0; h < n_head; h++) {
			float *v = x + (size_t)h * r->head_dim;
			int ia = r->neox ? i : 2 * i, ib = r->neox ? i + half : 2 * i + 1;
			float a = v[ia], b = v[ib];
			v[ia] = a * c - b * s;
			v[ib] = a * s + b * c;
		}
	}
}

void
tops_rope_fwd(const struct trope *r, float *x, int T, int n_head, const int32_t *pos)
{
	for (int t = 0; t < T; t++)
		rope_token(r, x + (size_t)t * n_head * r->head_dim, n_head, pos[t], 1);
}

/* y = f R(th) x on the rotated dims, so dx = f R(th)^T dy = f R(-th) dy. */
void
tops_rope_bwd(const struct trope *r, float *d, int T, int n_head, const int32_t *pos)
{
	for (int t = 0; t < T; t++)
		rope_token(r, d + (size_t)t * n_head * r->head_dim, n_head, pos[t], -1);
}

/* --- attention --- */

static float
dotf(const float *a, const float *b, int n)
{
	float s = 0;
	for (int i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

/* The (capped) score of query Q against key K. */
static inline float
score(const struct tattn *a, const float *q, const float *k)
{
	float s = dotf(q, k, a->head_dim) * a->scale;
	return a->softcap > 0 ? a->softcap * tanhf(s / a->softcap) : s;
}

void
tops_attn_fwd(const struct tattn *a, const float *q, const float *k, const float *v, int T, float *o, float *lse)
{
	const int hd = a->head_dim, hdv = a->head_dim_v > 0 ? a->head_dim_v : hd, group = a->n_head / a->n_head_kv;
	const size_t Q = (size_t)a->n_head * hd, KV = (size_t)a->n_head_kv * hd;
	const size_t O = (size_t)a->n_head * hdv, VW = (size_t)a->n_head_kv * hdv;

	for (int h = 0; h < a->n_head; h++) {
		const int kvh = h / group;
		for (int t = 0; t < T; t++) {
			const float *qt = q + t * Q + (size_t)h * hd;
			float *ot = o + t * O + (size_t)h * hdv;
			int lo = a->window > 0 && t - a->window + 1 > 0 ? t - a->window + 1 : 0;
			float m = -INFINITY;
			double z = 0;

			for (int j = lo; j <= t; j++) {
				float s = score(a, qt, k + j * KV + (size_t)kvh * hd);
				if (s > m)
					m = s;
			}
			memset(ot, 0, hdv * sizeof(float));
			for (int j = lo; j <= t; j++) {
				double p = exp((double)score(a, qt, k + j * KV + (size_t)kvh * hd) - m);
				const float *vj = v + j * VW + (size_t)kvh * hdv;
				z += p;
				for (int i = 0; i < hdv; i++)
					ot[i] += (float)p * vj[i];
			}
			for (int i = 0; i < hdv; i++)
				ot[i] = (float)(ot[i] / z);
			lse[(size_t)h * T + t] = (float)(m + log(z));
		}
	}
}

/*
 * With p_j = softmax(s)_j and o = sum p_j v_j:
 *   dv_j += p_j do;  ds_j = p_j (do.v_j - do.o);
 *   through the cap c tanh(r/c): dr = ds (1 - (s/c)^2);
 *   dq += scale dr k_j;  dk_j += scale dr q.
 * The probabilities are recomputed from the saved log-normaliser.
 */
void
tops_attn_bwd(const struct tattn *a, const float *q, const float *k, const float *v, const float *o,
	      const float *lse, const float *dout, int T, float *dq, float *dk, float *dv)
{
	const int hd = a->head_dim, hdv = a->head_dim_v > 0 ? a->head_dim_v : hd, group = a->n_head / a->n_head_kv;
	const size_t Q = (size_t)a->n_head * hd, KV = (size_t)a->n_head_kv * hd;
	const size_t O = (size_t)a->n_head * hdv, VW = (size_t)a->n_head_kv * hdv;

	for (int h = 0; h < a->n_head; h++) {
		const int kvh = h / group;
		for (int t = 0; t < T; t++) {
			const size_t qo = t * Q + (size_t)h * hd, oo = t * O + (size_t)h * hdv;
			const float *qt = q + qo, *dot_ = dout + oo;
			int lo = a->window > 0 && t - a->window + 1 > 0 ? t - a->window + 1 : 0;
			double D = 0, L = lse[(size_t)h * T + t];

			for (int i = 0; i < hdv; i++)
				D += (double)dot_[i] * o[oo + i];
			for (int j = lo; j <= t; j++) {
				const size_t ko = j * KV + (size_t)kvh * hd, vo = j * VW + (size_t)kvh * hdv;
				float s = score(a, qt, k + ko);
				double p = exp((double)s - L);
				double ds = p * ((double)dotf(dot_, v + vo, hdv) - D);
				if (a->softcap > 0) {
					double th = s / a->softcap;
					ds *= 1.0 - th * th;
				}
				float g = (float)(ds * a->scale), pf = (float)p;
				for (int i = 0; i < hd; i++) {
					dq[qo + i] += g * k[ko + i];
					dk[ko + i] += g * qt[i];
				}
				for (int i = 0; i < hdv; i++)
					dv[vo + i] += pf * dot_[i];
			}
		}
	}
}

/*
 * The same attention in blocks of ATT_BQ queries, each block's scores one sgemm against
 * the keys it may see, its output another: what the training model runs.  The scalar
 * functions above are the reference these are tested against.
 */
#define ATT_BQ 64

size_t
tops_attn_scratch_floats(int T)
{
	return 3 * (size_t)ATT_BQ * (size_t)T;
}

/* The first key query T may see. */
static inline int
key_lo(const struct tattn *a, int t)
{
	return a->window > 0 && t - a->window + 1 > 0 ? t - a->window + 1 : 0;
}

/* S (NQ, NK) = scale * Q[t0..t0+NQ) K[k0..k0+NK)^T for query head H. */
static void
block_scores(const struct tattn *a, const float *q, const float *k, int h, int t0, int nq, int k0, int nk, float *s)
{
	const int hd = a->head_dim, kvh = h / (a->n_head / a->n_head_kv);
	const int Q = a->n_head * hd, KV = a->n_head_kv * hd;

	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, a->scale, q + (size_t)t0 * Q + (size_t)h * hd,
	    Q, k + (size_t)k0 * KV + (size_t)kvh * hd, KV, 0.0f, s, nk);
}

void
tops_attn_fwd_blocked(const struct tattn *a, const float *q, const float *k, const float *v, int T, float *o,
		      float *lse, int kv0, int kv1, float *scratch)
{
	const int hd = a->head_dim, hdv = a->head_dim_v > 0 ? a->head_dim_v : hd, group = a->n_head / a->n_head_kv;
	const int O = a->n_head * hdv, VW = a->n_head_kv * hdv;
	float *s = scratch;

	for (int h = kv0 * group; h < kv1 * group; h++) {
		const int kvh = h / group;
		for (int t0 = 0; t0 < T; t0 += ATT_BQ) {
			const int nq = T - t0 < ATT_BQ ? T - t0 : ATT_BQ, k0 = key_lo(a, t0), nk = t0 + nq - k0;
			block_scores(a, q, k, h, t0, nq, k0, nk, s);
			for (int i = 0; i < nq; i++) {
				float *row = s + (size_t)i * nk;
				const int lo = key_lo(a, t0 + i) - k0, hi = t0 + i - k0;
				double m = -INFINITY, z = 0;
				for (int j = lo; j <= hi; j++) {
					if (a->softcap > 0)
						row[j] = a->softcap * tanhf(row[j] / a->softcap);
					if (row[j] > m)
						m = row[j];
				}
				for (int j = lo; j <= hi; j++)
					z += exp((double)row[j] - m);
				for (int j = 0; j < nk; j++)
					row[j] = j >= lo && j <= hi ? (float)(exp((double)row[j] - m) / z) : 0.0f;
				lse[(size_t)h * T + t0 + i] = (float)(m + log(z));
			}
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hdv, nk, 1.0f, s, nk,
			    v + (size_t)k0 * VW + (size_t)kvh * hdv, VW, 0.0f, o + (size_t)t0 * O + (size_t)h * hdv, O);
		}
	}
}

void
tops_attn_bwd_blocked(const struct tattn *a, const float *q, const float *k, const float *v, const float *o,
		      const float *lse, const float *dout, int T, float *dq, float *dk, float *dv, int kv0, int kv1,
		      float *scratch)
{
	const int hd = a->head_dim, hdv = a->head_dim_v > 0 ? a->head_dim_v : hd, group = a->n_head / a->n_head_kv;
	const int Q = a->n_head * hd, KV = a->n_head_kv * hd, O = a->n_head * hdv, VW = a->n_head_kv * hdv;
	float *p = scratch, *dp = scratch + (size_t)ATT_BQ * T, *ds = dp + (size_t)ATT_BQ * T;

	for (int h = kv0 * group; h < kv1 * group; h++) {
		const int kvh = h / group;
		for (int t0 = 0; t0 < T; t0 += ATT_BQ) {
			const int nq = T - t0 < ATT_BQ ? T - t0 : ATT_BQ, k0 = key_lo(a, t0), nk = t0 + nq - k0;
			const float *qb = q + (size_t)t0 * Q + (size_t)h * hd, *dob = dout + (size_t)t0 * O + (size_t)h * hdv;
			const float *kb = k + (size_t)k0 * KV + (size_t)kvh * hd, *vb = v + (size_t)k0 * VW + (size_t)kvh * hdv;

			block_scores(a, q, k, h, t0, nq, k0, nk, p);
			/* dP = dO V^T */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hdv, 1.0f, dob, O, vb, VW, 0.0f, dp, nk);
			for (int i = 0; i < nq; i++) {
				float *pr = p + (size_t)i * nk, *dpr = dp + (size_t)i * nk, *dsr = ds + (size_t)i * nk;
				const float *ot = o + (size_t)(t0 + i) * O + (size_t)h * hdv, *dot_ = dob + (size_t)i * O;
				const int lo = key_lo(a, t0 + i) - k0, hi = t0 + i - k0;
				const double L = lse[(size_t)h * T + t0 + i];
				double D = 0;
				for (int d = 0; d < hdv; d++)
					D += (double)dot_[d] * ot[d];
				for (int j = 0; j < nk; j++) {
					double sc, pj, g;
					if (j < lo || j > hi) {
						pr[j] = dsr[j] = 0.0f;
						continue;
					}
					sc = a->softcap > 0 ? a->softcap * tanhf(pr[j] / a->softcap) : pr[j];
					pj = exp(sc - L);
					g = pj * ((double)dpr[j] - D);
					if (a->softcap > 0) {
						double th = sc / a->softcap;
						g *= 1.0 - th * th;
					}
					pr[j] = (float)pj;
					dsr[j] = (float)(g * a->scale);
				}
			}
			/* dQ += scale dS K;  dK += scale dS^T Q;  dV += P^T dO */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, ds, nk, kb, KV, 1.0f,
			    dq + (size_t)t0 * Q + (size_t)h * hd, Q);
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f, ds, nk, qb, Q, 1.0f,
			    dk + (size_t)k0 * KV + (size_t)kvh * hd, KV);
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hdv, nq, 1.0f, p, nk, dob, O, 1.0f,
			    dv + (size_t)k0 * VW + (size_t)kvh * hdv, VW);
		}
	}
}

/* --- gated feed-forward activations --- */

#define GELU_K 0.7978845608028654   /* sqrt(2 / pi) */
#define GELU_C 0.044715

static inline double
act_f(enum tops_act act, double x)
{
	if (act == TOPS_SILU)
		return x / (1.0 + exp(-x));
	return 0.5 * x * (1.0 + tanh(GELU_K * (x + GELU_C * x * x * x)));
}

static inline double
act_df(enum tops_act act, double x)
{
	if (act == TOPS_SILU) {
		double sg = 1.0 / (1.0 + exp(-x));
		return sg * (1.0 + x * (1.0 - sg));
	}
	double th = tanh(GELU_K * (x + GELU_C * x * x * x));
	return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * GELU_K * (1.0 + 3.0 * GELU_C * x * x);
}

void
tops_glu_fwd(enum tops_act act, const float *g, const float *u, int ld, int rows, int n, float *h)
{
	for (int r = 0; r < rows; r++)
		for (int i = 0; i < n; i++)
			h[(size_t)r * n + i] = (float)(act_f(act, g[(size_t)r * ld + i]) * u[(size_t)r * ld + i]);
}

void
tops_glu_bwd(enum tops_act act, const float *g, const float *u, int ld, int rows, int n, const float *dh,
	     float *dg, float *du)
{
	for (int r = 0; r < rows; r++) {
		for (int i = 0; i < n; i++) {
			size_t at = (size_t)r * ld + i;
			double d = dh[(size_t)r * n + i];
			dg[at] += (float)(d * u[at] * act_df(act, g[at]));
			du[at] += (float)(d * act_f(act, g[at]));
		}
	}
}

/* --- soft-capping --- */

void
tops_softcap_fwd(float *x, size_t n, float cap)
{
	for (size_t i = 0; i < n; i++)
		x[i] = cap * tanhf(x[i] / cap);
}

void
tops_softcap_bwd(const float *y, size_t n, float cap, float *d)
{
	for (size_t i = 0; i < n; i++) {
		double th = (double)y[i] / cap;
		d[i] = (float)(d[i] * (1.0 - th * th));
	}
}

/* --- mixture-of-experts routing --- */

void
tops_moe_route_fwd(const float *logits, int rows, int n, int k, int norm, int keep, float *probs, int32_t *sel,
		   float *w)
{
	for (int r = 0; r < rows; r++) {
		const float *l = logits + (size_t)r * n;
		float *p = probs + (size_t)r * n, *wr = w + (size_t)r * k;
		int32_t *sr = sel + (size_t)r * k;
		double m = -INFINITY, z = 0, sum = 0;

		for (int i = 0; i < n; i++)
			if (l[i] > m)
				m = l[i];
		for (int i = 0; i < n; i++)
			z += exp((double)l[i] - m);
		for (int i = 0; i < n; i++)
			p[i] = (float)(exp((double)l[i] - m) / z);
		/* The K largest logits, highest first; strictly greater, so a tie keeps the lower
		 * index (as the engine's blk_moe_route chooses). */
		for (int j = 0; j < k; j++) {
			int best = -1;
			if (keep) {
				wr[j] = p[sr[j]];
				sum += wr[j];
				continue;
			}
			for (int i = 0; i < n; i++) {
				int taken = 0;
				for (int q = 0; q < j; q++)
					taken |= sr[q] == i;
				if (!taken && (best < 0 || l[i] > l[best]))
					best = i;
			}
			sr[j] = best;
			wr[j] = p[best];
			sum += wr[j];
		}
		if (norm && sum > 0)
			for (int j = 0; j < k; j++)
				wr[j] = (float)(wr[j] / sum);
	}
}

/*
 * With the selection fixed, w_j = p_sj (or p_sj / S, S = sum_l p_sl), p = softmax(logits):
 *   dp_sj = dw_j, or (dw_j - sum_l dw_l w_l) / S;  dp = 0 off the selection;
 *   dlogit_i = p_i (dp_i - sum_m p_m dp_m).
 */
void
tops_moe_route_bwd(const float *probs, const int32_t *sel, const float *w, int rows, int n, int k, int norm,
		   const float *dw, float *dlogits)
{
	for (int r = 0; r < rows; r++) {
		const float *p = probs + (size_t)r * n, *wr = w + (size_t)r * k, *dwr = dw + (size_t)r * k;
		const int32_t *sr = sel + (size_t)r * k;
		float *dl = dlogits + (size_t)r * n;
		double S = 0, c = 0, pdp = 0;

		for (int j = 0; j < k; j++) {
			S += p[sr[j]];
			c += (double)dwr[j] * wr[j];
		}
#define DP(j) (norm && S > 0 ? ((double)dwr[j] - c) / S : (double)dwr[j])
		for (int j = 0; j < k; j++)
			pdp += p[sr[j]] * DP(j);
		for (int i = 0; i < n; i++)
			dl[i] += (float)(-(double)p[i] * pdp);
		for (int j = 0; j < k; j++)
			dl[sr[j]] += (float)(p[sr[j]] * DP(j));
#undef DP
	}
}

/* --- the loss --- */

double
tops_xent(const float *logits, int T, int V, const int32_t *target, const uint8_t *mask, double norm,
	  float *dlogits, int *count)
{
	double sum = 0;
	int cnt = 0;

	for (int t = 0; t < T; t++) {
		const float *l = logits + (size_t)t * V;
		float *dl = dlogits ? dlogits + (size_t)t * V : NULL;
		double m = -INFINITY, z = 0;

		if (mask && !mask[t]) {
			if (dl)
				memset(dl, 0, V * sizeof(float));
			continue;
		}
		for (int j = 0; j < V; j++)
			if (l[j] > m)
				m = l[j];
		for (int j = 0; j < V; j++)
			z += exp(l[j] - m);
		sum += log(z) + m - l[target[t]];
		cnt++;
		if (dl) {
			for (int j = 0; j < V; j++)
				dl[j] = (float)(exp(l[j] - m) / z / norm);
			dl[target[t]] -= (float)(1.0 / norm);
		}
	}
	if (count)
		*count = cnt;
	return sum;
}
