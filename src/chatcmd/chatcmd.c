/* chatcmd.c -- the slash commands both chat front ends share: the table, the dispatch, the help. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natter/chat.h"
#include "natter/chatcmd.h"
#include "natter/chatlog.h"
#include "natter/lora.h"
#include "natter/store.h"

static void
say(struct chatcmd_env *e, int is_err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
say(struct chatcmd_env *e, int is_err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e->ops->say(e->fe, is_err, msg);
}

typedef void (*hook_fn)(void *fe);

static hook_fn
hook_of(const struct chatcmd_ops *ops, size_t off)
{
	hook_fn h;
	memcpy(&h, (const char *)ops + off, sizeof(h));
	return h;
}

/* The commands that are only the front end's hook. */
static int
cmd_hook(struct chatcmd_env *e, const struct chatcmd *cmd, char *args)
{
	(void)args;
	hook_of(e->ops, cmd->hook)(e->fe);
	return CHATCMD_DONE;
}

static int
cmd_quit(struct chatcmd_env *e, const struct chatcmd *cmd, char *args)
{
	(void)e;
	(void)cmd;
	(void)args;
	return CHATCMD_QUIT;
}

static int
cmd_set(struct chatcmd_env *e, const struct chatcmd *cmd, char *args)
{
	char err[256], *save = NULL;
	char *name = strtok_r(args, " \t\n", &save), *val = name ? strtok_r(NULL, " \t\n", &save) : NULL;
	char *extra = val ? strtok_r(NULL, " \t\n", &save) : NULL;
	(void)cmd;
	if (extra) {
		say(e, 1, "/set: one value for %s, and then '%s' (usage: /set NAME VALUE)", name, extra);
		return -1;
	}
	if (chat_set_param_str(e->c, name, val, err, sizeof(err)) < 0) {
		say(e, 1, "/set: %s", err);
		return -1;
	}
	if (chat_param_show(e->c, name, err, sizeof(err)) == 0)
		say(e, 0, "%s", err);
	return CHATCMD_DONE;
}

static int
cmd_rate(struct chatcmd_env *e, const struct chatcmd *cmd, char *args)
{
	char *save = NULL, *word = strtok_r(args, " \t", &save), *comment = word ? strtok_r(NULL, "", &save) : NULL;
	(void)cmd;
	if (comment) {   /* the blanks after the rating are no part of the comment */
		comment += strspn(comment, " \t");
		if (!*comment)
			comment = NULL;
	}
	return chatcmd_rate(e, word, comment) < 0 ? -1 : CHATCMD_DONE;
}

static int
cmd_system(struct chatcmd_env *e, const struct chatcmd *cmd, char *args)
{
	(void)cmd;
	return chatcmd_system(e, args) < 0 ? -1 : CHATCMD_DONE;
}

/* "/lora": the adapters; "/lora N|NAME SCALE": one's scale, from the next reply on. */
static int
cmd_lora(struct chatcmd_env *e, const struct chatcmd *cmd, char *args)
{
	char *save = NULL, *which = strtok_r(args, " \t", &save), *val = which ? strtok_r(NULL, " \t", &save) : NULL;
	char name[160], err[256], *end;
	int n = chat_n_adapters(e->c), i;
	float v;

	(void)cmd;
	if (!which) {
		if (n == 0) {
			say(e, 0, "no adapters (start natter with --lora FILE[:SCALE] to load one)");
			return CHATCMD_DONE;
		}
		for (i = 0; i < n; i++) {
			float sc = chat_adapter_scale(e->c, i);
			say(e, 0, "%d %s: scale %g%s, %s", i + 1, chatcmd_adapter_name(e->c, i, name, sizeof(name)), sc,
			    sc == 0.0f ? " (off)" : "", lora_sha256(chat_adapter(e->c, i))[0] ?
			    lora_sha256(chat_adapter(e->c, i)) : "sha256 unknown");
		}
		return CHATCMD_DONE;
	}
	if (!val || strtok_r(NULL, " \t", &save)) {
		say(e, 1, "usage: /lora [N|NAME SCALE] (SCALE 0 turns the adapter off)");
		return -1;
	}
	i = chat_adapter_find(e->c, which);
	if (i < 0) {
		say(e, 1, "/lora: no adapter '%s' (%d loaded; /lora lists them)", which, n);
		return -1;
	}
	errno = 0;
	v = strtof(val, &end);
	if (end == val || *end || errno) {
		say(e, 1, "/lora: '%s' is not a scale (a number; 0 turns the adapter off)", val);
		return -1;
	}
	if (chat_set_adapter_scale(e->c, i, v, err, sizeof(err)) < 0) {
		say(e, 1, "/lora: %s", err);
		return -1;
	}
	say(e, 0, "adapter %d %s: scale %g%s from the next reply, which reads the conversation again first", i + 1,
	    chatcmd_adapter_name(e->c, i, name, sizeof(name)), v, v == 0.0f ? " (off)" : "");
	return CHATCMD_DONE;
}

