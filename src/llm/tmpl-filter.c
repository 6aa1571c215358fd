/* tmpl-filter.c -- chat templates: filters, tests, global functions and methods, by name. */
#include "config.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llm/tmpl-impl.h"

/* --- filters --- */

/* The sort filter's key and order. */
struct sort_by {
	struct rt *r;
	struct val attr;     /* a string: compare items by this attribute */
	int rev, line;
};

static int
sort_cmp(const struct sort_by *s, struct val x, struct val y)
{
	tmpl_eval_charge(s->r, 1);
	if (s->attr.k == V_STR) {
		x = tmpl_val_getattr(s->r, x, s->attr.u.s->p, s->line);
		y = tmpl_val_getattr(s->r, y, s->attr.u.s->p, s->line);
	}
	int c = tmpl_val_compare(s->r, x, y);
	return s->rev ? -c : c;
}

/* Stable merge sort of V[0..N) using TMP[0..N), as Python's sorted(): equal
 * items keep their order, and at most n log n comparisons are charged. */
static void
sort_merge(const struct sort_by *s, struct val *v, struct val *tmp, size_t n)
{
	size_t h = n / 2, i = 0, j = h, k = 0;

	if (n < 2)
		return;
	sort_merge(s, v, tmp, h);
	sort_merge(s, v + h, tmp, n - h);
	while (i < h && j < n)
		tmp[k++] = sort_cmp(s, v[j], v[i]) < 0 ? v[j++] : v[i++];
	while (i < h)
		tmp[k++] = v[i++];
	memcpy(v, tmp, k * sizeof(*v));   /* v[j..n) is in place already */
}

