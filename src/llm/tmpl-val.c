/* tmpl-val.c -- chat templates: values, printed, compared and taken apart as Python does. */
#include "config.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/tmpl-impl.h"
#include "llm/unicode.h"

/* --- construction --- */

/* A string in the arena AR: the parser's literals (a render uses tmpl_val_str). */
struct val
tmpl_val_str_arena(struct arena *ar, struct fail *f, const char *s, size_t n)
{
	struct val v;
	struct jstr *js = tmpl_alloc(ar, f, sizeof(*js) + n + 1);
	js->len = n;
	memcpy(js->p, s, n);
	js->p[n] = 0;
	v.k = V_STR;
	v.u.s = js;
	return v;
}

void *
tmpl_val_alloc(struct rt *r, size_t n)
{
	return tmpl_alloc(&r->ar, &r->f, n);
}

struct val
tmpl_val_str(struct rt *r, const char *s, size_t n)
{
	return tmpl_val_str_arena(&r->ar, &r->f, s, n);
}

struct val
tmpl_val_cstr(struct rt *r, const char *s)
{
	return tmpl_val_str(r, s, strlen(s));
}

struct val
tmpl_val_int(int64_t i)
{
	struct val v;
	v.k = V_INT;
	v.u.i = i;
	return v;
}

struct val
tmpl_val_bool(int b)
{
	struct val v;
	v.k = V_BOOL;
	v.u.i = b != 0;
	return v;
}

struct val
tmpl_val_float(double f)
{
	struct val v;
	v.k = V_FLOAT;
	v.u.f = f;
	return v;
}

struct jlist *
tmpl_val_list_new(struct rt *r, size_t cap)
{
	struct jlist *l = tmpl_val_alloc(r, sizeof(*l));
	l->n = 0;
	l->kind = L_LIST;
	l->start = l->stop = l->step = 0;
	l->cap = cap ? cap : 4;
	l->v = tmpl_val_alloc(r, l->cap * sizeof(*l->v));
	return l;
}

