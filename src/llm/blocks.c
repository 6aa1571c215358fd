/* blocks.c -- the shared blocks of the forward pass: weight products, norms, RoPE, attention, FFN, experts. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "natter/quant.h"
#include "llm/attn.h"
#include "llm/blocks.h"
#include "llm/model.h"
#include "llm/pool.h"

/* --- LoRA: OUT += s B (A X), in float32 whatever the base weight's type --- */

struct lora_job {
	const struct lora_use *u;
	const float *x;           /* (nt, n_in) */
	float *out;               /* (nt, n_out) */
	float *t;                 /* per thread (n_batch, rank) */
	size_t t_stride;
	int n_in, n_out, nt;
	int by_tokens;            /* 1: each thread takes its tokens; 0: its output rows */
};

static void
lora_worker(void *arg, int ith, int nth)
{
	const struct lora_job *j = arg;
	const struct lora_use *u = j->u;
	const int r = u->rank;
	float *t = j->t + (size_t)ith * j->t_stride;

	if (j->by_tokens) {
		/* A batch: the thread's tokens through A, then through B. */
		const int t0 = (int)((int64_t)j->nt * ith / nth), t1 = (int)((int64_t)j->nt * (ith + 1) / nth);
		const int m = t1 - t0;
		if (m <= 0)
			return;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, r, j->n_in, 1.0f, j->x + (size_t)t0 * j->n_in,
		    j->n_in, u->a, j->n_in, 0.0f, t, r);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, j->n_out, r, u->scale, t, r, u->b, r, 1.0f,
		    j->out + (size_t)t0 * j->n_out, j->n_out);
	} else {
		/* A few tokens: every thread computes the small A x (rank values a
		 * token) and adds B's contribution to its share of the rows. */
		const int o0 = (int)((int64_t)j->n_out * ith / nth), o1 = (int)((int64_t)j->n_out * (ith + 1) / nth);
		if (o1 <= o0)
			return;
		if (j->nt == 1) {
			cblas_sgemv(CblasRowMajor, CblasNoTrans, r, j->n_in, 1.0f, u->a, j->n_in, j->x, 1, 0.0f, t, 1);
			cblas_sgemv(CblasRowMajor, CblasNoTrans, o1 - o0, r, u->scale, u->b + (size_t)o0 * r, r, t, 1, 1.0f,
			    j->out + o0, 1);
		} else {
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->nt, r, j->n_in, 1.0f, j->x, j->n_in, u->a,
			    j->n_in, 0.0f, t, r);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->nt, o1 - o0, r, u->scale, t, r,
			    u->b + (size_t)o0 * r, r, 1.0f, j->out + o0, j->n_out);
		}
	}
}

/* Adds every adapter of weight W to OUT (nt, n_out) for the input X (nt, n_in). */
static void
lora_add(struct llm_ctx *c, float *out, const float *x, const struct lweight *w, int n_in, int n_out, int nt)
{
	for (const struct lora_use *u = c->lora_at[LORA_SLOT(w->layer, w->role)]; u; u = u->next) {
		struct lora_job j = { u, x, out, c->lora_t, (size_t)c->n_batch * c->lora_rank_max, n_in, n_out, nt,
			nt >= 2 * pool_size(c->pool) };
		/* Small products are not worth waking the pool for. */
		if ((double)nt * u->rank * (n_in + n_out) < 65536.0)
			lora_worker(&j, 0, 1);
		else
			pool_run(c->pool, lora_worker, &j);
	}
}

