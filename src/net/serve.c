/* serve.c -- natter serve's HTTP side (libmicrohttpd): routes, authentication, body limits, streaming. */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "natter/oai.h"
#include "natter/serve.h"
#include "llm/unicode.h"
#include "net/serve-impl.h"

/*
 * libmicrohttpd runs one thread per connection.  A handler parses and
 * checks the request, queues a job for the engine thread and waits for
 * it; while waiting it looks at the socket every 100 ms, so a client that
 * goes away (while its request waits in the queue, while the prompt is
 * read, or mid-stream) cancels its generation.  See serve_peer_gone for
 * what "goes away" means: an end of file alone does not, since a client
 * may shut down its sending side and still read the reply.
 *
 * Connection slots are few (one thread each): a connection that sends
 * nothing for the idle timeout is closed, and one address holds at most
 * the queue's length + SERVE_PER_IP_EXTRA of them, so idle or trickling clients cannot lock the
 * others out.  The next PER_IP_REFUSED connections of an address past its
 * share are let in to be told so (429, the OpenAI error object), if they
 * ask within REFUSED_TIMEOUT seconds; libmicrohttpd closes any more at
 * once, unanswered (a thread each is what the limit saves).
 *
 * While the engine works for a request (the handler waits, or a stream
 * waits for its next piece) the connection has no timeout:
 * the wait is ours, not the client's; it is set again before control
 * goes back to libmicrohttpd, which restarts its clock.
 */

/* Bodies up to this size are read (and thrown away) before a 413, so that
 * a client still sending gets the answer; past it the connection closes. */
#define DRAIN_LIMIT ((uint64_t)64 << 20)
#define POLL_MS 100
/* Seconds before a 503's client should try again (Retry-After). */
#define RETRY_AFTER "5"
/* Connections of an address past its share that are answered 429, and
 * the seconds they have to send their request. */
#define PER_IP_REFUSED 4u
#define REFUSED_TIMEOUT 2u

/* One address's connections (serve.mu).  LEN 0: a free slot. */
struct peer {
	unsigned char addr[16];
	unsigned char len;
	unsigned n;
};

/* A connection's address, and whether it came past its address's share
 * (libmicrohttpd's socket context: on_connection). */
struct sock {
	unsigned char addr[16];
	unsigned char len;           /* 0: an address of no known family, not counted */
	int over;
};

struct serve {
	struct engine *eng;
	struct MHD_Daemon *d;
	int port;
	char *api_key;               /* a private copy, wiped at the end */
	size_t key_len;
	FILE *log;
	unsigned idle_timeout;       /* seconds without a byte before a connection closes */
	atomic_llong n_requests;
	/* Requests being answered (their response queued or being made) and
	 * not yet completed: serve_stop lets them finish before the connections
	 * close.  A request whose body is still coming in is not one: it has
	 * nothing to be sent, and waiting for it would only delay the stop. */
	pthread_mutex_t mu;
	pthread_cond_t idle;
	int active;
	/* Connections per address (mu): at most one slot per connection. */
	struct peer *peers;
	unsigned n_peers;            /* slots */
	unsigned per_ip;             /* an address's share */
};

/* Whether a peer that has closed its sending side may be asked if it is
 * still there (serve_peer_gone): only before any response, to an HTTP/1.1
 * client, and once. */
enum probe { PROBE_NEVER, PROBE_CAN, PROBE_SENT };

struct conn;
typedef enum MHD_Result (*route_fn)(struct serve *s, struct MHD_Connection *c, struct conn *r);

/* One request on a connection (libmicrohttpd's per-request pointer). */
struct conn {
	const struct route *route;
	long long num;
	char *body;
	size_t len, cap;
	uint64_t received;
	int too_big;
	int answered;                /* a response was queued before the body was read */
	int counted;                 /* in serve.active (conn_answering) */
	int fd;
	enum probe probe;            /* whether serve_peer_gone may probe the client */
	char allow[32];              /* a 405's Allow header: the path's methods */
	const char *rest;            /* a prefix route: the rest of the path */
};