void
tmpl_val_list_push(struct rt *r, struct jlist *l, struct val v)
{
	if (l->n == l->cap) {
		size_t cap = l->cap * 2;
		struct val *nv = tmpl_val_alloc(r, cap * sizeof(*nv));
		memcpy(nv, l->v, l->n * sizeof(*nv));
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = v;
}

struct val
tmpl_val_list(struct jlist *l)
{
	struct val v;
	v.k = V_LIST;
	v.u.l = l;
	return v;
}

struct jdict *
tmpl_val_dict_new(struct rt *r)
{
	struct jdict *d = tmpl_val_alloc(r, sizeof(*d));
	d->n = 0;
	d->loop = 0;
	d->cap = 8;
	d->k = tmpl_val_alloc(r, d->cap * sizeof(*d->k));
	d->kv = tmpl_val_alloc(r, d->cap * sizeof(*d->kv));
	d->v = tmpl_val_alloc(r, d->cap * sizeof(*d->v));
	return d;
}

/* The value of the key of text K[0..N) in D, among the string keys when
 * STR, else among the others. */
static struct val *
dict_find(struct rt *r, struct jdict *d, const char *k, size_t n, int str)
{
	/* A key is mostly told apart by its length: eight keys cost about
	 * one evaluation step. */
	tmpl_eval_charge(r, d->n / 8);
	for (size_t i = 0; i < d->n; i++) {
		if (d->k[i]->len != n || (d->kv[i].k == V_STR) != str)
			continue;
		tmpl_eval_charge(r, n / TMPL_BYTES_PER_STEP);
		if (memcmp(d->k[i]->p, k, n) == 0)
			return &d->v[i];
	}
	return NULL;
}

/* Adds KEY (text K, string or not as STR) with V to D, or sets its value. */
static void
dict_set(struct rt *r, struct jdict *d, const char *k, size_t n, int str, struct val key, struct val v)
{
	struct val *e = dict_find(r, d, k, n, str);
	if (e) {
		*e = v;
		return;
	}
	if (d->n == d->cap) {
		size_t cap = d->cap * 2;
		struct jstr **nk = tmpl_val_alloc(r, cap * sizeof(*nk));
		struct val *nkv = tmpl_val_alloc(r, cap * sizeof(*nkv));
		struct val *nv = tmpl_val_alloc(r, cap * sizeof(*nv));
		memcpy(nk, d->k, d->n * sizeof(*nk));
		memcpy(nkv, d->kv, d->n * sizeof(*nkv));
		memcpy(nv, d->v, d->n * sizeof(*nv));
		d->k = nk;
		d->kv = nkv;
		d->v = nv;
		d->cap = cap;
	}
	d->k[d->n] = tmpl_val_str(r, k, n).u.s;
	if (str) {
		key.k = V_STR;
		key.u.s = d->k[d->n];
	}
	d->kv[d->n] = key;
	d->v[d->n] = v;
	d->n++;
}

struct val *
tmpl_val_dict_find(struct rt *r, struct jdict *d, const char *k, size_t n)
{
	return dict_find(r, d, k, n, 1);
}

void
tmpl_val_dict_set(struct rt *r, struct jdict *d, const char *k, size_t n, struct val v)
{
	dict_set(r, d, k, n, 1, UNDEF, v);
}

static void repr_at(struct rt *r, struct outbuf *b, struct val v, int top, int depth);
static void check_depth(struct rt *r, int depth);

/* The text that tells KEY (not a string) apart from the other such keys,
 * as Python's hash and == would: numbers of equal value are one key.
 * DEPTH: how deep in a tuple (a tuple nested 100000 deep overflowed the
 * stack). */
static struct val
key_text_at(struct rt *r, struct val key, int line, int depth)
{
	struct outbuf b = { 0 };
	char buf[32];

	check_depth(r, depth);
	switch (key.k) {
	case V_BOOL: case V_INT:
		snprintf(buf, sizeof(buf), "%lld", (long long)key.u.i);
		return tmpl_val_cstr(r, buf);
	case V_FLOAT:
		if (key.u.f == trunc(key.u.f) && key.u.f >= -0x1p63 && key.u.f < 0x1p63)
			return key_text_at(r, tmpl_val_int((int64_t)key.u.f), line, depth);
		break;
	case V_NONE:
		break;
	case V_LIST:
		if (key.u.l->kind == L_TUPLE) {
			tmpl_val_puts(r, &b, "(");
			for (size_t i = 0; i < key.u.l->n; i++) {
				struct val e = key.u.l->v[i];
				if (e.k == V_STR) {
					repr_at(r, &b, e, 0, 1);
				} else {
					struct val t = key_text_at(r, e, line, depth + 1);
					tmpl_val_put(r, &b, t.u.s->p, t.u.s->len);
				}
				tmpl_val_puts(r, &b, ",");
			}
			tmpl_val_puts(r, &b, ")");
			return tmpl_val_take(r, &b);
		}
		if (key.u.l->kind == L_RANGE) {
			/* Python hashes a range by the numbers it holds, as its ==
			 * compares: range(0) and range(5, 5) are one key, so are
			 * range(0, 3, 2) and range(0, 4, 2).  A text no other key
			 * has (those start with a digit, '-', '(' or 'N'). */
			const struct jlist *l = key.u.l;
			char rb[80];
			if (l->n == 0)
				snprintf(rb, sizeof(rb), "range");
			else if (l->n == 1)
				snprintf(rb, sizeof(rb), "range %lld", (long long)l->v[0].u.i);
			else
				snprintf(rb, sizeof(rb), "range %lld %lld %zu", (long long)l->v[0].u.i,
				    (long long)l->step, l->n);
			return tmpl_val_cstr(r, rb);
		}
		/* fall through */
	default:
		tmpl_fail(&r->f, "line %d: a %s cannot be a dict key (unhashable)", line, tmpl_val_type_name(key));
	}
	repr_at(r, &b, key, 0, 1);
	return tmpl_val_take(r, &b);
}

static struct val
key_text(struct rt *r, struct val key, int line)
{
	return key_text_at(r, key, line, 0);
}

struct val *
tmpl_val_dict_find_key(struct rt *r, struct jdict *d, struct val key, int line)
{
	if (key.k == V_STR)
		return dict_find(r, d, key.u.s->p, key.u.s->len, 1);
	struct val t = key_text(r, key, line);
	return dict_find(r, d, t.u.s->p, t.u.s->len, 0);
}

void
tmpl_val_dict_set_key(struct rt *r, struct jdict *d, struct val key, struct val v, int line)
{
	if (key.k == V_STR) {
		dict_set(r, d, key.u.s->p, key.u.s->len, 1, key, v);
		return;
	}
	struct val t = key_text(r, key, line);
	dict_set(r, d, t.u.s->p, t.u.s->len, 0, key, v);
}

struct val
tmpl_val_dict(struct jdict *d, enum vk k)
{
	struct val v;
	v.k = k;
	v.u.d = d;
	return v;
}

struct val
tmpl_val_func(struct rt *r, const char *name, struct val self)
{
	struct val v;
	struct func *fn = tmpl_val_alloc(r, sizeof(*fn));
	fn->name = name;
	fn->self = self;
	v.k = V_FUNC;
	v.u.fn = fn;
	return v;
}

/* Python's names of the kinds of list, by enum lk. */
static const char *const list_type_names[] = { "list", "tuple", "range", "dict_keys", "dict_values", "dict_items" };

const char *
tmpl_val_type_name(struct val v)
{
	switch (v.k) {
	case V_UNDEF: return "undefined";
	case V_NONE: return "none";
	case V_BOOL: return "bool";
	case V_INT: return "int";
	case V_FLOAT: return "float";
	case V_STR: return "string";
	case V_LIST: return list_type_names[v.u.l->kind];
	case V_DICT: return "dict";
	case V_NS: return "namespace";
	case V_MACRO: return "macro";
	case V_FUNC: return "function";
	}
	return "?";
}

int
tmpl_val_truthy(struct val v)
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

void
tmpl_val_put(struct rt *r, struct outbuf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + n + 1)
			cap *= 2;
		if (cap > TMPL_MAX_OUTPUT + 1)
			tmpl_fail(&r->f, "template output exceeds %u MiB", TMPL_MAX_OUTPUT >> 20);
		char *p;
		if (b->heap) {
			p = realloc(b->p, cap);
			if (!p)
				tmpl_fail(&r->f, "out of memory");
		} else {
			p = tmpl_alloc(&r->ar, &r->f, cap);
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

void
tmpl_val_puts(struct rt *r, struct outbuf *b, const char *s)
{
	tmpl_val_put(r, b, s, strlen(s));
}

/* Moves a temporary buffer into an arena string. */
struct val
tmpl_val_take(struct rt *r, struct outbuf *b)
{
	struct val v = tmpl_val_str(r, b->p ? b->p : "", b->n);
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
	/* Python's repr: the shortest digits that read back the same, in
	 * fixed notation for exponents -4 to 15 ("100.0", "0.0001"), else
	 * as "1e+16" (%g would write 100.0 as "1e+02"). */
	char e[40], digits[24], *m = e;
	int p, x, nd = 0, o = 0;
	for (p = 0; p < 17; p++) {
		snprintf(e, sizeof(e), "%.*e", p, f);
		if (strtod(e, NULL) == f)
			break;
	}
	if (*m == '-')
		m++;
	for (; *m && *m != 'e'; m++)
		if (*m != '.')
			digits[nd++] = *m;
	x = atoi(m + 1);
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	if (x < -4 || x >= 16) {
		snprintf(buf, n, "%s%c%s%.*se%c%02d", f < 0 ? "-" : "", digits[0], nd > 1 ? "." : "", nd - 1,
		    digits + 1, x < 0 ? '-' : '+', x < 0 ? -x : x);
		return;
	}
	char t[64];
	if (signbit(f))
		t[o++] = '-';
	if (x < 0) {
		t[o++] = '0', t[o++] = '.';
		for (int i = -1; i > x; i--)
			t[o++] = '0';
		for (int i = 0; i < nd; i++)
			t[o++] = digits[i];
	} else {
		for (int i = 0; i <= x; i++)
			t[o++] = i < nd ? digits[i] : '0';
		t[o++] = '.';
		if (nd <= x + 1)
			t[o++] = '0';
		for (int i = x + 1; i < nd; i++)
			t[o++] = digits[i];
	}
	t[o] = 0;
	snprintf(buf, n, "%s", t);
}


static void
repr_str(struct rt *r, struct outbuf *b, const struct jstr *s)
{
	char q = memchr(s->p, '\'', s->len) && !memchr(s->p, '"', s->len) ? '"' : '\'';
	tmpl_val_put(r, b, &q, 1);
	for (size_t i = 0; i < s->len; i++) {
		unsigned char c = (unsigned char)s->p[i];
		char esc[8];
		if (c == '\\') tmpl_val_puts(r, b, "\\\\");
		else if (c == (unsigned char)q) { esc[0] = '\\'; esc[1] = q; tmpl_val_put(r, b, esc, 2); }
		else if (c == '\n') tmpl_val_puts(r, b, "\\n");
		else if (c == '\r') tmpl_val_puts(r, b, "\\r");
		else if (c == '\t') tmpl_val_puts(r, b, "\\t");
		else if (c < 0x20 || c == 0x7f) { snprintf(esc, sizeof(esc), "\\x%02x", c); tmpl_val_puts(r, b, esc); }
		else tmpl_val_put(r, b, (const char *)&c, 1);
	}
	tmpl_val_put(r, b, &q, 1);
}

/* A value nested deeper than TMPL_MAX_VAL_DEPTH: most likely one that holds
 * itself (a namespace holding a list that holds it), which Python prints
 * with [...]; here it is an error, as tojson's. */
static void
check_depth(struct rt *r, int depth)
{
	if (depth > TMPL_MAX_VAL_DEPTH)
		tmpl_fail(&r->f, "value nested too deeply (more than %d levels; does a list or dict hold itself?)",
		    TMPL_MAX_VAL_DEPTH);
}

static void
repr_at(struct rt *r, struct outbuf *b, struct val v, int top, int depth)
{
	char buf[96];   /* a float, an int or "range(a, b, c)" */
	check_depth(r, depth);
	switch (v.k) {
	case V_UNDEF: break;
	case V_NONE: tmpl_val_puts(r, b, "None"); break;
	case V_BOOL: tmpl_val_puts(r, b, v.u.i ? "True" : "False"); break;
	case V_INT: snprintf(buf, sizeof(buf), "%lld", (long long)v.u.i); tmpl_val_puts(r, b, buf); break;
	case V_FLOAT: fmt_float(buf, sizeof(buf), v.u.f); tmpl_val_puts(r, b, buf); break;
	case V_STR:
		if (top)
			tmpl_val_put(r, b, v.u.s->p, v.u.s->len);
		else
			repr_str(r, b, v.u.s);
		break;
	case V_LIST: {
		const struct jlist *l = v.u.l;
		if (l->kind == L_RANGE) {
			/* As Python's repr: the step only when it is not 1. */
			if (l->step == 1)
				snprintf(buf, sizeof(buf), "range(%lld, %lld)", (long long)l->start, (long long)l->stop);
			else
				snprintf(buf, sizeof(buf), "range(%lld, %lld, %lld)", (long long)l->start, (long long)l->stop,
				    (long long)l->step);
			tmpl_val_puts(r, b, buf);
			break;
		}
		if (l->kind >= L_KEYS) {   /* dict_keys([...]) and the like */
			tmpl_val_puts(r, b, list_type_names[l->kind]);
			tmpl_val_puts(r, b, "(");
		}
		tmpl_val_puts(r, b, l->kind == L_TUPLE ? "(" : "[");
		for (size_t i = 0; i < l->n; i++) {
			if (i)
				tmpl_val_puts(r, b, ", ");
			repr_at(r, b, l->v[i], 0, depth + 1);
		}
		tmpl_val_puts(r, b, l->kind != L_TUPLE ? "]" : l->n == 1 ? ",)" : ")");
		if (l->kind >= L_KEYS)
			tmpl_val_puts(r, b, ")");
		break;
	}
	case V_DICT: case V_NS:
		tmpl_val_puts(r, b, v.k == V_NS ? "<Namespace {" : "{");
		for (size_t i = 0; i < v.u.d->n; i++) {
			if (i)
				tmpl_val_puts(r, b, ", ");
			repr_at(r, b, v.u.d->kv[i], 0, depth + 1);
			tmpl_val_puts(r, b, ": ");
			repr_at(r, b, v.u.d->v[i], 0, depth + 1);
		}
		tmpl_val_puts(r, b, v.k == V_NS ? "}>" : "}");
		break;
	case V_MACRO: tmpl_val_puts(r, b, "<macro>"); break;
	case V_FUNC: tmpl_val_puts(r, b, "<function>"); break;
	}
}

/* str() when TOP, repr() inside containers, as Python prints them. */
void
tmpl_val_repr(struct rt *r, struct outbuf *b, struct val v, int top)
{
	repr_at(r, b, v, top, 0);
}

struct val
tmpl_val_to_str(struct rt *r, struct val v)
{
	struct outbuf b = { 0 };
	if (v.k == V_STR)
		return v;
	tmpl_val_repr(r, &b, v, 1);
	return tmpl_val_take(r, &b);
}

/* A JSON string as Python's json.dumps writes it: with ENSURE_ASCII every
 * code point but printable ASCII as \uXXXX (a surrogate pair past the BMP),
 * else only the quote, the backslash and control characters escaped. */
static void
json_str(struct rt *r, struct outbuf *b, const char *s, size_t n, int ascii)
{
	tmpl_val_puts(r, b, "\"");
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		char esc[16];
		uint32_t cp;
		size_t l = 1;
		switch (c) {
		case '"': tmpl_val_puts(r, b, "\\\""); break;
		case '\\': tmpl_val_puts(r, b, "\\\\"); break;
		case '\n': tmpl_val_puts(r, b, "\\n"); break;
		case '\r': tmpl_val_puts(r, b, "\\r"); break;
		case '\t': tmpl_val_puts(r, b, "\\t"); break;
		case '\b': tmpl_val_puts(r, b, "\\b"); break;
		case '\f': tmpl_val_puts(r, b, "\\f"); break;
		default:
			if (c < 0x20 || (ascii && c == 0x7f)) {
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				tmpl_val_puts(r, b, esc);
			} else if (c < 0x80 || !ascii) {
				tmpl_val_put(r, b, (const char *)&c, 1);
			} else {
				l = utf8_decode((const unsigned char *)s + i, n - i, &cp);
				if (cp >= UCP_RAW_BYTE)   /* not UTF-8: a byte, as Python's surrogateescape would show */
					snprintf(esc, sizeof(esc), "\\udc%02x", cp & 0xFF);
				else if (cp >= 0x10000)
					snprintf(esc, sizeof(esc), "\\u%04x\\u%04x", 0xD800 + ((cp - 0x10000) >> 10),
					    0xDC00 + ((cp - 0x10000) & 0x3FF));
				else
					snprintf(esc, sizeof(esc), "\\u%04x", cp);
				tmpl_val_puts(r, b, esc);
			}
		}
		i += l;
	}
	tmpl_val_puts(r, b, "\"");
}

/* A key as json.dumps writes it: a string, or a number, true, false or
 * null in quotes; a tuple fails as in Python. */
static void
json_key(struct rt *r, struct outbuf *b, struct val k, int ascii)
{
	char buf[64];
	const char *s = buf;

	switch (k.k) {
	case V_STR: json_str(r, b, k.u.s->p, k.u.s->len, ascii); return;
	case V_BOOL: s = k.u.i ? "true" : "false"; break;
	case V_NONE: s = "null"; break;
	case V_INT: snprintf(buf, sizeof(buf), "%lld", (long long)k.u.i); break;
	case V_FLOAT:
		if (isnan(k.u.f)) s = "NaN";
		else if (isinf(k.u.f)) s = k.u.f < 0 ? "-Infinity" : "Infinity";
		else fmt_float(buf, sizeof(buf), k.u.f);
		break;
	default:
		tmpl_fail(&r->f, "tojson: keys must be str, int, float, bool or None, not %s", tmpl_val_type_name(k));
	}
	json_str(r, b, s, strlen(s), ascii);
}

static void
json_indent(struct rt *r, struct outbuf *b, const struct json_opts *o, int level)
{
	tmpl_val_puts(r, b, "\n");
	for (int i = 0; i < level; i++)
		tmpl_val_put(r, b, o->indent, o->indent_len);
}

/* Appends the separator SEP given to tojson, or json.dumps' default DEF. */
static void
json_sep(struct rt *r, struct outbuf *b, const struct jstr *sep, const char *def)
{
	if (sep)
		tmpl_val_put(r, b, sep->p, sep->len);
	else
		tmpl_val_puts(r, b, def);
}

void
tmpl_val_to_json(struct rt *r, struct outbuf *b, struct val v, const struct json_opts *o, int level)
{
	char buf[64];
	/* json.dumps: ", " on one line, "," when indenting; ": " between a key and its value. */
	const char *item_def = o->indent ? "," : ", ";

	if (level > 100)
		tmpl_fail(&r->f, "tojson: nesting too deep");
	switch (v.k) {
	case V_UNDEF: case V_NONE: tmpl_val_puts(r, b, "null"); break;
	case V_BOOL: tmpl_val_puts(r, b, v.u.i ? "true" : "false"); break;
	case V_INT: snprintf(buf, sizeof(buf), "%lld", (long long)v.u.i); tmpl_val_puts(r, b, buf); break;
	case V_FLOAT:
		if (isnan(v.u.f)) tmpl_val_puts(r, b, "NaN");
		else if (isinf(v.u.f)) tmpl_val_puts(r, b, v.u.f < 0 ? "-Infinity" : "Infinity");
		else { fmt_float(buf, sizeof(buf), v.u.f); tmpl_val_puts(r, b, buf); }
		break;
	case V_STR: json_str(r, b, v.u.s->p, v.u.s->len, o->ascii); break;
	case V_LIST:
		/* json.dumps takes lists and tuples, not a range or a dict view. */
		if (v.u.l->kind > L_TUPLE)
			tmpl_fail(&r->f, "tojson: cannot serialize a %s", tmpl_val_type_name(v));
		if (v.u.l->n == 0) {
			tmpl_val_puts(r, b, "[]");
			break;
		}
		tmpl_val_puts(r, b, "[");
		for (size_t i = 0; i < v.u.l->n; i++) {
			if (i)
				json_sep(r, b, o->item_sep, item_def);
			if (o->indent)
				json_indent(r, b, o, level + 1);
			tmpl_val_to_json(r, b, v.u.l->v[i], o, level + 1);
		}
		if (o->indent)
			json_indent(r, b, o, level);
		tmpl_val_puts(r, b, "]");
		break;
	case V_DICT: case V_NS: {
		size_t n = v.u.d->n, *ord;
		if (n == 0) {
			tmpl_val_puts(r, b, "{}");
			break;
		}
		ord = tmpl_val_alloc(r, n * sizeof(*ord));
		for (size_t i = 0; i < n; i++)
			ord[i] = i;
		if (o->sort_keys) {
			/* A step a comparison: the steps bound the sort, as sort's. */
			for (size_t i = 1; i < n; i++)
				for (size_t j = i; j > 0 && (tmpl_eval_charge(r, 1),
				    tmpl_val_compare(r, v.u.d->kv[ord[j - 1]], v.u.d->kv[ord[j]]) > 0); j--) {
					size_t t = ord[j]; ord[j] = ord[j - 1]; ord[j - 1] = t;
				}
		}
		tmpl_val_puts(r, b, "{");
		for (size_t i = 0; i < n; i++) {
			if (i)
				json_sep(r, b, o->item_sep, item_def);
			if (o->indent)
				json_indent(r, b, o, level + 1);
			json_key(r, b, v.u.d->kv[ord[i]], o->ascii);
			json_sep(r, b, o->key_sep, ": ");
			tmpl_val_to_json(r, b, v.u.d->v[ord[i]], o, level + 1);
		}
		if (o->indent)
			json_indent(r, b, o, level);
		tmpl_val_puts(r, b, "}");
		break;
	}
	default:
		tmpl_fail(&r->f, "tojson: cannot serialize a %s", tmpl_val_type_name(v));
	}
}

/* --- comparisons --- */

int
tmpl_val_is_num(struct val v)
{
	return v.k == V_INT || v.k == V_FLOAT || v.k == V_BOOL;
}

double
tmpl_val_num(struct val v)
{
	return v.k == V_FLOAT ? v.u.f : (double)v.u.i;
}

static int
equal_at(struct rt *r, struct val a, struct val b, int depth)
{
	check_depth(r, depth);
	if (tmpl_val_is_num(a) && tmpl_val_is_num(b)) {
		if (a.k != V_FLOAT && b.k != V_FLOAT)
			return a.u.i == b.u.i;
		return tmpl_val_num(a) == tmpl_val_num(b);
	}
	if (a.k != b.k)
		return 0;
	switch (a.k) {
	case V_UNDEF: case V_NONE: return 1;
	case V_STR:
		if (a.u.s->len != b.u.s->len)
			return 0;
		tmpl_eval_charge(r, a.u.s->len / TMPL_BYTES_PER_STEP);
		return memcmp(a.u.s->p, b.u.s->p, a.u.s->len) == 0;
	case V_LIST:
		if (a.u.l == b.u.l)   /* the same list, as Python's identity shortcut */
			return 1;
		/* A list is not equal to a tuple, a range or a view; dict_values
		 * equal only themselves. */
		if (a.u.l->n != b.u.l->n || a.u.l->kind != b.u.l->kind || a.u.l->kind == L_VALUES)
			return 0;
		tmpl_eval_charge(r, a.u.l->n);
		if (a.u.l->kind == L_KEYS || a.u.l->kind == L_ITEMS) {
			/* Views of keys and items compare as sets: each item of A in
			 * B (their items are unique, so the lengths settle the rest). */
			for (size_t i = 0; i < a.u.l->n; i++) {
				size_t j = 0;
				tmpl_eval_charge(r, b.u.l->n);
				while (j < b.u.l->n && !equal_at(r, a.u.l->v[i], b.u.l->v[j], depth + 1))
					j++;
				if (j == b.u.l->n)
					return 0;
			}
			return 1;
		}
		for (size_t i = 0; i < a.u.l->n; i++)
			if (!equal_at(r, a.u.l->v[i], b.u.l->v[i], depth + 1))
				return 0;
		return 1;
	case V_NS:   /* Jinja's Namespace has no __eq__: itself only */
		return a.u.d == b.u.d;
	case V_DICT:
		if (a.u.d == b.u.d)
			return 1;
		if (a.u.d->n != b.u.d->n)
			return 0;
		tmpl_eval_charge(r, a.u.d->n);
		for (size_t i = 0; i < a.u.d->n; i++) {
			struct val *o = tmpl_val_dict_find_key(r, b.u.d, a.u.d->kv[i], 0);
			if (!o || !equal_at(r, a.u.d->v[i], *o, depth + 1))
				return 0;
		}
		return 1;
	default:
		return a.u.fn == b.u.fn;
	}
}

int
tmpl_val_equal(struct rt *r, struct val a, struct val b)
{
	return equal_at(r, a, b, 0);
}

static int
compare_at(struct rt *r, struct val a, struct val b, int depth, int line)
{
	check_depth(r, depth);
	if (tmpl_val_is_num(a) && tmpl_val_is_num(b)) {
		double x = tmpl_val_num(a), y = tmpl_val_num(b);
		return x < y ? -1 : x > y;
	}
	if (a.k == V_STR && b.k == V_STR) {
		size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
		int c;
		tmpl_eval_charge(r, n / TMPL_BYTES_PER_STEP);
		c = memcmp(a.u.s->p, b.u.s->p, n);
		if (c)
			return c < 0 ? -1 : 1;
		return a.u.s->len < b.u.s->len ? -1 : a.u.s->len > b.u.s->len;
	}
	/* Python orders a list with a list and a tuple with a tuple, never one
	 * with the other (a TypeError there, as in Jinja), nor ranges (a view's
	 * < is a subset test, which no template needs).  As Python's, the
	 * first items that are not == decide, so [{}, 1] < [{}, 2] holds. */
	if (a.k == V_LIST && b.k == V_LIST && a.u.l->kind <= L_TUPLE && a.u.l->kind == b.u.l->kind) {
		tmpl_eval_charge(r, a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n);
		for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
			if (equal_at(r, a.u.l->v[i], b.u.l->v[i], depth + 1))
				continue;
			return compare_at(r, a.u.l->v[i], b.u.l->v[i], depth + 1, line);
		}
		return a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
	}
	if (line > 0)
		tmpl_fail(&r->f, "line %d: cannot compare %s with %s", line, tmpl_val_type_name(a), tmpl_val_type_name(b));
	tmpl_fail(&r->f, "cannot compare %s with %s", tmpl_val_type_name(a), tmpl_val_type_name(b));
}

