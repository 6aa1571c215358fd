/* cmd-info.c -- `natter info`: what a GGUF file holds, in a screenful. */
#include "config.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "natter/gguf.h"
#include "natter/llm.h"
#include "natter/quant.h"
#include "natter/tok.h"

static void
print_value(const struct gguf_value *v)
{
	switch (v->type) {
	case GGUF_VT_UINT8: case GGUF_VT_UINT16: case GGUF_VT_UINT32: case GGUF_VT_UINT64:
		printf("%" PRIu64, v->v.u64);
		break;
	case GGUF_VT_BOOL:
		printf("%s", v->v.u64 ? "true" : "false");
		break;
	case GGUF_VT_INT8: case GGUF_VT_INT16: case GGUF_VT_INT32: case GGUF_VT_INT64:
		printf("%" PRId64, v->v.i64);
		break;
	case GGUF_VT_FLOAT32: case GGUF_VT_FLOAT64:
		printf("%g", v->v.f64);
		break;
	case GGUF_VT_STRING: {
		uint64_t n = v->v.str.len < 60 ? v->v.str.len : 60;
		putchar('"');
		for (uint64_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)v->v.str.ptr[i];
			if (c == '\n')
				fputs("\\n", stdout);
			else if (c < 0x20 || c == 0x7f)
				printf("\\x%02x", c);
			else
				putchar(c);
		}
		putchar('"');
		if (n < v->v.str.len)
			printf("... (%" PRIu64 " bytes)", v->v.str.len);
		break;
	}
	case GGUF_VT_ARRAY:
		printf("[%s x %" PRIu64 "]", gguf_vtype_name(v->v.arr.type), v->v.arr.n);
		break;
	default:
		printf("?");
	}
}

static void
hp(const struct gguf_file *f, const char *arch, const char *suffix, const char *label)
{
	char key[160];
	const struct gguf_kv *kv;

	snprintf(key, sizeof(key), "%s.%s", arch, suffix);
	kv = gguf_find_kv(f, key);
	if (!kv)
		return;
	printf("  %-22s ", label);
	print_value(&kv->val);
	putchar('\n');
}

static void
human_bytes(uint64_t b, char *out, size_t n)
{
	if (b >= (1ull << 30))
		snprintf(out, n, "%.2f GiB", b / 1073741824.0);
	else if (b >= (1ull << 20))
		snprintf(out, n, "%.2f MiB", b / 1048576.0);
	else if (b >= 1024)
		snprintf(out, n, "%.1f KiB", b / 1024.0);
	else
		snprintf(out, n, "%" PRIu64 " B", b);
}

/* The registry, as a table. */
static void
print_architectures(void)
{
	printf("architectures natter runs (general.architecture):\n");
	for (int i = 0; i < llm_arch_count(); i++)
		printf("  %-10s %s\n", llm_arch_name(i), llm_arch_models(i));
}

