/* serve-engine.c -- natter serve's engine thread: the request queue, the chat session, the history. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "natter/chat-engine.h"
#include "natter/chat.h"
#include "natter/chatlog.h"
#include "natter/llm.h"
#include "natter/sha256.h"
#include "natter/sse.h"
#include "natter/store.h"
#include "natter/think.h"
#include "net/serve-impl.h"
#include "llm/strbuf.h"

/*
 * One thread runs every generation, in the order requests arrived: the
 * model has one KV cache, and a request that extends the previous one
 * (the same conversation one turn later) reuses its cached prefix.  The
 * chat session is of one kind at a time: chat requests render the
 * model's template; /v1/completions uses a template that passes the prompt
 * through unchanged.  A request of the other kind replaces the session
 * (and so starts with an empty cache).
 */
struct engine {
	pthread_mutex_t mu;
	pthread_cond_t wake;          /* the engine thread: work, or stop */
	pthread_cond_t progress;      /* HTTP threads: some job moved on */
	struct job *head, *tail;      /* the queue (mu) */
	int n_queued, max_queue;      /* (mu) */
	int stopping;                 /* (mu) */
	struct job *running;          /* (mu) */
	struct chat *live;            /* the session chat_cancel may reach (mu) */
	long long n_completed, n_cancelled, n_failed;   /* (mu) */
	pthread_t thread;
	int thread_started;

	/* Set at start, then read-only. */
	struct chat_opts defaults;
	int token_delay_ms;
	int reasoning_inline;         /* serve_opts */
	FILE *log;
	char model_id[256];
	char model_path[4096];
	uint64_t run_tag;             /* random, in every completion id: unique across restarts */
	struct stat model_st;         /* the file as loaded (its mtime: "created") */
	struct stat model_seen;       /* the file as model_row last found it to be the one loaded */

	/* The engine thread only (after start). */
	struct llm_model *model;
	struct chat *chat;
	enum oai_kind chat_kind;
	struct store *store;
	int64_t store_model;
	char model_sha[65];           /* its SHA-256 once computed (store_model_keep) */
	int store_warned;
};

/* What /v1/completions renders: the prompt itself. */
static const char raw_template[] = "{% for message in messages %}{{ message['content'] }}{% endfor %}";


/* --- jobs --- */

struct job *
job_new(const struct engine *e, struct oai_req *req, long long num)
{
	struct job *j = calloc(1, sizeof(*j));
	struct timespec ts;

	if (!j)
		return NULL;
	j->req = *req;
	memset(req, 0, sizeof(*req));
	j->num = num;
	j->refs = 1;
	clock_gettime(CLOCK_REALTIME, &ts);
	j->created = (long long)ts.tv_sec;
	/* The run's random tag, then the request number (unique in the run:
	 * never cut short). */
	snprintf(j->id, sizeof(j->id), "%s-%016llx%06llx", j->req.kind == OAI_CHAT ? "chatcmpl" : "cmpl",
	    (unsigned long long)e->run_tag, (unsigned long long)num);
	atomic_init(&j->gone, 0);
	return j;
}

static void
job_unref_locked(struct job *j)
{
	if (--j->refs > 0)
		return;
	oai_req_free(&j->req);
	oai_stopper_free(&j->stop);
	free(j->out);
	free(j);
}

void
job_unref(struct engine *e, struct job *j)
{
	if (!j)
		return;
	pthread_mutex_lock(&e->mu);
	job_unref_locked(j);
	pthread_mutex_unlock(&e->mu);
}

void engine_lock(struct engine *e) { pthread_mutex_lock(&e->mu); }
void engine_unlock(struct engine *e) { pthread_mutex_unlock(&e->mu); }
int engine_stopping(struct engine *e) { return e->stopping; }
const char *engine_model_id(const struct engine *e) { return e->model_id; }
long long engine_model_created(const struct engine *e) { return (long long)e->model_st.st_mtime; }

void
engine_wait(struct engine *e, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&e->progress, &e->mu, &ts);
}

/* PATH's last component (PATH itself when it has no '/'); borrowed. */
static const char *
base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