int
tmpl_val_compare(struct rt *r, struct val a, struct val b)
{
	return compare_at(r, a, b, 0, 0);
}

int
tmpl_val_compare_at(struct rt *r, struct val a, struct val b, int line)
{
	return compare_at(r, a, b, 0, line);
}

/* --- strings (Python semantics: code points, Unicode whitespace) --- */

size_t
tmpl_val_cp_count(const struct jstr *s)
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
struct val
tmpl_val_strip(struct rt *r, struct val s, const struct jstr *chars, int left, int right)
{
	const char *p = s.u.s->p;
	size_t a = 0, b = s.u.s->len;

	/* A scan of S, and with CHARS a search of them per code point. */
	tmpl_eval_charge(r, s.u.s->len / TMPL_BYTES_PER_STEP);
	for (;;) {
		if (!left || a >= b)
			break;
		uint32_t cp;
		size_t l = utf8_decode((const unsigned char *)p + a, b - a, &cp);
		if (chars)
			tmpl_eval_charge(r, chars->len / TMPL_BYTES_PER_STEP);
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
		if (chars)
			tmpl_eval_charge(r, chars->len / TMPL_BYTES_PER_STEP);
		int hit = chars ? memmem(chars->p, chars->len, p + st, b - st) != NULL : py_space(cp);
		if (!hit)
			break;
		b = st;
	}
	return tmpl_val_str(r, p + a, b - a);
}

