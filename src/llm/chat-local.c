/* chat-local.c -- the in-process chat engine: the chat template, tokenizing with KV cache reuse, prompt evaluation in chunks, sampling (chat_new). */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natter/chat-engine.h"
#include "natter/chat.h"
#include "natter/gguf.h"
#include "natter/llm.h"
#include "natter/think.h"
#include "natter/tmpl.h"
#include "natter/tok.h"
#include "llm/hugemem.h"
#include "llm/strbuf.h"

/*
 * The engine behind chat_new (chat-engine.h): one model context whose KV
 * cache carries over from reply to reply, so that a turn evaluates only
 * what is new.  The conversation, the window of messages fed, stop
 * strings, live parameters and timing are the session's (chat.c).
 */
struct local {
	struct llm_model *m;
	struct llm_ctx *ctx;
	const struct tok_vocab *v;
	struct tmpl *t;
	char tmpl_name[256];
	char *tmpl_source;           /* the template's text as compiled */
	char warning[1024];          /* "" when none; several joined by "; " (warn_add) */
	enum llm_kv_type kv_type;    /* the session's cache type, and */
	int exact_act;               /* its activations: for the store */
	char *bos_text, *eos_text;
	int mark;                    /* messages' control-token texts are text (render) */
	/* The prompt prepared last (prepare), for the next run. */
	char *pend_text;
	size_t pend_len;
	struct tok_ids pend_ids;
	/* The last run's. */
	char *prompt_text;           /* the last prompt as fed, rendered (marked: tok.h) */
	size_t prompt_text_len;
	char *prompt_plain;          /* the same as it reads (unmarked) */
	size_t prompt_plain_len;
	struct tok_ids cache;        /* mirror of the tokens in the KV cache */
	char *cache_text;            /* the text those tokens stand for, when known */
	size_t cache_text_len, cache_text_cap;
	int prompt_end;              /* cache.ids[0..prompt_end) was the last prompt */
	size_t prompt_end_text;      /* and stood for cache_text[0..prompt_end_text) */
	float *prompt_logits;        /* (n_vocab) after the last prompt */
	struct sampler *smp;
	struct tok_stream *ts;
	float *logits;               /* (n_vocab) after the last evaluation */
	const atomic_int *cancel;    /* the session's stop flag, lent by each run */
	struct lora_adapter *ad[CHAT_MAX_ADAPTERS];   /* (n_ad) owned; their scales are the session's */
	int n_ad;
};


static char *
token_text(const struct tok_vocab *v, int32_t id)
{
	const char *t = id >= 0 ? tok_text(v, id) : NULL;
	return strdup(t ? t : "");
}

static int
load_template(struct local *c, const char *spec, char *err, size_t errlen)
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
local_abort_cb(void *ctx)
{
	struct local *c = ctx;
	return c->cancel && atomic_load(c->cancel);
}

/* Sets or extends the text the cached tokens stand for (NULL forgets it). */
static void
cache_text_set(struct local *c, const char *s, size_t n, int append)
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

/* Renders turns T[0..N) (with the generation prompt when ADD_GEN; THINK:
 * enable_thinking, enum chat_think).  MARKED: the messages' control-token
 * texts marked (tok_mark_specials), for tokenize_prompt: what a user wrote
 * is never a control token.  NULL with ERR on failure, *NOMEM set when
 * out of memory was the cause. */
