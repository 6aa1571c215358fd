/* tmpl-lex.c -- chat templates: Jinja source text to tokens, whitespace control included. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llm/tmpl-impl.h"
#include "llm/unicode.h"

struct lexer {
	const char *src;
	size_t len, pos;
	int line;
	struct token *toks;
	size_t ntok, cap;
	struct arena *ar;
	struct fail *fail;
};

static void
push_tok(struct lexer *L, struct token t)
{
	if (L->ntok == L->cap) {
		size_t cap = L->cap ? L->cap * 2 : 256;
		struct token *n = tmpl_alloc(L->ar, L->fail, cap * sizeof(*n));
		if (L->ntok)
			memcpy(n, L->toks, L->ntok * sizeof(*n));
		L->toks = n;
		L->cap = cap;
	}
	L->toks[L->ntok++] = t;
}

static int
count_lines(const char *s, size_t n)
{
	int c = 0;
	for (size_t i = 0; i < n; i++)
		c += s[i] == '\n';
	return c;
}

/* Appends UTF-8 for CP to BUF at *N. */
static void
put_utf8(char *buf, size_t *n, uint32_t cp)
{
	*n += utf8_encode(cp, buf + *n);
}

static void
lex_string(struct lexer *L, struct token *t)
{
	char q = L->src[L->pos++];
	size_t start = L->pos, n = 0;
	char *out;

	/* Decoded strings are never longer than the source. */
	while (L->pos < L->len && L->src[L->pos] != q) {
		if (L->src[L->pos] == '\\')
			L->pos++;
		L->pos++;
	}
	if (L->pos >= L->len)
		tmpl_fail(L->fail, "line %d: unterminated string", L->line);
	out = tmpl_alloc(L->ar, L->fail, L->pos - start + 4);
	for (size_t i = start; i < L->pos; i++) {
		char c = L->src[i];
		if (c != '\\') {
			out[n++] = c;
			continue;
		}
		c = L->src[++i];
		switch (c) {
		case 'n': out[n++] = '\n'; break;
		case 't': out[n++] = '\t'; break;
		case 'r': out[n++] = '\r'; break;
		case '0': out[n++] = '\0'; break;
		case 'a': out[n++] = '\a'; break;
		case 'b': out[n++] = '\b'; break;
		case 'f': out[n++] = '\f'; break;
		case 'v': out[n++] = '\v'; break;
		case 'x': case 'u': case 'U': {
			int digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
			uint32_t cp = 0;
			int k;
			for (k = 0; k < digits && i + 1 < L->pos && isxdigit((unsigned char)L->src[i + 1]); k++) {
				char h = L->src[++i];
				cp = cp * 16 + (uint32_t)(h <= '9' ? h - '0' : (h | 32) - 'a' + 10);
			}
			if (k != digits || cp > 0x10FFFF)
				tmpl_fail(L->fail, "line %d: bad \\%c escape", L->line, c);
			put_utf8(out, &n, cp);
			break;
		}
		case '\n': break;
		default:
			if (c != '\\' && c != '\'' && c != '"')
				out[n++] = '\\';
			out[n++] = c;
		}
	}
	out[n] = 0;
	L->line += count_lines(L->src + start, L->pos - start);
	L->pos++;
	t->t = T_STRING;
	t->s = out;
	t->n = n;
}

static const char *ops3[] = { "**", "//", "==", "!=", "<=", ">=", NULL };

/* Lexes the inside of a tag until its end; returns 1 if the end had '-'
 * (strip the whitespace after), 2 if it had '+' (keep even the newline that
 * trim_blocks drops), else 0. */
static int
lex_tag(struct lexer *L, const char *close, enum tk end_tok)
{
	int depth = 0;

	for (;;) {
		struct token t = { 0 };
		char c;

		while (L->pos < L->len && isspace((unsigned char)L->src[L->pos])) {
			L->line += L->src[L->pos] == '\n';
			L->pos++;
		}
		if (L->pos >= L->len)
			tmpl_fail(L->fail, "line %d: unclosed tag (missing %s)", L->line, close);
		c = L->src[L->pos];
		t.line = L->line;
		if (depth == 0) {
			int minus = c == '-' || c == '+';
			if (strncmp(L->src + L->pos + minus, close, 2) == 0 && (minus || c == close[0])) {
				L->pos += 2 + minus;
				t.t = end_tok;
				push_tok(L, t);
				return c == '-' ? 1 : c == '+' ? 2 : 0;
			}
		}
		if (isalpha((unsigned char)c) || c == '_') {
			size_t s = L->pos;
			while (L->pos < L->len && (isalnum((unsigned char)L->src[L->pos]) || L->src[L->pos] == '_'))
				L->pos++;
			t.t = T_NAME;
			t.s = L->src + s;
			t.n = L->pos - s;
		} else if (isdigit((unsigned char)c)) {
			size_t s = L->pos;
			int is_float = 0;
			while (L->pos < L->len && (isdigit((unsigned char)L->src[L->pos]) || L->src[L->pos] == '_'))
				L->pos++;
			if (L->pos + 1 < L->len && L->src[L->pos] == '.' && isdigit((unsigned char)L->src[L->pos + 1])) {
				is_float = 1;
				L->pos++;
				while (L->pos < L->len && isdigit((unsigned char)L->src[L->pos]))
					L->pos++;
			}
			if (L->pos < L->len && (L->src[L->pos] == 'e' || L->src[L->pos] == 'E')) {
				size_t save = L->pos++;
				if (L->pos < L->len && (L->src[L->pos] == '+' || L->src[L->pos] == '-'))
					L->pos++;
				if (L->pos < L->len && isdigit((unsigned char)L->src[L->pos])) {
					is_float = 1;
					while (L->pos < L->len && isdigit((unsigned char)L->src[L->pos]))
						L->pos++;
				} else {
					L->pos = save;
				}
			}
			char buf[64];
			size_t k = 0;
			for (size_t i = s; i < L->pos && k < sizeof(buf) - 1; i++)
				if (L->src[i] != '_')
					buf[k++] = L->src[i];
			buf[k] = 0;
			if (is_float) {
				t.t = T_FLOAT;
				t.f = strtod(buf, NULL);
			} else {
				errno = 0;
				t.t = T_INT;
				t.i = strtoll(buf, NULL, 10);
				if (errno)
					tmpl_fail(L->fail, "line %d: integer %s is too large", L->line, buf);
			}
		} else if (c == '\'' || c == '"') {
			lex_string(L, &t);
		} else {
			t.t = T_OP;
			t.s = L->src + L->pos;
			t.n = 1;
			for (int k = 0; ops3[k]; k++)
				if (strncmp(L->src + L->pos, ops3[k], 2) == 0)
					t.n = 2;
			if (t.n == 1 && !strchr("+-*/%~()[]{}.,:|=<>!", c))
				tmpl_fail(L->fail, "line %d: unexpected character '%c'", L->line, c);
			if (c == '(' || c == '[' || c == '{')
				depth++;
			else if ((c == ')' || c == ']' || c == '}') && depth > 0)
				depth--;
			L->pos += t.n;
		}
		push_tok(L, t);
	}
}

