/* test-arch.c -- the architecture layer: expert routing, sliding-window rings against a full cache, truncation, the registry. */
#include "config.h"

#include <math.h>
#include <unistd.h>

#include "natter/gguf-write.h"
#include "natter/llm.h"
#include "natter/quant.h"
#include "llm/blocks.h"
#include "llm/kv.h"
#include "llm/model.h"
#include "test.h"

/* --- routing --- */

static void
test_routing(void)
{
	int sel[8];
	float w[8];

	/* Ties go to the lower index, at every rank. */
	{
		const float lg[] = { 1, 3, 3, 0 };
		blk_moe_route(lg, 4, 1, 1, sel, w);
		CHECK(sel[0] == 1 && fabsf(w[0] - 1.0f) < 1e-6f, "tie, k=1: expert %d weight %g", sel[0], w[0]);
		blk_moe_route(lg, 4, 2, 0, sel, w);
		CHECK(sel[0] == 1 && sel[1] == 2, "tie, k=2: experts %d %d", sel[0], sel[1]);
		CHECK(w[0] == w[1], "tied experts have equal weights (%g, %g)", w[0], w[1]);
	}
	{
		const float lg[] = { 2, 2, 2, 2 };
		blk_moe_route(lg, 4, 3, 0, sel, w);
		CHECK(sel[0] == 0 && sel[1] == 1 && sel[2] == 2, "all tied: %d %d %d", sel[0], sel[1], sel[2]);
		CHECK(fabsf(w[0] - 0.25f) < 1e-6f, "all tied, raw weight %g", w[0]);
		blk_moe_route(lg, 4, 2, 1, sel, w);
		CHECK(fabsf(w[0] - 0.5f) < 1e-6f && fabsf(w[1] - 0.5f) < 1e-6f, "all tied, renormalised %g %g", w[0], w[1]);
	}
	/* Renormalisation on and off against the softmax done by hand. */
	{
		const float lg[] = { 0.5f, -1.0f, 2.0f, 1.0f, -3.0f };
		double z = 0, p[5];
		for (int i = 0; i < 5; i++)
			z += exp(lg[i]);
		for (int i = 0; i < 5; i++)
			p[i] = exp(lg[i]) / z;
		blk_moe_route(lg, 5, 2, 0, sel, w);
		CHECK(sel[0] == 2 && sel[1] == 3, "top-2 %d %d", sel[0], sel[1]);
		CHECK(fabs(w[0] - p[2]) < 1e-6 && fabs(w[1] - p[3]) < 1e-6, "raw weights %g %g (want %g %g)",
		    w[0], w[1], p[2], p[3]);
		blk_moe_route(lg, 5, 2, 1, sel, w);
		CHECK(fabs(w[0] - p[2] / (p[2] + p[3])) < 1e-6 && fabs(w[1] - p[3] / (p[2] + p[3])) < 1e-6,
		    "renormalised weights %g %g", w[0], w[1]);
		/* k = 1 */
		blk_moe_route(lg, 5, 1, 0, sel, w);
		CHECK(sel[0] == 2 && fabs(w[0] - p[2]) < 1e-6, "k=1 raw: %d %g", sel[0], w[0]);
		blk_moe_route(lg, 5, 1, 1, sel, w);
		CHECK(sel[0] == 2 && w[0] == 1.0f, "k=1 renormalised: %d %g", sel[0], w[0]);
		/* k = n: every expert, most probable first; renormalising
		 * changes nothing. */
		for (int norm = 0; norm < 2; norm++) {
			const int want[] = { 2, 3, 0, 1, 4 };
			int ok = 1;
			blk_moe_route(lg, 5, 5, norm, sel, w);
			for (int j = 0; j < 5; j++)
				ok &= sel[j] == want[j] && fabs(w[j] - p[want[j]]) < 1e-6;
			CHECK(ok, "k=n (norm %d): order %d %d %d %d %d", norm, sel[0], sel[1], sel[2], sel[3], sel[4]);
		}
	}
	/* NaN logits still give K distinct experts in range. */
	{
		const float lg[] = { NAN, 1, NAN, 0 };
		blk_moe_route(lg, 4, 3, 1, sel, w);
		CHECK(sel[0] != sel[1] && sel[1] != sel[2] && sel[0] != sel[2] && sel[0] >= 0 && sel[2] < 4,
		    "NaN router: %d %d %d", sel[0], sel[1], sel[2]);
	}
}

/* --- a small model written here: phi3 shapes, optional sliding window --- */

enum { SV = 300, SE = 64, SL = 2, SH = 4, SKV = 2, SHD = 16, SFF = 96 };

static uint64_t rng = 88172645463325252ull;

static float
frand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* LongRoPE in a test file: rotated dimensions, factors per set (0: none),
 * no output.weight. */
struct phi3_rope {
	int rope_dim, n_factors, tied;
	int only;   /* 1: the long factors alone, 2: the short ones alone */
};

/* A phi3 file with random F32 weights; WINDOW 0 means no sliding window.
 * The same SEED gives the same weights.  R (or NULL) adds partial rotary
 * and LongRoPE: long factors 1 + i/2, short 1 + i/10 for the first
 * rope_dim/2 entries, 1000 for any after them. */