/* A streamed response's state (libmicrohttpd's callback argument). */
struct stream {
	struct serve *s;
	struct MHD_Connection *c;
	struct job *j;               /* one reference */
	int fd;
};

static enum MHD_Result h_health(struct serve *s, struct MHD_Connection *c, struct conn *r);
static enum MHD_Result h_models(struct serve *s, struct MHD_Connection *c, struct conn *r);
static enum MHD_Result h_model(struct serve *s, struct MHD_Connection *c, struct conn *r);
static enum MHD_Result h_chat(struct serve *s, struct MHD_Connection *c, struct conn *r);
static enum MHD_Result h_completions(struct serve *s, struct MHD_Connection *c, struct conn *r);

static const struct route {
	const char *method;
	const char *path;
	int prefix;                  /* PATH followed by anything matches */
	int auth;                    /* needs the API key (when one is set) */
	int body;                    /* reads a request body */
	route_fn fn;
} routes[] = {
	{ "GET", "/health", 0, 0, 0, h_health },
	{ "GET", "/v1/models", 0, 1, 0, h_models },
	{ "GET", "/v1/models/", 1, 1, 0, h_model },
	{ "POST", "/v1/chat/completions", 0, 1, 1, h_chat },
	{ "POST", "/v1/completions", 0, 1, 1, h_completions },
};

/* Copies S into OUT (CAP bytes, at least 5; always terminated) with
 * what a terminal or a log reader could take for something else written
 * as \xNN: C0 controls, DEL, C1 controls (U+0080..U+009F) and every byte
 * that is not part of valid UTF-8.  Stops early rather than cut an escape. */
static void
log_escape(const char *s, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), o = 0;

	for (size_t i = 0; i < n;) {
		uint32_t cp;
		const size_t l = utf8_decode(u + i, n - i, &cp);   /* a bad byte alone: l 1 */
		if (cp >= UCP_RAW_BYTE || cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) {
			if (o + 4 * l >= cap)
				break;
			for (size_t b = i; b < i + l; b++) {
				out[o++] = '\\';
				out[o++] = 'x';
				out[o++] = hex[u[b] >> 4];
				out[o++] = hex[u[b] & 15];
			}
		} else {
			if (o + l >= cap)
				break;
			memcpy(out + o, u + i, l);
			o += l;
		}
		i += l;
	}
	out[o] = 0;
}