struct val
tmpl_val_replace(struct rt *r, struct val s, const struct jstr *old, const struct jstr *new, int64_t count)
{
	struct outbuf b = { 0 };
	const char *p = s.u.s->p, *end = p + s.u.s->len;
	int64_t done = 0;

	tmpl_eval_charge(r, s.u.s->len / TMPL_BYTES_PER_STEP);
	if (old->len == 0) {
		/* Python inserts NEW between every character. */
		for (size_t i = 0; i <= s.u.s->len; i++) {
			if (count < 0 || done < count) {
				tmpl_val_put(r, &b, new->p, new->len);
				done++;
			}
			if (i < s.u.s->len)
				tmpl_val_put(r, &b, p + i, 1);
		}
		return tmpl_val_take(r, &b);
	}
	while (p < end) {
		const char *hit = (count < 0 || done < count) ? memmem(p, end - p, old->p, old->len) : NULL;
		if (!hit) {
			tmpl_val_put(r, &b, p, end - p);
			break;
		}
		tmpl_val_put(r, &b, p, hit - p);
		tmpl_val_put(r, &b, new->p, new->len);
		p = hit + old->len;
		done++;
	}
	if (!b.p)
		tmpl_val_put(r, &b, "", 0);
	return tmpl_val_take(r, &b);
}

