/* cmd-perplexity.c -- `natter perplexity`: perplexity over a text as llama-perplexity chunks it, and KL against another model. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli-measure.h"
#include "cli/cli.h"
#include "natter/llm.h"
#include "natter/tok.h"

enum { OPT_KL_BASE = 256, OPT_CHUNKS };

static const struct cli_mopt opts[] = {
	CLI_MEASURE_COMMON_OPTS,
	CLI_MOPT("file", 'f', CLI_MOPT_STR, file, "FILE", "the text to score"),
	CLI_MOPT("kl-base", OPT_KL_BASE, CLI_MOPT_STR, kl_base, "OTHER",
	    "also run OTHER on the same chunks: mean KL(OTHER || MODEL), same top token"),
	CLI_MOPT("chunks", OPT_CHUNKS, CLI_MOPT_INT, chunks, "N", "score at most N chunks (0: all)"),
};

/* Running sums over the scored tokens. */
struct sums {
	double nll, nll2;          /* MODEL's -log p(next token) and its square */
	double base_nll;           /* OTHER's */
	double kl, kl2, kl_max;
	long same_top, n;
};

/* Scores one row: MODEL's logits LM, OTHER's LB (or NULL), the next token NEXT. */
static void
score_row(struct sums *s, const float *lm, const float *lb, int v, int32_t next)
{
	int am, ab;
	double zm = cli_measure_logsumexp(lm, v, &am), nll = zm - lm[next];

	s->nll += nll;
	s->nll2 += nll * nll;
	s->n++;
	if (lb) {
		double zb = cli_measure_logsumexp(lb, v, &ab), kl = 0;
		for (int j = 0; j < v; j++) {
			double lpb = lb[j] - zb, lpm = lm[j] - zm;
			kl += exp(lpb) * (lpb - lpm);
		}
		if (kl < 0)
			kl = 0;   /* rounding of two equal distributions */
		s->kl += kl;
		s->kl2 += kl * kl;
		if (kl > s->kl_max)
			s->kl_max = kl;
		s->same_top += am == ab;
		s->base_nll += zb - lb[next];
	}
}

/* The standard error of a mean from the sums of X and X^2 over N. */
static double
std_err(double sum, double sum2, long n)
{
	double mean = sum / n, var = sum2 / n - mean * mean;
	return n > 1 && var > 0 ? sqrt(var / (n - 1)) : 0.0;
}

/* Tokenizes TEXT for model M (BOS first when the model adds one). */
static int
tokenize(const struct llm_model *m, const char *text, size_t len, struct tok_ids *ids)
{
	const struct tok_vocab *v = llm_model_vocab(m);
	return tok_encode(v, text, len, tok_add_bos(v), 0, ids);
}

