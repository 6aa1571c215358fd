/* test-hybrid.c -- Qwen3.5 hybrids: files accepted and refused (MTP blocks, layer patterns), checkpoints, regeneration, a chat of ten turns. */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include "natter/chat.h"
#include "natter/gguf-write.h"
#include "natter/llm.h"
#include "llm/blocks-dn.h"
#include "llm/model.h"
#include "test.h"

/* --- a small qwen35 file written here --- */

/* n_embd, vocabulary, heads, head_dim, n_ff; DeltaNet H_k, H_v, Dk, conv. */
enum { E = 64, NV = 300, NH = 2, NKV = 1, HD = 32, FF = 96, HK = 2, HV = 4, DK = 16, DC = 4, ROT = 8 };

/* What to write; zero fields take the defaults of a sound file. */
struct qfile {
	int n_layer;            /* blocks that run (4) */
	int nextn;              /* MTP blocks after them */
	int interval;           /* full_attention_interval; 0: the key is absent */
	const int *rec;         /* attention.recurrent_layers, N_REC flags, or NULL */
	int n_rec;
	int inner;              /* ssm.inner_size (HV * DK) */
	int group;              /* ssm.group_count (HK) */
	const char *drop;       /* a tensor left out */
	const char *short_one;  /* a tensor written one row short */
	int no_ssm_key;         /* leave ssm.state_size out */
	int zero_interval;      /* write full_attention_interval 0 */
	int nextn_key;          /* write nextn_predict_layers this (0: nextn) */
};

struct fill {
	uint64_t seed;
	size_t n;
	int kind;               /* 0 matrix, 1 norm (1 + small), 2 ssm_a (negative), 3 small */
	float scale;
};

