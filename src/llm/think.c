/* think.c -- the streaming split of a reply into reasoning and answer, tags cut anywhere. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "natter/think.h"

enum {
	S_START,     /* nothing but whitespace yet: an open tag may come */
	S_REASON,    /* inside the reasoning: looking for the close tag */
	S_AFTER,     /* just closed: whitespace before the answer is dropped */
	S_ANSWER,    /* the answer: everything passes */
};

static int
is_space(char c)
{
	return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

void
think_split_init(struct think_split *t, const char *open, const char *close, int inside)
{
	memset(t, 0, sizeof(*t));
	t->open = open ? open : "<think>";
	t->close = close ? close : "</think>";
	if (strlen(t->open) >= sizeof(t->hold) - 32 || strlen(t->close) >= sizeof(t->hold))
		t->open = "<think>", t->close = "</think>";
	t->state = inside ? S_REASON : S_START;
	t->entered = inside != 0;
}

int
think_split_inside(const struct think_split *t)
{
	return t->state == S_REASON;
}

int
think_split_entered(const struct think_split *t)
{
	return t->entered;
}

static void
emit(think_emit_fn fn, void *ctx, enum think_kind k, const char *s, size_t n)
{
	if (n && fn)
		fn(ctx, k, s, n);
}

/* In S_START the hold is whitespace then a prefix of the open tag: 1 if
 * it still may become the tag, 2 if it is the whole tag, 0 if not. */
static int
start_match(const struct think_split *t)
{
	size_t i = 0, ol = strlen(t->open), m;

	while (i < t->n_hold && is_space(t->hold[i]))
		i++;
	m = t->n_hold - i;
	if (m > ol || memcmp(t->hold + i, t->open, m) != 0)
		return 0;
	return m == ol ? 2 : 1;
}

void
think_split_push(struct think_split *t, const char *s, size_t len, think_emit_fn fn, void *ctx)
{
	size_t cl = strlen(t->close);

	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		switch (t->state) {
		case S_START:
			if (t->n_hold == sizeof(t->hold)) {
				/* A long run of whitespace: out as answer text, the
				 * start of the open tag after it kept. */
				size_t w = 0;
				while (w < t->n_hold && is_space(t->hold[w]))
					w++;
				emit(fn, ctx, THINK_ANSWER, t->hold, w);
				memmove(t->hold, t->hold + w, t->n_hold - w);
				t->n_hold -= w;
			}
			t->hold[t->n_hold++] = ch;
			switch (start_match(t)) {
			case 2:
				t->n_hold = 0;
				t->state = S_REASON;
				t->entered = 1;
				break;
			case 0:
				t->state = S_ANSWER;
				emit(fn, ctx, THINK_ANSWER, t->hold, t->n_hold);
				t->n_hold = 0;
				break;
			}
			break;
		case S_REASON: {
			/* Hold the longest suffix that is a prefix of the close tag. */
			t->hold[t->n_hold++] = ch;
			if (t->n_hold == cl && memcmp(t->hold, t->close, cl) == 0) {
				t->n_hold = 0;
				t->state = S_AFTER;
				break;
			}
			size_t k = t->n_hold;
			while (k > 0 && memcmp(t->hold + t->n_hold - k, t->close, k) != 0)
				k--;
			emit(fn, ctx, THINK_REASONING, t->hold, t->n_hold - k);
			memmove(t->hold, t->hold + t->n_hold - k, k);
			t->n_hold = k;
			break;
		}
		case S_AFTER:
			if (is_space(ch))
				break;
			t->state = S_ANSWER;
			/* fall through */
		case S_ANSWER: {
			/* Pass the rest of this piece in one run. */
			emit(fn, ctx, THINK_ANSWER, s + i, len - i);
			return;
		}
		}
	}
}

void
think_split_flush(struct think_split *t, think_emit_fn fn, void *ctx)
{
	if (t->state == S_REASON)
		emit(fn, ctx, THINK_REASONING, t->hold, t->n_hold);
	else if (t->state == S_START)
		emit(fn, ctx, THINK_ANSWER, t->hold, t->n_hold);
	t->n_hold = 0;
}

int
think_prompt_opens(const char *prompt, size_t len, const char *open, const char *close)
{
	size_t ol, end = len;

	(void)close;   /* a prompt that ends with the open tag has no close after it */
	open = open ? open : "<think>";
	ol = strlen(open);
	while (end > 0 && is_space(prompt[end - 1]))
		end--;
	return end >= ol && memcmp(prompt + end - ol, open, ol) == 0;
}

/* --- counting tokens --- */

void
think_count_init(struct think_count *tc, const char *open, const char *close, int inside)
{
	memset(tc, 0, sizeof(*tc));
	think_split_init(&tc->s, open, close, inside);
}

static void
saw_reasoning(void *ctx, enum think_kind k, const char *s, size_t n)
{
	(void)s;
	(void)n;
	if (k == THINK_REASONING)
		*(int *)ctx = 1;
}

void
think_count_token(struct think_count *tc, const char *text, size_t len)
{
	int before = think_split_inside(&tc->s), entered = tc->s.entered, reasoned = 0;

	think_split_push(&tc->s, text, len, saw_reasoning, &reasoned);
	if (before || reasoned || think_split_inside(&tc->s) || tc->s.state == S_AFTER || tc->s.entered != entered) {
		/* In the reasoning, its open tag completing, its close tag, or
		 * the blanks after it (which belong to the block: the answer
		 * starts after them); tokens held while the open tag was still a
		 * maybe were part of it. */
		tc->n_reasoning += 1 + tc->n_pending;
		tc->n_pending = 0;
	} else if (tc->s.state == S_START) {
		tc->n_pending++;   /* blanks, or the start of what may be an open tag */
	} else {
		tc->n_answer += 1 + tc->n_pending;
		tc->n_pending = 0;
	}
}

void
think_count_flush(struct think_count *tc)
{
	/* An open tag that never completed was text. */
	tc->n_answer += tc->n_pending;
	tc->n_pending = 0;
	think_split_flush(&tc->s, NULL, NULL);
}

int
think_tags_parse(const char *spec, char *open, char *close, size_t n, char *err, size_t errlen)
{
	const char *p = spec ? spec : "";
	const char *w[3];
	size_t wl[3];
	int nw = 0;

	while (*p && nw < 3) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		w[nw] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		wl[nw] = (size_t)(p - w[nw]);
		nw++;
	}
	if (nw != 2) {
		snprintf(err, errlen, "'%s': expected two tags separated by a space, e.g. \"<think> </think>\"", spec ? spec : "");
		return -1;
	}
	/* The splitter holds back a tag's length: the open tag must leave it
	 * room (think_split_init). */
	if (wl[0] >= n || wl[1] >= n || wl[0] > 31 || wl[1] > 31) {
		snprintf(err, errlen, "'%s': a tag may be at most 31 bytes long", spec);
		return -1;
	}
	if (wl[0] == wl[1] && !memcmp(w[0], w[1], wl[0])) {
		snprintf(err, errlen, "'%s': the open and close tags must differ", spec);
		return -1;
	}
	memcpy(open, w[0], wl[0]);
	open[wl[0]] = 0;
	memcpy(close, w[1], wl[1]);
	close[wl[1]] = 0;
	return 0;
}
