/* tmpl.c -- a Jinja interpreter for chat templates: lexer, parser, evaluator over an arena. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "natter/tmpl.h"
#include "llm/unicode.h"

/* Limits that keep a hostile template from taking the machine. */
#define TMPL_MAX_STEPS 5000000L
#define TMPL_MAX_OUTPUT (32u << 20)
#define TMPL_MAX_ARENA ((size_t)256 << 20)
#define TMPL_MAX_DEPTH 200
#define TMPL_MAX_RANGE 1000000

/* ------------------------------------------------------------------ */
/* Arena: everything of one compile or one render lives here.          */

struct chunk {
	struct chunk *next;
	size_t cap, used;
	max_align_t data[];
};

struct arena {
	struct chunk *head;
	size_t total;
};

/* Errors unwind with longjmp to the compile or render entry point; all
 * memory is in arenas, so nothing leaks on the way. */
struct fail {
	jmp_buf jb;
	char *err;
	size_t errlen;
	int raised;
};

static void
failf(struct fail *f, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->err, f->errlen, fmt, ap);
	va_end(ap);
	longjmp(f->jb, 1);
}

static void *
ar_alloc(struct arena *a, struct fail *f, size_t n)
{
	struct chunk *c = a->head;
	n = (n + 15) & ~(size_t)15;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > 65536 ? n : 65536;
		if (a->total + cap > TMPL_MAX_ARENA)
			failf(f, "template uses too much memory");
		c = malloc(sizeof(*c) + cap);
		if (!c)
			failf(f, "out of memory");
		c->cap = cap;
		c->used = 0;
		c->next = a->head;
		a->head = c;
		a->total += cap;
	}
	void *p = (char *)c->data + c->used;
	c->used += n;
	return p;
}

static void
ar_free(struct arena *a)
{
	struct chunk *c = a->head;
	while (c) {
		struct chunk *n = c->next;
		free(c);
		c = n;
	}
	a->head = NULL;
	a->total = 0;
}

/* ------------------------------------------------------------------ */
/* Values.                                                              */

enum vk { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_MACRO, V_FUNC };

struct jstr {
	size_t len;
	char p[];
};

struct val;
struct jlist {
	size_t n, cap;
	struct val *v;
};

struct jdict {
	size_t n, cap;
	struct jstr **k;
	struct val *v;
};

struct node;
struct func;

struct val {
	enum vk k;
	union {
		int64_t i;
		double f;
		struct jstr *s;
		struct jlist *l;
		struct jdict *d;
		const struct node *m;
		struct func *fn;
	} u;
};

/* A callable: a global function, or a method bound to SELF. */
struct func {
	const char *name;
	struct val self;
};

static const struct val UNDEF = { V_UNDEF, { 0 } };
static const struct val NONE = { V_NONE, { 0 } };

/* ------------------------------------------------------------------ */
/* Lexer.                                                               */

enum tk {
	T_EOF, T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END,
	T_NAME, T_STRING, T_INT, T_FLOAT, T_OP,
};

struct token {
	enum tk t;
	int line;
	const char *s;     /* text (TEXT, NAME, STRING decoded, OP) */
	size_t n;
	int64_t i;
	double f;
};

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
		struct token *n = ar_alloc(L->ar, L->fail, cap * sizeof(*n));
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
		failf(L->fail, "line %d: unterminated string", L->line);
	out = ar_alloc(L->ar, L->fail, L->pos - start + 4);
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
				failf(L->fail, "line %d: bad \\%c escape", L->line, c);
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

/* Lexes the inside of a tag until its end; returns 1 if the end had '-'. */
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
			failf(L->fail, "line %d: unclosed tag (missing %s)", L->line, close);
		c = L->src[L->pos];
		t.line = L->line;
		if (depth == 0) {
			int minus = c == '-' || c == '+';
			if (strncmp(L->src + L->pos + minus, close, 2) == 0 && (minus || c == close[0])) {
				L->pos += 2 + minus;
				t.t = end_tok;
				push_tok(L, t);
				return c == '-';
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
					failf(L->fail, "line %d: integer %s is too large", L->line, buf);
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
				failf(L->fail, "line %d: unexpected character '%c'", L->line, c);
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
		else if (trim_next && s + 1 < te && L->src[s] == '\r' && L->src[s + 1] == '\n')
			s += 2;
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
				failf(L->fail, "line %d: unclosed comment", L->line);
			strip_next = end > L->src + L->pos && end[-1] == '-';
			trim_next = !strip_next;
			L->line += count_lines(L->src + L->pos, (size_t)(end - L->src) - L->pos);
			L->pos = (size_t)(end - L->src) + 2;
		} else if (open[1] == '{') {
			struct token t = { T_VAR_BEGIN, L->line, NULL, 0, 0, 0 };
			push_tok(L, t);
			strip_next = lex_tag(L, "}}", T_VAR_END);
		} else {
			struct token t = { T_BLOCK_BEGIN, L->line, NULL, 0, 0, 0 };
			push_tok(L, t);
			strip_next = lex_tag(L, "%}", T_BLOCK_END);
			trim_next = !strip_next;
		}
	}
	{
		struct token t = { T_EOF, L->line, NULL, 0, 0, 0 };
		push_tok(L, t);
	}
}

/* ------------------------------------------------------------------ */
/* AST.                                                                 */

enum nk {
	/* statements */
	S_TEXT, S_OUT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_BREAK, S_CONTINUE,
	/* expressions */
	E_LIT, E_NAME, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_BIN, E_NEG, E_NOT,
	E_AND, E_OR, E_COND, E_LIST, E_DICT,
};

struct node {
	enum nk k;
	int line;
	const char *s;           /* text, name, attr, operator, filter/test name */
	size_t n;
	struct val lit;
	struct node *a, *b, *c;  /* operands / cond, body... */
	struct node **kids;      /* statement body, list items, args */
	int nkids;
	struct node **kids2;     /* else body, dict values, kw arg values */
	int nkids2;
	const char **names;      /* for targets, macro params, kw arg names */
	int nnames;
	int neg;                 /* negated test */
};

struct parser {
	struct token *t;
	size_t i;
	struct arena *ar;
	struct fail *fail;
};

static struct node *
mk(struct parser *P, enum nk k)
{
	struct node *n = ar_alloc(P->ar, P->fail, sizeof(*n));
	memset(n, 0, sizeof(*n));
	n->k = k;
	n->line = P->t[P->i].line;
	return n;
}

static struct token *
cur(struct parser *P)
{
	return &P->t[P->i];
}

static int
is_op(struct parser *P, const char *op)
{
	struct token *t = cur(P);
	return t->t == T_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0;
}

static int
is_name(struct parser *P, const char *name)
{
	struct token *t = cur(P);
	return t->t == T_NAME && t->n == strlen(name) && memcmp(t->s, name, t->n) == 0;
}

static void
expect_op(struct parser *P, const char *op)
{
	if (!is_op(P, op))
		failf(P->fail, "line %d: expected '%s'", cur(P)->line, op);
	P->i++;
}

static const char *
take_name(struct parser *P)
{
	struct token *t = cur(P);
	char *s;
	if (t->t != T_NAME)
		failf(P->fail, "line %d: expected a name", t->line);
	s = ar_alloc(P->ar, P->fail, t->n + 1);
	memcpy(s, t->s, t->n);
	s[t->n] = 0;
	P->i++;
	return s;
}

/* Growable node arrays during parsing. */
struct nvec {
	struct node **v;
	int n, cap;
};

static void
nvec_push(struct parser *P, struct nvec *v, struct node *x)
{
	if (v->n == v->cap) {
		int cap = v->cap ? v->cap * 2 : 8;
		struct node **nv = ar_alloc(P->ar, P->fail, cap * sizeof(*nv));
		if (v->n)
			memcpy(nv, v->v, v->n * sizeof(*nv));
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->n++] = x;
}

static struct node *parse_expr(struct parser *P);
static struct node *parse_or(struct parser *P);
static struct node *parse_unary(struct parser *P, int with_filter);

static struct val
str_val(struct arena *ar, struct fail *f, const char *s, size_t n)
{
	struct val v;
	struct jstr *js = ar_alloc(ar, f, sizeof(*js) + n + 1);
	js->len = n;
	memcpy(js->p, s, n);
	js->p[n] = 0;
	v.k = V_STR;
	v.u.s = js;
	return v;
}

/* Call arguments: positional into kids, keywords into names/kids2. */
static void
parse_args(struct parser *P, struct node *call)
{
	struct nvec pos = { 0 }, kw = { 0 };
	const char *names[64];
	int nn = 0;

	expect_op(P, "(");
	while (!is_op(P, ")")) {
		if (cur(P)->t == T_NAME && P->t[P->i + 1].t == T_OP && P->t[P->i + 1].n == 1 && P->t[P->i + 1].s[0] == '=') {
			if (nn >= 64)
				failf(P->fail, "line %d: too many keyword arguments", cur(P)->line);
			names[nn++] = take_name(P);
			P->i++;
			nvec_push(P, &kw, parse_expr(P));
		} else {
			if (kw.n)
				failf(P->fail, "line %d: positional argument after keyword argument", cur(P)->line);
			nvec_push(P, &pos, parse_expr(P));
		}
		if (!is_op(P, ","))
			break;
		P->i++;
	}
	expect_op(P, ")");
	call->kids = pos.v;
	call->nkids = pos.n;
	call->kids2 = kw.v;
	call->nkids2 = kw.n;
	call->names = ar_alloc(P->ar, P->fail, (nn ? nn : 1) * sizeof(*call->names));
	memcpy(call->names, names, nn * sizeof(*names));
	call->nnames = nn;
}

static struct node *
parse_primary(struct parser *P)
{
	struct token *t = cur(P);
	struct node *n;

	switch (t->t) {
	case T_STRING:
		n = mk(P, E_LIT);
		n->lit = str_val(P->ar, P->fail, t->s, t->n);
		P->i++;
		/* Adjacent string literals concatenate, as in Python. */
		while (cur(P)->t == T_STRING) {
			struct jstr *a = n->lit.u.s;
			struct token *u = cur(P);
			char *tmp = ar_alloc(P->ar, P->fail, a->len + u->n + 1);
			memcpy(tmp, a->p, a->len);
			memcpy(tmp + a->len, u->s, u->n);
			n->lit = str_val(P->ar, P->fail, tmp, a->len + u->n);
			P->i++;
		}
		return n;
	case T_INT:
		n = mk(P, E_LIT);
		n->lit.k = V_INT;
		n->lit.u.i = t->i;
		P->i++;
		return n;
	case T_FLOAT:
		n = mk(P, E_LIT);
		n->lit.k = V_FLOAT;
		n->lit.u.f = t->f;
		P->i++;
		return n;
	case T_NAME: {
		const char *name = take_name(P);
		n = mk(P, E_LIT);
		if (!strcmp(name, "true") || !strcmp(name, "True")) {
			n->lit.k = V_BOOL;
			n->lit.u.i = 1;
		} else if (!strcmp(name, "false") || !strcmp(name, "False")) {
			n->lit.k = V_BOOL;
			n->lit.u.i = 0;
		} else if (!strcmp(name, "none") || !strcmp(name, "None")) {
			n->lit.k = V_NONE;
		} else {
			n->k = E_NAME;
			n->s = name;
		}
		return n;
	}
	case T_OP:
		if (is_op(P, "(")) {
			P->i++;
			if (is_op(P, ")")) {
				P->i++;
				return mk(P, E_LIST);
			}
			struct node *e = parse_expr(P);
			if (is_op(P, ",")) {
				struct nvec v = { 0 };
				nvec_push(P, &v, e);
				while (is_op(P, ",")) {
					P->i++;
					if (is_op(P, ")"))
						break;
					nvec_push(P, &v, parse_expr(P));
				}
				e = mk(P, E_LIST);
				e->kids = v.v;
				e->nkids = v.n;
			}
			expect_op(P, ")");
			return e;
		}
		if (is_op(P, "[")) {
			struct nvec v = { 0 };
			P->i++;
			while (!is_op(P, "]")) {
				nvec_push(P, &v, parse_expr(P));
				if (!is_op(P, ","))
					break;
				P->i++;
			}
			expect_op(P, "]");
			n = mk(P, E_LIST);
			n->kids = v.v;
			n->nkids = v.n;
			return n;
		}
		if (is_op(P, "{")) {
			struct nvec k = { 0 }, v = { 0 };
			P->i++;
			while (!is_op(P, "}")) {
				nvec_push(P, &k, parse_expr(P));
				expect_op(P, ":");
				nvec_push(P, &v, parse_expr(P));
				if (!is_op(P, ","))
					break;
				P->i++;
			}
			expect_op(P, "}");
			n = mk(P, E_DICT);
			n->kids = k.v;
			n->nkids = k.n;
			n->kids2 = v.v;
			n->nkids2 = v.n;
			return n;
		}
		break;
	default:
		break;
	}
	failf(P->fail, "line %d: unexpected %s", t->line,
	    t->t == T_VAR_END || t->t == T_BLOCK_END ? "end of tag" : t->t == T_EOF ? "end of template" : "token");
	return NULL;
}