void
blk_mm_many(struct llm_ctx *c, const float *x, int expert, int nt, int n, const struct blk_out *outs)
{
	struct ltensor t[MM_MAX_PARTS];
	struct mm_part parts[MM_MAX_PARTS] = { { 0 } };

	if (n < 1)
		return;
	if (n > MM_MAX_PARTS) {
		for (int i = 0; i < n; i++)
			blk_mm_many(c, x, expert, nt, 1, outs + i);
		return;
	}
	for (int i = 0; i < n; i++) {
		t[i] = expert >= 0 ? ltensor_slice(&outs[i].w->w, expert) : outs[i].w->w;
		parts[i] = (struct mm_part){ outs[i].out, &t[i] };
	}
	mm_matmul_many(c->pool, &c->mm, parts, n, x, (int)outs[0].w->w.ne0, nt);
	for (int i = 0; i < n; i++) {
		const struct lweight *w = outs[i].w;
		float *out = outs[i].out;
		if (w->b.data) {
			const float *b = w->b.data;
			const int d = (int)t[i].ne1;
			for (int r = 0; r < nt; r++)
				for (int k = 0; k < d; k++)
					out[(size_t)r * d + k] += b[k];
		}
		/* Adapters hold plain matrices only (lora_open refuses stacks). */
		if (c->lora_at && expert < 0)
			lora_add(c, out, x, w, (int)t[i].ne0, (int)t[i].ne1, nt);
	}
}

void
blk_mm(struct llm_ctx *c, float *out, const float *x, const struct lweight *w, int expert, int nt)
{
	blk_mm_many(c, x, expert, nt, 1, &(struct blk_out){ out, w });
}

void
blk_rmsnorm(float *out, const float *x, const struct lweight *w, int rows, int n, float eps)
{
	const struct q_vops *v = q_vops_get();

	for (int r = 0; r < rows; r++)
		v->rmsnorm(n, out + (size_t)r * n, x + (size_t)r * n, w->w.data, eps);
}

void
blk_softcap(float *x, size_t n, float cap)
{
	if (cap <= 0)
		return;
	for (size_t i = 0; i < n; i++)
		x[i] = cap * tanhf(x[i] / cap);
}

/* --- RoPE --- */

void
blk_rope_prepare(struct llm_ctx *c, int nt)
{
	const int half = c->m->hp.rope_dim / 2;

	for (int k = 0; k < c->n_rope; k++) {
		const struct rope_cfg *r = &c->rope[k];
		float *cs = c->rope_cs + (size_t)k * c->n_batch * half * 2;
		for (int t = 0; t < nt; t++) {
			double pos = (double)(c->pos0 + t) * r->scale;
			for (int i = 0; i < half; i++) {
				double th = pos * r->inv_freq[i];
				cs[((size_t)t * half + i) * 2] = (float)cos(th) * r->mscale;
				cs[((size_t)t * half + i) * 2 + 1] = (float)sin(th) * r->mscale;
			}
		}
	}
}

/* Rotates the first ROPE_DIM dims of one head V by the (cos, sin) pairs CS. */
static void
rope_head(float *v, const float *cs, int rope_dim, int neox)
{
	int half = rope_dim / 2;

	if (neox) {
		for (int i = 0; i < half; i++) {
			float co = cs[2 * i], si = cs[2 * i + 1];
			float a = v[i], b = v[i + half];
			v[i] = a * co - b * si;
			v[i + half] = a * si + b * co;
		}
	} else {
		for (int i = 0; i < half; i++) {
			float co = cs[2 * i], si = cs[2 * i + 1];
			float a = v[2 * i], b = v[2 * i + 1];
			v[2 * i] = a * co - b * si;
			v[2 * i + 1] = a * si + b * co;
		}
	}
}

void
blk_rope(struct llm_ctx *c, int il, float *x, int nt, int n_heads)
{
	const struct llm_hparams *hp = &c->m->hp;
	const int half = hp->rope_dim / 2, hd = hp->head_dim;
	const float *cs = c->rope_cs + (size_t)c->layer_rope[il] * c->n_batch * half * 2;

	for (int t = 0; t < nt; t++)
		for (int h = 0; h < n_heads; h++)
			rope_head(x + ((size_t)t * n_heads + h) * hd, cs + (size_t)t * half * 2, hp->rope_dim,
			    hp->rope_neox);
}

/* --- attention --- */

struct attn_shape
blk_attn_shape(const struct llm_hparams *hp, int il)
{
	const struct llm_layer_hparams *lh = &hp->layer[il];
	struct attn_shape sh = {
		hp->n_head, hp->n_head_kv, hp->head_dim, hp->head_dim_v,
		lh->kind == LLM_LAYER_SLIDING ? lh->window : 0, hp->attn_scale, hp->attn_softcap,
	};
	return sh;
}