int
engine_model_matches(const struct engine *e, const char *name)
{
	const char *base = base_name(e->model_path);
	return !strcmp(name, e->model_id) || !strcmp(name, base) || !strcmp(name, e->model_path);
}

void
engine_stats_get(struct engine *e, struct engine_stats *st)
{
	pthread_mutex_lock(&e->mu);
	st->queued = e->n_queued;
	st->running = e->running != NULL;
	st->completed = e->n_completed;
	st->cancelled = e->n_cancelled;
	st->failed = e->n_failed;
	pthread_mutex_unlock(&e->mu);
}

int
engine_submit(struct engine *e, struct job *j, struct oai_error *err)
{
	pthread_mutex_lock(&e->mu);
	if (e->stopping || e->n_queued >= e->max_queue) {
		int stopping = e->stopping;
		pthread_mutex_unlock(&e->mu);
		oai_error_set(err, 503, "server_error", NULL, NULL, stopping ? "the server is shutting down" :
		    "the server is busy: %d requests are already waiting; try again later", e->max_queue);
		return -1;
	}
	j->refs++;
	j->state = JOB_QUEUED;
	j->next = NULL;
	if (e->tail)
		e->tail->next = j;
	else
		e->head = j;
	e->tail = j;
	e->n_queued++;
	pthread_cond_signal(&e->wake);
	pthread_mutex_unlock(&e->mu);
	return 0;
}

/* Takes J out of the queue (lock held); returns 1 if it was there. */
static int
unqueue(struct engine *e, struct job *j)
{
	for (struct job **p = &e->head, *prev = NULL; *p; prev = *p, p = &(*p)->next) {
		if (*p != j)
			continue;
		*p = j->next;
		if (e->tail == j)
			e->tail = prev;
		e->n_queued--;
		return 1;
	}
	return 0;
}

void
engine_cancel(struct engine *e, struct job *j)
{
	pthread_mutex_lock(&e->mu);
	atomic_store(&j->gone, 1);
	if (j->state == JOB_QUEUED && unqueue(e, j)) {
		j->state = JOB_DONE;
		e->n_cancelled++;
		serve_log(e->log, "#%lld: the client went away while the request waited; dropped", j->num);
		job_unref_locked(j);   /* the engine's reference */
	} else if (e->running == j && e->live) {
		chat_cancel(e->live);
	}
	pthread_cond_broadcast(&e->progress);
	pthread_mutex_unlock(&e->mu);
}

/* --- output for the client (engine thread) --- */

static void
out_append(struct engine *e, struct job *j, const char *p, size_t n, int sse)
{
	pthread_mutex_lock(&e->mu);
	if (sse ? sse_format(&j->out, &j->out_len, &j->out_cap, p, n) :
	    strbuf_append(&j->out, &j->out_len, &j->out_cap, p, n)) {
		/* Out of memory: the client gets a cut reply, the server goes on. */
		atomic_store(&j->gone, 1);
	}
	j->streaming = j->req.stream;
	pthread_cond_broadcast(&e->progress);
	pthread_mutex_unlock(&e->mu);
}

/* Sets J's final error: before a stream has begun, the status and a JSON
 * body; once it has, an error event and the end of the stream. */
static void
job_fail(struct engine *e, struct job *j, const struct oai_error *err)
{
	char *json = oai_error_json(err);

	pthread_mutex_lock(&e->mu);
	if (j->streaming) {
		if (json)
			sse_format(&j->out, &j->out_len, &j->out_cap, json, strlen(json));
		sse_format(&j->out, &j->out_len, &j->out_cap, "[DONE]", 6);
	} else {
		j->status = err->status;
		j->out_len = 0;
		if (json)
			strbuf_append(&j->out, &j->out_len, &j->out_cap, json, strlen(json));
	}
	pthread_cond_broadcast(&e->progress);
	pthread_mutex_unlock(&e->mu);
	free(json);
}

/* One chunk of J's stream: TEXT as content, or (REASONING) as
 * reasoning_content. */
