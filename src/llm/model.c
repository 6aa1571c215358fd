/* model.c -- the llama-family transformer: weights from GGUF, the forward pass over a KV cache. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "natter/gguf.h"
#include "natter/llm.h"
#include "natter/quant.h"
#include "natter/sysbench.h"
#include "natter/tok.h"
#include "llm/matmul.h"
#include "llm/pool.h"

struct llm_layer {
	struct ltensor attn_norm;   /* (n_embd) */
	struct ltensor wq, wk, wv;  /* (n_embd -> n_head*head_dim), (n_embd -> n_head_kv*head_dim) x2 */
	struct ltensor wqkv;        /* phi3: (n_embd -> q + k + v) */
	struct ltensor bq, bk, bv;  /* qwen2: biases, or absent */
	struct ltensor bqkv;
	struct ltensor wo;          /* (n_head*head_dim -> n_embd) */
	struct ltensor bo;
	struct ltensor ffn_norm;    /* (n_embd) */
	struct ltensor w_gate;      /* (n_embd -> n_ff) */
	struct ltensor w_up;        /* (n_embd -> n_ff), phi3: (n_embd -> 2*n_ff) gate then up */
	struct ltensor w_down;      /* (n_ff -> n_embd) */
};

struct llm_model {
	struct gguf_file *f;
	struct tok_vocab *vocab;
	struct llm_hparams hp;
	struct ltensor tok_embd;    /* (n_embd, n_vocab) */
	struct ltensor output_norm; /* (n_embd) */
	struct ltensor output;      /* (n_embd -> n_vocab); tok_embd when tied */
	struct ltensor output_bias;
	struct ltensor rope_freqs;  /* (rope_dim/2) frequency divisors, or absent */
	struct llm_layer *layers;   /* (n_layer) */
	uint64_t weight_bytes;
	char type_name[16];
};

struct llm_ctx {
	struct llm_model *m;
	int n_ctx, n_batch, n_past;
	struct pool *pool;
	struct mm_scratch mm;       /* quantized activations */
	/* KV cache, float32: (layer, n_ctx, n_head_kv * head_dim) each. */
	float *k_cache, *v_cache;
	/* Scratch, sized once for n_batch tokens. */
	float *x;        /* (n_batch, n_embd) residual stream */
	float *xb;       /* (n_batch, n_embd) normalised */
	float *qkv;      /* (n_batch, q + 2 kv) */
	float *q;        /* (n_batch, n_head * head_dim) */
	float *kv_tmp;   /* (n_batch, 2 * kv) */
	float *att_out;  /* (n_batch, n_head * head_dim) */
	float *att;      /* (n_threads, att_rows, n_ctx) scores */
	int att_rows;    /* n_batch if batches use the sgemm path, else 1 */
	float *hb;       /* (n_batch, 2 * n_ff) */
	float *hb2;      /* (n_batch, n_ff) */
	float *rope_cs;  /* (n_ctx, rope_dim/2, 2) cos and sin */
	float *inv_freq; /* (rope_dim/2) */
	llm_abort_fn abort_fn;
	void *abort_ctx;
};

/* --- loading --- */

static int
get_hp_int(const struct gguf_file *f, const char *arch, const char *suffix, int def, int *out,
	   char *err, size_t errlen)
{
	char key[128];
	uint64_t v;

	snprintf(key, sizeof(key), "%s.%s", arch, suffix);
	if (!gguf_find_kv(f, key)) {
		if (def < 0) {
			snprintf(err, errlen, "%s: missing hyperparameter %s", f->path, key);
			return -1;
		}
		*out = def;
		return 0;
	}
	if (gguf_get_u64(f, key, &v) < 0 || v > (1u << 30)) {
		snprintf(err, errlen, "%s: hyperparameter %s is not a sensible count", f->path, key);
		return -1;
	}
	*out = (int)v;
	return 0;
}

static int
get_hp_float(const struct gguf_file *f, const char *arch, const char *suffix, float def, float *out,
	     char *err, size_t errlen)
{
	char key[128];
	double v;

	snprintf(key, sizeof(key), "%s.%s", arch, suffix);
	if (!gguf_find_kv(f, key)) {
		*out = def;
		return 0;
	}
	if (gguf_get_f64(f, key, &v) < 0 || !isfinite(v)) {
		snprintf(err, errlen, "%s: hyperparameter %s is not a number", f->path, key);
		return -1;
	}
	*out = (float)v;
	return 0;
}

