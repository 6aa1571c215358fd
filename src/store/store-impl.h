/* store-impl.h -- what store.c and export.c share. */
#ifndef NATTER_STORE_IMPL_H
#define NATTER_STORE_IMPL_H

#include <stdint.h>

#include <sqlite3.h>

struct store {
	sqlite3 *db;
	char *path;
	char err[512];
	void (*on_wait)(void *ctx);   /* store_on_wait */
	void *wait_ctx;
	int wait_said;                /* on_wait called in this wait */
};

/* The active branch of conversation ?1 as a table path(id, depth): the
 * leaf at depth 0, then each parent up to the first message.  No deeper
 * than the conversation has messages: a damaged database whose parents
 * make a loop gives a branch that repeats, and not a query that never
 * ends. */
#define STORE_PATH_CTE "WITH RECURSIVE path(id, depth) AS (SELECT leaf_id, 0 FROM conversations " \
	"WHERE id = ?1 AND leaf_id IS NOT NULL UNION ALL SELECT m.parent_id, p.depth + 1 FROM path p " \
	"JOIN messages m ON m.id = p.id WHERE m.parent_id IS NOT NULL " \
	"AND p.depth < (SELECT count(*) FROM messages WHERE conversation_id = ?1)) "

/* How a model row (aliased AS) is named to people: a file's name, or
 * "MODEL @ ENDPOINT" for a model on a remote server. */
#define STORE_MODEL_LABEL(md) "(CASE " md ".kind WHEN 'remote' THEN " md ".file_name || ' @ ' || " md ".endpoint " \
	"ELSE " md ".file_name END)"

/*
 * What a generation was made from, as far as comparing two replies goes
 * (store-origin.c): a preference or a DPO pair says one reply is better
 * than another, which is only true of two replies of one model, through
 * one template, to one prompt.  Strings are owned by the struct
 * (store_origin_clear frees them); 0 and NULL mean not recorded.
 */
struct store_origin {
	int64_t model_id, template_id;
	char *template_name;
	char *messages;      /* the messages fed, as stored (JSON) */
	char *text;          /* the prompt rendered; NULL for a remote model's (its request, settings and all) */
	char *think;         /* a remote model's thinking switch (the server renders the prompt with it); else NULL */
};

/* The columns store_origin_read reads, from generations AS g joined with
 * STORE_ORIGIN_JOIN: a printf format, with one %s (store_origin_think). */
#define STORE_ORIGIN_COLUMNS "COALESCE(g.model_id, 0), COALESCE(g.template_id, 0), g.template_name, " \
	"g.prompt_messages, CASE WHEN om.kind = 'remote' THEN NULL ELSE g.prompt_text END, " \
	"CASE WHEN om.kind = 'remote' THEN %s END"
#define STORE_ORIGIN_JOIN "LEFT JOIN models om ON om.id = g.model_id"

/* What the %s of STORE_ORIGIN_COLUMNS stands for: the think column, where
 * the schema has it (9). */
const char *store_origin_think(struct store *s);
/* Fills *O from the six STORE_ORIGIN_COLUMNS at column COL of ST's row.
 * Returns 0, or -1 when out of memory (*O then empty). */
int store_origin_read(sqlite3_stmt *st, int col, struct store_origin *o);
/* Frees what *O holds; *O is then empty. */
void store_origin_clear(struct store_origin *o);
/* NULL when replies made from A and B may be compared, else why not (a
 * static string, "they were made by ...").  A fact recorded for one and
 * not the other differs. */
const char *store_origin_differs(const struct store_origin *a, const struct store_origin *b);

int store_exec(struct store *s, const char *sql, const char *what);
sqlite3_stmt *store_prepare(struct store *s, const char *sql);
int store_begin(struct store *s);
int store_commit(struct store *s, const char *what);
void store_rollback(struct store *s);
/* Sets the error message; returns -1. */
int store_seterr(struct store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Explains the last failed SQLite call in the user's terms, naming WHAT
 * was not saved (a noun: "the rating"); returns -1. */
int store_sqlfail(struct store *s, const char *what);

#endif