static int
fill_fn(void *ctx, void *buf, size_t nbytes)
{
	const struct fill *f = ctx;
	float *p = buf;
	uint64_t s = f->seed | 1;

	for (size_t i = 0; i < nbytes / sizeof(float); i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		float u = (float)((s >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
		p[i] = f->kind == 1 ? 1.0f + 0.2f * u : f->kind == 2 ? -expf(u) : u * f->scale;
	}
	return 0;
}

/* FNV-1a: every tensor's values follow from its name alone, so that two
 * files share the tensors they have in common whatever else they hold. */
static uint64_t
name_seed(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return h;
}

struct writer {
	struct gguf_writer *w;
	struct fill fills[512];
	int n;
	const struct qfile *q;
};

static void
tensor(struct writer *wr, const char *name, int64_t n0, int64_t n1, int kind)
{
	uint64_t ne[2] = { (uint64_t)n0, (uint64_t)n1 };
	struct fill *f = &wr->fills[wr->n++];

	if (wr->q->drop && !strcmp(wr->q->drop, name))
		return;
	if (wr->q->short_one && !strcmp(wr->q->short_one, name))
		ne[n1 > 1 ? 1 : 0]--;
	f->seed = name_seed(name);
	f->n = (size_t)ne[0] * ne[1];
	f->kind = kind;
	f->scale = kind == 3 ? 0.5f : 1.5f / sqrtf((float)n0);
	gguf_w_tensor(wr->w, name, GGML_TYPE_F32, n1 == 1 ? 1 : 2, ne, NULL, fill_fn, f);
}

/* Whether layer IL of Q is recurrent. */
static int
is_rec(const struct qfile *q, int il)
{
	if (q->rec)
		return il < q->n_rec && q->rec[il];
	return (il + 1) % (q->interval > 0 ? q->interval : 4) != 0;
}

static void
attention_tensors(struct writer *wr, int il)
{
	char n[96];
#define T(s, a, b, k) (snprintf(n, sizeof(n), "blk.%d." s, il), tensor(wr, n, (a), (b), (k)))
	T("attn_q.weight", E, 2 * NH * HD, 0);
	T("attn_k.weight", E, NKV * HD, 0);
	T("attn_v.weight", E, NKV * HD, 0);
	T("attn_q_norm.weight", HD, 1, 1);
	T("attn_k_norm.weight", HD, 1, 1);
	T("attn_output.weight", NH * HD, E, 0);
#undef T
}

static int
write_qwen35(const char *path, const struct qfile *q0)
{
	static char tokbuf[NV][16];
	const char *toks[NV];
	int32_t types[NV];
	float scores[NV];
	struct qfile q = *q0;
	struct writer wr = { gguf_writer_new(32), { { 0 } }, 0, &q };
	char err[256], n[96];
	int rc;

	if (!q.n_layer)
		q.n_layer = 4;
	if (!q.inner)
		q.inner = HV * DK;
	if (!q.group)
		q.group = HK;
	for (int i = 0; i < NV; i++) {
		types[i] = 1;
		scores[i] = -(float)i;
		if (i == 0) { snprintf(tokbuf[i], 16, "<unk>"); types[i] = 2; }
		else if (i == 1) { snprintf(tokbuf[i], 16, "<s>"); types[i] = 3; }
		else if (i == 2) { snprintf(tokbuf[i], 16, "</s>"); types[i] = 3; }
		else if (i < 259) { snprintf(tokbuf[i], 16, "<0x%02X>", i - 3); types[i] = 6; }
		else snprintf(tokbuf[i], 16, "\xe2\x96\x81w%d", i);
		toks[i] = tokbuf[i];
	}
	gguf_w_str(wr.w, "general.architecture", "qwen35");
	gguf_w_u32(wr.w, "qwen35.block_count", (uint32_t)(q.n_layer + q.nextn));
	gguf_w_u32(wr.w, "qwen35.context_length", 512);
	gguf_w_u32(wr.w, "qwen35.embedding_length", E);
	gguf_w_u32(wr.w, "qwen35.feed_forward_length", FF);
	gguf_w_u32(wr.w, "qwen35.attention.head_count", NH);
	gguf_w_u32(wr.w, "qwen35.attention.head_count_kv", NKV);
	{
		const int32_t sec[4] = { 11, 11, 10, 0 };
		gguf_w_arr(wr.w, "qwen35.rope.dimension_sections", GGUF_VT_INT32, sec, 4);
	}
	gguf_w_f32(wr.w, "qwen35.rope.freq_base", 1e7f);
	gguf_w_f32(wr.w, "qwen35.attention.layer_norm_rms_epsilon", 1e-6f);
	gguf_w_u32(wr.w, "qwen35.attention.key_length", HD);
	gguf_w_u32(wr.w, "qwen35.attention.value_length", HD);
	gguf_w_u32(wr.w, "qwen35.ssm.conv_kernel", DC);
	if (!q.no_ssm_key)
		gguf_w_u32(wr.w, "qwen35.ssm.state_size", DK);
	gguf_w_u32(wr.w, "qwen35.ssm.group_count", (uint32_t)q.group);
	gguf_w_u32(wr.w, "qwen35.ssm.time_step_rank", HV);
	gguf_w_u32(wr.w, "qwen35.ssm.inner_size", (uint32_t)q.inner);
	if (q.interval >= 0 && !q.rec)
		gguf_w_u32(wr.w, "qwen35.full_attention_interval",
		    q.zero_interval ? 0 : (uint32_t)(q.interval ? q.interval : 4));
	if (q.rec) {
		uint8_t b[64];
		for (int i = 0; i < q.n_rec; i++)
			b[i] = (uint8_t)q.rec[i];
		gguf_w_arr(wr.w, "qwen35.attention.recurrent_layers", GGUF_VT_BOOL, b, (uint64_t)q.n_rec);
	}
	gguf_w_u32(wr.w, "qwen35.rope.dimension_count", ROT);
	if (q.nextn || q.nextn_key)
		gguf_w_u32(wr.w, "qwen35.nextn_predict_layers", (uint32_t)(q.nextn_key ? q.nextn_key : q.nextn));
	gguf_w_str(wr.w, "tokenizer.ggml.model", "llama");
	gguf_w_arr_str(wr.w, "tokenizer.ggml.tokens", toks, NV);
	gguf_w_arr(wr.w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, NV);
	gguf_w_arr(wr.w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, NV);
	gguf_w_u32(wr.w, "tokenizer.ggml.bos_token_id", 1);
	gguf_w_u32(wr.w, "tokenizer.ggml.eos_token_id", 2);

	tensor(&wr, "token_embd.weight", E, NV, 3);
	tensor(&wr, "output_norm.weight", E, 1, 1);
	tensor(&wr, "output.weight", E, NV, 0);
	for (int il = 0; il < q.n_layer + q.nextn; il++) {
		const int cd = 2 * q.group * DK + q.inner;
#define T(s, a, b, k) (snprintf(n, sizeof(n), "blk.%d." s, il), tensor(&wr, n, (a), (b), (k)))
		T("attn_norm.weight", E, 1, 1);
		T("post_attention_norm.weight", E, 1, 1);
		T("ffn_gate.weight", E, FF, 0);
		T("ffn_up.weight", E, FF, 0);
		T("ffn_down.weight", FF, E, 0);
		if (il >= q.n_layer) {
			attention_tensors(&wr, il);
			T("nextn.eh_proj.weight", 2 * E, E, 0);
			T("nextn.enorm.weight", E, 1, 1);
			T("nextn.hnorm.weight", E, 1, 1);
			T("nextn.shared_head_norm.weight", E, 1, 1);
		} else if (is_rec(&q, il)) {
			T("attn_qkv.weight", E, cd, 0);
			T("attn_gate.weight", E, q.inner, 0);
			T("ssm_conv1d.weight", DC, cd, 3);
			T("ssm_alpha.weight", E, HV, 0);
			T("ssm_beta.weight", E, HV, 0);
			T("ssm_norm.weight", DK, 1, 1);
			T("ssm_out.weight", q.inner, E, 0);
			snprintf(n, sizeof(n), "blk.%d.ssm_a", il);
			tensor(&wr, n, HV, 1, 2);
			snprintf(n, sizeof(n), "blk.%d.ssm_dt.bias", il);
			tensor(&wr, n, HV, 1, 3);
		} else {
			attention_tensors(&wr, il);
		}
#undef T
	}
	rc = gguf_writer_write(wr.w, path, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "%s\n", err);
	gguf_writer_free(wr.w);
	return rc;
}

static char tmpdir[] = "/tmp/natter-hybrid-XXXXXX";

static const char *
tmp_path(const char *name)
{
	static char buf[8][256];
	static int k;
	k = (k + 1) % 8;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
	return buf[k];
}

static void
make_tokens(int32_t *t, int n, uint64_t s)
{
	for (int i = 0; i < n; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		t[i] = 3 + (int32_t)((s >> 33) % (NV - 3));
	}
}

static double
max_diff(const float *a, const float *b, size_t n)
{
	double d = 0;
	for (size_t i = 0; i < n; i++) {
		double e = fabs((double)a[i] - b[i]);
		if (e > d || isnan(e))
			d = isnan(e) ? INFINITY : e;
	}
	return d;
}

/* All logits of TOKS[0..N) in a fresh session, in batches of BATCH. */
static float *
logits_all(struct llm_model *m, const int32_t *toks, int n, int batch)
{
	char err[256];
	struct llm_ctx *c = llm_ctx_new(m, 256, batch, 2, err, sizeof(err));
	float *lg = malloc((size_t)n * NV * sizeof(float));
	int rc = c && lg ? llm_eval(c, toks, n, lg, 1, err, sizeof(err)) : -1;

	CHECK(rc == 0, "eval: %s", c ? err : "no session");
	llm_ctx_free(c);
	if (rc) {
		free(lg);
		return NULL;
	}
	return lg;
}

/* The last token's logits alone (the last layer's FFN, and its attention
 * when it has any, for that token only: blk_out_first) against every
 * token's, in the same batches of 16, then one more token: the states and
 * caches must be the same, bit for bit. */
static void
last_only(const char *label, struct llm_model *m, const int32_t *toks, int n)
{
	char err[256] = "";
	struct llm_ctx *a = llm_ctx_new(m, 256, 16, 2, err, sizeof(err));
	struct llm_ctx *b = a ? llm_ctx_new(m, 256, 16, 2, err, sizeof(err)) : NULL;
	float *all = malloc((size_t)n * NV * sizeof(float)), *last = malloc(NV * sizeof(float));
	float *na = malloc(NV * sizeof(float)), *nb = malloc(NV * sizeof(float));
	double d1 = INFINITY, d2 = INFINITY;

	if (a && b && llm_eval(a, toks, n - 1, last, 0, err, sizeof(err)) == 0 &&
	    llm_eval(b, toks, n - 1, all, 1, err, sizeof(err)) == 0) {
		d1 = max_diff(last, all + (size_t)(n - 2) * NV, NV);
		if (llm_eval(a, toks + n - 1, 1, na, 0, err, sizeof(err)) == 0 &&
		    llm_eval(b, toks + n - 1, 1, nb, 0, err, sizeof(err)) == 0)
			d2 = max_diff(na, nb, NV);
	}
	CHECK(d1 < 1e-4 && d2 == 0, "%s: last logits only: the last token's differ by %g, the next token's by %g (%s)",
	    label, d1, d2, err);
	llm_ctx_free(a);
	llm_ctx_free(b);
	free(all);
	free(last);
	free(na);
	free(nb);
}

/* --- files: the MTP block, layer patterns, refusals --- */

static void
test_files(void)
{
	struct llm_model *m = NULL, *mm = NULL;
	char err[512];
	int32_t toks[40];
	const struct llm_hparams *hp;

	make_tokens(toks, 40, 7);
	/* The same four layers with and without an MTP block after them. */
	CHECK(write_qwen35(tmp_path("plain.gguf"), &(struct qfile){ 0 }) == 0, "write plain");
	CHECK(write_qwen35(tmp_path("mtp.gguf"), &(struct qfile){ .nextn = 1 }) == 0, "write mtp");
	CHECK(llm_model_load(tmp_path("plain.gguf"), &m, err, sizeof(err)) == 0, "plain: %s", err);
	CHECK(llm_model_load(tmp_path("mtp.gguf"), &mm, err, sizeof(err)) == 0, "mtp: %s", err);
	if (m && mm) {
		float *a = logits_all(m, toks, 40, 16), *b = logits_all(mm, toks, 40, 16);
		hp = llm_model_hparams(mm);
		CHECK(hp->n_layer == 4 && hp->n_layer_mtp == 1 && (hp->layer[4].flags & LLM_LAYER_MTP) &&
		    hp->layer[4].kind == LLM_LAYER_FULL, "MTP: 4 layers run, block 4 is the MTP head (%d, %d)",
		    hp->n_layer, hp->n_layer_mtp);
		CHECK(mm->layers[4].t[LLM_TENSOR_NEXTN_EH_PROJ].w.data && mm->layers[4].t[LLM_TENSOR_ATTN_Q].w.data &&
		    !mm->layers[4].t[LLM_TENSOR_NEXTN_EMBED_TOKENS].w.data, "the MTP block's tensors are bound");
		for (int il = 0; il < 4; il++)
			CHECK((hp->layer[il].kind == LLM_LAYER_RECURRENT) == (il != 3), "layer %d kind %d", il, hp->layer[il].kind);
		CHECK(a && b && max_diff(a, b, (size_t)40 * NV) == 0, "the MTP block changes no logit (max |d| %g)",
		    a && b ? max_diff(a, b, (size_t)40 * NV) : -1.0);
		free(a);
		free(b);
	}
	llm_model_free(mm);
	mm = NULL;
	/* attention.recurrent_layers overrides the interval: attention at 0
	 * and 2.  The pattern changes the logits. */
	{
		static const int rec[4] = { 0, 1, 0, 1 };
		CHECK(write_qwen35(tmp_path("arr.gguf"), &(struct qfile){ .rec = rec, .n_rec = 4 }) == 0, "write arr");
		CHECK(llm_model_load(tmp_path("arr.gguf"), &mm, err, sizeof(err)) == 0, "arr: %s", err);
		if (mm && m) {
			float *a = logits_all(m, toks, 40, 16), *b = logits_all(mm, toks, 40, 16);
			hp = llm_model_hparams(mm);
			CHECK(hp->layer[0].kind == LLM_LAYER_FULL && hp->layer[1].kind == LLM_LAYER_RECURRENT &&
			    hp->layer[2].kind == LLM_LAYER_FULL && hp->layer[3].kind == LLM_LAYER_RECURRENT,
			    "recurrent_layers read as the pattern");
			CHECK(a && b && max_diff(a, b, (size_t)40 * NV) > 1e-3, "another pattern, other logits");
			free(a);
			free(b);
			/* A recurrent last layer, then an attention one. */
			last_only("recurrent last layer", mm, toks, 40);
			last_only("attention last layer", m, toks, 40);
		}
		llm_model_free(mm);
		mm = NULL;
	}
	/* full_attention_interval 2: attention at 1 and 3. */
	CHECK(write_qwen35(tmp_path("i2.gguf"), &(struct qfile){ .interval = 2 }) == 0, "write i2");
	CHECK(llm_model_load(tmp_path("i2.gguf"), &mm, err, sizeof(err)) == 0, "i2: %s", err);
	if (mm) {
		hp = llm_model_hparams(mm);
		CHECK(hp->layer[0].kind == LLM_LAYER_RECURRENT && hp->layer[1].kind == LLM_LAYER_FULL &&
		    hp->layer[2].kind == LLM_LAYER_RECURRENT && hp->layer[3].kind == LLM_LAYER_FULL, "interval 2");
	}
	llm_model_free(mm);
	mm = NULL;
	/* No interval key: 4. */
	CHECK(write_qwen35(tmp_path("i0.gguf"), &(struct qfile){ .interval = -1 }) == 0, "write i0");
	CHECK(llm_model_load(tmp_path("i0.gguf"), &mm, err, sizeof(err)) == 0 &&
	    llm_model_hparams(mm)->layer[3].kind == LLM_LAYER_FULL && llm_model_hparams(mm)->layer[2].kind ==
	    LLM_LAYER_RECURRENT, "without full_attention_interval every 4th layer is attention: %s", err);
	llm_model_free(mm);
	mm = NULL;
	llm_model_free(m);

	/* Bad files: each refused with its own message naming the problem. */
	{
		static const int rec_mtp[5] = { 1, 1, 1, 0, 1 };
		static const int rec_short[3] = { 1, 1, 1 };
		static const struct {
			struct qfile q;
			const char *want;
		} bad[] = {
			{ { .nextn = 1, .drop = "blk.4.nextn.eh_proj.weight" }, "blk.4.nextn.eh_proj.weight is missing" },
			{ { .nextn = 1, .short_one = "blk.4.nextn.enorm.weight" }, "blk.4.nextn.enorm.weight has shape" },
			{ { .nextn = 1, .drop = "blk.4.attn_q.weight" }, "blk.4.attn_q.weight is missing" },
			{ { .nextn = 1, .nextn_key = 5 }, "nextn_predict_layers 5 leaves no layer" },
			{ { .nextn = 1, .rec = rec_mtp, .n_rec = 5 }, "multi-token-prediction block" },
			{ { .rec = rec_short, .n_rec = 3 }, "one flag per layer" },
			{ { .inner = HV * DK * 2 }, "head_v_dim must equal state_size" },
			{ { .inner = HV * DK + 1 }, "head_v_dim must equal state_size" },
			{ { .group = 3 }, "not a multiple of the key head count" },
			{ { .no_ssm_key = 1 }, "missing hyperparameter qwen35.ssm.state_size" },
			{ { .drop = "blk.0.ssm_a" }, "blk.0.ssm_a is missing" },
			{ { .drop = "blk.1.ssm_dt.bias" }, "blk.1.ssm_dt.bias is missing" },
			{ { .short_one = "blk.2.ssm_conv1d.weight" }, "blk.2.ssm_conv1d.weight has shape" },
			{ { .short_one = "blk.3.attn_q.weight" }, "blk.3.attn_q.weight has shape" },
			{ { .drop = "blk.3.post_attention_norm.weight" }, "post_attention_norm.weight is missing" },
			{ { .zero_interval = 1 }, "full_attention_interval is 0" },
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			const char *p = tmp_path("bad.gguf");
			err[0] = 0;
			CHECK(write_qwen35(p, &bad[i].q) == 0, "write bad %zu", i);
			m = NULL;
			CHECK(llm_model_load(p, &m, err, sizeof(err)) < 0 && !m && strstr(err, bad[i].want) &&
			    strstr(err, p), "bad file %zu refused with \"%s\": %s", i, bad[i].want, err);
			llm_model_free(m);
			unlink(p);
		}
	}
	/* Interval 1: every layer gated attention, no recurrent state. */
	{
		const char *p = tmp_path("att.gguf");
		struct llm_ctx *c = NULL;
		float lg[NV];
		CHECK(write_qwen35(p, &(struct qfile){ .interval = 1 }) == 0, "write interval 1");
		m = NULL;
		CHECK(llm_model_load(p, &m, err, sizeof(err)) == 0, "interval 1: %s", err);
		if (m)
			c = llm_ctx_new(m, 64, 16, 1, err, sizeof(err));
		CHECK(c && llm_eval(c, toks, 20, lg, 0, err, sizeof(err)) == 0 && llm_ctx_state_bytes(c) == 0 &&
		    llm_ctx_checkpoint_bytes(c) == 0 && llm_ctx_checkpoint(c, 20) == 1 && llm_ctx_truncate(c, 7) == 7,
		    "all attention: runs, no state, nothing to checkpoint, truncates anywhere: %s", err);
		llm_ctx_free(c);
		llm_model_free(m);
		unlink(p);
	}
	unlink(tmp_path("plain.gguf"));
	unlink(tmp_path("mtp.gguf"));
	unlink(tmp_path("arr.gguf"));
	unlink(tmp_path("i2.gguf"));
	unlink(tmp_path("i0.gguf"));
}

/* --- checkpoints: truncation goes back to them, exactly --- */

static void
test_checkpoints(void)
{
	struct llm_model *m = NULL;
	struct llm_ctx *c = NULL, *f = NULL;
	char err[512];
	int32_t toks[120];
	int pos[16], n;
	float *a = malloc((size_t)60 * NV * sizeof(float)), *b = malloc((size_t)60 * NV * sizeof(float));
	float *one = malloc((size_t)60 * NV * sizeof(float));

	make_tokens(toks, 120, 99);
	CHECK(write_qwen35(tmp_path("ck.gguf"), &(struct qfile){ 0 }) == 0, "write");
	CHECK(llm_model_load(tmp_path("ck.gguf"), &m, err, sizeof(err)) == 0, "load: %s", err);
	if (m)
		c = llm_ctx_new(m, 256, 64, 2, err, sizeof(err));
	CHECK(c != NULL, "session: %s", err);
	if (!c || !a || !b || !one)
		goto out;
	/* 3 recurrent layers of (3 x 128 conv rows + 4 x 16 x 16) floats; 8
	 * slots (small states) and the undo copy. */
	CHECK(llm_ctx_state_bytes(c) == 3 * (3 * 128 + 4 * 16 * 16) * sizeof(float), "state bytes %zu",
	    llm_ctx_state_bytes(c));
	CHECK(llm_ctx_checkpoint_bytes(c) == (LLM_CHECKPOINT_SLOTS + 1) * llm_ctx_state_bytes(c), "checkpoint bytes %zu",
	    llm_ctx_checkpoint_bytes(c));
	CHECK(llm_ctx_cache_bytes(c) == llm_ctx_state_bytes(c) + (size_t)256 * 2 * NKV * HD * 2 /* F16 KV */,
	    "cache bytes %zu: one attention layer's F16 KV and the states", llm_ctx_cache_bytes(c));

	/* A prompt of 30 with a checkpoint before its last token (asked
	 * ahead: the evaluation ends a batch there), a reply of 20, one at
	 * 50, ten more tokens. */
	CHECK(llm_ctx_checkpoint(c, 29) == 0 && llm_ctx_checkpoints(c, pos, 16) == 0, "asked ahead, none yet");
	CHECK(llm_eval(c, toks, 30, NULL, 0, err, sizeof(err)) == 0, "prompt: %s", err);
	CHECK(llm_ctx_checkpoints(c, pos, 16) == 1 && pos[0] == 29, "the prompt left one at 29");
	CHECK(llm_eval(c, toks + 30, 20, NULL, 0, err, sizeof(err)) == 0 && llm_ctx_checkpoint(c, 50) == 0,
	    "reply: %s", err);
	CHECK(llm_ctx_checkpoint(c, 49) == -1, "a checkpoint cannot be taken in the past");
	CHECK(llm_eval(c, toks + 50, 10, NULL, 0, err, sizeof(err)) == 0, "more: %s", err);
	n = llm_ctx_checkpoints(c, pos, 16);
	CHECK(n == 2 && pos[0] == 29 && pos[1] == 50, "checkpoints at 29 and 50 (%d)", n);
	CHECK(llm_ctx_truncate(c, 60) == 60 && llm_ctx_n_past(c) == 60, "staying put keeps everything");
	CHECK(llm_ctx_truncate(c, 55) == 50 && llm_ctx_n_past(c) == 50, "back to 55: the checkpoint at 50");
	CHECK(llm_ctx_checkpoints(c, pos, 16) == 2, "both checkpoints stay");
	CHECK(llm_ctx_truncate(c, 49) == 29, "back to 49: the checkpoint at 29");
	CHECK(llm_ctx_checkpoints(c, pos, 16) == 1 && pos[0] == 29, "the one at 50 is gone (what follows 29 will differ)");

	/* Regenerate from 29: the last prompt token and another reply.  The
	 * same batches in a fresh session give the same logits bit for bit;
	 * the whole sequence in one batch, the same to rounding. */
	memcpy(toks + 30, toks + 70, 30 * sizeof(int32_t));
	CHECK(llm_eval(c, toks + 29, 31, a, 1, err, sizeof(err)) == 0, "regenerate: %s", err);
	f = llm_ctx_new(m, 256, 64, 2, err, sizeof(err));
	CHECK(f && llm_eval(f, toks, 29, NULL, 0, err, sizeof(err)) == 0 &&
	    llm_eval(f, toks + 29, 31, b, 1, err, sizeof(err)) == 0, "fresh: %s", err);
	CHECK(max_diff(a, b, (size_t)31 * NV) == 0, "after the checkpoint: the logits of a fresh session, bit for bit "
	    "(max |d| %g)", max_diff(a, b, (size_t)31 * NV));
	llm_ctx_truncate(f, 0);
	CHECK(f && llm_eval(f, toks, 60, one, 1, err, sizeof(err)) == 0, "one batch: %s", err);
	CHECK(max_diff(a, one + (size_t)29 * NV, (size_t)31 * NV) < 1e-4, "and of one batch, to "
	    "rounding (max |d| %g)", max_diff(a, one + (size_t)29 * NV, (size_t)31 * NV));
	/* Forcing either form of the delta rule on any batch: the same to rounding. */
	for (int mode = 0; mode < 2; mode++) {
		llm_ctx_truncate(f, 0);
		blk_dn_force_mode(f, mode);
		CHECK(llm_eval(f, toks, 7, NULL, 0, err, sizeof(err)) == 0 &&
		    llm_eval(f, toks + 7, 53, b + (size_t)7 * NV, 1, err, sizeof(err)) == 0, "forced: %s", err);
		CHECK(max_diff(one + (size_t)7 * NV, b + (size_t)7 * NV, (size_t)53 * NV) < 1e-4,
		    "the delta rule %s on every batch agrees (max |d| %g)", mode ? "chunked" : "recurrent",
		    max_diff(one + (size_t)7 * NV, b + (size_t)7 * NV, (size_t)53 * NV));
	}
	blk_dn_force_mode(f, -1);

	/* No checkpoint at or before the position: back to 0, states zero. */
	CHECK(llm_ctx_truncate(c, 20) == 0 && llm_ctx_checkpoints(c, pos, 16) == 0, "before every checkpoint: 0");
	CHECK(llm_eval(c, toks, 60, b, 1, err, sizeof(err)) == 0 && max_diff(b, one, (size_t)60 * NV) == 0,
	    "from 0 the state is as new (max |d| %g)", max_diff(b, one, (size_t)60 * NV));

	/* Slots: ten checkpoints, the eight most recent stay; one at a
	 * position already held replaces it. */
	llm_ctx_truncate(c, 0);
	for (int i = 0; i < 10; i++) {
		CHECK(llm_eval(c, toks + i, 1, NULL, 0, err, sizeof(err)) == 0, "step: %s", err);
		llm_ctx_checkpoint(c, i + 1);
		llm_ctx_checkpoint(c, i + 1);
	}
	n = llm_ctx_checkpoints(c, pos, 16);
	CHECK(n == LLM_CHECKPOINT_SLOTS && pos[0] == 10 - LLM_CHECKPOINT_SLOTS + 1 && pos[n - 1] == 10,
	    "the %d most recent checkpoints stay (%d, from %d)", LLM_CHECKPOINT_SLOTS, n, pos[0]);
	CHECK(llm_ctx_checkpoints(c, pos, 3) == n && pos[0] == 3 && pos[2] == 5, "a short list holds the lowest");
	/* A checkpoint asked beyond the evaluation stays asked; truncation
	 * forgets it. */
	CHECK(llm_ctx_checkpoint(c, 40) == 0 && llm_eval(c, toks, 5, NULL, 0, err, sizeof(err)) == 0 &&
	    llm_ctx_checkpoints(c, pos, 16) == n, "a checkpoint at 40 is not taken at 15");
	llm_ctx_truncate(c, 15);
	CHECK(llm_eval(c, toks, 30, NULL, 0, err, sizeof(err)) == 0 && llm_ctx_checkpoints(c, pos, 16) == n,
	    "truncation forgets a checkpoint asked for");
out:
	free(a);
	free(b);
	free(one);
	llm_ctx_free(c);
	llm_ctx_free(f);
	llm_model_free(m);
	unlink(tmp_path("ck.gguf"));
}

/* --- stopping in the middle of a batch --- */

struct stopper {
	int calls, stop_at;
};

static int
stop_cb(void *ctx)
{
	struct stopper *s = ctx;
	return ++s->calls == s->stop_at;
}

static void
test_abort(void)
{
	struct llm_model *m = NULL;
	struct llm_ctx *c = NULL, *f = NULL;
	struct stopper st = { 0, 0 };
	char err[512];
	int32_t toks[80];
	float *a = malloc((size_t)40 * NV * sizeof(float)), *b = malloc((size_t)40 * NV * sizeof(float));

	make_tokens(toks, 80, 5);
	CHECK(write_qwen35(tmp_path("ab.gguf"), &(struct qfile){ 0 }) == 0, "write");
	CHECK(llm_model_load(tmp_path("ab.gguf"), &m, err, sizeof(err)) == 0, "load: %s", err);
	if (m) {
		c = llm_ctx_new(m, 256, 64, 2, err, sizeof(err));
		f = llm_ctx_new(m, 256, 64, 2, err, sizeof(err));
	}
	if (!c || !f || !a || !b) {
		CHECK(0, "sessions: %s", err);
		goto out;
	}
	llm_ctx_set_abort(c, stop_cb, &st);
	CHECK(llm_eval(c, toks, 20, NULL, 0, err, sizeof(err)) == 0, "20 tokens: %s", err);
	/* A batch of LLM_ABORT_COPY_MIN or more is asked before every layer
	 * and between the tasks inside them; stopped at the third question
	 * (inside a recurrent layer: the states already moving), it leaves
	 * the states as they were. */
	st.calls = 0;
	st.stop_at = 3;
	CHECK(llm_eval(c, toks + 20, 40, NULL, 0, err, sizeof(err)) == LLM_ESTOPPED && llm_ctx_n_past(c) == 20 &&
	    st.calls == 3, "stopped at layer 2 of a 40-token batch (%d calls)", st.calls);
	st.calls = 0;
	st.stop_at = 0;
	CHECK(llm_eval(c, toks + 20, 40, a, 1, err, sizeof(err)) == 0 && st.calls > 4, "again, to the end (%d calls, "
	    "more than one per layer)", st.calls);
	CHECK(llm_eval(f, toks, 20, NULL, 0, err, sizeof(err)) == 0 && llm_eval(f, toks + 20, 40, b, 1, err,
	    sizeof(err)) == 0 && max_diff(a, b, (size_t)40 * NV) == 0,
	    "the stopped batch left no trace (max |d| %g)", max_diff(a, b, (size_t)40 * NV));
	/* A smaller batch is asked once, before its first layer: copying the
	 * states would cost more than waiting for it. */
	st.calls = 0;
	CHECK(llm_eval(c, toks + 60, LLM_ABORT_COPY_MIN - 1, NULL, 0, err, sizeof(err)) == 0 && st.calls == 1,
	    "a batch of %d is asked once (%d)", LLM_ABORT_COPY_MIN - 1, st.calls);
	st.calls = 0;
	st.stop_at = 1;
	CHECK(llm_eval(c, toks + 75, 1, NULL, 0, err, sizeof(err)) == LLM_ESTOPPED &&
	    llm_ctx_n_past(c) == 60 + LLM_ABORT_COPY_MIN - 1, "and stopped there, nothing done");
out:
	free(a);
	free(b);
	llm_ctx_free(c);
	llm_ctx_free(f);
	llm_model_free(m);
	unlink(tmp_path("ab.gguf"));
}

/* --- a chat of ten turns on the fixture --- */

struct acc {
	char buf[4096];
	size_t n;
};

static int
acc_piece(void *ctx, const char *piece, size_t len)
{
	struct acc *a = ctx;
	if (a->n + len < sizeof(a->buf)) {
		memcpy(a->buf + a->n, piece, len);
		a->n += len;
	}
	return 0;
}

/* The logits after the last prompt against a fresh session's, over the
 * same tokens in one batch: mean KL and max |d| into *KL and *D. */
static void
fresh_compare(struct llm_model *m, struct chat *c, double *kl, double *d)
{
	int n, nv = llm_model_hparams(m)->n_vocab;
	const int32_t *toks = chat_prompt_tokens(c, &n);
	const float *got = chat_prompt_logits(c);
	char err[256];
	struct llm_ctx *x = llm_ctx_new(m, 1024, 512, 2, err, sizeof(err));
	float *want = malloc(nv * sizeof(float));
	double mw = -INFINITY, mg = -INFINITY, zw = 0, zg = 0;

	*kl = *d = INFINITY;
	if (!x || !want || llm_eval(x, toks, n, want, 0, err, sizeof(err)) < 0) {
		CHECK(0, "fresh evaluation: %s", err);
		goto out;
	}
	*d = max_diff(got, want, nv);
	for (int j = 0; j < nv; j++) {
		mw = want[j] > mw ? want[j] : mw;
		mg = got[j] > mg ? got[j] : mg;
	}
	for (int j = 0; j < nv; j++) {
		zw += exp(want[j] - mw);
		zg += exp(got[j] - mg);
	}
	*kl = 0;
	for (int j = 0; j < nv; j++) {
		double lw = want[j] - mw - log(zw), lg = got[j] - mg - log(zg);
		*kl += exp(lw) * (lw - lg);
	}
out:
	free(want);
	llm_ctx_free(x);
}

/*
 * A mirror of the session's checkpoints as llm.h documents them (slots,
 * truncation to the latest at or before a position, the oldest evicted),
 * kept by the test from what chat_stats and the prompts show, to say how
 * many tokens each generation should evaluate.
 */
struct mirror {
	int pos[LLM_CHECKPOINT_SLOTS];
	unsigned seq[LLM_CHECKPOINT_SLOTS], next;
	int n_past;
};

static int
mirror_truncate(struct mirror *mi, int n)
{
	int keep = 0;

	if (n >= mi->n_past) {
		keep = mi->n_past;
	} else {
		for (int i = 0; i < LLM_CHECKPOINT_SLOTS; i++)
			if (mi->pos[i] > keep && mi->pos[i] <= n)
				keep = mi->pos[i];
	}
	for (int i = 0; i < LLM_CHECKPOINT_SLOTS; i++)
		if (mi->pos[i] > keep)
			mi->pos[i] = -1;
	mi->n_past = keep;
	return keep;
}

static void
mirror_checkpoint(struct mirror *mi, int pos)
{
	int slot = -1;

	for (int i = 0; i < LLM_CHECKPOINT_SLOTS && slot < 0; i++)
		if (mi->pos[i] == pos)
			slot = i;
	for (int i = 0; i < LLM_CHECKPOINT_SLOTS && slot < 0; i++)
		if (mi->pos[i] < 0)
			slot = i;
	if (slot < 0) {
		slot = 0;
		for (int i = 1; i < LLM_CHECKPOINT_SLOTS; i++)
			if (mi->seq[i] < mi->seq[slot])
				slot = i;
	}
	mi->pos[slot] = pos;
	mi->seq[slot] = ++mi->next;
}

static int
lcp(const int32_t *a, int na, const int32_t *b, int nb)
{
	int i = 0;
	while (i < na && i < nb && a[i] == b[i])
		i++;
	return i;
}

/*
 * Ten turns on tiny-qwen35-f32 with its ChatML template, three tokens a
 * reply (seed 5: some replies end inside a UTF-8 sequence, which the
 * stored message repairs, so that the next prompt cannot extend the cache
 * there), a regeneration at turn 5 and an edit at turn 8.  Each
 * generation evaluates exactly what the cache and its checkpoints do not
 * hold: after a reply the next prompt extends, only the new tokens; a
 * regeneration, the prompt's last token; otherwise from the latest
 * checkpoint at or before the first token that differs.  After every
 * generation the logits equal a fresh evaluation of the whole prompt.
 */
static void
test_chat(void)
{
	const char *dir = test_fixtures();
	char path[4096], err[512];
	struct llm_model *m = NULL;
	struct chat *c = NULL;
	struct chat_opts o;
	struct chat_stats st;
	struct mirror mi;
	int32_t prev[1024];
	int n_prev = 0, prev_used = 0, extends = 0, n_extends = 0, n_back = 0;
	double kl, d, worst_kl = 0, worst_d = 0;

	if (!dir) {
		SKIP("fixtures folder not found (set NATTER_FIXTURES)");
		return;
	}
	snprintf(path, sizeof(path), "%s/models/tiny-qwen35-f32.gguf", dir);
	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return;
	}
	memset(&mi, 0, sizeof(mi));
	for (int i = 0; i < LLM_CHECKPOINT_SLOTS; i++)
		mi.pos[i] = -1;
	chat_opts_default(&o);
	o.max_tokens = 3;
	o.sp.seed = 5;
	o.n_ctx = 1024;
	o.n_threads = 2;
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0, "chat_new: %s", err);
	if (!c)
		goto out;
	printf("turn  what        prompt  new  reused  used  the next prompt extends the cache\n");
	for (int i = 0, r = 0; i < 10; r++) {
		struct acc a = { { 0 }, 0 };
		const char *what = "turn", *content;
		const int32_t *ids;
		int n, p, expect, rc;

		if (i == 5 && r == 1) {
			what = "regenerate";
			rc = chat_regenerate(c, acc_piece, &a, &st, err, sizeof(err));
		} else if (i == 8 && r == 1) {
			what = "edit";
			CHECK(chat_edit(c, chat_n_messages(c) - 2, "Bye", 3) == 0, "edit");
			rc = chat_generate(c, acc_piece, &a, &st, err, sizeof(err));
		} else {
			char msg[32];
			snprintf(msg, sizeof(msg), "Hi %d", i);
			chat_add_user(c, msg, strlen(msg));
			rc = chat_generate(c, acc_piece, &a, &st, err, sizeof(err));
		}
		CHECK(rc == 0, "turn %d (%s): %s", i, what, err);
		if (rc)
			break;
		ids = chat_prompt_tokens(c, &n);
		/* What the cache held in common with this prompt: all of it when
		 * a new turn extends it; else the common part of the previous
		 * prompt (the reply after it is never a checkpoint but its end). */
		p = r == 0 && extends ? prev_used : lcp(prev, n_prev, ids, n);
		if (p == n)
			p--;   /* the last token again, for its logits */
		expect = mirror_truncate(&mi, p);
		CHECK(st.n_reused == expect && st.n_prompt == st.prompt_tokens - expect && st.prompt_tokens == n,
		    "turn %d (%s): %d new, %d reused of %d; want %d reused", i, what, st.n_prompt, st.n_reused,
		    st.prompt_tokens, expect);
		if (!strcmp(what, "regenerate"))
			CHECK(st.n_prompt == 1, "a regeneration evaluates one token (%d)", st.n_prompt);
		n_back += expect < p;
		mirror_checkpoint(&mi, n - 1);
		mi.n_past = st.n_ctx_used;
		mirror_checkpoint(&mi, st.n_ctx_used);
		fresh_compare(m, c, &kl, &d);
		worst_kl = kl > worst_kl ? kl : worst_kl;
		worst_d = d > worst_d ? d : worst_d;
		CHECK(kl < 1e-6 && d < 1e-3, "turn %d (%s): logits against a fresh evaluation: KL %g, max |d| %g", i, what,
		    kl, d);
		/* The next prompt extends the cache when the reply is stored as
		 * it was evaluated (a repaired one is not). */
		content = chat_message_content(c, chat_n_messages(c) - 1);
		extends = a.n == strlen(content) && memcmp(a.buf, content, a.n) == 0 &&
		    st.n_ctx_used == st.prompt_tokens + st.n_gen;
		n_extends += extends;
		printf("%4d  %-10s  %6d  %3d  %6d  %4d  %s\n", i, what, st.prompt_tokens, st.n_prompt, st.n_reused,
		    st.n_ctx_used, extends ? "yes" : "no (its reply was repaired)");
		memcpy(prev, ids, (size_t)(n < 1024 ? n : 1024) * sizeof(int32_t));
		n_prev = n < 1024 ? n : 1024;
		prev_used = st.n_ctx_used;
		if (!((i == 5 || i == 8) && r == 0)) {
			i++;
			r = -1;
		}
	}
	printf("logits after every generation against a fresh evaluation: KL at most %.3g, max |d| %.3g\n", worst_kl,
	    worst_d);
	CHECK(n_extends >= 4 && n_back >= 2, "both paths taken: %d prompts extended the cache, %d went back",
	    n_extends, n_back);
out:
	chat_free(c);
	llm_model_free(m);
}

