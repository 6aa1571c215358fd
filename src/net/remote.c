/* remote.c -- the remote chat engine: OpenAI-compatible requests from the messages fed, the SSE stream read as it comes, the server's usage and errors mapped to the session's. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "natter/chat-engine.h"
#include "natter/chat.h"
#include "natter/http.h"
#include "natter/oai.h"
#include "natter/remote.h"
#include "natter/sse.h"
#include "llm/strbuf.h"

/* --- the base URL --- */

int
remote_url_base(const char *url, char *out, size_t n, char *err, size_t errlen)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *user = NULL, *pass = NULL, *query = NULL, *frag = NULL, *path = NULL, *host = NULL;
	char *whole = NULL;
	int rc = -1;
	size_t pl;

	if (!u) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (!url || !*url || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		snprintf(err, errlen, "--remote '%.200s' is not a URL (write it like http://127.0.0.1:8000/v1)",
		    url ? url : "");
		goto out;
	}
	if (strcasecmp(scheme, "http") && strcasecmp(scheme, "https")) {
		snprintf(err, errlen, "--remote '%.200s': only http:// and https:// servers are supported", url);
		goto out;
	}
	curl_url_get(u, CURLUPART_USER, &user, 0);
	curl_url_get(u, CURLUPART_PASSWORD, &pass, 0);
	curl_url_get(u, CURLUPART_QUERY, &query, 0);
	curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
	/* The base URL is recorded in the history with every reply: nothing
	 * secret may ride in it.  (The URL is not repeated: it holds one.) */
	if (user || pass) {
		snprintf(err, errlen, "--remote: the URL carries a user name or password; put the API key in an "
		    "environment variable instead (--api-key-env VAR, default OPENAI_API_KEY)");
		goto out;
	}
	if (query || frag) {
		snprintf(err, errlen, "--remote: the URL has a %s; give the server's base URL (like "
		    "https://host/v1), without one", query ? "query (?...)" : "fragment (#...)");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
		path = NULL;
	pl = path ? strlen(path) : 0;
	while (pl > 0 && path[pl - 1] == '/')
		path[--pl] = 0;
	/* One server, one spelling: the history keys its models by it. */
	for (char *p = host; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	for (char *p = scheme; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	/* Only the server named: its OpenAI-compatible API is under /v1. */
	if (curl_url_set(u, CURLUPART_HOST, host, 0) != CURLUE_OK ||
	    curl_url_set(u, CURLUPART_SCHEME, scheme, 0) != CURLUE_OK ||
	    curl_url_set(u, CURLUPART_PATH, pl ? path : "/v1", 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &whole, 0) != CURLUE_OK) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if ((size_t)snprintf(out, n, "%s", whole) >= n) {
		snprintf(err, errlen, "--remote: the URL is too long");
		goto out;
	}
	rc = 0;
out:
	curl_free(scheme);
	curl_free(user);
	curl_free(pass);
	curl_free(query);
	curl_free(frag);
	curl_free(path);
	curl_free(host);
	curl_free(whole);
	curl_url_cleanup(u);
	return rc;
}

/* --- the engine --- */

struct remote {
	char base[1024];             /* e.g. "http://127.0.0.1:8000/v1" */
	char model[256];
	char *key;                   /* NULL: none.  Wiped before it is freed */
	char key_env[64];            /* where it came from, for messages ("" if unknown) */
	long connect_timeout_s, read_timeout_s;
	int no_extras;               /* --remote-extras off */
	char *stops[OAI_MAX_STOP];   /* sent as "stop" (the session applies them too) */
	int n_stops;
	char tmpl_name[96];
	/* What the server refused in this session, set by the generating
	 * thread, read by any (chat_param_sent). */
	atomic_uint refused;         /* OAI_SET_* bits left out from now on */
	atomic_int no_usage_option;  /* stream_options refused */
	atomic_int mct;              /* max_tokens refused: max_completion_tokens is sent */
	atomic_int no_kwargs;        /* chat_template_kwargs refused */
	/* The conversation prepared last: the messages fed, copied, and the
	 * session's enable_thinking (enum chat_think), sent as
	 * chat_template_kwargs when set. */
	struct oai_msg *pend;
	int n_pend;
	char *pend_system;
	int pend_think;
	/* The last request sent (chat_prompt_text). */
	char *body;
	size_t body_len;
};

static void
pend_clear(struct remote *r)
{
	for (int i = 0; i < r->n_pend; i++) {
		free(r->pend[i].role);
		free(r->pend[i].content);
	}
	free(r->pend);
	free(r->pend_system);
	r->pend = NULL;
	r->pend_system = NULL;
	r->n_pend = 0;
}

static void
remote_free(void *e)
{
	struct remote *r = e;
	if (!r)
		return;
	if (r->key) {
		volatile char *k = r->key;
		for (size_t i = 0; k[i]; i++)
			k[i] = 0;
		free(r->key);
	}
	for (int i = 0; i < r->n_stops; i++)
		free(r->stops[i]);
	pend_clear(r);
	free(r->body);
	free(r);
}

/* A server's words, made fit for a message: the API key replaced wherever
 * it appears, controls made visible, cut to fit OUT. */
static void
server_text(const struct remote *r, const char *in, char *out, size_t n)
{
	size_t o = 0, kl = r->key ? strlen(r->key) : 0;

	if (!n)
		return;
	for (const char *p = in ? in : ""; *p && o + 1 < n;) {
		if (kl >= 4 && !strncmp(p, r->key, kl)) {
			o += (size_t)snprintf(out + o, n - o, "[the API key]");
			if (o >= n)
				o = n - 1;
			p += kl;
			continue;
		}
		out[o++] = (unsigned char)*p < 0x20 || *p == 0x7f ? ' ' : *p;
		p++;
	}
	out[o] = 0;
	/* A message ends where a sentence can: trailing blanks and dots go. */
	while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '.'))
		out[--o] = 0;
}

