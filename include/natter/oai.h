/* oai.h -- the OpenAI-compatible API: requests parsed and checked, replies and stream chunks built and read. */
#ifndef NATTER_OAI_H
#define NATTER_OAI_H

#include <stddef.h>
#include <stdint.h>

#include "natter/sampler.h"

/*
 * Pure functions over JSON text (cJSON inside), shared by `natter serve`
 * (parses requests, builds replies) and the remote engine client (builds
 * requests with oai_req_to_json, reads replies and chunks with
 * oai_reply_parse).  Any thread; nothing global.
 */

enum oai_kind { OAI_CHAT, OAI_COMPLETION };

#define OAI_MAX_STOP 8
/* Request bodies larger than this are refused (413) by the server. */
#define OAI_MAX_BODY ((size_t)4 << 20)

/* A message after normalisation: role "user", "assistant" or "system"
 * (developer messages are system ones; those before the first user or
 * assistant message are gathered into oai_req.system instead). */
struct oai_msg {
	char *role;
	char *content;
};

/* Bits of oai_req.set: the optional fields the request gave. */
enum {
	OAI_SET_TEMP = 1 << 0,
	OAI_SET_TOP_P = 1 << 1,
	OAI_SET_TOP_K = 1 << 2,
	OAI_SET_MIN_P = 1 << 3,
	OAI_SET_REPEAT = 1 << 4,
	OAI_SET_PRESENCE = 1 << 5,
	OAI_SET_FREQUENCY = 1 << 6,
	OAI_SET_SEED = 1 << 7,
	OAI_SET_MAX_TOKENS = 1 << 8,
};
/* The fields llama-server and vLLM read that OpenAI's API does not have
 * (top_k, min_p, and repeat_penalty, written also as vLLM's
 * repetition_penalty): a client leaves them out for a server that
 * refuses them. */
#define OAI_SET_EXTRAS (OAI_SET_TOP_K | OAI_SET_MIN_P | OAI_SET_REPEAT)

/* The OAI_SET_ bit of request field NAME (0 when natter does not know it)
 * and, in *EXTRA (may be NULL), whether it is one of OAI_SET_EXTRAS. */
unsigned oai_param_bit(const char *name, int *extra);
/* The first field name among BITS that TEXT (a server's error message)
 * names as a word, or NULL: what "Unrecognized request argument supplied:
 * top_k" refuses.  Static string. */
const char *oai_param_named(const char *text, unsigned bits);

struct oai_req {
	enum oai_kind kind;
	char *model;
	char *system;                /* chat: the leading system/developer messages, joined; NULL if none */
	struct oai_msg *msgs;        /* chat: (n_msgs), at least one; the last may be the assistant's */
	int n_msgs;
	char *prompt;                /* completion: the raw prompt */
	int stream;
	int include_usage;           /* stream_options.include_usage */
	unsigned set;                /* OAI_SET_* */
	double temperature, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty;
	int top_k;
	int max_tokens;              /* max_tokens or max_completion_tokens */
	int max_completion_tokens;   /* oai_req_to_json writes max_tokens under its newer name */
	uint64_t seed;               /* SAMPLER_SEED_RANDOM for -1 */
	char *stop[OAI_MAX_STOP];    /* non-empty stop strings */
	int n_stop;
	int think;                   /* chat_template_kwargs.enable_thinking: 1 true, -1 false, 0 not given */
	int reasoning;               /* llama-server's reasoning_format: 1 apart ("deepseek", "auto"),
	                              * -1 in content ("none"), 0 not given */
};

/* An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}. */
struct oai_error {
	int status;                  /* the HTTP status */
	const char *type;            /* "invalid_request_error", "authentication_error", "server_error" ... */
	const char *code;            /* NULL or e.g. "model_not_found" */
	char param[64];              /* "" for null */
	char message[512];
};

