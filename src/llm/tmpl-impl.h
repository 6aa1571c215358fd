/* tmpl-impl.h -- what the parts of the Jinja interpreter (tmpl*.c) share: arena, values, tokens, tree. */
#ifndef NATTER_TMPL_IMPL_H
#define NATTER_TMPL_IMPL_H

/*
 * The interpreter is one module in six files, each with one concern:
 *
 *   tmpl.c         the public entry points (compile, render), the arena and
 *                  the error unwinding that every other part uses
 *   tmpl-lex.c     source text -> tokens (whitespace control included)
 *   tmpl-parse.c   tokens -> tree of statements and expressions
 *   tmpl-val.c     values: construction, printing, comparison, Python's
 *                  string operations, attribute and item access
 *   tmpl-filter.c  everything a template calls by name: filters, tests,
 *                  global functions and the methods of str, dict and list
 *   tmpl-eval.c    walking the tree: expressions, statements, macros
 *   tmpl-builtin.c the built-in templates for models that ship none
 *
 * Nothing here is used outside src/llm/tmpl*.c.  All memory of one compile
 * or one render is in an arena; an error longjmps to the entry point, which
 * frees the arena, so nothing below returns an error code.
 */

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Limits that keep a hostile template from taking the machine. */
#define TMPL_MAX_STEPS 5000000L
#define TMPL_MAX_OUTPUT (32u << 20)
#define TMPL_MAX_ARENA ((size_t)256 << 20)
/* Macro calls in progress: each takes about 4 of the TMPL_MAX_NEST levels
 * below, so past 64 that limit would answer first, in its own words. */
#define TMPL_MAX_DEPTH 50
#define TMPL_MAX_RANGE 1000000
/* How deep the parser, the evaluator and the walks over values (printing,
 * comparing) may recurse.  Real templates nest less than 20; the bounds keep
 * the C stack small (see the frame sizes in tmpl-eval.c), also on a thread. */
#define TMPL_MAX_NEST 256
#define TMPL_MAX_VAL_DEPTH 100
/* A built-in that scans a string pays a step per this many bytes (an
 * evaluation step costs about as much as scanning 64 bytes). */
#define TMPL_BYTES_PER_STEP 64

/* --- arena and errors (tmpl.c) --- */

struct chunk {
	struct chunk *next;
	size_t cap, used;
	max_align_t data[];
};

/* Everything of one compile or one render lives here. */
struct arena {
	struct chunk *head;
	size_t total;
};

/* Errors unwind with longjmp to the compile or render entry point. */
struct fail {
	jmp_buf jb;
	char *err;
	size_t errlen;
	int raised;            /* the message is the template's raise_exception */
};

