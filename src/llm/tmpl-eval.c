/* tmpl-eval.c -- chat templates: walks the tree, evaluating expressions and running statements. */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llm/tmpl-impl.h"

/* --- environment --- */

static struct val *
lookup(struct rt *r, struct scope *sc, const char *name)
{
	for (; sc; sc = sc->parent) {
		struct val *v = tmpl_val_dict_find(r, sc->vars, name, strlen(name));
		if (v)
			return v;
	}
	return NULL;
}

static struct val eval(struct rt *r, struct scope *sc, const struct node *n);
static void nest_enter(struct rt *r, int line);

void
tmpl_eval_charge(struct rt *r, size_t n)
{
	if (n > (size_t)TMPL_MAX_STEPS || (r->steps += (long)n) > TMPL_MAX_STEPS)
		tmpl_fail(&r->f, "template runs too long (more than %ld steps)", TMPL_MAX_STEPS);
}

static void
step(struct rt *r)
{
	tmpl_eval_charge(r, 1);
}

static void
eval_args(struct rt *r, struct scope *sc, const struct node *call, struct args *a)
{
	if (call->nkids > 16 || call->nkids2 > 16)
		tmpl_fail(&r->f, "line %d: too many arguments", call->line);
	a->npos = call->nkids;
	for (int i = 0; i < call->nkids; i++)
		a->pos[i] = eval(r, sc, call->kids[i]);
	a->nkw = call->nkids2;
	for (int i = 0; i < call->nkids2; i++) {
		a->kwn[i] = call->names[i];
		a->kw[i] = eval(r, sc, call->kids2[i]);
	}
}

static struct val call_macro(struct rt *r, const struct node *m, const struct args *a, int line);

/* --- operators --- */

static int
contains(struct rt *r, struct val hay, struct val needle, int line)
{
	switch (hay.k) {
	case V_STR:
		if (needle.k != V_STR)
			tmpl_fail(&r->f, "line %d: 'in <string>' needs a string on the left", line);
		tmpl_eval_charge(r, hay.u.s->len / TMPL_BYTES_PER_STEP);
		return memmem(hay.u.s->p, hay.u.s->len, needle.u.s->p, needle.u.s->len) != NULL;
	case V_LIST:
		tmpl_eval_charge(r, hay.u.l->n);
		for (size_t i = 0; i < hay.u.l->n; i++)
			if (tmpl_val_equal(r, hay.u.l->v[i], needle))
				return 1;
		return 0;
	case V_DICT: case V_NS:
		return tmpl_val_dict_find_key(r, hay.u.d, needle, line) != NULL;
	case V_UNDEF:
		return 0;
	default:
		tmpl_fail(&r->f, "line %d: 'in' needs a container, got %s", line, tmpl_val_type_name(hay));
	}
	return 0;
}

/* S * N as Python repeats a string: "" when N <= 0 or S is empty. */
static struct val
repeat(struct rt *r, struct val s, int64_t n, int line)
{
	struct outbuf o = { 0 };
	size_t total;

	tmpl_val_put(r, &o, "", 0);
	if (n <= 0 || s.u.s->len == 0)
		return tmpl_val_take(r, &o);
	if (__builtin_mul_overflow((uint64_t)n, s.u.s->len, &total) || total > TMPL_MAX_OUTPUT)
		tmpl_fail(&r->f, "line %d: string repetition too large", line);
	for (int64_t i = 0; i < n; i++)
		tmpl_val_put(r, &o, s.u.s->p, s.u.s->len);
	return tmpl_val_take(r, &o);
}

/* X ** Y for integers, exactly (pow() in double rounds past 2^53). */
static struct val
int_pow(struct rt *r, int64_t x, int64_t y, int line)
{
	int64_t z = 1;

	for (; y > 0; y >>= 1) {
		if ((y & 1) && __builtin_mul_overflow(z, x, &z))
			tmpl_fail(&r->f, "line %d: integer overflow", line);
		if (y > 1 && __builtin_mul_overflow(x, x, &x))
			tmpl_fail(&r->f, "line %d: integer overflow", line);
	}
	return tmpl_val_int(z);
}

