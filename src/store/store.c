/* store.c -- natter's SQLite database: schema, migrations, the message tree, generations, alternatives, ratings. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "natter/outfile.h"
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
	/* 2 -> 3: the message tree, what each generation was produced under,
	 * and substring search.  Generations made before keep NULL where the
	 * old schema did not record the fact (model, template, the prompt fed):
	 * unknown, not guessed.  Their end is read from what schema 2 kept. */
	"DROP TRIGGER messages_ai; DROP TRIGGER messages_ad; DROP TRIGGER messages_au; DROP TABLE messages_fts;"
	"CREATE TABLE templates("
	"  id INTEGER PRIMARY KEY,"
	"  sha256 TEXT NOT NULL UNIQUE,"
	"  source TEXT NOT NULL);"
	"ALTER TABLE messages ADD COLUMN parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE;"
	"ALTER TABLE conversations ADD COLUMN leaf_id INTEGER REFERENCES messages(id) ON DELETE SET NULL;"
	"ALTER TABLE generations ADD COLUMN model_id INTEGER REFERENCES models(id);"
	"ALTER TABLE generations ADD COLUMN template_name TEXT;"
	"ALTER TABLE generations ADD COLUMN template_id INTEGER REFERENCES templates(id);"
	"ALTER TABLE generations ADD COLUMN system_prompt TEXT;"
	"ALTER TABLE generations ADD COLUMN prompt_messages TEXT;"
	"ALTER TABLE generations ADD COLUMN prompt_text TEXT;"
	"ALTER TABLE generations ADD COLUMN prompt_tokens INTEGER;"
	"ALTER TABLE generations ADD COLUMN n_dropped INTEGER;"
	"ALTER TABLE generations ADD COLUMN end_reason TEXT CHECK (end_reason IN "
	"  ('finished', 'stop-string', 'stopped', 'context', 'max-tokens', 'error'));"
	"UPDATE messages SET parent_id = (SELECT p.id FROM messages p WHERE p.conversation_id = messages.conversation_id"
	"  AND p.seq < messages.seq ORDER BY p.seq DESC LIMIT 1);"
	"UPDATE conversations SET leaf_id = (SELECT m.id FROM messages m WHERE m.conversation_id = conversations.id"
	"  ORDER BY m.seq DESC LIMIT 1);"
	"UPDATE generations SET end_reason = CASE"
	"  WHEN stop_reason = 'done' THEN 'finished'"
	"  WHEN stop_reason = 'length limit' THEN 'max-tokens'"
	"  WHEN stop_reason = 'stop string' THEN 'stop-string'"
	"  WHEN stop_reason = 'context full' THEN 'context'"
	"  WHEN stop_reason = 'cancelled' OR state = 'cancelled' THEN 'stopped'"
	"  WHEN state = 'error' THEN 'error' END;"
	"CREATE INDEX messages_parent ON messages(parent_id);"
	"CREATE INDEX generations_model ON generations(model_id);"
	/* Trigrams find any substring of three characters or more, CJK
	 * included; shorter queries scan (store_history_search). */
	"CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id', tokenize='trigram');"
	"CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN"
	"  INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END;"
	"CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN"
	"  INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END;"
	"CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN"
	"  INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);"
	"  INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END;"
	"INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');",
	/* 3 -> 4: a reply's reasoning apart from its answer.  Generations made
	 * before keep NULL: their content is what the model wrote, a reasoning
	 * model's tags and all (export splits it). */
	"ALTER TABLE generations ADD COLUMN reasoning TEXT;"
	"ALTER TABLE generations ADD COLUMN n_reasoning INTEGER;",
	/* 4 -> 5: models served by a remote OpenAI-compatible server, keyed
	 * by endpoint and model id; the files' rows are kind 'file'.  (sha256
	 * stays the unique key: a remote row's is the SHA-256 of its identity,
	 * store_model_remote.) */
	"ALTER TABLE models ADD COLUMN kind TEXT NOT NULL DEFAULT 'file' CHECK (kind IN ('file', 'remote'));"
	"ALTER TABLE models ADD COLUMN endpoint TEXT;"
	"CREATE UNIQUE INDEX models_remote ON models(endpoint, file_name) WHERE kind = 'remote';",
	/* 5 -> 6: the LoRA adapters each generation was made with (none for
	 * every earlier one: natter had no adapters before; none for a remote
	 * model's), and A/B preferences between two generations of one message. */
	"CREATE TABLE generation_adapters("
	"  generation_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,"
	"  position INTEGER NOT NULL,"
	"  sha256 TEXT NOT NULL,"
	"  file_name TEXT NOT NULL,"
	"  scale REAL NOT NULL,"
	"  PRIMARY KEY (generation_id, position));"
	"CREATE INDEX generation_adapters_sha256 ON generation_adapters(sha256);"
	"CREATE TABLE preferences("
	"  id INTEGER PRIMARY KEY,"
	"  message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
	"  gen_a INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,"
	"  gen_b INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,"
	"  pick TEXT NOT NULL CHECK (pick IN ('a', 'b', 'tie')),"
	"  setting TEXT NOT NULL DEFAULT '',"
	"  created INTEGER NOT NULL,"
	"  CHECK (gen_a <> gen_b));"
	"CREATE INDEX preferences_message ON preferences(message_id);",
	/* 6 -> 7: the numeric settings of a local model's session that change
	 * its logits: the KV cache's type and exact activations.  NULL for
	 * every earlier generation (not recorded) and for remote models. */
	"ALTER TABLE generations ADD COLUMN kv_type TEXT;"
	"ALTER TABLE generations ADD COLUMN exact_act INTEGER;",
	/* 7 -> 8: the stop strings a reply was made with beyond its template's
	 * end of turn (--stop, a request's "stop"), a JSON array; NULL for
	 * every earlier generation (not recorded). */
	"ALTER TABLE generations ADD COLUMN stop TEXT;",
	/* 8 -> 9: the think switch (enable_thinking) the prompt was rendered
	 * with, when the template reads it (or a remote server was sent it):
	 * 'true', 'false', or 'default' (left undefined: the template's own
	 * default).  NULL for a template that does not read it, and for every
	 * earlier generation (not recorded). */
	"ALTER TABLE generations ADD COLUMN think TEXT;",
	/* 9 -> 10: ids never used twice.  Without AUTOINCREMENT SQLite gives
	 * a new row the largest id plus one, so once the newest conversation
	 * (message, generation, preference) is deleted its id goes to the
	 * next one made: a natter still holding the old id (a chat's
	 * conversation and leaf, the reply /rate and /pick name) would write
	 * into, or rate, someone else's.  SQLite cannot add AUTOINCREMENT to
	 * a table, so each is rebuilt as its documented procedure says
	 * (lang_altertable.html, "other kinds of table schema changes"):
	 * new_X made with every column of X, in order, as the earlier
	 * migrations left it; the rows copied with their ids (each copy also
	 * fills sqlite_sequence with the largest id, so new ids go on above
	 * it); X dropped; new_X renamed to X; X's indexes and triggers made
	 * again.  Nothing refers to new_X, so the renames rewrite no
	 * reference, and every REFERENCES X of the other tables (ratings,
	 * generation_adapters, ...) names the new X.  migrate() runs it
	 * with foreign keys off, else each DROP would delete the children's
	 * rows (ON DELETE CASCADE fires on DROP TABLE), and checks them
	 * before it commits.  Dropping messages
	 * drops its full-text triggers; messages_fts reads messages by name
	 * and the ids and contents stay, so its index stays true and is not
	 * rebuilt (the migration's time grows with the history as it is:
	 * the copy alone, not a second pass over every message; test-store
	 * runs FTS5's integrity-check after it).  An id deleted
	 * before this migration may still be given once more: nothing
	 * recorded it.  generations' end_reason also takes
	 * 'finished-or-stop-string': a remote server that ends a reply as
	 * "stop", stop strings sent, does not say which of the two it was. */
	"CREATE TABLE new_conversations("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  title TEXT NOT NULL DEFAULT '',"
	"  model_id INTEGER REFERENCES models(id),"
	"  chat_template TEXT,"
	"  system_prompt TEXT,"
	"  created INTEGER NOT NULL,"
	"  updated INTEGER NOT NULL,"
	"  leaf_id INTEGER REFERENCES messages(id) ON DELETE SET NULL);"
	"INSERT INTO new_conversations SELECT * FROM conversations;"
	"DROP TABLE conversations;"
	"ALTER TABLE new_conversations RENAME TO conversations;"
	"CREATE TABLE new_messages("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,"
	"  seq INTEGER NOT NULL,"
	"  role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),"
	"  content TEXT NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,"
	"  UNIQUE (conversation_id, seq));"
	"INSERT INTO new_messages SELECT * FROM messages;"
	"DROP TABLE messages;"
	"ALTER TABLE new_messages RENAME TO messages;"
	"CREATE INDEX messages_parent ON messages(parent_id);"
	"CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN"
	"  INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END;"
	"CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN"
	"  INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END;"
	"CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN"
	"  INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);"
	"  INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END;"
	"CREATE TABLE new_generations("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
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
	"  created INTEGER NOT NULL,"
	"  model_id INTEGER REFERENCES models(id),"
	"  template_name TEXT,"
	"  template_id INTEGER REFERENCES templates(id),"
	"  system_prompt TEXT,"
	"  prompt_messages TEXT,"
	"  prompt_text TEXT,"
	"  prompt_tokens INTEGER,"
	"  n_dropped INTEGER,"
	"  end_reason TEXT CHECK (end_reason IN"
	"    ('finished', 'stop-string', 'stopped', 'context', 'max-tokens', 'error',"
	"     'finished-or-stop-string')),"
	"  reasoning TEXT, n_reasoning INTEGER,"
	"  kv_type TEXT, exact_act INTEGER,"
	"  stop TEXT,"
	"  think TEXT);"
	"INSERT INTO new_generations SELECT * FROM generations;"
	"DROP TABLE generations;"
	"ALTER TABLE new_generations RENAME TO generations;"
	"CREATE INDEX generations_message ON generations(message_id);"
	"CREATE INDEX generations_model ON generations(model_id);"
	"CREATE TABLE new_preferences("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
	"  gen_a INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,"
	"  gen_b INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,"
	"  pick TEXT NOT NULL CHECK (pick IN ('a', 'b', 'tie')),"
	"  setting TEXT NOT NULL DEFAULT '',"
	"  created INTEGER NOT NULL,"
	"  CHECK (gen_a <> gen_b));"
	"INSERT INTO new_preferences SELECT * FROM preferences;"
	"DROP TABLE preferences;"
	"ALTER TABLE new_preferences RENAME TO preferences;"
	"CREATE INDEX preferences_message ON preferences(message_id);",
};

