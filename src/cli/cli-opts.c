/* cli-opts.c -- shared options: the chat front ends' and the config file's, the engine options, strict numbers. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "natter/chat.h"
#include "natter/llm.h"
#include "natter/sampler.h"
#include "natter/think.h"

/* --- strict numbers --- */

/* What reading a number found. */
enum num {
	NUM_OK,
	NUM_BAD,      /* not a number at all, or something after it */
	NUM_RANGE,    /* a whole number, too large for a long (*V is the bound it passed) */
};

/* S as a whole number: an optional sign and digits, nothing before or
 * after them (strtol alone skips spaces and stops at "5x"). */
static enum num
num_long(const char *s, long *v)
{
	char *end;
	long x;

	if (!s || !s[0] || isspace((unsigned char)s[0]))
		return NUM_BAD;
	errno = 0;
	x = strtol(s, &end, 10);
	if (end == s || *end)
		return NUM_BAD;
	*v = x;
	return errno == ERANGE ? NUM_RANGE : NUM_OK;
}

/* S as a finite float, nothing before or after it; an overflow is
 * refused, as "inf" and "nan" are; an underflow reads as the tiny number
 * (or 0) it is, and -0 as 0. */
static enum num
num_float(const char *s, float *v)
{
	char *end;
	float x;

	if (!s || !s[0] || isspace((unsigned char)s[0]))
		return NUM_BAD;
	errno = 0;
	x = strtof(s, &end);
	if (end == s || *end || !isfinite(x))
		return NUM_BAD;
	*v = x + 0.0f;
	return NUM_OK;
}

/* S as a seed: digits below SAMPLER_SEED_RANDOM, or "random". */
static enum num
num_seed(const char *s, uint64_t *v)
{
	char *end;
	unsigned long long x;

	/* "-1" as llama.cpp and the OpenAI-style requests spell it. */
	if (s && (!strcmp(s, "random") || !strcmp(s, "-1"))) {
		*v = SAMPLER_SEED_RANDOM;
		return NUM_OK;
	}
	/* strtoull takes "-1" as a huge number: digits only, after a "+"
	 * (which the whole numbers of the other options take too). */
	if (s && s[0] == '+')
		s++;
	if (!s || !isdigit((unsigned char)s[0]))
		return NUM_BAD;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (*end || errno == ERANGE || x >= SAMPLER_SEED_RANDOM)
		return NUM_BAD;
	*v = (uint64_t)x;
	return NUM_OK;
}

/* "natter: WANTS, got 'ARG'SUFFIX" */
static void
arg_error(const char *arg, const char *suffix, const char *wants, va_list ap)
{
	char w[256];
	vsnprintf(w, sizeof(w), wants, ap);
	cli_error("%s, got '%s'%s", w, arg ? arg : "", suffix);
}

int
cli_arg_int(const char *arg, long min, long max, int *v, const char *wants, ...)
{
	char bound[64] = "";
	enum num r;
	va_list ap;
	long x;

	r = num_long(arg, &x);
	if (r != NUM_BAD && x < min)
		snprintf(bound, sizeof(bound), " (at least %ld)", min);
	else if (r != NUM_BAD && x > max)
		snprintf(bound, sizeof(bound), " (at most %ld)", max);
	else if (r == NUM_OK) {
		*v = (int)x;
		return 0;
	}
	va_start(ap, wants);
	arg_error(arg, bound, wants, ap);
	va_end(ap);
	return -1;
}

int
cli_arg_float(const char *arg, float *v, const char *wants, ...)
{
	va_list ap;

	if (num_float(arg, v) == NUM_OK)
		return 0;
	va_start(ap, wants);
	arg_error(arg, "", wants, ap);
	va_end(ap);
	return -1;
}

int
cli_arg_seed(const char *arg, uint64_t *v, const char *wants, ...)
{
	va_list ap;

	if (num_seed(arg, v) == NUM_OK)
		return 0;
	va_start(ap, wants);
	arg_error(arg, "", wants, ap);
	va_end(ap);
	return -1;
}

/* --- the chat front ends' options and the config file's settings --- */

