/* cmd-eval-choice.c -- `natter eval-choice`: multiple-choice questions scored by log-likelihood (MMLU, HellaSwag style). */
#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli-measure.h"
#include "cli/cli.h"
#include "natter/jsonl.h"
#include "natter/llm.h"
#include "natter/tok.h"

/* The most choices a question may have (refused with the file's other errors, before
 * the model is loaded). */
#define MAX_CHOICES 4096

enum { OPT_LIMIT = 256, OPT_VERBOSE };

static const struct cli_mopt opts[] = {
	CLI_MEASURE_COMMON_OPTS,
	CLI_MOPT("file", 'f', CLI_MOPT_STR, file, "FILE", "the questions, one JSON object a line"),
	CLI_MOPT("limit", OPT_LIMIT, CLI_MOPT_INT, limit, "N", "score the first N questions only (0: all)"),
	CLI_MOPT("verbose", OPT_VERBOSE, CLI_MOPT_FLAG, verbose, NULL, "print every choice's scores"),
};

struct question {
	int line;
	char *text;
	char **choices;
	int n_choices, answer;
};

static void
question_clear(struct question *q)
{
	free(q->text);
	for (int j = 0; q->choices && j < q->n_choices; j++)
		free(q->choices[j]);
	free(q->choices);
	memset(q, 0, sizeof(*q));
}

static void
questions_free(struct question *q, int n)
{
	for (int i = 0; i < n; i++)
		question_clear(&q[i]);
	free(q);
}

/* Parses one line S[0..N) {"question": S, "choices": [S, S, ...], "answer": I} into Q;
 * prints the error (file and line) and returns -1 when it is not one. */
static int
parse_line(const char *path, int line, const char *s, size_t n, struct question *q)
{
	cJSON *root = NULL, *qs, *cs, *an, *it;
	const char *why = NULL;
	char err[128];

	memset(q, 0, sizeof(*q));
	q->line = line;
	if (!(root = jsonl_parse(s, n, "question", err, sizeof(err)))) {
		why = err;
		goto bad;
	}
	if (!cJSON_IsObject(root)) {
		why = "not a JSON object";
		goto bad;
	}
	qs = cJSON_GetObjectItemCaseSensitive(root, "question");
	cs = cJSON_GetObjectItemCaseSensitive(root, "choices");
	an = cJSON_GetObjectItemCaseSensitive(root, "answer");
	if (!cJSON_IsString(qs)) {
		why = "\"question\" is missing or not a string";
		goto bad;
	}
	if (!cJSON_IsArray(cs) || cJSON_GetArraySize(cs) < 2) {
		why = "\"choices\" is missing or not an array of at least two strings";
		goto bad;
	}
	if (cJSON_GetArraySize(cs) > MAX_CHOICES) {
		snprintf(err, sizeof(err), "more than %d choices", MAX_CHOICES);
		why = err;
		goto bad;
	}
	if (!cJSON_IsNumber(an) || an->valuedouble != floor(an->valuedouble) || an->valuedouble < 0 ||
	    an->valuedouble >= cJSON_GetArraySize(cs)) {
		why = "\"answer\" is missing or not the index of a choice (0-based)";
		goto bad;
	}
	q->n_choices = cJSON_GetArraySize(cs);
	q->answer = (int)an->valuedouble;
	q->text = strdup(qs->valuestring);
	q->choices = calloc(q->n_choices, sizeof(char *));
	if (!q->text || !q->choices) {
		why = "out of memory";
		goto bad;
	}
	{
		int j = 0;
		cJSON_ArrayForEach(it, cs) {
			if (!cJSON_IsString(it) || !*it->valuestring) {
				why = "a choice is not a non-empty string";
				goto bad;
			}
			if (!(q->choices[j++] = strdup(it->valuestring))) {
				why = "out of memory";
				goto bad;
			}
		}
	}
	cJSON_Delete(root);
	return 0;
bad:
	cli_error("%s:%d: %s", path, line, why);
	cJSON_Delete(root);
	question_clear(q);
	return -1;
}

/* Reads every question of PATH (blank lines skipped); -1 with the error printed. */
static int
read_questions(const char *path, struct question **out, int *n_out)
{
	size_t len;
	char *buf = cli_read_file(path, &len), *p, *nl;
	struct question *q = NULL;
	int n = 0, cap = 0, line = 0;

	if (!buf)
		return -1;
	for (p = buf; p < buf + len; p = nl + 1) {
		nl = memchr(p, '\n', buf + len - p);
		if (!nl)
			nl = buf + len;
		*nl = 0;
		line++;
		if (strspn(p, " \t\r") == (size_t)(nl - p))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			struct question *t = realloc(q, cap * sizeof(*q));
			if (!t) {
				cli_error("%s: out of memory", path);
				goto fail;
			}
			q = t;
		}
		if (parse_line(path, line, p, (size_t)(nl - p), &q[n]) < 0)
			goto fail;
		n++;
	}
	free(buf);
	if (n == 0) {
		cli_error("%s: no questions", path);
		free(q);
		return -1;
	}
	*out = q;
	*n_out = n;
	return 0;
