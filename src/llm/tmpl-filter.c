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
#include "llm/unicode.h"

/* --- filters --- */

/* Jinja's attribute argument (make_attrgetter): "a.b.0" looks up a, then
 * b, then item 0 (a part of digits is the integer), each as Jinja's
 * getitem: obj[part] first, then the attribute, so a dict's key "items"
 * wins over its method items (x.items in a template is the other way
 * round).  Undefined when a part is missing.  Every filter taking an
 * attribute= argument goes through here. */
static struct val
attr_path(struct rt *r, struct val x, const char *path, size_t n, int line)
{
	size_t i = 0;

	while (i <= n && x.k != V_UNDEF) {
		size_t j = i, digits = 1;
		tmpl_eval_charge(r, 1);   /* a step a part ('s.s.s...' on a namespace holding itself) */
		char name[256];
		while (j < n && path[j] != '.') {
			digits &= path[j] >= '0' && path[j] <= '9';
			j++;
		}
		if (j - i >= sizeof(name))
			tmpl_fail(&r->f, "line %d: attribute name too long", line);
		memcpy(name, path + i, j - i);
		name[j - i] = 0;
		int idx = digits && j > i && j - i < 19;
		if (idx && (x.k == V_LIST || x.k == V_STR))
			x = tmpl_val_getitem(r, x, tmpl_val_int(strtoll(name, NULL, 10)), line);
		else if (idx && x.k == V_DICT) {   /* d[0]; an int is no attribute name */
			struct val *e = tmpl_val_dict_find_key(r, x.u.d, tmpl_val_int(strtoll(name, NULL, 10)), line);
			x = e ? *e : UNDEF;
		} else if (x.k == V_DICT || x.k == V_NS) {
			struct val *e = tmpl_val_dict_find(r, x.u.d, name, j - i);
			x = e ? *e : tmpl_val_getattr(r, x, name, line);   /* a method, or undefined */
		} else if (x.k == V_NONE)
			x = UNDEF;
		else
			x = tmpl_val_getattr(r, x, name, line);
		i = j + 1;
	}
	return x;
}

/* The key Jinja's sort, min, max, unique and dictsort compare X by: the
 * ATTR path (NULL: X itself; commas: a list of paths, for sort), lowered
 * when a string unless CASE_SENSITIVE (Jinja's default ignores case). */
static struct val
sort_key(struct rt *r, struct val x, const struct jstr *attr, int multi, int case_sensitive, int line)
{
	if (attr && multi && memchr(attr->p, ',', attr->len)) {
		struct jlist *l = tmpl_val_list_new(r, 4);
		const char *p = attr->p, *end = p + attr->len;
		while (p <= end) {
			const char *c = memchr(p, ',', end - p);
			const char *e = c ? c : end;
			tmpl_val_list_push(r, l, sort_key(r, attr_path(r, x, p, e - p, line), NULL, 0, case_sensitive, line));
			p = e + 1;
		}
		return tmpl_val_list(l);
	}
	if (attr)
		x = attr_path(r, x, attr->p, attr->len, line);
	if (x.k == V_STR && !case_sensitive)
		x = tmpl_val_case(r, x, TMPL_LOWER);
	return x;
}

/* An item being sorted and the key it is compared by. */
struct sort_item {
	struct val key, v;
};

/* X's key against Y's (negated when REV), one step charged. */
static int
sort_cmp(struct rt *r, int rev, const struct sort_item *x, const struct sort_item *y)
{
	tmpl_eval_charge(r, 1);
	int c = tmpl_val_compare(r, x->key, y->key);
	return rev ? -c : c;
}

/* Stable merge sort of V[0..N) using TMP[0..N), as Python's sorted(): equal
 * items keep their order (reversed too), and at most n log n comparisons
 * are charged. */
static void
sort_merge(struct rt *r, int rev, struct sort_item *v, struct sort_item *tmp, size_t n)
{
	size_t h = n / 2, i = 0, j = h, k = 0;

	if (n < 2)
		return;
	sort_merge(r, rev, v, tmp, h);
	sort_merge(r, rev, v + h, tmp, n - h);
	while (i < h && j < n)
		tmp[k++] = sort_cmp(r, rev, &v[j], &v[i]) < 0 ? v[j++] : v[i++];
	while (i < h)
		tmp[k++] = v[i++];
	memcpy(v, tmp, k * sizeof(*v));   /* v[j..n) is in place already */
}