enum kind {
	K_INT,       /* a whole number in [min, max] */
	K_FLOAT,     /* a finite number in the sampler's range (sampler_params_check) */
	K_SEED,      /* a whole number, or "random" */
	K_STR,
	K_FLAG,
	K_STOP,      /* repeatable */
	K_LORA,      /* repeatable: FILE[:SCALE] */
	K_ONOFF,     /* on or off (yes/no, true/false, 1/0) */
	K_KV_TYPE,   /* a cache type: f16, q8_0, f32 */
	K_TAGS,      /* a pair of reasoning tags, "OPEN CLOSE" */
};

/* One setting: how it is spelled on the command line (getopt code and the
 * name used in messages) and in the config file, its kind and range, and
 * where it goes.  One table for both, so a setting is one line here. */
static const struct setting {
	int code;              /* getopt code; 0: config file only */
	const char *flag;      /* as messages name the option */
	const char *key;       /* config key; NULL: command line only */
	enum kind kind;
	long min, max;
	size_t off;            /* into struct cli_chat_args */
	const char *range;     /* for messages about K_INT */
	int local;             /* about a model run here: refused with --remote (cli_remote_session) */
} settings[] = {
	/* 0, as in every command: the model's own length (at most 4096), the physical cores. */
	{ 'c', "-c/--ctx-size", "ctx_size", K_INT, 0, 1 << 24, offsetof(struct cli_chat_args, chat.n_ctx),
	  "a number of tokens up to 16777216, 0 for the model's own", 1 },
	{ 't', "-t/--threads", "threads", K_INT, 0, 1024, offsetof(struct cli_chat_args, chat.n_threads),
	  "a number of threads up to 1024, 0 for the physical cores", 1 },
	{ 'n', "--max-tokens", "max_tokens", K_INT, 0, 1000000000, offsetof(struct cli_chat_args, chat.max_tokens),
	  "a number of tokens, 0 for no limit", 0 },
	{ 's', "--seed", "seed", K_SEED, 0, 0, offsetof(struct cli_chat_args, chat.sp.seed), NULL, 0 },
	{ CLI_OPT_TEMP, "--temp", "temp", K_FLOAT, 0, 0, offsetof(struct cli_chat_args, chat.sp.temp), NULL, 0 },
	{ CLI_OPT_TOP_K, "--top-k", "top_k", K_INT, 0, 1000000000, offsetof(struct cli_chat_args, chat.sp.top_k),
	  "0 (off) or more", 0 },
	{ CLI_OPT_TOP_P, "--top-p", "top_p", K_FLOAT, 0, 0, offsetof(struct cli_chat_args, chat.sp.top_p), NULL, 0 },
	{ CLI_OPT_MIN_P, "--min-p", "min_p", K_FLOAT, 0, 0, offsetof(struct cli_chat_args, chat.sp.min_p), NULL, 0 },
	{ CLI_OPT_REPEAT, "--repeat-penalty", "repeat_penalty", K_FLOAT, 0, 0,
	  offsetof(struct cli_chat_args, chat.sp.repeat_penalty), NULL, 0 },
	{ 0, NULL, "presence_penalty", K_FLOAT, 0, 0, offsetof(struct cli_chat_args, chat.sp.presence_penalty), NULL, 0 },
	{ 0, NULL, "frequency_penalty", K_FLOAT, 0, 0, offsetof(struct cli_chat_args, chat.sp.frequency_penalty), NULL, 0 },
	{ 0, NULL, "penalty_last_n", K_INT, 0, 65536, offsetof(struct cli_chat_args, chat.sp.penalty_last_n),
	  "a number of tokens from 0 to 65536", 0 },
	{ CLI_OPT_SYSTEM, "--system", "system", K_STR, 0, 0, offsetof(struct cli_chat_args, chat.system_prompt), NULL, 0 },
	{ CLI_OPT_TEMPLATE, "--chat-template", "chat_template", K_STR, 0, 0,
	  offsetof(struct cli_chat_args, chat.template_spec), NULL, 1 },
	{ CLI_OPT_DB, "--db", "db", K_STR, 0, 0, offsetof(struct cli_chat_args, db), NULL, 0 },
	{ CLI_OPT_NO_HISTORY, "--no-history", NULL, K_FLAG, 0, 0, offsetof(struct cli_chat_args, no_history), NULL, 0 },
	{ CLI_OPT_STOP, "--stop", NULL, K_STOP, 0, 0, 0, NULL, 0 },
	{ CLI_OPT_KV_TYPE, "--kv-type", "kv_type", K_KV_TYPE, 0, 0, offsetof(struct cli_chat_args, chat.kv_type), NULL,
	  1 },
	{ CLI_OPT_EXACT_ACT, "--exact-act", "exact_act", K_FLAG, 0, 0, offsetof(struct cli_chat_args, chat.exact_act), NULL,
	  1 },
	{ CLI_OPT_LORA, "--lora", NULL, K_LORA, 0, 0, 0, NULL, 1 },
	{ CLI_OPT_THINK_TAGS, "--think-tags", "think_tags", K_TAGS, 0, 0, offsetof(struct cli_chat_args, chat.think_tags),
	  NULL, 0 },
	{ 0, NULL, "model", K_STR, 0, 0, offsetof(struct cli_chat_args, model), NULL, 0 },
	{ 0, NULL, "theme", K_STR, 0, 0, offsetof(struct cli_chat_args, theme), NULL, 0 },
	{ CLI_OPT_REMOTE, "--remote", "remote", K_STR, 0, 0, offsetof(struct cli_chat_args, remote), NULL, 0 },
	{ CLI_OPT_KEY_ENV, "--api-key-env", "api_key_env", K_STR, 0, 0, offsetof(struct cli_chat_args, api_key_env), NULL, 0 },
	{ CLI_OPT_EXTRAS, "--remote-extras", "remote_extras", K_ONOFF, 0, 0,
	  offsetof(struct cli_chat_args, remote_extras), NULL, 0 },
	{ CLI_OPT_CONNECT_TIMEOUT, "--connect-timeout", "connect_timeout", K_INT, 1, 3600,
	  offsetof(struct cli_chat_args, connect_timeout_s), "a number of seconds from 1 to 3600", 0 },
	{ CLI_OPT_READ_TIMEOUT, "--read-timeout", "read_timeout", K_INT, 1, 86400,
	  offsetof(struct cli_chat_args, read_timeout_s), "a number of seconds from 1 to 86400", 0 },
};
#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

