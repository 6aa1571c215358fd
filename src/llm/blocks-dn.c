/* blocks-dn.c -- the blocks of hybrid models: a Gated DeltaNet layer over the session's state, gated attention. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/blocks.h"
#include "llm/blocks-dn.h"
#include "llm/deltanet.h"
#include "llm/hugemem.h"
#include "llm/model.h"
#include "llm/pool.h"

struct dn_scratch {
	struct dn_shape sh;
	struct dn_state **st;     /* (n_layer) views over the cache; NULL for other layers */
	float *qkv;               /* (n_batch, conv_dim) attn_qkv x */
	float *z;                 /* (n_batch, H_v Dv) attn_gate x */
	float *alpha, *beta;      /* (n_batch, H_v) */
	float *xc;                /* (n_batch, conv_dim) the conv's output */
	float *y;                 /* (n_batch, H_v Dv) the gated norm's output */
	float *work;              /* (n_threads, work_floats) */
	size_t work_floats;
	float *qg;                /* (n_batch, 2 n_head head_dim) gated attention's query and gate */
	int force_mode;           /* -1: by batch size */
};

void
blk_dn_free(struct llm_ctx *c)
{
	struct dn_scratch *s = c->dn;

	if (!s)
		return;
	for (int il = 0; s->st && il < c->m->hp.n_layer; il++)
		dn_state_free(s->st[il]);
	free(s->st);
	free(s->qkv);
	free(s->z);
	free(s->alpha);
	free(s->beta);
	free(s->xc);
	free(s->y);
	free(s->work);
	free(s->qg);
	free(s);
	c->dn = NULL;
}

static float *
falloc(size_t n, int *failed)
{
	float *p = line_calloc(n, sizeof(float));
	if (n && !p)
		*failed = 1;
	return p;
}

int
blk_dn_init(struct llm_ctx *c, char *err, size_t errlen)
{
	const struct llm_hparams *hp = &c->m->hp;
	const size_t nb = (size_t)c->n_batch;
	struct dn_scratch *s;
	int failed = 0, n_rec = 0, gated = 0;

	for (int il = 0; il < hp->n_layer; il++) {
		n_rec += hp->layer[il].kind == LLM_LAYER_RECURRENT;
		gated |= (hp->layer[il].flags & LLM_LAYER_ATTN_GATE) != 0;
	}
	if (!n_rec && !gated)
		return 0;
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	c->dn = s;
	s->force_mode = -1;
	if (gated)
		s->qg = falloc(nb * 2 * hp->n_head * hp->head_dim, &failed);
	if (n_rec) {
		const struct dn_shape sh = { hp->ssm_n_group, hp->ssm_dt_rank, hp->ssm_d_state,
		    hp->ssm_dt_rank ? hp->ssm_d_inner / hp->ssm_dt_rank : 0, hp->ssm_d_conv };
		size_t cd, inner;
		if (dn_shape_check(&sh, err, errlen) < 0)
			return -1;
		s->sh = sh;
		cd = (size_t)dn_conv_dim(&sh);
		inner = (size_t)sh.n_v_heads * sh.d_v;
		s->qkv = falloc(nb * cd, &failed);
		s->xc = falloc(nb * cd, &failed);
		s->z = falloc(nb * inner, &failed);
		s->y = falloc(nb * inner, &failed);
		s->alpha = falloc(nb * sh.n_v_heads, &failed);
		s->beta = falloc(nb * sh.n_v_heads, &failed);
		s->work_floats = dn_work_floats(&sh);
		s->work = falloc(s->work_floats * (size_t)pool_size(c->pool), &failed);
		s->st = calloc(hp->n_layer, sizeof(*s->st));
		if (!s->st)
			failed = 1;
		for (int il = 0; !failed && il < hp->n_layer; il++) {
			struct kv_layer *l = &c->kv.l[il];
			if (hp->layer[il].kind != LLM_LAYER_RECURRENT)
				continue;
			/* The cache was sized from the same description. */
			if (l->kind != LLM_CACHE_RECURRENT || l->conv_n != (size_t)(sh.d_conv - 1) * cd ||
			    l->state_n != (size_t)sh.n_v_heads * sh.d_k * sh.d_v) {
				snprintf(err, errlen, "layer %d: the recurrent cache does not fit the Gated DeltaNet shape", il);
				return -1;
			}
			s->st[il] = dn_state_view(&sh, l->conv, l->state, err, errlen);
			if (!s->st[il])
				return -1;
		}
	}
	if (failed) {
		snprintf(err, errlen, "out of memory for the Gated DeltaNet scratch of %d tokens", c->n_batch);
		return -1;
	}
	return 0;
}

void
blk_dn_force_mode(struct llm_ctx *c, int mode)
{
	if (c->dn)
		c->dn->force_mode = mode;
}

/* --- Gated DeltaNet --- */

struct dn_job {
	struct dn_scratch *s;
	struct dn_state *st;
	const struct dn_weights *w;
	const struct dn_batch *b;
	enum dn_mode mode;
	int phase;                /* 0: conv units, 1: value heads */
};

