/* http.c -- the HTTP client over libcurl: hops followed by hand, headers kept, bodies streamed. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "natter/http.h"

/* The state of one http_request call, shared by libcurl's callbacks. */
struct xfer {
	const struct http_req *req;
	struct http_resp *resp;
	struct http_hop *hop;      /* the hop whose headers are arriving */
	int follow;                /* this hop is a redirect we will follow */
	int final_started;         /* the final response's headers are complete */
	int body_aborted;          /* on_body (or on_head) said stop */
	int too_many;              /* a redirect after the last one allowed */
	int hops_left;
};

/* The certificate authorities to trust instead of the system's
 * ($CURL_CA_BUNDLE, as the curl program reads it), read once by
 * http_global_init; NULL: the system's. */
static char *ca_bundle;

int
http_global_init(char *err, size_t errlen)
{
	const char *ca = getenv("CURL_CA_BUNDLE");
	CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "libcurl could not start: %s", curl_easy_strerror(rc));
		return -1;
	}
	free(ca_bundle);
	ca_bundle = ca && *ca ? strdup(ca) : NULL;
	return 0;
}

const char *
http_ca_bundle(void)
{
	return ca_bundle;
}

void
http_global_cleanup(void)
{
	free(ca_bundle);
	ca_bundle = NULL;
	curl_global_cleanup();
}

static void
hop_clear(struct http_hop *h)
{
	for (int i = 0; i < h->n_headers; i++) {
		free(h->headers[i].name);
		free(h->headers[i].value);
	}
	h->n_headers = 0;
}

void
http_resp_free(struct http_resp *r)
{
	if (!r)
		return;
	for (int i = 0; i < r->n_hops; i++) {
		hop_clear(&r->hops[i]);
		free(r->hops[i].url);
	}
	free(r->body);
	memset(r, 0, sizeof(*r));
}

const char *
http_resp_header(const struct http_resp *r, int hop, const char *name)
{
	const struct http_hop *h;

	if (hop < 0)
		hop = r->n_hops - 1;
	if (hop < 0 || hop >= r->n_hops)
		return NULL;
	h = &r->hops[hop];
	for (int i = 0; i < h->n_headers; i++)
		if (strcasecmp(h->headers[i].name, name) == 0)
			return h->headers[i].value;
	return NULL;
}

static int
is_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

static size_t
on_header_line(char *line, size_t size, size_t nitems, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nitems, e = n;
	struct http_hop *h = x->hop;

	while (e > 0 && (line[e - 1] == '\n' || line[e - 1] == '\r'))
		e--;
	if (e >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		/* A status line: a new response (after 100 Continue, too). */
		const char *sp = memchr(line, ' ', e);
		hop_clear(h);
		h->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		return n;
	}
	if (e == 0) {
		/* The end of this response's headers. */
		if (h->status >= 100 && h->status < 200)
			return n;
		x->follow = is_redirect(h->status) && x->req->max_redirects > 0 &&
		    http_resp_header(x->resp, (int)(h - x->resp->hops), "Location") != NULL;
		if (x->follow && x->hops_left <= 0) {
			/* One more than allowed: a loop, as a rule.  Its body is
			 * nobody's; the caller hears HTTP_EREDIRECT. */
			x->too_many = 1;
			return 0;
		}
		if (!x->follow) {
			x->final_started = 1;
			x->resp->status = h->status;
			if (x->req->on_head && x->req->on_head(x->req->ctx, x->resp) != 0) {
				x->body_aborted = 1;
				return 0;   /* libcurl stops the transfer */
			}
		}
		return n;
	}
	{
		const char *colon = memchr(line, ':', e);
		size_t vs, ve = e;
		if (!colon || h->n_headers >= HTTP_MAX_HEADERS)
			return n;
		vs = (size_t)(colon - line) + 1;
		while (vs < ve && (line[vs] == ' ' || line[vs] == '\t'))
			vs++;
		while (ve > vs && (line[ve - 1] == ' ' || line[ve - 1] == '\t'))
			ve--;
		h->headers[h->n_headers].name = strndup(line, (size_t)(colon - line));
		h->headers[h->n_headers].value = strndup(line + vs, ve - vs);
		if (!h->headers[h->n_headers].name || !h->headers[h->n_headers].value) {
			free(h->headers[h->n_headers].name);
			free(h->headers[h->n_headers].value);
			return 0;
		}
		h->n_headers++;
	}
	return n;
}