void oai_error_set(struct oai_error *e, int status, const char *type, const char *code, const char *param,
		   const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The error as JSON (caller frees); NULL when out of memory. */
char *oai_error_json(const struct oai_error *e);

/*
 * Parses and checks the body of a request of KIND: JSON syntax, the type
 * and range of every field natter reads (temperature, top_p, top_k, min_p,
 * repeat_penalty, presence_penalty, frequency_penalty, seed, max_tokens /
 * max_completion_tokens, stop, stream, stream_options, n), the messages
 * (roles system, developer, user, assistant; content a string or text
 * parts) or the prompt, and refuses what natter cannot do (tools, images,
 * logprobs, n > 1, echo, suffix ...).  Unknown fields are ignored.  Returns
 * 0 with *R filled (free it with oai_req_free), or -1 with *E set (status
 * 400, param naming the field).  The model name is not checked here.
 */
int oai_req_parse(enum oai_kind kind, const char *body, size_t len, struct oai_req *r, struct oai_error *e);
void oai_req_free(struct oai_req *r);
/* The request as JSON (caller frees), as a client sends it. */
char *oai_req_to_json(const struct oai_req *r);
/* Applies the request's sampling fields over *SP and *MAX_TOKENS (which
 * hold the server's defaults). */
void oai_req_apply(const struct oai_req *r, struct sampler_params *sp, int *max_tokens);

/* A reply, whole or one chunk of a stream. */
struct oai_result {
	const char *id;              /* "chatcmpl-..." / "cmpl-..." */
	long long created;           /* unix time */
	const char *model;
	const char *text;            /* content (whole reply, or this chunk's delta) */
	size_t len;
	const char *reasoning;       /* chat: reasoning_content (whole, or this chunk's delta); NULL: none */
	size_t reasoning_len;
	const char *finish;          /* "stop", "length" or NULL */
	int usage;                   /* include usage */
	int prompt_tokens, completion_tokens, cached_tokens;
	int reasoning_tokens;        /* usage.completion_tokens_details.reasoning_tokens (0: left out) */
};

/* The non-streamed reply (chat.completion or text_completion).  Caller frees.
 * A chat reply's message has "reasoning_content" (DeepSeek's and
 * llama-server's field) when RES->reasoning is set. */
char *oai_reply_json(enum oai_kind kind, const struct oai_result *res);
/* One chunk of a stream (its delta has "reasoning_content" when
 * RES->reasoning is nonempty).  ROLE: the first chat chunk (delta carries the
 * role).  USAGE_ONLY: the last chunk of stream_options.include_usage
 * (empty choices).  Chunks other than that have "usage": null when
 * include_usage was asked (R->usage is then -1).  Caller frees. */
char *oai_chunk_json(enum oai_kind kind, const struct oai_result *res, int role, int usage_only);

/* What oai_reply_parse reads back from a reply or a chunk. */
struct oai_parsed {
	char *text;                  /* content / delta content / text ("" if none); caller frees */
	char *reasoning;             /* delta reasoning_content or reasoning ("" if none); caller frees */
	int has_choice;              /* choices[0] was there (a usage-only chunk has none) */
	char finish[32];             /* "" when null: "stop", "length", TGI's "eos_token" ... */
	char stop_reason[64];        /* vLLM: the stop string (or token id) that ended it; "" when null */
	int stop_reason_given;       /* the field was there, null or not (vLLM's null: no stop string) */
	int has_usage;
	int prompt_tokens, completion_tokens, cached_tokens;
	int reasoning_tokens;        /* usage.completion_tokens_details.reasoning_tokens; -1 when absent */
	int has_timings;             /* llama-server's "timings" */
	int t_prompt_n, t_predicted_n, t_cache_n;
	double t_prompt_ms, t_predicted_ms, t_prompt_per_second, t_predicted_per_second;
	char error[512];             /* the error's message when the JSON is an error ("" otherwise) */
	char error_type[64], error_param[64], error_code[64];   /* "" when absent */
	char model[128];             /* the model the server says answered ("" when absent) */
	char fingerprint[64];        /* its system_fingerprint ("" when absent) */
};
/* Reads a chat.completion, chat.completion.chunk, text_completion or an
 * error object (OpenAI's shape, vLLM's older flat one, TGI's string).
 * Returns 0 (an error object included: *P.error is set), or -1 when the
 * JSON is not one of these (P is then empty). */
int oai_reply_parse(const char *json, size_t len, struct oai_parsed *p);
void oai_parsed_free(struct oai_parsed *p);
/* Reads an error sent in the middle of a stream: an error object as
 * oai_reply_parse reads one, or llama-server's bare {"code", "message",
 * "type"}.  Returns 0 with *P.error set, or -1 when JSON holds no error
 * message.  (P holds no text to free.) */
int oai_error_parse(const char *json, size_t len, struct oai_parsed *p);

/* One entry of GET /v1/models. */
struct oai_model {
	char id[256];
	char owned_by[64];           /* "" when absent */
	long long created;           /* unix time; 0 when absent */
	int max_model_len;           /* vLLM's context length; 0 when absent */
};
/* Reads a model list ({"object": "list", "data": [...]}).  Returns 0 with
 * *OUT (caller frees; NULL when empty) and *N, or -1 when JSON is not one. */
int oai_models_parse(const char *json, size_t len, struct oai_model **out, int *n);

/* Model text made safe for JSON strings: invalid UTF-8 and NUL bytes become
 * U+FFFD.  Returns a new string (caller frees), *OUTLEN its length. */
char *oai_text_clean(const char *s, size_t n, size_t *outlen);

/*
 * Stop strings applied to a stream of text: text that may still turn into
 * a stop string is held back until it cannot.  One thread.
 */
struct oai_stopper {
	char *const *stops;          /* borrowed */
	int n_stops;
	char *acc;                   /* the reply so far */
	size_t len, cap, emitted;
	int hit;                     /* a stop string completed */
};
void oai_stopper_init(struct oai_stopper *s, char *const *stops, int n_stops);
/* Adds a piece; *OUT and *OUTLEN get the text that may be sent now (borrowed
 * until the next call).  Returns 1 when a stop string completed (the reply
 * ends before it), 0 otherwise, -1 when out of memory. */
int oai_stopper_push(struct oai_stopper *s, const char *p, size_t n, const char **out, size_t *outlen);
/* The reply is over: what was held back. */
void oai_stopper_flush(struct oai_stopper *s, const char **out, size_t *outlen);
/* The reply as sent (up to a stop string). */
const char *oai_stopper_text(const struct oai_stopper *s, size_t *len);
void oai_stopper_free(struct oai_stopper *s);

#endif