/* The items of L sorted by their keys (see sort_key), or by item[BY] of each
 * pair when BY >= 0 (dictsort). */
static struct val
sort_list(struct rt *r, struct jlist *l, const struct jstr *attr, int by, int case_sensitive, int rev, int line)
{
	struct sort_item *it = tmpl_val_alloc(r, (l->n + 1) * sizeof(*it));
	struct jlist *o = tmpl_val_list_new(r, l->n + 1);

	for (size_t i = 0; i < l->n; i++) {
		struct val x = by >= 0 ? l->v[i].u.l->v[by] : l->v[i];
		it[i].key = sort_key(r, x, attr, 1, case_sensitive, line);
		it[i].v = l->v[i];
	}
	sort_merge(r, rev, it, tmpl_val_alloc(r, (l->n + 1) * sizeof(*it)), l->n);
	for (size_t i = 0; i < l->n; i++)
		tmpl_val_list_push(r, o, it[i].v);
	return tmpl_val_list(o);
}

/* The attribute argument of sort, min, max and unique, or NULL. */
static const struct jstr *
attr_arg(struct rt *r, struct val v, int line)
{
	if (v.k == V_UNDEF || v.k == V_NONE)
		return NULL;
	return tmpl_val_want_str(r, v, "attribute", line);
}

/* round(X, ND) as Python rounds an int: half to even at 10^-ND. */
static struct val
round_int(struct rt *r, int64_t x, int64_t nd, int line)
{
	__int128 p = 1, q, rem, half;

	if (nd >= 0)
		return tmpl_val_int(x);
	if (nd < -19)   /* 10^20 / 2 is past any int64: always 0 */
		return tmpl_val_int(0);
	for (int64_t i = 0; i < -nd; i++)
		p *= 10;
	q = (__int128)x / p;
	rem = (__int128)x % p;
	if (rem < 0) {   /* floor division, as Python's */
		rem += p;
		q--;
	}
	half = p / 2;
	if (rem > half || (rem == half && (q & 1)))
		q++;
	q *= p;
	if (q > INT64_MAX || q < INT64_MIN)
		tmpl_fail(&r->f, "line %d: round: integer overflow", line);
	return tmpl_val_int((int64_t)q);
}

/* round(X, ND) as Python rounds a float: to the nearest multiple of 10^-ND,
 * ties to even, judged on the exact binary value (0.125 -> 0.12, 2.675 ->
 * 2.67).  glibc's printf rounds exactly that way, so "%.*f" does it for
 * ND >= 0; for ND < 0 the integer part's digits are rounded by hand. */
static struct val
round_float(struct rt *r, double x, int64_t nd, int line)
{
	char buf[400];

	if (!isfinite(x) || nd > 323)   /* Python's NDIGITS_MAX: X is exact already */
		return tmpl_val_float(x);
	if (nd < -308)                  /* NDIGITS_MIN */
		return tmpl_val_float(0.0 * x);
	if (nd >= 0) {
		snprintf(buf, sizeof(buf), "%.*f", (int)nd, x);
	} else {
		double ip = trunc(fabs(x));
		int frac = fabs(x) != ip, k = (int)-nd, n, cut, up;
		char dig[330];
		n = snprintf(dig, sizeof(dig), "%.0f", ip);
		if (n < 0 || n >= (int)sizeof(dig))
			tmpl_fail(&r->f, "line %d: round: number too large", line);
		/* DIG = Q * 10^K + REM: compare REM with 5 * 10^(K-1). */
		cut = n - k;
		if (cut < 0) {
			up = 0;   /* REM < 10^(K-1) */
		} else {
			int c = dig[cut] - '5';
			for (int i = cut + 1; c == 0 && i < n; i++)
				c = dig[i] != '0';
			up = c > 0 || (c == 0 && cut < n && frac) ||
			    (c == 0 && cut < n && !frac && cut > 0 && ((dig[cut - 1] - '0') & 1));
		}
		/* "Q[+1]eK" read back by strtod: exact, as Python's. */
		if (cut <= 0) {
			snprintf(buf, sizeof(buf), "%s%de%d", x < 0 ? "-" : "", up, k);
		} else {
			int i = cut - 1;
			dig[cut] = 0;
			while (up && i >= 0) {
				if (dig[i] == '9') {
					dig[i--] = '0';
				} else {
					dig[i]++;
					up = 0;
				}
			}
			snprintf(buf, sizeof(buf), "%s%s%se%d", x < 0 ? "-" : "", up ? "1" : "", dig, k);
		}
	}
	double y = strtod(buf, NULL);
	if (isinf(y))
		tmpl_fail(&r->f, "line %d: round: rounded value too large to represent", line);
	return tmpl_val_float(y);
}