/* --- context overflow: back to a checkpoint or to 0, never a shift --- */

static void
count_drop(void *ctx, const char *msg)
{
	if (strstr(msg, "dropped"))
		++*(int *)ctx;
}

/*
 * A chat of 12 turns in a context of 256 positions on tiny-qwen35-f32
 * (about 80 tokens a turn): from the third turn on the prompts overflow
 * now and then and leave out the oldest turns.  Such a prompt shares only
 * its first tokens with the cache, and no checkpoint lies that early, so
 * the session goes back to 0 and evaluates the whole prompt -- a KV cache
 * could shift, a recurrent state cannot.  But the window then moves far
 * enough (the prompt takes at most half the context) that the next turn
 * fits without moving it again and extends the cache: no two turns in a
 * row drop messages, and a turn after an overflow that drops none reuses
 * the previous prompt and reply, or goes back to the checkpoint before
 * that prompt's last token (a reply of random weights is often repaired
 * UTF-8, which the next prompt does not extend), never to 0.  Every
 * generation reuses what the mirror of the checkpoints says, never more
 * than the common prefix, and its logits equal a fresh evaluation's.
 * Then, below chat: an evaluation that would overflow the context is
 * refused and leaves the state as it was.
 */
static void
test_overflow(void)
{
	const char *dir = test_fixtures();
	char path[4096], err[512];
	struct llm_model *m = NULL;
	struct llm_ctx *x = NULL, *f = NULL;
	struct chat *c = NULL;
	struct chat_opts o;
	struct chat_stats st;
	struct mirror mi;
	int32_t prev[256], toks[80];
	int n_prev = 0, prev_used = 0, extends = 0, drops = 0, drop_turns = 0, from0 = 0;
	int prev_dropped = 0, in_a_row = 0, after = 0;
	double kl, d;
	float *a = NULL, *b = NULL;
	int nv;

	if (!dir) {
		SKIP("fixtures folder not found (set NATTER_FIXTURES)");
		return;
	}
	snprintf(path, sizeof(path), "%s/models/tiny-qwen35-f32.gguf", dir);
	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return;
	}
	memset(&mi, 0, sizeof(mi));
	for (int i = 0; i < LLM_CHECKPOINT_SLOTS; i++)
		mi.pos[i] = -1;
	chat_opts_default(&o);
	o.max_tokens = 8;
	o.sp.seed = 11;
	o.n_ctx = 256;
	o.n_threads = 2;
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0, "chat_new: %s", err);
	if (!c)
		goto llm;
	chat_set_notice(c, count_drop, &drops);
	printf("turn  prompt  new  reused  common  dropped messages\n");
	for (int i = 0; i < 12; i++) {
		struct acc ac = { { 0 }, 0 };
		char msg[64];
		const int32_t *ids;
		const char *content;
		int n, p, expect, before = drops;

		snprintf(msg, sizeof(msg), "Tell me about the number %d, please.", i);
		chat_add_user(c, msg, strlen(msg));
		if (chat_generate(c, acc_piece, &ac, &st, err, sizeof(err)) < 0) {
			CHECK(0, "turn %d: %s", i, err);
			break;
		}
		ids = chat_prompt_tokens(c, &n);
		p = extends && drops == before ? prev_used : lcp(prev, n_prev, ids, n);
		if (p == n)
			p--;
		expect = mirror_truncate(&mi, p);
		CHECK(st.n_reused == expect && st.n_reused <= p && st.n_prompt == n - st.n_reused,
		    "turn %d: %d reused, %d new of %d; want %d reused (common prefix %d)", i, st.n_reused, st.n_prompt,
		    n, expect, p);
		if (drops > before) {
			drop_turns++;
			from0 += st.n_reused == 0;
			in_a_row += prev_dropped;
		} else if (drop_turns > 0) {
			/* After an overflow: the cache serves the next turn again. */
			after++;
			CHECK(st.n_reused > 0 && st.n_reused >= n_prev - 1, "turn %d, after an overflow: %d reused, want the "
			    "previous prompt (%d) at least", i, st.n_reused, n_prev);
		}
		prev_dropped = drops > before;
		mirror_checkpoint(&mi, n - 1);
		mi.n_past = st.n_ctx_used;
		mirror_checkpoint(&mi, st.n_ctx_used);
		fresh_compare(m, c, &kl, &d);
		CHECK(kl < 1e-6 && d < 1e-3, "turn %d: logits against a fresh evaluation: KL %g, max |d| %g", i, kl, d);
		content = chat_message_content(c, chat_n_messages(c) - 1);
		extends = ac.n == strlen(content) && memcmp(ac.buf, content, ac.n) == 0 &&
		    st.n_ctx_used == st.prompt_tokens + st.n_gen;
		printf("%4d  %6d  %3d  %6d  %6d  %d\n", i, n, st.n_prompt, st.n_reused, p, chat_prompt_dropped(c));
		n_prev = n < 256 ? n : 256;
		memcpy(prev, ids, (size_t)n_prev * sizeof(int32_t));
		prev_used = st.n_ctx_used;
	}
	CHECK(drop_turns >= 3 && from0 >= 1, "the context overflowed on %d turns (%d evaluated from 0)", drop_turns,
	    from0);
	CHECK(in_a_row == 0 && after >= 3, "after an overflow the next turn fits: %d overflows right after another; "
	    "%d turns after one reused the cache", in_a_row, after);