static void
send_chunk(struct engine *e, struct job *j, const char *text, size_t len, int reasoning, const char *finish,
	   int usage_only, const struct oai_result *base)
{
	struct oai_result r = *base;
	char *json;

	r.text = reasoning ? "" : text;
	r.len = reasoning ? 0 : len;
	r.reasoning = reasoning ? text : NULL;
	r.reasoning_len = reasoning ? len : 0;
	r.finish = finish;
	r.usage = usage_only ? 1 : j->req.include_usage ? -1 : 0;
	json = oai_chunk_json(j->req.kind, &r, j->req.kind == OAI_CHAT && j->n_sent_pieces == 0 && !usage_only,
	    usage_only);
	if (!json) {
		atomic_store(&j->gone, 1);
		return;
	}
	out_append(e, j, json, strlen(json), 1);
	free(json);
	if (!usage_only)
		j->n_sent_pieces++;
}

struct piece_ctx {
	struct engine *e;
	struct job *j;
	struct oai_result base;
};

/* Starts splitting a reply to the prompt just rendered into its reasoning
 * and its answer, with the session's tags (the template may have opened
 * the reasoning).  TS borrows the tags from the session. */
static void
split_start(struct engine *e, struct think_split *ts)
{
	const char *open, *close, *pt;
	size_t plen;

	chat_think_tags(e->chat, &open, &close);
	pt = chat_prompt_text(e->chat, &plen);
	think_split_init(ts, open, close, pt && think_prompt_opens(pt, plen, open, close));
}

/* Whether J's reply goes to the client with its reasoning apart: a chat
 * reply, unless the request's reasoning_format (or else --reasoning-format)
 * says "none". */
static int
reasoning_apart(const struct engine *e, const struct job *j)
{
	return j->req.kind == OAI_CHAT && (j->req.reasoning ? j->req.reasoning > 0 : !e->reasoning_inline);
}

static void
stream_emit(void *arg, enum think_kind kind, const char *text, size_t len)
{
	struct piece_ctx *pc = arg;
	if (len > 0)
		send_chunk(pc->e, pc->j, text, len, kind == THINK_REASONING, NULL, 0, &pc->base);
}

/* Streams TEXT (past the stop strings): a chat reply's reasoning apart
 * from its answer unless --reasoning-format none.  The split starts at
 * the first piece, when the prompt it continues is rendered. */
static void
stream_text(struct piece_ctx *pc, const char *text, size_t len)
{
	struct engine *e = pc->e;
	struct job *j = pc->j;

	if (!j->split_on) {
		j->split_on = reasoning_apart(e, j) ? 1 : -1;
		if (j->split_on > 0)
			split_start(e, &j->split);
	}
	if (j->split_on > 0)
		think_split_push(&j->split, text, len, stream_emit, pc);
	else if (len > 0)
		send_chunk(e, j, text, len, 0, NULL, 0, &pc->base);
}

/* Each piece of the reply, on the engine thread: stop strings, then the stream. */
static int
on_piece(void *arg, const char *p, size_t n)
{
	struct piece_ctx *pc = arg;
	struct job *j = pc->j;
	const char *out;
	size_t outlen;
	int rc;

	if (atomic_load(&j->gone))
		return 1;
	rc = oai_stopper_push(&j->stop, p, n, &out, &outlen);
	if (outlen > 0 && j->req.stream)
		stream_text(pc, out, outlen);
	return rc != 0;
}

static void
on_notice(void *arg, const char *msg)
{
	struct engine *e = arg;
	serve_log(e->log, "%s", msg);
}

/* --- the chat session (engine thread) --- */