static const struct {
	long status;
	const char *text;
} reasons[] = {
	{ 400, "Bad Request" }, { 401, "Unauthorized" }, { 403, "Forbidden" }, { 404, "Not Found" },
	{ 405, "Method Not Allowed" }, { 408, "Request Timeout" }, { 413, "Payload Too Large" },
	{ 422, "Unprocessable Entity" }, { 429, "Too Many Requests" }, { 500, "Internal Server Error" },
	{ 502, "Bad Gateway" }, { 503, "Service Unavailable" }, { 504, "Gateway Timeout" },
};

static const char *
reason_of(long status)
{
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].status == status)
			return reasons[i].text;
	return status >= 500 ? "Server Error" : "Error";
}

/* The host:port of the base URL, for messages. */
static void
host_of(const struct remote *r, char *out, size_t n)
{
	const char *p = strstr(r->base, "://");
	size_t l;
	p = p ? p + 3 : r->base;
	l = strcspn(p, "/");
	snprintf(out, n, "%.*s", (int)l, p);
}

/* The message for a failure of the transport (no response, or a response
 * broken off), from http_request's result.  WHAT (NULL: none, for a reply
 * broken off, which the front end introduces itself) starts it. */
static void
transport_message(const struct remote *r, const struct http_resp *resp, const char *what, const char *herr,
		  char *err, size_t errlen)
{
	char host[256], ht[384];
	const char *sep = what ? ": " : "";

	what = what ? what : "";
	host_of(r, host, sizeof(host));
	server_text(r, herr, ht, sizeof(ht));
	switch (resp->transport) {
	case HTTP_T_RESOLVE:
		snprintf(err, errlen, "cannot find the server: the host name in %s does not resolve (%s)", r->base, ht);
		break;
	case HTTP_T_CONNECT:
		if (resp->os_errno == ECONNREFUSED || strstr(ht, "refused"))
			snprintf(err, errlen, "cannot connect to %s: connection refused (is the server running, at that "
			    "address?)", host);
		else
			snprintf(err, errlen, "cannot connect to %s: %s", host,
			    resp->os_errno ? strerror(resp->os_errno) : ht);
		break;
	case HTTP_T_TLS:
		snprintf(err, errlen, "the secure connection to %s failed: %s", host, ht);
		break;
	case HTTP_T_CERT:
		if (http_ca_bundle())
			snprintf(err, errlen, "the server %s is not trusted: its certificate is not signed by an authority "
			    "in $CURL_CA_BUNDLE (%s), or does not name that host (%s); nothing was sent", host,
			    http_ca_bundle(), ht);
		else
			snprintf(err, errlen, "the server %s is not trusted: its certificate is not signed by an authority "
			    "this system trusts, or does not name that host (%s); nothing was sent.  If it has a "
			    "certificate of its own, name the file that holds it (or its authority's) in "
			    "$CURL_CA_BUNDLE", host, ht);
		break;
	case HTTP_T_TIMEOUT:
		if (resp->status)
			snprintf(err, errlen, "%s%sthe server sent nothing for %ld s (--read-timeout)", what, sep,
			    r->read_timeout_s);
		else
			snprintf(err, errlen, "no answer from %s within %s (%s)", host,
			    strstr(ht, "onnect") ? "the connect timeout (--connect-timeout)" :
			    "the read timeout (--read-timeout)", ht);
		break;
	case HTTP_T_CUT:
		snprintf(err, errlen, "%s%sthe connection to %s closed in the middle (%s)", what, sep, host, ht);
		break;
	default:
		snprintf(err, errlen, "%s%s%s", what, sep, ht);
	}
}

/* How each server says the conversation is longer than its context (a
 * 400): a field of its error object (oai_parsed's) that is TEXT, or
 * (WITHIN) that holds it.  The session then drops the oldest turn and asks
 * again, as it does for a local model (chat_engine_ops.run). */
static const struct {
	size_t field;          /* offsetof(struct oai_parsed, ...): a char array */
	int within;
	const char *text;
} context_refusals[] = {
	/* OpenAI, natter serve */
	{ offsetof(struct oai_parsed, error_code), 0, "context_length_exceeded" },
	/* llama-server: "request (N tokens) exceeds the available context size (M tokens)" */
	{ offsetof(struct oai_parsed, error_type), 0, "exceed_context_size_error" },
	/* vLLM: "This model's maximum context length is N tokens. However, ..." */
	{ offsetof(struct oai_parsed, error), 1, "maximum context length" },
};

/* Whether the error P is a refusal of a prompt longer than the server's
 * context. */
static int
context_error(const struct oai_parsed *p)
{
	for (size_t i = 0; i < sizeof(context_refusals) / sizeof(context_refusals[0]); i++) {
		const char *v = (const char *)p + context_refusals[i].field;
		if (context_refusals[i].within ? strstr(v, context_refusals[i].text) != NULL :
		    !strcmp(v, context_refusals[i].text))
			return 1;
	}
	return 0;
}

/* Whether RESP is a refusal of a prompt longer than the server's context. */
static int
context_refused(const struct http_resp *resp)
{
	struct oai_parsed p;
	int hit;

	if (resp->status != 400 || !resp->body || oai_reply_parse(resp->body, resp->body_len, &p) < 0)
		return 0;
	hit = context_error(&p);
	oai_parsed_free(&p);
	return hit;
}

/* The message for a response with an error status.  BODY is the server's
 * (an error object, usually). */