/* Writes the message into F->err and longjmps to F->jb; never returns. */
_Noreturn void tmpl_fail(struct fail *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* N bytes (16-aligned) from A; fails through F past TMPL_MAX_ARENA or out of memory. */
void *tmpl_alloc(struct arena *a, struct fail *f, size_t n);
void tmpl_arena_free(struct arena *a);

/* --- values --- */

enum vk { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_MACRO, V_FUNC };

struct jstr {
	size_t len;
	char p[];              /* NUL-terminated, may hold NULs */
};

/* Which of Python's sequences a list of items stands for: it decides how
 * the value prints, what it equals and which methods it has, as Jinja shows
 * the Python object (range(3) prints "range(0, 3)", d.items() prints
 * "dict_items([('a', 1)])"); iterating, length and 'in' are the same for all. */
enum lk {
	L_LIST,
	L_TUPLE,               /* printed (a, b) and (a,), unequal to a list */
	L_RANGE,               /* range(): START, STOP and STEP below; indexed, sliced as a range */
	L_KEYS, L_VALUES, L_ITEMS,   /* dict.keys(), values(), items(): views, not subscriptable */
};

struct val;
struct jlist {
	size_t n, cap;
	struct val *v;
	enum lk kind;
	int64_t start, stop, step;   /* L_RANGE: the arguments, as range() prints them */
};

/* Keys in insertion order, as Python's dict.  KV[i] is key I as the
 * template gave it: a string (then K[i] is that string), or a number, None
 * or a tuple (then K[i] is a text telling it apart from the other keys that
 * are not strings: 1, 1.0 and True are one key, as in Python). */
struct jdict {
	size_t n, cap;
	struct jstr **k;
	struct val *kv;
	struct val *v;
	int loop;              /* a for loop's loop object (has cycle); no template can set it */
};

struct node;
struct func;

struct val {
	enum vk k;
	union {
		int64_t i;             /* V_INT, V_BOOL */
		double f;
		struct jstr *s;
		struct jlist *l;
		struct jdict *d;       /* V_DICT, V_NS */
		const struct node *m;  /* V_MACRO: its S_MACRO node */
		struct func *fn;
	} u;
};

/* A callable: a global function (SELF undefined), or a method bound to SELF. */
struct func {
	const char *name;
	struct val self;
};

static const struct val UNDEF = { V_UNDEF, { 0 } };
static const struct val NONE = { V_NONE, { 0 } };

/* --- tokens (tmpl-lex.c) --- */

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

/* Tokens of SRC[0..LEN), ending with T_EOF, in AR.  The text tokens already
 * have trim_blocks, lstrip_blocks and the '-' markers applied.  SRC must
 * outlive the tokens (names and text point into it). */
struct token *tmpl_lex(const char *src, size_t len, struct arena *ar, struct fail *f);

/* --- the tree (tmpl-parse.c) --- */

enum nk {
	/* statements */
	S_TEXT, S_OUT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_BREAK, S_CONTINUE,
	/* expressions */
	E_LIT, E_NAME, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_BIN, E_NEG, E_NOT,
	E_AND, E_OR, E_COND, E_LIST, E_DICT,
	E_CMP,   /* a chain a < b < c: operands in kids, operators in names */
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
	int tuple;               /* E_LIST: a tuple, (a, b) or a, b */
};

/* The statements of the token list TOKS (from tmpl_lex), in AR. */
void tmpl_parse(const struct token *toks, struct arena *ar, struct fail *f, struct node ***body, int *nbody);

/* A compiled template: the tree, in its own arena. */
struct tmpl {
	struct arena ar;
	struct node **body;
	int nbody;
};

/* --- the state of one render --- */

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
	int depth;            /* macro calls */
	int nest;             /* eval and exec_stmt frames on the C stack */
	int brk, cont;        /* pending break / continue */
	time_t now;
};

/* Arguments of a call, filter or test after evaluation. */
struct args {
	struct val pos[16];
	int npos;
	const char *kwn[16];
	struct val kw[16];
	int nkw;
};

/* --- values (tmpl-val.c); every failure goes through R's fail --- */

void *tmpl_val_alloc(struct rt *r, size_t n);
struct val tmpl_val_str_arena(struct arena *ar, struct fail *f, const char *s, size_t n);
struct val tmpl_val_str(struct rt *r, const char *s, size_t n);
struct val tmpl_val_cstr(struct rt *r, const char *s);
struct val tmpl_val_int(int64_t i);
struct val tmpl_val_bool(int b);
struct val tmpl_val_float(double f);
struct jlist *tmpl_val_list_new(struct rt *r, size_t cap);
void tmpl_val_list_push(struct rt *r, struct jlist *l, struct val v);
struct val tmpl_val_list(struct jlist *l);
struct jdict *tmpl_val_dict_new(struct rt *r);
/* The value of the string key K in D, or NULL; charges R's step budget for the scan. */
struct val *tmpl_val_dict_find(struct rt *r, struct jdict *d, const char *k, size_t n);
void tmpl_val_dict_set(struct rt *r, struct jdict *d, const char *k, size_t n, struct val v);
/* The same for a key of any kind; a list or dict as a key fails (unhashable). */
struct val *tmpl_val_dict_find_key(struct rt *r, struct jdict *d, struct val key, int line);
void tmpl_val_dict_set_key(struct rt *r, struct jdict *d, struct val key, struct val v, int line);
struct val tmpl_val_dict(struct jdict *d, enum vk k);
struct val tmpl_val_func(struct rt *r, const char *name, struct val self);
const char *tmpl_val_type_name(struct val v);
int tmpl_val_truthy(struct val v);

/* Appending to an output buffer; TAKE turns it into a string value. */
void tmpl_val_put(struct rt *r, struct outbuf *b, const char *s, size_t n);
void tmpl_val_puts(struct rt *r, struct outbuf *b, const char *s);
struct val tmpl_val_take(struct rt *r, struct outbuf *b);