/* "'VALUE' is not a KV cache type (f16, q8_0, f32)" from the table. */
static void
kv_type_choices(const char *value, char *err, size_t errlen)
{
	size_t n = (size_t)snprintf(err, errlen, "'%s' is not a KV cache type (", value);
	for (int i = 0; i < LLM_KV_TYPE_COUNT && n < errlen; i++)
		n += (size_t)snprintf(err + n, errlen - n, "%s%s", i ? ", " : "", llm_kv_type_name((enum llm_kv_type)i));
	if (n < errlen)
		snprintf(err + n, errlen - n, ")");
}

int
cli_kv_type(const char *option, const char *value, enum llm_kv_type *t)
{
	char err[256];

	if (llm_kv_type_parse(value, t) == 0)
		return 0;
	kv_type_choices(value, err, sizeof(err));
	cli_error("%s: %s", option, err);
	return -1;
}
/* The --lora paths given (command line and config file), kept to the end. */
static char *kept[4 * CHAT_MAX_ADAPTERS];
static int n_kept;

/* Reads VALUE for setting S into A.  NAME is how the message names the
 * setting.  Returns 0, or -1 with ERR set. */
static int
setting_apply(const struct setting *s, const char *value, struct cli_chat_args *a, char *err, size_t errlen)
{
	char *base = (char *)a + s->off;

	switch (s->kind) {
	case K_INT: {
		long v;
		enum num r = num_long(value, &v);
		if (r == NUM_BAD) {
			snprintf(err, errlen, "'%s' is not a whole number (%s)", value, s->range);
			return -1;
		}
		if (r == NUM_RANGE || v < s->min || v > s->max) {
			snprintf(err, errlen, "'%s' is out of range (%s)", value, s->range);
			return -1;
		}
		*(int *)base = (int)v;
		return 0;
	}
	case K_FLOAT: {
		/* Every float setting is a sampling parameter: its range is the
		 * sampler's, checked here so that the error names the option
		 * (or the config file's line) and comes before a model loads. */
		const size_t sp = offsetof(struct cli_chat_args, chat.sp);
		struct sampler_params d;
		char why[128];
		float f;
		if (num_float(value, &f) != NUM_OK) {
			snprintf(err, errlen, "'%s' is not a number", value);
			return -1;
		}
		if (s->off >= sp && s->off + sizeof(float) <= sp + sizeof(d)) {
			sampler_params_default(&d);
			memcpy((char *)&d + (s->off - sp), &f, sizeof(f));
			if (sampler_params_check(&d, why, sizeof(why)) < 0) {
				snprintf(err, errlen, "'%s' is out of range (%s)", value, why);
				return -1;
			}
		}
		*(float *)base = f;
		return 0;
	}
	case K_SEED:
		if (num_seed(value, (uint64_t *)base) != NUM_OK) {
			snprintf(err, errlen, "'%s' is not a seed (a whole number from 0 to %llu, or random or -1)", value,
			    (unsigned long long)SAMPLER_SEED_RANDOM - 1);
			return -1;
		}
		return 0;
	case K_STR:
		*(const char **)base = value;
		return 0;
	case K_TAGS: {
		char open[32], close[32];
		if (think_tags_parse(value, open, close, sizeof(open), err, errlen) < 0)
			return -1;
		*(const char **)base = value;
		return 0;
	}
	case K_FLAG:
		/* On the command line a flag has no value; in the config file,
		 * on or off. */
		if (!value) {
			*(int *)base = 1;
			return 0;
		}
		/* fall through */
	case K_ONOFF:
		if (!strcmp(value, "on") || !strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "1")) {
			*(int *)base = 1;
			return 0;
		}
		if (!strcmp(value, "off") || !strcmp(value, "no") || !strcmp(value, "false") || !strcmp(value, "0")) {
			*(int *)base = 0;
			return 0;
		}
		snprintf(err, errlen, "'%s' is neither on nor off", value);
		return -1;
	case K_KV_TYPE:
		if (llm_kv_type_parse(value, (enum llm_kv_type *)base) < 0) {
			kv_type_choices(value, err, errlen);
			return -1;
		}
		return 0;
	case K_STOP:
		if (a->n_stop >= 8) {
			snprintf(err, errlen, "at most 8 stop strings");
			return -1;
		}
		a->chat.stop[a->n_stop++] = value;
		return 0;
	case K_LORA: {
		char *path;
		float scale;
		if (a->chat.n_lora >= CHAT_MAX_ADAPTERS) {
			snprintf(err, errlen, "at most %d adapters", CHAT_MAX_ADAPTERS);
			return -1;
		}
		if (cli_lora_parse(value, &path, &scale, err, errlen) < 0)
			return -1;
		/* Kept for the program's life, like the other option strings
		 * (and reachable from here, so that no leak checker calls it lost). */
		if (n_kept < (int)(sizeof(kept) / sizeof(kept[0])))
			kept[n_kept++] = path;
		a->chat.lora[a->chat.n_lora] = path;
		a->chat.lora_scale[a->chat.n_lora++] = scale;
		a->chat.lora_digest = cli_lora_digest;
		return 0;
	}
	}
	return 0;
}

