/* chat.c -- chat sessions: the conversation (messages, alternatives, edits, the window fed, live parameters, stop strings, statistics), over an engine that produces the replies. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "natter/chat-engine.h"
#include "natter/chat.h"
#include "natter/lora.h"
#include "natter/text.h"
#include "natter/think.h"
#include "llm/fnv.h"
#include "llm/strbuf.h"

/*
 * This file knows nothing of models, templates or servers: what turns the
 * messages fed into a reply is the engine (chat-engine.h; chat-local.c for
 * the in-process one).  The split is along one line: everything about the
 * conversation is here, every question about a prompt (does it fit? what
 * was fed exactly?) goes to the engine.
 */

/* One version of a message: a user message has one, an assistant message
 * one per generation. */
struct alt {
	char *content;               /* an assistant message's: the answer */
	char *reasoning;             /* NULL: the reply had none */
	int n_reasoning;             /* its tokens; 0: not known */
	int64_t tag;
	/* What it was generated under (made set), for A/B comparisons: the
	 * settings a second reply is given, and what it would otherwise get
	 * from the session as it is then (chat_alt_changed). */
	int made;
	struct sampler_params sp;
	float scales[CHAT_MAX_ADAPTERS];
	int max_tokens;
	int think;                   /* enum chat_think, as the prompt was rendered */
	uint64_t system_hash;        /* fed_hash of the system prompt ("" if none) */
	uint64_t msgs_hash;          /* fed_hash of the messages fed before it */
};

struct msg {
	char *role;
	struct alt *alts;            /* (n_alts) in the order they were made */
	int n_alts, cur;             /* cur: the one the conversation reads */
	int64_t tag;
};

/* A message as it was fed (copied: the conversation may change later). */
struct fed {
	char *role;
	char *content;
};

struct chat {
	const struct chat_engine_ops *ops;
	void *e;                     /* the engine (owned) */
	char *system;
	struct msg *msgs;
	int n, cap;
	int first;                   /* messages before it were dropped to fit the context */
	struct fed *fed;             /* (n_fed) the messages the last prompt fed, system prompt first */
	int n_fed, prompt_dropped;
	char *stops[9];
	char think_open[32], think_close[32];   /* the reasoning's tags */
	chat_split_fn split;
	void *split_ctx;
	chat_notice_fn notice;
	void *notice_ctx;
	chat_progress_fn progress;
	void *progress_ctx;

	struct sampler_params reply_sp;   /* what the last reply was produced under (chat_reply_params) */
	int reply_max_tokens;
	int keep_turns;             /* chat_opts.keep_turns */
	unsigned reply_unknown;      /* SP_ bits of those settings that were not one known value */
	int reply_changed;           /* one of them changed while the reply was written */
	int reply_think;             /* enum chat_think its prompt was rendered with */
	uint64_t reply_seed;         /* the seed it actually used */

	pthread_mutex_t mu;          /* guards sp, max_tokens and ad_scale */
	struct sampler_params sp;
	int max_tokens;
	/* LoRA adapters (the engine's: chat_engine_ops.adapter): the scales
	 * set (guarded by mu), and those the last reply used.  What the
	 * running reply overrides (chat_regenerate_with). */
	float ad_scale[CHAT_MAX_ADAPTERS], ad_used[CHAT_MAX_ADAPTERS];
	int n_ad;
	const struct sampler_params *ov_sp;
	const float *ov_scales;
	atomic_int cancel;
	atomic_int token_delay_ms;
	atomic_int think;            /* enum chat_think, for the next render */
};

/* Reply assembly: stop strings are held back until they cannot match. */
struct reply {
	char *buf;
	size_t len, cap, emitted;
};

/* The reply as shown, split into answer and reasoning (think.h), and its
 * pieces counted by kind. */
struct split_out {
	struct chat *c;
	struct think_split ts;
	struct think_count tc;
	char *answer, *reasoning;
	size_t alen, acap, rlen, rcap;
	int n_gen;                   /* pieces counted so far (chat_run_piece) */
	int stop;                    /* the split callback asked to stop */
	int oom;
};

/* What a session lends its engine while one reply runs (chat-engine.h). */
struct chat_run {
	struct chat *c;
	chat_piece_fn cb;
	void *cbctx;
	struct reply rep;
	struct split_out so;
	int reasoning_tokens;        /* the engine's count (chat_run_set_reasoning_tokens); -1: none */
	double t_first;              /* when the first piece came (ms, monotonic); 0: none yet */
	int oom;
	int rates_set;               /* the engine set the speeds (chat_run_set_rates) */
	double prompt_tps, gen_tps;
	int params_set;              /* the engine said what it was sent with (chat_run_set_params) */
	struct sampler_params sp;
	int max_tokens;
	/* What chat_run_params and chat_run_max_tokens first answered, and the
	 * SP_ bits of what changed since (or, params_set, was not sent). */
	int sp_seen, max_seen;
	struct sampler_params sp0;
	int max0;
	unsigned unknown;
	int dropped_untold;          /* messages dropped on a retry (generate), told with the first piece */
};

void
chat_opts_default(struct chat_opts *o)
{
	memset(o, 0, sizeof(*o));
	sampler_params_default(&o->sp);
	o->max_tokens = 1024;
}

const char *
chat_stop_name(enum chat_stop s)
{
	switch (s) {
	case CHAT_STOP_EOG: return "done";
	case CHAT_STOP_LIMIT: return "length limit";
	case CHAT_STOP_STRING: return "stop string";
	case CHAT_STOP_CANCEL: return "cancelled";
	case CHAT_STOP_CONTEXT: return "context full";
	case CHAT_STOP_ERROR: return "error";
	case CHAT_STOP_EOG_OR_STRING: return "done or stop string (the server did not say which)";
	}
	return "?";
}

