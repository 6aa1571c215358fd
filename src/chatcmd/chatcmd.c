/* chatcmd.c -- the slash commands both chat front ends share: the table, the dispatch, the help. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "natter/chat.h"
#include "natter/chatcmd.h"
#include "natter/chatlog.h"
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
	char *name = strtok_r(args, " \t", &save), *val = name ? strtok_r(NULL, " \t", &save) : NULL;
	(void)cmd;
	if (chat_set_param_str(e->c, name, val, err, sizeof(err)) < 0) {
		say(e, 1, "/set: %s", err);
		return -1;
	}
	say(e, 0, "%s = %s", name, val);
	return CHATCMD_DONE;
}

static int
cmd_rate(struct chatcmd_env *e, const struct chatcmd *cmd, char *args)
{
	char *save = NULL, *word = strtok_r(args, " \t", &save), *comment = word ? strtok_r(NULL, "", &save) : NULL;
	(void)cmd;
	return chatcmd_rate(e, word, comment) < 0 ? -1 : CHATCMD_DONE;
}

static int
cmd_system(struct chatcmd_env *e, const struct chatcmd *cmd, char *args)
{
	(void)cmd;
	return chatcmd_system(e, args) < 0 ? -1 : CHATCMD_DONE;
}

/* Qwen3's switch for its reasoning, for the templates that have it. */
static int
cmd_think(struct chatcmd_env *e, const struct chatcmd *cmd, char *args)
{
	enum chat_think t = chat_think(e->c);
	int thinks = chat_template_thinks(e->c);

	(void)cmd;
	if (!args[0]) {
		say(e, 0, "enable_thinking: %s%s", t == CHAT_THINK_ON ? "true" : t == CHAT_THINK_OFF ? "false" :
		    "the template's default", thinks ? "" : " (this template has no enable_thinking)");
		return CHATCMD_DONE;
	}
	if (strcmp(args, "on") && strcmp(args, "off")) {
		say(e, 1, "usage: /think on|off");
		return -1;
	}
	if (!thinks) {
		/* The variable would be passed and read by nothing. */
		say(e, 1, "/think: this template (%s) has no enable_thinking; nothing changed", chat_template_name(e->c));
		return -1;
	}
	t = !strcmp(args, "on") ? CHAT_THINK_ON : CHAT_THINK_OFF;
	chat_set_think(e->c, t);
	say(e, 0, "enable_thinking = %s from the next reply", t == CHAT_THINK_ON ? "true" : "false");
	return CHATCMD_DONE;
}

#define HOOK(f) offsetof(struct chatcmd_ops, f)

/* Every slash command, in the order the help lists them. */
static const struct chatcmd table[] = {
	{ "set", NULL, "NAME VALUE", "change a sampling parameter", 0, cmd_set, 0 },
	{ "params", NULL, "", "show the sampling parameters", 0, cmd_hook, HOOK(params) },
	{ "regen", NULL, "", "generate the last reply again", CHATCMD_IDLE, cmd_hook, HOOK(regen) },
	{ "rate", NULL, "up|down|1..5 [COMMENT]", "rate the last reply", 0, cmd_rate, 0 },
	{ "system", NULL, "[TEXT]", "set or remove the system prompt", CHATCMD_IDLE, cmd_system, 0 },
	{ "think", NULL, "on|off", "reasoning on or off (enable_thinking)", 0, cmd_think, 0 },
	{ "stats", NULL, "", "statistics of the last reply", 0, cmd_hook, HOOK(stats) },
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

int
chatcmd_rate(struct chatcmd_env *e, const char *word, const char *comment)
{
	const char *kind;
	int value;

	if (store_rating_parse(word, &kind, &value) < 0) {
		say(e, 1, "usage: /rate up|down|1..5 [COMMENT]");
		return -1;
	}
	if (!e->log->s || !e->log->last_gen) {
		say(e, 1, "nothing to rate: %s", e->log->s ? "no reply yet" : "the history is off");
		return -1;
	}
	if (comment && !comment[0])
		comment = NULL;
	if (store_rating_set(e->log->s, e->log->last_gen, kind, value, comment) < 0) {
		say(e, 1, "%s", store_errmsg(e->log->s));
		return -1;
	}
	say(e, 0, "rated generation %lld %s%s", (long long)e->log->last_gen, word, comment ? " with a comment" : "");
	return 0;
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
		say(e, 1, "%s", store_errmsg(e->log->s));
		return -1;
	}
	say(e, 0, removed ? "system prompt removed" : "system prompt set");
	return 0;
}
