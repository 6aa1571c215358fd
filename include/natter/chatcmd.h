/* chatcmd.h -- the slash commands of both chat front ends: one table, its parser, the help made from it. */
#ifndef NATTER_CHATCMD_H
#define NATTER_CHATCMD_H

#include <stddef.h>

struct chat;
struct chatlog;

/*
 * What differs between the front ends (chat --plain, the full screen).  A
 * NULL hook means the front end has no such command: it is refused there
 * with a message, and left out of that front end's help.
 */
struct chatcmd_ops {
	/* An answer for the user: a result, or (IS_ERR) an error.  Required. */
	void (*say)(void *fe, int is_err, const char *msg);
	/* Nonzero while a reply is being generated; the commands that change
	 * the conversation are then refused.  NULL: never busy. */
	int (*busy)(void *fe);
	void (*regen)(void *fe);       /* /regen */
	void (*new_conv)(void *fe);    /* /new, /clear */
	void (*history)(void *fe);     /* /history */
	void (*params)(void *fe);      /* /params */
	void (*stats)(void *fe);       /* /stats */
	void (*copy)(void *fe);        /* /copy */
	void (*help)(void *fe);        /* /help */
};

/* The session a command acts on, and the front end's hooks. */
struct chatcmd_env {
	struct chat *c;
	struct chatlog *log;           /* log->s NULL: the history is off */
	const struct chatcmd_ops *ops;
	void *fe;
};

enum { CHATCMD_IDLE = 1 };   /* refused while a reply is being generated */

/* One command: a row of the table. */
struct chatcmd {
	const char *name;              /* without the slash */
	const char *alias;             /* NULL: none */
	const char *args;              /* "" if it takes none */
	const char *help;              /* one line */
	int flags;
	int (*fn)(struct chatcmd_env *e, const struct chatcmd *cmd, char *args);
	size_t hook;                   /* offsetof(struct chatcmd_ops, ...), or 0 */
};

enum { CHATCMD_DONE = 0, CHATCMD_QUIT = 1 };

/*
 * Runs LINE (which starts with '/'; modified in place).  Every outcome is
 * told through E->ops->say.  Returns CHATCMD_DONE, CHATCMD_QUIT, or -1 when
 * the command is unknown, refused, or failed.  Called on the thread that
 * owns E->c and E->log.
 */
int chatcmd_run(struct chatcmd_env *e, char *line);

/* The table: N commands in help order (static storage). */
const struct chatcmd *chatcmd_table(int *n);
/* Whether front end OPS has command CMD. */
int chatcmd_available(const struct chatcmd *cmd, const struct chatcmd_ops *ops);
/* "/rate up|down|1..5 [COMMENT]" into BUF; returns BUF. */
char *chatcmd_usage(const struct chatcmd *cmd, char *buf, size_t n);
/* Calls FN with the usage and help line of each command OPS has. */
void chatcmd_help(const struct chatcmd_ops *ops, void (*fn)(void *ctx, const char *usage, const char *help),
		  void *ctx);

/* Shared by keys and commands: rates the last reply (WORD up, down or
 * 1..5; COMMENT may be NULL).  Returns 0 or -1, told through say. */
int chatcmd_rate(struct chatcmd_env *e, const char *word, const char *comment);
/* Sets the system prompt (NULL or "" removes it) and records it.  Returns 0 or -1. */
int chatcmd_system(struct chatcmd_env *e, const char *text);

#endif
