/* regex.c -- backtracking regex over code points, for pre-tokenizer patterns. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/regex.h"
#include "llm/unicode.h"

enum rkind { R_SET, R_ALT, R_GROUP, R_REPEAT, R_LOOK, R_BOL, R_EOL };

enum { CI_RANGE, CI_FLAGS, CI_NFLAGS };

struct citem {
	int kind;
	uint32_t lo, hi;      /* range, or flag mask in lo */
};

struct rset {
	int neg;
	int n;
	struct citem *items;
};

struct rnode {
	enum rkind kind;
	struct rnode *next;       /* the rest of the sequence */
	struct rset set;          /* R_SET */
	struct rnode **alts;      /* R_ALT: branches */
	int nalts;
	struct rnode *sub;        /* R_GROUP, R_REPEAT, R_LOOK */
	int min, max;             /* R_REPEAT; max < 0 = unbounded */
	int neg;                  /* R_LOOK: (?!...) */
};

struct re {
	struct rnode *root;
	struct rnode **all;       /* every node, for freeing */
	size_t nall, capall;
};

/* --- parser --- */

struct parser {
	const uint32_t *p;
	size_t n, i;
	struct re *re;
	char *err;
	size_t errlen;
	int failed;
};

static void
perr(struct parser *ps, const char *msg)
{
	if (!ps->failed && ps->err)
		snprintf(ps->err, ps->errlen, "regex error at %zu: %s", ps->i, msg);
	ps->failed = 1;
}

static struct rnode *
node_new(struct parser *ps, enum rkind kind)
{
	struct re *re = ps->re;
	struct rnode *n;

	if (re->nall == re->capall) {
		size_t cap = re->capall ? re->capall * 2 : 32;
		struct rnode **a = realloc(re->all, cap * sizeof(*a));
		if (!a) {
			perr(ps, "out of memory");
			return NULL;
		}
		re->all = a;
		re->capall = cap;
	}
	n = calloc(1, sizeof(*n));
	if (!n) {
		perr(ps, "out of memory");
		return NULL;
	}
	n->kind = kind;
	re->all[re->nall++] = n;
	return n;
}

static int
set_add(struct parser *ps, struct rset *s, int kind, uint32_t lo, uint32_t hi)
{
	struct citem *it = realloc(s->items, (s->n + 1) * sizeof(*it));
	if (!it) {
		perr(ps, "out of memory");
		return -1;
	}
	s->items = it;
	it[s->n].kind = kind;
	it[s->n].lo = lo;
	it[s->n].hi = hi;
	s->n++;
	return 0;
}

static int
at_end(const struct parser *ps)
{
	return ps->i >= ps->n;
}

static uint32_t
peek(const struct parser *ps)
{
	return ps->i < ps->n ? ps->p[ps->i] : 0;
}

/* Parses \p{X} or \P{X} after the 'p'/'P'; returns the flag mask. */
static uint32_t
parse_prop(struct parser *ps)
{
	uint32_t name[8];
	int k = 0;

	if (peek(ps) != '{') {
		perr(ps, "expected { after \\p");
		return 0;
	}
	ps->i++;
	while (!at_end(ps) && peek(ps) != '}' && k < 7)
		name[k++] = ps->p[ps->i++];
	if (peek(ps) != '}') {
		perr(ps, "unterminated \\p{...}");
		return 0;
	}
	ps->i++;
	if (k == 1) {
		switch (name[0]) {
		case 'L': return UCP_LETTER;
		case 'N': return UCP_NUMBER;
		case 'P': return UCP_PUNCT;
		case 'S': return UCP_SYMBOL;
		case 'M': return UCP_MARK;
		case 'Z': return UCP_SEPARATOR;
		case 'C': return UCP_CONTROL;
		}
	}
	perr(ps, "unsupported Unicode property");
	return 0;
}

/* Parses an escape (after '\') into set S; returns 0, or -1 on error.
 * For a single literal code point, *LIT gets it (and S is untouched). */
