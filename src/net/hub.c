/* hub.c -- Hugging Face hub client: tree listings, resumable verified downloads into the models folder. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "natter/gguf.h"
#include "natter/hub.h"
#include "natter/http.h"
#include "natter/outfile.h"
#include "natter/sha256.h"

#define DEFAULT_ENDPOINT "https://huggingface.co"
#define MAX_PAGES 100
/* 2^53: the largest size a JSON number (a double) holds exactly; sizes
 * beyond it are refused, as no disk holds such a file. */
#define HUB_SIZE_MAX ((int64_t)1 << 53)

void
hub_opts_from_env(struct hub_opts *o)
{
	const char *ep = getenv("HF_ENDPOINT"), *tok = getenv("HF_TOKEN");

	memset(o, 0, sizeof(*o));
	o->endpoint = ep && *ep ? ep : DEFAULT_ENDPOINT;
	o->token = tok && *tok ? tok : NULL;
	o->revision = "main";
	o->retries = 3;
}

static void
notice(const struct hub_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
notice(const struct hub_opts *o, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!o->notice)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o->notice(o->ctx, msg);
}

int
hub_repo_check(const char *repo, char *err, size_t errlen)
{
	const char *slash = strchr(repo, '/');
	int ok = slash && slash != repo && slash[1] && !strchr(slash + 1, '/') && !strstr(repo, "..") &&
	    repo[0] != '.' && slash[1] != '.';

	for (const char *p = repo; ok && *p; p++)
		ok = isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.' || *p == '/';
	if (!ok) {
		snprintf(err, errlen, "'%.200s' is not a repository name like Qwen/Qwen3-0.6B-GGUF", repo);
		return -1;
	}
	return 0;
}

/* "https://host/" and "https://host" give the same URLs. */
static void
base_url(const struct hub_opts *o, char *out, size_t n)
{
	size_t l;
	snprintf(out, n, "%s", o->endpoint);
	l = strlen(out);
	while (l > 0 && out[l - 1] == '/')
		out[--l] = 0;
}

/* A certificate refused: ERR (curl's words) gets what it means and what to
 * do, with the URL of the hop that failed. */
static void
cert_message(const struct http_resp *r, const char *url, char *err, size_t errlen)
{
	char said[300], by[600];
	const char *where = r->n_hops > 0 && r->hops[r->n_hops - 1].url ? r->hops[r->n_hops - 1].url : url;

	if (r->transport != HTTP_T_CERT)
		return;
	snprintf(said, sizeof(said), "%s", err);
	if (http_ca_bundle())
		snprintf(by, sizeof(by), "in $CURL_CA_BUNDLE (%s)", http_ca_bundle());
	else
		snprintf(by, sizeof(by), "this system trusts");
	snprintf(err, errlen, "%s is not trusted: its certificate is not signed by an authority %s, or does not name "
	    "that host (%s)%s", where, by, said,
	    http_ca_bundle() ? "" : "; for a mirror with a certificate of its own, name the file that holds it "
	    "(or its authority's) in $CURL_CA_BUNDLE");
}

/* The error for an HTTP status that ended a request about WHAT. */
static int
status_error(const struct hub_opts *o, long status, const char *what, char *err, size_t errlen)
{
	if (status == 401 || status == 403) {
		if (o->token)
			snprintf(err, errlen, "the hub refused access to %s (HTTP %ld) with the token in HF_TOKEN: check "
			    "the token, and for a gated model accept its licence on its page first", what, status);
		else
			snprintf(err, errlen, "%s does not exist or needs an access token (HTTP %ld): set HF_TOKEN to a "
			    "token from https://huggingface.co/settings/tokens", what, status);
		return HUB_EAUTH;
	}
	if (status == 404) {
		snprintf(err, errlen, "%s was not found on the hub (HTTP 404)", what);
		return HUB_ENOTFOUND;
	}
	snprintf(err, errlen, "the hub answered HTTP %ld for %s", status, what);
	return status >= 500 ? HUB_ENET : HUB_ERR;
}

void
hub_files_free(struct hub_file *f, int n)
{
	if (!f)
		return;
	for (int i = 0; i < n; i++)
		free(f[i].path);
	free(f);
}

static int
is_hex64(const char *s)
{
	for (int i = 0; i < 64; i++)
		if (!isxdigit((unsigned char)s[i]))
			return 0;
	return s[64] == 0;
}

/* A size in the file list: *OUT gets V's whole number of bytes, or -1
 * when V is absent or null (unknown).  Returns -1 (*OUT -1) when V is
 * anything but an integer in [0, 2^53]: a number like 1e30 does not fit an
 * int64_t, and converting it would be undefined behaviour. */
