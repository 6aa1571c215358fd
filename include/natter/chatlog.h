/* chatlog.h -- recording a chat session in the store, for both front ends. */
#ifndef NATTER_CHATLOG_H
#define NATTER_CHATLOG_H

#include <stddef.h>
#include <stdint.h>

#include "natter/chat.h"
#include "natter/sampler.h"
#include "natter/store.h"

struct store;

/* An A/B comparison of the last reply (chatlog_ab_*). */
enum chatlog_ab_state {
	CHATLOG_AB_NONE,
	CHATLOG_AB_RUNNING,        /* B is being generated */
	CHATLOG_AB_READY,          /* both are there: chatlog_ab_pick */
};
struct chatlog_ab {
	enum chatlog_ab_state state;
	int idx;                   /* the session's assistant message compared */
	int alt_a, alt_b;          /* its two alternatives */
	char setting[96];          /* what B changed ("adapter off", "temp 1.1") */
	char label_a[160], label_b[160];   /* each one's settings, for people */
};

/*
 * What a session records.  The session's messages and alternatives carry
 * the store's ids as their tags (chat_message_tag, chat_alt_tag), so
 * edits and choices land on the right rows.  All functions run on the
 * thread that owns both the session and the store.
 */
struct chatlog {
	struct store *s;           /* NULL: nothing is recorded */
	int64_t model_id;          /* the session's model (chatlog_model): recorded with each reply */
	int64_t conv;              /* 0 until the first message */
	int64_t last_msg;          /* the assistant message being answered or regenerated */
	int64_t last_gen;          /* the last reply's generation (0: it was not stored) */
	int64_t made_gen;          /* the generation the last reply made was stored as (0: none):
	                            * /stats's figures are its, even after /pick chose another */
	const char *template_name;
	struct chatlog_ab ab;      /* the comparison in progress, if any */
	const char *model_path;    /* the model file chatlog_model was given (borrowed: it outlives L) */
	int model_missing;         /* chatlog_model could not record the model: tried again before each reply */
	int64_t moved_from;        /* the conversation deleted elsewhere that recording left (chatlog_moved) */
	int first;                 /* the session's first message in conv: none before it is (a move's) */
	int system_unsaved;        /* chatlog_system failed: written again with the next message or reply */
	int64_t user_msg;          /* the stored user message the reply asked for answers (chatlog_sending; 0: none) */
	int unsaved_reply;         /* 1 + the index of the session's last reply when it could not be saved
	                            * (the database was busy, say), 0: none.  It is saved before the
	                            * next message, which answers it */
	struct chat_stats unsaved_st;   /* that reply's figures */
};

/* Records the model session C's replies come from, for every reply
 * recorded from now on: over a remote server, its endpoint and model id
 * (store_model_remote); in this process, the model file MODEL_PATH
 * (store_model hashes it once; NULL: none recorded; borrowed, it must
 * outlive L).  Sets L->template_name too.  Returns 0, or -1 with
 * store_errmsg(L->s) explaining: L->model_id is then 0, and the model is
 * recorded again when a reply is saved (chatlog_reply), which is not
 * saved if that fails too: no reply is recorded under no model. */
int chatlog_model(struct chatlog *l, struct chat *c, const char *model_path);
/* Records the user's message C just received (committed before returning),
 * unless the session cannot answer it (chat_check: longer than the
 * context, refused by the template): such a message is not a turn of the
 * conversation, nothing is recorded, and chat_generate will refuse it and
 * say why.  Returns 0, or -1 with store_errmsg(L->s) explaining. */
int chatlog_user(struct chatlog *l, struct chat *c);
/* Called before each reply is asked for (chat_generate, chat_regenerate):
 * remembers the stored user message it answers, if the conversation
 * ends with one (sent, edited, resumed or sent again), for
 * chatlog_withdrawn. */
void chatlog_sending(struct chatlog *l, struct chat *c);
/* After the reply failed: when the session withdrew that message (an
 * engine that measures the prompt only as it runs it -- a server --
 * refused it as too long even alone), its record is taken back too
 * (store_msg_withdraw), so that the conversation resumed is the one the
 * session holds; a conversation it began goes with it.  Nothing is done
 * when the message is still in the session; one whose conversation
 * another program deleted is gone already (chatlog_moved says so).
 * Returns 0, or -1 with store_errmsg(L->s) explaining. */
int chatlog_withdrawn(struct chatlog *l, struct chat *c);
/* Records the reply C just produced with everything it was produced
 * under: the model, the template, the messages and the rendered prompt it
 * was fed, its reasoning apart from its answer, the sampling settings it
 * was produced under (chat_reply_params: in force when it started, one
 * changed while it streamed stored as not known (NULL); over a remote
 * server, those sent, the unsent as not known), the seed, the LoRA
 * adapters on (file SHA-256, name, scale; none over a remote server),
 * statistics and how it ended.  A
 * regeneration (an alternative, chat_regenerate) is recorded as another
 * generation of the same message.  A new message is the child of the
 * message it answers, which is saved first if it was not (chatlog_user
 * failed: the database was busy, say). */
int chatlog_reply(struct chatlog *l, struct chat *c, const struct chat_stats *st);
/*
 * A conversation deleted by another process (natter history delete, a
 * sqlite3 DELETE) while a session records into it: chatlog_user and
 * chatlog_reply, finding it gone, record the turn as the first of a new
 * conversation, and every later one there, rather than lose them; the
 * session's earlier messages are not saved again (they were deleted),
 * and lose their ids (chat_message_tag, chat_alt_tag: 0, never saved).
 * chatlog_moved then returns 1 once with MSG (room for N) saying so for
 * the user, naming both conversations; else 0.
 */