int
cli_chat_option(int c, const char *arg, struct cli_chat_args *a, const char *cmd)
{
	const char *sep = cmd ? ": " : "";
	char err[256];

	cmd = cmd ? cmd : "";
	for (size_t i = 0; i < N_SETTINGS; i++) {
		if (!settings[i].code || settings[i].code != c)
			continue;
		if (setting_apply(&settings[i], arg, a, err, sizeof(err)) < 0) {
			cli_error("%s%s%s: %s", cmd, sep, settings[i].flag, err);
			return -1;
		}
		if (c == CLI_OPT_REMOTE)
			a->remote_on_cli = 1;
		if (c == CLI_OPT_DB)
			a->db_on_cli = 1;
		if (a->db_on_cli && a->no_history) {
			cli_error("%s%s--db and --no-history: a history database, or none", cmd, sep);
			return -1;
		}
		if (settings[i].local && !a->local_on_cli)
			a->local_on_cli = settings[i].flag;
		return 1;
	}
	return 0;
}

int
cli_sampler_option(int c, const char *arg, struct sampler_params *sp, const char *cmd)
{
	const size_t lo = offsetof(struct cli_chat_args, chat.sp);

	/* The chat's own entries, applied to a scratch chat's sampler: one
	 * reader, one range check and one message for every command. */
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct setting *s = &settings[i];
		struct cli_chat_args tmp;
		char err[256];

		if (!s->code || s->code != c || s->off < lo || s->off >= lo + sizeof(*sp))
			continue;
		memset(&tmp, 0, sizeof(tmp));
		tmp.chat.sp = *sp;
		if (setting_apply(s, arg, &tmp, err, sizeof(err)) < 0) {
			cli_error("%s: %s: %s", cmd, s->flag, err);
			return -1;
		}
		*sp = tmp.chat.sp;
		return 1;
	}
	return 0;
}