int
store_seterr(struct store *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	return -1;
}

int
store_sqlfail(struct store *s, const char *what)
{
	int code = sqlite3_extended_errcode(s->db) & 0xFF;
	const char *msg = sqlite3_errmsg(s->db);
	if (code == SQLITE_IOERR && sqlite3_system_errno(s->db) == ENOSPC)
		code = SQLITE_FULL;   /* SQLite reports some out-of-space cases as I/O errors */
	if (code == SQLITE_FULL)
		store_seterr(s, "%s: the disk is full; %s was not saved (what you already had is intact)", s->path, what);
	else if (code == SQLITE_READONLY)
		store_seterr(s, "%s: the database is read-only (natter may not write to it), so %s was not saved",
		    s->path, what);
	else if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
		store_seterr(s, "%s: the database is damaged (%s); %s was not saved", s->path, msg, what);
	else if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
		store_seterr(s, "%s: the database stayed busy (another natter is writing); %s was not saved", s->path, what);
	else
		store_seterr(s, "%s: %s: %s", s->path, what, msg);
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
		return store_sqlfail(s, what);
	}
	return 0;
}

sqlite3_stmt *
store_prepare(struct store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		store_sqlfail(s, "a query");
		return NULL;
	}
	return st;
}

/*
 * Whether the database file is still at its path.  One deleted or replaced
 * while it is open (rm, a restore copied over it) takes every later write
 * into a file no one will open again, each "saved" as if it were: every
 * write asks first (a stat of the path, SQLite's own check).  0, or -1
 * with the error set.
 */
static int
store_writable(struct store *s)
{
	int moved = 0;

	if (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) != SQLITE_OK || !moved)
		return 0;
	return store_seterr(s, "%s was deleted or replaced while natter had it open: nothing more is saved there "
	    "(restart natter to save to the file now there)", s->path);
}

/* store_prepare for a statement that writes on its own, outside a
 * transaction (store_begin asks for those): NULL, with the error set,
 * where the database is no longer at its path or SQL does not prepare. */
static sqlite3_stmt *
store_prepare_write(struct store *s, const char *sql)
{
	return store_writable(s) < 0 ? NULL : store_prepare(s, sql);
}

int
store_begin(struct store *s)
{
	if (store_writable(s) < 0)
		return -1;
	/* IMMEDIATE takes the write lock now, so two writers queue on the busy
	 * timeout instead of failing at COMMIT. */
	return store_exec(s, "BEGIN IMMEDIATE", "a transaction");
}

int
store_commit(struct store *s, const char *what)
{
	if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		store_sqlfail(s, what);
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
	return rc == SQLITE_ROW ? 0 : store_sqlfail(s, "reading the database header");
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

/* Version, application id and table count, read in one statement: one
 * snapshot, so another natter creating the database at the same moment is
 * seen either not at all or completely. */
static int
read_header(struct store *s, int *version, int *app, int *tables)
{
	sqlite3_stmt *st = store_prepare(s, "SELECT (SELECT user_version FROM pragma_user_version), "
	    "(SELECT application_id FROM pragma_application_id), (SELECT count(*) FROM sqlite_master)");
	int rc;
	if (!st)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*version = sqlite3_column_int(st, 0);
		*app = sqlite3_column_int(st, 1);
		*tables = sqlite3_column_int(st, 2);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : store_sqlfail(s, "the database header");
}

/* How many rows break a foreign key, into *N: 0, or -1 with the error set. */
static int
fk_violations(struct store *s, int *n)
{
	sqlite3_stmt *st = store_prepare(s, "SELECT count(*) FROM pragma_foreign_key_check");
	int rc;
	if (!st)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : store_sqlfail(s, "the check of the rows' links");
}

/* One migration, from VERSION to VERSION + 1, in a transaction of its
 * own.  Sets *DONE when another natter had already migrated past TARGET
 * meanwhile.  Foreign keys are off here (migrate): the migration may
 * not leave more rows than there were with a parent gone. */
static int
migrate_one(struct store *s, int *version, int target, int *done)
{
	char sql[96];
	int now = *version, app = 0, tables = 0, bad_before = 0, bad_after = 0;

	if (store_begin(s) < 0 || read_header(s, &now, &app, &tables) < 0) {
		store_rollback(s);
		return -1;
	}
	if (now >= target) {
		store_rollback(s);
		*done = 1;
		return 0;
	}
	*version = now;
	if (now < 0 || now >= (int)(sizeof(migrations) / sizeof(migrations[0]))) {
		store_rollback(s);
		return store_seterr(s, "%s: schema version %d has no upgrade; it was not changed", s->path, now);
	}
	if (fk_violations(s, &bad_before) < 0 || store_exec(s, migrations[now], "the schema upgrade") < 0 ||
	    fk_violations(s, &bad_after) < 0) {
		store_rollback(s);
		snprintf(sql, sizeof(sql), " (upgrade to schema %d)", now + 1);
		if (strlen(s->err) + strlen(sql) < sizeof(s->err))
			strcat(s->err, sql);
		return -1;
	}
	if (bad_after > bad_before) {
		store_rollback(s);
		return store_seterr(s, "%s: the upgrade to schema %d would have left %d rows pointing at rows that "
		    "are gone; it was not made (nothing was changed)", s->path, now + 1, bad_after - bad_before);
	}
	snprintf(sql, sizeof(sql), "PRAGMA user_version=%d; PRAGMA application_id=%d", now + 1, NATTER_APP_ID);
	if (store_exec(s, sql, "the schema upgrade") < 0 || store_commit(s, "the schema upgrade") < 0) {
		store_rollback(s);
		return -1;
	}
	*version = now + 1;
	return 0;
}

static void (*upgrade_fn)(void *, const char *);
static void *upgrade_ctx;

void
store_on_upgrade(void (*fn)(void *ctx, const char *msg), void *ctx)
{
	upgrade_fn = fn;
	upgrade_ctx = ctx;
}

/* Tells store_on_upgrade's function that S, at schema VERSION (an older
 * natter's: 1 or more; 0 is a new database, made in a moment), is about
 * to be upgraded to TARGET: the file itself, or (RO) a copy in memory,
 * made again by every read until a natter opens the file for writing. */
static void
say_upgrade(const struct store *s, int version, int target, int ro)
{
	char msg[4400];

	if (!upgrade_fn || version <= 0 || version >= target)
		return;
	if (ro)
		snprintf(msg, sizeof(msg), "%s: written by an older natter (schema %d); reading it through a copy "
		    "upgraded in memory to schema %d (the file stays as it is; every read does this until natter "
		    "opens it for writing)", s->path, version, target);
	else
		snprintf(msg, sizeof(msg), "%s: written by an older natter (schema %d); upgrading it to schema %d "
		    "(once; a large history takes a while)", s->path, version, target);
	upgrade_fn(upgrade_ctx, msg);
}

/* Brings S from schema VERSION up to TARGET, one migration per
 * transaction.  Each transaction takes the write lock first and reads the
 * version again under it: when another natter migrated meanwhile, what it
 * did is not done twice.  Foreign keys are off meanwhile, as SQLite's
 * procedure for rebuilding a table says: with them on, DROP TABLE first
 * deletes every row, and with them the child rows their ON DELETE
 * CASCADE names (SQLite 3.40 rather fails the 9 -> 10 rebuild: "database
 * table is locked").  The switch is a no-op inside a transaction, hence
 * here, around them all; each migration checks the keys itself
 * (migrate_one). */
static int
migrate(struct store *s, int version, int target)
{
	int rc = 0, done = 0;

	if (version >= target)
		return 0;
	if (store_exec(s, "PRAGMA foreign_keys=OFF", "the foreign-key setting") < 0)
		return -1;
	while (rc == 0 && !done && version < target)
		rc = migrate_one(s, &version, target, &done);
	/* A failed migration's own message is the one to keep. */
	if (sqlite3_exec(s->db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL) != SQLITE_OK && rc == 0)
		rc = store_sqlfail(s, "the foreign-key setting");
	return rc;
}

/* Switches to the WAL journal.  The switch needs the database to itself
 * and SQLite does not wait for that on its own: while another natter
 * holds it (creating the same new database, say), try again for up to the
 * busy timeout.  Once a database is in WAL mode it stays so. */
static int
set_wal(struct store *s)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		sqlite3_stmt *st = store_prepare(s, "PRAGMA journal_mode=WAL");
		int rc, code, wal = 0;
		if (!st)
			return -1;
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			wal = sqlite3_column_text(st, 0) && !strcmp((const char *)sqlite3_column_text(st, 0), "wal");
		sqlite3_finalize(st);
		if (wal)
			return 0;
		code = sqlite3_extended_errcode(s->db) & 0xFF;
		if (rc != SQLITE_ROW && code != SQLITE_BUSY && code != SQLITE_LOCKED)
			return store_sqlfail(s, "the journal mode");
		/* The busy timeout in all, not a try's: each try may itself wait
		 * that long (a reader holding a database not in WAL mode). */
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >= STORE_BUSY_MS)
			break;
		sqlite3_sleep(10);
	}
	return store_seterr(s, "%s: the database stayed busy (another natter is using it); it could not be "
	    "switched to its journal mode", s->path);
}