static void
status_message(const struct remote *r, const struct http_resp *resp, char *err, size_t errlen)
{
	struct oai_parsed p;
	char said[600] = "", host[256];
	long st = resp->status;

	host_of(r, host, sizeof(host));
	if (resp->body && oai_reply_parse(resp->body, resp->body_len, &p) == 0 && p.error[0]) {
		char t[520];
		server_text(r, p.error, t, sizeof(t));
		snprintf(said, sizeof(said), ": %s", t);
	} else if (resp->body && resp->body_len > 0) {
		char t[200];
		server_text(r, resp->body, t, sizeof(t));
		if (t[0])
			snprintf(said, sizeof(said), ": %.160s", t);
	}
	if (resp->body)
		oai_parsed_free(&p);
	if (st == 401 || st == 403) {
		if (!r->key)
			snprintf(err, errlen, "the server wants an API key (%ld %s%s); none was sent: set it in "
			    "$%s, or name the variable that holds it with --api-key-env", st, reason_of(st), said,
			    r->key_env[0] ? r->key_env : "OPENAI_API_KEY");
		else
			snprintf(err, errlen, "the server refused the API key from $%s (%ld %s%s)",
			    r->key_env[0] ? r->key_env : "(the environment)", st, reason_of(st), said);
	} else if (st == 404) {
		/* A missing model, or nothing at that path? The servers say
		 * "model" in the first case (OpenAI: code model_not_found). */
		if (strstr(said, "model") || strstr(said, "Model"))
			snprintf(err, errlen, "the server has no model '%s' (404%s); natter models --remote %s lists "
			    "what it offers", r->model, said, r->base);
		else
			snprintf(err, errlen, "nothing answers at %s/chat/completions (404%s): is %s the server's "
			    "OpenAI-compatible base URL (usually ending in /v1)?", r->base, said, r->base);
	} else if (st == 429) {
		const char *ra = http_resp_header(resp, -1, "Retry-After");
		char wait[96] = "";
		if (ra) {
			char *end;
			long secs = strtol(ra, &end, 10);
			char t[64];
			server_text(r, ra, t, sizeof(t));
			if (end != ra && !*end && secs >= 0)
				snprintf(wait, sizeof(wait), "; it asks to wait %ld s before the next request", secs);
			else
				snprintf(wait, sizeof(wait), "; it asks to wait until %s", t);
		}
		snprintf(err, errlen, "the server is limiting requests (429 Too Many Requests%s)%s", said, wait);
	} else if (st >= 500) {
		snprintf(err, errlen, "the server failed (%ld %s%s)", st, reason_of(st), said);
	} else if (context_refused(resp)) {
		snprintf(err, errlen, "the request is longer than the server's context (%ld %s%s)", st, reason_of(st),
		    said);
	} else {
		snprintf(err, errlen, "the server refused the request (%ld %s%s)", st, reason_of(st), said);
	}
}

/* A seed for a request that asked for a random one: sent, so that the
 * reply is recorded with the seed that made it. */
static uint64_t
fresh_seed(void)
{
	uint64_t v = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		v = (uint64_t)ts.tv_nsec * 6364136223846793005ULL ^ (uint64_t)ts.tv_sec ^ (uint64_t)getpid();
	}
	if (fd >= 0)
		close(fd);
	/* Servers read seeds as 32-bit (llama-server) or JSON numbers. */
	return v & 0x7fffffff;
}

/* A parameter as it reads: 0.8f goes out as 0.8, not 0.800000011920929. */
static double
f2d(float f)
{
	char b[32];
	snprintf(b, sizeof(b), "%.7g", (double)f);
	return strtod(b, NULL);
}

/* The request for the conversation prepared last, under the run's
 * parameters now (the session's, or an A/B comparison's) and what the
 * server has refused so far.  *SEED gets the seed sent, *SENT and
 * *SENT_MAX the parameters.  Caller frees. */
/* Which request field carries which setting: a setting whose field a
 * request left out was not sent (the server used its own). */
static const struct {
	unsigned oai, sp;
} sent_fields[] = {
	{ OAI_SET_TEMP, SP_TEMP },
	{ OAI_SET_TOP_P, SP_TOP_P },
	{ OAI_SET_TOP_K, SP_TOP_K },
	{ OAI_SET_MIN_P, SP_MIN_P },
	{ OAI_SET_REPEAT, SP_REPEAT_PENALTY },
	{ OAI_SET_PRESENCE, SP_PRESENCE_PENALTY },
	{ OAI_SET_FREQUENCY, SP_FREQUENCY_PENALTY },
	{ OAI_SET_MAX_TOKENS, SP_MAX_TOKENS },
};

/* The request's body; *SENT and *SENT_MAX the settings it was made with,
 * *UNSENT the SP_ bits of those it did not carry. */
static char *
build_body(struct remote *r, struct chat_run *run, uint64_t *seed, struct sampler_params *sent,
	   int *sent_max, unsigned *unsent)
{
	struct oai_req q;
	struct sampler_params sp;
	int max_tokens = chat_max_tokens(chat_run_chat(run));
	unsigned refused = atomic_load(&r->refused);
	char *json;

	chat_run_params(run, &sp);
	memset(&q, 0, sizeof(q));
	q.kind = OAI_CHAT;
	q.model = r->model;
	q.system = r->pend_system;
	q.msgs = r->pend;
	q.n_msgs = r->n_pend;
	q.stream = 1;
	q.include_usage = !atomic_load(&r->no_usage_option);
	q.temperature = f2d(sp.temp);
	q.top_p = f2d(sp.top_p);
	q.set = OAI_SET_TEMP | OAI_SET_TOP_P | OAI_SET_SEED;
	if (sp.presence_penalty != 0) {
		q.presence_penalty = f2d(sp.presence_penalty);
		q.set |= OAI_SET_PRESENCE;
	}
	if (sp.frequency_penalty != 0) {
		q.frequency_penalty = f2d(sp.frequency_penalty);
		q.set |= OAI_SET_FREQUENCY;
	}
	if (max_tokens > 0) {
		q.max_tokens = max_tokens;
		q.max_completion_tokens = atomic_load(&r->mct);
		q.set |= OAI_SET_MAX_TOKENS;
	}
	if (!r->no_extras) {
		q.top_k = sp.top_k;
		q.min_p = f2d(sp.min_p);
		q.repeat_penalty = f2d(sp.repeat_penalty);
		q.set |= OAI_SET_EXTRAS & ~refused;
		/* top_k 0 is "off" here, and an error to older vLLM (its "off"
		 * is -1): off is not sent. */
		if (sp.top_k <= 0)
			q.set &= ~(unsigned)OAI_SET_TOP_K;
	}
	*seed = sp.seed == SAMPLER_SEED_RANDOM ? fresh_seed() : sp.seed;
	q.seed = *seed;
	*sent = sp;
	*sent_max = max_tokens;
	*unsent = SP_PENALTY_LAST_N;   /* no request field */
	for (size_t i = 0; i < sizeof(sent_fields) / sizeof(sent_fields[0]); i++)
		if (!(q.set & sent_fields[i].oai))
			*unsent |= sent_fields[i].sp;
	for (int i = 0; i < r->n_stops; i++)
		q.stop[q.n_stop++] = r->stops[i];
	if (!atomic_load(&r->no_kwargs))
		q.think = r->pend_think;
	json = oai_req_to_json(&q);
	/* Q borrowed everything: nothing of it is freed here. */
	return json;
}