static int
parse_escape(struct parser *ps, struct rset *s, uint32_t *lit)
{
	uint32_t c;

	*lit = (uint32_t)-1;
	if (at_end(ps)) {
		perr(ps, "trailing backslash");
		return -1;
	}
	c = ps->p[ps->i++];
	switch (c) {
	case 'r': *lit = '\r'; return 0;
	case 'n': *lit = '\n'; return 0;
	case 't': *lit = '\t'; return 0;
	case 'f': *lit = '\f'; return 0;
	case 'v': *lit = '\v'; return 0;
	case 's': return set_add(ps, s, CI_FLAGS, UCP_SPACE, 0);
	case 'S': return set_add(ps, s, CI_NFLAGS, UCP_SPACE, 0);
	case 'd': return set_add(ps, s, CI_RANGE, '0', '9');
	case 'D':
		if (set_add(ps, s, CI_RANGE, 0, '0' - 1) < 0)
			return -1;
		return set_add(ps, s, CI_RANGE, '9' + 1, 0xFFFFFFFFu);
	case 'w':
		if (set_add(ps, s, CI_RANGE, 'a', 'z') < 0 || set_add(ps, s, CI_RANGE, 'A', 'Z') < 0 ||
		    set_add(ps, s, CI_RANGE, '0', '9') < 0)
			return -1;
		return set_add(ps, s, CI_RANGE, '_', '_');
	case 'p': {
		uint32_t f = parse_prop(ps);
		return ps->failed ? -1 : set_add(ps, s, CI_FLAGS, f, 0);
	}
	case 'P': {
		uint32_t f = parse_prop(ps);
		return ps->failed ? -1 : set_add(ps, s, CI_NFLAGS, f, 0);
	}
	default:
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			perr(ps, "unsupported escape");
			return -1;
		}
		*lit = c;     /* escaped punctuation stands for itself */
		return 0;
	}
}

static int
parse_class(struct parser *ps, struct rset *s)
{
	/* After '['. */
	if (peek(ps) == '^') {
		s->neg = 1;
		ps->i++;
	}
	int first = 1;
	while (!at_end(ps) && (peek(ps) != ']' || first)) {
		uint32_t lo, hi, lit;
		first = 0;
		if (peek(ps) == '\\') {
			ps->i++;
			if (parse_escape(ps, s, &lit) < 0)
				return -1;
			if (lit == (uint32_t)-1)
				continue;
			lo = lit;
		} else {
			lo = ps->p[ps->i++];
		}
		hi = lo;
		if (peek(ps) == '-' && ps->i + 1 < ps->n && ps->p[ps->i + 1] != ']') {
			ps->i++;
			if (peek(ps) == '\\') {
				ps->i++;
				struct rset dummy = { 0, 0, NULL };
				if (parse_escape(ps, &dummy, &lit) < 0 || lit == (uint32_t)-1) {
					free(dummy.items);
					perr(ps, "bad range end");
					return -1;
				}
				hi = lit;
			} else {
				hi = ps->p[ps->i++];
			}
			if (hi < lo) {
				perr(ps, "reversed range");
				return -1;
			}
		}
		if (set_add(ps, s, CI_RANGE, lo, hi) < 0)
			return -1;
	}
	if (peek(ps) != ']') {
		perr(ps, "unterminated [");
		return -1;
	}
	ps->i++;
	return 0;
}

static struct rnode *parse_alt(struct parser *ps);

static int
parse_int(struct parser *ps, int *out)
{
	int v = 0, any = 0;
	while (!at_end(ps) && peek(ps) >= '0' && peek(ps) <= '9') {
		v = v * 10 + (int)(peek(ps) - '0');
		if (v > 100000) {
			perr(ps, "repeat count too large");
			return -1;
		}
		ps->i++;
		any = 1;
	}
	if (!any)
		return -1;
	*out = v;
	return 0;
}