/* str(v) when TOP, repr(v) inside containers, as Python prints them. */
void tmpl_val_repr(struct rt *r, struct outbuf *b, struct val v, int top);
struct val tmpl_val_to_str(struct rt *r, struct val v);
/* The arguments of Python's json.dumps that Hugging Face's tojson passes on. */
struct json_opts {
	const char *indent;     /* NULL: one line; else the text of one level */
	size_t indent_len;
	const struct jstr *item_sep, *key_sep;   /* NULL: json.dumps' defaults */
	int sort_keys;
	int ascii;              /* ensure_ascii: \uXXXX for all but printable ASCII */
};
/* json.dumps(V, **O) appended to B; LEVEL is the depth of V (0 at the top). */
void tmpl_val_to_json(struct rt *r, struct outbuf *b, struct val v, const struct json_opts *o, int level);

int tmpl_val_is_num(struct val v);
double tmpl_val_num(struct val v);
/* Python's == and ordering; fail past TMPL_MAX_VAL_DEPTH (a list holding itself). */
int tmpl_val_equal(struct rt *r, struct val a, struct val b);
int tmpl_val_compare(struct rt *r, struct val a, struct val b);
/* The same, a failure naming template line LINE (the operator's). */
int tmpl_val_compare_at(struct rt *r, struct val a, struct val b, int line);

/* Python's string operations (code points, Unicode whitespace). */
size_t tmpl_val_cp_count(const struct jstr *s);
size_t tmpl_val_cp_to_byte(const struct jstr *s, size_t cp);
struct val tmpl_val_strip(struct rt *r, struct val s, const struct jstr *chars, int left, int right);
struct val tmpl_val_replace(struct rt *r, struct val s, const struct jstr *old, const struct jstr *new, int64_t count);
/* Python's str.lower, upper, capitalize and title, and Jinja's title filter
 * (each word split at "-", whitespace, "(", "{", "[", "<" gets its first code
 * point upper-cased and the rest lowered), with Unicode's full case
 * mappings and the final sigma. */
enum tmpl_case { TMPL_LOWER, TMPL_UPPER, TMPL_CAPITALIZE, TMPL_TITLE, TMPL_JINJA_TITLE };
struct val tmpl_val_case(struct rt *r, struct val s, enum tmpl_case mode);
struct val tmpl_val_split(struct rt *r, struct val s, const struct jstr *sep, int64_t maxsplit);

/* obj.name (a bound method, a key, or undefined), obj[key], the items of an
 * iterable (dict: keys; string: characters) and length. */
struct val tmpl_val_getattr(struct rt *r, struct val obj, const char *name, int line);
struct val tmpl_val_getitem(struct rt *r, struct val obj, struct val key, int line);
struct jlist *tmpl_val_iter(struct rt *r, struct val v, int line);
int64_t tmpl_val_length(struct rt *r, struct val v, int line);

/* Argument I by position, or by keyword NAME, or DEF; and checked coercions. */
struct val tmpl_val_arg(const struct args *a, int i, const char *name, struct val def);
const struct jstr *tmpl_val_want_str(struct rt *r, struct val v, const char *what, int line);
int64_t tmpl_val_want_int(struct rt *r, struct val v, const char *what, int line);

/* --- called by name (tmpl-filter.c) --- */

struct val tmpl_filter_apply(struct rt *r, struct scope *sc, const char *name, struct val v, const struct args *a,
			     int line);
int tmpl_filter_test(struct rt *r, const char *name, struct val v, const struct args *a, int line);
/* Calls a global function or a bound method. */
struct val tmpl_filter_call(struct rt *r, struct func *fn, const struct args *a, int line);
/* The method NAME of OBJ (a static string), or NULL. */
const char *tmpl_filter_method(struct val obj, const char *name);
/* Whether NAME is a method that would change OBJ (list.append, dict.update
 * ...): transformers' sandbox refuses to call those, so natter does too. */
int tmpl_filter_unsafe(struct val obj, const char *name);
/* The global function NAME (a static string), or NULL. */
const char *tmpl_filter_global(const char *name);

/* --- the evaluator (tmpl-eval.c) --- */

/* Counts N steps of work against TMPL_MAX_STEPS: one per node evaluated,
 * and one per element a built-in scans or compares, so that quadratic
 * built-ins (sort, unique, 'in', dict lookups) fail in bounded time. */
void tmpl_eval_charge(struct rt *r, size_t n);

/* Runs statements BODY[0..N) in SC, writing to R->out. */
void tmpl_eval_body(struct rt *r, struct scope *sc, struct node **body, int n);

#endif