/* Finds NAME and checks its shape; OPTIONAL tensors may be absent. */
static int
bind(struct llm_model *m, struct ltensor *t, const char *name, int64_t ne0, int64_t ne1,
     int optional, char *err, size_t errlen)
{
	const struct gguf_tensor *g = gguf_find_tensor(m->f, name);
	const struct q_traits *qt;

	memset(t, 0, sizeof(*t));
	if (!g) {
		if (optional)
			return 0;
		snprintf(err, errlen, "%s: tensor %s is missing (needed by a %s model)", m->f->path, name,
		    m->hp.arch_name);
		return -1;
	}
	if (g->ne[0] != (uint64_t)ne0 || g->ne[1] != (uint64_t)ne1 || g->ne[2] != 1 || g->ne[3] != 1) {
		snprintf(err, errlen, "%s: tensor %s has shape [%llu, %llu, %llu, %llu], expected [%lld, %lld]",
		    m->f->path, name, (unsigned long long)g->ne[0], (unsigned long long)g->ne[1],
		    (unsigned long long)g->ne[2], (unsigned long long)g->ne[3], (long long)ne0, (long long)ne1);
		return -1;
	}
	qt = q_traits_get(g->type);
	if (!qt->supported) {
		snprintf(err, errlen, "%s: tensor %s has type %s, which natter does not support "
		    "(supported: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K)",
		    m->f->path, name, ggml_type_info_get(g->type)->name);
		return -1;
	}
	t->data = g->data;
	t->type = g->type;
	t->ne0 = ne0;
	t->ne1 = ne1;
	t->ne2 = 1;
	t->row_bytes = q_row_size(g->type, ne0);
	t->mat_bytes = t->row_bytes * (size_t)ne1;
	return 0;
}

/* Norms and biases are used as float vectors: demand F32. */
static int
bind_f32(struct llm_model *m, struct ltensor *t, const char *name, int64_t n, int optional,
	 char *err, size_t errlen)
{
	if (bind(m, t, name, n, 1, optional, err, errlen) < 0)
		return -1;
	if (t->data && t->type != GGML_TYPE_F32) {
		snprintf(err, errlen, "%s: tensor %s must be F32 (it is %s)", m->f->path, name,
		    ggml_type_info_get(t->type)->name);
		return -1;
	}
	return 0;
}

void
llm_model_free(struct llm_model *m)
{
	if (!m)
		return;
	free(m->layers);
	tok_vocab_free(m->vocab);
	gguf_close(m->f);
	free(m);
}

