/* chat.h -- chat sessions: the conversation, streaming replies, live parameters, alternatives and edits, over an in-process model or a remote server. */
#ifndef NATTER_CHAT_H
#define NATTER_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "natter/llm.h"
#include "natter/lora.h"
#include "natter/sampler.h"

struct llm_model;
struct chat;
struct chat_engine_info;

/* LoRA adapters a session holds at most. */
#define CHAT_MAX_ADAPTERS 8

/*
 * A session is the conversation (this header) over an engine that
 * produces the replies (chat-engine.h): chat_new makes one over a model
 * in this process; remote_chat_new (natter/remote.h) one over an
 * OpenAI-compatible server.  Everything here works the same over both;
 * what an engine cannot know reads as 0 or NULL (chat_ctx_size of a remote
 * server, chat_template_source, chat_prompt_tokens).
 */

struct chat_opts {
	const char *template_spec;   /* NULL: the model's own; else a built-in name or a file */
	int keep_turns;              /* never drop older turns to fit the context: a
	                              * conversation that does not fit is refused (serve:
	                              * an API client sent it all to be answered) */
	int raw_text;                /* the messages are prompt text of the caller's: control
	                              * tokens written in them are read as such (serve's
	                              * /v1/completions); else never (tok_mark_specials) */
	const char *system_prompt;   /* NULL: none */
	int n_ctx;                   /* 0: the model's, capped at 4096 */
	int n_threads;               /* 0: one per core */
	enum llm_kv_type kv_type;    /* the cache's K and V (0: f16) */
	int exact_act;               /* llm_ctx_params.exact_act */
	int max_tokens;              /* per reply; 0: until end of turn or context */
	struct sampler_params sp;
	const char *stop[8];         /* extra stop strings, NULL-terminated */
	const char *think_tags;      /* the reasoning's open and close tags, "OPEN CLOSE";
				      * NULL: "<think> </think>" */
	/* LoRA adapters (--lora FILE[:SCALE]), for a model run in process:
	 * chat_new opens each against the model; LORA_SCALE is its user scale
	 * (0: loaded but off).  LORA_DIGEST, if set, hashes each file for the
	 * record (lora_sha256).  Another engine refuses them. */
	const char *lora[CHAT_MAX_ADAPTERS];
	float lora_scale[CHAT_MAX_ADAPTERS];
	int n_lora;
	lora_digest_fn lora_digest;
};

void chat_opts_default(struct chat_opts *o);

/* Why a reply ended. */
enum chat_stop {
	CHAT_STOP_EOG,       /* the model ended its turn */
	CHAT_STOP_LIMIT,     /* max_tokens reached */
	CHAT_STOP_STRING,    /* a stop string appeared */
	CHAT_STOP_CANCEL,    /* chat_cancel */
	CHAT_STOP_CONTEXT,   /* the context is full */
	CHAT_STOP_ERROR,     /* an error cut the reply (chat_generate's ERR says which) */
	CHAT_STOP_EOG_OR_STRING,   /* a remote server's "stop" with stop strings sent: EOG or
				    * STRING, the server did not say which */
};
const char *chat_stop_name(enum chat_stop s);

/* Why a reply could not be started: the negative return of chat_generate,
 * chat_regenerate, chat_regenerate_with, chat_check and chat_check_edit, for a front end
 * that answers each kind otherwise (natter serve: a 400
 * context_length_exceeded, a 500).  ERR words it for the user.  Each is
 * below 0, so "< 0" tests for any. */
enum chat_err {
	CHAT_ERR = -1,           /* anything else: a template that refuses, an engine that failed, ... */
	CHAT_ERR_NOMEM = -2,     /* out of memory */
	CHAT_ERR_CONTEXT = -3,   /* the prompt, with room for the reply, does not fit the context even
				  * with every turn that may go left out */
};

