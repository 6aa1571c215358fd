/* cmd-tokenize.c -- `natter tokenize`: text in, token ids out. */
#include "config.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "natter/gguf.h"
#include "natter/tok.h"
#include "llm/unicode.h"

int
cmd_tokenize(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "file", required_argument, NULL, 'f' },
		{ "no-bos", no_argument, NULL, 'B' },
		{ "special", no_argument, NULL, 'S' },
		{ "pieces", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *file = NULL;
	int no_bos = 0, special = 0, pieces = 0, c, rc = 1;
	char err[512], *text = NULL;
	size_t len = 0;
	struct gguf_file *f = NULL;
	struct tok_vocab *v = NULL;
	struct tok_ids ids = { 0 };

	optind = 1;
	while ((c = getopt_long(argc, argv, "m:f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': path = optarg; break;
		case 'f': file = optarg; break;
		case 'B': no_bos = 1; break;
		case 'S': special = 1; break;
		case 'P': pieces = 1; break;
		case 'h':
			printf("usage: natter tokenize -m FILE [--no-bos] [--special] [--pieces] (TEXT | -f FILE)\n");
			return 0;
		default:
			return 2;
		}
	}
	if (!path) {
		cli_error("tokenize: no model given (use -m FILE)");
		return 2;
	}
	if (file && optind < argc) {
		cli_error("tokenize: give either TEXT or -f FILE, not both");
		return 2;
	}
	if (!file && optind + 1 != argc) {
		cli_error("tokenize: give the text as one argument, or -f FILE");
		return 2;
	}
	if (file) {
		text = cli_read_file(file, &len);
		if (!text)
			return 1;
	} else {
		text = strdup(argv[optind]);
		if (!text) {
			cli_error("out of memory");
			return 1;
		}
		len = strlen(text);
	}
	if (gguf_open(path, &f, err, sizeof(err)) < 0 || tok_vocab_load(f, &v, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		goto out;
	}
	if (tok_encode(v, text, len, !no_bos && tok_add_bos(v), special, &ids) < 0) {
		cli_error("out of memory");
		goto out;
	}
	for (size_t i = 0; i < ids.n; i++) {
		if (pieces) {
			char buf[256];
			int l = tok_piece(v, ids.ids[i], 1, buf, sizeof(buf));
			printf("%6d '", ids.ids[i]);
			/* A byte-level piece may be part of a character: the
			 * bytes that are no whole character, and controls (C1
			 * too), as \xNN; the rest as the text they are. */
			for (int k = 0; k < l;) {
				uint32_t cp;
				size_t u = utf8_decode((const unsigned char *)buf + k, (size_t)(l - k), &cp);
				if (cp >= UCP_RAW_BYTE || cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
					for (size_t j = 0; j < u; j++)
						printf("\\x%02x", (unsigned char)buf[k + (int)j]);
				else
					fwrite(buf + k, 1, u, stdout);
				k += (int)u;
			}
			printf("'\n");
		} else {
			printf(i ? " %d" : "%d", ids.ids[i]);
		}
	}
	if (!pieces)
		putchar('\n');
	rc = 0;
out:
	tok_ids_free(&ids);
	tok_vocab_free(v);
	gguf_close(f);
	free(text);
	return rc;
}
