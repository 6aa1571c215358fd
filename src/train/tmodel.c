/* tmodel.c -- the training forward and backward of a llama-style block stack over frozen GGUF weights, LoRA trained. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "llm/pool.h"
#include "natter/gguf.h"
#include "natter/llm.h"
#include "natter/lora.h"
#include "natter/quant.h"
#include "natter/train.h"

/*
 * The architectures the training model computes, and everything in which they differ: the
 * one place layer_fwd and layer_bwd ask.  What a file shows by its tensors (q/k/v biases, a
 * fused attn_qkv, a fused gate/up, tied embeddings, rope_freqs) is read from the file.
 *
 * The families of the architecture registry (another branch) need, each a field here read
 * by the layer functions, over operations that tops.c has with their gradients:
 *   qwen3:  per-head q/k RMSNorm (attn_q_norm/attn_k_norm, tops_rmsnorm with rows T * n_head),
 *           head_dim from attention.key_length;
 *   gemma2: embeddings times sqrt(n_embd) (tops_embed_fwd's SCALE), GELU-tanh gate, post-
 *           attention and post-FFN norms, attention and final logit soft-capping
 *           (struct tattn's softcap, tops_softcap_*), a sliding window on alternate layers;
 *   gemma3: gemma2's without soft-capping, q/k norms, 5 local : 1 global layers with their
 *           own RoPE base (a struct trope per kind of layer);
 *   MoE (llama experts, qwen2moe, qwen3moe): the router's softmax and top-k and the experts'
 *           FFNs with their backward -- not in tops.c yet; LoRA pairs stay on the dense
 *           weights (llama.cpp's adapters do not adapt expert stacks).
 * Each needs the hyperparameters the registry adds to struct llm_hparams.
 */
static const struct tarch {
	const char *name;
	enum tops_act act;   /* of the FFN's gate */
} tarchs[] = {
	{ "llama", TOPS_SILU },
	{ "qwen2", TOPS_SILU },
	{ "phi3", TOPS_SILU },
};

/* The linear layers of a block, in the order adapter files list them. */
enum { K_Q, K_K, K_V, K_QKV, K_O, K_GATE, K_UP, K_DOWN, K_OUTPUT, K_COUNT };
static const struct {
	const char *name;   /* "blk.N.<name>.weight", or the whole name for the output */
	unsigned bits;      /* TMODEL_* targets that select it */
} kinds[K_COUNT] = {
	[K_Q] = { "attn_q", TMODEL_Q },
	[K_K] = { "attn_k", TMODEL_K },
	[K_V] = { "attn_v", TMODEL_V },
	[K_QKV] = { "attn_qkv", TMODEL_Q | TMODEL_K | TMODEL_V },
	[K_O] = { "attn_output", TMODEL_O },
	[K_GATE] = { "ffn_gate", TMODEL_GATE },
	[K_UP] = { "ffn_up", TMODEL_UP },           /* fused gate/up: TMODEL_GATE too */
	[K_DOWN] = { "ffn_down", TMODEL_DOWN },
	[K_OUTPUT] = { "output.weight", TMODEL_OUTPUT },
};

/* A linear layer of the model with its LoRA's saved activations. */
struct tlin {
	struct tlinear l;
	char name[64];        /* of the base weight */
	float *u;             /* (max_tokens, rank) A drop(x), when adapted */
	uint64_t salt;        /* varies the dropout mask between layers */
};

/* What a layer's backward needs from its forward, each (max_tokens, ...). */
struct tsaved {
	float *xn;     /* (E) attn_norm(x) */
	float *q;      /* (Q) after RoPE */
	float *k, *v;  /* (KV), k after RoPE */
	float *o;      /* (Q) attention output */
	float *lse;    /* (n_head, max_tokens) */
	float *x1;     /* (E) residual after attention */
	float *xn2;    /* (E) ffn_norm(x1) */
	float *gu;     /* (2 FF): gate and up outputs */
	float *h;      /* (FF) act(gate) * up */
};

