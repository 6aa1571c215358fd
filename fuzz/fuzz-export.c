/* fuzz-export.c -- libFuzzer: arbitrary message and reply bytes through the store to JSONL. */
#include "config.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "natter/store.h"
#include "llm/unicode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], out[80], err[512];
	struct store *s;
	int64_t conv, msg, g1, g2, m2;
	char *a, *b, *c;
	size_t third = size / 3;

	/* In memory where the machine has /dev/shm: a database on disk
	 * syncs at every commit: 30 inputs a second there, 45 here. */
	snprintf(path, sizeof(path), "%s/natter-fuzz-%d.db", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
	    (int)getpid());
	snprintf(out, sizeof(out), "%s.jsonl", path);
	unlink(path);
	if (store_open(path, 0, &s, err, sizeof(err)) < 0)
		abort();
	a = strndup((const char *)data, third);
	b = strndup((const char *)data + third, third);
	c = strndup((const char *)data + 2 * third, size - 2 * third);
	store_conv_new(s, 0, NULL, NULL, c, &conv);
	store_msg_add(s, conv, "user", a, &m2);
	struct store_gen g;
	memset(&g, 0, sizeof(g));
	g.content = b;
	g.reasoning = size & 1 ? a : NULL;   /* a reasoning part, or a legacy reply split at export */
	g.n_reasoning = 3;
	g.end = STORE_END_FINISHED;
	{
		/* What the reply was fed, from the same bytes. */
		struct store_turn fed[2] = { { "system", c }, { "user", a } };
		g.fed = fed;
		g.n_fed = 2;
		store_gen_add(s, conv, 0, &g, &g1, &msg);
	}
	g.fed = NULL;   /* and one from before schema 3 */
	g.n_fed = 0;
	g.content = c;
	store_gen_add(s, conv, msg, &g, &g2, NULL);
	store_rating_set(s, g1, "thumb", 1, a);
	store_rating_set(s, g2, "stars", 2, NULL);
	for (int f = 0; f < 2 * STORE_N_FORMATS; f++) {
		struct store_export_opts o = { (enum store_format)(f % STORE_N_FORMATS), 4, NULL, 0, 1, 1,
			f >= STORE_N_FORMATS, NULL };
		struct store_export_counts n;
		size_t len;
		if (store_export(s, &o, out, &n, err, sizeof(err)) < 0)
			abort();
		FILE *fp = fopen(out, "rb");
		char *line = NULL;
		size_t cap = 0;
		ssize_t r;
		/* Every line: strict UTF-8 and JSON that parses. */
		while ((r = getline(&line, &cap, fp)) > 0) {
			len = (size_t)r;
			if (!utf8_valid((const unsigned char *)line, len))
				abort();
			cJSON *j = cJSON_ParseWithLength(line, len);
			if (!j)
				abort();
			cJSON_Delete(j);
		}
		free(line);
		fclose(fp);
	}
	store_close(s);
	unlink(path);
	unlink(out);
	free(a);
	free(b);
	free(c);
	return 0;
}