/* The code point of S[lo..hi) that starts before byte I, or -1 at LO. */
static size_t
cp_back(const char *s, size_t lo, size_t i, uint32_t *cp)
{
	size_t st = i - 1;
	while (st > lo && i - st < 4 && ((unsigned char)s[st] & 0xC0) == 0x80)
		st--;
	if (utf8_decode((const unsigned char *)s + st, i - st, cp) != i - st) {
		st = i - 1;   /* not a whole character: the last byte alone */
		*cp = UCP_RAW_BYTE | (unsigned char)s[st];
	}
	return st;
}

/* Python's final sigma: the capital sigma at S[i..i+n), within S[lo..hi),
 * lowers to U+03C2 when a cased code point comes before it and none after
 * it, case-ignorable ones skipped on both sides. */
static int
final_sigma(const char *s, size_t lo, size_t hi, size_t i, size_t n)
{
	uint32_t cp = 0;
	size_t j = i;
	int before = 0;

	while (j > lo) {
		j = cp_back(s, lo, j, &cp);
		if (!(unicode_case_class(cp) & UNICODE_CASE_IGNORABLE)) {
			before = (unicode_case_class(cp) & UNICODE_CASED) != 0;
			break;
		}
	}
	if (!before)
		return 0;
	for (j = i + n; j < hi;) {
		j += utf8_decode((const unsigned char *)s + j, hi - j, &cp);
		if (!(unicode_case_class(cp) & UNICODE_CASE_IGNORABLE))
			return !(unicode_case_class(cp) & UNICODE_CASED);
	}
	return 1;
}