struct chat_stats {
	int n_prompt;          /* tokens evaluated for this turn (the new ones only) */
	int n_reused;          /* tokens of the prompt found in the KV cache */
	int n_gen;             /* tokens generated */
	double prompt_ms, gen_ms, ttft_ms;
	double prompt_tps, gen_tps;
	int n_ctx_used, n_ctx;
	int n_dropped;         /* messages dropped to fit the context this turn */
	int prompt_tokens;     /* the whole prompt fed, in tokens (reused and new) */
	int n_reasoning;       /* of n_gen, the tokens of the reasoning (its tags included);
				* the answer had n_gen - n_reasoning */
	enum chat_stop stop;
	uint64_t seed;
	/* The session's memory after the reply (llm_ctx_cache_bytes and
	 * friends): the whole cache, its recurrent states, the checkpoints of
	 * those states (0 for a transformer). */
	size_t cache_bytes, state_bytes, checkpoint_bytes;
	int gen_counted;       /* n_gen counts the pieces that arrived, not tokens: a remote
				* server reported no usage (0 with an in-process model) */
	int reasoning_counted; /* n_reasoning counts the pieces of the reasoning that arrived,
				* not tokens: a remote server gave no count of its reasoning
				* tokens (0 with an in-process model) */
	char served_model[128]; /* the model a remote server said answered ("model" of its
				* reply: OpenAI's dated snapshot of an alias); "" when none said */
};

/*
 * A session over M (which must outlive it).  Compiles the chat template:
 * the model's tokenizer.chat_template unless O->template_spec names a
 * built-in (chatml, llama2, llama3, phi3, zephyr, gemma) or a file.
 * Returns 0, or -1 with ERR set.  The calling thread owns the session;
 * only chat_cancel and chat_set_params may be called from other threads.
 */
int chat_new(struct llm_model *m, const struct chat_opts *o, struct chat **out, char *err, size_t errlen);
void chat_free(struct chat *c);

/* What engine the session runs over (kind "local" or "remote", the
 * endpoint and model id of a remote one, the architecture of a local
 * one ...): I is filled with strings borrowed from the session. */
void chat_engine_info(const struct chat *c, struct chat_engine_info *i);
/* Whether sampling parameter NAME (as chat_set_param_str names it, or
 * "think" for the /think switch) reaches the model: 0 for one a remote
 * server is not sent (it rejected it, or --remote-extras off).  Any
 * thread. */
int chat_param_sent(const struct chat *c, const char *name);

/* What the template is: "model" or the built-in or file name (borrowed). */
const char *chat_template_name(const struct chat *c);
/* The template's text as compiled (borrowed); NULL when the engine does
 * not know it (a remote server applies its own). */
const char *chat_template_source(const struct chat *c);
/* The reasoning's tags the session splits replies with (chat_opts
 * think_tags; borrowed, for the session's life). */
void chat_think_tags(const struct chat *c, const char **open, const char **close);
/* What chat_new found doubtful in its options without refusing them (a
 * context longer than the model was trained for, an adapter trained on
 * another model: lora_base_notice), for the front end to show, on one
 * line; NULL when nothing.  Borrowed. */
const char *chat_warning(const struct chat *c);
/* Replaces the system prompt (NULL or "" removes it). */
int chat_set_system(struct chat *c, const char *text);
const char *chat_system(const struct chat *c);
/* Appends a user message (copied).  Invalid UTF-8 is repaired. */
int chat_add_user(struct chat *c, const char *text, size_t len);
/* Appends a message of role user, assistant or system (resuming a stored
 * conversation; a system message amid the conversation, as an API client
 * may send, goes to the template where it stands); TEXT is taken as it is
 * (an assistant message's reasoning: chat_alt_set_reasoning).  Returns 0,
 * or -1 for another role or when out of memory. */
int chat_add_message(struct chat *c, const char *role, const char *text, size_t len);

/* Called with each printable piece of the reply as the model wrote it,
 * reasoning tags and all (never a split UTF-8 character, never a prefix
 * of a stop string that may still complete); return nonzero to stop.
 * Runs on the generating thread. */