static int
hub_size_json(const cJSON *v, int64_t *out)
{
	double d;

	*out = -1;
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v))
		return -1;
	d = v->valuedouble;
	if (!(d >= 0 && d <= (double)HUB_SIZE_MAX))   /* NaN fails too */
		return -1;
	if ((double)(int64_t)d != d)   /* in range, so the conversion is defined */
		return -1;
	*out = (int64_t)d;
	return 0;
}

/* Reads the decimal size at *P (at most 2^53), moving *P past its digits.
 * Returns it, or -1 (*P unmoved) when there are no digits or it is larger;
 * never overflows, whatever the server sent. */
static int64_t
hub_size_scan(const char **p)
{
	const char *s = *p;
	int64_t v = 0;

	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		v = v * 10 + (*s - '0');
		if (v > HUB_SIZE_MAX)
			return -1;
	}
	*p = s;
	return v;
}

/* A size in a header value V (X-Linked-Size, Content-Length): its digits
 * and nothing else, at most 2^53; -1 otherwise (V NULL included). */
static int64_t
hub_size_header(const char *v)
{
	int64_t n;

	if (!v)
		return -1;
	n = hub_size_scan(&v);
	return n >= 0 && *v == 0 ? n : -1;
}

/* Adds the files of one listing page of REPO.  Returns 0, -1 (not the
 * form the hub's list has), -2 (out of memory), or -3 (a size that is not
 * a whole number of bytes, with ERR naming the file). */
static int
parse_tree(const char *body, size_t len, const char *repo, struct hub_file **files, int *n, int *cap, char *err,
	   size_t errlen)
{
	cJSON *root = cJSON_ParseWithLength(body, len), *it;

	if (!cJSON_IsArray(root)) {
		cJSON_Delete(root);
		return -1;
	}
	cJSON_ArrayForEach(it, root) {
		const cJSON *type = cJSON_GetObjectItemCaseSensitive(it, "type");
		const cJSON *path = cJSON_GetObjectItemCaseSensitive(it, "path");
		const cJSON *size = cJSON_GetObjectItemCaseSensitive(it, "size");
		const cJSON *lfs = cJSON_GetObjectItemCaseSensitive(it, "lfs");
		struct hub_file *f;
		if (!cJSON_IsString(type) || strcmp(type->valuestring, "file") != 0 || !cJSON_IsString(path))
			continue;
		/* Names go to the terminal and the file system: none with control characters. */
		{
			const unsigned char *c = (const unsigned char *)path->valuestring;
			while (*c && *c >= 0x20 && *c != 0x7f)
				c++;
			if (*c)
				continue;
		}
		if (*n == *cap) {
			int nc = *cap ? *cap * 2 : 32;
			struct hub_file *nf = realloc(*files, (size_t)nc * sizeof(*nf));
			if (!nf)
				goto fail;
			*files = nf;
			*cap = nc;
		}
		f = &(*files)[*n];
		memset(f, 0, sizeof(*f));
		{
			/* lfs.size, when there, wins over "size" (as before);
			 * neither may be anything but a whole number. */
			const cJSON *lsz = cJSON_IsObject(lfs) ? cJSON_GetObjectItemCaseSensitive(lfs, "size") : NULL;
			const cJSON *bad = NULL;
			int64_t s1, s2;
			if (hub_size_json(size, &s1) < 0)
				bad = size;
			if (hub_size_json(lsz, &s2) < 0)
				bad = lsz;
			if (bad) {
				char shown[64];
				if (cJSON_IsNumber(bad))
					snprintf(shown, sizeof(shown), "%.17g", bad->valuedouble);
				else
					snprintf(shown, sizeof(shown), "a JSON %s", cJSON_IsString(bad) ? "string" : "value "
					    "that is no number");
				snprintf(err, errlen, "the hub's file list for %s gives %.300s the size %s, which is not a "
				    "whole number of bytes from 0 to 2^53: the list cannot be trusted", repo,
				    path->valuestring, shown);
				cJSON_Delete(root);
				return -3;
			}
			f->size = s2 >= 0 ? s2 : s1;
		}
		f->path = strdup(path->valuestring);
		if (!f->path)
			goto fail;
		if (cJSON_IsObject(lfs)) {
			const cJSON *oid = cJSON_GetObjectItemCaseSensitive(lfs, "oid");
			if (cJSON_IsString(oid) && strlen(oid->valuestring) == 64 && is_hex64(oid->valuestring)) {
				for (int i = 0; i < 64; i++)
					f->sha256[i] = (char)tolower((unsigned char)oid->valuestring[i]);
				f->sha256[64] = 0;
			}
		}
		(*n)++;
	}
	cJSON_Delete(root);
	return 0;
fail:
	cJSON_Delete(root);
	return -2;
}