static size_t
on_body_data(char *p, size_t size, size_t nitems, void *arg)
{
	struct xfer *x = arg;
	struct http_resp *r = x->resp;
	size_t n = size * nitems;

	if (x->follow || !x->final_started)
		return n;   /* the body of a redirect: nobody reads it */
	r->body_bytes += (int64_t)n;
	if (x->req->on_body && r->status >= 200 && r->status < 300) {
		if (x->req->on_body(x->req->ctx, p, n) != 0) {
			x->body_aborted = 1;
			return 0;
		}
		return n;
	}
	if (r->body_len < HTTP_KEEP_BODY) {
		size_t keep = n;
		char *b;
		if (keep > HTTP_KEEP_BODY - r->body_len)
			keep = HTTP_KEEP_BODY - r->body_len;
		b = realloc(r->body, r->body_len + keep + 1);
		if (!b)
			return 0;
		memcpy(b + r->body_len, p, keep);
		r->body = b;
		r->body_len += keep;
		b[r->body_len] = 0;
	}
	return n;
}

static enum http_transport
transport_of(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return HTTP_T_RESOLVE;
	case CURLE_COULDNT_CONNECT:
		return HTTP_T_CONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		return HTTP_T_TIMEOUT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
		return HTTP_T_CERT;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_USE_SSL_FAILED:
		return HTTP_T_TLS;
	case CURLE_WEIRD_SERVER_REPLY:
#if LIBCURL_VERSION_NUM >= 0x080600
	case CURLE_TOO_LARGE:
#endif
		return HTTP_T_BADREPLY;
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
		return HTTP_T_CUT;
	default:
		return HTTP_T_NONE;
	}
}

static int
on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct xfer *x = arg;
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return x->req->cancel && atomic_load(x->req->cancel) ? 1 : 0;
}

/* A token goes into a header line: refuse anything that could split it. */
static int
token_ok(const char *t)
{
	for (; *t; t++)
		if ((unsigned char)*t < 0x20 || *t == 0x7f)
			return 0;
	return 1;
}

/* Performs one hop on H; returns the curl code. */
static CURLcode
do_hop(CURL *h, struct xfer *x, const char *url, int send_token, int as_get, char *cerr)
{
	const struct http_req *q = x->req;
	struct curl_slist *hdrs = NULL, *t;
	char line[512];
	CURLcode rc;

	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(h, CURLOPT_USERAGENT, "natter/" PACKAGE_VERSION);
	if (ca_bundle)
		curl_easy_setopt(h, CURLOPT_CAINFO, ca_bundle);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, q->connect_timeout_s > 0 ? q->connect_timeout_s : 30L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, q->stall_timeout_s > 0 ? q->stall_timeout_s : 60L);
	/* Behind a proxy that tunnels HTTPS, its "200 Connection
	 * established" and headers are not the server's answer (a resume
	 * taken for a server ignoring Range would start again from 0). */
	curl_easy_setopt(h, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header_line);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
	/* Bodies arrive as sent: no transparent decompression to second-guess
	 * sizes, ranges and checksums. */
	curl_easy_setopt(h, CURLOPT_HTTP_CONTENT_DECODING, 0L);
	for (int i = 0; q->headers && q->headers[i]; i++) {
		t = curl_slist_append(hdrs, q->headers[i]);
		if (!t)
			goto nomem;
		hdrs = t;
	}
	if (send_token) {
		/* Whatever its length (a JWT may be kilobytes): a key cut
		 * short would be refused as a wrong one. */
		size_t kn = strlen(q->bearer) + sizeof("Authorization: Bearer ");
		char *kl = malloc(kn);
		if (!kl)
			goto nomem;
		snprintf(kl, kn, "Authorization: Bearer %s", q->bearer);
		t = curl_slist_append(hdrs, kl);
		explicit_bzero(kl, kn);
		free(kl);
		if (!t)
			goto nomem;
		hdrs = t;
	}
	if (q->range_from > 0) {
		snprintf(line, sizeof(line), "Range: bytes=%lld-", (long long)q->range_from);
		t = curl_slist_append(hdrs, line);
		if (!t)
			goto nomem;
		hdrs = t;
	}
	if (hdrs)
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	if (!as_get && q->method && strcmp(q->method, "GET") != 0) {
		if (strcmp(q->method, "POST") == 0) {
			curl_easy_setopt(h, CURLOPT_POST, 1L);
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
			curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, q->body ? q->body : "");
		} else {
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
		}
	}
	rc = curl_easy_perform(h);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
	return rc;