static struct rnode *
parse_atom(struct parser *ps)
{
	uint32_t c = ps->p[ps->i++];
	struct rnode *n;
	uint32_t lit;

	switch (c) {
	case '(':
		if (peek(ps) == '?') {
			ps->i++;
			uint32_t t = peek(ps);
			ps->i++;
			if (t == ':') {
				n = node_new(ps, R_GROUP);
			} else if (t == '=' || t == '!') {
				n = node_new(ps, R_LOOK);
				if (n)
					n->neg = t == '!';
			} else {
				perr(ps, "unsupported group type");
				return NULL;
			}
		} else {
			n = node_new(ps, R_GROUP);
		}
		if (!n)
			return NULL;
		n->sub = parse_alt(ps);
		if (ps->failed)
			return NULL;
		if (peek(ps) != ')') {
			perr(ps, "missing )");
			return NULL;
		}
		ps->i++;
		return n;
	case '[':
		n = node_new(ps, R_SET);
		if (!n || parse_class(ps, &n->set) < 0)
			return NULL;
		return n;
	case '.':
		n = node_new(ps, R_SET);
		if (!n)
			return NULL;
		n->set.neg = 1;
		if (set_add(ps, &n->set, CI_RANGE, '\n', '\n') < 0 ||
		    set_add(ps, &n->set, CI_RANGE, '\r', '\r') < 0)
			return NULL;
		return n;
	case '^':
		return node_new(ps, R_BOL);
	case '$':
		return node_new(ps, R_EOL);
	case '\\':
		n = node_new(ps, R_SET);
		if (!n || parse_escape(ps, &n->set, &lit) < 0)
			return NULL;
		if (lit != (uint32_t)-1 && set_add(ps, &n->set, CI_RANGE, lit, lit) < 0)
			return NULL;
		return n;
	case ')': case '|': case '*': case '+': case '?': case '{':
		ps->i--;
		perr(ps, "unexpected metacharacter");
		return NULL;
	default:
		n = node_new(ps, R_SET);
		if (!n || set_add(ps, &n->set, CI_RANGE, c, c) < 0)
			return NULL;
		return n;
	}
}

static struct rnode *
parse_seq(struct parser *ps)
{
	struct rnode *head = NULL, *tail = NULL;

	while (!at_end(ps) && peek(ps) != '|' && peek(ps) != ')') {
		struct rnode *a = parse_atom(ps);
		if (!a)
			return NULL;
		for (;;) {
			int min, max;
			uint32_t q = peek(ps);
			if (q == '?') { min = 0; max = 1; ps->i++; }
			else if (q == '*') { min = 0; max = -1; ps->i++; }
			else if (q == '+') { min = 1; max = -1; ps->i++; }
			else if (q == '{') {
				size_t save = ps->i;
				ps->i++;
				if (parse_int(ps, &min) < 0) {
					if (ps->failed)
						return NULL;
					ps->i = save;
					break;
				}
				max = min;
				if (peek(ps) == ',') {
					ps->i++;
					if (peek(ps) == '}')
						max = -1;
					else if (parse_int(ps, &max) < 0) {
						perr(ps, "bad {m,n}");
						return NULL;
					}
				}
				if (peek(ps) != '}' || (max >= 0 && max < min)) {
					perr(ps, "bad {m,n}");
					return NULL;
				}
				ps->i++;
			} else
				break;
			if (peek(ps) == '?') {
				perr(ps, "lazy quantifiers are not supported");
				return NULL;
			}
			struct rnode *r = node_new(ps, R_REPEAT);
			if (!r)
				return NULL;
			r->sub = a;
			r->min = min;
			r->max = max;
			a = r;
		}
		if (tail)
			tail->next = a;
		else
			head = a;
		tail = a;
	}
	if (!head) {
		/* An empty sequence: a group that matches nothing, always succeeds. */
		head = node_new(ps, R_GROUP);
	}
	return head;
}