/* One request's state, shared with the transfer's callbacks. */
struct xfer {
	struct remote *r;
	struct chat_run *run;
	struct chat_stats *st;
	struct sse_reader *sse;
	int json_body;               /* the server answered with JSON, not a stream */
	char ctype[96];              /* its Content-Type ("" when none) */
	char *jbuf;                  /* that JSON */
	size_t jlen, jcap;
	int done;                    /* [DONE] arrived */
	int stopped_string;          /* the session's stop string completed */
	int failed;                  /* an error event or a malformed one: ERR is set */
	int in_think;                /* reasoning is being passed on between the session's tags */
	int pieces;                  /* content and reasoning pieces that arrived */
	int finish_pieces;           /* PIECES when the latest finish_reason came: some servers
				      * send one on early chunks too, and more after it */
	int reasoning_pieces;        /* of them, the reasoning's */
	struct oai_parsed last;      /* finish, usage, timings: the latest seen (text fields freed) */
	char finish[32];
	char stop_reason[64];
	int stop_said;               /* the finishing chunk had a stop_reason, null or not */
	int context_err;             /* the error, before any of the reply, was a prompt too long */
	char model[128];             /* the model the server said answered, first named */
	char fingerprint[64];        /* its system_fingerprint, first given */
	char err[700];
};

/* A chunk's reasoning and text, to the session.  Reasoning is passed on
 * between the session's reasoning tags (chat_run_think_tags), as a model
 * in this process writes it, for the session to split off again; the tags
 * are no pieces of their own. */
static int
emit(struct xfer *x, const char *reasoning, const char *text)
{
	const char *open, *close;

	chat_run_think_tags(x->run, &open, &close);
	if (reasoning && *reasoning) {
		if (!x->in_think && chat_run_text(x->run, open, strlen(open)) == CHAT_RUN_STOP)
			return CHAT_RUN_STOP;
		x->in_think = 1;
		x->pieces++;
		x->reasoning_pieces++;
		if (chat_run_piece(x->run, reasoning, strlen(reasoning)) == CHAT_RUN_STOP)
			return CHAT_RUN_STOP;
	}
	if (text && *text) {
		if (x->in_think) {
			x->in_think = 0;
			if (chat_run_text(x->run, close, strlen(close)) == CHAT_RUN_STOP ||
			    chat_run_text(x->run, "\n\n", 2) == CHAT_RUN_STOP)
				return CHAT_RUN_STOP;
		}
		x->pieces++;
		if (chat_run_piece(x->run, text, strlen(text)) == CHAT_RUN_STOP)
			return CHAT_RUN_STOP;
	}
	return CHAT_RUN_GO;
}

/* Takes what a reply or chunk says besides its text. */
static void
note(struct xfer *x, const struct oai_parsed *p)
{
	if (p->finish[0]) {
		snprintf(x->finish, sizeof(x->finish), "%s", p->finish);
		x->stop_said = p->stop_reason_given;
	}
	if (p->stop_reason[0])
		snprintf(x->stop_reason, sizeof(x->stop_reason), "%s", p->stop_reason);
	if (p->model[0] && !x->model[0])
		server_text(x->r, p->model, x->model, sizeof(x->model));
	if (p->fingerprint[0] && !x->fingerprint[0])
		snprintf(x->fingerprint, sizeof(x->fingerprint), "%s", p->fingerprint);
	if (p->has_usage) {
		x->last.has_usage = 1;
		x->last.prompt_tokens = p->prompt_tokens;
		x->last.completion_tokens = p->completion_tokens;
		x->last.cached_tokens = p->cached_tokens;
		x->last.reasoning_tokens = p->reasoning_tokens;
	}
	if (p->has_timings) {
		x->last.has_timings = 1;
		x->last.t_prompt_n = p->t_prompt_n;
		x->last.t_predicted_n = p->t_predicted_n;
		x->last.t_cache_n = p->t_cache_n;
		x->last.t_prompt_ms = p->t_prompt_ms;
		x->last.t_predicted_ms = p->t_predicted_ms;
		x->last.t_prompt_per_second = p->t_prompt_per_second;
		x->last.t_predicted_per_second = p->t_predicted_per_second;
	}
}

/* One SSE event.  Nonzero stops the transfer. */
static int
on_event(void *arg, const char *event, const char *data, size_t len)
{
	struct xfer *x = arg;
	struct oai_parsed p;
	int rc = 0;

	if (x->done)
		return 0;   /* nothing counts after [DONE] */
	if (len == 6 && !memcmp(data, "[DONE]", 6)) {
		/* The end, whether or not the server closes the stream (one
		 * that keeps it open would hold the reply until the read
		 * timeout). */
		x->done = 1;
		return 1;
	}
	if (!strcmp(event, "error")) {
		/* llama-server's "error: {...}" line. */
		char t[520];
		if (oai_error_parse(data, len, &p) == 0) {
			server_text(x->r, p.error, t, sizeof(t));
			x->context_err = !x->pieces && context_error(&p);
		} else {
			server_text(x->r, data, t, sizeof(t));
		}
		snprintf(x->err, sizeof(x->err), "the server reported an error in the middle of the reply: %s", t);
		x->failed = 1;
		return 1;
	}
	if (oai_reply_parse(data, len, &p) < 0) {
		char t[80];
		server_text(x->r, data, t, sizeof(t));
		snprintf(x->err, sizeof(x->err), "the server sent something that is not an OpenAI stream event "
		    "(\"%.60s%s\"); the reply is cut there", t, len > 60 ? "..." : "");
		x->failed = 1;
		return 1;
	}
	if (p.error[0]) {
		char t[520];
		server_text(x->r, p.error, t, sizeof(t));
		snprintf(x->err, sizeof(x->err), "the server reported an error in the middle of the reply: %s", t);
		x->failed = 1;
		x->context_err = !x->pieces && context_error(&p);
		oai_parsed_free(&p);
		return 1;
	}
	note(x, &p);
	if (emit(x, p.reasoning, p.text) == CHAT_RUN_STOP) {
		x->stopped_string = 1;
		rc = 1;
	}
	if (p.finish[0])
		x->finish_pieces = x->pieces;
	oai_parsed_free(&p);
	return rc;
}