static void
lex(struct lexer *L)
{
	int strip_next = 0;       /* the previous tag ended with '-' */
	int trim_next = 0;        /* trim_blocks: drop one newline after a block tag */

	while (L->pos < L->len) {
		size_t s = L->pos, e, te;
		const char *open = NULL;

		/* Find the next tag opener. */
		for (e = s; e + 1 < L->len; e++) {
			if (L->src[e] == '{' && (L->src[e + 1] == '{' || L->src[e + 1] == '%' || L->src[e + 1] == '#')) {
				open = L->src + e;
				break;
			}
		}
		if (!open)
			e = L->len;
		te = e;
		/* Whitespace control on the text [s, te). */
		if (trim_next && s < te && L->src[s] == '\n')
			s++;
		if (strip_next)
			while (s < te && isspace((unsigned char)L->src[s]))
				s++;
		if (open) {
			char kind = open[1];
			char mod = e + 2 < L->len ? L->src[e + 2] : 0;
			if (mod == '-') {
				while (te > s && isspace((unsigned char)L->src[te - 1]))
					te--;
			} else if ((kind == '%' || kind == '#') && mod != '+') {
				/* lstrip_blocks: spaces and tabs before a block on its own line. */
				size_t k = te;
				while (k > s && (L->src[k - 1] == ' ' || L->src[k - 1] == '\t'))
					k--;
				if ((k > 0 && L->src[k - 1] == '\n') || k == 0)
					te = k;
				else if (k == s && s > 0 && L->src[s - 1] == '\n')
					te = k;
			}
		}
		if (te > s) {
			struct token t = { T_TEXT, L->line, L->src + s, te - s, 0, 0 };
			push_tok(L, t);
		}
		L->line += count_lines(L->src + L->pos, e - L->pos);
		if (!open) {
			L->pos = L->len;
			break;
		}
		L->pos = e + 2;
		if (L->pos < L->len && (L->src[L->pos] == '-' || L->src[L->pos] == '+'))
			L->pos++;
		strip_next = trim_next = 0;
		if (open[1] == '#') {
			const char *end = NULL;
			for (size_t k = L->pos; k + 1 < L->len; k++)
				if (L->src[k] == '#' && L->src[k + 1] == '}') {
					end = L->src + k;
					break;
				}
			if (!end)
				tmpl_fail(L->fail, "line %d: unclosed comment", L->line);
			/* "-#}" strips the whitespace after, "+#}" keeps the newline
			 * that trim_blocks would drop, as after a block tag. */
			strip_next = end > L->src + L->pos && end[-1] == '-';
			trim_next = !strip_next && !(end > L->src + L->pos && end[-1] == '+');
			L->line += count_lines(L->src + L->pos, (size_t)(end - L->src) - L->pos);
			L->pos = (size_t)(end - L->src) + 2;
		} else if (open[1] == '{') {
			struct token t = { T_VAR_BEGIN, L->line, NULL, 0, 0, 0 };
			push_tok(L, t);
			strip_next = lex_tag(L, "}}", T_VAR_END) == 1;
		} else {
			struct token t = { T_BLOCK_BEGIN, L->line, NULL, 0, 0, 0 };
			push_tok(L, t);
			int end = lex_tag(L, "%}", T_BLOCK_END);
			strip_next = end == 1;
			trim_next = end == 0;
		}
	}
	{
		struct token t = { T_EOF, L->line, NULL, 0, 0, 0 };
		push_tok(L, t);
	}
}

struct token *
tmpl_lex(const char *src, size_t len, struct arena *ar, struct fail *f)
{
	struct lexer L;

	memset(&L, 0, sizeof(L));
	/* One final line break is not output, as Jinja2 (keep_trailing_newline
	 * off, as Hugging Face renders) drops it: a template saved by an
	 * editor ends in one the template's author never meant.  (tmpl_compile
	 * has turned "\r\n" and "\r" into "\n" already.) */
	if (len > 0 && src[len - 1] == '\n')
		len--;
	L.src = src;
	L.len = len;
	L.line = 1;
	L.ar = ar;
	L.fail = f;
	lex(&L);
	return L.toks;
}