static int
write_phi3_rope(const char *path, int window, uint64_t seed, const struct phi3_rope *r)
{
	float fl[SHD / 2], fs[SHD / 2];
	struct gguf_writer *w = gguf_writer_new(32);
	static char tokbuf[SV][16];
	const char *toks[SV];
	int32_t types[SV];
	float scores[SV];
	float *arena, *p;
	size_t total = (size_t)SV * SE * 2 + SE + SL * ((size_t)SE * 2 + (size_t)SE * (SH + 2 * SKV) * SHD +
	    (size_t)SH * SHD * SE + (size_t)SE * 2 * SFF + (size_t)SFF * SE);
	char err[256], name[64];
	int rc;

	rng = seed;
	arena = malloc(total * sizeof(float));
	if (!w || !arena)
		return -1;
	for (int i = 0; i < SV; i++) {
		types[i] = 1;
		scores[i] = -(float)i;
		if (i == 0) { snprintf(tokbuf[i], 16, "<unk>"); types[i] = 2; }
		else if (i == 1) { snprintf(tokbuf[i], 16, "<s>"); types[i] = 3; }
		else if (i == 2) { snprintf(tokbuf[i], 16, "</s>"); types[i] = 3; }
		else if (i < 259) { snprintf(tokbuf[i], 16, "<0x%02X>", i - 3); types[i] = 6; }
		else snprintf(tokbuf[i], 16, "\xe2\x96\x81w%d", i);
		toks[i] = tokbuf[i];
	}
	gguf_w_str(w, "general.architecture", "phi3");
	gguf_w_u32(w, "phi3.context_length", 4096);
	gguf_w_u32(w, "phi3.embedding_length", SE);
	gguf_w_u32(w, "phi3.block_count", SL);
	gguf_w_u32(w, "phi3.feed_forward_length", SFF);
	gguf_w_u32(w, "phi3.attention.head_count", SH);
	gguf_w_u32(w, "phi3.attention.head_count_kv", SKV);
	gguf_w_f32(w, "phi3.attention.layer_norm_rms_epsilon", 1e-5f);
	gguf_w_f32(w, "phi3.rope.freq_base", 10000.0f);
	if (window)
		gguf_w_u32(w, "phi3.attention.sliding_window", (uint32_t)window);
	if (r) {
		gguf_w_u32(w, "phi3.rope.dimension_count", (uint32_t)r->rope_dim);
		gguf_w_u32(w, "phi3.rope.scaling.original_context_length", 16);
		gguf_w_f32(w, "phi3.rope.scaling.attn_factor", 1.2f);
		for (int i = 0; i < SHD / 2; i++) {
			fl[i] = i < r->rope_dim / 2 ? 1.0f + 0.5f * i : 1000.0f;
			fs[i] = i < r->rope_dim / 2 ? 1.0f + 0.1f * i : 1000.0f;
		}
		if (r->n_factors) {
			uint64_t ne[1] = { (uint64_t)r->n_factors };
			if (r->only != 2)
				gguf_w_tensor(w, "rope_factors_long.weight", GGML_TYPE_F32, 1, ne, fl, NULL, NULL);
			if (r->only != 1)
				gguf_w_tensor(w, "rope_factors_short.weight", GGML_TYPE_F32, 1, ne, fs, NULL, NULL);
		}
	}
	gguf_w_str(w, "tokenizer.ggml.model", "llama");
	gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, SV);
	gguf_w_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, SV);
	gguf_w_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, SV);
	gguf_w_u32(w, "tokenizer.ggml.bos_token_id", 1);
	gguf_w_u32(w, "tokenizer.ggml.eos_token_id", 2);
	p = arena;
#define T(nm, n0, n1, norm) do { \
		uint64_t ne_[2] = { (n0), (n1) }; \
		for (size_t i_ = 0; i_ < (size_t)(n0) * (n1); i_++) \
			p[i_] = (norm) ? 1.0f + 0.1f * frand() : 0.5f * frand() / sqrtf((float)(n0)) * 3.0f; \
		gguf_w_tensor(w, (nm), GGML_TYPE_F32, (n1) == 1 ? 1 : 2, ne_, p, NULL, NULL); \
		p += (size_t)(n0) * (n1); \
	} while (0)
	T("token_embd.weight", SE, SV, 0);
	T("output_norm.weight", SE, 1, 1);
	if (!r || !r->tied)
		T("output.weight", SE, SV, 0);
	for (int l = 0; l < SL; l++) {
		snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", l);
		T(name, SE, 1, 1);
		snprintf(name, sizeof(name), "blk.%d.attn_qkv.weight", l);
		T(name, SE, (SH + 2 * SKV) * SHD, 0);
		snprintf(name, sizeof(name), "blk.%d.attn_output.weight", l);
		T(name, SH * SHD, SE, 0);
		snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", l);
		T(name, SE, 1, 1);
		snprintf(name, sizeof(name), "blk.%d.ffn_up.weight", l);
		T(name, SE, 2 * SFF, 0);
		snprintf(name, sizeof(name), "blk.%d.ffn_down.weight", l);
		T(name, SFF, SE, 0);
	}
#undef T
	rc = gguf_writer_write(w, path, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "%s\n", err);
	gguf_writer_free(w);
	free(arena);
	return rc;
}

static int
write_phi3(const char *path, int window, uint64_t seed)
{
	return write_phi3_rope(path, window, seed, NULL);
}

/* --- rings against a full cache --- */

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