/* Whether natter may not write PATH or its folder (which must hold the
 * journal): permissions, or a read-only file system. */
static int
path_readonly(const char *path)
{
	char *copy = strdup(path);
	int ro = 0;
	if (access(path, W_OK) != 0 && (errno == EACCES || errno == EROFS || errno == EPERM))
		ro = 1;
	if (!ro && copy && access(dirname(copy), W_OK) != 0 && (errno == EACCES || errno == EROFS || errno == EPERM))
		ro = 1;
	free(copy);
	return ro;
}

/* PATH as a file: URI that opens it immutable (no journal is read or
 * written).  Caller frees. */
static char *
immutable_uri(const char *path)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(path);
	char *u = malloc(3 * n + 32), *o = u;
	if (!u)
		return NULL;
	o += sprintf(o, "file:");
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)path[i];
		if (ch == '%' || ch == '?' || ch == '#' || ch < 0x20 || ch >= 0x7F) {
			*o++ = '%';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
		} else {
			*o++ = (char)ch;
		}
	}
	strcpy(o, "?immutable=1");
	return u;
}

/* Replaces S's connection by an in-memory copy of its database, which
 * can then be migrated without writing the file (a read-only database of
 * an older schema is still listed and exported). */
static int
copy_to_memory(struct store *s)
{
	sqlite3 *mem = NULL;
	sqlite3_backup *b;
	int rc;

	if (sqlite3_open_v2(":memory:", &mem, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
		sqlite3_close(mem);
		return store_seterr(s, "out of memory");
	}
	b = sqlite3_backup_init(mem, "main", s->db, "main");
	rc = b ? sqlite3_backup_step(b, -1) : SQLITE_NOMEM;
	if (b)
		sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE) {
		sqlite3_close(mem);
		return store_sqlfail(s, "the copy");
	}
	sqlite3_close(s->db);
	s->db = mem;
	sqlite3_extended_result_codes(s->db, 1);
	return 0;
}

/* SQLite's busy handler: COUNT is how many times it was called for this
 * lock.  Sleeps as SQLite's busy timeout does (short steps first), up to
 * STORE_BUSY_MS in all; says so through on_wait once STORE_WAIT_SAY_MS
 * have gone.  Returns 0 to give up (the call fails with SQLITE_BUSY). */
static int
busy_wait(void *arg, int count)
{
	static const int step[] = { 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 };
	const int nstep = (int)(sizeof(step) / sizeof(step[0]));
	struct store *s = arg;
	long waited = 0;

	for (int i = 0; i < count && i < nstep; i++)
		waited += step[i];
	if (count > nstep)
		waited += (long)(count - nstep) * step[nstep - 1];
	if (count == 0)
		s->wait_said = 0;
	if (waited >= STORE_BUSY_MS)
		return 0;
	if (waited >= STORE_WAIT_SAY_MS && !s->wait_said && s->on_wait) {
		s->wait_said = 1;
		s->on_wait(s->wait_ctx);
	}
	const long d = count < nstep ? step[count] : step[nstep - 1];
	sqlite3_sleep((int)(waited + d > STORE_BUSY_MS ? STORE_BUSY_MS - waited : d));
	return 1;
}

void
store_on_wait(struct store *s, void (*fn)(void *ctx), void *ctx)
{
	s->on_wait = fn;
	s->wait_ctx = ctx;
}

static int
open_common(const char *path, unsigned flags, int target, struct store **out, char *err, size_t errlen)
{
	struct store *s = calloc(1, sizeof(*s));
	int version = 0, app = 0, tables = 0, rc, exists;
	int ro = (flags & STORE_READONLY) != 0;
	int oflags = ro ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	struct stat stt;

	*out = NULL;
	if (!s || !(s->path = strdup(path))) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	exists = stat(path, &stt) == 0;
	if (!exists && (ro || (flags & STORE_MUST_EXIST))) {
		snprintf(err, errlen, "%s: there is no database here (nothing has been saved there yet); "
		    "nothing was created", path);
		store_close(s);
		return -1;
	}
	if (exists && S_ISDIR(stt.st_mode)) {
		size_t pl = strlen(path);
		while (pl > 1 && path[pl - 1] == '/')
			pl--;
		snprintf(err, errlen, "%s: is a folder, not a database file (give a file's name, "
		    "e.g. %.*s/natter.db)", path, (int)pl, path);
		store_close(s);
		return -1;
	}
	if (exists && !ro && path_readonly(path)) {
		snprintf(err, errlen, "%s: the database is read-only (natter may not write to it or its folder): "
		    "it can be listed and exported, but nothing can be saved to it", path);
		store_close(s);
		return -1;
	}
	if (flags & STORE_MUST_EXIST)
		oflags &= ~SQLITE_OPEN_CREATE;
	rc = sqlite3_open_v2(path, &s->db, oflags, NULL);
	if (rc == SQLITE_OK && ro && read_header(s, &version, &app, &tables) < 0 &&
	    ((sqlite3_extended_errcode(s->db) & 0xFF) == SQLITE_CANTOPEN ||
	    (sqlite3_extended_errcode(s->db) & 0xFF) == SQLITE_READONLY)) {
		/* A WAL database in a folder natter may not write: its shared
		 * index cannot be made.  With no journal left over, the file is
		 * the whole database and can be read as it is. */
		char wal[4200];
		char *uri = immutable_uri(path);
		snprintf(wal, sizeof(wal), "%s-wal", path);
		sqlite3_close(s->db);
		s->db = NULL;
		if (access(wal, F_OK) == 0 || !uri) {
			free(uri);
			snprintf(err, errlen, "%s: the database is read-only and its journal (%s) holds changes that "
			    "cannot be read without writing; open it once where natter may write", path, wal);
			store_close(s);
			return -1;
		}
		rc = sqlite3_open_v2(uri, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
		free(uri);
	}
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: cannot open the database: %s", path,
		    s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
		store_close(s);
		return -1;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_handler(s->db, busy_wait, s);
	/* The header tells whether this is a database at all. */
	if (read_header(s, &version, &app, &tables) < 0) {
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
	if (version < 0) {
		/* (An upgrade from it would run migrations[-N].) */
		snprintf(err, errlen, "%s: the database's schema version is %d, which no natter writes: it is "
		    "damaged, or not natter's; it was not changed", path, version);
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
		if (set_wal(s) < 0 || store_exec(s, "PRAGMA synchronous=FULL", "the durability setting") < 0) {
			snprintf(err, errlen, "%s", s->err);
			store_close(s);
			return -1;
		}
	}
	if (store_exec(s, "PRAGMA foreign_keys=ON", "the foreign-key setting") < 0) {
		snprintf(err, errlen, "%s", s->err);
		store_close(s);
		return -1;
	}
	/* Said before the copy of a file read, which takes a while too. */
	if (tables > 0)
		say_upgrade(s, version, target, ro);
	if (version < target && ro && (tables == 0 || copy_to_memory(s) < 0)) {
		if (tables == 0)
			snprintf(err, errlen, "%s: not a natter database (it is empty); it was not changed", path);
		else
			snprintf(err, errlen, "%s", s->err);
		store_close(s);
		return -1;
	}
	if (migrate(s, version, target) < 0) {
		snprintf(err, errlen, "%s", s->err);
		store_close(s);
		return -1;
	}
	/* A copy upgraded in memory is for reading only, like the file. */
	if (ro && store_exec(s, "PRAGMA query_only=ON", "the read-only setting") < 0) {
		snprintf(err, errlen, "%s", s->err);
		store_close(s);
		return -1;
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
store_default_path(char *buf, size_t n, char *err, size_t errlen)
{
	return store_default_path_ex(buf, n, 1, err, errlen);
}

char *
store_default_path_ex(char *buf, size_t n, int create, char *err, size_t errlen)
{
	const char *db = getenv("NATTER_DB"), *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
	char dir[4096], why[4400];

	if (db && *db) {
		snprintf(buf, n, "%s", db);
		return buf;
	}
	if (xdg && *xdg)
		snprintf(dir, sizeof(dir), "%s/natter", xdg);
	else if (home && *home)
		snprintf(dir, sizeof(dir), "%s/.local/share/natter", home);
	else {
		snprintf(err, errlen, "cannot find a place for the database: set XDG_DATA_HOME or HOME, "
		    "or use --db FILE");
		return NULL;
	}
	if (create && outfile_mkdirs(dir, 0700, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "no folder for the database: %s (use --db FILE, or set XDG_DATA_HOME)", why);
		return NULL;
	}
	if ((size_t)snprintf(buf, n, "%s/natter.db", dir) >= n) {
		snprintf(err, errlen, "the database's path is too long: %s/natter.db", dir);
		return NULL;
	}
	return buf;
}

/* --- writing --- */

/* What model_files' mtime column keeps of a file: its modification and
 * status-change times to the nanosecond, its inode and device, mixed into
 * one integer.  A file rewritten in place within the same second at the
 * same size, or replaced by one whose times were kept (cp -p, mv, curl
 * -R), changes its status-change time or its inode: its hash is taken
 * again, never reused for other bytes.  (Rows written before this kept
 * the seconds alone; they no longer match, and the file is hashed once
 * more.) */
static int64_t
file_stamp(const struct stat *st)
{
	const uint64_t part[] = { (uint64_t)st->st_mtim.tv_sec, (uint64_t)st->st_mtim.tv_nsec,
	    (uint64_t)st->st_ctim.tv_sec, (uint64_t)st->st_ctim.tv_nsec, (uint64_t)st->st_ino, (uint64_t)st->st_dev };
	uint64_t h = 14695981039346656037ull;   /* FNV-1a over the parts' bytes */

	for (size_t i = 0; i < sizeof(part) / sizeof(part[0]); i++)
		for (int b = 0; b < 8; b++) {
			h ^= (part[i] >> (8 * b)) & 0xff;
			h *= 1099511628211ull;
		}
	return (int64_t)(h >> 1);
}

int
store_model(struct store *s, const char *path, const char *arch, const char *type_name, int64_t *id)
{
	char hex[65] = "";
	return store_model_keep(s, path, arch, type_name, hex, id);
}

int
store_model_keep(struct store *s, const char *path, const char *arch, const char *type_name, char *hex,
		 int64_t *id)
{
	struct stat stt;
	sqlite3_stmt *st;
	char err[256];
	const char *base = strrchr(path, '/');
	int rc;

	base = base ? base + 1 : path;
	if (stat(path, &stt) < 0) {
		store_seterr(s, "%s: %s", path, strerror(errno));
		return -1;
	}
	/* Hashing a large file takes seconds: reuse the hash while the file is unchanged (file_stamp). */
	st = store_prepare(s, "SELECT model_id FROM model_files WHERE path = ? AND size = ? AND mtime = ?");
	if (!st)
		return -1;
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)stt.st_size);
	sqlite3_bind_int64(st, 3, file_stamp(&stt));
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
		return 0;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return store_sqlfail(s, "looking up the model");
	if (!hex[0] && sha256_file(path, hex, err, sizeof(err)) < 0) {
		hex[0] = 0;
		store_seterr(s, "%s", err);
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
		store_sqlfail(s, "recording the model");
		goto fail;
	}
	*id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	st = store_prepare(s, "INSERT OR REPLACE INTO model_files(path, size, mtime, model_id) VALUES (?, ?, ?, ?)");
	if (!st)
		goto fail;
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)stt.st_size);
	sqlite3_bind_int64(st, 3, file_stamp(&stt));
	sqlite3_bind_int64(st, 4, *id);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		store_sqlfail(s, "recording the model");
		goto fail;
	}
	return store_commit(s, "the model record");
