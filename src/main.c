/* main.c -- natter's entry point: dispatches subcommands, owns the exit status. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

const char *cli_progname = "natter";

static const char usage_text[] =
"usage: natter [-m MODEL] [OPTIONS]\n"
"       natter COMMAND [ARGS]\n"
"\n"
"A terminal chat for local GGUF language models.\n"
"\n"
"Commands:\n"
"  info -m FILE                    show a model's architecture, hyperparameters,\n"
"                                  tokenizer and tensors\n"
"  tokenize -m FILE [--no-bos] [--special] (TEXT | -f FILE)\n"
"                                  print the token ids of TEXT\n"
"\n"
"Options:\n"
"  -h, --help                      show this help\n"
"  -V, --version                   show the version\n"
"\n"
"The interactive chat (natter -m MODEL) is not built yet; see README.\n";

void
cli_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", cli_progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

char *
cli_read_file(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	size_t cap = 4096, n = 0, r;
	char *buf, *tmp;

	if (!f) {
		cli_error("%s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(cap + 1);
	while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			cap *= 2;
			tmp = realloc(buf, cap + 1);
			if (!tmp) {
				free(buf);
				buf = NULL;
			}
			buf = tmp;
		}
	}
	if (buf && ferror(f)) {
		cli_error("%s: read error: %s", path, strerror(errno));
		free(buf);
		buf = NULL;
	} else if (!buf) {
		cli_error("%s: out of memory", path);
	}
	if (f != stdin)
		fclose(f);
	if (buf) {
		buf[n] = 0;
		*len = n;
	}
	return buf;
}

int
main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
		{ "info", cmd_info },
		{ "tokenize", cmd_tokenize },
		{ "eval", cmd_eval },
		{ "generate", cmd_generate },
		{ "mkmodel", cmd_mkmodel },
		{ "bench", cmd_bench },
	};

	if (argc < 2) {
		fputs(usage_text, stderr);
		return 2;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("natter %s\n", PACKAGE_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1);
	if (argv[1][0] == '-') {
		cli_error("the interactive chat is not built yet; try 'natter info -m FILE'");
		return 2;
	}
	cli_error("unknown command '%s' (see natter --help)", argv[1]);
	return 2;
}
