/* cmd-chat.c -- `natter chat --plain`: a line-mode chat on stdin/stdout, with slash commands. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "cli/cli.h"
#include "natter/chat-engine.h"
#include "natter/chat.h"
#include "natter/chatcmd.h"
#include "natter/chatlog.h"
#include "natter/llm.h"
#include "natter/store.h"
#include "natter/text.h"
#include "natter/ui.h"

static volatile sig_atomic_t interrupted;
/* The session whose reply is being generated (NULL between replies):
 * Ctrl-C stops it at once, even while no piece arrives (a prompt being
 * read, a server that has not answered yet).  chat_cancel only stores to
 * a lock-free atomic, which a signal handler may do. */
static struct chat *volatile generating;

static void
on_sigint(int sig)
{
	struct chat *c = generating;
	(void)sig;
	interrupted = 1;
	if (c)
		chat_cancel(c);
}

/* How a reply is shown: a reasoning model's reasoning comes first,
 * marked off as history show marks it ("[reasoning]", each line after
 * "| ", then "[answer]"), dim on a terminal. */
struct out_ctx {
	int tty;
	int in_reasoning;         /* showing the reasoning */
	int line_start;           /* at the start of one of its lines */
	int lost;                 /* standard output failed (a closed pipe, a full disk) */
	int lost_errno;           /* why, when known (else 0) */
};

/* Whether what was printed has reached standard output: flushed now, and
 * no write failed before.  Once one failed (the reader of a pipe gone,
 * SIGPIPE being ignored), nothing more can be shown: the chat stops. */
static int
out_ok(struct out_ctx *o)
{
	if (o->lost)
		return 0;
	errno = 0;
	if (fflush(stdout) == 0 && !ferror(stdout))
		return 1;
	o->lost = 1;
	o->lost_errno = errno;
	return 0;
}

/* Says on stderr that standard output failed, and what became of the
 * turn (THEN: a phrase). */
static void
out_lost_say(const struct out_ctx *o, const char *then)
{
	cli_error("standard output: writing failed%s%s; %s", o->lost_errno ? ": " : "",
	    o->lost_errno ? strerror(o->lost_errno) : "", then);
}

/* The reasoning is over: the answer follows. */
static void
reasoning_end(struct out_ctx *o)
{
	if (!o->in_reasoning)
		return;
	if (!o->line_start)
		putchar('\n');
	fputs(o->tty ? "[answer]\033[22m\n" : "[answer]\n", stdout);
	o->in_reasoning = 0;
}

static int
on_piece(void *arg, const struct chat_piece *p)
{
	struct out_ctx *o = arg;

	if (p->kind == CHAT_PIECE_REASONING) {
		const char *s = p->text;
		size_t n = p->len;
		if (!o->in_reasoning) {
			fputs(o->tty ? "\033[2m[reasoning]\n" : "[reasoning]\n", stdout);
			o->in_reasoning = o->line_start = 1;
		}
		while (n > 0) {
			const char *nl = memchr(s, '\n', n);
			size_t k = nl ? (size_t)(nl - s) + 1 : n;
			if (o->line_start)
				fputs("| ", stdout);
			cli_write_text(s, k, o->tty);
			o->line_start = nl != NULL;
			s += k;
			n -= k;
		}
	} else {
		reasoning_end(o);
		cli_write_text(p->text, p->len, o->tty);
	}
	/* A reply no one can see any more stops as Ctrl-C stops it; the
	 * chat then stops too (cmd_chat). */
	if (!out_ok(o))
		return 1;
	return interrupted;   /* Ctrl-C stops the reply, not the program */
}

static void
on_notice(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "[natter: %s]\n", msg);
}

static void
print_stats(const struct chat_stats *st)
{
	printf("prompt: %d new tokens (%d reused from the cache), %.1f tok/s\n", st->n_prompt, st->n_reused,
	    st->prompt_tps);
	printf("reply: %d %s, %.1f tok/s, first token after %.0f ms, ended: %s\n", st->n_gen,
	    st->gen_counted ? "pieces (the server reported no token count)" : "tokens", st->gen_tps, st->ttft_ms,
	    chat_stop_name(st->stop));
	if (st->n_reasoning > 0 && st->reasoning_counted && !st->gen_counted)
		printf("reasoning: %d pieces (the server reported no count of its tokens)\n", st->n_reasoning);
	else if (st->n_reasoning > 0)
		printf("reasoning: %d %s, answer: %d %s\n", st->n_reasoning, st->gen_counted ? "pieces" : "tokens",
		    st->n_gen - st->n_reasoning, st->gen_counted ? "pieces" : "tokens");
	if (st->n_ctx > 0)
		printf("context: %d of %d tokens used; seed %llu\n", st->n_ctx_used, st->n_ctx,
		    (unsigned long long)st->seed);
	else
		printf("context: not known (the server's); seed %llu\n", (unsigned long long)st->seed);
}