static int
cmd_ab(struct chatcmd_env *e, const struct chatcmd *cmd, char *args)
{
	(void)cmd;
	return chatcmd_ab_start(e, args) < 0 ? -1 : CHATCMD_DONE;
}

static int
cmd_pick(struct chatcmd_env *e, const struct chatcmd *cmd, char *args)
{
	(void)cmd;
	return chatcmd_pick(e, args) < 0 ? -1 : CHATCMD_DONE;
}

/* Qwen3's switch for its reasoning, for the templates that have it. */
static int
cmd_think(struct chatcmd_env *e, const struct chatcmd *cmd, char *args)
{
	enum chat_think t = chat_think(e->c);
	int thinks = chat_template_thinks(e->c);
	/* A server that refused chat_template_kwargs, which carries it. */
	int refused = !chat_param_sent(e->c, "think");

	(void)cmd;
	if (!args[0]) {
		say(e, 0, "enable_thinking: %s%s", t == CHAT_THINK_ON ? "true" : t == CHAT_THINK_OFF ? "false" :
		    "the template's default", thinks > 0 ? "" : thinks < 0 ? " (the server's template decides what it does)" :
		    refused ? " (not sent: the server refuses chat_template_kwargs)" :
		    " (this template has no enable_thinking)");
		return CHATCMD_DONE;
	}
	if (strcmp(args, "on") && strcmp(args, "off")) {
		say(e, 1, "usage: /think on|off");
		return -1;
	}
	if (!thinks && refused) {
		say(e, 1, "/think: the server refuses chat_template_kwargs, which would carry it; nothing changed");
		return -1;
	}
	if (!thinks) {
		/* The variable would be passed and read by nothing. */
		say(e, 1, "/think: this template (%s) has no enable_thinking; nothing changed", chat_template_name(e->c));
		return -1;
	}
	t = !strcmp(args, "on") ? CHAT_THINK_ON : CHAT_THINK_OFF;
	chat_set_think(e->c, t);
	say(e, 0, "enable_thinking = %s from the next reply%s", t == CHAT_THINK_ON ? "true" : "false",
	    thinks < 0 ? " (sent to the server as chat_template_kwargs)" : "");
	return CHATCMD_DONE;
}

#define HOOK(f) offsetof(struct chatcmd_ops, f)

/* Every slash command, in the order the help lists them. */
static const struct chatcmd table[] = {
	{ "set", NULL, "NAME VALUE", "change a sampling parameter", 0, cmd_set, 0 },
	{ "params", NULL, "", "show the sampling parameters", 0, cmd_hook, HOOK(params) },
	{ "regen", NULL, "", "generate the last reply again", CHATCMD_IDLE, cmd_hook, HOOK(regen) },
	{ "rate", NULL, "up|down|1..5 [COMMENT]", "rate the last reply", CHATCMD_IDLE, cmd_rate, 0 },
	{ "system", NULL, "[TEXT]", "set or remove the system prompt", CHATCMD_IDLE, cmd_system, 0 },
	{ "lora", NULL, "[N|NAME SCALE]", "list adapters, or set one's scale (0: off)", 0, cmd_lora, 0 },
	{ "ab", NULL, "[SETTING]", "A/B: last reply again", CHATCMD_IDLE, cmd_ab, HOOK(ab) },
	{ "pick", NULL, "a|b|tie", "pick the better of /ab", CHATCMD_IDLE, cmd_pick, 0 },
	{ "think", NULL, "on|off", "reasoning on or off (enable_thinking)", 0, cmd_think, 0 },
	{ "stats", NULL, "", "statistics of the last reply", 0, cmd_hook, HOOK(stats) },
	{ "notices", NULL, "", "the recent notices", 0, cmd_hook, HOOK(notices) },
	{ "copy", NULL, "", "copy the last reply to the clipboard", 0, cmd_hook, HOOK(copy) },
	{ "new", "clear", "", "start a new conversation", CHATCMD_IDLE, cmd_hook, HOOK(new_conv) },
	{ "history", NULL, "", "past conversations (Enter resumes one)", CHATCMD_IDLE, cmd_hook, HOOK(history) },
	{ "help", NULL, "", "this help", 0, cmd_hook, HOOK(help) },
	{ "quit", "exit", "", "leave", 0, cmd_quit, 0 },
};