/* Appends mapping WHICH of the code point at S[i..i+n) (context S[lo..hi)) to B. */
static void
case_put(struct rt *r, struct outbuf *b, const char *s, size_t lo, size_t hi, size_t i, size_t n, uint32_t cp,
	 int which)
{
	uint32_t m[3];
	char u[4];
	int k;

	if (cp >= UCP_RAW_BYTE) {
		tmpl_val_put(r, b, s + i, n);
		return;
	}
	if (which == UNICODE_LOWER && cp == 0x3A3) {
		m[0] = final_sigma(s, lo, hi, i, n) ? 0x3C2 : 0x3C3;
		k = 1;
	} else {
		k = unicode_case_map(cp, which, m);
	}
	for (int j = 0; j < k; j++)
		tmpl_val_put(r, b, u, utf8_encode(m[j], u));
}

/* Python's \s in a str pattern, for Jinja's title filter: [-\s({\[<]. */
static int
title_sep(uint32_t cp)
{
	return py_space(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
}

struct val
tmpl_val_case(struct rt *r, struct val s, enum tmpl_case mode)
{
	struct outbuf b = { 0 };
	const char *p = s.u.s->p;
	size_t n = s.u.s->len, word = 0;
	int prev_cased = 0, prev_sep = 1;

	tmpl_eval_charge(r, n / TMPL_BYTES_PER_STEP);
	tmpl_val_put(r, &b, "", 0);
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t l = utf8_decode((const unsigned char *)p + i, n - i, &cp);
		int which = UNICODE_LOWER, cls = cp < UCP_RAW_BYTE ? unicode_case_class(cp) : 0, sep;
		switch (mode) {
		case TMPL_LOWER: which = UNICODE_LOWER; break;
		case TMPL_UPPER: which = UNICODE_UPPER; break;
		case TMPL_CAPITALIZE: which = i == 0 ? UNICODE_TITLE : UNICODE_LOWER; break;
		case TMPL_TITLE: which = prev_cased ? UNICODE_LOWER : UNICODE_TITLE; break;
		case TMPL_JINJA_TITLE:
			/* item[0].upper() + item[1:].lower() for each item of
			 * re.split('([-\s({\[<]+)'): the lowering sees only its word. */
			sep = title_sep(cp);
			if (sep || prev_sep)
				word = i + l;
			which = sep ? UNICODE_LOWER : prev_sep ? UNICODE_UPPER : UNICODE_LOWER;
			prev_sep = sep;
			break;
		}
		case_put(r, &b, p, mode == TMPL_JINJA_TITLE ? word : 0, n, i, l, cp, which);
		prev_cased = (cls & UNICODE_CASED) != 0;
		i += l;
	}
	return tmpl_val_take(r, &b);
}