static struct node *
parse_postfix(struct parser *P, struct node *n)
{
	for (;;) {
		if (is_op(P, ".")) {
			struct node *a = mk(P, E_ATTR);
			P->i++;
			a->a = n;
			if (cur(P)->t == T_INT) {   /* x.0 indexes */
				a->k = E_ITEM;
				a->b = mk(P, E_LIT);
				a->b->lit.k = V_INT;
				a->b->lit.u.i = cur(P)->i;
				P->i++;
			} else {
				a->s = take_name(P);
			}
			n = a;
		} else if (is_op(P, "[")) {
			struct node *idx[3] = { NULL, NULL, NULL };
			int colons = 0;
			P->i++;
			for (;;) {
				if (is_op(P, "]"))
					break;
				if (is_op(P, ":")) {
					if (++colons > 2)
						failf(P->fail, "line %d: bad slice", cur(P)->line);
					P->i++;
					continue;
				}
				idx[colons] = parse_expr(P);
			}
			expect_op(P, "]");
			struct node *a = mk(P, colons ? E_SLICE : E_ITEM);
			a->a = n;
			if (colons) {
				a->kids = ar_alloc(P->ar, P->fail, 3 * sizeof(*a->kids));
				memcpy(a->kids, idx, sizeof(idx));
				a->nkids = 3;
			} else {
				if (!idx[0])
					failf(P->fail, "line %d: empty subscript", cur(P)->line);
				a->b = idx[0];
			}
			n = a;
		} else if (is_op(P, "(")) {
			struct node *c = mk(P, E_CALL);
			c->a = n;
			parse_args(P, c);
			n = c;
		} else {
			return n;
		}
	}
}

static int
starts_primary(struct parser *P)
{
	struct token *t = cur(P);
	if (t->t == T_STRING || t->t == T_INT || t->t == T_FLOAT)
		return 1;
	if (t->t == T_NAME) {
		static const char *kw[] = { "and", "or", "else", "if", "in", "is", "not", NULL };
		for (int i = 0; kw[i]; i++)
			if (is_name(P, kw[i]))
				return 0;
		return 1;
	}
	return is_op(P, "[") || is_op(P, "{");
}

static struct node *
parse_filters(struct parser *P, struct node *n)
{
	for (;;) {
		if (is_op(P, "|")) {
			struct node *f = mk(P, E_FILTER);
			P->i++;
			f->a = n;
			f->s = take_name(P);
			while (is_op(P, ".")) {   /* dotted filter names are not supported; keep the last part */
				P->i++;
				f->s = take_name(P);
			}
			if (is_op(P, "("))
				parse_args(P, f);
			n = f;
		} else if (is_name(P, "is")) {
			struct node *t = mk(P, E_TEST);
			P->i++;
			if (is_name(P, "not")) {
				t->neg = 1;
				P->i++;
			}
			t->a = n;
			t->s = take_name(P);
			if (is_op(P, "(")) {
				parse_args(P, t);
			} else if (starts_primary(P)) {
				struct nvec v = { 0 };
				nvec_push(P, &v, parse_unary(P, 0));
				t->kids = v.v;
				t->nkids = v.n;
			}
			n = t;
		} else {
			return n;
		}
	}
}

static struct node *
parse_unary(struct parser *P, int with_filter)
{
	struct node *n;
	if (is_op(P, "-")) {
		P->i++;
		n = mk(P, E_NEG);
		n->a = parse_unary(P, 0);
	} else if (is_op(P, "+")) {
		P->i++;
		n = parse_unary(P, 0);
	} else {
		n = parse_postfix(P, parse_primary(P));
	}
	return with_filter ? parse_filters(P, n) : n;
}

static struct node *
bin(struct parser *P, const char *op, struct node *a, struct node *b)
{
	struct node *n = mk(P, E_BIN);
	n->s = op;
	n->a = a;
	n->b = b;
	return n;
}

static struct node *
parse_pow(struct parser *P)
{
	struct node *n = parse_unary(P, 1);
	while (is_op(P, "**")) {
		P->i++;
		n = bin(P, "**", n, parse_unary(P, 1));
	}
	return n;
}

static struct node *
parse_math2(struct parser *P)
{
	struct node *n = parse_pow(P);
	for (;;) {
		const char *op = is_op(P, "*") ? "*" : is_op(P, "/") ? "/" : is_op(P, "//") ? "//" : is_op(P, "%") ? "%" : NULL;
		if (!op)
			return n;
		P->i++;
		n = bin(P, op, n, parse_pow(P));
	}
}

static struct node *
parse_concat(struct parser *P)
{
	struct node *n = parse_math2(P);
	while (is_op(P, "~")) {
		P->i++;
		n = bin(P, "~", n, parse_math2(P));
	}
	return n;
}

static struct node *
parse_math1(struct parser *P)
{
	struct node *n = parse_concat(P);
	for (;;) {
		const char *op = is_op(P, "+") ? "+" : is_op(P, "-") ? "-" : NULL;
		if (!op)
			return n;
		P->i++;
		n = bin(P, op, n, parse_concat(P));
	}
}

static struct node *
parse_compare(struct parser *P)
{
	struct node *n = parse_math1(P);
	for (;;) {
		const char *op = NULL;
		if (is_op(P, "==")) op = "==";
		else if (is_op(P, "!=")) op = "!=";
		else if (is_op(P, "<=")) op = "<=";
		else if (is_op(P, ">=")) op = ">=";
		else if (is_op(P, "<")) op = "<";
		else if (is_op(P, ">")) op = ">";
		else if (is_name(P, "in")) op = "in";
		else if (is_name(P, "not") && P->t[P->i + 1].t == T_NAME && P->t[P->i + 1].n == 2 &&
		    memcmp(P->t[P->i + 1].s, "in", 2) == 0) {
			P->i++;
			op = "not in";
		}
		if (!op)
			return n;
		P->i++;
		n = bin(P, op, n, parse_math1(P));
	}
}

static struct node *
parse_not(struct parser *P)
{
	if (is_name(P, "not")) {
		struct node *n = mk(P, E_NOT);
		P->i++;
		n->a = parse_not(P);
		return n;
	}
	return parse_compare(P);
}

static struct node *
parse_and(struct parser *P)
{
	struct node *n = parse_not(P);
	while (is_name(P, "and")) {
		struct node *a = mk(P, E_AND);
		P->i++;
		a->a = n;
		a->b = parse_not(P);
		n = a;
	}
	return n;
}

static struct node *
parse_or(struct parser *P)
{
	struct node *n = parse_and(P);
	while (is_name(P, "or")) {
		struct node *a = mk(P, E_OR);
		P->i++;
		a->a = n;
		a->b = parse_and(P);
		n = a;
	}
	return n;
}

static struct node *
parse_expr(struct parser *P)
{
	struct node *n = parse_or(P);
	while (is_name(P, "if")) {
		struct node *c = mk(P, E_COND);
		P->i++;
		c->a = parse_or(P);      /* condition */
		c->b = n;                /* value if true */
		if (is_name(P, "else")) {
			P->i++;
			c->c = parse_expr(P);
		}
		n = c;
	}
	return n;
}

/* An expression that may be a bare tuple: a, b */
static struct node *
parse_tuple(struct parser *P, int with_cond)
{
	struct node *e = with_cond ? parse_expr(P) : parse_or(P);
	if (!is_op(P, ","))
		return e;
	struct nvec v = { 0 };
	nvec_push(P, &v, e);
	while (is_op(P, ",")) {
		P->i++;
		if (cur(P)->t == T_BLOCK_END || cur(P)->t == T_VAR_END)
			break;
		nvec_push(P, &v, with_cond ? parse_expr(P) : parse_or(P));
	}
	e = mk(P, E_LIST);
	e->kids = v.v;
	e->nkids = v.n;
	return e;
}

static void
expect_block_end(struct parser *P)
{
	if (cur(P)->t != T_BLOCK_END)
		failf(P->fail, "line %d: expected end of tag", cur(P)->line);
	P->i++;
}

/* Parses statements until one of the END names (NULL-terminated) opens a
 * block tag; leaves P at that name. */
static void parse_body(struct parser *P, struct nvec *out, const char *const *end);

static int
at_block_name(struct parser *P, const char *const *names)
{
	if (cur(P)->t != T_BLOCK_BEGIN || P->t[P->i + 1].t != T_NAME)
		return 0;
	for (int i = 0; names && names[i]; i++) {
		struct token *t = &P->t[P->i + 1];
		if (t->n == strlen(names[i]) && memcmp(t->s, names[i], t->n) == 0)
			return 1;
	}
	return 0;
}

static const char **
parse_targets(struct parser *P, int *n)
{
	const char *names[16];
	int k = 0, paren = 0;
	if (is_op(P, "(")) {
		paren = 1;
		P->i++;
	}
	for (;;) {
		if (k >= 16)
			failf(P->fail, "line %d: too many targets", cur(P)->line);
		names[k++] = take_name(P);
		if (!is_op(P, ","))
			break;
		P->i++;
	}
	if (paren)
		expect_op(P, ")");
	const char **v = ar_alloc(P->ar, P->fail, k * sizeof(*v));
	memcpy(v, names, k * sizeof(*v));
	*n = k;
	return v;
}

static struct node *
parse_stmt(struct parser *P)
{
	struct token *t = cur(P);
	int line = t->line;

	if (t->t == T_TEXT) {
		struct node *n = mk(P, S_TEXT);
		n->s = t->s;
		n->n = t->n;
		P->i++;
		return n;
	}
	if (t->t == T_VAR_BEGIN) {
		struct node *n = mk(P, S_OUT);
		P->i++;
		n->a = parse_tuple(P, 1);
		if (cur(P)->t != T_VAR_END)
			failf(P->fail, "line %d: expected }}", cur(P)->line);
		P->i++;
		return n;
	}
	if (t->t != T_BLOCK_BEGIN)
		failf(P->fail, "line %d: unexpected token", line);
	P->i++;
	if (is_name(P, "if")) {
		static const char *const ends[] = { "elif", "else", "endif", NULL };
		struct node *top = mk(P, S_IF), *n = top;
		struct nvec body;
		P->i++;
		n->a = parse_tuple(P, 0);
		expect_block_end(P);
		for (;;) {
			memset(&body, 0, sizeof(body));
			parse_body(P, &body, ends);
			n->kids = body.v;
			n->nkids = body.n;
			P->i++;   /* BLOCK_BEGIN */
			if (is_name(P, "elif")) {
				struct node *e = mk(P, S_IF);
				P->i++;
				e->a = parse_tuple(P, 0);
				expect_block_end(P);
				n->b = e;     /* else-branch is another if */
				n = e;
				continue;
			}
			if (is_name(P, "else")) {
				static const char *const endif[] = { "endif", NULL };
				struct node *e = mk(P, S_IF);   /* an if without condition */
				P->i++;
				expect_block_end(P);
				memset(&body, 0, sizeof(body));
				parse_body(P, &body, endif);
				e->kids = body.v;
				e->nkids = body.n;
				n->b = e;
				P->i++;
			}
			break;
		}
		P->i++;   /* endif */
		expect_block_end(P);
		return top;
	}
	if (is_name(P, "for")) {
		static const char *const ends[] = { "else", "endfor", NULL };
		static const char *const endfor[] = { "endfor", NULL };
		struct node *n = mk(P, S_FOR);
		struct nvec body = { 0 }, els = { 0 };
		P->i++;
		n->names = parse_targets(P, &n->nnames);
		if (!is_name(P, "in"))
			failf(P->fail, "line %d: expected 'in' in for", cur(P)->line);
		P->i++;
		n->a = parse_tuple(P, 0);
		if (is_name(P, "if")) {
			P->i++;
			n->b = parse_expr(P);
		}
		if (is_name(P, "recursive"))
			failf(P->fail, "line %d: recursive loops are not supported", line);
		expect_block_end(P);
		parse_body(P, &body, ends);
		P->i++;
		if (is_name(P, "else")) {
			P->i++;
			expect_block_end(P);
			parse_body(P, &els, endfor);
			P->i++;
		}
		P->i++;   /* endfor */
		expect_block_end(P);
		n->kids = body.v;
		n->nkids = body.n;
		n->kids2 = els.v;
		n->nkids2 = els.n;
		return n;
	}
	if (is_name(P, "set")) {
		struct node *n = mk(P, S_SET);
		P->i++;
		n->names = parse_targets(P, &n->nnames);
		if (n->nnames == 1 && is_op(P, ".")) {   /* ns.attr = value */
			P->i++;
			n->s = take_name(P);
		}
		if (is_op(P, "=")) {
			P->i++;
			n->a = parse_tuple(P, 1);
			expect_block_end(P);
			return n;
		}
		/* {% set x %}...{% endset %} */
		{
			static const char *const endset[] = { "endset", NULL };
			struct nvec body = { 0 };
			if (n->nnames != 1 || n->s)
				failf(P->fail, "line %d: block set takes one name", line);
			n->k = S_SETBLOCK;
			expect_block_end(P);
			parse_body(P, &body, endset);
			P->i += 2;
			expect_block_end(P);
			n->kids = body.v;
			n->nkids = body.n;
			return n;
		}
	}
	if (is_name(P, "macro")) {
		static const char *const endmacro[] = { "endmacro", NULL };
		struct node *n = mk(P, S_MACRO);
		struct nvec defs = { 0 }, body = { 0 };
		const char *params[64];
		int np = 0;
		P->i++;
		n->s = take_name(P);
		expect_op(P, "(");
		while (!is_op(P, ")")) {
			if (np >= 64)
				failf(P->fail, "line %d: too many macro parameters", line);
			params[np++] = take_name(P);
			if (is_op(P, "=")) {
				P->i++;
				nvec_push(P, &defs, parse_expr(P));
			} else {
				nvec_push(P, &defs, NULL);
			}
			if (!is_op(P, ","))
				break;
			P->i++;
		}
		expect_op(P, ")");
		expect_block_end(P);
		parse_body(P, &body, endmacro);
		P->i += 2;
		if (cur(P)->t == T_NAME)
			P->i++;   /* {% endmacro name %} */
		expect_block_end(P);
		n->names = ar_alloc(P->ar, P->fail, (np ? np : 1) * sizeof(*n->names));
		memcpy(n->names, params, np * sizeof(*params));
		n->nnames = np;
		n->kids2 = defs.v;
		n->nkids2 = defs.n;
		n->kids = body.v;
		n->nkids = body.n;
		return n;
	}
	if (is_name(P, "break") || is_name(P, "continue")) {
		struct node *n = mk(P, is_name(P, "break") ? S_BREAK : S_CONTINUE);
		P->i++;
		expect_block_end(P);
		return n;
	}
	if (is_name(P, "generation")) {
		/* Hugging Face's assistant-mask marker: renders its body as is. */
		static const char *const endgen[] = { "endgeneration", NULL };
		struct node *n = mk(P, S_IF);
		struct nvec body = { 0 };
		P->i++;
		expect_block_end(P);
		parse_body(P, &body, endgen);
		P->i += 2;
		expect_block_end(P);
		n->kids = body.v;
		n->nkids = body.n;
		n->neg = 2;   /* always true */
		return n;
	}
	if (cur(P)->t == T_NAME)
		failf(P->fail, "line %d: unknown or misplaced tag '%.*s'", line, (int)cur(P)->n, cur(P)->s);
	failf(P->fail, "line %d: expected a tag name", line);
	return NULL;
}

