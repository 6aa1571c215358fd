/* main.c -- natter's entry point: dispatches subcommands, owns the exit status. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "natter/quant.h"
#include "natter/store.h"
#include "natter/sysbench.h"
#include "natter/text.h"

const char *cli_progname = "natter";

static const char usage_text[] =
"usage: natter [-m MODEL] [OPTIONS]      the full-screen chat\n"
"       natter --remote URL [-m NAME] [OPTIONS]\n"
"                                        the same over an OpenAI-compatible server\n"
"       natter COMMAND [ARGS]\n"
"\n"
"A terminal chat for local GGUF language models (Llama, Mistral, Mixtral, Qwen2/3,\n"
"Qwen MoE, Qwen3.5/3.6, Phi-3/4, Gemma 2/3; natter info --architectures lists them), and for\n"
"models on OpenAI-compatible servers (vLLM, llama-server, ollama, LM Studio, TGI, OpenAI).\n"
"\n"
"Options of the full-screen chat (chat --plain takes them too, but for --theme and\n"
"--token-delay, and needs -m):\n"
"  -m FILE            the model (default: the only .gguf in $XDG_DATA_HOME/natter/models)\n"
"  --theme NAME|FILE  default, light, mono (or theme = NAME in ~/.config/natter/config)\n"
"  --system TEXT      system prompt       --chat-template NAME|FILE\n"
"  -c N               context size (default: the model's, at most 4096)\n"
"  -t N               threads (default: the physical cores; more than the usable\n"
"                     CPUs are lowered, with a notice)\n"
"  --kv-type f16|q8_0|f32                  the KV cache's type (default f16)\n"
"  --exact-act        quantized products see their activations to about 16 bits\n"
"                     (default: rounded to 8, as llama.cpp does; exact costs speed)\n"
"  --temp T  --top-k K  --top-p P  --min-p P  --repeat-penalty R  --seed S\n"
"                     (default: temp 0.8, top-k 40, top-p 0.95, min-p 0.05,\n"
"                     repeat-penalty 1 (none), seed random; top-k 0 and min-p 0: off)\n"
"  --max-tokens N     per reply (default 1024; 0: no limit)\n"
"  --stop STRING      end a reply at STRING (repeatable)\n"
"  --lora FILE[:SCALE] a LoRA adapter (repeatable; llama.cpp's GGUF format)\n"
"  --think-tags 'OPEN CLOSE'              a reasoning model's tags (default '<think> </think>')\n"
"  --db FILE | --no-history                the history database, or none\n"
"  --token-delay MS   slow each token down (demos, tests)\n"
"  --remote URL       a server instead of a model file; -m NAME is its model\n"
"  --api-key-env VAR  the variable holding its API key (default OPENAI_API_KEY)\n"
"  --remote-extras on|off  --connect-timeout S  --read-timeout S\n"
"  Defaults for these come from $XDG_CONFIG_HOME/natter/config (see natter(1)).\n"
"  Keys: F1 help, Enter send, Esc stop, F5 regenerate, Tab focus, + - 1-5 rate,\n"
"        F4 show/fold the reasoning, F6 A/B comparison, F2 new, F3 past conversations,\n"
"        F10 quit.\n"
"\n"
"Commands:\n"
"  chat -m FILE --plain [OPTIONS]  chat line by line on stdin/stdout (/help inside)\n"
"  generate -m FILE -p PROMPT [-n N] [--temp T] [--seed S] [--kv-type T] ...\n"
"                                  continue a prompt, printing tokens as they come\n"
"  template (-m FILE | --template-file F | --builtin NAME) --messages CONV.json\n"
"           [--add-generation-prompt] [--bos S] [--eos S] [--enable-thinking true|false]\n"
"                                  render a conversation with a chat template\n"
"  history [list | show ID | search TEXT | delete ID]\n"
"                                  past conversations, with every generation\n"
"  rate GEN_ID (up|down|1..5) [--comment TEXT]\n"
"                                  rate a reply\n"
"  export --format FORMAT [--min-rating N] [--model SHA|NAME] [--adapter SHA|none]\n"
"         [--since DATE] [--include-incomplete] [--include-legacy] [--reasoning drop|keep]\n"
"         [-o FILE]\n"
"                                  rated replies as JSONL for fine-tuning (export --help\n"
"                                  lists the formats)\n"
"  serve -m FILE [--host 127.0.0.1] [--port 8080] [-c N] [-t N] [--api-key-env VAR]\n"
"        [--db FILE | --no-history] an OpenAI-compatible server (/v1/chat/completions,\n"
"                                  /v1/completions, /v1/models); one request at a time\n"
"  pull REPO[:FILE]                download a GGUF from Hugging Face into the models folder\n"
"  models [--remote URL]           the models folder: size, architecture, quantization, last use;\n"
"                                  or what a server offers (GET /v1/models)\n"
"  info -m FILE [--kv] [--tensors] architecture, hyperparameters, layers, tokenizer, tensors\n"
"  info --architectures            the architectures natter runs\n"
"  info --cpu                      the kernel tiers: which this CPU has, which is used;\n"
"                                  how float weights' batches run (tiles or OpenBLAS)\n"
"  tokenize -m FILE [--no-bos] [--special] [--pieces] (TEXT | -f FILE)\n"
"                                  print the token ids of TEXT\n"
"  eval -m FILE --tokens 1,2,3 --logits-out OUT [--incremental | --split N] [--kv-type T]\n"
"                                  write float32 logits [n_tokens][n_vocab]\n"
"  perplexity -m FILE -f TEXT [-c N] [-t N] [--kv-type T] [--kl-base OTHER] [--chunks N]\n"
"                                  perplexity over a text, chunked as llama-perplexity;\n"
"                                  --kl-base: mean KL and same top token against OTHER\n"
"  eval-choice -m FILE -f QUESTIONS.jsonl [-c N] [-t N] [--kv-type T] [--limit N] [--verbose]\n"
"                                  multiple-choice accuracy by log-likelihood\n"
"  finetune -m FILE -o ADAPTER.gguf [--data FILE.jsonl | --db FILE] [--method sft|dpo]\n"
"           [--rank N] [--lr LR] [--steps N | --epochs N] [--resume CKPT] ...\n"
"                                  train a LoRA adapter on rated replies (CPU)\n"
"  bench -m FILE [-p 128,...] [-n 32,...] [-t N] [-r 3] [-b 512] [--kv-type T]\n"
"         [--json] [--sys] [--stop]\n"
"                                  prompt and generation speed, like llama-bench\n"
"  mkmodel --preset NAME --type TYPE -o FILE [--layers N]\n"
"                                  write a random-weight GGUF with real shapes\n"
"\n"
"--lora FILE[:SCALE] and --exact-act work with generate, eval, bench, perplexity, eval-choice,\n"
"serve.\n"
"Run 'natter COMMAND --help' or 'natter help COMMAND' for a command's options.  The\n"
"database is $NATTER_DB, else $XDG_DATA_HOME/natter/natter.db; --db FILE chooses another.\n"
"  -h, --help                      show this help\n"
"  -V, --version                   show the version\n"
"";

void
cli_error(const char *fmt, ...)
{
	char msg[2048], shown[4096];
	va_list ap;

	/* A message may quote a file (a model's architecture, a name): shown
	 * as cli_write_text shows text on a terminal. */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", cli_progname, cli_shown(msg, strlen(msg), shown, sizeof(shown)));
}