static void
make_tokens(int32_t *t, int n, int n_vocab)
{
	uint64_t s = 12345;
	for (int i = 0; i < n; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		t[i] = 3 + (int32_t)((s >> 33) % (uint64_t)(n_vocab - 3));
	}
}

/*
 * Evaluates N tokens with M's sliding layers on rings and on a full cache,
 * in batches of each BATCHES[i] (llm_eval splits) and one token at a time;
 * both caches see the same batches, so the logits must agree at every
 * position.  Returns the full cache's logits in batches of 64 (caller
 * frees).
 */
static float *
ring_vs_full(const char *label, struct llm_model *m, int n, const int *batches, int n_batches)
{
	const struct llm_hparams *hp = llm_model_hparams(m);
	const int V = hp->n_vocab;
	char err[512];
	int32_t *tok = malloc(n * sizeof(int32_t));
	float *full = malloc((size_t)n * V * sizeof(float)), *ring = malloc((size_t)n * V * sizeof(float));
	float *ref = malloc((size_t)n * V * sizeof(float));
	struct llm_ctx *cf = llm_ctx_new_flags(m, 256, 64, 1, KV_NO_RING, err, sizeof(err));
	int window = 0;

	make_tokens(tok, n, V);
	CHECK(cf != NULL, "%s: full context: %s", label, err);
	CHECK(cf && llm_eval(cf, tok, n, full, 1, err, sizeof(err)) == 0, "%s: full eval: %s", label, err);
	llm_ctx_free(cf);
	for (int il = 0; il < hp->n_layer; il++)
		if (hp->layer[il].kind == LLM_LAYER_SLIDING)
			window = hp->layer[il].window;
	CHECK(n >= 3 * window, "%s: %d tokens cover 3 windows of %d", label, n, window);
	for (int b = 0; b < n_batches; b++) {
		struct llm_ctx *c = llm_ctx_new(m, 256, batches[b], 1, err, sizeof(err));
		struct llm_ctx *f = llm_ctx_new_flags(m, 256, batches[b], 1, KV_NO_RING, err, sizeof(err));
		int rings = 0, ok = 1;
		double d1, d2;
		CHECK(c && f, "%s: contexts: %s", label, err);
		if (!c || !f) {
			llm_ctx_free(c);
			llm_ctx_free(f);
			continue;
		}
		for (int il = 0; il < hp->n_layer; il++) {
			struct llm_cache_info ci;
			llm_ctx_cache_layer(c, il, &ci);
			if (hp->layer[il].kind == LLM_LAYER_SLIDING) {
				rings++;
				ok &= ci.kind == LLM_CACHE_RING && ci.slots == hp->layer[il].window - 1 + batches[b];
			} else {
				ok &= ci.kind == LLM_CACHE_FULL && ci.slots == 256;
			}
		}
		CHECK(rings > 0 && ok, "%s: %d sliding layers on rings of window - 1 + %d slots", label, rings, batches[b]);
		/* In batches of n_batch, ... */
		CHECK(llm_eval(c, tok, n, ring, 1, err, sizeof(err)) == 0, "%s: ring eval: %s", label, err);
		CHECK(llm_eval(f, tok, n, ref, 1, err, sizeof(err)) == 0, "%s: full eval: %s", label, err);
		d1 = max_diff(ref, ring, (size_t)n * V);
		/* ... and one token at a time. */
		CHECK(llm_ctx_truncate(c, 0) == 0 && llm_ctx_truncate(f, 0) == 0, "%s: truncate to 0", label);
		for (int t = 0; t < n; t++) {
			CHECK(llm_eval(c, tok + t, 1, ring + (size_t)t * V, 0, err, sizeof(err)) == 0, "%s: %s", label, err);
			CHECK(llm_eval(f, tok + t, 1, ref + (size_t)t * V, 0, err, sizeof(err)) == 0, "%s: %s", label, err);
		}
		d2 = max_diff(ref, ring, (size_t)n * V);
		printf("%-20s ring of %3d slots (batch %2d) vs full cache, %3d tokens: max |dlogit| %.2g, one by one %.2g\n",
		    label, window - 1 + batches[b], batches[b], n, d1, d2);
		CHECK(d1 < 1e-3 && d2 < 1e-3, "%s batch %d: ring and full cache differ by %g / %g", label, batches[b], d1, d2);
		llm_ctx_free(c);
		llm_ctx_free(f);
	}
	free(ref);
	free(ring);
	free(tok);
	return full;
}

/* Truncation on a ring: what it keeps, and that evaluation continues
 * as on a full cache. */
