/* cmd-mkmodel.c -- `natter mkmodel`: a GGUF with random weights and real model shapes, for benchmarks. */
#include "config.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "natter/gguf-write.h"
#include "natter/gguf.h"
#include "natter/outfile.h"
#include "natter/quant.h"

struct preset {
	const char *name;
	const char *arch;
	int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx;
	float rope_base, rms_eps;
	int tied, qkv_bias, spm;
	int qk_norm;            /* attn_q_norm, attn_k_norm */
	int post_norms;         /* post_attention_norm, post_ffw_norm (Gemma) */
	int window;             /* attention.sliding_window (Gemma 3's local layers) */
	float rope_base_swa;
	int n_expert, n_expert_used;    /* experts of n_ff each */
};

/* head_dim 0: n_embd / n_head.  The vocabularies are synthetic, of the
 * real size: SentencePiece (spm) or byte-level BPE with Qwen's specials. */
static const struct preset presets[] = {
	/* Qwen2.5-0.5B: tied embeddings, q/k/v biases, byte-level BPE. */
	{ "qwen2.5-0.5b", "qwen2", 151936, 896, 24, 14, 2, 0, 4864, 32768, 1000000.0f, 1e-6f, 1, 1, 0,
	    0, 0, 0, 0, 0, 0 },
	/* TinyLlama 1.1B: separate output, SentencePiece. */
	{ "llama-1b", "llama", 32000, 2048, 22, 32, 4, 0, 5632, 2048, 10000.0f, 1e-5f, 0, 0, 1, 0, 0, 0, 0, 0, 0 },
	/* Qwen3-0.6B: 16 heads of 128 (2048 wide over n_embd 1024), q/k norms, tied. */
	{ "qwen3-0.6b", "qwen3", 151936, 1024, 28, 16, 8, 128, 3072, 40960, 1000000.0f, 1e-6f, 1, 0, 0,
	    1, 0, 0, 0, 0, 0 },
	/* Gemma 3 1B: 4 heads of 256, 1 KV head, sliding window 512 on five
	 * layers of six, SentencePiece with 262144 tokens, tied. */
	{ "gemma3-1b", "gemma3", 262144, 1152, 26, 4, 1, 256, 6912, 32768, 1000000.0f, 1e-6f, 1, 0, 1,
	    1, 1, 512, 10000.0f, 0, 0 },
	/* A llama mixture of experts: 8 experts of 1408, top 2, Qwen2's vocabulary size. */
	{ "moe-mini", "llama", 151936, 1024, 12, 16, 4, 0, 1408, 4096, 1000000.0f, 1e-6f, 0, 0, 0,
	    0, 0, 0, 0, 8, 2 },
	/* A small one for quick tests. */
	{ "tiny", "llama", 512, 256, 2, 4, 2, 0, 512, 512, 10000.0f, 1e-5f, 0, 0, 1, 0, 0, 0, 0, 0, 0 },
	/* Qwen3.5-0.8B (its hybrid part below): 24 layers of 1024, n_ff 3584,
	 * gated attention of 8 heads of 256 over 2 KV heads with q/k norms,
	 * tied; Qwen2's vocabulary size like the other presets. */
	{ "qwen3.5-0.8b", "qwen35", 151936, 1024, 24, 8, 2, 256, 3584, 262144, 10000000.0f, 1e-6f, 1, 0, 0,
	    1, 0, 0, 0, 0, 0 },
};
#define N_PRESETS (sizeof(presets) / sizeof(presets[0]))
/* The general.name of every file mkmodel writes begins so. */
#define MK_NAME_PREFIX "natter random "

/* The Gated DeltaNet part of the hybrid presets: three DeltaNet layers to
 * one attention layer, H_k key and H_v value heads of Dk, conv kernel,
 * and the attention's rotated dimensions (partial rotary 0.25 of 256). */
static const struct {
	const char *name;
	int interval, hk, hv, dk, conv, rope_dim;
} hybrids[] = {
	{ "qwen3.5-0.8b", 4, 16, 16, 128, 4, 64 },
};