/* --- the engine options of the commands without a chat session --- */

int
cli_engine_option(int c, const char *arg, const char *cmd, struct cli_engine_args *e)
{
	char opt[64];

	switch (c) {
	case 't':
		/* 0 leaves the choice to cli_threads and llm_ctx_new: the physical cores. */
		return cli_arg_int(arg, 0, 1024, &e->threads, "%s: -t/--threads wants a count (0: the physical cores)",
		    cmd) < 0 ? -1 : 1;
	case 'c':
		/* The chat's bound (its settings table), 0 added for the command's own size. */
		return cli_arg_int(arg, 0, 1 << 24, &e->n_ctx, "%s: -c/--ctx-size wants a count", cmd) < 0 ? -1 : 1;
	case CLI_OPT_KV_TYPE:
		snprintf(opt, sizeof(opt), "%s: --kv-type", cmd);
		return cli_kv_type(opt, arg, &e->kv_type) < 0 ? -1 : 1;
	case CLI_OPT_EXACT_ACT:
		e->exact_act = 1;
		return 1;
	case CLI_OPT_LORA:
		return cli_lora_add(&e->lora, arg) < 0 ? -1 : 1;
	}
	return 0;
}

void
cli_engine_ctx_params(const struct cli_engine_args *e, struct llm_ctx_params *p)
{
	llm_ctx_params_default(p);
	p->n_ctx = e->n_ctx;
	p->n_threads = e->threads;
	p->kv_type = e->kv_type;
	p->exact_act = e->exact_act;
}

/* --- the config file --- */

struct entry {
	const struct setting *s;
	char *value;
};

/* The file, read once: its settings in order, or the error it gave. */
static struct {
	int loaded, bad;
	struct entry *e;
	int n;
} cfg;