static void
truncate_ring(const char *label, struct llm_model *m, int n)
{
	const struct llm_hparams *hp = llm_model_hparams(m);
	const int V = hp->n_vocab, nb = 3;
	char err[512];
	int32_t *tok = malloc(n * sizeof(int32_t));
	float *lg = malloc((size_t)V * sizeof(float)), *full = malloc((size_t)n * V * sizeof(float));
	struct llm_ctx *c = llm_ctx_new(m, 256, nb, 1, err, sizeof(err));
	struct llm_ctx *f = llm_ctx_new_flags(m, 256, nb, 1, KV_NO_RING, err, sizeof(err));
	int window = 0, slots, oldest, kept, ok = 1;

	make_tokens(tok, n, V);
	CHECK(f && llm_eval(f, tok, n, full, 1, err, sizeof(err)) == 0, "%s: %s", label, err);
	for (int il = 0; il < hp->n_layer; il++)
		if (hp->layer[il].kind == LLM_LAYER_SLIDING)
			window = hp->layer[il].window;
	slots = window - 1 + nb;
	CHECK(c && llm_eval(c, tok, n, NULL, 0, err, sizeof(err)) == 0, "%s: %s", label, err);
	oldest = n - slots;
	for (int il = 0; c && il < hp->n_layer; il++) {
		struct llm_cache_info ci;
		llm_ctx_cache_layer(c, il, &ci);
		if (ci.kind == LLM_CACHE_RING)
			ok &= ci.oldest == oldest;
	}
	CHECK(ok, "%s: the rings hold positions %d .. %d", label, oldest, n - 1);
	/* Back to the furthest position a ring still serves: kept. */
	kept = llm_ctx_truncate(c, oldest + window - 1);
	CHECK(kept == oldest + window - 1, "%s: truncate to %d kept %d", label, oldest + window - 1, kept);
	ok = 1;
	for (int t = kept; t < n; t++) {
		ok &= llm_eval(c, tok + t, 1, lg, 0, err, sizeof(err)) == 0;
		ok &= max_diff(lg, full + (size_t)t * V, V) < 1e-3;
	}
	CHECK(ok, "%s: evaluation after keeping %d matches the full cache", label, kept);
	/* One further: the ring has lost a key that position needs: nothing kept. */
	kept = llm_ctx_truncate(c, oldest + window - 2);
	CHECK(kept == 0 && llm_ctx_n_past(c) == 0, "%s: truncate to %d kept %d (want 0)", label,
	    oldest + window - 2, kept);
	ok = llm_eval(c, tok, n, lg, 0, err, sizeof(err)) == 0;
	CHECK(ok && max_diff(lg, full + (size_t)(n - 1) * V, V) < 1e-3, "%s: from 0 again", label);
	/* More than n_past keeps n_past; a negative request keeps 0. */
	CHECK(llm_ctx_truncate(c, n + 10) == n, "%s: truncate past the end", label);
	CHECK(llm_ctx_truncate(c, -5) == 0, "%s: negative truncate", label);
	printf("%-20s truncation: rings of %d slots keep %d of %d, and 0 when asked for %d\n", label, slots,
	    oldest + window - 1, n, oldest + window - 2);
	llm_ctx_free(c);
	llm_ctx_free(f);
	free(full);
	free(lg);
	free(tok);
}

static void
test_synthetic(void)
{
	char dir[] = "/tmp/natter-arch-XXXXXX", p1[64], p2[64], err[512];
	struct llm_model *m = NULL, *m0 = NULL;
	const int batches[] = { 1, 3, 32 };
	const int n = 100;
	float *full;

	if (!mkdtemp(dir)) {
		CHECK(0, "mkdtemp");
		return;
	}
	snprintf(p1, sizeof(p1), "%s/w4.gguf", dir);
	snprintf(p2, sizeof(p2), "%s/w0.gguf", dir);
	CHECK(write_phi3(p1, 4, 7) == 0 && write_phi3(p2, 0, 7) == 0, "writing the test models");
	CHECK(llm_model_load(p1, &m, err, sizeof(err)) == 0, "%s", err);
	CHECK(llm_model_load(p2, &m0, err, sizeof(err)) == 0, "%s", err);
	if (m && m0) {
		const struct llm_hparams *hp = llm_model_hparams(m);
		CHECK(hp->window == 4 && hp->layer[0].kind == LLM_LAYER_SLIDING && hp->layer[1].kind == LLM_LAYER_SLIDING,
		    "phi3 with attention.sliding_window: every layer slides");
		CHECK(llm_model_hparams(m0)->layer[0].kind == LLM_LAYER_FULL, "phi3 without the key: full attention");
		full = ring_vs_full("phi3, window 4", m, n, batches, 3);
		truncate_ring("phi3, window 4", m, 40);
		/* The window matters: the same weights without it differ. */
		{
			float *f0 = ring_vs_full("phi3, no window", m0, n, NULL, 0);
			double d = max_diff(full, f0, (size_t)n * hp->n_vocab);
			CHECK(d > 1e-2, "the window changes nothing (%g): the ring test would prove nothing", d);
			free(f0);
		}
		/* A full-attention model keeps whatever is asked. */
		{
			struct llm_ctx *c = llm_ctx_new(m0, 64, 4, 1, err, sizeof(err));
			int32_t tok[20];
			make_tokens(tok, 20, hp->n_vocab);
			CHECK(c && llm_eval(c, tok, 20, NULL, 0, err, sizeof(err)) == 0, "%s", err);
			CHECK(llm_ctx_truncate(c, 3) == 3 && llm_ctx_n_past(c) == 3, "full cache: truncate to 3");
			llm_ctx_free(c);
		}
		free(full);
	}
	llm_model_free(m);
	llm_model_free(m0);
	unlink(p1);
	unlink(p2);
	rmdir(dir);
}

/* The fixture families with sliding layers: rings against a full cache,
 * truncation, and what the cache holds. */
