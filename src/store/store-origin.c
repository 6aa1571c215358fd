/* store-origin.c -- what a reply was made from, and whether two replies may be compared. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "natter/store.h"
#include "store/store-impl.h"

static int
dup_col(sqlite3_stmt *st, int col, char **out)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	*out = NULL;
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return 0;
	if (!t || !(*out = strdup((const char *)t)))
		return -1;
	return 0;
}

const char *
store_origin_think(struct store *s)
{
	return store_schema_version(s) >= 9 ? "g.think" : "NULL";
}

int
store_origin_read(sqlite3_stmt *st, int col, struct store_origin *o)
{
	memset(o, 0, sizeof(*o));
	o->model_id = sqlite3_column_int64(st, col);
	o->template_id = sqlite3_column_int64(st, col + 1);
	if (dup_col(st, col + 2, &o->template_name) < 0 || dup_col(st, col + 3, &o->messages) < 0 ||
	    dup_col(st, col + 4, &o->text) < 0 || dup_col(st, col + 5, &o->think) < 0) {
		store_origin_clear(o);
		return -1;
	}
	return 0;
}

void
store_origin_clear(struct store_origin *o)
{
	free(o->template_name);
	free(o->messages);
	free(o->text);
	free(o->think);
	memset(o, 0, sizeof(*o));
}

/* Equal, NULL (not recorded) equal only to NULL: a fact known for one
 * reply and not for the other cannot be said to be the same. */
static int
same_text(const char *a, const char *b)
{
	return a && b ? !strcmp(a, b) : a == b;
}

const char *
store_origin_differs(const struct store_origin *a, const struct store_origin *b)
{
	/* The model first: a pair from two models teaches a model to prefer
	 * another's way of writing, which no setting of its own can give. */
	if (a->model_id != b->model_id)
		return "they were made by different models";
	/* The template by its text (template_id: one row per SHA-256 of the
	 * source), not by the name it was given: "chatml (built-in)" and
	 * "chatml (built-in; the model has none)", a file named two ways,
	 * are one template.  The name only where no text was recorded. */
	if (a->template_id || b->template_id ? a->template_id != b->template_id :
	    !same_text(a->template_name, b->template_name))
		return "they were made with different chat templates";
	if (!same_text(a->messages, b->messages))
		return "they were fed different prompts (other messages; the conversation cut to fit another "
		    "context)";
	if (!same_text(a->text, b->text))
		return "they were fed different prompts (the text rendered differs: a template that writes "
		    "the date, say)";
	/* A remote server renders the prompt itself, with the switch sent. */
	if (!same_text(a->think, b->think))
		return "they were fed different prompts (the server was sent different thinking switches)";
	return NULL;
}