int
blk_out_first(const struct llm_ctx *c, int il)
{
	return il == c->m->hp.n_layer - 1 ? c->out_first : 0;
}

void
blk_attn_core(struct llm_ctx *c, int il, int nt, int from)
{
	struct attn_shape sh = blk_attn_shape(&c->m->hp, il);
	const size_t Q = (size_t)c->m->hp.n_head * c->m->hp.head_dim;

	attn_forward(c->pool, &c->attn, &sh, &c->kv.l[il], c->q + (size_t)from * Q, nt - from, c->pos0 + from,
	    c->att_out);
}

void
blk_attention(struct llm_ctx *c, int il, const float *in, float *out, int nt, int from)
{
	const struct llm_hparams *hp = &c->m->hp;
	const struct lweight *t = c->m->layers[il].t;
	const size_t Q = (size_t)hp->n_head * hp->head_dim, K = (size_t)hp->n_head_kv * hp->head_dim;
	const size_t V = (size_t)hp->n_head_kv * hp->head_dim_v;

	if (t[LLM_TENSOR_ATTN_QKV].w.data) {
		blk_mm(c, c->qkv, in, &t[LLM_TENSOR_ATTN_QKV], -1, nt);
		for (int r = 0; r < nt; r++) {
			const float *row = c->qkv + (size_t)r * (Q + K + V);
			memcpy(c->q + r * Q, row, Q * sizeof(float));
			memcpy(c->k + r * K, row + Q, K * sizeof(float));
			memcpy(c->v + r * V, row + Q + K, V * sizeof(float));
		}
	} else if (from == nt) {
		/* No query is asked: the keys and values alone. */
		blk_mm_many(c, in, -1, nt, 2, (const struct blk_out[]){ { c->k, &t[LLM_TENSOR_ATTN_K] },
		    { c->v, &t[LLM_TENSOR_ATTN_V] } });
	} else {
		blk_mm_many(c, in, -1, nt, 3, (const struct blk_out[]){ { c->q, &t[LLM_TENSOR_ATTN_Q] },
		    { c->k, &t[LLM_TENSOR_ATTN_K] }, { c->v, &t[LLM_TENSOR_ATTN_V] } });
	}
	if (hp->layer[il].flags & LLM_LAYER_QK_NORM) {
		if (from < nt)
			blk_rmsnorm(c->q, c->q, &t[LLM_TENSOR_ATTN_Q_NORM], nt * hp->n_head, hp->head_dim, hp->rms_eps);
		blk_rmsnorm(c->k, c->k, &t[LLM_TENSOR_ATTN_K_NORM], nt * hp->n_head_kv, hp->head_dim, hp->rms_eps);
	}
	if (from < nt)
		blk_rope(c, il, c->q, nt, hp->n_head);
	blk_rope(c, il, c->k, nt, hp->n_head_kv);
	for (int r = 0; r < nt; r++)
		kv_layer_put(&c->kv.l[il], c->pos0 + r, c->k + r * K, c->v + r * V);
	if (from == nt)
		return;
	blk_attn_core(c, il, nt, from);
	blk_mm(c, out, c->att_out, &t[LLM_TENSOR_ATTN_OUT], -1, nt - from);
}

/* --- feed-forward --- */