/* Jinja's round(value, precision=0, method='common'): 'common' is Python's
 * round() (ties to even; an int stays an int), 'ceil' and 'floor' scale by
 * 10^precision and always give a float. */
static struct val
filter_round(struct rt *r, struct val v, const struct args *a, int line)
{
	struct val p = tmpl_val_arg(a, 0, "precision", tmpl_val_int(0));
	struct val m = tmpl_val_arg(a, 1, "method", UNDEF);
	const char *method = "common";
	int64_t nd;

	if (m.k != V_UNDEF)
		method = tmpl_val_want_str(r, m, "round method", line)->p;
	if (strcmp(method, "common") && strcmp(method, "ceil") && strcmp(method, "floor"))
		tmpl_fail(&r->f, "line %d: round: method must be common, ceil or floor", line);
	if (!tmpl_val_is_num(v))
		tmpl_fail(&r->f, "line %d: round expects a number, got %s", line, tmpl_val_type_name(v));
	if (p.k != V_INT && p.k != V_BOOL)
		tmpl_fail(&r->f, "line %d: round precision must be an integer, got %s", line, tmpl_val_type_name(p));
	nd = p.u.i;
	if (method[0] == 'c' && method[1] == 'o')
		return v.k == V_FLOAT ? round_float(r, v.u.f, nd, line) : round_int(r, v.u.i, nd, line);
	{
		double s = pow(10, (double)nd), x = tmpl_val_num(v) * s;
		if (!isfinite(x) || s == 0)   /* Python: OverflowError, ValueError or ZeroDivisionError */
			tmpl_fail(&r->f, "line %d: round: cannot %s %g at precision %lld", line, method, tmpl_val_num(v),
			    (long long)nd);
		return tmpl_val_float((method[0] == 'c' ? ceil(x) : floor(x)) / s);
	}
}

/* Hugging Face's tojson(x, ensure_ascii=False, indent=None, separators=None,
 * sort_keys=False): json.dumps with those arguments, in that order.  (Not
 * Jinja's own tojson, which escapes <, >, & and ' for HTML and sorts keys:
 * transformers replaces it for chat templates.) */
static struct val
filter_tojson(struct rt *r, struct val v, const struct args *a, int line)
{
	static const char *const kw[] = { "ensure_ascii", "indent", "separators", "sort_keys", NULL };
	struct outbuf b = { 0 }, pad = { 0 };
	struct json_opts o = { 0 };
	struct val ind = tmpl_val_arg(a, 1, "indent", NONE);
	struct val sep = tmpl_val_arg(a, 2, "separators", NONE);

	if (a->npos > 4)
		tmpl_fail(&r->f, "line %d: tojson takes at most 4 arguments, %d given", line, a->npos);
	for (int i = 0; i < a->nkw; i++) {
		int k = 0;
		while (kw[k] && strcmp(kw[k], a->kwn[i]))
			k++;
		if (!kw[k])
			tmpl_fail(&r->f, "line %d: tojson has no argument '%s'", line, a->kwn[i]);
	}
	o.ascii = tmpl_val_truthy(tmpl_val_arg(a, 0, "ensure_ascii", tmpl_val_bool(0)));
	o.sort_keys = tmpl_val_truthy(tmpl_val_arg(a, 3, "sort_keys", tmpl_val_bool(0)));
	if (ind.k == V_STR) {
		/* A string indents by itself, as in Python. */
		o.indent = ind.u.s->p;
		o.indent_len = ind.u.s->len;
	} else if (ind.k != V_NONE && ind.k != V_UNDEF) {
		if (ind.k != V_INT && ind.k != V_BOOL)
			tmpl_fail(&r->f, "line %d: tojson indent must be an integer or a string, got %s", line,
			    tmpl_val_type_name(ind));
		/* As Python's json: an indent of 0 or less puts newlines alone. */
		if (ind.u.i > 1000)
			tmpl_fail(&r->f, "line %d: tojson indent %lld is too large (at most 1000)", line, (long long)ind.u.i);
		for (int64_t i = 0; i < ind.u.i; i++)
			tmpl_val_put(r, &pad, " ", 1);
		tmpl_val_put(r, &pad, "", 0);
		o.indent = pad.p;
		o.indent_len = pad.n;
	}
	if (sep.k != V_NONE && sep.k != V_UNDEF) {
		if (sep.k != V_LIST || sep.u.l->n != 2)
			tmpl_fail(&r->f, "line %d: tojson separators must be a pair of strings (item, key)", line);
		o.item_sep = tmpl_val_want_str(r, sep.u.l->v[0], "tojson separators", line);
		o.key_sep = tmpl_val_want_str(r, sep.u.l->v[1], "tojson separators", line);
	}
	tmpl_val_to_json(r, &b, v, &o, 0);
	if (!b.p)
		tmpl_val_put(r, &b, "", 0);
	return tmpl_val_take(r, &b);
}