static void
test_fixture_rings(void)
{
	static const char *const files[] = { "tiny-gemma2-f32", "tiny-gemma3-f32", "tiny-gemma3-q4_k_m" };
	const char *dir = test_fixtures();
	const int batches[] = { 1, 4, 32 };
	char path[4096], err[512];

	if (!dir) {
		SKIP("fixtures folder not found: rings of the Gemma fixtures not checked");
		return;
	}
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct llm_model *m = NULL;
		snprintf(path, sizeof(path), "%s/models/%s.gguf", dir, files[i]);
		CHECK(llm_model_load(path, &m, err, sizeof(err)) == 0, "%s", err);
		if (!m)
			continue;
		free(ring_vs_full(files[i], m, 40, batches, 3));
		truncate_ring(files[i], m, 40);
		llm_model_free(m);
	}
	/* Gemma 3's cache: full length for the global layer only. */
	{
		struct llm_model *m = NULL;
		struct llm_ctx *c;
		snprintf(path, sizeof(path), "%s/models/tiny-gemma3-f32.gguf", dir);
		CHECK(llm_model_load(path, &m, err, sizeof(err)) == 0, "%s", err);
		c = m ? llm_ctx_new(m, 512, 64, 1, err, sizeof(err)) : NULL;
		if (c) {
			const struct llm_hparams *hp = llm_model_hparams(m);
			/* K and V of a position, F16 (the default cache type) */
			const size_t row = 2 * (size_t)hp->n_head_kv * hp->head_dim * sizeof(qhalf);
			size_t want = 0;
			int ok = 1;
			for (int il = 0; il < hp->n_layer; il++) {
				struct llm_cache_info ci;
				int global = il % 6 == 5;
				llm_ctx_cache_layer(c, il, &ci);
				ok &= global ? ci.kind == LLM_CACHE_FULL && ci.slots == 512 :
				    ci.kind == LLM_CACHE_RING && ci.slots == 5 - 1 + 64;
				ok &= (hp->layer[il].kind == LLM_LAYER_FULL) == global;
				ok &= hp->layer[il].rope_base == (global ? 1e6f : 1e4f);
				ok &= hp->layer[il].rope_scale == (global ? 0.125f : 1.0f);
				want += (global ? 512 : 68) * row;
			}
			CHECK(ok, "gemma3: layer 5 global (full cache, base 1e6, scale 1/8), the others rings of 68 (base 1e4)");
			CHECK(llm_ctx_cache_bytes(c) == want, "gemma3 cache %zu bytes, want %zu", llm_ctx_cache_bytes(c), want);
			printf("tiny-gemma3 at 512 positions: cache %zu bytes (all full: %zu)\n", llm_ctx_cache_bytes(c),
			    (size_t)hp->n_layer * 512 * row);
		}
		llm_ctx_free(c);
		llm_model_free(m);
	}
}

/*
 * The last layer computes past its keys and values only for the tokens
 * whose output is read (blk_out_first): 13 tokens in batches of 5 asking
 * for the last logits only (the first two batches ask for none, the third
 * for its last token) against all 13 tokens' logits in the same batches,
 * then one more token after each: a key or value the last layer left
 * out, or a query taken at the wrong position, shows in one or the other.
 */
static void
last_only(const char *label, struct llm_model *m)
{
	const int V = llm_model_hparams(m)->n_vocab, n = 13;
	char err[512];
	int32_t tok[14];
	float *all = malloc((size_t)n * V * sizeof(float)), *last = malloc((size_t)V * sizeof(float));
	float *na = malloc((size_t)V * sizeof(float)), *nb = malloc((size_t)V * sizeof(float));
	struct llm_ctx *a = llm_ctx_new(m, 64, 5, 1, err, sizeof(err));
	struct llm_ctx *b = a ? llm_ctx_new(m, 64, 5, 1, err, sizeof(err)) : NULL;
	double d1 = INFINITY, d2 = INFINITY;

	make_tokens(tok, n + 1, V);
	CHECK(a && b, "%s: sessions: %s", label, err);
	if (a && b && llm_eval(a, tok, n, last, 0, err, sizeof(err)) == 0 &&
	    llm_eval(b, tok, n, all, 1, err, sizeof(err)) == 0) {
		d1 = max_diff(last, all + (size_t)(n - 1) * V, V);
		if (llm_eval(a, tok + n, 1, na, 0, err, sizeof(err)) == 0 &&
		    llm_eval(b, tok + n, 1, nb, 0, err, sizeof(err)) == 0)
			d2 = max_diff(na, nb, V);
	}
	printf("%-20s last logits only, batches of 5: max |dlogit| %.2g, the next token %.2g\n", label, d1, d2);
	/* The last token's output comes from a product of one row instead of
	 * three (another kernel); the caches must be the same, bit for bit. */
	CHECK(d1 < 1e-4 && d2 == 0, "%s: the last token's logits differ by %g, the next token's by %g (%s)", label,
	    d1, d2, err);
	llm_ctx_free(a);
	llm_ctx_free(b);
	free(all);
	free(last);
	free(na);
	free(nb);
}

/* Every fixture architecture (a fused QKV, post-norms, sliding windows,
 * experts, the qwen35 hybrid): last_only. */
static void
test_last_only(void)
{
	static const char *const files[] = { "tiny-llama-f32", "tiny-qwen2-f32", "tiny-qwen3-f32", "tiny-phi3-f32",
		"tiny-gemma2-f32", "tiny-gemma3-f32", "tiny-llamamoe-f32", "tiny-qwen2moe-f32", "tiny-qwen3moe-f32",
		"tiny-qwen35-f32" };
	const char *dir = test_fixtures();
	char path[4096], err[512];

	if (!dir) {
		SKIP("fixtures folder not found: the last layer's left-out tokens not checked");
		return;
	}
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct llm_model *m = NULL;
		snprintf(path, sizeof(path), "%s/models/%s.gguf", dir, files[i]);
		CHECK(llm_model_load(path, &m, err, sizeof(err)) == 0, "%s", err);
		if (m)
			last_only(files[i], m);
		llm_model_free(m);
	}
}