int
hub_list(const struct hub_opts *o, const char *repo, struct hub_file **files, int *n, char *err, size_t errlen)
{
	char base[1024], what[512], *url, *seen[MAX_PAGES];
	int cap = 0, rc = HUB_ERR, pages = 0;
	char *erepo = http_path_escape(repo), *erev = http_path_escape(o->revision ? o->revision : "main");

	*files = NULL;
	*n = 0;
	base_url(o, base, sizeof(base));
	snprintf(what, sizeof(what), "the repository %s", repo);
	url = erepo && erev ? malloc(strlen(base) + strlen(erepo) + strlen(erev) + 64) : NULL;
	if (!url) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	sprintf(url, "%s/api/models/%s/tree/%s?recursive=true", base, erepo, erev);
	while (url) {
		struct http_req q = { 0 };
		struct http_resp r;
		const char *link, *page;
		int hr, pr;

		/* A Link that leads back to a page already read would list its
		 * files again, forever: the pages read are kept to compare. */
		for (int i = 0; i < pages; i++) {
			if (strcmp(seen[i], url) == 0) {
				snprintf(err, errlen, "the hub's file list for %s loops: page %d links back to page %d "
				    "(%.300s) as the next one", repo, pages, i + 1, url);
				goto out;
			}
		}
		if (pages == MAX_PAGES) {
			snprintf(err, errlen, "the hub's file list for %s goes on for more than %d pages (the next is "
			    "%.300s): natter stops rather than use part of it", repo, MAX_PAGES, url);
			goto out;
		}
		page = seen[pages++] = url;   /* SEEN owns it now */
		url = NULL;
		q.url = page;
		q.bearer = o->token;
		q.bearer_origin = base;
		q.max_redirects = 5;
		q.cancel = o->cancel;
		hr = http_request(&q, &r, err, errlen);
		if (hr < 0) {
			/* A loop of redirects or an unreadable reply is not the
			 * network's fault. */
			rc = hr == HTTP_ECANCEL ? HUB_ECANCEL : hr == HTTP_EREDIRECT || r.transport == HTTP_T_BADREPLY ?
			    HUB_ERR : HUB_ENET;
			cert_message(&r, page, err, errlen);
			http_resp_free(&r);
			goto out;
		}
		if (r.status != 200) {
			rc = status_error(o, r.status, what, err, errlen);
			http_resp_free(&r);
			goto out;
		}
		pr = parse_tree(r.body ? r.body : "", r.body_len, repo, files, n, &cap, err, errlen);
		if (pr == -1 || pr == -2)
			snprintf(err, errlen, pr == -2 ? "out of memory" : "the hub's file list for %s is not what "
			    "natter expects (not a JSON array)", repo);
		if (pr < 0) {
			http_resp_free(&r);
			goto out;
		}
		link = http_resp_header(&r, -1, "Link");
		url = link ? http_link_next(link, r.hops[r.n_hops - 1].url) : NULL;
		http_resp_free(&r);
	}
	rc = 0;
out:
	free(url);   /* a next page not read */
	for (int i = 0; i < pages; i++)
		free(seen[i]);
	free(erepo);
	free(erev);
	if (rc < 0) {
		hub_files_free(*files, *n);
		*files = NULL;
		*n = 0;
	}
	return rc;
}

static const char *
base_name(const char *path)
{
	const char *b = strrchr(path, '/');
	return b ? b + 1 : path;
}

/* Whether the base name B ends in ".gguf" (any case) after something. */
static int
hub_is_gguf(const char *b)
{
	size_t l = strlen(b);
	return l > 5 && strcasecmp(b + l - 5, ".gguf") == 0;
}

int
hub_is_projector(const char *path)
{
	const char *b = base_name(path);
	return hub_is_gguf(b) && strncasecmp(b, "mmproj", 6) == 0;
}

int
hub_is_model(const char *path)
{
	return hub_is_gguf(base_name(path)) && !hub_is_projector(path);
}

int
hub_is_split(const char *path)
{
	const char *b = base_name(path), *of = strstr(b, "-of-");
	return of && of - b >= 6 && of[-6] == '-' && isdigit((unsigned char)of[-1]) && isdigit((unsigned char)of[4]);
}