static void
parse_body(struct parser *P, struct nvec *out, const char *const *end)
{
	for (;;) {
		if (cur(P)->t == T_EOF) {
			if (end)
				failf(P->fail, "line %d: missing {%% %s %%}", cur(P)->line, end[0][0] == 'e' &&
				    end[1] ? end[1] : end[0]);
			return;
		}
		if (end && at_block_name(P, end))
			return;
		nvec_push(P, out, parse_stmt(P));
	}
}

struct tmpl {
	struct arena ar;
	struct node **body;
	int nbody;
};

int
tmpl_compile(const char *src, size_t len, struct tmpl **out, char *err, size_t errlen)
{
	struct tmpl *t = calloc(1, sizeof(*t));
	struct fail f;
	struct lexer L;
	struct parser P;
	struct nvec body = { 0 };

	*out = NULL;
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	f.err = err;
	f.errlen = errlen;
	f.raised = 0;
	if (setjmp(f.jb)) {
		ar_free(&t->ar);
		free(t);
		return -1;
	}
	memset(&L, 0, sizeof(L));
	L.src = src;
	L.len = len;
	L.line = 1;
	L.ar = &t->ar;
	L.fail = &f;
	lex(&L);
	P.t = L.toks;
	P.i = 0;
	P.ar = &t->ar;
	P.fail = &f;
	parse_body(&P, &body, NULL);
	t->body = body.v;
	t->nbody = body.n;
	*out = t;
	return 0;
}

void
tmpl_free(struct tmpl *t)
{
	if (!t)
		return;
	ar_free(&t->ar);
	free(t);
}

/* ------------------------------------------------------------------ */
/* Evaluation.                                                          */

struct scope {
	struct scope *parent;
	struct jdict *vars;
};

/* Output being built.  Temporaries grow inside the render's arena, so an
 * error that unwinds past them leaks nothing; only the final output
 * (HEAP set) is malloc'd, and freed on error by tmpl_render. */
struct outbuf {
	char *p;
	size_t n, cap;
	int heap;
};

struct rt {
	struct arena ar;
	struct fail f;
	struct outbuf *out;
	struct scope *globals;
	long steps;
	int depth;
	int brk, cont;        /* pending break / continue */
	time_t now;
};

static void *
ra(struct rt *r, size_t n)
{
	return ar_alloc(&r->ar, &r->f, n);
}

static struct val
mkstr(struct rt *r, const char *s, size_t n)
{
	return str_val(&r->ar, &r->f, s, n);
}

static struct val
mkcstr(struct rt *r, const char *s)
{
	return mkstr(r, s, strlen(s));
}

static struct val
mkint(int64_t i)
{
	struct val v;
	v.k = V_INT;
	v.u.i = i;
	return v;
}

static struct val
mkbool(int b)
{
	struct val v;
	v.k = V_BOOL;
	v.u.i = b != 0;
	return v;
}

static struct val
mkfloat(double f)
{
	struct val v;
	v.k = V_FLOAT;
	v.u.f = f;
	return v;
}

static struct jlist *
list_new(struct rt *r, size_t cap)
{
	struct jlist *l = ra(r, sizeof(*l));
	l->n = 0;
	l->cap = cap ? cap : 4;
	l->v = ra(r, l->cap * sizeof(*l->v));
	return l;
}

static void
list_push(struct rt *r, struct jlist *l, struct val v)
{
	if (l->n == l->cap) {
		size_t cap = l->cap * 2;
		struct val *nv = ra(r, cap * sizeof(*nv));
		memcpy(nv, l->v, l->n * sizeof(*nv));
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = v;
}

static struct val
mklist(struct jlist *l)
{
	struct val v;
	v.k = V_LIST;
	v.u.l = l;
	return v;
}

static struct jdict *
dict_new(struct rt *r)
{
	struct jdict *d = ra(r, sizeof(*d));
	d->n = 0;
	d->cap = 8;
	d->k = ra(r, d->cap * sizeof(*d->k));
	d->v = ra(r, d->cap * sizeof(*d->v));
	return d;
}

static struct val *
dict_find(struct jdict *d, const char *k, size_t n)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->k[i]->len == n && memcmp(d->k[i]->p, k, n) == 0)
			return &d->v[i];
	return NULL;
}

static void
dict_set(struct rt *r, struct jdict *d, const char *k, size_t n, struct val v)
{
	struct val *e = dict_find(d, k, n);
	if (e) {
		*e = v;
		return;
	}
	if (d->n == d->cap) {
		size_t cap = d->cap * 2;
		struct jstr **nk = ra(r, cap * sizeof(*nk));
		struct val *nv = ra(r, cap * sizeof(*nv));
		memcpy(nk, d->k, d->n * sizeof(*nk));
		memcpy(nv, d->v, d->n * sizeof(*nv));
		d->k = nk;
		d->v = nv;
		d->cap = cap;
	}
	d->k[d->n] = mkstr(r, k, n).u.s;
	d->v[d->n] = v;
	d->n++;
}

static struct val
mkdict(struct jdict *d, enum vk k)
{
	struct val v;
	v.k = k;
	v.u.d = d;
	return v;
}

static struct val
mkfunc(struct rt *r, const char *name, struct val self)
{
	struct val v;
	struct func *fn = ra(r, sizeof(*fn));
	fn->name = name;
	fn->self = self;
	v.k = V_FUNC;
	v.u.fn = fn;
	return v;
}

static const char *
type_name(struct val v)
{
	switch (v.k) {
	case V_UNDEF: return "undefined";
	case V_NONE: return "none";
	case V_BOOL: return "bool";
	case V_INT: return "int";
	case V_FLOAT: return "float";
	case V_STR: return "string";
	case V_LIST: return "list";
	case V_DICT: return "dict";
	case V_NS: return "namespace";
	case V_MACRO: return "macro";
	case V_FUNC: return "function";
	}
	return "?";
}

static int
truthy(struct val v)
{
	switch (v.k) {
	case V_UNDEF: case V_NONE: return 0;
	case V_BOOL: case V_INT: return v.u.i != 0;
	case V_FLOAT: return v.u.f != 0;
	case V_STR: return v.u.s->len != 0;
	case V_LIST: return v.u.l->n != 0;
	case V_DICT: return v.u.d->n != 0;
	default: return 1;
	}
}

/* --- output and string building --- */

static void
sb_put(struct rt *r, struct outbuf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + n + 1)
			cap *= 2;
		if (cap > TMPL_MAX_OUTPUT + 1)
			failf(&r->f, "template output exceeds %u MiB", TMPL_MAX_OUTPUT >> 20);
		char *p;
		if (b->heap) {
			p = realloc(b->p, cap);
			if (!p)
				failf(&r->f, "out of memory");
		} else {
			p = ar_alloc(&r->ar, &r->f, cap);
			if (b->n)
				memcpy(p, b->p, b->n);
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void
sb_puts(struct rt *r, struct outbuf *b, const char *s)
{
	sb_put(r, b, s, strlen(s));
}

/* Moves a temporary buffer into an arena string. */
static struct val
sb_take(struct rt *r, struct outbuf *b)
{
	struct val v = mkstr(r, b->p ? b->p : "", b->n);
	if (b->heap)
		free(b->p);
	b->p = NULL;
	b->n = b->cap = 0;
	return v;
}

static void
fmt_float(char *buf, size_t n, double f)
{
	if (isnan(f)) {
		snprintf(buf, n, "nan");
		return;
	}
	if (isinf(f)) {
		snprintf(buf, n, f < 0 ? "-inf" : "inf");
		return;
	}
	/* Python's repr: the shortest that reads back the same. */
	for (int p = 1; p <= 17; p++) {
		snprintf(buf, n, "%.*g", p, f);
		if (strtod(buf, NULL) == f)
			break;
	}
	if (!strpbrk(buf, ".en"))
		strncat(buf, ".0", n - strlen(buf) - 1);
}

static void repr(struct rt *r, struct outbuf *b, struct val v, int top);

static void
repr_str(struct rt *r, struct outbuf *b, const struct jstr *s)
{
	char q = memchr(s->p, '\'', s->len) && !memchr(s->p, '"', s->len) ? '"' : '\'';
	sb_put(r, b, &q, 1);
	for (size_t i = 0; i < s->len; i++) {
		unsigned char c = (unsigned char)s->p[i];
		char esc[8];
		if (c == '\\') sb_puts(r, b, "\\\\");
		else if (c == (unsigned char)q) { esc[0] = '\\'; esc[1] = q; sb_put(r, b, esc, 2); }
		else if (c == '\n') sb_puts(r, b, "\\n");
		else if (c == '\r') sb_puts(r, b, "\\r");
		else if (c == '\t') sb_puts(r, b, "\\t");
		else if (c < 0x20 || c == 0x7f) { snprintf(esc, sizeof(esc), "\\x%02x", c); sb_puts(r, b, esc); }
		else sb_put(r, b, (const char *)&c, 1);
	}
	sb_put(r, b, &q, 1);
}

/* str() when TOP, repr() inside containers, as Python prints them. */
static void
repr(struct rt *r, struct outbuf *b, struct val v, int top)
{
	char buf[64];
	switch (v.k) {
	case V_UNDEF: break;
	case V_NONE: sb_puts(r, b, "None"); break;
	case V_BOOL: sb_puts(r, b, v.u.i ? "True" : "False"); break;
	case V_INT: snprintf(buf, sizeof(buf), "%lld", (long long)v.u.i); sb_puts(r, b, buf); break;
	case V_FLOAT: fmt_float(buf, sizeof(buf), v.u.f); sb_puts(r, b, buf); break;
	case V_STR:
		if (top)
			sb_put(r, b, v.u.s->p, v.u.s->len);
		else
			repr_str(r, b, v.u.s);
		break;
	case V_LIST:
		sb_puts(r, b, "[");
		for (size_t i = 0; i < v.u.l->n; i++) {
			if (i)
				sb_puts(r, b, ", ");
			repr(r, b, v.u.l->v[i], 0);
		}
		sb_puts(r, b, "]");
		break;
	case V_DICT: case V_NS:
		sb_puts(r, b, v.k == V_NS ? "<Namespace {" : "{");
		for (size_t i = 0; i < v.u.d->n; i++) {
			if (i)
				sb_puts(r, b, ", ");
			repr_str(r, b, v.u.d->k[i]);
			sb_puts(r, b, ": ");
			repr(r, b, v.u.d->v[i], 0);
		}
		sb_puts(r, b, v.k == V_NS ? "}>" : "}");
		break;
	case V_MACRO: sb_puts(r, b, "<macro>"); break;
	case V_FUNC: sb_puts(r, b, "<function>"); break;
	}
}

static struct val
to_str(struct rt *r, struct val v)
{
	struct outbuf b = { 0 };
	if (v.k == V_STR)
		return v;
	repr(r, &b, v, 1);
	return sb_take(r, &b);
}

/* JSON as Python's json.dumps writes it (ensure_ascii off). */
static void
json_str(struct rt *r, struct outbuf *b, const char *s, size_t n)
{
	sb_puts(r, b, "\"");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		switch (c) {
		case '"': sb_puts(r, b, "\\\""); break;
		case '\\': sb_puts(r, b, "\\\\"); break;
		case '\n': sb_puts(r, b, "\\n"); break;
		case '\r': sb_puts(r, b, "\\r"); break;
		case '\t': sb_puts(r, b, "\\t"); break;
		case '\b': sb_puts(r, b, "\\b"); break;
		case '\f': sb_puts(r, b, "\\f"); break;
		default:
			if (c < 0x20 || c == 0x7f) {
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				sb_puts(r, b, esc);
			} else {
				sb_put(r, b, (const char *)&c, 1);
			}
		}
	}
	sb_puts(r, b, "\"");
}

