/* store.c -- natter's SQLite database: schema, migrations, conversations, generations, ratings. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "natter/sha256.h"
#include "natter/store.h"
#include "store/store-impl.h"

#define NATTER_APP_ID 1312904276   /* "NATT" */

/* Each migration takes the schema from version i to i + 1. */
static const char *const migrations[] = {
	/* 0 -> 1: the tables. */
	"CREATE TABLE models("
	"  id INTEGER PRIMARY KEY,"
	"  sha256 TEXT NOT NULL UNIQUE,"
	"  file_name TEXT NOT NULL,"
	"  size INTEGER,"
	"  arch TEXT,"
	"  type_name TEXT,"
	"  created INTEGER NOT NULL);"
	"CREATE TABLE model_files("
	"  path TEXT PRIMARY KEY,"
	"  size INTEGER NOT NULL,"
	"  mtime INTEGER NOT NULL,"
	"  model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE);"
	"CREATE TABLE conversations("
	"  id INTEGER PRIMARY KEY,"
	"  title TEXT NOT NULL DEFAULT '',"
	"  model_id INTEGER REFERENCES models(id),"
	"  chat_template TEXT,"
	"  system_prompt TEXT,"
	"  created INTEGER NOT NULL,"
	"  updated INTEGER NOT NULL);"
	"CREATE TABLE messages("
	"  id INTEGER PRIMARY KEY,"
	"  conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,"
	"  seq INTEGER NOT NULL,"
	"  role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),"
	"  content TEXT NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  UNIQUE (conversation_id, seq));"
	"CREATE TABLE generations("
	"  id INTEGER PRIMARY KEY,"
	"  message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
	"  content TEXT NOT NULL,"
	"  chosen INTEGER NOT NULL DEFAULT 0,"
	"  state TEXT NOT NULL CHECK (state IN ('complete', 'cancelled', 'error')),"
	"  stop_reason TEXT,"
	"  temp REAL, top_k INTEGER, top_p REAL, min_p REAL, repeat_penalty REAL,"
	"  presence_penalty REAL, frequency_penalty REAL, penalty_last_n INTEGER,"
	"  seed INTEGER, max_tokens INTEGER,"
	"  n_prompt INTEGER, n_reused INTEGER, n_gen INTEGER, n_ctx_used INTEGER, n_ctx INTEGER,"
	"  prompt_tps REAL, gen_tps REAL, ttft_ms REAL,"
	"  created INTEGER NOT NULL);"
	"CREATE TABLE ratings("
	"  generation_id INTEGER PRIMARY KEY REFERENCES generations(id) ON DELETE CASCADE,"
	"  kind TEXT NOT NULL CHECK (kind IN ('thumb', 'stars')),"
	"  value INTEGER NOT NULL,"
	"  comment TEXT,"
	"  created INTEGER NOT NULL);"
	"CREATE INDEX generations_message ON generations(message_id);",
	/* 1 -> 2: full-text search over messages, filled from what exists. */
	"CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id');"
	"CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN"
	"  INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END;"
	"CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN"
	"  INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END;"
	"CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN"
	"  INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);"
	"  INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END;"
	"INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');",
};

static void
seterr(struct store *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
}

/* Explains a failed SQLite call in the user's terms. */
static int
sqlfail(struct store *s, const char *what)
{
	int code = sqlite3_extended_errcode(s->db) & 0xFF;
	const char *msg = sqlite3_errmsg(s->db);
	if (code == SQLITE_IOERR && sqlite3_system_errno(s->db) == ENOSPC)
		code = SQLITE_FULL;   /* SQLite reports some out-of-space cases as I/O errors */
	if (code == SQLITE_FULL)
		seterr(s, "%s: the disk is full; %s was not saved (what you already had is intact)", s->path, what);
	else if (code == SQLITE_READONLY)
		seterr(s, "%s: the database is read-only; %s was not saved", s->path, what);
	else if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
		seterr(s, "%s: the database is damaged (%s); %s was not saved", s->path, msg, what);
	else if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
		seterr(s, "%s: the database stayed busy (another natter is writing); %s was not saved", s->path, what);
	else
		seterr(s, "%s: %s: %s", s->path, what, msg);
	return -1;
}