static int
on_head(void *arg, const struct http_resp *resp)
{
	struct xfer *x = arg;
	const char *ct = http_resp_header(resp, -1, "Content-Type");
	/* A server that ignores "stream" answers with the whole reply. */
	x->json_body = ct && strstr(ct, "json") && !strstr(ct, "event-stream");
	server_text(x->r, ct ? ct : "", x->ctype, sizeof(x->ctype));
	return 0;
}

static int
on_body(void *arg, const char *p, size_t n)
{
	struct xfer *x = arg;

	if (chat_run_cancelled(x->run))
		return 1;
	if (x->json_body) {
		if (x->jlen + n > OAI_MAX_BODY * 4 || strbuf_append(&x->jbuf, &x->jlen, &x->jcap, p, n) < 0) {
			snprintf(x->err, sizeof(x->err), "the server's reply is too large");
			x->failed = 1;
			return 1;
		}
		return 0;
	}
	{
		int rc = sse_reader_feed(x->sse, p, n);
		if (rc < 0 && !x->failed) {
			snprintf(x->err, sizeof(x->err), "the server sent a stream event larger than 4 MiB, or not an "
			    "event stream at all; the reply is cut there");
			x->failed = 1;
		}
		return rc != 0;
	}
}

/*
 * Whether a refusal (status 400 or 422) names something this client can
 * leave out and try again without: an extra field, stream_options,
 * chat_template_kwargs, max_tokens (OpenAI's newer models want
 * max_completion_tokens).  Marks it refused, tells the session, and
 * returns 1.
 */
static int
drop_refused(struct remote *r, struct chat_run *run, const struct http_resp *resp)
{
	struct oai_parsed p;
	const char *field = NULL;
	unsigned refused = atomic_load(&r->refused), bit = 0;
	int extra = 0;
	char msg[300];

	if ((resp->status != 400 && resp->status != 422) || !resp->body ||
	    oai_reply_parse(resp->body, resp->body_len, &p) < 0)
		return 0;
	if (p.error_param[0] && (bit = oai_param_bit(p.error_param, &extra)) != 0)
		field = p.error_param;
	else
		field = oai_param_named(p.error, (OAI_SET_EXTRAS & ~refused) | OAI_SET_MAX_TOKENS);
	if (r->pend_think && !atomic_load(&r->no_kwargs) &&
	    (strstr(p.error, "chat_template_kwargs") || !strcmp(p.error_param, "chat_template_kwargs"))) {
		oai_parsed_free(&p);
		atomic_store(&r->no_kwargs, 1);
		chat_run_notice(run, "the server refuses chat_template_kwargs: /think is not sent to it from now on");
		return 1;
	}
	if (!field && !atomic_load(&r->no_usage_option) &&
	    (strstr(p.error, "stream_options") || !strcmp(p.error_param, "stream_options"))) {
		oai_parsed_free(&p);
		atomic_store(&r->no_usage_option, 1);
		chat_run_notice(run, "the server refuses stream_options: usage is no longer asked for (tokens are "
		    "counted as they arrive)");
		return 1;
	}
	oai_parsed_free(&p);
	if (!field)
		return 0;
	bit = oai_param_bit(field, &extra);
	if (extra && !r->no_extras && !(refused & bit)) {
		atomic_fetch_or(&r->refused, OAI_SET_EXTRAS);
		snprintf(msg, sizeof(msg), "the server refuses %s: top_k, min_p and repeat_penalty are not sent to it "
		    "from now on", field);
		chat_run_notice(run, msg);
		return 1;
	}
	if (bit == OAI_SET_MAX_TOKENS && !strcmp(field, "max_tokens") && !atomic_load(&r->mct)) {
		atomic_store(&r->mct, 1);
		chat_run_notice(run, "the server refuses max_tokens: max_completion_tokens is sent instead");
		return 1;
	}
	return 0;
}

/* How the reply ended, from the finish_reason the server gave. */
static enum chat_stop
stop_of(const struct remote *r, const struct xfer *x, int max_tokens)
{
	const char *f = x->finish;
	if (!strcmp(f, "length"))
		return max_tokens > 0 ? CHAT_STOP_LIMIT : CHAT_STOP_CONTEXT;
	/* TGI says which; vLLM names the stop string that matched. */
	if (!strcmp(f, "stop_sequence"))
		return CHAT_STOP_STRING;
	/* (A longer stop string arrives cut to the field: its start matches.) */
	if (!strcmp(f, "stop") && x->stop_reason[0]) {
		size_t kept = strlen(x->stop_reason), room = sizeof(x->stop_reason) - 1;
		for (int i = 0; i < r->n_stops; i++)
			if (kept < room ? !strcmp(x->stop_reason, r->stops[i]) :
			    !strncmp(x->stop_reason, r->stops[i], room))
				return CHAT_STOP_STRING;
	}
	/* OpenAI, llama-server and Ollama say "stop" for both ends: with
	 * stop strings sent, which one it was is not known, and not guessed. */
	if (!strcmp(f, "stop") && r->n_stops > 0 && !x->stop_said)
		return CHAT_STOP_EOG_OR_STRING;
	return CHAT_STOP_EOG;   /* "stop", "eos_token", "tool_calls" ... */
}

