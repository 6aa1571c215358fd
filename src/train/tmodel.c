/* tmodel.c -- the training forward and backward of the registry's transformer blocks over frozen GGUF weights, LoRA trained. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "llm/arch.h"
#include "llm/deltanet.h"
#include "llm/model.h"
#include "llm/pool.h"
#include "natter/gguf.h"
#include "natter/llm.h"
#include "natter/lora.h"
#include "natter/quant.h"
#include "natter/train.h"
#include "train/splitmix.h"

/*
 * What the training model computes is read from the hyperparameters the architecture
 * registry (src/llm/arch.c, src/llm/arch/NAME.c) fills in -- struct llm_hparams and each
 * layer's llm_layer_hparams -- never from the architecture's name, so that a new entry of
 * the registry trains as it runs when it is made of what is below.  Every layer is
 *   x += [PostNorm](Attn(Norm(x)));  x += [PostNorm](FFN or MoE(Norm(x)))
 * as blk_layer (src/llm/blocks.c) evaluates it, with these variations.  What a file shows
 * by its tensors (q/k/v biases, a fused attn_qkv, a fused gate/up, tied embeddings, RoPE
 * factors, a pre-FFN norm named post_attention_norm) is read from the file.  In a
 * recurrent layer (Qwen3.5's Gated DeltaNet, ../shared/fixtures/QWEN35.md) Attn is
 *   ssm_out(gnorm(delta(l2(q), l2(k), v; g, beta), z)),  q, k, v = silu(conv(attn_qkv x)),
 * z = attn_gate x, g and beta from ssm_alpha x and ssm_beta x.  An architecture with a
 * block of its own trains when the registry says that block is described by the above
 * (arch_desc.block_described).
 */

/* The kinds of layer, and whether the training model computes them. */
static const struct {
	const char *what;
	int trains;
} layer_kinds[] = {
	[LLM_LAYER_FULL] = { "full attention", 1 },
	[LLM_LAYER_SLIDING] = { "sliding-window attention", 1 },
	[LLM_LAYER_RECURRENT] = { "recurrent (Gated DeltaNet)", 1 },
};

/* The block features of a layer (llm_layer_hparams.flags) the training model computes. */
static const struct {
	unsigned flag;
	const char *what;
} layer_features[] = {
	{ LLM_LAYER_QK_NORM, "per-head q/k RMSNorm" },
	{ LLM_LAYER_POST_NORMS, "post-attention and post-FFN norms" },
	{ LLM_LAYER_MOE, "routed experts" },
	{ LLM_LAYER_SHARED_EXPERT, "a sigmoid-gated shared expert" },
	{ LLM_LAYER_ATTN_GATE, "a sigmoid output gate from the query projection" },
};