/* A session of KIND, reusing the current one when it is of that kind. */
static int
session_for(struct engine *e, enum oai_kind kind, char *err, size_t errlen)
{
	struct chat_opts o = e->defaults;
	char path[4096] = "";

	o.keep_turns = 1;   /* a request's messages are answered whole, or refused */
	struct chat *c = NULL;
	int rc;

	if (e->chat && e->chat_kind == kind)
		return 0;
	pthread_mutex_lock(&e->mu);
	e->live = NULL;
	pthread_mutex_unlock(&e->mu);
	chat_free(e->chat);
	e->chat = NULL;
	if (kind == OAI_COMPLETION) {
		/* chat.h reads a template from a built-in name or a file: the
		 * pass-through one goes through a private temporary file. */
		const char *tmp = getenv("TMPDIR");
		int fd;
		snprintf(path, sizeof(path), "%s/natter-raw-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		fd = mkstemp(path);
		if (fd < 0 || write(fd, raw_template, sizeof(raw_template) - 1) != (ssize_t)(sizeof(raw_template) - 1)) {
			snprintf(err, errlen, "cannot write a temporary file in %s: %s", tmp && *tmp ? tmp : "/tmp",
			    strerror(errno));
			if (fd >= 0) {
				close(fd);
				unlink(path);
			}
			return -1;
		}
		close(fd);
		o.template_spec = path;
		o.raw_text = 1;   /* the prompt "as it is": control tokens in it read */
		o.system_prompt = NULL;
	}
	rc = chat_new(e->model, &o, &c, err, errlen);
	if (path[0])
		unlink(path);
	if (rc < 0)
		return -1;
	chat_set_notice(c, on_notice, e);
	chat_set_token_delay(c, e->token_delay_ms);
	e->chat = c;
	e->chat_kind = kind;
	pthread_mutex_lock(&e->mu);
	e->live = c;
	pthread_mutex_unlock(&e->mu);
	return 0;
}

/* Where split_emit puts the reasoning and the answer. */
struct split_out {
	char *text[2];                /* indexed by enum think_kind */
	size_t len[2], cap[2];
	int oom;
};

static void
split_emit(void *ctx, enum think_kind kind, const char *text, size_t len)
{
	struct split_out *o = ctx;
	if (strbuf_append(&o->text[kind], &o->len[kind], &o->cap[kind], text, len) < 0)
		o->oom = 1;
}

/* Splits the whole reply TEXT to the prompt just answered into its
 * reasoning and its answer (*SO: free both), as natter chat does with the
 * session's tags.  Returns whether the reply has a reasoning part (0 too
 * when out of memory: the reply stays whole). */
static int
split_reply(struct engine *e, const char *text, struct split_out *so)
{
	struct think_split ts;

	memset(so, 0, sizeof(*so));
	split_start(e, &ts);
	think_split_push(&ts, text, strlen(text), split_emit, so);
	think_split_flush(&ts, split_emit, so);
	return !so->oom && think_split_entered(&ts);
}

/* The model's row in the history, recorded at start; when that failed (a
 * busy database, a full disk), tried again before each reply is recorded:
 * a reply is never stored without the model that made it, nor with a
 * file that replaced it on disk since (the row is the file's SHA-256).
 * Returns 0, or -1 with the reason in WHY. */
static int
model_row(struct engine *e, char *why, size_t n)
{
	const struct llm_hparams *hp = llm_model_hparams(e->model);
	const struct stat *was = &e->model_seen;
	struct stat stt;

	if (e->store_model)
		return 0;
	if (stat(e->model_path, &stt) != 0) {
		snprintf(why, n, "the model file is gone: %s", strerror(errno));
		return -1;
	}
	/* The same file, unchanged: its identity, size and times to the
	 * nanosecond.  Otherwise (a chmod changes the status time; a copy
	 * may have been put in its place) the same bytes if its SHA-256 is
	 * the one taken while it was unchanged (store_model_keep, at start). */
	if (stt.st_dev != was->st_dev || stt.st_ino != was->st_ino || stt.st_size != was->st_size ||
	    stt.st_mtim.tv_sec != was->st_mtim.tv_sec || stt.st_mtim.tv_nsec != was->st_mtim.tv_nsec ||
	    stt.st_ctim.tv_sec != was->st_ctim.tv_sec || stt.st_ctim.tv_nsec != was->st_ctim.tv_nsec) {
		char hex[65], err[256];
		if (!e->model_sha[0]) {   /* no hash taken at start: nothing to compare */
			snprintf(why, n, "the model file changed on disk since it was loaded");
			return -1;
		}
		if (sha256_file(e->model_path, hex, err, sizeof(err)) < 0) {
			snprintf(why, n, "the model file changed on disk since it was loaded, and cannot be read "
			    "again: %s", err);
			return -1;
		}
		if (strcmp(hex, e->model_sha) != 0) {
			snprintf(why, n, "the model file changed on disk since it was loaded");
			return -1;
		}
		e->model_seen = stt;
	}
	if (store_model_keep(e->store, e->model_path, hp->arch_name, llm_model_type_name(e->model), e->model_sha,
	    &e->store_model) < 0) {
		e->store_model = 0;
		snprintf(why, n, "%s", store_errmsg(e->store));
		return -1;
	}
	return 0;
}

/* Records the request and its reply as one conversation, with what the
 * reply was produced under (chatlog_gen: the session's rendered prompt,
 * the messages fed, the settings).  TEXT is the whole reply as the model
 * wrote it (past the stop strings, reasoning tags and all); SO, when not
 * NULL, its reasoning apart from its answer (split_reply), as the history
 * keeps them.  GONE: the client went away, which stopped it.  The only
 * place natter serve writes to the store. */
static void
record(struct engine *e, const struct job *j, const char *text, const struct split_out *so,
       const struct chat_stats *st, int gone)
{
	struct store_gen g;
	struct store_adapter adapters[CHAT_MAX_ADAPTERS];
	struct store_turn *fed = NULL;
	const char *stops[8 + OAI_MAX_STOP];
	int64_t conv, id, gen, msg;
	const char *tmpl = j->req.kind == OAI_CHAT ? chat_template_name(e->chat) : "none (/v1/completions)";
	const char *sys = j->req.kind == OAI_CHAT ? (j->req.system ? j->req.system : e->defaults.system_prompt) : NULL;
	char why[512];

	if (!e->store)
		return;
	if (model_row(e, why, sizeof(why)) < 0) {
		serve_log(e->log, "#%lld: not recorded in the history: its model could not be recorded: %s", j->num, why);
		return;
	}
	if (store_conv_new(e->store, e->store_model, NULL, tmpl, sys, &conv) < 0)
		goto fail;
	if (j->req.kind == OAI_CHAT) {
		for (int i = 0; i < j->req.n_msgs; i++)
			if (store_msg_add(e->store, conv, j->req.msgs[i].role, j->req.msgs[i].content, &id) < 0)
				goto fail;
	} else if (store_msg_add(e->store, conv, "user", j->req.prompt, &id) < 0) {
		goto fail;
	}
	if (chatlog_gen(e->chat, st, &g, adapters, &fed) < 0) {
		serve_log(e->log, "#%lld: the history could not be written: out of memory", j->num);
		return;
	}
	g.template_name = tmpl;
	/* The session's stop strings (serve --stop), then the request's. */
	for (int i = 0; i < g.n_stop && i < 8; i++)
		stops[i] = g.stop[i];
	if (g.n_stop > 8)
		g.n_stop = 8;
	for (int i = 0; i < j->req.n_stop; i++)
		stops[g.n_stop++] = j->req.stop[i];
	g.stop = stops;
	g.content = text;
	if (so) {
		g.content = so->text[THINK_ANSWER] ? so->text[THINK_ANSWER] : "";
		g.reasoning = so->text[THINK_REASONING] ? so->text[THINK_REASONING] : "";
		g.n_reasoning = st->n_reasoning;
	}
	if (gone)
		g.end = STORE_END_STOPPED;
	else if (j->stop.hit)
		g.end = STORE_END_STOP_STRING;
	g.model_id = e->store_model;
	if (store_gen_add(e->store, conv, 0, &g, &gen, &msg) < 0)
		goto fail;
	free(fed);
	return;
fail:
	free(fed);
	serve_log(e->log, "#%lld: the history could not be written: %s", j->num, store_errmsg(e->store));
}

static const char *
finish_reason(enum chat_stop s, int stop_hit)
{
	if (stop_hit)
		return "stop";
	return s == CHAT_STOP_LIMIT || s == CHAT_STOP_CONTEXT ? "length" : "stop";
}

/* J was stopped by the server's shutdown, not by its client: the client
 * is told so (503; a stream gets the error event and [DONE]), never a
 * reply that simply stops.  Returns whether it was. */
static int
shut_down(struct engine *e, struct job *j, int n_gen)
{
	struct oai_error oe;
	int stopping;

	pthread_mutex_lock(&e->mu);
	stopping = e->stopping;
	pthread_mutex_unlock(&e->mu);
	if (!stopping)
		return 0;
	serve_log(e->log, "#%lld: stopped after %d generated tokens: the server is shutting down", j->num, n_gen);
	oai_error_set(&oe, 503, "server_error", NULL, NULL, "the server is shutting down: the reply was cut off "
	    "after %d tokens", n_gen);
	job_fail(e, j, &oe);
	return 1;
}

/* Runs one request to its end (engine thread). */
static void
run_job(struct engine *e, struct job *j)
{
	struct piece_ctx pc = { e, j, { 0 } };
	struct sampler_params sp = e->defaults.sp;
	int max_tokens = e->defaults.max_tokens, rc = 0, gone, apart;
	struct chat_stats st;
	struct oai_error oe;
	struct split_out so = { { NULL, NULL }, { 0, 0 }, { 0, 0 }, 0 };
	char err[512];
	const char *text, *fin;
	char *clean = NULL;
	size_t len, clen;

	memset(&st, 0, sizeof(st));
	pc.base.id = j->id;
	pc.base.created = j->created;
	pc.base.model = e->model_id;
	oai_stopper_init(&j->stop, j->req.stop, j->req.n_stop);
	oai_req_apply(&j->req, &sp, &max_tokens);
	if (sampler_params_check(&sp, err, sizeof(err)) < 0) {
		oai_error_set(&oe, 400, "invalid_request_error", NULL, NULL, "%s", err);
		goto failed;
	}
	if (session_for(e, j->req.kind, err, sizeof(err)) < 0) {
		oai_error_set(&oe, 500, "server_error", NULL, NULL, "%s", err);
		goto failed;
	}
	chat_clear(e->chat);
	if (j->req.kind == OAI_CHAT) {
		rc = chat_set_system(e->chat, j->req.system ? j->req.system : e->defaults.system_prompt);
		for (int i = 0; rc == 0 && i < j->req.n_msgs; i++)
			rc = chat_add_message(e->chat, j->req.msgs[i].role, j->req.msgs[i].content,
			    strlen(j->req.msgs[i].content));
	} else {
		rc = chat_add_user(e->chat, j->req.prompt, strlen(j->req.prompt));
	}
	if (rc < 0) {
		oai_error_set(&oe, 500, "server_error", NULL, NULL, "out of memory");
		goto failed;
	}
	chat_set_params(e->chat, &sp);
	chat_set_max_tokens(e->chat, max_tokens);
	/* Every request its own switch: the session outlives it. */
	chat_set_think(e->chat, j->req.think > 0 ? CHAT_THINK_ON : j->req.think < 0 ? CHAT_THINK_OFF : CHAT_THINK_DEFAULT);
	/* A stop meant for the last request (its client went away after its
	 * reply ended, while its history was written) is forgotten; one for
	 * this request comes after GONE is set, so the test below or the
	 * generation sees it. */
	chat_cancel_reset(e->chat);
	if (atomic_load(&j->gone)) {
		if (!shut_down(e, j, 0))
			serve_log(e->log, "#%lld: the client went away before the generation started", j->num);
		goto cancelled;
	}
	rc = chat_generate(e->chat, on_piece, &pc, &st, err, sizeof(err));
	if (rc < 0 && !j->stop.hit && !atomic_load(&j->gone)) {
		/* All but memory are the request's fault; the code, not ERR's
		 * words, says which (a template's own words may say "context").
		 * (When we stopped the reply ourselves -- a stop string, a client gone --
		 * chat_generate may fail with "evaluation stopped": the stop reaches the
		 * evaluation of the token after the last piece.  The reply so far stands.) */
		int oom = rc == CHAT_ERR_NOMEM;
		oai_error_set(&oe, oom ? 500 : 400, oom ? "server_error" : "invalid_request_error",
		    rc == CHAT_ERR_CONTEXT ? "context_length_exceeded" : NULL,
		    oom ? NULL : j->req.kind == OAI_CHAT ? "messages" : "prompt", "%s", err);
		goto failed;
	}
	gone = atomic_load(&j->gone);
	st.n_ctx_used = chat_ctx_used(e->chat);
	st.n_ctx = chat_ctx_size(e->chat);
	if (!j->stop.hit && !gone) {
		const char *rest;
		size_t rl;
		oai_stopper_flush(&j->stop, &rest, &rl);
		if (rl > 0 && j->req.stream)
			stream_text(&pc, rest, rl);
	}
	if (!gone && j->split_on > 0)
		think_split_flush(&j->split, stream_emit, &pc);
	text = oai_stopper_text(&j->stop, &len);
	clean = oai_text_clean(text, len, &clen);
	/* The reply's reasoning apart from its answer, once: for the history,
	 * and for the client unless --reasoning-format none. */
	apart = split_reply(e, clean ? clean : "", &so);
	fin = finish_reason(st.stop, j->stop.hit);
	pc.base.prompt_tokens = st.n_prompt + st.n_reused;
	pc.base.completion_tokens = st.n_gen;
	pc.base.cached_tokens = st.n_reused;
	pc.base.reasoning_tokens = j->req.kind == OAI_CHAT ? st.n_reasoning : 0;
	if (gone) {
		record(e, j, clean ? clean : "", apart ? &so : NULL, &st, 1);
		if (!shut_down(e, j, st.n_gen))
			serve_log(e->log, "#%lld: cancelled after %d generated tokens: the client went away", j->num,
			    st.n_gen);
		goto cancelled;
	}
	if (j->req.stream) {
		send_chunk(e, j, "", 0, 0, fin, 0, &pc.base);
		if (j->req.include_usage)
			send_chunk(e, j, "", 0, 0, NULL, 1, &pc.base);
		out_append(e, j, "[DONE]", 6, 1);
	} else {
		struct oai_result r = pc.base;
		char *json;
		r.text = clean ? clean : "";
		r.len = clean ? clen : 0;
		r.finish = fin;
		r.usage = 1;
		if (reasoning_apart(e, j) && apart) {
			r.text = so.text[THINK_ANSWER] ? so.text[THINK_ANSWER] : "";
			r.len = so.len[THINK_ANSWER];
			r.reasoning = so.text[THINK_REASONING] ? so.text[THINK_REASONING] : "";
			r.reasoning_len = so.len[THINK_REASONING];
		}
		json = oai_reply_json(j->req.kind, &r);
		if (!json) {
			oai_error_set(&oe, 500, "server_error", NULL, NULL, "out of memory");
			goto failed;
		}
		out_append(e, j, json, strlen(json), 0);
		free(json);
	}
	serve_log(e->log, "#%lld: %s%s: %d prompt tokens (%d cached), %d generated, finish %s%s", j->num,
	    j->req.kind == OAI_CHAT ? "chat" : "completion", j->req.stream ? " stream" : "", st.n_prompt + st.n_reused,
	    st.n_reused, st.n_gen, fin, j->stop.hit ? " (stop string)" : "");
	record(e, j, clean ? clean : "", apart ? &so : NULL, &st, 0);
	pthread_mutex_lock(&e->mu);
	e->n_completed++;
	pthread_mutex_unlock(&e->mu);
	goto out;
failed:
	serve_log(e->log, "#%lld: %d %s", j->num, oe.status, oe.message);
	job_fail(e, j, &oe);
	pthread_mutex_lock(&e->mu);
	e->n_failed++;
	pthread_mutex_unlock(&e->mu);
	goto out;
cancelled:
	pthread_mutex_lock(&e->mu);
	e->n_cancelled++;
	pthread_mutex_unlock(&e->mu);
out:
	free(clean);
	free(so.text[0]);
	free(so.text[1]);
}

static void *
engine_main(void *arg)
{
	struct engine *e = arg;

	pthread_mutex_lock(&e->mu);
	for (;;) {
		struct job *j;
		while (!e->stopping && !e->head)
			pthread_cond_wait(&e->wake, &e->mu);
		if (e->stopping)
			break;
		j = e->head;
		e->head = j->next;
		if (!e->head)
			e->tail = NULL;
		e->n_queued--;
		j->state = JOB_RUNNING;
		j->status = 200;
		e->running = j;
		pthread_mutex_unlock(&e->mu);
		run_job(e, j);
		pthread_mutex_lock(&e->mu);
		j->state = JOB_DONE;
		e->running = NULL;
		pthread_cond_broadcast(&e->progress);
		job_unref_locked(j);
	}
	/* Stopping: whatever still waits is refused. */
	while (e->head) {
		struct job *j = e->head;
		struct oai_error oe;
		char *json;
		e->head = j->next;
		e->n_queued--;
		oai_error_set(&oe, 503, "server_error", NULL, NULL, "the server is shutting down");
		json = oai_error_json(&oe);
		j->status = 503;
		j->out_len = 0;
		if (json)
			strbuf_append(&j->out, &j->out_len, &j->out_cap, json, strlen(json));
		free(json);
		j->state = JOB_DONE;
		job_unref_locked(j);
	}
	e->tail = NULL;
	pthread_cond_broadcast(&e->progress);
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

/* A tag for this run's completion ids: random bytes, so that ids do not
 * repeat across restarts (two runs may start in the same second).  Should
 * the kernel give none, the time to the nanosecond and the process id. */
static uint64_t
run_tag_new(void)
{
	uint64_t t;
	struct timespec ts;

	if (getrandom(&t, sizeof(t), GRND_NONBLOCK) == (ssize_t)sizeof(t))
		return t;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 40);
}

int
engine_new(const struct serve_opts *o, struct engine **out, char *err, size_t errlen)
{
	struct engine *e = calloc(1, sizeof(*e));
	pthread_condattr_t ca;
	struct stat stt;
	size_t l;

	*out = NULL;
	if (!e) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->wake, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->progress, &ca);
	pthread_condattr_destroy(&ca);
	e->defaults = o->chat;
	e->token_delay_ms = o->token_delay_ms;
	e->reasoning_inline = o->reasoning_inline;
	e->max_queue = o->max_queue > 0 ? o->max_queue : SERVE_MAX_QUEUE_DEFAULT;
	e->log = o->log;
	e->run_tag = run_tag_new();
	snprintf(e->model_path, sizeof(e->model_path), "%s", o->model_path);
	snprintf(e->model_id, sizeof(e->model_id), "%s", base_name(o->model_path));
	l = strlen(e->model_id);
	if (l > 5 && !strcmp(e->model_id + l - 5, ".gguf"))
		e->model_id[l - 5] = 0;
	if (stat(o->model_path, &stt) == 0)
		e->model_st = e->model_seen = stt;
	if (llm_model_load(o->model_path, &e->model, err, errlen) < 0)
		goto fail;
	llm_model_pack(e->model);
	/* A session now: a bad template or context size is reported at start. */
	if (session_for(e, OAI_CHAT, err, errlen) < 0)
		goto fail;
	/* Told once: each later session opens the same files again. */
	if (chat_warning(e->chat))
		serve_log(e->log, "warning: %s", chat_warning(e->chat));
	if (!o->no_history) {
		char path[4096];
		const char *db = o->db ? o->db : store_default_path(path, sizeof(path), err, errlen);
		char why[512];
		if (!db) {
			size_t el = strlen(err);
			snprintf(err + el, errlen - el, " (or --no-history)");
			goto fail;
		}
		if (store_open(db, 0, &e->store, err, errlen) < 0)
			goto fail;
		if (model_row(e, why, sizeof(why)) < 0)
			serve_log(e->log, "the model could not be recorded in the history: %s (tried again with each "
			    "reply; none is recorded without it)", why);
	}
	if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
		snprintf(err, errlen, "cannot start the engine thread");
		goto fail;
	}
	e->thread_started = 1;
	*out = e;
	return 0;
fail:
	engine_free(e);
	return -1;
}

void
engine_shutdown(struct engine *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->mu);
	e->stopping = 1;
	if (e->running) {
		atomic_store(&e->running->gone, 1);
		if (e->live)
			chat_cancel(e->live);
	}
	pthread_cond_broadcast(&e->wake);
	pthread_cond_broadcast(&e->progress);
	pthread_mutex_unlock(&e->mu);
	if (e->thread_started)
		pthread_join(e->thread, NULL);
	e->thread_started = 0;
}

void
engine_free(struct engine *e)
{
	if (!e)
		return;
	engine_shutdown(e);
	chat_free(e->chat);
	llm_model_free(e->model);
	store_close(e->store);
	pthread_cond_destroy(&e->wake);
	pthread_cond_destroy(&e->progress);
	pthread_mutex_destroy(&e->mu);
	free(e);
}
