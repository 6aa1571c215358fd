/* tmpl-parse.c -- chat templates: tokens to a tree of statements and expressions. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llm/tmpl-impl.h"

struct parser {
	const struct token *t;
	size_t i;
	struct arena *ar;
	struct fail *fail;
	int nest;      /* parse_expr, parse_not, parse_unary, parse_stmt frames */
	int loops;     /* for bodies around the statement being parsed */
};

/* The parser recurses on nesting: (((x))), - - x, not not x, {% if %}
 * inside {% if %}.  Each recursion passes through one of the four functions
 * above, which count themselves here, so that a hostile template cannot
 * overflow the C stack.  (A level of parentheses is about 12 frames, 1.3 KiB
 * with a call's parse_args, and counts 3; a statement about 800 bytes: the
 * limit keeps the parser under about 250 KiB of stack.) */
static void
nest_enter(struct parser *P)
{
	if (++P->nest > TMPL_MAX_NEST)
		tmpl_fail(P->fail, "line %d: template nested too deeply (more than %d levels)", P->t[P->i].line,
		    TMPL_MAX_NEST);
}

static struct node *
mk(struct parser *P, enum nk k)
{
	struct node *n = tmpl_alloc(P->ar, P->fail, sizeof(*n));
	memset(n, 0, sizeof(*n));
	n->k = k;
	n->line = P->t[P->i].line;
	return n;
}

static const struct token *
cur(struct parser *P)
{
	return &P->t[P->i];
}

static int
is_op(struct parser *P, const char *op)
{
	const struct token *t = cur(P);
	return t->t == T_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0;
}

static int
is_name(struct parser *P, const char *name)
{
	const struct token *t = cur(P);
	return t->t == T_NAME && t->n == strlen(name) && memcmp(t->s, name, t->n) == 0;
}

static void
expect_op(struct parser *P, const char *op)
{
	if (!is_op(P, op))
		tmpl_fail(P->fail, "line %d: expected '%s'", cur(P)->line, op);
	P->i++;
}

static const char *
take_name(struct parser *P)
{
	const struct token *t = cur(P);
	char *s;
	if (t->t != T_NAME)
		tmpl_fail(P->fail, "line %d: expected a name", t->line);
	s = tmpl_alloc(P->ar, P->fail, t->n + 1);
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
		struct node **nv = tmpl_alloc(P->ar, P->fail, cap * sizeof(*nv));
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
				tmpl_fail(P->fail, "line %d: too many keyword arguments", cur(P)->line);
			names[nn++] = take_name(P);
			P->i++;
			nvec_push(P, &kw, parse_expr(P));
		} else {
			if (kw.n)
				tmpl_fail(P->fail, "line %d: positional argument after keyword argument", cur(P)->line);
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
	call->names = tmpl_alloc(P->ar, P->fail, (nn ? nn : 1) * sizeof(*call->names));
	memcpy(call->names, names, nn * sizeof(*names));
	call->nnames = nn;
}