/* "0.8", or "0.8 (not sent)" for a parameter that does not reach the model. */
static const char *
pv(struct chat *c, const char *name, char *buf, size_t n, const char *fmt, double v)
{
	int l = snprintf(buf, n, fmt, v);
	if (!chat_param_sent(c, name) && l > 0 && (size_t)l < n)
		snprintf(buf + l, n - (size_t)l, " (not sent)");
	return buf;
}

static void
print_params_adapters(struct chat *c)
{
	char name[160];
	for (int i = 0; i < chat_n_adapters(c); i++)
		printf("adapter %d %s: scale %g%s\n", i + 1, chatcmd_adapter_name(c, i, name, sizeof(name)),
		    chat_adapter_scale(c, i), chat_adapter_scale(c, i) == 0.0f ? " (off)" : "");
}

static void
print_params(struct chat *c)
{
	struct sampler_params p;
	char k[48], mp[48], rp[48], seed[32];
	chat_get_params(c, &p);
	if (p.seed == SAMPLER_SEED_RANDOM)
		snprintf(seed, sizeof(seed), "random");
	else
		snprintf(seed, sizeof(seed), "%llu", (unsigned long long)p.seed);
	printf("temp %g, top_k %s, top_p %g, min_p %s, repeat_penalty %s (last %d), presence_penalty %g, "
	    "frequency_penalty %g, max_tokens %d, seed %s\n", p.temp, pv(c, "top_k", k, sizeof(k), "%g", p.top_k),
	    p.top_p, pv(c, "min_p", mp, sizeof(mp), "%g", p.min_p), pv(c, "repeat_penalty", rp, sizeof(rp), "%g",
	    p.repeat_penalty), p.penalty_last_n, p.presence_penalty, p.frequency_penalty, chat_max_tokens(c),
	    seed);
}

/* Says why the history did not take part of a turn, once a turn (*WARNED
 * set): one failure is enough to know the turn is not saved, and a busy
 * database fails the message, then the reply's second try at it, alike. */
static void
persist_warn(struct chatlog *p, int *warned)
{
	if (*warned)
		return;
	*warned = 1;
	fprintf(stderr, "natter: %s\n", store_errmsg(p->s));
}

/* The conversation was deleted elsewhere and recording moved to a new
 * one (chatlog_moved): said once, when it happens. */
static void
moved_say(struct chatlog *per)
{
	char msg[400];

	if (chatlog_moved(per, msg, sizeof(msg)))
		fprintf(stderr, "[natter: %s]\n", msg);
}

/* Standard output failed (O->lost) while the reply streamed: the reply
 * stopped there, and is kept as a reply stopped with Ctrl-C is. */
static void
reply_lost_say(const struct out_ctx *o, const struct chatlog *per)
{
	char then[160];

	if (per->last_gen)
		snprintf(then, sizeof(then), "the reply stopped there (saved as stopped, generation %lld); the chat "
		    "stops", (long long)per->last_gen);
	else
		snprintf(then, sizeof(then), "the reply stopped there; the chat stops");
	out_lost_say(o, then);
}

/* Reads one logical line (a trailing backslash continues it); NULL at EOF. */
static char *
read_input(int tty)
{
	char *acc = NULL;
	size_t alen = 0;

	for (;;) {
		char *line;
		size_t n;
		if (tty) {
			line = readline(acc ? ". " : "> ");
			if (!line)
				break;
		} else {
			size_t cap = 0;
			ssize_t r;
			line = NULL;
			r = getline(&line, &cap, stdin);
			if (r < 0) {
				free(line);
				break;
			}
			if (r > 0 && line[r - 1] == '\n')
				line[--r] = 0;
			if (r > 0 && line[r - 1] == '\r')
				line[--r] = 0;   /* a file with Windows line ends */
		}
		n = strlen(line);
		int cont = n > 0 && line[n - 1] == '\\';
		if (cont)
			line[--n] = 0;
		char *na = realloc(acc, alen + n + 2);
		if (!na) {
			free(line);
			break;
		}
		acc = na;
		memcpy(acc + alen, line, n);
		alen += n;
		acc[alen] = 0;
		free(line);
		if (!cont)
			return acc;
		acc[alen++] = '\n';
		acc[alen] = 0;
	}
	if (acc && alen)
		return acc;
	free(acc);
	return NULL;
}

