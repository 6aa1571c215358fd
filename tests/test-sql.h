/* test-sql.h -- the temporary natter databases of the tests, and reads of them behind the store's back (test-store, test-chatcmd, test-net). */
#ifndef NATTER_TEST_SQL_H
#define NATTER_TEST_SQL_H

#include <stdio.h>
#include <unistd.h>
#include <sqlite3.h>

#include "natter/store.h"

/* The first column of the first row of SQL on the database at PATH as a
 * number (-1 if none).  Read-only, through a connection of its own. */
static inline int
query_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int v = -1;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* The same as text, into BUF ("" if none); returns BUF. */
static inline char *
query_text(const char *path, const char *sql, char *buf, size_t n)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	buf[0] = 0;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return buf;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
	    sqlite3_column_text(st, 0))
		snprintf(buf, n, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return buf;
}

/* Runs SQL on the database at PATH through a connection of its own, as
 * another program (or an older natter) would, creating the file if there
 * is none.  Returns 0, or -1 with SQLite's message on stderr. */
static inline int
exec_sql(const char *path, const char *sql)
{
	sqlite3 *db;
	char *msg = NULL;
	int rc;
	if (sqlite3_open(path, &db) != SQLITE_OK) {
		sqlite3_close(db);
		return -1;
	}
	rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fprintf(stderr, "exec_sql: %s\n", msg ? msg : "?");
	sqlite3_free(msg);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

/* Names in DB (N bytes) a database under /tmp of its own to this test
 * program and to TAG: /tmp/natter-test-TAG-PID.db. */
static inline void
test_db_path(char *db, size_t n, const char *tag)
{
	snprintf(db, n, "/tmp/natter-test-%s-%ld.db", tag, (long)getpid());
}

/* Opens through the store, in *S, the database test_db_path names for
 * TAG, its path into DB (N bytes), creating it if there is none.  Returns
 * what store_open returns (0, or < 0 with its message in ERR). */
static inline int
open_test_db(char *db, size_t n, const char *tag, struct store **s, char *err, size_t errlen)
{
	test_db_path(db, n, tag);
	return store_open(db, 0, s, err, errlen);
}

/* Removes the database at PATH and the files SQLite keeps beside it. */
static inline void
remove_db(const char *path)
{
	static const char *const side[] = { "", "-wal", "-shm", "-journal" };
	char f[4200];
	for (size_t i = 0; i < sizeof(side) / sizeof(side[0]); i++) {
		snprintf(f, sizeof(f), "%s%s", path, side[i]);
		unlink(f);
	}
}

#endif
