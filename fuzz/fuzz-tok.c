/* fuzz-tok.c -- libFuzzer: a real vocabulary (NATTER_FUZZ_VOCAB), bytes to ids and ids to bytes. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natter/gguf.h"
#include "natter/tok.h"
#include "llm/unicode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct gguf_file *gf;
static struct tok_vocab *vocab;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];

	if (!vocab) {
		const char *path = getenv("NATTER_FUZZ_VOCAB");
		if (!path || gguf_open(path, &gf, err, sizeof(err)) < 0 || tok_vocab_load(gf, &vocab, err, sizeof(err)) < 0) {
			fprintf(stderr, "set NATTER_FUZZ_VOCAB to a vocabulary GGUF (%s)\n", path ? err : "unset");
			abort();
		}
	}
	if (size == 0)
		return 0;
	if (data[0] & 1) {
		/* Text in: the ids must decode back to the same bytes (byte-level BPE
		 * is lossless for any input, special tokens aside). */
		struct tok_ids ids = { 0 };
		tok_encode(vocab, (const char *)data + 1, size - 1, 0, 0, &ids);
		for (size_t i = 0; i < ids.n; i++)
			if (ids.ids[i] < 0 || ids.ids[i] >= tok_vocab_size(vocab))
				abort();
		if (tok_vocab_kind(vocab) == TOK_BPE) {
			size_t len;
			char *back = tok_decode(vocab, ids.ids, ids.n, 0, &len);
			if (!back || len != size - 1 || memcmp(back, data + 1, len) != 0)
				abort();
			free(back);
		}
		tok_ids_free(&ids);
	} else {
		/* Ids in (any int32, out of range too): the chunks the streaming
		 * decoder hands out concatenate to the whole decoding, and no valid
		 * UTF-8 character is ever split between two chunks. */
		size_t n = (size - 1) / 4, total = 0, nb = 0;
		char *all = malloc(n * 1024 + 16);
		size_t *bounds = malloc((n + 2) * sizeof(*bounds));
		struct tok_stream *s = tok_stream_new(vocab, data[0] & 2);
		int32_t *ids = malloc((n + 1) * sizeof(*ids));
		for (size_t i = 0; i < n; i++) {
			int32_t id;
			size_t len;
			memcpy(&id, data + 1 + 4 * i, 4);
			if (data[0] & 4)
				id = (int32_t)((uint32_t)id % (uint32_t)(tok_vocab_size(vocab) + 8));
			ids[i] = id;
			const char *p = tok_stream_push(s, id, &len);
			memcpy(all + total, p, len);
			total += len;
			bounds[nb++] = total;
		}
		size_t len;
		const char *rest = tok_stream_flush(s, &len);
		memcpy(all + total, rest, len);
		total += len;
		{
			size_t dl;
			char *whole = tok_decode(vocab, ids, n, data[0] & 2, &dl);
			if (!whole || dl != total || memcmp(whole, all, total) != 0)
				abort();
			free(whole);
		}
		for (size_t i = 0, k = 0; i < total;) {
			uint32_t cp;
			size_t l = utf8_decode((const unsigned char *)all + i, total - i, &cp);
			while (k < nb && bounds[k] <= i)
				k++;
			if (cp < UCP_RAW_BYTE && l > 1 && k < nb && bounds[k] < i + l)
				abort();   /* a character cut in two */
			i += l;
		}
		tok_stream_free(s);
		free(all);
		free(bounds);
		free(ids);
	}
	return 0;
}