fail:
	store_rollback(s);
	return -1;
}

int
store_model_remote(struct store *s, const char *endpoint, const char *model, int64_t *id)
{
	struct sha256 h;
	sqlite3_stmt *st;
	char hex[65];
	int rc;

	if (!endpoint || !*endpoint || !model || !*model)
		return store_seterr(s, "a remote model needs an endpoint and a model id");
	/* The identity, hashed: "remote", the endpoint, the id, each ended by
	 * a newline (neither a URL nor an id holds one that could blur them). */
	sha256_init(&h);
	sha256_update(&h, "remote\n", 7);
	sha256_update(&h, endpoint, strlen(endpoint));
	sha256_update(&h, "\n", 1);
	sha256_update(&h, model, strlen(model));
	sha256_update(&h, "\n", 1);
	sha256_final_hex(&h, hex);
	if (store_begin(s) < 0)
		return -1;
	st = store_prepare(s, "INSERT INTO models(sha256, file_name, kind, endpoint, created) VALUES (?, ?, 'remote', ?, ?) "
	    "ON CONFLICT(sha256) DO UPDATE SET file_name = excluded.file_name RETURNING id");
	if (!st)
		goto fail;
	sqlite3_bind_text(st, 1, hex, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, model, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, endpoint, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now_s());
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW) {
		store_sqlfail(s, "recording the model");
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
	sqlite3_stmt *st;
	int64_t t = now_s();
	st = store_prepare_write(s, "INSERT INTO conversations(title, model_id, chat_template, system_prompt, "
	    "created, updated) VALUES (?, ?, ?, ?, ?, ?)");
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
		return store_sqlfail(s, "the new conversation");
	}
	sqlite3_finalize(st);
	*id = sqlite3_last_insert_rowid(s->db);
	return 0;
}

int
store_conv_set_system(struct store *s, int64_t conv_id, const char *system_prompt)
{
	sqlite3_stmt *st;
	int rc;
	if (!(st = store_prepare_write(s, "UPDATE conversations SET system_prompt = ?, updated = ? WHERE id = ?")))
		return -1;
	sqlite3_bind_text(st, 1, system_prompt, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now_s());
	sqlite3_bind_int64(st, 3, conv_id);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : store_sqlfail(s, "the system prompt");
}

/* --- the message tree --- */

/* Runs SQL, a statement that returns no rows, with the N int64_t values
 * that follow bound to ?1..?N.  Returns 0, or -1 with the error about
 * WHAT. */
static int
run_ids(struct store *s, const char *what, const char *sql, int n, ...)
{
	sqlite3_stmt *st = store_prepare(s, sql);
	va_list ap;
	int rc;

	if (!st)
		return -1;
	va_start(ap, n);
	for (int i = 1; i <= n; i++)
		sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
	va_end(ap);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : store_sqlfail(s, what);
}

/* Inserts a message into CONV_ID inside an open transaction, as a child of
 * PARENT (0: a first message; -1: the conversation's current leaf), and
 * makes it the leaf. */
/* Where message ID sits: its conversation, parent (0: none) and role
 * (ROLE may be NULL; it gets at most ROLE_N bytes). */
static int
msg_where(struct store *s, int64_t id, int64_t *conv, int64_t *parent, char *role, size_t role_n)
{
	sqlite3_stmt *st = store_prepare(s, "SELECT conversation_id, COALESCE(parent_id, 0), role FROM messages "
	    "WHERE id = ?");
	int rc;
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*conv = sqlite3_column_int64(st, 0);
		if (parent)
			*parent = sqlite3_column_int64(st, 1);
		if (role)
			snprintf(role, role_n, "%s", (const char *)sqlite3_column_text(st, 2));
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE) {
		store_seterr(s, "there is no message %lld", (long long)id);
		return -1;
	}
	return store_sqlfail(s, "the message");
}

static int
insert_msg(struct store *s, int64_t conv_id, int64_t parent, const char *role, const char *content, int64_t *id)
{
	sqlite3_stmt *st;
	int rc;

	if (!content)
		content = "";
	/* The table's CHECK would fail as a constraint, read below as a missing conversation. */
	if (!role || (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant"))) {
		store_seterr(s, "a message's role is system, user or assistant, not %s", role ? role : "none");
		return -1;
	}
	if (parent > 0) {
		int64_t pc;
		if (msg_where(s, parent, &pc, NULL, NULL, 0) < 0)
			return -1;
		if (pc != conv_id) {
			store_seterr(s, "%s: message %lld is not in conversation %lld", s->path, (long long)parent,
			    (long long)conv_id);
			return -1;
		}
	}
	st = store_prepare(s, "INSERT INTO messages(conversation_id, seq, role, content, created, parent_id) "
	    "VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE conversation_id = ?1), ?2, ?3, ?4, "
	    "CASE WHEN ?5 < 0 THEN (SELECT leaf_id FROM conversations WHERE id = ?1) WHEN ?5 = 0 THEN NULL ELSE ?5 END)");
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, conv_id);
	sqlite3_bind_text(st, 2, role, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, content, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now_s());
	sqlite3_bind_int64(st, 5, parent);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		if ((sqlite3_extended_errcode(s->db) & 0xFF) == SQLITE_CONSTRAINT) {
			store_seterr(s, "%s: there is no conversation %lld", s->path, (long long)conv_id);
			return -1;
		}
		return store_sqlfail(s, "the message");
	}
	*id = sqlite3_last_insert_rowid(s->db);
	/* The first user message names the conversation. */
	st = store_prepare(s, "UPDATE conversations SET updated = ?2, leaf_id = ?5, title = CASE WHEN title = '' "
	    "AND ?3 = 'user' THEN substr(replace(?4, char(10), ' '), 1, 60) ELSE title END WHERE id = ?1");
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, conv_id);
	sqlite3_bind_int64(st, 2, now_s());
	sqlite3_bind_text(st, 3, role, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, content, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, *id);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : store_sqlfail(s, "the message");
}

int
store_msg_add(struct store *s, int64_t conv_id, const char *role, const char *content, int64_t *id)
{
	return store_msg_add_after(s, conv_id, -1, role, content, id);
}

int
store_msg_add_after(struct store *s, int64_t conv_id, int64_t parent, const char *role, const char *content,
		    int64_t *id)
{
	if (store_begin(s) < 0)
		return -1;
	if (insert_msg(s, conv_id, parent, role, content, id) < 0) {
		store_rollback(s);
		return -1;
	}
	return store_commit(s, "the message");
}

int
store_msg_edit(struct store *s, int64_t msg_id, const char *content, int64_t *new_id)
{
	int64_t conv, parent;
	char role[16];

	if (store_begin(s) < 0)
		return -1;
	if (msg_where(s, msg_id, &conv, &parent, role, sizeof(role)) < 0 ||
	    insert_msg(s, conv, parent, role, content, new_id) < 0) {
		store_rollback(s);
		return -1;
	}
	return store_commit(s, "the edited message");
}