/* chat --plain's side of the shared slash commands (chatcmd.h). */
struct plain {
	struct chat *c;
	struct chatlog *per;
	const struct chat_stats *last;
	int *have_stats;
	int regen;
	int ab;                        /* /ab asked for reply B under V */
	struct chatcmd_variant v;
};

static void
plain_say(void *fe, int is_err, const char *msg)
{
	FILE *f = is_err ? stderr : stdout;

	(void)fe;
	/* A message may quote the history (a model's or an adapter's file
	 * name, stop strings a client sent): shown as cli_error shows one. */
	cli_write_shown(f, msg, strlen(msg));
	fputc('\n', f);
}

static void
plain_regen(void *fe)
{
	((struct plain *)fe)->regen = 1;
}

static void
plain_new(void *fe)
{
	struct plain *p = fe;
	chat_clear(p->c);
	chatlog_new(p->per);
	*p->have_stats = 0;   /* the last reply's figures are of the conversation before */
	printf("new conversation\n");
}

static void
plain_params(void *fe)
{
	print_params(((struct plain *)fe)->c);
	print_params_adapters(((struct plain *)fe)->c);
}

static void
plain_stats(void *fe)
{
	struct plain *p = fe;
	if (!*p->have_stats) {
		printf("no reply yet\n");
		return;
	}
	print_stats(p->last);
	if (p->per->made_gen)
		printf("stored as generation %lld of conversation %lld\n", (long long)p->per->made_gen,
		    (long long)p->per->conv);
}

static void
help_line(void *ctx, const char *usage, const char *help)
{
	(void)ctx;
	printf("%-29s %s\n", usage, help);
}

static void
plain_ab(void *fe, const struct chatcmd_variant *v)
{
	struct plain *p = fe;
	p->ab = 1;
	p->v = *v;
}

static const struct chatcmd_ops plain_ops;

static void
plain_help(void *fe)
{
	(void)fe;
	chatcmd_help(&plain_ops, help_line, NULL);
	printf("A line ending in a backslash continues on the next line.\n");
}

static const struct chatcmd_ops plain_ops = {
	.say = plain_say, .regen = plain_regen, .new_conv = plain_new, .params = plain_params,
	.stats = plain_stats, .help = plain_help, .ab = plain_ab,
};

/* "/set NAME VALUE, /params, ..." for --help. */
static void
usage_list(void *ctx, const char *usage, const char *help)
{
	int *first = ctx;
	(void)help;
	printf("%s%s", *first ? "" : ", ", usage);
	*first = 0;
}