static struct val
arith(struct rt *r, const char *op, struct val a, struct val b, int line)
{
	if (!strcmp(op, "~")) {
		struct outbuf o = { 0 };
		struct val x = tmpl_val_to_str(r, a), y = tmpl_val_to_str(r, b);
		tmpl_val_put(r, &o, x.u.s->p, x.u.s->len);
		tmpl_val_put(r, &o, y.u.s->p, y.u.s->len);
		return tmpl_val_take(r, &o);
	}
	if (!strcmp(op, "+")) {
		if (a.k == V_STR && b.k == V_STR) {
			struct outbuf o = { 0 };
			tmpl_val_put(r, &o, a.u.s->p, a.u.s->len);
			tmpl_val_put(r, &o, b.u.s->p, b.u.s->len);
			return tmpl_val_take(r, &o);
		}
		/* A list to a list, a tuple to a tuple: Python adds no other pair
		 * (a range, a view, a list and a tuple are a TypeError there). */
		if (a.k == V_LIST && b.k == V_LIST && a.u.l->kind == b.u.l->kind && a.u.l->kind <= L_TUPLE) {
			struct jlist *l = tmpl_val_list_new(r, a.u.l->n + b.u.l->n + 1);
			for (size_t i = 0; i < a.u.l->n; i++)
				tmpl_val_list_push(r, l, a.u.l->v[i]);
			for (size_t i = 0; i < b.u.l->n; i++)
				tmpl_val_list_push(r, l, b.u.l->v[i]);
			l->kind = a.u.l->kind;
			return tmpl_val_list(l);
		}
	}
	if (!strcmp(op, "*") && ((a.k == V_STR && b.k == V_INT) || (a.k == V_INT && b.k == V_STR))) {
		return repeat(r, a.k == V_STR ? a : b, a.k == V_INT ? a.u.i : b.u.i, line);
	}
	if (!tmpl_val_is_num(a) || !tmpl_val_is_num(b))
		tmpl_fail(&r->f, "line %d: unsupported operand types for %s: %s and %s", line, op, tmpl_val_type_name(a),
		    tmpl_val_type_name(b));
	if (a.k != V_FLOAT && b.k != V_FLOAT && strcmp(op, "/") != 0 && strcmp(op, "**") != 0) {
		int64_t x = a.u.i, y = b.u.i, z;
		switch (op[0]) {
		case '+': if (__builtin_add_overflow(x, y, &z)) goto ovf; return tmpl_val_int(z);
		case '-': if (__builtin_sub_overflow(x, y, &z)) goto ovf; return tmpl_val_int(z);
		case '*': if (__builtin_mul_overflow(x, y, &z)) goto ovf; return tmpl_val_int(z);
		case '/':   /* floor division "//" */
		case '%':
			if (y == 0)
				tmpl_fail(&r->f, "line %d: division by zero", line);
			if (x == INT64_MIN && y == -1)
				goto ovf;
			z = op[0] == '%' ? x % y : x / y;
			if (op[0] == '%') {
				if (z != 0 && ((z < 0) != (y < 0)))
					z += y;
			} else if ((x % y != 0) && ((x < 0) != (y < 0))) {
				z--;
			}
			return tmpl_val_int(z);
		}
	}
	{
		double x = tmpl_val_num(a), y = tmpl_val_num(b);
		switch (op[0]) {
		case '+': return tmpl_val_float(x + y);
		case '-': return tmpl_val_float(x - y);
		case '*':
			if (op[1] == '*') {
				if (a.k != V_FLOAT && b.k != V_FLOAT && y >= 0)
					return int_pow(r, a.u.i, b.u.i, line);
				return tmpl_val_float(pow(x, y));
			}
			return tmpl_val_float(x * y);
		case '/':
			if (y == 0)
				tmpl_fail(&r->f, "line %d: division by zero", line);
			return op[1] == '/' ? tmpl_val_float(floor(x / y)) : tmpl_val_float(x / y);
		case '%':
			if (y == 0)
				tmpl_fail(&r->f, "line %d: division by zero", line);
			return tmpl_val_float(x - floor(x / y) * y);
		}
	}
ovf:
	tmpl_fail(&r->f, "line %d: integer overflow", line);
	return UNDEF;
}