static struct rnode *
parse_alt(struct parser *ps)
{
	struct rnode *first = parse_seq(ps), *alt;

	if (!first || peek(ps) != '|')
		return first;
	alt = node_new(ps, R_ALT);
	if (!alt)
		return NULL;
	alt->alts = malloc(sizeof(*alt->alts));
	if (!alt->alts) {
		perr(ps, "out of memory");
		return NULL;
	}
	alt->alts[0] = first;
	alt->nalts = 1;
	while (peek(ps) == '|' && !at_end(ps)) {
		ps->i++;
		struct rnode *b = parse_seq(ps);
		if (!b)
			return NULL;
		struct rnode **a = realloc(alt->alts, (alt->nalts + 1) * sizeof(*a));
		if (!a) {
			perr(ps, "out of memory");
			return NULL;
		}
		alt->alts = a;
		alt->alts[alt->nalts++] = b;
	}
	return alt;
}

void
re_free(struct re *re)
{
	if (!re)
		return;
	for (size_t i = 0; i < re->nall; i++) {
		free(re->all[i]->set.items);
		free(re->all[i]->alts);
		free(re->all[i]);
	}
	free(re->all);
	free(re);
}

struct re *
re_compile(const char *pattern, char *err, size_t errlen)
{
	size_t len = strlen(pattern), n = 0, i = 0;
	uint32_t *cps = malloc((len + 1) * sizeof(*cps));
	struct re *re = calloc(1, sizeof(*re));
	struct parser ps;

	if (!cps || !re) {
		free(cps);
		free(re);
		if (err)
			snprintf(err, errlen, "out of memory");
		return NULL;
	}
	while (i < len)
		i += utf8_decode((const unsigned char *)pattern + i, len - i, &cps[n++]);
	memset(&ps, 0, sizeof(ps));
	ps.p = cps;
	ps.n = n;
	ps.re = re;
	ps.err = err;
	ps.errlen = errlen;
	re->root = parse_alt(&ps);
	if (!ps.failed && !at_end(&ps))
		perr(&ps, "unbalanced )");
	free(cps);
	if (ps.failed || !re->root) {
		re_free(re);
		return NULL;
	}
	return re;
}

/* --- matcher --- */

enum { K_NODE, K_ITER, K_ACCEPT };

struct kont {
	int kind;
	const struct rnode *node;   /* K_NODE: continue here; K_ITER: the repeat */
	const struct kont *next;
	int count;                  /* K_ITER */
	size_t start;               /* K_ITER: where this iteration began */
};

struct mctx {
	const uint32_t *t;
	size_t n;
	size_t end;
	long steps;
	int depth;
	int aborted;
};

#define RE_MAX_DEPTH 4000

static int
set_match(const struct rset *s, uint32_t c)
{
	int hit = 0;
	uint8_t fl = 0;
	int have_fl = 0;

	for (int i = 0; i < s->n && !hit; i++) {
		const struct citem *it = &s->items[i];
		switch (it->kind) {
		case CI_RANGE:
			hit = c >= it->lo && c <= it->hi;
			break;
		case CI_FLAGS:
			if (!have_fl) { fl = unicode_flags(c); have_fl = 1; }
			hit = (fl & it->lo) != 0;
			break;
		case CI_NFLAGS:
			if (!have_fl) { fl = unicode_flags(c); have_fl = 1; }
			hit = (fl & it->lo) == 0;
			break;
		}
	}
	return hit != s->neg;
}

static int m(struct mctx *cx, const struct rnode *n, size_t pos, const struct kont *k);

static int
m_repeat(struct mctx *cx, const struct rnode *n, size_t pos, int count, const struct kont *k)
{
	if (n->max < 0 || count < n->max) {
		struct kont k2 = { K_ITER, n, k, count + 1, pos };
		int r = m(cx, n->sub, pos, &k2);
		if (r)
			return r;
	}
	if (count >= n->min)
		return m(cx, n->next, pos, k);
	return 0;
}

