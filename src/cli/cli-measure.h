/* cli-measure.h -- what the measuring commands (perplexity, eval-choice) share: options as a table, loading, log-softmax. */
#ifndef NATTER_CLI_MEASURE_H
#define NATTER_CLI_MEASURE_H

#include <stddef.h>
#include <stdint.h>

#include "cli/cli.h"

struct llm_model;
struct llm_ctx;

/* Every option of every measuring command, parsed into one struct. */
struct cli_measure_args {
	const char *model;     /* -m */
	const char *file;      /* -f: the text or the questions */
	const char *kl_base;   /* perplexity --kl-base */
	int chunks;            /* perplexity --chunks (0: all) */
	int limit;             /* eval-choice --limit (0: all) */
	int verbose;           /* eval-choice --verbose */
	/* -c (0: the command's default), -t (0: physical cores), --kv-type,
	 * --exact-act, --lora FILE[:SCALE] (repeatable: on MODEL only,
	 * --kl-base runs OTHER bare; cli_lora_free(&eng.lora) when done). */
	struct cli_engine_args eng;
};

enum cli_mopt_kind {
	CLI_MOPT_STR, CLI_MOPT_INT, CLI_MOPT_FLAG,
	CLI_MOPT_ENGINE,   /* read by cli_engine_option into eng (KEY its code there) */
};

/* One option: the table is the parser and the --help text. */
struct cli_mopt {
	const char *name;        /* the long option */
	int key;                 /* its short letter, or a code >= 256 for a long option alone */
	enum cli_mopt_kind kind;
	size_t offset;           /* of its field in struct cli_measure_args */
	const char *arg;         /* its argument in --help ("FILE"); NULL: it takes none */
	const char *help;
};

#define CLI_MOPT(name, key, kind, field, arg, help) \
	{ name, key, kind, offsetof(struct cli_measure_args, field), arg, help }

/* The options of every measuring command (the engine's codes are cli.h's;
 * the commands' own codes stay below them). */
#define CLI_MEASURE_COMMON_OPTS \
	CLI_MOPT("model", 'm', CLI_MOPT_STR, model, "FILE", "the model (GGUF)"), \
	CLI_MOPT("lora", CLI_OPT_LORA, CLI_MOPT_ENGINE, eng, "FILE[:SCALE]", \
	    "a LoRA adapter on the model (repeatable)"), \
	CLI_MOPT("ctx-size", 'c', CLI_MOPT_ENGINE, eng, "N", "context size"), \
	CLI_MOPT("threads", 't', CLI_MOPT_ENGINE, eng, "N", "threads (default: physical cores)"), \
	CLI_MOPT("kv-type", CLI_OPT_KV_TYPE, CLI_MOPT_ENGINE, eng, "TYPE", "KV cache: f16 (default), q8_0, f32"), \
	CLI_MOPT("exact-act", CLI_OPT_EXACT_ACT, CLI_MOPT_ENGINE, eng, NULL, \
	    "activations of quantized products to about 16 bits, not 8 as llama.cpp")

/*
 * Parses ARGV (ARGV[0] is the command's name) with the N options of TAB into A.  --help
 * prints "usage: natter CMD SYNOPSIS" and the table; -t above the CPUs this process may
 * run on is lowered with a notice (cli_threads).  Returns 0 to go on, 1 when help was
 * printed (exit 0), 2 on a usage error (message printed).
 */
int cli_measure_parse(const char *cmd, const char *synopsis, const struct cli_mopt *tab, int n, int argc,
		      char **argv, struct cli_measure_args *a);

/*
 * Loads PATH (A->model, or --kl-base's OTHER) and a session of A->eng.n_ctx positions, or,
 * when A->eng.n_ctx is 0, of the model's training context capped at CTX_CAP; *N_CTX gets the
 * size chosen.  The one place the measuring commands load a model: the adapters of --lora
 * are put on A->model's session (PATH == A->model), never on another.  Prints the error
 * and returns -1 on failure (nothing left to free).
 */
int cli_measure_load(struct cli_measure_args *a, const char *path, int ctx_cap, struct llm_model **m,
		     struct llm_ctx **c, int *n_ctx);

/* log(sum(exp(ROW[0..V)))) in double; *ARGMAX (if not NULL) the first largest entry. */
double cli_measure_logsumexp(const float *row, int v, int *argmax);

/* Rows of logits evaluated at once: at most 32 MiB of them, and at most MAX. */
int cli_measure_rows(int n_vocab, int max);

#endif