/* A slice bound as Python's slice.indices(N) gives it: DEF when X is
 * None, else counted from the end when negative, then clamped to 0 .. N
 * (-1 .. N-1 when STEP is negative). */
static int64_t
slice_bound(struct rt *r, struct val x, int64_t n, int64_t step, int64_t def, int line)
{
	int64_t i;

	if (x.k == V_UNDEF || x.k == V_NONE)
		return def;
	i = tmpl_val_want_int(r, x, "slice", line);
	if (i < 0) {
		i += n;
		if (i < 0)
			i = step < 0 ? -1 : 0;
	} else if (i >= n) {
		i = step < 0 ? n - 1 : n;
	}
	return i;
}

static struct val
slice(struct rt *r, struct val obj, struct val a, struct val b, struct val c, int line)
{
	int64_t n, step = c.k == V_UNDEF || c.k == V_NONE ? 1 : tmpl_val_want_int(r, c, "slice", line), start, stop;
	struct jlist *items = NULL;

	if (obj.k == V_STR) {
		tmpl_eval_charge(r, obj.u.s->len / TMPL_BYTES_PER_STEP);
		n = (int64_t)tmpl_val_cp_count(obj.u.s);
	}
	else if (obj.k == V_LIST && obj.u.l->kind <= L_RANGE)
		n = (int64_t)obj.u.l->n;
	else   /* a dict view is not subscriptable */
		tmpl_fail(&r->f, "line %d: cannot slice a %s", line, tmpl_val_type_name(obj));
	if (step == 0)
		tmpl_fail(&r->f, "line %d: slice step cannot be zero", line);
	start = slice_bound(r, a, n, step, step > 0 ? 0 : n - 1, line);
	stop = slice_bound(r, b, n, step, step > 0 ? n : -1, line);
	if (obj.k == V_STR)
		items = tmpl_val_iter(r, obj, line);
	else
		items = obj.u.l;
	/* Count the items first, as Python does: stepping an index past the
	 * end could overflow (a step of 2^63 - 1). */
	uint64_t ustep = step > 0 ? (uint64_t)step : -(uint64_t)step, count = 0;
	if (step > 0 && start < stop)
		count = (uint64_t)(stop - start - 1) / ustep + 1;
	else if (step < 0 && stop < start)
		count = (uint64_t)(start - stop - 1) / ustep + 1;
	struct jlist *o = tmpl_val_list_new(r, count + 1);
	for (uint64_t k = 0; k < count; k++)
		tmpl_val_list_push(r, o, items->v[step > 0 ? (uint64_t)start + k * ustep : (uint64_t)start - k * ustep]);
	if (obj.k == V_LIST)
		o->kind = obj.u.l->kind;   /* a tuple's slice is a tuple */
	if (o->kind == L_RANGE) {
		/* A range's slice is the range of those items, with the bounds
		 * Python's compute_slice gives: range(3)[5:] is range(3, 3). */
		const struct jlist *l = obj.u.l;
		__int128 s0 = (__int128)l->start + (__int128)start * l->step;
		__int128 s1 = (__int128)l->start + (__int128)stop * l->step;
		__int128 st = (__int128)l->step * step;
		if (s0 < INT64_MIN || s0 > INT64_MAX || s1 < INT64_MIN || s1 > INT64_MAX || st < INT64_MIN ||
		    st > INT64_MAX)
			o->kind = L_LIST;   /* bounds past 64 bits: the items, as a list */
		else {
			o->start = (int64_t)s0;
			o->stop = (int64_t)s1;
			o->step = (int64_t)st;
		}
	}
	if (obj.k == V_STR) {
		struct outbuf s = { 0 };
		tmpl_val_put(r, &s, "", 0);
		for (size_t i = 0; i < o->n; i++)
			tmpl_val_put(r, &s, o->v[i].u.s->p, o->v[i].u.s->len);
		return tmpl_val_take(r, &s);
	}
	return tmpl_val_list(o);
}

