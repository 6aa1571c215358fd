/* cmd-info.c -- `natter info`: what a GGUF file holds, in a screenful. */
#include "config.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "natter/gguf.h"
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

/* `natter info --cpu`: the kernel tiers, which this CPU has, which is used. */
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
	return 0;
}

int
cmd_info(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "kv", no_argument, NULL, 'k' },
		{ "tensors", no_argument, NULL, 't' },
		{ "cpu", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	int show_kv = 0, show_tensors = 0, c;
	struct gguf_file *f;
	struct tok_vocab *vocab = NULL;
	char err[512], *arch, *name, *tmpl;
	uint64_t type_n[GGML_TYPE_COUNT] = { 0 }, type_bytes[GGML_TYPE_COUNT] = { 0 };
	uint64_t total_bytes = 0, total_elems = 0;
	char hb[32];

	optind = 1;
	while ((c = getopt_long(argc, argv, "m:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': path = optarg; break;
		case 'k': show_kv = 1; break;
		case 't': show_tensors = 1; break;
		case 'c': return info_cpu();
		case 'h':
			printf("usage: natter info -m FILE [--kv] [--tensors]\n       natter info --cpu\n");
			return 0;
		default:
			return 2;
		}
	}
	if (!path && optind < argc)
		path = argv[optind];
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
		printf("name:           %s\n", name);
	printf("architecture:   %s\n", arch ? arch : "(none)");
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
		hp(f, arch, "vocab_size", "vocabulary size");
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
			printf("  %.*s = ", (int)f->kv[i].key.len, f->kv[i].key.ptr);
			print_value(&f->kv[i].val);
			putchar('\n');
		}
	}
	if (show_tensors) {
		printf("tensor list:\n");
		for (uint64_t i = 0; i < f->n_tensors; i++) {
			const struct gguf_tensor *t = &f->tensors[i];
			printf("  %-32.*s %-6s [", (int)t->name.len, t->name.ptr, ggml_type_info_get(t->type)->name);
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