static int
m(struct mctx *cx, const struct rnode *n, size_t pos, const struct kont *k)
{
	int r;

	if (++cx->steps > 0 && cx->steps > 50000000L) {
		cx->aborted = 1;
		return -1;
	}
	if (++cx->depth > RE_MAX_DEPTH) {
		cx->depth--;
		cx->aborted = 1;
		return -1;
	}
	while (n) {
		switch (n->kind) {
		case R_SET:
			if (pos >= cx->n || !set_match(&n->set, cx->t[pos])) {
				r = 0;
				goto out;
			}
			pos++;
			n = n->next;
			break;
		case R_BOL:
			if (pos != 0) { r = 0; goto out; }
			n = n->next;
			break;
		case R_EOL:
			if (pos != cx->n) { r = 0; goto out; }
			n = n->next;
			break;
		case R_GROUP: {
			if (!n->sub) {
				n = n->next;
				break;
			}
			struct kont k2 = { K_NODE, n->next, k, 0, 0 };
			r = m(cx, n->sub, pos, &k2);
			goto out;
		}
		case R_ALT: {
			struct kont k2 = { K_NODE, n->next, k, 0, 0 };
			for (int i = 0; i < n->nalts; i++) {
				r = m(cx, n->alts[i], pos, &k2);
				if (r)
					goto out;
			}
			r = 0;
			goto out;
		}
		case R_LOOK: {
			struct kont acc = { K_ACCEPT, NULL, NULL, 0, 0 };
			r = m(cx, n->sub, pos, &acc);
			if (r < 0)
				goto out;
			if (r == n->neg) { r = 0; goto out; }
			n = n->next;
			break;
		}
		case R_REPEAT:
			if (n->sub->kind == R_SET && n->sub->next == NULL) {
				/* One class repeated: count greedily, then give back. */
				size_t cnt = 0;
				size_t lim = n->max < 0 ? cx->n - pos : (size_t)n->max;
				while (cnt < lim && pos + cnt < cx->n && set_match(&n->sub->set, cx->t[pos + cnt]))
					cnt++;
				cx->steps += (long)cnt;   /* the count is work too: the budget bounds it */
				if (cnt < (size_t)n->min) { r = 0; goto out; }
				if (n->next == NULL && k && k->kind == K_ACCEPT) {
					r = 1;
					goto out;
				}
				if (n->next && n->next->kind == R_EOL && pos + cnt != cx->n) {
					r = 0;   /* only the whole run can reach the end */
					goto out;
				}
				for (size_t c = cnt + 1; c-- > (size_t)n->min;) {
					r = m(cx, n->next, pos + c, k);
					if (r)
						goto out;
				}
				r = 0;
				goto out;
			}
			r = m_repeat(cx, n, pos, 0, k);
			goto out;
		}
	}
	/* End of a sequence: continue with what follows. */
	if (!k) {
		cx->end = pos;
		r = 1;
	} else if (k->kind == K_ACCEPT) {
		r = 1;
	} else if (k->kind == K_ITER) {
		if (pos == k->start && k->count > k->node->min)
			r = 0;   /* an empty iteration makes no progress */
		else
			r = m_repeat(cx, k->node, pos, k->count, k->next);
	} else {
		r = m(cx, k->node, pos, k->next);
	}
out:
	cx->depth--;
	return r;
}

/* A pattern that begins with one class repeated without bound ("\\s+$"):
 * if no match starts at S, none starts inside the run of the class that
 * follows S either, since from there the repeat can end only at places
 * already tried (what follows it sees the position alone: no captures, no
 * look-behind).  Skipping the run keeps a long run linear, not quadratic. */
static int
leading_run(const struct re *re)
{
	const struct rnode *r = re->root;

	return r && r->kind == R_REPEAT && r->max < 0 && r->sub->kind == R_SET && !r->sub->next;
}

int
re_search(const struct re *re, const uint32_t *t, size_t n, size_t from, size_t *ms, size_t *me)
{
	struct mctx cx = { t, n, 0, 0, 0, 0 };
	int skip = leading_run(re);

	for (size_t s = from; s <= n; s++) {
		int r = m(&cx, re->root, s, NULL);
		if (r < 0)
			return -1;
		if (r > 0) {
			*ms = s;
			*me = cx.end;
			return 1;
		}
		if (skip)
			while (s + 1 < n && set_match(&re->root->sub->set, t[s]) && set_match(&re->root->sub->set, t[s + 1]))
				s++;
	}
	return 0;
}