/* A comparison operator OP ("==", "<", "in", ...) applied to A and B. */
static int
compare_op(struct rt *r, const char *op, struct val a, struct val b, int line)
{
	if (!strcmp(op, "==")) return tmpl_val_equal(r, a, b);
	if (!strcmp(op, "!=")) return !tmpl_val_equal(r, a, b);
	if (!strcmp(op, "<")) return tmpl_val_compare_at(r, a, b, line) < 0;
	if (!strcmp(op, "<=")) return tmpl_val_compare_at(r, a, b, line) <= 0;
	if (!strcmp(op, ">")) return tmpl_val_compare_at(r, a, b, line) > 0;
	if (!strcmp(op, ">=")) return tmpl_val_compare_at(r, a, b, line) >= 0;
	if (!strcmp(op, "in")) return contains(r, b, a, line);
	return !contains(r, b, a, line);   /* "not in" */
}

static int
is_compare_op(const char *op)
{
	static const char *const ops[] = { "==", "!=", "<", "<=", ">", ">=", "in", "not in", NULL };
	for (int i = 0; ops[i]; i++)
		if (!strcmp(op, ops[i]))
			return 1;
	return 0;
}

static struct val
eval_node(struct rt *r, struct scope *sc, const struct node *n)
{
	struct val a, b;
	struct args args;   /* one for every case: the frame is on the stack once per nesting level */

	switch (n->k) {
	case E_LIT:
		return n->lit;
	case E_NAME: {
		struct val *v = lookup(r, sc, n->s);
		const char *g;
		if (v)
			return *v;
		g = tmpl_filter_global(n->s);
		return g ? tmpl_val_func(r, g, UNDEF) : UNDEF;
	}
	case E_ATTR:
		return tmpl_val_getattr(r, eval(r, sc, n->a), n->s, n->line);
	case E_ITEM:
		a = eval(r, sc, n->a);
		b = eval(r, sc, n->b);
		if ((a.k == V_DICT || a.k == V_NS) && b.k == V_STR) {
			struct val *v = tmpl_val_dict_find(r, a.u.d, b.u.s->p, b.u.s->len);
			return v ? *v : UNDEF;
		}
		return tmpl_val_getitem(r, a, b, n->line);
	case E_SLICE:
		return slice(r, eval(r, sc, n->a), n->kids[0] ? eval(r, sc, n->kids[0]) : UNDEF,
		    n->kids[1] ? eval(r, sc, n->kids[1]) : UNDEF, n->kids[2] ? eval(r, sc, n->kids[2]) : UNDEF, n->line);
	case E_CALL: {
		if (n->a->k == E_ATTR) {
			/* obj.name(...): OBJ is kept to say why a method that would
			 * change it is undefined.  (The E_ATTR frame, as eval's.) */
			nest_enter(r, n->a->line);
			b = eval(r, sc, n->a->a);
			a = tmpl_val_getattr(r, b, n->a->s, n->a->line);
			r->nest--;
		} else {
			a = eval(r, sc, n->a);
			b = UNDEF;
		}
		eval_args(r, sc, n, &args);
		/* Python evaluates the arguments first, then the call fails. */
		if (a.k == V_UNDEF && n->a->k == E_ATTR && tmpl_filter_unsafe(b, n->a->s))
			tmpl_fail(&r->f, "line %d: access to attribute '%s' of '%s' object is unsafe "
			    "(transformers renders chat templates in a sandbox that refuses methods changing a list or dict)",
			    n->line, n->a->s, tmpl_val_type_name(b));
		if (a.k == V_MACRO)
			return call_macro(r, a.u.m, &args, n->line);
		if (a.k == V_FUNC)
			return tmpl_filter_call(r, a.u.fn, &args, n->line);
		if (a.k == V_UNDEF && n->a->k == E_ATTR)
			tmpl_fail(&r->f, "line %d: call of an undefined function: a %s has no method '%s'", n->line,
			    tmpl_val_type_name(b), n->a->s);
		if (a.k == V_UNDEF)
			tmpl_fail(&r->f, "line %d: call of an undefined function%s%s", n->line,
			    n->a->k == E_NAME ? " " : "", n->a->k == E_NAME ? n->a->s : "");
		tmpl_fail(&r->f, "line %d: a %s is not callable", n->line, tmpl_val_type_name(a));
		break;
	}
	case E_FILTER: {
		a = eval(r, sc, n->a);
		eval_args(r, sc, n, &args);
		return tmpl_filter_apply(r, sc, n->s, a, &args, n->line);
	}
	case E_TEST: {
		a = eval(r, sc, n->a);
		eval_args(r, sc, n, &args);
		return tmpl_val_bool(tmpl_filter_test(r, n->s, a, &args, n->line) != n->neg);
	}
	case E_BIN:
		a = eval(r, sc, n->a);
		b = eval(r, sc, n->b);
		if (is_compare_op(n->s))
			return tmpl_val_bool(compare_op(r, n->s, a, b, n->line));
		return arith(r, n->s, a, b, n->line);
	case E_CMP:   /* a < b < c: (a < b) and (b < c), b evaluated once */
		a = eval(r, sc, n->kids[0]);
		for (int i = 0; i < n->nnames; i++) {
			b = eval(r, sc, n->kids[i + 1]);
			if (!compare_op(r, n->names[i], a, b, n->line))
				return tmpl_val_bool(0);
			a = b;
		}
		return tmpl_val_bool(1);
	case E_NEG:
		a = eval(r, sc, n->a);
		if (a.k == V_INT || a.k == V_BOOL) {
			if (a.u.i == INT64_MIN)
				tmpl_fail(&r->f, "line %d: integer overflow", n->line);
			return tmpl_val_int(-a.u.i);
		}
		if (a.k == V_FLOAT)
			return tmpl_val_float(-a.u.f);
		tmpl_fail(&r->f, "line %d: bad operand for unary -: %s", n->line, tmpl_val_type_name(a));
		break;
	case E_NOT:
		return tmpl_val_bool(!tmpl_val_truthy(eval(r, sc, n->a)));
	case E_AND:
		a = eval(r, sc, n->a);
		return tmpl_val_truthy(a) ? eval(r, sc, n->b) : a;
	case E_OR:
		a = eval(r, sc, n->a);
		return tmpl_val_truthy(a) ? a : eval(r, sc, n->b);
	case E_COND:
		if (tmpl_val_truthy(eval(r, sc, n->a)))
			return eval(r, sc, n->b);
		return n->c ? eval(r, sc, n->c) : UNDEF;
	case E_LIST: {
		struct jlist *l = tmpl_val_list_new(r, n->nkids + 1);
		for (int i = 0; i < n->nkids; i++)
			tmpl_val_list_push(r, l, eval(r, sc, n->kids[i]));
		l->kind = n->tuple ? L_TUPLE : L_LIST;
		return tmpl_val_list(l);
	}
	case E_DICT: {
		struct jdict *d = tmpl_val_dict_new(r);
		for (int i = 0; i < n->nkids; i++) {
			struct val k = eval(r, sc, n->kids[i]);
			tmpl_val_dict_set_key(r, d, k, eval(r, sc, n->kids2[i]), n->line);
		}
		return tmpl_val_dict(d, V_DICT);
	}
	default:
		tmpl_fail(&r->f, "line %d: statement used as an expression", n->line);
	}
	return UNDEF;
}