/* Logits of the first N make_tokens tokens with a context of N_CTX. */
static int
logits_of(struct llm_model *m, int n_ctx, int n, float *out)
{
	char err[512];
	int32_t tok[64];
	struct llm_ctx *c = llm_ctx_new(m, n_ctx, 8, 1, err, sizeof(err));
	int rc;

	make_tokens(tok, n, llm_model_hparams(m)->n_vocab);
	rc = c ? llm_eval(c, tok, n, out, 1, err, sizeof(err)) : -1;
	llm_ctx_free(c);
	return rc;
}

/* Phi-3.5 / Phi-4-mini LongRoPE: factor tensors of rope_dim/2 or of
 * head_dim/2 entries (the rest unused), tied output, long factors above
 * the original context, short ones within it. */
static void
test_longrope(void)
{
	char dir[] = "/tmp/natter-lr-XXXXXX", pa[64], pb[64], pc[64], err[512];
	const struct phi3_rope ra = { 12, 6, 1, 0 }, rb = { 12, 8, 1, 0 }, rc = { 12, 0, 1, 0 };
	struct llm_model *a = NULL, *b = NULL, *nf = NULL;
	const int n = 12;
	float *la = malloc((size_t)n * SV * sizeof(float)), *lb = malloc((size_t)n * SV * sizeof(float));
	float *ls = malloc((size_t)n * SV * sizeof(float));

	if (!mkdtemp(dir)) {
		CHECK(0, "mkdtemp");
		return;
	}
	snprintf(pa, sizeof(pa), "%s/a.gguf", dir);
	snprintf(pb, sizeof(pb), "%s/b.gguf", dir);
	snprintf(pc, sizeof(pc), "%s/c.gguf", dir);
	CHECK(write_phi3_rope(pa, 0, 9, &ra) == 0 && write_phi3_rope(pb, 0, 9, &rb) == 0 &&
	    write_phi3_rope(pc, 0, 9, &rc) == 0, "writing the LongRoPE models");
	CHECK(llm_model_load(pa, &a, err, sizeof(err)) == 0, "factors of rope_dim/2 entries, tied: %s", err);
	CHECK(llm_model_load(pb, &b, err, sizeof(err)) == 0, "factors of head_dim/2 entries, tied: %s", err);
	CHECK(llm_model_load(pc, &nf, err, sizeof(err)) == 0, "no factors: %s", err);
	if (a && b && nf) {
		const struct llm_hparams *hp = llm_model_hparams(a);
		CHECK(hp->rope_factors == 2 && hp->rope_dim == 12 && hp->rope_n_ctx_orig == 16 &&
		    fabsf(hp->rope_attn_factor - 1.2f) < 1e-6f, "LongRoPE hyperparameters");
		CHECK(logits_of(a, 64, n, la) == 0 && logits_of(b, 64, n, lb) == 0, "evaluation");
		CHECK(max_diff(la, lb, (size_t)n * SV) == 0, "rope_dim/2 and head_dim/2 factors give the same logits (%g)",
		    max_diff(la, lb, (size_t)n * SV));
		/* Within the original context the short factors rotate. */
		CHECK(logits_of(a, 16, n, ls) == 0, "evaluation at 16 positions");
		CHECK(max_diff(la, ls, (size_t)n * SV) > 1e-3, "long and short factors give different logits (%g)",
		    max_diff(la, ls, (size_t)n * SV));
		CHECK(logits_of(nf, 64, n, ls) == 0 && max_diff(la, ls, (size_t)n * SV) > 1e-3,
		    "the factors change the logits (%g)", max_diff(la, ls, (size_t)n * SV));
	}
	llm_model_free(a);
	llm_model_free(b);
	llm_model_free(nf);
	/* One set alone is refused, naming the other: short factors alone
	 * were ignored (the logits of no factors). */
	for (int only = 1; only <= 2; only++) {
		const struct phi3_rope r1 = { 12, 6, 1, only };
		struct llm_model *m1 = NULL;
		const char *missing = only == 1 ? "without rope_factors_short.weight" : "without rope_factors_long.weight";
		err[0] = 0;
		CHECK(write_phi3_rope(pa, 0, 9, &r1) == 0 && llm_model_load(pa, &m1, err, sizeof(err)) < 0 &&
		    strstr(err, missing), "%s factors alone: '%s'", only == 1 ? "long" : "short", err);
		llm_model_free(m1);
	}
	unlink(pa);
	unlink(pb);
	unlink(pc);
	rmdir(dir);
	free(la);
	free(lb);
	free(ls);
}

/* --- the cache module alone: a recurrent layer --- */

