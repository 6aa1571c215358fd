/* store-impl.h -- what store.c and export.c share. */
#ifndef NATTER_STORE_IMPL_H
#define NATTER_STORE_IMPL_H

#include <sqlite3.h>

struct store {
	sqlite3 *db;
	char *path;
	char err[512];
};

int store_exec(struct store *s, const char *sql, const char *what);
sqlite3_stmt *store_prepare(struct store *s, const char *sql);
int store_begin(struct store *s);
int store_commit(struct store *s, const char *what);
void store_rollback(struct store *s);

#endif
