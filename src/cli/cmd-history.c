/* cmd-history.c -- `natter history`, `natter rate`, `natter export`: the store from the command line. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "natter/store.h"

int
cli_db_path(const char *db, int create, char *buf, size_t n, char *err, size_t errlen)
{
	if (!db && !(getenv("NATTER_DB") && *getenv("NATTER_DB")) && cli_config_get("db", &db) < 0)
		return -1;
	if (db) {
		if ((size_t)snprintf(buf, n, "%s", db) < n)
			return 0;
		snprintf(err, errlen, "the database's path is too long: %.200s...", db);
		return 1;
	}
	return store_default_path_ex(buf, n, create, err, errlen) ? 0 : 1;
}

/* Opens the store named by --db or the default path (whose folder is
 * made only when the store may be created). */
struct store *
cli_store_open_path(const char *db, unsigned flags, char *out, size_t n)
{
	char path[4096], err[1024];
	struct store *s;
	int r;

	r = cli_db_path(db, !(flags & (STORE_READONLY | STORE_MUST_EXIST)), path, sizeof(path), err, sizeof(err));
	if (r != 0) {
		if (r > 0)
			cli_error("%s", err);
		return NULL;
	}
	if (store_open(path, flags, &s, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		return NULL;
	}
	if (out && n)
		snprintf(out, n, "%s", path);
	return s;
}

struct store *
cli_store_open(const char *db, unsigned flags)
{
	return cli_store_open_path(db, flags, NULL, 0);
}

static int
parse_id(const char *s, int64_t *id)
{
	char *end;
	long long v;

	if (!s)
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	/* ERANGE: too many digits would be read as LLONG_MAX, another id. */
	if (end == s || *end || errno == ERANGE || v <= 0)
		return -1;
	*id = v;
	return 0;
}

int
cmd_history(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *db = NULL, *sub;
	struct store *s;
	int c, rc = 0;
	int64_t id = 0;
	FILE *out = stdout;
	char *shown = NULL;
	size_t n_shown = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': db = optarg; break;
		case 'h':
			printf("usage: natter history [--db FILE] [list | show ID | search TEXT | delete ID]\n");
			return 0;
		default:
			return 2;
		}
	}
	sub = optind < argc ? argv[optind] : "list";
	if (strcmp(sub, "list") && strcmp(sub, "show") && strcmp(sub, "search") && strcmp(sub, "delete")) {
		cli_error("history: unknown subcommand '%s' (list, show ID, search TEXT, delete ID)", sub);
		return 2;
	}
	if ((!strcmp(sub, "show") || !strcmp(sub, "delete")) && parse_id(optind + 1 < argc ? argv[optind + 1] : NULL, &id) < 0) {
		cli_error("history %s: needs a conversation id (see natter history list)", sub);
		return 2;
	}
	if (!strcmp(sub, "search") && optind + 1 >= argc) {
		cli_error("history search: needs the text to look for");
		return 2;
	}
	/* Reading needs no write permission; nothing is created. */
	s = cli_store_open(db, !strcmp(sub, "delete") ? STORE_MUST_EXIST : STORE_READONLY);
	if (!s)
		return 1;
	/* The history quotes what was typed, generated and named (titles,
	 * replies, model files): a terminal sees it as cli_write_text shows
	 * text, so that no stored escape sequence reaches it.  Through a
	 * memory stream, not line by line: a character is never split. */
	if (strcmp(sub, "delete") && isatty(STDOUT_FILENO) && !(out = open_memstream(&shown, &n_shown))) {
		cli_error("history: out of memory");
		store_close(s);
		return 1;
	}
	if (!strcmp(sub, "list"))
		rc = store_history_list(s, out);
	else if (!strcmp(sub, "show"))
		rc = store_history_show(s, id, out);
	else if (!strcmp(sub, "search"))
		rc = store_history_search(s, argv[optind + 1], out);
	else {
		rc = store_conv_delete(s, id);
		if (rc == 0)
			printf("deleted conversation %lld\n", (long long)id);
	}
	if (out != stdout) {
		if (fclose(out) == 0)
			cli_write_shown(stdout, shown, n_shown);
		else if (rc == 0)
			rc = -2;
		free(shown);
	}
	if (rc == -2)
		cli_error("history: out of memory");
	else if (rc < 0)
		cli_error("%s", store_errmsg(s));
	store_close(s);
	return rc < 0 ? 1 : 0;
}

