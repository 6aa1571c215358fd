/* tmpl.c -- chat templates: compile and render (the public API), the arena and error unwinding. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "natter/tmpl.h"
#include "llm/tmpl-impl.h"

/* --- the arena and error unwinding shared by every part --- */

void
tmpl_fail(struct fail *f, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->err, f->errlen, fmt, ap);
	va_end(ap);
	longjmp(f->jb, 1);
}

void *
tmpl_alloc(struct arena *a, struct fail *f, size_t n)
{
	struct chunk *c = a->head;
	n = (n + 15) & ~(size_t)15;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > 65536 ? n : 65536;
		if (a->total + cap > TMPL_MAX_ARENA)
			tmpl_fail(f, "template uses too much memory");
		c = malloc(sizeof(*c) + cap);
		if (!c)
			tmpl_fail(f, "out of memory");
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

void
tmpl_arena_free(struct arena *a)
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

/* --- the public API --- */

int
tmpl_compile(const char *src, size_t len, struct tmpl **out, char *err, size_t errlen)
{
	struct tmpl *t = calloc(1, sizeof(*t));
	struct fail f;

	*out = NULL;
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	f.err = err;
	f.errlen = errlen;
	f.raised = 0;
	if (setjmp(f.jb)) {
		tmpl_arena_free(&t->ar);
		free(t);
		return -1;
	}
	{
		/* The tree points into the text (literal output between tags):
		 * keep a copy of it in the template's own arena, so the caller
		 * may free SRC at once.  The copy has Jinja2's newlines: "\r\n"
		 * and a lone "\r" become "\n" everywhere in the source
		 * (newline_sequence '\n'), string literals included. */
		char *own = tmpl_alloc(&t->ar, &f, len + 1);
		size_t n = 0;
		for (size_t i = 0; i < len; i++) {
			if (src[i] == '\r') {
				own[n++] = '\n';
				i += i + 1 < len && src[i + 1] == '\n';
			} else {
				own[n++] = src[i];
			}
		}
		own[n] = 0;
		tmpl_parse(tmpl_lex(own, n, &t->ar, &f), &t->ar, &f, &t->body, &t->nbody);
	}
	*out = t;
	return 0;
}

void
tmpl_free(struct tmpl *t)
{
	if (!t)
		return;
	tmpl_arena_free(&t->ar);
	free(t);
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
		tmpl_arena_free(&r->ar);
		free(r);
		return rc;
	}
	g.parent = NULL;
	g.vars = tmpl_val_dict_new(r);
	r->globals = &g;
	{
		struct jlist *l = tmpl_val_list_new(r, n + 1);
		for (int i = 0; i < n; i++) {
			struct jdict *m = tmpl_val_dict_new(r);
			tmpl_val_dict_set(r, m, "role", 4, tmpl_val_cstr(r, msgs[i].role ? msgs[i].role : ""));
			tmpl_val_dict_set(r, m, "content", 7, tmpl_val_cstr(r, msgs[i].content ? msgs[i].content : ""));
			tmpl_val_list_push(r, l, tmpl_val_dict(m, V_DICT));
		}
		tmpl_val_dict_set(r, g.vars, "messages", 8, tmpl_val_list(l));
		tmpl_val_dict_set(r, g.vars, "add_generation_prompt", 21, tmpl_val_bool(o && o->add_generation_prompt));
		tmpl_val_dict_set(r, g.vars, "bos_token", 9, tmpl_val_cstr(r, o && o->bos_token ? o->bos_token : ""));
		tmpl_val_dict_set(r, g.vars, "eos_token", 9, tmpl_val_cstr(r, o && o->eos_token ? o->eos_token : ""));
		if (o && o->enable_thinking)
			tmpl_val_dict_set(r, g.vars, "enable_thinking", 15, tmpl_val_bool(o->enable_thinking > 0));
	}
	tmpl_val_put(r, &buf, "", 0);
	tmpl_eval_body(r, &g, t->body, t->nbody);
	*out = buf.p;
	*outlen = buf.n;
	tmpl_arena_free(&r->ar);
	free(r);
	return 0;
}
