/* ui-text.c -- the screen model's text: display widths, word wrapping, code blocks (no curses). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "natter/text.h"
#include "llm/unicode.h"
#include "ui/ui.h"

/* Whether the 3 bytes at P are a zero-width joiner or space, a direction
 * mark, embedding, override or isolate, a word joiner or invisible
 * operator, or a BOM (U+200B-200F, U+202A-202E, U+2060-2064, U+2066-2069,
 * U+FEFF). */
static int
invisible_at(const unsigned char *p)
{
	if (p[0] == 0xe2 && p[1] == 0x80)
		return (p[2] >= 0x8b && p[2] <= 0x8f) || (p[2] >= 0xaa && p[2] <= 0xae);
	if (p[0] == 0xe2 && p[1] == 0x81)
		return (p[2] >= 0xa0 && p[2] <= 0xa4) || (p[2] >= 0xa6 && p[2] <= 0xa9);
	return p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf;
}

/*
 * Drops from valid UTF-8 S[0..N) the characters of no width that only
 * change how others are drawn, in place; returns the new length.
 * Terminals disagree on them: a joined emoji (three and two joiners,
 * measured 6 columns) is drawn in 2 by some, in 6 by others, and the
 * screen's cells and curses' then part; direction overrides reorder text
 * on some.  Without them every terminal draws what was measured.  No
 * width changes: each is measured 0.
 */
static size_t
drop_invisible(char *s, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n;) {
		if (i + 3 <= n && invisible_at((const unsigned char *)s + i)) {
			i += 3;
			continue;
		}
		s[o++] = s[i++];
	}
	return o;
}

int
ui_text_needs_clean(const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;

	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] == 0x7f || (s[i] == 0xc2 && i + 1 < len && s[i + 1] < 0xa0) ||
		    (i + 3 <= len && invisible_at(s + i)))
			return 1;
	return text_utf8_bad_at(text, len) != len;
}

char *
ui_text_clean(const char *text, size_t len)
{
	size_t cap = len * 3 + 1, used, n, tabs = 0;
	char *out = malloc(cap), *p;

	if (!out)
		return NULL;
	n = text_sanitize(text, len, out, cap - 1, &used, 1);
	n = drop_invisible(out, n);
	out[n] = 0;
	/* Each tab becomes the 4 spaces its width counts: curses would move
	 * a tab to its own 8-column stops, past what the layout measured and
	 * the clipping allowed. */
	for (size_t i = 0; i < n; i++)
		tabs += out[i] == '\t';
	if (!tabs)
		return out;
	if (!(p = realloc(out, n + tabs * 3 + 1))) {
		free(out);
		return NULL;
	}
	out = p;
	/* Spread from the end, in place. */
	out[n + tabs * 3] = 0;
	for (size_t i = n, o = n + tabs * 3; i > 0;) {
		char ch = out[--i];
		if (ch == '\t') {
			o -= 4;
			memset(out + o, ' ', 4);
		} else {
			out[--o] = ch;
		}
	}
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
ui_text_fit(const char *s, size_t n, int col)
{
	int w = 0;
	size_t i = 0;
	while (i < n) {
		uint32_t cp;
		size_t l = utf8_decode((const unsigned char *)s + i, n - i, &cp);
		int cw = cp_width(cp);
		if (w + cw > col)
			break;
		w += cw;
		i += l;
	}
	return i;
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
	(*v)[*n].flags = 0;
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

/* A fence opens or closes a code block: ``` (or ~~~) at the start of a line,
 * after up to three spaces, as in CommonMark. */
static int
is_fence(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && i < 3 && s[i] == ' ')
		i++;
	return n - i >= 3 && ((s[i] == '`' && s[i + 1] == '`' && s[i + 2] == '`') ||
	    (s[i] == '~' && s[i + 1] == '~' && s[i + 2] == '~'));
}

int
ui_text_layout(const char *s, int width, struct ui_line **lines)
{
	size_t n = strlen(s), i = 0;
	int cnt = 0, cap = 0, in_code = 0;

	*lines = NULL;
	if (width < 1)
		width = 1;
	/* Paragraph by paragraph (hard newlines): prose is wrapped, code kept whole. */
	while (i <= n) {
		const char *nl = memchr(s + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - s) : n;
		int fence = is_fence(s + i, e - i);

		if (fence || in_code) {
			if (push_line(lines, &cnt, &cap, i, e - i, ui_text_width(s + i, e - i)) < 0)
				goto oom;
			(*lines)[cnt - 1].flags = UI_LINE_CODE | (fence ? UI_LINE_FENCE : 0);
			if (fence)
				in_code = !in_code;
		} else {
			struct ui_line *sub = NULL;
			char *para = malloc(e - i + 1);
			int k;
			if (!para)
				goto oom;
			memcpy(para, s + i, e - i);
			para[e - i] = 0;
			k = ui_text_wrap(para, width, &sub);
			free(para);
			if (k < 0)
				goto oom;
			for (int j = 0; j < k; j++)
				if (push_line(lines, &cnt, &cap, i + sub[j].off, sub[j].len, sub[j].width) < 0) {
					free(sub);
					goto oom;
				}
			free(sub);
		}
		if (!nl)
			break;
		i = e + 1;
	}
	return cnt;
oom:
	free(*lines);
	*lines = NULL;
	return -1;
}

char *
ui_text_count(char *buf, size_t n, long long v)
{
	char digits[32];
	size_t len, j = 0;
	int neg = v < 0;

	snprintf(digits, sizeof(digits), "%llu", neg ? 0ULL - (unsigned long long)v : (unsigned long long)v);
	len = strlen(digits);
	if (n == 0)
		return buf;
	if (neg && j + 1 < n)
		buf[j++] = '-';
	for (size_t i = 0; i < len && j + 1 < n; i++) {
		if (i > 0 && (len - i) % 3 == 0 && j + 1 < n)
			buf[j++] = ',';
		if (j + 1 < n)
			buf[j++] = digits[i];
	}
	buf[j] = 0;
	return buf;
}

char *
ui_text_base64(const char *s, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = (const unsigned char *)s;
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
		*o++ = tab[v >> 18 & 63];
		*o++ = tab[v >> 12 & 63];
		*o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? tab[v & 63] : '=';
	}
	*o = 0;
	return out;
}

int
ui_text_blank(const char *s)
{
	for (; *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
			return 0;
	return 1;
}