struct val
tmpl_val_split(struct rt *r, struct val s, const struct jstr *sep, int64_t maxsplit)
{
	struct jlist *l = tmpl_val_list_new(r, 8);
	const char *p = s.u.s->p, *end = p + s.u.s->len;

	tmpl_eval_charge(r, s.u.s->len / TMPL_BYTES_PER_STEP);
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
				tmpl_val_list_push(r, l, tmpl_val_str(r, q, e2 - q));
				break;
			}
			while (q < end && !isspace((unsigned char)*q))
				q++;
			tmpl_val_list_push(r, l, tmpl_val_str(r, p, q - p));
			p = q;
		}
		return tmpl_val_list(l);
	}
	if (sep->len == 0)
		tmpl_fail(&r->f, "split: empty separator");
	for (;;) {
		const char *hit = (maxsplit < 0 || (int64_t)l->n < maxsplit) ? memmem(p, end - p, sep->p, sep->len) : NULL;
		if (!hit) {
			tmpl_val_list_push(r, l, tmpl_val_str(r, p, end - p));
			break;
		}
		tmpl_val_list_push(r, l, tmpl_val_str(r, p, hit - p));
		p = hit + sep->len;
	}
	return tmpl_val_list(l);
}

/* Code point offsets to byte offsets, for slicing. */
size_t
tmpl_val_cp_to_byte(const struct jstr *s, size_t cp)
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

/* --- access --- */

struct val
tmpl_val_getattr(struct rt *r, struct val obj, const char *name, int line)
{
	const char *m = tmpl_filter_method(obj, name);

	switch (obj.k) {
	case V_UNDEF:
		tmpl_fail(&r->f, "line %d: '%s' of an undefined value", line, name);
		break;
	case V_NONE:
		tmpl_fail(&r->f, "line %d: None has no attribute '%s'", line, name);
		break;
	case V_STR:
	case V_LIST:
		return m ? tmpl_val_func(r, m, obj) : UNDEF;
	case V_DICT:
		if (m)
			return tmpl_val_func(r, m, obj);
		/* fall through */
	case V_NS: {
		struct val *v = tmpl_val_dict_find(r, obj.u.d, name, strlen(name));
		/* d.update is undefined whatever the keys, as in the sandbox
		 * (d['update'] still reads a key). */
		if (v && !tmpl_filter_unsafe(obj, name))
			return *v;
		if (obj.k == V_DICT && obj.u.d->loop && !strcmp(name, "cycle"))
			return tmpl_val_func(r, "cycle", obj);
		return UNDEF;
	}
	default:
		return UNDEF;
	}
	return UNDEF;
}

