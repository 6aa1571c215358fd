/* chatlog.h -- recording a chat session in the store, for both front ends. */
#ifndef NATTER_CHATLOG_H
#define NATTER_CHATLOG_H

#include <stdint.h>

struct chat;
struct chat_stats;
struct store;

struct chatlog {
	struct store *s;           /* NULL: nothing is recorded */
	int64_t model_id;
	int64_t conv;              /* 0 until the first message */
	int64_t last_msg;          /* the assistant message being answered or regenerated */
	int64_t last_gen;          /* the generation shown last (what /rate rates) */
	const char *template_name;
};

/* Records the user's message C just received (committed before returning).
 * Returns 0, or -1 with store_errmsg(L->s) explaining. */
int chatlog_user(struct chatlog *l, struct chat *c);
/* Records the reply C just produced, with its settings and statistics; a
 * regeneration becomes another alternative of the same message. */
int chatlog_reply(struct chatlog *l, struct chat *c, const struct chat_stats *st, int regen);
/* The system prompt changed. */
int chatlog_system(struct chatlog *l, struct chat *c);
/* The next message starts a new conversation. */
void chatlog_new(struct chatlog *l);

#endif
