/* serve.h -- `natter serve`: an OpenAI-compatible HTTP server over the in-process chat engine. */
#ifndef NATTER_SERVE_H
#define NATTER_SERVE_H

#include <stddef.h>
#include <stdio.h>

#include "natter/chat.h"

struct serve_opts {
	const char *model_path;
	const char *host;            /* NULL: 127.0.0.1 */
	int port;                    /* 0: any free port (serve_port tells which) */
	struct chat_opts chat;       /* the defaults a request may override */
	const char *api_key;         /* NULL: no authentication.  Borrowed; never written anywhere */
	const char *db;              /* NULL: the default database */
	int no_history;
	int token_delay_ms;          /* slows replies down (tests, demos) */
	int reasoning_inline;        /* chat replies: the reasoning in content between its tags, as the
	                              * model wrote it (0: apart, in reasoning_content) */
	int max_queue;               /* requests waiting at most (0: SERVE_MAX_QUEUE_DEFAULT); more get 503 */
	int idle_timeout;            /* seconds a connection may send nothing, when the server is not
	                              * working for it, before it is closed (0: SERVE_IDLE_TIMEOUT_DEFAULT) */
	FILE *log;                   /* one line per request (NULL: none) */
};

/* The idle timeout's default, in seconds; the queue's default length;
 * connections served at once (at least: twice the limit of one address
 * with the connections past it that get a 429, when that is more).  One
 * address may hold the queue's length + SERVE_PER_IP_EXTRA connections --
 * the queue full, the request running (so that clients behind one proxy
 * see the 503 of a full queue) and four more for /health and the 503s --
 * so that one client cannot take every slot: past the total a new
 * connection is closed at once; past an address's share a few more get a
 * 429 (the OpenAI error object) if they send a request at once, any beyond
 * are closed.  Plain numbers: serve --help spells them (and man/natter.1
 * says them too). */
#define SERVE_IDLE_TIMEOUT_DEFAULT 30
#define SERVE_MAX_QUEUE_DEFAULT 16
#define SERVE_CONNECTION_LIMIT 128
#define SERVE_PER_IP_EXTRA 5

struct serve;

/*
 * Loads the model, opens the history, binds HOST:PORT and starts serving:
 * GET /health, GET /v1/models, POST /v1/chat/completions, POST
 * /v1/completions.  Requests wait in one queue and run one at a time on
 * the engine thread, which owns the chat session and the store connection;
 * the HTTP threads only parse, queue, wait and send.  Returns 0, or -1 with
 * ERR set (model, database, address in use ...).  Called by the main thread.
 */
int serve_start(const struct serve_opts *o, struct serve **out, char *err, size_t errlen);
/* The port actually bound. */
int serve_port(const struct serve *s);
/* The model id clients name in requests. */
const char *serve_model_id(const struct serve *s);
/* Stops accepting, cancels the running generation, fails the queued
 * requests (503), joins every thread and frees S.  NULL is a no-op. */
void serve_stop(struct serve *s);

#endif