typedef int (*chat_piece_fn)(void *ctx, const char *piece, size_t len);

/*
 * Reasoning.  Models such as Qwen3 and DeepSeek-R1 write their reasoning
 * between tags (chat_opts.think_tags) before the answer, or start inside
 * it when the rendered prompt ends with the open tag (think_prompt_opens;
 * only an engine that renders the prompt itself can tell).  A remote
 * server that parses the reasoning out (reasoning_content) has it passed
 * on between the same tags.  The session splits each reply as it streams
 * (think.h), whichever engine produced it: an assistant alternative holds
 * the answer as its content and the reasoning apart (chat_alt_reasoning);
 * earlier turns are fed from the answer alone.
 */
enum chat_piece_kind { CHAT_PIECE_ANSWER = 0, CHAT_PIECE_REASONING = 1 };
struct chat_piece {
	enum chat_piece_kind kind;
	const char *text;      /* tags left out; never empty */
	size_t len;
	int n_gen;             /* tokens generated so far (a remote engine's: pieces) */
	int n_reasoning;       /* of them, the reasoning's */
};
/* Called with each piece of the reply, labelled; return nonzero to stop.
 * Runs on the generating thread. */
typedef int (*chat_split_fn)(void *ctx, const struct chat_piece *p);
/* Sets the labelled stream (NULL: none), called besides chat_generate's
 * piece callback (pass that one NULL to have only this).  Set it while no
 * reply runs. */
void chat_set_split(struct chat *c, chat_split_fn fn, void *ctx);

/* Qwen3's switch: the template variable enable_thinking, passed to each
 * render from the next one on.  CHAT_THINK_DEFAULT leaves it undefined
 * (the template's own default).  Any thread. */
enum chat_think { CHAT_THINK_DEFAULT = 0, CHAT_THINK_ON = 1, CHAT_THINK_OFF = -1 };
void chat_set_think(struct chat *c, enum chat_think t);
enum chat_think chat_think(struct chat *c);
/* The switch the last reply's prompt was rendered with.  The session's thread. */
enum chat_think chat_reply_think(const struct chat *c);
/* Whether the template reads enable_thinking at all: 1 its text names
 * it, 0 not; -1 the engine does not know its template (a remote server
 * renders: it gets the switch as chat_template_kwargs), 0 again once that
 * server has refused chat_template_kwargs (chat_param_sent "think"). */
int chat_template_thinks(const struct chat *c);
/* Told what the session did on its own: turns dropped to fit the context,
 * a regeneration moved to the next seed.  Runs on the generating thread. */
typedef void (*chat_notice_fn)(void *ctx, const char *msg);
void chat_set_notice(struct chat *c, chat_notice_fn fn, void *ctx);
/* Told while the prompt is evaluated: DONE of TOTAL new tokens (0 before
 * the first chunk of CHAT_PROMPT_CHUNK tokens, TOTAL after the last one;
 * not after a chunk that chat_cancel stopped).  Runs on the generating
 * thread, between chunks; FN must be quick.  Set it while no reply runs. */
typedef void (*chat_progress_fn)(void *ctx, int done, int total);
void chat_set_progress(struct chat *c, chat_progress_fn fn, void *ctx);
#define CHAT_PROMPT_CHUNK 256

/*
 * Generates the assistant's reply to the conversation so far, streaming it
 * through CB, and appends it as an assistant message (with what was
 * produced even when stopped or cut; ST->stop says how it ended, and on
 * CHAT_STOP_ERROR ERR says what broke).  When the conversation outgrows
 * the context, the oldest messages after the system prompt stop being fed
 * (chat_window_start) and the notice callback is told (once; over a
 * server, which says so only by refusing the request, a turn at a time
 * until it takes the request, the notice with the reply's first piece).  Returns 0 with ST
 * filled, or a negative enum chat_err with ERR set when no reply could be
 * started (CHAT_ERR_CONTEXT: a message longer than the whole context;
 * CHAT_ERR: a template that refuses the conversation, ...): when the conversation itself is at fault (it does
 * not fit, the template refuses it) the unanswered user message at the
 * end is removed from the conversation; when the engine failed (an
 * evaluation error, a server that could not be reached or refused the
 * request) it stays, and chat_regenerate answers it again.
 */
