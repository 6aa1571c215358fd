/* fuzz-tmpl.c -- libFuzzer: chat templates, the template text and the messages both from the input. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natter/tmpl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Layout: template \0 role \0 content \0 role \0 content ... */
	char *buf = malloc(size + 1), err[512], *out;
	struct tmpl_msg msgs[8];
	struct tmpl *t;
	size_t len, pos;
	int n = 0;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = 0;
	pos = strlen(buf) + 1;
	while (pos < size && n < 8) {
		msgs[n].role = buf + pos;
		pos += strlen(buf + pos) + 1;
		msgs[n].content = pos <= size ? buf + pos : "";
		pos += pos <= size ? strlen(buf + pos) + 1 : 0;
		n++;
	}
	if (tmpl_compile(buf, strlen(buf), &t, err, sizeof(err)) == 0) {
		struct tmpl_opts o = { size & 1, "<s>", "</s>", 1767312000, size & 2 ? (size & 4 ? 1 : -1) : 0 };
		if (tmpl_render(t, msgs, n, &o, &out, &len, err, sizeof(err)) == 0)
			free(out);
		tmpl_free(t);
	}
	free(buf);
	return 0;
}