int
cmd_rate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "comment", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *db = NULL, *comment = NULL, *kind;
	struct store *s;
	int c, value, rc;
	int64_t id;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': db = optarg; break;
		case 'c': comment = optarg; break;
		case 'h':
			printf("usage: natter rate [--db FILE] GEN_ID (up|down|1..5) [--comment TEXT]\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind + 2 != argc || parse_id(argv[optind], &id) < 0 ||
	    store_rating_parse(argv[optind + 1], &kind, &value) < 0) {
		cli_error("rate: usage: natter rate GEN_ID (up|down|1..5) [--comment TEXT]");
		return 2;
	}
	s = cli_store_open(db, STORE_MUST_EXIST);
	if (!s)
		return 1;
	rc = store_rating_set(s, id, kind, value, comment);
	if (rc < 0)
		cli_error("%s", store_errmsg(s));
	else
		printf("rated generation %lld %s\n", (long long)id, argv[optind + 1]);
	store_close(s);
	return rc < 0 ? 1 : 0;
}

static void
export_usage(FILE *out)
{
	fprintf(out, "usage: natter export --format FORMAT [--min-rating N] [--model SHA|NAME] [--adapter SHA|none]\n"
	    "       [--since YYYY-MM-DD] [--include-incomplete] [--include-legacy] [--reasoning drop|keep]\n"
	    "       [-o FILE] [--db FILE]\n"
	    "Rated replies as JSON lines; each prompt is what the model was fed for that reply.\n"
	    "Formats:\n");
	for (int f = 0; f < STORE_N_FORMATS; f++)
		fprintf(out, "  %-11s %s\n", store_format_name(f), store_format_help(f));
	fprintf(out, "--min-rating N       a good reply: N stars or more (thumbs up counts 5, down 1); default 4\n"
	    "--include-incomplete also replies that were stopped or cut off (context, max tokens, error)\n"
	    "--include-legacy     also replies from before schema 3, their prompt rebuilt from the\n"
	    "                     conversation as stored (what they were fed was not recorded)\n"
	    "--adapter SHA|none   only replies made with the LoRA adapter whose SHA-256 starts with SHA\n"
	    "                     (as natter chat /lora shows it), or with no adapter at all\n"
	    "--model SHA|NAME     replies by a model whose SHA-256 starts with, or whose file name\n"
	    "                     (remote: model id or endpoint) contains, this; remote or file: all such\n"
	    "--reasoning keep     a reasoning model's reasoning stays in the reply, as <think>REASONING</think>\n"
	    "                     before the answer (default: drop, the answer alone)\n"
	    "-o FILE              write there (default: standard output); never the history database\n");
}

