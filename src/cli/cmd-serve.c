/* cmd-serve.c -- `natter serve`: the OpenAI-compatible server, until Ctrl-C or SIGTERM. */
#include "config.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "natter/oai.h"
#include "natter/serve.h"

#define STR_(x) #x
#define STR(x) STR_(x)

enum { OPT_HOST = 2000, OPT_PORT, OPT_KEY_ENV, OPT_DELAY, OPT_QUEUE, OPT_REASONING, OPT_IDLE };

static const char serve_usage[] =
"usage: natter serve -m FILE [--host ADDR] [--port N] [-c N] [-t N] [--kv-type f16|q8_0|f32]\n"
"       [--exact-act] [--api-key-env VAR]\n"
"       [--db FILE | --no-history] [--chat-template NAME|FILE] [--system TEXT]\n"
"       [--temp T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S]\n"
"       [--max-tokens N] [--stop STRING]... [--max-queue N] [--idle-timeout S]\n"
"       [--token-delay MS]\n"
"       [--lora FILE[:SCALE]]...   LoRA adapters on every reply (recorded with each)\n"
"       [--think-tags 'OPEN CLOSE']  a reasoning model's tags (default <think> </think>)\n"
"       [--reasoning-format deepseek|none]\n"
"An OpenAI-compatible server: POST /v1/chat/completions, POST /v1/completions,\n"
"GET /v1/models, GET /health.  Requests wait in one queue and are answered one at a\n"
"time; a request that continues the previous conversation reuses its cached prompt.\n"
"  --host ADDR         address to listen on (default 127.0.0.1: this machine only)\n"
"  --port N            port (default 8080; 0 picks a free one, printed at start)\n"
"  --api-key-env VAR   require \"Authorization: Bearer KEY\", KEY being the value of\n"
"                      the environment variable VAR (never printed or logged)\n"
"  --max-queue N       requests that may wait (default 16); more get 503, with\n"
"                      Retry-After\n"
"  --idle-timeout S    close a connection that sends nothing for S seconds while\n"
"                      no reply is being made for it (default " STR(SERVE_IDLE_TIMEOUT_DEFAULT) "; a reply that\n"
"                      takes longer, or a stream's slow tokens, are not cut)\n"
"  --token-delay MS    slow each token down (demos, tests)\n"
"  --reasoning-format  how a chat reply's reasoning reaches the client: deepseek\n"
"                      (default) in the message's (delta's) reasoning_content, the\n"
"                      answer alone in content; none: in content between its tags,\n"
"                      as the model wrote it (a request's reasoning_format decides\n"
"                      for itself)\n"
"The sampling options are defaults that a request's own fields override.  Request\n"
"bodies over 4 MiB are refused (413).  At most " STR(SERVE_CONNECTION_LIMIT) " connections are served at once\n"
"(or twice one address's share and four, if more), and --max-queue + " STR(SERVE_PER_IP_EXTRA) " from one\n"
"address; the next four from it get 429 if they ask within 2 s, more are closed as\n"
"they come.  Each request is stored\n"
"as a conversation in the history (--no-history: not stored), a reasoning model's\n"
"reasoning apart from its answer.  /v1/completions replies are the text as the model\n"
"wrote it.\n";

