/* chat.c -- chat sessions over one model context: render, reuse the cache, stream a reply, keep alternatives. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "natter/chat.h"
#include "natter/gguf.h"
#include "natter/llm.h"
#include "natter/text.h"
#include "natter/think.h"
#include "natter/tmpl.h"
#include "natter/tok.h"
#include "llm/strbuf.h"

/* One version of a message: a user message has one, an assistant message
 * one per generation. */
struct alt {
	char *content;               /* an assistant message's: the answer */
	char *reasoning;             /* NULL: the reply had none */
	int n_reasoning;             /* its tokens; 0: not known */
	int64_t tag;
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
	struct llm_model *m;
	struct llm_ctx *ctx;
	const struct tok_vocab *v;
	struct tmpl *t;
	char tmpl_name[256];
	char *tmpl_source;           /* the template's text as compiled */
	char warning[200];           /* chat_warning; "" when none */
	char *system;
	struct msg *msgs;
	int n, cap;
	int first;                   /* messages before it were dropped to fit the context */
	char *prompt_text;           /* the last prompt as fed, rendered */
	size_t prompt_text_len;
	struct fed *fed;             /* (n_fed) the messages in it, system prompt first */
	int n_fed, prompt_dropped;
	struct tok_ids cache;        /* mirror of the tokens in the KV cache */
	char *cache_text;            /* the text those tokens stand for, when known */
	size_t cache_text_len, cache_text_cap;
	int prompt_end;              /* cache.ids[0..prompt_end) was the last prompt */
	size_t prompt_end_text;      /* and stood for cache_text[0..prompt_end_text) */
	float *prompt_logits;        /* (n_vocab) after the last prompt */
	struct sampler *smp;
	struct tok_stream *ts;
	float *logits;               /* (n_vocab) after the last evaluation */
	char *stops[9];
	char *bos_text, *eos_text;
	char think_open[32], think_close[32];   /* the reasoning's tags */
	chat_split_fn split;
	void *split_ctx;
	chat_notice_fn notice;
	void *notice_ctx;
	chat_progress_fn progress;
	void *progress_ctx;

	pthread_mutex_t mu;          /* guards sp and max_tokens */
	struct sampler_params sp;
	int max_tokens;
	atomic_int cancel;
	atomic_int token_delay_ms;
	atomic_int think;            /* enum chat_think, for the next render */
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
	}
	return "?";
}

static double
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* A copy of S[0..N) with invalid UTF-8 repaired. */
static char *
dup_repaired(const char *s, size_t n)
{
	size_t cap = n * 3 + 1, len;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	len = text_repair_utf8(s, n, out, cap);
	out[len] = 0;
	return out;
}

static char *
token_text(const struct tok_vocab *v, int32_t id)
{
	const char *t = id >= 0 ? tok_text(v, id) : NULL;
	return strdup(t ? t : "");
}

