/* chat-engine.h -- what produces a chat session's replies: the table an engine (in-process, remote) fills, and what the session lends it while a reply runs. */
#ifndef NATTER_CHAT_ENGINE_H
#define NATTER_CHAT_ENGINE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A chat session (chat.c) keeps the conversation: messages, alternatives,
 * edits, the window of messages still fed, the live parameters, stop
 * strings, statistics and notices.  What turns the messages fed into a
 * reply is an engine behind struct chat_engine_ops:
 *
 *   chat-local.c      in-process: the chat template, the tokenizer, KV
 *                     cache reuse, the sampler (chat_new)
 *   net/remote.c      an OpenAI-compatible server over HTTP: the request
 *                     built from the messages fed, the SSE stream, the
 *                     server's usage (remote_chat_new, in natter/remote.h)
 *
 * Front ends and the store see only chat.h: they never learn which engine
 * runs, except through what the engine reports (chat_engine_info,
 * chat_ctx_size 0 for "unknown", chat_param_sent).
 *
 * Every op runs on the session's thread (the one that calls
 * chat_generate) unless it says otherwise.
 */

struct chat;
struct chat_stats;
struct chat_run;
struct sampler_params;
struct lora_adapter;

/* One message as an engine is given it.  The system prompt, when there is
 * one, comes first with role "system". */
struct chat_turn {
	const char *role;
	const char *content;
};

/* How a prepared prompt fits the engine's context (chat_engine_ops.prepare). */
enum chat_fit {
	CHAT_FIT_OK = 0,     /* it fits, with room for the reply */
	CHAT_FIT_TIGHT = 1,  /* it fits, with less room than a reply needs: the session drops older
			      * turns first, and generates what fits when none are left */
	CHAT_FIT_NO = 2,     /* it does not fit (ERR says why, for when no turn can be dropped) */
};

/* What an engine is, for the front ends and the store.  Strings are
 * borrowed from the engine and live as long as it does. */
struct chat_engine_info {
	const char *kind;            /* "local" or "remote" */
	const char *model;           /* remote: the model id asked for; local: NULL (the front end knows the file) */
	const char *endpoint;        /* remote: the server's base URL, without credentials; local: NULL */
	const char *arch;            /* local: the architecture, e.g. "llama"; remote: NULL */
	const char *type_name;       /* local: the weight type, e.g. "Q4_K_M"; remote: NULL */
	const char *template_name;   /* "model", a built-in, a file; remote: what renders the prompt (the server) */
	const char *template_source; /* the template's text; NULL when the engine does not know it */
	const char *warning;         /* something doubtful in the options, for the front end to show; NULL: none */
	const char *kv_type;         /* local: the KV cache's type ("f16", "q8_0", "f32"); remote: NULL */
	int exact_act;               /* local: exact activations (llm_ctx_params.exact_act) */
};

struct chat_engine_ops {
	const char *kind;            /* "local", "remote" */
	/*
	 * Prepares the prompt for the turns T[0..N) (the last one the user's
	 * or, when continuing, any), leaving room for a reply of MAX_TOKENS
	 * (0: no limit), and keeps it for the next run.  THINK is the
	 * template's enable_thinking (enum chat_think; 0 leaves it undefined),
	 * for an engine that renders the template.  Changes nothing the last
	 * reply was produced from.  Returns a chat_fit, or a negative enum
	 * chat_err with ERR when the engine refuses the conversation (CHAT_ERR:
	 * a template that raises; CHAT_ERR_NOMEM).
	 */
	int (*prepare)(void *e, const struct chat_turn *t, int n, int max_tokens, int think, char *err,
		       size_t errlen);
	/*
	 * Optional (NULL: never): whether the prompt prepared last leaves the
	 * reply inside the reasoning -- its rendered text ends with OPEN, the
	 * reasoning's open tag (think_prompt_opens).  Only an engine that
	 * renders the prompt can tell; over a server, reasoning comes tagged
	 * (chat_run_think_tags) or not at all.
	 */
	int (*prompt_opens)(void *e, const char *open, const char *close);
	/*
	 * Produces the reply to the prompt prepared last, handing each piece
	 * of it to chat_run_piece as it comes and stopping when that says so
	 * or chat_run_cancelled.  Fills ST's counts (n_prompt, n_reused,
	 * n_gen, prompt_tokens, prompt_ms, seed; gen_counted and
	 * reasoning_counted when its pieces are not tokens) and ST->stop; the
	 * session measures the times and counts the reasoning (n_reasoning).  Returns 0 when a reply was produced, even an
	 * empty or cut one (CHAT_STOP_ERROR with ERR saying what broke), or -1
	 * (CHAT_ERR_NOMEM: out of memory) with ERR when none could be started
	 * (nothing is kept).  CHAT_ERR_CONTEXT, with nothing of a reply handed
	 * on, says the prompt was refused as longer than the context (an
	 * engine whose prepare cannot tell, a server): the session drops the
	 * oldest turn, prepares again and runs again.
	 */
	int (*run)(void *e, struct chat_run *r, struct chat_stats *st, char *err, size_t errlen);
	void (*free)(void *e);
	void (*info)(void *e, struct chat_engine_info *i);
	/* The last run's prompt exactly as fed: the rendered text, or the
	 * request body sent (borrowed until the next run; "" before one). */
	const char *(*prompt_text)(void *e, size_t *len);
	/* Renders turns T[0..N) as the next prompt would be, THINK as for
	 * prepare (caller frees); NULL with ERR. */
	char *(*render)(void *e, const struct chat_turn *t, int n, int think, char *err, size_t errlen);
	/* Tokens in the context now, and its size; 0 when unknown. */
	int (*ctx_used)(void *e);
	int (*ctx_size)(void *e);
	/* Whether sampling parameter NAME (chat_set_param_str's names) reaches
	 * the model: 1, or 0 when the engine leaves it out.  Any thread. */
	int (*param_sent)(void *e, const char *name);
	/* Optional (NULL: none): the last prompt's tokens and the logits after
	 * it, for tests of an in-process engine. */
	const int32_t *(*prompt_tokens)(void *e, int *n);
	const float *(*prompt_logits)(void *e);
	/*
	 * Optional (NULL: the engine runs no adapters; the session then
	 * refuses chat_opts.lora): the LoRA adapters the engine opened from
	 * chat_opts.lora, in that order, and the scales for the next run.
	 * n_adapters and adapter: any thread (the adapters are the engine's
	 * for its life).  set_adapters puts scales S[0..n_adapters) in force
	 * before a run; returns 1 when they changed, the cache dropped (*HELD
	 * gets the tokens it held, read again by the run), 0 when unchanged,
	 * -1 with ERR.
	 */
	int (*n_adapters)(void *e);
	const struct lora_adapter *(*adapter)(void *e, int i);
	int (*set_adapters)(void *e, const float *s, int *held, char *err, size_t errlen);
};

