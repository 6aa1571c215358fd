/* cli.h -- the command-line subcommands, each a front end over the llm/store APIs. */
#ifndef NATTER_CLI_H
#define NATTER_CLI_H

#include <stdio.h>

/* Each returns the process exit status: 0 ok, 1 runtime error, 2 usage error. */
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_history(int argc, char **argv);
int cmd_rate(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_ui(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_eval_choice(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_finetune(int argc, char **argv);

struct store;
/* Opens the store at DB, else $NATTER_DB, else the config file's db,
 * else the default path; prints the error.  FLAGS as store_open's. */
struct store *cli_store_open(const char *db, unsigned flags);
/* cli_store_open, which also puts the path it opened in PATH (N bytes;
 * what a command records of the database it read).  PATH is untouched
 * when it returns NULL. */
struct store *cli_store_open_path(const char *db, unsigned flags, char *path, size_t n);
/* The path cli_store_open opens for DB (--db, or NULL), in BUF (N
 * bytes): DB, else $NATTER_DB, else the config file's db, else the
 * default path (its folder made only when CREATE).  Returns 0; 1 when
 * there is no place for the default one (no XDG_DATA_HOME nor HOME, or a
 * folder that cannot be made), ERR saying why; -1 after printing the
 * config file's error. */
int cli_db_path(const char *db, int create, char *buf, size_t n, char *err, size_t errlen);

/* A file a command reads, named by option OPT ("-m", "--data"). */
struct cli_input {
	const char *opt, *path;
};
/*
 * Whether OUT, the file command CMD writes (named by OPT: "-o",
 * "--logits-out"), would replace one of its N inputs IN (a NULL path is
 * skipped) or the history database: the one cli_db_path finds for DB
 * (--db, or NULL), with the journals SQLite keeps beside it, whether or
 * not the command reads it.  Compared by file (cli-output.c), so links
 * and other names for them count.  Returns 0, or -1 after printing an
 * error naming both files (a usage error: exit 2).  The main thread.
 */
int cli_output_check(const char *cmd, const char *opt, const char *out, const char *db, const struct cli_input *in,
		     int n);

/* The options both chat front ends take (cli-opts.c): long options with these
 * codes, plus -c CTX, -t THREADS, -s SEED, -n MAX_TOKENS. */
#include "natter/chat.h"
enum {
	CLI_OPT_SYSTEM = 1000, CLI_OPT_TEMPLATE, CLI_OPT_TEMP, CLI_OPT_TOP_K, CLI_OPT_TOP_P, CLI_OPT_MIN_P,
	CLI_OPT_REPEAT, CLI_OPT_DB, CLI_OPT_NO_HISTORY, CLI_OPT_STOP, CLI_OPT_LORA, CLI_OPT_REMOTE, CLI_OPT_KEY_ENV,
	CLI_OPT_EXTRAS, CLI_OPT_CONNECT_TIMEOUT, CLI_OPT_READ_TIMEOUT, CLI_OPT_THINK_TAGS, CLI_OPT_KV_TYPE,
	CLI_OPT_EXACT_ACT,
};
/* The sampling options (--temp, --top-k, --top-p, --min-p, --repeat-penalty,
 * --seed/-s), which generate takes too: read by cli_sampler_option. */
#define CLI_SAMPLER_LONGOPTS \
	{ "temp", required_argument, NULL, CLI_OPT_TEMP }, \
	{ "top-k", required_argument, NULL, CLI_OPT_TOP_K }, \
	{ "top-p", required_argument, NULL, CLI_OPT_TOP_P }, \
	{ "min-p", required_argument, NULL, CLI_OPT_MIN_P }, \
	{ "repeat-penalty", required_argument, NULL, CLI_OPT_REPEAT }, \
	{ "seed", required_argument, NULL, 's' }
#define CLI_CHAT_LONGOPTS \
	{ "system", required_argument, NULL, CLI_OPT_SYSTEM }, \
	{ "chat-template", required_argument, NULL, CLI_OPT_TEMPLATE }, \
	{ "ctx-size", required_argument, NULL, 'c' }, \
	{ "threads", required_argument, NULL, 't' }, \
	CLI_SAMPLER_LONGOPTS, \
	{ "max-tokens", required_argument, NULL, 'n' }, \
	{ "stop", required_argument, NULL, CLI_OPT_STOP }, \
	{ "db", required_argument, NULL, CLI_OPT_DB }, \
	{ "no-history", no_argument, NULL, CLI_OPT_NO_HISTORY }, \
	{ "lora", required_argument, NULL, CLI_OPT_LORA }, \
	{ "remote", required_argument, NULL, CLI_OPT_REMOTE }, \
	{ "api-key-env", required_argument, NULL, CLI_OPT_KEY_ENV }, \
	{ "remote-extras", required_argument, NULL, CLI_OPT_EXTRAS }, \
	{ "connect-timeout", required_argument, NULL, CLI_OPT_CONNECT_TIMEOUT }, \
	{ "read-timeout", required_argument, NULL, CLI_OPT_READ_TIMEOUT }, \
	{ "think-tags", required_argument, NULL, CLI_OPT_THINK_TAGS }, \
	{ "kv-type", required_argument, NULL, CLI_OPT_KV_TYPE }, \
	{ "exact-act", no_argument, NULL, CLI_OPT_EXACT_ACT }
#define CLI_CHAT_SHORTOPTS "c:t:s:n:"

struct cli_chat_args {
	struct chat_opts chat;
	const char *db;          /* --db, else the config file's db (unless $NATTER_DB is set) */
	const char *model;       /* the config file's model, for a front end given no -m */
	const char *theme;       /* the config file's theme, for a front end given no --theme */
	int no_history;
	int n_stop;
	/* A remote server instead of a model file (--remote URL, remote = URL). */
	const char *remote;
	int remote_on_cli;       /* --remote was given (the config file's model then names no remote model) */
	int db_on_cli;           /* --db was given (it and --no-history refuse each other) */
	const char *local_on_cli;   /* the first option given about a model run here (-c, -t, --kv-type,
				     * --exact-act, --chat-template, --lora): refused with a server */
	const char *api_key_env; /* the variable that holds the API key; NULL: OPENAI_API_KEY, if set */
	int remote_extras;       /* send top_k, min_p, repeat_penalty (--remote-extras on|off; default on) */
	int connect_timeout_s, read_timeout_s;   /* 0: the defaults */
};
/*
 * Sets A to the defaults, then to the settings of the config file
 * ($XDG_CONFIG_HOME/natter/config, else ~/.config/natter/config; lines
 * "key = value", "#" comments; cli-opts.c's table lists the keys).
 * Options applied afterwards (cli_chat_option) override them.  Returns 0,
 * or -1 after printing an error naming the file and line.  The strings
 * stay valid until the program ends.
 */
int cli_chat_args_init(struct cli_chat_args *a);
/* Applies option C (from getopt_long) to A.  Returns 1 if it was one of
 * these, 0 if not, -1 after printing an error naming the option when its
 * value is bad (numbers are read strictly: "abc", "-5" for -c, "0" for
 * -t are errors).  CMD (NULL: the full screen, natter's own options) starts
 * the message, as the other commands' options do. */
int cli_chat_option(int c, const char *arg, struct cli_chat_args *a, const char *cmd);
/* Applies sampling option C (CLI_SAMPLER_LONGOPTS, -s) to SP as
 * cli_chat_option applies it to a chat: the same table, ranges and messages
 * ("CMD: --temp: 'hot' is not a number").  Returns 1 if it was one of these,
 * 0 if not, -1 after printing the error (a usage error). */
int cli_sampler_option(int c, const char *arg, struct sampler_params *sp, const char *cmd);
/* The config file's value for KEY in *VALUE (NULL when unset).  Returns
 * 0, or -1 after printing an error (a bad line anywhere in the file). */
int cli_config_get(const char *key, const char **value);

/* --lora FILE[:SCALE] (cli-lora.c), repeatable, for the commands that run a
 * model without a chat session (generate, eval, bench, perplexity,
 * eval-choice); the chat front ends take it in struct chat_opts. */
struct llm_model;
struct llm_ctx;
struct lora_adapter;
struct cli_lora {
	char *path[CHAT_MAX_ADAPTERS];
	float scale[CHAT_MAX_ADAPTERS];
	struct lora_adapter *ad[CHAT_MAX_ADAPTERS];
	int n;
};
/* Splits ARG into its FILE (*PATH, caller frees) and SCALE (1 when not
 * given): the text after the last colon is the scale when it is a number.
 * Returns 0, or -1 with ERR. */
int cli_lora_parse(const char *arg, char **path, float *scale, char *err, size_t errlen);
/* Adds one --lora ARG to L; -1 after printing the error (a usage error). */
int cli_lora_add(struct cli_lora *l, const char *arg);
/* Opens L's adapters against M (once) and puts them on session C; -1
 * after printing the error, which names the file and what is wrong.  An
 * adapter trained on another model is a warning (cli_lora_notice). */
int cli_lora_attach(struct cli_lora *l, const struct llm_model *m, struct llm_ctx *c);
/* Prints lora_base_notice's line on stderr when adapter A was trained on
 * another model than M; nothing when not. */
void cli_lora_notice(const struct lora_adapter *a, const struct llm_model *m);
void cli_lora_free(struct cli_lora *l);
/* The SHA-256 of an adapter file, for lora_open (lora_digest_fn). */
void cli_lora_digest(const void *data, size_t len, char hex[65]);
/*
 * The engine options of the commands that run a model without a chat
 * session (generate, eval, bench, perplexity, eval-choice; cli-opts.c):
 * -t/--threads, -c/--ctx-size, --kv-type, --exact-act, --lora, read by
 * one parser so that every command reads them alike.  Zeroed, it holds
 * the defaults.
 */
struct cli_engine_args {
	int threads;                /* -t: 0 (the default) for the physical cores */
	int n_ctx;                  /* -c: 0 (the default) for the command's own size */
	enum llm_kv_type kv_type;   /* --kv-type: LLM_KV_F16 (0) unless given */
	int exact_act;              /* --exact-act */
	struct cli_lora lora;       /* --lora FILE[:SCALE], repeatable; cli_lora_free when done */
};
/* Their long options; -c/--ctx-size apart, since bench sizes its contexts
 * itself.  The short letters ("t:", "c:") go in each command's string. */
#define CLI_ENGINE_LONGOPTS \
	{ "threads", required_argument, NULL, 't' }, \
	{ "kv-type", required_argument, NULL, CLI_OPT_KV_TYPE }, \
	{ "exact-act", no_argument, NULL, CLI_OPT_EXACT_ACT }, \
	{ "lora", required_argument, NULL, CLI_OPT_LORA }
#define CLI_ENGINE_CTX_LONGOPT { "ctx-size", required_argument, NULL, 'c' }
/* Applies option C (from getopt_long, its value ARG) of command CMD to E.
 * Returns 1 if it was one of these, 0 if not, -1 after printing an error
 * naming CMD and the option (a usage error: exit 2; E->lora still to be
 * freed).  -t takes 0 to 1024, -c 0 to 16777216. */
int cli_engine_option(int c, const char *arg, const char *cmd, struct cli_engine_args *e);
/* P set to llm_ctx_params_default's, then to E's threads, context size,
 * cache type and exact activations. */
struct llm_ctx_params;
void cli_engine_ctx_params(const struct cli_engine_args *e, struct llm_ctx_params *p);

/*
 * Strict numbers for every command's options (cli-opts.c): ARG read as a
 * whole number from MIN to MAX (cli_arg_int), a finite number
 * (cli_arg_float; ranges are the caller's), or a seed, a whole number
 * below SAMPLER_SEED_RANDOM or "random" (cli_arg_seed).  Anything else
 * ("", " 5", "5x", "abc", "1e99", out of range) is refused, never read
 * as 0 or as a default: -1 after printing "natter: WANTS, got 'ARG'",
 * with the bound it passed when out of range.  WANTS (printf-style) names
 * the command, the option and what it takes: "generate: --temp wants a
 * number".  *V is set only on success; MIN and MAX fit in an int.  The
 * main thread, while the options are read.
 */
int cli_arg_int(const char *arg, long min, long max, int *v, const char *wants, ...)
	__attribute__((format(printf, 5, 6)));
int cli_arg_float(const char *arg, float *v, const char *wants, ...) __attribute__((format(printf, 3, 4)));
int cli_arg_seed(const char *arg, uint64_t *v, const char *wants, ...) __attribute__((format(printf, 3, 4)));

/*
 * The session over A->remote (cli-remote.c): libcurl set up, the API key
 * read from the environment (A->api_key_env, else OPENAI_API_KEY when it
 * is set), the model CLI_MODEL (-m/--model), else the config file's model
 * when the config file also named the server, else the server's only
 * model (GET /v1/models).  Returns 0 with *OUT, or -1 after printing an
 * error.  Before any thread starts.
 */
int cli_remote_session(const struct cli_chat_args *a, const char *cli_model, struct chat **out);
/* Whether the chat goes to A->remote: yes, unless the server came from
 * the config file and -m (CLI_MODEL) names a file that exists, which is
 * then chatted with here (A->remote is cleared). */
int cli_remote_wanted(struct cli_chat_args *a, const char *cli_model);
/* The remote options as remote.h takes them, the key read as above;
 * returns 0, or -1 after printing an error (a named variable unset). */
struct remote_opts;
int cli_remote_opts(const struct cli_chat_args *a, struct remote_opts *ro);
/* The remote options' --help lines. */
extern const char cli_remote_help[];
/* Reads --kv-type's VALUE (f16, q8_0, f32) into *T; -1 after printing an
 * error that names OPTION and the choices. */
int cli_kv_type(const char *option, const char *value, enum llm_kv_type *t);

/* Shared helpers (main.c). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* -1, with the error printed, when ARGV[FIRST..ARGC) holds an argument
 * command CMD has no use for (an operand after the options); else 0. */
int cli_no_more_args(const char *cmd, int argc, char **argv, int first);
/* Reads a whole file into a new buffer (caller frees); NULL and a message on failure. */
char *cli_read_file(const char *path, size_t *len);
extern const char *cli_progname;
/* Writes model text to stdout: byte for byte into pipes and files; on a
 * terminal with control characters made visible and bad UTF-8 replaced. */
void cli_write_text(const char *s, size_t n, int tty);
/* Writes S[0..N) to F as cli_write_text does on a terminal. */
void cli_write_shown(FILE *f, const char *s, size_t n);
/* S[0..N) as cli_write_text shows it on a terminal, into BUF (CAP bytes,
 * cut before a character that does not fit); returns BUF.  For what a
 * file says of itself (a model's name, its tensors' names): printed as
 * it is, a name could hold a terminal's escape sequences. */
const char *cli_shown(const char *s, size_t n, char *buf, size_t cap);
/* Seconds on a monotonic clock. */
double cli_now(void);
/* N threads asked for with -t (or the config file) lowered to the CPUs
 * this process may run on, saying so once on stderr ("natter: CMD: ...",
 * naming both numbers); N <= 0 (the default: the physical cores) stays
 * as it is.  Call it once, after the options are read. */
int cli_threads(const char *cmd, int n);

#endif
