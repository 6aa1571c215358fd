/* strbuf.h -- appending to a growable, NUL-terminated byte string (the llm modules' one copy). */
#ifndef NATTER_STRBUF_H
#define NATTER_STRBUF_H

#include <stdlib.h>
#include <string.h>

/* Appends P[0..N) to *BUF (*LEN bytes used of *CAP), growing it by doubling
 * and keeping a NUL after the text.  Returns 0, or -1 with *BUF unchanged
 * when memory runs out. */
static inline int
strbuf_append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t c = *cap ? *cap : 256;
		while (c < *len + n + 1)
			c *= 2;
		char *b = realloc(*buf, c);
		if (!b)
			return -1;
		*buf = b;
		*cap = c;
	}
	if (n)
		memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = 0;
	return 0;
}

#endif
