/* think.h -- splits a streamed reply into its reasoning (<think>...</think>) and its answer. */
#ifndef NATTER_THINK_H
#define NATTER_THINK_H

#include <stddef.h>

/*
 * Reasoning models (Qwen3, DeepSeek-R1 and its distills, QwQ) write their
 * reasoning between an open and a close tag before the answer.  Some
 * templates put the open tag into the generation prompt itself, so the
 * reply starts inside the reasoning and only the close tag appears.
 *
 * The splitter sees the reply piece by piece, as it streams, and hands on
 * each byte once, labelled reasoning or answer.  A tag cut across pieces is
 * recognised all the same: bytes that may be the start of a tag are held
 * back until the next piece decides.  The open tag counts only before any
 * answer text (leading whitespace aside), as a model that writes "<think>"
 * in the middle of its answer is quoting it; the whitespace between the
 * close tag and the answer is dropped.  Tags are never emitted.
 */
enum think_kind { THINK_ANSWER = 0, THINK_REASONING = 1 };

typedef void (*think_emit_fn)(void *ctx, enum think_kind kind, const char *text, size_t len);

struct think_split {
	const char *open, *close;    /* the tags (borrowed; static strings in practice) */
	int state;                   /* see think.c */
	char hold[64];               /* bytes that may begin a tag */
	size_t n_hold;
	int entered;                 /* the reply has been inside a reasoning block */
};

/* Starts a reply.  INSIDE: the prompt already opened the reasoning.  OPEN
 * and CLOSE NULL mean "<think>" and "</think>"; each must be shorter than
 * the hold buffer.  Any thread; the struct is the caller's. */
void think_split_init(struct think_split *t, const char *open, const char *close, int inside);
/* Feeds LEN bytes of the reply; FN gets zero or more labelled runs. */
void think_split_push(struct think_split *t, const char *s, size_t len, think_emit_fn fn, void *ctx);
/* The reply is over: hands on what was held back (an unfinished tag is text). */
void think_split_flush(struct think_split *t, think_emit_fn fn, void *ctx);
/* Nonzero while the reply is inside its reasoning. */
int think_split_inside(const struct think_split *t);
/* Nonzero once the reply has entered a reasoning block (the prompt opened
 * it, or an open tag came), even an empty one: it has a reasoning part. */
int think_split_entered(const struct think_split *t);

/*
 * Counting a reply's tokens by kind.  Each token is pushed with its text
 * (possibly empty: a piece of a character the next token completes).  A
 * token counts as reasoning when any of it lies in the reasoning: tokens
 * of the open and close tags count there too.  Tokens that may still turn
 * out to start an open tag wait, and count as what they turn out to be;
 * after think_count_flush, n_reasoning + n_answer is the number of tokens
 * pushed.  Any thread; the struct is the caller's.
 */
struct think_count {
	struct think_split s;
	int n_reasoning, n_answer;
	int n_pending;               /* pushed, not decided yet */
};
void think_count_init(struct think_count *tc, const char *open, const char *close, int inside);
void think_count_token(struct think_count *tc, const char *text, size_t len);
void think_count_flush(struct think_count *tc);

/* Checks a pair of tags as chat_opts gives them ("OPEN CLOSE", separated
 * by blanks): each nonempty, without blanks, short enough for the
 * splitter.  Copies them into OPEN and CLOSE (each of N bytes).  Returns
 * 0, or -1 with ERR saying what is wrong. */
int think_tags_parse(const char *spec, char *open, char *close, size_t n, char *err, size_t errlen);

/* Whether rendered prompt text ends inside an open reasoning block (the
 * template opened it): it ends with OPEN, whitespace aside.  NULL tags:
 * the defaults. */
int think_prompt_opens(const char *prompt, size_t len, const char *open, const char *close);

#endif