int
cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "host", required_argument, NULL, OPT_HOST },
		{ "port", required_argument, NULL, OPT_PORT },
		/* Before CLI_CHAT_LONGOPTS, which has its own --api-key-env (the
		 * chat's, for --remote): getopt_long takes the first exact match. */
		{ "api-key-env", required_argument, NULL, OPT_KEY_ENV },
		{ "token-delay", required_argument, NULL, OPT_DELAY },
		{ "max-queue", required_argument, NULL, OPT_QUEUE },
		{ "idle-timeout", required_argument, NULL, OPT_IDLE },
		{ "reasoning-format", required_argument, NULL, OPT_REASONING },
		CLI_CHAT_LONGOPTS,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cli_chat_args args = { 0 };
	struct serve_opts so;
	struct serve *s = NULL;
	const char *key_env = NULL;
	char err[1024];
	sigset_t set;
	int ch, sig;

	memset(&so, 0, sizeof(so));
	chat_opts_default(&args.chat);
	so.host = "127.0.0.1";
	so.port = 8080;
	so.log = stderr;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "m:h" CLI_CHAT_SHORTOPTS, opts, NULL)) != -1) {
		int r = cli_chat_option(ch, optarg, &args, "serve");
		if (r < 0)
			return 2;   /* a bad value, already said */
		if (r)
			continue;
		switch (ch) {
		case 'm': so.model_path = optarg; break;
		case OPT_HOST: so.host = optarg; break;
		case OPT_PORT:
			if (cli_arg_int(optarg, 0, 65535, &so.port,
			    "serve: --port wants a port number (0: any free one)") < 0)
				return 2;
			break;
		case OPT_KEY_ENV: key_env = optarg; break;
		case OPT_DELAY:
			/* The full-screen chat's bound. */
			if (cli_arg_int(optarg, 0, 60000, &so.token_delay_ms,
			    "serve: --token-delay wants a number of milliseconds") < 0)
				return 2;
			break;
		case OPT_QUEUE:
			/* 0 is refused, not taken as serve_opts' "the default". */
			if (cli_arg_int(optarg, 1, 65536, &so.max_queue,
			    "serve: --max-queue wants a count of requests") < 0)
				return 2;
			break;
		case OPT_IDLE:
			if (cli_arg_int(optarg, 1, 86400, &so.idle_timeout,
			    "serve: --idle-timeout wants a number of seconds, 1 to 86400") < 0)
				return 2;
			break;
		case OPT_REASONING:
			if (strcmp(optarg, "deepseek") && strcmp(optarg, "none")) {
				cli_error("serve: --reasoning-format takes deepseek or none, not '%s'", optarg);
				return 2;
			}
			so.reasoning_inline = strcmp(optarg, "none") == 0;
			break;
		case 'h':
			fputs(serve_usage, stdout);
			return 0;
		default:
			return 2;
		}
	}
	if (args.remote) {
		/* The chat options include the remote ones; serve runs a model file. */
		cli_error("serve: --remote is for the chat (natter --remote URL); serve runs a model file (-m FILE)");
		return 2;
	}
	if (!so.model_path) {
		cli_error("serve: no model given (use -m FILE)");
		return 2;
	}
	if (cli_no_more_args("serve", argc, argv, optind) < 0)
		return 2;
	if (key_env) {
		const char *k = getenv(key_env);
		if (!k || !*k) {
			cli_error("serve: --api-key-env %s: that environment variable is not set or empty", key_env);
			return 2;
		}
		so.api_key = k;
	}
	args.chat.n_threads = cli_threads("serve", args.chat.n_threads);
	so.chat = args.chat;
	so.db = args.db;
	so.no_history = args.no_history;

	/* Signals are taken by sigwait on this thread only: every thread started
	 * from here inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (serve_start(&so, &s, err, sizeof(err)) < 0) {
		cli_error("serve: %s", err);
		return 1;
	}
	{
		int v6 = strchr(so.host, ':') != NULL;
		fprintf(stderr, "natter serve: %s listening on http://%s%s%s:%d/v1 (one request at a time; "
		    "%s; Ctrl-C stops)\n", serve_model_id(s), v6 ? "[" : "", so.host, v6 ? "]" : "", serve_port(s),
		    so.api_key ? "an API key is required" : "no API key");
		if (!so.api_key && strcmp(so.host, "127.0.0.1") && strcmp(so.host, "localhost") && strcmp(so.host, "::1"))
			fprintf(stderr, "natter serve: warning: without --api-key-env, anyone who can reach %s can use "
			    "this server\n", so.host);
		fflush(stderr);
	}
	while (sigwait(&set, &sig) != 0)
		;
	fprintf(stderr, "natter serve: stopping\n");
	serve_stop(s);
	return 0;
}