const char *
store_errmsg(const struct store *s)
{
	return s->err;
}

int
store_exec(struct store *s, const char *sql, const char *what)
{
	char *msg = NULL;
	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		sqlite3_free(msg);
		return sqlfail(s, what);
	}
	return 0;
}

sqlite3_stmt *
store_prepare(struct store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		sqlfail(s, "a query");
		return NULL;
	}
	return st;
}

int
store_begin(struct store *s)
{
	/* IMMEDIATE takes the write lock now, so two writers queue on the busy
	 * timeout instead of failing at COMMIT. */
	return store_exec(s, "BEGIN IMMEDIATE", "a transaction");
}

int
store_commit(struct store *s, const char *what)
{
	if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		sqlfail(s, what);
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

void
store_rollback(struct store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static int64_t
now_s(void)
{
	return (int64_t)time(NULL);
}

static int
pragma_int(struct store *s, const char *sql, int *out)
{
	sqlite3_stmt *st = store_prepare(s, sql);
	int rc;
	if (!st)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : sqlfail(s, "reading the database header");
}

int
store_schema_version(struct store *s)
{
	int v = -1;
	pragma_int(s, "PRAGMA user_version", &v);
	return v;
}

void
store_close(struct store *s)
{
	if (!s)
		return;
	sqlite3_close(s->db);
	free(s->path);
	free(s);
}

static int
open_common(const char *path, unsigned flags, int target, struct store **out, char *err, size_t errlen)
{
	struct store *s = calloc(1, sizeof(*s));
	int version = 0, app = 0, tables = 0, rc;
	int oflags = (flags & STORE_READONLY) ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;

	*out = NULL;
	if (!s || !(s->path = strdup(path))) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = sqlite3_open_v2(path, &s->db, oflags, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: cannot open the database: %s", path,
		    s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
		store_close(s);
		return -1;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, 10000);
	/* The header tells whether this is a database at all. */
	if (pragma_int(s, "PRAGMA user_version", &version) < 0 ||
	    pragma_int(s, "PRAGMA application_id", &app) < 0 ||
	    pragma_int(s, "SELECT count(*) FROM sqlite_master", &tables) < 0) {
		int code = sqlite3_extended_errcode(s->db) & 0xFF;
		if (code == SQLITE_IOERR && sqlite3_system_errno(s->db) == ENOSPC)
			snprintf(err, errlen, "%s: the disk is full; the database cannot be opened for writing "
			    "(nothing in it was changed)", path);
		else if (code == SQLITE_NOTADB || code == SQLITE_CORRUPT)
			snprintf(err, errlen, "%s: not a natter database, or damaged (%s); it was not changed",
			    path, sqlite3_errmsg(s->db));
		else
			snprintf(err, errlen, "%s", s->err);
		store_close(s);
		return -1;
	}
	if (tables > 0 && app != NATTER_APP_ID) {
		snprintf(err, errlen, "%s: this SQLite database is not natter's; it was not changed", path);
		store_close(s);
		return -1;
	}
	if (version > STORE_SCHEMA_VERSION) {
		snprintf(err, errlen, "%s: the database was written by a newer natter (schema %d; this one "
		    "knows %d); it was not changed -- upgrade natter to open it", path, version, STORE_SCHEMA_VERSION);
		store_close(s);
		return -1;
	}
	if (!(flags & STORE_READONLY)) {
		if (store_exec(s, "PRAGMA journal_mode=WAL", "setting the journal") < 0 ||
		    store_exec(s, "PRAGMA synchronous=FULL", "setting durability") < 0) {
			snprintf(err, errlen, "%s", s->err);
			store_close(s);
			return -1;
		}
	}
	if (store_exec(s, "PRAGMA foreign_keys=ON", "enabling foreign keys") < 0) {
		snprintf(err, errlen, "%s", s->err);
		store_close(s);
		return -1;
	}
	if (version < target && (flags & STORE_READONLY)) {
		snprintf(err, errlen, "%s: the database needs an upgrade (schema %d to %d) but is opened read-only",
		    path, version, target);
		store_close(s);
		return -1;
	}
	while (version < target) {
		char sql[96];
		if (store_begin(s) < 0 || store_exec(s, migrations[version], "upgrading the schema") < 0) {
			store_rollback(s);
			snprintf(err, errlen, "%s (upgrade to schema %d)", s->err, version + 1);
			store_close(s);
			return -1;
		}
		snprintf(sql, sizeof(sql), "PRAGMA user_version=%d; PRAGMA application_id=%d", version + 1, NATTER_APP_ID);
		if (store_exec(s, sql, "upgrading the schema") < 0 || store_commit(s, "the schema upgrade") < 0) {
			store_rollback(s);
			snprintf(err, errlen, "%s", s->err);
			store_close(s);
			return -1;
		}
		version++;
	}
	*out = s;
	return 0;
}

int
store_open(const char *path, unsigned flags, struct store **out, char *err, size_t errlen)
{
	return open_common(path, flags, STORE_SCHEMA_VERSION, out, err, errlen);
}

int
store_open_version(const char *path, int version, struct store **out, char *err, size_t errlen)
{
	if (version < 0 || version > STORE_SCHEMA_VERSION) {
		snprintf(err, errlen, "no schema version %d", version);
		return -1;
	}
	return open_common(path, 0, version, out, err, errlen);
}

char *
store_default_path(char *buf, size_t n)
{
	const char *db = getenv("NATTER_DB"), *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
	char dir[4096];

	if (db && *db) {
		snprintf(buf, n, "%s", db);
		return buf;
	}
	if (xdg && *xdg)
		snprintf(dir, sizeof(dir), "%s/natter", xdg);
	else if (home && *home)
		snprintf(dir, sizeof(dir), "%s/.local/share/natter", home);
	else
		return NULL;
	/* mkdir -p */
	for (char *p = dir + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			mkdir(dir, 0700);
			*p = '/';
		}
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return NULL;
	if ((size_t)snprintf(buf, n, "%s/natter.db", dir) >= n)
		return NULL;
	return buf;
}

/* --- writing --- */

int
store_model(struct store *s, const char *path, const char *arch, const char *type_name, int64_t *id)
{
	struct stat stt;
	sqlite3_stmt *st;
	char hex[65], err[256];
	const char *base = strrchr(path, '/');
	int rc;

	base = base ? base + 1 : path;
	if (stat(path, &stt) < 0) {
		seterr(s, "%s: %s", path, strerror(errno));
		return -1;
	}
	/* Hashing a large file takes seconds: reuse the hash while the file is unchanged. */
	st = store_prepare(s, "SELECT model_id FROM model_files WHERE path = ? AND size = ? AND mtime = ?");
	if (!st)
		return -1;
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)stt.st_size);
	sqlite3_bind_int64(st, 3, (int64_t)stt.st_mtime);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
		return 0;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return sqlfail(s, "looking up the model");
	if (sha256_file(path, hex, err, sizeof(err)) < 0) {
		seterr(s, "%s", err);
		return -1;
	}
	if (store_begin(s) < 0)
		return -1;
	st = store_prepare(s, "INSERT INTO models(sha256, file_name, size, arch, type_name, created) "
	    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(sha256) DO UPDATE SET file_name = excluded.file_name "
	    "RETURNING id");
	if (!st)
		goto fail;
	sqlite3_bind_text(st, 1, hex, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, base, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)stt.st_size);
	sqlite3_bind_text(st, 4, arch, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, type_name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, now_s());
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		sqlfail(s, "recording the model");
		goto fail;
	}
	*id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	st = store_prepare(s, "INSERT OR REPLACE INTO model_files(path, size, mtime, model_id) VALUES (?, ?, ?, ?)");
	if (!st)
		goto fail;
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)stt.st_size);
	sqlite3_bind_int64(st, 3, (int64_t)stt.st_mtime);
	sqlite3_bind_int64(st, 4, *id);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		sqlfail(s, "recording the model");
		goto fail;
	}
	return store_commit(s, "the model record");