int
llm_model_load(const char *path, struct llm_model **out, char *err, size_t errlen)
{
	struct llm_model *m;
	struct llm_hparams *hp;
	char *arch = NULL, name[128];
	int key_len = 0;
	const struct gguf_tensor *emb;

	*out = NULL;
	q_init(0);
	m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	hp = &m->hp;
	if (gguf_open(path, &m->f, err, errlen) < 0)
		goto fail;
	arch = gguf_get_str(m->f, "general.architecture");
	if (!arch) {
		snprintf(err, errlen, "%s: general.architecture is missing", path);
		goto fail;
	}
	snprintf(hp->arch_name, sizeof(hp->arch_name), "%s", arch);
	if (strcmp(arch, "llama") == 0) {
		hp->arch = LLM_ARCH_LLAMA;
	} else if (strcmp(arch, "qwen2") == 0) {
		hp->arch = LLM_ARCH_QWEN2;
	} else if (strcmp(arch, "phi3") == 0) {
		hp->arch = LLM_ARCH_PHI3;
	} else {
		snprintf(err, errlen, "%s: architecture '%.40s' is not supported (natter runs llama, "
		    "qwen2 and phi3 models)", path, arch);
		goto fail;
	}
	if (get_hp_int(m->f, arch, "context_length", 2048, &hp->n_ctx_train, err, errlen) < 0 ||
	    get_hp_int(m->f, arch, "embedding_length", -1, &hp->n_embd, err, errlen) < 0 ||
	    get_hp_int(m->f, arch, "block_count", -1, &hp->n_layer, err, errlen) < 0 ||
	    get_hp_int(m->f, arch, "feed_forward_length", -1, &hp->n_ff, err, errlen) < 0 ||
	    get_hp_int(m->f, arch, "attention.head_count", -1, &hp->n_head, err, errlen) < 0 ||
	    get_hp_int(m->f, arch, "attention.head_count_kv", hp->n_head > 0 ? hp->n_head : 1,
		&hp->n_head_kv, err, errlen) < 0 ||
	    get_hp_int(m->f, arch, "attention.key_length", 0, &key_len, err, errlen) < 0 ||
	    get_hp_float(m->f, arch, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->rms_eps, err, errlen) < 0 ||
	    get_hp_float(m->f, arch, "rope.freq_base", 10000.0f, &hp->rope_base, err, errlen) < 0)
		goto fail;
	if (hp->n_embd < 1 || hp->n_embd > 65536 || hp->n_layer < 1 || hp->n_layer > 1024 ||
	    hp->n_head < 1 || hp->n_head > 1024 || hp->n_head_kv < 1 || hp->n_head % hp->n_head_kv != 0 ||
	    hp->n_ff < 1 || hp->n_ff > 1 << 20) {
		snprintf(err, errlen, "%s: inconsistent hyperparameters (n_embd %d, layers %d, heads %d, "
		    "KV heads %d, n_ff %d)", path, hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->n_ff);
		goto fail;
	}
	if (key_len == 0) {
		if (hp->n_embd % hp->n_head != 0) {
			snprintf(err, errlen, "%s: embedding length %d is not divisible by %d heads", path,
			    hp->n_embd, hp->n_head);
			goto fail;
		}
		key_len = hp->n_embd / hp->n_head;
	}
	hp->head_dim = key_len;
	if (hp->head_dim < 2 || hp->head_dim > 1024 || hp->head_dim % 2) {
		snprintf(err, errlen, "%s: head dimension %d is not supported", path, hp->head_dim);
		goto fail;
	}
	if (get_hp_int(m->f, arch, "rope.dimension_count", hp->head_dim, &hp->rope_dim, err, errlen) < 0)
		goto fail;
	if (hp->rope_dim < 2 || hp->rope_dim > hp->head_dim || hp->rope_dim % 2) {
		snprintf(err, errlen, "%s: rope.dimension_count %d does not fit head dimension %d", path,
		    hp->rope_dim, hp->head_dim);
		goto fail;
	}
	if (!(hp->rope_base > 0) || !(hp->rms_eps > 0) || hp->rms_eps > 1) {
		snprintf(err, errlen, "%s: rope base or RMSNorm epsilon out of range", path);
		goto fail;
	}
	hp->rope_neox = hp->arch != LLM_ARCH_LLAMA;
	hp->rope_scale = 1.0f;
	{
		char key[128], *stype;
		double factor;
		snprintf(key, sizeof(key), "%s.rope.scaling.type", arch);
		stype = gguf_get_str(m->f, key);
		snprintf(key, sizeof(key), "%s.rope.scaling.factor", arch);
		if (stype && strcmp(stype, "linear") == 0 && gguf_get_f64(m->f, key, &factor) == 0 &&
		    factor > 0 && isfinite(factor))
			hp->rope_scale = (float)(1.0 / factor);
		free(stype);
	}

	emb = gguf_find_tensor(m->f, "token_embd.weight");
	if (!emb) {
		snprintf(err, errlen, "%s: tensor token_embd.weight is missing", path);
		goto fail;
	}
	if (emb->ne[1] < 1 || emb->ne[1] > (1u << 24)) {
		snprintf(err, errlen, "%s: token_embd.weight has %llu rows", path, (unsigned long long)emb->ne[1]);
		goto fail;
	}
	hp->n_vocab = (int)emb->ne[1];

	if (tok_vocab_load(m->f, &m->vocab, err, errlen) < 0)
		goto fail;
	if (tok_vocab_size(m->vocab) > hp->n_vocab) {
		snprintf(err, errlen, "%s: the tokenizer has %d tokens but the embedding only %d rows",
		    path, tok_vocab_size(m->vocab), hp->n_vocab);
		goto fail;
	}

	{
		const int E = hp->n_embd, Q = hp->n_head * hp->head_dim, KV = hp->n_head_kv * hp->head_dim;
		const int FF = hp->n_ff;

		if (bind(m, &m->tok_embd, "token_embd.weight", E, hp->n_vocab, 0, err, errlen) < 0 ||
		    bind_f32(m, &m->output_norm, "output_norm.weight", E, 0, err, errlen) < 0 ||
		    bind(m, &m->output, "output.weight", E, hp->n_vocab, 1, err, errlen) < 0 ||
		    bind_f32(m, &m->output_bias, "output.bias", hp->n_vocab, 1, err, errlen) < 0 ||
		    bind_f32(m, &m->rope_freqs, "rope_freqs.weight", hp->rope_dim / 2, 1, err, errlen) < 0)
			goto fail;
		if (!m->output.data)
			m->output = m->tok_embd;   /* tied embeddings */
		m->layers = calloc(hp->n_layer, sizeof(*m->layers));
		if (!m->layers) {
			snprintf(err, errlen, "%s: out of memory", path);
			goto fail;
		}
		for (int l = 0; l < hp->n_layer; l++) {
			struct llm_layer *L = &m->layers[l];
#define NAME(s) (snprintf(name, sizeof(name), "blk.%d." s, l), name)
			if (bind_f32(m, &L->attn_norm, NAME("attn_norm.weight"), E, 0, err, errlen) < 0 ||
			    bind_f32(m, &L->ffn_norm, NAME("ffn_norm.weight"), E, 0, err, errlen) < 0 ||
			    bind(m, &L->wo, NAME("attn_output.weight"), Q, E, 0, err, errlen) < 0 ||
			    bind_f32(m, &L->bo, NAME("attn_output.bias"), E, 1, err, errlen) < 0 ||
			    bind(m, &L->w_down, NAME("ffn_down.weight"), FF, E, 0, err, errlen) < 0)
				goto fail;
			if (gguf_find_tensor(m->f, NAME("attn_qkv.weight"))) {
				if (bind(m, &L->wqkv, name, E, Q + 2 * KV, 0, err, errlen) < 0 ||
				    bind_f32(m, &L->bqkv, NAME("attn_qkv.bias"), Q + 2 * KV, 1, err, errlen) < 0)
					goto fail;
			} else {
				if (bind(m, &L->wq, NAME("attn_q.weight"), E, Q, 0, err, errlen) < 0 ||
				    bind(m, &L->wk, NAME("attn_k.weight"), E, KV, 0, err, errlen) < 0 ||
				    bind(m, &L->wv, NAME("attn_v.weight"), E, KV, 0, err, errlen) < 0 ||
				    bind_f32(m, &L->bq, NAME("attn_q.bias"), Q, 1, err, errlen) < 0 ||
				    bind_f32(m, &L->bk, NAME("attn_k.bias"), KV, 1, err, errlen) < 0 ||
				    bind_f32(m, &L->bv, NAME("attn_v.bias"), KV, 1, err, errlen) < 0)
					goto fail;
			}
			if (gguf_find_tensor(m->f, NAME("ffn_gate.weight"))) {
				if (bind(m, &L->w_gate, name, E, FF, 0, err, errlen) < 0 ||
				    bind(m, &L->w_up, NAME("ffn_up.weight"), E, FF, 0, err, errlen) < 0)
					goto fail;
			} else if (bind(m, &L->w_up, NAME("ffn_up.weight"), E, 2 * FF, 0, err, errlen) < 0) {
				goto fail;   /* fused gate and up (phi3) */
			}
#undef NAME
		}
	}

	{
		uint64_t by_type[GGML_TYPE_COUNT] = { 0 };
		int best = GGML_TYPE_F32;
		for (uint64_t i = 0; i < m->f->n_tensors; i++) {
			m->weight_bytes += m->f->tensors[i].nbytes;
			by_type[m->f->tensors[i].type] += m->f->tensors[i].nbytes;
		}
		for (int t = 0; t < GGML_TYPE_COUNT; t++)
			if (by_type[t] > by_type[best])
				best = t;
		snprintf(m->type_name, sizeof(m->type_name), "%s", ggml_type_info_get(best)->name);
	}
	free(arch);
	*out = m;
	return 0;
fail:
	free(arch);
	llm_model_free(m);
	return -1;
}