/* Each thread takes a contiguous range of conv units, then of value heads.
 * The arguments were checked when the session was made: these calls
 * cannot fail. */
static void
dn_worker(void *arg, int ith, int nth)
{
	const struct dn_job *j = arg;
	const struct dn_shape *sh = &j->s->sh;

	if (j->phase == 0) {
		const int n = dn_conv_units(sh);
		(void)dn_conv_run(j->st, j->w, j->b, n * ith / nth, n * (ith + 1) / nth);
	} else {
		const int n = sh->n_v_heads;
		(void)dn_heads_run(j->st, j->w, j->b, j->mode, n * ith / nth, n * (ith + 1) / nth,
		    j->s->work + (size_t)ith * j->s->work_floats);
	}
}

void
blk_deltanet(struct llm_ctx *c, int il, const float *in, float *out, int nt)
{
	const struct llm_hparams *hp = &c->m->hp;
	const struct lweight *t = c->m->layers[il].t;
	struct dn_scratch *s = c->dn;
	const struct dn_weights w = {
		t[LLM_TENSOR_SSM_CONV1D].w.data, t[LLM_TENSOR_SSM_A].w.data, t[LLM_TENSOR_SSM_DT].w.data,
		t[LLM_TENSOR_SSM_NORM].w.data, hp->rms_eps,
	};
	const struct dn_batch b = { nt, s->qkv, s->z, s->alpha, s->beta, s->xc, s->y };
	struct dn_job job = { s, s->st[il], &w, &b, DN_RECURRENT, 0 };

	if (s->force_mode >= 0)
		job.mode = s->force_mode ? DN_CHUNKED : DN_RECURRENT;
	else if (nt >= BLK_DN_CHUNKED_MIN)
		job.mode = DN_CHUNKED;
	blk_mm_many(c, in, -1, nt, 4, (const struct blk_out[]){ { s->qkv, &t[LLM_TENSOR_ATTN_QKV] },
	    { s->z, &t[LLM_TENSOR_ATTN_GATE] }, { s->alpha, &t[LLM_TENSOR_SSM_ALPHA] },
	    { s->beta, &t[LLM_TENSOR_SSM_BETA] } });
	pool_run(c->pool, dn_worker, &job);
	job.phase = 1;
	pool_run(c->pool, dn_worker, &job);
	blk_mm(c, out, s->y, &t[LLM_TENSOR_SSM_OUT], -1, nt);
}

/* --- gated attention --- */

void
blk_gated_attention(struct llm_ctx *c, int il, const float *in, float *out, int nt, int from)
{
	const struct llm_hparams *hp = &c->m->hp;
	const struct lweight *t = c->m->layers[il].t;
	const int hd = hp->head_dim, nh = hp->n_head;
	const size_t Q = (size_t)nh * hd, K = (size_t)hp->n_head_kv * hd, V = (size_t)hp->n_head_kv * hp->head_dim_v;
	float *qg = c->dn->qg;

	if (from == nt) {
		/* No query is asked: the keys and values alone. */
		blk_mm_many(c, in, -1, nt, 2, (const struct blk_out[]){ { c->k, &t[LLM_TENSOR_ATTN_K] },
		    { c->v, &t[LLM_TENSOR_ATTN_V] } });
	} else {
		/* qg: (nt, [q_0 g_0 q_1 g_1 ...]) */
		blk_mm_many(c, in, -1, nt, 3, (const struct blk_out[]){ { qg, &t[LLM_TENSOR_ATTN_Q] },
		    { c->k, &t[LLM_TENSOR_ATTN_K] }, { c->v, &t[LLM_TENSOR_ATTN_V] } });
		for (int r = 0; r < nt; r++)
			for (int h = 0; h < nh; h++)
				memcpy(c->q + r * Q + (size_t)h * hd, qg + r * 2 * Q + (size_t)h * 2 * hd,
				    (size_t)hd * sizeof(float));
		blk_rmsnorm(c->q, c->q, &t[LLM_TENSOR_ATTN_Q_NORM], nt * nh, hd, hp->rms_eps);
		blk_rope(c, il, c->q, nt, nh);
	}
	blk_rmsnorm(c->k, c->k, &t[LLM_TENSOR_ATTN_K_NORM], nt * hp->n_head_kv, hd, hp->rms_eps);
	blk_rope(c, il, c->k, nt, hp->n_head_kv);
	for (int r = 0; r < nt; r++)
		kv_layer_put(&c->kv.l[il], c->pos0 + r, c->k + r * K, c->v + r * V);
	if (from == nt)
		return;
	blk_attn_core(c, il, nt, from);
	/* head_dim_v = head_dim (checked when loading) */
	for (int r = 0; r < nt - from; r++)
		for (int h = 0; h < nh; h++) {
			float *o = c->att_out + r * Q + (size_t)h * hd;
			const float *g = qg + (size_t)(from + r) * 2 * Q + (size_t)h * 2 * hd + hd;
			for (int i = 0; i < hd; i++)
				o[i] *= 1.0f / (1.0f + expf(-g[i]));
		}
	blk_mm(c, out, c->att_out, &t[LLM_TENSOR_ATTN_OUT], -1, nt - from);
}