/*
 * Ollama (its replies' system_fingerprint is "fp_ollama") reads neither
 * top_k, min_p and repeat_penalty nor chat_template_kwargs on its OpenAI
 * API: its JSON decoder drops fields it does not know, without a word.
 * The reply is recorded as made without them (SENT, SENT_MAX and UNSENT
 * as the request went), and they are not sent again.
 */
static void
ollama_ignored(struct remote *r, struct chat_run *run, const struct sampler_params *sent, int sent_max,
	       unsigned unsent)
{
	const unsigned extras = SP_TOP_K | SP_MIN_P | SP_REPEAT_PENALTY;

	chat_run_set_params(run, sent, sent_max, unsent | extras);
	if (!r->no_extras && !(atomic_fetch_or(&r->refused, OAI_SET_EXTRAS) & OAI_SET_EXTRAS))
		chat_run_notice(run, "the server is Ollama, which ignores top_k, min_p and repeat_penalty here: they "
		    "are not sent to it from now on, and the reply is stored without them");
	if (r->pend_think && !atomic_exchange(&r->no_kwargs, 1))
		chat_run_notice(run, "the server is Ollama, which ignores chat_template_kwargs: /think does not reach "
		    "it, and the reply is stored with the template's default");
}

static int
remote_run(void *e, struct chat_run *run, struct chat_stats *st, char *err, size_t errlen)
{
	struct remote *r = e;
	const char *headers[] = { "Content-Type: application/json", "Accept: text/event-stream", NULL };
	char url[1100], herr[512];
	int rc = -1;
	struct xfer x;
	uint64_t seed;
	struct sampler_params sent;
	int sent_max;
	unsigned unsent;

	snprintf(url, sizeof(url), "%s/chat/completions", r->base);
	memset(&x, 0, sizeof(x));
	for (int attempt = 0;; attempt++) {
		struct http_req q;
		struct http_resp resp;
		int hr, whole;

		free(r->body);
		r->body = build_body(r, run, &seed, &sent, &sent_max, &unsent);
		if (!r->body) {
			snprintf(err, errlen, "out of memory");
			return CHAT_ERR_NOMEM;
		}
		r->body_len = strlen(r->body);
		st->seed = seed;
		/* The request is made with these: a change while it streams
		 * applies to the next one. */
		chat_run_set_params(run, &sent, sent_max, unsent);
		memset(&x, 0, sizeof(x));
		x.r = r;
		x.run = run;
		x.st = st;
		x.sse = sse_reader_new(0, on_event, &x);
		if (!x.sse) {
			snprintf(err, errlen, "out of memory");
			return CHAT_ERR_NOMEM;
		}
		memset(&q, 0, sizeof(q));
		q.method = "POST";
		q.url = url;
		q.headers = headers;
		q.bearer = r->key;
		q.body = r->body;
		q.body_len = r->body_len;
		q.connect_timeout_s = r->connect_timeout_s;
		q.stall_timeout_s = r->read_timeout_s;
		q.on_head = on_head;
		q.on_body = on_body;
		q.ctx = &x;
		q.cancel = chat_run_cancel_flag(run);
		hr = http_request(&q, &resp, herr, sizeof(herr));
		sse_reader_free(x.sse);
		x.sse = NULL;
		if (hr == 0 && resp.status >= 300) {
			/* Nothing of a reply came: a conversation too long for the
			 * server (the session drops a turn and asks again), or maybe
			 * a field to leave out. */
			int ctx = context_refused(&resp);
			if (!ctx && attempt < 3 && drop_refused(r, run, &resp)) {
				http_resp_free(&resp);
				continue;
			}
			status_message(r, &resp, err, errlen);
			http_resp_free(&resp);
			if (ctx)
				rc = CHAT_ERR_CONTEXT;
			goto out;
		}
		if (hr == 0 && x.json_body && !x.failed) {
			/* The whole reply at once (the server ignored "stream"). */
			struct oai_parsed p;
			if (oai_reply_parse(x.jbuf ? x.jbuf : "", x.jlen, &p) < 0 || !p.has_choice) {
				snprintf(x.err, sizeof(x.err), "the server answered with JSON that is not a chat reply");
				x.failed = 1;
				if (p.error[0]) {
					char t[520];
					server_text(r, p.error, t, sizeof(t));
					snprintf(x.err, sizeof(x.err), "the server reported an error: %s", t);
				}
			} else {
				note(&x, &p);
				if (emit(&x, p.reasoning, p.text) == CHAT_RUN_STOP)
					x.stopped_string = 1;
				x.done = 1;
			}
			oai_parsed_free(&p);
		}
		if (hr == HTTP_ERR && resp.status == 0 && !x.pieces) {
			/* No response at all. */
			transport_message(r, &resp, "the request failed", herr, err, errlen);
			http_resp_free(&resp);
			goto out;
		}
		/* A reply, whole or not.  Whole once [DONE] came, or a
		 * finish_reason with nothing after it: a connection that
		 * closed after that cut nothing, and the reply ended as the
		 * server said (below).  A stop pressed before [DONE] stopped
		 * it (a proxy may put a finish_reason on every chunk). */
		whole = x.done || (x.finish[0] && x.pieces == x.finish_pieces);
		if (x.stopped_string) {
			st->stop = CHAT_STOP_STRING;
		} else if (!x.done && (hr == HTTP_ECANCEL || (hr == HTTP_EBODY && !x.failed))) {
			st->stop = CHAT_STOP_CANCEL;
		} else if (x.failed) {
			st->stop = CHAT_STOP_ERROR;
			snprintf(err, errlen, "%s", x.err);
		} else if (hr != 0 && !whole) {
			transport_message(r, &resp, NULL, herr, err, errlen);
			st->stop = CHAT_STOP_ERROR;
		} else if (!x.done && !x.finish[0] && !x.pieces && x.ctype[0] && !strstr(x.ctype, "event-stream")) {
			/* A proxy's page, say: nothing of an OpenAI stream at all. */
			snprintf(err, errlen, "the server answered with %s, not an event stream: is %s an "
			    "OpenAI-compatible API?", x.ctype, r->base);
			st->stop = CHAT_STOP_ERROR;
		} else if (!whole) {
			snprintf(err, errlen, "the stream ended before the reply did (no finish_reason, no [DONE])");
			st->stop = CHAT_STOP_ERROR;
		} else if (!strcmp(x.finish, "content_filter")) {
			snprintf(err, errlen, "the server's content filter stopped the reply");
			st->stop = CHAT_STOP_ERROR;
		} else {
			st->stop = stop_of(r, &x, sent_max);
		}
		if (x.in_think && st->stop != CHAT_STOP_STRING) {
			const char *open, *close;
			chat_run_think_tags(run, &open, &close);
			chat_run_text(run, close, strlen(close));
		}
		http_resp_free(&resp);
		break;
	}
	if (!strcmp(x.fingerprint, "fp_ollama"))
		ollama_ignored(r, run, &sent, sent_max, unsent);
	if (st->stop == CHAT_STOP_ERROR && x.pieces == 0 && !x.last.has_usage) {
		/* Cut before a word of it arrived: no reply to keep.  A
		 * conversation too long for the server, said in the stream
		 * and not by a 400: the session drops a turn and asks again. */
		if (x.context_err)
			rc = CHAT_ERR_CONTEXT;
		goto out;
	}
	/* The server's counts where it gave them, else the pieces counted.
	 * The reasoning's tokens only OpenAI's and DeepSeek's usage gives
	 * (completion_tokens_details.reasoning_tokens); else the session
	 * counts its pieces, and says so. */
	st->reasoning_counted = 1;
	/* (A 0 beside reasoning that did come is a server filling the field
	 * in without counting.) */
	if (x.last.has_usage && (x.last.reasoning_tokens > 0 || (x.last.reasoning_tokens == 0 && !x.reasoning_pieces))) {
		chat_run_set_reasoning_tokens(run, x.last.reasoning_tokens);
		st->reasoning_counted = 0;
	}
	if (x.last.has_usage) {
		st->prompt_tokens = x.last.prompt_tokens;
		st->n_reused = x.last.cached_tokens;
		st->n_gen = x.last.completion_tokens;
	} else if (x.last.has_timings) {
		st->prompt_tokens = x.last.t_prompt_n + x.last.t_cache_n;
		st->n_reused = x.last.t_cache_n;
		st->n_gen = x.last.t_predicted_n;
	} else {
		st->n_gen = x.pieces;
		st->gen_counted = 1;
	}
	st->n_prompt = st->prompt_tokens > st->n_reused ? st->prompt_tokens - st->n_reused : 0;
	snprintf(st->served_model, sizeof(st->served_model), "%s", x.model);
	if (x.last.has_timings) {
		st->prompt_ms = x.last.t_prompt_ms;
		chat_run_set_rates(run, x.last.t_prompt_per_second, x.last.t_predicted_per_second);
	}
	rc = 0;
out:
	free(x.jbuf);
	if (rc < 0 && chat_run_cancelled(run) && !err[0])
		snprintf(err, errlen, "stopped");
	return rc;
}