int
cmd_perplexity(int argc, char **argv)
{
	struct cli_measure_args a;
	struct llm_model *m = NULL, *mb = NULL;
	struct llm_ctx *c = NULL, *cb = NULL;
	struct tok_ids ids = { 0 }, ids_b = { 0 };
	struct sums s = { 0 };
	char *text = NULL, err[512];
	size_t len;
	float *lm = NULL, *lb = NULL;
	int32_t *chunk = NULL;
	int rc, n_ctx, n_chunk, first, rows, V, add_bos;
	int32_t bos;

	rc = cli_measure_parse("perplexity", "-m MODEL [--lora FILE[:SCALE]]... -f TEXT [-c N] [-t N] [--kl-base OTHER]\n"
	    "       [--chunks N]", opts,
	    (int)(sizeof(opts) / sizeof(opts[0])), argc, argv, &a);
	if (rc) {
		cli_lora_free(&a.eng.lora);
		return rc == 1 ? 0 : 2;
	}
	if (!a.model || !a.file) {
		cli_error("perplexity: needs -m MODEL and -f TEXT");
		cli_lora_free(&a.eng.lora);
		return 2;
	}
	rc = 1;
	text = cli_read_file(a.file, &len);
	if (!text) {
		cli_lora_free(&a.eng.lora);
		return 1;
	}
	if (cli_measure_load(&a, a.model, 512, &m, &c, &n_ctx) < 0)
		goto out;
	if (n_ctx < 4) {
		cli_error("perplexity: a context of %d tokens is too small to score (at least 4)", n_ctx);
		rc = 2;
		goto out;
	}
	V = llm_model_hparams(m)->n_vocab;
	add_bos = tok_add_bos(llm_model_vocab(m));
	bos = tok_bos(llm_model_vocab(m));
	if (tokenize(m, text, len, &ids) < 0) {
		cli_error("perplexity: out of memory");
		goto out;
	}
	n_chunk = (int)(ids.n / (size_t)n_ctx);
	if (n_chunk == 0) {
		cli_error("perplexity: %s has %zu tokens; a context of %d needs at least %d (use a longer text or a "
		    "smaller -c)", a.file, ids.n, n_ctx, n_ctx);
		goto out;
	}
	if (a.chunks > 0 && a.chunks < n_chunk)
		n_chunk = a.chunks;
	if (a.kl_base) {
		struct cli_measure_args ab = a;
		int n_ctx_b;
		ab.eng.n_ctx = n_ctx;
		memset(&ab.eng.lora, 0, sizeof(ab.eng.lora));   /* the adapters are MODEL's alone */
		if (cli_measure_load(&ab, a.kl_base, n_ctx, &mb, &cb, &n_ctx_b) < 0)
			goto out;
		if (llm_model_hparams(mb)->n_vocab != V || tokenize(mb, text, len, &ids_b) < 0 || ids_b.n != ids.n ||
		    memcmp(ids_b.ids, ids.ids, ids.n * sizeof(int32_t)) != 0) {
			cli_error("perplexity: %s and %s do not share a vocabulary (the text tokenizes differently); "
			    "--kl-base compares models of one vocabulary", a.model, a.kl_base);
			goto out;
		}
	}

	/* As llama-perplexity: chunk i holds tokens [i n_ctx, (i+1) n_ctx), its first replaced
	 * by BOS when the model adds one; the second half of its positions is scored, each
	 * row predicting the next token.  The first half is evaluated without logits and the
	 * last position not at all (its prediction lies outside the chunk). */
	first = n_ctx / 2;
	rows = cli_measure_rows(V, n_ctx);
	lm = malloc((size_t)rows * V * sizeof(float));
	lb = a.kl_base ? malloc((size_t)rows * V * sizeof(float)) : NULL;
	chunk = malloc((size_t)n_ctx * sizeof(int32_t));
	if (!lm || (a.kl_base && !lb) || !chunk) {
		cli_error("perplexity: out of memory for %d rows of %d logits", rows, V);
		goto out;
	}
	printf("perplexity: %s: %zu tokens, %d chunks of %d, scoring the last %d predictions of each\n", a.file,
	    ids.n, n_chunk, n_ctx, n_ctx - 1 - first);
	for (int i = 0; i < a.eng.lora.n; i++)
		printf("adapter: %s, scale %g (on the model only)\n", a.eng.lora.path[i], a.eng.lora.scale[i]);
	for (int i = 0; i < n_chunk; i++) {
		struct llm_ctx *ctxs[2] = { c, cb };
		float *bufs[2] = { lm, lb };
		memcpy(chunk, ids.ids + (size_t)i * n_ctx, (size_t)n_ctx * sizeof(int32_t));
		if (add_bos && bos != TOK_NONE)
			chunk[0] = bos;
		for (int k = 0; k < 2 && ctxs[k]; k++) {
			llm_ctx_truncate(ctxs[k], 0);
			if (llm_eval(ctxs[k], chunk, first, NULL, 0, err, sizeof(err)) < 0) {
				cli_error("perplexity: %s", err);
				goto out;
			}
		}
		for (int j0 = first; j0 < n_ctx - 1; j0 += rows) {
			int nr = n_ctx - 1 - j0 < rows ? n_ctx - 1 - j0 : rows;
			for (int k = 0; k < 2 && ctxs[k]; k++) {
				if (llm_eval(ctxs[k], chunk + j0, nr, bufs[k], 1, err, sizeof(err)) < 0) {
					cli_error("perplexity: %s", err);
					goto out;
				}
			}
			for (int r = 0; r < nr; r++)
				score_row(&s, lm + (size_t)r * V, lb ? lb + (size_t)r * V : NULL, V, chunk[j0 + r + 1]);
		}
		printf("[%d]%.4f,", i + 1, exp(s.nll / s.n));
		fflush(stdout);
	}
	printf("\n");
	{
		double mean = s.nll / s.n, ppl = exp(mean);
		printf("mean NLL = %.6f over %ld tokens\n", mean, s.n);
		printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, ppl * std_err(s.nll, s.nll2, s.n));
	}
	if (a.kl_base) {
		double p = (double)s.same_top / s.n;
		printf("base %s: PPL = %.4f; ln(PPL(model) / PPL(base)) = %.6f\n", a.kl_base, exp(s.base_nll / s.n),
		    (s.nll - s.base_nll) / s.n);
		printf("Mean KL(base || model) = %.6g +/- %.3g, max %.6g, over %ld tokens\n", s.kl / s.n,
		    std_err(s.kl, s.kl2, s.n), s.kl_max, s.n);
		printf("Same top token: %.3f%% +/- %.3f%%\n", 100.0 * p,
		    s.n > 1 ? 100.0 * sqrt(p * (1 - p) / (s.n - 1)) : 0.0);
	}
	rc = 0;
out:
	free(chunk);
	free(lm);
	free(lb);
	free(text);
	tok_ids_free(&ids);
	tok_ids_free(&ids_b);
	llm_ctx_free(c);
	llm_ctx_free(cb);
	llm_model_free(m);
	llm_model_free(mb);
	cli_lora_free(&a.eng.lora);
	return rc;
}