/* Filters, by name.  SC is the caller's scope (unused by the filters here). */
struct val
tmpl_filter_apply(struct rt *r, struct scope *sc, const char *name, struct val v, const struct args *a, int line)
{
	if (!strcmp(name, "trim") || !strcmp(name, "strip")) {
		struct val c = tmpl_val_arg(a, 0, "chars", NONE);
		return tmpl_val_strip(r, tmpl_val_to_str(r, v), c.k == V_STR ? c.u.s : NULL, 1, 1);
	}
	if (!strcmp(name, "tojson"))
		return filter_tojson(r, v, a, line);
	if (!strcmp(name, "length") || !strcmp(name, "count"))
		return tmpl_val_int(tmpl_val_length(r, v, line));
	if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "capitalize") || !strcmp(name, "title"))
		return tmpl_val_case(r, tmpl_val_to_str(r, v), name[0] == 'l' ? TMPL_LOWER : name[0] == 'u' ? TMPL_UPPER :
		    name[0] == 'c' ? TMPL_CAPITALIZE : TMPL_JINJA_TITLE);
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
	if (!strcmp(name, "list")) {
		struct jlist *l = tmpl_val_iter(r, v, line), *o;
		if (l->kind == L_LIST)
			return tmpl_val_list(l);
		o = tmpl_val_list_new(r, l->n + 1);   /* list((1, 2)) is [1, 2], list(range(2)) [0, 1] */
		for (size_t i = 0; i < l->n; i++)
			tmpl_val_list_push(r, o, l->v[i]);
		return tmpl_val_list(o);
	}
	if (!strcmp(name, "join")) {
		struct val sep = tmpl_val_arg(a, 0, "d", tmpl_val_cstr(r, ""));
		struct val attr = tmpl_val_arg(a, 1, "attribute", UNDEF);
		struct jlist *l = tmpl_val_iter(r, v, line);
		struct outbuf b = { 0 };
		tmpl_eval_charge(r, l->n);   /* a step an element scanned (empty ones cost no bytes) */
		tmpl_val_put(r, &b, "", 0);
		for (size_t i = 0; i < l->n; i++) {
			struct val it = l->v[i];
			if (i)
				tmpl_val_put(r, &b, tmpl_val_want_str(r, sep, "join", line)->p, sep.u.s->len);
			if (attr.k == V_STR)
				it = attr_path(r, it, attr.u.s->p, attr.u.s->len, line);
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
			tmpl_val_list_push(r, pair, v.u.d->kv[i]);
			tmpl_val_list_push(r, pair, v.u.d->v[i]);
			pair->kind = L_TUPLE;   /* Python's (key, value) */
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
				x = attr_path(r, it, aname.u.s->p, aname.u.s->len, line);
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
				x = attr_path(r, l->v[i], attr.u.s->p, attr.u.s->len, line);
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
		/* unique(case_sensitive=false, attribute=none): the first of equal keys. */
		struct jlist *l = tmpl_val_iter(r, v, line), *o = tmpl_val_list_new(r, l->n + 1);
		struct jlist *keys = tmpl_val_list_new(r, l->n + 1);
		int cs = tmpl_val_truthy(tmpl_val_arg(a, 0, "case_sensitive", tmpl_val_bool(0)));
		const struct jstr *attr = attr_arg(r, tmpl_val_arg(a, 1, "attribute", UNDEF), line);
		for (size_t i = 0; i < l->n; i++) {
			struct val k = sort_key(r, l->v[i], attr, 0, cs, line);
			int seen = 0;
			tmpl_eval_charge(r, keys->n);
			for (size_t j = 0; j < keys->n && !seen; j++)
				seen = tmpl_val_equal(r, keys->v[j], k);
			if (!seen) {
				tmpl_val_list_push(r, keys, k);
				tmpl_val_list_push(r, o, l->v[i]);
			}
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
		/* sort(reverse=false, case_sensitive=false, attribute=none) */
		struct jlist *l = tmpl_val_iter(r, v, line);
		return sort_list(r, l, attr_arg(r, tmpl_val_arg(a, 2, "attribute", UNDEF), line), -1,
		    tmpl_val_truthy(tmpl_val_arg(a, 1, "case_sensitive", tmpl_val_bool(0))),
		    tmpl_val_truthy(tmpl_val_arg(a, 0, "reverse", tmpl_val_bool(0))), line);
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
	if (!strcmp(name, "round"))
		return filter_round(r, v, a, line);
	if (!strcmp(name, "sum")) {
		/* sum(attribute=none, start=0) */
		struct jlist *l = tmpl_val_iter(r, v, line);
		const struct jstr *attr = attr_arg(r, tmpl_val_arg(a, 0, "attribute", UNDEF), line);
		struct val st = tmpl_val_arg(a, 1, "start", tmpl_val_int(0));
		tmpl_eval_charge(r, l->n);
		double s;
		int64_t is = 0;
		int flt = st.k == V_FLOAT;
		if (!tmpl_val_is_num(st))
			tmpl_fail(&r->f, "line %d: sum's start must be a number, not %s", line, tmpl_val_type_name(st));
		s = tmpl_val_num(st);
		if (!flt)
			is = st.u.i;
		for (size_t i = 0; i < l->n; i++) {
			struct val x = attr ? attr_path(r, l->v[i], attr->p, attr->len, line) : l->v[i];
			if (!tmpl_val_is_num(x))
				tmpl_fail(&r->f, "line %d: sum of a non-number (%s)", line, tmpl_val_type_name(x));
			flt |= x.k == V_FLOAT;
			s += tmpl_val_num(x);
			if (!flt && __builtin_add_overflow(is, x.u.i, &is))
				tmpl_fail(&r->f, "line %d: integer overflow", line);
		}
		return flt ? tmpl_val_float(s) : tmpl_val_int(is);
	}
	if (!strcmp(name, "min") || !strcmp(name, "max")) {
		/* min/max(case_sensitive=false, attribute=none): the first of the extreme keys. */
		struct jlist *l = tmpl_val_iter(r, v, line);
		int cs = tmpl_val_truthy(tmpl_val_arg(a, 0, "case_sensitive", tmpl_val_bool(0)));
		tmpl_eval_charge(r, l->n);
		const struct jstr *attr = attr_arg(r, tmpl_val_arg(a, 1, "attribute", UNDEF), line);
		struct val best = UNDEF, bkey = UNDEF;
		for (size_t i = 0; i < l->n; i++) {
			struct val k = sort_key(r, l->v[i], attr, 0, cs, line);
			if (best.k == V_UNDEF || tmpl_val_compare(r, k, bkey) == (name[1] == 'i' ? -1 : 1)) {
				best = l->v[i];
				bkey = k;
			}
		}
		return best;
	}
	if (!strcmp(name, "dictsort")) {
		/* dictsort(case_sensitive=false, by='key', reverse=false): the pairs, sorted. */
		struct args none = { 0 };
		struct val items = tmpl_filter_apply(r, sc, "items", v, &none, line);
		struct val by = tmpl_val_arg(a, 1, "by", UNDEF);
		int pos = 0;
		if (by.k != V_UNDEF) {
			const struct jstr *b = tmpl_val_want_str(r, by, "dictsort", line);
			if (!strcmp(b->p, "value"))
				pos = 1;
			else if (strcmp(b->p, "key"))
				tmpl_fail(&r->f, "line %d: dictsort: you can only sort by either \"key\" or \"value\"", line);
		}
		return sort_list(r, items.u.l, NULL, pos, tmpl_val_truthy(tmpl_val_arg(a, 0, "case_sensitive", tmpl_val_bool(0))),
		    tmpl_val_truthy(tmpl_val_arg(a, 2, "reverse", tmpl_val_bool(0))), line);
	}
	if (!strcmp(name, "wordcount")) {
		struct val parts = tmpl_val_split(r, tmpl_val_to_str(r, v), NULL, -1);
		return tmpl_val_int((int64_t)parts.u.l->n);
	}
	tmpl_fail(&r->f, "line %d: unknown filter '%s'", line, name);
	return UNDEF;
}

/* --- tests (x is NAME) --- */

/* Python's str.islower (LOWER) or str.isupper: a cased code point at least,
 * and none of the other case.  For islower a cased code point that
 * lower-casing changes is of the other case, for isupper one that
 * upper-casing changes (a titlecase one fails both); a cased one without a
 * mapping (U+00AA) breaks no rule, as Python's Lowercase property says of
 * most of them. */
static int
test_case(struct rt *r, const struct jstr *s, int lower)
{
	int cased = 0;

	tmpl_eval_charge(r, s->len / TMPL_BYTES_PER_STEP);
	for (size_t i = 0; i < s->len;) {
		uint32_t cp, m[3];
		i += utf8_decode((const unsigned char *)s->p + i, s->len - i, &cp);
		if (cp >= UCP_RAW_BYTE || !(unicode_case_class(cp) & UNICODE_CASED))
			continue;
		cased = 1;
		int k = unicode_case_map(cp, lower ? UNICODE_LOWER : UNICODE_UPPER, m);
		if (k != 1 || m[0] != cp)
			return 0;   /* it would change: of the other case */
	}
	return cased;
}

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
	if (!strcmp(name, "sequence"))   /* a dict view is not one */
		return (v.k == V_LIST && v.u.l->kind <= L_RANGE) || v.k == V_STR || v.k == V_DICT;
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
	if ((!strcmp(name, "lower") || !strcmp(name, "upper")) && v.k == V_STR)
		return test_case(r, v.u.s, name[0] == 'l');
	tmpl_fail(&r->f, "line %d: unknown test '%s'", line, name);
	return 0;
}

/* --- global functions and methods --- */

/* The names callable on each kind of value, and as globals. */
static const char *const str_methods[] = { "strip", "lstrip", "rstrip", "startswith", "endswith", "split",
	"replace", "upper", "lower", "title", "capitalize", "find", "count", "join", "isdigit",
	"isalpha", "isspace", "splitlines", "format", NULL };
static const char *const dict_methods[] = { "get", "items", "keys", "values", NULL };
static const char *const list_methods[] = { "index", "count", NULL };   /* also a tuple's and a range's */
/* The methods that change a list or a dict, which transformers' sandbox
 * (Jinja's ImmutableSandboxedEnvironment, its modifies_known_mutable) will
 * not call: a template that needs one fails there, so it fails here too,
 * rather than rendering in natter alone.  Reading one gives undefined, as
 * there; calling it is the error (see tmpl-eval.c). */
static const char *const list_unsafe[] = { "append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort",
	NULL };
static const char *const dict_unsafe[] = { "clear", "pop", "popitem", "setdefault", "update", NULL };
static const char *const globals[] = { "range", "namespace", "raise_exception", "strftime_now", "dict", NULL };

static const char *
find_name(const char *const *names, const char *name)
{
	/* The first byte first: this runs at every obj.attr of a render. */
	for (int i = 0; names[i]; i++)
		if (names[i][0] == name[0] && !strcmp(name, names[i]))
			return names[i];
	return NULL;
}

const char *
tmpl_filter_method(struct val obj, const char *name)
{
	switch (obj.k) {
	case V_STR: return find_name(str_methods, name);
	case V_DICT: return find_name(dict_methods, name);
	case V_LIST:
		/* A dict view has none of these (its isdisjoint is not here). */
		return obj.u.l->kind <= L_RANGE ? find_name(list_methods, name) : NULL;
	default: return NULL;
	}
}

int
tmpl_filter_unsafe(struct val obj, const char *name)
{
	if (obj.k == V_LIST && obj.u.l->kind == L_LIST)
		return find_name(list_unsafe, name) != NULL;
	return obj.k == V_DICT && find_name(dict_unsafe, name) != NULL;
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
			int64_t start = 0, stop, st = 1, x[3];
			/* Python's range(stop) or range(start, stop[, step]): integers
			 * only (a float is a TypeError there), no keywords. */
			if (a->npos < 1 || a->npos > 3 || a->nkw)
				tmpl_fail(&r->f, "line %d: range takes 1 to 3 integer arguments by position, %d given", line,
				    a->npos + a->nkw);
			for (int i = 0; i < a->npos; i++) {
				if (a->pos[i].k != V_INT && a->pos[i].k != V_BOOL)
					tmpl_fail(&r->f, "line %d: range expects integers, got %s", line,
					    tmpl_val_type_name(a->pos[i]));
				x[i] = a->pos[i].u.i;
			}
			if (a->npos == 1) {
				stop = x[0];
			} else {
				start = x[0];
				stop = x[1];
				st = a->npos == 3 ? x[2] : 1;
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
			l->kind = L_RANGE;
			l->start = start;
			l->stop = stop;
			l->step = st;
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
			struct tm tm;
			const struct jstr *f = tmpl_val_want_str(r, tmpl_val_arg(a, 0, "format", UNDEF), "strftime_now", line);
			time_t t = r->now;
			size_t cap = 256, n = 0;
			char *buf;
			tmpl_eval_charge(r, f->len / TMPL_BYTES_PER_STEP);
			if (memchr(f->p, 0, f->len))
				tmpl_fail(&r->f, "line %d: strftime_now: the format holds a NUL byte", line);
			if (!localtime_r(&t, &tm))
				tmpl_fail(&r->f, "line %d: strftime_now: the time cannot be converted", line);
			/* strftime gives 0 both when BUF is too small and when the
			 * result is empty: grow BUF up to what the longest
			 * conversion (a few dozen bytes each) could need. */
			for (;;) {
				buf = tmpl_val_alloc(r, cap);
				n = strftime(buf, cap, f->p, &tm);
				if (n > 0 || f->len == 0 || cap > 64 * f->len + 256)
					break;
				cap *= 2;
			}
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
				tmpl_eval_charge(r, 1 + x->len / TMPL_BYTES_PER_STEP);
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
		if (!strcmp(name, "upper")) return tmpl_val_case(r, self, TMPL_UPPER);
		if (!strcmp(name, "lower")) return tmpl_val_case(r, self, TMPL_LOWER);
		if (!strcmp(name, "capitalize")) return tmpl_val_case(r, self, TMPL_CAPITALIZE);
		if (!strcmp(name, "title")) return tmpl_val_case(r, self, TMPL_TITLE);
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
			tmpl_eval_charge(r, l->n);
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
			/* Only a loop object gets here (see tmpl_val_getattr) and
			 * no template can change its index0; the index stays
			 * inside the arguments anyway. */
			return a->pos[i < 0 ? i + a->npos : i];
		}
		if (!strcmp(name, "get")) {
			struct val *v = tmpl_val_dict_find_key(r, self.u.d, tmpl_val_arg(a, 0, NULL, UNDEF), line);
			return v ? *v : tmpl_val_arg(a, 1, "default", NONE);
		}
		if (!strcmp(name, "items")) {
			struct args none = { 0 };
			struct val v = tmpl_filter_apply(r, NULL, "items", self, &none, line);
			v.u.l->kind = L_ITEMS;
			return v;
		}
		if (!strcmp(name, "keys") || !strcmp(name, "values")) {
			struct jlist *l = tmpl_val_list_new(r, self.u.d->n + 1);
			for (size_t i = 0; i < self.u.d->n; i++)
				tmpl_val_list_push(r, l, name[0] == 'k' ? self.u.d->kv[i] : self.u.d->v[i]);
			l->kind = name[0] == 'k' ? L_KEYS : L_VALUES;
			return tmpl_val_list(l);
		}
		tmpl_fail(&r->f, "line %d: dict method '%s' is not supported", line, name);
	}
	if (self.k == V_LIST) {
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