int
store_msg_versions(struct store *s, int64_t msg_id, int64_t *ids, int max, int *n, int *cur)
{
	int64_t conv, parent;
	char role[16];
	sqlite3_stmt *st;
	int rc;

	*n = 0;
	*cur = -1;
	if (msg_where(s, msg_id, &conv, &parent, role, sizeof(role)) < 0)
		return -1;
	st = store_prepare(s, STORE_PATH_CTE "SELECT m.id, m.id IN (SELECT id FROM path) FROM messages m "
	    "WHERE m.conversation_id = ?1 AND m.parent_id IS ?2 AND m.role = ?3 ORDER BY m.id");
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, conv);
	if (parent)
		sqlite3_bind_int64(st, 2, parent);
	else
		sqlite3_bind_null(st, 2);
	sqlite3_bind_text(st, 3, role, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n < max)
			ids[*n] = sqlite3_column_int64(st, 0);
		if (sqlite3_column_int(st, 1))
			*cur = *n;
		(*n)++;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : store_sqlfail(s, "the versions of the message");
}

int
store_msg_withdraw(struct store *s, int64_t msg_id, int *conv_gone)
{
	int64_t conv, parent, n = -1;
	sqlite3_stmt *st;
	int rc;

	if (conv_gone)
		*conv_gone = 0;
	if (store_begin(s) < 0)
		return -1;
	if (msg_where(s, msg_id, &conv, &parent, NULL, 0) < 0)
		goto fail;
	/* Nothing may hang from it: a reply, or another natter's message. */
	if (!(st = store_prepare(s, "SELECT count(*) FROM messages WHERE parent_id = ?")))
		goto fail;
	sqlite3_bind_int64(st, 1, msg_id);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW) {
		store_sqlfail(s, "the message");
		goto fail;
	}
	if (n > 0) {
		store_seterr(s, "message %lld has been answered: it is not taken back", (long long)msg_id);
		goto fail;
	}
	/* The leaf goes back to its parent (before the deletion, whose
	 * foreign key would leave the conversation without one); a first
	 * message's, to the newest message left, which nothing follows
	 * (messages are only appended), the leaf of the branch last
	 * continued (another version of the first message).  A conversation
	 * that held nothing else goes with it. */
	if (run_ids(s, "the conversation's leaf", "UPDATE conversations SET leaf_id = CASE WHEN ?2 > 0 THEN ?2 ELSE "
	    "(SELECT max(id) FROM messages WHERE conversation_id = ?1 AND id <> ?4) END, updated = ?3 "
	    "WHERE id = ?1 AND leaf_id = ?4", 4, conv, parent, (int64_t)now_s(), msg_id) < 0 ||
	    run_ids(s, "the message", "DELETE FROM messages WHERE id = ?1", 1, msg_id) < 0 ||
	    run_ids(s, "the conversation", "DELETE FROM conversations WHERE id = ?1 AND NOT EXISTS "
	    "(SELECT 1 FROM messages WHERE conversation_id = ?1)", 1, conv) < 0)
		goto fail;
	if (conv_gone)
		*conv_gone = sqlite3_changes(s->db) > 0;
	return store_commit(s, "the withdrawal");
fail:
	store_rollback(s);
	return -1;
}

int
store_branch_switch(struct store *s, int64_t msg_id, int64_t *leaf)
{
	int64_t conv, parent, newest = 0;
	sqlite3_stmt *st;
	int rc;

	if (store_begin(s) < 0)
		return -1;
	if (msg_where(s, msg_id, &conv, &parent, NULL, 0) < 0)
		goto fail;
	/* Messages are only ever appended, so the newest message below MSG_ID
	 * has no children: it is the leaf of the branch last continued. */
	st = store_prepare(s, "WITH RECURSIVE sub(id) AS (SELECT ?1 UNION ALL SELECT m.id FROM messages m "
	    "JOIN sub ON m.parent_id = sub.id) SELECT max(id) FROM sub");
	if (!st)
		goto fail;
	sqlite3_bind_int64(st, 1, msg_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		newest = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW) {
		store_sqlfail(s, "the branch");
		goto fail;
	}
	if (run_ids(s, "the branch", "UPDATE conversations SET leaf_id = ?1, updated = ?2 WHERE id = ?3", 3, newest,
	    (int64_t)now_s(), conv) < 0)
		goto fail;
	if (leaf)
		*leaf = newest;
	return store_commit(s, "the branch");
fail:
	store_rollback(s);
	return -1;
}

/* --- generations --- */

/* How a generation ended: the word stored, whether the reply is whole, and
 * the schema-1 state column kept alongside. */
static const struct {
	enum store_end end;
	const char *name;
	int complete;
	const char *state;
} ends[] = {
	{ STORE_END_UNKNOWN, "unknown", 0, "complete" },
	{ STORE_END_FINISHED, "finished", 1, "complete" },
	{ STORE_END_STOP_STRING, "stop-string", 1, "complete" },
	{ STORE_END_STOPPED, "stopped", 0, "cancelled" },
	{ STORE_END_CONTEXT, "context", 0, "complete" },
	{ STORE_END_MAX_TOKENS, "max-tokens", 0, "complete" },
	{ STORE_END_ERROR, "error", 0, "error" },
	{ STORE_END_FINISHED_OR_STOP_STRING, "finished-or-stop-string", 1, "complete" },
};

/* E's row of the table; an end it does not list as unknown (the first). */
static size_t
end_row(enum store_end e)
{
	for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++)
		if (ends[i].end == e)
			return i;
	return 0;
}

const char *store_end_name(enum store_end e) { return ends[end_row(e)].name; }
int store_end_complete(enum store_end e) { return ends[end_row(e)].complete; }

enum store_end
store_end_parse(const char *word)
{
	for (size_t i = 0; word && i < sizeof(ends) / sizeof(ends[0]); i++)
		if (!strcmp(ends[i].name, word))
			return ends[i].end;
	return STORE_END_UNKNOWN;
}

static const char *end_state(enum store_end e) { return ends[end_row(e)].state; }

/* The id of template SOURCE, stored once per distinct text (in an open
 * transaction).  *ID gets 0 when there is no source. */
