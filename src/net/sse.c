/* sse.c -- Server-Sent Events: the writer the server uses and the incremental reader a client uses. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "natter/sse.h"
#include "llm/strbuf.h"

int
sse_format(char **buf, size_t *len, size_t *cap, const char *text, size_t n)
{
	size_t start = *len, i = 0;

	for (;;) {
		const char *nl = memchr(text + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - text) : n;
		if (strbuf_append(buf, len, cap, "data: ", 6) < 0 ||
		    strbuf_append(buf, len, cap, text + i, e - i) < 0 ||
		    strbuf_append(buf, len, cap, "\n", 1) < 0)
			goto fail;
		if (!nl)
			break;
		i = e + 1;
	}
	if (strbuf_append(buf, len, cap, "\n", 1) < 0)
		goto fail;
	return 0;
fail:
	*len = start;
	if (*buf)
		(*buf)[start] = 0;
	return -1;
}

struct sse_reader {
	size_t max;
	sse_event_fn fn;
	void *ctx;
	char *line;                 /* the line being read */
	size_t line_len, line_cap;
	char *data;                 /* the data of the event being assembled */
	size_t data_len, data_cap;
	int has_data;
	char event[64];
	int after_cr;               /* the last byte was CR: a following LF belongs to it */
};

struct sse_reader *
sse_reader_new(size_t max_event, sse_event_fn fn, void *ctx)
{
	struct sse_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->max = max_event ? max_event : (size_t)4 << 20;
	r->fn = fn;
	r->ctx = ctx;
	return r;
}

void
sse_reader_free(struct sse_reader *r)
{
	if (!r)
		return;
	free(r->line);
	free(r->data);
	free(r);
}

/* One complete line (without its end). */
static int
take_line(struct sse_reader *r, const char *s, size_t n)
{
	const char *colon;
	size_t fl, vs;
	int is_error;

	if (n == 0) {
		int rc = 0;
		if (r->has_data)
			rc = r->fn(r->ctx, r->event[0] ? r->event : "message", r->data ? r->data : "", r->data_len);
		r->data_len = 0;
		if (r->data)
			r->data[0] = 0;
		r->has_data = 0;
		r->event[0] = 0;
		return rc;
	}
	if (s[0] == ':')
		return 0;   /* a comment (keep-alive) */
	colon = memchr(s, ':', n);
	fl = colon ? (size_t)(colon - s) : n;
	vs = colon ? fl + 1 : n;
	if (vs < n && s[vs] == ' ')
		vs++;
	is_error = fl == 5 && memcmp(s, "error", 5) == 0;
	if (is_error)
		/* llama-server's error in the middle of a stream is a field of
		 * its own, "error: {...}": an event "error" with that data. */
		memcpy(r->event, "error", 6);
	if ((fl == 4 && memcmp(s, "data", 4) == 0) || is_error) {
		if (r->has_data && strbuf_append(&r->data, &r->data_len, &r->data_cap, "\n", 1) < 0)
			return -1;
		if (r->data_len + (n - vs) > r->max)
			return -1;
		if (strbuf_append(&r->data, &r->data_len, &r->data_cap, s + vs, n - vs) < 0)
			return -1;
		r->has_data = 1;
	} else if (fl == 5 && memcmp(s, "event", 5) == 0) {
		size_t l = n - vs < sizeof(r->event) - 1 ? n - vs : sizeof(r->event) - 1;
		memcpy(r->event, s + vs, l);
		r->event[l] = 0;
	}
	return 0;
}

int
sse_reader_feed(struct sse_reader *r, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		int rc;
		if (c == '\n' && r->after_cr) {
			r->after_cr = 0;
			continue;
		}
		r->after_cr = c == '\r';
		if (c == '\n' || c == '\r') {
			rc = take_line(r, r->line ? r->line : "", r->line_len);
			r->line_len = 0;
			if (rc)
				return rc;
			continue;
		}
		if (r->line_len >= r->max)
			return -1;
		/* Runs of ordinary bytes are copied at once. */
		{
			size_t j = i;
			while (j < n && p[j] != '\n' && p[j] != '\r')
				j++;
			if (r->line_len + (j - i) > r->max)
				return -1;
			if (strbuf_append(&r->line, &r->line_len, &r->line_cap, p + i, j - i) < 0)
				return -1;
			i = j - 1;
		}
	}
	return 0;
}