llm:
	/* An evaluation past the context is refused and changes nothing. */
	nv = llm_model_hparams(m)->n_vocab;
	make_tokens(toks, 80, 3);
	a = malloc((size_t)nv * sizeof(float));
	b = malloc((size_t)nv * sizeof(float));
	x = llm_ctx_new(m, 64, 64, 1, err, sizeof(err));
	f = llm_ctx_new(m, 64, 64, 1, err, sizeof(err));
	if (x && f && a && b) {
		CHECK(llm_eval(x, toks, 60, NULL, 0, err, sizeof(err)) == 0, "60 tokens: %s", err);
		err[0] = 0;
		CHECK(llm_eval(x, toks + 60, 10, NULL, 0, err, sizeof(err)) < 0 && err[0] && llm_ctx_n_past(x) == 60,
		    "10 more in a context of 64 refused (%s), n_past %d", err, llm_ctx_n_past(x));
		CHECK(llm_eval(x, toks + 60, 4, a, 0, err, sizeof(err)) == 0 && llm_eval(f, toks, 64, b, 0, err,
		    sizeof(err)) == 0 && max_diff(a, b, (size_t)nv) < 1e-4, "after the refusal the state is as it was "
		    "(max |d| %g)", max_diff(a, b, (size_t)nv));
	} else {
		CHECK(0, "sessions: %s", err);
	}
	free(a);
	free(b);
	llm_ctx_free(x);
	llm_ctx_free(f);
	chat_free(c);
	llm_model_free(m);
}

int
main(void)
{
	if (!mkdtemp(tmpdir)) {
		CHECK(0, "mkdtemp");
		return test_done("test-hybrid");
	}
	test_files();
	test_checkpoints();
	test_abort();
	test_chat();
	test_overflow();
	rmdir(tmpdir);
	return test_done("test-hybrid");
}