fail:
	store_rollback(s);
	return -1;
}

int
store_conv_new(struct store *s, int64_t model_id, const char *title, const char *chat_template,
	       const char *system_prompt, int64_t *id)
{
	sqlite3_stmt *st = store_prepare(s, "INSERT INTO conversations(title, model_id, chat_template, system_prompt, "
	    "created, updated) VALUES (?, ?, ?, ?, ?, ?)");
	int64_t t = now_s();
	if (!st)
		return -1;
	sqlite3_bind_text(st, 1, title ? title : "", -1, SQLITE_STATIC);
	if (model_id > 0)
		sqlite3_bind_int64(st, 2, model_id);
	else
		sqlite3_bind_null(st, 2);
	sqlite3_bind_text(st, 3, chat_template, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, system_prompt, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, t);
	sqlite3_bind_int64(st, 6, t);
	if (sqlite3_step(st) != SQLITE_DONE) {
		sqlite3_finalize(st);
		return sqlfail(s, "the new conversation");
	}
	sqlite3_finalize(st);
	*id = sqlite3_last_insert_rowid(s->db);
	return 0;
}

int
store_conv_set_system(struct store *s, int64_t conv_id, const char *system_prompt)
{
	sqlite3_stmt *st = store_prepare(s, "UPDATE conversations SET system_prompt = ?, updated = ? WHERE id = ?");
	int rc;
	if (!st)
		return -1;
	sqlite3_bind_text(st, 1, system_prompt, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now_s());
	sqlite3_bind_int64(st, 3, conv_id);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : sqlfail(s, "the system prompt");
}

