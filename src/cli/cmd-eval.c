/* cmd-eval.c -- `natter eval`: logits for given token ids, written as float32 rows. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "natter/llm.h"
#include "natter/outfile.h"

/* Parses "1,2,3" into a new array; -1 with a message on bad input. */
static int
parse_ids(const char *s, int32_t **ids, int *n)
{
	int cap = 16, cnt = 0;
	int32_t *a = malloc(cap * sizeof(*a));
	const char *all = s;

	if (!a)
		return -1;
	while (*s) {
		char *end;
		long v;
		errno = 0;
		v = strtol(s, &end, 10);
		/* strtol alone skips blanks before a number; a comma must have one after it. */
		if (end == s || errno || v < INT32_MIN || v > INT32_MAX || (*end && *end != ',') ||
		    !(isdigit((unsigned char)*s) || *s == '-') || (*end == ',' && !end[1])) {
			cli_error("eval: --tokens wants comma-separated integers, got '%s'", all);
			free(a);
			return -1;
		}
		if (cnt == cap) {
			cap *= 2;
			int32_t *b = realloc(a, cap * sizeof(*a));
			if (!b) {
				free(a);
				return -1;
			}
			a = b;
		}
		a[cnt++] = (int32_t)v;
		s = *end ? end + 1 : end;
	}
	*ids = a;
	*n = cnt;
	return 0;
}

int
cmd_eval(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "tokens", required_argument, NULL, 'k' },
		{ "logits-out", required_argument, NULL, 'o' },
		{ "incremental", no_argument, NULL, 'i' },
		{ "split", required_argument, NULL, 's' },
		CLI_ENGINE_LONGOPTS,
		CLI_ENGINE_CTX_LONGOPT,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *toks = NULL, *outp = NULL;
	int incremental = 0, split = -1, c, handled, n = 0, rc = 1;
	struct cli_engine_args eng = { 0 };
	int32_t *ids = NULL;
	struct llm_model *m = NULL;
	struct llm_ctx *ctx = NULL;
	float *logits = NULL;
	char err[512];
	struct outfile of = { 0 };

	optind = 1;
	while ((c = getopt_long(argc, argv, "m:t:c:o:h", opts, NULL)) != -1) {
		if ((handled = cli_engine_option(c, optarg, "eval", &eng)) < 0)
			goto usage;
		if (handled)
			continue;
		switch (c) {
		case 'm': path = optarg; break;
		case 'k': toks = optarg; break;
		case 'o': outp = optarg; break;
		case 'i': incremental = 1; break;
		case 's':
			if (cli_arg_int(optarg, 0, INT_MAX, &split, "eval: --split wants a count of tokens") < 0)
				goto usage;
			break;
		case 'h':
			printf("usage: natter eval -m FILE --tokens 1,2,3 --logits-out OUT [--incremental | --split N] [-t N]\n"
			    "       [-c N] [--kv-type f16|q8_0|f32] [--exact-act] [--lora FILE[:SCALE]]...\n");
			cli_lora_free(&eng.lora);
			return 0;
		default:
			goto usage;
		}
	}
	if (cli_no_more_args("eval", argc, argv, optind) < 0)
		goto usage;
	if (!path || !toks || !outp) {
		cli_error("eval: needs -m FILE, --tokens IDS and --logits-out FILE");
		goto usage;
	}
	if (incremental && split >= 0) {
		cli_error("eval: give --incremental or --split, not both");
		goto usage;
	}
	if (parse_ids(toks, &ids, &n) < 0)
		goto usage;
	if (n == 0) {
		cli_error("eval: --tokens is empty");
		free(ids);
		goto usage;
	}
	if (incremental)
		split = 0;
	{
		/* Before the model is loaded: the logits written over it would destroy it. */
		struct cli_input in[1 + CHAT_MAX_ADAPTERS];
		int nin = 0;
		in[nin].opt = "-m", in[nin++].path = path;
		for (int i = 0; i < eng.lora.n; i++)
			in[nin].opt = "--lora", in[nin++].path = eng.lora.path[i];
		if (cli_output_check("eval", "--logits-out", outp, NULL, in, nin) < 0) {
			free(ids);
			goto usage;
		}
	}
	eng.threads = cli_threads("eval", eng.threads);
	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		goto out;
	}
	llm_model_pack(m);
	{
		const struct llm_hparams *hp = llm_model_hparams(m);
		struct llm_ctx_params cp;
		cli_engine_ctx_params(&eng, &cp);
		if (cp.n_ctx == 0)
			cp.n_ctx = n > hp->n_ctx_train ? n : hp->n_ctx_train;
		ctx = llm_ctx_new_ex(m, &cp, err, sizeof(err));
		if (!ctx) {
			cli_error("%s", err);
			goto out;
		}
		if (cli_lora_attach(&eng.lora, m, ctx) < 0)
			goto out;
		logits = malloc((size_t)n * hp->n_vocab * sizeof(float));
		if (!logits) {
			cli_error("eval: out of memory for %d x %d logits", n, hp->n_vocab);
			goto out;
		}
		if (split < 0) {
			if (llm_eval(ctx, ids, n, logits, 1, err, sizeof(err)) < 0) {
				cli_error("eval: %s", err);
				goto out;
			}
		} else {
			if (split > n)
				split = n;
			if (split > 0 && llm_eval(ctx, ids, split, logits, 1, err, sizeof(err)) < 0) {
				cli_error("eval: %s", err);
				goto out;
			}
			for (int i = split; i < n; i++) {
				if (llm_eval(ctx, ids + i, 1, logits + (size_t)i * hp->n_vocab, 0, err, sizeof(err)) < 0) {
					cli_error("eval: %s", err);
					goto out;
				}
			}
		}
		/* Under a temporary name: a failed write leaves the old file. */
		if (outfile_open(&of, outp, "wb", err, sizeof(err)) < 0) {
			cli_error("%s", err);
			goto out;
		}
		if (fwrite(logits, sizeof(float), (size_t)n * hp->n_vocab, of.f) != (size_t)n * hp->n_vocab) {
			cli_error("%s: write failed: %s", outp, strerror(errno));
			goto out;
		}
		if (outfile_commit(&of, err, sizeof(err)) < 0) {
			cli_error("%s", err);
			goto out;
		}
	}
	rc = 0;
out:
	outfile_abort(&of);
	free(logits);
	free(ids);
	llm_ctx_free(ctx);
	llm_model_free(m);
	cli_lora_free(&eng.lora);
	return rc;
usage:
	cli_lora_free(&eng.lora);
	return 2;
}