const struct llm_hparams *llm_model_hparams(const struct llm_model *m) { return &m->hp; }
const struct tok_vocab *llm_model_vocab(const struct llm_model *m) { return m->vocab; }
const struct gguf_file *llm_model_gguf(const struct llm_model *m) { return m->f; }
uint64_t llm_model_weight_bytes(const struct llm_model *m) { return m->weight_bytes; }
const char *llm_model_type_name(const struct llm_model *m) { return m->type_name; }

/* --- sessions --- */

static void *
xcalloc(size_t n, size_t size, int *failed)
{
	void *p = n && size ? calloc(n, size) : NULL;
	if (n && size && !p)
		*failed = 1;
	return p;
}

void
llm_ctx_free(struct llm_ctx *c)
{
	if (!c)
		return;
	pool_free(c->pool);
	mm_scratch_free(&c->mm);
	free(c->k_cache);
	free(c->v_cache);
	free(c->x);
	free(c->xb);
	free(c->qkv);
	free(c->q);
	free(c->kv_tmp);
	free(c->att_out);
	free(c->att);
	free(c->hb);
	free(c->hb2);
	free(c->rope_cs);
	free(c->inv_freq);
	free(c);
}

/* One thread per physical core: a second hyperthread on the same core adds
 * nothing to a memory-bound matrix-vector product. */
static int
default_threads(void)
{
	int n = sysbench_physical_cores();
	return n < 1 ? 1 : n > 64 ? 64 : n;
}