void
cli_write_shown(FILE *f, const char *s, size_t n)
{
	char buf[4096];
	size_t used;

	while (n > 0) {
		size_t w = text_sanitize(s, n, buf, sizeof(buf), &used, 1);
		fwrite(buf, 1, w, f);
		if (used == 0)
			break;
		s += used;
		n -= used;
	}
}

void
cli_write_text(const char *s, size_t n, int tty)
{
	if (tty)
		cli_write_shown(stdout, s, n);
	else
		fwrite(s, 1, n, stdout);
}

const char *
cli_shown(const char *s, size_t n, char *buf, size_t cap)
{
	size_t used, w = text_sanitize(s, n, buf, cap - 1, &used, 1);
	buf[w] = 0;
	return buf;
}

double
cli_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int
cli_threads(const char *cmd, int n)
{
	char notice[160];

	if (n <= 0)
		return n;
	n = sysbench_threads_clamp(n, notice, sizeof(notice));
	if (notice[0])
		fprintf(stderr, "%s: %s: %s\n", cli_progname, cmd, notice);
	return n;
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

/* Weights are read straight from the mapped model file: if the file is
 * truncated or its disk goes away while natter runs, the next read raises
 * SIGBUS.  Say so instead of dying silently. */
static void
on_sigbus(int sig)
{
	static const char msg[] = "\nnatter: the model file was truncated or became unreadable while in use; "
	    "stopping (nothing else was affected)\n";
	(void)sig;
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* nothing more can be done */
	}
	_exit(3);
}