static void
json_indent(struct rt *r, struct outbuf *b, int indent, int level)
{
	sb_puts(r, b, "\n");
	for (int i = 0; i < indent * level; i++)
		sb_puts(r, b, " ");
}

static void
to_json(struct rt *r, struct outbuf *b, struct val v, int indent, int level, int sort_keys)
{
	char buf[64];
	const char *item_sep = indent >= 0 ? "," : ", ";

	if (level > 100)
		failf(&r->f, "tojson: nesting too deep");
	switch (v.k) {
	case V_UNDEF: case V_NONE: sb_puts(r, b, "null"); break;
	case V_BOOL: sb_puts(r, b, v.u.i ? "true" : "false"); break;
	case V_INT: snprintf(buf, sizeof(buf), "%lld", (long long)v.u.i); sb_puts(r, b, buf); break;
	case V_FLOAT:
		if (isnan(v.u.f)) sb_puts(r, b, "NaN");
		else if (isinf(v.u.f)) sb_puts(r, b, v.u.f < 0 ? "-Infinity" : "Infinity");
		else { fmt_float(buf, sizeof(buf), v.u.f); sb_puts(r, b, buf); }
		break;
	case V_STR: json_str(r, b, v.u.s->p, v.u.s->len); break;
	case V_LIST:
		if (v.u.l->n == 0) {
			sb_puts(r, b, "[]");
			break;
		}
		sb_puts(r, b, "[");
		for (size_t i = 0; i < v.u.l->n; i++) {
			if (i)
				sb_puts(r, b, item_sep);
			if (indent >= 0)
				json_indent(r, b, indent, level + 1);
			to_json(r, b, v.u.l->v[i], indent, level + 1, sort_keys);
		}
		if (indent >= 0)
			json_indent(r, b, indent, level);
		sb_puts(r, b, "]");
		break;
	case V_DICT: case V_NS: {
		size_t n = v.u.d->n, *ord;
		if (n == 0) {
			sb_puts(r, b, "{}");
			break;
		}
		ord = ra(r, n * sizeof(*ord));
		for (size_t i = 0; i < n; i++)
			ord[i] = i;
		if (sort_keys) {
			for (size_t i = 1; i < n; i++)
				for (size_t j = i; j > 0 && strcmp(v.u.d->k[ord[j - 1]]->p, v.u.d->k[ord[j]]->p) > 0; j--) {
					size_t t = ord[j]; ord[j] = ord[j - 1]; ord[j - 1] = t;
				}
		}
		sb_puts(r, b, "{");
		for (size_t i = 0; i < n; i++) {
			if (i)
				sb_puts(r, b, item_sep);
			if (indent >= 0)
				json_indent(r, b, indent, level + 1);
			json_str(r, b, v.u.d->k[ord[i]]->p, v.u.d->k[ord[i]]->len);
			sb_puts(r, b, ": ");
			to_json(r, b, v.u.d->v[ord[i]], indent, level + 1, sort_keys);
		}
		if (indent >= 0)
			json_indent(r, b, indent, level);
		sb_puts(r, b, "}");
		break;
	}
	default:
		failf(&r->f, "tojson: cannot serialize a %s", type_name(v));
	}
}

/* --- comparisons --- */

static int
is_num(struct val v)
{
	return v.k == V_INT || v.k == V_FLOAT || v.k == V_BOOL;
}

static double
num(struct val v)
{
	return v.k == V_FLOAT ? v.u.f : (double)v.u.i;
}

static int
equal(struct val a, struct val b)
{
	if (is_num(a) && is_num(b)) {
		if (a.k != V_FLOAT && b.k != V_FLOAT)
			return a.u.i == b.u.i;
		return num(a) == num(b);
	}
	if (a.k != b.k)
		return 0;
	switch (a.k) {
	case V_UNDEF: case V_NONE: return 1;
	case V_STR: return a.u.s->len == b.u.s->len && memcmp(a.u.s->p, b.u.s->p, a.u.s->len) == 0;
	case V_LIST:
		if (a.u.l->n != b.u.l->n)
			return 0;
		for (size_t i = 0; i < a.u.l->n; i++)
			if (!equal(a.u.l->v[i], b.u.l->v[i]))
				return 0;
		return 1;
	case V_DICT: case V_NS:
		if (a.u.d->n != b.u.d->n)
			return 0;
		for (size_t i = 0; i < a.u.d->n; i++) {
			struct val *o = dict_find(b.u.d, a.u.d->k[i]->p, a.u.d->k[i]->len);
			if (!o || !equal(a.u.d->v[i], *o))
				return 0;
		}
		return 1;
	default:
		return a.u.fn == b.u.fn;
	}
}

static int
compare(struct rt *r, struct val a, struct val b)
{
	if (is_num(a) && is_num(b)) {
		double x = num(a), y = num(b);
		return x < y ? -1 : x > y;
	}
	if (a.k == V_STR && b.k == V_STR) {
		size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
		int c = memcmp(a.u.s->p, b.u.s->p, n);
		if (c)
			return c < 0 ? -1 : 1;
		return a.u.s->len < b.u.s->len ? -1 : a.u.s->len > b.u.s->len;
	}
	if (a.k == V_LIST && b.k == V_LIST) {
		for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
			int c = compare(r, a.u.l->v[i], b.u.l->v[i]);
			if (c)
				return c;
		}
		return a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
	}
	failf(&r->f, "cannot compare %s with %s", type_name(a), type_name(b));
	return 0;
}

/* --- strings (Python semantics: code points, Unicode whitespace) --- */

static size_t
cp_count(const struct jstr *s)
{
	size_t n = 0;
	for (size_t i = 0; i < s->len; i++)
		n += ((unsigned char)s->p[i] & 0xC0) != 0x80;
	return n;
}

static int
py_space(uint32_t cp)
{
	return (unicode_flags(cp) & UCP_SPACE) || (cp >= 0x1C && cp <= 0x1F);
}

/* Strips code points in CHARS (or whitespace when CHARS is NULL). */
static struct val
strip(struct rt *r, struct val s, const struct jstr *chars, int left, int right)
{
	const char *p = s.u.s->p;
	size_t a = 0, b = s.u.s->len;

	for (;;) {
		if (!left || a >= b)
			break;
		uint32_t cp;
		size_t l = utf8_decode((const unsigned char *)p + a, b - a, &cp);
		int hit = chars ? memmem(chars->p, chars->len, p + a, l) != NULL : py_space(cp);
		if (!hit)
			break;
		a += l;
	}
	while (right && b > a) {
		size_t st = b - 1;
		uint32_t cp;
		while (st > a && ((unsigned char)p[st] & 0xC0) == 0x80)
			st--;
		utf8_decode((const unsigned char *)p + st, b - st, &cp);
		int hit = chars ? memmem(chars->p, chars->len, p + st, b - st) != NULL : py_space(cp);
		if (!hit)
			break;
		b = st;
	}
	return mkstr(r, p + a, b - a);
}

static struct val
str_replace(struct rt *r, struct val s, const struct jstr *old, const struct jstr *new, int64_t count)
{
	struct outbuf b = { 0 };
	const char *p = s.u.s->p, *end = p + s.u.s->len;
	int64_t done = 0;

	if (old->len == 0) {
		/* Python inserts NEW between every character. */
		for (size_t i = 0; i <= s.u.s->len; i++) {
			if (count < 0 || done < count) {
				sb_put(r, &b, new->p, new->len);
				done++;
			}
			if (i < s.u.s->len)
				sb_put(r, &b, p + i, 1);
		}
		return sb_take(r, &b);
	}
	while (p < end) {
		const char *hit = (count < 0 || done < count) ? memmem(p, end - p, old->p, old->len) : NULL;
		if (!hit) {
			sb_put(r, &b, p, end - p);
			break;
		}
		sb_put(r, &b, p, hit - p);
		sb_put(r, &b, new->p, new->len);
		p = hit + old->len;
		done++;
	}
	if (!b.p)
		sb_put(r, &b, "", 0);
	return sb_take(r, &b);
}

static struct val
str_case(struct rt *r, struct val s, int mode)   /* 0 lower, 1 upper, 2 capitalize, 3 title */
{
	struct val o = mkstr(r, s.u.s->p, s.u.s->len);
	int start = 1;
	for (size_t i = 0; i < o.u.s->len; i++) {
		char *c = &o.u.s->p[i];
		int alpha = isalpha((unsigned char)*c);
		if (mode == 0 || (mode == 2 && i > 0) || (mode == 3 && !start))
			*c = (char)tolower((unsigned char)*c);
		else if (mode == 1 || (mode == 2 && i == 0) || (mode == 3 && start))
			*c = (char)toupper((unsigned char)*c);
		start = !alpha && !((unsigned char)*c & 0x80);
	}
	return o;
}

static struct val
str_split(struct rt *r, struct val s, const struct jstr *sep, int64_t maxsplit)
{
	struct jlist *l = list_new(r, 8);
	const char *p = s.u.s->p, *end = p + s.u.s->len;

	if (!sep) {
		/* Runs of whitespace; no empty strings. */
		while (p < end) {
			while (p < end && isspace((unsigned char)*p))
				p++;
			if (p >= end)
				break;
			const char *q = p;
			if (maxsplit >= 0 && (int64_t)l->n >= maxsplit) {
				const char *e2 = end;
				while (e2 > q && isspace((unsigned char)e2[-1]))
					e2--;
				list_push(r, l, mkstr(r, q, e2 - q));
				break;
			}
			while (q < end && !isspace((unsigned char)*q))
				q++;
			list_push(r, l, mkstr(r, p, q - p));
			p = q;
		}
		return mklist(l);
	}
	if (sep->len == 0)
		failf(&r->f, "split: empty separator");
	for (;;) {
		const char *hit = (maxsplit < 0 || (int64_t)l->n < maxsplit) ? memmem(p, end - p, sep->p, sep->len) : NULL;
		if (!hit) {
			list_push(r, l, mkstr(r, p, end - p));
			break;
		}
		list_push(r, l, mkstr(r, p, hit - p));
		p = hit + sep->len;
	}
	return mklist(l);
}

/* Code point offsets to byte offsets, for slicing. */
static size_t
cp_to_byte(const struct jstr *s, size_t cp)
{
	size_t i = 0, c = 0;
	while (i < s->len && c < cp) {
		i++;
		while (i < s->len && ((unsigned char)s->p[i] & 0xC0) == 0x80)
			i++;
		c++;
	}
	return i;
}

/* --- environment --- */

static struct val *
lookup(struct scope *sc, const char *name)
{
	for (; sc; sc = sc->parent) {
		struct val *v = dict_find(sc->vars, name, strlen(name));
		if (v)
			return v;
	}
	return NULL;
}

static struct val eval(struct rt *r, struct scope *sc, const struct node *n);
static void exec_body(struct rt *r, struct scope *sc, struct node **body, int n);

static void
step(struct rt *r)
{
	if (++r->steps > TMPL_MAX_STEPS)
		failf(&r->f, "template runs too long (more than %ld steps)", TMPL_MAX_STEPS);
}

static struct val
getattr_v(struct rt *r, struct val obj, const char *name, int line)
{
	static const char *str_methods[] = { "strip", "lstrip", "rstrip", "startswith", "endswith", "split",
		"replace", "upper", "lower", "title", "capitalize", "find", "count", "join", "isdigit",
		"isalpha", "isspace", "splitlines", "format", NULL };
	static const char *dict_methods[] = { "get", "items", "keys", "values", "update", "pop", NULL };
	static const char *list_methods[] = { "append", "index", "count", "pop", "extend", NULL };

	switch (obj.k) {
	case V_UNDEF:
		failf(&r->f, "line %d: '%s' of an undefined value", line, name);
		break;
	case V_NONE:
		failf(&r->f, "line %d: None has no attribute '%s'", line, name);
		break;
	case V_STR:
		for (int i = 0; str_methods[i]; i++)
			if (!strcmp(name, str_methods[i]))
				return mkfunc(r, str_methods[i], obj);
		return UNDEF;
	case V_DICT:
		for (int i = 0; dict_methods[i]; i++)
			if (!strcmp(name, dict_methods[i]))
				return mkfunc(r, dict_methods[i], obj);
		/* fall through */
	case V_NS: {
		struct val *v = dict_find(obj.u.d, name, strlen(name));
		if (v)
			return *v;
		if (obj.k == V_DICT) {
			v = dict_find(obj.u.d, "\x01loop", 5);
			if (v && !strcmp(name, "cycle"))
				return mkfunc(r, "cycle", obj);
		}
		return UNDEF;
	}
	case V_LIST:
		for (int i = 0; list_methods[i]; i++)
			if (!strcmp(name, list_methods[i]))
				return mkfunc(r, list_methods[i], obj);
		return UNDEF;
	default:
		return UNDEF;
	}
	return UNDEF;
}

