/* sse.h -- Server-Sent Events: writing "data:" events and reading them back from a byte stream. */
#ifndef NATTER_SSE_H
#define NATTER_SSE_H

#include <stddef.h>

/*
 * The server writes each event with sse_format; a client (the remote engine,
 * the tests) feeds whatever bytes arrive to an sse_reader, which calls back
 * once per complete event.  The reader follows the WHATWG rules: lines end
 * in LF, CRLF or CR; "data:" lines of one event are joined with LF; an
 * empty line dispatches; comments (":...") and unknown fields are ignored;
 * an event without data is not dispatched.  One field beyond them:
 * llama-server writes an error in the middle of a stream as "error: {...}",
 * which is read as "event: error" with that line as its data. */

/* Appends "data: TEXT\n\n" (one data line per line of TEXT) to *BUF (*LEN
 * used of *CAP, grown as needed, NUL-terminated).  Returns 0 or -1 (out of
 * memory, *BUF unchanged in content). */
int sse_format(char **buf, size_t *len, size_t *cap, const char *text, size_t n);

/* Called with each event: its type ("message" unless an "event:" line
 * said otherwise) and its data (NUL-terminated, LEN bytes).  Nonzero stops
 * the reader (sse_reader_feed returns that value). */
typedef int (*sse_event_fn)(void *ctx, const char *event, const char *data, size_t len);

struct sse_reader;

/* A reader holding at most MAX_EVENT bytes of one event (0: 4 MiB).
 * NULL when out of memory. */
struct sse_reader *sse_reader_new(size_t max_event, sse_event_fn fn, void *ctx);
void sse_reader_free(struct sse_reader *r);
/* Feeds N bytes.  Returns 0, the callback's nonzero value, or -1 when an
 * event outgrows MAX_EVENT or memory runs out.  One thread per reader. */
int sse_reader_feed(struct sse_reader *r, const char *p, size_t n);

#endif