int
hub_pick(const struct hub_file *f, int n)
{
	int found = -1;
	for (int i = 0; i < n; i++) {
		if (!hub_is_model(f[i].path) || hub_is_split(f[i].path) || !strcasestr(base_name(f[i].path), "q4_k_m"))
			continue;
		if (found >= 0)
			return -2;
		found = i;
	}
	return found;
}

char *
hub_models_dir(char *buf, size_t n)
{
	const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");

	if (xdg && *xdg)
		snprintf(buf, n, "%s/natter/models", xdg);
	else if (home && *home)
		snprintf(buf, n, "%s/.local/share/natter/models", home);
	else
		return NULL;
	return buf;
}

static void
human(int64_t b, char *out, size_t n)
{
	if (b < 0)
		snprintf(out, n, "?");
	else if (b >= (int64_t)1 << 30)
		snprintf(out, n, "%.2f GiB", b / (double)((int64_t)1 << 30));
	else if (b >= 1 << 20)
		snprintf(out, n, "%.1f MiB", b / (double)(1 << 20));
	else
		snprintf(out, n, "%lld bytes", (long long)b);
}

/* Free bytes for an unprivileged writer in DIR, or -1. */
static int64_t
free_space(const char *dir)
{
	struct statvfs sv;
	if (statvfs(dir, &sv) < 0)
		return -1;
	return (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
}

static double
mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One download in progress. */
struct dl {
	const struct hub_opts *o;
	const char *dir;
	const char *name;
	int fd;
	struct sha256 sha;
	int64_t have;                /* bytes in the part file, all hashed */
	int64_t total;               /* -1 unknown */
	int64_t resumed;             /* bytes there when this run began */
	char header_sha[65];         /* from the resolve reply */
	int enospc, werrno, bad_range;
	int size_wrong;              /* the server's file is not TOTAL bytes: 1 shorter, 2 longer */
	int64_t server_size;         /* its size when a reply said it, else -1 */
	double last_progress;
	char *err;
	size_t errlen;
};

static void
progress(struct dl *d, int force)
{
	double t = mono_s();
	if (!d->o->progress || (!force && t - d->last_progress < 0.1))
		return;
	d->last_progress = t;
	d->o->progress(d->o->ctx, d->have, d->total, d->resumed);
}

/* Empties the part file (the server would not resume it). */
static int
restart_part(struct dl *d)
{
	if (ftruncate(d->fd, 0) < 0 || lseek(d->fd, 0, SEEK_SET) < 0)
		return -1;
	d->have = 0;
	d->resumed = 0;   /* what is kept now is this run's */
	sha256_init(&d->sha);
	return 0;
}

/* "ETag: W/"abc"" -> abc, when it is a SHA-256. */
static void
etag_sha(const char *v, char *out)
{
	char tmp[80];
	size_t l;

	if (!v)
		return;
	if (strncmp(v, "W/", 2) == 0)
		v += 2;
	if (*v == '"')
		v++;
	snprintf(tmp, sizeof(tmp), "%s", v);
	l = strlen(tmp);
	if (l > 0 && tmp[l - 1] == '"')
		tmp[--l] = 0;
	if (l == 64 && is_hex64(tmp)) {
		for (int i = 0; i < 65; i++)
			out[i] = (char)tolower((unsigned char)tmp[i]);
	}
}

static int
space_ok(struct dl *d)
{
	int64_t need = d->total - d->have, avail;
	char a[32], b[32];

	if (d->total < 0 || need <= 0)
		return 1;
	avail = free_space(d->dir);
	if (avail < 0 || avail >= need)
		return 1;
	human(need, a, sizeof(a));
	human(avail, b, sizeof(b));
	snprintf(d->err, d->errlen, "%s needs %s more but %s has only %s free: nothing was downloaded", d->name, a,
	    d->dir, b);
	return 0;
}

/* Whether SIZE, the file's size as a reply of the server says it (-1: not
 * said), contradicts the size the hub gave (D->total): then no download
 * of that server's file can match the hub's, and D says so. */
static int
hub_size_differs(struct dl *d, int64_t size)
{
	if (size < 0 || d->total < 0 || size == d->total)
		return 0;
	d->size_wrong = size < d->total ? 1 : 2;
	d->server_size = size;
	return 1;
}

static int
on_head(void *ctx, const struct http_resp *r)
{
	struct dl *d = ctx;
	const char *v;

	/* The hub's own replies name the content's checksum and size: its 302
	 * to the CDN carries X-Linked-Etag and X-Linked-Size; a file served
	 * directly has its checksum as ETag (only the first hop's ETag counts:
	 * a CDN's is its own business). */
	for (int i = 0; i < r->n_hops && !d->header_sha[0]; i++)
		etag_sha(http_resp_header(r, i, "X-Linked-Etag"), d->header_sha);
	if (!d->header_sha[0])
		etag_sha(http_resp_header(r, 0, "ETag"), d->header_sha);
	for (int i = 0; i < r->n_hops && d->total < 0; i++)
		d->total = hub_size_header(http_resp_header(r, i, "X-Linked-Size"));
	if (r->status == 206) {
		/* "bytes FROM-TO/SIZE" (SIZE may be "*"); FROM must be where the
		 * part ends. */
		int64_t from = -1, size = -1;
		v = http_resp_header(r, -1, "Content-Range");
		if (v && strncmp(v, "bytes ", 6) == 0) {
			v += 6;
			from = hub_size_scan(&v);
			if (from >= 0 && *v == '-') {
				v++;
				if (hub_size_scan(&v) < 0)
					from = -1;
				else if (*v == '/')
					size = hub_size_header(v + 1);
			} else {
				from = -1;
			}
		}
		if (from < 0 || from != d->have) {
			d->bad_range = 1;
			return 1;
		}
		if (hub_size_differs(d, size))
			return 1;
		if (d->total < 0)
			d->total = size;
	} else if (r->status >= 200 && r->status < 300) {
		/* The whole file (200, or a proxy's 203): its length is the
		 * file's size. */
		int64_t size = hub_size_header(http_resp_header(r, -1, "Content-Length"));
		if (hub_size_differs(d, size))
			return 1;
		if (d->have > 0) {
			notice(d->o, "the server does not resume downloads: starting %s again", d->name);
			if (restart_part(d) < 0) {
				d->werrno = errno;
				return 1;
			}
		}
		if (d->total < 0)
			d->total = size;
	} else {
		return 0;   /* an error status: its body is kept for the caller */
	}
	if (!space_ok(d)) {
		d->enospc = 2;
		return 1;
	}
	return 0;
}

static int
on_body(void *ctx, const char *p, size_t n)
{
	struct dl *d = ctx;
	size_t off = 0;

	/* Never more than the hub's size, on disk or in the progress shown. */
	if (d->total >= 0 && (int64_t)n > d->total - d->have) {
		d->size_wrong = 2;
		d->server_size = -1;
		return 1;
	}
	while (off < n) {
		ssize_t w = write(d->fd, p + off, n - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOSPC || errno == EDQUOT)
				d->enospc = 1;
			d->werrno = errno;
			return 1;
		}
		sha256_update(&d->sha, p + off, (size_t)w);
		off += (size_t)w;
		d->have += w;
	}
	progress(d, 0);
	return 0;
}

