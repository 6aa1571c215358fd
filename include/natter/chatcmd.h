/* chatcmd.h -- the slash commands of both chat front ends: one table, its parser, the help made from it. */
#ifndef NATTER_CHATCMD_H
#define NATTER_CHATCMD_H

#include <stddef.h>
#include <stdint.h>

#include "natter/chat.h"

struct chat;
struct chatlog;

/* The second setting of an A/B comparison: what reply B is generated under. */
struct chatcmd_variant {
	struct sampler_params sp;          /* B's sampling parameters, the seed included */
	float scales[CHAT_MAX_ADAPTERS];   /* B's adapter scales (chat_n_adapters of them) */
	char setting[96];                  /* what B changes, for people and the store */
	/* Reply A's settings (chatcmd_ab_base), which B's start from. */
	struct sampler_params a_sp;
	float a_scales[CHAT_MAX_ADAPTERS];
};

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
	void (*notices)(void *fe);     /* /notices */
	/* /ab: generate reply B of the comparison chatcmd_ab_start has begun,
	 * with chat_regenerate_with under V, and record it with chatlog_reply
	 * (or chatlog_ab_cancel when it fails). */
	void (*ab)(void *fe, const struct chatcmd_variant *v);
	/* Not a command: the alternative of the session's message I that the
	 * user sees, which is what a rating of it rates (the full screen
	 * shows one flipped to before Enter chooses it).  NULL: the chosen
	 * one (chat_alt_index). */
	int (*shown_alt)(void *fe, int i);
	/* Not a command: a rating was saved, keyed or typed (/rate), WORD
	 * ("up", "down", "1".."5") on generation GEN: the reply a comment
	 * then goes with.  NULL: nothing to keep. */
	void (*rated)(void *fe, int64_t gen, const char *word);
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

/*
 * Ratings, shared by keys and commands.  chatcmd_rate_reply rates reply I
 * of the session as the user sees it: the alternative shown
 * (ops->shown_alt), by the generation it was stored as (its tag), into
 * *GEN when GEN is not NULL.  A reply that was not stored (its save
 * failed: the database stayed busy, the disk was full) is refused and
 * nothing is stored, never rated in the place of another alternative.
 * WORD is up, down or 1..5; COMMENT may be NULL.  chatcmd_rate does the
 * same for the last reply (/rate).  chatcmd_rate_gen rates GEN, a
 * generation chatcmd_rate_reply rated, again (with a comment, say).  All
 * return 0 or -1, told through say.
 */
int chatcmd_rate_reply(struct chatcmd_env *e, int i, const char *word, const char *comment, int64_t *gen);
int chatcmd_rate(struct chatcmd_env *e, const char *word, const char *comment);
int chatcmd_rate_gen(struct chatcmd_env *e, int64_t gen, const char *word, const char *comment);
/* Sets the system prompt (NULL or "" removes it) and records it.  Returns 0 or -1. */
int chatcmd_system(struct chatcmd_env *e, const char *text);

/*
 * A/B comparisons, shared by /ab and the full screen's chooser.
 * chatcmd_ab_parse reads SPEC into V, starting from the settings the last
 * reply was made with (chatcmd_ab_base, kept in V's a_ fields): "" the default (adapters toggled
 * when the session has any, else "next"), "next" (seed + 1 and
 * temperature + 0.3), "temp T", "seed S", "top_p P", "adapter"
 * (toggled), "adapter on", "adapter off".  Returns 0, or -1 with ERR (the
 * usage, or why the last reply's settings are not known).
 * chatcmd_ab_start begins the comparison (chatlog_ab_begin) and asks the
 * front end to generate B (ops->ab).
 * chatcmd_pick records the user's choice: WORD a, b or tie.  Both return
 * 0 or -1, told through say.
 */
int chatcmd_ab_parse(struct chatlog *l, struct chat *c, const char *spec, struct chatcmd_variant *v, char *err,
		     size_t errlen);
/* What reply A -- the last reply as chosen now -- was made under (SCALES:
 * room for chat_n_adapters); without a reply, the session's settings now.
 * A reply made in this session is known as made (chat_alt_settings)
 * while the session would feed and limit B as it (chat_alt_changed; else
 * ERR names what changed); one recorded in L's store (resumed from the
 * history) when its record proves a regeneration now differs from it in
 * the settings given alone (chatlog_alt_made; L may be NULL).  Returns 0, or -1 with ERR saying
 * why not (what differs from this session, what was not recorded, or
 * chatcmd_ab_unknown): a comparison with it could not say which one
 * setting differs.  The session's thread. */
int chatcmd_ab_base(struct chatlog *l, struct chat *c, struct sampler_params *sp, float *scales, char *err,
		    size_t errlen);
extern const char chatcmd_ab_unknown[];
int chatcmd_ab_start(struct chatcmd_env *e, const char *spec);
int chatcmd_pick(struct chatcmd_env *e, const char *word);
/* "temp 0.80, top_p 0.95, seed 42, lora taught x1.00" for SP and adapter
 * SCALES (NULL: none shown) into BUF; returns BUF. */
char *chatcmd_describe(struct chat *c, const struct sampler_params *sp, const float *scales, char *buf, size_t n);
/* "taught.gguf (taught)": adapter I of C for people, into BUF; returns BUF. */
char *chatcmd_adapter_name(struct chat *c, int i, char *buf, size_t n);

#endif