static char *
render(struct local *c, const struct chat_turn *t, int n, int add_gen, int think, int marked, char *err,
       size_t errlen, size_t *len, int *nomem)
{
	struct tmpl_msg *m = calloc((size_t)n + 1, sizeof(*m));
	char **own = marked ? calloc((size_t)n + 1, sizeof(*own)) : NULL;
	struct tmpl_opts o = { .add_generation_prompt = add_gen, .bos_token = c->bos_text, .eos_token = c->eos_text,
		.now = 0, .enable_thinking = think };
	char *out = NULL;
	int rc = 0;

	*nomem = 0;
	if (!m || (marked && !own)) {
		free(m);
		free(own);
		snprintf(err, errlen, "out of memory");
		*nomem = 1;
		return NULL;
	}
	for (int i = 0; i < n; i++) {
		m[i].role = t[i].role;
		m[i].content = t[i].content;
		if (marked && t[i].content && !(m[i].content = own[i] = tok_mark_specials(c->v, t[i].content,
		    strlen(t[i].content), NULL)))
			rc = -1;
	}
	/* (The template engine's own running out of memory is one of its
	 * errors: not told apart.) */
	if (rc == 0) {
		rc = tmpl_render(c->t, m, n, &o, &out, len, err, errlen);
	} else {
		snprintf(err, errlen, "out of memory");
		*nomem = 1;
	}
	for (int i = 0; own && i < n; i++)
		free(own[i]);
	free(own);
	free(m);
	if (rc == TMPL_ERR_RAISED) {
		/* The template's own words, e.g. "System role not supported". */
		char tmp[512];
		snprintf(tmp, sizeof(tmp), "the chat template refuses this conversation: %s", err);
		snprintf(err, errlen, "%s", tmp);
	}
	return rc == 0 ? out : NULL;
}

/* Tokenizes the rendered conversation; BOS only if the text lacks it.
 * When the text extends what the cache already holds (the last prompt and
 * the model's reply), the cached tokens are kept as they are -- the model's
 * own tokens -- and only the rest is tokenized. */
static int
tokenize_prompt(struct local *c, const char *text, size_t len, struct tok_ids *ids)
{
	int add_bos = tok_add_bos(c->v) && !(c->bos_text[0] && strncmp(text, c->bos_text, strlen(c->bos_text)) == 0);
	size_t cl = c->cache_text_len;

	ids->n = 0;
	if (c->cache_text && cl > 0 && cl <= len && (int)c->cache.n == llm_ctx_n_past(c->ctx) &&
	    memcmp(text, c->cache_text, cl) == 0) {
		for (size_t i = 0; i < c->cache.n; i++)
			if (tok_ids_push(ids, c->cache.ids[i]) < 0)
				return -1;
		return tok_encode_ex(c->v, text + cl, len - cl, TOK_ENC_SPECIAL | TOK_ENC_CONTINUE | TOK_ENC_MARKED, ids);
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
		return tok_encode_ex(c->v, text + cl, len - cl, TOK_ENC_SPECIAL | TOK_ENC_CONTINUE | TOK_ENC_MARKED, ids);
	}
	return tok_encode_ex(c->v, text, len, (add_bos ? TOK_ENC_BOS : 0) | TOK_ENC_SPECIAL | TOK_ENC_MARKED, ids);
}

/* --- the engine's ops --- */

/* Renders and tokenizes; fits when the prompt and room for the reply (a
 * quarter of the context, or MAX_TOKENS when that is at most half of it:
 * the session asks for half when it drops turns) are within the context. */
static int
local_prepare(void *e, const struct chat_turn *t, int n, int max_tokens, int think, char *err, size_t errlen)
{
	struct local *c = e;
	const int n_ctx = llm_ctx_n_ctx(c->ctx);
	int reserve, nomem;

	free(c->pend_text);
	c->pend_text = render(c, t, n, 1, think, c->mark, err, errlen, &c->pend_len, &nomem);
	if (!c->pend_text)
		return nomem ? CHAT_ERR_NOMEM : CHAT_ERR;
	if (tokenize_prompt(c, c->pend_text, c->pend_len, &c->pend_ids) < 0) {
		snprintf(err, errlen, "out of memory");
		return CHAT_ERR_NOMEM;
	}
	/* Nothing to evaluate (an empty prompt through a template that adds
	 * nothing, a model with no beginning-of-text token): no logits to
	 * sample the reply's first token from. */
	if (c->pend_ids.n == 0) {
		snprintf(err, errlen, "the prompt is empty: the template added nothing and this model starts "
		    "with no beginning-of-text token, so there is nothing to continue");
		return CHAT_ERR;
	}
	reserve = max_tokens > 0 && max_tokens <= n_ctx / 2 ? max_tokens : n_ctx / 4;
	if ((int)c->pend_ids.n + reserve <= n_ctx)
		return CHAT_FIT_OK;
	if ((int)c->pend_ids.n + 8 <= n_ctx)
		return CHAT_FIT_TIGHT;
	snprintf(err, errlen, "the message is %zu tokens long, more than the context of %d tokens "
	    "holds (shorten it, or use a larger context with -c)", c->pend_ids.n, n_ctx);
	return CHAT_FIT_NO;
}