static struct val
getitem_v(struct rt *r, struct val obj, struct val key, int line)
{
	switch (obj.k) {
	case V_UNDEF:
		failf(&r->f, "line %d: subscript of an undefined value", line);
		break;
	case V_LIST:
		if (key.k == V_INT || key.k == V_BOOL) {
			int64_t i = key.u.i, n = (int64_t)obj.u.l->n;
			if (i < 0)
				i += n;
			if (i < 0 || i >= n)
				return UNDEF;
			return obj.u.l->v[i];
		}
		failf(&r->f, "line %d: list index must be an integer, not %s", line, type_name(key));
		break;
	case V_STR:
		if (key.k == V_INT) {
			int64_t i = key.u.i, n = (int64_t)cp_count(obj.u.s);
			if (i < 0)
				i += n;
			if (i < 0 || i >= n)
				return UNDEF;
			size_t a = cp_to_byte(obj.u.s, (size_t)i), b = cp_to_byte(obj.u.s, (size_t)i + 1);
			return mkstr(r, obj.u.s->p + a, b - a);
		}
		failf(&r->f, "line %d: string index must be an integer", line);
		break;
	case V_DICT: case V_NS:
		if (key.k == V_STR) {
			struct val *v = dict_find(obj.u.d, key.u.s->p, key.u.s->len);
			return v ? *v : UNDEF;
		}
		return UNDEF;
	case V_NONE:
		failf(&r->f, "line %d: None is not subscriptable", line);
		break;
	default:
		failf(&r->f, "line %d: a %s is not subscriptable", line, type_name(obj));
	}
	return UNDEF;
}

/* Items of an iterable as a list (dict: keys; string: characters). */
static struct jlist *
iter_list(struct rt *r, struct val v, int line)
{
	struct jlist *l;
	switch (v.k) {
	case V_UNDEF:
		return list_new(r, 1);
	case V_LIST:
		return v.u.l;
	case V_DICT: case V_NS:
		l = list_new(r, v.u.d->n + 1);
		for (size_t i = 0; i < v.u.d->n; i++) {
			struct val k;
			k.k = V_STR;
			k.u.s = v.u.d->k[i];
			list_push(r, l, k);
		}
		return l;
	case V_STR:
		l = list_new(r, v.u.s->len + 1);
		for (size_t i = 0; i < v.u.s->len;) {
			uint32_t cp;
			size_t k = utf8_decode((const unsigned char *)v.u.s->p + i, v.u.s->len - i, &cp);
			list_push(r, l, mkstr(r, v.u.s->p + i, k));
			i += k;
		}
		return l;
	default:
		failf(&r->f, "line %d: a %s is not iterable", line, type_name(v));
	}
	return NULL;
}

static int64_t
length_of(struct rt *r, struct val v, int line)
{
	switch (v.k) {
	case V_UNDEF: return 0;
	case V_STR: return (int64_t)cp_count(v.u.s);
	case V_LIST: return (int64_t)v.u.l->n;
	case V_DICT: case V_NS: return (int64_t)v.u.d->n;
	default: failf(&r->f, "line %d: a %s has no length", line, type_name(v));
	}
	return 0;
}

/* Arguments after evaluation. */
struct args {
	struct val pos[16];
	int npos;
	const char *kwn[16];
	struct val kw[16];
	int nkw;
};

static void
eval_args(struct rt *r, struct scope *sc, const struct node *call, struct args *a)
{
	if (call->nkids > 16 || call->nkids2 > 16)
		failf(&r->f, "line %d: too many arguments", call->line);
	a->npos = call->nkids;
	for (int i = 0; i < call->nkids; i++)
		a->pos[i] = eval(r, sc, call->kids[i]);
	a->nkw = call->nkids2;
	for (int i = 0; i < call->nkids2; i++) {
		a->kwn[i] = call->names[i];
		a->kw[i] = eval(r, sc, call->kids2[i]);
	}
}

/* Argument I by position, or by keyword NAME, or DEF. */
static struct val
arg(const struct args *a, int i, const char *name, struct val def)
{
	if (i >= 0 && i < a->npos)
		return a->pos[i];
	for (int k = 0; name && k < a->nkw; k++)
		if (!strcmp(a->kwn[k], name))
			return a->kw[k];
	return def;
}

static const struct jstr *
want_str(struct rt *r, struct val v, const char *what, int line)
{
	if (v.k != V_STR)
		failf(&r->f, "line %d: %s expects a string, got %s", line, what, type_name(v));
	return v.u.s;
}

static int64_t
want_int(struct rt *r, struct val v, const char *what, int line)
{
	if (v.k == V_INT || v.k == V_BOOL)
		return v.u.i;
	if (v.k == V_FLOAT)
		return (int64_t)v.u.f;
	failf(&r->f, "line %d: %s expects an integer, got %s", line, what, type_name(v));
	return 0;
}

static struct val call_macro(struct rt *r, const struct node *m, const struct args *a, int line);

static int apply_test(struct rt *r, const char *name, struct val v, const struct args *a, int line);

/* Filters, by name. */
static struct val
apply_filter(struct rt *r, struct scope *sc, const char *name, struct val v, const struct args *a, int line)
{
	if (!strcmp(name, "trim") || !strcmp(name, "strip")) {
		struct val c = arg(a, 0, "chars", NONE);
		return strip(r, to_str(r, v), c.k == V_STR ? c.u.s : NULL, 1, 1);
	}
	if (!strcmp(name, "tojson")) {
		struct outbuf b = { 0 };
		struct val ind = arg(a, 0, "indent", NONE);
		struct val sk = arg(a, -1, "sort_keys", mkbool(0));
		to_json(r, &b, v, ind.k == V_NONE ? -1 : (int)want_int(r, ind, "tojson indent", line), 0, truthy(sk));
		if (!b.p)
			sb_put(r, &b, "", 0);
		return sb_take(r, &b);
	}
	if (!strcmp(name, "length") || !strcmp(name, "count"))
		return mkint(length_of(r, v, line));
	if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "capitalize") || !strcmp(name, "title"))
		return str_case(r, to_str(r, v), name[0] == 'l' ? 0 : name[0] == 'u' ? 1 : name[0] == 'c' ? 2 : 3);
	if (!strcmp(name, "default") || !strcmp(name, "d")) {
		struct val def = arg(a, 0, "default_value", mkcstr(r, ""));
		int boolean = truthy(arg(a, 1, "boolean", mkbool(0)));
		if (v.k == V_UNDEF || (boolean && !truthy(v)))
			return def;
		return v;
	}
	if (!strcmp(name, "string"))
		return to_str(r, v);
	if (!strcmp(name, "safe") || !strcmp(name, "e") || !strcmp(name, "escape"))
		return v;
	if (!strcmp(name, "list"))
		return mklist(iter_list(r, v, line));
	if (!strcmp(name, "join")) {
		struct val sep = arg(a, 0, "d", mkcstr(r, ""));
		struct val attr = arg(a, 1, "attribute", UNDEF);
		struct jlist *l = iter_list(r, v, line);
		struct outbuf b = { 0 };
		sb_put(r, &b, "", 0);
		for (size_t i = 0; i < l->n; i++) {
			struct val it = l->v[i];
			if (i)
				sb_put(r, &b, want_str(r, sep, "join", line)->p, sep.u.s->len);
			if (attr.k == V_STR)
				it = getattr_v(r, it, attr.u.s->p, line);
			struct val s = to_str(r, it);
			sb_put(r, &b, s.u.s->p, s.u.s->len);
		}
		return sb_take(r, &b);
	}
	if (!strcmp(name, "replace")) {
		struct val s = to_str(r, v);
		int64_t cnt = -1;
		struct val c = arg(a, 2, "count", NONE);
		if (c.k != V_NONE)
			cnt = want_int(r, c, "replace", line);
		return str_replace(r, s, want_str(r, arg(a, 0, "old", UNDEF), "replace", line),
		    want_str(r, to_str(r, arg(a, 1, "new", UNDEF)), "replace", line), cnt);
	}
	if (!strcmp(name, "first") || !strcmp(name, "last")) {
		struct jlist *l = iter_list(r, v, line);
		if (l->n == 0)
			return UNDEF;
		return name[0] == 'f' ? l->v[0] : l->v[l->n - 1];
	}
	if (!strcmp(name, "items")) {
		struct jlist *l;
		if (v.k == V_UNDEF)
			return mklist(list_new(r, 1));
		if (v.k != V_DICT && v.k != V_NS)
			failf(&r->f, "line %d: items expects a mapping", line);
		l = list_new(r, v.u.d->n + 1);
		for (size_t i = 0; i < v.u.d->n; i++) {
			struct jlist *pair = list_new(r, 2);
			struct val k;
			k.k = V_STR;
			k.u.s = v.u.d->k[i];
			list_push(r, pair, k);
			list_push(r, pair, v.u.d->v[i]);
			list_push(r, l, mklist(pair));
		}
		return mklist(l);
	}
	if (!strcmp(name, "indent")) {
		struct val w = arg(a, 0, "width", mkint(4));
		int first = truthy(arg(a, 1, "first", mkbool(0))), blank = truthy(arg(a, 2, "blank", mkbool(0)));
		struct val s = to_str(r, v);
		struct outbuf pad = { 0 }, b = { 0 };
		const char *p = s.u.s->p, *end = p + s.u.s->len;
		int lineno = 0;
		if (w.k == V_STR)
			sb_put(r, &pad, w.u.s->p, w.u.s->len);
		else
			for (int64_t i = 0, n = want_int(r, w, "indent", line); i < n && i < 1000; i++)
				sb_put(r, &pad, " ", 1);
		sb_put(r, &b, "", 0);
		sb_put(r, &pad, "", 0);
		while (p <= end) {
			const char *nl = memchr(p, '\n', end - p);
			const char *le = nl ? nl : end;
			int is_blank = le == p;
			if ((lineno > 0 || first) && (!is_blank || blank))
				sb_put(r, &b, pad.p, pad.n);
			sb_put(r, &b, p, le - p);
			if (!nl)
				break;
			sb_put(r, &b, "\n", 1);
			p = nl + 1;
			lineno++;
		}
		return sb_take(r, &b);
	}
	if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr") || !strcmp(name, "select") ||
	    !strcmp(name, "reject")) {
		int attr = name[strlen(name) - 4] == 'a';   /* ...attr */
		int want = name[0] == 's';
		/* Jinja skips a false value (None, empty) rather than iterating it. */
		struct jlist *l = truthy(v) ? iter_list(r, v, line) : list_new(r, 1), *o = list_new(r, l->n + 1);
		struct val aname = attr ? arg(a, 0, NULL, UNDEF) : UNDEF;
		struct val test = arg(a, attr ? 1 : 0, NULL, UNDEF);
		struct args targs = { 0 };
		if (attr)
			want_str(r, aname, name, line);
		for (int i = (attr ? 2 : 1); i < a->npos && targs.npos < 16; i++)
			targs.pos[targs.npos++] = a->pos[i];
		for (size_t i = 0; i < l->n; i++) {
			struct val it = l->v[i], x = it;
			int t;
			if (attr)
				x = (it.k == V_DICT || it.k == V_NS) ? getattr_v(r, it, aname.u.s->p, line) : UNDEF;
			t = test.k == V_STR ? apply_test(r, test.u.s->p, x, &targs, line) : truthy(x);
			if (t == want)
				list_push(r, o, it);
		}
		return mklist(o);
	}
	if (!strcmp(name, "map")) {
		struct jlist *l = truthy(v) ? iter_list(r, v, line) : list_new(r, 1), *o = list_new(r, l->n + 1);
		struct val attr = arg(a, -1, "attribute", UNDEF);
		struct val def = arg(a, -1, "default", UNDEF);
		for (size_t i = 0; i < l->n; i++) {
			struct val x;
			if (attr.k == V_STR) {
				x = (l->v[i].k == V_DICT || l->v[i].k == V_NS) ? getattr_v(r, l->v[i], attr.u.s->p, line) : UNDEF;
				if (x.k == V_UNDEF && def.k != V_UNDEF)
					x = def;
			} else {
				struct args fa = { 0 };
				for (int k = 1; k < a->npos; k++)
					fa.pos[fa.npos++] = a->pos[k];
				x = apply_filter(r, sc, want_str(r, arg(a, 0, NULL, UNDEF), "map", line)->p, l->v[i], &fa, line);
			}
			list_push(r, o, x);
		}
		return mklist(o);
	}
	if (!strcmp(name, "unique")) {
		struct jlist *l = iter_list(r, v, line), *o = list_new(r, l->n + 1);
		for (size_t i = 0; i < l->n; i++) {
			int seen = 0;
			for (size_t k = 0; k < o->n && !seen; k++)
				seen = equal(o->v[k], l->v[i]);
			if (!seen)
				list_push(r, o, l->v[i]);
		}
		return mklist(o);
	}
	if (!strcmp(name, "reverse")) {
		if (v.k == V_STR) {
			struct jlist *l = iter_list(r, v, line);
			struct outbuf b = { 0 };
			sb_put(r, &b, "", 0);
			for (size_t i = l->n; i-- > 0;)
				sb_put(r, &b, l->v[i].u.s->p, l->v[i].u.s->len);
			return sb_take(r, &b);
		}
		struct jlist *l = iter_list(r, v, line), *o = list_new(r, l->n + 1);
		for (size_t i = l->n; i-- > 0;)
			list_push(r, o, l->v[i]);
		return mklist(o);
	}
	if (!strcmp(name, "sort")) {
		struct jlist *l = iter_list(r, v, line), *o = list_new(r, l->n + 1);
		int rev = truthy(arg(a, 0, "reverse", mkbool(0)));
		struct val attr = arg(a, 2, "attribute", UNDEF);
		for (size_t i = 0; i < l->n; i++)
			list_push(r, o, l->v[i]);
		for (size_t i = 1; i < o->n; i++) {   /* stable insertion sort */
			for (size_t j = i; j > 0; j--) {
				struct val x = o->v[j - 1], y = o->v[j];
				if (attr.k == V_STR) {
					x = getattr_v(r, x, attr.u.s->p, line);
					y = getattr_v(r, y, attr.u.s->p, line);
				}
				int c = compare(r, x, y);
				if (rev ? c >= 0 : c <= 0)
					break;
				struct val t = o->v[j]; o->v[j] = o->v[j - 1]; o->v[j - 1] = t;
			}
		}
		return mklist(o);
	}
	if (!strcmp(name, "int")) {
		if (v.k == V_STR) {
			char *e;
			long long x = strtoll(v.u.s->p, &e, 10);
			return e != v.u.s->p ? mkint(x) : arg(a, 0, "default", mkint(0));
		}
		if (is_num(v))
			return mkint((int64_t)num(v));
		return arg(a, 0, "default", mkint(0));
	}
	if (!strcmp(name, "float")) {
		if (v.k == V_STR) {
			char *e;
			double x = strtod(v.u.s->p, &e);
			return e != v.u.s->p ? mkfloat(x) : arg(a, 0, "default", mkfloat(0));
		}
		if (is_num(v))
			return mkfloat(num(v));
		return arg(a, 0, "default", mkfloat(0));
	}
	if (!strcmp(name, "abs")) {
		if (v.k == V_FLOAT)
			return mkfloat(fabs(v.u.f));
		return mkint(llabs((long long)want_int(r, v, "abs", line)));
	}
	if (!strcmp(name, "round")) {
		int64_t prec = want_int(r, arg(a, 0, "precision", mkint(0)), "round", line);
		double m = pow(10, (double)prec);
		return mkfloat(round(num(v) * m) / m);
	}
	if (!strcmp(name, "sum")) {
		struct jlist *l = iter_list(r, v, line);
		double s = 0;
		int flt = 0;
		for (size_t i = 0; i < l->n; i++) {
			if (!is_num(l->v[i]))
				failf(&r->f, "line %d: sum of a non-number", line);
			flt |= l->v[i].k == V_FLOAT;
			s += num(l->v[i]);
		}
		return flt ? mkfloat(s) : mkint((int64_t)s);
	}
	if (!strcmp(name, "min") || !strcmp(name, "max")) {
		struct jlist *l = iter_list(r, v, line);
		struct val best = UNDEF;
		for (size_t i = 0; i < l->n; i++)
			if (best.k == V_UNDEF || compare(r, l->v[i], best) == (name[1] == 'i' ? -1 : 1))
				best = l->v[i];
		return best;
	}
	if (!strcmp(name, "dictsort")) {
		struct val items = apply_filter(r, sc, "items", v, a, line);
		struct args none = { 0 };
		return apply_filter(r, sc, "sort", items, &none, line);
	}
	if (!strcmp(name, "wordcount")) {
		struct val parts = str_split(r, to_str(r, v), NULL, -1);
		return mkint((int64_t)parts.u.l->n);
	}
	failf(&r->f, "line %d: unknown filter '%s'", line, name);
	return UNDEF;
}