int chat_generate(struct chat *c, chat_piece_fn cb, void *ctx, struct chat_stats *st, char *err, size_t errlen);
/* Whether the conversation ends with a reply to a user's message (system
 * messages may come between): one chat_regenerate and
 * chat_regenerate_with make again. */
int chat_reply_last(const struct chat *c);
/* Generates the last reply again as a new alternative of that message (the
 * old ones stay: chat_alt_*); on failure the message is left as it was.
 * With a fixed seed the regeneration moves to the next seed (and keeps
 * it; the same seed would repeat the reply) and the notice callback says
 * so.  Without a reply at the end, answers the last user message. */
int chat_regenerate(struct chat *c, chat_piece_fn cb, void *ctx, struct chat_stats *st, char *err, size_t errlen);
/* Whether chat_generate could answer the conversation as it stands: it is
 * rendered and fitted into the context the same way, nothing evaluated.
 * Returns 0, or a negative enum chat_err with ERR saying why chat_generate
 * would refuse. */
int chat_check(struct chat *c, char *err, size_t errlen);
/* The same for the conversation as chat_edit would leave it with TEXT as
 * its last message: whether that message fits the context (older turns
 * would be dropped).  Changes nothing in C.  Returns 0, or a negative enum
 * chat_err (CHAT_ERR_CONTEXT: the message does not fit). */
int chat_check_edit(struct chat *c, const char *text, size_t len, char *err, size_t errlen);

/* What the last reply was generated from, exactly: the rendered prompt
 * (a remote engine: the request body sent, which holds no credentials;
 * borrowed, valid until the next generation), and the messages fed, in
 * order, the system prompt first when there was one, after any dropping
 * (chat_prompt_message returns the content and sets *ROLE; borrowed).
 * chat_prompt_dropped is how many earlier messages were left out. */
const char *chat_prompt_text(const struct chat *c, size_t *len);
/* The session's stop strings (chat_opts.stop, the empty ones left out),
 * NULL-terminated, borrowed; *N gets how many. */
const char *const *chat_stops(const struct chat *c, int *n);
int chat_prompt_n_messages(const struct chat *c);
const char *chat_prompt_message(const struct chat *c, int i, const char **role);
int chat_prompt_dropped(const struct chat *c);
/* Messages before this index no longer fit the context and are no longer
 * fed (they stay in the conversation, chat_message_*). */
int chat_window_start(const struct chat *c);

/*
 * Stops a running generation at the next token, or between layers while
 * the prompt or a token is evaluated; the reply keeps what was produced
 * (CHAT_STOP_CANCEL).  Any thread.  A stop requested before the
 * generation gets going stops it at once: a front end starting a
 * generation on another thread cannot lose a stop pressed meanwhile.  So
 * call it only while a generation runs or is being started.
 */
void chat_cancel(struct chat *c);
/* Forgets a stop that arrived after the reply it was meant for had ended
 * (a front end that learns of the end through a queue may still send one
 * meanwhile), so that it cannot stop the next reply.  Call it on the
 * thread that starts generations, after it has learnt that the last one
 * ended and before it starts the next. */
void chat_cancel_reset(struct chat *c);
/* The parameters the last reply was produced under: those in force when
 * it started, or, over an engine that sends them once (a remote server),
 * those sent with its request.  *UNKNOWN (may be NULL) gets the SP_ bits
 * (sampler.h) of those that were not one known value: changed while the
 * reply was written (a change applies from the next token), or not sent
 * to the server.  The session's thread. */