/* A command's status, made a failure when what it printed could not all be
 * written (a full disk, a closed pipe): a command that failed has said why
 * already. */
static int
stdout_checked(int rc)
{
	const int flushed = fflush(stdout) == 0, e = errno;

	if (flushed && !ferror(stdout))
		return rc;
	if (rc == 0) {
		/* The reason is known when the last write failed here. */
		if (flushed)
			cli_error("standard output: writing failed");
		else
			cli_error("standard output: writing failed: %s", strerror(e));
		rc = 1;
	}
	return rc;
}

/* Before a history written by an older natter is upgraded (it takes a
 * while for a large one): every command opens its store before a screen
 * starts, so standard error is the terminal's. */
static void
say_upgrade(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "natter: %s\n", msg);
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
		{ "chat", cmd_chat },
		{ "template", cmd_template },
		{ "history", cmd_history },
		{ "rate", cmd_rate },
		{ "export", cmd_export },
		{ "perplexity", cmd_perplexity },
		{ "eval-choice", cmd_eval_choice },
		{ "serve", cmd_serve },
		{ "pull", cmd_pull },
		{ "models", cmd_models },
		{ "finetune", cmd_finetune },
	};

	signal(SIGBUS, on_sigbus);
	store_on_upgrade(say_upgrade, NULL);
	{
		/* A kernel tier named by NATTER_CPU that is none, or one this CPU
		 * lacks, is refused before anything runs (info --cpu lists them);
		 * so is a NATTER_PREFETCH that is not two or three distances. */
		char err[256];
		if ((getenv("NATTER_CPU") || getenv("NATTER_PREFETCH")) && q_cpu_init(err, sizeof(err)) < 0 &&
		    !(argc > 2 && strcmp(argv[1], "info") == 0 && strcmp(argv[2], "--cpu") == 0)) {
			fprintf(stderr, "natter: %s\n", err);
			return 2;
		}
		if (q_float_gemm_init(err, sizeof(err)) < 0) {
			fprintf(stderr, "natter: %s\n", err);
			return 2;
		}
	}
	if (argc < 2)
		return cmd_ui(argc, argv);   /* the model from the models folder */
	if (strcmp(argv[1], "help") == 0 && argc > 2) {
		/* natter help COMMAND: that command's --help. */
		static char help_opt[] = "--help";
		char *hv[3] = { argv[2], help_opt, NULL };
		if (argc > 3) {
			cli_error("help: unexpected argument '%s' (natter help COMMAND)", argv[3]);
			return 2;
		}
		for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
			if (strcmp(argv[2], cmds[i].name) == 0)
				return stdout_checked(cmds[i].fn(2, hv));
		cli_error("help: unknown command '%s' (see natter --help)", argv[2]);
		return 2;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
		fputs(usage_text, stdout);
		return stdout_checked(0);
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
#ifdef NATTER_ASAN
		printf("natter %s (built with sanitizers)\n", PACKAGE_VERSION);
#else
		printf("natter %s\n", PACKAGE_VERSION);
#endif
		return stdout_checked(0);
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return stdout_checked(cmds[i].fn(argc - 1, argv + 1));
	if (argv[1][0] == '-')
		return cmd_ui(argc, argv);
	cli_error("unknown command '%s' (see natter --help)", argv[1]);
	return 2;
}