static int
template_id(struct store *s, const char *source, int64_t *id)
{
	struct sha256 h;
	char hex[65];
	sqlite3_stmt *st;
	int rc;

	*id = 0;
	if (!source)
		return 0;
	sha256_init(&h);
	sha256_update(&h, source, strlen(source));
	sha256_final_hex(&h, hex);
	st = store_prepare(s, "INSERT INTO templates(sha256, source) VALUES (?, ?) ON CONFLICT(sha256) "
	    "DO UPDATE SET sha256 = excluded.sha256 RETURNING id");
	if (!st)
		return -1;
	sqlite3_bind_text(st, 1, hex, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, source, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : store_sqlfail(s, "the chat template");
}

/* The text of array A (caller frees), A deleted; *OOM set when A (NULL)
 * or its text could not be made. */
static char *
json_text(cJSON *a, int *oom)
{
	char *out = a ? cJSON_PrintUnformatted(a) : NULL;
	cJSON_Delete(a);
	*oom = !out;
	return out;
}

/* G's stop strings as a JSON array (caller frees); NULL when not known. */
static char *
stop_json(const struct store_gen *g, int *oom)
{
	cJSON *a;

	*oom = 0;
	if (g->n_stop < 0)
		return NULL;
	a = cJSON_CreateArray();
	for (int i = 0; a && i < g->n_stop; i++) {
		cJSON *v = cJSON_CreateString(g->stop[i]);
		if (!v) {
			cJSON_Delete(a);
			a = NULL;
			break;
		}
		cJSON_AddItemToArray(a, v);
	}
	return json_text(a, oom);
}

/* The messages fed, as a JSON array of {"role","content"} (caller frees);
 * NULL when none were given.  SKIP: as many turns after the system prompt
 * left out (the oldest, dropped to fit a context). */
static char *
fed_json(const struct store_gen *g, int skip, int *oom)
{
	cJSON *a;
	int sys;

	*oom = 0;
	if (!g->fed || g->n_fed <= 0)
		return NULL;
	sys = g->fed[0].role && !strcmp(g->fed[0].role, "system");
	a = cJSON_CreateArray();
	for (int i = 0; a && i < g->n_fed; i++) {
		cJSON *m;
		if (i >= sys && i < sys + skip)
			continue;
		m = cJSON_CreateObject();
		if (!m || !cJSON_AddStringToObject(m, "role", g->fed[i].role ? g->fed[i].role : "") ||
		    !cJSON_AddStringToObject(m, "content", g->fed[i].content ? g->fed[i].content : "")) {
			cJSON_Delete(m);
			cJSON_Delete(a);
			a = NULL;
			break;
		}
		cJSON_AddItemToArray(a, m);
	}
	return json_text(a, oom);
}

/* A count, or NULL when it is not known (-1). */
static void
bind_count(sqlite3_stmt *st, int k, int n)
{
	if (n >= 0)
		sqlite3_bind_int(st, k, n);
	else
		sqlite3_bind_null(st, k);
}

static void
bind_text_or_null(sqlite3_stmt *st, int k, const char *t)
{
	if (t)
		sqlite3_bind_text(st, k, t, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, k);
}

/* The settings a generation records, each in its column (NULL when it
 * was not one known value: store_gen.unknown), in the order of
 * GEN_SETTING_COLUMNS: one table for writing them (store_gen_add) and
 * reading them back (store_gen_made).  A column is called as the
 * sampler's setting it holds (sampler_settings), or it is the reply's
 * own (max_tokens).  The seed is apart: it is always the one used. */
#define GEN_SETTING_COLUMNS "temp, top_k, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty, " \
	"penalty_last_n, max_tokens"
static const struct gen_setting {
	const char *column;
	unsigned bit;              /* SP_ (sampler.h) */
	int integer;               /* an int in store_gen, else a double */
	size_t gen;                /* its field in struct store_gen */
} gen_settings[] = {
	{ "temp", SP_TEMP, 0, offsetof(struct store_gen, temp) },
	{ "top_k", SP_TOP_K, 1, offsetof(struct store_gen, top_k) },
	{ "top_p", SP_TOP_P, 0, offsetof(struct store_gen, top_p) },
	{ "min_p", SP_MIN_P, 0, offsetof(struct store_gen, min_p) },
	{ "repeat_penalty", SP_REPEAT_PENALTY, 0, offsetof(struct store_gen, repeat_penalty) },
	{ "presence_penalty", SP_PRESENCE_PENALTY, 0, offsetof(struct store_gen, presence_penalty) },
	{ "frequency_penalty", SP_FREQUENCY_PENALTY, 0, offsetof(struct store_gen, frequency_penalty) },
	{ "penalty_last_n", SP_PENALTY_LAST_N, 1, offsetof(struct store_gen, penalty_last_n) },
	{ "max_tokens", SP_MAX_TOKENS, 1, offsetof(struct store_gen, max_tokens) },
};
#define N_GEN_SETTINGS (sizeof(gen_settings) / sizeof(gen_settings[0]))

/* Setting V into column K: NULL when UNKNOWN, else a real, or (INTEGER)
 * an integer. */
static void
bind_setting(sqlite3_stmt *st, int k, double v, int integer, unsigned unknown)
{
	if (unknown)
		sqlite3_bind_null(st, k);
	else if (integer)
		sqlite3_bind_int(st, k, (int)v);
	else
		sqlite3_bind_double(st, k, v);
}

int
store_gen_add(struct store *s, int64_t conv_id, int64_t msg_id, const struct store_gen *g,
	      int64_t *gen_id, int64_t *msg_id_out)
{
	sqlite3_stmt *st;
	int rc, k = 1, oom, oom2;
	int64_t tmpl = 0;
	char *fed = fed_json(g, 0, &oom), *stops = stop_json(g, &oom2);
	const char *system = g->n_fed > 0 && g->fed && g->fed[0].role && !strcmp(g->fed[0].role, "system") ?
	    g->fed[0].content : NULL;

	if (oom || oom2) {
		free(fed);
		free(stops);
		store_seterr(s, "out of memory; the reply was not saved");
		return -1;
	}
	if (store_begin(s) < 0) {
		free(fed);
		free(stops);
		return -1;
	}
	if (msg_id == 0) {
		if (insert_msg(s, conv_id, g->parent ? g->parent : -1, "assistant", g->content, &msg_id) < 0)
			goto fail;
	} else {
		st = store_prepare(s, "UPDATE generations SET chosen = 0 WHERE message_id = ?");
		if (!st)
			goto fail;
		sqlite3_bind_int64(st, 1, msg_id);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE) {
			store_sqlfail(s, "the reply");
			goto fail;
		}
		st = store_prepare(s, "UPDATE messages SET content = ? WHERE id = ? AND role = 'assistant'");
		if (!st)
			goto fail;
		sqlite3_bind_text(st, 1, g->content ? g->content : "", -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, msg_id);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE || sqlite3_changes(s->db) != 1) {
			if (rc == SQLITE_DONE)
				store_seterr(s, "%s: message %lld is not an assistant message", s->path, (long long)msg_id);
			else
				store_sqlfail(s, "the reply");
			goto fail;
		}
	}
	if (template_id(s, g->template_source, &tmpl) < 0)
		goto fail;
	/* A database kept at an older schema (store_open_version, tests) has
	 * no columns for the session's settings (7), its stop strings (8), nor
	 * its think switch (9). */
	const int version = store_schema_version(s), settings = version >= 7, has_stop = version >= 8;
	const int has_think = version >= 9;
#define GEN_COLUMNS "message_id, content, chosen, state, stop_reason, " GEN_SETTING_COLUMNS ", seed, " \
	"n_prompt, n_reused, n_gen, n_ctx_used, n_ctx, prompt_tps, gen_tps, ttft_ms, created, model_id, template_name, " \
	"template_id, system_prompt, prompt_messages, prompt_text, prompt_tokens, n_dropped, end_reason, reasoning, " \
	"n_reasoning"
#define GEN_VALUES "?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, " \
	"?, ?, ?"
	st = store_prepare(s, has_think ?
	    "INSERT INTO generations(" GEN_COLUMNS ", kv_type, exact_act, stop, think) VALUES (" GEN_VALUES ", ?, ?, ?, ?)" :
	    has_stop ?
	    "INSERT INTO generations(" GEN_COLUMNS ", kv_type, exact_act, stop) VALUES (" GEN_VALUES ", ?, ?, ?)" :
	    settings ? "INSERT INTO generations(" GEN_COLUMNS ", kv_type, exact_act) VALUES (" GEN_VALUES ", ?, ?)" :
	    "INSERT INTO generations(" GEN_COLUMNS ") VALUES (" GEN_VALUES ")");
#undef GEN_COLUMNS
#undef GEN_VALUES
	if (!st)
		goto fail;
	sqlite3_bind_int64(st, k++, msg_id);
	sqlite3_bind_text(st, k++, g->content ? g->content : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, k++, end_state(g->end), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, k++, store_end_name(g->end), -1, SQLITE_STATIC);
	/* A setting that was not one known value is NULL, as for replies
	 * recorded before it was kept. */
	for (size_t i = 0; i < N_GEN_SETTINGS; i++) {
		const struct gen_setting *gs = &gen_settings[i];
		const char *f = (const char *)g + gs->gen;
		bind_setting(st, k++, gs->integer ? *(const int *)f : *(const double *)f, gs->integer,
		    g->unknown & gs->bit);
	}
	sqlite3_bind_int64(st, k++, (int64_t)g->seed);
	bind_count(st, k++, g->n_prompt);
	bind_count(st, k++, g->n_reused);
	bind_count(st, k++, g->n_gen);
	/* A context of 0 is one the engine did not know (a remote server). */
	if (g->n_ctx > 0) {
		sqlite3_bind_int(st, k++, g->n_ctx_used);
		sqlite3_bind_int(st, k++, g->n_ctx);
	} else {
		sqlite3_bind_null(st, k++);
		sqlite3_bind_null(st, k++);
	}
	sqlite3_bind_double(st, k++, g->prompt_tps);
	sqlite3_bind_double(st, k++, g->gen_tps);
	sqlite3_bind_double(st, k++, g->ttft_ms);
	sqlite3_bind_int64(st, k++, now_s());
	if (g->model_id > 0)
		sqlite3_bind_int64(st, k++, g->model_id);
	else
		sqlite3_bind_null(st, k++);
	bind_text_or_null(st, k++, g->template_name);
	if (tmpl > 0)
		sqlite3_bind_int64(st, k++, tmpl);
	else
		sqlite3_bind_null(st, k++);
	/* "" when the fed messages are known and had no system prompt; NULL
	 * when nothing is known. */
	bind_text_or_null(st, k++, system ? system : fed ? "" : NULL);
	bind_text_or_null(st, k++, fed);
	bind_text_or_null(st, k++, g->prompt_text);
	bind_count(st, k++, g->prompt_text ? g->prompt_tokens : -1);
	sqlite3_bind_int(st, k++, g->n_dropped);
	if (g->end != STORE_END_UNKNOWN)
		sqlite3_bind_text(st, k++, store_end_name(g->end), -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, k++);
	bind_text_or_null(st, k++, g->reasoning);
	/* A reply without reasoning had none: 0, not NULL, which marks a
	 * reply recorded before schema 4 (its reasoning, if any, still in
	 * its content, which the export splits). */
	if (g->reasoning && g->n_reasoning > 0)
		sqlite3_bind_int(st, k++, g->n_reasoning);
	else if (!g->reasoning)
		sqlite3_bind_int(st, k++, 0);
	else
		sqlite3_bind_null(st, k++);
	if (settings) {
		bind_text_or_null(st, k++, g->kv_type);
		if (g->kv_type)
			sqlite3_bind_int(st, k++, g->exact_act != 0);
		else
			sqlite3_bind_null(st, k++);
	}
	if (has_stop)
		bind_text_or_null(st, k++, stops);
	if (has_think)
		bind_text_or_null(st, k++, g->think);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		store_sqlfail(s, "the reply");
		goto fail;
	}
	*gen_id = sqlite3_last_insert_rowid(s->db);
	if (msg_id_out)
		*msg_id_out = msg_id;
	for (int i = 0; i < g->n_adapters; i++) {
		const struct store_adapter *ad = &g->adapters[i];
		st = store_prepare(s, "INSERT INTO generation_adapters(generation_id, position, sha256, file_name, scale) "
		    "VALUES (?, ?, ?, ?, ?)");
		if (!st)
			goto fail;
		sqlite3_bind_int64(st, 1, *gen_id);
		sqlite3_bind_int(st, 2, i);
		sqlite3_bind_text(st, 3, ad->sha256 ? ad->sha256 : "", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, ad->file_name ? ad->file_name : "", -1, SQLITE_STATIC);
		sqlite3_bind_double(st, 5, ad->scale);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE) {
			store_sqlfail(s, "the reply's adapters");
			goto fail;
		}
	}
	free(fed);
	free(stops);
	return store_commit(s, "the reply");
fail:
	free(fed);
	free(stops);
	store_rollback(s);
	return -1;
}

/* --- what a generation was made under, read back --- */