static int
apply_test(struct rt *r, const char *name, struct val v, const struct args *a, int line)
{
	if (!strcmp(name, "defined")) return v.k != V_UNDEF;
	if (!strcmp(name, "undefined")) return v.k == V_UNDEF;
	if (!strcmp(name, "none")) return v.k == V_NONE;
	if (!strcmp(name, "string")) return v.k == V_STR;
	if (!strcmp(name, "number")) return v.k == V_INT || v.k == V_FLOAT;
	if (!strcmp(name, "integer")) return v.k == V_INT;
	if (!strcmp(name, "float")) return v.k == V_FLOAT;
	if (!strcmp(name, "boolean")) return v.k == V_BOOL;
	if (!strcmp(name, "true")) return v.k == V_BOOL && v.u.i;
	if (!strcmp(name, "false")) return v.k == V_BOOL && !v.u.i;
	if (!strcmp(name, "mapping")) return v.k == V_DICT || v.k == V_NS;
	if (!strcmp(name, "iterable")) return v.k == V_LIST || v.k == V_DICT || v.k == V_STR || v.k == V_NS;
	if (!strcmp(name, "sequence")) return v.k == V_LIST || v.k == V_STR || v.k == V_DICT;
	if (!strcmp(name, "callable")) return v.k == V_MACRO || v.k == V_FUNC;
	if (!strcmp(name, "even")) return want_int(r, v, "even", line) % 2 == 0;
	if (!strcmp(name, "odd")) return want_int(r, v, "odd", line) % 2 != 0;
	if (!strcmp(name, "divisibleby")) {
		int64_t d = want_int(r, arg(a, 0, "num", mkint(1)), "divisibleby", line);
		return d != 0 && want_int(r, v, "divisibleby", line) % d == 0;
	}
	if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==") || !strcmp(name, "sameas"))
		return equal(v, arg(a, 0, NULL, UNDEF));
	if (!strcmp(name, "ne") || !strcmp(name, "!="))
		return !equal(v, arg(a, 0, NULL, UNDEF));
	if (!strcmp(name, "lt") || !strcmp(name, "lessthan")) return compare(r, v, arg(a, 0, NULL, UNDEF)) < 0;
	if (!strcmp(name, "gt") || !strcmp(name, "greaterthan")) return compare(r, v, arg(a, 0, NULL, UNDEF)) > 0;
	if (!strcmp(name, "le")) return compare(r, v, arg(a, 0, NULL, UNDEF)) <= 0;
	if (!strcmp(name, "ge")) return compare(r, v, arg(a, 0, NULL, UNDEF)) >= 0;
	if (!strcmp(name, "in")) {
		struct val c = arg(a, 0, NULL, UNDEF);
		struct jlist *l = iter_list(r, c, line);
		if (c.k == V_STR && v.k == V_STR)
			return memmem(c.u.s->p, c.u.s->len, v.u.s->p, v.u.s->len) != NULL;
		for (size_t i = 0; i < l->n; i++)
			if (equal(l->v[i], v))
				return 1;
		return 0;
	}
	if (!strcmp(name, "lower") && v.k == V_STR) {
		for (size_t i = 0; i < v.u.s->len; i++)
			if (isupper((unsigned char)v.u.s->p[i]))
				return 0;
		return 1;
	}
	if (!strcmp(name, "upper") && v.k == V_STR) {
		for (size_t i = 0; i < v.u.s->len; i++)
			if (islower((unsigned char)v.u.s->p[i]))
				return 0;
		return 1;
	}
	failf(&r->f, "line %d: unknown test '%s'", line, name);
	return 0;
}

static int
contains(struct rt *r, struct val hay, struct val needle, int line)
{
	switch (hay.k) {
	case V_STR:
		if (needle.k != V_STR)
			failf(&r->f, "line %d: 'in <string>' needs a string on the left", line);
		return memmem(hay.u.s->p, hay.u.s->len, needle.u.s->p, needle.u.s->len) != NULL;
	case V_LIST:
		for (size_t i = 0; i < hay.u.l->n; i++)
			if (equal(hay.u.l->v[i], needle))
				return 1;
		return 0;
	case V_DICT: case V_NS:
		return needle.k == V_STR && dict_find(hay.u.d, needle.u.s->p, needle.u.s->len) != NULL;
	case V_UNDEF:
		return 0;
	default:
		failf(&r->f, "line %d: 'in' needs a container, got %s", line, type_name(hay));
	}
	return 0;
}

static struct val
arith(struct rt *r, const char *op, struct val a, struct val b, int line)
{
	if (!strcmp(op, "~")) {
		struct outbuf o = { 0 };
		struct val x = to_str(r, a), y = to_str(r, b);
		sb_put(r, &o, x.u.s->p, x.u.s->len);
		sb_put(r, &o, y.u.s->p, y.u.s->len);
		return sb_take(r, &o);
	}
	if (!strcmp(op, "+")) {
		if (a.k == V_STR && b.k == V_STR) {
			struct outbuf o = { 0 };
			sb_put(r, &o, a.u.s->p, a.u.s->len);
			sb_put(r, &o, b.u.s->p, b.u.s->len);
			return sb_take(r, &o);
		}
		if (a.k == V_LIST && b.k == V_LIST) {
			struct jlist *l = list_new(r, a.u.l->n + b.u.l->n + 1);
			for (size_t i = 0; i < a.u.l->n; i++)
				list_push(r, l, a.u.l->v[i]);
			for (size_t i = 0; i < b.u.l->n; i++)
				list_push(r, l, b.u.l->v[i]);
			return mklist(l);
		}
	}
	if (!strcmp(op, "*") && ((a.k == V_STR && b.k == V_INT) || (a.k == V_INT && b.k == V_STR))) {
		struct val s = a.k == V_STR ? a : b;
		int64_t n = a.k == V_INT ? a.u.i : b.u.i;
		struct outbuf o = { 0 };
		if (n > 0 && (uint64_t)n * s.u.s->len > TMPL_MAX_OUTPUT)
			failf(&r->f, "line %d: string repetition too large", line);
		sb_put(r, &o, "", 0);
		for (int64_t i = 0; i < n; i++)
			sb_put(r, &o, s.u.s->p, s.u.s->len);
		return sb_take(r, &o);
	}
	if (!is_num(a) || !is_num(b))
		failf(&r->f, "line %d: unsupported operand types for %s: %s and %s", line, op, type_name(a), type_name(b));
	if (a.k != V_FLOAT && b.k != V_FLOAT && strcmp(op, "/") != 0 && strcmp(op, "**") != 0) {
		int64_t x = a.u.i, y = b.u.i, z;
		switch (op[0]) {
		case '+': if (__builtin_add_overflow(x, y, &z)) goto ovf; return mkint(z);
		case '-': if (__builtin_sub_overflow(x, y, &z)) goto ovf; return mkint(z);
		case '*': if (__builtin_mul_overflow(x, y, &z)) goto ovf; return mkint(z);
		case '/':   /* floor division "//" */
		case '%':
			if (y == 0)
				failf(&r->f, "line %d: division by zero", line);
			if (x == INT64_MIN && y == -1)
				goto ovf;
			z = op[0] == '%' ? x % y : x / y;
			if (op[0] == '%') {
				if (z != 0 && ((z < 0) != (y < 0)))
					z += y;
			} else if ((x % y != 0) && ((x < 0) != (y < 0))) {
				z--;
			}
			return mkint(z);
		}
	}
	{
		double x = num(a), y = num(b);
		switch (op[0]) {
		case '+': return mkfloat(x + y);
		case '-': return mkfloat(x - y);
		case '*':
			if (op[1] == '*') {
				if (a.k != V_FLOAT && b.k != V_FLOAT && y >= 0) {
					double p = pow(x, y);
					if (fabs(p) < 9.2e18)
						return mkint((int64_t)p);
					goto ovf;
				}
				return mkfloat(pow(x, y));
			}
			return mkfloat(x * y);
		case '/':
			if (y == 0)
				failf(&r->f, "line %d: division by zero", line);
			return op[1] == '/' ? mkfloat(floor(x / y)) : mkfloat(x / y);
		case '%':
			if (y == 0)
				failf(&r->f, "line %d: division by zero", line);
			return mkfloat(x - floor(x / y) * y);
		}
	}
ovf:
	failf(&r->f, "line %d: integer overflow", line);
	return UNDEF;
}

