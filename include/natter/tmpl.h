/* tmpl.h -- chat templates: the Jinja subset models ship in tokenizer.chat_template. */
#ifndef NATTER_TMPL_H
#define NATTER_TMPL_H

#include <stddef.h>
#include <time.h>

struct tmpl;

/* One chat message.  Strings are borrowed for the duration of a render.
 * They are C strings, so a NUL cannot be passed: callers reading JSON
 * refuse "\u0000" (text_json_has_nul) rather than lose what follows it. */
struct tmpl_msg {
	const char *role;
	const char *content;
};

/*
 * Compiles Jinja source (as Hugging Face renders it: trim_blocks and
 * lstrip_blocks on).  Returns 0, or -1 with ERR giving the line and the
 * problem.  Supports output, if/elif/else, for (loop.*, else, filters,
 * unpacking), set (namespaces, block set), macro, break/continue, the
 * usual filters, tests, string and dict methods, slicing, raise_exception
 * and strftime_now.  The template keeps its own copy of SRC.  Any thread.
 */
int tmpl_compile(const char *src, size_t len, struct tmpl **out, char *err, size_t errlen);
void tmpl_free(struct tmpl *t);

struct tmpl_opts {
	int add_generation_prompt;
	const char *bos_token;     /* NULL: "" */
	const char *eos_token;
	time_t now;                /* for strftime_now; 0: the current time */
	int enable_thinking;       /* 0: left undefined (the template's default); > 0: true; < 0: false
				    * (Qwen3's switch for its reasoning) */
};

/*
 * Renders T for MSGS[0..N).  On success *OUT is a new NUL-terminated string
 * (caller frees) of *OUTLEN bytes.  On failure returns -1 and ERR holds the
 * template's own raise_exception message, or the runtime problem (undefined
 * attribute, type error, a step/size/recursion limit hit by a hostile
 * template).  Thread-safe: T is not modified.
 */
int tmpl_render(const struct tmpl *t, const struct tmpl_msg *msgs, int n, const struct tmpl_opts *o,
		char **out, size_t *outlen, char *err, size_t errlen);

/* Set when the last failed render came from raise_exception (the text is the
 * template's own message) rather than from a runtime error. */
#define TMPL_ERR_RAISED (-2)

/* Built-in templates for models without one: "chatml", "llama2", "llama3",
 * "phi3", "zephyr", "gemma".  Returns the Jinja source or NULL. */
const char *tmpl_builtin(const char *name);
/* NUL-separated list of the built-in names, ending with an empty name. */
extern const char tmpl_builtin_names[];
/* Guesses the built-in closest to a model's template or architecture. */
const char *tmpl_builtin_guess(const char *arch, const char *template_src);

#endif