/* Inserts a message at the end of CONV_ID inside an open transaction. */
static int
insert_msg(struct store *s, int64_t conv_id, const char *role, const char *content, int64_t *id)
{
	sqlite3_stmt *st = store_prepare(s, "INSERT INTO messages(conversation_id, seq, role, content, created) "
	    "VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE conversation_id = ?1), ?2, ?3, ?4)");
	int rc;
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, conv_id);
	sqlite3_bind_text(st, 2, role, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, content, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now_s());
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return sqlfail(s, "the message");
	*id = sqlite3_last_insert_rowid(s->db);
	/* The first user message names the conversation. */
	st = store_prepare(s, "UPDATE conversations SET updated = ?2, title = CASE WHEN title = '' AND ?3 = 'user' "
	    "THEN substr(replace(?4, char(10), ' '), 1, 60) ELSE title END WHERE id = ?1");
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, conv_id);
	sqlite3_bind_int64(st, 2, now_s());
	sqlite3_bind_text(st, 3, role, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, content, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : sqlfail(s, "the message");
}

int
store_msg_add(struct store *s, int64_t conv_id, const char *role, const char *content, int64_t *id)
{
	if (store_begin(s) < 0)
		return -1;
	if (insert_msg(s, conv_id, role, content, id) < 0) {
		store_rollback(s);
		return -1;
	}
	return store_commit(s, "the message");
}

int
store_gen_add(struct store *s, int64_t conv_id, int64_t msg_id, const struct store_gen *g,
	      int64_t *gen_id, int64_t *msg_id_out)
{
	sqlite3_stmt *st;
	int rc, k = 1;

	if (store_begin(s) < 0)
		return -1;
	if (msg_id == 0) {
		if (insert_msg(s, conv_id, "assistant", g->content, &msg_id) < 0)
			goto fail;
	} else {
		st = store_prepare(s, "UPDATE generations SET chosen = 0 WHERE message_id = ?");
		if (!st)
			goto fail;
		sqlite3_bind_int64(st, 1, msg_id);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE) {
			sqlfail(s, "the reply");
			goto fail;
		}
		st = store_prepare(s, "UPDATE messages SET content = ? WHERE id = ? AND role = 'assistant'");
		if (!st)
			goto fail;
		sqlite3_bind_text(st, 1, g->content, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, msg_id);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE || sqlite3_changes(s->db) != 1) {
			if (rc == SQLITE_DONE)
				seterr(s, "%s: message %lld is not an assistant message", s->path, (long long)msg_id);
			else
				sqlfail(s, "the reply");
			goto fail;
		}
	}
	st = store_prepare(s, "INSERT INTO generations(message_id, content, chosen, state, stop_reason, temp, top_k, "
	    "top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty, penalty_last_n, seed, max_tokens, "
	    "n_prompt, n_reused, n_gen, n_ctx_used, n_ctx, prompt_tps, gen_tps, ttft_ms, created) "
	    "VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
	if (!st)
		goto fail;
	sqlite3_bind_int64(st, k++, msg_id);
	sqlite3_bind_text(st, k++, g->content, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, k++, g->state ? g->state : "complete", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, k++, g->stop_reason, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, k++, g->temp);
	sqlite3_bind_int(st, k++, g->top_k);
	sqlite3_bind_double(st, k++, g->top_p);
	sqlite3_bind_double(st, k++, g->min_p);
	sqlite3_bind_double(st, k++, g->repeat_penalty);
	sqlite3_bind_double(st, k++, g->presence_penalty);
	sqlite3_bind_double(st, k++, g->frequency_penalty);
	sqlite3_bind_int(st, k++, g->penalty_last_n);
	sqlite3_bind_int64(st, k++, (int64_t)g->seed);
	sqlite3_bind_int(st, k++, g->max_tokens);
	sqlite3_bind_int(st, k++, g->n_prompt);
	sqlite3_bind_int(st, k++, g->n_reused);
	sqlite3_bind_int(st, k++, g->n_gen);
	sqlite3_bind_int(st, k++, g->n_ctx_used);
	sqlite3_bind_int(st, k++, g->n_ctx);
	sqlite3_bind_double(st, k++, g->prompt_tps);
	sqlite3_bind_double(st, k++, g->gen_tps);
	sqlite3_bind_double(st, k++, g->ttft_ms);
	sqlite3_bind_int64(st, k++, now_s());
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		sqlfail(s, "the reply");
		goto fail;
	}
	*gen_id = sqlite3_last_insert_rowid(s->db);
	if (msg_id_out)
		*msg_id_out = msg_id;
	return store_commit(s, "the reply");