static struct val
slice(struct rt *r, struct val obj, struct val a, struct val b, struct val c, int line)
{
	int64_t n, step = c.k == V_UNDEF || c.k == V_NONE ? 1 : want_int(r, c, "slice", line), start, stop;
	struct jlist *items = NULL;

	if (obj.k == V_STR)
		n = (int64_t)cp_count(obj.u.s);
	else if (obj.k == V_LIST)
		n = (int64_t)obj.u.l->n;
	else
		failf(&r->f, "line %d: cannot slice a %s", line, type_name(obj));
	if (step == 0)
		failf(&r->f, "line %d: slice step cannot be zero", line);
	if (a.k == V_UNDEF || a.k == V_NONE)
		start = step > 0 ? 0 : n - 1;
	else {
		start = want_int(r, a, "slice", line);
		if (start < 0) start += n;
		if (start < 0) start = step > 0 ? 0 : -1;
		if (start >= n) start = step > 0 ? n : n - 1;
	}
	if (b.k == V_UNDEF || b.k == V_NONE)
		stop = step > 0 ? n : -1;
	else {
		stop = want_int(r, b, "slice", line);
		if (stop < 0) stop += n;
		if (stop < 0) stop = step > 0 ? 0 : -1;
		if (stop > n) stop = n;
	}
	if (obj.k == V_STR)
		items = iter_list(r, obj, line);
	else
		items = obj.u.l;
	struct jlist *o = list_new(r, 8);
	for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
		list_push(r, o, items->v[i]);
	if (obj.k == V_STR) {
		struct outbuf s = { 0 };
		sb_put(r, &s, "", 0);
		for (size_t i = 0; i < o->n; i++)
			sb_put(r, &s, o->v[i].u.s->p, o->v[i].u.s->len);
		return sb_take(r, &s);
	}
	return mklist(o);
}

/* Calls a global function or a bound method. */
static struct val
call_func(struct rt *r, struct func *fn, const struct args *a, int line)
{
	const char *name = fn->name;
	struct val self = fn->self;

	if (self.k == V_UNDEF) {   /* globals */
		if (!strcmp(name, "range")) {
			int64_t start = 0, stop, st = 1;
			if (a->npos == 1)
				stop = want_int(r, a->pos[0], "range", line);
			else {
				start = want_int(r, arg(a, 0, NULL, mkint(0)), "range", line);
				stop = want_int(r, arg(a, 1, NULL, mkint(0)), "range", line);
				st = want_int(r, arg(a, 2, NULL, mkint(1)), "range", line);
			}
			if (st == 0)
				failf(&r->f, "line %d: range step cannot be zero", line);
			struct jlist *l = list_new(r, 8);
			for (int64_t i = start; st > 0 ? i < stop : i > stop; i += st) {
				if (l->n >= TMPL_MAX_RANGE)
					failf(&r->f, "line %d: range too large", line);
				list_push(r, l, mkint(i));
			}
			return mklist(l);
		}
		if (!strcmp(name, "namespace") || !strcmp(name, "dict")) {
			struct jdict *d = dict_new(r);
			for (int i = 0; i < a->nkw; i++)
				dict_set(r, d, a->kwn[i], strlen(a->kwn[i]), a->kw[i]);
			return mkdict(d, name[0] == 'n' ? V_NS : V_DICT);
		}
		if (!strcmp(name, "raise_exception")) {
			struct val m = to_str(r, arg(a, 0, "message", mkcstr(r, "error")));
			r->f.raised = 1;
			failf(&r->f, "%s", m.u.s->p);
		}
		if (!strcmp(name, "strftime_now")) {
			char buf[256];
			struct tm tm;
			const struct jstr *f = want_str(r, arg(a, 0, "format", UNDEF), "strftime_now", line);
			time_t t = r->now;
			localtime_r(&t, &tm);
			size_t n = strftime(buf, sizeof(buf), f->p, &tm);
			return mkstr(r, buf, n);
		}
		failf(&r->f, "line %d: unknown function '%s'", line, name);
	}
	if (self.k == V_STR) {
		if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
			struct val c = arg(a, 0, "chars", NONE);
			return strip(r, self, c.k == V_STR ? c.u.s : NULL, name[0] != 'r', name[0] != 'l');
		}
		if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
			struct val p = arg(a, 0, NULL, UNDEF);
			struct jlist *cands;
			if (p.k == V_LIST)
				cands = p.u.l;
			else {
				cands = list_new(r, 1);
				list_push(r, cands, p);
			}
			for (size_t i = 0; i < cands->n; i++) {
				const struct jstr *x = want_str(r, cands->v[i], name, line);
				if (x->len <= self.u.s->len &&
				    memcmp(self.u.s->p + (name[0] == 's' ? 0 : self.u.s->len - x->len), x->p, x->len) == 0)
					return mkbool(1);
			}
			return mkbool(0);
		}
		if (!strcmp(name, "split")) {
			struct val sep = arg(a, 0, "sep", NONE);
			int64_t ms = want_int(r, arg(a, 1, "maxsplit", mkint(-1)), "split", line);
			return str_split(r, self, sep.k == V_STR ? sep.u.s : NULL, ms);
		}
		if (!strcmp(name, "splitlines"))
			return str_split(r, self, mkcstr(r, "\n").u.s, -1);
		if (!strcmp(name, "replace")) {
			int64_t cnt = want_int(r, arg(a, 2, "count", mkint(-1)), "replace", line);
			return str_replace(r, self, want_str(r, arg(a, 0, NULL, UNDEF), "replace", line),
			    want_str(r, arg(a, 1, NULL, UNDEF), "replace", line), cnt);
		}
		if (!strcmp(name, "upper")) return str_case(r, self, 1);
		if (!strcmp(name, "lower")) return str_case(r, self, 0);
		if (!strcmp(name, "capitalize")) return str_case(r, self, 2);
		if (!strcmp(name, "title")) return str_case(r, self, 3);
		if (!strcmp(name, "find") || !strcmp(name, "count")) {
			const struct jstr *x = want_str(r, arg(a, 0, NULL, UNDEF), name, line);
			const char *p = self.u.s->p, *end = p + self.u.s->len;
			if (name[0] == 'f') {
				const char *h = memmem(p, end - p, x->p, x->len);
				if (!h)
					return mkint(-1);
				struct jstr tmp = { (size_t)(h - p) };
				(void)tmp;
				size_t cps = 0;
				for (const char *q = p; q < h; q++)
					cps += ((unsigned char)*q & 0xC0) != 0x80;
				return mkint((int64_t)cps);
			}
			int64_t c = 0;
			if (x->len == 0)
				return mkint((int64_t)cp_count(self.u.s) + 1);
			for (const char *h; (h = memmem(p, end - p, x->p, x->len)); p = h + x->len)
				c++;
			return mkint(c);
		}
		if (!strcmp(name, "join")) {
			struct jlist *l = iter_list(r, arg(a, 0, NULL, UNDEF), line);
			struct outbuf b = { 0 };
			sb_put(r, &b, "", 0);
			for (size_t i = 0; i < l->n; i++) {
				if (i)
					sb_put(r, &b, self.u.s->p, self.u.s->len);
				struct val s = to_str(r, l->v[i]);
				sb_put(r, &b, s.u.s->p, s.u.s->len);
			}
			return sb_take(r, &b);
		}
		if (!strcmp(name, "isdigit") || !strcmp(name, "isalpha") || !strcmp(name, "isspace")) {
			if (self.u.s->len == 0)
				return mkbool(0);
			for (size_t i = 0; i < self.u.s->len; i++) {
				int c = (unsigned char)self.u.s->p[i];
				if (name[2] == 'd' ? !isdigit(c) : name[2] == 'a' ? !isalpha(c) : !isspace(c))
					return mkbool(0);
			}
			return mkbool(1);
		}
		failf(&r->f, "line %d: string method '%s' is not supported", line, name);
	}
	if (self.k == V_DICT) {
		if (!strcmp(name, "cycle")) {
			struct val *i0 = dict_find(self.u.d, "index0", 6);
			if (a->npos == 0)
				failf(&r->f, "line %d: loop.cycle needs arguments", line);
			return a->pos[(i0 ? i0->u.i : 0) % a->npos];
		}
		if (!strcmp(name, "get")) {
			const struct jstr *k = want_str(r, arg(a, 0, NULL, UNDEF), "get", line);
			struct val *v = dict_find(self.u.d, k->p, k->len);
			return v ? *v : arg(a, 1, "default", NONE);
		}
		if (!strcmp(name, "items")) {
			struct args none = { 0 };
			return apply_filter(r, NULL, "items", self, &none, line);
		}
		if (!strcmp(name, "keys") || !strcmp(name, "values")) {
			struct jlist *l = list_new(r, self.u.d->n + 1);
			for (size_t i = 0; i < self.u.d->n; i++) {
				struct val k;
				k.k = V_STR;
				k.u.s = self.u.d->k[i];
				list_push(r, l, name[0] == 'k' ? k : self.u.d->v[i]);
			}
			return mklist(l);
		}
		if (!strcmp(name, "update")) {
			struct val o = arg(a, 0, NULL, UNDEF);
			if (o.k == V_DICT)
				for (size_t i = 0; i < o.u.d->n; i++)
					dict_set(r, self.u.d, o.u.d->k[i]->p, o.u.d->k[i]->len, o.u.d->v[i]);
			for (int i = 0; i < a->nkw; i++)
				dict_set(r, self.u.d, a->kwn[i], strlen(a->kwn[i]), a->kw[i]);
			return NONE;
		}
		failf(&r->f, "line %d: dict method '%s' is not supported", line, name);
	}
	if (self.k == V_LIST) {
		if (!strcmp(name, "append")) {
			list_push(r, self.u.l, arg(a, 0, NULL, NONE));
			return NONE;
		}
		if (!strcmp(name, "extend")) {
			struct jlist *l = iter_list(r, arg(a, 0, NULL, UNDEF), line);
			for (size_t i = 0; i < l->n; i++)
				list_push(r, self.u.l, l->v[i]);
			return NONE;
		}
		if (!strcmp(name, "pop")) {
			if (self.u.l->n == 0)
				failf(&r->f, "line %d: pop from an empty list", line);
			int64_t i = want_int(r, arg(a, 0, NULL, mkint(-1)), "pop", line);
			if (i < 0)
				i += (int64_t)self.u.l->n;
			if (i < 0 || i >= (int64_t)self.u.l->n)
				failf(&r->f, "line %d: pop index out of range", line);
			struct val v = self.u.l->v[i];
			memmove(&self.u.l->v[i], &self.u.l->v[i + 1], (self.u.l->n - i - 1) * sizeof(struct val));
			self.u.l->n--;
			return v;
		}
		if (!strcmp(name, "index") || !strcmp(name, "count")) {
			struct val x = arg(a, 0, NULL, UNDEF);
			int64_t c = 0;
			for (size_t i = 0; i < self.u.l->n; i++) {
				if (equal(self.u.l->v[i], x)) {
					if (name[0] == 'i')
						return mkint((int64_t)i);
					c++;
				}
			}
			if (name[0] == 'i')
				failf(&r->f, "line %d: value not in list", line);
			return mkint(c);
		}
	}
	failf(&r->f, "line %d: '%s' is not callable here", line, name);
	return UNDEF;
}

