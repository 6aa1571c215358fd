/* http.h -- an HTTP(S) client over libcurl: redirects followed by hand, tokens kept to their origin. */
#ifndef NATTER_HTTP_H
#define NATTER_HTTP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Used by `natter pull` (the Hugging Face hub) and meant for the remote
 * engine client (`--remote URL`, an OpenAI-compatible server): a request,
 * its body streamed to a callback, every hop of a redirect chain recorded
 * with its headers.  Redirects are followed here, not by libcurl, so that
 * the caller can read the headers of each hop (the hub puts the file's
 * checksum on its 302) and so that a bearer token is only ever sent to the
 * origin it belongs to (scheme, host and port), never to the host a
 * redirect points at.  The token is never written to any message.
 */

/* Results below 0. */
enum {
	HTTP_ERR = -1,        /* transport failure: resolve, connect, TLS, reset, timeout (ERR says which) */
	HTTP_ECANCEL = -2,    /* *cancel became nonzero */
	HTTP_EBODY = -3,      /* on_body returned nonzero (its own error is the caller's to report) */
	HTTP_EPARTIAL = -4,   /* the connection ended before the body the server announced was complete */
	HTTP_EREDIRECT = -5,  /* still redirected after max_redirects hops (a redirect loop, usually):
	                         ERR says where the last hop pointed; trying again will not help */
};

/* What kind of transport failure an HTTP_ERR or HTTP_EPARTIAL was
 * (http_resp.transport), for messages that say what to do about it. */
enum http_transport {
	HTTP_T_NONE,          /* none (or none of these) */
	HTTP_T_RESOLVE,       /* the host name did not resolve */
	HTTP_T_CONNECT,       /* no connection: refused, unreachable */
	HTTP_T_TLS,           /* the TLS handshake failed */
	HTTP_T_CERT,          /* the server's certificate is not trusted, or names another host */
	HTTP_T_TIMEOUT,       /* the connect timeout, or no byte for stall_timeout_s */
	HTTP_T_CUT,           /* the connection closed or broke in the middle of a response */
	HTTP_T_BADREPLY,      /* the reply is not HTTP libcurl can read: a malformed status line, or
	                         headers larger than its limit; trying again will not help */
};

#define HTTP_MAX_HOPS 6
#define HTTP_MAX_HEADERS 64

struct http_header {
	char *name;    /* as sent */
	char *value;   /* trimmed */
};

/* One response of a redirect chain. */
struct http_hop {
	long status;
	char *url;                                /* the URL requested */
	struct http_header headers[HTTP_MAX_HEADERS];
	int n_headers;
};

struct http_resp {
	struct http_hop hops[HTTP_MAX_HOPS];
	int n_hops;                  /* the last one is the final response */
	long status;                 /* the final status (0 if none arrived) */
	char *body;                  /* the final body when it was not streamed
	                                (no on_body, or a status >= 300), up to
	                                HTTP_KEEP_BODY bytes, NUL-terminated */
	size_t body_len;
	int64_t body_bytes;          /* bytes of the final body received in all */
	enum http_transport transport;   /* what an HTTP_ERR / HTTP_EPARTIAL was */
	int os_errno;                /* the system's error number behind it (ECONNREFUSED ...), 0 if none */
};
#define HTTP_KEEP_BODY (1 << 20)

/* Called with each piece of a 2xx final body; nonzero aborts (HTTP_EBODY). */
typedef int (*http_body_fn)(void *ctx, const char *p, size_t n);
/* Called once the final response's headers are in, before its body. */
typedef int (*http_head_fn)(void *ctx, const struct http_resp *r);

struct http_req {
	const char *method;            /* NULL: GET; "POST" with BODY */
	const char *url;
	const char *const *headers;    /* extra "Name: value" lines, NULL-terminated; sent to every hop */
	const char *bearer;            /* token for "Authorization: Bearer" (NULL: none) */
	const char *bearer_origin;     /* the origin it may go to (NULL: URL's own) */
	const char *body;              /* request body (copied by libcurl) */
	size_t body_len;
	int64_t range_from;            /* > 0: ask for bytes RANGE_FROM.. (Range header) */
	int max_redirects;             /* how many redirects to follow (at most HTTP_MAX_HOPS - 1); 0: none,
	                                  a 3xx is then the final response; > 0: one redirect more
	                                  than this is HTTP_EREDIRECT */
	long connect_timeout_s;        /* 0: 30 */
	long stall_timeout_s;          /* abort when no byte arrives for this long (0: 60) */
	http_head_fn on_head;          /* may be NULL */
	http_body_fn on_body;          /* NULL: keep the body in http_resp.body */
	void *ctx;
	const atomic_int *cancel;      /* may be NULL; polled during the transfer */
};

/* Once per process, before any thread starts (libcurl's global set-up).
 * It also reads $CURL_CA_BUNDLE: a file of certificate authorities every
 * HTTPS request then trusts instead of the system's (for a server with a
 * certificate of its own).  Fails (-1, ERR filled) when libcurl cannot
 * start. */
int http_global_init(char *err, size_t errlen);
void http_global_cleanup(void);
/* The $CURL_CA_BUNDLE that http_global_init read (borrowed, valid until
 * http_global_cleanup), or NULL: the system's authorities.  Any thread. */
const char *http_ca_bundle(void);

/*
 * Performs REQ, filling *RESP (which the caller frees with http_resp_free,
 * whatever the result).  Returns 0 when a final response arrived and its
 * body was read (any status: the caller judges it, and a 3xx only when
 * REQ->max_redirects is 0), or a negative HTTP_E* value with ERR set
 * (never naming the token).  Any thread; each call uses
 * its own connection.
 */
int http_request(const struct http_req *req, struct http_resp *resp, char *err, size_t errlen);
void http_resp_free(struct http_resp *r);

/* The value of header NAME (case-insensitive) in hop HOP (-1: the final
 * one), or NULL.  Borrowed from R. */
const char *http_resp_header(const struct http_resp *r, int hop, const char *name);

/* URL resolution and origins (pure functions, any thread). */
/* REF resolved against BASE into a new string (caller frees), or NULL. */
char *http_url_resolve(const char *base, const char *ref);
/* Writes "scheme://host:port" of URL (port made explicit) into OUT; -1 if URL is not http(s). */
int http_url_origin(const char *url, char *out, size_t n);
/* Percent-encodes S for a URL path (keeps unreserved characters and '/'). Caller frees. */
char *http_path_escape(const char *s);
/* The URL of rel="next" in an RFC 8288 Link header value, resolved against
 * BASE (caller frees), or NULL. */
char *http_link_next(const char *link, const char *base);

#endif