/* Every eval and exec_stmt frame counts against TMPL_MAX_NEST: the tree of
 * "1+1+...+1" is as deep as it is long, and macros stack trees on each
 * other.  An error unwinds the whole render, so the count needs no undoing
 * then.  (gcc -fstack-usage, x86-64 -O2: eval_node 880 bytes, 1.5 KiB with
 * ASan; a statement level about 200 bytes, 400 with ASan.  TMPL_MAX_NEST
 * levels take under 250 KiB, under 500 KiB with ASan: well within the
 * 8 MiB main stack and the default stack (glibc: 2 to 8 MiB) of the threads
 * that render, in ui-gen.c and serve-engine.c.) */
static void
nest_enter(struct rt *r, int line)
{
	step(r);
	if (++r->nest > TMPL_MAX_NEST)
		tmpl_fail(&r->f, "line %d: template nested too deeply (more than %d levels)", line, TMPL_MAX_NEST);
}

static struct val
eval(struct rt *r, struct scope *sc, const struct node *n)
{
	struct val v;

	nest_enter(r, n->line);
	v = eval_node(r, sc, n);
	r->nest--;
	return v;
}

static void
assign(struct rt *r, struct scope *sc, const char **names, int nnames, struct val v, int line)
{
	if (nnames == 1) {
		tmpl_val_dict_set(r, sc->vars, names[0], strlen(names[0]), v);
		return;
	}
	struct jlist *l = tmpl_val_iter(r, v, line);
	if ((int)l->n != nnames)
		tmpl_fail(&r->f, "line %d: cannot unpack %zu values into %d names", line, l->n, nnames);
	for (int i = 0; i < nnames; i++)
		tmpl_val_dict_set(r, sc->vars, names[i], strlen(names[i]), l->v[i]);
}