/*
 * A session over engine E (taken over: OPS->free frees it, also when this
 * fails).  O's template_spec, n_ctx and n_threads are the engine's
 * business; the session takes the system prompt, the sampling parameters,
 * max_tokens, the stop strings and the reasoning's tags.  Returns 0 or -1
 * with ERR.
 */
struct chat_opts;
int chat_new_engine(const struct chat_engine_ops *ops, void *e, const struct chat_opts *o, struct chat **out,
		    char *err, size_t errlen);

/* --- what a session lends its engine while a reply runs (chat.c) --- */

/* Milliseconds on a monotonic clock (the session's clock).  Any thread. */
double chat_now_ms(void);

enum { CHAT_RUN_GO = 0, CHAT_RUN_STOP = 1 };

/* Hands the engine's next piece of the reply (a token's text, a stream
 * chunk's delta; any bytes, possibly empty, possibly part of a UTF-8
 * character) to the session: stop strings are applied, what can be shown
 * is split into reasoning and answer (think.h) and goes to the front end,
 * the token delay is waited.  Each call counts as one generated unit (a
 * token, or a delta) in the reasoning's count.  Returns CHAT_RUN_STOP
 * when a stop string completed (end the reply with CHAT_STOP_STRING),
 * else CHAT_RUN_GO.  A front end that asks to stop sets the cancel flag. */
int chat_run_piece(struct chat_run *r, const char *p, size_t n);
/* The same for bytes that are no unit of their own: the last bytes of a
 * character the reply ended inside of, the reasoning tags an engine puts
 * around a server's reasoning.  Not counted, no delay. */
int chat_run_text(struct chat_run *r, const char *p, size_t n);
/* The session's reasoning tags (borrowed, for the session's life), for an
 * engine that receives the reasoning apart from the answer and passes it
 * on between them. */
void chat_run_think_tags(const struct chat_run *r, const char **open, const char **close);
/* An engine that knows how many tokens the reasoning had (a server's
 * usage) says so; otherwise the session counts the pieces (chat_run_piece)
 * that fell in the reasoning. */
void chat_run_set_reasoning_tokens(struct chat_run *r, int n);
/* Whether chat_cancel asked the reply to stop. */
int chat_run_cancelled(const struct chat_run *r);
/* The flag itself, for an engine that polls it elsewhere (an evaluation's
 * abort callback, a transfer's progress callback); it stays valid for the
 * session's life. */
const atomic_int *chat_run_cancel_flag(const struct chat_run *r);
/* The session, for its live parameters (chat_max_tokens). */
struct chat *chat_run_chat(const struct chat_run *r);
/* The sampling parameters for the next token (or request): the session's
 * live ones (chat_get_params), or those an A/B comparison gives this
 * reply alone (chat_regenerate_with).  The reply is recorded under the
 * first answer, a setting that changed in a later one as not known.  The
 * run's thread. */
void chat_run_params(struct chat_run *r, struct sampler_params *sp);
/* The reply's token limit (chat_max_tokens), recorded as chat_run_params
 * records the parameters. */
int chat_run_max_tokens(struct chat_run *r);
/* Tells the front end something the engine did on its own (a field left
 * out of the request, ...). */
void chat_run_notice(struct chat_run *r, const char *msg);
/* DONE of TOTAL prompt tokens evaluated (see chat_set_progress). */
void chat_run_progress(struct chat_run *r, int done, int total);
/* An engine that knows the speeds better than the session's clock (the
 * server's own timings) sets them; the session then keeps them. */
void chat_run_set_rates(struct chat_run *r, double prompt_tps, double gen_tps);
/* An engine that reads the parameters once (a request sent with them)
 * says which, and (UNSENT, SP_ bits) which of them the request did not
 * carry: chat_reply_params then reports these, the unsent as not known. */
void chat_run_set_params(struct chat_run *r, const struct sampler_params *p, int max_tokens, unsigned unsent);

#endif