fail:
	free(buf);
	questions_free(q, n);
	return -1;
}

static int
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* What the model reads before a choice: the question, then a space unless one side has it. */
static char *
joined(const char *question, const char *choice)
{
	size_t lq = strlen(question), lc = strlen(choice);
	int sep = lq > 0 && !is_space(question[lq - 1]) && !is_space(choice[0]);
	char *s = malloc(lq + lc + 2);
	if (!s)
		return NULL;
	memcpy(s, question, lq);
	if (sep)
		s[lq] = ' ';
	memcpy(s + lq + sep, choice, lc + 1);
	return s;
}

/* Question Q's tokens into CTX, and those of question and choice J into WHOLE; -1 (said,
 * with the file's line) when the question has none, the choice adds none or the two are
 * longer than N_CTX, -2 when out of memory. */
static int
tokens_of(const struct tok_vocab *v, int add_bos, const char *file, const struct question *q, int j, int n_ctx,
	  struct tok_ids *ctx, struct tok_ids *whole)
{
	char *s;
	int rc;

	ctx->n = whole->n = 0;
	if (tok_encode(v, q->text, strlen(q->text), add_bos, 0, ctx) < 0)
		return -2;
	if (ctx->n == 0) {
		cli_error("%s:%d: the question has no tokens", file, q->line);
		return -1;
	}
	s = joined(q->text, q->choices[j]);
	rc = s ? tok_encode(v, s, strlen(s), add_bos, 0, whole) : -1;
	free(s);
	if (rc < 0)
		return -2;
	if (whole->n <= ctx->n) {
		cli_error("%s:%d: choice %d adds no token to the question", file, q->line, j);
		return -1;
	}
	if (whole->n > (size_t)n_ctx) {
		cli_error("%s:%d: question and choice %d are %zu tokens, over the context of %d (use -c)", file, q->line,
		    j, whole->n, n_ctx);
		return -1;
	}
	return 0;
}

