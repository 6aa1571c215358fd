/* cli-measure.c -- the measuring commands' shared parts: the option table parser, model loading, log-softmax. */
#include "config.h"

#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli-measure.h"
#include "cli/cli.h"
#include "natter/llm.h"

#define MAX_OPTS 32

static void
print_help(const char *cmd, const char *synopsis, const struct cli_mopt *tab, int n)
{
	printf("usage: natter %s %s\n", cmd, synopsis);
	for (int i = 0; i < n; i++) {
		char left[64];
		if (tab[i].key < 256)
			snprintf(left, sizeof(left), "-%c, --%s%s%s", tab[i].key, tab[i].name, tab[i].arg ? " " : "",
			    tab[i].arg ? tab[i].arg : "");
		else
			snprintf(left, sizeof(left), "    --%s%s%s", tab[i].name, tab[i].arg ? " " : "",
			    tab[i].arg ? tab[i].arg : "");
		printf("  %-26s %s\n", left, tab[i].help);
	}
	printf("  %-26s %s\n", "-h, --help", "show this help");
}

int
cli_measure_parse(const char *cmd, const char *synopsis, const struct cli_mopt *tab, int n, int argc,
		  char **argv, struct cli_measure_args *a)
{
	struct option lo[MAX_OPTS + 2];
	char shorts[3 * MAX_OPTS + 4];
	size_t ns = 0;
	int c;

	if (n > MAX_OPTS)
		n = MAX_OPTS;
	memset(a, 0, sizeof(*a));
	for (int i = 0; i < n; i++) {
		lo[i] = (struct option){ tab[i].name, tab[i].arg ? required_argument : no_argument, NULL, tab[i].key };
		if (tab[i].key < 256) {
			shorts[ns++] = (char)tab[i].key;
			if (tab[i].arg)
				shorts[ns++] = ':';
		}
	}
	lo[n] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[n + 1] = (struct option){ NULL, 0, NULL, 0 };
	shorts[ns++] = 'h';
	shorts[ns] = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
		const struct cli_mopt *o = NULL;
		if (c == 'h') {
			print_help(cmd, synopsis, tab, n);
			return 1;
		}
		for (int i = 0; i < n; i++)
			if (tab[i].key == c)
				o = &tab[i];
		if (!o)
			return 2;   /* getopt has said what was wrong */
		void *field = (char *)a + o->offset;
		if (o->kind == CLI_MOPT_ENGINE) {
			if (cli_engine_option(c, optarg, cmd, &a->eng) < 0)
				return 2;
		} else if (o->kind == CLI_MOPT_STR) {
			*(const char **)field = optarg;
		} else if (o->kind == CLI_MOPT_FLAG) {
			*(int *)field = 1;
		} else if (cli_arg_int(optarg, 0, INT_MAX, field, "%s: --%s wants a count", cmd, o->name) < 0) {
			return 2;
		}
	}
	if (cli_no_more_args(cmd, argc, argv, optind) < 0)
		return 2;
	a->eng.threads = cli_threads(cmd, a->eng.threads);
	return 0;
}

int
cli_measure_load(struct cli_measure_args *a, const char *path, int ctx_cap, struct llm_model **m,
		 struct llm_ctx **c, int *n_ctx)
{
	char err[512];
	int n, train;
	struct llm_ctx_params cp;

	*m = NULL;
	*c = NULL;
	if (llm_model_load(path, m, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		return -1;
	}
	llm_model_pack(*m);
	train = llm_model_hparams(*m)->n_ctx_train;
	n = a->eng.n_ctx ? a->eng.n_ctx : train < ctx_cap ? train : ctx_cap;
	cli_engine_ctx_params(&a->eng, &cp);
	cp.n_ctx = n;
	*c = llm_ctx_new_ex(*m, &cp, err, sizeof(err));
	if (!*c) {
		cli_error("%s: %s", path, err);
		llm_model_free(*m);
		*m = NULL;
		return -1;
	}
	if (path == a->model && cli_lora_attach(&a->eng.lora, *m, *c) < 0) {
		llm_ctx_free(*c);
		llm_model_free(*m);
		*c = NULL;
		*m = NULL;
		return -1;
	}
	*n_ctx = llm_ctx_n_ctx(*c);   /* what the session has: a model that states no context gets a default */
	return 0;
}

double
cli_measure_logsumexp(const float *row, int v, int *argmax)
{
	double mx = row[0], z = 0;
	int am = 0;

	for (int j = 1; j < v; j++) {
		if (row[j] > mx) {
			mx = row[j];
			am = j;
		}
	}
	for (int j = 0; j < v; j++)
		z += exp((double)row[j] - mx);
	if (argmax)
		*argmax = am;
	return mx + log(z);
}

int
cli_measure_rows(int n_vocab, int max)
{
	long r = (32L << 20) / ((long)n_vocab * (long)sizeof(float));
	if (r < 1)
		r = 1;
	return r < max ? (int)r : max;
}
