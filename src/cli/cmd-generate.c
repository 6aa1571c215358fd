/* cmd-generate.c -- `natter generate`: continue a prompt, printing tokens as they come. */
#include "config.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "natter/llm.h"
#include "natter/sampler.h"
#include "natter/text.h"
#include "natter/tok.h"

int
cmd_generate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "prompt", required_argument, NULL, 'p' },
		{ "file", required_argument, NULL, 'f' },
		{ "n-predict", required_argument, NULL, 'n' },
		CLI_SAMPLER_LONGOPTS,
		{ "ignore-eos", no_argument, NULL, 'E' },
		{ "stats", no_argument, NULL, 'v' },
		CLI_ENGINE_LONGOPTS,
		CLI_ENGINE_CTX_LONGOPT,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *prompt = NULL, *pfile = NULL;
	int n_predict = 64, ignore_eos = 0, stats = 0, c, handled, rc = 1;
	struct cli_engine_args eng = { 0 };
	struct sampler_params sp;
	struct llm_model *m = NULL;
	struct llm_ctx *ctx = NULL;
	struct sampler *smp = NULL;
	struct tok_stream *ts = NULL;
	struct tok_ids ids = { 0 };
	float *logits = NULL;
	char err[512], *text = NULL;
	size_t text_len = 0;
	int tty = isatty(STDOUT_FILENO);
	int n_gen = 0, full = 0;
	double t0, t1, t2;

	sampler_params_default(&sp);
	optind = 1;
	while ((c = getopt_long(argc, argv, "m:p:f:n:t:c:s:h", opts, NULL)) != -1) {
		if ((handled = cli_engine_option(c, optarg, "generate", &eng)) == 0)
			handled = cli_sampler_option(c, optarg, &sp, "generate");
		if (handled < 0)
			goto usage;
		if (handled)
			continue;
		switch (c) {
		case 'm': path = optarg; break;
		case 'p': prompt = optarg; break;
		case 'f': pfile = optarg; break;
		case 'n':
			if (cli_arg_int(optarg, 0, INT_MAX, &n_predict, "generate: -n/--n-predict wants a count") < 0)
				goto usage;
			break;
		case 'E': ignore_eos = 1; break;
		case 'v': stats = 1; break;
		case 'h':
			printf("usage: natter generate -m FILE (-p PROMPT | -f FILE) [-n N] [--temp T] [--top-k K]\n"
			    "       [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S] [-t N] [-c N]\n"
			    "       [--kv-type f16|q8_0|f32] [--exact-act] [--ignore-eos] [--stats] [--lora FILE[:SCALE]]...\n");
			cli_lora_free(&eng.lora);
			return 0;
		default:
			goto usage;
		}
	}
	if (cli_no_more_args("generate", argc, argv, optind) < 0)
		goto usage;
	if (!path || (!prompt && !pfile)) {
		cli_error("generate: needs -m FILE and -p PROMPT (or -f FILE)");
		goto usage;
	}
	if (prompt && pfile) {
		cli_error("generate: -p and -f each give the prompt: one of them");
		goto usage;
	}
	if (sampler_params_check(&sp, err, sizeof(err)) < 0) {
		cli_error("generate: %s", err);
		goto usage;
	}
	eng.threads = cli_threads("generate", eng.threads);
	if (pfile) {
		text = cli_read_file(pfile, &text_len);
		if (!text) {
			cli_lora_free(&eng.lora);
			return 1;
		}
	} else {
		text = strdup(prompt);
		text_len = strlen(prompt);
	}
	t0 = cli_now();
	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		goto out;
	}
	llm_model_pack(m);
	{
		const struct tok_vocab *v = llm_model_vocab(m);
		const int n_vocab = llm_model_hparams(m)->n_vocab;

		struct llm_ctx_params cp;
		cli_engine_ctx_params(&eng, &cp);
		ctx = llm_ctx_new_ex(m, &cp, err, sizeof(err));
		smp = sampler_new(n_vocab, sp.seed);
		ts = tok_stream_new(v, 0);
		logits = malloc(n_vocab * sizeof(float));
		if (!ctx || !smp || !ts || !logits) {
			cli_error("%s", ctx ? "out of memory" : err);
			goto out;
		}
		if (cli_lora_attach(&eng.lora, m, ctx) < 0)
			goto out;
		/* Special tokens written in the prompt are those tokens, as
		 * llama.cpp's completion reads them (and serve's /v1/completions):
		 * a prompt rendered by natter template works as it reads.  Its own
		 * BOS is not doubled. */
		if (tok_encode(v, text, text_len, tok_add_bos(v), 1, &ids) < 0) {
			cli_error("out of memory");
			goto out;
		}
		if (tok_add_bos(v) && ids.n >= 2 && ids.ids[0] == tok_bos(v) && ids.ids[1] == tok_bos(v)) {
			memmove(ids.ids, ids.ids + 1, (ids.n - 1) * sizeof(ids.ids[0]));
			ids.n--;
		}
		if (ids.n == 0) {
			cli_error("generate: the prompt is empty and the model has no BOS token");
			goto out;
		}
		if ((int)ids.n > llm_ctx_n_ctx(ctx)) {
			cli_error("generate: the prompt is %zu tokens, more than the context of %d "
			    "(use a shorter prompt or a larger -c)", ids.n, llm_ctx_n_ctx(ctx));
			goto out;
		}
		for (size_t i = 0; i < ids.n; i++)
			sampler_accept(smp, ids.ids[i]);
		t1 = cli_now();
		if (llm_eval(ctx, ids.ids, (int)ids.n, logits, 0, err, sizeof(err)) < 0) {
			cli_error("generate: %s", err);
			goto out;
		}
		t2 = cli_now();
		for (n_gen = 0; n_gen < n_predict; n_gen++) {
			int32_t tok = sampler_sample(smp, &sp, logits);
			size_t len;
			const char *piece;

			if (!ignore_eos && tok_is_eog(v, tok))
				break;
			sampler_accept(smp, tok);
			piece = tok_stream_push(ts, tok, &len);
			cli_write_text(piece, len, tty);
			if (fflush(stdout) != 0 || ferror(stdout))
				break;   /* the output is lost: main says so */
			if (llm_ctx_n_past(ctx) >= llm_ctx_n_ctx(ctx)) {
				n_gen++;
				full = n_gen < n_predict;   /* said below: not an end the model chose */
				break;
			}
			if (llm_eval(ctx, &tok, 1, logits, 0, err, sizeof(err)) < 0) {
				cli_error("generate: %s", err);
				goto out;
			}
		}
		{
			size_t len;
			const char *rest = tok_stream_flush(ts, &len);
			cli_write_text(rest, len, tty);
		}
		if (tty || n_gen > 0)
			putchar('\n');
		fflush(stdout);
		if (full)
			fprintf(stderr, "%s: generate: stopped after %d token%s: the context of %d is full (-c for more)\n",
			    cli_progname, n_gen, n_gen == 1 ? "" : "s", llm_ctx_n_ctx(ctx));
		if (stats) {
			double t3 = cli_now();
			fprintf(stderr, "load %.2f s; prompt %zu tokens, %.1f tok/s; generated %d tokens, "
			    "%.1f tok/s; seed %llu; %d threads", t1 - t0, ids.n, ids.n / (t2 - t1), n_gen,
			    n_gen / (t3 - t2), (unsigned long long)sampler_seed(smp), llm_ctx_n_threads(ctx));
			if (eng.lora.n)
				fprintf(stderr, "; %d adapters on %d weights", llm_ctx_n_adapters(ctx), llm_ctx_n_adapted(ctx));
			fputc('\n', stderr);
		}
	}
	rc = 0;
out:
	free(text);
	free(logits);
	tok_ids_free(&ids);
	tok_stream_free(ts);
	sampler_free(smp);
	llm_ctx_free(ctx);
	llm_model_free(m);
	cli_lora_free(&eng.lora);
	return rc;
usage:
	cli_lora_free(&eng.lora);
	return 2;
}