nomem:
	curl_slist_free_all(hdrs);
	snprintf(cerr, CURL_ERROR_SIZE, "out of memory");
	return CURLE_OUT_OF_MEMORY;
}

int
http_request(const struct http_req *q, struct http_resp *r, char *err, size_t errlen)
{
	struct xfer x = { q, r, NULL, 0, 0, 0, 0, q->max_redirects < HTTP_MAX_HOPS ? q->max_redirects :
	    HTTP_MAX_HOPS - 1 };
	char token_origin[512] = "", origin[512], cerr[CURL_ERROR_SIZE];
	char *url = strdup(q->url);
	int as_get = 0, rc = HTTP_ERR;
	CURL *h = curl_easy_init();

	memset(r, 0, sizeof(*r));
	if (!url || !h) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (q->bearer) {
		if (!token_ok(q->bearer)) {
			snprintf(err, errlen, "the token contains control characters");
			goto out;
		}
		if (http_url_origin(q->bearer_origin ? q->bearer_origin : q->url, token_origin, sizeof(token_origin)) < 0) {
			snprintf(err, errlen, "%s: not an http or https URL", q->bearer_origin ? q->bearer_origin : q->url);
			goto out;
		}
	}
	for (;;) {
		struct http_hop *hop = &r->hops[r->n_hops];
		const char *loc;
		CURLcode cc;
		int send_token;

		if (http_url_origin(url, origin, sizeof(origin)) < 0) {
			snprintf(err, errlen, "%s: not an http or https URL", url);
			goto out;
		}
		/* The token goes to its own origin only: a redirect to a CDN
		 * (another host, port or scheme) does not get it. */
		send_token = q->bearer && strcmp(origin, token_origin) == 0;
		hop->url = url;
		url = NULL;
		r->n_hops++;
		x.hop = hop;
		x.follow = 0;
		cerr[0] = 0;
		cc = do_hop(h, &x, hop->url, send_token, as_get, cerr);
		if (cc != CURLE_OK) {
			if (q->cancel && atomic_load(q->cancel)) {
				snprintf(err, errlen, "interrupted");
				rc = HTTP_ECANCEL;
			} else if (x.body_aborted) {
				snprintf(err, errlen, "stopped by the receiver");
				rc = HTTP_EBODY;
			} else if (x.too_many) {
				r->status = hop->status;
				snprintf(err, errlen, "too many redirects (more than %d; the last from %.300s to %.300s): a "
				    "redirect loop", q->max_redirects, hop->url,
				    http_resp_header(r, r->n_hops - 1, "Location"));
				rc = HTTP_EREDIRECT;
			} else {
				snprintf(err, errlen, "%s", cerr[0] ? cerr : curl_easy_strerror(cc));
				rc = x.final_started && (cc == CURLE_PARTIAL_FILE || cc == CURLE_RECV_ERROR) ?
				    HTTP_EPARTIAL : HTTP_ERR;
				r->transport = transport_of(cc);
				{
					long e = 0, sent = 0;
					if (curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &e) == CURLE_OK)
						r->os_errno = (int)e;
					/* libcurl before 8.6 says "out of memory" for a
					 * header line over its limit (100 KB): after the
					 * request went out, that is what it means. */
					if (cc == CURLE_OUT_OF_MEMORY && curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &sent) ==
					    CURLE_OK && sent > 0)
						r->transport = HTTP_T_BADREPLY;
				}
				if (r->transport == HTTP_T_BADREPLY)
					snprintf(err, errlen, "a bad reply from %.300s: %s (libcurl: %s)", hop->url,
					    cc == CURLE_WEIRD_SERVER_REPLY ? "it is not HTTP" :
					    "its headers are larger than libcurl reads", cerr[0] ? cerr : curl_easy_strerror(cc));
			}
			goto out;
		}
		if (!x.follow)
			break;
		x.hops_left--;
		loc = http_resp_header(r, r->n_hops - 1, "Location");
		url = http_url_resolve(hop->url, loc);
		if (!url) {
			snprintf(err, errlen, "the server redirected to an invalid address");
			goto out;
		}
		if (r->n_hops == HTTP_MAX_HOPS) {
			/* Not reached: hops_left is at most HTTP_MAX_HOPS - 1. */
			snprintf(err, errlen, "too many redirects (more than %d): a redirect loop", HTTP_MAX_HOPS - 1);
			rc = HTTP_EREDIRECT;
			goto out;
		}
		/* As browsers do: 301/302/303 turn a POST into a GET. */
		if (hop->status != 307 && hop->status != 308)
			as_get = 1;
	}
	rc = 0;