int
cmd_eval_choice(int argc, char **argv)
{
	struct cli_measure_args a;
	struct question *qs = NULL;
	struct llm_model *m = NULL;
	struct llm_ctx *c = NULL;
	struct tok_ids ctx_ids = { 0 }, whole = { 0 }, cached = { 0 };
	const struct tok_vocab *v = NULL;
	double *sum = NULL, *mean = NULL;
	float *lg = NULL;
	int n_q = 0, n_read = 0, rc, V, n_ctx, rows, right_sum = 0, right_mean = 0, add_bos, t;
	char err[512];

	rc = cli_measure_parse("eval-choice", "-m MODEL [--lora FILE[:SCALE]]... -f QUESTIONS.jsonl [-c N] [-t N]\n"
	    "       [--limit N] [--verbose]", opts, (int)(sizeof(opts) / sizeof(opts[0])), argc, argv, &a);
	if (rc) {
		cli_lora_free(&a.eng.lora);
		return rc == 1 ? 0 : 2;
	}
	if (!a.model || !a.file) {
		cli_error("eval-choice: needs -m MODEL and -f QUESTIONS.jsonl");
		cli_lora_free(&a.eng.lora);
		return 2;
	}
	/* Every line is checked before the model is loaded. */
	if (read_questions(a.file, &qs, &n_read) < 0) {
		cli_lora_free(&a.eng.lora);
		return 1;
	}
	n_q = n_read;
	if (a.limit > 0 && a.limit < n_q)
		n_q = a.limit;
	rc = 1;
	if (cli_measure_load(&a, a.model, 4096, &m, &c, &n_ctx) < 0)
		goto out;
	V = llm_model_hparams(m)->n_vocab;
	v = llm_model_vocab(m);
	add_bos = tok_add_bos(v);
	rows = cli_measure_rows(V, n_ctx);
	lg = malloc((size_t)rows * V * sizeof(float));
	sum = malloc(sizeof(double) * MAX_CHOICES);
	mean = malloc(sizeof(double) * MAX_CHOICES);
	if (!lg || !sum || !mean) {
		cli_error("eval-choice: out of memory");
		goto out;
	}
	/* Every question and choice checked before any is scored: an error found later
	 * would throw away what was scored. */
	for (int i = 0; i < n_q; i++)
		for (int j = 0; j < qs[i].n_choices; j++)
			if ((t = tokens_of(v, add_bos, a.file, &qs[i], j, n_ctx, &ctx_ids, &whole)) < 0)
				goto tokfail;

	/*
	 * As lm-evaluation-harness: the context is the question's tokens; each choice is
	 * scored over the tokens of "question choice" that come after as many tokens as the
	 * question alone has.  The KV cache keeps the longest prefix shared with the last
	 * sequence, so the question is evaluated once (with recurrent layers, from a
	 * checkpoint of their state at its end).
	 */
	for (int i = 0; i < n_q; i++) {
		struct question *q = &qs[i];
		int best_sum = 0, best_mean = 0;

		for (int j = 0; j < q->n_choices; j++) {
			size_t lcp = 0, keep, n_ctx_toks, end;
			double lp = 0;

			if ((t = tokens_of(v, add_bos, a.file, q, j, n_ctx, &ctx_ids, &whole)) < 0)
				goto tokfail;
			n_ctx_toks = ctx_ids.n;
			while (lcp < cached.n && lcp < whole.n && cached.ids[lcp] == whole.ids[lcp])
				lcp++;
			/* The row predicting the choice's first token must be computed again. */
			keep = lcp < n_ctx_toks - 1 ? lcp : n_ctx_toks - 1;
			end = whole.n - 1;   /* the last token predicts nothing that is scored */
			/* The cache may go back less far than asked: a recurrent state only to a
			 * checkpoint (else to 0), and the one asked for at the question's end
			 * serves each choice after the first. */
			keep = (size_t)llm_ctx_truncate(c, (int)keep);
			llm_ctx_checkpoint(c, (int)(n_ctx_toks - 1));
			if (keep < n_ctx_toks - 1 &&
			    llm_eval(c, whole.ids + keep, (int)(n_ctx_toks - 1 - keep), NULL, 0, err, sizeof(err)) < 0)
				goto evalfail;
			for (size_t p0 = n_ctx_toks - 1; p0 < end; p0 += rows) {
				int nr = end - p0 < (size_t)rows ? (int)(end - p0) : rows;
				if (llm_eval(c, whole.ids + p0, nr, lg, 1, err, sizeof(err)) < 0)
					goto evalfail;
				for (int r = 0; r < nr; r++) {
					const float *row = lg + (size_t)r * V;
					lp += row[whole.ids[p0 + r + 1]] - cli_measure_logsumexp(row, V, NULL);
				}
			}
			cached.n = 0;
			for (size_t k = 0; k < end; k++)
				if (tok_ids_push(&cached, whole.ids[k]) < 0)
					goto nomem;
			sum[j] = lp;
			mean[j] = lp / (double)(whole.n - n_ctx_toks);
			if (sum[j] > sum[best_sum])
				best_sum = j;
			if (mean[j] > mean[best_mean])
				best_mean = j;
		}
		right_sum += best_sum == q->answer;
		right_mean += best_mean == q->answer;
		if (a.verbose) {
			printf("line %d: answer %d, chosen %d (sum) %d (per token):", q->line, q->answer, best_sum, best_mean);
			for (int j = 0; j < q->n_choices; j++)
				printf(" [%d] %.6f %.6f", j, sum[j], mean[j]);
			printf("\n");
		}
	}
	{
		double ps = (double)right_sum / n_q, pm = (double)right_mean / n_q;
		printf("questions: %d\n", n_q);
		printf("accuracy (sum of log-probabilities):       %d/%d = %.2f%% +/- %.2f%%\n", right_sum, n_q, 100 * ps,
		    100 * sqrt(ps * (1 - ps) / n_q));
		printf("accuracy (mean log-probability per token): %d/%d = %.2f%% +/- %.2f%%\n", right_mean, n_q, 100 * pm,
		    100 * sqrt(pm * (1 - pm) / n_q));
	}
	rc = 0;
	goto out;
evalfail:
	cli_error("eval-choice: %s", err);
	goto out;
tokfail:
	if (t == -1)
		goto out;   /* said */
nomem:
	cli_error("eval-choice: out of memory");
out:
	free(lg);
	free(sum);
	free(mean);
	tok_ids_free(&ctx_ids);
	tok_ids_free(&whole);
	tok_ids_free(&cached);
	llm_ctx_free(c);
	llm_model_free(m);
	questions_free(qs, n_read);
	cli_lora_free(&a.eng.lora);
	return rc;
}