/* "a, b, c" of the presets' names. */
static void
preset_names(char *buf, size_t n)
{
	size_t len = 0;
	buf[0] = 0;
	for (size_t i = 0; i < N_PRESETS && len < n; i++)
		len += snprintf(buf + len, n - len, "%s%s", i ? ", " : "", presets[i].name);
}

/* The file-type mixes, by llama.cpp's names and general.file_type numbers. */
enum mix {
	MIX_F32, MIX_F16, MIX_BF16, MIX_Q8_0, MIX_Q4_0, MIX_Q4_1, MIX_Q5_0, MIX_Q5_1, MIX_Q4_K_M, MIX_IQ4_NL, MIX_IQ4_XS
};
static const struct { const char *name; enum mix mix; int file_type; } mixes[] = {
	{ "F32", MIX_F32, 0 }, { "F16", MIX_F16, 1 }, { "BF16", MIX_BF16, 32 }, { "Q8_0", MIX_Q8_0, 7 },
	{ "Q4_0", MIX_Q4_0, 2 }, { "Q4_1", MIX_Q4_1, 3 }, { "Q5_0", MIX_Q5_0, 8 }, { "Q5_1", MIX_Q5_1, 9 },
	{ "Q4_K_M", MIX_Q4_K_M, 15 }, { "IQ4_NL", MIX_IQ4_NL, 25 }, { "IQ4_XS", MIX_IQ4_XS, 30 },
};

/* The mixes' names, SEP between them, into BUF of N bytes. */
static void
mix_names(char *buf, size_t n, const char *sep)
{
	size_t len = 0;
	buf[0] = 0;
	for (size_t i = 0; i < sizeof(mixes) / sizeof(mixes[0]) && len < n; i++)
		len += snprintf(buf + len, n - len, "%s%s", i ? sep : "", mixes[i].name);
}

/* The 32-element type of a legacy mix (Q4_0, Q4_1, Q5_0, Q5_1). */
static enum ggml_type
legacy_type(enum mix mix)
{
	return mix == MIX_Q4_1 ? GGML_TYPE_Q4_1 : mix == MIX_Q5_0 ? GGML_TYPE_Q5_0 : mix == MIX_Q5_1 ? GGML_TYPE_Q5_1 :
	    GGML_TYPE_Q4_0;
}

struct fill {
	enum ggml_type type;
	int64_t ne0, ne1;       /* ne1: all rows (of every expert) */
	float sigma;        /* 0: all ones (norm weights) */
	uint64_t seed;
};