void
serve_log(FILE *log, const char *fmt, ...)
{
	va_list ap;
	char line[1024], shown[4 * sizeof(line)];

	if (!log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_escape(line, shown, sizeof(shown));
	fprintf(log, "natter serve: %s\n", shown);
	fflush(log);
}

/* --- responses --- */

/* Queues a JSON response (a copy of JSON) with the headers its status
 * calls for: 401 WWW-Authenticate, 405 Allow (R's methods of the path),
 * 503 and 429 Retry-After, 429 Connection: close.  MHD_NO (the
 * connection closes) when out of memory. */
static enum MHD_Result
send_json(struct MHD_Connection *c, const struct conn *r, int status, const char *json, size_t len)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)json, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result rc = MHD_YES;

	if (!resp)
		return MHD_NO;
	if (MHD_add_response_header(resp, "Content-Type", "application/json") != MHD_YES)
		rc = MHD_NO;
	if (status == 401 && MHD_add_response_header(resp, "WWW-Authenticate", "Bearer") != MHD_YES)
		rc = MHD_NO;
	if (status == 405 && r && r->allow[0] && MHD_add_response_header(resp, "Allow", r->allow) != MHD_YES)
		rc = MHD_NO;
	if ((status == 503 || status == 429) && MHD_add_response_header(resp, "Retry-After", RETRY_AFTER) != MHD_YES)
		rc = MHD_NO;
	/* A connection past its address's share is not kept. */
	if (status == 429 && MHD_add_response_header(resp, "Connection", "close") != MHD_YES)
		rc = MHD_NO;
	if (rc == MHD_YES)
		rc = MHD_queue_response(c, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result
send_error(struct serve *s, struct MHD_Connection *c, struct conn *r, const struct oai_error *e)
{
	char *json = oai_error_json(e);
	enum MHD_Result rc;

	serve_log(s->log, "#%lld: %d %s", r->num, e->status, e->message);
	if (!json)
		return MHD_NO;
	rc = send_json(c, r, e->status, json, strlen(json));
	free(json);
	return rc;
}

static enum MHD_Result
send_cjson(struct MHD_Connection *c, const struct conn *r, int status, cJSON *root)
{
	char *json = root ? cJSON_PrintUnformatted(root) : NULL;
	enum MHD_Result rc = json ? send_json(c, r, status, json, strlen(json)) : MHD_NO;
	free(json);
	cJSON_Delete(root);
	return rc;
}

/* --- the client's socket --- */

/* The interim response that asks a half-closed peer whether it is still
 * there: HTTP/1.1 clients must read and skip any 1xx before the answer
 * (RFC 9110, 15.2). */
static const char probe_msg[] = "HTTP/1.1 100 Continue\r\n\r\n";

/*
 * 1 when the peer of FD is gone: the connection was reset or broke
 * (POLLHUP, POLLERR, a read's ECONNRESET), or a send to it failed.  An
 * end of file alone is not enough: a client may shut down its sending
 * side once its request is out and still read the reply.  A peer that has
 * closed the socket altogether looks the same until something is sent to
 * it, which its system answers with a reset; so when *PROBE is PROBE_CAN
 * (no response has started, an HTTP/1.1 client) the first end of file is
 * answered with "100 Continue" and *PROBE becomes PROBE_SENT, and the next
 * look sees the reset.  Without a probe, a closed peer is noticed when its
 * reply is sent.  Called by the connection's own thread only (the probe
 * writes to its socket); never blocks.
 */
static int
serve_peer_gone(int fd, enum probe *probe)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char b;
	ssize_t n;

	if (fd < 0)
		return 0;
	if (poll(&pfd, 1, 0) < 0)
		return 0;   /* EINTR, ENOMEM: look again next time */
	if (pfd.revents & (POLLHUP | POLLERR | POLLNVAL))
		return 1;
	if (!(pfd.revents & POLLIN))
		return 0;
	n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0)
		return 0;   /* the next request, pipelined */
	if (n < 0)
		return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
	/* The end of its sending side: half-closed, or closed.  An HTTP/1.0
	 * client (nginx's default to a backend) cannot be asked: its end of
	 * file is taken as gone, as a closed client's must be noticed. */
	if (probe && *probe == PROBE_NEVER)
		return 1;
	if (!probe || *probe != PROBE_CAN)
		return 0;
	*probe = PROBE_SENT;
	n = send(fd, probe_msg, sizeof(probe_msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

/*
 * The connection C's timeout: none while BUSY (the engine works for it: the
 * wait is the server's, and the handler watches the peer), else the idle
 * timeout, counted from now (libmicrohttpd restarts its clock when a
 * timeout is set where there was none).  The connection's own thread only.
 */
static void
serve_conn_busy(struct serve *s, struct MHD_Connection *c, int busy)
{
	if (MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, busy ? 0u : s->idle_timeout) != MHD_YES)
		serve_log(s->log, "libmicrohttpd refused a connection's timeout");
}

/* Waits until J is done, or (STREAM) has bytes to send.  Returns 0, or -1
 * when the client went away (J is then cancelled). */
static int
wait_job(struct serve *s, struct job *j, int fd, enum probe *probe, int stream)
{
	for (;;) {
		int ready;
		engine_lock(s->eng);
		ready = j->state == JOB_DONE || (stream && j->streaming);
		if (!ready)
			engine_wait(s->eng, POLL_MS);
		ready = j->state == JOB_DONE || (stream && j->streaming);
		engine_unlock(s->eng);
		if (ready)
			return 0;
		if (serve_peer_gone(fd, probe)) {
			engine_cancel(s->eng, j);
			return -1;
		}
	}
}

/* libmicrohttpd's content reader of a stream: the next bytes of ST's job,
 * waiting for the engine (without a timeout: the wait is the server's) as
 * long as the client is there. */
static ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *st = cls;
	struct job *j = st->j;
	ssize_t rc;

	(void)pos;
	serve_conn_busy(st->s, st->c, 1);
	for (;;) {
		engine_lock(st->s->eng);
		if (j->out_len > j->out_sent) {
			size_t n = j->out_len - j->out_sent;
			if (n > max)
				n = max;
			memcpy(buf, j->out + j->out_sent, n);
			j->out_sent += n;
			engine_unlock(st->s->eng);
			rc = (ssize_t)n;
			break;
		}
		if (j->state == JOB_DONE) {
			engine_unlock(st->s->eng);
			rc = MHD_CONTENT_READER_END_OF_STREAM;
			break;
		}
		engine_wait(st->s->eng, POLL_MS);
		engine_unlock(st->s->eng);
		/* The 200 is out: no probe (a 1xx now would be taken for the
		 * body); a closed peer is seen when the next piece is sent. */
		if (serve_peer_gone(st->fd, NULL)) {
			engine_cancel(st->s->eng, j);
			rc = MHD_CONTENT_READER_END_WITH_ERROR;
			break;
		}
	}
	serve_conn_busy(st->s, st->c, 0);
	return rc;
}