/* How natter reads the model: the description its architecture gives. */
static void
print_layout(const struct llm_model *m, const struct gguf_file *f)
{
	const struct llm_hparams *hp = llm_model_hparams(m);
	static const char kind_char[] = { [LLM_LAYER_FULL] = 'F', [LLM_LAYER_SLIDING] = 'S',
	    [LLM_LAYER_RECURRENT] = 'R' };
	int n_kind[3] = { 0 }, all = 1, period = 0;
	unsigned fl = hp->layer[0].flags, afl = 0;
	char hb[32];

	printf("as natter runs it:\n");
	for (int il = hp->n_layer - 1; il >= 0; il--)
		if (hp->layer[il].kind != LLM_LAYER_RECURRENT)
			afl = hp->layer[il].flags;   /* the first attention layer's */
	for (int il = 0; il < hp->n_layer; il++) {
		n_kind[hp->layer[il].kind]++;
		all &= hp->layer[il].flags == fl;
	}
	printf("  %-22s %d:", "layers", hp->n_layer);
	if (n_kind[LLM_LAYER_FULL])
		printf(" %d full attention%s", n_kind[LLM_LAYER_FULL], n_kind[LLM_LAYER_FULL] < hp->n_layer ? "," : "");
	if (n_kind[LLM_LAYER_SLIDING])
		printf(" %d sliding window of %d positions%s", n_kind[LLM_LAYER_SLIDING], hp->window,
		    n_kind[LLM_LAYER_RECURRENT] ? "," : "");
	if (n_kind[LLM_LAYER_RECURRENT])
		printf(" %d recurrent (Gated DeltaNet)", n_kind[LLM_LAYER_RECURRENT]);
	if (hp->n_layer_mtp)
		printf("; then %d multi-token-prediction block%s, checked and not run", hp->n_layer_mtp,
		    hp->n_layer_mtp > 1 ? "s" : "");
	printf("\n");
	if (n_kind[LLM_LAYER_SLIDING] || n_kind[LLM_LAYER_RECURRENT]) {
		/* The shortest period that repeats over every layer, if any. */
		for (int p = 1; p <= 16 && p < hp->n_layer && !period; p++) {
			int same = hp->n_layer % p == 0;
			for (int il = p; il < hp->n_layer && same; il++)
				same = hp->layer[il].kind == hp->layer[il - p].kind;
			if (same)
				period = p;
		}
		printf("  %-22s ", "layer pattern");
		for (int il = 0; il < hp->n_layer && il < 128; il++)
			putchar(kind_char[hp->layer[il].kind]);
		printf("%s (", hp->n_layer > 128 ? "..." : "");
		if (period) {
			printf("%d x ", hp->n_layer / period);
			for (int il = 0; il < period; il++)
				putchar(kind_char[hp->layer[il].kind]);
			printf("; ");
		}
		printf("F full, S sliding, R recurrent)\n");
	}
	printf("  %-22s %d heads of %d, %d KV head%s", "attention", hp->n_head, hp->head_dim, hp->n_head_kv,
	    hp->n_head_kv > 1 ? "s" : "");
	if (hp->head_dim_v != hp->head_dim)
		printf(" (values %d)", hp->head_dim_v);
	printf(", q.k x %.4g", hp->attn_scale);
	if (afl & LLM_LAYER_QK_NORM)
		printf(", per-head q/k RMSNorm");
	if (afl & LLM_LAYER_ATTN_GATE)
		printf(", sigmoid output gate per head");
	printf("\n");
	{
		/* What a session holds per position (KV) and at once (states). */
		uint64_t kv = 0, st = 0, conv = 0;
		int n_att = 0, n_rec = n_kind[LLM_LAYER_RECURRENT];
		for (int il = 0; il < hp->n_layer; il++) {
			const struct llm_layer_hparams *l = &hp->layer[il];
			if (l->kind == LLM_LAYER_RECURRENT) {
				st += (l->conv_floats + l->state_floats) * sizeof(float);
				conv = l->conv_floats;
			} else {
				kv += (uint64_t)hp->n_head_kv * (hp->head_dim + hp->head_dim_v) * sizeof(uint16_t);
				n_att++;
			}
		}
		if (n_rec) {
			int hv = hp->ssm_dt_rank, dv = hv ? hp->ssm_d_inner / hv : 0;
			human_bytes(st / n_rec, hb, sizeof(hb));
			printf("  %-22s %d key heads and %d value heads of %d, conv kernel %d\n", "Gated DeltaNet",
			    hp->ssm_n_group, hv, hp->ssm_d_state, hp->ssm_d_conv);
			printf("  %-22s %s per recurrent layer (conv %d x %llu, %d x %d x %d)", "recurrent state", hb,
			    hp->ssm_d_conv - 1, (unsigned long long)(hp->ssm_d_conv > 1 ? conv / (hp->ssm_d_conv - 1) : 0),
			    hv, hp->ssm_d_state, dv);
			human_bytes(st, hb, sizeof(hb));
			printf(", %s per session\n", hb);
		}
		if (n_att && (n_rec || n_kind[LLM_LAYER_SLIDING])) {
			human_bytes(kv, hb, sizeof(hb));
			printf("  %-22s %s per position (%d attention layer%s, f16, the default --kv-type)\n", "KV cache", hb,
			    n_att, n_att > 1 ? "s" : "");
		}
	}
	printf("  %-22s %s pairs on %d of %d dimensions", "RoPE", hp->rope_neox ? "NeoX (i, i+d/2)" : "adjacent",
	    hp->rope_dim, hp->head_dim);
	if (hp->rope_factors == 1)
		printf(", frequency factors (rope_freqs)");
	else if (hp->rope_factors == 2)
		printf(", LongRoPE factors (long above %d positions)", hp->rope_n_ctx_orig);
	if (hp->rope_attn_factor != 1.0f)
		printf(", attn_factor %g", hp->rope_attn_factor);
	printf("\n");
	/* Each distinct base and scale, with the layers that use it. */
	for (int il = 0; il < hp->n_layer; il++) {
		const struct llm_layer_hparams *l = &hp->layer[il];
		int first = 1, count[3] = { 0 };
		if (l->kind == LLM_LAYER_RECURRENT)
			continue;   /* no RoPE: no attention */
		for (int j = 0; j < il; j++)
			if (hp->layer[j].kind != LLM_LAYER_RECURRENT && hp->layer[j].rope_base == l->rope_base &&
			    hp->layer[j].rope_scale == l->rope_scale)
				first = 0;
		if (!first)
			continue;
		for (int j = il; j < hp->n_layer; j++)
			if (hp->layer[j].rope_base == l->rope_base && hp->layer[j].rope_scale == l->rope_scale)
				count[hp->layer[j].kind]++;
		printf("  %-22s base %g", "", l->rope_base);
		if (l->rope_scale != 1.0f)
			printf(", linear scaling 1/%g", 1.0f / l->rope_scale);
		printf(" (");
		if (count[LLM_LAYER_FULL])
			printf("%d full%s", count[LLM_LAYER_FULL], count[LLM_LAYER_SLIDING] ? ", " : "");
		if (count[LLM_LAYER_SLIDING])
			printf("%d sliding", count[LLM_LAYER_SLIDING]);
		printf(" layer%s)\n", count[LLM_LAYER_FULL] + count[LLM_LAYER_SLIDING] > 1 ? "s" : "");
	}
	if (hp->attn_softcap > 0 || hp->final_softcap > 0)
		printf("  %-22s attention %g, final logits %g\n", "soft-caps", hp->attn_softcap, hp->final_softcap);
	printf("  %-22s RMSNorm (eps %g)%s\n", "norms", hp->rms_eps,
	    fl & LLM_LAYER_POST_NORMS ? ", also after attention and after the FFN" :
	    n_kind[LLM_LAYER_RECURRENT] ? ", weights as stored; the FFN's is post_attention_norm" : "");
	if (fl & LLM_LAYER_MOE) {
		printf("  %-22s %d, %d used per token (softmax router, weights %s), n_ff %d each", "experts",
		    hp->n_expert, hp->n_expert_used, hp->expert_norm ? "renormalised" : "as routed", hp->n_ff_exp);
		if (fl & LLM_LAYER_SHARED_EXPERT)
			printf("; a shared expert (n_ff %d, sigmoid gate)", hp->n_ff_shexp);
		printf("\n");
	}
	if (!(fl & LLM_LAYER_MOE) || !all)
		printf("  %-22s %s gate, n_ff %d\n", "feed-forward", hp->ffn_act == LLM_FFN_GELU_TANH ? "GELU (tanh)" : "SiLU",
		    hp->n_ff);
	printf("  %-22s %s%s", "embeddings", gguf_find_tensor(f, "output.weight") ? "separate output" : "tied output",
	    hp->embd_scale != 1.0f ? "" : "\n");
	if (hp->embd_scale != 1.0f)
		printf(", inputs x %g\n", hp->embd_scale);
}