static int
load_template(struct chat *c, const char *spec, char *err, size_t errlen)
{
	const struct gguf_file *f = llm_model_gguf(c->m);
	char *src = NULL, terr[384];
	const char *builtin;
	size_t len;

	if (spec && (builtin = tmpl_builtin(spec))) {
		src = strdup(builtin);
		snprintf(c->tmpl_name, sizeof(c->tmpl_name), "%s (built-in)", spec);
	} else if (spec) {
		FILE *fp = fopen(spec, "rb");
		long sz;
		if (!fp) {
			snprintf(err, errlen, "chat template '%s' is neither a built-in (chatml, llama2, llama3, "
			    "phi3, zephyr, gemma) nor a readable file", spec);
			return -1;
		}
		fseek(fp, 0, SEEK_END);
		sz = ftell(fp);
		fseek(fp, 0, SEEK_SET);
		src = sz >= 0 && sz < (16 << 20) ? malloc(sz + 1) : NULL;
		if (!src || fread(src, 1, sz, fp) != (size_t)sz) {
			fclose(fp);
			free(src);
			snprintf(err, errlen, "%s: cannot read the chat template", spec);
			return -1;
		}
		src[sz] = 0;
		fclose(fp);
		snprintf(c->tmpl_name, sizeof(c->tmpl_name), "%s", spec);
	} else {
		src = gguf_get_str(f, "tokenizer.chat_template");
		if (src) {
			snprintf(c->tmpl_name, sizeof(c->tmpl_name), "model");
		} else {
			const char *g = tmpl_builtin_guess(llm_model_hparams(c->m)->arch_name, NULL);
			src = strdup(tmpl_builtin(g));
			snprintf(c->tmpl_name, sizeof(c->tmpl_name), "%s (built-in; the model has none)", g);
		}
	}
	if (!src) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	len = strlen(src);
	if (tmpl_compile(src, len, &c->t, terr, sizeof(terr)) < 0) {
		if (spec) {
			snprintf(err, errlen, "chat template %s: %s", c->tmpl_name, terr);
			free(src);
			return -1;
		}
		/* The model's own template is broken: fall back, and say so. */
		const char *g = tmpl_builtin_guess(llm_model_hparams(c->m)->arch_name, src);
		snprintf(c->tmpl_name, sizeof(c->tmpl_name), "%s (built-in; the model's template failed: %.120s)", g, terr);
		free(src);
		src = strdup(tmpl_builtin(g));
		if (!src) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		if (tmpl_compile(src, strlen(src), &c->t, terr, sizeof(terr)) < 0) {
			snprintf(err, errlen, "internal error: %s", terr);
			free(src);
			return -1;
		}
	}
	c->tmpl_source = src;   /* recorded with each reply */
	return 0;
}

/* Esc stops prompt processing too: the model asks between layers. */
static int
chat_abort_cb(void *ctx)
{
	struct chat *c = ctx;
	return atomic_load(&c->cancel);
}

int
chat_new(struct llm_model *m, const struct chat_opts *o, struct chat **out, char *err, size_t errlen)
{
	struct chat *c = calloc(1, sizeof(*c));
	int n_vocab = llm_model_hparams(m)->n_vocab;

	*out = NULL;
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&c->mu, NULL);
	c->m = m;
	c->v = llm_model_vocab(m);
	c->sp = o->sp;
	c->max_tokens = o->max_tokens;
	if (sampler_params_check(&c->sp, err, errlen) < 0)
		goto fail;
	if (load_template(c, o->template_spec, err, errlen) < 0)
		goto fail;
	if (think_tags_parse(o->think_tags ? o->think_tags : "<think> </think>", c->think_open, c->think_close,
	    sizeof(c->think_open), err, errlen) < 0) {
		char tmp[256];
		snprintf(tmp, sizeof(tmp), "reasoning tags %s", err);
		snprintf(err, errlen, "%s", tmp);
		goto fail;
	}
	c->ctx = llm_ctx_new(m, o->n_ctx, 0, o->n_threads, err, errlen);
	if (!c->ctx)
		goto fail;
	llm_ctx_set_abort(c->ctx, chat_abort_cb, c);
	if (llm_ctx_n_ctx(c->ctx) > llm_model_hparams(m)->n_ctx_train)
		snprintf(c->warning, sizeof(c->warning), "a context of %d tokens is more than the %d this model was "
		    "trained on; past that, replies may fall apart", llm_ctx_n_ctx(c->ctx), llm_model_hparams(m)->n_ctx_train);
	c->smp = sampler_new(n_vocab, c->sp.seed);
	c->ts = tok_stream_new(c->v, 0);
	c->logits = calloc(n_vocab, sizeof(float));
	c->prompt_logits = calloc(n_vocab, sizeof(float));
	c->bos_text = token_text(c->v, tok_bos(c->v));
	c->eos_text = token_text(c->v, tok_eos(c->v));
	if (!c->smp || !c->ts || !c->logits || !c->prompt_logits || !c->bos_text || !c->eos_text) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (int i = 0, k = 0; i < 8 && o->stop[i]; i++)
		if (o->stop[i][0])
			c->stops[k++] = strdup(o->stop[i]);
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