static void
stream_free(void *cls)
{
	struct stream *st = cls;
	int done;

	engine_lock(st->s->eng);
	done = st->j->state == JOB_DONE;
	engine_unlock(st->s->eng);
	if (!done)
		engine_cancel(st->s->eng, st->j);   /* the connection ended under the stream */
	job_unref(st->s->eng, st->j);
	free(st);
}

/* --- handlers --- */

static enum MHD_Result
h_health(struct serve *s, struct MHD_Connection *c, struct conn *r)
{
	struct engine_stats st;
	cJSON *root = cJSON_CreateObject();

	engine_stats_get(s->eng, &st);
	cJSON_AddStringToObject(root, "status", "ok");
	cJSON_AddStringToObject(root, "model", engine_model_id(s->eng));
	cJSON_AddNumberToObject(root, "queued", st.queued);
	cJSON_AddBoolToObject(root, "running", st.running);
	cJSON_AddNumberToObject(root, "completed", (double)st.completed);
	cJSON_AddNumberToObject(root, "cancelled", (double)st.cancelled);
	cJSON_AddNumberToObject(root, "failed", (double)st.failed);
	return send_cjson(c, r, 200, root);
}

static cJSON *
model_object(struct serve *s)
{
	cJSON *m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "id", engine_model_id(s->eng));
	cJSON_AddStringToObject(m, "object", "model");
	cJSON_AddNumberToObject(m, "created", (double)engine_model_created(s->eng));
	cJSON_AddStringToObject(m, "owned_by", "natter");
	return m;
}

static enum MHD_Result
h_models(struct serve *s, struct MHD_Connection *c, struct conn *r)
{
	cJSON *root = cJSON_CreateObject(), *data;

	cJSON_AddStringToObject(root, "object", "list");
	data = cJSON_AddArrayToObject(root, "data");
	cJSON_AddItemToArray(data, model_object(s));
	return send_cjson(c, r, 200, root);
}

static enum MHD_Result
not_found_model(struct serve *s, struct MHD_Connection *c, struct conn *r, const char *name)
{
	struct oai_error e;
	oai_error_set(&e, 404, "invalid_request_error", "model_not_found", "model",
	    "The model '%.200s' does not exist: this server has '%s'", name, engine_model_id(s->eng));
	return send_error(s, c, r, &e);
}