void chat_reply_params(const struct chat *c, struct sampler_params *p, int *max_tokens, unsigned *unknown);
/* Sampling parameters, applied from the next token on (over a remote
 * server: from the next request).  Any thread. */
void chat_set_params(struct chat *c, const struct sampler_params *p);
void chat_get_params(struct chat *c, struct sampler_params *p);
void chat_set_max_tokens(struct chat *c, int max_tokens);
/* Milliseconds to wait after each token (0: none); lets tests and demos
 * watch a reply stream.  Any thread. */
void chat_set_token_delay(struct chat *c, int ms);
int chat_max_tokens(struct chat *c);

/*
 * The session's LoRA adapters (chat_opts.lora; none over a remote
 * server), in the order given; each weight product adds scale x alpha /
 * rank x B (A x) of every adapter whose scale is not 0.  chat_adapter is
 * borrowed for the session's life.  chat_adapter_scale is the scale set
 * now; chat_set_adapter_scale changes it (0: off) from the next reply on
 * -- a reply never changes weights midway -- and that reply first reads
 * the whole conversation again (the cached keys and values were computed
 * with the old weights; the notice callback says so).
 * chat_adapter_scale_used is the scale the last reply was generated with.
 * Setters return 0, or -1 with ERR (no such adapter, not a finite
 * number).  Any thread, like chat_set_params.
 */
int chat_n_adapters(const struct chat *c);
const struct lora_adapter *chat_adapter(const struct chat *c, int i);
float chat_adapter_scale(struct chat *c, int i);
float chat_adapter_scale_used(const struct chat *c, int i);
int chat_set_adapter_scale(struct chat *c, int i, float scale, char *err, size_t errlen);
/* The adapter named NAME: its index (1-based as typed, "2"), its
 * general.name, or its file name with or without ".gguf"; -1 if none. */
int chat_adapter_find(const struct chat *c, const char *name);

/* The sampling parameters the last reply was produced under
 * (chat_reply_params), with SEED the seed it actually used (never
 * SAMPLER_SEED_RANDOM once a reply ran).  The session's thread. */
void chat_last_params(const struct chat *c, struct sampler_params *p);

/* What alternative K of message I was generated under in this session:
 * its parameters (seed as used) and adapter scales (chat_n_adapters of
 * them, SCALES may be NULL).  Returns 0, or -1 when not known (a user
 * message, a reply loaded from the history, or one during which a setting
 * changed).  The session's thread. */
int chat_alt_settings(const struct chat *c, int i, int k, struct sampler_params *sp, float *scales);
/* Whether a regeneration of message I now (chat_regenerate_with, given
 * chat_alt_settings' parameters and scales) would be fed and limited as
 * its alternative K was: the same system prompt, think switch (when the
 * template reads it), max_tokens and messages before it.  Returns 0 when
 * so; 1 with WHAT naming the first that changed since ("the system
 * prompt", "max_tokens (512 then, 64 now)" ...); -1 when not known, as
 * chat_alt_settings.  The model, template, stop strings, context and cache
 * are the session's for its life.  The session's thread. */
int chat_alt_changed(struct chat *c, int i, int k, char *what, size_t n);

/*
 * Generates the last reply again as a new alternative (as chat_regenerate)
 * under other settings for this reply alone: sampling parameters SP as
 * given, the seed included (NULL: the session's, the seed moved on as
 * chat_regenerate does), adapter scales SCALES (chat_n_adapters of them;
 * NULL: the session's).  The session's own settings are not changed.
 * For A/B comparisons.  Fails as chat_regenerate does.
 */
int chat_regenerate_with(struct chat *c, const struct sampler_params *sp, const float *scales, chat_piece_fn cb,
			 void *ctx, struct chat_stats *st, char *err, size_t errlen);