static struct node *
parse_primary(struct parser *P)
{
	const struct token *t = cur(P);
	struct node *n;

	switch (t->t) {
	case T_STRING:
		n = mk(P, E_LIT);
		n->lit = tmpl_val_str_arena(P->ar, P->fail, t->s, t->n);
		P->i++;
		/* Adjacent string literals concatenate, as in Python. */
		while (cur(P)->t == T_STRING) {
			struct jstr *a = n->lit.u.s;
			const struct token *u = cur(P);
			char *tmp = tmpl_alloc(P->ar, P->fail, a->len + u->n + 1);
			memcpy(tmp, a->p, a->len);
			memcpy(tmp + a->len, u->s, u->n);
			n->lit = tmpl_val_str_arena(P->ar, P->fail, tmp, a->len + u->n);
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
				n = mk(P, E_LIST);
				n->tuple = 1;
				return n;
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
				e->tuple = 1;
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
	tmpl_fail(P->fail, "line %d: unexpected %s", t->line,
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
						tmpl_fail(P->fail, "line %d: bad slice", cur(P)->line);
					P->i++;
					continue;
				}
				idx[colons] = parse_expr(P);
			}
			expect_op(P, "]");
			struct node *a = mk(P, colons ? E_SLICE : E_ITEM);
			a->a = n;
			if (colons) {
				a->kids = tmpl_alloc(P->ar, P->fail, 3 * sizeof(*a->kids));
				memcpy(a->kids, idx, sizeof(idx));
				a->nkids = 3;
			} else {
				if (!idx[0])
					tmpl_fail(P->fail, "line %d: empty subscript", cur(P)->line);
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
	const struct token *t = cur(P);
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
	nest_enter(P);
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
	P->nest--;
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

/* A comparison; a chain of them (a < b < c) is one E_CMP node, so that
 * each operand is evaluated once, as in Python. */
static struct node *
parse_compare(struct parser *P)
{
	struct node *n = parse_math1(P);
	struct nvec opnds = { 0 };
	const char *ops[64];
	int nops = 0;

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
			break;
		if (nops == 64)
			tmpl_fail(P->fail, "line %d: too many chained comparisons", cur(P)->line);
		P->i++;
		if (!nops)
			nvec_push(P, &opnds, n);
		ops[nops++] = op;
		nvec_push(P, &opnds, parse_math1(P));
	}
	if (nops == 0)
		return n;
	if (nops == 1)
		return bin(P, ops[0], opnds.v[0], opnds.v[1]);
	n = mk(P, E_CMP);
	n->kids = opnds.v;
	n->nkids = opnds.n;
	n->names = tmpl_alloc(P->ar, P->fail, nops * sizeof(*n->names));
	memcpy(n->names, ops, nops * sizeof(*ops));
	n->nnames = nops;
	return n;
}

static struct node *
parse_not(struct parser *P)
{
	struct node *n;
	nest_enter(P);
	if (is_name(P, "not")) {
		n = mk(P, E_NOT);
		P->i++;
		n->a = parse_not(P);
	} else {
		n = parse_compare(P);
	}
	P->nest--;
	return n;
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
	struct node *n;
	nest_enter(P);
	n = parse_or(P);
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
	P->nest--;
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
	e->tuple = 1;
	return e;
}

static void
expect_block_end(struct parser *P)
{
	if (cur(P)->t != T_BLOCK_END)
		tmpl_fail(P->fail, "line %d: expected end of tag", cur(P)->line);
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
		const struct token *t = &P->t[P->i + 1];
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
			tmpl_fail(P->fail, "line %d: too many targets", cur(P)->line);
		names[k++] = take_name(P);
		if (!is_op(P, ","))
			break;
		P->i++;
	}
	if (paren)
		expect_op(P, ")");
	const char **v = tmpl_alloc(P->ar, P->fail, k * sizeof(*v));
	memcpy(v, names, k * sizeof(*v));
	*n = k;
	return v;
}

static struct node *
parse_stmt_at(struct parser *P)
{
	const struct token *t = cur(P);
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
			tmpl_fail(P->fail, "line %d: expected }}", cur(P)->line);
		P->i++;
		return n;
	}
	if (t->t != T_BLOCK_BEGIN)
		tmpl_fail(P->fail, "line %d: unexpected token", line);
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
			tmpl_fail(P->fail, "line %d: expected 'in' in for", cur(P)->line);
		P->i++;
		n->a = parse_tuple(P, 0);
		if (is_name(P, "if")) {
			P->i++;
			n->b = parse_expr(P);
		}
		if (is_name(P, "recursive"))
			tmpl_fail(P->fail, "line %d: recursive loops are not supported", line);
		expect_block_end(P);
		P->loops++;
		parse_body(P, &body, ends);
		P->loops--;
		P->i++;
		if (is_name(P, "else")) {   /* runs when the loop ran no iteration: outside it */
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
				tmpl_fail(P->fail, "line %d: block set takes one name", line);
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
				tmpl_fail(P->fail, "line %d: too many macro parameters", line);
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
		/* A macro's body runs where it is called: a loop around the
		 * definition is not around the body. */
		int loops = P->loops;
		P->loops = 0;
		parse_body(P, &body, endmacro);
		P->loops = loops;
		P->i += 2;
		if (cur(P)->t == T_NAME)
			P->i++;   /* {% endmacro name %} */
		expect_block_end(P);
		n->names = tmpl_alloc(P->ar, P->fail, (np ? np : 1) * sizeof(*n->names));
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
		if (!P->loops)   /* at run time it would cut the output short */
			tmpl_fail(P->fail, "line %d: '%s' outside loop", line, n->k == S_BREAK ? "break" : "continue");
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
		tmpl_fail(P->fail, "line %d: unknown or misplaced tag '%.*s'", line, (int)cur(P)->n, cur(P)->s);
	tmpl_fail(P->fail, "line %d: expected a tag name", line);
	return NULL;
}

static struct node *
parse_stmt(struct parser *P)
{
	struct node *n;
	nest_enter(P);
	n = parse_stmt_at(P);
	P->nest--;
	return n;
}

static void
parse_body(struct parser *P, struct nvec *out, const char *const *end)
{
	for (;;) {
		if (cur(P)->t == T_EOF) {
			if (end) {
				/* The closing tag: endif, not the elif or else also awaited. */
				const char *const *e = end;
				while (e[1] && strncmp(*e, "end", 3) != 0)
					e++;
				tmpl_fail(P->fail, "line %d: missing {%% %s %%}", cur(P)->line, *e);
			}
			return;
		}
		if (end && at_block_name(P, end))
			return;
		nvec_push(P, out, parse_stmt(P));
	}
}

void
tmpl_parse(const struct token *toks, struct arena *ar, struct fail *f, struct node ***body, int *nbody)
{
	struct parser P = { toks, 0, ar, f, 0, 0 };
	struct nvec v = { 0 };

	parse_body(&P, &v, NULL);
	*body = v.v;
	*nbody = v.n;
}
