/* fuzz-remote.c -- libFuzzer: arbitrary bytes as a server's reply stream: the SSE reader, each event read as a chunk, the model list, a refusal's field. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natter/oai.h"
#include "natter/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
on_event(void *ctx, const char *event, const char *d, size_t len)
{
	struct oai_parsed p;
	(void)ctx;
	(void)event;
	if (oai_reply_parse(d, len, &p) == 0) {
		/* What the remote engine reads of a chunk: the text, and the
		 * field a refusal names. */
		if (!p.error[0] && (!p.text || !p.reasoning))
			abort();   /* a chunk read back has both ("" when absent); an error, its message */
		if (p.error[0])
			oai_param_named(p.error, OAI_SET_EXTRAS | OAI_SET_MAX_TOKENS);
		oai_param_bit(p.error_param, NULL);
	}
	oai_parsed_free(&p);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sse_reader *r;
	struct oai_model *m;
	size_t step, at = 0;
	int n;

	if (size == 0)
		return 0;
	/* The first byte sets how the stream arrives: in pieces of 1 to 256 bytes. */
	step = (size_t)data[0] + 1;
	data++;
	size--;
	r = sse_reader_new(64 << 10, on_event, NULL);
	if (!r)
		return 0;
	while (at < size) {
		size_t k = size - at < step ? size - at : step;
		if (sse_reader_feed(r, (const char *)data + at, k) != 0)
			break;
		at += k;
	}
	sse_reader_free(r);
	if (oai_models_parse((const char *)data, size, &m, &n) == 0)
		free(m);
	return 0;
}