/* Sets one parameter by name from text, as typed in "/set NAME VALUE":
 * temp, top_k, top_p, min_p, repeat_penalty, presence_penalty,
 * frequency_penalty, penalty_last_n, seed (a number or "random"),
 * max_tokens.  Returns 0, or -1 with ERR explaining.  Any thread. */
int chat_set_param_str(struct chat *c, const char *name, const char *value, char *err, size_t errlen);
/* "NAME = VALUE" for the value parameter NAME has now, in BUF; -1 for an
 * unknown name. */
int chat_param_show(struct chat *c, const char *name, char *buf, size_t n);

/* The conversation (system prompt excluded).  Borrowed strings; an
 * assistant message reads as its selected alternative. */
int chat_n_messages(const struct chat *c);
const char *chat_message_role(const struct chat *c, int i);
const char *chat_message_content(const struct chat *c, int i);
/* Removes the last message (e.g. one that could not be answered). */
void chat_pop(struct chat *c);

/* Alternatives: the versions of assistant message I (each regeneration
 * adds one and selects it), in the order they were made.  A user message
 * has one.  chat_alt_add appends one without selecting it (resuming a
 * stored conversation) and returns its index, or -1.  chat_alt_select
 * makes message I read as alternative K from now on; the messages after it
 * stay, and the next reply reuses the KV cache up to the first token that
 * differs.  Return -1 on a bad index.  The session's thread only. */
int chat_alt_count(const struct chat *c, int i);
int chat_alt_index(const struct chat *c, int i);
const char *chat_alt_content(const struct chat *c, int i, int k);
int chat_alt_add(struct chat *c, int i, const char *text, size_t len);
int chat_alt_select(struct chat *c, int i, int k);
/* The reasoning of alternative K of message I (borrowed), NULL when the
 * reply had none, and its length in tokens (0 when not known).
 * chat_message_reasoning: of the selected alternative.
 * chat_alt_set_reasoning gives an alternative its reasoning (resuming a
 * stored conversation; TEXT NULL removes it); returns 0, or -1 (a bad
 * index, out of memory).  The session's thread only. */
const char *chat_alt_reasoning(const struct chat *c, int i, int k);
int chat_alt_reasoning_tokens(const struct chat *c, int i, int k);
const char *chat_message_reasoning(const struct chat *c, int i);
int chat_alt_set_reasoning(struct chat *c, int i, int k, const char *text, size_t len, int n_tokens);
/* Edits user message I: it reads TEXT from now on and the messages after
 * it are removed (the conversation branches there; the next chat_generate
 * answers it, reusing the KV cache up to the edit).  Its tag is reset.
 * Returns 0, or -1 (not a user message, out of memory). */
int chat_edit(struct chat *c, int i, const char *text, size_t len);
/* Tags: an id a front end attaches to each message and each alternative
 * (the store's message and generation ids); 0 until set.  Moved along when
 * messages are, dropped with them. */
int64_t chat_message_tag(const struct chat *c, int i);
void chat_set_message_tag(struct chat *c, int i, int64_t tag);
int64_t chat_alt_tag(const struct chat *c, int i, int k);
void chat_set_alt_tag(struct chat *c, int i, int k, int64_t tag);
/* Forgets the conversation (keeps the system prompt); the cache stays for reuse. */
void chat_clear(struct chat *c);
/* Renders the current conversation with the generation prompt (a remote
 * engine: the request it would send); caller frees. */
char *chat_render(struct chat *c, char *err, size_t errlen);
/* Tokens in the KV cache now, and the context size; 0 when the engine
 * does not know (a remote server). */
int chat_ctx_used(const struct chat *c);
int chat_ctx_size(const struct chat *c);
/* The last reply's prompt: its tokens (the whole sequence up to the
 * generation prompt) and the logits after it (n_vocab floats).  Borrowed,
 * valid until the next generation; NULL (*N 0) over a remote engine. */
const int32_t *chat_prompt_tokens(const struct chat *c, int *n);
const float *chat_prompt_logits(const struct chat *c);

#endif