static void
test_recurrent_cache(void)
{
	struct llm_layer_hparams layer[3] = {
		{ .kind = LLM_LAYER_FULL, .rope_base = 1e4f, .rope_scale = 1 },
		{ .kind = LLM_LAYER_RECURRENT, .conv_floats = 12, .state_floats = 64 },
		{ .kind = LLM_LAYER_SLIDING, .window = 4, .rope_base = 1e4f, .rope_scale = 1 },
	};
	struct llm_hparams hp = { .n_layer = 3, .n_head = 2, .n_head_kv = 1, .head_dim = 8, .head_dim_v = 8,
	    .layer = layer };
	struct kv_cache kv;
	float k[8] = { 0 }, v[8] = { 0 };
	int ok;

	CHECK(kv_cache_init(&kv, &hp, 32, 2, 0, LLM_KV_F32) == 0, "kv_cache_init");
	CHECK(kv.l[0].kind == LLM_CACHE_FULL && kv.l[0].slots == 32, "layer 0: full, 32 slots");
	CHECK(kv.l[1].kind == LLM_CACHE_RECURRENT && kv.l[1].slots == 0 && kv.l[1].state_n == 64,
	    "layer 1: recurrent state");
	CHECK(kv.l[2].kind == LLM_CACHE_RING && kv.l[2].slots == 5, "layer 2: ring of 4 - 1 + 2 slots");
	CHECK(kv_cache_bytes(&kv) == ((32 + 5) * 16 + 12 + 64) * sizeof(float), "cache bytes %zu", kv_cache_bytes(&kv));
	/* Ten positions seen; the recurrent state is not zero. */
	for (int p = 0; p < 10; p++) {
		kv_layer_put(&kv.l[0], p, k, v);
		kv_layer_put(&kv.l[2], p, k, v);
	}
	kv.n_past = 10;
	for (size_t i = 0; i < kv.l[1].state_n; i++)
		kv.l[1].state[i] = 1.0f;
	CHECK(kv.l[2].oldest == 5, "ring oldest %d", kv.l[2].oldest);
	CHECK(kv_cache_truncate(&kv, 10) == 10, "recurrent: staying put keeps everything");
	CHECK(kv.l[1].state[0] == 1.0f, "recurrent: the state is kept when nothing is dropped");
	CHECK(kv_cache_truncate(&kv, 9) == 0, "recurrent: a state cannot go back one position");
	ok = kv.n_past == 0 && kv.l[2].oldest == 0;
	for (size_t i = 0; i < kv.l[1].state_n; i++)
		ok &= kv.l[1].state[i] == 0.0f;
	CHECK(ok, "recurrent: after truncation to 0 the state is cleared and the ring empty");
	/* A ring's runs wrap around. */
	{
		struct kv_run run[2];
		for (int p = 0; p < 7; p++)
			kv_layer_put(&kv.l[2], p, k, v);
		CHECK(kv_layer_runs(&kv.l[2], 3, 6, run) == 2 && run[0].n == 2 && run[1].n == 2 &&
		    run[0].k == kv.l[2].k + 3 * kv.l[2].row_k && run[1].k == kv.l[2].k, "ring runs wrap");
	}
	kv_cache_free(&kv);
}

/* --- the registry --- */

static void
test_registry(void)
{
	char path[] = "/tmp/natter-arch-mamba-XXXXXX", err[512];
	struct gguf_writer *w = gguf_writer_new(32);
	struct llm_model *m = NULL;
	int fd = mkstemp(path), all = 1;

	CHECK(llm_arch_count() >= 3, "%d architectures", llm_arch_count());
	for (int i = 0; i < llm_arch_count(); i++)
		CHECK(llm_arch_name(i) && llm_arch_models(i) && *llm_arch_models(i), "architecture %d is described", i);
	CHECK(llm_arch_name(llm_arch_count()) == NULL, "past the end");
	CHECK(strcmp(llm_tensor_name(LLM_TENSOR_FFN_DOWN_EXPS), "blk.%d.ffn_down_exps") == 0, "tensor names");
	if (fd >= 0)
		close(fd);
	gguf_w_str(w, "general.architecture", "mamba");
	CHECK(gguf_writer_write(w, path, err, sizeof(err)) == 0, "%s", err);
	CHECK(llm_model_load(path, &m, err, sizeof(err)) < 0 && !m, "a mamba file is refused");
	CHECK(strstr(err, "'mamba' is not supported") != NULL, "message: %s", err);
	for (int i = 0; i < llm_arch_count(); i++)
		all &= strstr(err, llm_arch_name(i)) != NULL;
	CHECK(all, "the message lists every architecture natter runs: %s", err);
	gguf_writer_free(w);
	unlink(path);
}

/* --- hyperparameters a file may hold that no forward pass can use --- */

/* Loads a file of ARCH's hyperparameters (N_LAYER layers of N_EMBD, N_HEAD
 * heads of 32) with the keys EXTRA adds: refused, ERR holding WANT. */
static void
refused_hparams(const char *label, const char *arch, int n_layer, int n_embd, int n_head,
		void (*extra)(struct gguf_writer *w, const char *arch, int n_layer), const char *want)
{
	char path[] = "/tmp/natter-arch-hp-XXXXXX", err[512] = "", key[128];
	struct gguf_writer *w = gguf_writer_new(32);
	struct llm_model *m = NULL;
	int fd = mkstemp(path);

	if (fd >= 0)
		close(fd);
	gguf_w_str(w, "general.architecture", arch);
#define KEY(k) (snprintf(key, sizeof(key), "%s." k, arch), key)
	gguf_w_u32(w, KEY("context_length"), 128);
	gguf_w_u32(w, KEY("embedding_length"), (uint32_t)n_embd);
	gguf_w_u32(w, KEY("block_count"), (uint32_t)n_layer);
	gguf_w_u32(w, KEY("feed_forward_length"), 64);
	gguf_w_u32(w, KEY("attention.head_count"), (uint32_t)n_head);
	gguf_w_u32(w, KEY("attention.head_count_kv"), (uint32_t)n_head);
	gguf_w_u32(w, KEY("attention.key_length"), 32);
	gguf_w_u32(w, KEY("attention.value_length"), 32);
#undef KEY
	extra(w, arch, n_layer);
	CHECK(gguf_writer_write(w, path, err, sizeof(err)) == 0, "%s: %s", label, err);
	CHECK(llm_model_load(path, &m, err, sizeof(err)) < 0 && !m, "%s: loaded", label);
	CHECK(strstr(err, want) != NULL, "%s: the message is '%s', not '%s'", label, err, want);
	llm_model_free(m);
	gguf_writer_free(w);
	unlink(path);
}