const struct chatcmd *
chatcmd_table(int *n)
{
	*n = (int)(sizeof(table) / sizeof(table[0]));
	return table;
}

int
chatcmd_available(const struct chatcmd *cmd, const struct chatcmd_ops *ops)
{
	return !cmd->hook || hook_of(ops, cmd->hook) != NULL;
}

char *
chatcmd_usage(const struct chatcmd *cmd, char *buf, size_t n)
{
	snprintf(buf, n, "/%s%s%s", cmd->name, cmd->args[0] ? " " : "", cmd->args);
	return buf;
}

void
chatcmd_help(const struct chatcmd_ops *ops, void (*fn)(void *ctx, const char *usage, const char *help), void *ctx)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		char usage[96];
		if (!chatcmd_available(&table[i], ops))
			continue;
		chatcmd_usage(&table[i], usage, sizeof(usage));
		if (table[i].alias) {
			size_t l = strlen(usage);
			snprintf(usage + l, sizeof(usage) - l, ", /%s", table[i].alias);
		}
		fn(ctx, usage, table[i].help);
	}
}

int
chatcmd_run(struct chatcmd_env *e, char *line)
{
	char *p = line + (line[0] == '/'), *args;
	size_t n = strcspn(p, " \t\n");
	const struct chatcmd *cmd = NULL;

	args = p + n;
	args += strspn(args, " \t\n");
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]) && !cmd; i++)
		if ((strlen(table[i].name) == n && !strncmp(p, table[i].name, n)) ||
		    (table[i].alias && strlen(table[i].alias) == n && !strncmp(p, table[i].alias, n)))
			cmd = &table[i];
	p[n] = 0;
	if (!cmd) {
		say(e, 1, "unknown command /%s (try /help)", p);
		return -1;
	}
	if (!chatcmd_available(cmd, e->ops)) {
		say(e, 1, "/%s is not available here", cmd->name);
		return -1;
	}
	if ((cmd->flags & CHATCMD_IDLE) && e->ops->busy && e->ops->busy(e->fe)) {
		say(e, 1, "/%s: stop the reply first (Esc)", cmd->name);
		return -1;
	}
	/* Trailing blanks are no part of an argument. */
	for (size_t l = strlen(args); l > 0 && strchr(" \t\n", args[l - 1]); l--)
		args[l - 1] = 0;
	return cmd->fn(e, cmd, args);
}

/* A write into the history failed: WHAT did not happen, and why -- the
 * conversation deleted by another program (the chat then leaves it,
 * chatlog_left), or the store's error. */
static void
say_failed(struct chatcmd_env *e, const char *what)
{
	char moved[512];

	/* While a reply is written the session is the generation's: leaving
	 * the conversation (it clears every message's ids) waits for the
	 * reply's own save, which finds the deletion itself. */
	if (!(e->ops->busy && e->ops->busy(e->fe)) && chatlog_left(e->log, e->c) &&
	    chatlog_moved(e->log, moved, sizeof(moved)))
		say(e, 1, "%s: %s", what, moved);
	else
		say(e, 1, "%s: %s", what, store_errmsg(e->log->s));
}

/* Rates GEN; WHY says why not when GEN is 0.  A mistyped rating is told
 * as such first, whatever the reply. */