static struct val
call_macro(struct rt *r, const struct node *m, const struct args *a, int line)
{
	struct scope sc = { r->globals, tmpl_val_dict_new(r) };
	struct outbuf buf = { 0 }, *saved = r->out;
	int saved_brk = r->brk, saved_cont = r->cont;

	if (a->npos > m->nnames)
		tmpl_fail(&r->f, "line %d: macro %s takes %d arguments, %d given", line, m->s, m->nnames, a->npos);
	if (++r->depth > TMPL_MAX_DEPTH)
		tmpl_fail(&r->f, "line %d: macros nest too deep", line);
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
		tmpl_val_dict_set(r, sc.vars, m->names[i], strlen(m->names[i]), v);
	}
	r->out = &buf;
	tmpl_val_put(r, &buf, "", 0);
	tmpl_eval_body(r, &sc, m->kids, m->nkids);
	r->out = saved;
	r->brk = saved_brk;
	r->cont = saved_cont;
	r->depth--;
	return tmpl_val_take(r, &buf);
}

static void
exec_node(struct rt *r, struct scope *sc, const struct node *n)
{
	switch (n->k) {
	case S_TEXT:
		tmpl_val_put(r, r->out, n->s, n->n);
		break;
	case S_OUT: {
		struct val v = eval(r, sc, n->a);
		tmpl_val_repr(r, r->out, v, 1);
		break;
	}
	case S_IF:
		for (; n; n = n->b) {
			if (n->neg == 2 || !n->a || tmpl_val_truthy(eval(r, sc, n->a))) {
				tmpl_eval_body(r, sc, n->kids, n->nkids);
				break;
			}
		}
		break;
	case S_FOR: {
		struct val it = eval(r, sc, n->a);
		struct jlist *src = tmpl_val_iter(r, it, n->line), *items;
		struct scope inner = { sc, tmpl_val_dict_new(r) };
		/* Apply the loop filter first: loop.* counts what remains. */
		if (n->b) {
			items = tmpl_val_list_new(r, src->n + 1);
			for (size_t i = 0; i < src->n; i++) {
				assign(r, &inner, n->names, n->nnames, src->v[i], n->line);
				if (tmpl_val_truthy(eval(r, &inner, n->b)))
					tmpl_val_list_push(r, items, src->v[i]);
			}
		} else {
			items = src;
		}
		if (items->n == 0) {
			tmpl_eval_body(r, sc, n->kids2, n->nkids2);
			break;
		}
		/* One loop object and one scope dict for all iterations: nothing is
		 * allocated per iteration.  The count is fixed at the start. */
		{
			struct jdict *loop = tmpl_val_dict_new(r);
			struct val loopv = tmpl_val_dict(loop, V_DICT);
			size_t count = items->n, base;
			int64_t len = (int64_t)count;
			loop->loop = 1;   /* what gives it cycle: a flag, not a key a template could write */
			inner.vars->n = 0;   /* drop what the loop filter assigned */
			tmpl_val_dict_set(r, inner.vars, "loop", 4, loopv);
			for (int k = 0; k < n->nnames; k++)
				tmpl_val_dict_set(r, inner.vars, n->names[k], strlen(n->names[k]), UNDEF);
			base = inner.vars->n;
			static const char *const keys[] = { "index", "index0", "revindex", "revindex0", "first",
				"last", "length", "depth", "depth0", "previtem", "nextitem" };
			for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
				tmpl_val_dict_set(r, loop, keys[k], strlen(keys[k]), NONE);
			for (size_t i = 0; i < count; i++) {
				/* Jinja gives each iteration a fresh scope: what the last
				 * one set is forgotten, only loop and the targets stay
				 * (in slots 0 .. BASE-1, so no key is allocated again). */
				inner.vars->n = base;
				inner.vars->v[0] = loopv;
				/* Slots in the order of KEYS: no lookups per iteration. */
				struct val *lv = loop->v;
				lv[0] = tmpl_val_int((int64_t)i + 1);
				lv[1] = tmpl_val_int((int64_t)i);
				lv[2] = tmpl_val_int(len - (int64_t)i);
				lv[3] = tmpl_val_int(len - (int64_t)i - 1);
				lv[4] = tmpl_val_bool(i == 0);
				lv[5] = tmpl_val_bool(i + 1 == count);
				lv[6] = tmpl_val_int(len);
				lv[7] = tmpl_val_int(1);
				lv[8] = tmpl_val_int(0);
				lv[9] = i > 0 ? items->v[i - 1] : UNDEF;
				lv[10] = i + 1 < count ? items->v[i + 1] : UNDEF;
				assign(r, &inner, n->names, n->nnames, items->v[i], n->line);
				tmpl_eval_body(r, &inner, n->kids, n->nkids);
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
			struct val *ns = lookup(r, sc, n->names[0]);
			if (!ns || ns->k != V_NS)
				tmpl_fail(&r->f, "line %d: '%s' is not a namespace", n->line, n->names[0]);
			tmpl_val_dict_set(r, ns->u.d, n->s, strlen(n->s), v);
		} else {
			assign(r, sc, n->names, n->nnames, v, n->line);
		}
		break;
	}
	case S_SETBLOCK: {
		struct outbuf buf = { 0 }, *saved = r->out;
		r->out = &buf;
		tmpl_val_put(r, &buf, "", 0);
		tmpl_eval_body(r, sc, n->kids, n->nkids);
		r->out = saved;
		assign(r, sc, n->names, 1, tmpl_val_take(r, &buf), n->line);
		break;
	}
	case S_MACRO: {
		struct val m;
		m.k = V_MACRO;
		m.u.m = n;
		tmpl_val_dict_set(r, sc->vars, n->s, strlen(n->s), m);
		break;
	}
	case S_BREAK:
		r->brk = 1;
		break;
	case S_CONTINUE:
		r->cont = 1;
		break;
	default:
		tmpl_fail(&r->f, "line %d: expression used as a statement", n->line);
	}
}

static void
exec_stmt(struct rt *r, struct scope *sc, const struct node *n)
{
	nest_enter(r, n->line);
	exec_node(r, sc, n);
	r->nest--;
}

void
tmpl_eval_body(struct rt *r, struct scope *sc, struct node **body, int n)
{
	for (int i = 0; i < n && !r->brk && !r->cont; i++)
		exec_stmt(r, sc, body[i]);
}
