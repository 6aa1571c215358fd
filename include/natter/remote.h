/* remote.h -- chat sessions over an OpenAI-compatible server (vLLM, llama-server, ollama, LM Studio, TGI, OpenAI): the remote engine and the server's model list. */
#ifndef NATTER_REMOTE_H
#define NATTER_REMOTE_H

#include <stddef.h>

struct chat;
struct chat_opts;
struct oai_model;

/*
 * The remote engine (chat-engine.h) sends the messages fed to
 * POST BASE/chat/completions with "stream": true and reads the reply as it
 * streams (SSE); the front ends use the session as they use one over a
 * model in this process.  Sampling parameters go as the request's fields:
 * temperature, top_p, max_tokens, seed, stop, presence and frequency
 * penalties always; top_k, min_p and repeat_penalty (also written as
 * vLLM's repetition_penalty) as extras, which a server that refuses them
 * (a 400 naming one) stops getting for the rest of the session.  Every
 * failure ends in a message that says what happened and what to do; a
 * reply cut in the middle is kept, ended CHAT_STOP_ERROR.
 *
 * The API key is copied into the engine, sent only to the origin of the
 * URL as "Authorization: Bearer", wiped when the session ends, and never
 * written to a message, the request body (chat_prompt_text), the history
 * or a log: a server's error text that repeats it has it replaced.
 * libcurl must be set up first (http_global_init), before any thread.
 */

struct remote_opts {
	const char *url;             /* the server: "http://host:8000", ".../v1" or another base ending in /v1 */
	const char *model;           /* the model id to ask for (remote_model_default finds one) */
	const char *api_key;         /* NULL or "": none.  Borrowed; copied */
	const char *api_key_env;     /* the variable it came from, named in messages (NULL: none) */
	int no_extras;               /* never send top_k, min_p, repeat_penalty (--remote-extras off) */
	long connect_timeout_s;      /* 0: 10 */
	long read_timeout_s;         /* no byte for this long ends a reply as an error (0: 300) */
};

/*
 * The base URL of URL (the address every request is made under), written
 * to OUT: "http://h:8000" and "http://h:8000/" become "http://h:8000/v1";
 * a URL whose path already ends in /v1, or has another path, stays (less
 * a trailing slash).  Refuses a URL that is not http(s), that carries a
 * user name or password, a query or a fragment (a key belongs in an
 * environment variable, not in a URL that the history records).  Returns
 * 0, or -1 with ERR.  Any thread.
 */
int remote_url_base(const char *url, char *out, size_t n, char *err, size_t errlen);

/*
 * A session over the server RO describes (its strings are copied; RO->url
 * and RO->model are required), with O's system prompt, sampling
 * parameters, max_tokens and stop strings (O's template, context size and
 * threads are the server's business).  No request is made here.  Returns
 * 0, or -1 with ERR (a bad URL, out of memory).
 */
int remote_chat_new(const struct remote_opts *ro, const struct chat_opts *o, struct chat **out, char *err,
		    size_t errlen);

/*
 * GET BASE/models: what the server offers.  *OUT (caller frees) and *N.
 * Returns 0, or -1 with ERR saying what failed (as a reply's errors do).
 */
int remote_models_list(const struct remote_opts *ro, struct oai_model **out, int *n, char *err, size_t errlen);
/* The model to ask for when none is given: the server's only one.  Writes
 * its id to OUT.  Returns 0, or -1 with ERR (none, several: they are
 * named). */
int remote_model_default(const struct remote_opts *ro, char *out, size_t n, char *err, size_t errlen);

#endif