static int
made_why(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Says in WHY what keeps a generation from being compared; returns 1. */
static int
made_why(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return 1;
}

/* Maps the adapters generation GEN_ID was made with onto NOW's (by
 * SHA-256), their scales into SCALES.  Returns 0, 1 with WHY (one NOW
 * lacks, or one whose SHA-256 was not recorded), or -1. */
static int
made_adapters(struct store *s, int64_t gen_id, const struct store_gen *now, float *scales, char *why,
	      size_t whylen)
{
	sqlite3_stmt *st = store_prepare(s, "SELECT sha256, file_name, scale FROM generation_adapters "
	    "WHERE generation_id = ? ORDER BY position");
	int rc = 0, step = SQLITE_DONE;

	if (!st)
		return -1;
	for (int j = 0; j < now->n_adapters; j++)
		scales[j] = 0.0f;
	sqlite3_bind_int64(st, 1, gen_id);
	while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
		const char *sha = (const char *)sqlite3_column_text(st, 0), *name = (const char *)sqlite3_column_text(st, 1);
		int j;
		if (!sha || !sha[0]) {
			rc = made_why(why, whylen, "was made with adapter %s, whose SHA-256 was not recorded", name ? name : "?");
			break;
		}
		/* Each of NOW's adapters stands for one of the generation's. */
		for (j = 0; j < now->n_adapters; j++)
			if (scales[j] == 0.0f && now->adapters[j].sha256 && !strcmp(now->adapters[j].sha256, sha))
				break;
		if (j == now->n_adapters)
			rc = made_why(why, whylen, "was made with adapter %s, which this session has not loaded",
			    name ? name : "?");
		else
			scales[j] = (float)sqlite3_column_double(st, 2);
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = store_sqlfail(s, "the reply's adapters");
	sqlite3_finalize(st);
	return rc;
}

/* Everything but the settings and the adapters, in the order a person
 * would look: how it ended, the model, the template, the prompt, the
 * stop strings, the cache.  Column numbers as in store_gen_made's query. */
static int
made_record(sqlite3_stmt *st, const struct store_gen *now, char *why, size_t whylen)
{
	const char *end = (const char *)sqlite3_column_text(st, 0), *source = (const char *)sqlite3_column_text(st, 3);
	const char *tname = (const char *)sqlite3_column_text(st, 4), *system = (const char *)sqlite3_column_text(st, 5);
	const char *fed = (const char *)sqlite3_column_text(st, 6), *stop = (const char *)sqlite3_column_text(st, 8);
	const char *kv = (const char *)sqlite3_column_text(st, 9);
	const char *now_system = now->n_fed > 0 && now->fed[0].role && !strcmp(now->fed[0].role, "system") ?
	    now->fed[0].content : "";
	enum store_end e = store_end_parse(end);
	char *now_fed, *now_stop;
	int oom, oom2, rc = 0;

	/* A reply the user stopped, or an error cut, is not what those
	 * settings make; one cut by max_tokens or the context is (B gets
	 * the same limits). */
	if (e == STORE_END_UNKNOWN)
		return made_why(why, whylen, "has no record of how it ended");
	if (strcmp(end_state(e), "complete"))
		return made_why(why, whylen, "was not finished (%s): it is not what its settings make", end);
	if (sqlite3_column_type(st, 1) == SQLITE_NULL)
		return made_why(why, whylen, "has no record of its model");
	if (now->model_id <= 0)
		return made_why(why, whylen, "cannot be matched to this session's model (not recorded)");
	if (sqlite3_column_int64(st, 1) != now->model_id)
		return made_why(why, whylen, "was made with another model (%s)",
		    (const char *)sqlite3_column_text(st, 2));
	if (!source)
		return made_why(why, whylen, "has no record of the template it was rendered with");
	if (!now->template_source)
		return made_why(why, whylen, "cannot be matched to this session's template (the server renders it)");
	if (strcmp(source, now->template_source))
		return made_why(why, whylen, "was made with another template (%s)", tname ? tname : "?");
	if (!system)
		return made_why(why, whylen, "has no record of its system prompt");
	if (strcmp(system, now_system))
		return made_why(why, whylen, "was made with %s system prompt", system[0] ? (now_system[0] ? "another" : "a") :
		    "no");
	if (!fed)
		return made_why(why, whylen, "has no record of the messages it was fed");
	now_fed = fed_json(now, sqlite3_column_int(st, 7), &oom);
	now_stop = stop_json(now, &oom2);
	if (oom || oom2)
		rc = made_why(why, whylen, "cannot be compared: out of memory");
	else if (!now_fed || strcmp(fed, now_fed))
		rc = made_why(why, whylen, "answered another version of the conversation (an earlier reply chosen since)");
	else if (!stop)
		rc = made_why(why, whylen, "has no record of its stop strings");
	else if (!now_stop || strcmp(stop, now_stop))
		rc = made_why(why, whylen, "was made with other stop strings (%s; this session: %s)", stop,
		    now_stop ? now_stop : "not known");
	else if (now->kv_type && !kv)
		rc = made_why(why, whylen, "has no record of its KV cache type");
	else if (now->kv_type && strcmp(kv, now->kv_type))
		rc = made_why(why, whylen, "was made with KV cache type %s (this session: %s)", kv, now->kv_type);
	else if (now->kv_type && (sqlite3_column_int(st, 10) != 0) != (now->exact_act != 0))
		rc = made_why(why, whylen, "was made %s exact activations (--exact-act)",
		    sqlite3_column_int(st, 10) ? "with" : "without");
	free(now_fed);
	free(now_stop);
	return rc;
}

int
store_gen_made(struct store *s, int64_t gen_id, const struct store_gen *now, struct sampler_params *sp,
	       float *scales, char *why, size_t whylen)
{
	/* A database kept at an older schema has no cache type (7), stop
	 * strings (8) nor think switch (9): not recorded. */
	const int version = store_schema_version(s);
	char sql[1024];
	sqlite3_stmt *st;
	int rc, step;

	snprintf(sql, sizeof(sql), "SELECT g.end_reason, g.model_id, COALESCE(" STORE_MODEL_LABEL("md") ", '?'), "
	    "tp.source, g.template_name, g.system_prompt, g.prompt_messages, COALESCE(g.n_dropped, 0), %s, %s, %s, "
	    "g.seed, " GEN_SETTING_COLUMNS ", g.n_ctx, %s FROM generations g LEFT JOIN models md ON md.id = g.model_id "
	    "LEFT JOIN templates tp ON tp.id = g.template_id WHERE g.id = ?", version >= 8 ? "g.stop" : "NULL",
	    version >= 7 ? "g.kv_type" : "NULL", version >= 7 ? "g.exact_act" : "NULL",
	    store_origin_think(s));
	if (!(st = store_prepare(s, sql)))
		return -1;
	sqlite3_bind_int64(st, 1, gen_id);
	step = sqlite3_step(st);
	if (step != SQLITE_ROW) {
		sqlite3_finalize(st);
		if (step == SQLITE_DONE)
			return store_seterr(s, "%s: no generation %lld", s->path, (long long)gen_id);
		return store_sqlfail(s, "the reply's record");
	}
	rc = made_record(st, now, why, whylen);
	/* The context decides which of a long conversation's oldest turns
	 * are left out: another size feeds B another prompt. */
	if (rc == 0 && now->n_ctx > 0 && sqlite3_column_type(st, 12 + (int)N_GEN_SETTINGS) == SQLITE_NULL)
		rc = made_why(why, whylen, "has no record of its context size");
	else if (rc == 0 && now->n_ctx > 0 && sqlite3_column_int(st, 12 + (int)N_GEN_SETTINGS) != now->n_ctx)
		rc = made_why(why, whylen, "was made in a context of %d tokens (this session: %d), which may cut the "
		    "conversation otherwise", sqlite3_column_int(st, 12 + (int)N_GEN_SETTINGS), now->n_ctx);
	/* The switch changes the rendered prompt; the same template (above)
	 * read it then as it reads it now. */
	if (rc == 0 && now->think) {
		const char *think = (const char *)sqlite3_column_text(st, 13 + (int)N_GEN_SETTINGS);
		if (!think)
			rc = made_why(why, whylen, "has no record of its think switch (enable_thinking, /think; not "
			    "recorded before schema 9)");
		else if (strcmp(think, now->think))
			rc = made_why(why, whylen, "was made with enable_thinking %s (this session: %s%s)", think,
			    now->think, !strcmp(think, "true") ? "; /think on makes them the same" :
			    !strcmp(think, "false") ? "; /think off makes them the same" : "");
	}
	if (rc == 0 && sqlite3_column_type(st, 11) == SQLITE_NULL)
		rc = made_why(why, whylen, "has no record of its seed");
	for (size_t i = 0; rc == 0 && i < N_GEN_SETTINGS; i++)
		if (sqlite3_column_type(st, 12 + (int)i) == SQLITE_NULL)
			rc = made_why(why, whylen, "has no record of its %s (it changed while the reply was written, or "
			    "was not sent)", gen_settings[i].column);
	if (rc == 0) {
		memset(sp, 0, sizeof(*sp));   /* every field is one of the table's, or the seed */
		sp->seed = (uint64_t)sqlite3_column_int64(st, 11);
		for (size_t i = 0; i < N_GEN_SETTINGS; i++) {
			const struct gen_setting *gs = &gen_settings[i];
			const struct sampler_setting *set = sampler_setting_find(gs->column);
			int col = 12 + (int)i;
			if (set)
				sampler_setting_put(sp, set, set->integer ? sqlite3_column_int(st, col) :
				    sqlite3_column_double(st, col));
			else if (sqlite3_column_int(st, col) != now->max_tokens)
				/* Not a setting of the sampler: a second reply gets the session's. */
				rc = made_why(why, whylen, "was made with %s %d (this session: %d; /set %s %d makes them "
				    "the same)", gs->column, sqlite3_column_int(st, col), now->max_tokens, gs->column,
				    sqlite3_column_int(st, col));
		}
	}
	sqlite3_finalize(st);
	if (rc == 0)
		rc = made_adapters(s, gen_id, now, scales, why, whylen);
	return rc;
}

/* --- alternatives --- */

int
store_alt_list(struct store *s, int64_t msg_id, store_alt_fn fn, void *ctx)
{
	sqlite3_stmt *st;
	int64_t conv;
	int rc, i = 0;

	if (msg_where(s, msg_id, &conv, NULL, NULL, 0) < 0)
		return -1;
	st = store_prepare(s, "SELECT g.id, g.chosen, g.content, g.end_reason, COALESCE(" STORE_MODEL_LABEL("md") ", ''), g.seed, "
	    "r.kind, r.value, g.created, g.reasoning, COALESCE(g.n_reasoning, 0) FROM generations g "
	    "LEFT JOIN models md ON md.id = g.model_id "
	    "LEFT JOIN ratings r ON r.generation_id = g.id WHERE g.message_id = ? ORDER BY g.id");
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, msg_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_alt a;
		char rating[8] = "";
		const char *kind = (const char *)sqlite3_column_text(st, 6);
		if (kind && !strcmp(kind, "thumb"))
			snprintf(rating, sizeof(rating), "%s", sqlite3_column_int(st, 7) ? "up" : "down");
		else if (kind)
			snprintf(rating, sizeof(rating), "%d", sqlite3_column_int(st, 7));
		memset(&a, 0, sizeof(a));
		a.gen_id = sqlite3_column_int64(st, 0);
		a.index = i++;
		a.chosen = sqlite3_column_int(st, 1);
		a.content = sqlite3_column_text(st, 2) ? (const char *)sqlite3_column_text(st, 2) : "";
		a.end = store_end_parse((const char *)sqlite3_column_text(st, 3));
		a.model = (const char *)sqlite3_column_text(st, 4);
		a.seed = (uint64_t)sqlite3_column_int64(st, 5);
		a.rating = rating;
		a.created = sqlite3_column_int64(st, 8);
		a.reasoning = (const char *)sqlite3_column_text(st, 9);
		a.n_reasoning = sqlite3_column_int(st, 10);
		if (fn(ctx, &a)) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : store_sqlfail(s, "the alternatives");
}

int
store_alt_choose(struct store *s, int64_t gen_id)
{
	sqlite3_stmt *st;
	int64_t msg = 0;
	int rc;

	if (store_begin(s) < 0)
		return -1;
	st = store_prepare(s, "SELECT message_id FROM generations WHERE id = ?");
	if (!st)
		goto fail;
	sqlite3_bind_int64(st, 1, gen_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		msg = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW) {
		if (rc == SQLITE_DONE)
			store_seterr(s, "there is no generation %lld", (long long)gen_id);
		else
			store_sqlfail(s, "the choice");
		goto fail;
	}
	st = store_prepare(s, "UPDATE generations SET chosen = (id = ?1) WHERE message_id = ?2");
	if (!st)
		goto fail;
	sqlite3_bind_int64(st, 1, gen_id);
	sqlite3_bind_int64(st, 2, msg);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		store_sqlfail(s, "the choice");
		goto fail;
	}
	st = store_prepare(s, "UPDATE messages SET content = (SELECT content FROM generations WHERE id = ?1) "
	    "WHERE id = ?2");
	if (!st)
		goto fail;
	sqlite3_bind_int64(st, 1, gen_id);
	sqlite3_bind_int64(st, 2, msg);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		store_sqlfail(s, "the choice");
		goto fail;
	}
	return store_commit(s, "the choice");