/* --- the rest of the table --- */

static int
remote_prepare(void *e, const struct chat_turn *t, int n, int max_tokens, int think, char *err, size_t errlen)
{
	struct remote *r = e;
	int k = 0;

	(void)max_tokens;
	/* The server renders with its own template: /think reaches it as
	 * chat_template_kwargs (vLLM, llama-server, natter serve). */
	r->pend_think = think;
	pend_clear(r);
	r->pend = n > 0 ? calloc((size_t)n, sizeof(*r->pend)) : NULL;
	if (n > 0 && !r->pend)
		goto oom;
	for (int i = 0; i < n; i++) {
		/* The system prompt; a system message later in the
		 * conversation (natter serve records a client's) is sent in its
		 * place. */
		if (i == 0 && !strcmp(t[i].role, "system")) {
			free(r->pend_system);
			if (!(r->pend_system = strdup(t[i].content)))
				goto oom;
			continue;
		}
		r->pend[k].role = strdup(t[i].role);
		r->pend[k].content = strdup(t[i].content);
		r->n_pend = ++k;
		if (!r->pend[k - 1].role || !r->pend[k - 1].content)
			goto oom;
	}
	/* The server's context is not known here: it says so itself (a 400)
	 * when the conversation outgrows it. */
	return CHAT_FIT_OK;
oom:
	snprintf(err, errlen, "out of memory");
	return CHAT_ERR_NOMEM;
}

static void
remote_info(void *e, struct chat_engine_info *i)
{
	struct remote *r = e;
	i->kind = "remote";
	i->model = r->model;
	i->endpoint = r->base;
	i->template_name = r->tmpl_name;
	i->template_source = NULL;
}

static const char *
remote_prompt_text(void *e, size_t *len)
{
	struct remote *r = e;
	*len = r->body ? r->body_len : 0;
	return r->body ? r->body : "";
}

static char *
remote_render(void *e, const struct chat_turn *t, int n, int think, char *err, size_t errlen)
{
	struct remote *r = e;
	struct oai_req q;
	struct oai_msg *m = calloc((size_t)n + 1, sizeof(*m));
	char *out;
	int k = 0;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	memset(&q, 0, sizeof(q));
	q.kind = OAI_CHAT;
	q.model = r->model;
	for (int i = 0; i < n; i++) {
		/* The system prompt; a system message later in the
		 * conversation (natter serve records a client's) is sent in its
		 * place. */
		if (i == 0 && !strcmp(t[i].role, "system")) {
			q.system = (char *)t[i].content;
			continue;
		}
		m[k].role = (char *)t[i].role;
		m[k++].content = (char *)t[i].content;
	}
	if (!atomic_load(&r->no_kwargs))
		q.think = think;
	q.msgs = m;
	q.n_msgs = k;
	out = oai_req_to_json(&q);
	free(m);
	if (!out)
		snprintf(err, errlen, "out of memory");
	return out;
}

static int remote_zero(void *e) { (void)e; return 0; }