/* The feed-forward gate activations, as the operations name them. */
static const struct {
	enum llm_ffn_act act;
	enum tops_act op;
} ffn_acts[] = {
	{ LLM_FFN_SILU, TOPS_SILU },
	{ LLM_FFN_GELU_TANH, TOPS_GELU_TANH },
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

int
tmodel_check(const struct llm_hparams *hp, char *err, size_t errlen)
{
	unsigned known = 0;
	int act = 0;

	for (size_t i = 0; i < N_OF(layer_features); i++)
		known |= layer_features[i].flag;
	for (size_t i = 0; i < N_OF(ffn_acts); i++)
		act |= ffn_acts[i].act == hp->ffn_act;
	if (!act) {
		snprintf(err, errlen, "this %s model's feed-forward activation (%d) is not one the training model "
		    "computes (SiLU, GELU-tanh)", hp->arch_name, (int)hp->ffn_act);
		return -1;
	}
	for (int il = 0; il < hp->n_layer; il++) {
		const struct llm_layer_hparams *l = &hp->layer[il];
		if ((unsigned)l->kind >= N_OF(layer_kinds) || !layer_kinds[l->kind].trains) {
			snprintf(err, errlen, "layer %d of this %s model is %s, which the training model does not compute "
			    "(it trains attention layers, full or sliding-window, and Gated DeltaNet layers)", il,
			    hp->arch_name,
			    (unsigned)l->kind < N_OF(layer_kinds) ? layer_kinds[l->kind].what : "of a kind it does not know");
			return -1;
		}
		if (l->kind == LLM_LAYER_RECURRENT) {
			const struct dn_shape sh = { hp->ssm_n_group, hp->ssm_dt_rank, hp->ssm_d_state,
				hp->ssm_dt_rank > 0 ? hp->ssm_d_inner / hp->ssm_dt_rank : 0, hp->ssm_d_conv };
			char why[256];
			if (dn_shape_check(&sh, why, sizeof(why)) < 0 || sh.d_v * sh.n_v_heads != hp->ssm_d_inner) {
				snprintf(err, errlen, "layer %d of this %s model is recurrent, but its Gated DeltaNet "
				    "hyperparameters are not usable: %s", il, hp->arch_name,
				    sh.d_v * sh.n_v_heads != hp->ssm_d_inner ? "inner size not a multiple of the value heads" : why);
				return -1;
			}
		}
		if ((l->flags & LLM_LAYER_ATTN_GATE) && hp->head_dim_v != hp->head_dim) {
			snprintf(err, errlen, "layer %d of this %s model gates its attention output with value heads of %d "
			    "and query heads of %d; the training model needs them equal", il, hp->arch_name, hp->head_dim_v,
			    hp->head_dim);
			return -1;
		}
		if (l->flags & ~known) {
			snprintf(err, errlen, "layer %d of this %s model has block features (flags %#x) the training model "
			    "does not compute (it knows q/k norms, post norms, routed and shared experts)", il, hp->arch_name,
			    l->flags & ~known);
			return -1;
		}
	}
	return 0;
}

/* The linear layers: the weight each is (its role in the registry's table of names) and
 * the TMODEL_* targets that select it.  Those with no bits stay frozen (a layer of experts'
 * router and shared expert). */
enum {
	K_Q, K_K, K_V, K_QKV, K_O, K_GATE, K_UP, K_DOWN,
	K_ROUTER, K_SH_INP, K_SH_GATE, K_SH_UP, K_SH_DOWN,
	K_DN_Z, K_DN_ALPHA, K_DN_BETA, K_DN_OUT,   /* Gated DeltaNet (its attn_qkv is K_QKV) */
	K_LAYER,              /* the kinds of a block */
	K_OUTPUT = K_LAYER,
	K_COUNT
};
static const struct {
	enum llm_tensor role;
	unsigned bits;
} kinds[K_COUNT] = {
	[K_Q] = { LLM_TENSOR_ATTN_Q, TMODEL_Q },
	[K_K] = { LLM_TENSOR_ATTN_K, TMODEL_K },
	[K_V] = { LLM_TENSOR_ATTN_V, TMODEL_V },
	[K_QKV] = { LLM_TENSOR_ATTN_QKV, TMODEL_Q | TMODEL_K | TMODEL_V },
	[K_O] = { LLM_TENSOR_ATTN_OUT, TMODEL_O },
	[K_GATE] = { LLM_TENSOR_FFN_GATE, TMODEL_GATE },
	[K_UP] = { LLM_TENSOR_FFN_UP, TMODEL_UP },        /* fused gate/up: TMODEL_GATE too */
	[K_DOWN] = { LLM_TENSOR_FFN_DOWN, TMODEL_DOWN },
	[K_ROUTER] = { LLM_TENSOR_FFN_GATE_INP, 0 },
	[K_SH_INP] = { LLM_TENSOR_FFN_GATE_INP_SHEXP, 0 },
	[K_SH_GATE] = { LLM_TENSOR_FFN_GATE_SHEXP, 0 },
	[K_SH_UP] = { LLM_TENSOR_FFN_UP_SHEXP, 0 },
	[K_SH_DOWN] = { LLM_TENSOR_FFN_DOWN_SHEXP, 0 },
	[K_DN_Z] = { LLM_TENSOR_ATTN_GATE, 0 },
	[K_DN_ALPHA] = { LLM_TENSOR_SSM_ALPHA, 0 },
	[K_DN_BETA] = { LLM_TENSOR_SSM_BETA, 0 },
	[K_DN_OUT] = { LLM_TENSOR_SSM_OUT, TMODEL_O },
	[K_OUTPUT] = { LLM_TENSOR_OUTPUT, TMODEL_OUTPUT },
};

/* A linear layer of the model with its LoRA's saved activations. */
struct tlin {
	struct tlinear l;
	char name[64];        /* of the base weight */
	float *u;             /* (max_tokens, rank) A drop(x), when adapted */
	uint64_t salt;        /* varies the dropout mask between layers */
};

/* A stack of expert matrices (GGUF {n_in, n_out, n_exp}), frozen. */
struct tstack {
	const uint8_t *data;
	enum ggml_type type;
	int n_in, n_out, n_exp;
	size_t row_bytes, mat_bytes;
};
enum { S_GATE, S_UP, S_DOWN, S_COUNT };

/* What a layer's backward needs from its forward, each (max_tokens, ...); the fields no
 * layer of the model uses stay NULL. */
struct tsaved {
	float *xn;      /* (E) attn_norm(x) */
	float *qr, *kr; /* (Q), (KV) q and k before their per-head norms (QK_NORM) */
	float *q, *k;   /* (Q), (KV) after the norms and RoPE */
	float *v;       /* (VW) */
	float *o;       /* (O) attention output */
	float *lse;     /* (n_head, max_tokens) */
	float *a;       /* (E) the attention's projection before post_attention_norm (POST_NORMS) */
	float *x1;      /* (E) residual after attention */
	float *xn2;     /* (E) ffn_norm(x1) */
	float *gu;      /* (2 FF) the dense FFN's gate and up outputs */
	float *f;       /* (E) the FFN's output before post_ffw_norm (POST_NORMS) */
	/* routed experts (MOE) */
	float *probs;   /* (n_expert) the router's softmax */
	float *selw;    /* (k) their weights */
	int *ex_start;  /* (n_expert + 1, once) each expert's first row in the grouping */
	int *ex_row;    /* (k) the grouping: t * k + j of each (token, choice), by expert */
	float *egu;     /* (k, 2 FFE) each grouped row's gate and up */
	float *sgate;   /* (1) the shared expert's gate logit (SHARED_EXPERT) */
	float *sgu;     /* (2 FFS) its gate and up */
	/* gated attention (ATTN_GATE) */
	float *gate;    /* (Q) each head's gate, before the sigmoid */
	float *og;      /* (O) the attention output times sigmoid(gate) */
	/* Gated DeltaNet (a recurrent layer); CD = 2 DK + IN channels of the conv */
	float *cin;     /* (CD) attn_qkv x, the conv's input */
	float *xc;      /* (CD) silu(conv(cin)): q and k before their L2 norms, then v */
	float *z;       /* (IN) attn_gate x */
	float *al, *be; /* (HV) ssm_alpha x, ssm_beta x */
	float *qn, *kn; /* (DK) q and k L2-normed (q times 1/sqrt(Dk)) */
	float *dno;     /* (IN) the delta rule's output */
	float *y;       /* (IN) the gated norm's output, ssm_out's input */
};

struct tlayer {
	unsigned flags;                      /* LLM_LAYER_* */
	struct trope rope;                   /* this layer's RoPE */
	struct tattn attn;                   /* and attention (its window) */
	const float *attn_norm, *ffn_norm;   /* (E) */
	const float *q_norm, *k_norm;        /* (head_dim), QK_NORM */
	const float *post_attn_norm, *post_ffn_norm;   /* (E), POST_NORMS */
	int fused_qkv, fused_gu;
	int recur;                           /* a Gated DeltaNet layer: the fields below */
	const float *conv1d;                 /* (CD, d_conv) */
	const float *ssm_a, *dt_bias;        /* (HV) */
	const float *ssm_norm;               /* (Dv) */
	struct tlin lin[K_LAYER];            /* those the layer has */
	struct tstack exps[S_COUNT];         /* MOE: gate, up and down of every expert */
	int32_t *sel;                        /* MOE: (max_tokens, k) the experts each token chose (the
	                                      * layer's own, so that tmodel_moe_freeze can keep them) */
	struct tsaved *sv;                   /* its own, or with recomputation the one set all layers share */
};

struct tmodel {
	const struct llm_model *m;
	struct llm_hparams hp;
	enum tops_act act;
	int Tmax, E, Q, KV, VW, O, V;   /* KV: n_head_kv x head_dim; VW: x head_dim_v; O: n_head x head_dim_v */
	int FF, FFE, FFS, FFMAX;        /* dense FFN, one expert, the shared expert (0: none), the widest */
	int NE, KU;                     /* experts, chosen per token (0: none) */
	struct tdelta dn;               /* Gated DeltaNet heads (n_v_heads 0: no recurrent layer) */
	int DK, IN, CD, HV;             /* its q (and k) width, value width, conv channels, value heads */
	struct tweight tok_embd;
	const float *output_norm;
	struct tlin output;
	struct tlayer *layers;
	struct pool *pool;     /* the threads; NULL: the caller's alone */
	int nth;
	int recompute;         /* keep only each layer's input; the backward runs the layer again */
	float **xs;            /* (n_layer + 1) residual streams, (max_tokens, E) each */
	float *xf;             /* (max_tokens, E) output_norm of the last stream */
	int32_t *pos;          /* (max_tokens) 0, 1, ... */
	/* scratch */
	float *lin_scratch, *qkv, *tmp_e, *h;
	float *dx, *dxn, *dq, *dk, *dv, *dqr, *dkr, *dqkv, *dout, *dh, *dgu, *dxf, *chunk, *dchunk;
	/* scratch of the experts: router logits and their gradient, a group's rows in and out,
	 * per-row weights and their gradients */
	float *rlog, *dlog, *xg, *yg, *dxg, *rs, *drs, *dw;
	/* scratch of gated attention and of Gated DeltaNet layers */
	float *qg, *dqg, *dgate, *dog;
	float *dn_v, *dn_g, *dn_beta, *dn_dy, *dn_dno, *dn_dz, *dn_dqn, *dn_dkn, *dn_dv, *dn_dg, *dn_dbeta;
	float *dn_dal, *dn_db, *dn_dxc, *dn_dcin;
	float *dn_scratch;     /* (nth, dn_scratch_floats) */
	size_t dn_scratch_floats;
	int *cursor;
	int chunk_rows;
	float *attn_scratch;   /* (nth, attn_scratch_floats) */
	size_t attn_scratch_floats;
	double *xent_sum;      /* (nth) */
	int *xent_cnt;
	/* the last forward */
	int T, train;
	int moe_frozen;        /* forwards keep the experts chosen before (tmodel_moe_freeze) */
	uint64_t step_seed;
	/* the trained pairs */
	int n_pairs;
	struct tlin **pairs;   /* (n_pairs) borrowed from layers / output */
	float **m1, **m2;      /* AdamW moments: (2 n_pairs) for a and b */
	float alpha, user_scale;
	int64_t adam_t;
	void **allocs;
	size_t n_allocs, cap_allocs;
};

static void *
tm_alloc(struct tmodel *tm, size_t n, size_t size)
{
	void *p;
	if (tm->n_allocs == tm->cap_allocs) {
		size_t cap = tm->cap_allocs ? 2 * tm->cap_allocs : 64;
		void **a = realloc(tm->allocs, cap * sizeof(*a));
		if (!a)
			return NULL;
		tm->allocs = a;
		tm->cap_allocs = cap;
	}
	p = calloc(n ? n : 1, size);
	if (p)
		tm->allocs[tm->n_allocs++] = p;
	return p;
}

void
tmodel_free(struct tmodel *tm)
{
	if (!tm)
		return;
	pool_free(tm->pool);
	for (size_t i = 0; i < tm->n_allocs; i++)
		free(tm->allocs[i]);
	free(tm->allocs);
	free(tm);
}

/* NAME (a role of the registry's table, of layer IL or model-wide when IL < 0) with SUFFIX. */
static void
tensor_name(enum llm_tensor role, int il, const char *suffix, char *buf, size_t n)
{
	char base[96];
	if (il >= 0)
		snprintf(base, sizeof(base), llm_tensor_name(role), il);
	else
		snprintf(base, sizeof(base), "%s", llm_tensor_name(role));
	snprintf(buf, n, "%s.%s", base, suffix);
}

/* Binds NAME as N_EXP matrices of (n_in, n_out) of a type natter reads (N_EXP 1: a plain
 * matrix); optional ones may be absent. */
static int
bind_tensor(const struct gguf_file *f, const char *name, int n_in, int n_out, int n_exp, int optional,
	    const struct gguf_tensor **out, char *err, size_t errlen)
{
	const struct gguf_tensor *g = gguf_find_tensor(f, name);
	*out = NULL;
	if (!g) {
		if (optional)
			return 0;
		snprintf(err, errlen, "%s: tensor %s is missing", f->path, name);
		return -1;
	}
	if (g->ne[0] != (uint64_t)n_in || g->ne[1] != (uint64_t)n_out || g->ne[2] != (uint64_t)n_exp || g->ne[3] != 1) {
		snprintf(err, errlen, "%s: tensor %s has shape [%llu, %llu, %llu], expected [%d, %d, %d]", f->path, name,
		    (unsigned long long)g->ne[0], (unsigned long long)g->ne[1], (unsigned long long)g->ne[2], n_in, n_out,
		    n_exp);
		return -1;
	}
	if (!q_traits_get(g->type)->supported) {
		snprintf(err, errlen, "%s: tensor %s has type %s, which natter cannot read", f->path, name,
		    ggml_type_info_get(g->type)->name);
		return -1;
	}
	*out = g;
	return 0;
}

static int
bind_weight(const struct gguf_file *f, const char *name, int n_in, int n_out, int optional, struct tweight *w,
	    char *err, size_t errlen)
{
	const struct gguf_tensor *g;
	memset(w, 0, sizeof(*w));
	if (bind_tensor(f, name, n_in, n_out, 1, optional, &g, err, errlen) < 0)
		return -1;
	if (!g)
		return 0;
	w->data = g->data;
	w->type = g->type;
	w->n_in = n_in;
	w->n_out = n_out;
	w->row_bytes = q_row_size(g->type, n_in);
	return 0;
}

static int
bind_stack(const struct gguf_file *f, const char *name, int n_in, int n_out, int n_exp, struct tstack *s, char *err,
	   size_t errlen)
{
	const struct gguf_tensor *g;
	memset(s, 0, sizeof(*s));
	if (bind_tensor(f, name, n_in, n_out, n_exp, 0, &g, err, errlen) < 0)
		return -1;
	s->data = g->data;
	s->type = g->type;
	s->n_in = n_in;
	s->n_out = n_out;
	s->n_exp = n_exp;
	s->row_bytes = q_row_size(g->type, n_in);
	s->mat_bytes = s->row_bytes * (size_t)n_out;
	return 0;
}

/* Expert E of a stack as a frozen linear layer. */
static struct tlin
stack_lin(const struct tstack *s, int e)
{
	struct tlin l;
	memset(&l, 0, sizeof(l));
	l.l.w = (struct tweight){ s->data + (size_t)e * s->mat_bytes, s->type, s->n_in, s->n_out, s->row_bytes };
	return l;
}

/* Norms, biases and RoPE factors: float32 vectors of N. */
static int
bind_vec(const struct gguf_file *f, const char *name, int n, int optional, const float **out, char *err,
	 size_t errlen)
{
	struct tweight w;
	if (bind_weight(f, name, n, 1, optional, &w, err, errlen) < 0)
		return -1;
	if (w.data && w.type != GGML_TYPE_F32) {
		snprintf(err, errlen, "%s: tensor %s must be F32 (it is %s)", f->path, name,
		    ggml_type_info_get(w.type)->name);
		return -1;
	}
	*out = w.data;
	return 0;
}

/* A norm of layer IL: required when the layer's flags call for it. */
static int
bind_norm(const struct gguf_file *f, enum llm_tensor role, int il, int n, const float **out, char *err,
	  size_t errlen)
{
	char name[112];
	tensor_name(role, il, "weight", name, sizeof(name));
	return bind_vec(f, name, n, 0, out, err, errlen);
}

static float
uniform(uint64_t *state)
{
	*state = splitmix64(*state);
	return (float)((double)(*state >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

/* Gives L a LoRA pair: from the initial adapter if it adapts L, else a new one when SEL.
 * Returns 0 (adapted or not) or -1. */
static int
attach_lora(struct tmodel *tm, struct tlin *L, int sel, const struct tmodel_opts *o, uint64_t *rng,
	    char *err, size_t errlen)
{
	const int n_in = L->l.w.n_in, n_out = L->l.w.n_out;
	const struct lora_pair *p = o->init ? lora_find(o->init, L->name) : NULL;
	struct tlora *lo;
	int r;

	if (o->init ? !p : !sel)
		return 0;
	r = p ? p->rank : o->rank;
	lo = tm_alloc(tm, 1, sizeof(*lo));
	if (!lo)
		goto nomem;
	lo->rank = r;
	lo->dropout = o->dropout;
	lo->a = tm_alloc(tm, (size_t)r * n_in, sizeof(float));
	lo->b = tm_alloc(tm, (size_t)n_out * r, sizeof(float));
	lo->da = tm_alloc(tm, (size_t)r * n_in, sizeof(float));
	lo->db = tm_alloc(tm, (size_t)n_out * r, sizeof(float));
	L->u = tm_alloc(tm, (size_t)tm->Tmax * r, sizeof(float));
	if (!lo->a || !lo->b || !lo->da || !lo->db || !L->u)
		goto nomem;
	if (p) {
		memcpy(lo->a, p->a, (size_t)r * n_in * sizeof(float));
		memcpy(lo->b, p->b, (size_t)n_out * r * sizeof(float));
		lo->scale = p->scale;
	} else {
		/* As PEFT: A ~ U(-1/sqrt(n_in), 1/sqrt(n_in)) (Kaiming-uniform, a = sqrt 5), B = 0. */
		float bound = 1.0f / sqrtf((float)n_in);
		for (size_t i = 0; i < (size_t)r * n_in; i++)
			lo->a[i] = bound * uniform(rng);
		for (size_t i = 0; i < (size_t)n_out * r; i++)
			lo->b[i] = o->init_b * uniform(rng);
		lo->scale = tm->alpha != 0.0f ? tm->alpha / (float)r : 1.0f;
	}
	L->l.lora = lo;
	tm->pairs[tm->n_pairs++] = L;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory for the LoRA of %s", L->name);
	return -1;
}

/* Binds linear KIND of layer IL (IL < 0: the output) with dims N_IN -> N_OUT, and its
 * bias if the file has one. */
static int
bind_lin(struct tmodel *tm, struct tlin *L, int il, int kind, int n_in, int n_out, int optional, char *err,
	 size_t errlen)
{
	const struct gguf_file *f = llm_model_gguf(tm->m);
	char bias[112];

	tensor_name(kinds[kind].role, il, "weight", L->name, sizeof(L->name));
	L->salt = splitmix64(((uint64_t)(il + 1) << 8) | (uint64_t)kind);
	if (bind_weight(f, L->name, n_in, n_out, optional, &L->l.w, err, errlen) < 0)
		return -1;
	tensor_name(kinds[kind].role, il, "bias", bias, sizeof(bias));
	return bind_vec(f, bias, n_out, 1, &L->l.bias, err, errlen);
}

static int bind_attn(struct tmodel *tm, struct tlayer *L, int il, char *err, size_t errlen);
static int bind_dn(struct tmodel *tm, struct tlayer *L, int il, char *err, size_t errlen);
static int bind_ffn(struct tmodel *tm, struct tlayer *L, int il, char *err, size_t errlen);

/* Binds everything layer IL has, as its kind and flags say. */
static int
bind_layer(struct tmodel *tm, int il, char *err, size_t errlen)
{
	const struct gguf_file *f = llm_model_gguf(tm->m);
	struct tlayer *L = &tm->layers[il];
	const int E = tm->E;
	char name[112];

	if (bind_norm(f, LLM_TENSOR_ATTN_NORM, il, E, &L->attn_norm, err, errlen) < 0)
		return -1;
	/* The pre-FFN norm: ffn_norm; in a file without it and without post norms,
	 * post_attention_norm (Qwen3.5 names it so). */
	tensor_name(LLM_TENSOR_FFN_NORM, il, "weight", name, sizeof(name));
	if (bind_norm(f, !gguf_find_tensor(f, name) && !(L->flags & LLM_LAYER_POST_NORMS) ? LLM_TENSOR_ATTN_POST_NORM :
	    LLM_TENSOR_FFN_NORM, il, E, &L->ffn_norm, err, errlen) < 0)
		return -1;
	if (L->recur) {
		if (bind_dn(tm, L, il, err, errlen) < 0)
			return -1;
	} else if (bind_attn(tm, L, il, err, errlen) < 0) {
		return -1;
	}
	if ((L->flags & LLM_LAYER_POST_NORMS) &&
	    (bind_norm(f, LLM_TENSOR_ATTN_POST_NORM, il, E, &L->post_attn_norm, err, errlen) < 0 ||
	    bind_norm(f, LLM_TENSOR_FFN_POST_NORM, il, E, &L->post_ffn_norm, err, errlen) < 0))
		return -1;
	return bind_ffn(tm, L, il, err, errlen);
}

/* The attention of layer IL: q, k, v (or fused), o, the per-head norms. */
static int
bind_attn(struct tmodel *tm, struct tlayer *L, int il, char *err, size_t errlen)
{
	const struct gguf_file *f = llm_model_gguf(tm->m);
	const struct llm_hparams *hp = &tm->hp;
	const int E = tm->E, Q = tm->Q, KV = tm->KV, VW = tm->VW;
	const int gated = (L->flags & LLM_LAYER_ATTN_GATE) != 0;
	char name[112];

	if ((L->flags & LLM_LAYER_QK_NORM) &&
	    (bind_norm(f, LLM_TENSOR_ATTN_Q_NORM, il, hp->head_dim, &L->q_norm, err, errlen) < 0 ||
	    bind_norm(f, LLM_TENSOR_ATTN_K_NORM, il, hp->head_dim, &L->k_norm, err, errlen) < 0))
		return -1;
	tensor_name(LLM_TENSOR_ATTN_QKV, il, "weight", name, sizeof(name));
	L->fused_qkv = gguf_find_tensor(f, name) != NULL;
	if (L->fused_qkv && gated) {
		snprintf(err, errlen, "%s: layer %d gates its attention output from a fused attn_qkv, which the training "
		    "model does not compute", f->path, il);
		return -1;
	}
	if (L->fused_qkv) {
		if (bind_lin(tm, &L->lin[K_QKV], il, K_QKV, E, Q + KV + VW, 0, err, errlen) < 0)
			return -1;
	} else if (bind_lin(tm, &L->lin[K_Q], il, K_Q, E, gated ? 2 * Q : Q, 0, err, errlen) < 0 ||
	    bind_lin(tm, &L->lin[K_K], il, K_K, E, KV, 0, err, errlen) < 0 ||
	    bind_lin(tm, &L->lin[K_V], il, K_V, E, VW, 0, err, errlen) < 0) {
		return -1;
	}
	return bind_lin(tm, &L->lin[K_O], il, K_O, tm->O, E, 0, err, errlen);
}

/* The Gated DeltaNet of layer IL: its products and its small float32 tensors. */
static int
bind_dn(struct tmodel *tm, struct tlayer *L, int il, char *err, size_t errlen)
{
	const struct gguf_file *f = llm_model_gguf(tm->m);
	const int E = tm->E;
	struct tweight w;
	char name[112];

	if (bind_lin(tm, &L->lin[K_QKV], il, K_QKV, E, tm->CD, 0, err, errlen) < 0 ||
	    bind_lin(tm, &L->lin[K_DN_Z], il, K_DN_Z, E, tm->IN, 0, err, errlen) < 0 ||
	    bind_lin(tm, &L->lin[K_DN_ALPHA], il, K_DN_ALPHA, E, tm->HV, 0, err, errlen) < 0 ||
	    bind_lin(tm, &L->lin[K_DN_BETA], il, K_DN_BETA, E, tm->HV, 0, err, errlen) < 0 ||
	    bind_lin(tm, &L->lin[K_DN_OUT], il, K_DN_OUT, tm->IN, E, 0, err, errlen) < 0 ||
	    bind_norm(f, LLM_TENSOR_SSM_NORM, il, tm->dn.d_v, &L->ssm_norm, err, errlen) < 0)
		return -1;
	tensor_name(LLM_TENSOR_SSM_CONV1D, il, "weight", name, sizeof(name));
	if (bind_weight(f, name, tm->hp.ssm_d_conv, tm->CD, 0, &w, err, errlen) < 0)
		return -1;
	if (w.type != GGML_TYPE_F32) {
		snprintf(err, errlen, "%s: tensor %s must be F32 (it is %s)", f->path, name, ggml_type_info_get(w.type)->name);
		return -1;
	}
	L->conv1d = w.data;
	/* ssm_a and ssm_dt.bias: the registry's names are whole */
	snprintf(name, sizeof(name), llm_tensor_name(LLM_TENSOR_SSM_A), il);
	if (bind_vec(f, name, tm->HV, 0, &L->ssm_a, err, errlen) < 0)
		return -1;
	snprintf(name, sizeof(name), llm_tensor_name(LLM_TENSOR_SSM_DT), il);
	return bind_vec(f, name, tm->HV, 0, &L->dt_bias, err, errlen);
}

/* The feed-forward of layer IL: dense (gate and up, or fused) or experts. */
static int
bind_ffn(struct tmodel *tm, struct tlayer *L, int il, char *err, size_t errlen)
{
	const struct gguf_file *f = llm_model_gguf(tm->m);
	const int E = tm->E;
	char name[112];

	if (L->flags & LLM_LAYER_MOE) {
		static const enum llm_tensor roles[S_COUNT] = {
			[S_GATE] = LLM_TENSOR_FFN_GATE_EXPS, [S_UP] = LLM_TENSOR_FFN_UP_EXPS,
			[S_DOWN] = LLM_TENSOR_FFN_DOWN_EXPS,
		};
		if (bind_lin(tm, &L->lin[K_ROUTER], il, K_ROUTER, E, tm->NE, 0, err, errlen) < 0)
			return -1;
		for (int s = 0; s < S_COUNT; s++) {
			tensor_name(roles[s], il, "weight", name, sizeof(name));
			if (bind_stack(f, name, s == S_DOWN ? tm->FFE : E, s == S_DOWN ? E : tm->FFE, tm->NE, &L->exps[s], err,
			    errlen) < 0)
				return -1;
		}
		if ((L->flags & LLM_LAYER_SHARED_EXPERT) &&
		    (bind_lin(tm, &L->lin[K_SH_INP], il, K_SH_INP, E, 1, 0, err, errlen) < 0 ||
		    bind_lin(tm, &L->lin[K_SH_GATE], il, K_SH_GATE, E, tm->FFS, 0, err, errlen) < 0 ||
		    bind_lin(tm, &L->lin[K_SH_UP], il, K_SH_UP, E, tm->FFS, 0, err, errlen) < 0 ||
		    bind_lin(tm, &L->lin[K_SH_DOWN], il, K_SH_DOWN, tm->FFS, E, 0, err, errlen) < 0))
			return -1;
		return 0;
	}
	tensor_name(LLM_TENSOR_FFN_GATE, il, "weight", name, sizeof(name));
	L->fused_gu = gguf_find_tensor(f, name) == NULL;
	if (bind_lin(tm, &L->lin[K_DOWN], il, K_DOWN, tm->FF, E, 0, err, errlen) < 0)
		return -1;
	if (L->fused_gu)
		return bind_lin(tm, &L->lin[K_UP], il, K_UP, E, 2 * tm->FF, 0, err, errlen);
	if (bind_lin(tm, &L->lin[K_GATE], il, K_GATE, E, tm->FF, 0, err, errlen) < 0 ||
	    bind_lin(tm, &L->lin[K_UP], il, K_UP, E, tm->FF, 0, err, errlen) < 0)
		return -1;
	return 0;
}

/* The union of every layer's flags, and whether some layer has a dense FFN. */
static unsigned
all_flags(const struct llm_hparams *hp, int *dense)
{
	unsigned fl = 0;
	*dense = 0;
	for (int il = 0; il < hp->n_layer; il++) {
		fl |= hp->layer[il].flags;
		*dense |= !(hp->layer[il].flags & LLM_LAYER_MOE);
	}
	return fl;
}

/* The saved activations of layer IL, or (IL < 0) a set any layer can use. */
static struct tsaved *
alloc_saved(struct tmodel *tm, int il)
{
	const size_t Tm = tm->Tmax, K = tm->KU;
	unsigned fl = 0;
	int dense = 0, attn = 0, recur = 0, ok;
	struct tsaved *sv = tm_alloc(tm, 1, sizeof(*sv));

	if (!sv)
		return NULL;
	for (int l = il < 0 ? 0 : il; l < (il < 0 ? tm->hp.n_layer : il + 1); l++) {
		fl |= tm->hp.layer[l].flags;
		dense |= !(tm->hp.layer[l].flags & LLM_LAYER_MOE);
		recur |= tm->hp.layer[l].kind == LLM_LAYER_RECURRENT;
		attn |= tm->hp.layer[l].kind != LLM_LAYER_RECURRENT;
	}
	sv->xn = tm_alloc(tm, Tm * tm->E, sizeof(float));
	sv->x1 = tm_alloc(tm, Tm * tm->E, sizeof(float));
	sv->xn2 = tm_alloc(tm, Tm * tm->E, sizeof(float));
	ok = sv->xn && sv->x1 && sv->xn2;
	if (attn) {
		sv->q = tm_alloc(tm, Tm * tm->Q, sizeof(float));
		sv->k = tm_alloc(tm, Tm * tm->KV, sizeof(float));
		sv->v = tm_alloc(tm, Tm * tm->VW, sizeof(float));
		sv->o = tm_alloc(tm, Tm * tm->O, sizeof(float));
		sv->lse = tm_alloc(tm, Tm * tm->hp.n_head, sizeof(float));
		ok = ok && sv->q && sv->k && sv->v && sv->o && sv->lse;
	}
	if (attn && (fl & LLM_LAYER_ATTN_GATE)) {
		sv->gate = tm_alloc(tm, Tm * tm->Q, sizeof(float));
		sv->og = tm_alloc(tm, Tm * tm->O, sizeof(float));
		ok = ok && sv->gate && sv->og;
	}
	if (recur) {
		sv->cin = tm_alloc(tm, Tm * tm->CD, sizeof(float));
		sv->xc = tm_alloc(tm, Tm * tm->CD, sizeof(float));
		sv->z = tm_alloc(tm, Tm * tm->IN, sizeof(float));
		sv->al = tm_alloc(tm, Tm * tm->HV, sizeof(float));
		sv->be = tm_alloc(tm, Tm * tm->HV, sizeof(float));
		sv->qn = tm_alloc(tm, Tm * tm->DK, sizeof(float));
		sv->kn = tm_alloc(tm, Tm * tm->DK, sizeof(float));
		sv->dno = tm_alloc(tm, Tm * tm->IN, sizeof(float));
		sv->y = tm_alloc(tm, Tm * tm->IN, sizeof(float));
		ok = ok && sv->cin && sv->xc && sv->z && sv->al && sv->be && sv->qn && sv->kn && sv->dno && sv->y;
	}
	if (attn && (fl & LLM_LAYER_QK_NORM)) {
		sv->qr = tm_alloc(tm, Tm * tm->Q, sizeof(float));
		sv->kr = tm_alloc(tm, Tm * tm->KV, sizeof(float));
		ok = ok && sv->qr && sv->kr;
	}
	if (fl & LLM_LAYER_POST_NORMS) {
		sv->a = tm_alloc(tm, Tm * tm->E, sizeof(float));
		sv->f = tm_alloc(tm, Tm * tm->E, sizeof(float));
		ok = ok && sv->a && sv->f;
	}
	if (dense) {
		sv->gu = tm_alloc(tm, Tm * 2 * tm->FF, sizeof(float));
		ok = ok && sv->gu;
	}
	if (fl & LLM_LAYER_MOE) {
		sv->probs = tm_alloc(tm, Tm * tm->NE, sizeof(float));
		sv->selw = tm_alloc(tm, Tm * K, sizeof(float));
		sv->ex_start = tm_alloc(tm, (size_t)tm->NE + 1, sizeof(int));
		sv->ex_row = tm_alloc(tm, Tm * K, sizeof(int));
		sv->egu = tm_alloc(tm, Tm * K * 2 * tm->FFE, sizeof(float));
		ok = ok && sv->probs && sv->selw && sv->ex_start && sv->ex_row && sv->egu;
	}
	if (fl & LLM_LAYER_SHARED_EXPERT) {
		sv->sgate = tm_alloc(tm, Tm, sizeof(float));
		sv->sgu = tm_alloc(tm, Tm * 2 * tm->FFS, sizeof(float));
		ok = ok && sv->sgate && sv->sgu;
	}
	return ok ? sv : NULL;
}

/* The RoPE factors the engine would use for a session of N_CTX positions (model.c's
 * rope_setup): LongRoPE's long ones past the original context, else the short ones; or
 * rope_freqs; or none. */
static int
bind_rope_factors(struct tmodel *tm, int n_ctx, const float **out, char *err, size_t errlen)
{
	const struct gguf_file *f = llm_model_gguf(tm->m);
	const struct llm_hparams *hp = &tm->hp;
	enum llm_tensor role = LLM_TENSOR_ROPE_FREQS;
	const struct gguf_tensor *g;
	char name[112];

	*out = NULL;
	if (hp->rope_factors == 0)
		return 0;
	if (hp->rope_factors == 2)
		role = n_ctx > hp->rope_n_ctx_orig ? LLM_TENSOR_ROPE_FACTORS_LONG : LLM_TENSOR_ROPE_FACTORS_SHORT;
	tensor_name(role, -1, "weight", name, sizeof(name));
	/* rope_dim/2 entries, or head_dim/2 of which the first rope_dim/2 are used */
	g = gguf_find_tensor(f, name);
	return bind_vec(f, name, g && g->ne[0] == (uint64_t)hp->head_dim / 2 ? hp->head_dim / 2 : hp->rope_dim / 2, 0,
	    out, err, errlen);
}

int
tmodel_new(const struct llm_model *m, const struct tmodel_opts *o, struct tmodel **out, char *err, size_t errlen)
{
	const struct gguf_file *f = llm_model_gguf(m);
	const struct llm_hparams *hp;
	struct tmodel *tm;
	const float *factors;
	uint64_t rng;
	size_t scratch = 0;
	unsigned fl;
	int Tm, dense, tied;
	char why[384];

	*out = NULL;
	tm = calloc(1, sizeof(*tm));
	if (!tm) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	tm->m = m;
	tm->hp = *llm_model_hparams(m);
	hp = &tm->hp;
	if (tmodel_check(hp, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: %s", f->path, why);
		goto fail;
	}
	/* Training reads the weights as the file lays them out. */
	if (llm_model_packed_bytes(m, NULL)) {
		snprintf(err, errlen, "%s: the weights were rearranged for inference (llm_model_pack); training needs "
		    "them as in the file", f->path);
		goto fail;
	}
	if (m->arch->block && !m->arch->block_described) {
		snprintf(err, errlen, "%s: the %s architecture evaluates its layers with a block of its own, which the "
		    "training model does not compute", f->path, hp->arch_name);
		goto fail;
	}
	for (size_t i = 0; i < N_OF(ffn_acts); i++)
		if (ffn_acts[i].act == hp->ffn_act)
			tm->act = ffn_acts[i].op;
	if (o->max_tokens < 1 || o->max_tokens > 1 << 20) {
		snprintf(err, errlen, "a training sequence of %d tokens is out of range", o->max_tokens);
		goto fail;
	}
	if (!o->init && (o->rank < 1 || o->rank > 4096 || !isfinite(o->alpha) || !(o->dropout >= 0.0f) ||
	    o->dropout >= 1.0f || !isfinite(o->init_b))) {
		snprintf(err, errlen, "LoRA options out of range (rank %d, dropout %g)", o->rank, o->dropout);
		goto fail;
	}
	if (o->n_threads < 0 || o->n_threads > 512) {
		snprintf(err, errlen, "%d threads is out of range", o->n_threads);
		goto fail;
	}
	tm->nth = o->n_threads > 1 ? o->n_threads : 1;
	/* Each of our threads calls sgemm on its own part: OpenBLAS must not start threads of
	 * its own on top of ours (nor beside the one thread asked for). */
	openblas_set_num_threads(1);
	if (tm->nth > 1) {
		if (!(tm->pool = pool_new(tm->nth))) {
			snprintf(err, errlen, "cannot start %d threads", tm->nth);
			goto fail;
		}
	}
	tm->recompute = o->recompute;
	Tm = tm->Tmax = o->max_tokens;
	fl = all_flags(hp, &dense);
	tm->E = hp->n_embd;
	tm->Q = hp->n_head * hp->head_dim;
	tm->KV = hp->n_head_kv * hp->head_dim;
	tm->VW = hp->n_head_kv * hp->head_dim_v;
	tm->O = hp->n_head * hp->head_dim_v;
	tm->V = hp->n_vocab;
	tm->FF = dense ? hp->n_ff : 0;
	tm->NE = fl & LLM_LAYER_MOE ? hp->n_expert : 0;
	tm->KU = fl & LLM_LAYER_MOE ? hp->n_expert_used : 0;
	tm->FFE = fl & LLM_LAYER_MOE ? hp->n_ff_exp : 0;
	tm->FFS = fl & LLM_LAYER_SHARED_EXPERT ? hp->n_ff_shexp : 0;
	tm->FFMAX = tm->FF > tm->FFE ? tm->FF : tm->FFE;
	for (int il = 0; il < hp->n_layer; il++) {
		if (hp->layer[il].kind != LLM_LAYER_RECURRENT)
			continue;
		/* tmodel_check has checked the shape */
		tm->dn = (struct tdelta){ hp->ssm_n_group, hp->ssm_dt_rank, hp->ssm_d_state, hp->ssm_d_inner / hp->ssm_dt_rank };
		tm->HV = hp->ssm_dt_rank;
		tm->DK = hp->ssm_n_group * hp->ssm_d_state;
		tm->IN = hp->ssm_d_inner;
		tm->CD = 2 * tm->DK + tm->IN;
	}
	if (tm->FFS > tm->FFMAX)
		tm->FFMAX = tm->FFS;
	tm->alpha = o->init ? lora_alpha(o->init) : o->alpha;
	tm->user_scale = o->init ? lora_scale(o->init) : 1.0f;
	rng = o->seed;

	if (bind_weight(f, "token_embd.weight", tm->E, tm->V, 0, &tm->tok_embd, err, errlen) < 0 ||
	    bind_vec(f, "output_norm.weight", tm->E, 0, &tm->output_norm, err, errlen) < 0 ||
	    bind_rope_factors(tm, Tm, &factors, err, errlen) < 0 ||
	    bind_lin(tm, &tm->output, -1, K_OUTPUT, tm->E, tm->V, 1, err, errlen) < 0)
		goto fail;
	tied = !tm->output.l.w.data;
	if (tied) {
		/* Tied embeddings: the output projection is token_embd, which adapters do not target. */
		tm->output.l.w = tm->tok_embd;
		snprintf(tm->output.name, sizeof(tm->output.name), "token_embd.weight");
	}

	tm->layers = tm_alloc(tm, hp->n_layer, sizeof(*tm->layers));
	tm->pairs = tm_alloc(tm, (size_t)hp->n_layer * K_LAYER + 1, sizeof(*tm->pairs));
	tm->xs = tm_alloc(tm, hp->n_layer + 1, sizeof(*tm->xs));
	if (!tm->layers || !tm->pairs || !tm->xs)
		goto nomem;
	for (int il = 0; il < hp->n_layer; il++) {
		struct tlayer *L = &tm->layers[il];
		const struct llm_layer_hparams *lh = &hp->layer[il];

		L->flags = lh->flags;
		L->recur = lh->kind == LLM_LAYER_RECURRENT;
		L->rope = (struct trope){ hp->head_dim, hp->rope_dim, hp->rope_neox, lh->rope_base, lh->rope_scale, factors,
			hp->rope_attn_factor };
		L->attn = (struct tattn){ hp->n_head, hp->n_head_kv, hp->head_dim, hp->attn_scale,
			lh->kind == LLM_LAYER_SLIDING ? lh->window : 0, hp->attn_softcap, hp->head_dim_v };
		if (bind_layer(tm, il, err, errlen) < 0)
			goto fail;
		for (int k = 0; k < K_LAYER; k++) {
			struct tlin *lin = &L->lin[k];
			unsigned bits = k == K_UP && L->fused_gu ? TMODEL_GATE | TMODEL_UP : kinds[k].bits;
			if (!lin->l.w.data)
				continue;
			if (bits && attach_lora(tm, lin, (o->targets & bits) != 0, o, &rng, err, errlen) < 0)
				goto fail;
			if (tlinear_scratch_floats(&lin->l, Tm, tm->nth) > scratch)
				scratch = tlinear_scratch_floats(&lin->l, Tm, tm->nth);
		}
		for (int s = 0; s < S_COUNT && (L->flags & LLM_LAYER_MOE); s++) {
			struct tlin e = stack_lin(&L->exps[s], 0);
			if (tlinear_scratch_floats(&e.l, Tm, tm->nth) > scratch)
				scratch = tlinear_scratch_floats(&e.l, Tm, tm->nth);
		}
		if ((L->flags & LLM_LAYER_MOE) && !(L->sel = tm_alloc(tm, (size_t)Tm * tm->KU, sizeof(int32_t))))
			goto nomem;
		if (il == 0 || !tm->recompute) {
			if (!(L->sv = alloc_saved(tm, tm->recompute ? -1 : il)))
				goto nomem;
		} else {
			L->sv = tm->layers[0].sv;
		}
	}
	if ((o->targets & TMODEL_OUTPUT) && !o->init && tied) {
		snprintf(err, errlen, "%s: the output projection is tied to token_embd.weight; natter does not "
		    "adapt it", f->path);
		goto fail;
	}
	if (o->init && tied && lora_find(o->init, "token_embd.weight")) {
		/* Its pair would be trained as the output's, but a chat applies a pair on
		 * token_embd.weight to the lookup (llama.cpp's reading too), or refuses it. */
		snprintf(err, errlen, "%s: adapts token_embd.weight, which %s ties to its output projection; natter "
		    "trains no pair there", lora_path(o->init), f->path);
		goto fail;
	}
	if (attach_lora(tm, &tm->output, (o->targets & TMODEL_OUTPUT) != 0, o, &rng, err, errlen) < 0)
		goto fail;
	if (o->init) {
		/* Every pair of the adapter must be one the training model applies. */
		for (int i = 0; i < lora_count(o->init); i++) {
			const char *b = lora_get(o->init, i)->base;
			int found = 0;
			for (int j = 0; j < tm->n_pairs; j++)
				found |= strcmp(tm->pairs[j]->name, b) == 0;
			if (!found) {
				snprintf(err, errlen, "%s: the adapter adapts %s, which the training model does not train",
				    lora_path(o->init), b);
				goto fail;
			}
		}
	}
	if (tm->n_pairs == 0) {
		snprintf(err, errlen, "%s: no weight to train (the targets select none%s)", f->path,
		    fl & LLM_LAYER_MOE ? "; gate, up and down select no weight of a layer of experts" : "");
		goto fail;
	}
	/* The output layer's rows are taken a chunk at a time (logits of a long sequence over a
	 * large vocabulary never exist whole), each chunk dequantizing the whole output matrix:
	 * 64 MiB of logits per chunk keeps the chunks few. */
	tm->chunk_rows = (int)((64u << 20) / sizeof(float) / (unsigned)tm->V);
	if (tm->chunk_rows < 1)
		tm->chunk_rows = 1;
	if (tm->chunk_rows > Tm)
		tm->chunk_rows = Tm;
	if (tlinear_scratch_floats(&tm->output.l, tm->chunk_rows, tm->nth) > scratch)
		scratch = tlinear_scratch_floats(&tm->output.l, tm->chunk_rows, tm->nth);
	for (int l = 0; l <= hp->n_layer; l++)
		if (!(tm->xs[l] = tm_alloc(tm, (size_t)Tm * tm->E, sizeof(float))))
			goto nomem;
	{
		const size_t T = (size_t)Tm, W = (size_t)tm->Q + tm->KV + tm->VW;
		int ok;
		tm->xf = tm_alloc(tm, T * tm->E, sizeof(float));
		tm->pos = tm_alloc(tm, T, sizeof(int32_t));
		tm->lin_scratch = tm_alloc(tm, scratch, sizeof(float));
		tm->qkv = tm_alloc(tm, T * W, sizeof(float));
		tm->tmp_e = tm_alloc(tm, T * tm->E, sizeof(float));
		tm->h = tm_alloc(tm, T * tm->FFMAX, sizeof(float));
		tm->dx = tm_alloc(tm, T * tm->E, sizeof(float));
		tm->dxn = tm_alloc(tm, T * tm->E, sizeof(float));
		tm->dq = tm_alloc(tm, T * tm->Q, sizeof(float));
		tm->dk = tm_alloc(tm, T * tm->KV, sizeof(float));
		tm->dv = tm_alloc(tm, T * tm->VW, sizeof(float));
		tm->dqkv = tm_alloc(tm, T * W, sizeof(float));
		tm->dout = tm_alloc(tm, T * tm->O, sizeof(float));
		tm->dh = tm_alloc(tm, T * tm->FFMAX, sizeof(float));
		tm->dgu = tm_alloc(tm, T * 2 * tm->FFMAX, sizeof(float));
		tm->dxf = tm_alloc(tm, T * tm->E, sizeof(float));
		tm->chunk = tm_alloc(tm, (size_t)tm->chunk_rows * tm->V, sizeof(float));
		tm->dchunk = tm_alloc(tm, (size_t)tm->chunk_rows * tm->V, sizeof(float));
		tm->attn_scratch_floats = tops_attn_scratch_floats(Tm);
		tm->attn_scratch = tm_alloc(tm, tm->nth * tm->attn_scratch_floats, sizeof(float));
		tm->xent_sum = tm_alloc(tm, tm->nth, sizeof(double));
		tm->xent_cnt = tm_alloc(tm, tm->nth, sizeof(int));
		tm->m1 = tm_alloc(tm, 2 * (size_t)tm->n_pairs, sizeof(float *));
		tm->m2 = tm_alloc(tm, 2 * (size_t)tm->n_pairs, sizeof(float *));
		ok = tm->xf && tm->pos && tm->lin_scratch && tm->qkv && tm->tmp_e && tm->h && tm->dx && tm->dxn && tm->dq &&
		    tm->dk && tm->dv && tm->dqkv && tm->dout && tm->dh && tm->dgu && tm->dxf && tm->chunk && tm->dchunk &&
		    tm->attn_scratch && tm->xent_sum && tm->xent_cnt && tm->m1 && tm->m2;
		if (fl & LLM_LAYER_QK_NORM) {
			tm->dqr = tm_alloc(tm, T * tm->Q, sizeof(float));
			tm->dkr = tm_alloc(tm, T * tm->KV, sizeof(float));
			ok = ok && tm->dqr && tm->dkr;
		}
		if (fl & LLM_LAYER_ATTN_GATE) {
			tm->qg = tm_alloc(tm, T * 2 * tm->Q, sizeof(float));
			tm->dqg = tm_alloc(tm, T * 2 * tm->Q, sizeof(float));
			tm->dgate = tm_alloc(tm, T * tm->Q, sizeof(float));
			tm->dog = tm_alloc(tm, T * tm->O, sizeof(float));
			ok = ok && tm->qg && tm->dqg && tm->dgate && tm->dog;
		}
		if (tm->HV) {
			const size_t IN = tm->IN, HV = tm->HV, DK = tm->DK, CD = tm->CD;
			tm->dn_v = tm_alloc(tm, T * IN, sizeof(float));
			tm->dn_g = tm_alloc(tm, T * HV, sizeof(float));
			tm->dn_beta = tm_alloc(tm, T * HV, sizeof(float));
			tm->dn_dy = tm_alloc(tm, T * IN, sizeof(float));
			tm->dn_dno = tm_alloc(tm, T * IN, sizeof(float));
			tm->dn_dz = tm_alloc(tm, T * IN, sizeof(float));
			tm->dn_dqn = tm_alloc(tm, T * DK, sizeof(float));
			tm->dn_dkn = tm_alloc(tm, T * DK, sizeof(float));
			tm->dn_dv = tm_alloc(tm, T * IN, sizeof(float));
			tm->dn_dg = tm_alloc(tm, T * HV, sizeof(float));
			tm->dn_dbeta = tm_alloc(tm, T * HV, sizeof(float));
			tm->dn_dal = tm_alloc(tm, T * HV, sizeof(float));
			tm->dn_db = tm_alloc(tm, T * HV, sizeof(float));
			tm->dn_dxc = tm_alloc(tm, T * CD, sizeof(float));
			tm->dn_dcin = tm_alloc(tm, T * CD, sizeof(float));
			tm->dn_scratch_floats = tops_delta_scratch_floats(&tm->dn, Tm);
			tm->dn_scratch = tm_alloc(tm, tm->nth * tm->dn_scratch_floats, sizeof(float));
			ok = ok && tm->dn_v && tm->dn_g && tm->dn_beta && tm->dn_dy && tm->dn_dno && tm->dn_dz && tm->dn_dqn &&
			    tm->dn_dkn && tm->dn_dv && tm->dn_dg && tm->dn_dbeta && tm->dn_dal && tm->dn_db && tm->dn_dxc &&
			    tm->dn_dcin && tm->dn_scratch;
		}
		if (fl & LLM_LAYER_MOE) {
			tm->rlog = tm_alloc(tm, T * tm->NE, sizeof(float));
			tm->dlog = tm_alloc(tm, T * tm->NE, sizeof(float));
			tm->xg = tm_alloc(tm, T * tm->E, sizeof(float));
			tm->yg = tm_alloc(tm, T * tm->E, sizeof(float));
			tm->dxg = tm_alloc(tm, T * tm->E, sizeof(float));
			tm->rs = tm_alloc(tm, T, sizeof(float));
			tm->drs = tm_alloc(tm, T, sizeof(float));
			tm->dw = tm_alloc(tm, T * tm->KU, sizeof(float));
			tm->cursor = tm_alloc(tm, (size_t)tm->NE, sizeof(int));
			ok = ok && tm->rlog && tm->dlog && tm->xg && tm->yg && tm->dxg && tm->rs && tm->drs && tm->dw && tm->cursor;
		}
		if (!ok)
			goto nomem;
	}
	for (int i = 0; i < tm->n_pairs; i++) {
		const struct tlinear *l = &tm->pairs[i]->l;
		size_t na = (size_t)l->lora->rank * l->w.n_in, nb = (size_t)l->w.n_out * l->lora->rank;
		if (!(tm->m1[2 * i] = tm_alloc(tm, na, sizeof(float))) || !(tm->m2[2 * i] = tm_alloc(tm, na, sizeof(float))) ||
		    !(tm->m1[2 * i + 1] = tm_alloc(tm, nb, sizeof(float))) ||
		    !(tm->m2[2 * i + 1] = tm_alloc(tm, nb, sizeof(float))))
			goto nomem;
	}
	for (int t = 0; t < Tm; t++)
		tm->pos[t] = t;
	*out = tm;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory for a training model of %d tokens", o->max_tokens);
fail:
	tmodel_free(tm);
	return -1;
}

/* --- the operations, split among the threads --- */

/* One operation's arguments; each worker reads the fields of its operation. */
struct pjob {
	const struct tmodel *tm;
	int rows, D, ld, n_head;
	const struct trope *rope;
	const struct tattn *attn;
	const float *x, *w, *g, *u, *q, *k, *v, *o, *lse, *dy;
	float *y, *dx, *dg, *du, *dq, *dk, *dv, *lse_out;
	float cap;
	const float *gg, *bb;   /* the delta rule's gates */
	float *dgg, *dbb;
	const int32_t *target;
	const uint8_t *mask;
	double norm;
	double *sum;   /* (nth) partial losses, added in thread order */
	int *cnt;
};

static inline void
prange(int n, int ith, int nth, int *lo, int *hi)
{
	*lo = (int)((int64_t)n * ith / nth);
	*hi = (int)((int64_t)n * (ith + 1) / nth);
}

/* Operations of fewer elements than this run on the calling thread alone: waking the pool
 * would cost more than it saves. */
#define PAR_MIN_WORK (1 << 15)

/* Runs FN over J on the pool; WORK (elements, roughly) decides whether it is worth it. */
static void
par(const struct tmodel *tm, pool_fn fn, struct pjob *j, double work)
{
	j->tm = tm;
	if (tm->pool && work >= PAR_MIN_WORK)
		pool_run(tm->pool, fn, j);
	else
		fn(j, 0, 1);
}

static void
w_rms_fwd(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	int r0, r1;
	prange(j->rows, ith, nth, &r0, &r1);
	tops_rmsnorm_fwd(j->x + (size_t)r0 * j->D, j->w, r1 - r0, j->D, j->tm->hp.rms_eps, j->y + (size_t)r0 * j->D);
}

static void
w_rms_bwd(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	int r0, r1;
	prange(j->rows, ith, nth, &r0, &r1);
	tops_rmsnorm_bwd(j->x + (size_t)r0 * j->D, j->w, r1 - r0, j->D, j->tm->hp.rms_eps, j->dy + (size_t)r0 * j->D,
	    j->dx + (size_t)r0 * j->D);
}

/* RMSNorm of ROWS rows of D (the residual stream: D = E; per-head norms: D = head_dim). */
static void
rms_fwd(const struct tmodel *tm, const float *x, const float *w, int rows, int D, float *y)
{
	struct pjob j = { .rows = rows, .D = D, .x = x, .w = w, .y = y };
	par(tm, w_rms_fwd, &j, (double)rows * D);
}

static void
rms_bwd(const struct tmodel *tm, const float *x, const float *w, int rows, int D, const float *dy, float *dx)
{
	struct pjob j = { .rows = rows, .D = D, .x = x, .w = w, .dy = dy, .dx = dx };
	par(tm, w_rms_bwd, &j, (double)rows * D);
}

/* RoPE in place over Y (rows tokens of n_head heads); backward when LD is 1. */
static void
w_rope(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	const size_t stride = (size_t)j->n_head * j->rope->head_dim;
	int t0, t1;
	prange(j->rows, ith, nth, &t0, &t1);
	if (j->ld)
		tops_rope_bwd(j->rope, j->y + t0 * stride, t1 - t0, j->n_head, j->tm->pos + t0);
	else
		tops_rope_fwd(j->rope, j->y + t0 * stride, t1 - t0, j->n_head, j->tm->pos + t0);
}

static void
rope(const struct tmodel *tm, const struct trope *r, float *x, int T, int n_head, int backward)
{
	struct pjob j = { .rows = T, .n_head = n_head, .rope = r, .y = x, .ld = backward };
	par(tm, w_rope, &j, (double)T * n_head * r->n_rot);
}

static void
w_glu_fwd(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	int r0, r1;
	prange(j->rows, ith, nth, &r0, &r1);
	tops_glu_fwd(j->tm->act, j->g + (size_t)r0 * j->ld, j->u + (size_t)r0 * j->ld, j->ld, r1 - r0, j->D,
	    j->y + (size_t)r0 * j->D);
}

static void
w_glu_bwd(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	int r0, r1;
	prange(j->rows, ith, nth, &r0, &r1);
	tops_glu_bwd(j->tm->act, j->g + (size_t)r0 * j->ld, j->u + (size_t)r0 * j->ld, j->ld, r1 - r0, j->D,
	    j->dy + (size_t)r0 * j->D, j->dg + (size_t)r0 * j->ld, j->du + (size_t)r0 * j->ld);
}

/* Soft-capping of the logits, forward (Y in place) or backward (DX in place, from Y). */
static void
w_softcap(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	int r0, r1;
	prange(j->rows, ith, nth, &r0, &r1);
	if (j->dx)
		tops_softcap_bwd(j->y + (size_t)r0 * j->D, (size_t)(r1 - r0) * j->D, j->cap, j->dx + (size_t)r0 * j->D);
	else
		tops_softcap_fwd(j->y + (size_t)r0 * j->D, (size_t)(r1 - r0) * j->D, j->cap);
}

static void
softcap(const struct tmodel *tm, float *y, int rows, float *dx)
{
	struct pjob j = { .rows = rows, .D = tm->V, .y = y, .dx = dx, .cap = tm->hp.final_softcap };
	par(tm, w_softcap, &j, (double)rows * tm->V * 8);
}

/* Attention: each thread a range of KV heads with their query heads, whose gradients no
 * other thread touches. */
static void
w_attn_fwd(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	int h0, h1;
	prange(j->attn->n_head_kv, ith, nth, &h0, &h1);
	if (h1 > h0)
		tops_attn_fwd_blocked(j->attn, j->q, j->k, j->v, j->rows, j->y, j->lse_out, h0, h1,
		    j->tm->attn_scratch + (size_t)ith * j->tm->attn_scratch_floats);
}

static void
w_attn_bwd(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	int h0, h1;
	prange(j->attn->n_head_kv, ith, nth, &h0, &h1);
	if (h1 > h0)
		tops_attn_bwd_blocked(j->attn, j->q, j->k, j->v, j->o, j->lse, j->dy, j->rows, j->dq, j->dk, j->dv, h0, h1,
		    j->tm->attn_scratch + (size_t)ith * j->tm->attn_scratch_floats);
}

static void
w_xent(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	const int V = j->tm->V;
	int r0, r1;
	prange(j->rows, ith, nth, &r0, &r1);
	j->cnt[ith] = 0;
	j->sum[ith] = r1 > r0 ? tops_xent(j->x + (size_t)r0 * V, r1 - r0, V, j->target + r0, j->mask ? j->mask + r0 : NULL,
	    j->norm, j->dx ? j->dx + (size_t)r0 * V : NULL, &j->cnt[ith]) : 0.0;
}

/* The causal conv + SiLU of the Gated DeltaNet: each thread a range of channels. */
static void
w_conv(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	const int K = j->tm->hp.ssm_d_conv;
	int c0, c1;
	prange(j->D, ith, nth, &c0, &c1);
	if (c1 <= c0)
		return;
	if (j->dx)
		tops_conv_silu_bwd(j->x + c0, j->D, j->rows, c1 - c0, j->w + (size_t)c0 * K, K, j->dy + c0, j->dx + c0);
	else
		tops_conv_silu_fwd(j->x + c0, j->D, j->rows, c1 - c0, j->w + (size_t)c0 * K, K, j->y + c0);
}

/* The delta rule: each thread a range of key heads and their value heads, whose
 * gradients no other thread touches. */
static void
w_delta(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	const struct tmodel *tm = j->tm;
	float *scr = tm->dn_scratch + (size_t)ith * tm->dn_scratch_floats;
	int i0, i1;
	prange(tm->dn.n_k_heads, ith, nth, &i0, &i1);
	if (i1 <= i0)
		return;
	if (j->dy)
		tops_delta_bwd(&tm->dn, j->q, j->k, j->v, j->gg, j->bb, j->dy, j->rows, j->dq, j->dk, j->dv, j->dgg, j->dbb,
		    i0, i1, scr);
	else
		tops_delta_fwd(&tm->dn, j->q, j->k, j->v, j->gg, j->bb, j->rows, j->y, i0, i1, scr);
}

/* --- forward --- */

static int
lin_fwd(struct tmodel *tm, struct tlin *L, const float *x, int T, uint64_t extra, float *y)
{
	return tlinear_fwd(&L->l, tm->pool, x, T, tm->train, tm->step_seed ^ L->salt ^ extra, y, L->u,
	    tm->lin_scratch);
}

static int
lin_bwd(struct tmodel *tm, struct tlin *L, const float *x, int T, uint64_t extra, const float *dy, float *dx)
{
	return tlinear_bwd(&L->l, tm->pool, x, T, tm->train, tm->step_seed ^ L->salt ^ extra, L->u, dy, dx,
	    tm->lin_scratch);
}

/* Where the gate and the up outputs of T rows of width FF sit in BUF: rows of [gate | up]
 * when one weight computes both (FUSED), else all gates, then all ups. */
static void
gu_split(int fused, int ff, float *buf, int T, float **g, float **u, int *ld)
{
	*g = buf;
	*u = fused ? buf + ff : buf + (size_t)T * ff;
	*ld = fused ? 2 * ff : ff;
}

/* Y (T, n_out of D) = D(act(G X) * U X) over FF hidden units; G NULL: U computes gate and
 * up (fused).  GU (T, 2 FF) keeps gate and up for the backward; tm->h receives the product. */
static int
glu_fwd(struct tmodel *tm, struct tlin *G, struct tlin *U, struct tlin *D, int ff, const float *x, int T, float *gu,
	float *y)
{
	float *g, *u;
	int ld, rc = 0;

	gu_split(!G, ff, gu, T, &g, &u, &ld);
	if (!G) {
		rc |= lin_fwd(tm, U, x, T, 0, gu);
	} else {
		rc |= lin_fwd(tm, G, x, T, 0, g);
		rc |= lin_fwd(tm, U, x, T, 0, u);
	}
	{
		struct pjob j = { .rows = T, .D = ff, .ld = ld, .g = g, .u = u, .y = tm->h };
		par(tm, w_glu_fwd, &j, (double)T * ff * 8);
	}
	rc |= lin_fwd(tm, D, tm->h, T, 0, y);
	return rc;
}

/*
 * The backward of glu_fwd scaled by RS: y_t = rs_t D(h_t) (RS NULL: 1).  DX (T, n_in)
 * += dL/dx from DY, when DX is not NULL; DRS (T), when RS is given, receives dL/drs_t =
 * dy_t . D(h_t), computed as (D^T dy_t) . h_t: a scaled D must have no LoRA (its gradient
 * would need the scaled dy).  The product h is recomputed from GU, as the forward made it.
 */
static int
glu_bwd(struct tmodel *tm, struct tlin *G, struct tlin *U, struct tlin *D, int ff, const float *x, float *gu, int T,
	const float *dy, float *dx, const float *rs, float *drs)
{
	float *g, *u, *dg, *du;
	int ld, rc = 0;

	gu_split(!G, ff, gu, T, &g, &u, &ld);
	{
		struct pjob j = { .rows = T, .D = ff, .ld = ld, .g = g, .u = u, .y = tm->h };
		par(tm, w_glu_fwd, &j, (double)T * ff * 8);
	}
	memset(tm->dh, 0, (size_t)T * ff * sizeof(float));
	rc |= lin_bwd(tm, D, tm->h, T, 0, dy, tm->dh);
	if (rs) {
		for (int t = 0; t < T; t++) {
			float *dht = tm->dh + (size_t)t * ff;
			const float *ht = tm->h + (size_t)t * ff;
			double s = 0;
			for (int i = 0; i < ff; i++)
				s += (double)dht[i] * ht[i];
			drs[t] = (float)s;
			for (int i = 0; i < ff; i++)
				dht[i] *= rs[t];
		}
	}
	gu_split(!G, ff, tm->dgu, T, &dg, &du, &ld);
	memset(tm->dgu, 0, (size_t)T * 2 * ff * sizeof(float));
	{
		struct pjob j = { .rows = T, .D = ff, .ld = ld, .g = g, .u = u, .dy = tm->dh, .dg = dg, .du = du };
		par(tm, w_glu_bwd, &j, (double)T * ff * 8);
	}
	if (!G) {
		rc |= lin_bwd(tm, U, x, T, 0, tm->dgu, dx);
	} else {
		rc |= lin_bwd(tm, G, x, T, 0, dg, dx);
		rc |= lin_bwd(tm, U, x, T, 0, du, dx);
	}
	return rc;
}

static inline float
sigmoid(float x)
{
	return 1.0f / (1.0f + expf(-x));
}

/*
 * Layer L's experts over X (T, E) into OUT (T, E), as blk_moe: the router's softmax and
 * top k; the (token, choice) pairs grouped by expert, tokens in order, so that each
 * expert's weights are read once; each output added with its weight; then the shared
 * expert scaled by sigmoid(ffn_gate_inp_shexp . x).
 */
static int
moe_fwd(struct tmodel *tm, struct tlayer *L, const float *x, int T, float *out)
{
	struct tsaved *sv = L->sv;
	const int E = tm->E, NE = tm->NE, K = tm->KU;
	int *start = sv->ex_start, rc = 0;

	rc |= lin_fwd(tm, &L->lin[K_ROUTER], x, T, 0, tm->rlog);
	tops_moe_route_fwd(tm->rlog, T, NE, K, tm->hp.expert_norm, tm->moe_frozen, sv->probs, L->sel, sv->selw);
	memset(start, 0, (size_t)(NE + 1) * sizeof(int));
	for (int i = 0; i < T * K; i++)
		start[L->sel[i] + 1]++;
	for (int e = 0; e < NE; e++)
		start[e + 1] += start[e];
	memcpy(tm->cursor, start, (size_t)NE * sizeof(int));
	for (int i = 0; i < T * K; i++)
		sv->ex_row[tm->cursor[L->sel[i]]++] = i;

	memset(out, 0, (size_t)T * E * sizeof(float));
	for (int e = 0; e < NE; e++) {
		const int n = start[e + 1] - start[e], *rows = sv->ex_row + start[e];
		struct tlin g = stack_lin(&L->exps[S_GATE], e), u = stack_lin(&L->exps[S_UP], e);
		struct tlin d = stack_lin(&L->exps[S_DOWN], e);
		if (n == 0)
			continue;
		for (int r = 0; r < n; r++)
			memcpy(tm->xg + (size_t)r * E, x + (size_t)(rows[r] / K) * E, (size_t)E * sizeof(float));
		rc |= glu_fwd(tm, &g, &u, &d, tm->FFE, tm->xg, n, sv->egu + (size_t)start[e] * 2 * tm->FFE, tm->yg);
		for (int r = 0; r < n; r++) {
			float *o = out + (size_t)(rows[r] / K) * E;
			const float *y = tm->yg + (size_t)r * E, w = sv->selw[rows[r]];
			for (int i = 0; i < E; i++)
				o[i] += w * y[i];
		}
	}
	if (L->flags & LLM_LAYER_SHARED_EXPERT) {
		rc |= lin_fwd(tm, &L->lin[K_SH_INP], x, T, 0, sv->sgate);
		rc |= glu_fwd(tm, &L->lin[K_SH_GATE], &L->lin[K_SH_UP], &L->lin[K_SH_DOWN], tm->FFS, x, T, sv->sgu, tm->yg);
		for (int t = 0; t < T; t++) {
			const float s = sigmoid(sv->sgate[t]);
			for (int i = 0; i < E; i++)
				out[(size_t)t * E + i] += s * tm->yg[(size_t)t * E + i];
		}
	}
	return rc;
}

/*
 * Its backward: DX (T, E) += dL/dx from DY (T, E).  Each chosen expert's output y_tj was
 * added with weight w_tj: its FFN gets w_tj dy_t, and w_tj gets dy_t . y_tj, which reaches
 * the router's logits through the chosen experts' softmax probabilities (the selection
 * held fixed), and x through the frozen router.  The shared expert likewise through its
 * sigmoid gate.
 */
static int
moe_bwd(struct tmodel *tm, struct tlayer *L, const float *x, int T, const float *dy, float *dx)
{
	struct tsaved *sv = L->sv;
	const int E = tm->E, NE = tm->NE, K = tm->KU;
	const int *start = sv->ex_start;
	int rc = 0;

	memset(tm->dw, 0, (size_t)T * K * sizeof(float));
	for (int e = 0; e < NE; e++) {
		const int n = start[e + 1] - start[e], *rows = sv->ex_row + start[e];
		struct tlin g = stack_lin(&L->exps[S_GATE], e), u = stack_lin(&L->exps[S_UP], e);
		struct tlin d = stack_lin(&L->exps[S_DOWN], e);
		if (n == 0)
			continue;
		for (int r = 0; r < n; r++) {
			memcpy(tm->yg + (size_t)r * E, dy + (size_t)(rows[r] / K) * E, (size_t)E * sizeof(float));
			tm->rs[r] = sv->selw[rows[r]];
		}
		memset(tm->dxg, 0, (size_t)n * E * sizeof(float));
		rc |= glu_bwd(tm, &g, &u, &d, tm->FFE, NULL, sv->egu + (size_t)start[e] * 2 * tm->FFE, n, tm->yg, tm->dxg,
		    tm->rs, tm->drs);
		for (int r = 0; r < n; r++) {
			float *o = dx + (size_t)(rows[r] / K) * E;
			const float *dxr = tm->dxg + (size_t)r * E;
			for (int i = 0; i < E; i++)
				o[i] += dxr[i];
			tm->dw[rows[r]] = tm->drs[r];
		}
	}
	memset(tm->dlog, 0, (size_t)T * NE * sizeof(float));
	tops_moe_route_bwd(sv->probs, L->sel, sv->selw, T, NE, K, tm->hp.expert_norm, tm->dw, tm->dlog);
	rc |= lin_bwd(tm, &L->lin[K_ROUTER], x, T, 0, tm->dlog, dx);
	if (L->flags & LLM_LAYER_SHARED_EXPERT) {
		for (int t = 0; t < T; t++)
			tm->rs[t] = sigmoid(sv->sgate[t]);
		rc |= glu_bwd(tm, &L->lin[K_SH_GATE], &L->lin[K_SH_UP], &L->lin[K_SH_DOWN], tm->FFS, x, sv->sgu, T, dy, dx,
		    tm->rs, tm->drs);
		for (int t = 0; t < T; t++)
			tm->drs[t] *= tm->rs[t] * (1.0f - tm->rs[t]);   /* through the sigmoid */
		rc |= lin_bwd(tm, &L->lin[K_SH_INP], x, T, 0, tm->drs, dx);
	}
	return rc;
}

/* The inputs of the delta rule that are not saved, from what is: v out of the conv's
 * output, the gates from alpha and b. */
static void
dn_inputs(struct tmodel *tm, const struct tlayer *L, int T)
{
	const struct tsaved *sv = L->sv;
	for (int t = 0; t < T; t++)
		memcpy(tm->dn_v + (size_t)t * tm->IN, sv->xc + (size_t)t * tm->CD + 2 * tm->DK, (size_t)tm->IN * sizeof(float));
	tops_dn_gates_fwd(sv->al, sv->be, T, tm->HV, L->ssm_a, L->dt_bias, tm->dn_g, tm->dn_beta);
}

/* Gated DeltaNet layer L on its normed input sv->xn into OUT (T, E). */
static int
dn_fwd(struct tmodel *tm, struct tlayer *L, int T, float *out)
{
	struct tsaved *sv = L->sv;
	const int Dk = tm->dn.d_k, Hk = tm->dn.n_k_heads;
	const float eps = tm->hp.rms_eps;
	int rc = 0;

	rc |= lin_fwd(tm, &L->lin[K_QKV], sv->xn, T, 0, sv->cin);
	rc |= lin_fwd(tm, &L->lin[K_DN_Z], sv->xn, T, 0, sv->z);
	rc |= lin_fwd(tm, &L->lin[K_DN_ALPHA], sv->xn, T, 0, sv->al);
	rc |= lin_fwd(tm, &L->lin[K_DN_BETA], sv->xn, T, 0, sv->be);
	{
		struct pjob j = { .rows = T, .D = tm->CD, .x = sv->cin, .w = L->conv1d, .y = sv->xc };
		par(tm, w_conv, &j, (double)T * tm->CD * tm->hp.ssm_d_conv * 4);
	}
	for (int t = 0; t < T; t++) {
		const float *c = sv->xc + (size_t)t * tm->CD;
		tops_l2norm_fwd(c, Hk, Dk, eps, 1.0f / sqrtf((float)Dk), sv->qn + (size_t)t * tm->DK);
		tops_l2norm_fwd(c + tm->DK, Hk, Dk, eps, 1.0f, sv->kn + (size_t)t * tm->DK);
	}
	dn_inputs(tm, L, T);
	{
		struct pjob j = { .rows = T, .q = sv->qn, .k = sv->kn, .v = tm->dn_v, .gg = tm->dn_g, .bb = tm->dn_beta,
			.y = sv->dno };
		par(tm, w_delta, &j, (double)T * tm->HV * Dk * tm->dn.d_v * 4);
	}
	tops_gnorm_fwd(sv->dno, sv->z, L->ssm_norm, T * tm->HV, tm->dn.d_v, eps, sv->y);
	rc |= lin_fwd(tm, &L->lin[K_DN_OUT], sv->y, T, 0, out);
	return rc;
}

/* Its backward from DOUT (T, E): the LoRA gradients of its products and, when DXN is not
 * NULL, DXN (T, E) += dL/d(its normed input). */
static int
dn_bwd(struct tmodel *tm, struct tlayer *L, int T, const float *dout, float *dxn)
{
	struct tsaved *sv = L->sv;
	const int Dk = tm->dn.d_k, Hk = tm->dn.n_k_heads;
	const size_t IN = tm->IN, HV = tm->HV, DK = tm->DK, CD = tm->CD;
	const float eps = tm->hp.rms_eps;
	int rc = 0;

	memset(tm->dn_dy, 0, T * IN * sizeof(float));
	rc |= lin_bwd(tm, &L->lin[K_DN_OUT], sv->y, T, 0, dout, tm->dn_dy);
	if (!dxn && !L->lin[K_QKV].l.lora)
		return rc;   /* the first layer, its input products frozen: nothing below has a gradient to take */
	memset(tm->dn_dno, 0, T * IN * sizeof(float));
	memset(tm->dn_dz, 0, T * IN * sizeof(float));
	tops_gnorm_bwd(sv->dno, sv->z, L->ssm_norm, T * tm->HV, tm->dn.d_v, eps, tm->dn_dy, tm->dn_dno, tm->dn_dz);
	dn_inputs(tm, L, T);
	memset(tm->dn_dqn, 0, T * DK * sizeof(float));
	memset(tm->dn_dkn, 0, T * DK * sizeof(float));
	memset(tm->dn_dv, 0, T * IN * sizeof(float));
	memset(tm->dn_dg, 0, T * HV * sizeof(float));
	memset(tm->dn_dbeta, 0, T * HV * sizeof(float));
	{
		struct pjob j = { .rows = T, .q = sv->qn, .k = sv->kn, .v = tm->dn_v, .gg = tm->dn_g, .bb = tm->dn_beta,
			.dy = tm->dn_dno, .dq = tm->dn_dqn, .dk = tm->dn_dkn, .dv = tm->dn_dv, .dgg = tm->dn_dg,
			.dbb = tm->dn_dbeta };
		par(tm, w_delta, &j, (double)T * tm->HV * Dk * tm->dn.d_v * 12);
	}
	memset(tm->dn_dal, 0, T * HV * sizeof(float));
	memset(tm->dn_db, 0, T * HV * sizeof(float));
	tops_dn_gates_bwd(sv->al, sv->be, T, tm->HV, L->ssm_a, L->dt_bias, tm->dn_dg, tm->dn_dbeta, tm->dn_dal, tm->dn_db,
	    NULL, NULL);
	memset(tm->dn_dxc, 0, T * CD * sizeof(float));
	for (int t = 0; t < T; t++) {
		const float *c = sv->xc + (size_t)t * CD;
		float *dc = tm->dn_dxc + (size_t)t * CD;
		tops_l2norm_bwd(c, Hk, Dk, eps, 1.0f / sqrtf((float)Dk), tm->dn_dqn + (size_t)t * DK, dc);
		tops_l2norm_bwd(c + DK, Hk, Dk, eps, 1.0f, tm->dn_dkn + (size_t)t * DK, dc + DK);
		memcpy(dc + 2 * DK, tm->dn_dv + (size_t)t * IN, IN * sizeof(float));
	}
	memset(tm->dn_dcin, 0, T * CD * sizeof(float));
	{
		struct pjob j = { .rows = T, .D = tm->CD, .x = sv->cin, .w = L->conv1d, .dy = tm->dn_dxc, .dx = tm->dn_dcin };
		par(tm, w_conv, &j, (double)T * tm->CD * tm->hp.ssm_d_conv * 8);
	}
	rc |= lin_bwd(tm, &L->lin[K_QKV], sv->xn, T, 0, tm->dn_dcin, dxn);
	rc |= lin_bwd(tm, &L->lin[K_DN_Z], sv->xn, T, 0, tm->dn_dz, dxn);
	rc |= lin_bwd(tm, &L->lin[K_DN_ALPHA], sv->xn, T, 0, tm->dn_dal, dxn);
	rc |= lin_bwd(tm, &L->lin[K_DN_BETA], sv->xn, T, 0, tm->dn_db, dxn);
	return rc;
}

/* The attention of layer L on its normed input sv->xn into OUT (T, E). */
static int
attn_fwd(struct tmodel *tm, struct tlayer *L, int T, float *out)
{
	struct tsaved *sv = L->sv;
	const struct llm_hparams *hp = &tm->hp;
	const int Q = tm->Q, KV = tm->KV, VW = tm->VW, W = Q + KV + VW;
	const int qkn = (L->flags & LLM_LAYER_QK_NORM) != 0, gated = (L->flags & LLM_LAYER_ATTN_GATE) != 0;
	float *q = qkn ? sv->qr : sv->q, *k = qkn ? sv->kr : sv->k;
	int rc = 0;

	if (gated) {
		/* attn_q: per head the query then the gate */
		rc |= lin_fwd(tm, &L->lin[K_Q], sv->xn, T, 0, tm->qg);
		for (int t = 0; t < T; t++)
			for (int h = 0; h < hp->n_head; h++) {
				const float *src = tm->qg + (size_t)t * 2 * Q + (size_t)h * 2 * hp->head_dim;
				memcpy(q + (size_t)t * Q + (size_t)h * hp->head_dim, src, hp->head_dim * sizeof(float));
				memcpy(sv->gate + (size_t)t * Q + (size_t)h * hp->head_dim, src + hp->head_dim,
				    hp->head_dim * sizeof(float));
			}
		rc |= lin_fwd(tm, &L->lin[K_K], sv->xn, T, 0, k);
		rc |= lin_fwd(tm, &L->lin[K_V], sv->xn, T, 0, sv->v);
	} else if (L->fused_qkv) {
		rc |= lin_fwd(tm, &L->lin[K_QKV], sv->xn, T, 0, tm->qkv);
		for (int t = 0; t < T; t++) {
			memcpy(q + (size_t)t * Q, tm->qkv + (size_t)t * W, Q * sizeof(float));
			memcpy(k + (size_t)t * KV, tm->qkv + (size_t)t * W + Q, KV * sizeof(float));
			memcpy(sv->v + (size_t)t * VW, tm->qkv + (size_t)t * W + Q + KV, VW * sizeof(float));
		}
	} else {
		rc |= lin_fwd(tm, &L->lin[K_Q], sv->xn, T, 0, q);
		rc |= lin_fwd(tm, &L->lin[K_K], sv->xn, T, 0, k);
		rc |= lin_fwd(tm, &L->lin[K_V], sv->xn, T, 0, sv->v);
	}
	if (qkn) {
		rms_fwd(tm, q, L->q_norm, T * hp->n_head, hp->head_dim, sv->q);
		rms_fwd(tm, k, L->k_norm, T * hp->n_head_kv, hp->head_dim, sv->k);
	}
	rope(tm, &L->rope, sv->q, T, hp->n_head, 0);
	rope(tm, &L->rope, sv->k, T, hp->n_head_kv, 0);
	{
		struct pjob j = { .rows = T, .attn = &L->attn, .q = sv->q, .k = sv->k, .v = sv->v, .y = sv->o,
			.lse_out = sv->lse };
		par(tm, w_attn_fwd, &j, (double)T * T * Q / 2);
	}
	if (gated)
		tops_sigmoid_gate_fwd(sv->o, sv->gate, (size_t)T * tm->O, sv->og);
	rc |= lin_fwd(tm, &L->lin[K_O], gated ? sv->og : sv->o, T, 0, out);
	return rc;
}

static int
layer_fwd(struct tmodel *tm, int il, int T)
{
	struct tlayer *L = &tm->layers[il];
	struct tsaved *sv = L->sv;
	const int E = tm->E, post = (L->flags & LLM_LAYER_POST_NORMS) != 0;
	const float *x = tm->xs[il];
	float *xo = tm->xs[il + 1];
	float *a = post ? sv->a : tm->tmp_e, *f = post ? sv->f : tm->tmp_e;
	int rc = 0;

	rms_fwd(tm, x, L->attn_norm, T, E, sv->xn);
	rc |= L->recur ? dn_fwd(tm, L, T, a) : attn_fwd(tm, L, T, a);
	if (post)
		rms_fwd(tm, a, L->post_attn_norm, T, E, tm->tmp_e);
	for (size_t i = 0; i < (size_t)T * E; i++)
		sv->x1[i] = x[i] + tm->tmp_e[i];

	rms_fwd(tm, sv->x1, L->ffn_norm, T, E, sv->xn2);
	if (L->flags & LLM_LAYER_MOE)
		rc |= moe_fwd(tm, L, sv->xn2, T, f);
	else
		rc |= glu_fwd(tm, L->fused_gu ? NULL : &L->lin[K_GATE], &L->lin[K_UP], &L->lin[K_DOWN], tm->FF, sv->xn2, T,
		    sv->gu, f);
	if (post)
		rms_fwd(tm, f, L->post_ffn_norm, T, E, tm->tmp_e);
	for (size_t i = 0; i < (size_t)T * E; i++)
		xo[i] = sv->x1[i] + tm->tmp_e[i];
	return rc;
}

/* The output layer over rows [C0, C0 + N) of the final norm's output into Y: the LoRA's
 * saved activations at their chunk's rows, restored on every path. */
static int
output_fwd(struct tmodel *tm, int c0, int n, float *y)
{
	float *u_save = tm->output.u;
	int rc;
	if (tm->output.u)
		tm->output.u += (size_t)c0 * tm->output.l.lora->rank;
	rc = lin_fwd(tm, &tm->output, tm->xf + (size_t)c0 * tm->E, n, (uint64_t)c0 << 32, y);
	tm->output.u = u_save;
	if (tm->hp.final_softcap > 0)
		softcap(tm, y, n, NULL);
	return rc;
}

/* From DY, the gradient of the (capped) logits Y of the chunk: through the cap (DY in
 * place), then the output layer. */
static int
output_bwd(struct tmodel *tm, int c0, int n, const float *y, float *dy)
{
	float *u_save = tm->output.u;
	int rc;
	if (tm->hp.final_softcap > 0)
		softcap(tm, (float *)y, n, dy);
	if (tm->output.u)
		tm->output.u += (size_t)c0 * tm->output.l.lora->rank;
	rc = lin_bwd(tm, &tm->output, tm->xf + (size_t)c0 * tm->E, n, (uint64_t)c0 << 32, dy,
	    tm->dxf + (size_t)c0 * tm->E);
	tm->output.u = u_save;
	return rc;
}

int
tmodel_forward(struct tmodel *tm, const int32_t *tok, int T, int train, uint64_t step_seed, float *logits,
	       char *err, size_t errlen)
{
	if (T < 1 || T > tm->Tmax) {
		snprintf(err, errlen, "a sequence of %d tokens does not fit the training model (at most %d)", T,
		    tm->Tmax);
		return -1;
	}
	tm->T = 0;
	tm->train = train;
	tm->step_seed = splitmix64(step_seed);
	if (tops_embed_fwd(&tm->tok_embd, tok, T, tm->hp.embd_scale, tm->xs[0]) < 0) {
		snprintf(err, errlen, "a token id is out of range (the model has %d)", tm->V);
		return -1;
	}
	for (int il = 0; il < tm->hp.n_layer; il++) {
		if (layer_fwd(tm, il, T) < 0) {
			snprintf(err, errlen, "layer %d: a weight type cannot be read", il);
			return -1;
		}
	}
	rms_fwd(tm, tm->xs[tm->hp.n_layer], tm->output_norm, T, tm->E, tm->xf);
	tm->T = T;
	if (logits) {
		/* In the backward's chunks, so that dropout on the output's LoRA masks alike. */
		for (int c0 = 0; c0 < T; c0 += tm->chunk_rows) {
			int n = T - c0 < tm->chunk_rows ? T - c0 : tm->chunk_rows;
			if (output_fwd(tm, c0, n, logits + (size_t)c0 * tm->V) < 0) {
				snprintf(err, errlen, "output: the weight type cannot be read");
				return -1;
			}
		}
	}
	return 0;
}

/* --- backward --- */

/* TM->dx holds dL/d(output of layer IL); leaves dL/d(its input) there.  With recomputation
 * the layer runs forward again first, from its saved input, with the step's dropout masks:
 * the same activations, so the same gradients. */
/* Its backward from DOUT (T, E): the LoRA gradients of q, k, v and o and, when DXN is not
 * NULL, DXN (T, E) += dL/d(the layer's normed input). */
static int
attn_bwd(struct tmodel *tm, struct tlayer *L, int T, const float *dres, float *dxn)
{
	struct tsaved *sv = L->sv;
	const struct llm_hparams *hp = &tm->hp;
	const int Q = tm->Q, KV = tm->KV, VW = tm->VW, W = Q + KV + VW;
	const int qkn = (L->flags & LLM_LAYER_QK_NORM) != 0, gated = (L->flags & LLM_LAYER_ATTN_GATE) != 0;
	float *dq = tm->dq, *dk = tm->dk, *dattn = tm->dout;
	int rc = 0;

	memset(tm->dout, 0, (size_t)T * tm->O * sizeof(float));
	rc |= lin_bwd(tm, &L->lin[K_O], gated ? sv->og : sv->o, T, 0, dres, tm->dout);
	if (gated) {
		memset(tm->dog, 0, (size_t)T * tm->O * sizeof(float));
		memset(tm->dgate, 0, (size_t)T * Q * sizeof(float));
		tops_sigmoid_gate_bwd(sv->o, sv->gate, (size_t)T * tm->O, tm->dout, tm->dog, tm->dgate);
		dattn = tm->dog;
	}
	memset(tm->dq, 0, (size_t)T * Q * sizeof(float));
	memset(tm->dk, 0, (size_t)T * KV * sizeof(float));
	memset(tm->dv, 0, (size_t)T * VW * sizeof(float));
	{
		struct pjob j = { .rows = T, .attn = &L->attn, .q = sv->q, .k = sv->k, .v = sv->v, .o = sv->o,
			.lse = sv->lse, .dy = dattn, .dq = tm->dq, .dk = tm->dk, .dv = tm->dv };
		par(tm, w_attn_bwd, &j, (double)T * T * Q);
	}
	rope(tm, &L->rope, tm->dq, T, hp->n_head, 1);
	rope(tm, &L->rope, tm->dk, T, hp->n_head_kv, 1);
	if (qkn) {
		memset(tm->dqr, 0, (size_t)T * Q * sizeof(float));
		memset(tm->dkr, 0, (size_t)T * KV * sizeof(float));
		rms_bwd(tm, sv->qr, L->q_norm, T * hp->n_head, hp->head_dim, tm->dq, tm->dqr);
		rms_bwd(tm, sv->kr, L->k_norm, T * hp->n_head_kv, hp->head_dim, tm->dk, tm->dkr);
		dq = tm->dqr;
		dk = tm->dkr;
	}
	if (gated) {
		for (int t = 0; t < T; t++)
			for (int h = 0; h < hp->n_head; h++) {
				float *dst = tm->dqg + (size_t)t * 2 * Q + (size_t)h * 2 * hp->head_dim;
				memcpy(dst, dq + (size_t)t * Q + (size_t)h * hp->head_dim, hp->head_dim * sizeof(float));
				memcpy(dst + hp->head_dim, tm->dgate + (size_t)t * Q + (size_t)h * hp->head_dim,
				    hp->head_dim * sizeof(float));
			}
		rc |= lin_bwd(tm, &L->lin[K_Q], sv->xn, T, 0, tm->dqg, dxn);
		rc |= lin_bwd(tm, &L->lin[K_K], sv->xn, T, 0, dk, dxn);
		rc |= lin_bwd(tm, &L->lin[K_V], sv->xn, T, 0, tm->dv, dxn);
	} else if (L->fused_qkv) {
		for (int t = 0; t < T; t++) {
			memcpy(tm->dqkv + (size_t)t * W, dq + (size_t)t * Q, Q * sizeof(float));
			memcpy(tm->dqkv + (size_t)t * W + Q, dk + (size_t)t * KV, KV * sizeof(float));
			memcpy(tm->dqkv + (size_t)t * W + Q + KV, tm->dv + (size_t)t * VW, VW * sizeof(float));
		}
		rc |= lin_bwd(tm, &L->lin[K_QKV], sv->xn, T, 0, tm->dqkv, dxn);
	} else {
		rc |= lin_bwd(tm, &L->lin[K_Q], sv->xn, T, 0, dq, dxn);
		rc |= lin_bwd(tm, &L->lin[K_K], sv->xn, T, 0, dk, dxn);
		rc |= lin_bwd(tm, &L->lin[K_V], sv->xn, T, 0, tm->dv, dxn);
	}
	return rc;
}

static int
layer_bwd(struct tmodel *tm, int il, int T)
{
	struct tlayer *L = &tm->layers[il];
	struct tsaved *sv = L->sv;
	const int E = tm->E, post = (L->flags & LLM_LAYER_POST_NORMS) != 0;
	float *dxn = il > 0 ? tm->dxn : NULL;
	const float *dres;
	int rc = 0;

	if (tm->recompute && layer_fwd(tm, il, T) < 0)
		return -1;
	/* x2 = x1 + [post_ffw_norm](FFN(ffn_norm(x1))) */
	dres = tm->dx;
	if (post) {
		memset(tm->tmp_e, 0, (size_t)T * E * sizeof(float));
		rms_bwd(tm, sv->f, L->post_ffn_norm, T, E, tm->dx, tm->tmp_e);
		dres = tm->tmp_e;
	}
	memset(tm->dxn, 0, (size_t)T * E * sizeof(float));
	if (L->flags & LLM_LAYER_MOE)
		rc |= moe_bwd(tm, L, sv->xn2, T, dres, tm->dxn);
	else
		rc |= glu_bwd(tm, L->fused_gu ? NULL : &L->lin[K_GATE], &L->lin[K_UP], &L->lin[K_DOWN], tm->FF, sv->xn2,
		    sv->gu, T, dres, tm->dxn, NULL, NULL);
	rms_bwd(tm, sv->x1, L->ffn_norm, T, E, tm->dxn, tm->dx);

	/* x1 = x + [post_attention_norm](mixer(attn_norm(x))), the mixer attention or Gated DeltaNet */
	dres = tm->dx;
	if (post) {
		memset(tm->tmp_e, 0, (size_t)T * E * sizeof(float));
		rms_bwd(tm, sv->a, L->post_attn_norm, T, E, tm->dx, tm->tmp_e);
		dres = tm->tmp_e;
	}
	if (dxn)
		memset(dxn, 0, (size_t)T * E * sizeof(float));
	/* The first layer's input gradient would only reach the frozen embeddings: skipped. */
	rc |= L->recur ? dn_bwd(tm, L, T, dres, dxn) : attn_bwd(tm, L, T, dres, dxn);
	if (dxn)
		rms_bwd(tm, tm->xs[il], L->attn_norm, T, E, dxn, tm->dx);
	return rc;
}

int
tmodel_backward(struct tmodel *tm, const int32_t *target, const uint8_t *mask, double norm, int grad,
		double *nll, int *count, char *err, size_t errlen)
{
	const int T = tm->T, E = tm->E, V = tm->V;
	double sum = 0;
	int cnt = 0;

	if (T < 1) {
		snprintf(err, errlen, "no forward to take the loss of");
		return -1;
	}
	if (!(norm > 0)) {
		snprintf(err, errlen, "the loss normaliser must be positive");
		return -1;
	}
	for (int t = 0; t < T; t++) {
		if ((!mask || mask[t]) && (target[t] < 0 || target[t] >= V)) {
			snprintf(err, errlen, "target token %d at position %d is out of range", target[t], t);
			return -1;
		}
	}
	/* The output layer a chunk of rows at a time: the logits of a long sequence over a
	 * large vocabulary never exist whole. */
	memset(tm->dxf, 0, (size_t)T * E * sizeof(float));
	for (int c0 = 0; c0 < T; c0 += tm->chunk_rows) {
		int n = T - c0 < tm->chunk_rows ? T - c0 : tm->chunk_rows, any = 0;
		struct pjob j = { .rows = n, .x = tm->chunk, .target = target + c0, .mask = mask ? mask + c0 : NULL,
			.norm = norm, .dx = grad ? tm->dchunk : NULL, .sum = tm->xent_sum, .cnt = tm->xent_cnt };

		for (int t = c0; t < c0 + n; t++)
			any |= !mask || mask[t];
		if (!any)
			continue;   /* nothing to score here, and no gradient */
		if (output_fwd(tm, c0, n, tm->chunk) < 0)
			goto unreadable;
		memset(tm->xent_sum, 0, (size_t)tm->nth * sizeof(*tm->xent_sum));
		memset(tm->xent_cnt, 0, (size_t)tm->nth * sizeof(*tm->xent_cnt));
		par(tm, w_xent, &j, (double)n * V * 8);
		for (int i = 0; i < tm->nth; i++) {
			sum += tm->xent_sum[i];
			cnt += tm->xent_cnt[i];
		}
		if (grad && output_bwd(tm, c0, n, tm->chunk, tm->dchunk) < 0)
			goto unreadable;
	}
	*nll = sum;
	if (count)
		*count = cnt;
	if (!grad)
		return 0;
	memset(tm->dx, 0, (size_t)T * E * sizeof(float));
	rms_bwd(tm, tm->xs[tm->hp.n_layer], tm->output_norm, T, E, tm->dxf, tm->dx);
	for (int il = tm->hp.n_layer - 1; il >= 0; il--) {
		if (layer_bwd(tm, il, T) < 0) {
			snprintf(err, errlen, "layer %d: a weight type cannot be read", il);
			return -1;
		}
	}
	return 0;
unreadable:
	snprintf(err, errlen, "output: the weight type cannot be read");
	return -1;
}

void
tmodel_moe_freeze(struct tmodel *tm, int freeze)
{
	tm->moe_frozen = freeze && tm->T > 0;
}

/* --- parameters --- */

int tmodel_lora_count(const struct tmodel *tm) { return tm->n_pairs; }
const char *tmodel_lora_base(const struct tmodel *tm, int i) { return tm->pairs[i]->name; }
struct tlora *tmodel_lora(struct tmodel *tm, int i) { return tm->pairs[i]->l.lora; }
int tmodel_lora_n_in(const struct tmodel *tm, int i) { return tm->pairs[i]->l.w.n_in; }
int tmodel_lora_n_out(const struct tmodel *tm, int i) { return tm->pairs[i]->l.w.n_out; }

void
tmodel_zero_grad(struct tmodel *tm)
{
	for (int i = 0; i < tm->n_pairs; i++) {
		const struct tlinear *l = &tm->pairs[i]->l;
		memset(l->lora->da, 0, (size_t)l->lora->rank * l->w.n_in * sizeof(float));
		memset(l->lora->db, 0, (size_t)l->w.n_out * l->lora->rank * sizeof(float));
	}
}

size_t
tmodel_n_params(const struct tmodel *tm)
{
	size_t n = 0;
	for (int i = 0; i < tm->n_pairs; i++) {
		const struct tlinear *l = &tm->pairs[i]->l;
		n += (size_t)l->lora->rank * (l->w.n_in + l->w.n_out);
	}
	return n;
}

void
tmodel_grad_get(struct tmodel *tm, float *g)
{
	for (int i = 0; i < tm->n_pairs; i++) {
		const struct tlinear *l = &tm->pairs[i]->l;
		size_t na = (size_t)l->lora->rank * l->w.n_in, nb = (size_t)l->w.n_out * l->lora->rank;
		memcpy(g, l->lora->da, na * sizeof(float));
		memcpy(g + na, l->lora->db, nb * sizeof(float));
		g += na + nb;
	}
}

void
tmodel_grad_set(struct tmodel *tm, const float *g)
{
	for (int i = 0; i < tm->n_pairs; i++) {
		const struct tlinear *l = &tm->pairs[i]->l;
		size_t na = (size_t)l->lora->rank * l->w.n_in, nb = (size_t)l->w.n_out * l->lora->rank;
		memcpy(l->lora->da, g, na * sizeof(float));
		memcpy(l->lora->db, g + na, nb * sizeof(float));
		g += na + nb;
	}
}
int64_t tmodel_adamw_t(const struct tmodel *tm) { return tm->adam_t; }
void tmodel_adamw_set_t(struct tmodel *tm, int64_t t) { tm->adam_t = t; }
int tmodel_n_threads(const struct tmodel *tm) { return tm->nth; }
const char *tmodel_arch(const struct tmodel *tm) { return tm->hp.arch_name; }
float tmodel_alpha(const struct tmodel *tm) { return tm->alpha; }

void
tmodel_adamw_moments(struct tmodel *tm, int i, float *m1[2], float *m2[2])
{
	m1[0] = tm->m1[2 * i];
	m1[1] = tm->m1[2 * i + 1];
	m2[0] = tm->m2[2 * i];
	m2[1] = tm->m2[2 * i + 1];
}

int
tmodel_adamw_step(struct tmodel *tm, const struct adamw_cfg *c, float lr, float gscale)
{
	int rc = 0;

	tm->adam_t++;
	for (int i = 0; i < tm->n_pairs; i++) {
		const struct tlinear *l = &tm->pairs[i]->l;
		struct tlora *lo = l->lora;
		rc |= adamw_update(c, tm->adam_t, lr, gscale, lo->a, lo->da, tm->m1[2 * i], tm->m2[2 * i],
		    (size_t)lo->rank * l->w.n_in);
		rc |= adamw_update(c, tm->adam_t, lr, gscale, lo->b, lo->db, tm->m1[2 * i + 1], tm->m2[2 * i + 1],
		    (size_t)l->w.n_out * lo->rank);
	}
	return rc;
}

int
tmodel_lora_save(const struct tmodel *tm, const char *path, const char *name, enum ggml_type type,
		 const struct lora_file_info *prov, char *err, size_t errlen)
{
	struct lora_pair *p = calloc(tm->n_pairs, sizeof(*p));
	struct lora_file_info info = { tm->hp.arch_name, name, tm->alpha, type, prov ? prov->base_name : NULL,
		prov ? prov->base_file : NULL, prov ? prov->config : NULL };
	int rc;

	if (!p) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	for (int i = 0; i < tm->n_pairs; i++) {
		const struct tlinear *l = &tm->pairs[i]->l;
		p[i] = (struct lora_pair){ tm->pairs[i]->name, l->w.n_in, l->w.n_out, l->lora->rank, l->lora->a,
			l->lora->b, l->lora->scale };
	}
	rc = lora_write(path, &info, p, tm->n_pairs, err, errlen);
	free(p);
	return rc;
}