struct tlayer {
	const float *attn_norm, *ffn_norm;   /* (E) */
	int fused_qkv, fused_gu;
	struct tlin lin[K_DOWN + 1];         /* those the file has: wq, wk, wv or wqkv; wo; gate, up or fused up; down */
	struct tsaved *sv;                   /* its own, or with recomputation the one set all layers share */
};

struct tmodel {
	const struct llm_model *m;
	const struct tarch *arch;
	struct llm_hparams hp;
	int Tmax, E, Q, KV, FF, V;
	struct tweight tok_embd;
	const float *output_norm;
	struct tlin output;
	struct trope rope;
	struct tattn attn;
	struct tlayer *layers;
	struct pool *pool;     /* the threads; NULL: the caller's alone */
	int nth;
	int recompute;         /* keep only each layer's input; the backward runs the layer again */
	float **xs;            /* (n_layer + 1) residual streams, (max_tokens, E) each */
	float *xf;             /* (max_tokens, E) output_norm of the last stream */
	int32_t *pos;          /* (max_tokens) 0, 1, ... */
	/* scratch */
	float *lin_scratch, *qkv, *tmp_e;
	float *dx, *dxn, *dq, *dk, *dv, *dqkv, *dout, *dh, *dgu, *dxf, *chunk, *dchunk;
	int chunk_rows;
	float *attn_scratch;   /* (nth, attn_scratch_floats) */
	size_t attn_scratch_floats;
	double *xent_sum;      /* (nth) */
	int *xent_cnt;
	/* the last forward */
	int T, train;
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

/* Binds NAME as an (n_in, n_out) weight of a type natter reads; optional ones may be absent. */
static int
bind_weight(const struct gguf_file *f, const char *name, int n_in, int n_out, int optional, struct tweight *w,
	    char *err, size_t errlen)
{
	const struct gguf_tensor *g = gguf_find_tensor(f, name);
	memset(w, 0, sizeof(*w));
	if (!g) {
		if (optional)
			return 0;
		snprintf(err, errlen, "%s: tensor %s is missing", f->path, name);
		return -1;
	}
	if (g->ne[0] != (uint64_t)n_in || g->ne[1] != (uint64_t)n_out || g->ne[2] != 1 || g->ne[3] != 1) {
		snprintf(err, errlen, "%s: tensor %s has shape [%llu, %llu], expected [%d, %d]", f->path, name,
		    (unsigned long long)g->ne[0], (unsigned long long)g->ne[1], n_in, n_out);
		return -1;
	}
	if (!q_traits_get(g->type)->supported) {
		snprintf(err, errlen, "%s: tensor %s has type %s, which natter cannot read", f->path, name,
		    ggml_type_info_get(g->type)->name);
		return -1;
	}
	w->data = g->data;
	w->type = g->type;
	w->n_in = n_in;
	w->n_out = n_out;
	w->row_bytes = q_row_size(g->type, n_in);
	return 0;
}

/* Norms and biases: float32 vectors of N. */
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

/* splitmix64: initialisation noise and dropout seeds. */
static uint64_t
mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static float
uniform(uint64_t *state)
{
	*state = mix64(*state);
	return (float)((double)(*state >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

/* Gives L a LoRA pair: from the initial adapter if it adapts L, else a new one when BITS
 * select L's kind.  Returns 0 (adapted or not) or -1. */
static int
attach_lora(struct tmodel *tm, struct tlin *L, unsigned sel, const struct tmodel_opts *o, uint64_t *rng,
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

/* Binds linear KIND of layer IL (IL < 0: the output) with dims N_IN -> N_OUT. */
static int
bind_lin(struct tmodel *tm, struct tlin *L, int il, int kind, int n_in, int n_out, int optional, char *err,
	 size_t errlen)
{
	const struct gguf_file *f = llm_model_gguf(tm->m);
	char bias[80];

	if (il >= 0)
		snprintf(L->name, sizeof(L->name), "blk.%d.%s.weight", il, kinds[kind].name);
	else
		snprintf(L->name, sizeof(L->name), "%s", kinds[kind].name);
	L->salt = mix64(((uint64_t)(il + 1) << 8) | (uint64_t)kind);
	if (bind_weight(f, L->name, n_in, n_out, optional, &L->l.w, err, errlen) < 0)
		return -1;
	if (il >= 0)
		snprintf(bias, sizeof(bias), "blk.%d.%s.bias", il, kinds[kind].name);
	else
		snprintf(bias, sizeof(bias), "output.bias");
	return bind_vec(f, bias, n_out, 1, &L->l.bias, err, errlen);
}

static struct tsaved *
alloc_saved(struct tmodel *tm)
{
	const size_t Tm = tm->Tmax;
	struct tsaved *sv = tm_alloc(tm, 1, sizeof(*sv));

	if (!sv)
		return NULL;
	sv->xn = tm_alloc(tm, Tm * tm->E, sizeof(float));
	sv->q = tm_alloc(tm, Tm * tm->Q, sizeof(float));
	sv->k = tm_alloc(tm, Tm * tm->KV, sizeof(float));
	sv->v = tm_alloc(tm, Tm * tm->KV, sizeof(float));
	sv->o = tm_alloc(tm, Tm * tm->Q, sizeof(float));
	sv->lse = tm_alloc(tm, Tm * tm->hp.n_head, sizeof(float));
	sv->x1 = tm_alloc(tm, Tm * tm->E, sizeof(float));
	sv->xn2 = tm_alloc(tm, Tm * tm->E, sizeof(float));
	sv->gu = tm_alloc(tm, Tm * 2 * tm->FF, sizeof(float));
	sv->h = tm_alloc(tm, Tm * tm->FF, sizeof(float));
	if (!sv->xn || !sv->q || !sv->k || !sv->v || !sv->o || !sv->lse || !sv->x1 || !sv->xn2 || !sv->gu || !sv->h)
		return NULL;
	return sv;
}

int
tmodel_new(const struct llm_model *m, const struct tmodel_opts *o, struct tmodel **out, char *err, size_t errlen)
{
	const struct gguf_file *f = llm_model_gguf(m);
	struct tmodel *tm;
	char name[96];
	uint64_t rng;
	size_t scratch = 0;
	int Tm;

	*out = NULL;
	tm = calloc(1, sizeof(*tm));
	if (!tm) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	tm->m = m;
	tm->hp = *llm_model_hparams(m);
	for (size_t i = 0; i < sizeof(tarchs) / sizeof(tarchs[0]); i++)
		if (strcmp(tarchs[i].name, tm->hp.arch_name) == 0)
			tm->arch = &tarchs[i];
	if (!tm->arch) {
		snprintf(err, errlen, "%s: the training model does not compute architecture '%s' yet "
		    "(it does llama, qwen2 and phi3)", f->path, tm->hp.arch_name);
		goto fail;
	}
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
	tm->E = tm->hp.n_embd;
	tm->Q = tm->hp.n_head * tm->hp.head_dim;
	tm->KV = tm->hp.n_head_kv * tm->hp.head_dim;
	tm->FF = tm->hp.n_ff;
	tm->V = tm->hp.n_vocab;
	tm->alpha = o->init ? lora_alpha(o->init) : o->alpha;
	tm->user_scale = o->init ? lora_scale(o->init) : 1.0f;
	rng = o->seed;

	tm->rope = (struct trope){ tm->hp.head_dim, tm->hp.rope_dim, tm->hp.rope_neox, tm->hp.rope_base,
		tm->hp.rope_scale, NULL, 1.0f };
	tm->attn = (struct tattn){ tm->hp.n_head, tm->hp.n_head_kv, tm->hp.head_dim,
		1.0f / sqrtf((float)tm->hp.head_dim), 0, 0.0f };
	if (bind_weight(f, "token_embd.weight", tm->E, tm->V, 0, &tm->tok_embd, err, errlen) < 0 ||
	    bind_vec(f, "output_norm.weight", tm->E, 0, &tm->output_norm, err, errlen) < 0 ||
	    bind_vec(f, "rope_freqs.weight", tm->hp.rope_dim / 2, 1, &tm->rope.factors, err, errlen) < 0 ||
	    bind_lin(tm, &tm->output, -1, K_OUTPUT, tm->E, tm->V, 1, err, errlen) < 0)
		goto fail;
	if (!tm->output.l.w.data) {
		/* Tied embeddings: the output projection is token_embd, which adapters do not target. */
		tm->output.l.w = tm->tok_embd;
		snprintf(tm->output.name, sizeof(tm->output.name), "token_embd.weight");
	}

	tm->layers = tm_alloc(tm, tm->hp.n_layer, sizeof(*tm->layers));
	tm->pairs = tm_alloc(tm, (size_t)tm->hp.n_layer * (K_DOWN + 1) + 1, sizeof(*tm->pairs));
	tm->xs = tm_alloc(tm, tm->hp.n_layer + 1, sizeof(*tm->xs));
	if (!tm->layers || !tm->pairs || !tm->xs)
		goto nomem;
	for (int il = 0; il < tm->hp.n_layer; il++) {
		struct tlayer *L = &tm->layers[il];
		const int E = tm->E, Q = tm->Q, KV = tm->KV, FF = tm->FF;
		unsigned gate_bits;

		snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", il);
		if (bind_vec(f, name, E, 0, &L->attn_norm, err, errlen) < 0)
			goto fail;
		snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", il);
		if (bind_vec(f, name, E, 0, &L->ffn_norm, err, errlen) < 0)
			goto fail;
		snprintf(name, sizeof(name), "blk.%d.attn_qkv.weight", il);
		L->fused_qkv = gguf_find_tensor(f, name) != NULL;
		snprintf(name, sizeof(name), "blk.%d.ffn_gate.weight", il);
		L->fused_gu = gguf_find_tensor(f, name) == NULL;
		if (L->fused_qkv) {
			if (bind_lin(tm, &L->lin[K_QKV], il, K_QKV, E, Q + 2 * KV, 0, err, errlen) < 0)
				goto fail;
		} else if (bind_lin(tm, &L->lin[K_Q], il, K_Q, E, Q, 0, err, errlen) < 0 ||
		    bind_lin(tm, &L->lin[K_K], il, K_K, E, KV, 0, err, errlen) < 0 ||
		    bind_lin(tm, &L->lin[K_V], il, K_V, E, KV, 0, err, errlen) < 0) {
			goto fail;
		}
		if (bind_lin(tm, &L->lin[K_O], il, K_O, Q, E, 0, err, errlen) < 0 ||
		    bind_lin(tm, &L->lin[K_DOWN], il, K_DOWN, FF, E, 0, err, errlen) < 0)
			goto fail;
		if (L->fused_gu) {
			if (bind_lin(tm, &L->lin[K_UP], il, K_UP, E, 2 * FF, 0, err, errlen) < 0)
				goto fail;
		} else if (bind_lin(tm, &L->lin[K_GATE], il, K_GATE, E, FF, 0, err, errlen) < 0 ||
		    bind_lin(tm, &L->lin[K_UP], il, K_UP, E, FF, 0, err, errlen) < 0) {
			goto fail;
		}
		gate_bits = L->fused_gu ? TMODEL_GATE | TMODEL_UP : TMODEL_UP;
		for (int k = 0; k <= K_DOWN; k++) {
			struct tlin *lin = &L->lin[k];
			unsigned bits = k == K_UP ? gate_bits : kinds[k].bits;
			if (!lin->l.w.data)
				continue;
			if (attach_lora(tm, lin, (o->targets & bits) != 0, o, &rng, err, errlen) < 0)
				goto fail;
			if (tlinear_scratch_floats(&lin->l, Tm, tm->nth) > scratch)
				scratch = tlinear_scratch_floats(&lin->l, Tm, tm->nth);
		}
		if (il == 0 || !tm->recompute) {
			if (!(L->sv = alloc_saved(tm)))
				goto nomem;
		} else {
			L->sv = tm->layers[0].sv;
		}
	}
	if ((o->targets & TMODEL_OUTPUT) && !o->init && strcmp(tm->output.name, "output.weight") != 0) {
		snprintf(err, errlen, "%s: the output projection is tied to token_embd.weight; natter does not "
		    "adapt it", f->path);
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
				snprintf(err, errlen, "%s: the adapter adapts %s, which the training model does not use",
				    lora_path(o->init), b);
				goto fail;
			}
		}
	}
	if (tm->n_pairs == 0) {
		snprintf(err, errlen, "%s: no weight to train (the targets select none)", f->path);
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
	for (int l = 0; l <= tm->hp.n_layer; l++)
		if (!(tm->xs[l] = tm_alloc(tm, (size_t)Tm * tm->E, sizeof(float))))
			goto nomem;
	tm->xf = tm_alloc(tm, (size_t)Tm * tm->E, sizeof(float));
	tm->pos = tm_alloc(tm, Tm, sizeof(int32_t));
	tm->lin_scratch = tm_alloc(tm, scratch, sizeof(float));
	tm->qkv = tm_alloc(tm, (size_t)Tm * (tm->Q + 2 * tm->KV), sizeof(float));
	tm->tmp_e = tm_alloc(tm, (size_t)Tm * tm->E, sizeof(float));
	tm->dx = tm_alloc(tm, (size_t)Tm * tm->E, sizeof(float));
	tm->dxn = tm_alloc(tm, (size_t)Tm * tm->E, sizeof(float));
	tm->dq = tm_alloc(tm, (size_t)Tm * tm->Q, sizeof(float));
	tm->dk = tm_alloc(tm, (size_t)Tm * tm->KV, sizeof(float));
	tm->dv = tm_alloc(tm, (size_t)Tm * tm->KV, sizeof(float));
	tm->dqkv = tm_alloc(tm, (size_t)Tm * (tm->Q + 2 * tm->KV), sizeof(float));
	tm->dout = tm_alloc(tm, (size_t)Tm * tm->Q, sizeof(float));
	tm->dh = tm_alloc(tm, (size_t)Tm * tm->FF, sizeof(float));
	tm->dgu = tm_alloc(tm, (size_t)Tm * 2 * tm->FF, sizeof(float));
	tm->dxf = tm_alloc(tm, (size_t)Tm * tm->E, sizeof(float));
	tm->chunk = tm_alloc(tm, (size_t)tm->chunk_rows * tm->V, sizeof(float));
	tm->dchunk = tm_alloc(tm, (size_t)tm->chunk_rows * tm->V, sizeof(float));
	tm->attn_scratch_floats = tops_attn_scratch_floats(Tm);
	tm->attn_scratch = tm_alloc(tm, tm->nth * tm->attn_scratch_floats, sizeof(float));
	tm->xent_sum = tm_alloc(tm, tm->nth, sizeof(double));
	tm->xent_cnt = tm_alloc(tm, tm->nth, sizeof(int));
	tm->m1 = tm_alloc(tm, 2 * (size_t)tm->n_pairs, sizeof(float *));
	tm->m2 = tm_alloc(tm, 2 * (size_t)tm->n_pairs, sizeof(float *));
	if (!tm->xf || !tm->pos || !tm->lin_scratch || !tm->qkv || !tm->tmp_e || !tm->dx || !tm->dxn || !tm->dq ||
	    !tm->dk || !tm->dv || !tm->dqkv || !tm->dout || !tm->dh || !tm->dgu || !tm->dxf || !tm->chunk ||
	    !tm->dchunk || !tm->attn_scratch || !tm->xent_sum || !tm->xent_cnt || !tm->m1 || !tm->m2)
		goto nomem;
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
	const float *x, *w, *g, *u, *q, *k, *v, *o, *lse, *dy;
	float *y, *dx, *dg, *du, *dq, *dk, *dv, *lse_out;
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

static void
rms_fwd(const struct tmodel *tm, const float *x, const float *w, int T, float *y)
{
	struct pjob j = { .rows = T, .D = tm->E, .x = x, .w = w, .y = y };
	par(tm, w_rms_fwd, &j, (double)T * tm->E);
}

static void
rms_bwd(const struct tmodel *tm, const float *x, const float *w, int T, const float *dy, float *dx)
{
	struct pjob j = { .rows = T, .D = tm->E, .x = x, .w = w, .dy = dy, .dx = dx };
	par(tm, w_rms_bwd, &j, (double)T * tm->E);
}

/* RoPE in place over Y (rows tokens of n_head heads); backward when LD is 1. */
static void
w_rope(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	const size_t stride = (size_t)j->n_head * j->tm->hp.head_dim;
	int t0, t1;
	prange(j->rows, ith, nth, &t0, &t1);
	if (j->ld)
		tops_rope_bwd(&j->tm->rope, j->y + t0 * stride, t1 - t0, j->n_head, j->tm->pos + t0);
	else
		tops_rope_fwd(&j->tm->rope, j->y + t0 * stride, t1 - t0, j->n_head, j->tm->pos + t0);
}

static void
rope(const struct tmodel *tm, float *x, int T, int n_head, int backward)
{
	struct pjob j = { .rows = T, .n_head = n_head, .y = x, .ld = backward };
	par(tm, w_rope, &j, (double)T * n_head * tm->hp.rope_dim);
}

static void
w_glu_fwd(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	int r0, r1;
	prange(j->rows, ith, nth, &r0, &r1);
	tops_glu_fwd(j->tm->arch->act, j->g + (size_t)r0 * j->ld, j->u + (size_t)r0 * j->ld, j->ld, r1 - r0, j->D,
	    j->y + (size_t)r0 * j->D);
}

static void
w_glu_bwd(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	int r0, r1;
	prange(j->rows, ith, nth, &r0, &r1);
	tops_glu_bwd(j->tm->arch->act, j->g + (size_t)r0 * j->ld, j->u + (size_t)r0 * j->ld, j->ld, r1 - r0, j->D,
	    j->dy + (size_t)r0 * j->D, j->dg + (size_t)r0 * j->ld, j->du + (size_t)r0 * j->ld);
}

/* Attention: each thread a range of KV heads with their query heads, whose gradients no
 * other thread touches. */
static void
w_attn_fwd(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	int h0, h1;
	prange(j->tm->attn.n_head_kv, ith, nth, &h0, &h1);
	if (h1 > h0)
		tops_attn_fwd_blocked(&j->tm->attn, j->q, j->k, j->v, j->rows, j->y, j->lse_out, h0, h1,
		    j->tm->attn_scratch + (size_t)ith * j->tm->attn_scratch_floats);
}

static void
w_attn_bwd(void *ctx, int ith, int nth)
{
	struct pjob *j = ctx;
	int h0, h1;
	prange(j->tm->attn.n_head_kv, ith, nth, &h0, &h1);
	if (h1 > h0)
		tops_attn_bwd_blocked(&j->tm->attn, j->q, j->k, j->v, j->o, j->lse, j->dy, j->rows, j->dq, j->dk, j->dv, h0,
		    h1, j->tm->attn_scratch + (size_t)ith * j->tm->attn_scratch_floats);
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

/* Where the gate and the up projections of layer L sit in BUF (laid out like sv->gu). */
static void
gu_split(const struct tmodel *tm, const struct tlayer *L, float *buf, int T, float **g, float **u, int *ld)
{
	*g = buf;
	*u = L->fused_gu ? buf + tm->FF : buf + (size_t)T * tm->FF;
	*ld = L->fused_gu ? 2 * tm->FF : tm->FF;
}

static int
layer_fwd(struct tmodel *tm, int il, int T)
{
	struct tlayer *L = &tm->layers[il];
	struct tsaved *sv = L->sv;
	const int E = tm->E, Q = tm->Q, KV = tm->KV, FF = tm->FF, W = Q + 2 * KV;
	const float *x = tm->xs[il];
	float *xo = tm->xs[il + 1], *g, *u;
	int ld, rc = 0;

	rms_fwd(tm, x, L->attn_norm, T, sv->xn);
	if (L->fused_qkv) {
		rc |= lin_fwd(tm, &L->lin[K_QKV], sv->xn, T, 0, tm->qkv);
		for (int t = 0; t < T; t++) {
			memcpy(sv->q + (size_t)t * Q, tm->qkv + (size_t)t * W, Q * sizeof(float));
			memcpy(sv->k + (size_t)t * KV, tm->qkv + (size_t)t * W + Q, KV * sizeof(float));
			memcpy(sv->v + (size_t)t * KV, tm->qkv + (size_t)t * W + Q + KV, KV * sizeof(float));
		}
	} else {
		rc |= lin_fwd(tm, &L->lin[K_Q], sv->xn, T, 0, sv->q);
		rc |= lin_fwd(tm, &L->lin[K_K], sv->xn, T, 0, sv->k);
		rc |= lin_fwd(tm, &L->lin[K_V], sv->xn, T, 0, sv->v);
	}
	rope(tm, sv->q, T, tm->hp.n_head, 0);
	rope(tm, sv->k, T, tm->hp.n_head_kv, 0);
	{
		struct pjob j = { .rows = T, .q = sv->q, .k = sv->k, .v = sv->v, .y = sv->o, .lse_out = sv->lse };
		par(tm, w_attn_fwd, &j, (double)T * T * Q / 2);
	}
	rc |= lin_fwd(tm, &L->lin[K_O], sv->o, T, 0, tm->tmp_e);
	for (size_t i = 0; i < (size_t)T * E; i++)
		sv->x1[i] = x[i] + tm->tmp_e[i];

	rms_fwd(tm, sv->x1, L->ffn_norm, T, sv->xn2);
	gu_split(tm, L, sv->gu, T, &g, &u, &ld);
	if (L->fused_gu) {
		rc |= lin_fwd(tm, &L->lin[K_UP], sv->xn2, T, 0, sv->gu);
	} else {
		rc |= lin_fwd(tm, &L->lin[K_GATE], sv->xn2, T, 0, g);
		rc |= lin_fwd(tm, &L->lin[K_UP], sv->xn2, T, 0, u);
	}
	{
		struct pjob j = { .rows = T, .D = FF, .ld = ld, .g = g, .u = u, .y = sv->h };
		par(tm, w_glu_fwd, &j, (double)T * FF * 8);
	}
	rc |= lin_fwd(tm, &L->lin[K_DOWN], sv->h, T, 0, tm->tmp_e);
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
	return rc;
}

static int
output_bwd(struct tmodel *tm, int c0, int n, const float *dy)
{
	float *u_save = tm->output.u;
	int rc;
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
	tm->step_seed = mix64(step_seed);
	if (tops_embed_fwd(&tm->tok_embd, tok, T, 1.0f, tm->xs[0]) < 0) {
		snprintf(err, errlen, "a token id is out of range (the model has %d)", tm->V);
		return -1;
	}
	for (int il = 0; il < tm->hp.n_layer; il++) {
		if (layer_fwd(tm, il, T) < 0) {
			snprintf(err, errlen, "layer %d: a weight type cannot be read", il);
			return -1;
		}
	}
	rms_fwd(tm, tm->xs[tm->hp.n_layer], tm->output_norm, T, tm->xf);
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
static int
layer_bwd(struct tmodel *tm, int il, int T)
{
	struct tlayer *L = &tm->layers[il];
	struct tsaved *sv = L->sv;
	const int E = tm->E, Q = tm->Q, KV = tm->KV, FF = tm->FF, W = Q + 2 * KV;
	float *g, *u, *dg, *du, *dxn = il > 0 ? tm->dxn : NULL;
	int ld, rc = 0;

	if (tm->recompute && layer_fwd(tm, il, T) < 0)
		return -1;
	/* x2 = x1 + down(act(gate) * up) */
	memset(tm->dh, 0, (size_t)T * FF * sizeof(float));
	rc |= lin_bwd(tm, &L->lin[K_DOWN], sv->h, T, 0, tm->dx, tm->dh);
	gu_split(tm, L, sv->gu, T, &g, &u, &ld);
	gu_split(tm, L, tm->dgu, T, &dg, &du, &ld);
	memset(tm->dgu, 0, (size_t)T * 2 * FF * sizeof(float));
	{
		struct pjob j = { .rows = T, .D = FF, .ld = ld, .g = g, .u = u, .dy = tm->dh, .dg = dg, .du = du };
		par(tm, w_glu_bwd, &j, (double)T * FF * 8);
	}
	memset(tm->dxn, 0, (size_t)T * E * sizeof(float));
	if (L->fused_gu) {
		rc |= lin_bwd(tm, &L->lin[K_UP], sv->xn2, T, 0, tm->dgu, tm->dxn);
	} else {
		rc |= lin_bwd(tm, &L->lin[K_GATE], sv->xn2, T, 0, dg, tm->dxn);
		rc |= lin_bwd(tm, &L->lin[K_UP], sv->xn2, T, 0, du, tm->dxn);
	}
	rms_bwd(tm, sv->x1, L->ffn_norm, T, tm->dxn, tm->dx);

	/* x1 = x + wo(attention(rope(q), rope(k), v)) */
	memset(tm->dout, 0, (size_t)T * Q * sizeof(float));
	rc |= lin_bwd(tm, &L->lin[K_O], sv->o, T, 0, tm->dx, tm->dout);
	memset(tm->dq, 0, (size_t)T * Q * sizeof(float));
	memset(tm->dk, 0, (size_t)T * KV * sizeof(float));
	memset(tm->dv, 0, (size_t)T * KV * sizeof(float));
	{
		struct pjob j = { .rows = T, .q = sv->q, .k = sv->k, .v = sv->v, .o = sv->o, .lse = sv->lse,
			.dy = tm->dout, .dq = tm->dq, .dk = tm->dk, .dv = tm->dv };
		par(tm, w_attn_bwd, &j, (double)T * T * Q);
	}
	rope(tm, tm->dq, T, tm->hp.n_head, 1);
	rope(tm, tm->dk, T, tm->hp.n_head_kv, 1);
	if (dxn)
		memset(dxn, 0, (size_t)T * E * sizeof(float));
	/* The first layer's input gradient would only reach the frozen embeddings: skipped. */
	if (L->fused_qkv) {
		for (int t = 0; t < T; t++) {
			memcpy(tm->dqkv + (size_t)t * W, tm->dq + (size_t)t * Q, Q * sizeof(float));
			memcpy(tm->dqkv + (size_t)t * W + Q, tm->dk + (size_t)t * KV, KV * sizeof(float));
			memcpy(tm->dqkv + (size_t)t * W + Q + KV, tm->dv + (size_t)t * KV, KV * sizeof(float));
		}
		rc |= lin_bwd(tm, &L->lin[K_QKV], sv->xn, T, 0, tm->dqkv, dxn);
	} else {
		rc |= lin_bwd(tm, &L->lin[K_Q], sv->xn, T, 0, tm->dq, dxn);
		rc |= lin_bwd(tm, &L->lin[K_K], sv->xn, T, 0, tm->dk, dxn);
		rc |= lin_bwd(tm, &L->lin[K_V], sv->xn, T, 0, tm->dv, dxn);
	}
	if (dxn)
		rms_bwd(tm, tm->xs[il], L->attn_norm, T, dxn, tm->dx);
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
		if (grad && output_bwd(tm, c0, n, tm->dchunk) < 0)
			goto unreadable;
	}
	*nll = sum;
	if (count)
		*count = cnt;
	if (!grad)
		return 0;
	memset(tm->dx, 0, (size_t)T * E * sizeof(float));
	rms_bwd(tm, tm->xs[tm->hp.n_layer], tm->output_norm, T, tm->dxf, tm->dx);
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

void
tmodel_adamw_step(struct tmodel *tm, const struct adamw_cfg *c, float lr, float gscale)
{
	tm->adam_t++;
	for (int i = 0; i < tm->n_pairs; i++) {
		const struct tlinear *l = &tm->pairs[i]->l;
		struct tlora *lo = l->lora;
		adamw_update(c, tm->adam_t, lr, gscale, lo->a, lo->da, tm->m1[2 * i], tm->m2[2 * i],
		    (size_t)lo->rank * l->w.n_in);
		adamw_update(c, tm->adam_t, lr, gscale, lo->b, lo->db, tm->m1[2 * i + 1], tm->m2[2 * i + 1],
		    (size_t)l->w.n_out * lo->rank);
	}
}

int
tmodel_lora_save(const struct tmodel *tm, const char *path, const char *name, enum ggml_type type, char *err,
		 size_t errlen)
{
	struct lora_pair *p = calloc(tm->n_pairs, sizeof(*p));
	struct lora_file_info info = { tm->hp.arch_name, name, tm->alpha, type };
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