static struct val
eval(struct rt *r, struct scope *sc, const struct node *n)
{
	struct val a, b;

	step(r);
	switch (n->k) {
	case E_LIT:
		return n->lit;
	case E_NAME: {
		struct val *v = lookup(sc, n->s);
		if (v)
			return *v;
		if (!strcmp(n->s, "range") || !strcmp(n->s, "namespace") || !strcmp(n->s, "raise_exception") ||
		    !strcmp(n->s, "strftime_now") || !strcmp(n->s, "dict"))
			return mkfunc(r, n->s, UNDEF);
		return UNDEF;
	}
	case E_ATTR:
		return getattr_v(r, eval(r, sc, n->a), n->s, n->line);
	case E_ITEM:
		a = eval(r, sc, n->a);
		b = eval(r, sc, n->b);
		if ((a.k == V_DICT || a.k == V_NS) && b.k == V_STR) {
			struct val *v = dict_find(a.u.d, b.u.s->p, b.u.s->len);
			return v ? *v : UNDEF;
		}
		return getitem_v(r, a, b, n->line);
	case E_SLICE:
		return slice(r, eval(r, sc, n->a), n->kids[0] ? eval(r, sc, n->kids[0]) : UNDEF,
		    n->kids[1] ? eval(r, sc, n->kids[1]) : UNDEF, n->kids[2] ? eval(r, sc, n->kids[2]) : UNDEF, n->line);
	case E_CALL: {
		struct args args;
		a = eval(r, sc, n->a);
		eval_args(r, sc, n, &args);
		if (a.k == V_MACRO)
			return call_macro(r, a.u.m, &args, n->line);
		if (a.k == V_FUNC)
			return call_func(r, a.u.fn, &args, n->line);
		if (a.k == V_UNDEF)
			failf(&r->f, "line %d: call of an undefined function%s%s", n->line,
			    n->a->k == E_NAME ? " " : "", n->a->k == E_NAME ? n->a->s : "");
		failf(&r->f, "line %d: a %s is not callable", n->line, type_name(a));
		break;
	}
	case E_FILTER: {
		struct args args;
		a = eval(r, sc, n->a);
		eval_args(r, sc, n, &args);
		return apply_filter(r, sc, n->s, a, &args, n->line);
	}
	case E_TEST: {
		struct args args;
		a = eval(r, sc, n->a);
		eval_args(r, sc, n, &args);
		return mkbool(apply_test(r, n->s, a, &args, n->line) != n->neg);
	}
	case E_BIN:
		a = eval(r, sc, n->a);
		b = eval(r, sc, n->b);
		if (!strcmp(n->s, "==")) return mkbool(equal(a, b));
		if (!strcmp(n->s, "!=")) return mkbool(!equal(a, b));
		if (!strcmp(n->s, "<")) return mkbool(compare(r, a, b) < 0);
		if (!strcmp(n->s, "<=")) return mkbool(compare(r, a, b) <= 0);
		if (!strcmp(n->s, ">")) return mkbool(compare(r, a, b) > 0);
		if (!strcmp(n->s, ">=")) return mkbool(compare(r, a, b) >= 0);
		if (!strcmp(n->s, "in")) return mkbool(contains(r, b, a, n->line));
		if (!strcmp(n->s, "not in")) return mkbool(!contains(r, b, a, n->line));
		return arith(r, n->s, a, b, n->line);
	case E_NEG:
		a = eval(r, sc, n->a);
		if (a.k == V_INT || a.k == V_BOOL) {
			if (a.u.i == INT64_MIN)
				failf(&r->f, "line %d: integer overflow", n->line);
			return mkint(-a.u.i);
		}
		if (a.k == V_FLOAT)
			return mkfloat(-a.u.f);
		failf(&r->f, "line %d: bad operand for unary -: %s", n->line, type_name(a));
		break;
	case E_NOT:
		return mkbool(!truthy(eval(r, sc, n->a)));
	case E_AND:
		a = eval(r, sc, n->a);
		return truthy(a) ? eval(r, sc, n->b) : a;
	case E_OR:
		a = eval(r, sc, n->a);
		return truthy(a) ? a : eval(r, sc, n->b);
	case E_COND:
		if (truthy(eval(r, sc, n->a)))
			return eval(r, sc, n->b);
		return n->c ? eval(r, sc, n->c) : UNDEF;
	case E_LIST: {
		struct jlist *l = list_new(r, n->nkids + 1);
		for (int i = 0; i < n->nkids; i++)
			list_push(r, l, eval(r, sc, n->kids[i]));
		return mklist(l);
	}
	case E_DICT: {
		struct jdict *d = dict_new(r);
		for (int i = 0; i < n->nkids; i++) {
			struct val k = eval(r, sc, n->kids[i]);
			if (k.k != V_STR)
				k = to_str(r, k);
			dict_set(r, d, k.u.s->p, k.u.s->len, eval(r, sc, n->kids2[i]));
		}
		return mkdict(d, V_DICT);
	}
	default:
		failf(&r->f, "line %d: statement used as an expression", n->line);
	}
	return UNDEF;
}

static void
assign(struct rt *r, struct scope *sc, const char **names, int nnames, struct val v, int line)
{
	if (nnames == 1) {
		dict_set(r, sc->vars, names[0], strlen(names[0]), v);
		return;
	}
	struct jlist *l = iter_list(r, v, line);
	if ((int)l->n != nnames)
		failf(&r->f, "line %d: cannot unpack %zu values into %d names", line, l->n, nnames);
	for (int i = 0; i < nnames; i++)
		dict_set(r, sc->vars, names[i], strlen(names[i]), l->v[i]);
}

static struct val
call_macro(struct rt *r, const struct node *m, const struct args *a, int line)
{
	struct scope sc = { r->globals, dict_new(r) };
	struct outbuf buf = { 0 }, *saved = r->out;
	int saved_brk = r->brk, saved_cont = r->cont;

	if (a->npos > m->nnames)
		failf(&r->f, "line %d: macro %s takes %d arguments, %d given", line, m->s, m->nnames, a->npos);
	if (++r->depth > TMPL_MAX_DEPTH)
		failf(&r->f, "line %d: macros nest too deep", line);
	for (int i = 0; i < m->nnames; i++) {
		struct val v = UNDEF;
		if (i < a->npos)
			v = a->pos[i];
		else {
			int found = 0;
			for (int k = 0; k < a->nkw; k++)
				if (!strcmp(a->kwn[k], m->names[i])) {
					v = a->kw[k];
					found = 1;
				}
			if (!found && m->kids2[i])
				v = eval(r, &sc, m->kids2[i]);
		}
		dict_set(r, sc.vars, m->names[i], strlen(m->names[i]), v);
	}
	r->out = &buf;
	sb_put(r, &buf, "", 0);
	exec_body(r, &sc, m->kids, m->nkids);
	r->out = saved;
	r->brk = saved_brk;
	r->cont = saved_cont;
	r->depth--;
	return sb_take(r, &buf);
}

static void
exec_stmt(struct rt *r, struct scope *sc, const struct node *n)
{
	step(r);
	switch (n->k) {
	case S_TEXT:
		sb_put(r, r->out, n->s, n->n);
		break;
	case S_OUT: {
		struct val v = eval(r, sc, n->a);
		repr(r, r->out, v, 1);
		break;
	}
	case S_IF:
		for (; n; n = n->b) {
			if (n->neg == 2 || !n->a || truthy(eval(r, sc, n->a))) {
				exec_body(r, sc, n->kids, n->nkids);
				break;
			}
		}
		break;
	case S_FOR: {
		struct val it = eval(r, sc, n->a);
		struct jlist *src = iter_list(r, it, n->line), *items;
		struct scope inner = { sc, dict_new(r) };
		/* Apply the loop filter first: loop.* counts what remains. */
		if (n->b) {
			items = list_new(r, src->n + 1);
			for (size_t i = 0; i < src->n; i++) {
				assign(r, &inner, n->names, n->nnames, src->v[i], n->line);
				if (truthy(eval(r, &inner, n->b)))
					list_push(r, items, src->v[i]);
			}
		} else {
			items = src;
		}
		if (items->n == 0) {
			exec_body(r, sc, n->kids2, n->nkids2);
			break;
		}
		/* One loop object and one scope for all iterations (as Jinja's
		 * single frame): nothing is allocated per iteration.  The count is
		 * fixed at the start, so a body that appends does not extend it. */
		{
			struct jdict *loop = dict_new(r);
			size_t count = items->n;
			int64_t len = (int64_t)count;
			dict_set(r, inner.vars, "loop", 4, mkdict(loop, V_DICT));
			static const char *const keys[] = { "index", "index0", "revindex", "revindex0", "first",
				"last", "length", "depth", "depth0", "previtem", "nextitem", "\x01loop" };
			for (int k = 0; k < 12; k++)
				dict_set(r, loop, keys[k], strlen(keys[k]), NONE);
			for (size_t i = 0; i < count; i++) {
				/* Slots in the order of KEYS: no lookups per iteration. */
				struct val *lv = loop->v;
				lv[0] = mkint((int64_t)i + 1);
				lv[1] = mkint((int64_t)i);
				lv[2] = mkint(len - (int64_t)i);
				lv[3] = mkint(len - (int64_t)i - 1);
				lv[4] = mkbool(i == 0);
				lv[5] = mkbool(i + 1 == count);
				lv[6] = mkint(len);
				lv[7] = mkint(1);
				lv[8] = mkint(0);
				lv[9] = i > 0 ? items->v[i - 1] : UNDEF;
				lv[10] = i + 1 < count ? items->v[i + 1] : UNDEF;
				assign(r, &inner, n->names, n->nnames, items->v[i], n->line);
				exec_body(r, &inner, n->kids, n->nkids);
				if (r->brk) {
					r->brk = 0;
					break;
				}
				r->cont = 0;
			}
		}
		break;
	}
	case S_SET: {
		struct val v = eval(r, sc, n->a);
		if (n->s) {
			struct val *ns = lookup(sc, n->names[0]);
			if (!ns || ns->k != V_NS)
				failf(&r->f, "line %d: '%s' is not a namespace", n->line, n->names[0]);
			dict_set(r, ns->u.d, n->s, strlen(n->s), v);
		} else {
			assign(r, sc, n->names, n->nnames, v, n->line);
		}
		break;
	}
	case S_SETBLOCK: {
		struct outbuf buf = { 0 }, *saved = r->out;
		r->out = &buf;
		sb_put(r, &buf, "", 0);
		exec_body(r, sc, n->kids, n->nkids);
		r->out = saved;
		assign(r, sc, n->names, 1, sb_take(r, &buf), n->line);
		break;
	}
	case S_MACRO: {
		struct val m;
		m.k = V_MACRO;
		m.u.m = n;
		dict_set(r, sc->vars, n->s, strlen(n->s), m);
		break;
	}
	case S_BREAK:
		r->brk = 1;
		break;
	case S_CONTINUE:
		r->cont = 1;
		break;
	default:
		failf(&r->f, "line %d: expression used as a statement", n->line);
	}
}

static void
exec_body(struct rt *r, struct scope *sc, struct node **body, int n)
{
	for (int i = 0; i < n && !r->brk && !r->cont; i++)
		exec_stmt(r, sc, body[i]);
}

int
tmpl_render(const struct tmpl *t, const struct tmpl_msg *msgs, int n, const struct tmpl_opts *o,
	    char **out, size_t *outlen, char *err, size_t errlen)
{
	struct rt *r = calloc(1, sizeof(*r));
	struct outbuf buf = { NULL, 0, 0, 1 };
	struct scope g;
	int rc;

	*out = NULL;
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r->f.err = err;
	r->f.errlen = errlen;
	r->out = &buf;
	r->now = o && o->now ? o->now : time(NULL);
	if (setjmp(r->f.jb)) {
		rc = r->f.raised ? TMPL_ERR_RAISED : -1;
		free(buf.p);
		ar_free(&r->ar);
		free(r);
		return rc;
	}
	g.parent = NULL;
	g.vars = dict_new(r);
	r->globals = &g;
	{
		struct jlist *l = list_new(r, n + 1);
		for (int i = 0; i < n; i++) {
			struct jdict *m = dict_new(r);
			dict_set(r, m, "role", 4, mkcstr(r, msgs[i].role ? msgs[i].role : ""));
			dict_set(r, m, "content", 7, mkcstr(r, msgs[i].content ? msgs[i].content : ""));
			list_push(r, l, mkdict(m, V_DICT));
		}
		dict_set(r, g.vars, "messages", 8, mklist(l));
		dict_set(r, g.vars, "add_generation_prompt", 21, mkbool(o && o->add_generation_prompt));
		dict_set(r, g.vars, "bos_token", 9, mkcstr(r, o && o->bos_token ? o->bos_token : ""));
		dict_set(r, g.vars, "eos_token", 9, mkcstr(r, o && o->eos_token ? o->eos_token : ""));
	}
	sb_put(r, &buf, "", 0);
	exec_body(r, &g, t->body, t->nbody);
	*out = buf.p;
	*outlen = buf.n;
	ar_free(&r->ar);
	free(r);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Built-in templates, for models that ship none.                       */

static const struct {
	const char *name;
	const char *src;
} builtins[] = {
	{ "chatml",
	  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
	  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}" },
	{ "llama2",
	  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
	  "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
	  "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
	  "{% if loop.index0 == 0 and system_message != false %}"
	  "{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}"
	  "{% else %}{% set content = message['content'] %}{% endif %}"
	  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content | trim + ' [/INST]' }}"
	  "{% elif message['role'] == 'assistant' %}{{ ' ' + content | trim + ' ' + eos_token }}{% endif %}{% endfor %}" },
	{ "llama3",
	  "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
	  "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
	  "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}" },
	{ "phi3",
	  "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
	  "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}" },
	{ "zephyr",
	  "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
	  "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}" },
	{ "gemma",
	  "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\n\n' %}"
	  "{% set msgs = messages[1:] %}{% else %}{% set first = '' %}{% set msgs = messages %}{% endif %}"
	  "{% for message in msgs %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
	  "{{ '<start_of_turn>' + role + '\n' + (first if loop.first else '') + message['content'] | trim + "
	  "'<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}" },
};

const char tmpl_builtin_names[] = "chatml\0llama2\0llama3\0phi3\0zephyr\0gemma\0";

const char *
tmpl_builtin(const char *name)
{
	for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
		if (!strcmp(builtins[i].name, name))
			return builtins[i].src;
	return NULL;
}

const char *
tmpl_builtin_guess(const char *arch, const char *src)
{
	if (src) {
		if (strstr(src, "<|im_start|>")) return "chatml";
		if (strstr(src, "<|start_header_id|>")) return "llama3";
		if (strstr(src, "<start_of_turn>")) return "gemma";
		if (strstr(src, "<|assistant|>") && strstr(src, "<|end|>")) return "phi3";
		if (strstr(src, "[INST]")) return "llama2";
	}
	if (arch && !strcmp(arch, "qwen2")) return "chatml";
	if (arch && !strcmp(arch, "phi3")) return "phi3";
	if (arch && !strcmp(arch, "gemma")) return "gemma";
	return "chatml";
}