/* Rotation angles for every position, computed once in double precision. */
static void
rope_table(struct llm_ctx *c)
{
	const struct llm_hparams *hp = &c->m->hp;
	int half = hp->rope_dim / 2;

	for (int i = 0; i < half; i++) {
		double f = pow((double)hp->rope_base, -2.0 * i / hp->rope_dim);
		if (c->m->rope_freqs.data)
			f /= ((const float *)c->m->rope_freqs.data)[i];
		c->inv_freq[i] = (float)f;
	}
	for (int p = 0; p < c->n_ctx; p++) {
		for (int i = 0; i < half; i++) {
			double f = pow((double)hp->rope_base, -2.0 * i / hp->rope_dim);
			if (c->m->rope_freqs.data)
				f /= ((const float *)c->m->rope_freqs.data)[i];
			double th = (double)p * hp->rope_scale * f;
			c->rope_cs[((size_t)p * half + i) * 2] = (float)cos(th);
			c->rope_cs[((size_t)p * half + i) * 2 + 1] = (float)sin(th);
		}
	}
}

struct llm_ctx *
llm_ctx_new(struct llm_model *m, int n_ctx, int n_batch, int n_threads, char *err, size_t errlen)
{
	const struct llm_hparams *hp = &m->hp;
	struct llm_ctx *c = calloc(1, sizeof(*c));
	int failed = 0;
	size_t Q = (size_t)hp->n_head * hp->head_dim, KV = (size_t)hp->n_head_kv * hp->head_dim;
	size_t maxin;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (n_ctx <= 0)
		n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
	if (n_ctx < 1)
		n_ctx = 512;
	if (n_batch <= 0)
		n_batch = 256;
	if (n_batch > n_ctx)
		n_batch = n_ctx;
	if (n_threads <= 0)
		n_threads = default_threads();
	c->m = m;
	c->n_ctx = n_ctx;
	c->n_batch = n_batch;
	c->pool = pool_new(n_threads);
	if (!c->pool) {
		snprintf(err, errlen, "cannot start %d threads", n_threads);
		free(c);
		return NULL;
	}
	maxin = (size_t)hp->n_embd;
	if (Q > maxin) maxin = Q;
	if ((size_t)hp->n_ff > maxin) maxin = hp->n_ff;
	c->k_cache = xcalloc((size_t)hp->n_layer * n_ctx * KV, sizeof(float), &failed);
	c->v_cache = xcalloc((size_t)hp->n_layer * n_ctx * KV, sizeof(float), &failed);
	c->x = xcalloc((size_t)n_batch * hp->n_embd, sizeof(float), &failed);
	c->xb = xcalloc((size_t)n_batch * maxin, sizeof(float), &failed);
	c->qkv = xcalloc((size_t)n_batch * (Q + 2 * KV), sizeof(float), &failed);
	c->q = xcalloc((size_t)n_batch * Q, sizeof(float), &failed);
	c->kv_tmp = xcalloc((size_t)n_batch * 2 * KV, sizeof(float), &failed);
	c->att_out = xcalloc((size_t)n_batch * Q, sizeof(float), &failed);
	c->att_rows = n_batch >= MM_BLAS_MIN_BATCH ? n_batch : 1;
	c->att = xcalloc((size_t)pool_size(c->pool) * c->att_rows * n_ctx, sizeof(float), &failed);
	c->hb = xcalloc((size_t)n_batch * 2 * hp->n_ff, sizeof(float), &failed);
	c->hb2 = xcalloc((size_t)n_batch * hp->n_ff, sizeof(float), &failed);
	c->rope_cs = xcalloc((size_t)n_ctx * hp->rope_dim, sizeof(float), &failed);
	c->inv_freq = xcalloc((size_t)hp->rope_dim / 2, sizeof(float), &failed);
	if (!failed && mm_scratch_init(&c->mm, n_batch, maxin, pool_size(c->pool)) < 0)
		failed = 1;
	if (failed) {
		snprintf(err, errlen, "out of memory for a context of %d tokens (KV cache %.1f MiB)", n_ctx,
		    2.0 * hp->n_layer * n_ctx * KV * 4 / 1048576.0);
		llm_ctx_free(c);
		return NULL;
	}
	rope_table(c);
	return c;
}

int llm_ctx_n_ctx(const struct llm_ctx *c) { return c->n_ctx; }
int llm_ctx_n_threads(const struct llm_ctx *c) { return pool_size(c->pool); }
int llm_ctx_n_past(const struct llm_ctx *c) { return c->n_past; }

void
llm_ctx_truncate(struct llm_ctx *c, int n_past)
{
	if (n_past < 0)
		n_past = 0;
	if (n_past < c->n_past)
		c->n_past = n_past;
}