static const enum ggml_type float_types[] = { GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16 };

/* `natter info --cpu`: the kernel tiers, which this CPU has, which is
 * used, and how float weights' batches run. */
static int
info_cpu(void)
{
	char err[256];
	int rc = q_cpu_init(err, sizeof(err));

	printf("kernel tiers (NATTER_CPU=NAME chooses a lower one):\n");
	for (int t = 0; t < q_cpu_tier_count(); t++)
		printf("  %-11s %-36s %s\n", q_cpu_tier_name(t), q_cpu_tier_isa(t),
		    q_cpu_tier_available(t) ? "available" : "not on this CPU (or not built)");
	printf("detected: %s\nchosen:   %s\n", q_cpu_tier_name(q_cpu_tier_best()), q_cpu_features());
	if (rc < 0) {
		cli_error("%s", err);
		return 2;
	}
	int b32, k, f, l2;
	const char *why;
	q_cpu_prefetch(q_cpu_tier_chosen(), &b32, &k, &f, &l2, &why);
	const char *l2s = l2 ? ", and past that into L2" : "";
	if (q_cpu_tier_chosen() == 0)
		printf("read-ahead: none (the portable tier)\n");
	else if (strcmp(why, "NATTER_PREFETCH") == 0)
		printf("read-ahead: %d bytes in 32-weight blocks, %d in K-quants, %d in float rows%s (set by "
		    "NATTER_PREFETCH)\n", b32, k, f, l2s);
	else
		printf("read-ahead: %d bytes in 32-weight blocks, %d in K-quants, %d in float rows%s (%s; "
		    "NATTER_PREFETCH=B32,K,F,L2 sets them)\n", b32, k, f, l2s, why);
	/* Float weights' batches: timed here, as on a model's first prompt. */
	printf("float weights, batches of 32 tokens or more (NATTER_FLOAT_GEMM=tiles|openblas forces one):\n");
	for (size_t i = 0; i < sizeof(float_types) / sizeof(float_types[0]); i++) {
		/* each class of batches: below Q_FLOAT_GEMM_SPLIT tokens, from it */
		for (int cls = 0; cls < 2; cls++) {
			double ms[2];
			enum q_float_gemm g = q_float_gemm_choice(float_types[i], cls ? Q_FLOAT_GEMM_SPLIT : 32, ms);
			printf("  %-5s %-8s", ggml_type_info_get(float_types[i])->name, q_float_gemm_name(g));
			if (ms[0] > 0) {
				printf(" (measured: tiles %.3f ms, openblas %.3f ms) %s %d tokens", ms[0], ms[1],
				    cls ? "from" : "below", Q_FLOAT_GEMM_SPLIT);
			} else {
				printf(" (%s)\n", getenv("NATTER_FLOAT_GEMM") && strcmp(getenv("NATTER_FLOAT_GEMM"), "auto") ?
				    "NATTER_FLOAT_GEMM" : "the only way on this tier");
				break;
			}
			putchar('\n');
		}
	}
	return 0;
}