void
chat_free(struct chat *c)
{
	if (!c)
		return;
	chat_clear(c);
	free(c->msgs);
	free(c->system);
	free(c->tmpl_source);
	free(c->prompt_text);
	for (int i = 0; i < c->n_fed; i++) {
		free(c->fed[i].role);
		free(c->fed[i].content);
	}
	free(c->fed);
	tmpl_free(c->t);
	llm_ctx_free(c->ctx);
	sampler_free(c->smp);
	tok_stream_free(c->ts);
	tok_ids_free(&c->cache);
	free(c->logits);
	free(c->prompt_logits);
	free(c->cache_text);
	free(c->bos_text);
	free(c->eos_text);
	for (int i = 0; c->stops[i]; i++)
		free(c->stops[i]);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

const char *chat_template_name(const struct chat *c) { return c->tmpl_name; }
const char *chat_template_source(const struct chat *c) { return c->tmpl_source; }
const char *chat_warning(const struct chat *c) { return c->warning[0] ? c->warning : NULL; }
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

const char *
chat_prompt_text(const struct chat *c, size_t *len)
{
	if (len)
		*len = c->prompt_text ? c->prompt_text_len : 0;
	return c->prompt_text ? c->prompt_text : "";
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
int chat_ctx_used(const struct chat *c) { return llm_ctx_n_past(c->ctx); }
int chat_ctx_size(const struct chat *c) { return llm_ctx_n_ctx(c->ctx); }
const float *chat_prompt_logits(const struct chat *c) { return c->prompt_logits; }

const int32_t *
chat_prompt_tokens(const struct chat *c, int *n)
{
	*n = c->prompt_end;
	return c->cache.ids;
}

/* Sets or extends the text the cached tokens stand for (NULL forgets it). */
static void
cache_text_set(struct chat *c, const char *s, size_t n, int append)
{
	if (!s) {
		c->cache_text_len = 0;
		free(c->cache_text);
		c->cache_text = NULL;
		c->cache_text_cap = 0;
		return;
	}
	if (!append)
		c->cache_text_len = 0;
	if (strbuf_append(&c->cache_text, &c->cache_text_len, &c->cache_text_cap, s, n) < 0)
		cache_text_set(c, NULL, 0, 0);   /* unknown text: reuse falls back to token matching */
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
	a[m->n_alts].content = t;
	a[m->n_alts].reasoning = NULL;
	a[m->n_alts].n_reasoning = 0;
	a[m->n_alts].tag = 0;
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
	if (strcmp(role, "user") && strcmp(role, "assistant"))
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

int
chat_template_thinks(const struct chat *c)
{
	return c->tmpl_source && strstr(c->tmpl_source, "enable_thinking") != NULL;
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

/* Renders the system prompt and messages [FIRST, n). */
static char *
render(struct chat *c, int first, int add_gen, char *err, size_t errlen, size_t *len)
{
	struct tmpl_msg *m = malloc((c->n + 1) * sizeof(*m));
	struct tmpl_opts o = { add_gen, c->bos_text, c->eos_text, 0, atomic_load(&c->think) };
	char *out = NULL;
	int k = 0, rc;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (c->system) {
		m[k].role = "system";
		m[k++].content = c->system;
	}
	for (int i = first; i < c->n; i++) {
		m[k].role = c->msgs[i].role;
		m[k++].content = msg_text(&c->msgs[i]);
	}
	rc = tmpl_render(c->t, m, k, &o, &out, len, err, errlen);
	free(m);
	if (rc == TMPL_ERR_RAISED) {
		/* The template's own words, e.g. "System role not supported". */
		char tmp[512];
		snprintf(tmp, sizeof(tmp), "the chat template refuses this conversation: %s", err);
		snprintf(err, errlen, "%s", tmp);
	}
	return rc == 0 ? out : NULL;
}

char *
chat_render(struct chat *c, char *err, size_t errlen)
{
	size_t len;
	return render(c, c->first, 1, err, errlen, &len);
}

/* Tokenizes the rendered conversation; BOS only if the text lacks it.
 * When the text extends what the cache already holds (the last prompt and
 * the model's reply), the cached tokens are kept as they are -- the model's
 * own tokens -- and only the rest is tokenized. */
static int
tokenize_prompt(struct chat *c, const char *text, size_t len, struct tok_ids *ids)
{
	int add_bos = tok_add_bos(c->v) && !(c->bos_text[0] && strncmp(text, c->bos_text, strlen(c->bos_text)) == 0);
	size_t cl = c->cache_text_len;

	ids->n = 0;
	if (c->cache_text && cl > 0 && cl <= len && (int)c->cache.n == llm_ctx_n_past(c->ctx) &&
	    memcmp(text, c->cache_text, cl) == 0) {
		for (size_t i = 0; i < c->cache.n; i++)
			if (tok_ids_push(ids, c->cache.ids[i]) < 0)
				return -1;
		return tok_encode_ex(c->v, text + cl, len - cl, TOK_ENC_SPECIAL | TOK_ENC_CONTINUE, ids);
	}
	/* The text extends the last prompt but not its reply (a regeneration):
	 * that prompt's tokens as they were evaluated.  Tokenizing the whole
	 * text again may split an earlier reply otherwise than the model
	 * wrote it, and the cache would be reused only up to there -- for a
	 * hybrid model's recurrent state, back to a checkpoint before it. */
	cl = c->prompt_end_text;
	if (c->cache_text && cl > 0 && cl <= len && cl <= c->cache_text_len && c->prompt_end <= (int)c->cache.n &&
	    (int)c->cache.n == llm_ctx_n_past(c->ctx) && memcmp(text, c->cache_text, cl) == 0) {
		for (int i = 0; i < c->prompt_end; i++)
			if (tok_ids_push(ids, c->cache.ids[i]) < 0)
				return -1;
		return tok_encode_ex(c->v, text + cl, len - cl, TOK_ENC_SPECIAL | TOK_ENC_CONTINUE, ids);
	}
	return tok_encode(c->v, text, len, add_bos, 1, ids);
}

/* Reply assembly: stop strings are held back until they cannot match. */
struct reply {
	char *buf;
	size_t len, cap, emitted;
};

/* Returns 1 if a stop string completed (the reply is cut there). Else
 * sets *SAFE to how much of the reply may be shown now. */
static int
check_stops(char *const *stops, struct reply *r, size_t *safe)
{
	size_t hold = 0;
	for (int i = 0; stops[i]; i++) {
		size_t sl = strlen(stops[i]);
		const char *hit = memmem(r->buf + (r->emitted > sl ? r->emitted - sl : 0),
		    r->len - (r->emitted > sl ? r->emitted - sl : 0), stops[i], sl);
		if (hit) {
			r->len = (size_t)(hit - r->buf);
			r->buf[r->len] = 0;
			*safe = r->len;
			return 1;
		}
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

/*
 * Renders and tokenizes the conversation from message *FIRST on, leaving
 * out the oldest turns (never the system prompt nor the last user message)
 * while the prompt and room for the reply do not fit the context.  *FIRST
 * gets the first message kept; *TEXT (caller frees), *LEN and IDS the
 * prompt.  Changes nothing in C.  Returns 0, or -1 with ERR.
 */
static int
fit_prompt(struct chat *c, int max_tokens, int *first, char **text, size_t *len, struct tok_ids *ids,
	   char *err, size_t errlen)
{
	const int n_ctx = llm_ctx_n_ctx(c->ctx);
	int f = *first;

	for (;;) {
		int reserve, last_user = -1;
		free(*text);
		*text = render(c, f, 1, err, errlen, len);
		if (!*text)
			return -1;
		if (tokenize_prompt(c, *text, *len, ids) < 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		reserve = max_tokens > 0 && max_tokens < n_ctx / 2 ? max_tokens : n_ctx / 4;
		if ((int)ids->n + reserve <= n_ctx)
			break;
		for (int i = c->n - 1; i >= f; i--)
			if (!strcmp(c->msgs[i].role, "user")) {
				last_user = i;
				break;
			}
		if (last_user > f) {
			int k = 1;
			/* Keep turns paired: a user message goes with its reply. */
			if (c->n > f + 1 && !strcmp(c->msgs[f].role, "user") && strcmp(c->msgs[f + 1].role, "user") &&
			    f + 1 < last_user)
				k = 2;
			f += k;
			continue;
		}
		if ((int)ids->n + 8 <= n_ctx)
			break;   /* only the last message is left: generate what fits */
		snprintf(err, errlen, "the message is %zu tokens long, more than the context of %d tokens "
		    "holds (shorten it, or use a larger context with -c)", ids->n, n_ctx);
		return -1;
	}
	*first = f;
	return 0;
}

int
chat_check(struct chat *c, char *err, size_t errlen)
{
	struct tok_ids ids = { 0 };
	char *text = NULL;
	size_t len;
	int first = c->first;
	int rc = fit_prompt(c, chat_max_tokens(c), &first, &text, &len, &ids, err, errlen);
	free(text);
	tok_ids_free(&ids);
	return rc;
}

/* Remembers what this prompt feeds: TEXT (taken over) and the system
 * prompt and messages from FIRST on, copied. */
static int
record_prompt(struct chat *c, char *text, size_t len, int first)
{
	int n = c->n - first + (c->system ? 1 : 0), k = 0;
	struct fed *f = n > 0 ? calloc(n, sizeof(*f)) : NULL;

	free(c->prompt_text);
	c->prompt_text = text;
	c->prompt_text_len = len;
	for (int i = 0; i < c->n_fed; i++) {
		free(c->fed[i].role);
		free(c->fed[i].content);
	}
	free(c->fed);
	c->fed = NULL;
	c->n_fed = 0;
	c->prompt_dropped = first;
	if (n > 0 && !f)
		return -1;
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
			return -1;
	return 0;
}

/* The reply as shown, split into answer and reasoning (think.h), and its
 * tokens counted by kind. */
struct split_out {
	struct chat *c;
	struct think_split ts;
	struct think_count tc;
	char *answer, *reasoning;
	size_t alen, acap, rlen, rcap;
	int n_gen;
	int stop;                    /* the split callback asked to stop */
	int oom;
};

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

/* Hands on S[0..N) of the reply: as it is to CB, split to the session's
 * split callback.  Returns nonzero when either asks to stop. */
static int
reply_show(struct split_out *so, chat_piece_fn cb, void *cbctx, const char *s, size_t n)
{
	int stop = cb && cb(cbctx, s, n);
	think_split_push(&so->ts, s, n, split_emit, so);
	return stop || so->stop;
}

/* Generates a reply to messages [0, n).  TARGET < 0 appends it as a new
 * message; otherwise it becomes a new alternative of message TARGET (which
 * the caller has hidden by lowering n). */
static int
generate(struct chat *c, int target, chat_piece_fn cb, void *cbctx, struct chat_stats *st, char *err, size_t errlen)
{
	struct tok_ids ids = { 0 };
	struct reply rep = { 0 };
	struct split_out so = { 0 };
	const int n_ctx = llm_ctx_n_ctx(c->ctx);
	int n_dropped = 0, rc = -1, p, max_tokens, first = c->first;
	struct sampler_params sp;
	char *text = NULL;
	size_t len;
	double t0 = now_ms(), t1, t_first = 0;

	memset(st, 0, sizeof(*st));
	/* A stop requested before this point is not cleared: it stops this
	 * reply (the front end pressed it while starting us). */
	max_tokens = chat_max_tokens(c);
	if (fit_prompt(c, max_tokens, &first, &text, &len, &ids, err, errlen) < 0) {
		/* A message that cannot be answered does not stay in the
		 * conversation. */
		if (target < 0 && c->n > 0 && !strcmp(c->msgs[c->n - 1].role, "user"))
			drop_msgs(c, c->n - 1, 1);
		goto out;
	}
	n_dropped = first - c->first;
	c->first = first;
	st->prompt_tokens = (int)ids.n;
	{
		/* A prompt that opens the reasoning starts the reply inside it. */
		int inside = think_prompt_opens(text, len, c->think_open, c->think_close);
		so.c = c;
		think_split_init(&so.ts, c->think_open, c->think_close, inside);
		think_count_init(&so.tc, c->think_open, c->think_close, inside);
	}
	{
		/* What is fed is recorded before it is evaluated: a reply stopped
		 * while the prompt is read was given this prompt too. */
		char *copy = malloc(len + 1);
		if (copy) {
			memcpy(copy, text, len);
			copy[len] = 0;
		}
		if (!copy || record_prompt(c, copy, len, first) < 0) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	if (n_dropped && c->notice) {
		char msg[160];
		snprintf(msg, sizeof(msg), "dropped the %d oldest message%s to fit the context of %d tokens",
		    n_dropped, n_dropped > 1 ? "s" : "", n_ctx);
		c->notice(c->notice_ctx, msg);
	}

	/* Reuse the cache up to the first token that differs. */
	for (p = 0; p < (int)c->cache.n && p < (int)ids.n && c->cache.ids[p] == ids.ids[p]; p++)
		;
	if (p > llm_ctx_n_past(c->ctx))
		p = llm_ctx_n_past(c->ctx);
	if (p == (int)ids.n)
		p--;   /* re-evaluate the last token to get its logits */
	/* A sliding-window ring may not go back that far: then it keeps
	 * fewer positions (down to 0) and more of the prompt is evaluated. */
	p = llm_ctx_truncate(c->ctx, p);
	c->cache.n = p;
	/*
	 * Turn boundary 1 of 2, for hybrid models (a no-op for a KV cache,
	 * which can go back anywhere).  A recurrent state cannot step back:
	 * llm_ctx_truncate returns to the latest checkpoint at or before the
	 * position asked.  Keep the state just before the prompt's last token:
	 * a regeneration of this reply truncates to there (the p-- above) and
	 * evaluates that one token again, not the whole conversation.
	 */
	llm_ctx_checkpoint(c->ctx, (int)ids.n - 1);
	t1 = now_ms();
	{
		/* In chunks, so that the front end can show how far the prompt is. */
		int erc = 0, total = (int)ids.n - p;
		for (int at = 0; at < total && erc == 0; at += CHAT_PROMPT_CHUNK) {
			int k = total - at < CHAT_PROMPT_CHUNK ? total - at : CHAT_PROMPT_CHUNK;
			if (c->progress)
				c->progress(c->progress_ctx, at, total);
			erc = llm_eval(c->ctx, ids.ids + p + at, k, c->logits, 0, err, errlen);
		}
		if (erc == 0 && c->progress)
			c->progress(c->progress_ctx, total, total);
		if (erc == LLM_ESTOPPED) {
			/* Stopped while reading the prompt: keep the batches that
			 * finished for the next turn to reuse, and reply nothing. */
			int done = llm_ctx_n_past(c->ctx);
			for (int i = p; i < done; i++)
				tok_ids_push(&c->cache, ids.ids[i]);
			cache_text_set(c, NULL, 0, 0);
			st->n_prompt = done - p;
			st->n_reused = p;
			st->prompt_ms = now_ms() - t1;
			st->n_dropped = n_dropped;
			st->stop = CHAT_STOP_CANCEL;
			goto finish;
		}
		if (erc < 0) {
			c->cache.n = llm_ctx_truncate(c->ctx, p);
			cache_text_set(c, NULL, 0, 0);
			goto out;
		}
	}
	for (size_t i = p; i < ids.n; i++)
		tok_ids_push(&c->cache, ids.ids[i]);
	c->prompt_end = (int)c->cache.n;
	memcpy(c->prompt_logits, c->logits, llm_model_hparams(c->m)->n_vocab * sizeof(float));
	cache_text_set(c, text, len, 0);
	c->prompt_end_text = len;
	st->n_prompt = (int)ids.n - p;
	st->n_reused = p;
	st->prompt_ms = now_ms() - t1;
	st->n_dropped = n_dropped;

	chat_get_params(c, &sp);
	sampler_reset(c->smp, sp.seed);
	st->seed = sampler_seed(c->smp);
	{
		size_t from = ids.n > (size_t)sp.penalty_last_n ? ids.n - sp.penalty_last_n : 0;
		for (size_t i = from; i < ids.n; i++)
			sampler_accept(c->smp, ids.ids[i]);
	}
	tok_stream_reset(c->ts);
	st->stop = CHAT_STOP_EOG;
	for (;;) {
		int32_t tok;
		const char *piece;
		size_t plen, safe;

		if (atomic_load(&c->cancel)) {
			st->stop = CHAT_STOP_CANCEL;
			break;
		}
		chat_get_params(c, &sp);          /* live changes apply from this token */
		max_tokens = chat_max_tokens(c);
		if (max_tokens > 0 && st->n_gen >= max_tokens) {
			st->stop = CHAT_STOP_LIMIT;
			break;
		}
		tok = sampler_sample(c->smp, &sp, c->logits);
		if (tok_is_eog(c->v, tok)) {
			st->stop = CHAT_STOP_EOG;
			break;
		}
		sampler_accept(c->smp, tok);
		st->n_gen++;
		if (st->n_gen == 1)
			t_first = now_ms();
		piece = tok_stream_push(c->ts, tok, &plen);
		think_count_token(&so.tc, piece, plen);
		st->n_reasoning = so.tc.n_reasoning;
		so.n_gen = st->n_gen;
		if (strbuf_append(&rep.buf, &rep.len, &rep.cap, piece, plen) < 0) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		int stopped = check_stops(c->stops, &rep, &safe);
		if (safe > rep.emitted) {
			if (reply_show(&so, cb, cbctx, rep.buf + rep.emitted, safe - rep.emitted))
				atomic_store(&c->cancel, 1);
			rep.emitted = safe;
		}
		if (stopped) {
			st->stop = CHAT_STOP_STRING;
			break;
		}
		{
			int d = atomic_load(&c->token_delay_ms);
			if (d > 0) {
				struct timespec ts = { d / 1000, (long)(d % 1000) * 1000000L };
				nanosleep(&ts, NULL);
			}
		}
		if (llm_ctx_n_past(c->ctx) >= n_ctx) {
			st->stop = CHAT_STOP_CONTEXT;
			break;
		}
		{
			int erc = llm_eval(c->ctx, &tok, 1, c->logits, 0, err, errlen);
			if (erc == LLM_ESTOPPED) {
				/* Stopped while this token was evaluated: it is in the
				 * reply but not in the cache, which stays as it was. */
				st->stop = CHAT_STOP_CANCEL;
				break;
			}
			if (erc < 0) {
				/* What was produced is kept; ERR says what broke. */
				cache_text_set(c, NULL, 0, 0);
				st->stop = CHAT_STOP_ERROR;
				break;
			}
		}
		tok_ids_push(&c->cache, tok);
		{
			char raw[512];
			int rl = tok_piece(c->v, tok, 1, raw, sizeof(raw));
			if (rl < 0 || rl == (int)sizeof(raw))
				cache_text_set(c, NULL, 0, 0);   /* unknown text: fall back to token matching */
			else if (c->cache_text)
				cache_text_set(c, raw, (size_t)rl, 1);
		}
	}
	/* Turn boundary 2 of 2 (hybrid models): the state at the end of the
	 * reply, to which an edit of the next user message goes back instead
	 * of evaluating this reply again.  (The next turn, which extends the
	 * cache, needs no checkpoint: the state is already there.) */
	llm_ctx_checkpoint(c->ctx, llm_ctx_n_past(c->ctx));
	if (st->stop != CHAT_STOP_STRING) {
		size_t flen, safe;
		const char *rest = tok_stream_flush(c->ts, &flen);
		strbuf_append(&rep.buf, &rep.len, &rep.cap, rest, flen);
		rep.emitted = rep.emitted > rep.len ? rep.len : rep.emitted;
		check_stops(c->stops, &rep, &safe);
		safe = rep.len;   /* the reply is over: show what is left */
		if (safe > rep.emitted)
			reply_show(&so, cb, cbctx, rep.buf + rep.emitted, safe - rep.emitted);
	}
finish:
	think_split_flush(&so.ts, split_emit, &so);
	think_count_flush(&so.tc);
	st->n_reasoning = so.tc.n_reasoning;
	if (so.oom) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	{
		/* The message is the answer; the reasoning goes with it. */
		int k, i = target < 0 ? c->n : target;
		if (target < 0) {
			k = push_msg(c, "assistant", so.answer ? so.answer : "", so.alen) < 0 ? -1 : 0;
		} else {
			k = alt_push(c, target, so.answer ? so.answer : "", so.alen);
			if (k >= 0)
				c->msgs[target].cur = k;
		}
		/* (A regeneration's message is hidden from the index checks.) */
		if (k >= 0 && think_split_entered(&so.ts) &&
		    alt_set_reasoning(&c->msgs[i].alts[k], so.reasoning ? so.reasoning : "", so.rlen, st->n_reasoning) < 0)
			k = -1;
		if (k < 0) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	{
		double t2 = now_ms();
		st->ttft_ms = st->n_gen ? t_first - t0 : t2 - t0;
		st->gen_ms = st->n_gen ? t2 - t_first : 0;
		st->prompt_tps = st->prompt_ms > 0 ? st->n_prompt / (st->prompt_ms / 1e3) : 0;
		st->gen_tps = st->gen_ms > 0 && st->n_gen > 1 ? (st->n_gen - 1) / (st->gen_ms / 1e3) : 0;
		st->n_ctx_used = llm_ctx_n_past(c->ctx);
		st->n_ctx = n_ctx;
		st->cache_bytes = llm_ctx_cache_bytes(c->ctx);
		st->state_bytes = llm_ctx_state_bytes(c->ctx);
		st->checkpoint_bytes = llm_ctx_checkpoint_bytes(c->ctx);
	}
	rc = 0;
out:
	atomic_store(&c->cancel, 0);   /* a stop ends with the reply it stopped */
	free(text);
	free(rep.buf);
	free(so.answer);
	free(so.reasoning);
	tok_ids_free(&ids);
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
chat_regenerate(struct chat *c, chat_piece_fn cb, void *ctx, struct chat_stats *st, char *err, size_t errlen)
{
	int i = c->n - 1, rc;

	if (i >= 1 && !strcmp(c->msgs[i].role, "assistant") && !strcmp(c->msgs[i - 1].role, "user")) {
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
chat_set_param_str(struct chat *c, const char *name, const char *value, char *err, size_t errlen)
{
	struct sampler_params p;
	char *end;
	double v;

	if (!name || !value) {
		snprintf(err, errlen, "usage: /set NAME VALUE (temp, top_k, top_p, min_p, repeat_penalty, "
		    "presence_penalty, frequency_penalty, penalty_last_n, seed, max_tokens)");
		return -1;
	}
	chat_get_params(c, &p);
	if (!strcmp(name, "seed") && !strcmp(value, "random")) {
		p.seed = SAMPLER_SEED_RANDOM;
		chat_set_params(c, &p);
		return 0;
	}
	errno = 0;
	v = strtod(value, &end);
	if (end == value || *end || errno || v != v) {
		snprintf(err, errlen, "%s: '%s' is not a number", name, value);
		return -1;
	}
	if (!strcmp(name, "temp") || !strcmp(name, "temperature")) p.temp = (float)v;
	else if (!strcmp(name, "top_k")) p.top_k = v > 1e9 ? 1000000000 : (int)v;
	else if (!strcmp(name, "top_p")) p.top_p = (float)v;
	else if (!strcmp(name, "min_p")) p.min_p = (float)v;
	else if (!strcmp(name, "repeat_penalty")) p.repeat_penalty = (float)v;
	else if (!strcmp(name, "presence_penalty")) p.presence_penalty = (float)v;
	else if (!strcmp(name, "frequency_penalty")) p.frequency_penalty = (float)v;
	else if (!strcmp(name, "penalty_last_n")) p.penalty_last_n = v > 1e9 ? 1000000000 : (int)v;
	else if (!strcmp(name, "seed")) {
		if (v < 0 || v >= 1.8e19) {
			snprintf(err, errlen, "seed must be 0 or more, or \"random\"");
			return -1;
		}
		p.seed = (uint64_t)v;
	} else if (!strcmp(name, "max_tokens")) {
		if (v < 0 || v > 1e9) {
			snprintf(err, errlen, "max_tokens must be 0 (no limit) or more");
			return -1;
		}
		chat_set_max_tokens(c, (int)v);
		return 0;
	} else {
		snprintf(err, errlen, "unknown parameter '%s'", name);
		return -1;
	}
	if (sampler_params_check(&p, err, errlen) < 0)
		return -1;
	chat_set_params(c, &p);
	return 0;
}