struct val
tmpl_val_getitem(struct rt *r, struct val obj, struct val key, int line)
{
	switch (obj.k) {
	case V_UNDEF:
		tmpl_fail(&r->f, "line %d: subscript of an undefined value", line);
		break;
	case V_LIST:
		if (obj.u.l->kind >= L_KEYS)
			return UNDEF;   /* a view is not subscriptable: Jinja's getitem gives undefined */
		if (key.k == V_INT || key.k == V_BOOL) {
			int64_t i = key.u.i, n = (int64_t)obj.u.l->n;
			if (i < 0)
				i += n;
			if (i < 0 || i >= n)
				return UNDEF;
			return obj.u.l->v[i];
		}
		tmpl_fail(&r->f, "line %d: list index must be an integer, not %s", line, tmpl_val_type_name(key));
		break;
	case V_STR:
		if (key.k == V_INT) {
			int64_t i = key.u.i, n;
			tmpl_eval_charge(r, obj.u.s->len / TMPL_BYTES_PER_STEP);
			n = (int64_t)tmpl_val_cp_count(obj.u.s);
			if (i < 0)
				i += n;
			if (i < 0 || i >= n)
				return UNDEF;
			size_t a = tmpl_val_cp_to_byte(obj.u.s, (size_t)i), b = tmpl_val_cp_to_byte(obj.u.s, (size_t)i + 1);
			return tmpl_val_str(r, obj.u.s->p + a, b - a);
		}
		tmpl_fail(&r->f, "line %d: string index must be an integer", line);
		break;
	case V_DICT: case V_NS: {
		struct val *v;
		if ((key.k == V_LIST && key.u.l->kind != L_TUPLE && key.u.l->kind != L_RANGE) || key.k == V_DICT ||
		    key.k == V_NS || key.k == V_UNDEF || key.k == V_MACRO || key.k == V_FUNC)
			return UNDEF;   /* Jinja's getitem: a key Python cannot hash finds nothing */
		v = tmpl_val_dict_find_key(r, obj.u.d, key, line);
		return v ? *v : UNDEF;
	}
	case V_NONE:
		tmpl_fail(&r->f, "line %d: None is not subscriptable", line);
		break;
	default:
		tmpl_fail(&r->f, "line %d: a %s is not subscriptable", line, tmpl_val_type_name(obj));
	}
	return UNDEF;
}

/* Items of an iterable as a list (dict: keys; string: characters). */
struct jlist *
tmpl_val_iter(struct rt *r, struct val v, int line)
{
	struct jlist *l;
	switch (v.k) {
	case V_UNDEF:
		return tmpl_val_list_new(r, 1);
	case V_LIST:
		return v.u.l;
	case V_DICT: case V_NS:
		l = tmpl_val_list_new(r, v.u.d->n + 1);
		for (size_t i = 0; i < v.u.d->n; i++)
			tmpl_val_list_push(r, l, v.u.d->kv[i]);
		return l;
	case V_STR:
		l = tmpl_val_list_new(r, v.u.s->len + 1);
		for (size_t i = 0; i < v.u.s->len;) {
			uint32_t cp;
			size_t k = utf8_decode((const unsigned char *)v.u.s->p + i, v.u.s->len - i, &cp);
			tmpl_val_list_push(r, l, tmpl_val_str(r, v.u.s->p + i, k));
			i += k;
		}
		return l;
	default:
		tmpl_fail(&r->f, "line %d: a %s is not iterable", line, tmpl_val_type_name(v));
	}
	return NULL;
}

int64_t
tmpl_val_length(struct rt *r, struct val v, int line)
{
	switch (v.k) {
	case V_UNDEF: return 0;
	case V_STR:
		tmpl_eval_charge(r, v.u.s->len / TMPL_BYTES_PER_STEP);
		return (int64_t)tmpl_val_cp_count(v.u.s);
	case V_LIST: return (int64_t)v.u.l->n;
	case V_DICT:
		/* Jinja's LoopContext has no len(): loop.length is the items'. */
		if (v.u.d->loop)
			tmpl_fail(&r->f, "line %d: the loop object has no length (loop.length counts the items)", line);
		return (int64_t)v.u.d->n;
	default: tmpl_fail(&r->f, "line %d: a %s has no length", line, tmpl_val_type_name(v));
	}
	return 0;
}

/* Argument I by position, or by keyword NAME, or DEF. */
struct val
tmpl_val_arg(const struct args *a, int i, const char *name, struct val def)
{
	if (i >= 0 && i < a->npos)
		return a->pos[i];
	for (int k = 0; name && k < a->nkw; k++)
		if (!strcmp(a->kwn[k], name))
			return a->kw[k];
	return def;
}

const struct jstr *
tmpl_val_want_str(struct rt *r, struct val v, const char *what, int line)
{
	if (v.k != V_STR)
		tmpl_fail(&r->f, "line %d: %s expects a string, got %s", line, what, tmpl_val_type_name(v));
	return v.u.s;
}

int64_t
tmpl_val_want_int(struct rt *r, struct val v, const char *what, int line)
{
	if (v.k == V_INT || v.k == V_BOOL)
		return v.u.i;
	if (v.k == V_FLOAT) {
		/* Outside this range (or NaN) the conversion is undefined in C. */
		if (!(v.u.f >= -0x1p63 && v.u.f < 0x1p63))
			tmpl_fail(&r->f, "line %d: %s: %g does not fit in an integer", line, what, v.u.f);
		return (int64_t)v.u.f;
	}
	tmpl_fail(&r->f, "line %d: %s expects an integer, got %s", line, what, tmpl_val_type_name(v));
	return 0;
}