int chatlog_moved(struct chatlog *l, char *msg, size_t n);
/* After another write into L's conversation failed (a rating, the system
 * prompt): whether the conversation was deleted elsewhere.  If so the
 * session leaves it as chatlog_user would (chatlog_moved then says so)
 * and 1 is returned; else 0, the store's error left as it was. */
int chatlog_left(struct chatlog *l, struct chat *c);
/* Everything C's last reply was produced under, for any front end that
 * records generations (chatlog_reply, natter serve): *G zeroed, then the
 * messages it was fed (into *FED, which the caller frees) and the rendered
 * prompt, the template, the sampling settings (chat_reply_params), the
 * seed, the adapters on (those with a nonzero scale, into ADAPTERS: room
 * for CHAT_MAX_ADAPTERS), the engine's KV type and activations, the
 * statistics ST and how it ended.  Strings are borrowed from C.  The
 * caller adds the reply, its reasoning and the model.  Returns 0, or -1
 * when out of memory. */
int chatlog_gen(struct chat *c, const struct chat_stats *st, struct store_gen *g, struct store_adapter *adapters,
		struct store_turn **fed);
/* The system prompt changed: the conversation's next replies get it (each
 * reply records the one it was given), and a resume loads it.  Returns 0,
 * or -1 with store_errmsg(L->s): it is then written again before the
 * next message or reply is saved. */
int chatlog_system(struct chatlog *l, struct chat *c);
/* The next message starts a new conversation. */
void chatlog_new(struct chatlog *l);

/*
 * Edits user message I of the session (chat_edit) and records the new
 * version as a branch: the stored conversation continues from it, the old
 * version and what followed stay in the history.  Makes message I of the
 * session choose alternative K (chat_alt_select) and records the choice
 * (store_alt_choose).  Both return 0; -1 with ERR when the session refused
 * (a bad index, not a user message, an edit longer than the context
 * holds: chat_check_edit; nothing changed); -2 with ERR when the
 * session changed but the store could not record it (the edited message
 * is then tried again with its reply, chatlog_reply).  When another
 * program has deleted the conversation meanwhile, the session leaves it
 * (as chatlog_left): the edit returns 0 (the new version is saved with
 * its reply, in a new conversation, and chatlog_moved says so then); the
 * choice returns -2 with ERR saying why (nothing is left to choose in).
 * An edit of a message never saved (from before such a move, say)
 * returns 0: it is saved with its reply, a branch at the root when the
 * message before it is not in the conversation either.
 */
int chatlog_edit(struct chatlog *l, struct chat *c, int i, const char *text, size_t len, char *err, size_t errlen);
int chatlog_alt_select(struct chatlog *l, struct chat *c, int i, int k, char *err, size_t errlen);
/* What alternative K of message I of C -- a reply recorded in the store,
 * one resumed from it say -- was made under, when its record
 * (store_gen_made) proves that a regeneration now differs from it only in
 * the sampling settings and adapter scales it is given: the same model,
 * template, system prompt and messages before it, stop strings,
 * max_tokens, context size and KV cache; adapters the session has
 * loaded; every setting recorded; a reply not stopped nor cut by an
 * error; and a template that does not read enable_thinking (not
 * recorded).  Returns 0 with SP (the
 * seed it used) and SCALES (room for chat_n_adapters: the scale each of
 * the session's adapters had, 0 for off); 1 with ERR saying what differs
 * or is not recorded, as a phrase about the reply ("was made with another
 * model (x.gguf)"); -1 with ERR when the store failed. */
int chatlog_alt_made(struct chatlog *l, struct chat *c, int i, int k, struct sampler_params *sp, float *scales,
		     char *err, size_t errlen);
/*
 * A/B preference capture.  chatlog_ab_begin notes the last reply of C as A
 * before the front end generates B (chat_regenerate_with, then
 * chatlog_reply as for any reply, which notes B); SETTING says what B
 * changes, LABEL_A and LABEL_B each one's settings (copied).  Returns 0,
 * or -1 with ERR when there is no reply to compare.  chatlog_ab_cancel
 * forgets a comparison whose B could not be made.  chatlog_ab_pick, once
 * both are there, makes the winner the chosen reply (A on a tie) and
 * records the preference (store_pref_add: a DPO pair unless a tie).
 * Returns 0; -1 with ERR when there is nothing to pick from (nothing
 * changed); -2 with ERR when the session changed but the store could not
 * record it.  A new message, a new conversation, an edit or a resume
 * abandons a comparison.
 */
int chatlog_ab_begin(struct chatlog *l, struct chat *c, const char *setting, const char *label_a,
		     const char *label_b, char *err, size_t errlen);
void chatlog_ab_cancel(struct chatlog *l);
int chatlog_ab_pick(struct chatlog *l, struct chat *c, enum store_pick pick, char *err, size_t errlen);

/* Loads stored conversation CONV (its active branch, every alternative of
 * each reply with its reasoning, the system prompt its next reply gets) into C, replacing
 * what C held (the KV cache stays, so a reply reuses what matches), and
 * continues recording into it.  Returns 0, or -1 with ERR: C and L are
 * then as they were (a conversation deleted meanwhile, a busy database),
 * except when memory ran out while filling C (C is then empty). */
int chatlog_resume(struct chatlog *l, struct chat *c, int64_t conv, char *err, size_t errlen);

#endif