/* A template such as DeepSeek-R1's ends its generation prompt with the
 * open tag: the reply starts inside the reasoning. */
static int
local_prompt_opens(void *e, const char *open, const char *close)
{
	struct local *c = e;
	return c->pend_text && think_prompt_opens(c->pend_text, c->pend_len, open, close);
}

/* The token mirror keeps its first N ids, as the cache does; the last
 * prompt's end is never past them. */
static void
cache_keep(struct local *c, int n)
{
	c->cache.n = (size_t)n;
	if (c->prompt_end > n)
		c->prompt_end = n;
}

static int
local_run(void *e, struct chat_run *r, struct chat_stats *st, char *err, size_t errlen)
{
	struct local *c = e;
	struct tok_ids *ids = &c->pend_ids;
	const int n_ctx = llm_ctx_n_ctx(c->ctx);
	struct sampler_params sp;
	int p, max_tokens;
	double t1;

	c->cancel = chat_run_cancel_flag(r);
	/* The prompt fed becomes the last prompt now: a reply stopped while
	 * it is read was given it too. */
	free(c->prompt_text);
	c->prompt_text = c->pend_text;
	c->prompt_text_len = c->pend_len;
	c->pend_text = NULL;
	c->pend_len = 0;
	if (!c->prompt_text) {
		snprintf(err, errlen, "internal error: no prompt was prepared");
		return -1;
	}
	free(c->prompt_plain);
	if (!(c->prompt_plain = tok_unmark(c->v, c->prompt_text, c->prompt_text_len, &c->prompt_plain_len))) {
		snprintf(err, errlen, "out of memory");
		return CHAT_ERR_NOMEM;
	}
	st->prompt_tokens = (int)ids->n;

	/* Reuse the cache up to the first token that differs. */
	for (p = 0; p < (int)c->cache.n && p < (int)ids->n && c->cache.ids[p] == ids->ids[p]; p++)
		;
	if (p > llm_ctx_n_past(c->ctx))
		p = llm_ctx_n_past(c->ctx);
	if (p == (int)ids->n)
		p--;   /* re-evaluate the last token to get its logits */
	/* A sliding-window ring may not go back that far: then it keeps
	 * fewer positions (down to 0) and more of the prompt is evaluated. */
	p = llm_ctx_truncate(c->ctx, p);
	cache_keep(c, p);
	/*
	 * Turn boundary 1 of 2, for hybrid models (a no-op for a KV cache,
	 * which can go back anywhere).  A recurrent state cannot step back:
	 * llm_ctx_truncate returns to the latest checkpoint at or before the
	 * position asked.  Keep the state just before the prompt's last token:
	 * a regeneration of this reply truncates to there (the p-- above) and
	 * evaluates that one token again, not the whole conversation.
	 */
	llm_ctx_checkpoint(c->ctx, (int)ids->n - 1);
	t1 = chat_now_ms();
	{
		/* In chunks, so that the front end can show how far the prompt is. */
		int erc = 0, total = (int)ids->n - p;
		for (int at = 0; at < total && erc == 0; at += CHAT_PROMPT_CHUNK) {
			int k = total - at < CHAT_PROMPT_CHUNK ? total - at : CHAT_PROMPT_CHUNK;
			chat_run_progress(r, at, total);
			erc = llm_eval(c->ctx, ids->ids + p + at, k, c->logits, 0, err, errlen);
		}
		if (erc == 0)
			chat_run_progress(r, total, total);
		if (erc == LLM_ESTOPPED) {
			/* Stopped while reading the prompt: keep the batches that
			 * finished for the next turn to reuse, and reply nothing. */
			int done = llm_ctx_n_past(c->ctx);
			if (done < p)   /* the cache went back further (a recurrent state) */
				cache_keep(c, done);
			for (int i = p; i < done; i++)
				tok_ids_push(&c->cache, ids->ids[i]);
			cache_text_set(c, NULL, 0, 0);
			st->n_prompt = done > p ? done - p : 0;
			st->n_reused = p;
			st->prompt_ms = chat_now_ms() - t1;
			st->stop = CHAT_STOP_CANCEL;
			/* Nothing was sampled; the reply is recorded with the
			 * seed it was to be sampled with (the session's), not 0. */
			chat_run_params(r, &sp);
			sampler_reset(c->smp, sp.seed);
			st->seed = sampler_seed(c->smp);
			return 0;
		}
		if (erc < 0) {
			cache_keep(c, llm_ctx_truncate(c->ctx, p));
			cache_text_set(c, NULL, 0, 0);
			return -1;
		}
	}
	for (size_t i = p; i < ids->n; i++)
		tok_ids_push(&c->cache, ids->ids[i]);
	c->prompt_end = (int)c->cache.n;
	memcpy(c->prompt_logits, c->logits, llm_model_hparams(c->m)->n_vocab * sizeof(float));
	cache_text_set(c, c->prompt_text, c->prompt_text_len, 0);
	c->prompt_end_text = c->prompt_text_len;
	st->n_prompt = (int)ids->n - p;
	st->n_reused = p;
	st->prompt_ms = chat_now_ms() - t1;

	chat_run_params(r, &sp);
	sampler_reset(c->smp, sp.seed);
	st->seed = sampler_seed(c->smp);
	{
		size_t from = ids->n > (size_t)sp.penalty_last_n ? ids->n - sp.penalty_last_n : 0;
		for (size_t i = from; i < ids->n; i++)
			sampler_accept(c->smp, ids->ids[i]);
	}
	tok_stream_reset(c->ts);
	st->stop = CHAT_STOP_EOG;
	for (;;) {
		int32_t tok;
		const char *piece;
		size_t plen;

		if (chat_run_cancelled(r)) {
			st->stop = CHAT_STOP_CANCEL;
			break;
		}
		chat_run_params(r, &sp);             /* live changes apply from this token */
		max_tokens = chat_run_max_tokens(r);
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
		piece = tok_stream_push(c->ts, tok, &plen);
		if (chat_run_piece(r, piece, plen) == CHAT_RUN_STOP) {
			st->stop = CHAT_STOP_STRING;
			break;
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
	st->cache_bytes = llm_ctx_cache_bytes(c->ctx);
	st->state_bytes = llm_ctx_state_bytes(c->ctx);
	st->checkpoint_bytes = llm_ctx_checkpoint_bytes(c->ctx);
	if (st->stop != CHAT_STOP_STRING) {
		/* Bytes of a character the reply ended inside of. */
		size_t flen;
		const char *rest = tok_stream_flush(c->ts, &flen);
		if (flen > 0 && chat_run_text(r, rest, flen) == CHAT_RUN_STOP)
			st->stop = CHAT_STOP_STRING;
	}
	return 0;
}

static void
local_free(void *e)
{
	struct local *c = e;

	if (!c)
		return;
	free(c->tmpl_source);
	free(c->prompt_text);
	free(c->prompt_plain);
	free(c->pend_text);
	tok_ids_free(&c->pend_ids);
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
	for (int i = 0; i < c->n_ad; i++)
		lora_free(c->ad[i]);
	free(c);
}

static void
local_info(void *e, struct chat_engine_info *i)
{
	struct local *c = e;
	i->kind = "local";
	i->arch = llm_model_hparams(c->m)->arch_name;
	i->type_name = llm_model_type_name(c->m);
	i->template_name = c->tmpl_name;
	i->template_source = c->tmpl_source;
	i->warning = c->warning[0] ? c->warning : NULL;
	i->kv_type = llm_kv_type_name(c->kv_type);
	i->exact_act = c->exact_act;
}

static const char *
local_prompt_text(void *e, size_t *len)
{
	struct local *c = e;
	*len = c->prompt_plain ? c->prompt_plain_len : 0;
	return c->prompt_plain ? c->prompt_plain : "";
}

static char *
local_render(void *e, const struct chat_turn *t, int n, int think, char *err, size_t errlen)
{
	size_t len;
	int nomem;
	return render(e, t, n, 1, think, 0, err, errlen, &len, &nomem);
}

static int local_ctx_used(void *e) { return llm_ctx_n_past(((struct local *)e)->ctx); }
static int local_ctx_size(void *e) { return llm_ctx_n_ctx(((struct local *)e)->ctx); }
static const float *local_prompt_logits(void *e) { return ((struct local *)e)->prompt_logits; }

static const int32_t *
local_prompt_tokens(void *e, int *n)
{
	struct local *c = e;
	*n = c->prompt_end;
	return c->cache.ids;
}

static int local_n_adapters(void *e) { return ((struct local *)e)->n_ad; }

static const struct lora_adapter *
local_adapter(void *e, int i)
{
	struct local *c = e;
	return i >= 0 && i < c->n_ad ? c->ad[i] : NULL;
}

/* The scales on the model context; when they changed, the cache (keys
 * and values computed with the old weights) is dropped. */
static int
local_set_adapters(void *e, const float *s, int *held, char *err, size_t errlen)
{
	struct local *c = e;
	int rc;

	*held = llm_ctx_n_past(c->ctx);
	rc = llm_ctx_set_adapters(c->ctx, (const struct lora_adapter *const *)c->ad, s, c->n_ad, err, errlen);
	if (rc == 1) {
		cache_keep(c, 0);
		cache_text_set(c, NULL, 0, 0);
	}
	return rc;
}

/* Adds TEXT to what chat_warning tells; one that does not fit whole is left
 * out rather than cut inside a character. */
static void
warn_add(struct local *c, const char *text)
{
	size_t n = strlen(c->warning), t = strlen(text);

	if (n + (n ? 2 : 0) + t < sizeof(c->warning))
		snprintf(c->warning + n, sizeof(c->warning) - n, "%s%s", n ? "; " : "", text);
}

/* Opens the adapters of O against the model and puts their scales in force.
 * One trained on another model is a warning, not an error. */
static int
adapters_open(struct local *c, const struct chat_opts *o, char *err, size_t errlen)
{
	char note[1024];
	int held;

	if (o->n_lora < 0 || o->n_lora > CHAT_MAX_ADAPTERS) {
		snprintf(err, errlen, "at most %d adapters", CHAT_MAX_ADAPTERS);
		return -1;
	}
	for (int i = 0; i < o->n_lora; i++) {
		if (lora_open(o->lora[i], c->m, o->lora_scale[i], o->lora_digest, &c->ad[i], err, errlen) < 0)
			return -1;
		c->n_ad = i + 1;
	}
	for (int i = 0; i < c->n_ad; i++)
		if (lora_model_notice(c->ad[i], c->m, note, sizeof(note)))
			warn_add(c, note);
	return c->n_ad ? (local_set_adapters(c, o->lora_scale, &held, err, errlen) < 0 ? -1 : 0) : 0;
}

static const struct chat_engine_ops local_ops = {
	.kind = "local",
	.prepare = local_prepare,
	.prompt_opens = local_prompt_opens,
	.run = local_run,
	.free = local_free,
	.info = local_info,
	.prompt_text = local_prompt_text,
	.render = local_render,
	.ctx_used = local_ctx_used,
	.ctx_size = local_ctx_size,
	.param_sent = NULL,          /* every parameter reaches the sampler */
	.prompt_tokens = local_prompt_tokens,
	.prompt_logits = local_prompt_logits,
	.n_adapters = local_n_adapters,
	.adapter = local_adapter,
	.set_adapters = local_set_adapters,
};

int
chat_new(struct llm_model *m, const struct chat_opts *o, struct chat **out, char *err, size_t errlen)
{
	struct local *c;
	int n_vocab = llm_model_hparams(m)->n_vocab;

	*out = NULL;
	/* Bad parameters are told before a template is read or a context made. */
	if (sampler_params_check(&o->sp, err, errlen) < 0)
		return -1;
	if (!(c = calloc(1, sizeof(*c)))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	c->m = m;
	c->v = llm_model_vocab(m);
	c->mark = !o->raw_text;
	if (load_template(c, o->template_spec, err, errlen) < 0)
		goto fail;
	{
		struct llm_ctx_params cp;
		llm_ctx_params_default(&cp);
		cp.n_ctx = o->n_ctx;
		cp.n_threads = o->n_threads;
		cp.kv_type = o->kv_type;
		cp.exact_act = o->exact_act;
		c->kv_type = cp.kv_type;
		c->exact_act = cp.exact_act;
		c->ctx = llm_ctx_new_ex(m, &cp, err, errlen);
	}
	if (!c->ctx)
		goto fail;
	llm_ctx_set_abort(c->ctx, local_abort_cb, c);
	/* First: the full screen's notice line shows the start of the
	 * warnings, and adapters' notices are long. */
	/* A file that gives no trained length (0) gets no warning. */
	if (llm_model_hparams(m)->n_ctx_train > 0 && llm_ctx_n_ctx(c->ctx) > llm_model_hparams(m)->n_ctx_train) {
		char w[200];
		snprintf(w, sizeof(w), "a context of %d tokens is more than the %d this model was trained on; past "
		    "that, replies may fall apart", llm_ctx_n_ctx(c->ctx), llm_model_hparams(m)->n_ctx_train);
		warn_add(c, w);
	}
	{
		/* The cache's memory is taken as positions fill; what a full
		 * context would need beyond the memory there is now is said at
		 * the start, not found by the kernel's OOM killer mid-reply. */
		const uint64_t need = llm_ctx_cache_bytes(c->ctx) + llm_ctx_checkpoint_bytes(c->ctx);
		const uint64_t avail = mem_available();
		if (avail && need > avail) {
			char w[240];
			snprintf(w, sizeof(w), "a full context of %d tokens needs %.1f GiB for its cache, more than the "
			    "%.1f GiB of memory available: a conversation that long may run out of memory (-c sets a "
			    "smaller context)", llm_ctx_n_ctx(c->ctx), need / 1073741824.0, avail / 1073741824.0);
			warn_add(c, w);
		}
	}
	if (adapters_open(c, o, err, errlen) < 0)
		goto fail;
	c->smp = sampler_new(n_vocab, o->sp.seed);
	c->ts = tok_stream_new(c->v, 0);
	c->logits = calloc(n_vocab, sizeof(float));
	c->prompt_logits = calloc(n_vocab, sizeof(float));
	c->bos_text = token_text(c->v, tok_bos(c->v));
	c->eos_text = token_text(c->v, tok_eos(c->v));
	if (!c->smp || !c->ts || !c->logits || !c->prompt_logits || !c->bos_text || !c->eos_text) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return chat_new_engine(&local_ops, c, o, out, err, errlen);
fail:
	local_free(c);
	return -1;
}
