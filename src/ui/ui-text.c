/* ui-text.c -- the screen model's text: display widths and word wrapping (no curses). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "natter/text.h"
#include "llm/unicode.h"
#include "ui/ui.h"

char *
ui_text_clean(const char *text, size_t len)
{
	size_t cap = len * 3 + 1, used;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	out[text_sanitize(text, len, out, cap - 1, &used, 1)] = 0;
	return out;
}

static int
cp_width(uint32_t cp)
{
	int w;
	if (cp == '\t')
		return 4;
	w = wcwidth((wchar_t)cp);
	if (w < 0)
		return 1;   /* shown as a replacement anyway */
	return w;
}

int
ui_text_width(const char *s, size_t n)
{
	int w = 0;
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		i += utf8_decode((const unsigned char *)s + i, n - i, &cp);
		w += cp_width(cp);
	}
	return w;
}

size_t
ui_text_col_to_byte(const char *s, size_t n, int col)
{
	int w = 0;
	size_t i = 0;
	while (i < n && w < col) {
		uint32_t cp;
		size_t l = utf8_decode((const unsigned char *)s + i, n - i, &cp);
		w += cp_width(cp);
		i += l;
	}
	return i;
}

static int
push_line(struct ui_line **v, int *n, int *cap, size_t off, size_t len, int width)
{
	if (*n == *cap) {
		int nc = *cap ? *cap * 2 : 16;
		struct ui_line *nv = realloc(*v, nc * sizeof(**v));
		if (!nv)
			return -1;
		*v = nv;
		*cap = nc;
	}
	(*v)[*n].off = off;
	(*v)[*n].len = len;
	(*v)[*n].width = width;
	(*n)++;
	return 0;
}

int
ui_text_wrap(const char *s, int width, struct ui_line **lines)
{
	size_t n = strlen(s), i = 0;
	int cnt = 0, cap = 0;

	*lines = NULL;
	if (width < 1)
		width = 1;
	while (i <= n) {
		size_t start = i, last_space = (size_t)-1;
		int w = 0, w_at_space = 0;
		/* Take characters while they fit; remember the last space. */
		while (i < n && s[i] != '\n') {
			uint32_t cp;
			size_t l = utf8_decode((const unsigned char *)s + i, n - i, &cp);
			int cw = cp_width(cp);
			if (w + cw > width && i > start)
				break;
			if (cp == ' ') {
				last_space = i;
				w_at_space = w;
			}
			w += cw;
			i += l;
		}
		if (i < n && s[i] != '\n' && last_space != (size_t)-1 && last_space > start) {
			/* Break at the space: the word moves to the next line. */
			if (push_line(lines, &cnt, &cap, start, last_space - start, w_at_space) < 0)
				return -1;
			i = last_space + 1;
			continue;
		}
		if (push_line(lines, &cnt, &cap, start, i - start, w) < 0)
			return -1;
		if (i < n && s[i] == '\n')
			i++;
		else if (i >= n)
			break;
	}
	return cnt;
}