static int
rate(struct chatcmd_env *e, int64_t gen, const char *why, const char *word, const char *comment)
{
	const char *kind;
	int value;

	if (store_rating_parse(word, &kind, &value) < 0) {
		say(e, 1, "usage: /rate up|down|1..5 [COMMENT]");
		return -1;
	}
	if (!e->log->s || !gen) {
		say(e, 1, "%s", !e->log->s ? "nothing to rate: the history is off" : why);
		return -1;
	}
	if (comment && !comment[0])
		comment = NULL;
	if (store_rating_set(e->log->s, gen, kind, value, comment) < 0) {
		say_failed(e, "not rated");
		return -1;
	}
	say(e, 0, "rated generation %lld %s%s", (long long)gen, word, comment ? " with a comment" : "");
	if (e->ops->rated)
		e->ops->rated(e->fe, gen, word);
	return 0;
}

int
chatcmd_rate_gen(struct chatcmd_env *e, int64_t gen, const char *word, const char *comment)
{
	return rate(e, gen, "nothing to rate", word, comment);
}

int
chatcmd_rate_reply(struct chatcmd_env *e, int i, const char *word, const char *comment, int64_t *gen)
{
	const char *why = "nothing to rate: no reply yet";
	int64_t g = 0;

	/* The alternative the user sees, by the generation it was stored as:
	 * a reply whose save failed has none, and rating the one stored
	 * before it would put the verdict on a reply the user did not read. */
	if (i >= 0 && i < chat_n_messages(e->c) && !strcmp(chat_message_role(e->c, i), "assistant")) {
		g = chat_alt_tag(e->c, i, e->ops->shown_alt ? e->ops->shown_alt(e->fe, i) : chat_alt_index(e->c, i));
		why = "this reply was not saved, so it is not rated";
	}
	if (rate(e, g, why, word, comment) < 0)
		return -1;
	if (gen)
		*gen = g;
	return 0;
}

int
chatcmd_rate(struct chatcmd_env *e, const char *word, const char *comment)
{
	int i = chat_n_messages(e->c) - 1;

	/* A message sent since (not answered: its reply failed) leaves the
	 * reply before it the last one. */
	while (i >= 0 && strcmp(chat_message_role(e->c, i), "assistant"))
		i--;
	/* Two replies wait for a pick: which one this rates is not for /rate to guess. */
	if (e->log->ab.state == CHATLOG_AB_READY && e->log->ab.idx == i) {
		say(e, 1, "pick first (/pick a, b or tie); then /rate rates the chosen reply");
		return -1;
	}
	return chatcmd_rate_reply(e, i, word, comment, NULL);
}

int
chatcmd_system(struct chatcmd_env *e, const char *text)
{
	int removed = !text || !text[0];
	if (chat_set_system(e->c, removed ? "" : text) < 0) {
		say(e, 1, "out of memory");
		return -1;
	}
	if (chatlog_system(e->log, e->c) < 0) {
		say_failed(e, "system prompt set, and saved with your next message or reply");
		return -1;
	}
	say(e, 0, removed ? "system prompt removed" : "system prompt set");
	return 0;
}

/* --- A/B comparisons --- */

char *
chatcmd_adapter_name(struct chat *c, int i, char *buf, size_t n)
{
	const struct lora_adapter *a = chat_adapter(c, i);
	const char *path = a ? lora_path(a) : "?", *base = strrchr(path, '/');
	size_t bl, nl;
	base = base ? base + 1 : path;
	bl = strlen(base);
	nl = a ? strlen(lora_name(a)) : 0;
	/* The name is said when the file's name does not say it already. */
	if (a && nl && strcmp(lora_name(a), base) && !(bl == nl + 5 && !strncmp(base, lora_name(a), nl) &&
	    !strcmp(base + nl, ".gguf")))
		snprintf(buf, n, "%s (%s)", base, lora_name(a));
	else
		snprintf(buf, n, "%s", base);
	return buf;
}

char *
chatcmd_describe(struct chat *c, const struct sampler_params *sp, const float *scales, char *buf, size_t n)
{
	size_t l;
	if (sp->seed == SAMPLER_SEED_RANDOM)
		snprintf(buf, n, "temp %.2f, top_p %.2f, seed random", sp->temp, sp->top_p);
	else
		snprintf(buf, n, "temp %.2f, top_p %.2f, seed %llu", sp->temp, sp->top_p, (unsigned long long)sp->seed);
	for (int i = 0; scales && i < chat_n_adapters(c); i++) {
		const struct lora_adapter *a = chat_adapter(c, i);
		const char *nm = lora_name(a)[0] ? lora_name(a) : lora_path(a);
		l = strlen(buf);
		if (l + 1 < n)
			snprintf(buf + l, n - l, ", %s %s", nm, scales[i] == 0.0f ? "off" : "x");
		l = strlen(buf);
		if (scales[i] != 0.0f && l + 1 < n)
			snprintf(buf + l, n - l, "%.2f", scales[i]);
	}
	return buf;
}

