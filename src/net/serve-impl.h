/* serve-impl.h -- between the HTTP side of natter serve (serve.c) and its engine thread (serve-engine.c). */
#ifndef NATTER_SERVE_IMPL_H
#define NATTER_SERVE_IMPL_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "natter/oai.h"
#include "natter/serve.h"
#include "natter/think.h"

struct engine;

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

/*
 * One completion request.  The HTTP thread that received it creates it,
 * the engine thread runs it; both hold a reference.  Fields marked
 * "engine.mu" are read and written under engine_lock.
 */
struct job {
	struct oai_req req;          /* the parsed request (owned) */
	long long num;               /* request number, for the log */
	char id[48];                 /* "chatcmpl-..." or "cmpl-..." */
	long long created;
	atomic_int gone;             /* the client went away: stop and send nothing */

	/* engine.mu */
	enum job_state state;
	int refs;
	struct job *next;            /* in the queue */
	char *out;                   /* bytes for the client: SSE events, or the whole JSON reply */
	size_t out_len, out_cap, out_sent;
	int status;                  /* HTTP status: 200, or an error's (then OUT holds the error JSON) */
	int streaming;               /* a stream's first event is in OUT: the 200 headers may go */

	/* the engine thread only */
	struct oai_stopper stop;
	int n_sent_pieces;
	struct think_split split;    /* a chat stream's reasoning apart from its answer */
	int split_on;                /* 0 undecided (before the first piece), 1 splitting, -1 not */
};

/* One line of the server's log on LOG (NULL: none), "natter serve: "
 * first; control characters and bytes that are not UTF-8 (clients name
 * paths and models) written as \xNN; written in one call, so that lines
 * of several threads never mix. */
void serve_log(FILE *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Creates the engine: loads the model, opens the history (unless
 * O->no_history), and starts the engine thread.  Returns 0 or -1 with ERR. */
int engine_new(const struct serve_opts *o, struct engine **out, char *err, size_t errlen);
/* Stops the engine thread: the running job is cancelled, queued ones are
 * refused (503), every job ends up JOB_DONE.  Jobs and the lock stay
 * usable until engine_free.  Idempotent. */
void engine_shutdown(struct engine *e);
/* Shuts down (if needed) and frees.  NULL is a no-op. */
void engine_free(struct engine *e);
const char *engine_model_id(const struct engine *e);
long long engine_model_created(const struct engine *e);
/* Does NAME (a request's "model") name the loaded model? */
int engine_model_matches(const struct engine *e, const char *name);

/* A new job for REQ (whose contents it takes over; REQ is zeroed), request
 * number NUM of E's run (its id: E's random tag and NUM, so unique within
 * the run and across runs).  One reference, the caller's.  NULL when out
 * of memory. */
struct job *job_new(const struct engine *e, struct oai_req *req, long long num);
/* Queues J (the engine takes its own reference).  Returns 0, or -1 with
 * ERR set to 503 when the queue is full or the server is stopping. */
int engine_submit(struct engine *e, struct job *j, struct oai_error *err);
/* The client of J went away: stops its generation (or drops it from the
 * queue).  Any thread; takes the lock. */
void engine_cancel(struct engine *e, struct job *j);
/* Drops a reference (frees J at zero).  Any thread; takes the lock. */
void job_unref(struct engine *e, struct job *j);

/* The lock over jobs and counters, and a wait for progress: returns after
 * a job changed or MS milliseconds passed.  engine_wait needs the lock. */
void engine_lock(struct engine *e);
void engine_unlock(struct engine *e);
void engine_wait(struct engine *e, int ms);
int engine_stopping(struct engine *e);   /* lock held */

/* For GET /health: counters (lock not needed; a snapshot). */
struct engine_stats {
	int queued;
	int running;
	long long completed, cancelled, failed;
};
void engine_stats_get(struct engine *e, struct engine_stats *st);

#endif