fail:
	store_rollback(s);
	return -1;
}

int
store_rating_parse(const char *w, const char **kind, int *value)
{
	if (!w)
		return -1;
	if (!strcmp(w, "up") || !strcmp(w, "+")) {
		*kind = "thumb";
		*value = 1;
		return 0;
	}
	if (!strcmp(w, "down") || !strcmp(w, "-")) {
		*kind = "thumb";
		*value = 0;
		return 0;
	}
	if (w[0] >= '1' && w[0] <= '5' && w[1] == 0) {
		*kind = "stars";
		*value = w[0] - '0';
		return 0;
	}
	return -1;
}

int
store_rating_set(struct store *s, int64_t gen_id, const char *kind, int value, const char *comment)
{
	sqlite3_stmt *st;
	int rc;

	if (!kind || (strcmp(kind, "thumb") && strcmp(kind, "stars")) ||
	    (!strcmp(kind, "thumb") && (value < 0 || value > 1)) || (!strcmp(kind, "stars") && (value < 1 || value > 5))) {
		seterr(s, "a rating is up, down, or 1 to 5 stars");
		return -1;
	}
	st = store_prepare(s, "INSERT INTO ratings(generation_id, kind, value, comment, created) VALUES (?, ?, ?, ?, ?) "
	    "ON CONFLICT(generation_id) DO UPDATE SET kind = excluded.kind, value = excluded.value, "
	    "comment = COALESCE(excluded.comment, comment), created = excluded.created");
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, gen_id);
	sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, value);
	if (comment && comment[0])
		sqlite3_bind_text(st, 4, comment, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 4);
	sqlite3_bind_int64(st, 5, now_s());
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_CONSTRAINT || (sqlite3_extended_errcode(s->db) & 0xFF) == SQLITE_CONSTRAINT) {
		seterr(s, "there is no generation %lld", (long long)gen_id);
		return -1;
	}
	return rc == SQLITE_DONE ? 0 : sqlfail(s, "the rating");
}

int
store_conv_delete(struct store *s, int64_t conv_id)
{
	sqlite3_stmt *st = store_prepare(s, "DELETE FROM conversations WHERE id = ?");
	int rc;
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, conv_id);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return sqlfail(s, "the deletion");
	if (sqlite3_changes(s->db) == 0) {
		seterr(s, "there is no conversation %lld", (long long)conv_id);
		return -1;
	}
	return 0;
}

/* --- reading --- */

static const char *
col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? (const char *)t : "";
}

static void
fmt_time(int64_t t, char *buf, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;
	localtime_r(&tt, &tm);
	strftime(buf, n, "%Y-%m-%d %H:%M", &tm);
}