static uint64_t
xs(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Roughly normal values (sum of uniforms), cheap enough for a billion. */
static int
fill_tensor(void *ctx, void *buf, size_t nbytes)
{
	const struct fill *f = ctx;
	const struct q_traits *qt = q_traits_get(f->type);
	size_t row = q_row_size(f->type, f->ne0);
	float *tmp = malloc(f->ne0 * sizeof(float));
	uint64_t s = f->seed | 1;

	if (!tmp)
		return -1;
	(void)nbytes;
	for (int64_t r = 0; r < f->ne1; r++) {
		for (int64_t i = 0; i < f->ne0; i++) {
			if (f->sigma <= 0) {
				/* norms: ones; a negative sigma: that constant (ssm_a) */
				tmp[i] = f->sigma == 0 ? 1.0f : f->sigma;
				continue;
			}
			uint64_t v = xs(&s);
			float u = ((v & 0xFFFF) + ((v >> 16) & 0xFFFF) + ((v >> 32) & 0xFFFF) - 98302.5f) / 32768.0f;
			tmp[i] = u * f->sigma;
		}
		qt->from_float(tmp, (uint8_t *)buf + r * row, f->ne0);
	}
	free(tmp);
	return 0;
}

/* llama.cpp's rule for which layers get more bits in the _M mixes. */
static int
more_bits(int i, int n)
{
	return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* K-quants need rows that are a multiple of 256; fall back as llama.cpp does. */
static enum ggml_type
fit(enum ggml_type t, int64_t ne0)
{
	if (ne0 % QK_K == 0)
		return t;
	switch (t) {
	case GGML_TYPE_Q4_K: return GGML_TYPE_Q5_0;
	case GGML_TYPE_Q5_K: return GGML_TYPE_Q5_1;
	case GGML_TYPE_Q6_K: return GGML_TYPE_Q8_0;
	default: return t;
	}
}

/* llama.cpp's choices, including those for 8-expert models (attn_k and
 * attn_v in Q8_0, attn_output in Q5_K) and ffn_down_exps as ffn_down. */
static enum ggml_type
weight_type(enum mix mix, const char *role, int layer, int n_layer, int64_t ne0, int n_expert)
{
	const int kv = strcmp(role, "attn_v") == 0 || strcmp(role, "attn_k") == 0;

	switch (mix) {
	case MIX_F32: return GGML_TYPE_F32;
	case MIX_F16: return GGML_TYPE_F16;
	case MIX_BF16: return GGML_TYPE_BF16;
	case MIX_Q8_0: return GGML_TYPE_Q8_0;
	case MIX_Q4_0:
	case MIX_Q4_1:
	case MIX_Q5_0:
	case MIX_Q5_1:
		if (strcmp(role, "output") == 0)
			return fit(GGML_TYPE_Q6_K, ne0);
		return n_expert == 8 && kv ? GGML_TYPE_Q8_0 : legacy_type(mix);
	case MIX_Q4_K_M:
		if (strcmp(role, "output") == 0)
			return fit(GGML_TYPE_Q6_K, ne0);
		if (n_expert == 8 && kv)
			return GGML_TYPE_Q8_0;
		if (n_expert == 8 && strcmp(role, "attn_output") == 0)
			return fit(GGML_TYPE_Q5_K, ne0);
		if ((strcmp(role, "attn_v") == 0 || strncmp(role, "ffn_down", 8) == 0) && more_bits(layer, n_layer))
			return fit(GGML_TYPE_Q6_K, ne0);
		return fit(GGML_TYPE_Q4_K, ne0);
	case MIX_IQ4_NL:
		return strcmp(role, "output") == 0 ? fit(GGML_TYPE_Q6_K, ne0) : GGML_TYPE_IQ4_NL;
	case MIX_IQ4_XS:
		/* IQ4_XS needs rows of 256; llama.cpp falls back to IQ4_NL. */
		if (strcmp(role, "output") == 0)
			return fit(GGML_TYPE_Q6_K, ne0);
		return ne0 % QK_K == 0 ? GGML_TYPE_IQ4_XS : GGML_TYPE_IQ4_NL;
	}
	return GGML_TYPE_F32;
}

/* An existing -o is written over only when mkmodel wrote it (general.name "natter random
 * ..."): a real model named like a preset, or any other file, the user removes first.
 * Prints the error. */
static int
old_output_check(const char *out)
{
	struct gguf_file *f = NULL;
	struct stat st;
	char err[512], *name = NULL;
	int ok;

	if (stat(out, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;   /* new, or a device or a FIFO */
	ok = gguf_open(out, &f, err, sizeof(err)) == 0 && (name = gguf_get_str(f, "general.name")) &&
	    strncmp(name, MK_NAME_PREFIX, strlen(MK_NAME_PREFIX)) == 0;
	if (!ok)
		cli_error("mkmodel: -o %s exists and is not a model mkmodel wrote; remove it first or choose another -o",
		    out);
	free(name);
	gguf_close(f);
	return ok ? 0 : -1;
}

int
cmd_mkmodel(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "preset", required_argument, NULL, 'p' },
		{ "type", required_argument, NULL, 't' },
		{ "output", required_argument, NULL, 'o' },
		{ "layers", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *pname = NULL, *tname = NULL, *out = NULL;
	const struct preset *P = NULL;
	int mi = -1, c, n_layer_override = 0, rc = 1, hy = -1;
	struct gguf_writer *w = NULL;
	struct fill *fills = NULL;
	int nfill = 0;
	char err[512], name[96];
	char **tokstr = NULL;
	int32_t *toktype = NULL;
	float *scores = NULL;

	optind = 1;
	while ((c = getopt_long(argc, argv, "p:t:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': pname = optarg; break;
		case 't': tname = optarg; break;
		case 'o': out = optarg; break;
		case 'l':
			if (cli_arg_int(optarg, 1, 1024, &n_layer_override,
			    "mkmodel: --layers wants a count of layers") < 0)
				return 2;
			break;
		case 'h':
			preset_names(err, sizeof(err));
			mix_names(name, sizeof(name), "|");
			printf("usage: natter mkmodel --preset NAME --type (%s) -o FILE [--layers N]\n"
			    "presets: %s\n", name, err);
			return 0;
		default:
			return 2;
		}
	}
	if (cli_no_more_args("mkmodel", argc, argv, optind) < 0)
		return 2;
	if (!pname || !tname || !out) {
		cli_error("mkmodel: needs --preset NAME, --type TYPE and -o FILE");
		return 2;
	}
	/* mkmodel reads no file, but the history database is never the file it writes. */
	if (cli_output_check("mkmodel", "-o", out, NULL, NULL, 0) < 0 || old_output_check(out) < 0)
		return 2;
	for (size_t i = 0; i < N_PRESETS; i++)
		if (strcmp(presets[i].name, pname) == 0)
			P = &presets[i];
	for (size_t i = 0; i < sizeof(mixes) / sizeof(mixes[0]); i++)
		if (strcasecmp(mixes[i].name, tname) == 0)
			mi = (int)i;
	if (!P) {
		preset_names(err, sizeof(err));
		cli_error("mkmodel: unknown preset '%s' (%s)", pname, err);
		return 2;
	}
	if (mi < 0) {
		mix_names(name, sizeof(name), ", ");
		cli_error("mkmodel: unknown type '%s' (%s)", tname, name);
		return 2;
	}
	for (size_t i = 0; i < sizeof(hybrids) / sizeof(hybrids[0]); i++)
		if (strcmp(hybrids[i].name, P->name) == 0)
			hy = (int)i;
	q_init(0);
	{
		const int n_layer = n_layer_override > 0 ? n_layer_override : P->n_layer;
		const int hd = P->head_dim ? P->head_dim : P->n_embd / P->n_head, E = P->n_embd;
		const int Q = P->n_head * hd, KV = P->n_head_kv * hd, FF = P->n_ff, NE = P->n_expert;
		const enum mix mix = mixes[mi].mix;
		const int max_fill = 4 + n_layer * 20;
		uint64_t seed = 12345;

		w = gguf_writer_new(GGUF_WRITE_ALIGNMENT);
		fills = calloc(max_fill, sizeof(*fills));
		tokstr = calloc(P->n_vocab, sizeof(*tokstr));
		toktype = calloc(P->n_vocab, sizeof(*toktype));
		scores = calloc(P->n_vocab, sizeof(*scores));
		if (!w || !fills || !tokstr || !toktype || !scores) {
			cli_error("out of memory");
			goto out;
		}
#define KEY(s) (snprintf(name, sizeof(name), "%s." s, P->arch), name)
		gguf_w_str(w, "general.architecture", P->arch);
		snprintf(err, sizeof(err), MK_NAME_PREFIX "%s %s", P->name, mixes[mi].name);
		gguf_w_str(w, "general.name", err);
		gguf_w_u32(w, "general.file_type", (uint32_t)mixes[mi].file_type);
		gguf_w_u32(w, "general.quantization_version", 2);
		gguf_w_u32(w, KEY("context_length"), (uint32_t)P->n_ctx);
		gguf_w_u32(w, KEY("embedding_length"), (uint32_t)E);
		gguf_w_u32(w, KEY("block_count"), (uint32_t)n_layer);
		gguf_w_u32(w, KEY("feed_forward_length"), (uint32_t)FF);
		gguf_w_u32(w, KEY("attention.head_count"), (uint32_t)P->n_head);
		gguf_w_u32(w, KEY("attention.head_count_kv"), (uint32_t)P->n_head_kv);
		gguf_w_f32(w, KEY("rope.freq_base"), P->rope_base);
		gguf_w_f32(w, KEY("attention.layer_norm_rms_epsilon"), P->rms_eps);
		if (P->head_dim) {
			gguf_w_u32(w, KEY("attention.key_length"), (uint32_t)hd);
			gguf_w_u32(w, KEY("attention.value_length"), (uint32_t)hd);
		}
		if (P->window) {
			gguf_w_u32(w, KEY("attention.sliding_window"), (uint32_t)P->window);
			gguf_w_f32(w, KEY("rope.freq_base_swa"), P->rope_base_swa);
		}
		if (NE) {
			gguf_w_u32(w, KEY("expert_count"), (uint32_t)NE);
			gguf_w_u32(w, KEY("expert_used_count"), (uint32_t)P->n_expert_used);
		}
		if (hy >= 0) {
			static const int32_t sections[4] = { 11, 11, 10, 0 };
			gguf_w_u32(w, KEY("rope.dimension_count"), (uint32_t)hybrids[hy].rope_dim);
			gguf_w_arr(w, KEY("rope.dimension_sections"), GGUF_VT_INT32, sections, 4);
			gguf_w_u32(w, KEY("ssm.conv_kernel"), (uint32_t)hybrids[hy].conv);
			gguf_w_u32(w, KEY("ssm.state_size"), (uint32_t)hybrids[hy].dk);
			gguf_w_u32(w, KEY("ssm.group_count"), (uint32_t)hybrids[hy].hk);
			gguf_w_u32(w, KEY("ssm.time_step_rank"), (uint32_t)hybrids[hy].hv);
			gguf_w_u32(w, KEY("ssm.inner_size"), (uint32_t)(hybrids[hy].hv * hybrids[hy].dk));
			gguf_w_u32(w, KEY("full_attention_interval"), (uint32_t)hybrids[hy].interval);
		}
#undef KEY
		/* A synthetic vocabulary of the right size: bytes first, then filler. */
		int next = 0;
		for (int i = 0; i < P->n_vocab; i++) {
			char buf[32];
			toktype[i] = 1;
			if (P->spm) {
				if (i == 0) { snprintf(buf, sizeof(buf), "<unk>"); toktype[i] = 2; }
				else if (i == 1) { snprintf(buf, sizeof(buf), "<s>"); toktype[i] = 3; }
				else if (i == 2) { snprintf(buf, sizeof(buf), "</s>"); toktype[i] = 3; }
				else if (i < 259) { snprintf(buf, sizeof(buf), "<0x%02X>", i - 3); toktype[i] = 6; }
				else snprintf(buf, sizeof(buf), "\xe2\x96\x81t%d", i);
				scores[i] = -(float)i;
			} else {
				if (i < 256) {
					/* GPT-2's byte alphabet: printable bytes as themselves, others from U+0100. */
					int b = i;
					int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
					unsigned cp = printable ? (unsigned)b : 0x100u + (unsigned)next++;
					if (cp < 0x80) { buf[0] = (char)cp; buf[1] = 0; }
					else { buf[0] = (char)(0xC0 | (cp >> 6)); buf[1] = (char)(0x80 | (cp & 0x3F)); buf[2] = 0; }
				} else if (i == P->n_vocab - 2) {
					snprintf(buf, sizeof(buf), "<|im_start|>");
					toktype[i] = 3;
				} else if (i == P->n_vocab - 1) {
					snprintf(buf, sizeof(buf), "<|im_end|>");
					toktype[i] = 3;
				} else {
					snprintf(buf, sizeof(buf), "t%d", i);
				}
			}
			tokstr[i] = strdup(buf);
			if (!tokstr[i]) {
				cli_error("out of memory");
				goto out;
			}
		}
		gguf_w_str(w, "tokenizer.ggml.model", P->spm ? "llama" : "gpt2");
		if (!P->spm)   /* as the real files have it */
			gguf_w_str(w, "tokenizer.ggml.pre", !strcmp(P->arch, "qwen35") ? "qwen35" : "qwen2");
		gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tokstr, P->n_vocab);
		gguf_w_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, toktype, P->n_vocab);
		if (P->spm) {
			gguf_w_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, P->n_vocab);
			gguf_w_u32(w, "tokenizer.ggml.bos_token_id", 1);
			gguf_w_u32(w, "tokenizer.ggml.eos_token_id", 2);
			gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", 0);
		} else {
			gguf_w_arr_str(w, "tokenizer.ggml.merges", NULL, 0);
			gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)P->n_vocab - 1);
			gguf_w_bool(w, "tokenizer.ggml.add_bos_token", 0);
		}

#define TENSOR3(tname_, type_, ne0_, ne1_, ne2_, sigma_) do { \
		struct fill *f_ = &fills[nfill++]; \
		uint64_t ne_[3] = { (uint64_t)(ne0_), (uint64_t)(ne1_), (uint64_t)(ne2_) }; \
		f_->type = (type_); f_->ne0 = (ne0_); f_->ne1 = (int64_t)(ne1_) * (ne2_); f_->sigma = (sigma_); \
		f_->seed = seed = seed * 6364136223846793005ull + 1442695040888963407ull; \
		if (gguf_w_tensor(w, (tname_), f_->type, (ne2_) > 1 ? 3 : (ne1_) == 1 ? 1 : 2, ne_, NULL, \
		    fill_tensor, f_) < 0) { \
			cli_error("mkmodel: cannot add tensor %s", (tname_)); \
			goto out; \
		} \
	} while (0)
#define TENSOR(tname_, type_, ne0_, ne1_, sigma_) TENSOR3(tname_, type_, ne0_, ne1_, 1, sigma_)
		{
			enum ggml_type et = mix == MIX_F32 ? GGML_TYPE_F32 : mix == MIX_F16 ? GGML_TYPE_F16 :
			    mix == MIX_BF16 ? GGML_TYPE_BF16 :
			    mix == MIX_Q8_0 ? GGML_TYPE_Q8_0 :
			    mix == MIX_Q4_0 || mix == MIX_Q4_1 || mix == MIX_Q5_0 || mix == MIX_Q5_1 ? legacy_type(mix) :
			    mix == MIX_IQ4_NL || mix == MIX_IQ4_XS ? GGML_TYPE_IQ4_NL : fit(GGML_TYPE_Q4_K, E);
			if (P->tied)   /* the embedding doubles as the output: quantize it as the output */
				et = weight_type(mix, "output", 0, n_layer, E, NE);
			TENSOR("token_embd.weight", et, E, P->n_vocab, 0.02f);
		}
		TENSOR("output_norm.weight", GGML_TYPE_F32, E, 1, 0);
		if (!P->tied)
			TENSOR("output.weight", weight_type(mix, "output", 0, n_layer, E, NE), E, P->n_vocab, 0.02f);
		for (int l = 0; l < n_layer; l++) {
			char tn[64];
#define T3(s, role, ne0, ne1, ne2, sig) do { snprintf(tn, sizeof(tn), "blk.%d." s, l); \
			TENSOR3(tn, (role) ? weight_type(mix, (role), l, n_layer, (ne0), NE) : GGML_TYPE_F32, (ne0), (ne1), \
			    (ne2), (sig)); } while (0)
#define T(s, role, ne0, ne1, sig) T3(s, role, ne0, ne1, 1, sig)
			if (hy >= 0) {
				/* Qwen3.5: Gated DeltaNet, or every interval-th layer gated
				 * attention (attn_q holds query and gate); SwiGLU after
				 * post_attention_norm. */
				const int hk = hybrids[hy].hk, hv = hybrids[hy].hv, dk = hybrids[hy].dk;
				const int inner = hv * dk, cd = 2 * hk * dk + inner;
				T("attn_norm.weight", NULL, E, 1, 0);
				if ((l + 1) % hybrids[hy].interval == 0) {
					T("attn_q.weight", "attn_q", E, 2 * Q, 0.02f);
					T("attn_k.weight", "attn_k", E, KV, 0.02f);
					T("attn_v.weight", "attn_v", E, KV, 0.02f);
					T("attn_q_norm.weight", NULL, hd, 1, 0);
					T("attn_k_norm.weight", NULL, hd, 1, 0);
					T("attn_output.weight", "attn_output", Q, E, 0.02f);
				} else {
					T("attn_qkv.weight", "attn_qkv", E, cd, 0.02f);
					T("attn_gate.weight", "attn_gate", E, inner, 0.02f);
					T("ssm_conv1d.weight", NULL, hybrids[hy].conv, cd, 0.2f);
					T("ssm_a", NULL, hv, 1, -1.0f);
					T("ssm_dt.bias", NULL, hv, 1, 0.5f);
					T("ssm_alpha.weight", "ssm_alpha", E, hv, 0.02f);
					T("ssm_beta.weight", "ssm_beta", E, hv, 0.02f);
					T("ssm_norm.weight", NULL, dk, 1, 0);
					T("ssm_out.weight", "ssm_out", inner, E, 0.02f);
				}
				T("post_attention_norm.weight", NULL, E, 1, 0);
				T("ffn_gate.weight", "ffn_gate", E, FF, 0.02f);
				T("ffn_up.weight", "ffn_up", E, FF, 0.02f);
				T("ffn_down.weight", "ffn_down", FF, E, 0.02f);
				continue;
			}
			T("attn_norm.weight", NULL, E, 1, 0);
			T("attn_q.weight", "attn_q", E, Q, 0.02f);
			T("attn_k.weight", "attn_k", E, KV, 0.02f);
			T("attn_v.weight", "attn_v", E, KV, 0.02f);
			if (P->qkv_bias) {
				T("attn_q.bias", NULL, Q, 1, 0.02f);
				T("attn_k.bias", NULL, KV, 1, 0.02f);
				T("attn_v.bias", NULL, KV, 1, 0.02f);
			}
			if (P->qk_norm) {
				T("attn_q_norm.weight", NULL, hd, 1, 0);
				T("attn_k_norm.weight", NULL, hd, 1, 0);
			}
			T("attn_output.weight", "attn_output", Q, E, 0.02f);
			if (P->post_norms)
				T("post_attention_norm.weight", NULL, E, 1, 0);
			T("ffn_norm.weight", NULL, E, 1, 0);
			if (NE) {
				T("ffn_gate_inp.weight", NULL, E, NE, 0.02f);   /* routers stay F32 */
				T3("ffn_gate_exps.weight", "ffn_gate_exps", E, FF, NE, 0.02f);
				T3("ffn_up_exps.weight", "ffn_up_exps", E, FF, NE, 0.02f);
				T3("ffn_down_exps.weight", "ffn_down_exps", FF, E, NE, 0.02f);
			} else {
				T("ffn_gate.weight", "ffn_gate", E, FF, 0.02f);
				T("ffn_up.weight", "ffn_up", E, FF, 0.02f);
				T("ffn_down.weight", "ffn_down", FF, E, 0.02f);
			}
			if (P->post_norms)
				T("post_ffw_norm.weight", NULL, E, 1, 0);
#undef T
#undef T3
		}
#undef TENSOR
#undef TENSOR3
		/* Ctrl-C while gigabytes are written removes the temporary. */
		outfile_catch_signals();
		if (gguf_writer_write(w, out, err, sizeof(err)) < 0) {
			cli_error("%s", err);
			goto out;
		}
	}
	rc = 0;
out:
	if (tokstr)
		for (int i = 0; P && i < P->n_vocab; i++)
			free(tokstr[i]);
	free(tokstr);
	free(toktype);
	free(scores);
	free(fills);
	gguf_writer_free(w);
	return rc;
}