/* Filters, by name.  SC is the caller's scope (unused by the filters here). */
struct val
tmpl_filter_apply(struct rt *r, struct scope *sc, const char *name, struct val v, const struct args *a, int line)
{
	if (!strcmp(name, "trim") || !strcmp(name, "strip")) {
		struct val c = tmpl_val_arg(a, 0, "chars", NONE);
		return tmpl_val_strip(r, tmpl_val_to_str(r, v), c.k == V_STR ? c.u.s : NULL, 1, 1);
	}
	if (!strcmp(name, "tojson")) {
		struct outbuf b = { 0 };
		struct val ind = tmpl_val_arg(a, 0, "indent", NONE);
		struct val sk = tmpl_val_arg(a, -1, "sort_keys", tmpl_val_bool(0));
		const int64_t want = ind.k == V_NONE ? -1 : tmpl_val_want_int(r, ind, "tojson indent", line);
		/* As Python's json: an indent of 0 or less puts newlines alone. */
		int indent = ind.k == V_NONE ? -1 : want < 0 ? 0 : (int)want;
		if (want > 1000)
			tmpl_fail(&r->f, "line %d: tojson indent %lld is too large (at most 1000)", line, (long long)want);
		tmpl_val_to_json(r, &b, v, indent, 0, tmpl_val_truthy(sk));
		if (!b.p)
			tmpl_val_put(r, &b, "", 0);
		return tmpl_val_take(r, &b);
	}
	if (!strcmp(name, "length") || !strcmp(name, "count"))
		return tmpl_val_int(tmpl_val_length(r, v, line));
	if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "capitalize") || !strcmp(name, "title"))
		return tmpl_val_case(r, tmpl_val_to_str(r, v), name[0] == 'l' ? 0 : name[0] == 'u' ? 1 : name[0] == 'c' ? 2 : 3);
	if (!strcmp(name, "default") || !strcmp(name, "d")) {
		struct val def = tmpl_val_arg(a, 0, "default_value", tmpl_val_cstr(r, ""));
		int boolean = tmpl_val_truthy(tmpl_val_arg(a, 1, "boolean", tmpl_val_bool(0)));
		if (v.k == V_UNDEF || (boolean && !tmpl_val_truthy(v)))
			return def;
		return v;
	}
	if (!strcmp(name, "string"))
		return tmpl_val_to_str(r, v);
	if (!strcmp(name, "safe") || !strcmp(name, "e") || !strcmp(name, "escape"))
		return v;
	if (!strcmp(name, "list"))
		return tmpl_val_list(tmpl_val_iter(r, v, line));
	if (!strcmp(name, "join")) {
		struct val sep = tmpl_val_arg(a, 0, "d", tmpl_val_cstr(r, ""));
		struct val attr = tmpl_val_arg(a, 1, "attribute", UNDEF);
		struct jlist *l = tmpl_val_iter(r, v, line);
		struct outbuf b = { 0 };
		tmpl_val_put(r, &b, "", 0);
		for (size_t i = 0; i < l->n; i++) {
			struct val it = l->v[i];
			if (i)
				tmpl_val_put(r, &b, tmpl_val_want_str(r, sep, "join", line)->p, sep.u.s->len);
			if (attr.k == V_STR)
				it = tmpl_val_getattr(r, it, attr.u.s->p, line);
			struct val s = tmpl_val_to_str(r, it);
			tmpl_val_put(r, &b, s.u.s->p, s.u.s->len);
		}
		return tmpl_val_take(r, &b);
	}
	if (!strcmp(name, "replace")) {
		struct val s = tmpl_val_to_str(r, v);
		int64_t cnt = -1;
		struct val c = tmpl_val_arg(a, 2, "count", NONE);
		if (c.k != V_NONE)
			cnt = tmpl_val_want_int(r, c, "replace", line);
		return tmpl_val_replace(r, s, tmpl_val_want_str(r, tmpl_val_arg(a, 0, "old", UNDEF), "replace", line),
		    tmpl_val_want_str(r, tmpl_val_to_str(r, tmpl_val_arg(a, 1, "new", UNDEF)), "replace", line), cnt);
	}
	if (!strcmp(name, "first") || !strcmp(name, "last")) {
		struct jlist *l = tmpl_val_iter(r, v, line);
		if (l->n == 0)
			return UNDEF;
		return name[0] == 'f' ? l->v[0] : l->v[l->n - 1];
	}
	if (!strcmp(name, "items")) {
		struct jlist *l;
		if (v.k == V_UNDEF)
			return tmpl_val_list(tmpl_val_list_new(r, 1));
		if (v.k != V_DICT && v.k != V_NS)
			tmpl_fail(&r->f, "line %d: items expects a mapping", line);
		l = tmpl_val_list_new(r, v.u.d->n + 1);
		for (size_t i = 0; i < v.u.d->n; i++) {
			struct jlist *pair = tmpl_val_list_new(r, 2);
			struct val k;
			k.k = V_STR;
			k.u.s = v.u.d->k[i];
			tmpl_val_list_push(r, pair, k);
			tmpl_val_list_push(r, pair, v.u.d->v[i]);
			tmpl_val_list_push(r, l, tmpl_val_list(pair));
		}
		return tmpl_val_list(l);
	}
	if (!strcmp(name, "indent")) {
		struct val w = tmpl_val_arg(a, 0, "width", tmpl_val_int(4));
		int first = tmpl_val_truthy(tmpl_val_arg(a, 1, "first", tmpl_val_bool(0)));
		int blank = tmpl_val_truthy(tmpl_val_arg(a, 2, "blank", tmpl_val_bool(0)));
		struct val s = tmpl_val_to_str(r, v);
		struct outbuf pad = { 0 }, b = { 0 };
		const char *p = s.u.s->p, *end = p + s.u.s->len;
		int lineno = 0;
		if (w.k == V_STR)
			tmpl_val_put(r, &pad, w.u.s->p, w.u.s->len);
		else
			for (int64_t i = 0, n = tmpl_val_want_int(r, w, "indent", line); i < n && i < 1000; i++)
				tmpl_val_put(r, &pad, " ", 1);
		tmpl_val_put(r, &b, "", 0);
		tmpl_val_put(r, &pad, "", 0);
		while (p <= end) {
			const char *nl = memchr(p, '\n', end - p);
			const char *le = nl ? nl : end;
			int is_blank = le == p;
			if ((lineno > 0 || first) && (!is_blank || blank))
				tmpl_val_put(r, &b, pad.p, pad.n);
			tmpl_val_put(r, &b, p, le - p);
			if (!nl)
				break;
			tmpl_val_put(r, &b, "\n", 1);
			p = nl + 1;
			lineno++;
		}
		return tmpl_val_take(r, &b);
	}
	if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr") || !strcmp(name, "select") ||
	    !strcmp(name, "reject")) {
		int attr = name[strlen(name) - 4] == 'a';   /* ...attr */
		int want = name[0] == 's';
		/* Jinja skips a false value (None, empty) rather than iterating it. */
		struct jlist *l = tmpl_val_truthy(v) ? tmpl_val_iter(r, v, line) : tmpl_val_list_new(r, 1);
		struct jlist *o = tmpl_val_list_new(r, l->n + 1);
		struct val aname = attr ? tmpl_val_arg(a, 0, NULL, UNDEF) : UNDEF;
		struct val test = tmpl_val_arg(a, attr ? 1 : 0, NULL, UNDEF);
		struct args targs = { 0 };
		if (attr)
			tmpl_val_want_str(r, aname, name, line);
		for (int i = (attr ? 2 : 1); i < a->npos && targs.npos < 16; i++)
			targs.pos[targs.npos++] = a->pos[i];
		for (size_t i = 0; i < l->n; i++) {
			struct val it = l->v[i], x = it;
			int t;
			if (attr)
				x = (it.k == V_DICT || it.k == V_NS) ? tmpl_val_getattr(r, it, aname.u.s->p, line) : UNDEF;
			t = test.k == V_STR ? tmpl_filter_test(r, test.u.s->p, x, &targs, line) : tmpl_val_truthy(x);
			if (t == want)
				tmpl_val_list_push(r, o, it);
		}
		return tmpl_val_list(o);
	}
	if (!strcmp(name, "map")) {
		struct jlist *l = tmpl_val_truthy(v) ? tmpl_val_iter(r, v, line) : tmpl_val_list_new(r, 1);
		struct jlist *o = tmpl_val_list_new(r, l->n + 1);
		struct val attr = tmpl_val_arg(a, -1, "attribute", UNDEF);
		struct val def = tmpl_val_arg(a, -1, "default", UNDEF);
		for (size_t i = 0; i < l->n; i++) {
			struct val x;
			if (attr.k == V_STR) {
				x = (l->v[i].k == V_DICT || l->v[i].k == V_NS) ? tmpl_val_getattr(r, l->v[i], attr.u.s->p, line) : UNDEF;
				if (x.k == V_UNDEF && def.k != V_UNDEF)
					x = def;
			} else {
				struct args fa = { 0 };
				for (int k = 1; k < a->npos; k++)
					fa.pos[fa.npos++] = a->pos[k];
				const struct jstr *f = tmpl_val_want_str(r, tmpl_val_arg(a, 0, NULL, UNDEF), "map", line);
				x = tmpl_filter_apply(r, sc, f->p, l->v[i], &fa, line);
			}
			tmpl_val_list_push(r, o, x);
		}
		return tmpl_val_list(o);
	}
	if (!strcmp(name, "unique")) {
		struct jlist *l = tmpl_val_iter(r, v, line), *o = tmpl_val_list_new(r, l->n + 1);
		for (size_t i = 0; i < l->n; i++) {
			int seen = 0;
			tmpl_eval_charge(r, o->n);
			for (size_t k = 0; k < o->n && !seen; k++)
				seen = tmpl_val_equal(r, o->v[k], l->v[i]);
			if (!seen)
				tmpl_val_list_push(r, o, l->v[i]);
		}
		return tmpl_val_list(o);
	}
	if (!strcmp(name, "reverse")) {
		if (v.k == V_STR) {
			struct jlist *l = tmpl_val_iter(r, v, line);
			struct outbuf b = { 0 };
			tmpl_val_put(r, &b, "", 0);
			for (size_t i = l->n; i-- > 0;)
				tmpl_val_put(r, &b, l->v[i].u.s->p, l->v[i].u.s->len);
			return tmpl_val_take(r, &b);
		}
		struct jlist *l = tmpl_val_iter(r, v, line), *o = tmpl_val_list_new(r, l->n + 1);
		for (size_t i = l->n; i-- > 0;)
			tmpl_val_list_push(r, o, l->v[i]);
		return tmpl_val_list(o);
	}
	if (!strcmp(name, "sort")) {
		struct jlist *l = tmpl_val_iter(r, v, line), *o = tmpl_val_list_new(r, l->n + 1);
		struct sort_by by = { r, tmpl_val_arg(a, 2, "attribute", UNDEF),
			tmpl_val_truthy(tmpl_val_arg(a, 0, "reverse", tmpl_val_bool(0))), line };
		for (size_t i = 0; i < l->n; i++)
			tmpl_val_list_push(r, o, l->v[i]);
		sort_merge(&by, o->v, tmpl_val_alloc(r, (o->n + 1) * sizeof(struct val)), o->n);
		return tmpl_val_list(o);
	}
	if (!strcmp(name, "int")) {
		if (v.k == V_STR) {
			char *e;
			long long x = strtoll(v.u.s->p, &e, 10);
			return e != v.u.s->p ? tmpl_val_int(x) : tmpl_val_arg(a, 0, "default", tmpl_val_int(0));
		}
		if (tmpl_val_is_num(v))
			return tmpl_val_int(tmpl_val_want_int(r, v, "int", line));
		return tmpl_val_arg(a, 0, "default", tmpl_val_int(0));
	}
	if (!strcmp(name, "float")) {
		if (v.k == V_STR) {
			char *e;
			double x = strtod(v.u.s->p, &e);
			return e != v.u.s->p ? tmpl_val_float(x) : tmpl_val_arg(a, 0, "default", tmpl_val_float(0));
		}
		if (tmpl_val_is_num(v))
			return tmpl_val_float(tmpl_val_num(v));
		return tmpl_val_arg(a, 0, "default", tmpl_val_float(0));
	}
	if (!strcmp(name, "abs")) {
		if (v.k == V_FLOAT)
			return tmpl_val_float(fabs(v.u.f));
		int64_t x = tmpl_val_want_int(r, v, "abs", line);
		if (x == INT64_MIN)
			tmpl_fail(&r->f, "line %d: integer overflow", line);
		return tmpl_val_int(x < 0 ? -x : x);
	}
	if (!strcmp(name, "round")) {
		int64_t prec = tmpl_val_want_int(r, tmpl_val_arg(a, 0, "precision", tmpl_val_int(0)), "round", line);
		double m = pow(10, (double)prec);
		return tmpl_val_float(round(tmpl_val_num(v) * m) / m);
	}
	if (!strcmp(name, "sum")) {
		struct jlist *l = tmpl_val_iter(r, v, line);
		double s = 0;
		int64_t is = 0;
		int flt = 0;
		for (size_t i = 0; i < l->n; i++) {
			if (!tmpl_val_is_num(l->v[i]))
				tmpl_fail(&r->f, "line %d: sum of a non-number", line);
			flt |= l->v[i].k == V_FLOAT;
			s += tmpl_val_num(l->v[i]);
			if (!flt && __builtin_add_overflow(is, l->v[i].u.i, &is))
				tmpl_fail(&r->f, "line %d: integer overflow", line);
		}
		return flt ? tmpl_val_float(s) : tmpl_val_int(is);
	}
	if (!strcmp(name, "min") || !strcmp(name, "max")) {
		struct jlist *l = tmpl_val_iter(r, v, line);
		struct val best = UNDEF;
		for (size_t i = 0; i < l->n; i++)
			if (best.k == V_UNDEF || tmpl_val_compare(r, l->v[i], best) == (name[1] == 'i' ? -1 : 1))
				best = l->v[i];
		return best;
	}
	if (!strcmp(name, "dictsort")) {
		struct val items = tmpl_filter_apply(r, sc, "items", v, a, line);
		struct args none = { 0 };
		return tmpl_filter_apply(r, sc, "sort", items, &none, line);
	}
	if (!strcmp(name, "wordcount")) {
		struct val parts = tmpl_val_split(r, tmpl_val_to_str(r, v), NULL, -1);
		return tmpl_val_int((int64_t)parts.u.l->n);
	}
	tmpl_fail(&r->f, "line %d: unknown filter '%s'", line, name);
	return UNDEF;
}