int
store_history_list(struct store *s, FILE *out)
{
	sqlite3_stmt *st = store_prepare(s, "SELECT c.id, c.updated, (SELECT count(*) FROM messages m WHERE "
	    "m.conversation_id = c.id), COALESCE(md.file_name, ''), c.title FROM conversations c LEFT JOIN models md "
	    "ON md.id = c.model_id ORDER BY c.updated DESC, c.id DESC");
	int rc, n = 0;
	if (!st)
		return -1;
	fprintf(out, "%5s  %-16s  %4s  %-28s  %s\n", "ID", "UPDATED", "MSGS", "MODEL", "TITLE");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		char tb[32];
		fmt_time(sqlite3_column_int64(st, 1), tb, sizeof(tb));
		fprintf(out, "%5lld  %-16s  %4d  %-28.28s  %s\n", (long long)sqlite3_column_int64(st, 0), tb,
		    sqlite3_column_int(st, 2), col_text(st, 3), col_text(st, 4));
		n++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return sqlfail(s, "the list");
	if (n == 0)
		fprintf(out, "(no conversations yet)\n");
	return 0;
}

int
store_history_show(struct store *s, int64_t conv_id, FILE *out)
{
	sqlite3_stmt *st = store_prepare(s, "SELECT c.title, COALESCE(md.file_name, ''), COALESCE(md.sha256, ''), "
	    "COALESCE(c.chat_template, ''), COALESCE(c.system_prompt, ''), c.created FROM conversations c "
	    "LEFT JOIN models md ON md.id = c.model_id WHERE c.id = ?");
	sqlite3_stmt *ms, *gs;
	int rc;
	char tb[32];

	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, conv_id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		seterr(s, "there is no conversation %lld", (long long)conv_id);
		return -1;
	}
	fmt_time(sqlite3_column_int64(st, 5), tb, sizeof(tb));
	fprintf(out, "conversation %lld: %s\nstarted %s with %s (sha256 %.12s), template %s\n", (long long)conv_id,
	    col_text(st, 0), tb, col_text(st, 1), col_text(st, 2), col_text(st, 3));
	if (*col_text(st, 4))
		fprintf(out, "system: %s\n", col_text(st, 4));
	sqlite3_finalize(st);
	ms = store_prepare(s, "SELECT id, seq, role, content FROM messages WHERE conversation_id = ? ORDER BY seq");
	gs = store_prepare(s, "SELECT g.id, g.chosen, g.state, g.temp, g.top_p, g.top_k, g.min_p, g.seed, g.n_gen, "
	    "g.gen_tps, g.ttft_ms, r.kind, r.value, r.comment, g.content FROM generations g "
	    "LEFT JOIN ratings r ON r.generation_id = g.id WHERE g.message_id = ? ORDER BY g.id");
	if (!ms || !gs) {
		sqlite3_finalize(ms);
		sqlite3_finalize(gs);
		return -1;
	}
	sqlite3_bind_int64(ms, 1, conv_id);
	while ((rc = sqlite3_step(ms)) == SQLITE_ROW) {
		int gens = 0;
		fprintf(out, "\n[%d] %s:\n%s\n", sqlite3_column_int(ms, 1), col_text(ms, 2), col_text(ms, 3));
		sqlite3_reset(gs);
		sqlite3_bind_int64(gs, 1, sqlite3_column_int64(ms, 0));
		while (sqlite3_step(gs) == SQLITE_ROW) {
			gens++;
			fprintf(out, "  generation %lld%s: %s, temp %.2f top_p %.2f top_k %d min_p %.2f seed %lld, "
			    "%d tokens, %.1f tok/s, first token %.0f ms", (long long)sqlite3_column_int64(gs, 0),
			    sqlite3_column_int(gs, 1) ? " (chosen)" : "", col_text(gs, 2), sqlite3_column_double(gs, 3),
			    sqlite3_column_double(gs, 4), sqlite3_column_int(gs, 5), sqlite3_column_double(gs, 6),
			    (long long)sqlite3_column_int64(gs, 7), sqlite3_column_int(gs, 8),
			    sqlite3_column_double(gs, 9), sqlite3_column_double(gs, 10));
			if (sqlite3_column_type(gs, 11) != SQLITE_NULL) {
				if (!strcmp(col_text(gs, 11), "thumb"))
					fprintf(out, ", rated %s", sqlite3_column_int(gs, 12) ? "up" : "down");
				else
					fprintf(out, ", rated %d/5", sqlite3_column_int(gs, 12));
				if (*col_text(gs, 13))
					fprintf(out, " (\"%s\")", col_text(gs, 13));
			}
			fputc('\n', out);
			if (!sqlite3_column_int(gs, 1))
				fprintf(out, "    %s\n", col_text(gs, 14));
		}
		(void)gens;
	}
	sqlite3_finalize(ms);
	sqlite3_finalize(gs);
	return rc == SQLITE_DONE ? 0 : sqlfail(s, "the conversation");
}