static int
remote_param_sent(void *e, const char *name)
{
	struct remote *r = e;
	unsigned bit;
	int extra;
	if (!strcmp(name, "penalty_last_n"))
		return 0;   /* no server reads it */
	if (!strcmp(name, "think"))
		return !atomic_load(&r->no_kwargs);   /* chat_template_kwargs */
	if (!strcmp(name, "temp"))
		name = "temperature";
	bit = oai_param_bit(name, &extra);
	if (!extra)
		return 1;
	return !r->no_extras && !(atomic_load(&r->refused) & bit);
}

static const struct chat_engine_ops remote_ops = {
	.kind = "remote",
	.prepare = remote_prepare,
	.run = remote_run,
	.free = remote_free,
	.info = remote_info,
	.prompt_text = remote_prompt_text,
	.render = remote_render,
	.ctx_used = remote_zero,
	.ctx_size = remote_zero,
	.param_sent = remote_param_sent,
};

/* Builds the engine (no request is made). */
static int
remote_new(const struct remote_opts *ro, const struct chat_opts *o, struct remote **out, char *err, size_t errlen)
{
	struct remote *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (remote_url_base(ro->url, r->base, sizeof(r->base), err, errlen) < 0)
		goto fail;
	if (!ro->model || !ro->model[0]) {
		snprintf(err, errlen, "no model given for %s (--model NAME; natter models --remote %s lists them)",
		    r->base, r->base);
		goto fail;
	}
	if (strlen(ro->model) >= sizeof(r->model)) {
		snprintf(err, errlen, "--model: the name is too long");
		goto fail;
	}
	snprintf(r->model, sizeof(r->model), "%s", ro->model);
	snprintf(r->key_env, sizeof(r->key_env), "%s", ro->api_key_env ? ro->api_key_env : "");
	snprintf(r->tmpl_name, sizeof(r->tmpl_name), "the server's (remote)");
	if (ro->api_key && ro->api_key[0] && !(r->key = strdup(ro->api_key))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	r->no_extras = ro->no_extras;
	r->connect_timeout_s = ro->connect_timeout_s > 0 ? ro->connect_timeout_s : 10;
	r->read_timeout_s = ro->read_timeout_s > 0 ? ro->read_timeout_s : 300;
	atomic_init(&r->refused, 0);
	atomic_init(&r->no_usage_option, 0);
	atomic_init(&r->mct, 0);
	atomic_init(&r->no_kwargs, 0);
	/* OpenAI takes at most 4 stop strings; the session applies them all. */
	for (int i = 0; o && i < 8 && o->stop[i] && r->n_stops < 4; i++)
		if (o->stop[i][0] && !(r->stops[r->n_stops++] = strdup(o->stop[i]))) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	*out = r;
	return 0;
fail:
	remote_free(r);
	return -1;
}

int
remote_chat_new(const struct remote_opts *ro, const struct chat_opts *o, struct chat **out, char *err, size_t errlen)
{
	struct remote *r;

	*out = NULL;
	if (remote_new(ro, o, &r, err, errlen) < 0)
		return -1;
	return chat_new_engine(&remote_ops, r, o, out, err, errlen);
}

/* --- the model list --- */

/* A hosted catalogue's list runs past what http keeps of a body (1 MiB). */
#define MODELS_MAX_BODY ((size_t)32 << 20)

struct models_body {
	char *buf;
	size_t len, cap;
	const char *failed;          /* why it was not read whole */
};

static int
models_on_body(void *arg, const char *p, size_t n)
{
	struct models_body *b = arg;

	if (b->len + n > MODELS_MAX_BODY)
		b->failed = "is larger than 32 MiB";
	else if (strbuf_append(&b->buf, &b->len, &b->cap, p, n) < 0)
		b->failed = "does not fit in memory";
	return b->failed != NULL;
}

int
remote_models_list(const struct remote_opts *ro, struct oai_model **out, int *n, char *err, size_t errlen)
{
	struct remote_opts o = *ro;
	struct remote *r;
	struct http_req q;
	struct http_resp resp;
	char url[1100], herr[512];
	struct models_body b = { NULL, 0, 0, NULL };
	int rc = -1, hr;

	*out = NULL;
	*n = 0;
	o.model = "-";
	if (remote_new(&o, NULL, &r, err, errlen) < 0)
		return -1;
	snprintf(url, sizeof(url), "%s/models", r->base);
	memset(&q, 0, sizeof(q));
	q.url = url;
	q.bearer = r->key;
	q.connect_timeout_s = r->connect_timeout_s;
	q.stall_timeout_s = r->read_timeout_s < 60 ? r->read_timeout_s : 60;
	q.on_body = models_on_body;
	q.ctx = &b;
	hr = http_request(&q, &resp, herr, sizeof(herr));
	if (b.failed) {
		snprintf(err, errlen, "the model list at %s %s", url, b.failed);
	} else if (hr < 0) {
		transport_message(r, &resp, "GET /models failed", herr, err, errlen);
	} else if (resp.status == 404) {
		snprintf(err, errlen, "nothing answers at %s (404): is %s the server's OpenAI-compatible base URL "
		    "(usually ending in /v1)?", url, r->base);
	} else if (resp.status >= 300) {
		status_message(r, &resp, err, errlen);
	} else if (!b.buf || oai_models_parse(b.buf, b.len, out, n) < 0) {
		snprintf(err, errlen, "%s did not answer with a model list", url);
	} else {
		rc = 0;
	}
	free(b.buf);
	http_resp_free(&resp);
	remote_free(r);
	return rc;
}

int
remote_model_default(const struct remote_opts *ro, char *out, size_t n, char *err, size_t errlen)
{
	struct oai_model *m;
	int k;

	if (remote_models_list(ro, &m, &k, err, errlen) < 0)
		return -1;
	if (k == 1) {
		snprintf(out, n, "%s", m[0].id);
		free(m);
		return 0;
	}
	if (k == 0) {
		snprintf(err, errlen, "the server lists no model; name one with --model NAME");
	} else {
		size_t l = (size_t)snprintf(err, errlen, "the server offers %d models; choose one with --model NAME: ", k);
		for (int i = 0; i < k && l < errlen; i++)
			l += (size_t)snprintf(err + l, errlen - l, "%s%s", i ? ", " : "", m[i].id);
	}
	free(m);
	return -1;
}