double
chat_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* A copy of S[0..N) with invalid UTF-8 repaired, and each NUL byte (a
 * model's byte token <0x00>) made U+FFFD: the text is a C string from
 * here on (the message, the history, the next prompt), and a NUL would
 * end it there. */
static char *
dup_repaired(const char *s, size_t n)
{
	size_t cap = n * 3 + 1, len = 0;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	for (;;) {
		const char *z = memchr(s, 0, n);
		size_t k = z ? (size_t)(z - s) : n;
		len += text_repair_utf8(s, k, out + len, cap - len);
		if (!z)
			break;
		memcpy(out + len, "\xef\xbf\xbd", 3);
		len += 3;
		s += k + 1;
		n -= k + 1;
	}
	out[len] = 0;
	return out;
}

int
chat_new_engine(const struct chat_engine_ops *ops, void *e, const struct chat_opts *o, struct chat **out,
		char *err, size_t errlen)
{
	struct chat *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c) {
		ops->free(e);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&c->mu, NULL);
	c->ops = ops;
	c->e = e;
	c->sp = c->reply_sp = o->sp;
	c->reply_seed = o->sp.seed;
	c->max_tokens = c->reply_max_tokens = o->max_tokens;
	c->keep_turns = o->keep_turns;
	if (sampler_params_check(&c->sp, err, errlen) < 0)
		goto fail;
	/* The adapters are the engine's, opened with it; a session keeps their
	 * scales.  An engine without any (a remote server) refuses them. */
	c->n_ad = ops->n_adapters ? ops->n_adapters(e) : 0;
	if (o->n_lora > 0 && c->n_ad != o->n_lora) {
		snprintf(err, errlen, "LoRA adapters (--lora) apply to a model run here, not to a %s one", ops->kind);
		goto fail;
	}
	for (int i = 0; i < c->n_ad; i++)
		c->ad_scale[i] = c->ad_used[i] = o->lora_scale[i];
	if (think_tags_parse(o->think_tags ? o->think_tags : "<think> </think>", c->think_open, c->think_close,
	    sizeof(c->think_open), err, errlen) < 0) {
		char tmp[256];
		snprintf(tmp, sizeof(tmp), "reasoning tags %s", err);
		snprintf(err, errlen, "%s", tmp);
		goto fail;
	}
	for (int i = 0, k = 0; i < 8 && o->stop[i]; i++)
		if (o->stop[i][0] && !(c->stops[k++] = strdup(o->stop[i]))) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	if (o->system_prompt && o->system_prompt[0] && chat_set_system(c, o->system_prompt) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	*out = c;
	return 0;
fail:
	chat_free(c);
	return -1;
}

static void
fed_clear(struct chat *c)
{
	for (int i = 0; i < c->n_fed; i++) {
		free(c->fed[i].role);
		free(c->fed[i].content);
	}
	free(c->fed);
	c->fed = NULL;
	c->n_fed = 0;
}

void
chat_free(struct chat *c)
{
	if (!c)
		return;
	chat_clear(c);
	free(c->msgs);
	free(c->system);
	fed_clear(c);
	if (c->ops)
		c->ops->free(c->e);
	for (int i = 0; c->stops[i]; i++)
		free(c->stops[i]);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

void
chat_engine_info(const struct chat *c, struct chat_engine_info *i)
{
	memset(i, 0, sizeof(*i));
	c->ops->info(c->e, i);
}

const char *
chat_template_name(const struct chat *c)
{
	struct chat_engine_info i;
	chat_engine_info(c, &i);
	return i.template_name ? i.template_name : "";
}

const char *
chat_template_source(const struct chat *c)
{
	struct chat_engine_info i;
	chat_engine_info(c, &i);
	return i.template_source;
}

const char *
chat_warning(const struct chat *c)
{
	struct chat_engine_info i;
	chat_engine_info(c, &i);
	return i.warning && i.warning[0] ? i.warning : NULL;
}

int
chat_param_sent(const struct chat *c, const char *name)
{
	return c->ops->param_sent ? c->ops->param_sent(c->e, name) : 1;
}

const char *chat_system(const struct chat *c) { return c->system ? c->system : ""; }
int chat_n_messages(const struct chat *c) { return c->n; }
const char *chat_message_role(const struct chat *c, int i) { return i >= 0 && i < c->n ? c->msgs[i].role : NULL; }
int chat_window_start(const struct chat *c) { return c->first; }
int chat_prompt_n_messages(const struct chat *c) { return c->n_fed; }
int chat_prompt_dropped(const struct chat *c) { return c->prompt_dropped; }

/* The text message I reads as. */
static const char *
msg_text(const struct msg *m)
{
	return m->alts[m->cur].content;
}

const char *
chat_message_content(const struct chat *c, int i)
{
	return i >= 0 && i < c->n ? msg_text(&c->msgs[i]) : NULL;
}

const char *const *
chat_stops(const struct chat *c, int *n)
{
	int k = 0;
	while (c->stops[k])
		k++;
	*n = k;
	return (const char *const *)c->stops;
}

const char *
chat_prompt_text(const struct chat *c, size_t *len)
{
	size_t l = 0;
	const char *t = c->ops->prompt_text(c->e, &l);
	if (len)
		*len = t ? l : 0;
	return t ? t : "";
}

const char *
chat_prompt_message(const struct chat *c, int i, const char **role)
{
	if (i < 0 || i >= c->n_fed) {
		if (role)
			*role = NULL;
		return NULL;
	}
	if (role)
		*role = c->fed[i].role;
	return c->fed[i].content;
}
int chat_ctx_used(const struct chat *c) { return c->ops->ctx_used(c->e); }
int chat_ctx_size(const struct chat *c) { return c->ops->ctx_size(c->e); }
const float *chat_prompt_logits(const struct chat *c) { return c->ops->prompt_logits ? c->ops->prompt_logits(c->e) : NULL; }

const int32_t *
chat_prompt_tokens(const struct chat *c, int *n)
{
	*n = 0;
	return c->ops->prompt_tokens ? c->ops->prompt_tokens(c->e, n) : NULL;
}

void
chat_set_notice(struct chat *c, chat_notice_fn fn, void *ctx)
{
	c->notice = fn;
	c->notice_ctx = ctx;
}

int
chat_set_system(struct chat *c, const char *text)
{
	free(c->system);
	c->system = NULL;
	if (text && text[0]) {
		c->system = dup_repaired(text, strlen(text));
		if (!c->system)
			return -1;
	}
	return 0;
}


static void
msg_free(struct msg *m)
{
	free(m->role);
	for (int k = 0; k < m->n_alts; k++) {
		free(m->alts[k].content);
		free(m->alts[k].reasoning);
	}
	free(m->alts);
}

static int
push_msg(struct chat *c, const char *role, const char *text, size_t len)
{
	struct msg *m;
	if (c->n == c->cap) {
		int cap = c->cap ? c->cap * 2 : 16;
		m = realloc(c->msgs, cap * sizeof(*m));
		if (!m)
			return -1;
		c->msgs = m;
		c->cap = cap;
	}
	m = &c->msgs[c->n];
	memset(m, 0, sizeof(*m));
	m->role = strdup(role);
	m->alts = calloc(1, sizeof(*m->alts));
	if (m->alts)
		m->alts[0].content = dup_repaired(text, len);
	if (!m->role || !m->alts || !m->alts[0].content) {
		free(m->role);
		if (m->alts)
			free(m->alts[0].content);
		free(m->alts);
		return -1;
	}
	m->n_alts = 1;
	c->n++;
	return 0;
}

static void
drop_msgs(struct chat *c, int from, int count)
{
	if (count <= 0)
		return;   /* an empty conversation may have no array at all */
	for (int i = from; i < from + count; i++)
		msg_free(&c->msgs[i]);
	memmove(c->msgs + from, c->msgs + from + count, (c->n - from - count) * sizeof(*c->msgs));
	c->n -= count;
	if (c->first > c->n)
		c->first = c->n;
}

int
chat_alt_count(const struct chat *c, int i)
{
	return i >= 0 && i < c->n ? c->msgs[i].n_alts : 0;
}

int
chat_alt_index(const struct chat *c, int i)
{
	return i >= 0 && i < c->n ? c->msgs[i].cur : -1;
}

const char *
chat_alt_content(const struct chat *c, int i, int k)
{
	if (i < 0 || i >= c->n || k < 0 || k >= c->msgs[i].n_alts)
		return NULL;
	return c->msgs[i].alts[k].content;
}

/* Appends an alternative to message I; returns its index or -1. */
static int
alt_push(struct chat *c, int i, const char *text, size_t len)
{
	struct msg *m = &c->msgs[i];
	struct alt *a = realloc(m->alts, (m->n_alts + 1) * sizeof(*a));
	char *t;
	if (!a)
		return -1;
	m->alts = a;
	t = dup_repaired(text, len);
	if (!t)
		return -1;
	memset(&a[m->n_alts], 0, sizeof(a[m->n_alts]));
	a[m->n_alts].content = t;
	return m->n_alts++;
}

int
chat_alt_add(struct chat *c, int i, const char *text, size_t len)
{
	if (i < 0 || i >= c->n || strcmp(c->msgs[i].role, "assistant"))
		return -1;
	return alt_push(c, i, text, len);
}

const char *
chat_alt_reasoning(const struct chat *c, int i, int k)
{
	if (i < 0 || i >= c->n || k < 0 || k >= c->msgs[i].n_alts)
		return NULL;
	return c->msgs[i].alts[k].reasoning;
}

int
chat_alt_reasoning_tokens(const struct chat *c, int i, int k)
{
	if (i < 0 || i >= c->n || k < 0 || k >= c->msgs[i].n_alts)
		return 0;
	return c->msgs[i].alts[k].n_reasoning;
}

const char *
chat_message_reasoning(const struct chat *c, int i)
{
	return i >= 0 && i < c->n ? c->msgs[i].alts[c->msgs[i].cur].reasoning : NULL;
}

static int
alt_set_reasoning(struct alt *a, const char *text, size_t len, int n_tokens)
{
	char *t = NULL;

	if (text && !(t = dup_repaired(text, len)))
		return -1;
	free(a->reasoning);
	a->reasoning = t;
	a->n_reasoning = t && n_tokens > 0 ? n_tokens : 0;
	return 0;
}

int
chat_alt_set_reasoning(struct chat *c, int i, int k, const char *text, size_t len, int n_tokens)
{
	if (i < 0 || i >= c->n || k < 0 || k >= c->msgs[i].n_alts)
		return -1;
	return alt_set_reasoning(&c->msgs[i].alts[k], text, len, n_tokens);
}

int
chat_alt_select(struct chat *c, int i, int k)
{
	if (i < 0 || i >= c->n || k < 0 || k >= c->msgs[i].n_alts)
		return -1;
	c->msgs[i].cur = k;
	return 0;
}

int
chat_edit(struct chat *c, int i, const char *text, size_t len)
{
	struct msg *m;
	char *t;
	if (i < 0 || i >= c->n || strcmp(c->msgs[i].role, "user"))
		return -1;
	t = dup_repaired(text, len);
	if (!t)
		return -1;
	m = &c->msgs[i];
	for (int k = 0; k < m->n_alts; k++) {
		free(m->alts[k].content);
		free(m->alts[k].reasoning);
	}
	m->n_alts = 1;
	m->cur = 0;
	m->alts[0].content = t;
	m->alts[0].reasoning = NULL;
	m->alts[0].n_reasoning = 0;
	m->alts[0].tag = 0;
	m->tag = 0;
	drop_msgs(c, i + 1, c->n - i - 1);
	/* An edit of a message that had been dropped starts the window over. */
	if (c->first > i)
		c->first = 0;
	return 0;
}

int64_t
chat_message_tag(const struct chat *c, int i)
{
	return i >= 0 && i < c->n ? c->msgs[i].tag : 0;
}

void
chat_set_message_tag(struct chat *c, int i, int64_t tag)
{
	if (i >= 0 && i < c->n)
		c->msgs[i].tag = tag;
}

int64_t
chat_alt_tag(const struct chat *c, int i, int k)
{
	if (i < 0 || i >= c->n || k < 0 || k >= c->msgs[i].n_alts)
		return 0;
	return c->msgs[i].alts[k].tag;
}

void
chat_set_alt_tag(struct chat *c, int i, int k, int64_t tag)
{
	if (i >= 0 && i < c->n && k >= 0 && k < c->msgs[i].n_alts)
		c->msgs[i].alts[k].tag = tag;
}

int
chat_add_user(struct chat *c, const char *text, size_t len)
{
	return push_msg(c, "user", text, len);
}

int
chat_add_message(struct chat *c, const char *role, const char *text, size_t len)
{
	if (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system"))
		return -1;
	return push_msg(c, role, text, len);
}

void
chat_pop(struct chat *c)
{
	if (c->n > 0)
		drop_msgs(c, c->n - 1, 1);
}

void
chat_clear(struct chat *c)
{
	drop_msgs(c, 0, c->n);
	c->first = 0;
}

void
chat_set_split(struct chat *c, chat_split_fn fn, void *ctx)
{
	c->split = fn;
	c->split_ctx = ctx;
}

void
chat_set_think(struct chat *c, enum chat_think t)
{
	atomic_store(&c->think, (int)t);
}

enum chat_think
chat_think(struct chat *c)
{
	return (enum chat_think)atomic_load(&c->think);
}

enum chat_think
chat_reply_think(const struct chat *c)
{
	return (enum chat_think)c->reply_think;
}

int
chat_template_thinks(const struct chat *c)
{
	struct chat_engine_info i;
	chat_engine_info(c, &i);
	if (!i.template_source)
		return i.kind && !strcmp(i.kind, "remote") && chat_param_sent(c, "think") ? -1 : 0;
	return strstr(i.template_source, "enable_thinking") != NULL;
}

void
chat_set_progress(struct chat *c, chat_progress_fn fn, void *ctx)
{
	c->progress = fn;
	c->progress_ctx = ctx;
}

void
chat_cancel(struct chat *c)
{
	atomic_store(&c->cancel, 1);
}

void
chat_cancel_reset(struct chat *c)
{
	atomic_store(&c->cancel, 0);
}

void
chat_set_params(struct chat *c, const struct sampler_params *p)
{
	pthread_mutex_lock(&c->mu);
	c->sp = *p;
	pthread_mutex_unlock(&c->mu);
}

void
chat_get_params(struct chat *c, struct sampler_params *p)
{
	pthread_mutex_lock(&c->mu);
	*p = c->sp;
	pthread_mutex_unlock(&c->mu);
}

void
chat_set_token_delay(struct chat *c, int ms)
{
	atomic_store(&c->token_delay_ms, ms < 0 ? 0 : ms);
}

void
chat_set_max_tokens(struct chat *c, int max_tokens)
{
	pthread_mutex_lock(&c->mu);
	c->max_tokens = max_tokens;
	pthread_mutex_unlock(&c->mu);
}

int
chat_max_tokens(struct chat *c)
{
	int v;
	pthread_mutex_lock(&c->mu);
	v = c->max_tokens;
	pthread_mutex_unlock(&c->mu);
	return v;
}

/* --- what the engine is fed --- */

/* The system prompt and messages [FIRST, n) as turns for the engine (the
 * strings borrowed from C; caller frees the array).  *N gets how many. */
static struct chat_turn *
turns_from(struct chat *c, int first, int *n)
{
	struct chat_turn *t = malloc((size_t)(c->n - first + 1) * sizeof(*t));
	int k = 0;

	if (!t)
		return NULL;
	if (c->system) {
		t[k].role = "system";
		t[k++].content = c->system;
	}
	for (int i = first; i < c->n; i++) {
		t[k].role = c->msgs[i].role;
		t[k++].content = msg_text(&c->msgs[i]);
	}
	*n = k;
	return t;
}

char *
chat_render(struct chat *c, char *err, size_t errlen)
{
	int n;
	struct chat_turn *t = turns_from(c, c->first, &n);
	char *out;

	if (!t) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	out = c->ops->render(c->e, t, n, atomic_load(&c->think), err, errlen);
	free(t);
	return out;
}

/* Returns 1 if a stop string completed (the reply is cut where the first
 * of them in the text starts, whichever the list names first). Else sets
 * *SAFE to how much of the reply may be shown now. */
static int
check_stops(char *const *stops, struct reply *r, size_t *safe)
{
	const char *first = NULL;
	size_t hold = 0;
	for (int i = 0; stops[i]; i++) {
		size_t sl = strlen(stops[i]);
		const char *hit = memmem(r->buf + (r->emitted > sl ? r->emitted - sl : 0),
		    r->len - (r->emitted > sl ? r->emitted - sl : 0), stops[i], sl);
		if (hit && (!first || hit < first))
			first = hit;
	}
	if (first) {
		r->len = (size_t)(first - r->buf);
		r->buf[r->len] = 0;
		*safe = r->len;
		return 1;
	}
	for (int i = 0; stops[i]; i++) {
		size_t sl = strlen(stops[i]);
		for (size_t h = sl - 1; h > 0; h--) {
			if (h <= r->len && memcmp(r->buf + r->len - h, stops[i], h) == 0) {
				if (h > hold)
					hold = h;
				break;
			}
		}
	}
	*safe = r->len - hold;
	return 0;
}

/* How many messages from F on go when the window moves past the oldest
 * turn: a user message with its reply (turns stay paired), else the one
 * message; 0 when none may go (the last user message is the oldest left,
 * or chat_opts.keep_turns).  fit_prompt drops by it, and so does generate
 * when an engine that cannot measure the prompt beforehand (a server)
 * finds it too long. */
static int
turn_drop(const struct chat *c, int f)
{
	int last_user = -1;

	for (int i = c->n - 1; i >= f; i--)
		if (!strcmp(c->msgs[i].role, "user")) {
			last_user = i;
			break;
		}
	if (last_user <= f || c->keep_turns)
		return 0;
	if (c->n > f + 1 && !strcmp(c->msgs[f].role, "user") && strcmp(c->msgs[f + 1].role, "user") &&
	    f + 1 < last_user)
		return 2;
	return 1;
}

/* Has the engine prepare the system prompt and messages [F, n) with ROOM
 * for the reply.  Returns a chat_fit, or a negative enum chat_err with
 * ERR. */
static int
prepare_from(struct chat *c, int f, int room, int think, char *err, size_t errlen)
{
	int n, rc;
	struct chat_turn *t = turns_from(c, f, &n);

	if (!t) {
		snprintf(err, errlen, "out of memory");
		return CHAT_ERR_NOMEM;
	}
	rc = c->ops->prepare(c->e, t, n, room, think, err, errlen);
	free(t);
	if (rc < 0)
		return rc == CHAT_ERR_NOMEM ? CHAT_ERR_NOMEM : CHAT_ERR;
	return rc;
}

/*
 * Has the engine prepare the conversation from message *FIRST on, leaving
 * out the oldest turns (never the system prompt nor the last user message)
 * while the prompt and room for the reply do not fit its context.  Once a
 * turn has to go, turns go until the prompt takes at most half the context
 * (of an engine that knows its context): a cache, KV or recurrent, cannot
 * drop its oldest positions, so a prompt without them is evaluated again
 * from the system prompt on (a recurrent state, from the start).  Moving
 * the window only as far as this reply needs would leave less room than
 * one more turn takes, and every later turn would move it again and be
 * evaluated whole; with half the context free the next turns extend the
 * cache until it fills again.  *FIRST gets the first message kept; the
 * engine keeps the prompt for its next run.  Changes nothing in C.
 * Returns 0, or a negative enum chat_err with ERR (CHAT_ERR_CONTEXT: what
 * is left does not fit).
 */
static int
fit_prompt(struct chat *c, int max_tokens, int think, int *first, char *err, size_t errlen)
{
	const int half = chat_ctx_size(c) / 2;
	int f = *first, room = max_tokens;

	for (;;) {
		int k, rc = prepare_from(c, f, room, think, err, errlen);
		if (rc < 0)
			return rc;
		if (rc == CHAT_FIT_OK)
			break;
		if ((k = turn_drop(c, f)) > 0) {
			f += k;
			if (half > 0)
				room = half;   /* the window moves: room for the next turns too */
			continue;
		}
		if (room != max_tokens) {
			/* Only the last message is left: whether it fits with room
			 * for the reply alone. */
			room = max_tokens;
			continue;
		}
		if (rc == CHAT_FIT_TIGHT)
			break;   /* only the last message is left: generate what fits */
		return CHAT_ERR_CONTEXT;   /* CHAT_FIT_NO: the engine said why in ERR */
	}
	*first = f;
	return 0;
}

int
chat_check(struct chat *c, char *err, size_t errlen)
{
	int first = c->first;
	return fit_prompt(c, chat_max_tokens(c), atomic_load(&c->think), &first, err, errlen);
}

int
chat_check_edit(struct chat *c, const char *text, size_t len, char *err, size_t errlen)
{
	/* Older turns go to make room (fit_prompt); what can refuse is the
	 * last message with the system prompt alone. */
	struct chat_turn t[2];
	int n = 0, rc;
	char *u = dup_repaired(text, len);

	if (!u) {
		snprintf(err, errlen, "out of memory");
		return CHAT_ERR_NOMEM;
	}
	if (c->system) {
		t[n].role = "system";
		t[n++].content = c->system;
	}
	t[n].role = "user";
	t[n++].content = u;
	rc = c->ops->prepare(c->e, t, n, chat_max_tokens(c), atomic_load(&c->think), err, errlen);
	free(u);
	return rc < 0 ? (rc == CHAT_ERR_NOMEM ? CHAT_ERR_NOMEM : CHAT_ERR) : rc == CHAT_FIT_NO ? CHAT_ERR_CONTEXT : 0;
}

/* Remembers the messages this prompt feeds: the system prompt and the
 * messages from FIRST on, copied.  Returns 0, or CHAT_ERR_NOMEM with ERR. */
static int
record_prompt(struct chat *c, int first, char *err, size_t errlen)
{
	int n = c->n - first + (c->system ? 1 : 0), k = 0;
	struct fed *f = n > 0 ? calloc(n, sizeof(*f)) : NULL;

	fed_clear(c);
	c->prompt_dropped = first;
	if (n > 0 && !f)
		goto nomem;
	if (c->system) {
		f[k].role = strdup("system");
		f[k++].content = strdup(c->system);
	}
	for (int i = first; i < c->n; i++) {
		f[k].role = strdup(c->msgs[i].role);
		f[k++].content = strdup(msg_text(&c->msgs[i]));
	}
	c->fed = f;
	c->n_fed = k;
	for (int i = 0; i < k; i++)
		if (!f[i].role || !f[i].content)
			goto nomem;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return CHAT_ERR_NOMEM;
}

/* A new message that cannot be answered (TARGET < 0: not a regeneration)
 * does not stay in the conversation. */
static void
withdraw_unanswered(struct chat *c, int target)
{
	if (target < 0 && c->n > 0 && !strcmp(c->msgs[c->n - 1].role, "user"))
		drop_msgs(c, c->n - 1, 1);
}

/* Tells the notice callback that N messages (0: none, nothing said) were
 * dropped to fit the context. */
static void
dropped_say(struct chat *c, int n)
{
	char msg[160];
	int ctx = chat_ctx_size(c);

	if (n <= 0 || !c->notice)
		return;
	if (ctx > 0)
		snprintf(msg, sizeof(msg), "dropped the %d oldest message%s to fit the context of %d tokens", n,
		    n > 1 ? "s" : "", ctx);
	else
		snprintf(msg, sizeof(msg), "dropped the %d oldest message%s to fit the context", n, n > 1 ? "s" : "");
	c->notice(c->notice_ctx, msg);
}

/* --- the reply split into reasoning and answer --- */

static void
split_emit(void *ctx, enum think_kind k, const char *s, size_t n)
{
	struct split_out *so = ctx;
	struct chat_piece p;

	if (k == THINK_REASONING ? strbuf_append(&so->reasoning, &so->rlen, &so->rcap, s, n) < 0 :
	    strbuf_append(&so->answer, &so->alen, &so->acap, s, n) < 0)
		so->oom = 1;
	if (!so->c->split)
		return;
	p.kind = k == THINK_REASONING ? CHAT_PIECE_REASONING : CHAT_PIECE_ANSWER;
	p.text = s;
	p.len = n;
	p.n_gen = so->n_gen;
	p.n_reasoning = so->tc.n_reasoning;
	if (so->c->split(so->c->split_ctx, &p))
		so->stop = 1;
}

/* Hands on S[0..N) of the reply: as it is to the piece callback, split to
 * the session's split callback.  Returns nonzero when either asks to stop. */
static int
reply_show(struct chat_run *r, const char *s, size_t n)
{
	int stop = r->cb && r->cb(r->cbctx, s, n);
	think_split_push(&r->so.ts, s, n, split_emit, &r->so);
	return stop || r->so.stop;
}

/* --- lent to the engine while a reply runs --- */

/* A piece of the reply; COUNTED: one unit of its own (chat_run_piece). */
static int
run_bytes(struct chat_run *r, const char *p, size_t n, int counted)
{
	struct chat *c = r->c;
	size_t safe;
	int stopped;

	if (r->t_first == 0) {
		r->t_first = chat_now_ms();
		dropped_say(c, r->dropped_untold);
		r->dropped_untold = 0;
	}
	/* The count sees the reply as the model wrote it (before any stop
	 * string cuts it), a unit at a time; the tags an engine adds are
	 * text that moves it from one kind to the other. */
	if (counted) {
		think_count_token(&r->so.tc, p, n);
		r->so.n_gen++;
	} else {
		think_split_push(&r->so.tc.s, p, n, NULL, NULL);
	}
	if (strbuf_append(&r->rep.buf, &r->rep.len, &r->rep.cap, p, n) < 0) {
		r->oom = 1;
		atomic_store(&c->cancel, 1);
		return CHAT_RUN_STOP;
	}
	stopped = check_stops(c->stops, &r->rep, &safe);
	if (safe > r->rep.emitted) {
		if (reply_show(r, r->rep.buf + r->rep.emitted, safe - r->rep.emitted))
			atomic_store(&c->cancel, 1);
		r->rep.emitted = safe;
	}
	if (r->so.oom) {
		r->oom = 1;
		atomic_store(&c->cancel, 1);
		return CHAT_RUN_STOP;
	}
	return stopped ? CHAT_RUN_STOP : CHAT_RUN_GO;
}

int
chat_run_text(struct chat_run *r, const char *p, size_t n)
{
	return run_bytes(r, p, n, 0);
}

void
chat_think_tags(const struct chat *c, const char **open, const char **close)
{
	*open = c->think_open;
	*close = c->think_close;
}

void
chat_run_think_tags(const struct chat_run *r, const char **open, const char **close)
{
	chat_think_tags(r->c, open, close);
}

void
chat_run_set_reasoning_tokens(struct chat_run *r, int n)
{
	r->reasoning_tokens = n < 0 ? 0 : n;
}

int
chat_run_piece(struct chat_run *r, const char *p, size_t n)
{
	struct chat *c = r->c;

	if (run_bytes(r, p, n, 1) == CHAT_RUN_STOP)
		return CHAT_RUN_STOP;
	{
		int d = atomic_load(&c->token_delay_ms);
		if (d > 0) {
			struct timespec ts = { d / 1000, (long)(d % 1000) * 1000000L };
			nanosleep(&ts, NULL);
		}
	}
	return CHAT_RUN_GO;
}

int chat_run_cancelled(const struct chat_run *r) { return atomic_load(&r->c->cancel); }
const atomic_int *chat_run_cancel_flag(const struct chat_run *r) { return &r->c->cancel; }
struct chat *chat_run_chat(const struct chat_run *r) { return r->c; }

void
chat_run_notice(struct chat_run *r, const char *msg)
{
	if (r->c->notice)
		r->c->notice(r->c->notice_ctx, msg);
}

void
chat_run_progress(struct chat_run *r, int done, int total)
{
	if (r->c->progress)
		r->c->progress(r->c->progress_ctx, done, total);
}

void
chat_run_set_params(struct chat_run *r, const struct sampler_params *p, int max_tokens, unsigned unsent)
{
	r->params_set = 1;
	r->sp = *p;
	r->max_tokens = max_tokens;
	r->unknown = unsent;
}

void
chat_reply_params(const struct chat *c, struct sampler_params *p, int *max_tokens, unsigned *unknown)
{
	*p = c->reply_sp;
	if (max_tokens)
		*max_tokens = c->reply_max_tokens;
	if (unknown)
		*unknown = c->reply_unknown;
}

void
chat_run_set_rates(struct chat_run *r, double prompt_tps, double gen_tps)
{
	r->rates_set = 1;
	r->prompt_tps = prompt_tps;
	r->gen_tps = gen_tps;
}

/* Puts the scales for the next reply (the override of
 * chat_regenerate_with, else the session's) in force on the engine; when
 * they changed and its cache held anything, the notice callback says that
 * the conversation is read again.  Generating thread. */
static int
adapters_apply(struct chat *c, char *err, size_t errlen)
{
	float sc[CHAT_MAX_ADAPTERS];
	int held = 0, rc;

	if (c->n_ad == 0)
		return 0;
	pthread_mutex_lock(&c->mu);
	memcpy(sc, c->ov_scales ? c->ov_scales : c->ad_scale, (size_t)c->n_ad * sizeof(float));
	pthread_mutex_unlock(&c->mu);
	rc = c->ops->set_adapters(c->e, sc, &held, err, errlen);
	if (rc < 0)
		return -1;
	memcpy(c->ad_used, sc, sizeof(sc));
	if (rc == 1 && held > 0 && c->notice) {
		char msg[200];
		int on = 0;
		for (int i = 0; i < c->n_ad; i++)
			on += sc[i] != 0.0f;
		snprintf(msg, sizeof(msg), "adapters changed (%d of %d on): reading the conversation again from the "
		    "start (its %d cached tokens were computed with the old weights)", on, c->n_ad, held);
		c->notice(c->notice_ctx, msg);
	}
	return 0;
}

/* What a reply to message I (messages [first, I) fed after the system
 * prompt) is fed, hashed: the system prompt into *SYS, the messages into
 * *MSGS, each role and text with its length (so that no two lists hash
 * alike by where one text ends).  A hash, not a copy, is kept with every
 * reply: a collision could only let an A/B comparison make B, and
 * store_pref_add compares the two prompts exactly before storing a pair. */
static void
fed_hash(const struct chat *c, int first, int i, uint64_t *sys, uint64_t *msgs)
{
	uint64_t h = FNV_INIT;

	*sys = fnv(FNV_INIT, c->system ? c->system : "", c->system ? strlen(c->system) : 0);
	for (int j = first; j < i; j++) {
		const char *t[2] = { c->msgs[j].role, msg_text(&c->msgs[j]) };
		for (int f = 0; f < 2; f++) {
			uint64_t len = strlen(t[f]);
			h = fnv(fnv(h, (const char *)&len, sizeof(len)), t[f], len);
		}
	}
	*msgs = h;
}

/* Notes what alternative K of message I was just generated under; not
 * when a setting changed while it was written (no one setting made it:
 * an A/B comparison against it could not say what differs). */
static void
alt_made(struct chat *c, int i, int k)
{
	struct alt *a = &c->msgs[i].alts[k];
	a->made = !c->reply_changed;
	a->sp = c->reply_sp;
	a->sp.seed = c->reply_seed;
	memcpy(a->scales, c->ad_used, sizeof(a->scales));
	a->max_tokens = c->reply_max_tokens;
	a->think = c->reply_think;
	fed_hash(c, c->first, i, &a->system_hash, &a->msgs_hash);
}

void
chat_run_params(struct chat_run *r, struct sampler_params *sp)
{
	if (r->c->ov_sp)
		*sp = *r->c->ov_sp;
	else
		chat_get_params(r->c, sp);
	if (!r->sp_seen) {
		r->sp_seen = 1;
		r->sp0 = *sp;
	} else {
		r->unknown |= sampler_params_diff(&r->sp0, sp);
	}
}

int
chat_run_max_tokens(struct chat_run *r)
{
	int m = chat_max_tokens(r->c);
	if (!r->max_seen) {
		r->max_seen = 1;
		r->max0 = m;
	} else if (m != r->max0) {
		r->unknown |= SP_MAX_TOKENS;
	}
	return m;
}

/* Generates a reply to messages [0, n).  TARGET < 0 appends it as a new
 * message; otherwise it becomes a new alternative of message TARGET (which
 * the caller has hidden by lowering n). */
static int
generate(struct chat *c, int target, chat_piece_fn cb, void *cbctx, struct chat_stats *st, char *err, size_t errlen)
{
	struct chat_run run;
	int n_dropped = 0, rc = CHAT_ERR, fit, first = c->first, first0 = c->first;
	/* Read once: the switch is what the prompt was rendered with. */
	int think = atomic_load(&c->think);
	double t0 = chat_now_ms();

	memset(st, 0, sizeof(*st));
	memset(&run, 0, sizeof(run));
	run.c = c;
	run.cb = cb;
	run.cbctx = cbctx;
	run.so.c = c;
	run.reasoning_tokens = -1;
	/* A stop requested before this point is not cleared: it stops this
	 * reply (the front end pressed it while starting us). */
	if ((fit = fit_prompt(c, chat_max_tokens(c), think, &first, err, errlen)) < 0) {
		rc = fit;
		withdraw_unanswered(c, target);
		goto out;
	}
	/* Adapters changed since the last reply: the engine reads it all again. */
	if (adapters_apply(c, err, errlen) < 0)
		goto out;
	n_dropped = first - c->first;
	c->first = first;
	/* What is fed is recorded before the engine starts: a reply stopped
	 * while the prompt is read was given this prompt too. */
	if ((rc = record_prompt(c, first, err, errlen)) < 0)
		goto out;
	rc = CHAT_ERR;
	dropped_say(c, n_dropped);
	{
		/* A prompt that opens the reasoning starts the reply inside it. */
		int inside = c->ops->prompt_opens && c->ops->prompt_opens(c->e, c->think_open, c->think_close);
		think_split_init(&run.so.ts, c->think_open, c->think_close, inside);
		think_count_init(&run.so.tc, c->think_open, c->think_close, inside);
	}
	while ((fit = c->ops->run(c->e, &run, st, err, errlen)) == CHAT_ERR_CONTEXT) {
		/* An engine that cannot measure the prompt beforehand (a server,
		 * whose context is its own) refused it as too long, nothing
		 * produced: the oldest turn goes, as fit_prompt drops it, and the
		 * prompt goes again, until only the last message is left.  What
		 * is recorded as fed is what the last attempt was given. */
		int k = turn_drop(c, first);
		if (k == 0) {
			if (!c->keep_turns) {
				char said[400];
				snprintf(said, sizeof(said), "%s", err);
				snprintf(err, errlen, "the message alone is too long: %s", said);
			}
			rc = CHAT_ERR_CONTEXT;
			withdraw_unanswered(c, target);   /* as when fit_prompt refuses it */
			goto out;
		}
		first += k;
		if ((rc = prepare_from(c, first, chat_max_tokens(c), think, err, errlen)) < 0 ||
		    (rc = record_prompt(c, first, err, errlen)) < 0)
			goto out;
		rc = CHAT_ERR;
		c->first = first;
		n_dropped += k;
		run.dropped_untold += k;
		memset(st, 0, sizeof(*st));
	}
	if (fit < 0) {
		rc = fit == CHAT_ERR_NOMEM ? CHAT_ERR_NOMEM : CHAT_ERR;
		goto out;
	}
	/* A reply with no piece at all: the retry's notice is still due. */
	dropped_say(c, run.dropped_untold);
	run.dropped_untold = 0;
	st->n_dropped = n_dropped;
	if (run.params_set) {
		c->reply_sp = run.sp;
		c->reply_max_tokens = run.max_tokens;
	} else {
		/* Those the reply started under; a setting changed while it was
		 * written (live changes apply from the next token) is not one
		 * value, and is recorded as not known. */
		struct sampler_params now;
		if (!run.sp_seen)
			chat_run_params(&run, &now);
		if (!run.max_seen)
			chat_run_max_tokens(&run);
		c->reply_sp = run.sp0;
		c->reply_max_tokens = run.max0;
	}
	c->reply_unknown = run.unknown;
	c->reply_changed = !run.params_set && run.unknown;
	c->reply_think = think;
	c->reply_seed = st->seed;
	if (st->stop != CHAT_STOP_STRING && run.rep.len > run.rep.emitted) {
		/* The reply is over: what was held back for a stop string that
		 * never completed is shown. */
		reply_show(&run, run.rep.buf + run.rep.emitted, run.rep.len - run.rep.emitted);
		run.rep.emitted = run.rep.len;
	}
	think_split_flush(&run.so.ts, split_emit, &run.so);
	think_count_flush(&run.so.tc);
	if (run.oom || run.so.oom) {
		snprintf(err, errlen, "out of memory");
		rc = CHAT_ERR_NOMEM;
		goto out;
	}
	/* Counted here, a piece at a time, unless the engine knows better. */
	st->n_reasoning = run.reasoning_tokens >= 0 ? run.reasoning_tokens : run.so.tc.n_reasoning;
	if (run.reasoning_tokens >= 0)
		st->reasoning_counted = 0;
	if (st->n_reasoning > st->n_gen && !st->reasoning_counted)
		st->n_reasoning = st->n_gen;
	{
		/* The message is the answer; the reasoning goes with it, with its
		 * count when that is in tokens. */
		int k, i = target < 0 ? c->n : target;
		if (target < 0) {
			k = push_msg(c, "assistant", run.so.answer ? run.so.answer : "", run.so.alen) < 0 ? -1 : 0;
		} else {
			k = alt_push(c, target, run.so.answer ? run.so.answer : "", run.so.alen);
			if (k >= 0)
				c->msgs[target].cur = k;
		}
		/* (A regeneration's message is hidden from the index checks.) */
		if (k >= 0 && think_split_entered(&run.so.ts) &&
		    alt_set_reasoning(&c->msgs[i].alts[k], run.so.reasoning ? run.so.reasoning : "", run.so.rlen,
		    st->reasoning_counted ? 0 : st->n_reasoning) < 0)
			k = -1;
		if (k < 0) {
			snprintf(err, errlen, "out of memory");
			rc = CHAT_ERR_NOMEM;
			goto out;
		}
		alt_made(c, i, k);
	}
	{
		double t2 = chat_now_ms();
		st->ttft_ms = run.t_first > 0 ? run.t_first - t0 : t2 - t0;
		st->gen_ms = run.t_first > 0 ? t2 - run.t_first : 0;
		if (run.rates_set) {
			st->prompt_tps = run.prompt_tps;
			st->gen_tps = run.gen_tps;
		} else {
			st->prompt_tps = st->prompt_ms > 0 ? st->n_prompt / (st->prompt_ms / 1e3) : 0;
			st->gen_tps = st->gen_ms > 0 && st->n_gen > 1 ? (st->n_gen - 1) / (st->gen_ms / 1e3) : 0;
		}
		st->n_ctx_used = chat_ctx_used(c);
		st->n_ctx = chat_ctx_size(c);
	}
	rc = 0;
out:
	/* A reply that failed moves no window: the next prompt is fitted
	 * from where this one started.  (The prompt recorded, chat_prompt_*,
	 * stays the last attempt's; nothing reads it after a failure.) */
	if (rc < 0)
		c->first = first0;
	atomic_store(&c->cancel, 0);   /* a stop ends with the reply it stopped */
	free(run.rep.buf);
	free(run.so.answer);
	free(run.so.reasoning);
	return rc;
}


int
chat_generate(struct chat *c, chat_piece_fn cb, void *ctx, struct chat_stats *st, char *err, size_t errlen)
{
	return generate(c, -1, cb, ctx, st, err, errlen);
}

/* A fixed seed would give the same reply to the same prompt again: the
 * regeneration moves to the next seed (and keeps it), and says so. */
static void
next_seed(struct chat *c)
{
	struct sampler_params p;
	uint64_t seed;

	chat_get_params(c, &p);
	if (p.seed == SAMPLER_SEED_RANDOM)
		return;
	seed = p.seed + 1 == SAMPLER_SEED_RANDOM ? 0 : p.seed + 1;
	if (c->notice) {
		char msg[200];
		snprintf(msg, sizeof(msg), "seed %llu would repeat the same reply: regenerating with seed %llu%s",
		    (unsigned long long)p.seed, (unsigned long long)seed,
		    p.temp <= 0 ? " (but at temp 0 the likeliest token always wins, so the reply will not change)" : "");
		c->notice(c->notice_ctx, msg);
	}
	p.seed = seed;
	chat_set_params(c, &p);
}

int
chat_reply_last(const struct chat *c)
{
	int i = c->n - 1;

	if (i < 1 || strcmp(c->msgs[i].role, "assistant"))
		return 0;
	/* System messages between are part of the reply's prompt (a
	 * conversation natter serve recorded, resumed). */
	while (--i >= 0 && !strcmp(c->msgs[i].role, "system"))
		;
	return i >= 0 && !strcmp(c->msgs[i].role, "user");
}

int
chat_regenerate(struct chat *c, chat_piece_fn cb, void *ctx, struct chat_stats *st, char *err, size_t errlen)
{
	int i = c->n - 1, rc;

	if (chat_reply_last(c)) {
		next_seed(c);
		/* The reply is hidden while its prompt is rendered, and gets the
		 * new one as another alternative. */
		c->n = i;
		rc = generate(c, i, cb, ctx, st, err, errlen);
		c->n = i + 1;
		return rc;
	}
	if (i < 0 || strcmp(c->msgs[i].role, "user") != 0) {
		memset(st, 0, sizeof(*st));
		snprintf(err, errlen, "there is no reply to regenerate");
		return -1;
	}
	return generate(c, -1, cb, ctx, st, err, errlen);
}

int
chat_regenerate_with(struct chat *c, const struct sampler_params *sp, const float *scales, chat_piece_fn cb,
		     void *ctx, struct chat_stats *st, char *err, size_t errlen)
{
	struct sampler_params p;
	float sc[CHAT_MAX_ADAPTERS];
	int i = c->n - 1, rc;

	if (!chat_reply_last(c)) {
		memset(st, 0, sizeof(*st));
		snprintf(err, errlen, "there is no reply to regenerate");
		return -1;
	}
	if (sp && sampler_params_check(sp, err, errlen) < 0) {
		memset(st, 0, sizeof(*st));
		return -1;
	}
	if (!sp)
		next_seed(c);
	if (sp)
		p = *sp;
	if (scales)
		memcpy(sc, scales, (size_t)c->n_ad * sizeof(float));
	c->ov_sp = sp ? &p : NULL;
	c->ov_scales = scales ? sc : NULL;
	c->n = i;
	rc = generate(c, i, cb, ctx, st, err, errlen);
	c->n = i + 1;
	c->ov_sp = NULL;
	c->ov_scales = NULL;
	return rc;
}

int
chat_set_param_str(struct chat *c, const char *name, const char *value, char *err, size_t errlen)
{
	struct sampler_params p;
	const struct sampler_setting *set = NULL;
	char *end;
	double v;
	int max_tokens = 0;

	if (!name || !value) {
		size_t o = (size_t)snprintf(err, errlen, "usage: /set NAME VALUE (");
		for (int i = 0; i < sampler_n_settings && o < errlen; i++)
			o += (size_t)snprintf(err + o, errlen - o, "%s, ", sampler_settings[i].name);
		if (o < errlen)
			snprintf(err + o, errlen - o, "seed, max_tokens)");
		return -1;
	}
	chat_get_params(c, &p);
	if (!strcmp(name, "seed")) {
		/* Exactly (a double would round seeds past 2^53); "-1" as
		 * llama.cpp and the OpenAI-style requests spell random. */
		unsigned long long x;
		errno = 0;
		x = isdigit((unsigned char)value[0]) ? strtoull(value, &end, 10) : 0;
		if (!strcmp(value, "random") || !strcmp(value, "-1")) {
			p.seed = SAMPLER_SEED_RANDOM;
		} else if (!isdigit((unsigned char)value[0]) || *end || errno || x >= SAMPLER_SEED_RANDOM) {
			snprintf(err, errlen, "seed must be a whole number from 0 to %llu, or \"random\" (-1)",
			    (unsigned long long)SAMPLER_SEED_RANDOM - 1);
			return -1;
		} else {
			p.seed = x;
		}
		chat_set_params(c, &p);
		return 0;
	}
	/* Which setting, before its value is read: a name that is none is
	 * told as such, not as "'x' is not a number". */
	max_tokens = !strcmp(name, "max_tokens");
	if (!max_tokens && !(set = sampler_setting_find(name))) {
		snprintf(err, errlen, "unknown parameter '%s'", name);
		return -1;
	}
	/* Decimal only: strtod also takes "0x1p3", "inf" and "nan", which
	 * nobody means as a temperature. */
	errno = 0;
	v = strtod(value, &end);
	if (end == value || *end || errno || v != v || value[strspn(value, "0123456789+-.eE")]) {
		snprintf(err, errlen, "%s: '%s' is not a number", name, value);
		return -1;
	}
	/* The counts take whole numbers (2.7 was applied as 2), in range
	 * before they are converted. */
	if ((max_tokens || set->integer) && (v != floor(v) || v < 0)) {
		snprintf(err, errlen, "%s: '%s' is not a whole number, 0 or more%s", name, value,
		    max_tokens ? " (0: no limit)" : "");
		return -1;
	}
	if ((max_tokens || set->integer) && v > 1e9) {
		snprintf(err, errlen, "%s: %s is too large", name, value);
		return -1;
	}
	if (max_tokens) {
		chat_set_max_tokens(c, (int)v);
		return 0;
	}
	sampler_setting_put(&p, set, v);
	if (sampler_params_check(&p, err, errlen) < 0)
		return -1;
	chat_set_params(c, &p);
	return 0;
}

/* The value a setting has now, as /set reports it after a change: what
 * was applied, not what was typed ("0.70" is 0.7, "temperature" is temp). */
int
chat_param_show(struct chat *c, const char *name, char *buf, size_t n)
{
	struct sampler_params p;
	const struct sampler_setting *set;

	chat_get_params(c, &p);
	if (!strcmp(name, "seed")) {
		if (p.seed == SAMPLER_SEED_RANDOM)
			snprintf(buf, n, "seed = random");
		else
			snprintf(buf, n, "seed = %llu", (unsigned long long)p.seed);
	} else if (!strcmp(name, "max_tokens")) {
		int m = chat_max_tokens(c);
		snprintf(buf, n, m ? "max_tokens = %d" : "max_tokens = 0 (no limit)", m);
	} else if ((set = sampler_setting_find(name))) {
		/* Counts whole; a float by the fewest digits that read back as
		 * the float held (0.7, not 0.699999988; 0.12345679, not %g's
		 * 0.123457). */
		double v = sampler_setting_get(&p, set);
		int d = 1;
		char t[48];
		if (set->integer) {
			snprintf(buf, n, "%s = %.0f", set->name, v);
		} else {
			for (; d < 9; d++) {
				snprintf(t, sizeof(t), "%.*g", d, v);
				if ((float)strtod(t, NULL) == (float)v)
					break;
			}
			snprintf(buf, n, "%s = %.*g", set->name, d, v);
		}
	} else {
		return -1;
	}
	return 0;
}

/* --- LoRA adapters (the engine's; their scales are the session's) --- */

void
chat_last_params(const struct chat *c, struct sampler_params *p)
{
	*p = c->reply_sp;
	p->seed = c->reply_seed;
}

int chat_n_adapters(const struct chat *c) { return c->n_ad; }

const struct lora_adapter *
chat_adapter(const struct chat *c, int i)
{
	return i >= 0 && i < c->n_ad ? c->ops->adapter(c->e, i) : NULL;
}

float
chat_adapter_scale(struct chat *c, int i)
{
	float v;
	if (i < 0 || i >= c->n_ad)
		return 0.0f;
	pthread_mutex_lock(&c->mu);
	v = c->ad_scale[i];
	pthread_mutex_unlock(&c->mu);
	return v;
}

float
chat_adapter_scale_used(const struct chat *c, int i)
{
	return i >= 0 && i < c->n_ad ? c->ad_used[i] : 0.0f;
}

int
chat_set_adapter_scale(struct chat *c, int i, float scale, char *err, size_t errlen)
{
	if (i < 0 || i >= c->n_ad) {
		snprintf(err, errlen, c->n_ad ? "there is no adapter %d (the session has %d)" :
		    "there is no adapter %d (start with --lora FILE to load one)", i + 1, c->n_ad);
		return -1;
	}
	if (!isfinite(scale) || fabsf(scale) > LORA_SCALE_MAX) {
		snprintf(err, errlen, "an adapter's scale is a number from %.0f to %.0f (0 turns it off)",
		    -(double)LORA_SCALE_MAX, (double)LORA_SCALE_MAX);
		return -1;
	}
	pthread_mutex_lock(&c->mu);
	c->ad_scale[i] = scale;
	pthread_mutex_unlock(&c->mu);
	return 0;
}

int
chat_adapter_find(const struct chat *c, const char *name)
{
	char *end;
	long k;

	if (!name || !*name)
		return -1;
	k = strtol(name, &end, 10);
	if (end != name && !*end)
		return k >= 1 && k <= c->n_ad ? (int)k - 1 : -1;
	for (int i = 0; i < c->n_ad; i++) {
		const struct lora_adapter *a = chat_adapter(c, i);
		const char *path = lora_path(a), *base = strrchr(path, '/');
		size_t bl;
		base = base ? base + 1 : path;
		bl = strlen(base);
		if (!strcmp(lora_name(a), name) || !strcmp(base, name) ||
		    (bl > 5 && !strcmp(base + bl - 5, ".gguf") && strlen(name) == bl - 5 && !strncmp(base, name, bl - 5)))
			return i;
	}
	return -1;
}

int
chat_alt_changed(struct chat *c, int i, int k, char *what, size_t n)
{
	const struct alt *a;
	uint64_t sys, msgs;
	int mt = chat_max_tokens(c);

	if (i < 0 || i >= c->n || k < 0 || k >= c->msgs[i].n_alts || !c->msgs[i].alts[k].made)
		return -1;
	a = &c->msgs[i].alts[k];
	fed_hash(c, c->first, i, &sys, &msgs);
	if (sys != a->system_hash)
		snprintf(what, n, "the system prompt");
	/* A template that does not read the switch renders the same either way. */
	else if (a->think != atomic_load(&c->think) && chat_template_thinks(c) != 0)
		snprintf(what, n, "the think switch (/think, enable_thinking)");
	else if (a->max_tokens != mt)
		snprintf(what, n, "max_tokens (%d then, %d now)", a->max_tokens, mt);
	else if (msgs != a->msgs_hash)
		snprintf(what, n, "the conversation before it (an earlier reply chosen, or older turns dropped to "
		    "fit the context)");
	else
		return 0;
	return 1;
}

int
chat_alt_settings(const struct chat *c, int i, int k, struct sampler_params *sp, float *scales)
{
	const struct alt *a;
	if (i < 0 || i >= c->n || k < 0 || k >= c->msgs[i].n_alts || !c->msgs[i].alts[k].made)
		return -1;
	a = &c->msgs[i].alts[k];
	*sp = a->sp;
	if (scales)
		memcpy(scales, a->scales, (size_t)c->n_ad * sizeof(float));
	return 0;
}