fail:
	store_rollback(s);
	return -1;
}

/* --- preferences --- */

static const char *const pick_words[] = { [STORE_PICK_A] = "a", [STORE_PICK_B] = "b", [STORE_PICK_TIE] = "tie" };

const char *
store_pick_name(enum store_pick p)
{
	return (int)p >= 0 && p <= STORE_PICK_TIE ? pick_words[p] : NULL;
}

int
store_pick_parse(const char *word, enum store_pick *p)
{
	for (int i = 0; word && i <= STORE_PICK_TIE; i++) {
		if (!strcmp(word, pick_words[i])) {
			*p = (enum store_pick)i;
			return 0;
		}
	}
	return -1;
}

int
store_pref_add(struct store *s, int64_t gen_a, int64_t gen_b, enum store_pick pick, const char *setting, int64_t *id)
{
	sqlite3_stmt *st;
	int64_t msg[2] = { 0, 0 };
	struct store_origin made[2] = { { 0 }, { 0 } };
	const char *why;
	char sql[1024];
	int rc;

	if (!store_pick_name(pick)) {
		store_seterr(s, "a preference is a, b or tie");
		return -1;
	}
	if (gen_a == gen_b) {
		store_seterr(s, "a preference compares two different generations");
		return -1;
	}
	if (store_begin(s) < 0)
		return -1;
	for (int k = 0; k < 2; k++) {
		/* The text is fixed (a truncated one would fail to prepare, and the tests). */
		snprintf(sql, sizeof(sql), "SELECT g.message_id, " STORE_ORIGIN_COLUMNS " FROM generations g "
		    STORE_ORIGIN_JOIN " WHERE g.id = ?", store_origin_think(s));
		st = store_prepare(s, sql);
		if (!st)
			goto fail;
		sqlite3_bind_int64(st, 1, k ? gen_b : gen_a);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			msg[k] = sqlite3_column_int64(st, 0);
			if (store_origin_read(st, 1, &made[k]) < 0)
				rc = SQLITE_NOMEM;
		}
		sqlite3_finalize(st);
		if (rc == SQLITE_NOMEM) {
			store_seterr(s, "out of memory");
			goto fail;
		}
		if (rc != SQLITE_ROW) {
			if (rc == SQLITE_DONE)
				store_seterr(s, "there is no generation %lld", (long long)(k ? gen_b : gen_a));
			else
				store_sqlfail(s, "the preference");
			goto fail;
		}
	}
	if (msg[0] != msg[1]) {
		store_seterr(s, "generations %lld and %lld answer different messages; a preference compares two "
		    "replies to one", (long long)gen_a, (long long)gen_b);
		goto fail;
	}
	/* A preference between replies to two prompts, or of two models,
	 * would say one setting made a difference that the prompt or the
	 * model made; a reply whose prompt was not recorded (made before
	 * natter kept it) cannot be shown to answer the same one. */
	for (int k = 0; k < 2; k++) {
		if (!made[k].messages) {
			store_seterr(s, "generation %lld has no record of the prompt it was fed, so it is no preference "
			    "pair", (long long)(k ? gen_b : gen_a));
			goto fail;
		}
	}
	if ((why = store_origin_differs(&made[0], &made[1]))) {
		store_seterr(s, "generations %lld and %lld are no preference pair: %s", (long long)gen_a,
		    (long long)gen_b, why);
		goto fail;
	}
	st = store_prepare(s, "INSERT INTO preferences(message_id, gen_a, gen_b, pick, setting, created) "
	    "VALUES (?, ?, ?, ?, ?, ?)");
	if (!st)
		goto fail;
	sqlite3_bind_int64(st, 1, msg[0]);
	sqlite3_bind_int64(st, 2, gen_a);
	sqlite3_bind_int64(st, 3, gen_b);
	sqlite3_bind_text(st, 4, store_pick_name(pick), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, setting ? setting : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, now_s());
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		store_sqlfail(s, "the preference");
		goto fail;
	}
	if (id)
		*id = sqlite3_last_insert_rowid(s->db);
	for (int k = 0; k < 2; k++)
		store_origin_clear(&made[k]);
	return store_commit(s, "the preference");
fail:
	for (int k = 0; k < 2; k++)
		store_origin_clear(&made[k]);
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
		store_seterr(s, "a rating is up, down, or 1 to 5 stars");
		return -1;
	}
	/* A comment is about the verdict it came with: another verdict
	 * without one must not inherit it ("great, exactly right" on a
	 * thumbs down), while the same verdict given again (+ pressed twice)
	 * keeps it.  (SET reads the row as it was before the update.) */
	st = store_prepare_write(s, "INSERT INTO ratings(generation_id, kind, value, comment, created) "
	    "VALUES (?, ?, ?, ?, ?) "
	    "ON CONFLICT(generation_id) DO UPDATE SET kind = excluded.kind, value = excluded.value, "
	    "comment = CASE WHEN excluded.comment IS NOT NULL THEN excluded.comment "
	    "WHEN kind = excluded.kind AND value = excluded.value THEN comment END, created = excluded.created");
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
	/* The generation's key alone: another constraint (a trigger's
	 * refusal) is said as the database says it. */
	if (rc != SQLITE_DONE && sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_FOREIGNKEY) {
		store_seterr(s, "there is no generation %lld", (long long)gen_id);
		return -1;
	}
	return rc == SQLITE_DONE ? 0 : store_sqlfail(s, "the rating");
}

int
store_conv_delete(struct store *s, int64_t conv_id)
{
	sqlite3_stmt *st;
	int rc;
	if (!(st = store_prepare_write(s, "DELETE FROM conversations WHERE id = ?")))
		return -1;
	sqlite3_bind_int64(st, 1, conv_id);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return store_sqlfail(s, "the deletion");
	if (sqlite3_changes(s->db) == 0) {
		store_seterr(s, "there is no conversation %lld", (long long)conv_id);
		return -1;
	}
	return 0;
}