const char chatcmd_ab_unknown[] = "A/B compares the last reply with one made under one changed setting, "
    "and what the last reply was made under is not known (it was not saved, or a setting changed while it was "
    "written): F5 or /regen makes one, then A/B";

int
chatcmd_ab_base(struct chatlog *l, struct chat *c, struct sampler_params *sp, float *scales, char *err,
		size_t errlen)
{
	int i = chat_n_messages(c) - 1, k = i >= 0 ? chat_alt_index(c, i) : 0, rc;
	char why[384];

	if (i >= 0 && chat_alt_settings(c, i, k, sp, scales) == 0) {
		/* B is given A's sampling settings and adapters; the rest it
		 * gets from the session, which may have moved on since. */
		if (chat_alt_changed(c, i, k, why, sizeof(why)) == 0)
			return 0;
		snprintf(err, errlen, "/ab: %s changed since the last reply was made: F5 or /regen makes one under it, "
		    "then /ab", why);
		return -1;
	}
	if (i < 0 || strcmp(chat_message_role(c, i), "assistant")) {
		chat_get_params(c, sp);
		for (int a = 0; a < chat_n_adapters(c); a++)
			scales[a] = chat_adapter_scale(c, a);
		return 0;
	}
	/* Not made in this session as it stands: its record may prove what
	 * made it (a reply resumed from the history). */
	if (!l || !l->s || !chat_alt_tag(c, i, k)) {
		snprintf(err, errlen, "%s", chatcmd_ab_unknown);
		return -1;
	}
	rc = chatlog_alt_made(l, c, i, k, sp, scales, why, sizeof(why));
	if (rc > 0)
		snprintf(err, errlen, "/ab: the last reply %s: F5 or /regen makes one here, then /ab", why);
	else if (rc < 0)
		snprintf(err, errlen, "/ab: %s", why);
	return rc ? -1 : 0;
}

static int
read_float(const char *s, float *v)
{
	char *end;
	errno = 0;
	*v = s ? strtof(s, &end) : 0;
	return s && end != s && !*end && !errno && isfinite(*v) ? 0 : -1;
}

/* ERR: /ab WORD's ARG (NULL: none given) is not WANT, then USAGE. */
static void
bad_value(const char *word, const char *arg, const char *want, const char *usage, char *err, size_t errlen)
{
	if (arg)
		snprintf(err, errlen, "/ab %s: '%s' is not %s (%s)", word, arg, want, usage);
	else
		snprintf(err, errlen, "/ab %s needs a value, %s (%s)", word, want, usage);
}