int
cmd_info(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "kv", no_argument, NULL, 'k' },
		{ "tensors", no_argument, NULL, 't' },
		{ "architectures", no_argument, NULL, 'a' },
		{ "cpu", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	int show_kv = 0, show_tensors = 0, archs = 0, cpu = 0, c;
	struct gguf_file *f;
	struct tok_vocab *vocab = NULL;
	char err[512], *arch, *name, *tmpl;
	uint64_t type_n[GGML_TYPE_COUNT] = { 0 }, type_bytes[GGML_TYPE_COUNT] = { 0 };
	uint64_t total_bytes = 0, total_elems = 0;
	char hb[32], shown[1024];

	optind = 1;
	while ((c = getopt_long(argc, argv, "m:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': path = optarg; break;
		case 'k': show_kv = 1; break;
		case 't': show_tensors = 1; break;
		case 'a': archs = 1; break;
		case 'c': cpu = 1; break;
		case 'h':
			printf("usage: natter info -m FILE [--kv] [--tensors]\n"
			    "       natter info --architectures\n"
			    "       natter info --cpu\n");
			return 0;
		default:
			return 2;
		}
	}
	if (archs || cpu) {
		/* Each stands alone: a model given with it was dropped without a word. */
		if (archs + cpu > 1 || path || optind < argc || show_kv || show_tensors) {
			cli_error("info: %s takes nothing else (natter info %s)", cpu ? "--cpu" : "--architectures",
			    cpu ? "--cpu" : "--architectures");
			return 2;
		}
		if (cpu)
			return info_cpu();
		print_architectures();
		return 0;
	}
	if (!path && optind < argc)
		path = argv[optind++];
	if (cli_no_more_args("info", argc, argv, optind) < 0)
		return 2;
	if (!path) {
		cli_error("info: no model given (use -m FILE)");
		return 2;
	}
	if (gguf_open(path, &f, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		return 1;
	}

	arch = gguf_get_str(f, "general.architecture");
	name = gguf_get_str(f, "general.name");
	tmpl = gguf_get_str(f, "tokenizer.chat_template");
	human_bytes(f->size, hb, sizeof(hb));
	printf("file:           %s (%s, GGUF v%u)\n", path, hb, f->version);
	if (name)
		printf("name:           %s\n", cli_shown(name, strlen(name), shown, sizeof(shown)));
	printf("architecture:   %s\n", arch ? cli_shown(arch, strlen(arch), shown, sizeof(shown)) : "(none)");
	if (arch) {
		printf("hyperparameters:\n");
		hp(f, arch, "context_length", "context length");
		hp(f, arch, "embedding_length", "embedding length");
		hp(f, arch, "block_count", "layers");
		hp(f, arch, "feed_forward_length", "feed-forward length");
		hp(f, arch, "attention.head_count", "attention heads");
		hp(f, arch, "attention.head_count_kv", "KV heads");
		hp(f, arch, "attention.key_length", "head dim (key)");
		hp(f, arch, "rope.dimension_count", "RoPE dimensions");
		hp(f, arch, "rope.freq_base", "RoPE base");
		hp(f, arch, "attention.layer_norm_rms_epsilon", "RMSNorm epsilon");
		hp(f, arch, "attention.sliding_window", "sliding window");
		hp(f, arch, "expert_count", "experts");
		hp(f, arch, "expert_used_count", "experts used");
		hp(f, arch, "full_attention_interval", "full attention every");
		hp(f, arch, "ssm.conv_kernel", "SSM conv kernel");
		hp(f, arch, "ssm.state_size", "SSM state size");
		hp(f, arch, "ssm.group_count", "SSM key heads");
		hp(f, arch, "ssm.time_step_rank", "SSM value heads");
		hp(f, arch, "ssm.inner_size", "SSM inner size");
		hp(f, arch, "nextn_predict_layers", "MTP blocks");
		hp(f, arch, "vocab_size", "vocabulary size");
	}
	if (arch && f->n_tensors) {
		struct llm_model *m = NULL;
		if (llm_model_load_mapped(path, &m, err, sizeof(err)) == 0)
			print_layout(m, f);
		else
			printf("natter cannot run it: %s\n", cli_shown(err, strlen(err), shown, sizeof(shown)));
		llm_model_free(m);
	}
	if (gguf_find_kv(f, "tokenizer.ggml.model")) {
		if (tok_vocab_load(f, &vocab, err, sizeof(err)) < 0) {
			printf("tokenizer:      error: %s\n", err);
		} else {
			printf("tokenizer:      %s, %d tokens",
			    tok_vocab_kind(vocab) == TOK_SPM ? "SentencePiece BPE (llama)" : "byte-level BPE (gpt2)",
			    tok_vocab_size(vocab));
			if (tok_vocab_kind(vocab) == TOK_BPE)
				printf(", pre-tokenizer %s", tok_vocab_pre(vocab));
			printf("\n");
			printf("  BOS %d, EOS %d, adds BOS: %s\n", tok_bos(vocab), tok_eos(vocab),
			    tok_add_bos(vocab) ? "yes" : "no");
		}
	} else {
		printf("tokenizer:      (none)\n");
	}
	if (tmpl)
		printf("chat template:  present (%zu bytes)\n", strlen(tmpl));
	else
		printf("chat template:  absent (a built-in one will be used)\n");

	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const struct gguf_tensor *t = &f->tensors[i];
		type_n[t->type]++;
		type_bytes[t->type] += t->nbytes;
		total_bytes += t->nbytes;
		total_elems += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
	}
	printf("tensors:        %" PRIu64 " (%.2fM parameters)\n", f->n_tensors, total_elems / 1e6);
	if (f->n_tensors) {
		printf("  %-8s %8s %14s\n", "type", "count", "bytes");
		for (int t = 0; t < GGML_TYPE_COUNT; t++) {
			if (!type_n[t])
				continue;
			human_bytes(type_bytes[t], hb, sizeof(hb));
			printf("  %-8s %8" PRIu64 " %14" PRIu64 "  (%s)\n", ggml_type_info_get(t)->name,
			    type_n[t], type_bytes[t], hb);
		}
		human_bytes(total_bytes, hb, sizeof(hb));
		printf("  %-8s %8" PRIu64 " %14" PRIu64 "  (%s)\n", "total", f->n_tensors, total_bytes, hb);
	}
	if (show_kv) {
		printf("metadata (%" PRIu64 " keys):\n", f->n_kv);
		for (uint64_t i = 0; i < f->n_kv; i++) {
			printf("  %s = ", cli_shown(f->kv[i].key.ptr, f->kv[i].key.len, shown, sizeof(shown)));
			print_value(&f->kv[i].val);
			putchar('\n');
		}
	}
	if (show_tensors) {
		printf("tensor list:\n");
		for (uint64_t i = 0; i < f->n_tensors; i++) {
			const struct gguf_tensor *t = &f->tensors[i];
			printf("  %-32s %-6s [", cli_shown(t->name.ptr, t->name.len, shown, sizeof(shown)),
			    ggml_type_info_get(t->type)->name);
			for (uint32_t d = 0; d < t->n_dims; d++)
				printf(d ? ", %" PRIu64 : "%" PRIu64, t->ne[d]);
			printf("] %" PRIu64 " bytes\n", t->nbytes);
		}
	}
	tok_vocab_free(vocab);
	free(arch);
	free(name);
	free(tmpl);
	gguf_close(f);
	return 0;
}