out:
	free(url);
	if (h)
		curl_easy_cleanup(h);
	return rc;
}

/* --- URLs --- */

char *
http_url_resolve(const char *base, const char *ref)
{
	CURLU *u = curl_url();
	char *s = NULL, *out = NULL;

	if (!u || !ref)
		goto out;
	if (curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK)
		goto out;
	if (curl_url_set(u, CURLUPART_URL, ref, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_URL, &s, 0) != CURLUE_OK)
		goto out;
	out = strdup(s);
out:
	curl_free(s);
	curl_url_cleanup(u);
	return out;
}

int
http_url_origin(const char *url, char *out, size_t n)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL;
	int rc = -1;

	if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		goto out;
	if (strcasecmp(scheme, "http") && strcasecmp(scheme, "https"))
		goto out;
	for (char *p = scheme; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	for (char *p = host; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if ((size_t)snprintf(out, n, "%s://%s:%s", scheme, host, port) >= n)
		goto out;
	rc = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return rc;
}

char *
http_path_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(n * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = 0;
	return out;
}

char *
http_link_next(const char *link, const char *base)
{
	const char *p = link;

	while (p && *p) {
		const char *lt = strchr(p, '<'), *gt, *end, *rel;
		if (!lt || !(gt = strchr(lt, '>')))
			return NULL;
		/* The parameters of this link run to the next comma outside <>. */
		end = strchr(gt, ',');
		if (!end)
			end = gt + strlen(gt);
		rel = gt;
		while ((rel = strstr(rel, "rel=")) && rel < end) {
			const char *v = rel + 4;
			if (*v == '"')
				v++;
			if (strncmp(v, "next", 4) == 0 && (v[4] == '"' || v[4] == ';' || v[4] == ',' || v[4] == ' ' ||
			    v[4] == 0)) {
				char *ref = strndup(lt + 1, (size_t)(gt - lt - 1)), *u;
				if (!ref)
					return NULL;
				u = http_url_resolve(base, ref);
				free(ref);
				return u;
			}
			rel += 4;
		}
		p = *end ? end + 1 : end;
	}
	return NULL;
}