static inline float
gelu_tanh(float x)
{
	return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

/* G = act(gate) * up, token rows [T0, T1): from G and U, or (fused) from
 * U's rows of [gate | up].  SiLU through the tier's vector helper. */
struct glu_job {
	float *g;
	const float *u;
	int ff, nt, per, fused, gelu;
	const struct q_vops *v;
};

static void
glu_rows(const struct glu_job *j, int t0, int t1)
{
	const int ff = j->ff;

	for (int t = t0; t < t1; t++) {
		float *o = j->g + (size_t)t * ff;
		const float *gate = j->fused ? j->u + (size_t)t * 2 * ff : o;
		const float *up = j->fused ? gate + ff : j->u + (size_t)t * ff;
		if (j->gelu) {
			for (int i = 0; i < ff; i++)
				o[i] = gelu_tanh(gate[i]) * up[i];
			continue;
		}
		if (gate != o)
			memcpy(o, gate, (size_t)ff * sizeof(float));
		j->v->silu_mul(ff, o, up);
	}
}

static void
glu_task(void *arg, int task, int worker)
{
	const struct glu_job *j = arg;
	int t0 = task * j->per, t1 = t0 + j->per < j->nt ? t0 + j->per : j->nt;
	(void)worker;
	glu_rows(j, t0, t1);
}

/* OUT = down(act(gate IN) * up IN) over FF hidden units; GATE absent means
 * UP holds gate then up (fused).  EXPERT selects a matrix of a stack.  The
 * activation is split among the threads by tokens: a 4096-token batch of
 * Qwen2.5-0.5B's 4864 units took 80 ms on one thread, between two looks
 * at the stop flag. */
static void
ffn_glu(struct llm_ctx *c, const float *in, float *out, int nt, const struct lweight *gate,
	const struct lweight *up, const struct lweight *down, int expert, int ff)
{
	struct glu_job j = { c->hg, c->hu, ff, nt, nt, !gate->w.data, c->m->hp.ffn_act == LLM_FFN_GELU_TANH,
	    q_vops_get() };

	if (gate->w.data) {
		blk_mm_many(c, in, expert, nt, 2, (const struct blk_out[]){ { c->hg, gate }, { c->hu, up } });
	} else {
		blk_mm(c, c->hu, in, up, expert, nt);   /* (nt, [gate | up]) */
	}
	if (pool_stopped(c->pool))
		return;
	if ((size_t)nt * ff < 65536) {
		glu_rows(&j, 0, nt);
	} else {
		/* Tasks of about 64K units, at least 4 per thread when there are tokens enough. */
		int tasks = (int)((size_t)nt * ff / 65536);
		if (tasks < 4 * pool_size(c->pool))
			tasks = 4 * pool_size(c->pool);
		j.per = (nt + tasks - 1) / tasks;
		pool_run_tasks(c->pool, glu_task, &j, (nt + j.per - 1) / j.per);
	}
	blk_mm(c, out, c->hg, down, expert, nt);
}

void
blk_ffn(struct llm_ctx *c, int il, const float *in, float *out, int nt)
{
	const struct lweight *t = c->m->layers[il].t;
	ffn_glu(c, in, out, nt, &t[LLM_TENSOR_FFN_GATE], &t[LLM_TENSOR_FFN_UP], &t[LLM_TENSOR_FFN_DOWN], -1,
	    c->m->hp.n_ff);
}

void
blk_moe_route(const float *logits, int n, int k, int norm, int *sel, float *w)
{
	float max = -INFINITY;
	double z = 0, sum = 0;

	for (int i = 0; i < n; i++)
		if (logits[i] > max)
			max = logits[i];
	for (int i = 0; i < n; i++)
		z += exp((double)logits[i] - max);
	for (int j = 0; j < k; j++) {
		int best = -1;
		for (int i = 0; i < n; i++) {
			int taken = 0;
			for (int q = 0; q < j; q++)
				taken |= sel[q] == i;
			/* strictly greater: the lower index keeps a tie */
			if (!taken && (best < 0 || logits[i] > logits[best]))
				best = i;
		}
		sel[j] = best;
		w[j] = (float)(exp((double)logits[best] - max) / z);
		sum += w[j];
	}
	if (norm && sum > 0)
		for (int j = 0; j < k; j++)
			w[j] = (float)(w[j] / sum);
}

void
blk_moe(struct llm_ctx *c, int il, const float *in, float *out, int nt)
{
	const struct llm_hparams *hp = &c->m->hp;
	const struct lweight *t = c->m->layers[il].t;
	const int E = hp->n_embd, ne = hp->n_expert, k = hp->n_expert_used;
	int *start = c->ex_start;

	blk_mm(c, c->router, in, &t[LLM_TENSOR_FFN_GATE_INP], -1, nt);
	for (int r = 0; r < nt; r++)
		blk_moe_route(c->router + (size_t)r * ne, ne, k, hp->expert_norm, c->sel + (size_t)r * k,
		    c->selw + (size_t)r * k);
	/* Group the (token, expert) pairs by expert, tokens in order. */
	memset(start, 0, (size_t)(ne + 1) * sizeof(int));
	for (int i = 0; i < nt * k; i++)
		start[c->sel[i] + 1]++;
	for (int e = 0; e < ne; e++)
		start[e + 1] += start[e];
	for (int i = 0; i < nt * k; i++) {
		int at = start[c->sel[i]]++;
		c->ex_tok[at] = i / k;
		c->ex_w[at] = c->selw[i];
	}
	memmove(start + 1, start, (size_t)ne * sizeof(int));
	start[0] = 0;

	memset(out, 0, (size_t)nt * E * sizeof(float));
	for (int e = 0; e < ne; e++) {
		const int n = start[e + 1] - start[e];
		if (n == 0)
			continue;
		for (int r = 0; r < n; r++)
			memcpy(c->ex_x + (size_t)r * E, in + (size_t)c->ex_tok[start[e] + r] * E, (size_t)E * sizeof(float));
		ffn_glu(c, c->ex_x, c->ex_y, n, &t[LLM_TENSOR_FFN_GATE_EXPS], &t[LLM_TENSOR_FFN_UP_EXPS],
		    &t[LLM_TENSOR_FFN_DOWN_EXPS], e, hp->n_ff_exp);
		for (int r = 0; r < n; r++) {
			float *o = out + (size_t)c->ex_tok[start[e] + r] * E;
			const float *y = c->ex_y + (size_t)r * E, wr = c->ex_w[start[e] + r];
			for (int i = 0; i < E; i++)
				o[i] += wr * y[i];
		}
	}
	if (hp->layer[il].flags & LLM_LAYER_SHARED_EXPERT) {
		/* router holds at least nt floats: the gate of each token */
		blk_mm(c, c->router, in, &t[LLM_TENSOR_FFN_GATE_INP_SHEXP], -1, nt);
		ffn_glu(c, in, c->ex_y, nt, &t[LLM_TENSOR_FFN_GATE_SHEXP], &t[LLM_TENSOR_FFN_UP_SHEXP],
		    &t[LLM_TENSOR_FFN_DOWN_SHEXP], -1, hp->n_ff_shexp);
		for (int r = 0; r < nt; r++) {
			const float g = 1.0f / (1.0f + expf(-c->router[r]));
			for (int i = 0; i < E; i++)
				out[(size_t)r * E + i] += g * c->ex_y[(size_t)r * E + i];
		}
	}
}

/* --- the layer --- */

void
blk_layer(struct llm_ctx *c, int il, int nt)
{
	const struct llm_hparams *hp = &c->m->hp;
	const struct lweight *t = c->m->layers[il].t;
	const unsigned fl = hp->layer[il].flags;
	const int E = hp->n_embd, from = blk_out_first(c, il), nr = nt - from;
	const size_t n = (size_t)nr * E;
	float *x = c->x + (size_t)from * E;   /* the rows computed past the keys and values */

	blk_rmsnorm(c->xb, c->x, &t[LLM_TENSOR_ATTN_NORM], nt, E, hp->rms_eps);
	blk_attention(c, il, c->xb, c->xo, nt, from);
	if (nr == 0)
		return;
	if (fl & LLM_LAYER_POST_NORMS)
		blk_rmsnorm(c->xo, c->xo, &t[LLM_TENSOR_ATTN_POST_NORM], nr, E, hp->rms_eps);
	for (size_t i = 0; i < n; i++)
		x[i] += c->xo[i];

	blk_rmsnorm(c->xb, x, &t[LLM_TENSOR_FFN_NORM], nr, E, hp->rms_eps);
	if (fl & LLM_LAYER_MOE)
		blk_moe(c, il, c->xb, c->xo, nr);
	else
		blk_ffn(c, il, c->xb, c->xo, nr);
	if (fl & LLM_LAYER_POST_NORMS)
		blk_rmsnorm(c->xo, c->xo, &t[LLM_TENSOR_FFN_POST_NORM], nr, E, hp->rms_eps);
	for (size_t i = 0; i < n; i++)
		x[i] += c->xo[i];
}