int
store_history_search(struct store *s, const char *query, FILE *out)
{
	sqlite3_stmt *st;
	char *q;
	size_t n = strlen(query), k = 0;
	int rc, hits = 0;

	/* The user's words as one phrase: FTS5 syntax in them cannot misfire. */
	q = malloc(2 * n + 3);
	if (!q) {
		seterr(s, "out of memory");
		return -1;
	}
	q[k++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (query[i] == '"')
			q[k++] = '"';
		q[k++] = query[i];
	}
	q[k++] = '"';
	q[k] = 0;
	st = store_prepare(s, "SELECT m.conversation_id, m.seq, m.role, snippet(messages_fts, 0, '[', ']', '...', 12) "
	    "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid WHERE messages_fts MATCH ? "
	    "ORDER BY m.conversation_id DESC, m.seq");
	if (!st) {
		free(q);
		return -1;
	}
	sqlite3_bind_text(st, 1, q, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		fprintf(out, "conversation %lld [%d] %s: %s\n", (long long)sqlite3_column_int64(st, 0),
		    sqlite3_column_int(st, 1), col_text(st, 2), col_text(st, 3));
		hits++;
	}
	sqlite3_finalize(st);
	free(q);
	if (rc != SQLITE_DONE)
		return sqlfail(s, "the search");
	if (hits == 0)
		fprintf(out, "no messages match\n");
	return 0;
}

int
store_conv_recent(struct store *s, struct store_conv_info *out, int max, int *n)
{
	sqlite3_stmt *st = store_prepare(s, "SELECT c.id, c.updated, (SELECT count(*) FROM messages m WHERE "
	    "m.conversation_id = c.id), c.title, COALESCE(md.file_name, '') FROM conversations c LEFT JOIN models md "
	    "ON md.id = c.model_id ORDER BY c.updated DESC, c.id DESC LIMIT ?");
	int rc;
	*n = 0;
	if (!st)
		return -1;
	sqlite3_bind_int(st, 1, max);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < max) {
		struct store_conv_info *ci = &out[(*n)++];
		ci->id = sqlite3_column_int64(st, 0);
		ci->updated = sqlite3_column_int64(st, 1);
		ci->n_msgs = sqlite3_column_int(st, 2);
		snprintf(ci->title, sizeof(ci->title), "%s", col_text(st, 3));
		snprintf(ci->model, sizeof(ci->model), "%s", col_text(st, 4));
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sqlfail(s, "the list");
}

int
store_conv_load(struct store *s, int64_t conv_id, char **system, store_msg_fn fn, void *ctx)
{
	sqlite3_stmt *st = store_prepare(s, "SELECT system_prompt FROM conversations WHERE id = ?");
	int rc;

	*system = NULL;
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, conv_id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		seterr(s, "there is no conversation %lld", (long long)conv_id);
		return -1;
	}
	if (sqlite3_column_type(st, 0) != SQLITE_NULL)
		*system = strdup(col_text(st, 0));
	sqlite3_finalize(st);
	st = store_prepare(s, "SELECT m.id, m.role, m.content, COALESCE((SELECT g.id FROM generations g WHERE "
	    "g.message_id = m.id AND g.chosen), 0) FROM messages m WHERE m.conversation_id = ? ORDER BY m.seq");
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, conv_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (fn(ctx, sqlite3_column_int64(st, 0), col_text(st, 1), col_text(st, 2), sqlite3_column_int64(st, 3)))
			break;
	sqlite3_finalize(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sqlfail(s, "the conversation");
}
