/* model.c -- loading a model through its architecture's description; sessions; the forward pass over the layers. */
#include "config.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "natter/gguf.h"
#include "natter/llm.h"
#include "natter/lora.h"
#include "natter/quant.h"
#include "natter/sysbench.h"
#include "natter/tok.h"
#include "llm/arch.h"
#include "llm/blocks.h"
#include "llm/blocks-dn.h"
#include "llm/hugemem.h"
#include "llm/model.h"
#include "llm/pool.h"
#include "llm/quant-impl.h"

/* --- loading --- */

void
llm_model_free(struct llm_model *m)
{
	if (!m)
		return;
	free(m->layers);
	free(m->lhp);
	tok_vocab_free(m->vocab);
	gguf_close(m->f);
	free(m);
}

int
llm_weights_copy_fits(uint64_t file_bytes, uint64_t avail_bytes)
{
	const uint64_t keep = avail_bytes / 4 > (1ull << 30) ? avail_bytes / 4 : 1ull << 30;
	return avail_bytes > keep && file_bytes <= avail_bytes - keep;
}

/*
 * How the weights are held: NATTER_WEIGHTS=copy reads them into private
 * memory in 2 MiB pages (GGUF_OPEN_COPY), =mmap maps the file, =auto (the
 * default) copies when the kernel offers 2 MiB pages (transparent_hugepage
 * not "never") and the copy fits (llm_weights_copy_fits), else maps it,
 * which the kernel can page out.  Measured on one thread (avx512bf16
 * machine, the other core busy), Qwen2.5-0.5B Q8_0 tg32: 27-30 t/s mapped,
 * 35-38 copied; a plain read of 400 MB 15-18 GB/s in 4 KiB pages, 21-25 in
 * 2 MiB pages.  Only copied weights are packed: two threads, Qwen2.5-shape
 * Q5_0 tg64 mapped / copied 49 / 95 and 42 / 70 t/s (avx2), 53 / 77 and
 * 47 / 75 (avx512bf16).  Returns the flags, with why the file is mapped in
 * WHY, or -1 with ERR for another value.
 */
