/* lora-bad.c -- writes malformed LoRA adapters for tiny-llama into a folder, one per way an adapter can be wrong, one that loads with a warning (trained on another model) and one whose product overflows float (test-lora.sh), and one whose lora_a F16 cannot hold (test-finetune.sh). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natter/gguf-write.h"
#include "natter/gguf.h"

static float zeros[1 << 16], huge[1 << 16], past_f16[1 << 16];

/* One adapter file: metadata for ARCH (and the base model it records, when
 * BASE_NAME), then the tensors NAMES with dims NE. */
struct bad {
	const char *file, *arch;
	int n;
	const char *names[3];
	uint64_t ne[3][2];
	const char *base_name, *base_file;
	float alpha;         /* 0: 8 */
	const float *data[3];   /* each tensor's values; NULL: zeros */
};

int
main(int argc, char **argv)
{
	char err[512], path[4096];
	struct gguf_file *m = NULL;
	const struct gguf_tensor *q;
	uint64_t e, o;

	if (argc != 3) {
		fprintf(stderr, "usage: lora-bad MODEL.gguf DIR\n");
		return 2;
	}
	if (gguf_open(argv[1], &m, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	q = gguf_find_tensor(m, "blk.0.attn_q.weight");
	if (!q) {
		fprintf(stderr, "%s: no blk.0.attn_q.weight\n", argv[1]);
		return 1;
	}
	e = q->ne[0];
	o = q->ne[1];
	{
		const struct bad bads[] = {
			{ "missing-half.gguf", "llama", 1, { "blk.0.attn_q.weight.lora_a" }, { { e, 4 } }, NULL, NULL, 0, { NULL } },
			{ "unknown-tensor.gguf", "llama", 3,
			  { "blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b", "blk.0.attn_q.weight.extra" },
			  { { e, 4 }, { 4, o }, { e, 4 } }, NULL, NULL, 0, { NULL } },
			{ "wrong-shape.gguf", "llama", 2, { "blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b" },
			  { { e + 1, 4 }, { 4, o } }, NULL, NULL, 0, { NULL } },
			{ "no-base.gguf", "llama", 2, { "blk.99.attn_q.weight.lora_a", "blk.99.attn_q.weight.lora_b" },
			  { { e, 4 }, { 4, o } }, NULL, NULL, 0, { NULL } },
			{ "rank-mismatch.gguf", "llama", 2, { "blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b" },
			  { { e, 4 }, { 3, o } }, NULL, NULL, 0, { NULL } },
			/* Sound, but made on another model, whose name holds an escape
			 * and a newline for the terminal to be kept from. */
			{ "other-base.gguf", "llama", 2, { "blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b" },
			  { { e, 4 }, { 4, o } }, "Another\033[31m\nModel", "models/another.gguf", 0, { NULL } },
			{ "alpha-huge.gguf", "llama", 2, { "blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b" },
			  { { e, 4 }, { 4, o } }, NULL, NULL, 1e12f, { NULL } },
			/* Sound in every field; its product overflows float. */
			{ "huge-values.gguf", "llama", 2, { "blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b" },
			  { { e, 4 }, { 4, o } }, NULL, NULL, 0, { huge, huge } },
			/* Sound, loads and trains (lora_b zero: it adds nothing), but its
			 * lora_a is past the largest F16 (65504): finetune --init with it
			 * and --out-type f16. */
			{ "past-f16.gguf", "llama", 2, { "blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b" },
			  { { e, 4 }, { 4, o } }, NULL, NULL, 0, { past_f16, NULL } },
		};
		for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
			huge[i] = 1e30f;
			past_f16[i] = 70000.0f;
		}
		for (size_t b = 0; b < sizeof(bads) / sizeof(bads[0]); b++) {
			struct gguf_writer *w = gguf_writer_new(GGUF_DEFAULT_ALIGNMENT);
			int rc = !w || gguf_w_str(w, "general.architecture", bads[b].arch) < 0 ||
			    gguf_w_str(w, "general.type", "adapter") < 0 || gguf_w_str(w, "adapter.type", "lora") < 0 ||
			    gguf_w_f32(w, "adapter.lora.alpha", bads[b].alpha ? bads[b].alpha : 8.0f) < 0;
			if (!rc && bads[b].base_name)
				rc = gguf_w_u32(w, "general.base_model.count", 1) < 0 ||
				    gguf_w_str(w, "general.base_model.0.name", bads[b].base_name) < 0 ||
				    gguf_w_str(w, "natter.base_model.file", bads[b].base_file) < 0;
			for (int t = 0; !rc && t < bads[b].n; t++) {
				if (bads[b].ne[t][0] * bads[b].ne[t][1] > sizeof(zeros) / sizeof(zeros[0]))
					rc = 1;
				else
					rc = gguf_w_tensor(w, bads[b].names[t], GGML_TYPE_F32, 2, bads[b].ne[t],
					    bads[b].data[t] ? bads[b].data[t] : zeros, NULL, NULL) < 0;
			}
			snprintf(path, sizeof(path), "%s/%s", argv[2], bads[b].file);
			if (rc || gguf_writer_write(w, path, err, sizeof(err)) < 0) {
				fprintf(stderr, "%s: %s\n", path, rc ? "cannot build it" : err);
				gguf_writer_free(w);
				gguf_close(m);
				return 1;
			}
			gguf_writer_free(w);
		}
	}
	gguf_close(m);
	return 0;
}
