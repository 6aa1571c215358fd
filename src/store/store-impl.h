/* store-impl.h -- what store.c and export.c share. */
#ifndef NATTER_STORE_IMPL_H
#define NATTER_STORE_IMPL_H

#include <sqlite3.h>

struct store {
	sqlite3 *db;
	char *path;
	char err[512];
};

/* The active branch of conversation ?1 as a table path(id, depth): the
 * leaf at depth 0, then each parent up to the first message. */
#define STORE_PATH_CTE "WITH RECURSIVE path(id, depth) AS (SELECT leaf_id, 0 FROM conversations " \
	"WHERE id = ?1 AND leaf_id IS NOT NULL UNION ALL SELECT m.parent_id, p.depth + 1 FROM path p " \
	"JOIN messages m ON m.id = p.id WHERE m.parent_id IS NOT NULL) "

/* How a model row (aliased AS) is named to people: a file's name, or
 * "MODEL @ ENDPOINT" for a model on a remote server. */
#define STORE_MODEL_LABEL(md) "(CASE " md ".kind WHEN 'remote' THEN " md ".file_name || ' @ ' || " md ".endpoint " \
	"ELSE " md ".file_name END)"

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