static enum MHD_Result
h_model(struct serve *s, struct MHD_Connection *c, struct conn *r)
{
	const char *name = r->rest ? r->rest : "";

	if (!engine_model_matches(s->eng, name))
		return not_found_model(s, c, r, name);
	return send_cjson(c, r, 200, model_object(s));
}

static enum MHD_Result
h_generate(struct serve *s, struct MHD_Connection *c, struct conn *r, enum oai_kind kind)
{
	struct oai_req req;
	struct oai_error e;
	struct job *j;
	enum MHD_Result rc;

	if (oai_req_parse(kind, r->body ? r->body : "", r->len, &req, &e) < 0)
		return send_error(s, c, r, &e);
	if (!engine_model_matches(s->eng, req.model)) {
		rc = not_found_model(s, c, r, req.model);
		oai_req_free(&req);
		return rc;
	}
	j = job_new(s->eng, &req, r->num);
	if (!j) {
		oai_req_free(&req);
		oai_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
		return send_error(s, c, r, &e);
	}
	if (engine_submit(s->eng, j, &e) < 0) {
		job_unref(s->eng, j);
		return send_error(s, c, r, &e);
	}
	if (wait_job(s, j, r->fd, &r->probe, j->req.stream) < 0) {
		serve_log(s->log, "#%lld: the client went away", r->num);
		job_unref(s->eng, j);
		return MHD_NO;   /* close the connection */
	}
	engine_lock(s->eng);
	if (j->streaming) {
		/* The prompt was accepted and the first event is ready: 200 and the stream. */
		struct stream *st = calloc(1, sizeof(*st));
		struct MHD_Response *resp;
		engine_unlock(s->eng);
		if (!st) {
			engine_cancel(s->eng, j);
			job_unref(s->eng, j);
			return MHD_NO;
		}
		st->s = s;
		st->c = c;
		st->j = j;
		st->fd = r->fd;
		resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
		if (!resp) {
			stream_free(st);
			return MHD_NO;
		}
		MHD_add_response_header(resp, "Content-Type", "text/event-stream");
		MHD_add_response_header(resp, "Cache-Control", "no-cache");
		rc = MHD_queue_response(c, 200, resp);
		MHD_destroy_response(resp);
		return rc;
	}
	engine_unlock(s->eng);
	if (j->out_len == 0) {
		/* Cancelled by the server's shutdown. */
		job_unref(s->eng, j);
		oai_error_set(&e, 503, "server_error", NULL, NULL, "the server is shutting down");
		return send_error(s, c, r, &e);
	}
	/* Done: the whole reply, or the error, is in OUT. */
	rc = send_json(c, r, j->status, j->out, j->out_len);
	job_unref(s->eng, j);
	return rc;
}

static enum MHD_Result
h_chat(struct serve *s, struct MHD_Connection *c, struct conn *r)
{
	return h_generate(s, c, r, OAI_CHAT);
}

static enum MHD_Result
h_completions(struct serve *s, struct MHD_Connection *c, struct conn *r)
{
	return h_generate(s, c, r, OAI_COMPLETION);
}

/* --- dispatch --- */

/* "Bearer KEY" compared in constant time (for the key's length). */
static int
auth_ok(struct serve *s, struct MHD_Connection *c)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	unsigned char diff = 0;
	size_t n;

	if (!s->api_key)
		return 1;
	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return 0;
	h += 7;
	while (*h == ' ')
		h++;
	n = strlen(h);
	for (size_t i = 0; i < s->key_len; i++)
		diff |= (unsigned char)(s->api_key[i] ^ (i < n ? h[i] : 0));
	return diff == 0 && n == s->key_len;
}

/* The route of METHOD on URL, or NULL; then ALLOW (ALLOW_LEN bytes) holds
 * the methods the path has, comma-separated (a 405's Allow header), or ""
 * when no route has the path (404). */