static int
weights_flags(const char *path, char *why, size_t whylen, char *err, size_t errlen)
{
	const char *e = getenv("NATTER_WEIGHTS");
	char line[256];
	struct stat st;
	uint64_t avail;
	int thp = 0;
	FILE *fp;

	if (e && *e && strcmp(e, "auto")) {
		if (strcmp(e, "copy") == 0)
			return GGUF_OPEN_COPY;
		if (strcmp(e, "mmap") == 0) {
			snprintf(why, whylen, "NATTER_WEIGHTS=mmap");
			return 0;
		}
		snprintf(err, errlen, "NATTER_WEIGHTS=%.40s is none of copy, mmap, auto", e);
		return -1;
	}
	if ((fp = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r"))) {
		thp = fgets(line, sizeof(line), fp) && !strstr(line, "[never]");
		fclose(fp);
	}
	if (!thp) {
		snprintf(why, whylen, "transparent huge pages are off");
		return 0;
	}
	if (stat(path, &st) < 0)
		return 0;   /* the open says why */
	avail = mem_available();
	if (!llm_weights_copy_fits((uint64_t)st.st_size, avail)) {
		snprintf(why, whylen, "a copy of its %.1f GiB would leave too little of the %.1f GiB available",
		    st.st_size / 1073741824.0, avail / 1073741824.0);
		return 0;
	}
	return GGUF_OPEN_COPY;
}

static int model_load(const char *path, int mapped, struct llm_model **out, char *err, size_t errlen);

int
llm_model_load(const char *path, struct llm_model **out, char *err, size_t errlen)
{
	return model_load(path, 0, out, err, errlen);
}

int
llm_model_load_mapped(const char *path, struct llm_model **out, char *err, size_t errlen)
{
	return model_load(path, 1, out, err, errlen);
}

/* llm_model_load, the weights mapped whatever NATTER_WEIGHTS says when
 * MAPPED. */
static int
model_load(const char *path, int mapped, struct llm_model **out, char *err, size_t errlen)
{
	struct llm_model *m;
	struct llm_hparams *hp;
	struct arch_loader ld;
	char *arch = NULL;
	const struct gguf_tensor *emb;

	*out = NULL;
	q_init(0);
	m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	hp = &m->hp;
	int wflags = mapped ? 0 : weights_flags(path, m->weights_why, sizeof(m->weights_why), err, errlen);
	if (wflags < 0 || gguf_open_flags(path, (unsigned)wflags, &m->f, err, errlen) < 0)
		goto fail;
	if (mapped)
		snprintf(m->weights_why, sizeof(m->weights_why), "described, not run");
	else if ((wflags & GGUF_OPEN_COPY) && !m->f->copied)
		snprintf(m->weights_why, sizeof(m->weights_why), "the copy into memory failed");
	arch = gguf_get_str(m->f, "general.architecture");
	if (!arch) {
		snprintf(err, errlen, "%s: general.architecture is missing", path);
		goto fail;
	}
	m->arch = arch_find(arch);
	if (!m->arch) {
		char list[256];
		arch_list(list, sizeof(list));
		snprintf(err, errlen, "%s: architecture '%.40s' is not supported (natter runs %s)", path, arch, list);
		goto fail;
	}
	ld.f = m->f;
	ld.arch = m->arch->name;
	ld.err = err;
	ld.errlen = errlen;
	if (arch_load_hparams(&ld, m->arch, hp, &m->lhp) < 0)
		goto fail;

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
	m->layers = calloc((size_t)hp->n_layer + hp->n_layer_mtp, sizeof(*m->layers));
	if (!m->layers) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	if (arch_bind(m, err, errlen) < 0)
		goto fail;

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
int llm_model_weights_copied(const struct llm_model *m) { return m->f->copied; }
const char *llm_model_weights_why(const struct llm_model *m) { return m->f->copied ? "" : m->weights_why; }

/* Every weight of M, model-wide then layer by layer (NULL past the last). */
static struct ltensor *
model_tensor(struct llm_model *m, int i)
{
	const int per = LLM_TENSOR_COUNT, nl = m->hp.n_layer + m->hp.n_layer_mtp;
	if (i < LLM_TENSOR_LAYER_FIRST)
		return &m->g[i].w;
	i -= LLM_TENSOR_LAYER_FIRST;
	return i < nl * per ? &m->layers[i / per].t[i % per].w : NULL;
}

/*
 * Whether llm_model_pack rearranges T: every type the tier has a packed
 * GEMV for.  Half floats' batches may still go through OpenBLAS, which
 * takes their rows out of the groups (mm_float_rows).  Left unpacked
 * for it (before 2026-12-06), F16 on the avx2 tier generated from the
 * file's rows: kbench 896 x 4864, one token, 88-91% of the rate the
 * weights read at alone, packed 101-106%; Qwen2.5-0.5B F16, Intel Xeon
 * (AVX-512) forced to avx2, 2 threads, three interleaved pairs, tg64
 * 29.5 29.4 30.3 -> 31.2 31.1 31.9 t/s, pp512 (OpenBLAS) level, pp128
 * level through the tiles (forced, 228 231 -> 236 227) and through
 * OpenBLAS (forced, 262 260 268 -> 266 273 269) once its panels came
 * out of the groups in one pass (the tier's unpack_f; in two, 254 248
 * 260).
 */
static int
packable(const struct q_kernels *k, const struct ltensor *t)
{
	return t->data && !t->packed && q_packs(k, t->type, t->row_bytes) && t->ne1 >= k->pack_rows;
}

/* The matrices of the packable tensors, packed by the load's threads:
 * one task a matrix (an expert of a stack is one), a scratch of a group
 * of rows per thread. */
#define PACK_THREADS 8

struct pack_job {
	struct { struct ltensor *t; int64_t e; } *mat;
	uint8_t *scratch;
	size_t scratch_each;
	int group;
};

static void
pack_task(void *arg, int task, int worker)
{
	const struct pack_job *j = arg;
	struct ltensor *t = j->mat[task].t;

	q_pack_matrix(t->type, (uint8_t *)t->data + (size_t)j->mat[task].e * t->mat_bytes, t->ne1, t->row_bytes,
	    j->group, j->scratch + (size_t)worker * j->scratch_each);
}

int64_t
llm_model_pack(struct llm_model *m)
{
	const struct q_kernels *k = q_kern();
	const char *env = getenv("NATTER_PACK");
	struct ltensor *t, *o;
	struct pack_job j = { NULL, NULL, 0, k->pack_rows };
	struct pool *p = NULL;
	size_t most = 0, n = 0;
	int threads;

	if ((env && strcmp(env, "0") == 0) || !k->pack_rows || m->pack_rows || !m->f->copied)
		return 0;
	for (int i = 0; (t = model_tensor(m, i)); i++)
		if (packable(k, t)) {
			most = t->row_bytes > most ? t->row_bytes : most;
			n += (size_t)t->ne2;
		}
	if (!most)
		return 0;
	threads = pool_cpus_available();
	threads = threads < PACK_THREADS ? threads : PACK_THREADS;
	threads = (size_t)threads < n ? threads : (int)n;
	if (threads > 1 && n <= POOL_MAX_TASKS)
		p = pool_new(threads);
	threads = p ? pool_size(p) : 1;
	j.scratch_each = line_bytes(most * (size_t)k->pack_rows);
	j.scratch = malloc(j.scratch_each * (size_t)threads);
	j.mat = malloc(n * sizeof(*j.mat));
	if (!j.scratch || !j.mat || gguf_copy_writable(m->f, 1) < 0) {
		int64_t rc = j.scratch && j.mat ? 0 : -1;
		free(j.scratch);
		free(j.mat);
		pool_free(p);
		return rc;
	}
	n = 0;
	for (int i = 0; (t = model_tensor(m, i)); i++) {
		if (!packable(k, t))
			continue;
		for (int64_t e = 0; e < t->ne2; e++) {
			j.mat[n].t = t;
			j.mat[n++].e = e;
		}
		m->packed_bytes += t->mat_bytes * (uint64_t)t->ne2;
		/* The same data under another role (the output tied to the
		 * embeddings) is the same packed rows: marked now, so that it is
		 * neither listed nor packed a second time. */
		const void *data = t->data;
		for (int q = 0; (o = model_tensor(m, q)); q++)
			if (o->data == data)
				o->packed = k->pack_rows;
	}
	if (p)
		pool_run_tasks(p, pack_task, &j, (int)n);
	else
		for (size_t i = 0; i < n; i++)
			pack_task(&j, (int)i, 0);
	pool_free(p);
	gguf_copy_writable(m->f, 0);
	free(j.scratch);
	free(j.mat);
	m->pack_rows = k->pack_rows;
	return (int64_t)m->packed_bytes;
}

uint64_t
llm_model_packed_bytes(const struct llm_model *m, int *group)
{
	if (group)
		*group = m->pack_rows;
	return m->packed_bytes;
}
const char *llm_model_type_name(const struct llm_model *m) { return m->type_name; }

/* --- sessions --- */

/* Buffers the products write: on whole cache lines (line_calloc). */
static void *
xcalloc(size_t n, size_t size, int *failed)
{
	void *p = line_calloc(n, size);
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
	blk_dn_free(c);
	kv_cache_free(&c->kv);
	for (int k = 0; k < c->n_rope; k++)
		free(c->rope[k].inv_freq);
	free(c->layer_rope);
	free(c->rope_cs);
	free(c->x);
	free(c->xb);
	free(c->xo);
	free(c->qkv);
	free(c->q);
	free(c->k);
	free(c->v);
	free(c->att_out);
	attn_scratch_free(&c->attn);
	free(c->hg);
	free(c->hu);
	free(c->router);
	free(c->sel);
	free(c->selw);
	free(c->ex_start);
	free(c->ex_tok);
	free(c->ex_w);
	free(c->ex_x);
	free(c->ex_y);
	free(c->lora_at);
	free(c->lora_uses);
	free(c->lora_t);
	free(c->lora_set);
	free(c->lora_scale);
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

/*
 * The distinct RoPE settings of the session's layers, each with its
 * frequencies in double precision.  LongRoPE picks its long factors when
 * the session's context exceeds the original one (llama.cpp's rule).
 */
static int
rope_setup(struct llm_ctx *c)
{
	const struct llm_model *m = c->m;
	const struct llm_hparams *hp = &m->hp;
	const int half = hp->rope_dim / 2;
	const float *factors = NULL;

	if (hp->rope_factors == 2)
		factors = (c->n_ctx > hp->rope_n_ctx_orig ? m->g[LLM_TENSOR_ROPE_FACTORS_LONG] :
		    m->g[LLM_TENSOR_ROPE_FACTORS_SHORT]).w.data;
	else if (hp->rope_factors == 1)
		factors = m->g[LLM_TENSOR_ROPE_FREQS].w.data;
	for (int il = 0; il < hp->n_layer; il++) {
		const struct llm_layer_hparams *l = &hp->layer[il];
		int k;
		for (k = 0; k < c->n_rope; k++)
			if (c->rope[k].base == l->rope_base && c->rope[k].scale == l->rope_scale)
				break;
		if (k == c->n_rope) {
			struct rope_cfg *r = &c->rope[k];
			if (k == LLM_MAX_ROPE)
				return -1;
			r->base = l->rope_base;
			r->scale = l->rope_scale;
			r->factors = factors;
			r->mscale = hp->rope_attn_factor;
			r->inv_freq = malloc((size_t)half * sizeof(double));
			if (!r->inv_freq)
				return -1;
			c->n_rope++;
			for (int i = 0; i < half; i++) {
				r->inv_freq[i] = pow((double)r->base, -2.0 * i / hp->rope_dim);
				if (factors)
					r->inv_freq[i] /= factors[i];
			}
		}
		c->layer_rope[il] = k;
	}
	return 0;
}

void
llm_ctx_params_default(struct llm_ctx_params *p)
{
	memset(p, 0, sizeof(*p));
	p->kv_type = LLM_KV_F16;
}

static struct llm_ctx *
ctx_new(struct llm_model *m, const struct llm_ctx_params *p, unsigned kv_flags, char *err, size_t errlen)
{
	const struct llm_hparams *hp = &m->hp;
	struct llm_ctx *c;
	int failed = 0, ffmax, rc;
	int n_ctx = p->n_ctx, n_batch = p->n_batch, n_threads = p->n_threads;
	size_t Q = (size_t)hp->n_head * hp->head_dim, K = (size_t)hp->n_head_kv * hp->head_dim;
	size_t V = (size_t)hp->n_head_kv * hp->head_dim_v, O = (size_t)hp->n_head * hp->head_dim_v;
	size_t maxin, nb;

	if ((unsigned)p->kv_type >= LLM_KV_TYPE_COUNT) {
		snprintf(err, errlen, "unknown KV cache type %d", (int)p->kv_type);
		return NULL;
	}
	if (kv_type_ggml(p->kv_type) == GGML_TYPE_Q8_0 && (hp->head_dim % QK8_0 || hp->head_dim_v % QK8_0)) {
		snprintf(err, errlen, "a q8_0 KV cache needs head dimensions that are multiples of %d (this model's "
		    "are %d and %d); use --kv-type f16", QK8_0, hp->head_dim, hp->head_dim_v);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
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
	c->kv_type = p->kv_type;
	c->n_ctx = n_ctx;
	c->n_batch = n_batch;
	nb = (size_t)n_batch;
	c->pool = pool_new(n_threads);
	if (!c->pool) {
		snprintf(err, errlen, "cannot start %d threads", n_threads);
		free(c);
		return NULL;
	}
	/* The widest FFN any layer has (a width no layer uses may be bogus). */
	ffmax = 1;
	for (int il = 0; il < hp->n_layer; il++) {
		const unsigned fl = hp->layer[il].flags;
		int w = fl & LLM_LAYER_MOE ? hp->n_ff_exp : hp->n_ff;
		if (fl & LLM_LAYER_SHARED_EXPERT && hp->n_ff_shexp > w)
			w = hp->n_ff_shexp;
		if (w > ffmax)
			ffmax = w;
	}
	/* The widest input of any product. */
	maxin = (size_t)hp->n_embd;
	if (O > maxin) maxin = O;
	if ((size_t)ffmax > maxin) maxin = ffmax;
	if ((size_t)hp->ssm_d_inner > maxin) maxin = hp->ssm_d_inner;

	c->ckpt_pending = -1;
	c->first_recurrent = hp->n_layer;
	for (int il = hp->n_layer - 1; il >= 0; il--)
		if (hp->layer[il].kind == LLM_LAYER_RECURRENT)
			c->first_recurrent = il;
	rc = kv_cache_init(&c->kv, hp, n_ctx, n_batch, kv_flags, p->kv_type);
	if (rc == 0 && kv_snap_init(&c->kv, LLM_CHECKPOINT_SLOTS, LLM_CHECKPOINT_BUDGET) < 0)
		rc = -1;
	if (rc < 0)
		failed = 1;
	c->layer_rope = xcalloc(hp->n_layer, sizeof(int), &failed);
	c->x = xcalloc(nb * hp->n_embd, sizeof(float), &failed);
	c->xb = xcalloc(nb * hp->n_embd, sizeof(float), &failed);
	c->xo = xcalloc(nb * hp->n_embd, sizeof(float), &failed);
	c->qkv = xcalloc(nb * (Q + K + V), sizeof(float), &failed);
	c->q = xcalloc(nb * Q, sizeof(float), &failed);
	c->k = xcalloc(nb * K, sizeof(float), &failed);
	c->v = xcalloc(nb * V, sizeof(float), &failed);
	c->att_out = xcalloc(nb * O, sizeof(float), &failed);
	{
		struct attn_shape sh = blk_attn_shape(hp, 0);
		if (attn_scratch_init(&c->attn, &sh, pool_size(c->pool)) < 0)
			failed = 1;
	}
	c->hg = xcalloc(nb * ffmax, sizeof(float), &failed);
	c->hu = xcalloc(nb * 2 * ffmax, sizeof(float), &failed);
	if (hp->n_expert > 0) {
		size_t routed = nb * hp->n_expert_used;
		c->router = xcalloc(nb * hp->n_expert, sizeof(float), &failed);
		c->sel = xcalloc(routed, sizeof(int), &failed);
		c->selw = xcalloc(routed, sizeof(float), &failed);
		c->ex_start = xcalloc((size_t)hp->n_expert + 1, sizeof(int), &failed);
		c->ex_tok = xcalloc(routed, sizeof(int), &failed);
		c->ex_w = xcalloc(routed, sizeof(float), &failed);
		c->ex_x = xcalloc(nb * hp->n_embd, sizeof(float), &failed);
		c->ex_y = xcalloc(nb * hp->n_embd, sizeof(float), &failed);
	}
	if (!failed && rope_setup(c) < 0)
		failed = 1;
	c->rope_cs = xcalloc((size_t)(c->n_rope ? c->n_rope : 1) * nb * hp->rope_dim, sizeof(float), &failed);
	if (!failed && mm_scratch_init(&c->mm, n_batch, maxin, pool_size(c->pool)) < 0)
		failed = 1;
	if (!failed && p->exact_act && mm_scratch_exact(&c->mm, pool_size(c->pool)) < 0)
		failed = 1;
	if (failed) {
		snprintf(err, errlen, "out of memory for a context of %d tokens (cache %.1f MiB, checkpoints %.1f MiB)",
		    n_ctx, kv_cache_bytes(&c->kv) / 1048576.0, kv_snap_bytes(&c->kv) / 1048576.0);
		llm_ctx_free(c);
		return NULL;
	}
	if (blk_dn_init(c, err, errlen) < 0) {
		llm_ctx_free(c);
		return NULL;
	}
	return c;
}

struct llm_ctx *
llm_ctx_new_flags(struct llm_model *m, int n_ctx, int n_batch, int n_threads, unsigned kv_flags,
		  char *err, size_t errlen)
{
	struct llm_ctx_params p;

	llm_ctx_params_default(&p);
	p.n_ctx = n_ctx;
	p.n_batch = n_batch;
	p.n_threads = n_threads;
	return ctx_new(m, &p, kv_flags, err, errlen);
}

struct llm_ctx *
llm_ctx_new_ex(struct llm_model *m, const struct llm_ctx_params *p, char *err, size_t errlen)
{
	return ctx_new(m, p, 0, err, errlen);
}

struct llm_ctx *
llm_ctx_new(struct llm_model *m, int n_ctx, int n_batch, int n_threads, char *err, size_t errlen)
{
	return llm_ctx_new_flags(m, n_ctx, n_batch, n_threads, 0, err, errlen);
}

int llm_ctx_n_ctx(const struct llm_ctx *c) { return c->n_ctx; }
int llm_ctx_n_threads(const struct llm_ctx *c) { return pool_size(c->pool); }
unsigned long
llm_ctx_jobs(const struct llm_ctx *c, unsigned long *alone)
{
	if (alone)
		*alone = pool_jobs_alone(c->pool);
	return pool_jobs(c->pool);
}
int llm_ctx_n_past(const struct llm_ctx *c) { return c->kv.n_past; }
size_t llm_ctx_cache_bytes(const struct llm_ctx *c) { return kv_cache_bytes(&c->kv); }
size_t llm_ctx_state_bytes(const struct llm_ctx *c) { return kv_state_bytes(&c->kv); }
size_t llm_ctx_checkpoint_bytes(const struct llm_ctx *c) { return kv_snap_bytes(&c->kv); }
int llm_ctx_checkpoints(const struct llm_ctx *c, int *pos, int max) { return kv_snap_list(&c->kv, pos, max); }

int
llm_ctx_truncate(struct llm_ctx *c, int n_past)
{
	c->ckpt_pending = -1;   /* asked for the sequence that is being cut */
	return kv_cache_truncate(&c->kv, n_past);
}

int
llm_ctx_checkpoint(struct llm_ctx *c, int pos)
{
	if (c->kv.n_snap == 0)
		return 1;
	if (pos < c->kv.n_past)
		return -1;
	c->ckpt_pending = -1;
	if (pos > c->kv.n_past)
		c->ckpt_pending = pos;
	else
		kv_snap_save(&c->kv);
	return 0;
}

int
llm_ctx_cache_layer(const struct llm_ctx *c, int il, struct llm_cache_info *info)
{
	const struct kv_layer *l;

	if (il < 0 || il >= c->kv.n_layer)
		return -1;
	l = &c->kv.l[il];
	info->kind = l->kind;
	info->type = c->kv_type;
	info->slots = l->slots;
	info->oldest = l->oldest;
	info->bytes = kv_layer_bytes(l);
	return 0;
}

void
llm_ctx_set_abort(struct llm_ctx *c, llm_abort_fn fn, void *ctx)
{
	c->abort_fn = fn;
	c->abort_ctx = ctx;
	pool_set_abort(c->pool, fn, ctx);
}

/* --- the forward pass --- */

/*
 * After a stop in layer IL (or after the last layer, IL = n_layer): the
 * batch's keys and values past n_past are abandoned (a ring keeps room
 * for them); a recurrent state the batch has already advanced (in part)
 * is put back from its copy (UNDO: kv_undo_save before the batch).
 */
static int
eval_stopped(struct llm_ctx *c, int il, int undo)
{
	const struct llm_hparams *hp = &c->m->hp;

	pool_stop_clear(c->pool);
	pool_set_abort(c->pool, c->abort_fn, c->abort_ctx);
	for (int i = 0; i <= il && i < hp->n_layer; i++) {
		if (hp->layer[i].kind == LLM_LAYER_RECURRENT) {
			/* The states as the batch found them, when they were
			 * copied; else (not reached: such a batch is not
			 * stopped past its first recurrent layer) a restart. */
			if (undo)
				kv_undo_restore(&c->kv);
			else
				kv_cache_truncate(&c->kv, 0);
			break;
		}
	}
	return LLM_ESTOPPED;
}

/* Evaluates one batch of NT <= n_batch tokens.  Returns 0, or
 * LLM_ESTOPPED (n_past unchanged, or 0 when a recurrent state was
 * touched) when the abort callback says so: it is asked between layers
 * and, through the pool, between the tasks of every product and the
 * heads of the attention. */
static int
eval_batch(struct llm_ctx *c, const int32_t *tok, int nt, float *logits, int all_logits)
{
	const struct llm_model *m = c->m;
	const struct llm_hparams *hp = &m->hp;
	const struct ltensor *emb = &m->g[LLM_TENSOR_TOKEN_EMBD].w;
	const q_to_float_fn emb_to_float = q_traits_get(emb->type)->to_float_fast;
	const int E = hp->n_embd;

	for (int t = 0; t < nt; t++) {
		float *x = c->x + (size_t)t * E;
		if (emb->packed) {   /* the row as in the file, in xo's room (unused until the first block) */
			q_unpack_row(emb->type, emb->data, emb->ne1, emb->row_bytes, emb->packed, tok[t], c->xo);
			emb_to_float((const uint8_t *)c->xo, x, E);
		} else {
			emb_to_float((const uint8_t *)emb->data + (size_t)tok[t] * emb->row_bytes, x, E);
		}
		if (hp->embd_scale != 1.0f)
			for (int i = 0; i < E; i++)
				x[i] *= hp->embd_scale;
	}
	c->pos0 = c->kv.n_past;
	blk_rope_prepare(c, nt);
	/* A recurrent state moves as soon as its layer runs: a batch may stop
	 * after one only if the states it started from can be put back.  The
	 * copy is made for batches long enough that it costs nothing beside
	 * them; smaller ones stop only before their first recurrent layer (the
	 * pool is not asked to stop from there on: GUARD). */
	const int undo = c->kv.undo && nt >= LLM_ABORT_COPY_MIN;
	const int guard = !undo && c->first_recurrent < hp->n_layer;
	if (undo)
		kv_undo_save(&c->kv);
	pool_stop_clear(c->pool);
	c->out_first = !logits ? nt : all_logits ? 0 : nt - 1;
	for (int il = 0; il < hp->n_layer; il++) {
		if (pool_poll(c->pool))
			return eval_stopped(c, il - 1, undo);
		if (guard && il == c->first_recurrent)
			pool_set_abort(c->pool, NULL, NULL);
		if (m->arch->block)
			m->arch->block(c, il, nt);
		else
			blk_layer(c, il, nt);
	}
	if (pool_poll(c->pool))
		return eval_stopped(c, hp->n_layer, undo);
	if (logits) {
		int first = c->out_first, rows = nt - first;
		blk_rmsnorm(c->xb, c->x + (size_t)first * E, &m->g[LLM_TENSOR_OUTPUT_NORM], rows, E, hp->rms_eps);
		blk_mm(c, logits, c->xb, &m->g[LLM_TENSOR_OUTPUT], -1, rows);
		blk_softcap(logits, (size_t)rows * hp->n_vocab, hp->final_softcap);
		/* Stopped in the output product: LOGITS are partly unwritten. */
		if (pool_stopped(c->pool))
			return eval_stopped(c, hp->n_layer, undo);
	}
	if (guard)
		pool_set_abort(c->pool, c->abort_fn, c->abort_ctx);
	c->kv.n_past += nt;
	return 0;
}

/* The index of the first NaN of X[0..N), or -1. */
static ptrdiff_t
first_nan(const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (isnan(x[i]))
			return (ptrdiff_t)i;
	return -1;
}

int
llm_eval(struct llm_ctx *c, const int32_t *tokens, int n, float *logits, int all_logits,
	 char *err, size_t errlen)
{
	const struct llm_hparams *hp = &c->m->hp;
	ptrdiff_t at;

	if (n <= 0)
		return 0;
	if (n > c->n_ctx - c->kv.n_past) {
		snprintf(err, errlen, "context full: %d tokens do not fit after %d of %d positions", n,
		    c->kv.n_past, c->n_ctx);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (tokens[i] < 0 || tokens[i] >= hp->n_vocab) {
			snprintf(err, errlen, "token id %d is out of range (the model has %d tokens)",
			    tokens[i], hp->n_vocab);
			return -1;
		}
	}
	for (int i = 0, nt; i < n; i += nt) {
		float *lg = NULL;
		nt = n - i < c->n_batch ? n - i : c->n_batch;
		/* A checkpoint asked for inside this batch ends it there. */
		if (c->ckpt_pending > c->kv.n_past && c->ckpt_pending < c->kv.n_past + nt)
			nt = c->ckpt_pending - c->kv.n_past;
		if (logits)
			lg = all_logits ? logits + (size_t)i * hp->n_vocab : (i + nt == n ? logits : NULL);
		if (eval_batch(c, tokens + i, nt, lg, all_logits) < 0) {
			snprintf(err, errlen, "evaluation stopped");
			return LLM_ESTOPPED;
		}
		if (lg && (at = first_nan(lg, (size_t)(all_logits ? nt : 1) * hp->n_vocab)) >= 0) {
			/* Sampled, a NaN reads as the least likely token: a reply of
			 * noise with no error.  The cache holds the batch; callers
			 * go back as on any error. */
			const int row = all_logits ? (int)(at / hp->n_vocab) : nt - 1;
			snprintf(err, errlen, "the model's output at position %d is not a number (its weights, or an "
			    "adapter's at this scale, overflow float)", c->kv.n_past - nt + row);
			return -1;
		}
		if (c->ckpt_pending == c->kv.n_past) {
			kv_snap_save(&c->kv);
			c->ckpt_pending = -1;
		}
	}
	return 0;
}

/* --- LoRA adapters --- */

/* The bound weight named NAME ("blk.3.attn_q.weight", "output.weight") that
 * the forward pass multiplies, or NULL; *WHY says why not. */
static const struct lweight *
adapted_weight(const struct llm_model *m, const char *name, const char **why)
{
	char buf[128];
	int layer = -1;

	*why = "which this model does not have";
	if (strncmp(name, "blk.", 4) == 0) {
		char *end;
		long l = strtol(name + 4, &end, 10);
		if (end == name + 4 || *end != '.' || l < 0 || l >= m->hp.n_layer)
			return NULL;
		layer = (int)l;
	}
	for (int r = layer < 0 ? 0 : LLM_TENSOR_LAYER_FIRST; r < (layer < 0 ? LLM_TENSOR_LAYER_FIRST : LLM_TENSOR_COUNT);
	    r++) {
		const struct lweight *w;
		if (layer >= 0)
			snprintf(buf, sizeof(buf), llm_tensor_name(r), layer);
		else
			snprintf(buf, sizeof(buf), "%s", llm_tensor_name(r));
		if (strlen(buf) + 7 >= sizeof(buf))
			continue;
		strcat(buf, ".weight");
		if (strcmp(buf, name) != 0)
			continue;
		w = layer >= 0 ? &m->layers[layer].t[r] : &m->g[r];
		if (r == LLM_TENSOR_TOKEN_EMBD) {
			*why = "which is looked up by token, not multiplied: natter applies adapters to weight products";
			return NULL;
		}
		if (!w->w.data || (r == LLM_TENSOR_OUTPUT && w->w.data == m->g[LLM_TENSOR_TOKEN_EMBD].w.data))
			return NULL;   /* absent, or the output tied to the embeddings */
		if (w->w.ne2 != 1 || w->w.ne1 < 2) {
			*why = "which is not a single matrix";
			return NULL;
		}
		return w;
	}
	return NULL;
}

int
llm_ctx_set_adapters(struct llm_ctx *c, const struct lora_adapter *const *adapters, const float *scales, int n,
		     char *err, size_t errlen)
{
	const struct llm_model *m = c->m;
	const size_t n_slots = LORA_SLOT(m->hp.n_layer, 0);
	const struct lora_use **at = NULL;
	struct lora_use *uses = NULL;
	const struct lora_adapter **set = NULL;
	float *sc = NULL, *t = NULL;
	int n_uses = 0, n_set = 0, rank_max = 0, same;

	for (int i = 0; i < n; i++) {
		if (!adapters[i] || !isfinite(scales[i])) {
			snprintf(err, errlen, "adapter %d: %s", i + 1, adapters[i] ? "the scale is not a finite number" :
			    "missing");
			return -1;
		}
		if (scales[i] != 0.0f)
			n_uses += lora_count(adapters[i]);
	}
	/* The same adapters at the same scales: the cache stays valid. */
	same = 1;
	for (int i = 0, k = 0; i < n && same; i++) {
		if (scales[i] == 0.0f)
			continue;
		same = k < c->n_lora_set && c->lora_set[k] == adapters[i] && c->lora_scale[k] == scales[i];
		k++;
	}
	if (same) {
		int k = 0;
		for (int i = 0; i < n; i++)
			k += scales[i] != 0.0f;
		if (k == c->n_lora_set)
			return 0;
	}
	if (n_uses > 0) {
		at = calloc(n_slots, sizeof(*at));
		uses = calloc((size_t)n_uses, sizeof(*uses));
		set = calloc((size_t)n, sizeof(*set));
		sc = calloc((size_t)n, sizeof(*sc));
		if (!at || !uses || !set || !sc) {
			snprintf(err, errlen, "out of memory for the adapters");
			goto fail;
		}
	}
	n_uses = 0;
	for (int i = 0; i < n; i++) {
		const struct lora_adapter *ad = adapters[i];
		const float alpha = lora_alpha(ad);
		if (scales[i] == 0.0f)
			continue;
		if (strcmp(lora_arch(ad), m->hp.arch_name) != 0) {
			snprintf(err, errlen, "%s: the adapter is for architecture '%s' but the model is '%s'", lora_path(ad),
			    lora_arch(ad), m->hp.arch_name);
			goto fail;
		}
		for (int k = 0; k < lora_count(ad); k++) {
			const struct lora_pair *p = lora_get(ad, k);
			const char *why;
			const struct lweight *w = adapted_weight(m, p->base, &why);
			struct lora_use *u = &uses[n_uses++];
			const struct lora_use **slot;
			if (!w) {
				snprintf(err, errlen, "%s: the adapter changes %s, %s", lora_path(ad), p->base, why);
				goto fail;
			}
			if (w->w.ne0 != p->n_in || w->w.ne1 != p->n_out) {
				snprintf(err, errlen, "%s: '%s' is adapted as %d x %d but the model's is %lld x %lld "
				    "(the adapter was opened for another model)", lora_path(ad), p->base, p->n_out, p->n_in,
				    (long long)w->w.ne1, (long long)w->w.ne0);
				goto fail;
			}
			u->a = p->a;
			u->b = p->b;
			u->rank = p->rank;
			u->scale = alpha != 0.0f ? scales[i] * alpha / (float)p->rank : scales[i];
			if (p->rank > rank_max)
				rank_max = p->rank;
			/* Appended: the adapters add in the order given. */
			for (slot = &at[LORA_SLOT(w->layer, w->role)]; *slot; slot = &((struct lora_use *)*slot)->next)
				;   /* (the list lives in USES, which is ours to change) */
			*slot = u;
		}
		set[n_set] = ad;
		sc[n_set++] = scales[i];
	}
	if (rank_max > 0) {
		t = malloc((size_t)pool_size(c->pool) * c->n_batch * rank_max * sizeof(float));
		if (!t) {
			snprintf(err, errlen, "out of memory for the adapters' scratch (rank %d)", rank_max);
			goto fail;
		}
	}
	free(c->lora_at);
	free(c->lora_uses);
	free(c->lora_t);
	free(c->lora_set);
	free(c->lora_scale);
	c->lora_at = at;
	c->lora_uses = uses;
	c->n_lora_uses = n_uses;
	c->lora_t = t;
	c->lora_rank_max = rank_max;
	c->lora_set = set;
	c->lora_scale = sc;
	c->n_lora_set = n_set;
	/* Every cached key and value was computed with the old weights. */
	kv_cache_truncate(&c->kv, 0);
	return 1;
fail:
	free(at);
	free(uses);
	free(set);
	free(sc);
	free(t);
	return -1;
}

int llm_ctx_n_adapters(const struct llm_ctx *c) { return c->n_lora_set; }
int llm_ctx_n_adapted(const struct llm_ctx *c) { return c->n_lora_uses; }