/* The size of the file in a 416's Content-Range value V: the digits after
 * "bytes *" and a slash; -1 when V says none. */
static int64_t
hub_range_size(const char *v)
{
	return v && strncmp(v, "bytes */", 8) == 0 ? hub_size_header(v + 8) : -1;
}

/* The message for D->size_wrong, into ERR. */
static void
hub_size_message(const struct dl *d, char *err, size_t errlen)
{
	if (d->server_size >= 0)
		snprintf(err, errlen, "the server's copy of %s is %lld bytes but the hub says %lld: it is %s than the "
		    "file the hub lists, so no download of it can match; nothing of it was kept", d->name,
		    (long long)d->server_size, (long long)d->total, d->size_wrong == 1 ? "shorter" : "longer");
	else
		snprintf(err, errlen, "the server sent more of %s than the %lld bytes the hub says it has, so the "
		    "download cannot match the file the hub lists; nothing of it was kept", d->name,
		    (long long)d->total);
}

/* Hashes the part file's existing bytes (resuming a previous run). */
static int
hash_existing(struct dl *d)
{
	char *buf = malloc(1 << 20);
	int64_t left = d->have;

	if (!buf)
		return -1;
	if (lseek(d->fd, 0, SEEK_SET) < 0) {
		free(buf);
		return -1;
	}
	while (left > 0) {
		ssize_t r = read(d->fd, buf, left > (1 << 20) ? (1 << 20) : (size_t)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(buf);
			return -1;
		}
		sha256_update(&d->sha, buf, (size_t)r);
		left -= r;
	}
	free(buf);
	return lseek(d->fd, 0, SEEK_END) < 0 ? -1 : 0;
}