/* --- tests (x is NAME) --- */

int
tmpl_filter_test(struct rt *r, const char *name, struct val v, const struct args *a, int line)
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
	if (!strcmp(name, "even")) return tmpl_val_want_int(r, v, "even", line) % 2 == 0;
	if (!strcmp(name, "odd")) return tmpl_val_want_int(r, v, "odd", line) % 2 != 0;
	if (!strcmp(name, "divisibleby")) {
		int64_t d = tmpl_val_want_int(r, tmpl_val_arg(a, 0, "num", tmpl_val_int(1)), "divisibleby", line);
		int64_t x = tmpl_val_want_int(r, v, "divisibleby", line);
		/* INT64_MIN % -1 traps on x86 (the quotient overflows). */
		return d != 0 && (d == -1 || x % d == 0);
	}
	if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==") || !strcmp(name, "sameas"))
		return tmpl_val_equal(r, v, tmpl_val_arg(a, 0, NULL, UNDEF));
	if (!strcmp(name, "ne") || !strcmp(name, "!="))
		return !tmpl_val_equal(r, v, tmpl_val_arg(a, 0, NULL, UNDEF));
	if (!strcmp(name, "lt") || !strcmp(name, "lessthan"))
		return tmpl_val_compare(r, v, tmpl_val_arg(a, 0, NULL, UNDEF)) < 0;
	if (!strcmp(name, "gt") || !strcmp(name, "greaterthan"))
		return tmpl_val_compare(r, v, tmpl_val_arg(a, 0, NULL, UNDEF)) > 0;
	if (!strcmp(name, "le"))
		return tmpl_val_compare(r, v, tmpl_val_arg(a, 0, NULL, UNDEF)) <= 0;
	if (!strcmp(name, "ge"))
		return tmpl_val_compare(r, v, tmpl_val_arg(a, 0, NULL, UNDEF)) >= 0;
	if (!strcmp(name, "in")) {
		struct val c = tmpl_val_arg(a, 0, NULL, UNDEF);
		struct jlist *l = tmpl_val_iter(r, c, line);
		if (c.k == V_STR && v.k == V_STR) {
			tmpl_eval_charge(r, c.u.s->len / TMPL_BYTES_PER_STEP);
			return memmem(c.u.s->p, c.u.s->len, v.u.s->p, v.u.s->len) != NULL;
		}
		tmpl_eval_charge(r, l->n);
		for (size_t i = 0; i < l->n; i++)
			if (tmpl_val_equal(r, l->v[i], v))
				return 1;
		return 0;
	}
	if (!strcmp(name, "lower") && v.k == V_STR) {
		tmpl_eval_charge(r, v.u.s->len / TMPL_BYTES_PER_STEP);
		for (size_t i = 0; i < v.u.s->len; i++)
			if (isupper((unsigned char)v.u.s->p[i]))
				return 0;
		return 1;
	}
	if (!strcmp(name, "upper") && v.k == V_STR) {
		tmpl_eval_charge(r, v.u.s->len / TMPL_BYTES_PER_STEP);
		for (size_t i = 0; i < v.u.s->len; i++)
			if (islower((unsigned char)v.u.s->p[i]))
				return 0;
		return 1;
	}
	tmpl_fail(&r->f, "line %d: unknown test '%s'", line, name);
	return 0;
}