static const struct route *
route_find(const char *method, const char *url, char *allow, size_t allow_len)
{
	allow[0] = 0;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *rt = &routes[i];
		size_t pl = strlen(rt->path), al = strlen(allow);
		int match = rt->prefix ? strncmp(url, rt->path, pl) == 0 && url[pl] : strcmp(url, rt->path) == 0;
		if (!match)
			continue;
		if (strcmp(method, rt->method) == 0)
			return rt;
		snprintf(allow + al, allow_len - al, "%s%s", al ? ", " : "", rt->method);
	}
	return NULL;
}

/* R is answered from now on (its response is queued, or its handler
 * runs): counted in S->active until on_completed, so that serve_stop
 * lets it finish.  Once per request. */
static void
conn_answering(struct serve *s, struct conn *r)
{
	r->answered = 1;
	if (r->counted)
		return;
	r->counted = 1;
	pthread_mutex_lock(&s->mu);
	s->active++;
	pthread_mutex_unlock(&s->mu);
}

/* Whether C came past its address's share (on_connection). */
static int
conn_over(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	const struct sock *k = ci ? ci->socket_context : NULL;
	return k && k->over;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
	   const char *upload, size_t *upload_size, void **con_cls)
{
	struct serve *s = cls;
	struct conn *r = *con_cls;
	struct oai_error e;
	enum MHD_Result rc;

	if (!r) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		const char *cl;

		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		*con_cls = r;
		r->num = atomic_fetch_add(&s->n_requests, 1) + 1;
		r->fd = ci ? ci->connect_fd : -1;
		r->probe = version && !strcmp(version, MHD_HTTP_VERSION_1_1) ? PROBE_CAN : PROBE_NEVER;
		r->route = route_find(method, url, r->allow, sizeof(r->allow));
		if (conn_over(c)) {
			conn_answering(s, r);
			oai_error_set(&e, 429, "requests", "rate_limit_exceeded", NULL, "too many connections from "
			    "this address: at most %u at once; close one, or try again later", s->per_ip);
			return send_error(s, c, r, &e);
		}
		if (!r->route) {
			conn_answering(s, r);
			if (r->allow[0])
				oai_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL,
				    "%s is not allowed on %.200s", method, url);
			else
				oai_error_set(&e, 404, "invalid_request_error", "not_found", NULL,
				    "there is no %.200s here (natter serve has /v1/chat/completions, /v1/completions, "
				    "/v1/models and /health)", url);
			return send_error(s, c, r, &e);
		}
		if (r->route->auth && !auth_ok(s, c)) {
			conn_answering(s, r);
			oai_error_set(&e, 401, "invalid_request_error", "invalid_api_key", NULL,
			    "a valid API key is required: send the header \"Authorization: Bearer KEY\"");
			return send_error(s, c, r, &e);
		}
		cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > DRAIN_LIMIT) {
			conn_answering(s, r);
			oai_error_set(&e, 413, "invalid_request_error", "request_too_large", NULL,
			    "the request body is larger than the limit of %zu MiB", OAI_MAX_BODY >> 20);
			return send_error(s, c, r, &e);
		}
		return MHD_YES;
	}
	if (*upload_size > 0) {
		size_t n = *upload_size;
		r->received += n;
		*upload_size = 0;
		if (r->answered)
			return MHD_YES;
		if (r->received > DRAIN_LIMIT)
			return MHD_NO;
		if (!r->route->body || r->too_big || r->len + n > OAI_MAX_BODY) {
			r->too_big = r->route->body ? 1 : r->too_big;
			return MHD_YES;
		}
		if (r->len + n + 1 > r->cap) {
			size_t cap = r->cap ? r->cap : 4096;
			char *b;
			while (cap < r->len + n + 1)
				cap *= 2;
			b = realloc(r->body, cap);
			if (!b)
				return MHD_NO;
			r->body = b;
			r->cap = cap;
		}
		memcpy(r->body + r->len, upload, n);
		r->len += n;
		r->body[r->len] = 0;
		return MHD_YES;
	}
	if (r->answered)
		return MHD_YES;
	conn_answering(s, r);
	if (r->too_big) {
		oai_error_set(&e, 413, "invalid_request_error", "request_too_large", NULL,
		    "the request body is larger than the limit of %zu MiB", OAI_MAX_BODY >> 20);
		return send_error(s, c, r, &e);
	}
	if (r->route->prefix)
		r->rest = url + strlen(r->route->path);   /* /v1/models/ID */
	serve_conn_busy(s, c, 1);
	rc = r->route->fn(s, c, r);
	serve_conn_busy(s, c, 0);
	return rc;
}