int
cmd_chat(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "plain", no_argument, NULL, 'P' },
		{ "resume", required_argument, NULL, 'R' },
		CLI_CHAT_LONGOPTS,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	struct cli_chat_args args = { 0 };
	struct chat_opts *op = &args.chat;
	struct llm_model *m = NULL;
	struct chat *c = NULL;
	struct chat_stats last = { 0 };
	int plain = 0, ch, rc = 1, have_stats = 0;
	long long resume = 0;
	struct chatlog per = { 0 };
	char err[512];
	struct out_ctx out = { isatty(STDOUT_FILENO), 0, 0, 0, 0 };
	int tty_in = isatty(STDIN_FILENO);
	struct plain pl;

	memset(&pl, 0, sizeof(pl));
	pl.per = &per;
	pl.last = &last;
	pl.have_stats = &have_stats;
	if (cli_chat_args_init(&args) < 0)   /* the defaults and the config file */
		return 2;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "m:h" CLI_CHAT_SHORTOPTS, opts, NULL)) != -1) {
		int r = cli_chat_option(ch, optarg, &args, "chat");
		if (r < 0)
			return 2;
		if (r)
			continue;
		switch (ch) {
		case 'm': path = optarg; break;
		case 'P': plain = 1; break;
		case 'R': {
			char *end;
			errno = 0;
			resume = strtoll(optarg, &end, 10);
			if (end == optarg || *end || errno == ERANGE || resume <= 0) {
				cli_error("--resume: '%s' is not a conversation id (see natter history list)", optarg);
				return 2;
			}
			break;
		}
		case 'h':
			printf("usage: natter chat -m FILE --plain [--system TEXT] [--chat-template NAME|FILE] [-c N] [-t N]\n"
			    "       [--kv-type f16|q8_0|f32] [--exact-act]\n"
			    "       [--temp T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S]\n"
			    "       [--max-tokens N] [--stop STRING]... [--think-tags 'OPEN CLOSE']\n"
			    "       [--db FILE | --no-history] [--resume ID] [--lora FILE[:SCALE]]...\n"
			    "       natter chat --remote URL [-m NAME] --plain [--api-key-env VAR] [the options above]\n"
			    "%s"
			    "Commands: ", cli_remote_help);
			{
				int first = 1;
				chatcmd_help(&plain_ops, usage_list, &first);
			}
			printf("\n"
			    "Defaults for the model, sampling, context, threads and database come from\n"
			    "$XDG_CONFIG_HOME/natter/config (key = value lines); options override them.\n");
			return 0;
		default:
			return 2;
		}
	}
	if (cli_no_more_args("chat", argc, argv, optind) < 0)
		return 2;
	cli_remote_wanted(&args, path);
	if (!path && !args.remote)
		path = args.model;
	if (!path && !args.remote) {
		cli_error("chat: no model given (use -m FILE, or model = FILE in the config file; or --remote URL)");
		return 2;
	}
	args.chat.n_threads = cli_threads("chat", args.chat.n_threads);
	if (resume && (!plain || args.no_history)) {
		cli_error("--resume works with --plain and the history (F3 resumes in the full-screen chat)");
		return 2;
	}
	if (!plain) {
		/* Without --plain, chat is the full-screen chat (natter -m FILE). */
		struct ui_opts uo;
		memset(&uo, 0, sizeof(uo));
		if (args.remote) {
			if (cli_remote_session(&args, path, &uo.session) < 0)
				return 1;
			path = NULL;
		}
		uo.model_path = path;
		uo.chat = args.chat;
		uo.db = args.db;
		uo.no_history = args.no_history;
		uo.theme = args.theme;
		return ui_run(&uo);
	}
	if (args.remote) {
		if (cli_remote_session(&args, path, &c) < 0)
			return 1;
		path = NULL;   /* -m named the server's model, not a file */
	} else if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		return 1;
	} else if (llm_model_pack(m), chat_new(m, op, &c, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		goto out;
	}
	chat_set_notice(c, on_notice, NULL);
	chat_set_split(c, on_piece, &out);
	pl.c = c;
	if (chat_warning(c))
		fprintf(stderr, "natter: warning: %s\n", chat_warning(c));
	if (!args.no_history) {
		per.s = cli_store_open(args.db, 0);
		/* A model that could not be recorded (a busy database) is tried
		 * again with the first reply, which says so if it fails again:
		 * nothing is lost before then, and saying it twice says nothing
		 * more. */
		if (!per.s)
			fprintf(stderr, "natter: this chat will not be saved\n");
		else
			chatlog_model(&per, c, path);
	}
	if (resume) {
		/* The conversation's active branch, every alternative; the replies
		 * from here on record this session's model. */
		if (!per.s || chatlog_resume(&per, c, resume, err, sizeof(err)) < 0) {
			cli_error("--resume %lld: %s", resume, per.s ? err : "the history cannot be opened");
			goto out;
		}
		fprintf(stderr, "natter: resumed conversation %lld (%d messages)\n", resume, chat_n_messages(c));
	}
	if (tty_in) {
		struct chat_engine_info info;
		chat_engine_info(c, &info);
		if (info.endpoint)
			fprintf(stderr, "natter: %s at %s (remote). /help for commands.\n", info.model, info.endpoint);
		else
			fprintf(stderr, "natter: %s, template %s, context %d. /help for commands.\n", path,
			    chat_template_name(c), chat_ctx_size(c));
	}
	{
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_sigint;
		/* Ctrl-C while a line is awaited stops nothing: the read goes on
		 * (a read from a pipe cut by it was taken for the end of input). */
		sa.sa_flags = SA_RESTART;
		sigaction(SIGINT, &sa, NULL);
		sa.sa_flags = 0;
		/* A closed standard output (natter chat --plain | head) is a
		 * write error to stop on (out_ok), not a signal that kills the
		 * chat half-way through recording a turn. */
		sa.sa_handler = SIG_IGN;
		sigaction(SIGPIPE, &sa, NULL);
	}
	for (;;) {
		char *line;
		int gen = 0, regen = 0, warned = 0;

		interrupted = 0;
		/* What a command asked for is done once (an /ab went on taking
		 * every message after it as its B). */
		pl.regen = pl.ab = 0;
		/* What the last turn printed is out before the next line is read
		 * (a program reading the chat through a pipe sees it), and a
		 * message no one could see the reply to is not read at all. */
		if (!out_ok(&out)) {
			out_lost_say(&out, "the chat stops");
			break;
		}
		line = read_input(tty_in);
		if (!line)
			break;
		if (tty_in && line[0])
			add_history(line);
		if (line[0] == '/' && line[1] != '/') {
			struct chatcmd_env env = { c, &per, &plain_ops, &pl };
			if (chatcmd_run(&env, line) == CHATCMD_QUIT) {
				free(line);
				break;
			}
			regen = pl.regen;
		} else if (line[strspn(line, " \t\r\n\f\v")]) {   /* a blank line is not a message */
			/* "//" starts a message that starts with "/". */
			const char *msg = line + (line[0] == '/');
			if (chat_add_user(c, msg, strlen(msg)) < 0) {
				cli_error("out of memory");
				free(line);
				break;
			}
			/* Committed before generation starts: a crash loses no message. */
			if (chatlog_user(&per, c) < 0)
				persist_warn(&per, &warned);
			moved_say(&per);
			gen = 1;
		}
		free(line);
		if (pl.ab) {
			/* A/B: A as it stands, then B streamed under its setting. */
			int i = chat_n_messages(c) - 1, r;
			printf("A (%s):\n", per.ab.label_a);
			cli_write_text(chat_message_content(c, i), strlen(chat_message_content(c, i)), out.tty);
			printf("\nB (%s):\n", per.ab.label_b);
			fflush(stdout);
			/* As a reply: Ctrl-C stops it, reasoning shown as such. */
			chat_cancel_reset(c);
			interrupted = 0;
			out.in_reasoning = 0;
			generating = c;
			r = chat_regenerate_with(c, &pl.v.sp, pl.v.scales, NULL, NULL, &last, err, sizeof(err));
			generating = NULL;
			reasoning_end(&out);
			if (r < 0) {
				fprintf(stderr, "error: %s\n", err);
				chatlog_ab_cancel(&per);
				continue;
			}
			have_stats = 1;
			putchar('\n');
			if (chatlog_reply(&per, c, &last) < 0)
				persist_warn(&per, &warned);
			moved_say(&per);
			if (out.lost) {
				reply_lost_say(&out, &per);
				break;
			}
			if (last.stop == CHAT_STOP_CANCEL)
				fprintf(stderr, "[natter: reply stopped]\n");
			if (per.ab.state != CHATLOG_AB_READY)
				fprintf(stderr, "[natter: reply B was not finished: no comparison to pick from]\n");
			else
				printf("Which is better? /pick a, /pick b or /pick tie\n");
			fflush(stdout);
		}
		if (gen || regen) {
			int r;
			/* A Ctrl-C between two replies (at the prompt) stops neither. */
			chat_cancel_reset(c);
			interrupted = 0;
			out.in_reasoning = 0;
			generating = c;
			chatlog_sending(&per, c);
			r = regen ? chat_regenerate(c, NULL, NULL, &last, err, sizeof(err)) :
			    chat_generate(c, NULL, NULL, &last, err, sizeof(err));
			generating = NULL;
			if (out.in_reasoning && r == 0 && last.stop == CHAT_STOP_LIMIT)
				fprintf(stderr, "[natter: the reply ended inside its reasoning after %d %s; "
				    "a larger --max-tokens leaves room for the answer]\n", last.n_reasoning,
				    last.reasoning_counted ? "pieces" : "tokens");
			reasoning_end(&out);
			if (r < 0) {
				int n = chat_n_messages(c);
				fprintf(stderr, "error: %s\n", err);
				/* A message the conversation could not take is withdrawn;
				 * one the engine failed on stays, to be sent again. */
				if (n > 0 && !strcmp(chat_message_role(c, n - 1), "user"))
					fprintf(stderr, "[natter: your message stays in the conversation; /regen sends it "
					    "again]\n");
				else if (chatlog_withdrawn(&per, c) < 0)
					/* (recorded before a server refused it) */
					fprintf(stderr, "[natter: the history keeps the message: %s]\n", store_errmsg(per.s));
				continue;
			}
			have_stats = 1;
			putchar('\n');
			if (chatlog_reply(&per, c, &last) < 0)
				persist_warn(&per, &warned);
			moved_say(&per);
			if (out.lost) {
				reply_lost_say(&out, &per);
				break;
			}
			if (last.stop == CHAT_STOP_CANCEL)
				fprintf(stderr, "[natter: reply stopped]\n");
			else if (last.stop == CHAT_STOP_ERROR)
				fprintf(stderr, "[natter: the reply broke off: %s; what arrived is kept, marked "
				    "as cut]\n", err);
			else if (last.stop == CHAT_STOP_CONTEXT)
				fprintf(stderr, "[natter: the context is full; the reply was cut]\n");
			fflush(stdout);
		}
	}
	rc = out.lost ? 1 : 0;   /* the chat said why already */
out:
	store_close(per.s);
	chat_free(c);
	llm_model_free(m);
	return rc;
}