static char *
trim(char *s)
{
	char *e;
	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

/* "~/x" as $HOME/x (caller frees). */
static char *
expand_home(const char *v)
{
	const char *home = getenv("HOME");
	char *out;
	if (v[0] != '~' || v[1] != '/' || !home || !*home)
		return strdup(v);
	out = malloc(strlen(home) + strlen(v));
	if (out)
		sprintf(out, "%s%s", home, v + 1);
	return out;
}

static int
config_load(void)
{
	char path[4096], *line = NULL;
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	size_t cap = 0;
	ssize_t r;
	int lineno = 0;
	FILE *f;

	if (cfg.loaded)
		return cfg.bad ? -1 : 0;
	cfg.loaded = 1;
	if (xdg && *xdg)
		snprintf(path, sizeof(path), "%s/natter/config", xdg);
	else if (home && *home)
		snprintf(path, sizeof(path), "%s/.config/natter/config", home);
	else
		return 0;
	f = fopen(path, "r");
	if (!f) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;   /* no config file: the defaults */
		cli_error("%s: cannot read the config file: %s", path, strerror(errno));
		cfg.bad = 1;
		return -1;
	}
	while ((r = getline(&line, &cap, f)) >= 0) {
		char *l = trim(line), *eq, *key, *val;
		const struct setting *s = NULL;
		struct cli_chat_args probe;
		char err[256];
		lineno++;
		if (!*l || *l == '#')
			continue;
		eq = strchr(l, '=');
		if (!eq) {
			cli_error("%s:%d: '%s' is not a setting (write key = value)", path, lineno, l);
			cfg.bad = 1;
			break;
		}
		*eq = 0;
		key = trim(l);
		val = trim(eq + 1);
		/* "..." keeps spaces at the ends of a value. */
		if (val[0] == '"' && strlen(val) >= 2 && val[strlen(val) - 1] == '"') {
			val[strlen(val) - 1] = 0;
			val++;
		}
		for (size_t i = 0; i < N_SETTINGS; i++)
			if (settings[i].key && !strcmp(settings[i].key, key))
				s = &settings[i];
		if (!s) {
			char known[512];
			size_t k = 0;
			known[0] = 0;
			for (size_t i = 0; i < N_SETTINGS; i++)
				if (settings[i].key && k < sizeof(known))
					k += (size_t)snprintf(known + k, sizeof(known) - k, "%s%s", k ? ", " : "", settings[i].key);
			cli_error("%s:%d: unknown setting '%s' (known: %s)", path, lineno, key, known);
			cfg.bad = 1;
			break;
		}
		/* The value is checked now, so the error can name the line. */
		memset(&probe, 0, sizeof(probe));
		if (setting_apply(s, val, &probe, err, sizeof(err)) < 0) {
			cli_error("%s:%d: %s: %s", path, lineno, key, err);
			cfg.bad = 1;
			break;
		}
		{
			struct entry *e = realloc(cfg.e, (cfg.n + 1) * sizeof(*e));
			char *v = !strcmp(key, "model") || !strcmp(key, "db") || !strcmp(key, "chat_template") ?
			    expand_home(val) : strdup(val);
			if (!e || !v) {
				free(v);
				if (e)
					cfg.e = e;
				cli_error("out of memory");
				cfg.bad = 1;
				break;
			}
			cfg.e = e;
			cfg.e[cfg.n].s = s;
			cfg.e[cfg.n++].value = v;
		}
	}
	/* getline's -1 is the end or a failure: a folder where the file
	 * should be opens, then fails to read (EISDIR), and must not pass for
	 * an empty file whose settings silently do not apply. */
	if (!cfg.bad && ferror(f)) {
		cli_error("%s: cannot read the config file: %s", path, strerror(errno));
		cfg.bad = 1;
	}
	free(line);
	fclose(f);
	return cfg.bad ? -1 : 0;
}

int
cli_config_get(const char *key, const char **value)
{
	*value = NULL;
	if (config_load() < 0)
		return -1;
	for (int i = 0; i < cfg.n; i++)
		if (!strcmp(cfg.e[i].s->key, key))
			*value = cfg.e[i].value;
	return 0;
}

int
cli_chat_args_init(struct cli_chat_args *a)
{
	const char *env_db = getenv("NATTER_DB");
	char err[256];

	memset(a, 0, sizeof(*a));
	chat_opts_default(&a->chat);
	a->remote_extras = 1;
	if (config_load() < 0)
		return -1;
	for (int i = 0; i < cfg.n; i++) {
		/* $NATTER_DB names the database more closely than the file. */
		if (!strcmp(cfg.e[i].s->key, "db") && env_db && *env_db)
			continue;
		if (setting_apply(cfg.e[i].s, cfg.e[i].value, a, err, sizeof(err)) < 0) {
			cli_error("config file: %s: %s", cfg.e[i].s->key, err);
			return -1;
		}
	}
	return 0;
}

int
cli_no_more_args(const char *cmd, int argc, char **argv, int first)
{
	if (first >= argc)
		return 0;
	cli_error("%s: unexpected argument '%s' (see natter %s --help)", cmd, argv[first], cmd);
	return -1;
}