int
cmd_export(int argc, char **argv)
{
	enum { OPT_INCOMPLETE = 1000, OPT_LEGACY, OPT_ADAPTER, OPT_REASONING };
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "format", required_argument, NULL, 'f' },
		{ "min-rating", required_argument, NULL, 'r' },
		{ "model", required_argument, NULL, 'm' },
		{ "since", required_argument, NULL, 's' },
		{ "output", required_argument, NULL, 'o' },
		{ "include-incomplete", no_argument, NULL, OPT_INCOMPLETE },
		{ "include-legacy", no_argument, NULL, OPT_LEGACY },
		{ "adapter", required_argument, NULL, OPT_ADAPTER },
		{ "reasoning", required_argument, NULL, OPT_REASONING },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *db = NULL, *out = NULL, *fmt = NULL;
	struct store_export_opts o;
	struct store_export_counts n;
	struct store *s;
	char err[1024];
	int c, rc, f;

	memset(&o, 0, sizeof(o));
	o.min_rating = 4;
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': db = optarg; break;
		case 'f': fmt = optarg; break;
		case 'r': {
			if (cli_arg_int(optarg, 1, 5, &o.min_rating,
			    "export: --min-rating wants 1 to 5 (thumbs up counts as 5, down as 1)") < 0)
				return 2;
			break;
		}
		case 'm': o.model = optarg; break;
		case 'o': out = optarg; break;
		case OPT_INCOMPLETE: o.include_incomplete = 1; break;
		case OPT_LEGACY: o.include_legacy = 1; break;
		case OPT_ADAPTER:
			/* A prefix of hex digits: nothing a LIKE pattern could read otherwise. */
			if (strcmp(optarg, "none") && (!optarg[0] || strspn(optarg, "0123456789abcdefABCDEF") != strlen(optarg) ||
			    strlen(optarg) > 64)) {
				cli_error("export: --adapter wants the start of an adapter's SHA-256 (hex digits) or none, "
				    "got '%s'", optarg);
				return 2;
			}
			o.adapter = optarg;
			break;
		case OPT_REASONING:
			if (strcmp(optarg, "keep") && strcmp(optarg, "drop")) {
				cli_error("export: --reasoning wants keep or drop");
				return 2;
			}
			o.keep_reasoning = !strcmp(optarg, "keep");
			break;
		case 's': {
			struct tm tm = { 0 };
			char *e = strptime(optarg, "%Y-%m-%d", &tm);
			if (!e || *e) {
				cli_error("export: --since wants a date as YYYY-MM-DD");
				return 2;
			}
			tm.tm_isdst = -1;
			{
				/* mktime takes 2024-02-31 for March 2: a day the month has not is refused. */
				const int mday = tm.tm_mday, mon = tm.tm_mon;
				o.since = (int64_t)mktime(&tm);
				if (tm.tm_mday != mday || tm.tm_mon != mon) {
					cli_error("export: --since %s: no such day", optarg);
					return 2;
				}
			}
			break;
		}
		case 'h':
			export_usage(stdout);
			return 0;
		default:
			return 2;
		}
	}
	if (cli_no_more_args("export", argc, argv, optind) < 0)
		return 2;
	if (!fmt || (f = store_format_find(fmt)) < 0) {
		cli_error("export: --format must be one of:");
		export_usage(stderr);
		return 2;
	}
	o.format = (enum store_format)f;
	/* The export is renamed over -o: never over the history it reads. */
	if (out && strcmp(out, "-") && cli_output_check("export", "-o", out, db, NULL, 0) < 0)
		return 2;
	s = cli_store_open(db, STORE_READONLY);
	if (!s)
		return 1;
	rc = store_export(s, &o, out, &n, err, sizeof(err));
	if (rc < 0) {
		cli_error("%s", err);
	} else {
		if (out && strcmp(out, "-"))
			fprintf(stderr, "%s: wrote %d %s lines to %s\n", cli_progname, n.lines, fmt, out);
		if (n.skipped_incomplete)
			fprintf(stderr, "%s: left out %d rated repl%s that %s stopped or cut off (--include-incomplete "
			    "keeps them)\n", cli_progname, n.skipped_incomplete, n.skipped_incomplete == 1 ? "y" : "ies",
			    n.skipped_incomplete == 1 ? "was" : "were");
		if (n.skipped_legacy)
			fprintf(stderr, "%s: left out %d rated repl%s from before schema 3, whose prompt was not recorded "
			    "(--include-legacy rebuilds it from the conversation)\n", cli_progname, n.skipped_legacy,
			    n.skipped_legacy == 1 ? "y" : "ies");
		if (n.skipped_raw)
			fprintf(stderr, "%s: left out %d rated repl%s to a bare prompt (natter serve's /v1/completions, or a "
			    "chat template that passes the text through), which no chat template wrapped: they are no "
			    "chat turns\n", cli_progname, n.skipped_raw,
			    n.skipped_raw == 1 ? "y" : "ies");
		if (n.skipped_damaged)
			fprintf(stderr, "%s: left out %d rated repl%s whose record of the prompt is damaged (not a list of "
			    "messages with a string role and content)\n", cli_progname, n.skipped_damaged,
			    n.skipped_damaged == 1 ? "y" : "ies");
	}
	store_close(s);
	return rc < 0 ? 1 : 0;
}