static void
on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct serve *s = cls;
	struct conn *r = *con_cls;

	(void)c;
	(void)toe;
	if (!r)
		return;
	if (r->counted) {
		pthread_mutex_lock(&s->mu);
		if (--s->active == 0)
			pthread_cond_broadcast(&s->idle);
		pthread_mutex_unlock(&s->mu);
	}
	free(r->body);
	free(r);
	*con_cls = NULL;
}

/* Fills K with the address SA (when IPv4 or IPv6). */
static void
sock_addr(struct sock *k, const struct sockaddr *sa)
{
	if (sa && sa->sa_family == AF_INET) {
		memcpy(k->addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		k->len = 4;
	} else if (sa && sa->sa_family == AF_INET6) {
		memcpy(k->addr, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
		k->len = 16;
	}
}

/* K's address's slot in S->peers, taking a free one when ADD; NULL when
 * none.  S->mu held. */
static struct peer *
peer_find(struct serve *s, const struct sock *k, int add)
{
	struct peer *free_slot = NULL;

	for (unsigned i = 0; i < s->n_peers; i++) {
		struct peer *p = &s->peers[i];
		if (p->len == k->len && !memcmp(p->addr, k->addr, k->len))
			return p;
		if (!p->len && !free_slot)
			free_slot = p;
	}
	if (add && free_slot) {
		memcpy(free_slot->addr, k->addr, k->len);
		free_slot->len = k->len;
		free_slot->n = 0;
	}
	return add ? free_slot : NULL;
}

/*
 * libmicrohttpd's connection callback: counts each address's connections.
 * One past its share (S->per_ip; libmicrohttpd closes those past
 * PER_IP_REFUSED more) is marked, for on_request to answer 429, and gets
 * REFUSED_TIMEOUT seconds to send its request.  Called by libmicrohttpd's
 * listening thread (started) and by any of its threads (closed).
 */
static void
on_connection(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode code)
{
	struct serve *s = cls;
	struct sock *k = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		struct peer *p;
		k = calloc(1, sizeof(*k));
		if (!k)
			return;   /* not counted: served as within its share */
		sock_addr(k, ci ? ci->client_addr : NULL);
		pthread_mutex_lock(&s->mu);
		p = k->len ? peer_find(s, k, 1) : NULL;
		if (p)
			k->over = ++p->n > s->per_ip;
		else
			k->len = 0;
		pthread_mutex_unlock(&s->mu);
		if (k->over && MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, REFUSED_TIMEOUT) != MHD_YES)
			serve_log(s->log, "libmicrohttpd refused a connection's timeout");
		*socket_context = k;
		return;
	}
	if (!k)
		return;
	if (k->len) {
		struct peer *p;
		pthread_mutex_lock(&s->mu);
		p = peer_find(s, k, 0);
		if (p && --p->n == 0)
			p->len = 0;
		pthread_mutex_unlock(&s->mu);
	}
	free(k);
	*socket_context = NULL;
}

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct serve *s = cls;
	char line[512];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && line[n - 1] == '\n')
		line[--n] = 0;
	serve_log(s->log, "libmicrohttpd: %s", line);
}

/* A listening socket on HOST:PORT. */
static int
listen_on(const char *host, int port, int *bound, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL, *ai;
	char ps[16];
	int fd = -1, rc, one = 1, saved = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(ps, sizeof(ps), "%d", port);
	rc = getaddrinfo(host, ps, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot use the address '%s': %s", host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s port %d: %s", host, port, strerror(saved));
		return -1;
	}
	{
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
			*bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
			    ((struct sockaddr_in *)&ss)->sin_port);
	}
	return fd;
}

