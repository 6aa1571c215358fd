/* cmd-eval.c -- `natter eval`: logits for given token ids, written as float32 rows. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "natter/llm.h"

/* Parses "1,2,3" into a new array; -1 with a message on bad input. */
static int
parse_ids(const char *s, int32_t **ids, int *n)
{
	int cap = 16, cnt = 0;
	int32_t *a = malloc(cap * sizeof(*a));

	if (!a)
		return -1;
	while (*s) {
		char *end;
		long v;
		errno = 0;
		v = strtol(s, &end, 10);
		if (end == s || errno || v < INT32_MIN || v > INT32_MAX || (*end && *end != ',')) {
			cli_error("eval: --tokens wants comma-separated integers, got '%s'", s);
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
		{ "threads", required_argument, NULL, 't' },
		{ "ctx-size", required_argument, NULL, 'c' },
		{ "kv-type", required_argument, NULL, 'K' },
		{ "exact-act", no_argument, NULL, 'x' },
		{ "lora", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *toks = NULL, *outp = NULL;
	int incremental = 0, split = -1, threads = 0, n_ctx = 0, exact_act = 0, c, n = 0, rc = 1;
	enum llm_kv_type kv_type = LLM_KV_F16;
	int32_t *ids = NULL;
	struct llm_model *m = NULL;
	struct llm_ctx *ctx = NULL;
	float *logits = NULL;
	char err[512];
	FILE *f = NULL;
	struct cli_lora lora = { 0 };

	optind = 1;
	while ((c = getopt_long(argc, argv, "m:t:c:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': path = optarg; break;
		case 'k': toks = optarg; break;
		case 'o': outp = optarg; break;
		case 'i': incremental = 1; break;
		case 's': split = atoi(optarg); break;
		case 't': threads = atoi(optarg); break;
		case 'c': n_ctx = atoi(optarg); break;
		case 'L':
			if (cli_lora_add(&lora, optarg) < 0) {
				cli_lora_free(&lora);
				return 2;
			}
			break;
		case 'K':
			if (cli_kv_type("eval: --kv-type", optarg, &kv_type) < 0) {
				cli_lora_free(&lora);
				return 2;
			}
			break;
		case 'x': exact_act = 1; break;
		case 'h':
			printf("usage: natter eval -m FILE --tokens 1,2,3 --logits-out OUT [--incremental | --split N] [-t N]\n"
			    "       [-c N] [--kv-type f16|q8_0|f32] [--exact-act] [--lora FILE[:SCALE]]...\n");
			cli_lora_free(&lora);
			return 0;
		default:
			cli_lora_free(&lora);
			return 2;
		}
	}
	if (!path || !toks || !outp) {
		cli_error("eval: needs -m FILE, --tokens IDS and --logits-out FILE");
		cli_lora_free(&lora);
		return 2;
	}
	if (parse_ids(toks, &ids, &n) < 0) {
		cli_lora_free(&lora);
		return 2;
	}
	if (n == 0) {
		cli_error("eval: --tokens is empty");
		free(ids);
		cli_lora_free(&lora);
		return 2;
	}
	if (incremental)
		split = 0;
	threads = cli_threads("eval", threads);
	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		goto out;
	}
	llm_model_pack(m);
	{
		const struct llm_hparams *hp = llm_model_hparams(m);
		if (n_ctx <= 0)
			n_ctx = n > hp->n_ctx_train ? n : hp->n_ctx_train;
		struct llm_ctx_params cp;
		llm_ctx_params_default(&cp);
		cp.n_ctx = n_ctx;
		cp.n_threads = threads;
		cp.kv_type = kv_type;
		cp.exact_act = exact_act;
		ctx = llm_ctx_new_ex(m, &cp, err, sizeof(err));
		if (!ctx) {
			cli_error("%s", err);
			goto out;
		}
		if (cli_lora_attach(&lora, m, ctx) < 0)
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
		f = fopen(outp, "wb");
		if (!f) {
			cli_error("%s: %s", outp, strerror(errno));
			goto out;
		}
		if (fwrite(logits, sizeof(float), (size_t)n * hp->n_vocab, f) != (size_t)n * hp->n_vocab ||
		    fclose(f) != 0) {
			f = NULL;
			cli_error("%s: write failed: %s", outp, strerror(errno));
			goto out;
		}
		f = NULL;
	}
	rc = 0;
out:
	if (f)
		fclose(f);
	free(logits);
	free(ids);
	llm_ctx_free(ctx);
	llm_model_free(m);
	cli_lora_free(&lora);
	return rc;
}