int
chatcmd_ab_parse(struct chatlog *l, struct chat *c, const char *spec, struct chatcmd_variant *v, char *err,
		 size_t errlen)
{
	static const char usage[] = "usage: /ab [next | temp T | seed S | top_p P | adapter [on|off]]";
	char buf[128], *save = NULL, *word, *arg;
	int n = chat_n_adapters(c), any_on = 0;

	memset(v, 0, sizeof(*v));
	if (chatcmd_ab_base(l, c, &v->a_sp, v->a_scales, err, errlen) < 0)
		return -1;
	v->sp = v->a_sp;
	memcpy(v->scales, v->a_scales, sizeof(v->scales));
	for (int i = 0; i < n; i++)
		any_on |= v->scales[i] != 0.0f;
	snprintf(buf, sizeof(buf), "%s", spec ? spec : "");
	word = strtok_r(buf, " \t", &save);
	arg = word ? strtok_r(NULL, " \t", &save) : NULL;
	if (word && strtok_r(NULL, " \t", &save)) {
		snprintf(err, errlen, "%s", usage);
		return -1;
	}
	if (!word)
		word = n ? "adapter" : "next";
	if (!strcmp(word, "next") && !arg) {
		if (v->sp.seed != SAMPLER_SEED_RANDOM)
			v->sp.seed = v->sp.seed + 1 == SAMPLER_SEED_RANDOM ? 0 : v->sp.seed + 1;
		v->sp.temp += 0.3f;
		snprintf(v->setting, sizeof(v->setting), "seed + 1, temp + 0.3");
	} else if (!strcmp(word, "adapter") || !strcmp(word, "lora")) {
		int on;
		if (n == 0) {
			snprintf(err, errlen, "/ab adapter: the session has no adapter (start with --lora FILE)");
			return -1;
		}
		if (arg && strcmp(arg, "on") && strcmp(arg, "off")) {
			bad_value(word, arg, "on or off", usage, err, errlen);
			return -1;
		}
		on = arg ? !strcmp(arg, "on") : !any_on;
		for (int i = 0; i < n; i++) {
			float want = chat_adapter_scale(c, i);
			v->scales[i] = on ? (v->scales[i] != 0.0f ? v->scales[i] : want != 0.0f ? want : 1.0f) : 0.0f;
		}
		snprintf(v->setting, sizeof(v->setting), "adapter %s", on ? "on" : "off");
	} else if (!strcmp(word, "temp") || !strcmp(word, "top_p")) {
		float x;
		if (read_float(arg, &x) < 0) {
			bad_value(word, arg, "a number", usage, err, errlen);
			return -1;
		}
		if (word[1] == 'e')
			v->sp.temp = x;
		else
			v->sp.top_p = x;
		snprintf(v->setting, sizeof(v->setting), "%s %g", word, x);
	} else if (!strcmp(word, "seed")) {
		char *end;
		unsigned long long x;
		errno = 0;
		x = arg ? strtoull(arg, &end, 10) : 0;
		if (!arg || end == arg || *end || errno || arg[0] == '-' || x >= SAMPLER_SEED_RANDOM) {
			bad_value(word, arg, "a seed (a whole number from 0 to 18446744073709551614)", usage, err, errlen);
			return -1;
		}
		v->sp.seed = x;
		snprintf(v->setting, sizeof(v->setting), "seed %llu", x);
	} else {
		snprintf(err, errlen, "%s", usage);
		return -1;
	}
	return sampler_params_check(&v->sp, err, errlen);
}

int
chatcmd_ab_start(struct chatcmd_env *e, const char *spec)
{
	struct chatcmd_variant v;
	char err[512], la[160], lb[160];
	int n = chat_n_adapters(e->c);

	if (!e->ops->ab) {
		say(e, 1, "/ab is not available here");
		return -1;
	}
	if (chatcmd_ab_parse(e->log, e->c, spec, &v, err, sizeof(err)) < 0) {
		say(e, 1, "%s", err);
		return -1;
	}
	chatcmd_describe(e->c, &v.a_sp, n ? v.a_scales : NULL, la, sizeof(la));
	chatcmd_describe(e->c, &v.sp, n ? v.scales : NULL, lb, sizeof(lb));
	if (chatlog_ab_begin(e->log, e->c, v.setting, la, lb, err, sizeof(err)) < 0) {
		say(e, 1, "/ab: %s", err);
		return -1;
	}
	e->ops->ab(e->fe, &v);
	return 0;
}

int
chatcmd_pick(struct chatcmd_env *e, const char *word)
{
	enum store_pick p;
	char err[512];
	int rc;

	if (store_pick_parse(word, &p) < 0) {
		say(e, 1, "usage: /pick a|b|tie");
		return -1;
	}
	rc = chatlog_ab_pick(e->log, e->c, p, err, sizeof(err));
	if (rc == -1) {
		say(e, 1, "/pick: %s", err);
		return -1;
	}
	if (rc == -2) {
		say(e, 1, "picked %s, but not saved: %s", store_pick_name(p), err);
		return -1;
	}
	if (p == STORE_PICK_TIE)
		say(e, 0, "a tie: A stays the chosen reply%s", e->log->s ? "; the tie is saved (no pair to train on)" :
		    " (the history is off)");
	else
		say(e, 0, "picked %s: it is the chosen reply%s", p == STORE_PICK_A ? "A" : "B",
		    e->log->s ? "; the preference is saved" : " (the history is off)");
	return 0;
}