/* Waits S seconds (at most 10) before another try; Ctrl-C (O->cancel)
 * ends the wait: nonzero then. */
static int
sleep_s(const struct hub_opts *o, int s)
{
	struct timespec ts = { 0, 100000000 };
	for (int i = 0; i < 10 * (s < 10 ? s : 10); i++) {
		if (o->cancel && atomic_load(o->cancel))
			return 1;
		nanosleep(&ts, NULL);
	}
	return o->cancel && atomic_load(o->cancel);
}

int
hub_download(const struct hub_opts *o, const char *repo, const struct hub_file *f, const char *dir, char *dest,
	     size_t destlen, char *err, size_t errlen)
{
	struct dl d;
	char part[4200], base[1024], got[65], *url = NULL, *erepo = NULL, *epath = NULL, *erev = NULL;
	const char *name = base_name(f->path);
	struct stat st;
	int rc = HUB_ERR, attempt, dfd;

	memset(&d, 0, sizeof(d));
	d.o = o;
	d.dir = dir;
	d.name = name;
	d.fd = -1;
	d.total = f->size;
	d.err = err;
	d.errlen = errlen;
	if (!name[0] || name[0] == '.') {
		snprintf(err, errlen, "'%s' is not a file name natter can save", f->path);
		return HUB_ERR;
	}
	if (outfile_mkdirs(dir, 0755, err, errlen) < 0)
		return HUB_ERR;
	snprintf(dest, destlen, "%s/%s", dir, name);
	snprintf(part, sizeof(part), "%s.part", dest);
	if (stat(dest, &st) == 0) {
		if (f->unlisted) {
			/* No file list: no size or SHA-256 to tell it by. */
			notice(o, "%s is already there (without the hub's file list there is nothing to check it against; "
			    "move it away to download it again)", dest);
			return 0;
		}
		if (f->size >= 0 && st.st_size == f->size && !f->sha256[0]) {
			notice(o, "%s is already there (the same size; the hub gives no SHA-256 to check it against)",
			    dest);
			return 0;
		}
		/* The same size is not the same file (a damaged copy, a file
		 * re-uploaded): the hub's SHA-256 says. */
		if (f->size >= 0 && st.st_size == f->size) {
			if (sha256_file(dest, got, err, errlen) < 0)
				return HUB_ERR;
			if (!strcmp(got, f->sha256)) {
				notice(o, "%s is already there (SHA-256 verified)", dest);
				return 0;
			}
			snprintf(err, errlen, "%s already exists and is not the file on the hub (its SHA-256 is %s, the "
			    "hub's %s); move it away to download it again", dest, got, f->sha256);
			return HUB_EEXIST;
		}
		snprintf(err, errlen, "%s already exists and is not the file on the hub (%lld bytes here); move it "
		    "away to download it again", dest, (long long)st.st_size);
		return HUB_EEXIST;
	}
	/* The part is natter's own file: not a link to another (in a folder
	 * others may write, it would be emptied and written over), nor a
	 * device or pipe. */
	d.fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (d.fd < 0) {
		if (errno == ELOOP)
			snprintf(err, errlen, "%s is a symbolic link, not a download of natter's: remove it to download %s",
			    part, name);
		else
			snprintf(err, errlen, "cannot write %s: %s", part, strerror(errno));
		return HUB_ERR;
	}
	if (flock(d.fd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, errlen, "another natter pull is downloading %s", dest);
		close(d.fd);
		return HUB_ERR;
	}
	sha256_init(&d.sha);
	if (fstat(d.fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", part, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a file, not a download of natter's: remove it to download %s", part,
		    name);
		goto out;
	}
	d.have = st.st_size;
	if (d.total >= 0 && d.have > d.total) {
		notice(o, "%s is longer than the file on the hub: starting again", part);
		if (restart_part(&d) < 0) {
			snprintf(err, errlen, "%s: %s", part, strerror(errno));
			goto out;
		}
	}
	if (d.have > 0 && !f->sha256[0] && !f->unlisted) {
		/* Listed without a SHA-256 (not an LFS file): nothing would tell
		 * an earlier run's part of another file (or of another version
		 * of this one) from a part of this one.  (Unlisted, the download
		 * may bring one, X-Linked-Etag: a part of another file is then
		 * found, and fetched again whole; without one, the file must at
		 * least be whole GGUF.) */
		notice(o, "%s is from an earlier run, and the hub gives no SHA-256 to check a resumed file against: "
		    "starting again", part);
		if (restart_part(&d) < 0) {
			snprintf(err, errlen, "%s: %s", part, strerror(errno));
			goto out;
		}
	}
	if (d.have > 0) {
		char h[32];
		human(d.have, h, sizeof(h));
		notice(o, "resuming %s: %s already downloaded", name, h);
		if (hash_existing(&d) < 0) {
			snprintf(err, errlen, "cannot read %s: %s", part, strerror(errno));
			goto out;
		}
	}
	d.resumed = d.have;
	if (!space_ok(&d)) {
		rc = HUB_ESPACE;
		goto out;   /* the part (if any) stays: freeing space and running again resumes it */
	}
	base_url(o, base, sizeof(base));
	erepo = http_path_escape(repo);
	epath = http_path_escape(f->path);
	erev = http_path_escape(o->revision ? o->revision : "main");
	url = erepo && epath && erev ? malloc(strlen(base) + strlen(erepo) + strlen(epath) + strlen(erev) + 32) : NULL;
	if (!url) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	sprintf(url, "%s/%s/resolve/%s/%s", base, erepo, erev, epath);
again:
	for (attempt = 0; attempt <= o->retries; attempt++) {
		struct http_req q = { 0 };
		struct http_resp r;
		int64_t before = d.have;
		int hr;

		if (d.total >= 0 && d.have == d.total)
			break;   /* complete: a previous run stopped just before checking it */
		q.url = url;
		q.bearer = o->token;
		q.bearer_origin = base;
		q.max_redirects = 5;
		q.range_from = d.have;
		d.bad_range = 0;   /* of this request */
		q.on_head = on_head;
		q.on_body = on_body;
		q.ctx = &d;
		q.cancel = o->cancel;
		hr = http_request(&q, &r, err, errlen);
		progress(&d, 1);
		if (hr < 0 && r.transport == HTTP_T_CERT) {
			/* Trying again will not change the certificate. */
			cert_message(&r, url, err, errlen);
			rc = HUB_ENET;
			http_resp_free(&r);
			goto out;
		}
		if (hr == HTTP_EREDIRECT || (hr < 0 && r.transport == HTTP_T_BADREPLY)) {
			/* Nor a redirect loop, nor a reply that cannot be read. */
			char e2[700];
			snprintf(e2, sizeof(e2), "%s", err);
			snprintf(err, errlen, "the download of %s failed, and trying again would not help: %s", name, e2);
			rc = HUB_ERR;
			http_resp_free(&r);
			goto out;
		}
		if (d.enospc) {
			if (d.enospc == 1) {
				char h[32];
				human(d.have, h, sizeof(h));
				snprintf(err, errlen, "the disk holding %s is full (after %s of %s); the partial file was "
				    "removed to give the space back", dir, h, name);
				unlink(part);
			}
			rc = HUB_ESPACE;
			http_resp_free(&r);
			goto out;
		}
		if (d.werrno) {
			snprintf(err, errlen, "cannot write %s: %s", part, strerror(d.werrno));
			http_resp_free(&r);
			goto out;
		}
		if (hr == HTTP_ECANCEL) {
			http_resp_free(&r);
			goto cancelled;
		}
		if (hr == 0 && r.status == 416 && d.have > 0)   /* its Content-Range may say the server's size */
			hub_size_differs(&d, hub_range_size(http_resp_header(&r, -1, "Content-Range")));
		if (d.size_wrong) {
			/* The server's file is not the one the hub lists:
			 * resuming or trying again cannot make it match, and a
			 * part of it is of no use. */
			hub_size_message(&d, err, errlen);
			unlink(part);
			rc = HUB_EVERIFY;
			http_resp_free(&r);
			goto out;
		}
		if (d.bad_range) {
			snprintf(err, errlen, "the server sent another part of %s than asked for", name);
			restart_part(&d);
			http_resp_free(&r);
			if (attempt < o->retries)
				continue;
			rc = HUB_ERR;
			goto out;
		}
		if (hr == 0 && r.status == 416 && d.have > 0) {
			/* Nothing left to send, or the part is not of this file. */
			http_resp_free(&r);
			if (d.total < 0 || d.have != d.total)
				restart_part(&d);
			continue;
		}
		if (hr == 0 && (r.status < 200 || r.status >= 300)) {
			char what[600];
			snprintf(what, sizeof(what), "%s in %s", f->path, repo);
			rc = status_error(o, r.status, what, err, errlen);
			http_resp_free(&r);
			if (rc == HUB_ENET && attempt < o->retries) {
				notice(o, "%s; retrying", err);
				if (sleep_s(o, attempt + 1))
					goto cancelled;
				continue;
			}
			goto out;
		}
		http_resp_free(&r);
		if (hr == 0 && (d.total < 0 || d.have == d.total))
			break;   /* complete */
		/* The connection broke (or ended early): resume where it stopped. */
		if (attempt == o->retries) {
			char h[32], t[32], e2[300];
			human(d.have, h, sizeof(h));
			human(d.total, t, sizeof(t));
			snprintf(e2, sizeof(e2), "%s", hr < 0 ? err : "the connection ended early");
			snprintf(err, errlen, "the download of %s stopped at %s of %s (%s); run the same command to resume",
			    name, h, t, e2);
			rc = HUB_ENET;
			goto out;
		}
		{
			char h[32];
			human(d.have, h, sizeof(h));
			notice(o, "the connection broke at %s (%s); resuming", h, hr < 0 ? err : "ended early");
		}
		if (d.have == before && sleep_s(o, attempt + 1))   /* no progress: wait a little */
			goto cancelled;
	}
	if (attempt > o->retries && !(d.total >= 0 && d.have == d.total)) {
		snprintf(err, errlen, "the download of %s did not complete", name);
		rc = HUB_ENET;
		goto out;
	}
	/* Size and checksum, then the name. */
	if (d.total >= 0 && d.have != d.total) {
		snprintf(err, errlen, "%s: %lld bytes received, %lld expected; the download was removed", name,
		    (long long)d.have, (long long)d.total);
		unlink(part);
		rc = HUB_EVERIFY;
		goto out;
	}
	sha256_final_hex(&d.sha, got);
	if (f->sha256[0] && d.header_sha[0] && strcmp(f->sha256, d.header_sha) != 0) {
		snprintf(err, errlen, "the hub gives two different SHA-256 sums for %s (%s in the file list, %s on the "
		    "download); the download was removed", name, f->sha256, d.header_sha);
		unlink(part);
		rc = HUB_EVERIFY;
		goto out;
	}
	{
		const char *want = f->sha256[0] ? f->sha256 : d.header_sha;
		if (want[0] && strcmp(want, got) != 0 && d.resumed > 0) {
			/* The part an earlier run left was of another file of
			 * that name (or another version): once more, whole. */
			notice(o, "%s from an earlier run was not of this file (the SHA-256 differs): downloading it again "
			    "from the start", part);
			if (restart_part(&d) < 0) {
				snprintf(err, errlen, "%s: %s", part, strerror(errno));
				goto out;
			}
			goto again;
		}
		if (want[0] && strcmp(want, got) != 0) {
			snprintf(err, errlen, "%s is corrupt: its SHA-256 is %s, the hub says %s; the download was removed",
			    name, got, want);
			unlink(part);
			rc = HUB_EVERIFY;
			goto out;
		}
		if (want[0]) {
			notice(o, "SHA-256 verified: %s", got);
		} else {
			/* Nothing to check it against but its own form: a body cut
			 * short without a length said is caught here. */
			struct gguf_file *g = NULL;
			char gerr[512];
			if (gguf_open(part, &g, gerr, sizeof(gerr)) < 0) {
				snprintf(err, errlen, "the hub gave no SHA-256 for %s, and what arrived is not a whole GGUF "
				    "file (%s); the download was removed", name, gerr);
				unlink(part);
				rc = HUB_EVERIFY;
				goto out;
			}
			gguf_close(g);
			notice(o, "the hub gave no SHA-256 for %s (not an LFS file): only its form as GGUF was checked",
			    name);
		}
	}
	if (fsync(d.fd) < 0) {
		snprintf(err, errlen, "cannot write %s: %s", part, strerror(errno));
		rc = errno == ENOSPC ? HUB_ESPACE : HUB_ERR;
		goto out;
	}
	if (rename(part, dest) < 0) {
		snprintf(err, errlen, "cannot rename %s to %s: %s", part, dest, strerror(errno));
		goto out;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	rc = 0;
	goto out;
cancelled:
	if (d.have > 0)
		snprintf(err, errlen, "interrupted; %s keeps what was downloaded: run the same command to resume", part);
	else
		snprintf(err, errlen, "interrupted before anything of %s was downloaded", name);
	rc = HUB_ECANCEL;
out:
	/* An empty part file is no use to anyone. */
	if (rc < 0 && d.fd >= 0 && d.have == 0 && fstat(d.fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0)
		unlink(part);
	if (d.fd >= 0)
		close(d.fd);
	free(url);
	free(erepo);
	free(epath);
	free(erev);
	return rc;
}