/* Rotates the first rope_dim dims of one head vector V by angle (cos, sin) table CS. */
static void
rope_apply(float *v, const float *cs, int rope_dim, int neox)
{
	int half = rope_dim / 2;
	if (neox) {
		for (int i = 0; i < half; i++) {
			float c = cs[2 * i], s = cs[2 * i + 1];
			float a = v[i], b = v[i + half];
			v[i] = a * c - b * s;
			v[i + half] = a * s + b * c;
		}
	} else {
		for (int i = 0; i < half; i++) {
			float c = cs[2 * i], s = cs[2 * i + 1];
			float a = v[2 * i], b = v[2 * i + 1];
			v[2 * i] = a * c - b * s;
			v[2 * i + 1] = a * s + b * c;
		}
	}
}

int
llm_ctx_shift(struct llm_ctx *c, int from, int to)
{
	const struct llm_hparams *hp = &c->m->hp;
	size_t KV = (size_t)hp->n_head_kv * hp->head_dim;
	int delta = to - from, half = hp->rope_dim / 2;
	float *cs;

	if (from < 0 || to < from || to > c->n_past)
		return -1;
	if (delta == 0)
		return 0;
	cs = c->att;   /* scratch: rope_dim floats */
	for (int i = 0; i < half; i++) {
		double th = -(double)delta * hp->rope_scale * c->inv_freq[i];
		cs[2 * i] = (float)cos(th);
		cs[2 * i + 1] = (float)sin(th);
	}
	for (int l = 0; l < hp->n_layer; l++) {
		float *kc = c->k_cache + (size_t)l * c->n_ctx * KV;
		float *vc = c->v_cache + (size_t)l * c->n_ctx * KV;
		for (int p = to; p < c->n_past; p++) {
			float *dk = kc + (size_t)(p - delta) * KV, *dv = vc + (size_t)(p - delta) * KV;
			memmove(dk, kc + (size_t)p * KV, KV * sizeof(float));
			memmove(dv, vc + (size_t)p * KV, KV * sizeof(float));
			for (int h = 0; h < hp->n_head_kv; h++)
				rope_apply(dk + (size_t)h * hp->head_dim, cs, hp->rope_dim, hp->rope_neox);
		}
	}
	c->n_past -= delta;
	return 0;
}

/* --- the forward pass --- */

static void
rmsnorm(float *o, const float *x, const float *w, int n, float eps)
{
	double ss = 0;
	for (int i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	float scale = (float)(1.0 / sqrt(ss / n + eps));
	for (int i = 0; i < n; i++)
		o[i] = x[i] * scale * w[i];
}

static void
add_bias(float *x, const struct ltensor *b, int nt, int stride, int n)
{
	if (!b->data)
		return;
	const float *bv = b->data;
	for (int t = 0; t < nt; t++)
		for (int i = 0; i < n; i++)
			x[(size_t)t * stride + i] += bv[i];
}

static void
mm(struct llm_ctx *c, float *out, const float *x, const struct ltensor *w, int nt)
{
	mm_matmul(c->pool, &c->mm, out, (int)w->ne1, x, (int)w->ne0, w, nt);
}

struct attn_job {
	struct llm_ctx *c;
	int layer, nt, pos0;
};

/* One token's attention for one head over positions 0..POS. */
static void
attn_one(const struct q_vops *vo, const float *q, const float *kc, const float *vc, size_t KV,
	 int hd, int pos, float scale, float *att, float *out)
{
	float max = -INFINITY, inv;

	for (int p = 0; p <= pos; p++) {
		att[p] = vo->dot(hd, q, kc + (size_t)p * KV) * scale;
		if (att[p] > max)
			max = att[p];
	}
	inv = 1.0f / vo->exp_sum(att, pos + 1, max);
	memset(out, 0, hd * sizeof(float));
	for (int p = 0; p <= pos; p++)
		vo->axpy(hd, att[p] * inv, vc + (size_t)p * KV, out);
}

static void
attn_worker(void *arg, int ith, int nth)
{
	struct attn_job *j = arg;
	struct llm_ctx *c = j->c;
	const struct llm_hparams *hp = &c->m->hp;
	const struct q_vops *vo = q_vops_get();
	const int hd = hp->head_dim, nh = hp->n_head, group = hp->n_head / hp->n_head_kv;
	const size_t Q = (size_t)nh * hd, KV = (size_t)hp->n_head_kv * hd;
	const float *kc = c->k_cache + (size_t)j->layer * c->n_ctx * KV;
	const float *vc = c->v_cache + (size_t)j->layer * c->n_ctx * KV;
	float *att = c->att + (size_t)ith * c->att_rows * c->n_ctx;
	const float scale = 1.0f / sqrtf((float)hd);

	if (j->nt >= MM_BLAS_MIN_BATCH && c->att_rows >= j->nt) {
		/* A batch: per head, S = Q K^T and O = softmax(S) V as two sgemms. */
		const int npos = j->pos0 + j->nt;
		for (int h = ith; h < nh; h += nth) {
			const float *kh = kc + (size_t)(h / group) * hd, *vh = vc + (size_t)(h / group) * hd;
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->nt, npos, hd, scale,
			    c->q + (size_t)h * hd, (int)Q, kh, (int)KV, 0.0f, att, npos);
			for (int t = 0; t < j->nt; t++) {
				float *row = att + (size_t)t * npos, max = -INFINITY;
				int last = j->pos0 + t;   /* causal: positions after the token are masked */
				for (int p = 0; p <= last; p++)
					if (row[p] > max)
						max = row[p];
				float inv = 1.0f / vo->exp_sum(row, last + 1, max);
				for (int p = 0; p <= last; p++)
					row[p] *= inv;
				memset(row + last + 1, 0, (size_t)(npos - last - 1) * sizeof(float));
			}
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->nt, hd, npos, 1.0f,
			    att, npos, vh, (int)KV, 0.0f, c->att_out + (size_t)h * hd, (int)Q);
		}
		return;
	}
	/* Tasks are (token, head) pairs, dealt round-robin. */
	for (int task = ith; task < j->nt * nh; task += nth) {
		int t = task / nh, h = task % nh, kvh = h / group;
		attn_one(vo, c->q + (size_t)t * Q + (size_t)h * hd, kc + (size_t)kvh * hd,
		    vc + (size_t)kvh * hd, KV, hd, j->pos0 + t, scale, att, c->att_out + (size_t)t * Q + (size_t)h * hd);
	}
}