int
serve_start(const struct serve_opts *o, struct serve **out, char *err, size_t errlen)
{
	struct serve *s = calloc(1, sizeof(*s));
	const char *host = o->host ? o->host : "127.0.0.1";
	unsigned per_ip, total;
	int fd = -1;

	*out = NULL;
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->log = o->log;
	s->idle_timeout = o->idle_timeout > 0 ? (unsigned)o->idle_timeout : SERVE_IDLE_TIMEOUT_DEFAULT;
	atomic_init(&s->n_requests, 0);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&s->idle, &ca);
		pthread_condattr_destroy(&ca);
		pthread_mutex_init(&s->mu, NULL);
	}
	if (o->api_key) {
		s->api_key = strdup(o->api_key);
		if (!s->api_key) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		s->key_len = strlen(s->api_key);
	}
	/* The address first: a port in use is reported before the model loads. */
	fd = listen_on(host, o->port, &s->port, err, errlen);
	if (fd < 0)
		goto fail;
	if (engine_new(o, &s->eng, err, errlen) < 0)
		goto fail;
	per_ip = (unsigned)(o->max_queue > 0 ? o->max_queue : SERVE_MAX_QUEUE_DEFAULT) + SERVE_PER_IP_EXTRA;
	/* Room for two addresses' shares with the connections answered 429:
	 * one address past its share does not take another's. */
	total = 2 * (per_ip + PER_IP_REFUSED) > SERVE_CONNECTION_LIMIT ? 2 * (per_ip + PER_IP_REFUSED) :
	    SERVE_CONNECTION_LIMIT;
	s->per_ip = per_ip;
	s->n_peers = total;
	s->peers = calloc(total, sizeof(*s->peers));
	if (!s->peers) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
	    MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, s,
	    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,   /* first, or it warns */
	    MHD_OPTION_LISTEN_SOCKET, fd,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
	    MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
	    MHD_OPTION_CONNECTION_LIMIT, total,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip + PER_IP_REFUSED,
	    MHD_OPTION_CONNECTION_TIMEOUT, s->idle_timeout,
	    MHD_OPTION_END);
	if (!s->d) {
		snprintf(err, errlen, "cannot start the HTTP server on %s port %d", host, s->port);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	engine_free(s->eng);
	if (s->api_key)
		memset(s->api_key, 0, s->key_len);
	free(s->api_key);
	pthread_cond_destroy(&s->idle);
	pthread_mutex_destroy(&s->mu);
	free(s->peers);
	free(s);
	return -1;
}

int serve_port(const struct serve *s) { return s->port; }
const char *serve_model_id(const struct serve *s) { return engine_model_id(s->eng); }

void
serve_stop(struct serve *s)
{
	if (!s)
		return;
	/* The engine first: waiting handlers and streams see it stop and return,
	 * so libmicrohttpd can join its connection threads.  What the engine
	 * wrote last (a 503 for the reply it cut off, for those that waited)
	 * is sent before the connections are closed: up to 2 s for the
	 * requests being answered to complete (a client that does not read is
	 * not waited for longer).  A request still sending its body is not
	 * waited for: it is cut off with its connection. */
	engine_shutdown(s->eng);
	{
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += 2;
		pthread_mutex_lock(&s->mu);
		while (s->active > 0 && pthread_cond_timedwait(&s->idle, &s->mu, &until) == 0)
			;
		pthread_mutex_unlock(&s->mu);
	}
	MHD_stop_daemon(s->d);
	engine_free(s->eng);
	if (s->api_key)
		memset(s->api_key, 0, s->key_len);
	free(s->api_key);
	pthread_cond_destroy(&s->idle);
	pthread_mutex_destroy(&s->mu);
	free(s->peers);
	free(s);
}