/* --- global functions and methods --- */

/* The names callable on each kind of value, and as globals. */
static const char *const str_methods[] = { "strip", "lstrip", "rstrip", "startswith", "endswith", "split",
	"replace", "upper", "lower", "title", "capitalize", "find", "count", "join", "isdigit",
	"isalpha", "isspace", "splitlines", "format", NULL };
static const char *const dict_methods[] = { "get", "items", "keys", "values", "update", "pop", NULL };
static const char *const list_methods[] = { "append", "index", "count", "pop", "extend", NULL };
static const char *const globals[] = { "range", "namespace", "raise_exception", "strftime_now", "dict", NULL };

static const char *
find_name(const char *const *names, const char *name)
{
	for (int i = 0; names[i]; i++)
		if (!strcmp(name, names[i]))
			return names[i];
	return NULL;
}

const char *
tmpl_filter_method(enum vk k, const char *name)
{
	switch (k) {
	case V_STR: return find_name(str_methods, name);
	case V_DICT: return find_name(dict_methods, name);
	case V_LIST: return find_name(list_methods, name);
	default: return NULL;
	}
}

const char *
tmpl_filter_global(const char *name)
{
	return find_name(globals, name);
}

/* Calls a global function or a bound method. */
struct val
tmpl_filter_call(struct rt *r, struct func *fn, const struct args *a, int line)
{
	const char *name = fn->name;
	struct val self = fn->self;

	if (self.k == V_UNDEF) {   /* globals */
		if (!strcmp(name, "range")) {
			int64_t start = 0, stop, st = 1;
			if (a->npos == 1)
				stop = tmpl_val_want_int(r, a->pos[0], "range", line);
			else {
				start = tmpl_val_want_int(r, tmpl_val_arg(a, 0, NULL, tmpl_val_int(0)), "range", line);
				stop = tmpl_val_want_int(r, tmpl_val_arg(a, 1, NULL, tmpl_val_int(0)), "range", line);
				st = tmpl_val_want_int(r, tmpl_val_arg(a, 2, NULL, tmpl_val_int(1)), "range", line);
			}
			if (st == 0)
				tmpl_fail(&r->f, "line %d: range step cannot be zero", line);
			struct jlist *l = tmpl_val_list_new(r, 8);
			for (int64_t i = start; st > 0 ? i < stop : i > stop;) {
				if (l->n >= TMPL_MAX_RANGE)
					tmpl_fail(&r->f, "line %d: range too large", line);
				tmpl_val_list_push(r, l, tmpl_val_int(i));
				if (__builtin_add_overflow(i, st, &i))
					break;   /* past INT64_MAX or INT64_MIN: past STOP too */
			}
			return tmpl_val_list(l);
		}
		if (!strcmp(name, "namespace") || !strcmp(name, "dict")) {
			struct jdict *d = tmpl_val_dict_new(r);
			for (int i = 0; i < a->nkw; i++)
				tmpl_val_dict_set(r, d, a->kwn[i], strlen(a->kwn[i]), a->kw[i]);
			return tmpl_val_dict(d, name[0] == 'n' ? V_NS : V_DICT);
		}
		if (!strcmp(name, "raise_exception")) {
			struct val m = tmpl_val_to_str(r, tmpl_val_arg(a, 0, "message", tmpl_val_cstr(r, "error")));
			r->f.raised = 1;
			tmpl_fail(&r->f, "%s", m.u.s->p);
		}
		if (!strcmp(name, "strftime_now")) {
			char buf[256];
			struct tm tm;
			const struct jstr *f = tmpl_val_want_str(r, tmpl_val_arg(a, 0, "format", UNDEF), "strftime_now", line);
			time_t t = r->now;
			localtime_r(&t, &tm);
			size_t n = strftime(buf, sizeof(buf), f->p, &tm);
			return tmpl_val_str(r, buf, n);
		}
		tmpl_fail(&r->f, "line %d: unknown function '%s'", line, name);
	}
	if (self.k == V_STR) {
		if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
			struct val c = tmpl_val_arg(a, 0, "chars", NONE);
			return tmpl_val_strip(r, self, c.k == V_STR ? c.u.s : NULL, name[0] != 'r', name[0] != 'l');
		}
		if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
			struct val p = tmpl_val_arg(a, 0, NULL, UNDEF);
			struct jlist *cands;
			if (p.k == V_LIST)
				cands = p.u.l;
			else {
				cands = tmpl_val_list_new(r, 1);
				tmpl_val_list_push(r, cands, p);
			}
			for (size_t i = 0; i < cands->n; i++) {
				const struct jstr *x = tmpl_val_want_str(r, cands->v[i], name, line);
				tmpl_eval_charge(r, x->len / TMPL_BYTES_PER_STEP);
				if (x->len <= self.u.s->len &&
				    memcmp(self.u.s->p + (name[0] == 's' ? 0 : self.u.s->len - x->len), x->p, x->len) == 0)
					return tmpl_val_bool(1);
			}
			return tmpl_val_bool(0);
		}
		if (!strcmp(name, "split")) {
			struct val sep = tmpl_val_arg(a, 0, "sep", NONE);
			int64_t ms = tmpl_val_want_int(r, tmpl_val_arg(a, 1, "maxsplit", tmpl_val_int(-1)), "split", line);
			return tmpl_val_split(r, self, sep.k == V_STR ? sep.u.s : NULL, ms);
		}
		if (!strcmp(name, "splitlines"))
			return tmpl_val_split(r, self, tmpl_val_cstr(r, "\n").u.s, -1);
		if (!strcmp(name, "replace")) {
			int64_t cnt = tmpl_val_want_int(r, tmpl_val_arg(a, 2, "count", tmpl_val_int(-1)), "replace", line);
			return tmpl_val_replace(r, self, tmpl_val_want_str(r, tmpl_val_arg(a, 0, NULL, UNDEF), "replace", line),
			    tmpl_val_want_str(r, tmpl_val_arg(a, 1, NULL, UNDEF), "replace", line), cnt);
		}
		if (!strcmp(name, "upper")) return tmpl_val_case(r, self, 1);
		if (!strcmp(name, "lower")) return tmpl_val_case(r, self, 0);
		if (!strcmp(name, "capitalize")) return tmpl_val_case(r, self, 2);
		if (!strcmp(name, "title")) return tmpl_val_case(r, self, 3);
		if (!strcmp(name, "find") || !strcmp(name, "count")) {
			const struct jstr *x = tmpl_val_want_str(r, tmpl_val_arg(a, 0, NULL, UNDEF), name, line);
			const char *p = self.u.s->p, *end = p + self.u.s->len;
			tmpl_eval_charge(r, self.u.s->len / TMPL_BYTES_PER_STEP);
			if (name[0] == 'f') {
				const char *h = memmem(p, end - p, x->p, x->len);
				if (!h)
					return tmpl_val_int(-1);
				struct jstr tmp = { (size_t)(h - p) };
				(void)tmp;
				size_t cps = 0;
				for (const char *q = p; q < h; q++)
					cps += ((unsigned char)*q & 0xC0) != 0x80;
				return tmpl_val_int((int64_t)cps);
			}
			int64_t c = 0;
			if (x->len == 0)
				return tmpl_val_int((int64_t)tmpl_val_cp_count(self.u.s) + 1);
			for (const char *h; (h = memmem(p, end - p, x->p, x->len)); p = h + x->len)
				c++;
			return tmpl_val_int(c);
		}
		if (!strcmp(name, "join")) {
			struct jlist *l = tmpl_val_iter(r, tmpl_val_arg(a, 0, NULL, UNDEF), line);
			struct outbuf b = { 0 };
			tmpl_val_put(r, &b, "", 0);
			for (size_t i = 0; i < l->n; i++) {
				if (i)
					tmpl_val_put(r, &b, self.u.s->p, self.u.s->len);
				struct val s = tmpl_val_to_str(r, l->v[i]);
				tmpl_val_put(r, &b, s.u.s->p, s.u.s->len);
			}
			return tmpl_val_take(r, &b);
		}
		if (!strcmp(name, "isdigit") || !strcmp(name, "isalpha") || !strcmp(name, "isspace")) {
			if (self.u.s->len == 0)
				return tmpl_val_bool(0);
			tmpl_eval_charge(r, self.u.s->len / TMPL_BYTES_PER_STEP);
			for (size_t i = 0; i < self.u.s->len; i++) {
				int c = (unsigned char)self.u.s->p[i];
				if (name[2] == 'd' ? !isdigit(c) : name[2] == 'a' ? !isalpha(c) : !isspace(c))
					return tmpl_val_bool(0);
			}
			return tmpl_val_bool(1);
		}
		tmpl_fail(&r->f, "line %d: string method '%s' is not supported", line, name);
	}
	if (self.k == V_DICT) {
		if (!strcmp(name, "cycle")) {
			struct val *i0 = tmpl_val_dict_find(r, self.u.d, "index0", 6);
			if (a->npos == 0)
				tmpl_fail(&r->f, "line %d: loop.cycle needs arguments", line);
			int64_t i = i0 && i0->k == V_INT ? i0->u.i % a->npos : 0;
			/* The template may have changed loop.index0 (loop.update):
			 * keep the index inside the arguments whatever it holds. */
			return a->pos[i < 0 ? i + a->npos : i];
		}
		if (!strcmp(name, "get")) {
			const struct jstr *k = tmpl_val_want_str(r, tmpl_val_arg(a, 0, NULL, UNDEF), "get", line);
			struct val *v = tmpl_val_dict_find(r, self.u.d, k->p, k->len);
			return v ? *v : tmpl_val_arg(a, 1, "default", NONE);
		}
		if (!strcmp(name, "items")) {
			struct args none = { 0 };
			return tmpl_filter_apply(r, NULL, "items", self, &none, line);
		}
		if (!strcmp(name, "keys") || !strcmp(name, "values")) {
			struct jlist *l = tmpl_val_list_new(r, self.u.d->n + 1);
			for (size_t i = 0; i < self.u.d->n; i++) {
				struct val k;
				k.k = V_STR;
				k.u.s = self.u.d->k[i];
				tmpl_val_list_push(r, l, name[0] == 'k' ? k : self.u.d->v[i]);
			}
			return tmpl_val_list(l);
		}
		if (!strcmp(name, "update")) {
			struct val o = tmpl_val_arg(a, 0, NULL, UNDEF);
			if (o.k == V_DICT)
				for (size_t i = 0; i < o.u.d->n; i++)
					tmpl_val_dict_set(r, self.u.d, o.u.d->k[i]->p, o.u.d->k[i]->len, o.u.d->v[i]);
			for (int i = 0; i < a->nkw; i++)
				tmpl_val_dict_set(r, self.u.d, a->kwn[i], strlen(a->kwn[i]), a->kw[i]);
			return NONE;
		}
		tmpl_fail(&r->f, "line %d: dict method '%s' is not supported", line, name);
	}
	if (self.k == V_LIST) {
		if (!strcmp(name, "append")) {
			tmpl_val_list_push(r, self.u.l, tmpl_val_arg(a, 0, NULL, NONE));
			return NONE;
		}
		if (!strcmp(name, "extend")) {
			struct jlist *l = tmpl_val_iter(r, tmpl_val_arg(a, 0, NULL, UNDEF), line);
			for (size_t i = 0; i < l->n; i++)
				tmpl_val_list_push(r, self.u.l, l->v[i]);
			return NONE;
		}
		if (!strcmp(name, "pop")) {
			if (self.u.l->n == 0)
				tmpl_fail(&r->f, "line %d: pop from an empty list", line);
			int64_t i = tmpl_val_want_int(r, tmpl_val_arg(a, 0, NULL, tmpl_val_int(-1)), "pop", line);
			if (i < 0)
				i += (int64_t)self.u.l->n;
			if (i < 0 || i >= (int64_t)self.u.l->n)
				tmpl_fail(&r->f, "line %d: pop index out of range", line);
			struct val v = self.u.l->v[i];
			memmove(&self.u.l->v[i], &self.u.l->v[i + 1], (self.u.l->n - i - 1) * sizeof(struct val));
			self.u.l->n--;
			return v;
		}
		if (!strcmp(name, "index") || !strcmp(name, "count")) {
			struct val x = tmpl_val_arg(a, 0, NULL, UNDEF);
			int64_t c = 0;
			tmpl_eval_charge(r, self.u.l->n);
			for (size_t i = 0; i < self.u.l->n; i++) {
				if (tmpl_val_equal(r, self.u.l->v[i], x)) {
					if (name[0] == 'i')
						return tmpl_val_int((int64_t)i);
					c++;
				}
			}
			if (name[0] == 'i')
				tmpl_fail(&r->f, "line %d: value not in list", line);
			return tmpl_val_int(c);
		}
	}
	tmpl_fail(&r->f, "line %d: '%s' is not callable here", line, name);
	return UNDEF;
}