static inline float
silu(float x)
{
	return x / (1.0f + expf(-x));
}

void
llm_ctx_set_abort(struct llm_ctx *c, llm_abort_fn fn, void *ctx)
{
	c->abort_fn = fn;
	c->abort_ctx = ctx;
}

/* Evaluates one batch of NT <= n_batch tokens.  Returns 0, or
 * LLM_ESTOPPED (n_past unchanged) when the abort callback says so. */
static int
eval_batch(struct llm_ctx *c, const int32_t *tok, int nt, float *logits, int all_logits)
{
	const struct llm_model *m = c->m;
	const struct llm_hparams *hp = &m->hp;
	const int E = hp->n_embd, hd = hp->head_dim, FF = hp->n_ff;
	const size_t Q = (size_t)hp->n_head * hd, KV = (size_t)hp->n_head_kv * hd;
	const int pos0 = c->n_past, half = hp->rope_dim / 2;
	const q_to_float_fn emb_to_float = q_traits_get(m->tok_embd.type)->to_float_fast;

	for (int t = 0; t < nt; t++)
		emb_to_float((const uint8_t *)m->tok_embd.data + (size_t)tok[t] * m->tok_embd.row_bytes,
		    c->x + (size_t)t * E, E);

	for (int l = 0; l < hp->n_layer; l++) {
		const struct llm_layer *L = &m->layers[l];
		float *kc;

		if (c->abort_fn && c->abort_fn(c->abort_ctx))
			return LLM_ESTOPPED;
		kc = c->k_cache + (size_t)l * c->n_ctx * KV;
		float *vc = c->v_cache + (size_t)l * c->n_ctx * KV;

		for (int t = 0; t < nt; t++)
			rmsnorm(c->xb + (size_t)t * E, c->x + (size_t)t * E, L->attn_norm.data, E, hp->rms_eps);

		if (L->wqkv.data) {
			size_t W = Q + 2 * KV;
			mm(c, c->qkv, c->xb, &L->wqkv, nt);
			add_bias(c->qkv, &L->bqkv, nt, (int)W, (int)W);
			for (int t = 0; t < nt; t++) {
				memcpy(c->q + t * Q, c->qkv + t * W, Q * sizeof(float));
				memcpy(c->kv_tmp + t * 2 * KV, c->qkv + t * W + Q, 2 * KV * sizeof(float));
			}
		} else {
			/* k and v go to kv_tmp as (t, [k | v]) via two matmuls into qkv scratch. */
			mm(c, c->q, c->xb, &L->wq, nt);
			add_bias(c->q, &L->bq, nt, (int)Q, (int)Q);
			mm(c, c->qkv, c->xb, &L->wk, nt);
			add_bias(c->qkv, &L->bk, nt, (int)KV, (int)KV);
			for (int t = 0; t < nt; t++)
				memcpy(c->kv_tmp + t * 2 * KV, c->qkv + t * KV, KV * sizeof(float));
			mm(c, c->qkv, c->xb, &L->wv, nt);
			add_bias(c->qkv, &L->bv, nt, (int)KV, (int)KV);
			for (int t = 0; t < nt; t++)
				memcpy(c->kv_tmp + t * 2 * KV + KV, c->qkv + t * KV, KV * sizeof(float));
		}

		for (int t = 0; t < nt; t++) {
			const float *cs = c->rope_cs + (size_t)(pos0 + t) * half * 2;
			float *k = kc + (size_t)(pos0 + t) * KV, *v = vc + (size_t)(pos0 + t) * KV;
			for (int h = 0; h < hp->n_head; h++)
				rope_apply(c->q + t * Q + (size_t)h * hd, cs, hp->rope_dim, hp->rope_neox);
			memcpy(k, c->kv_tmp + t * 2 * KV, KV * sizeof(float));
			memcpy(v, c->kv_tmp + t * 2 * KV + KV, KV * sizeof(float));
			for (int h = 0; h < hp->n_head_kv; h++)
				rope_apply(k + (size_t)h * hd, cs, hp->rope_dim, hp->rope_neox);
		}

		{
			struct attn_job job = { c, l, nt, pos0 };
			pool_run(c->pool, attn_worker, &job);
		}
		mm(c, c->xb, c->att_out, &L->wo, nt);
		add_bias(c->xb, &L->bo, nt, E, E);
		for (size_t i = 0; i < (size_t)nt * E; i++)
			c->x[i] += c->xb[i];

		for (int t = 0; t < nt; t++)
			rmsnorm(c->xb + (size_t)t * E, c->x + (size_t)t * E, L->ffn_norm.data, E, hp->rms_eps);
		if (L->w_gate.data) {
			mm(c, c->hb, c->xb, &L->w_gate, nt);
			mm(c, c->hb2, c->xb, &L->w_up, nt);
			for (size_t i = 0; i < (size_t)nt * FF; i++)
				c->hb[i] = silu(c->hb[i]) * c->hb2[i];
		} else {
			mm(c, c->hb, c->xb, &L->w_up, nt);   /* (t, [gate | up]) */
			for (int t = 0; t < nt; t++) {
				const float *g = c->hb + (size_t)t * 2 * FF, *u = g + FF;
				float *o = c->hb2 + (size_t)t * FF;
				for (int i = 0; i < FF; i++)
					o[i] = silu(g[i]) * u[i];
			}
			memcpy(c->hb, c->hb2, (size_t)nt * FF * sizeof(float));
		}
		mm(c, c->xb, c->hb, &L->w_down, nt);
		for (size_t i = 0; i < (size_t)nt * E; i++)
			c->x[i] += c->xb[i];
	}

	if (logits) {
		int first = all_logits ? 0 : nt - 1, rows = nt - first;
		for (int t = first; t < nt; t++)
			rmsnorm(c->xb + (size_t)(t - first) * E, c->x + (size_t)t * E, m->output_norm.data, E,
			    hp->rms_eps);
		mm(c, logits, c->xb, &m->output, rows);
		add_bias(logits, &m->output_bias, rows, hp->n_vocab, hp->n_vocab);
	}
	c->n_past += nt;
	return 0;
}

int
llm_eval(struct llm_ctx *c, const int32_t *tokens, int n, float *logits, int all_logits,
	 char *err, size_t errlen)
{
	const struct llm_hparams *hp = &c->m->hp;

	if (n <= 0)
		return 0;
	if (n > c->n_ctx - c->n_past) {
		snprintf(err, errlen, "context full: %d tokens do not fit after %d of %d positions", n,
		    c->n_past, c->n_ctx);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (tokens[i] < 0 || tokens[i] >= hp->n_vocab) {
			snprintf(err, errlen, "token id %d is out of range (the model has %d tokens)",
			    tokens[i], hp->n_vocab);
			return -1;
		}
	}
	for (int i = 0; i < n; i += c->n_batch) {
		int nt = n - i < c->n_batch ? n - i : c->n_batch;
		float *lg = NULL;
		if (logits)
			lg = all_logits ? logits + (size_t)i * hp->n_vocab : (i + nt == n ? logits : NULL);
		if (eval_batch(c, tokens + i, nt, lg, all_logits) < 0) {
			snprintf(err, errlen, "evaluation stopped");
			return LLM_ESTOPPED;
		}
	}
	return 0;
}
