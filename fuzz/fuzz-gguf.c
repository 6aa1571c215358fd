/* fuzz-gguf.c -- libFuzzer: the GGUF reader, tensor bounds and the tokenizer built from its metadata. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natter/gguf.h"
#include "natter/tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gguf_file *f;
	struct tok_vocab *v;
	char err[512];
	volatile uint8_t sink = 0;

	if (gguf_open_buffer(data, size, "fuzz.gguf", &f, err, sizeof(err)) < 0)
		return 0;
	/* Every tensor the reader accepted must lie inside the buffer. */
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const struct gguf_tensor *t = &f->tensors[i];
		if (t->nbytes) {
			const uint8_t *p = t->data;
			if (p < data || p + t->nbytes > data + size)
				abort();
			sink ^= p[0] ^ p[t->nbytes - 1];
		}
	}
	if (tok_vocab_load(f, &v, err, sizeof(err)) == 0) {
		struct tok_ids ids = { 0 };
		static const char text[] = "Hello world! <|im_start|> caf\xc3\xa9 12345 \xe4\xbd\xa0\xe5\xa5\xbd \xff";
		tok_encode(v, text, sizeof(text) - 1, 1, 1, &ids);
		size_t len;
		char *back = tok_decode(v, ids.ids, ids.n, 1, &len);
		free(back);
		tok_ids_free(&ids);
		tok_vocab_free(v);
	}
	gguf_close(f);
	(void)sink;
	return 0;
}