/* Linear RoPE scaling by 1e-40 (a float's denormal): a scale of 1/1e-40, infinite. */
static void
tiny_rope_factor(struct gguf_writer *w, const char *arch, int n_layer)
{
	char key[128];
	(void)n_layer;
	snprintf(key, sizeof(key), "%s.rope.scaling.type", arch);
	gguf_w_str(w, key, "linear");
	snprintf(key, sizeof(key), "%s.rope.scaling.factor", arch);
	gguf_w_f32(w, key, 1e-40f);
}

/* Per-layer sliding flags as floats: NaN for the first half. */
static void
float_window_flags(struct gguf_writer *w, const char *arch, int n_layer)
{
	char key[128];
	float f[8];
	for (int i = 0; i < n_layer && i < 8; i++)
		f[i] = i < n_layer / 2 ? NAN : 0.5f;
	snprintf(key, sizeof(key), "%s.attention.sliding_window", arch);
	gguf_w_u32(w, key, 16);
	snprintf(key, sizeof(key), "%s.attention.sliding_window_pattern", arch);
	gguf_w_arr(w, key, GGUF_VT_FLOAT32, f, (uint64_t)n_layer);
}

static void
nothing_more(struct gguf_writer *w, const char *arch, int n_layer)
{
	(void)w, (void)arch, (void)n_layer;
}

static void
test_hostile_hparams(void)
{
	refused_hparams("RoPE factor 1e-40", "llama", 2, 64, 2, tiny_rope_factor, "scale inf out of range");
	refused_hparams("float window flags", "gemma3", 8, 64, 2, float_window_flags, "must hold one flag per layer");
	/* Gemma 3 27B's query scale, 1/sqrt(n_embd / n_head), with n_embd under n_head. */
	refused_hparams("a query scale of 1/0", "gemma3", 62, 2, 4, nothing_more, "scales out of range");
}

/* --- how a model's file is held (NATTER_WEIGHTS) --- */

static void
test_weights(void)
{
	const uint64_t G = 1ull << 30;
	const char *dir = test_fixtures();
	char path[1024], err[512];
	struct llm_model *m = NULL;

	/* auto copies when a quarter of MemAvailable, at least 1 GiB, is left. */
	CHECK(llm_weights_copy_fits(6 * G, 8 * G), "6 GiB of 8 available: copied");
	CHECK(!llm_weights_copy_fits(6 * G + 1, 8 * G), "just over 6 GiB of 8: mapped");
	CHECK(llm_weights_copy_fits(G, 2 * G) && !llm_weights_copy_fits(G + 1, 2 * G), "1 GiB always left");
	CHECK(!llm_weights_copy_fits(1, G) && !llm_weights_copy_fits(0, 0), "under 1 GiB available: mapped");
	CHECK(llm_weights_copy_fits(15 * G, 20 * G) && !llm_weights_copy_fits(16 * G, 20 * G), "a quarter left");
	if (!dir) {
		SKIP("fixtures folder not found: NATTER_WEIGHTS loads not checked");
		return;
	}
	snprintf(path, sizeof(path), "%s/models/tiny-llama-q8_0.gguf", dir);
	setenv("NATTER_WEIGHTS", "mmap", 1);
	CHECK(llm_model_load(path, &m, err, sizeof(err)) == 0, "%s", err);
	if (m) {
		CHECK(!llm_model_weights_copied(m) && strcmp(llm_model_weights_why(m), "NATTER_WEIGHTS=mmap") == 0,
		    "mmap: mapped, and says why (\"%s\")", llm_model_weights_why(m));
		llm_model_free(m);
		m = NULL;
	}
	setenv("NATTER_WEIGHTS", "copy", 1);
	CHECK(llm_model_load(path, &m, err, sizeof(err)) == 0, "%s", err);
	if (m) {
		CHECK(llm_model_weights_copied(m) && !*llm_model_weights_why(m), "copy: copied, no reason to map");
		llm_model_free(m);
		m = NULL;
	}
	CHECK(llm_model_load_mapped(path, &m, err, sizeof(err)) == 0 && !llm_model_weights_copied(m) &&
	    *llm_model_weights_why(m), "described only: mapped, whatever NATTER_WEIGHTS says");
	llm_model_free(m);
	unsetenv("NATTER_WEIGHTS");
}

int
main(void)
{
	test_weights();
	test_routing();
	test_recurrent_cache();
	test_registry();
	test_hostile_hparams();
	test_synthetic();
	test_longrope();
	test_fixture_rings();
	test_last_only();
	return test_done("test-arch");
}
