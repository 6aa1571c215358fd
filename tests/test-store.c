/* test-store.c -- the SQLite store: schema, migrations, the message tree, alternatives, history, search, export, crashes, concurrency. */
#include "config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "natter/chat.h"
#include "natter/chatlog.h"
#include "natter/llm.h"
#include "natter/sha256.h"
#include "natter/store.h"
#include "test.h"
#include "test-sql.h"
#include "llm/unicode.h"
#include "store/store-impl.h"   /* the store's connection: its busy wait turned off */

static char dir[256];

static void
path_of(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", dir, name);
}

static void
test_sha256(void)
{
	struct sha256 s;
	char hex[65];
	sha256_init(&s);
	sha256_final_hex(&s, hex);
	CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "sha256 of nothing");
	sha256_init(&s);
	sha256_update(&s, "abc", 3);
	sha256_final_hex(&s, hex);
	CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "sha256 of abc");
	sha256_init(&s);
	{
		/* A million 'a' in uneven pieces, crossing block boundaries. */
		static char a[997];
		size_t left = 1000000;
		memset(a, 'a', sizeof(a));
		for (size_t piece = 1; left > 0; piece = piece % 984 + 13) {
			size_t k = piece < left ? piece : left;
			sha256_update(&s, a, k);
			left -= k;
		}
	}
	sha256_final_hex(&s, hex);
	CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "sha256 of a million a");
}

static char *
capture(int (*fn)(struct store *, FILE *), struct store *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	fn(s, f);
	fclose(f);
	return buf;
}

static struct store_gen
gen(const char *content)
{
	struct store_gen g;
	memset(&g, 0, sizeof(g));
	g.content = content;
	g.end = STORE_END_FINISHED;
	g.temp = 0.7;
	g.top_k = 40;
	g.top_p = 0.9;
	g.min_p = 0.05;
	g.repeat_penalty = 1.1;
	g.seed = 1234;
	g.n_prompt = 10;
	g.n_gen = 5;
	g.gen_tps = 42.5;
	g.ttft_ms = 12;
	return g;
}

static void
test_schema_and_history(void)
{
	char p[512], err[512], *out;
	struct store *s;
	int64_t conv, m1, m2, g1, g2, g3, g4, msg;
	struct store_gen g;
	struct store_turn fed1[2] = { { "system", "Be kind." }, { "user", "Tell me about dreams" } };
	struct store_turn fed2[4] = { { "system", "Be kind." }, { "user", "Tell me about dreams" },
	    { "assistant", "Third try." }, { "user", "And nightmares?" } };

	path_of(p, sizeof(p), "h.db");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "open: %s", err);
	if (!s)
		return;
	CHECK(store_schema_version(s) == STORE_SCHEMA_VERSION, "new database at the current schema");
	{
		char jm[16];
		CHECK(!strcmp(query_text(p, "PRAGMA journal_mode", jm, sizeof(jm)), "wal"), "WAL journal (%s)", jm);
	}
	CHECK(store_conv_new(s, 0, NULL, "chatml", "Be kind.", &conv) == 0, "conv: %s", store_errmsg(s));
	CHECK(store_msg_add(s, conv, "tool", "x", &m1) < 0 && strstr(store_errmsg(s), "role is system, user or assistant, "
	    "not tool"), "a role the table has not: %s", store_errmsg(s));
	CHECK(store_msg_add(s, conv, "user", "Tell me about dreams", &m1) == 0, "msg: %s", store_errmsg(s));
	g = gen("Dreams are stories.");
	g.fed = fed1;
	g.n_fed = 2;
	CHECK(store_gen_add(s, conv, 0, &g, &g1, &msg) == 0, "gen 1: %s", store_errmsg(s));
	g.content = "I dream of \xff\xfe bytes.";   /* invalid UTF-8 from a model */
	CHECK(store_gen_add(s, conv, msg, &g, &g2, NULL) == 0, "gen 2: %s", store_errmsg(s));
	g.content = "Third try.";
	CHECK(store_gen_add(s, conv, msg, &g, &g3, NULL) == 0, "gen 3: %s", store_errmsg(s));
	CHECK(store_msg_add(s, conv, "user", "And nightmares?", &m2) == 0, "msg 2");
	g = gen("Those are \"bad\" dreams.\n");
	g.fed = fed2;
	g.n_fed = 4;
	CHECK(store_gen_add(s, conv, 0, &g, &g4, NULL) == 0, "gen 4");
	CHECK(store_rating_set(s, g1, "thumb", 1, "good one") == 0, "rate up");
	CHECK(store_rating_set(s, g2, "stars", 2, NULL) == 0, "rate 2");
	CHECK(store_rating_set(s, g4, "stars", 4, NULL) == 0, "rate 4");
	CHECK(store_rating_set(s, g4, "stars", 5, NULL) == 0, "re-rating replaces");
	CHECK(store_rating_set(s, 99999, "stars", 5, NULL) < 0 && strstr(store_errmsg(s), "no generation"),
	    "rating a missing generation: %s", store_errmsg(s));
	CHECK(store_rating_set(s, g1, "stars", 9, NULL) < 0, "9 stars refused");

	CHECK(query_int(p, "SELECT count(*) FROM generations") == 4, "four generations");
	CHECK(query_int(p, "SELECT count(*) FROM generations WHERE chosen") == 2, "one chosen per reply");
	CHECK(query_int(p, "SELECT value FROM ratings WHERE generation_id = 4") == 5, "the latest rating counts");
	CHECK(query_int(p, "SELECT top_k FROM generations WHERE id = 1") == 40, "sampler settings stored");
	CHECK(query_int(p, "SELECT seed FROM generations WHERE id = 1") == 1234, "seed stored");

	out = capture(store_history_list, s);
	CHECK(strstr(out, "Tell me about dreams") && strstr(out, "    4  "), "history list: %s", out);
	free(out);
	{
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);
		store_history_show(s, conv, f);
		fclose(f);
		CHECK(strstr(buf, "system: Be kind.") && strstr(buf, "Third try.") && strstr(buf, "rated up (\"good one\")") &&
		    strstr(buf, "rated 2/5") && strstr(buf, "(chosen)"), "history show: %s", buf);
		free(buf);
		f = open_memstream(&buf, &len);
		store_history_search(s, "nightmares", f);
		store_history_search(s, "\"unbalanced AND * (", f);   /* FTS syntax in user text */
		fclose(f);
		CHECK(strstr(buf, "[nightmares]") && strstr(buf, "no messages match"), "search: %s", buf);
		free(buf);
	}

	/* Export, each format, field by field. */
	{
		const char *fmts[5] = { "sft", "dpo", "kto", "openai-sft", "openai-dpo" };
		for (int k = 0; k < 5; k++) {
			struct store_export_opts o = { (enum store_format)k, 4, NULL, 0, 0, 0, 0, NULL };
			struct store_export_counts n;
			char op[512], *data, *line;
			size_t len;
			int lines = 0, valid = 1;
			CHECK(store_format_find(fmts[k]) == k && !strcmp(store_format_name(k), fmts[k]) &&
			    store_format_help(k)[0], "format %s in the table", fmts[k]);
			snprintf(op, sizeof(op), "%s/out.%s", dir, fmts[k]);
			CHECK(store_export(s, &o, op, &n, err, sizeof(err)) == 0, "export %s: %s", fmts[k], err);
			data = test_read_file(op, &len);
			CHECK(data && utf8_valid((const unsigned char *)data, len), "%s output is valid UTF-8", fmts[k]);
			for (line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
				cJSON *j = cJSON_Parse(line);
				lines++;
				if (!j) {
					valid = 0;
					continue;
				}
				if (k == 0 || k == 3) {
					cJSON *m = cJSON_GetObjectItem(j, "messages");
					int nm = cJSON_GetArraySize(m);
					cJSON *last = cJSON_GetArrayItem(m, nm - 1), *first = cJSON_GetArrayItem(m, 0);
					CHECK(!strcmp(cJSON_GetObjectItem(first, "role")->valuestring, "system") &&
					    !strcmp(cJSON_GetObjectItem(first, "content")->valuestring, "Be kind."), "sft starts with the system prompt");
					CHECK(!strcmp(cJSON_GetObjectItem(last, "role")->valuestring, "assistant"), "sft ends with the reply");
					const char *c = cJSON_GetObjectItem(last, "content")->valuestring;
					CHECK(!strcmp(c, "Dreams are stories.") || !strcmp(c, "Those are \"bad\" dreams.\n"), "sft reply %s", c);
					if (nm == 5)   /* the second turn was fed the then chosen first reply */
						CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 2), "content")->valuestring, "Third try."),
						    "earlier turns are what was fed");
					if (k == 3) {
						cJSON *w = cJSON_GetObjectItem(last, "weight");
						CHECK(cJSON_IsNumber(w) && w->valueint == 1, "openai-sft: the target has weight 1");
						if (nm == 5) {
							w = cJSON_GetObjectItem(cJSON_GetArrayItem(m, 2), "weight");
							CHECK(cJSON_IsNumber(w) && w->valueint == 0, "openai-sft: an earlier reply has weight 0");
						}
						CHECK(!cJSON_GetObjectItem(first, "weight"), "openai-sft: no weight on a system message");
					} else {
						CHECK(!cJSON_GetObjectItem(last, "weight"), "sft has no weights");
					}
				} else if (k == 1 || k == 4) {
					cJSON *pr = cJSON_GetObjectItem(j, k == 1 ? "prompt" : "input");
					const char *ch = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, k == 1 ? "chosen" :
					    "preferred_output"), 0), "content")->valuestring;
					const char *rj = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, k == 1 ?
					    "rejected" : "non_preferred_output"), 0), "content")->valuestring;
					if (k == 4)
						pr = cJSON_GetObjectItem(pr, "messages");
					CHECK(!strcmp(ch, "Dreams are stories.") && !strcmp(rj, "I dream of \xef\xbf\xbd\xef\xbf\xbd bytes."),
					    "dpo pair (chosen up over 2 stars; invalid bytes repaired): %s / %s", ch, rj);
					CHECK(cJSON_GetArraySize(pr) == 2, "dpo prompt: system and user");
				} else {
					cJSON *lab = cJSON_GetObjectItem(j, "label");
					const char *c = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "completion"), 0), "content")->valuestring;
					int want = strcmp(c, "I dream of \xef\xbf\xbd\xef\xbf\xbd bytes.") != 0;
					CHECK(cJSON_IsBool(lab) && cJSON_IsTrue(lab) == want, "kto label for %s", c);
				}
				cJSON_Delete(j);
			}
			CHECK(valid, "%s: every line parses as JSON", fmts[k]);
			CHECK(lines == n.lines && n.lines == (k == 0 || k == 3 ? 2 : k == 1 || k == 4 ? 1 : 3), "%s: %d lines (reported %d)",
			    fmts[k], lines, n.lines);
			free(data);
		}
		{
			/* The exact OpenAI lines. */
			struct store_export_opts o = { STORE_OPENAI_DPO, 4, NULL, 0, 0, 0, 0, NULL };
			struct store_export_counts n;
			char op[512], *data;
			size_t len;
			snprintf(op, sizeof(op), "%s/exact.jsonl", dir);
			CHECK(store_export(s, &o, op, &n, err, sizeof(err)) == 0, "openai-dpo");
			data = test_read_file(op, &len);
			CHECK(data && !strcmp(data, "{\"input\":{\"messages\":[{\"role\":\"system\",\"content\":\"Be kind.\"},"
			    "{\"role\":\"user\",\"content\":\"Tell me about dreams\"}]},\"preferred_output\":[{\"role\":\"assistant\","
			    "\"content\":\"Dreams are stories.\"}],\"non_preferred_output\":[{\"role\":\"assistant\",\"content\":"
			    "\"I dream of \xef\xbf\xbd\xef\xbf\xbd bytes.\"}]}\n"), "openai-dpo line: %s", data ? data : "");
			free(data);
			o.format = STORE_OPENAI_SFT;
			CHECK(store_export(s, &o, op, &n, err, sizeof(err)) == 0, "openai-sft");
			data = test_read_file(op, &len);
			CHECK(data && strstr(data, "{\"messages\":[{\"role\":\"system\",\"content\":\"Be kind.\"},{\"role\":\"user\","
			    "\"content\":\"Tell me about dreams\"},{\"role\":\"assistant\",\"content\":\"Third try.\",\"weight\":0},"
			    "{\"role\":\"user\",\"content\":\"And nightmares?\"},{\"role\":\"assistant\",\"content\":"
			    "\"Those are \\\"bad\\\" dreams.\\n\",\"weight\":1}]}\n"), "openai-sft line: %s", data ? data : "");
			free(data);
		}
		struct store_export_opts o = { STORE_SFT, 4, "no-such-model", 0, 0, 0, 0, NULL };
		struct store_export_counts n;
		char op[512];
		snprintf(op, sizeof(op), "%s/none.jsonl", dir);
		CHECK(store_export(s, &o, op, &n, err, sizeof(err)) == 0 && n.lines == 0, "--model filter");
		o.model = NULL;
		o.since = time(NULL) + 86400;
		CHECK(store_export(s, &o, op, &n, err, sizeof(err)) == 0 && n.lines == 0, "--since filter");
		o.since = 0;
		snprintf(op, sizeof(op), "%s/no-such-dir/x.jsonl", dir);
		CHECK(store_export(s, &o, op, &n, err, sizeof(err)) < 0 && !strncmp(err, op, strlen(op)) && !strstr(err, ".tmp"),
		    "an unwritable output is named as given: %s", err);
	}
	CHECK(store_conv_delete(s, conv) == 0, "delete");
	CHECK(query_int(p, "SELECT count(*) FROM generations") == 0, "delete cascades");
	CHECK(query_int(p, "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'dreams'") == 0, "FTS follows deletes");
	CHECK(store_conv_delete(s, conv) < 0, "deleting twice fails");
	store_close(s);
}

/* A comment belongs to the verdict it was written for: another verdict
 * without a comment drops it, the same verdict again keeps it, a new
 * comment replaces it. */
static void
test_rating_comment(void)
{
	const char *q = "SELECT kind || ' ' || value || ' ' || COALESCE(comment, '(none)') FROM ratings";
	char p[512], err[512], t[128];
	struct store *s;
	struct store_gen g = gen("A reply.");
	int64_t conv, m, gid, msg;

	path_of(p, sizeof(p), "comment.db");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "open: %s", err);
	if (!s)
		return;
	CHECK(store_conv_new(s, 0, NULL, NULL, NULL, &conv) == 0 && store_msg_add(s, conv, "user", "Q", &m) == 0 &&
	    store_gen_add(s, conv, 0, &g, &gid, &msg) == 0, "a reply: %s", store_errmsg(s));
	CHECK(store_rating_set(s, gid, "thumb", 1, "great, exactly right") == 0 &&
	    store_rating_set(s, gid, "thumb", 0, NULL) == 0 && !strcmp(query_text(p, q, t, sizeof(t)), "thumb 0 (none)"),
	    "down after a commented up: %s", t);
	CHECK(store_rating_set(s, gid, "thumb", 0, "wrong year") == 0 && store_rating_set(s, gid, "thumb", 0, NULL) == 0 &&
	    !strcmp(query_text(p, q, t, sizeof(t)), "thumb 0 wrong year"), "down again keeps its comment: %s", t);
	CHECK(store_rating_set(s, gid, "stars", 1, NULL) == 0 && !strcmp(query_text(p, q, t, sizeof(t)), "stars 1 (none)"),
	    "1 star after a commented down: %s", t);
	CHECK(store_rating_set(s, gid, "stars", 4, "close") == 0 && store_rating_set(s, gid, "stars", 4, "better") == 0 &&
	    !strcmp(query_text(p, q, t, sizeof(t)), "stars 4 better"), "a new comment replaces the old: %s", t);
	store_close(s);
}

/* A database file deleted, or replaced by another, while it is open:
 * every kind of write is refused, naming the file, not "saved" into a
 * file no one will open again; the file now at the path is untouched. */
static void
test_file_gone(void)
{
	char p[512], moved[520], err[512], t[64];
	struct store *s;
	struct store_gen g = gen("A reply.");
	int64_t conv, conv2, m, gid, msg;

	for (int replaced = 0; replaced < 2; replaced++) {
		path_of(p, sizeof(p), replaced ? "gone-replaced.db" : "gone-deleted.db");
		snprintf(moved, sizeof(moved), "%s.old", p);
		CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "open: %s", err);
		if (!s)
			return;
		CHECK(store_conv_new(s, 0, NULL, NULL, NULL, &conv) == 0 && store_msg_add(s, conv, "user", "Q", &m) == 0 &&
		    store_gen_add(s, conv, 0, &g, &gid, &msg) == 0, "a reply: %s", store_errmsg(s));
		if (replaced) {
			/* Moved aside and another database put in its place. */
			struct store *other;
			CHECK(rename(p, moved) == 0, "rename: %s", strerror(errno));
			CHECK(store_open(p, 0, &other, err, sizeof(err)) == 0, "the new file: %s", err);
			store_close(other);
		} else {
			CHECK(unlink(p) == 0, "unlink: %s", strerror(errno));
		}
		CHECK(store_conv_new(s, 0, NULL, NULL, NULL, &conv2) < 0 && strstr(store_errmsg(s), p) &&
		    strstr(store_errmsg(s), "was deleted or replaced while natter had it open"),
		    "%s: a new conversation: %s", replaced ? "replaced" : "deleted", store_errmsg(s));
		CHECK(store_msg_add(s, conv, "user", "Q2", &m) < 0 && strstr(store_errmsg(s), "deleted or replaced"),
		    "a message: %s", store_errmsg(s));
		CHECK(store_gen_add(s, conv, msg, &g, &gid, &msg) < 0 && strstr(store_errmsg(s), "deleted or replaced"),
		    "a reply: %s", store_errmsg(s));
		CHECK(store_rating_set(s, gid, "thumb", 1, NULL) < 0 && strstr(store_errmsg(s), "deleted or replaced"),
		    "a rating: %s", store_errmsg(s));
		CHECK(store_conv_set_system(s, conv, "sys") < 0 && store_conv_delete(s, conv) < 0,
		    "a system prompt, a deletion: %s", store_errmsg(s));
		store_close(s);
		if (replaced)
			CHECK(!strcmp(query_text(p, "SELECT count(*) FROM conversations", t, sizeof(t)), "0"),
			    "the file now there untouched: %s conversations", t);
		unlink(moved);
	}
}

static void
test_migration_and_refusals(void)
{
	char p[512], err[512];
	struct store *s;
	int64_t conv;

	path_of(p, sizeof(p), "old.db");
	CHECK(store_open_version(p, 1, &s, err, sizeof(err)) == 0, "v1: %s", err);
	if (!s)
		return;
	CHECK(store_schema_version(s) == 1, "created at schema 1");
	store_close(s);
	/* A message as natter with schema 1 wrote it. */
	CHECK(exec_sql(p, "INSERT INTO conversations(title, created, updated) VALUES ('', 1, 1);"
	    "INSERT INTO messages(conversation_id, seq, role, content, created) VALUES (1, 1, 'user', "
	    "'remember the lighthouse', 1);") == 0, "schema-1 rows");
	CHECK(query_int(p, "SELECT count(*) FROM sqlite_master WHERE name = 'messages_fts'") == 0, "v1 has no FTS");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "migrate: %s", err);
	if (!s)
		return;
	CHECK(store_schema_version(s) == STORE_SCHEMA_VERSION, "migrated to schema %d", STORE_SCHEMA_VERSION);
	{
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);
		store_history_search(s, "lighthouse", f);
		fclose(f);
		CHECK(strstr(buf, "[lighthouse]"), "old messages are searchable after the migration: %s", buf);
		free(buf);
	}
	store_close(s);

	/* A newer schema: refused, the file untouched. */
	{
		sqlite3 *db;
		size_t l1, l2;
		char *before, *after;
		sqlite3_open(p, &db);
		sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA user_version = 99;", NULL, NULL, NULL);
		sqlite3_close(db);
		before = test_read_file(p, &l1);
		CHECK(store_open(p, 0, &s, err, sizeof(err)) < 0 && strstr(err, "newer natter") && strstr(err, "not changed"),
		    "newer schema refused: %s", err);
		after = test_read_file(p, &l2);
		CHECK(l1 == l2 && !memcmp(before, after, l1), "newer database untouched");
		free(before);
		free(after);
	}
	/* A negative schema version (a damaged header): refused, the file
	 * untouched (its upgrade read migrations[-N] and crashed). */
	for (int v = -1; v >= -20; v *= 2) {
		sqlite3 *db;
		size_t l1 = 0, l2 = 1;
		char *before, *after, sql[96];
		sqlite3_open(p, &db);
		snprintf(sql, sizeof(sql), "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA user_version = %d;", v);
		sqlite3_exec(db, sql, NULL, NULL, NULL);
		sqlite3_close(db);
		before = test_read_file(p, &l1);
		CHECK(store_open(p, 0, &s, err, sizeof(err)) < 0 && strstr(err, "damaged, or not natter's") &&
		    strstr(err, "not changed"), "schema version %d refused: %s", v, err);
		after = test_read_file(p, &l2);
		CHECK(before && after && l1 == l2 && !memcmp(before, after, l1), "schema version %d: untouched", v);
		free(before);
		free(after);
	}
	/* A database not in WAL mode (switched back by hand) that another
	 * program is reading: the switch to WAL waits the busy timeout in
	 * all, and says so (each of 1000 tries waited it: hours). */
	{
		char q[512];
		sqlite3 *db, *reader;
		path_of(q, sizeof(q), "rollback.db");
		CHECK(store_open(q, 0, &s, err, sizeof(err)) == 0, "create: %s", err);
		store_close(s);
		sqlite3_open(q, &db);
		CHECK(sqlite3_exec(db, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) == SQLITE_OK, "back to DELETE");
		sqlite3_close(db);
		sqlite3_open(q, &reader);
		CHECK(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM messages;", NULL, NULL, NULL) == SQLITE_OK,
		    "a reader holds it");
		CHECK(store_open(q, 0, &s, err, sizeof(err)) < 0 && strstr(err, "stayed busy"), "busy: %s", err);
		sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL);
		sqlite3_close(reader);
		CHECK(store_open(q, 0, &s, err, sizeof(err)) == 0, "once it is free: %s", err);
		store_close(s);
	}
	/* Garbage, and another program's database. */
	{
		char q[512];
		FILE *f;
		size_t l1;
		char *before;
		path_of(q, sizeof(q), "garbage.db");
		f = fopen(q, "w");
		for (int i = 0; i < 4096; i++)
			fputc("natter"[i % 6], f);
		fclose(f);
		CHECK(store_open(q, 0, &s, err, sizeof(err)) < 0 && strstr(err, "not a natter database"), "garbage: %s", err);
		before = test_read_file(q, &l1);
		CHECK(l1 == 4096 && !memcmp(before, "natter", 6), "garbage file untouched");
		free(before);
		sqlite3 *db;
		path_of(q, sizeof(q), "other.db");
		sqlite3_open(q, &db);
		sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL);
		sqlite3_close(db);
		CHECK(store_open(q, 0, &s, err, sizeof(err)) < 0 && strstr(err, "not natter's"), "foreign db: %s", err);
		/* Read-only: reading works, writing says why it failed. */
		path_of(q, sizeof(q), "h2.db");
		CHECK(store_open(q, 0, &s, err, sizeof(err)) == 0, "create");
		store_close(s);
		CHECK(store_open(q, STORE_READONLY, &s, err, sizeof(err)) == 0, "read-only open: %s", err);
		if (s) {
			CHECK(store_conv_new(s, 0, NULL, NULL, NULL, &conv) < 0 && strstr(store_errmsg(s), "read-only"),
			    "write to a read-only store: %s", store_errmsg(s));
			store_close(s);
		}
	}
}

/* Writes a small file standing in for a model (store_model hashes it). */
static void
fake_model(const char *path, const char *bytes)
{
	FILE *f = fopen(path, "wb");
	if (f) {
		fputs(bytes, f);
		fclose(f);
	}
}

/* A model file rewritten in place with other bytes of the same size, its
 * modification time put back to the nanosecond (as cp -p or curl -R
 * would leave it): the history records the new bytes' hash, not the one
 * it kept for the path. */
static void
test_model_rewritten(void)
{
	char p[512], mp[512], err[512], hex[65], q[128], t[80];
	struct store *s;
	struct stat before, after;
	int64_t id1 = 0, id1b = 0, id2 = 0;

	path_of(p, sizeof(p), "rewritten.db");
	path_of(mp, sizeof(mp), "rewritten.gguf");
	fake_model(mp, "model one");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "open: %s", err);
	if (!s)
		return;
	CHECK(store_model(s, mp, "llama", "F32", &id1) == 0 && store_model(s, mp, "llama", "F32", &id1b) == 0 &&
	    id1 == id1b, "the same file twice, one model: %s", store_errmsg(s));
	CHECK(stat(mp, &before) == 0, "stat: %s", strerror(errno));
	fake_model(mp, "model two");
	{
		struct timespec ts[2] = { before.st_atim, before.st_mtim };
		CHECK(utimensat(AT_FDCWD, mp, ts, 0) == 0, "utimensat: %s", strerror(errno));
	}
	CHECK(stat(mp, &after) == 0 && after.st_size == before.st_size && after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
	    after.st_mtim.tv_nsec == before.st_mtim.tv_nsec, "the rewritten file keeps its size and time");
	CHECK(store_model(s, mp, "llama", "F32", &id2) == 0 && id2 != id1, "rewritten: model %lld, before %lld: %s",
	    (long long)id2, (long long)id1, store_errmsg(s));
	CHECK(sha256_file(mp, hex, err, sizeof(err)) == 0, "sha256_file: %s", err);
	/* store_model_keep: the hash computed once is kept by the caller
	 * (filled on the first call), and a kept one is not computed again. */
	{
		char kept[65] = "", want[65], mp2[512], mp3[512];
		int64_t id3 = 0, id4 = 0;
		path_of(mp2, sizeof(mp2), "kept.gguf");
		path_of(mp3, sizeof(mp3), "kept2.gguf");
		fake_model(mp2, "model three");
		fake_model(mp3, "model four");
		CHECK(sha256_file(mp2, want, err, sizeof(err)) == 0, "sha256_file: %s", err);
		CHECK(store_model_keep(s, mp2, "llama", "F32", kept, &id3) == 0 && id3 != id2 && !strcmp(kept, want),
		    "kept: %s (%s)", kept, store_errmsg(s));
		snprintf(kept, sizeof(kept), "%064d", 7);
		CHECK(store_model_keep(s, mp3, "llama", "F32", kept, &id4) == 0 && id4 != id3, "a kept hash: %s",
		    store_errmsg(s));
		snprintf(q, sizeof(q), "SELECT sha256 FROM models WHERE id = %lld", (long long)id4);
		CHECK(!strcmp(query_text(p, q, t, sizeof(t)), kept), "recorded as kept, not hashed again: %s", t);
	}
	store_close(s);
	snprintf(q, sizeof(q), "SELECT sha256 FROM models WHERE id = %lld", (long long)id2);
	CHECK(!strcmp(query_text(p, q, t, sizeof(t)), hex), "the rewritten file's row has its bytes' hash");
}

/* Every end's word is stored (the schema's CHECK takes it) and read back
 * as itself; the whole ones are the model's end, a stop string, and the
 * remote "stop" that does not say which of the two. */
static void
test_end_words(void)
{
	static const struct { enum store_end e; int whole; } ends[] = {
		{ STORE_END_FINISHED, 1 }, { STORE_END_STOP_STRING, 1 }, { STORE_END_FINISHED_OR_STOP_STRING, 1 },
		{ STORE_END_STOPPED, 0 }, { STORE_END_CONTEXT, 0 }, { STORE_END_MAX_TOKENS, 0 }, { STORE_END_ERROR, 0 },
	};
	char p[512], err[512], q[128], t[64];
	struct store *s;
	int64_t conv, m, gid, msg;

	path_of(p, sizeof(p), "ends.db");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "open: %s", err);
	if (!s)
		return;
	for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
		struct store_gen g = gen("A reply.");
		const char *w = store_end_name(ends[i].e);
		g.end = ends[i].e;
		CHECK(store_end_parse(w) == ends[i].e && store_end_complete(ends[i].e) == ends[i].whole,
		    "%s: parsed back, whole %d", w, ends[i].whole);
		CHECK(store_conv_new(s, 0, NULL, NULL, NULL, &conv) == 0 && store_msg_add(s, conv, "user", "Q", &m) == 0 &&
		    store_gen_add(s, conv, 0, &g, &gid, &msg) == 0, "%s: stored: %s", w, store_errmsg(s));
		snprintf(q, sizeof(q), "SELECT end_reason FROM generations WHERE id = %lld", (long long)gid);
		CHECK(!strcmp(query_text(p, q, t, sizeof(t)), w), "%s: read back as %s", w, t);
	}
	store_close(s);
}

static char *
capture_search(struct store *s, const char *q)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	store_history_search(s, q, f);
	fclose(f);
	return buf;
}

static char *
capture_show(struct store *s, int64_t conv)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	store_history_show(s, conv, f);
	fclose(f);
	return buf;
}

struct alts {
	int n, chosen;
	int64_t ids[8];
	char content[8][64], rating[8][8], reasoning[8][64], model[8][64];
	int has_reasoning[8], n_reasoning[8];
	enum store_end end[8];
};

static int
collect_alt(void *ctx, const struct store_alt *a)
{
	struct alts *x = ctx;
	if (x->n < 8) {
		x->ids[x->n] = a->gen_id;
		snprintf(x->content[x->n], sizeof(x->content[0]), "%s", a->content);
		snprintf(x->rating[x->n], sizeof(x->rating[0]), "%s", a->rating);
		snprintf(x->model[x->n], sizeof(x->model[0]), "%s", a->model ? a->model : "");
		x->end[x->n] = a->end;
		x->has_reasoning[x->n] = a->reasoning != NULL;
		snprintf(x->reasoning[x->n], sizeof(x->reasoning[0]), "%s", a->reasoning ? a->reasoning : "");
		x->n_reasoning[x->n] = a->n_reasoning;
		if (a->chosen)
			x->chosen = x->n;
	}
	x->n++;
	return 0;
}

struct loaded {
	int n;
	int64_t ids[16], gens[16];
	char text[16][64];
};

static int
collect_msg(void *ctx, int64_t id, const char *role, const char *content, int64_t gen)
{
	struct loaded *l = ctx;
	if (l->n < 16) {
		l->ids[l->n] = id;
		l->gens[l->n] = gen;
		snprintf(l->text[l->n], sizeof(l->text[0]), "%s:%s", role, content);
	}
	l->n++;
	return 0;
}

/* A schema-2 database, filled as natter 0.1 filled it, migrates to schema
 * 3: the messages become a chain, each generation's end is kept, what the
 * old schema did not record is NULL (unknown), and search finds CJK. */
static void
test_migration_from_2(void)
{
	char p[512], err[512], t[256], *out;
	struct store *s;
	struct alts a = { 0 };
	struct loaded l = { 0 };

	path_of(p, sizeof(p), "v2.db");
	CHECK(store_open_version(p, 2, &s, err, sizeof(err)) == 0, "v2: %s", err);
	if (!s)
		return;
	CHECK(store_schema_version(s) == 2, "created at schema 2");
	store_close(s);
	CHECK(exec_sql(p,
	    "INSERT INTO models(sha256, file_name, size, arch, type_name, created) VALUES ('ab12', 'old.gguf', 9, 'llama', 'F32', 1);"
	    "INSERT INTO conversations(title, model_id, chat_template, system_prompt, created, updated) "
	    "  VALUES ('dreams', 1, 'chatml (built-in)', 'Be terse.', 1, 2);"
	    "INSERT INTO messages(conversation_id, seq, role, content, created) VALUES"
	    "  (1, 1, 'user', '\xe5\xa4\xa2\xe3\x81\xae\xe4\xb8\xad\xe3\x81\xa7\xe7\xa7\x81\xe3\x81\xaf\xe9\xa3\x9b\xe3\x82\x93\xe3\x81\xa0 a whisper', 1),"
	    "  (1, 2, 'assistant', 'chosen text', 1), (1, 3, 'user', 'again', 1), (1, 4, 'assistant', 'cut', 1);"
	    "INSERT INTO generations(message_id, content, chosen, state, stop_reason, temp, seed, n_gen, created) VALUES"
	    "  (2, 'first try', 0, 'complete', 'length limit', 0.7, 5, 8, 1),"
	    "  (2, 'chosen text', 1, 'complete', 'done', 0.7, 6, 3, 1),"
	    "  (4, 'cut', 1, 'cancelled', 'cancelled', 0.7, 7, 1, 1);"
	    "INSERT INTO ratings(generation_id, kind, value, created) VALUES (2, 'thumb', 1, 1), (1, 'stars', 2, 1);") == 0,
	    "schema-2 rows");
	CHECK(store_open_version(p, 3, &s, err, sizeof(err)) == 0, "migrate 2 -> 3: %s", err);
	if (!s)
		return;
	CHECK(store_schema_version(s) == 3, "at schema 3");
	CHECK(query_int(p, "SELECT count(*) FROM messages WHERE parent_id IS NULL") == 1 &&
	    query_int(p, "SELECT parent_id FROM messages WHERE id = 2") == 1 &&
	    query_int(p, "SELECT parent_id FROM messages WHERE id = 3") == 2 &&
	    query_int(p, "SELECT parent_id FROM messages WHERE id = 4") == 3, "the messages became a chain");
	CHECK(query_int(p, "SELECT leaf_id FROM conversations WHERE id = 1") == 4, "the last message is the leaf");
	CHECK(!strcmp(query_text(p, "SELECT group_concat(end_reason, ' ') FROM (SELECT end_reason FROM generations "
	    "ORDER BY id)", t, sizeof(t)), "max-tokens finished stopped"), "ends kept: %s", t);
	CHECK(query_int(p, "SELECT count(*) FROM generations WHERE model_id IS NULL AND prompt_messages IS NULL "
	    "AND prompt_text IS NULL AND system_prompt IS NULL") == 3, "what schema 2 did not record stays unknown");
	/* The API reads the current schema: on to it (test_migration_from_3 tests that step). */
	store_close(s);
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0 && store_schema_version(s) == STORE_SCHEMA_VERSION,
	    "migrate 3 -> %d: %s", STORE_SCHEMA_VERSION, err);
	if (!s)
		return;
	CHECK(store_alt_list(s, 2, collect_alt, &a) == 0 && a.n == 2 && a.chosen == 1 && !strcmp(a.rating[0], "2") &&
	    !strcmp(a.rating[1], "up") && a.end[0] == STORE_END_MAX_TOKENS && !strcmp(a.content[0], "first try"),
	    "the alternatives of a migrated reply (%d)", a.n);
	{
		char *sys = NULL;
		CHECK(store_conv_load(s, 1, &sys, collect_msg, &l) == 0 && l.n == 4 && l.gens[1] == 2 &&
		    !strcmp(l.text[3], "assistant:cut") && sys && !strcmp(sys, "Be terse."), "load after migration (%d)", l.n);
		free(sys);
	}
	out = capture_search(s, "\xe4\xb8\xad\xe3\x81\xa7\xe7\xa7\x81");   /* 中で私: inside a run of CJK */
	CHECK(strstr(out, "[\xe4\xb8\xad\xe3\x81\xa7\xe7\xa7\x81]"), "CJK substring search: %s", out);
	free(out);
	out = capture_search(s, "\xe5\xa4\xa2");   /* 夢: one character */
	CHECK(strstr(out, "[\xe5\xa4\xa2]") && strstr(out, "conversation 1 [1] user"), "one-character search: %s", out);
	free(out);
	out = capture_search(s, "zq");
	CHECK(strstr(out, "no messages match"), "two characters, no match: %s", out);
	free(out);
	out = capture_search(s, "ag");
	CHECK(strstr(out, "[ag]ain"), "two-character search: %s", out);
	free(out);
	out = capture_search(s, "whisp*");
	CHECK(strstr(out, "[whisp]er") || strstr(out, "[whisper]"), "prefix search: %s", out);
	free(out);
	out = capture_search(s, "WHISPER");
	CHECK(strstr(out, "conversation 1 [1]"), "search ignores ASCII case: %s", out);
	free(out);
	{
		int64_t id;
		CHECK(store_msg_add(s, 1, "user", "a brand new lighthouse", &id) == 0 &&
		    query_int(p, "SELECT parent_id FROM messages WHERE id = 5") == 4, "new messages continue the chain");
		out = capture_search(s, "new light");
		CHECK(strstr(out, "[new light]"), "the index follows new messages: %s", out);
		free(out);
	}
	store_close(s);
}

/* A message of some 4,900 tokens ("aaaa" words): more than the 512-token
 * context of chatlog_setup's sessions holds. */
static const char *
too_long(void)
{
	static char big[6001];
	if (!big[0]) {
		memset(big, 'a', 6000);
		for (int i = 0; i < 6000; i += 5)
			big[i] = ' ';
	}
	return big;
}

/* The start of the chatlog tests: the history NAME in the test folder
 * (its path into P) and the f32 model, with chat options for it (512
 * tokens of context, one thread, SEED).  Returns 0, or -1 after a SKIP
 * (WHAT: the test's name) or a failed check. */
static int
chatlog_setup(const char *name, const char *what, char *p, size_t pn, struct store **s, struct llm_model **m,
	      struct chat_opts *o, uint64_t seed)
{
	const char *fx = test_fixtures();
	char path[2100], err[512];

	*s = NULL;
	*m = NULL;
	if (!fx) {
		SKIP("fixtures not found: %s", what);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/models/aidreams260K-f32.gguf", fx);
	path_of(p, pn, name);
	if (store_open(p, 0, s, err, sizeof(err)) < 0 || llm_model_load(path, m, err, sizeof(err)) < 0) {
		CHECK(0, "setup: %s", err);
		store_close(*s);
		return -1;
	}
	chat_opts_default(o);
	o->n_threads = 1;
	o->n_ctx = 512;
	o->sp.seed = seed;
	return 0;
}

/* A session of M with options O into *C.  Returns 0, or -1 after a failed
 * check. */
static int
session_new(struct llm_model *m, const struct chat_opts *o, struct chat **c)
{
	char err[512];

	if (chat_new(m, o, c, err, sizeof(err)) < 0) {
		CHECK(0, "chat_new: %s", err);
		return -1;
	}
	return 0;
}

/* L, emptied, records session C in S under C's template. */
static void
chatlog_attach(struct chatlog *l, struct store *s, struct chat *c)
{
	memset(l, 0, sizeof(*l));
	l->s = s;
	l->template_name = chat_template_name(c);
}

/* A reply the store could not take when it was made (a failure for the
 * time of it: here a trigger) is saved before the next message, which
 * hangs from it: the stored branch is the conversation the session had,
 * and the reply keeps what made it. */
static void
test_chatlog_unsaved_reply(void)
{
	char p[512], err[512], t[4096];
	struct store *s;
	struct llm_model *m = NULL;
	struct chat *c = NULL;
	struct chat_opts o;
	struct chat_stats st;
	struct chatlog l;
	char *fed1 = NULL;
	size_t plen;

	if (chatlog_setup("chatlog-unsaved.db", "a reply saved late", p, sizeof(p), &s, &m, &o, 5) < 0)
		return;
	o.max_tokens = 5;
	if (session_new(m, &o, &c) < 0)
		goto out;
	chatlog_attach(&l, s, c);
	chat_add_user(c, "First", 5);
	CHECK(chatlog_user(&l, c) == 0 && chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0, "reply 1: %s", err);
	fed1 = strdup(chat_prompt_text(c, &plen));
	CHECK(sqlite3_exec(s->db, "CREATE TEMP TRIGGER no_gens BEFORE INSERT ON generations BEGIN "
	    "SELECT RAISE(ABORT, 'not now'); END", NULL, NULL, NULL) == SQLITE_OK, "the trigger");
	CHECK(chatlog_reply(&l, c, &st) < 0 && strstr(store_errmsg(s), "not now"), "reply 1 refused: %s",
	    store_errmsg(s));
	CHECK(sqlite3_exec(s->db, "DROP TRIGGER no_gens", NULL, NULL, NULL) == SQLITE_OK, "the trigger dropped");
	chat_add_user(c, "Second", 6);
	CHECK(chatlog_user(&l, c) == 0, "message 2: %s", store_errmsg(s));
	CHECK(query_int(p, "SELECT count(*) FROM generations") == 1 && chat_message_tag(c, 1) > 0 &&
	    chat_alt_tag(c, 1, 0) > 0, "reply 1 saved with message 2");
	CHECK(query_int(p, "SELECT parent_id FROM messages WHERE id = 3") == chat_message_tag(c, 1) &&
	    query_int(p, "SELECT parent_id FROM messages WHERE id = 2") == chat_message_tag(c, 0),
	    "message 2 answers reply 1, which answers message 1");
	CHECK(!strcmp(query_text(p, "SELECT content FROM generations WHERE id = 1", t, sizeof(t)),
	    chat_message_content(c, 1)), "reply 1's text");
	CHECK(fed1 && !strcmp(query_text(p, "SELECT prompt_text FROM generations WHERE id = 1", t, sizeof(t)), fed1) &&
	    query_int(p, "SELECT seed FROM generations WHERE id = 1") == 5, "reply 1's prompt and seed, as made");
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l, c, &st) == 0 &&
	    query_int(p, "SELECT count(*) FROM generations") == 2, "reply 2: %s", store_errmsg(s));
out:
	free(fed1);
	chat_free(c);
	llm_model_free(m);
	store_close(s);
}

static char *export_to(struct store *s, const struct store_export_opts *o, struct store_export_counts *n);

/* Parents that make a loop (a damaged database): showing and exporting
 * end (the branch's query never did). */
static void
test_parent_loop(void)
{
	char p[512], err[512];
	struct store *s;
	int64_t conv, a, b;
	struct store_export_opts eo;
	struct store_export_counts n;
	char *out;

	path_of(p, sizeof(p), "loop.db");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "open: %s", err);
	if (!s)
		return;
	CHECK(store_conv_new(s, 0, NULL, NULL, NULL, &conv) == 0 && store_msg_add(s, conv, "user", "one", &a) == 0 &&
	    store_msg_add(s, conv, "user", "two", &b) == 0, "two messages: %s", store_errmsg(s));
	CHECK(sqlite3_exec(s->db, "PRAGMA foreign_keys=OFF; UPDATE messages SET parent_id = 2 WHERE id = 1; "
	    "PRAGMA foreign_keys=ON", NULL, NULL, NULL) == SQLITE_OK, "the loop made");
	out = capture_show(s, conv);
	CHECK(out && strstr(out, "one") && strstr(out, "two"), "shown: %s", out ? out : "(nothing)");
	free(out);
	memset(&eo, 0, sizeof(eo));
	eo.format = STORE_OPENAI_SFT;
	eo.min_rating = 1;
	out = export_to(s, &eo, &n);
	CHECK(out != NULL, "exported");
	free(out);
	store_close(s);
}

/* A reasoning model's reply through chatlog: the reasoning is stored
 * apart with its token count, the message reads as the answer, and
 * resuming gives the session both back. */
static void
test_chatlog_reasoning(void)
{
	const char *fx = test_fixtures();
	char p[512], err[512], tmpl[2100], t[4096];
	struct store *s;
	struct llm_model *m = NULL;
	struct chat *c = NULL, *c2 = NULL;
	struct chat_opts o;
	struct chat_stats st;
	struct chatlog l;

	if (chatlog_setup("chatlog-think.db", "chatlog with reasoning", p, sizeof(p), &s, &m, &o, 2) < 0)
		return;
	snprintf(tmpl, sizeof(tmpl), "%s/templates/llama-cpp-deepseek-r1.jinja", fx);
	o.max_tokens = 8;
	o.n_threads = 2;
	o.template_spec = tmpl;   /* its generation prompt opens the reasoning */
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0 && chat_new(m, &o, &c2, err, sizeof(err)) == 0, "chat_new: %s", err);
	chatlog_attach(&l, s, c);
	chat_add_user(c, "Why?", 4);
	CHECK(chatlog_user(&l, c) == 0 && chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 &&
	    chatlog_reply(&l, c, &st) == 0, "reply: %s %s", err, store_errmsg(s));
	CHECK(chat_message_reasoning(c, 1) && st.n_reasoning == st.n_gen && st.n_gen > 0, "a reply of reasoning");
	CHECK(!strcmp(query_text(p, "SELECT reasoning FROM generations WHERE id = 1", t, sizeof(t)),
	    chat_message_reasoning(c, 1)) && query_int(p, "SELECT n_reasoning FROM generations WHERE id = 1") == st.n_reasoning &&
	    !strcmp(query_text(p, "SELECT content FROM generations WHERE id = 1", t, sizeof(t)), "") &&
	    !strcmp(query_text(p, "SELECT content FROM messages WHERE id = 2", t, sizeof(t)), ""),
	    "stored apart: reasoning, %d tokens, an empty answer", st.n_reasoning);
	CHECK(chat_regenerate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l, c, &st) == 0,
	    "regenerate: %s", err);
	CHECK(chatlog_resume(&l, c2, l.conv, err, sizeof(err)) == 0 && chat_n_messages(c2) == 2 &&
	    chat_alt_count(c2, 1) == 2, "resume: %s", err);
	for (int k = 0; k < 2; k++)
		CHECK(chat_alt_reasoning(c2, 1, k) && !strcmp(chat_alt_reasoning(c2, 1, k), chat_alt_reasoning(c, 1, k)) &&
		    chat_alt_reasoning_tokens(c2, 1, k) == chat_alt_reasoning_tokens(c, 1, k) &&
		    chat_alt_reasoning_tokens(c2, 1, k) > 0, "alternative %d resumed with its reasoning", k);
	chat_free(c);
	chat_free(c2);
	llm_model_free(m);
	store_close(s);
}

/* Exports one format to a file and returns its lines (caller frees). */
static char *
export_to(struct store *s, const struct store_export_opts *o, struct store_export_counts *n)
{
	char op[512], err[512];
	size_t len;
	snprintf(op, sizeof(op), "%s/truth.jsonl", dir);
	if (store_export(s, o, op, n, err, sizeof(err)) < 0) {
		fprintf(stderr, "export: %s\n", err);
		return NULL;
	}
	return test_read_file(op, &len);
}

static int
count_lines(const char *t)
{
	int n = 0;
	for (; t && *t; t++)
		n += *t == '\n';
	return n;
}

/* A schema-3 database migrates to 4: its generations keep their text and
 * have no reasoning recorded apart (NULL); export splits a reasoning
 * model's reply that was recorded whole, and drops the reasoning unless
 * asked to keep it; new generations keep their reasoning apart, and
 * history show marks it. */
static void
test_migration_from_3(void)
{
	char p[512], err[512], t[256], *out;
	struct store *s;
	struct alts a = { 0 };
	struct store_export_counts n;
	int64_t gen_id, msg_id;

	path_of(p, sizeof(p), "v3.db");
	CHECK(store_open_version(p, 3, &s, err, sizeof(err)) == 0, "v3: %s", err);
	if (!s)
		return;
	CHECK(store_schema_version(s) == 3, "created at schema 3");
	store_close(s);
	CHECK(query_int(p, "SELECT count(*) FROM pragma_table_info('generations') WHERE name = 'reasoning'") == 0,
	    "schema 3 has no reasoning column");
	/* A Qwen3-style reply with its block, an R1-style one whose prompt
	 * opened the block, and a plain one, as schema 3 recorded them. */
	CHECK(exec_sql(p,
	    "INSERT INTO conversations(title, created, updated) VALUES ('sums', 1, 1);"
	    "INSERT INTO messages(conversation_id, seq, role, content, created, parent_id) VALUES"
	    "  (1, 1, 'user', '2+2?', 1, NULL), (1, 2, 'assistant', '<think>\nLet me see.\n</think>\n\nFour.', 1, 1),"
	    "  (1, 3, 'user', 'And 2+3?', 1, 2), (1, 4, 'assistant', 'Just five.', 1, 3);"
	    "UPDATE conversations SET leaf_id = 4;"
	    "INSERT INTO generations(message_id, content, chosen, state, created, end_reason, prompt_messages, prompt_text) VALUES"
	    "  (2, '<think>\nLet me see.\n</think>\n\nFour.', 1, 'complete', 1, 'finished', '[{\"role\":\"user\",\"content\":\"2+2?\"}]',"
	    "   '<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n'),"
	    "  (2, 'I add them.</think>Four!', 0, 'complete', 1, 'finished', '[{\"role\":\"user\",\"content\":\"2+2?\"}]',"
	    "   '<|User|>2+2?<|Assistant|><think>\n'),"
	    "  (4, 'Just five.', 1, 'complete', 1, 'finished', '[{\"role\":\"user\",\"content\":\"And 2+3?\"}]', 'x');"
	    "INSERT INTO ratings(generation_id, kind, value, created) VALUES (1, 'thumb', 1, 1), (2, 'stars', 2, 1),"
	    "  (3, 'stars', 5, 1);") == 0, "schema-3 rows");
	CHECK(store_open_version(p, 4, &s, err, sizeof(err)) == 0, "migrate 3 -> 4: %s", err);
	if (!s)
		return;
	CHECK(store_schema_version(s) == 4, "at schema 4");
	store_close(s);
	CHECK(query_int(p, "SELECT count(*) FROM generations WHERE reasoning IS NULL AND n_reasoning IS NULL") == 3,
	    "old generations have no reasoning recorded apart");
	CHECK(query_int(p, "SELECT count(*) FROM pragma_table_info('models') WHERE name IN ('kind', 'endpoint')") == 0,
	    "schema 4 has no remote models yet");
	/* A schema-4 database as natter with reasoning (and without remote
	 * models) wrote it: a file model, and a reply with its reasoning
	 * apart.  Schema 5 keeps both. */
	CHECK(exec_sql(p,
	    "INSERT INTO models(sha256, file_name, size, arch, type_name, created) VALUES ('cd34', 'qwen3.gguf', 9, 'qwen3', 'Q8_0', 1);"
	    "INSERT INTO conversations(title, model_id, created, updated) VALUES ('four', 1, 1, 1);"
	    "INSERT INTO messages(conversation_id, seq, role, content, created, parent_id) VALUES"
	    "  (2, 1, 'user', '1+3?', 1, NULL), (2, 2, 'assistant', 'Four.', 1, 5);"
	    "UPDATE conversations SET leaf_id = 6 WHERE id = 2;"
	    "INSERT INTO generations(message_id, content, chosen, state, created, end_reason, model_id, prompt_messages,"
	    "  prompt_text, reasoning, n_reasoning) VALUES (6, 'Four.', 1, 'complete', 1, 'finished', 1,"
	    "  '[{\"role\":\"user\",\"content\":\"1+3?\"}]', 'p', 'One and three.', 5);") == 0, "schema-4 rows");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "migrate 4 -> 5 (and on): %s", err);
	if (!s)
		return;
	CHECK(store_schema_version(s) == STORE_SCHEMA_VERSION, "at schema %d", STORE_SCHEMA_VERSION);
	CHECK(!strcmp(query_text(p, "SELECT kind || '|' || COALESCE(endpoint, 'NULL') || '|' || file_name FROM models",
	    t, sizeof(t)), "file|NULL|qwen3.gguf"), "the model is a file: %s", t);
	CHECK(!strcmp(query_text(p, "SELECT reasoning || '|' || n_reasoning || '|' || content FROM generations WHERE id = 4",
	    t, sizeof(t)), "One and three.|5|Four."), "the reasoning stays apart: %s", t);
	memset(&a, 0, sizeof(a));
	CHECK(store_alt_list(s, 6, collect_alt, &a) == 0 && a.n == 1 && a.has_reasoning[0] &&
	    !strcmp(a.reasoning[0], "One and three.") && a.n_reasoning[0] == 5 && !strcmp(a.model[0], "qwen3.gguf"),
	    "the alternative with its reasoning and model");
	CHECK(exec_sql(p, "DELETE FROM generations WHERE id = 4; DELETE FROM messages WHERE conversation_id = 2;"
	    "DELETE FROM conversations WHERE id = 2;") == 0, "the schema-4 rows removed again");
	memset(&a, 0, sizeof(a));
	CHECK(!strcmp(query_text(p, "SELECT content FROM generations WHERE id = 1", t, sizeof(t)),
	    "<think>\nLet me see.\n</think>\n\nFour."), "their text is kept whole: %s", t);
	CHECK(store_alt_list(s, 2, collect_alt, &a) == 0 && a.n == 2 && !a.has_reasoning[0] && !a.has_reasoning[1],
	    "alternatives without reasoning");
	{
		struct store_export_opts o = { STORE_SFT, 4, NULL, 0, 0, 0, 0, NULL };
		out = export_to(s, &o, &n);
		CHECK(out && count_lines(out) == 2 && strstr(out, "\"content\":\"Four.\"}]}") && !strstr(out, "think") &&
		    !strstr(out, "Let me see") && strstr(out, "\"content\":\"Just five.\"}]}"),
		    "sft drops the reasoning of a reply recorded whole: %s", out);
		free(out);
		o.keep_reasoning = 1;
		out = export_to(s, &o, &n);
		CHECK(out && count_lines(out) == 2 &&
		    strstr(out, "\"content\":\"<think>\\nLet me see.\\n</think>\\n\\nFour.\"}]}") &&
		    strstr(out, "\"content\":\"Just five.\"}]}"), "sft keeps it when asked: %s", out);
		free(out);
		/* The R1-style reply started inside the block: its prompt says so. */
		o.format = STORE_KTO;
		o.keep_reasoning = 0;
		out = export_to(s, &o, &n);
		CHECK(out && count_lines(out) == 3 && strstr(out, "\"completion\":[{\"role\":\"assistant\",\"content\":\"Four.\"}]") &&
		    strstr(out, "\"completion\":[{\"role\":\"assistant\",\"content\":\"Four!\"}]"), "kto, answers only: %s", out);
		free(out);
		o.keep_reasoning = 1;
		out = export_to(s, &o, &n);
		CHECK(out && count_lines(out) == 3 &&
		    strstr(out, "\"completion\":[{\"role\":\"assistant\",\"content\":\"<think>\\nI add them.\\n</think>\\n\\nFour!\"}]"),
		    "kto with reasoning: %s", out);
		free(out);
		/* Two templates rendered the two replies' prompts: no DPO pair. */
		o.format = STORE_DPO;
		out = export_to(s, &o, &n);
		CHECK(out && count_lines(out) == 0, "dpo: no pair across templates: %s", out);
		free(out);
	}
	/* A new generation keeps its reasoning apart; the message reads as the answer. */
	{
		struct store_gen g = gen("Five.");
		struct store_turn fed[1] = { { "user", "And 2+3?" } };
		g.fed = fed;
		g.n_fed = 1;
		g.prompt_text = "p";
		g.reasoning = "2 and 3\nmake 5";
		g.n_reasoning = 6;
		char q[128];
		CHECK(store_gen_add(s, 1, 4, &g, &gen_id, &msg_id) == 0 && msg_id == 4, "a new alternative: %s",
		    store_errmsg(s));
		/* Not generation 4 again, the schema-4 one deleted above: ids
		 * are not given twice (schema 10). */
		CHECK(gen_id == 5, "a new id: %lld", (long long)gen_id);
		snprintf(q, sizeof(q), "SELECT reasoning || '|' || n_reasoning || '|' || content FROM generations "
		    "WHERE id = %lld", (long long)gen_id);
		CHECK(!strcmp(query_text(p, q, t, sizeof(t)), "2 and 3\nmake 5|6|Five."), "stored apart: %s", t);
		CHECK(!strcmp(query_text(p, "SELECT content FROM messages WHERE id = 4", t, sizeof(t)), "Five."),
		    "the message reads as the answer: %s", t);
		memset(&a, 0, sizeof(a));
		CHECK(store_alt_list(s, 4, collect_alt, &a) == 0 && a.n == 2 && a.has_reasoning[1] &&
		    !strcmp(a.reasoning[1], "2 and 3\nmake 5") && a.n_reasoning[1] == 6 && !a.has_reasoning[0],
		    "the alternatives with their reasoning");
		out = capture_show(s, 1);
		CHECK(strstr(out, "[4] assistant (version 1 of 1):\n[reasoning, 6 tokens]\n| 2 and 3\n| make 5\n[answer]\nFive.\n") ||
		    strstr(out, "[4] assistant:\n[reasoning, 6 tokens]\n| 2 and 3\n| make 5\n[answer]\nFive.\n"),
		    "history show marks the reasoning: %s", out);
		CHECK(strstr(out, "[2] assistant:\n<think>"), "an old reply shows as it was recorded: %s", out);
		free(out);
		CHECK(store_rating_set(s, gen_id, "stars", 5, NULL) == 0, "rate it");
		{
			struct store_export_opts o = { STORE_SFT, 4, NULL, 0, 0, 0, 0, NULL };
			out = export_to(s, &o, &n);
			CHECK(out && strstr(out, "\"content\":\"Five.\"}]}") && !strstr(out, "make 5"), "sft: %s", out);
			free(out);
			o.keep_reasoning = 1;
			out = export_to(s, &o, &n);
			CHECK(out && strstr(out, "\"content\":\"<think>\\n2 and 3\\nmake 5\\n</think>\\n\\nFive.\"}]}"),
			    "sft keeping it: %s", out);
			free(out);
		}
	}
	store_close(s);
}

/* Alternatives and branches: list and choose alternatives; an edit makes a
 * branch that history, resuming and export follow; the other branch
 * stays; every generation keeps what it was fed. */
static void
test_tree(void)
{
	char p[512], err[512], t[512], ma[512], mb[512], *out;
	struct store *s;
	int64_t conv, u1, u2, u2b, A, B, C, a1, a2, b1, c1, leaf, mid_a, mid_b, ids[4];
	int n, cur;
	struct store_gen g;
	struct store_turn fed1[2] = { { "system", "Be kind." }, { "user", "first question" } };
	struct store_turn fed2[4] = { { "system", "Be brief." }, { "user", "first question" },
	    { "assistant", "answer one" }, { "user", "what about cats?" } };
	struct store_turn fed3[4] = { { "system", "Be brief." }, { "user", "first question" },
	    { "assistant", "answer one" }, { "user", "what about dogs?" } };

	path_of(p, sizeof(p), "tree.db");
	path_of(ma, sizeof(ma), "a.gguf");
	path_of(mb, sizeof(mb), "b.gguf");
	fake_model(ma, "model a");
	fake_model(mb, "model b");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "open: %s", err);
	if (!s)
		return;
	CHECK(store_model(s, ma, "llama", "F32", &mid_a) == 0 && store_model(s, mb, "llama", "F16", &mid_b) == 0 &&
	    mid_a != mid_b, "two models: %s", store_errmsg(s));
	CHECK(store_conv_new(s, mid_a, NULL, "chatml", "Be kind.", &conv) == 0, "conv");
	CHECK(store_msg_add(s, conv, "user", "first question", &u1) == 0, "u1");
	g = gen("answer zero");
	g.model_id = mid_a;
	g.template_name = "chatml (built-in)";
	g.template_source = "{{ messages }}";
	g.fed = fed1;
	g.n_fed = 2;
	g.prompt_text = "<s>Be kind. first question";
	g.prompt_tokens = 7;
	CHECK(store_gen_add(s, conv, 0, &g, &a1, &A) == 0, "a1: %s", store_errmsg(s));
	g.content = "answer one";
	g.seed = 1235;
	CHECK(store_gen_add(s, conv, A, &g, &a2, NULL) == 0, "a2 (a regeneration)");
	{
		struct alts x = { 0 };
		CHECK(store_alt_list(s, A, collect_alt, &x) == 0 && x.n == 2 && x.chosen == 1 && x.ids[0] == a1 &&
		    x.ids[1] == a2, "two alternatives, the newest chosen");
		CHECK(store_alt_choose(s, a1) == 0, "choose: %s", store_errmsg(s));
		memset(&x, 0, sizeof(x));
		CHECK(store_alt_list(s, A, collect_alt, &x) == 0 && x.chosen == 0, "the choice is stored");
		CHECK(!strcmp(query_text(p, "SELECT content FROM messages WHERE id = 2", t, sizeof(t)), "answer zero"),
		    "the message reads as the chosen alternative: %s", t);
		CHECK(store_alt_choose(s, a2) == 0 && store_alt_choose(s, 9999) < 0 &&
		    strstr(store_errmsg(s), "no generation"), "choose back; a missing one refused");
		CHECK(store_alt_list(s, 9999, collect_alt, &x) < 0, "alternatives of a missing message refused");
	}
	CHECK(query_int(p, "SELECT count(*) FROM templates") == 1, "the template stored once");
	CHECK(!strcmp(query_text(p, "SELECT system_prompt FROM generations WHERE id = 1", t, sizeof(t)), "Be kind."),
	    "the system prompt of a generation");

	/* The system prompt changes: what comes next only. */
	CHECK(store_conv_set_system(s, conv, "Be brief.") == 0, "set system");
	CHECK(store_msg_add(s, conv, "user", "what about cats?", &u2) == 0 &&
	    query_int(p, "SELECT parent_id FROM messages WHERE content = 'what about cats?'") == A, "u2 follows A");
	g = gen("cats purr");
	g.model_id = mid_b;   /* resumed under another model */
	g.template_name = "chatml (built-in)";
	g.template_source = "{{ messages }}";
	g.fed = fed2;
	g.n_fed = 4;
	g.prompt_text = "<s>Be brief. first question answer one what about cats?";
	g.prompt_tokens = 15;
	CHECK(store_gen_add(s, conv, 0, &g, &b1, &B) == 0, "b1");
	CHECK(!strcmp(query_text(p, "SELECT system_prompt FROM generations WHERE id = 1", t, sizeof(t)), "Be kind.") &&
	    !strcmp(query_text(p, "SELECT system_prompt FROM generations WHERE id = 3", t, sizeof(t)), "Be brief."),
	    "each generation keeps its own system prompt");
	CHECK(query_int(p, "SELECT model_id FROM generations WHERE id = 1") == mid_a &&
	    query_int(p, "SELECT model_id FROM generations WHERE id = 3") == mid_b, "each generation keeps its model");
	{
		struct store_conv_info ci[4];
		int nc;
		CHECK(store_conv_recent(s, ci, 4, &nc) == 0 && nc == 1 && ci[0].n_models == 2 &&
		    !strcmp(ci[0].models, "a.gguf, b.gguf") && !strcmp(ci[0].model, "a.gguf") && ci[0].n_msgs == 4,
		    "conversation models: %s (%d), %d messages", nc ? ci[0].models : "", nc ? ci[0].n_models : 0,
		    nc ? ci[0].n_msgs : 0);
	}

	/* An edit of u2: a new branch from A. */
	CHECK(store_msg_edit(s, u2, "what about dogs?", &u2b) == 0, "edit: %s", store_errmsg(s));
	CHECK(query_int(p, "SELECT parent_id FROM messages WHERE content = 'what about dogs?'") == A &&
	    query_int(p, "SELECT leaf_id FROM conversations") == u2b, "the edit is a sibling and the new leaf");
	CHECK(store_msg_versions(s, u2b, ids, 4, &n, &cur) == 0 && n == 2 && cur == 1 && ids[0] == u2 && ids[1] == u2b,
	    "two versions, the edit active");
	g = gen("dogs bark");
	g.model_id = mid_b;
	g.fed = fed3;
	g.n_fed = 4;
	g.prompt_text = "<s>Be brief. first question answer one what about dogs?";
	g.prompt_tokens = 15;
	CHECK(store_gen_add(s, conv, 0, &g, &c1, &C) == 0 &&
	    query_int(p, "SELECT parent_id FROM messages WHERE content = 'dogs bark'") == u2b, "the reply continues the branch");
	{
		struct loaded l = { 0 };
		char *sys = NULL;
		CHECK(store_conv_load(s, conv, &sys, collect_msg, &l) == 0 && l.n == 4 &&
		    !strcmp(l.text[1], "assistant:answer one") && !strcmp(l.text[2], "user:what about dogs?") &&
		    !strcmp(l.text[3], "assistant:dogs bark") && l.gens[3] == c1 && sys && !strcmp(sys, "Be brief."),
		    "resuming follows the active branch (%d)", l.n);
		free(sys);
	}
	out = capture_show(s, conv);
	CHECK(strstr(out, "what about dogs?") && strstr(out, "version 2 of 2") && strstr(out, "dogs bark") &&
	    !strstr(out, "cats") && strstr(out, "system: Be kind.") &&
	    strstr(out, "from here on the system prompt was: Be brief.") && strstr(out, "model b.gguf"),
	    "history show follows the branch: %s", out);
	free(out);
	/* Export follows the active branch, with each reply's recorded prompt. */
	CHECK(store_rating_set(s, b1, "thumb", 1, NULL) == 0 && store_rating_set(s, c1, "thumb", 1, NULL) == 0 &&
	    store_rating_set(s, a2, "stars", 5, NULL) == 0, "ratings");
	{
		struct store_export_opts o = { STORE_SFT, 4, NULL, 0, 0, 0, 0, NULL };
		struct store_export_counts nc;
		char op[512], *data;
		size_t len;
		snprintf(op, sizeof(op), "%s/tree.jsonl", dir);
		CHECK(store_export(s, &o, op, &nc, err, sizeof(err)) == 0 && nc.lines == 2, "export: %d lines %s", nc.lines, err);
		data = test_read_file(op, &len);
		CHECK(data && strstr(data, "dogs bark") && !strstr(data, "cats purr") &&
		    strstr(data, "{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":"
		    "\"first question\"},{\"role\":\"assistant\",\"content\":\"answer one\"},{\"role\":\"user\","
		    "\"content\":\"what about dogs?\"},{\"role\":\"assistant\",\"content\":\"dogs bark\"}") &&
		    strstr(data, "{\"role\":\"system\",\"content\":\"Be kind.\"},{\"role\":\"user\",\"content\":"
		    "\"first question\"},{\"role\":\"assistant\",\"content\":\"answer one\"}"),
		    "export: the active branch with what each reply was fed: %s", data ? data : "");
		free(data);
	}
	/* Back to the first branch. */
	CHECK(store_branch_switch(s, u2, &leaf) == 0 && leaf == B, "switch to the old branch (leaf %lld)", (long long)leaf);
	CHECK(store_msg_versions(s, u2, ids, 4, &n, &cur) == 0 && n == 2 && cur == 0, "the old version active");
	{
		struct loaded l = { 0 };
		char *sys = NULL;
		CHECK(store_conv_load(s, conv, &sys, collect_msg, &l) == 0 && l.n == 4 &&
		    !strcmp(l.text[3], "assistant:cats purr"), "the old branch loads");
		free(sys);
	}
	CHECK(store_msg_edit(s, 9999, "x", &leaf) < 0 && strstr(store_errmsg(s), "no message"), "editing a missing message");
	/* A message taken back (a server refused it): only one nothing
	 * answers; the leaf goes back to its parent; a conversation left
	 * empty goes with it. */
	{
		int64_t w, w2, conv2;
		int gone = -1, before = query_int(p, "SELECT count(*) FROM messages");
		CHECK(store_msg_withdraw(s, u2, &gone) < 0 && strstr(store_errmsg(s), "has been answered") && gone == 0 &&
		    query_int(p, "SELECT count(*) FROM messages") == before, "an answered message stays: %s",
		    store_errmsg(s));
		CHECK(store_msg_add(s, conv, "user", "too long", &w) == 0, "msg: %s", store_errmsg(s));
		CHECK(store_msg_withdraw(s, w, &gone) == 0 && gone == 0, "withdraw: %s", store_errmsg(s));
		snprintf(t, sizeof(t), "SELECT leaf_id FROM conversations WHERE id = %lld", (long long)conv);
		CHECK(query_int(p, t) == B && query_int(p, "SELECT count(*) FROM messages") == before,
		    "the leaf back on its parent (%d), the message gone", query_int(p, t));
		CHECK(store_msg_withdraw(s, w, NULL) < 0 && strstr(store_errmsg(s), "no message"), "withdrawn twice");
		CHECK(store_conv_new(s, 0, NULL, NULL, NULL, &conv2) == 0 && store_msg_add(s, conv2, "user", "alone", &w2) == 0,
		    "conv 2: %s", store_errmsg(s));
		CHECK(store_msg_withdraw(s, w2, &gone) == 0 && gone == 1 &&
		    query_int(p, "SELECT count(*) FROM conversations") == 1, "an empty conversation goes too");
		/* A first message's other version withdrawn: the leaf is the
		 * branch left's newest message. */
		{
			int64_t v1, r1, v2;
			CHECK(store_conv_new(s, 0, NULL, NULL, NULL, &conv2) == 0 &&
			    store_msg_add(s, conv2, "user", "v1", &v1) == 0 && store_msg_add(s, conv2, "assistant", "r1", &r1) == 0 &&
			    store_msg_edit(s, v1, "v2", &v2) == 0, "conv 3: %s", store_errmsg(s));
			CHECK(store_msg_withdraw(s, v2, &gone) == 0 && gone == 0, "withdraw v2: %s", store_errmsg(s));
			snprintf(t, sizeof(t), "SELECT leaf_id FROM conversations WHERE id = %lld", (long long)conv2);
			CHECK(query_int(p, t) == r1, "the leaf on the other version's branch: %d", query_int(p, t));
			CHECK(store_conv_delete(s, conv2) == 0, "delete conv 3");
		}
	}
	CHECK(store_conv_delete(s, conv) == 0 && query_int(p, "SELECT count(*) FROM messages") == 0,
	    "deleting removes both branches");
	store_close(s);
}

/* A session recorded through chatlog: every generation with its model,
 * template, system prompt, prompt and end; a /system change applies only
 * to what follows; regenerations are alternatives; a choice and an edit
 * land in the store; resuming under another model records that model. */
static void
test_chatlog(void)
{
	const char *fx = test_fixtures();
	char p[512], err[512], m32[2100], m16[2100], t[4096], hex[65];
	struct store *s;
	struct llm_model *m = NULL, *m2 = NULL;
	struct chat *c = NULL, *c2 = NULL;
	struct chat_opts o;
	struct chat_stats st;
	struct chatlog l, l2;
	size_t plen;

	memset(&l2, 0, sizeof(l2));
	if (chatlog_setup("chatlog.db", "chatlog", p, sizeof(p), &s, &m, &o, 7) < 0)
		return;
	snprintf(m32, sizeof(m32), "%s/models/aidreams260K-f32.gguf", fx);
	snprintf(m16, sizeof(m16), "%s/models/aidreams260K-f16.gguf", fx);
	o.max_tokens = 6;
	o.n_threads = 2;
	o.system_prompt = "Be kind.";
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0, "chat_new: %s", err);
	chatlog_attach(&l, s, c);
	CHECK(store_model(s, m32, "llama", "F32", &l.model_id) == 0, "store_model: %s", store_errmsg(s));
	CHECK(sha256_file(m32, hex, err, sizeof(err)) == 0, "sha256: %s", err);

	chat_add_user(c, "Hello", 5);
	CHECK(chatlog_user(&l, c) == 0 && chat_message_tag(c, 0) > 0, "user recorded: %s", store_errmsg(s));
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l, c, &st) == 0,
	    "reply 1: %s %s", err, store_errmsg(s));
	CHECK(chat_message_tag(c, 1) == l.last_msg && chat_alt_tag(c, 1, 0) == l.last_gen && l.last_gen == 1,
	    "the reply carries its ids");
	CHECK(!strcmp(query_text(p, "SELECT md.sha256 FROM generations g JOIN models md ON md.id = g.model_id "
	    "WHERE g.id = 1", t, sizeof(t)), hex), "generation 1: its model's SHA-256");
	CHECK(!strcmp(query_text(p, "SELECT template_name FROM generations WHERE id = 1", t, sizeof(t)),
	    chat_template_name(c)), "generation 1: the template name (%s)", t);
	CHECK(!strcmp(query_text(p, "SELECT tp.source FROM generations g JOIN templates tp ON tp.id = g.template_id "
	    "WHERE g.id = 1", t, sizeof(t)), chat_template_source(c)), "generation 1: the template text");
	CHECK(!strcmp(query_text(p, "SELECT prompt_text FROM generations WHERE id = 1", t, sizeof(t)),
	    chat_prompt_text(c, &plen)), "generation 1: the prompt text as fed");
	CHECK(query_int(p, "SELECT prompt_tokens FROM generations WHERE id = 1") == st.prompt_tokens &&
	    st.prompt_tokens > 0, "generation 1: prompt tokens %d", st.prompt_tokens);
	CHECK(!strcmp(query_text(p, "SELECT prompt_messages FROM generations WHERE id = 1", t, sizeof(t)),
	    "[{\"role\":\"system\",\"content\":\"Be kind.\"},{\"role\":\"user\",\"content\":\"Hello\"}]"),
	    "generation 1: the messages fed: %s", t);
	CHECK(query_int(p, "SELECT seed FROM generations WHERE id = 1") == 7 &&
	    !strcmp(query_text(p, "SELECT end_reason FROM generations WHERE id = 1", t, sizeof(t)),
	    st.stop == CHAT_STOP_LIMIT ? "max-tokens" : "finished"), "generation 1: seed and end (%s)", t);

	/* A message longer than the context is not a turn: not stored, not kept. */
	{
		const char *big = too_long();
		int before = query_int(p, "SELECT count(*) FROM messages");
		chat_add_user(c, big, strlen(big));
		CHECK(chatlog_user(&l, c) == 0 && query_int(p, "SELECT count(*) FROM messages") == before,
		    "a refused message is not stored (%d messages, %d before)", query_int(p, "SELECT count(*) FROM messages"),
		    before);
		CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) < 0 && strstr(err, "more than the context") &&
		    chat_n_messages(c) == 2, "and not kept in the session: %s", err);
	}

	/* /system: what comes next only. */
	chat_set_system(c, "Be brief.");
	CHECK(chatlog_system(&l, c) == 0, "system recorded");
	chat_add_user(c, "Tell me more", 12);
	CHECK(chatlog_user(&l, c) == 0 && chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 &&
	    chatlog_reply(&l, c, &st) == 0, "reply 2: %s", err);
	CHECK(!strcmp(query_text(p, "SELECT system_prompt FROM generations WHERE id = 1", t, sizeof(t)), "Be kind.") &&
	    !strcmp(query_text(p, "SELECT system_prompt FROM generations WHERE id = 2", t, sizeof(t)), "Be brief."),
	    "each reply keeps the system prompt it was given");
	CHECK(strstr(query_text(p, "SELECT prompt_text FROM generations WHERE id = 2", t, sizeof(t)), "Be brief.") &&
	    !strstr(t, "Be kind."), "reply 2 was fed the new system prompt only");

	/* A regeneration: another alternative of the same message. */
	CHECK(chat_regenerate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l, c, &st) == 0,
	    "regenerate: %s", err);
	CHECK(query_int(p, "SELECT count(*) FROM generations WHERE message_id = 4") == 2 &&
	    chat_alt_tag(c, 3, 1) == 3 && l.last_gen == 3, "the regeneration joined message 4");
	CHECK(chatlog_alt_select(&l, c, 3, 0, err, sizeof(err)) == 0 &&
	    query_int(p, "SELECT id FROM generations WHERE message_id = 4 AND chosen") == 2 && l.last_gen == 2,
	    "choosing the first alternative is stored: %s", err);
	CHECK(chatlog_alt_select(&l, c, 3, 5, err, sizeof(err)) == -1, "a missing alternative: %s", err);

	/* An edit: a branch. */
	CHECK(chatlog_edit(&l, c, 2, "Tell me less", 12, err, sizeof(err)) == 0 && chat_n_messages(c) == 3 &&
	    chat_message_tag(c, 2) == 5, "edit recorded: %s", err);
	CHECK(query_int(p, "SELECT parent_id FROM messages WHERE id = 5") == 2 &&
	    query_int(p, "SELECT leaf_id FROM conversations WHERE id = 1") == 5, "the edit is a new branch");
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l, c, &st) == 0 &&
	    query_int(p, "SELECT parent_id FROM messages WHERE id = 6") == 5, "the reply on the branch: %s", err);
	CHECK(chatlog_edit(&l, c, 1, "x", 1, err, sizeof(err)) == -1, "an assistant message is not edited: %s", err);
	/* An edit the session could not answer changes nothing: neither the
	 * session (the turns after it stay) nor the history. */
	{
		const char *big = too_long();
		int before = query_int(p, "SELECT count(*) FROM messages");
		CHECK(chatlog_edit(&l, c, 2, big, strlen(big), err, sizeof(err)) == -1 && strstr(err, "more than the context"),
		    "an edit longer than the context is refused: %s", err);
		CHECK(chat_n_messages(c) == 4 && !strcmp(chat_message_content(c, 2), "Tell me less") &&
		    chat_message_tag(c, 2) == 5, "the session is as it was (%d messages)", chat_n_messages(c));
		CHECK(query_int(p, "SELECT count(*) FROM messages") == before &&
		    query_int(p, "SELECT leaf_id FROM conversations WHERE id = 1") == 6,
		    "the history is as it was (%d messages, %d before)", query_int(p, "SELECT count(*) FROM messages"),
		    before);
	}

	/* Resumed under another model. */
	if (llm_model_load(m16, &m2, err, sizeof(err)) == 0 && chat_new(m2, &o, &c2, err, sizeof(err)) == 0) {
		chatlog_attach(&l2, s, c2);
		CHECK(store_model(s, m16, "llama", "F16", &l2.model_id) == 0 && l2.model_id != l.model_id, "second model");
		CHECK(chatlog_resume(&l2, c2, 1, err, sizeof(err)) == 0, "resume: %s", err);
		CHECK(chat_n_messages(c2) == 4 && !strcmp(chat_message_content(c2, 2), "Tell me less") &&
		    chat_alt_count(c2, 3) == 1 && chat_alt_count(c2, 1) == 1 && !strcmp(chat_system(c2), "Be brief.") &&
		    chat_message_tag(c2, 2) == 5 && l2.last_msg == 6 && l2.conv == 1, "the active branch resumed (%d)",
		    chat_n_messages(c2));
		chat_add_user(c2, "Go on", 5);
		CHECK(chatlog_user(&l2, c2) == 0 && chat_generate(c2, NULL, NULL, &st, err, sizeof(err)) == 0 &&
		    chatlog_reply(&l2, c2, &st) == 0, "reply under the other model: %s", err);
		CHECK(query_int(p, "SELECT model_id FROM generations ORDER BY id DESC LIMIT 1") == l2.model_id &&
		    query_int(p, "SELECT model_id FROM generations WHERE id = 1") == l.model_id,
		    "the new reply records the new model; the old ones keep theirs");
		{
			struct store_conv_info ci[2];
			int nc;
			CHECK(store_conv_recent(s, ci, 2, &nc) == 0 && nc == 1 && ci[0].n_models == 2 &&
			    !strcmp(ci[0].models, "aidreams260K-f32.gguf, aidreams260K-f16.gguf"), "models: %s",
			    nc ? ci[0].models : "");
		}
		/* Resuming the old branch after switching: alternatives come back. */
		CHECK(store_branch_switch(s, 3, NULL) == 0 && chatlog_resume(&l2, c2, 1, err, sizeof(err)) == 0 &&
		    chat_n_messages(c2) == 4 && chat_alt_count(c2, 3) == 2 && chat_alt_index(c2, 3) == 0 &&
		    chat_alt_tag(c2, 3, 1) == 3, "the other branch with its two alternatives: %s", err);
	} else {
		CHECK(0, "the f16 model: %s", err);
	}
	if (c2) {
		/* A conversation that cannot be loaded (deleted meanwhile) leaves
		 * the one the session is in as it was, still recorded where it was. */
		int n = chat_n_messages(c2);
		int64_t conv = l2.conv, msg = l2.last_msg, gen = l2.last_gen, tag = n ? chat_message_tag(c2, n - 1) : 0;
		CHECK(chatlog_resume(&l2, c2, 99, err, sizeof(err)) < 0 && strstr(err, "no conversation"),
		    "resume a missing one: %s", err);
		CHECK(n == 4 && chat_n_messages(c2) == n && chat_message_tag(c2, n - 1) == tag && chat_alt_count(c2, 3) == 2 &&
		    l2.conv == conv && conv == 1 && l2.last_msg == msg && l2.last_gen == gen && gen != 0,
		    "a failed resume kept the conversation: %d messages, conversation %lld", chat_n_messages(c2),
		    (long long)l2.conv);
	}
	chat_free(c2);
	llm_model_free(m2);
	chat_free(c);
	llm_model_free(m);
	store_close(s);
}

/* A session whose model could not be recorded at its start (here: its
 * file not there yet; in life, a busy database) records it with the
 * first reply, and a reply whose model cannot be recorded is not saved:
 * saved under no model, it would be exported as the conversation's
 * first model's. */
static void
test_chatlog_model_later(void)
{
	char p[512], err[512], mp[512], q[256];
	struct store *s;
	struct llm_model *m = NULL;
	struct chat *c = NULL;
	struct chat_opts o;
	struct chat_stats st;
	struct chatlog l;
	int before;

	if (chatlog_setup("model-later.db", "chatlog model later", p, sizeof(p), &s, &m, &o, 5) < 0)
		return;
	path_of(mp, sizeof(mp), "later.gguf");
	unlink(mp);
	o.max_tokens = 4;
	if (session_new(m, &o, &c) < 0)
		goto out;
	chatlog_attach(&l, s, c);
	CHECK(chatlog_model(&l, c, mp) < 0 && l.model_id == 0, "the model cannot be recorded at the start");
	chat_add_user(c, "Hello", 5);
	CHECK(chatlog_user(&l, c) == 0, "the message: %s", store_errmsg(s));
	before = query_int(p, "SELECT count(*) FROM generations");
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l, c, &st) < 0 &&
	    strstr(store_errmsg(s), "its model could not be recorded") && strstr(store_errmsg(s), "later.gguf"),
	    "a reply whose model cannot be recorded is not saved: %s", store_errmsg(s));
	CHECK(query_int(p, "SELECT count(*) FROM generations") == before && l.last_gen == 0,
	    "and no generation is stored (%d)", query_int(p, "SELECT count(*) FROM generations"));
	fake_model(mp, "the later model");
	CHECK(chat_regenerate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l, c, &st) == 0 &&
	    l.last_gen > 0 && l.model_id > 0, "once it can be, the reply records it: %s", store_errmsg(s));
	snprintf(q, sizeof(q), "SELECT count(*) FROM generations g JOIN models md ON md.id = g.model_id "
	    "WHERE g.id = %lld AND md.file_name = 'later.gguf'", (long long)l.last_gen);
	CHECK(query_int(p, q) == 1, "the generation names its model");
	CHECK(query_int(p, "SELECT count(*) FROM generations WHERE model_id IS NULL") == 0, "none under no model");
out:
	chat_free(c);
	llm_model_free(m);
	store_close(s);
}

/* A system prompt the store refused (another process held the history
 * locked) is written with the next reply, or the next message: a resume
 * then loads it, not the one before. */
static void
test_chatlog_system_later(void)
{
	char p[512], err[512], t[256];
	struct store *s;
	struct llm_model *m = NULL;
	struct chat *c = NULL;
	struct chat_opts o;
	struct chat_stats st;
	struct chatlog l;
	sqlite3 *h = NULL;

	if (chatlog_setup("system-later.db", "chatlog system prompt later", p, sizeof(p), &s, &m, &o, 5) < 0)
		return;
	o.max_tokens = 4;
	if (session_new(m, &o, &c) < 0)
		goto out;
	chatlog_attach(&l, s, c);
	chat_add_user(c, "Hello", 5);
	CHECK(chatlog_user(&l, c) == 0 && chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 &&
	    chatlog_reply(&l, c, &st) == 0, "the first turn: %s %s", err, store_errmsg(s));
	/* Fail at once rather than wait out STORE_BUSY_MS. */
	sqlite3_busy_handler(s->db, NULL, NULL);
	for (int by_reply = 1; by_reply >= 0; by_reply--) {
		const char *sys = by_reply ? "Be terse." : "Be verbose.";
		CHECK(sqlite3_open(p, &h) == SQLITE_OK && sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK,
		    "another process holds the history");
		chat_set_system(c, sys);
		CHECK(chatlog_system(&l, c) < 0 && l.system_unsaved, "the system prompt is refused: %s", store_errmsg(s));
		sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
		sqlite3_close(h);
		CHECK(strcmp(query_text(p, "SELECT system_prompt FROM conversations", t, sizeof(t)), sys) != 0,
		    "not stored yet (%s)", t);
		if (by_reply) {
			CHECK(chat_regenerate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l, c, &st) == 0,
			    "a regeneration: %s %s", err, store_errmsg(s));
		} else {
			chat_add_user(c, "More", 4);
			CHECK(chatlog_user(&l, c) == 0, "the next message: %s", store_errmsg(s));
		}
		CHECK(!strcmp(query_text(p, "SELECT system_prompt FROM conversations", t, sizeof(t)), sys) &&
		    !l.system_unsaved, "written with the next %s (%s)", by_reply ? "reply" : "message", t);
	}
out:
	chat_free(c);
	llm_model_free(m);
	store_close(s);
}

/* A conversation deleted by another process while a session records into
 * it (history delete): the next turn, whether the deletion came before
 * its message or while its reply was written, starts a new conversation
 * rather than being lost, said once through chatlog_moved; the messages
 * before it are not saved again. */
static void
test_chatlog_deleted(void)
{
	const char *fx = test_fixtures();
	char p[512], err[512], q[256], msg[400] = "", mp[2100];
	struct store *s, *other = NULL;
	struct llm_model *m = NULL;
	struct chat *c = NULL;
	struct chat_opts o;
	struct chat_stats st;
	struct chatlog l;
	int64_t conv1, conv2, decoy;

	if (chatlog_setup("deleted.db", "chatlog deleted", p, sizeof(p), &s, &m, &o, 5) < 0)
		return;
	o.max_tokens = 4;
	if (chat_new(m, &o, &c, err, sizeof(err)) < 0 || store_open(p, 0, &other, err, sizeof(err)) < 0) {
		CHECK(0, "setup: %s", err);
		goto out;
	}
	memset(&l, 0, sizeof(l));
	l.s = s;
	l.template_name = chat_template_name(c);
	snprintf(mp, sizeof(mp), "%s/models/aidreams260K-f32.gguf", fx);
	CHECK(store_model(s, mp, "llama", "F32", &l.model_id) == 0, "store_model: %s", store_errmsg(s));
	chat_add_user(c, "Hello", 5);
	CHECK(chatlog_user(&l, c) == 0 && chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 &&
	    chatlog_reply(&l, c, &st) == 0 && l.conv > 0, "the first turn: %s %s", err, store_errmsg(s));
	conv1 = l.conv;
	/* Another conversation after it: the new one is not the newest
	 * deleted (tested apart below, as the newest). */
	CHECK(store_conv_new(other, 0, NULL, NULL, NULL, &decoy) == 0, "a second conversation: %s",
	    store_errmsg(other));
	CHECK(chatlog_moved(&l, msg, sizeof(msg)) == 0, "nothing moved yet");

	/* Deleted between two turns. */
	CHECK(store_conv_delete(other, conv1) == 0, "delete: %s", store_errmsg(other));
	chat_add_user(c, "Again", 5);
	CHECK(chatlog_user(&l, c) == 0, "the message after the deletion: %s", store_errmsg(s));
	conv2 = l.conv;
	CHECK(conv2 > 0 && conv2 != conv1 && conv2 != decoy, "a new conversation (%lld)", (long long)conv2);
	CHECK(chat_message_tag(c, 0) == 0 && chat_message_tag(c, 1) == 0 && chat_alt_tag(c, 1, 0) == 0 &&
	    chat_message_tag(c, 2) > 0, "the deleted messages are no longer saved; the new one is");
	snprintf(q, sizeof(q), "conversation %lld was deleted from the history by another program; this chat is "
	    "saved from your last message on as a new conversation, %lld", (long long)conv1, (long long)conv2);
	CHECK(chatlog_moved(&l, msg, sizeof(msg)) == 1 && strstr(msg, q), "said: %s", msg);
	CHECK(chatlog_moved(&l, msg, sizeof(msg)) == 0, "said once");
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l, c, &st) == 0 &&
	    l.conv == conv2 && l.last_gen > 0, "its reply: %s %s", err, store_errmsg(s));
	CHECK(chatlog_moved(&l, msg, sizeof(msg)) == 0, "nothing more to say");
	snprintf(q, sizeof(q), "SELECT count(*) FROM messages a JOIN messages u ON a.parent_id = u.id "
	    "WHERE u.conversation_id = %lld AND u.parent_id IS NULL AND u.content = 'Again' AND "
	    "a.role = 'assistant'", (long long)conv2);
	CHECK(query_int(p, q) == 1, "the new conversation: the message, then its reply");

	/* Deleted while the reply was written: the reply saves the message
	 * it answers again, in a new conversation. */
	chat_add_user(c, "Third", 5);
	CHECK(chatlog_user(&l, c) == 0 && l.conv == conv2, "the third message: %s", store_errmsg(s));
	CHECK(store_conv_delete(other, conv2) == 0, "delete: %s", store_errmsg(other));
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l, c, &st) == 0 &&
	    l.conv > 0 && l.last_gen > 0, "its reply: %s %s", err, store_errmsg(s));
	/* The newest conversation deleted: the new one does not take its
	 * number again (schema 10), so nothing can mistake one for the other. */
	snprintf(q, sizeof(q), "conversation %lld was deleted from the history by another program; this chat is "
	    "saved from your last message on as a new conversation, %lld (the messages", (long long)conv2,
	    (long long)l.conv);
	CHECK(l.conv > conv2 && chatlog_moved(&l, msg, sizeof(msg)) == 1 && strstr(msg, q), "said (%lld after %lld): %s",
	    (long long)l.conv, (long long)conv2, msg);
	snprintf(q, sizeof(q), "SELECT count(*) FROM messages a JOIN messages u ON a.parent_id = u.id "
	    "JOIN generations g ON g.message_id = a.id WHERE u.conversation_id = %lld AND u.parent_id IS NULL "
	    "AND u.content = 'Third' AND g.id = %lld", (long long)l.conv, (long long)l.last_gen);
	CHECK(query_int(p, q) == 1, "the new conversation: the message, then its reply");
	snprintf(q, sizeof(q), "SELECT count(*) FROM messages WHERE conversation_id = %lld", (long long)l.conv);
	CHECK(query_int(p, q) == 2, "and nothing before it");
out:
	store_close(other);
	chat_free(c);
	llm_model_free(m);
	store_close(s);
}

/* A reply from a server that reported no token counts (the session
 * counted the pieces that came): its counts are stored as not known, not
 * the pieces as tokens and the prompt as 0 tokens; history show says so. */
static void
test_chatlog_uncounted(void)
{
	char p[512], err[512], q[256], *shown = NULL;
	struct store *s;
	struct llm_model *m = NULL;
	struct chat *c = NULL;
	struct chat_opts o;
	struct chat_stats st;
	struct chatlog l;

	if (chatlog_setup("uncounted.db", "chatlog uncounted", p, sizeof(p), &s, &m, &o, 5) < 0)
		return;
	o.max_tokens = 4;
	if (session_new(m, &o, &c) < 0)
		goto out;
	chatlog_attach(&l, s, c);
	CHECK(chatlog_model(&l, c, NULL) == 0, "model: %s", store_errmsg(s));
	chat_add_user(c, "Hello", 5);
	CHECK(chatlog_user(&l, c) == 0 && chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0,
	    "the reply: %s", err);
	/* As a remote session's statistics are when the server sent no usage. */
	st.gen_counted = 1;
	st.n_gen = 3;
	st.prompt_tokens = st.n_prompt = st.n_reused = 0;
	CHECK(chatlog_reply(&l, c, &st) == 0 && l.last_gen > 0, "stored: %s", store_errmsg(s));
	snprintf(q, sizeof(q), "SELECT (n_gen IS NULL) + (n_prompt IS NULL) + (n_reused IS NULL) + "
	    "(prompt_tokens IS NULL) FROM generations WHERE id = %lld", (long long)l.last_gen);
	CHECK(query_int(p, q) == 4, "the counts not known: %d of 4 NULL", query_int(p, q));
	{
		size_t len = 0;
		FILE *f = open_memstream(&shown, &len);
		CHECK(f && store_history_show(s, l.conv, f) == 0, "history show: %s", store_errmsg(s));
		if (f)
			fclose(f);
	}
	CHECK(shown && strstr(shown, "tokens not counted") && !strstr(shown, " 3 tokens") && !strstr(shown, "fed 0 tokens"),
	    "history show: %s", shown ? shown : "");
	free(shown);
out:
	chat_free(c);
	llm_model_free(m);
	store_close(s);
}

/* A session's messages follow its own: a user message the store did not
 * take is saved with the reply to it (never the reply under the message
 * before), and two natters on one conversation do not thread their
 * messages into each other's. */
static void
test_chatlog_parents(void)
{
	char p[512], err[512], q[256];
	struct store *s;
	struct llm_model *m = NULL;
	struct chat *c = NULL, *c2 = NULL;
	struct chat_opts o;
	struct chat_stats st;
	struct chatlog l, l2;
	int64_t a1, u2, a2, u3, a3, u4;

	if (chatlog_setup("parents.db", "chatlog parents", p, sizeof(p), &s, &m, &o, 3) < 0)
		return;
	o.max_tokens = 4;
	if (session_new(m, &o, &c) < 0 || session_new(m, &o, &c2) < 0)
		goto out;
	chatlog_attach(&l, s, c);
	chat_add_user(c, "Hello", 5);
	CHECK(chatlog_user(&l, c) == 0 && chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 &&
	    chatlog_reply(&l, c, &st) == 0, "the first turn: %s %s", err, store_errmsg(s));
	a1 = chat_message_tag(c, 1);

	/* The store did not take the next message (as when it stays busy):
	 * the reply saves it first, and the reply before keeps its text. */
	l.s = NULL;
	chat_add_user(c, "Second", 6);
	CHECK(chatlog_user(&l, c) == 0 && chat_message_tag(c, 2) == 0, "a message the store did not take");
	l.s = s;
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l, c, &st) == 0,
	    "its reply: %s %s", err, store_errmsg(s));
	u2 = chat_message_tag(c, 2);
	a2 = chat_message_tag(c, 3);
	snprintf(q, sizeof(q), "SELECT parent_id FROM messages WHERE id = %lld AND content = 'Second'", (long long)u2);
	CHECK(u2 > 0 && query_int(p, q) == a1, "the message is saved after the reply before it");
	snprintf(q, sizeof(q), "SELECT parent_id FROM messages WHERE id = %lld", (long long)a2);
	CHECK(a2 > 0 && a2 != a1 && query_int(p, q) == u2, "its reply is a new message under it");
	snprintf(q, sizeof(q), "SELECT count(*) FROM generations WHERE message_id = %lld", (long long)a1);
	CHECK(query_int(p, q) == 1, "the reply before has its one generation");

	/* Neither the message nor its first reply was taken: a regeneration
	 * saves the message and makes the reply's message. */
	l.s = NULL;
	chat_add_user(c, "Third", 5);
	CHECK(chatlog_user(&l, c) == 0 && chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 &&
	    chatlog_reply(&l, c, &st) == 0, "a turn the store did not take: %s", err);
	l.s = s;
	CHECK(chat_regenerate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l, c, &st) == 0,
	    "its regeneration: %s %s", err, store_errmsg(s));
	u3 = chat_message_tag(c, 4);
	a3 = chat_message_tag(c, 5);
	snprintf(q, sizeof(q), "SELECT parent_id FROM messages WHERE id = %lld AND content = 'Third'", (long long)u3);
	CHECK(u3 > 0 && query_int(p, q) == a2, "the message is saved after the reply before it");
	snprintf(q, sizeof(q), "SELECT parent_id FROM messages WHERE id = %lld", (long long)a3);
	CHECK(a3 > 0 && a3 != a2 && query_int(p, q) == u3, "the regeneration is a new message under it");
	snprintf(q, sizeof(q), "SELECT count(*) FROM generations WHERE message_id = %lld", (long long)a2);
	CHECK(query_int(p, q) == 1, "the reply before has its one generation");

	/* A second session on the same conversation writes meanwhile. */
	chatlog_attach(&l2, s, c2);
	CHECK(chatlog_resume(&l2, c2, l.conv, err, sizeof(err)) == 0, "resume: %s", err);
	chat_add_user(c2, "From two", 8);
	CHECK(chatlog_user(&l2, c2) == 0 && chat_generate(c2, NULL, NULL, &st, err, sizeof(err)) == 0 &&
	    chatlog_reply(&l2, c2, &st) == 0, "the other session's turn: %s", err);
	chat_add_user(c, "From one", 8);
	CHECK(chatlog_user(&l, c) == 0, "this session's message: %s", store_errmsg(s));
	u4 = chat_message_tag(c, 6);
	snprintf(q, sizeof(q), "SELECT parent_id FROM messages WHERE id = %lld", (long long)u4);
	CHECK(query_int(p, q) == a3, "it follows this session's last reply, not the other session's");
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l, c, &st) == 0,
	    "its reply: %s", err);
	snprintf(q, sizeof(q), "SELECT parent_id FROM messages WHERE id = %lld", (long long)chat_message_tag(c, 7));
	CHECK(query_int(p, q) == u4, "the reply follows it");
	{
		/* A parent from another conversation is refused, not made a root. */
		int64_t other, id;
		CHECK(store_conv_new(s, 0, NULL, NULL, NULL, &other) == 0 &&
		    store_msg_add_after(s, other, u4, "user", "stray", &id) < 0 && strstr(store_errmsg(s), "is not in"),
		    "a parent from another conversation: %s", store_errmsg(s));
	}
	{
		/* A conversation as natter serve records an OpenAI client's: a
		 * system message amid it, and a reply the client wrote (no
		 * generation).  Resumed whole, in order: the system message is
		 * part of what the next reply is made from. */
		static const char *const role[] = { "user", "system", "assistant", "user" };
		static const char *const text[] = { "I", "Answer in French.", "Oui.", "dreamed" };
		int64_t conv, id;
		int ok = store_conv_new(s, 0, NULL, NULL, "Be brief.", &conv) == 0, same = 1;
		for (int i = 0; ok && i < 4; i++)
			ok = store_msg_add(s, conv, role[i], text[i], &id) == 0;
		CHECK(ok && chatlog_resume(&l2, c2, conv, err, sizeof(err)) == 0, "resume: %s %s", err, store_errmsg(s));
		for (int i = 0; i < 4 && i < chat_n_messages(c2); i++)
			same &= !strcmp(chat_message_role(c2, i), role[i]) && !strcmp(chat_message_content(c2, i), text[i]);
		CHECK(chat_n_messages(c2) == 4 && same && !strcmp(chat_system(c2), "Be brief."),
		    "the system message amid the conversation resumed in its place (%d messages; second: %s)",
		    chat_n_messages(c2), chat_n_messages(c2) > 1 ? chat_message_role(c2, 1) : "none");
		CHECK(chat_generate(c2, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l2, c2, &st) == 0,
		    "answered: %s", err);
		snprintf(q, sizeof(q), "SELECT count(*) FROM generations g, json_each(g.prompt_messages) e WHERE g.id = %lld "
		    "AND json_extract(e.value, '$.role') = 'system' AND json_extract(e.value, '$.content') = 'Answer in French.'", (long long)l2.last_gen);
		CHECK(query_int(p, q) == 1, "the reply's record has the system message among what it was fed");
		/* A reply with a system message between it and the user's: made
		 * again, as any reply (the system message is its prompt's). */
		ok = store_conv_new(s, 0, NULL, NULL, NULL, &conv) == 0;
		for (int i = 0; ok && i < 3; i++)
			ok = store_msg_add(s, conv, role[i], text[i], &id) == 0;
		CHECK(ok && chatlog_resume(&l2, c2, conv, err, sizeof(err)) == 0 && chat_reply_last(c2),
		    "resumed, a reply at the end: %s", err);
		CHECK(chat_regenerate(c2, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l2, c2, &st) == 0 &&
		    chat_n_messages(c2) == 3 && chat_alt_count(c2, 2) == 2, "regenerated: %s (%d messages, %d alternatives)",
		    err, chat_n_messages(c2), chat_alt_count(c2, 2));
	}
out:
	chat_free(c2);
	chat_free(c);
	llm_model_free(m);
	store_close(s);
}

/* A setting changed while a reply is written applies from the next
 * token: the reply is recorded under those it started with, and the
 * changed ones as not known (NULL), never as if they made all of it. */
struct flip {
	struct chat *c;
	int n;
};

static int
flip_settings(void *ctx, const char *piece, size_t len)
{
	struct flip *f = ctx;
	(void)piece;
	(void)len;
	if (++f->n == 2) {
		struct sampler_params sp;
		chat_get_params(f->c, &sp);
		sp.temp = 0.1f;
		chat_set_params(f->c, &sp);
		chat_set_max_tokens(f->c, 7);
	}
	return 0;
}

static void
test_chatlog_settings(void)
{
	char p[512], err[512], q[256], t[256];
	struct store *s;
	struct llm_model *m = NULL;
	struct chat *c = NULL;
	struct chat_opts o;
	struct chat_stats st;
	struct chatlog l;
	struct sampler_params sp;
	struct flip f;
	int mt;
	unsigned unknown;

	if (chatlog_setup("settings.db", "chatlog settings", p, sizeof(p), &s, &m, &o, 11) < 0)
		return;
	o.max_tokens = 6;
	o.sp.temp = 1.5f;
	if (session_new(m, &o, &c) < 0)
		goto out;
	chatlog_attach(&l, s, c);
	chat_add_user(c, "Hello", 5);
	f.c = c;
	f.n = 0;
	CHECK(chatlog_user(&l, c) == 0 && chat_generate(c, flip_settings, &f, &st, err, sizeof(err)) == 0 && f.n >= 3,
	    "a reply of several pieces (%d): %s", f.n, err);
	chat_reply_params(c, &sp, &mt, &unknown);
	CHECK(sp.temp == 1.5f && mt == 6 && unknown == (SP_TEMP | SP_MAX_TOKENS),
	    "the reply's settings: those it started with (temp %.2f, %d tokens), the changed not known (%#x)",
	    sp.temp, mt, unknown);
	CHECK(chatlog_reply(&l, c, &st) == 0, "stored: %s", store_errmsg(s));
	{
		float sc[CHAT_MAX_ADAPTERS];
		CHECK(chat_alt_settings(c, 1, 0, &sp, sc) < 0, "nor is it one an A/B comparison can start from");
	}
	snprintf(q, sizeof(q), "SELECT COALESCE(temp, 'null') || ' ' || printf('%%g', top_p) || ' ' || "
	    "COALESCE(max_tokens, 'null') FROM generations WHERE id = %lld", (long long)l.last_gen);
	CHECK(!strcmp(query_text(p, q, t, sizeof(t)), "null 0.95 null"), "stored as not known: %s", t);

	/* The next reply runs under the new settings throughout. */
	chat_add_user(c, "Again", 5);
	CHECK(chatlog_user(&l, c) == 0 && chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 &&
	    chatlog_reply(&l, c, &st) == 0, "the next reply: %s", err);
	chat_reply_params(c, &sp, &mt, &unknown);
	CHECK(sp.temp == 0.1f && mt == 7 && unknown == 0, "its settings (temp %.2f, %d tokens, %#x)", sp.temp, mt,
	    unknown);
	{
		float sc[CHAT_MAX_ADAPTERS];
		CHECK(chat_alt_settings(c, 3, 0, &sp, sc) == 0 && sp.temp == 0.1f, "A/B can start from it");
	}
	snprintf(q, sizeof(q), "SELECT printf('%%.1f', temp) || ' ' || max_tokens FROM generations WHERE id = %lld",
	    (long long)l.last_gen);
	CHECK(!strcmp(query_text(p, q, t, sizeof(t)), "0.1 7"), "stored: %s", t);
out:
	chat_free(c);
	llm_model_free(m);
	store_close(s);
}

/* What a generation was made under, read back for an A/B comparison of a
 * resumed reply: its settings when the record proves everything else is
 * what a reply made now would get; else what differs, or what was not
 * recorded, said. */
static void
test_gen_made(void)
{
	char p[512], err[512], why[384];
	struct store *s;
	struct store_gen rec, now;
	struct sampler_params sp;
	float sc[2];
	static const char *const stops[] = { "END" };
	const struct store_turn fed[] = { { "system", "Be kind." }, { "user", "Hi" }, { "assistant", "Hello" },
					  { "user", "Sing" } };
	struct store_turn other[4];
	const struct store_adapter taught = { "aa11", "taught.gguf", 0.5 };
	const struct store_adapter loaded[2] = { { "bb22", "other.gguf", 1.0 }, { "aa11", "taught.gguf", 2.0 } };
	int64_t conv, u, msg = 0, m1, m2, g1;

	path_of(p, sizeof(p), "made.db");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "open: %s", err);
	if (!s)
		return;
	CHECK(store_model_remote(s, "http://a", "m1", &m1) == 0 && store_model_remote(s, "http://a", "m2", &m2) == 0,
	    "models: %s", store_errmsg(s));
	store_conv_new(s, m1, NULL, NULL, NULL, &conv);
	store_msg_add(s, conv, "user", "Sing", &u);
	rec = gen("la la");
	rec.model_id = m1;
	rec.template_name = "chatml (built-in)";
	rec.template_source = "{{ messages }}";
	rec.fed = fed;
	rec.n_fed = 4;
	rec.stop = stops;
	rec.n_stop = 1;
	rec.max_tokens = 64;
	rec.kv_type = "f16";
	rec.adapters = &taught;
	rec.n_adapters = 1;
	now = rec;
	now.adapters = loaded;
	now.n_adapters = 2;

	/* Made as now would make it: its settings, its adapter's scale on the
	 * session's adapter of the same SHA-256 (another name would do). */
	CHECK(store_gen_add(s, conv, 0, &rec, &g1, &msg) == 0, "add: %s", store_errmsg(s));
	CHECK(store_gen_made(s, g1, &now, &sp, sc, why, sizeof(why)) == 0 && sp.temp == 0.7f && sp.top_k == 40 &&
	    sp.top_p == 0.9f && sp.min_p == 0.05f && sp.repeat_penalty == 1.1f && sp.seed == 1234 &&
	    sc[0] == 0.0f && sc[1] == 0.5f, "made as now: %s (temp %g, seed %llu, scales %g %g)", why, sp.temp,
	    (unsigned long long)sp.seed, sc[0], sc[1]);
	/* Each difference, named. */
	now.model_id = m2;
	CHECK(store_gen_made(s, g1, &now, &sp, sc, why, sizeof(why)) == 1 &&
	    !strcmp(why, "was made with another model (m1 @ http://a)"), "another model: %s", why);
	now.model_id = m1;
	now.n_adapters = 1;
	CHECK(store_gen_made(s, g1, &now, &sp, sc, why, sizeof(why)) == 1 &&
	    !strcmp(why, "was made with adapter taught.gguf, which this session has not loaded"), "an adapter: %s", why);
	now.n_adapters = 2;
	now.template_source = "{{ other }}";
	CHECK(store_gen_made(s, g1, &now, &sp, sc, why, sizeof(why)) == 1 &&
	    !strcmp(why, "was made with another template (chatml (built-in))"), "another template: %s", why);
	now.template_source = rec.template_source;
	memcpy(other, fed, sizeof(other));
	now.fed = other;
	other[0].content = "Be brief.";
	CHECK(store_gen_made(s, g1, &now, &sp, sc, why, sizeof(why)) == 1 &&
	    !strcmp(why, "was made with another system prompt"), "another system prompt: %s", why);
	other[0].content = fed[0].content;
	other[2].content = "Hi there";
	CHECK(store_gen_made(s, g1, &now, &sp, sc, why, sizeof(why)) == 1 && strstr(why, "another version"),
	    "an earlier reply chosen since: %s", why);
	now.fed = fed;
	now.n_stop = 0;
	CHECK(store_gen_made(s, g1, &now, &sp, sc, why, sizeof(why)) == 1 && strstr(why, "other stop strings"),
	    "other stop strings: %s", why);
	now.n_stop = 1;
	now.max_tokens = 32;
	CHECK(store_gen_made(s, g1, &now, &sp, sc, why, sizeof(why)) == 1 &&
	    !strcmp(why, "was made with max_tokens 64 (this session: 32; /set max_tokens 64 makes them the same)"),
	    "another max_tokens: %s", why);
	now.max_tokens = 64;
	now.kv_type = "q8_0";
	CHECK(store_gen_made(s, g1, &now, &sp, sc, why, sizeof(why)) == 1 && strstr(why, "KV cache type f16"),
	    "another cache: %s", why);
	now.kv_type = "f16";
	CHECK(store_gen_made(s, g1 + 100, &now, &sp, sc, why, sizeof(why)) < 0 &&
	    strstr(store_errmsg(s), "no generation"), "a missing one: %s", store_errmsg(s));

	/* The oldest turns it left out to fit are not part of the proof. */
	rec.n_fed = 2;
	rec.n_dropped = 2;
	{
		struct store_turn cut[2] = { fed[0], fed[3] };
		int64_t g2;
		rec.fed = cut;
		CHECK(store_gen_add(s, conv, msg, &rec, &g2, NULL) == 0 &&
		    store_gen_made(s, g2, &now, &sp, sc, why, sizeof(why)) == 0, "fed after dropping two: %s", why);
	}
	rec.fed = fed;
	rec.n_fed = 4;
	rec.n_dropped = 0;

	/* What the record cannot prove: a setting not known (NULL), a reply
	 * stopped or cut by an error; one cut at max_tokens is what its
	 * settings make. */
	{
		int64_t g3, g4, g5, g6;
		rec.unknown = SP_TOP_P;
		CHECK(store_gen_add(s, conv, msg, &rec, &g3, NULL) == 0 &&
		    store_gen_made(s, g3, &now, &sp, sc, why, sizeof(why)) == 1 && strstr(why, "has no record of its top_p"),
		    "a setting not recorded: %s", why);
		rec.unknown = 0;
		rec.end = STORE_END_STOPPED;
		CHECK(store_gen_add(s, conv, msg, &rec, &g4, NULL) == 0 &&
		    store_gen_made(s, g4, &now, &sp, sc, why, sizeof(why)) == 1 && strstr(why, "was not finished (stopped)"),
		    "a stopped reply: %s", why);
		rec.end = STORE_END_ERROR;
		CHECK(store_gen_add(s, conv, msg, &rec, &g5, NULL) == 0 &&
		    store_gen_made(s, g5, &now, &sp, sc, why, sizeof(why)) == 1 && strstr(why, "was not finished (error)"),
		    "a reply cut by an error: %s", why);
		rec.end = STORE_END_MAX_TOKENS;
		CHECK(store_gen_add(s, conv, msg, &rec, &g6, NULL) == 0 &&
		    store_gen_made(s, g6, &now, &sp, sc, why, sizeof(why)) == 0, "a reply cut at max_tokens: %s", why);
		rec.end = STORE_END_FINISHED;
		rec.n_stop = -1;
		CHECK(store_gen_add(s, conv, msg, &rec, &g6, NULL) == 0 &&
		    store_gen_made(s, g6, &now, &sp, sc, why, sizeof(why)) == 1 &&
		    !strcmp(why, "has no record of its stop strings"), "stop strings not recorded: %s", why);
		rec.n_stop = 1;
		rec.model_id = 0;
		CHECK(store_gen_add(s, conv, msg, &rec, &g6, NULL) == 0 &&
		    store_gen_made(s, g6, &now, &sp, sc, why, sizeof(why)) == 1 &&
		    !strcmp(why, "has no record of its model"), "model not recorded: %s", why);
		rec.model_id = m1;
	}
	/* The context: another size may cut a long conversation otherwise;
	 * a session that knows its size wants it recorded. */
	{
		int64_t g7, g8;
		rec.n_ctx = 512;
		CHECK(store_gen_add(s, conv, msg, &rec, &g7, NULL) == 0, "add: %s", store_errmsg(s));
		now.n_ctx = 512;
		CHECK(store_gen_made(s, g7, &now, &sp, sc, why, sizeof(why)) == 0, "the same context: %s", why);
		now.n_ctx = 1024;
		CHECK(store_gen_made(s, g7, &now, &sp, sc, why, sizeof(why)) == 1 &&
		    !strcmp(why, "was made in a context of 512 tokens (this session: 1024), which may cut the "
		    "conversation otherwise"), "another context: %s", why);
		rec.n_ctx = 0;
		CHECK(store_gen_add(s, conv, msg, &rec, &g8, NULL) == 0 &&
		    store_gen_made(s, g8, &now, &sp, sc, why, sizeof(why)) == 1 &&
		    !strcmp(why, "has no record of its context size"), "context not recorded: %s", why);
		now.n_ctx = 0;
	}
	/* The think switch, for a template that reads it: the same one
	 * proves it, another is named; one not recorded (NULL, as before
	 * schema 9) proves nothing.  A template that does not read it is
	 * not asked. */
	{
		int64_t g9, g10;
		char q[128], t[32];
		rec.think = "false";
		CHECK(store_gen_add(s, conv, msg, &rec, &g9, NULL) == 0, "add: %s", store_errmsg(s));
		snprintf(q, sizeof(q), "SELECT think FROM generations WHERE id = %lld", (long long)g9);
		CHECK(!strcmp(query_text(p, q, t, sizeof(t)), "false"), "the switch recorded: %s", t);
		now.think = "false";
		CHECK(store_gen_made(s, g9, &now, &sp, sc, why, sizeof(why)) == 0, "the same switch: %s", why);
		now.think = "true";
		CHECK(store_gen_made(s, g9, &now, &sp, sc, why, sizeof(why)) == 1 &&
		    !strcmp(why, "was made with enable_thinking false (this session: true; /think off makes them the "
		    "same)"), "another switch: %s", why);
		rec.think = NULL;
		CHECK(store_gen_add(s, conv, msg, &rec, &g10, NULL) == 0 &&
		    store_gen_made(s, g10, &now, &sp, sc, why, sizeof(why)) == 1 &&
		    strstr(why, "has no record of its think switch"), "the switch not recorded: %s", why);
		now.think = NULL;
		CHECK(store_gen_made(s, g10, &now, &sp, sc, why, sizeof(why)) == 0, "a template without it: %s", why);
	}
	/* A preference pairs two replies to one prompt: the same messages
	 * and, for a model run here, the same text rendered from them where
	 * both were recorded.  A remote reply's text is the request, its
	 * sampling settings in it: not compared. */
	{
		int64_t ga, gb, gc, gd, ge, gr1, gr2, mf = 0;
		const struct store_turn cut[] = { { "system", "Be kind." }, { "user", "Sing" } };
		char mp[512];
		FILE *f;
		path_of(mp, sizeof(mp), "model.gguf");
		f = fopen(mp, "w");
		CHECK(f && fputs("a model", f) >= 0 && fclose(f) == 0, "write %s", mp);
		CHECK(store_model(s, mp, "llama", "F32", &mf) == 0, "a model file: %s", store_errmsg(s));
		rec.prompt_text = "{\"temperature\":0.8}";
		CHECK(store_gen_add(s, conv, msg, &rec, &gr1, NULL) == 0, "add: %s", store_errmsg(s));
		rec.prompt_text = "{\"temperature\":1.5}";
		CHECK(store_gen_add(s, conv, msg, &rec, &gr2, NULL) == 0 &&
		    store_pref_add(s, gr1, gr2, STORE_PICK_B, "temp 1.5", NULL) == 0, "two remote requests: %s",
		    store_errmsg(s));
		rec.model_id = mf;
		rec.prompt_text = "<s>Today is 5 Dec. Sing";
		CHECK(store_gen_add(s, conv, msg, &rec, &ga, NULL) == 0 && store_gen_add(s, conv, msg, &rec, &gb, NULL) == 0,
		    "add: %s", store_errmsg(s));
		CHECK(store_pref_add(s, ga, gb, STORE_PICK_B, "temp 0.9", NULL) == 0, "one prompt: %s", store_errmsg(s));
		rec.prompt_text = "<s>Today is 6 Dec. Sing";
		CHECK(store_gen_add(s, conv, msg, &rec, &gc, NULL) == 0, "add: %s", store_errmsg(s));
		CHECK(store_pref_add(s, ga, gc, STORE_PICK_B, "temp 0.9", NULL) < 0 &&
		    strstr(store_errmsg(s), "fed different prompts (the text rendered differs"),
		    "another text rendered: %s", store_errmsg(s));
		rec.prompt_text = "<s>Today is 5 Dec. Sing";
		rec.fed = cut;
		rec.n_fed = 2;
		CHECK(store_gen_add(s, conv, msg, &rec, &gd, NULL) == 0, "add: %s", store_errmsg(s));
		CHECK(store_pref_add(s, ga, gd, STORE_PICK_A, "temp 0.9", NULL) < 0 &&
		    strstr(store_errmsg(s), "fed different prompts (other messages"), "other messages: %s",
		    store_errmsg(s));
		/* Recorded on one side only: not shown to be the same prompt. */
		rec.fed = fed;
		rec.n_fed = 4;
		rec.prompt_text = NULL;
		CHECK(store_gen_add(s, conv, msg, &rec, &ge, NULL) == 0 &&
		    store_pref_add(s, ga, ge, STORE_PICK_A, "temp 0.9", NULL) < 0 &&
		    strstr(store_errmsg(s), "the text rendered differs"), "text not recorded: %s", store_errmsg(s));
		rec.fed = NULL;
		rec.n_fed = 0;
		rec.prompt_text = "<s>Today is 5 Dec. Sing";
		CHECK(store_gen_add(s, conv, msg, &rec, &ge, NULL) == 0 &&
		    store_pref_add(s, ga, ge, STORE_PICK_A, "temp 0.9", NULL) < 0 &&
		    strstr(store_errmsg(s), "has no record of the prompt it was fed"), "messages not recorded: %s",
		    store_errmsg(s));
		/* The same prompt and text, another model: its own way of
		 * writing, not a setting, would make the difference. */
		rec.fed = fed;
		rec.n_fed = 4;
		rec.model_id = m1;
		CHECK(store_gen_add(s, conv, msg, &rec, &ge, NULL) == 0 &&
		    store_pref_add(s, ga, ge, STORE_PICK_A, "temp 0.9", NULL) < 0 &&
		    strstr(store_errmsg(s), "made by different models"), "another model: %s", store_errmsg(s));
		/* The same model through another template (its text: a name
		 * alone is no other template). */
		rec.model_id = mf;
		rec.template_name = "another";
		rec.template_source = "{{ another }}";
		CHECK(store_gen_add(s, conv, msg, &rec, &ge, NULL) == 0 &&
		    store_pref_add(s, ga, ge, STORE_PICK_A, "temp 0.9", NULL) < 0 &&
		    strstr(store_errmsg(s), "different chat templates"), "another template: %s", store_errmsg(s));
	}
	store_close(s);
}

/* The database NAME.db in the test's folder, with two models (fake files
 * NAME-alpha.gguf and NAME-beta.gguf, of other bytes), a conversation
 * begun under the first and its first message, "Sing": the setting of the
 * export tests.  The store, or NULL after a failed check. */
static struct store *
open_two_models(const char *name, char *p, size_t pn, int64_t *mid_a, int64_t *mid_b, int64_t *conv)
{
	char ma[512], mb[512], f[128], err[512];
	struct store *s = NULL;
	int64_t u;

	snprintf(f, sizeof(f), "%s.db", name);
	path_of(p, pn, f);
	snprintf(f, sizeof(f), "%s-alpha.gguf", name);
	path_of(ma, sizeof(ma), f);
	fake_model(ma, "alpha weights");
	snprintf(f, sizeof(f), "%s-beta.gguf", name);
	path_of(mb, sizeof(mb), f);
	fake_model(mb, "beta weights");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "open: %s", err);
	if (!s)
		return NULL;
	if (store_model(s, ma, "llama", "F32", mid_a) < 0 || store_model(s, mb, "llama", "F32", mid_b) < 0 ||
	    store_conv_new(s, *mid_a, NULL, NULL, NULL, conv) < 0 || store_msg_add(s, *conv, "user", "Sing", &u) < 0) {
		CHECK(0, "%s: %s", name, store_errmsg(s));
		store_close(s);
		return NULL;
	}
	return s;
}

/* What export leaves out and what it never says twice: stopped and cut-off
 * replies are not targets unless asked; identical replies are no DPO
 * pair; one reply text gets one KTO label (its latest rating); replies from
 * before schema 3 only when asked; --model looks at the reply's model. */
static void
test_export_truth(void)
{
	char p[512], *out;
	struct store *s;
	struct store_export_opts o;
	struct store_export_counts n;
	int64_t conv, msg, gid[8], mid_a, mid_b;
	struct store_gen g;
	struct store_turn fed[2] = { { "user", "Sing" } };

	if (!(s = open_two_models("truth", p, sizeof(p), &mid_a, &mid_b, &conv)))
		return;
	g = gen("la la la");                      /* 0: complete, up */
	g.fed = fed;
	g.n_fed = 1;
	g.model_id = mid_a;
	store_gen_add(s, conv, 0, &g, &gid[0], &msg);
	g.content = "la la";                      /* 1: cut by max tokens, up */
	g.end = STORE_END_MAX_TOKENS;
	store_gen_add(s, conv, msg, &g, &gid[1], NULL);
	g.content = "la";                         /* 2: stopped by the user, down */
	g.end = STORE_END_STOPPED;
	store_gen_add(s, conv, msg, &g, &gid[2], NULL);
	g.content = "la la la";                   /* 3: the same text as 0, down, by another model */
	g.end = STORE_END_FINISHED;
	g.model_id = mid_b;
	store_gen_add(s, conv, msg, &g, &gid[3], NULL);
	g.content = "hum";                        /* 4: a stop string ended it: complete, 2 stars */
	g.end = STORE_END_STOP_STRING;
	store_gen_add(s, conv, msg, &g, &gid[4], NULL);
	store_rating_set(s, gid[0], "thumb", 1, NULL);
	store_rating_set(s, gid[1], "thumb", 1, NULL);
	store_rating_set(s, gid[2], "thumb", 0, NULL);
	store_rating_set(s, gid[3], "thumb", 0, NULL);
	store_rating_set(s, gid[4], "stars", 2, NULL);
	/* Generation 0 was rated after generation 3. */
	CHECK(exec_sql(p, "UPDATE ratings SET created = 2000 WHERE generation_id = 1;"
	    "UPDATE ratings SET created = 1000 WHERE generation_id = 4;") == 0, "rating times");

	memset(&o, 0, sizeof(o));
	o.min_rating = 4;
	o.format = STORE_SFT;
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 1 && strstr(out, "\"la la la\"") && n.skipped_incomplete == 2,
	    "sft: only the complete reply (%d lines, %d left out): %s", count_lines(out), n.skipped_incomplete, out);
	free(out);
	o.include_incomplete = 1;
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 2 && strstr(out, "\"la la\"") && n.skipped_incomplete == 0,
	    "sft --include-incomplete: the cut reply too: %s", out);
	free(out);
	o.include_incomplete = 0;

	o.format = STORE_DPO;
	out = export_to(s, &o, &n);
	/* Pairs: 4 over 3 (down), both beta's; not 0 (up, alpha's) over 4
	 * (2 stars, beta's): two models; not 0 over 3 (the same text, and
	 * two models); nothing with 1 or 2 (incomplete). */
	CHECK(out && count_lines(out) == 1 && strstr(out, "\"chosen\":[{\"role\":\"assistant\",\"content\":\"hum\"}],"
	    "\"rejected\":[{\"role\":\"assistant\",\"content\":\"la la la\"}]") && !strstr(out, "\"chosen\":[{\"role\":\"assistant\",\"content\":\"la la la\"}],"
	    "\"rejected\":[{\"role\":\"assistant\",\"content\":\"la la la\"}]") && !strstr(out, "\"la la\"}") &&
	    !strstr(out, "\"la\"}"), "dpo: no identical pair, no incomplete reply (%d lines): %s", count_lines(out), out);
	free(out);
	o.include_incomplete = 1;
	out = export_to(s, &o, &n);
	CHECK(out && strstr(out, "\"content\":\"la la\"}],\"rejected\":[{\"role\":\"assistant\",\"content\":\"la\"}]"),
	    "dpo --include-incomplete: the cut replies pair too: %s", out);
	free(out);
	o.include_incomplete = 0;

	o.format = STORE_KTO;
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 2 && strstr(out, "\"content\":\"la la la\"}],\"label\":true}") &&
	    !strstr(out, "\"content\":\"la la la\"}],\"label\":false}") && strstr(out, "\"content\":\"hum\"}],\"label\":false}"),
	    "kto: one label for one reply text, the latest rating's (%d lines): %s", count_lines(out), out);
	free(out);
	CHECK(exec_sql(p, "UPDATE ratings SET created = 3000 WHERE generation_id = 4;") == 0, "rate 3 later");
	out = export_to(s, &o, &n);
	CHECK(out && strstr(out, "\"content\":\"la la la\"}],\"label\":false}") &&
	    !strstr(out, "\"content\":\"la la la\"}],\"label\":true}"), "kto: the later rating decides: %s", out);
	free(out);

	/* --model: the model that made the reply. */
	o.format = STORE_SFT;
	o.model = "beta";
	o.min_rating = 1;
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 2 && n.lines == 2 && strstr(out, "\"la la la\"") && strstr(out, "\"hum\""),
	    "--model beta: its two replies (%d lines): %s", n.lines, out);
	free(out);
	o.model = "alpha";
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 1 && strstr(out, "\"la la la\"") && !strstr(out, "hum"),
	    "--model alpha: its complete reply only (%d lines): %s", n.lines, out);
	free(out);
	o.model = NULL;

	/* A generation from before schema 3 (no record of what it was fed). */
	CHECK(exec_sql(p, "UPDATE generations SET prompt_messages = NULL WHERE id = 1") == 0, "make it legacy");
	o.min_rating = 4;
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 0 && n.skipped_legacy == 1, "legacy left out (%d lines, %d)", count_lines(out),
	    n.skipped_legacy);
	free(out);
	o.include_legacy = 1;
	out = export_to(s, &o, &n);
	CHECK(out && !strcmp(out, "{\"messages\":[{\"role\":\"user\",\"content\":\"Sing\"},{\"role\":\"assistant\","
	    "\"content\":\"la la la\"}]}\n"), "--include-legacy: the prompt rebuilt: %s", out ? out : "");
	free(out);
	store_close(s);
}

/* A reply recorded with its reasoning apart (since schema 4) is exported
 * as stored: one without reasoning is its whole answer, even if it holds
 * <think> (a session with other --think-tags, whose model wrote it as
 * text); only a reply from before schema 4 is split again. */
static void
test_export_as_stored(void)
{
	char p[512], err[512], *out;
	struct store *s;
	struct store_export_opts o;
	struct store_export_counts n;
	int64_t conv, u, msg, gid;
	struct store_gen g;
	struct store_turn fed[1] = { { "user", "q" } };

	path_of(p, sizeof(p), "as-stored.db");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "open: %s", err);
	if (!s)
		return;
	store_conv_new(s, 0, NULL, NULL, NULL, &conv);
	store_msg_add(s, conv, "user", "q", &u);
	g = gen("<think>plan</think>The answer is 0");
	g.fed = fed;
	g.n_fed = 1;
	CHECK(store_gen_add(s, conv, 0, &g, &gid, &msg) == 0 && store_rating_set(s, gid, "thumb", 1, NULL) == 0,
	    "add: %s", store_errmsg(s));
	memset(&o, 0, sizeof(o));
	o.format = STORE_SFT;
	o.min_rating = 4;
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 1 && strstr(out, "\"content\":\"<think>plan</think>The answer is 0\"}]}"),
	    "the reply as stored: %s", out ? out : "");
	free(out);
	store_close(s);
}

/* A reply to a bare prompt (natter serve's /v1/completions: the prompt
 * recorded as one user message, rendered through no template) is no chat
 * turn: the export leaves it out and counts it, whatever its template is
 * called; a chat reply to the same words, rendered through a template,
 * is exported. */
static void
test_export_bare_prompt(void)
{
	char p[512], err[512], mp[512], *out;
	struct store *s;
	struct store_export_opts o;
	struct store_export_counts n;
	int64_t conv, u, msg, mid, graw, gchat;
	struct store_gen g;
	struct store_turn fed[1] = { { "user", "Once upon a time" } };

	path_of(p, sizeof(p), "bare.db");
	path_of(mp, sizeof(mp), "bare.gguf");
	fake_model(mp, "a model for bare prompts");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "open: %s", err);
	if (!s)
		return;
	CHECK(store_model(s, mp, "llama", "F32", &mid) == 0, "model: %s", store_errmsg(s));
	store_conv_new(s, mid, NULL, NULL, NULL, &conv);
	store_msg_add(s, conv, "user", "Once upon a time", &u);
	g = gen(" there was a cat.");
	g.fed = fed;
	g.n_fed = 1;
	g.model_id = mid;
	g.template_name = "pass-through";
	g.prompt_text = "Once upon a time";
	CHECK(store_gen_add(s, conv, 0, &g, &graw, &msg) == 0, "add: %s", store_errmsg(s));
	g.content = "What a start!";
	g.template_name = "chatml";
	g.prompt_text = "<|im_start|>user\nOnce upon a time<|im_end|>\n<|im_start|>assistant\n";
	CHECK(store_gen_add(s, conv, msg, &g, &gchat, NULL) == 0, "add: %s", store_errmsg(s));
	store_rating_set(s, graw, "thumb", 1, NULL);
	store_rating_set(s, gchat, "thumb", 1, NULL);
	memset(&o, 0, sizeof(o));
	o.min_rating = 4;
	for (int f = 0; f < STORE_N_FORMATS; f++) {
		o.format = (enum store_format)f;
		out = export_to(s, &o, &n);
		CHECK(out && !strstr(out, "there was a cat") && n.skipped_raw == 1, "%s: the bare prompt's reply left "
		    "out (%d counted): %s", store_format_name(o.format), n.skipped_raw, out ? out : "");
		if (f == STORE_SFT)
			CHECK(out && count_lines(out) == 1 && strstr(out, "What a start!"), "sft: the chat reply: %s",
			    out ? out : "");
		free(out);
	}
	store_close(s);
}

/* A DPO pair says one reply is better than another: only of two replies
 * of one model through one template to one prompt (for a model run here,
 * one text rendered; a remote model's text is its request, which holds
 * the settings).  A conversation resumed with another model, or a
 * preference an older natter recorded across models, makes no pair. */
static void
test_export_pairs(void)
{
	char p[512], sql[512], *out;
	struct store *s;
	struct store_export_opts o;
	struct store_export_counts n;
	int64_t conv, msg, mid_a, mid_b, mid_r, a1, a2, a3, b1, r1, r2;
	struct store_gen g;
	struct store_turn fed[1] = { { "user", "Sing" } };

	if (!(s = open_two_models("pairs", p, sizeof(p), &mid_a, &mid_b, &conv)))
		return;
	CHECK(store_model_remote(s, "http://host/v1", "m", &mid_r) == 0, "remote model: %s", store_errmsg(s));
	g = gen("alpha one");
	g.fed = fed;
	g.n_fed = 1;
	g.model_id = mid_a;
	g.template_name = "chatml";
	g.template_source = "{{ chatml }}";   /* recorded: one template row */
	g.prompt_text = "<|im_start|>user\nSing<|im_end|>\n";
	CHECK(store_gen_add(s, conv, 0, &g, &a1, &msg) == 0, "add: %s", store_errmsg(s));
	g.content = "alpha two";
	store_gen_add(s, conv, msg, &g, &a2, NULL);
	g.content = "alpha three";                  /* another text rendered (the date in it, say) */
	g.prompt_text = "<|im_start|>user\nSing today<|im_end|>\n";
	store_gen_add(s, conv, msg, &g, &a3, NULL);
	g.content = "beta one";                     /* the session resumed with beta */
	g.prompt_text = "<|im_start|>user\nSing<|im_end|>\n";
	g.model_id = mid_b;
	store_gen_add(s, conv, msg, &g, &b1, NULL);
	g.content = "remote one";                   /* a remote model: requests at two temperatures */
	g.model_id = mid_r;
	g.prompt_text = "{\"temperature\":0.5}";
	store_gen_add(s, conv, msg, &g, &r1, NULL);
	g.content = "remote two";
	g.prompt_text = "{\"temperature\":1.0}";
	store_gen_add(s, conv, msg, &g, &r2, NULL);
	store_rating_set(s, a1, "thumb", 1, NULL);
	store_rating_set(s, a2, "thumb", 0, NULL);
	store_rating_set(s, a3, "thumb", 0, NULL);
	store_rating_set(s, b1, "thumb", 0, NULL);
	store_rating_set(s, r1, "thumb", 1, NULL);
	store_rating_set(s, r2, "thumb", 0, NULL);
	/* A preference across models as an older natter recorded it. */
	snprintf(sql, sizeof(sql), "INSERT INTO preferences(message_id, gen_a, gen_b, pick, created) "
	    "VALUES (%lld, %lld, %lld, 'b', 1)", (long long)msg, (long long)b1, (long long)a1);
	CHECK(exec_sql(p, sql) == 0, "a preference across models");

	memset(&o, 0, sizeof(o));
	o.format = STORE_DPO;
	o.min_rating = 4;
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 2 &&
	    strstr(out, "\"chosen\":[{\"role\":\"assistant\",\"content\":\"alpha one\"}],"
	    "\"rejected\":[{\"role\":\"assistant\",\"content\":\"alpha two\"}]") &&
	    strstr(out, "\"chosen\":[{\"role\":\"assistant\",\"content\":\"remote one\"}],"
	    "\"rejected\":[{\"role\":\"assistant\",\"content\":\"remote two\"}]") &&
	    !strstr(out, "beta one") && !strstr(out, "alpha three"),
	    "dpo: a pair of one model and one prompt only (%d lines): %s", count_lines(out), out ? out : "");
	free(out);
	/* A template of the same text under another name is the same
	 * template (chatml built in, and named for a model that has none). */
	snprintf(sql, sizeof(sql), "UPDATE generations SET template_name = 'chatml (built-in; the model has none)' "
	    "WHERE id = %lld", (long long)a2);
	CHECK(exec_sql(p, sql) == 0, "another name");
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 2 && strstr(out, "alpha one"), "dpo: one template by two names pairs: %s",
	    out ? out : "");
	free(out);
	/* Another template's text is not (the same model, text and messages). */
	snprintf(sql, sizeof(sql), "INSERT INTO templates(sha256, source) VALUES ('feed', '{{ other }}'); "
	    "UPDATE generations SET template_id = (SELECT id FROM templates WHERE sha256 = 'feed') WHERE id = %lld",
	    (long long)a2);
	CHECK(exec_sql(p, sql) == 0, "another template");
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 1 && !strstr(out, "alpha"), "dpo: no pair across templates: %s",
	    out ? out : "");
	free(out);
	store_close(s);
}

/*
 * Schema 5 -> 6: the generations made before have no adapters (natter had
 * none), and export --adapter none keeps them; new generations record
 * theirs; A/B preferences give DPO pairs (a tie none), once each.
 */
/* An export over a database with a damaged page fails and writes no
 * file: a step that ends in SQLITE_CORRUPT is not the end of the rows. */
static void
test_export_damaged(void)
{
	char p[512], op[512], err[512];
	struct store *s;
	struct store_export_opts o;
	struct store_export_counts n;
	int64_t conv, u, gid, msg;

	path_of(p, sizeof(p), "damaged.db");
	path_of(op, sizeof(op), "damaged.jsonl");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "open: %s", err);
	if (!s)
		return;
	store_conv_new(s, 0, NULL, NULL, NULL, &conv);
	for (int i = 0; i < 300; i++) {
		char reasoning[256], ask[32], reply[96];
		struct store_turn fed[1] = { { "user", ask } };
		snprintf(ask, sizeof(ask), "Count to %d", i);
		snprintf(reply, sizeof(reply), "reply %d, of some length, to fill the pages of the generations table", i);
		struct store_gen g = gen(reply);
		/* The reasoning is kept in the generations table alone: the
		 * page holding reply 150's is one of that table's. */
		snprintf(reasoning, sizeof(reasoning), "MARK-%04d-%0200d", i, 0);
		g.reasoning = reasoning;
		g.fed = fed;
		g.n_fed = 1;
		store_msg_add(s, conv, "user", ask, &u);
		CHECK(store_gen_add(s, conv, 0, &g, &gid, &msg) == 0 && store_rating_set(s, gid, "thumb", 1, NULL) == 0,
		    "reply %d: %s", i, store_errmsg(s));
	}
	memset(&o, 0, sizeof(o));
	o.format = STORE_SFT;
	o.min_rating = 4;
	CHECK(store_export(s, &o, op, &n, err, sizeof(err)) == 0 && n.lines == 300, "intact: %d lines %s", n.lines, err);
	store_close(s);
	unlink(op);
	{
		FILE *f = fopen(p, "r+b");
		unsigned char hdr[100], *buf = NULL;
		long size = 0, at = -1;
		int ps = 0;
		if (f && fread(hdr, 1, sizeof(hdr), f) == sizeof(hdr) && fseek(f, 0, SEEK_END) == 0 &&
		    (size = ftell(f)) > 0 && (buf = malloc((size_t)size)) && fseek(f, 0, SEEK_SET) == 0 &&
		    fread(buf, 1, (size_t)size, f) == (size_t)size) {
			ps = hdr[16] << 8 | hdr[17];
			ps = ps == 1 ? 65536 : ps;
			for (long k = 0; k + 9 < size && at < 0; k++)
				if (!memcmp(buf + k, "MARK-0150", 9))
					at = k;
		}
		CHECK(at >= 0 && ps > 0, "reply 150 in the file (page size %d)", ps);
		if (at >= 0 && ps > 0) {
			memset(buf, 0xA5, (size_t)ps);
			fseek(f, at / ps * ps, SEEK_SET);
			fwrite(buf, 1, (size_t)ps, f);
		}
		free(buf);
		if (f)
			fclose(f);
	}
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "reopen: %s", err);
	if (!s)
		return;
	CHECK(store_export(s, &o, op, &n, err, sizeof(err)) < 0 && strstr(err, "damaged"),
	    "an export over a damaged page fails (%d lines): %s", n.lines, err);
	CHECK(access(op, F_OK) != 0, "and leaves no file");
	store_close(s);
}

/* Exports DPO with O and checks that the one line is CHOSEN over REJECTED. */
static void
expect_one_pair(struct store *s, const struct store_export_opts *o, const char *chosen, const char *rejected,
		const char *what)
{
	struct store_export_counts n;
	char want[256];
	char *out = export_to(s, o, &n);
	snprintf(want, sizeof(want), "\"chosen\":[{\"role\":\"assistant\",\"content\":\"%s\"}],"
	    "\"rejected\":[{\"role\":\"assistant\",\"content\":\"%s\"}]", chosen, rejected);
	CHECK(out && count_lines(out) == 1 && strstr(out, want), "%s (%d lines): %s", what, out ? count_lines(out) : 0,
	    out ? out : "(null)");
	free(out);
}

/* What an export says of a reply is what the user said last and what the
 * model saw: --reasoning keep adds no reasoning a reply never had; a
 * damaged record of the prompt leaves the reply out, counted, rather than
 * a prompt with a turn missing; a pair of texts is held back only by a
 * pair that was written; verdicts both ways on one pair of texts are
 * settled by the newer; a remote server's replies to one prompt under two
 * thinking switches are no pair. */
static void
test_export_verdicts(void)
{
	char p[512], q[256], *out;
	struct store *s;
	struct store_export_opts o;
	struct store_export_counts n;
	int64_t conv, msg, g1, g2, g3, mid_a, mid_b, rm, u;
	struct store_gen g;
	struct store_turn fed[1] = { { "user", "Sing" } };

	if (!(s = open_two_models("verdicts", p, sizeof(p), &mid_a, &mid_b, &conv)))
		return;
	/* No reasoning recorded: keep gives the answer alone; an empty one is kept. */
	g = gen("plain answer");
	g.fed = fed;
	g.n_fed = 1;
	g.model_id = mid_a;
	store_gen_add(s, conv, 0, &g, &g1, &msg);
	g.content = "thought answer";
	g.reasoning = "";
	store_gen_add(s, conv, msg, &g, &g2, NULL);
	g.reasoning = NULL;
	store_rating_set(s, g1, "thumb", 1, NULL);
	store_rating_set(s, g2, "thumb", 1, NULL);
	memset(&o, 0, sizeof(o));
	o.min_rating = 4;
	o.format = STORE_SFT;
	o.keep_reasoning = 1;
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 2 && strstr(out, "\"content\":\"plain answer\"}") &&
	    strstr(out, "\"content\":\"<think>\\n\\n</think>\\n\\nthought answer\"}"),
	    "keep: no think block for a reply without reasoning: %s", out);
	free(out);
	o.keep_reasoning = 0;
	/* A record of the prompt with a turn that is no message, or no list. */
	snprintf(q, sizeof(q), "UPDATE generations SET prompt_messages = '[{\"role\":\"system\",\"content\":5},"
	    "{\"role\":\"user\",\"content\":\"Sing\"}]' WHERE id = %lld", (long long)g1);
	CHECK(exec_sql(p, q) == 0, "damage a record");
	snprintf(q, sizeof(q), "UPDATE generations SET prompt_messages = '{\"a\":1}' WHERE id = %lld", (long long)g2);
	CHECK(exec_sql(p, q) == 0, "damage another");
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 0 && n.skipped_damaged == 2, "damaged records: left out, counted (%d): %s",
	    n.skipped_damaged, out);
	free(out);

	/* One prompt: A by model a up, B by b down, A by b up.  (A a, B b) is no
	 * pair (two models) and must not hold back (A b, B b). */
	store_msg_add(s, conv, "user", "Sing", &u);
	g = gen("A");
	g.fed = fed;
	g.n_fed = 1;
	g.model_id = mid_a;
	store_gen_add(s, conv, 0, &g, &g1, &msg);
	g.content = "B";
	g.model_id = mid_b;
	store_gen_add(s, conv, msg, &g, &g2, NULL);
	g.content = "A";
	store_gen_add(s, conv, msg, &g, &g3, NULL);
	store_rating_set(s, g1, "thumb", 1, NULL);
	store_rating_set(s, g2, "thumb", 0, NULL);
	store_rating_set(s, g3, "thumb", 1, NULL);
	o.format = STORE_DPO;
	expect_one_pair(s, &o, "A", "B", "a pair not written holds back none");
	/* The ratings say A over B; a pick of B over A, later, earlier, in the same second. */
	CHECK(store_pref_add(s, g3, g2, STORE_PICK_B, "", NULL) == 0, "B over A: %s", store_errmsg(s));
	CHECK(exec_sql(p, "UPDATE ratings SET created = 1000; UPDATE preferences SET created = 2000") == 0, "times");
	expect_one_pair(s, &o, "B", "A", "the later pick decides");
	CHECK(exec_sql(p, "UPDATE preferences SET created = 500") == 0, "an earlier pick");
	expect_one_pair(s, &o, "A", "B", "the later ratings decide");
	CHECK(exec_sql(p, "UPDATE preferences SET created = 1000") == 0, "a pick in the ratings' second");
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 0, "verdicts both ways at once: no pair (%d lines): %s", count_lines(out), out);
	free(out);

	/* A remote server, one prompt, two thinking switches. */
	CHECK(store_model_remote(s, "http://127.0.0.1:8000/v1", "qwen3", &rm) == 0, "remote: %s", store_errmsg(s));
	store_msg_add(s, conv, "user", "Sing", &u);
	g = gen("thinking on");
	g.fed = fed;
	g.n_fed = 1;
	g.model_id = rm;
	g.think = "true";
	store_gen_add(s, conv, 0, &g, &g1, &msg);
	g.content = "thinking off";
	g.think = "false";
	store_gen_add(s, conv, msg, &g, &g2, NULL);
	g.content = "thinking off too";
	store_gen_add(s, conv, msg, &g, &g3, NULL);
	store_rating_set(s, g1, "thumb", 1, NULL);
	store_rating_set(s, g2, "thumb", 0, NULL);
	store_rating_set(s, g3, "thumb", 1, NULL);
	expect_one_pair(s, &o, "thinking off too", "thinking off", "remote: pairs under one switch only");
	CHECK(store_pref_add(s, g1, g2, STORE_PICK_A, "", NULL) < 0 && strstr(store_errmsg(s), "thinking switches"),
	    "remote: no preference across switches: %s", store_errmsg(s));
	store_close(s);
}

/* A turn regenerated many times: 4 texts, each 40 times, rated 1 to 4
 * stars by text, and 30 A/B picks that agree with the stars (T3 over T0),
 * one that disagrees (T0 over T1, later than every rating).  DPO gives
 * each pair of texts once, better first, the later pick deciding T0 and
 * T1: 6 lines. */
static void
test_export_many(void)
{
	char p[512], t[64], *out;
	struct store *s;
	struct store_export_opts o;
	struct store_export_counts n;
	struct store_gen g;
	struct store_turn fed[1] = { { "user", "Sing" } };
	int64_t mid_a, mid_b, conv, msg = 0, ids[160];

	if (!(s = open_two_models("many", p, sizeof(p), &mid_a, &mid_b, &conv)))
		return;
	for (int k = 0; k < 160; k++) {
		snprintf(t, sizeof(t), "T%d", k % 4);
		g = gen(t);
		g.fed = fed;
		g.n_fed = 1;
		g.model_id = mid_a;
		CHECK(store_gen_add(s, conv, msg, &g, &ids[k], k ? NULL : &msg) == 0 &&
		    store_rating_set(s, ids[k], "stars", k % 4 + 1, NULL) == 0, "reply %d: %s", k, store_errmsg(s));
	}
	for (int k = 0; k < 30; k++)
		CHECK(store_pref_add(s, ids[4 * k], ids[4 * k + 3], STORE_PICK_B, "", NULL) == 0, "pick %d: %s", k,
		    store_errmsg(s));
	CHECK(store_pref_add(s, ids[0], ids[1], STORE_PICK_A, "", NULL) == 0, "T0 over T1: %s", store_errmsg(s));
	CHECK(exec_sql(p, "UPDATE ratings SET created = 1000; UPDATE preferences SET created = 1500; "
	    "UPDATE preferences SET created = 2000 WHERE id = (SELECT max(id) FROM preferences)") == 0, "times");
	memset(&o, 0, sizeof(o));
	o.min_rating = 4;
	o.format = STORE_DPO;
	out = export_to(s, &o, &n);
	{
		static const char *const want[6][2] = { { "T0", "T1" }, { "T2", "T0" }, { "T3", "T0" }, { "T2", "T1" },
		    { "T3", "T1" }, { "T3", "T2" } };
		int found = 0;
		for (int k = 0; k < 6 && out; k++) {
			char line[256];
			snprintf(line, sizeof(line), "\"chosen\":[{\"role\":\"assistant\",\"content\":\"%s\"}],"
			    "\"rejected\":[{\"role\":\"assistant\",\"content\":\"%s\"}]", want[k][0], want[k][1]);
			found += strstr(out, line) != NULL;
		}
		CHECK(out && count_lines(out) == 6 && found == 6,
		    "160 replies, 4 texts: each pair of texts once, the later pick deciding T0 and T1 (%d lines, %d "
		    "as expected): %s", out ? count_lines(out) : 0, found, out ? out : "(null)");
	}
	free(out);
	store_close(s);
}

static void
test_adapters_and_preferences(void)
{
	char p[512], err[512], t[256], *out;
	struct store *s;
	struct store_export_opts o;
	struct store_export_counts n;
	struct store_gen g;
	struct store_turn fed[1] = { { "user", "Sing" } };
	const struct store_adapter taught = { "ab12cd", "taught.gguf", 0.5 }, other = { "ff00", "other.gguf", 1.0 };
	struct store_adapter both[2];
	int64_t conv, u, msg, old, a1, a2, b1, b2, b3, cut;

	path_of(p, sizeof(p), "v5-adapters.db");
	CHECK(store_open_version(p, 5, &s, err, sizeof(err)) == 0, "v5: %s", err);
	if (!s)
		return;
	CHECK(store_schema_version(s) == 5, "created at schema 5");
	store_conv_new(s, 0, NULL, NULL, NULL, &conv);
	store_msg_add(s, conv, "user", "Sing", &u);
	g = gen("old song");
	g.fed = fed;
	g.n_fed = 1;
	CHECK(store_gen_add(s, conv, 0, &g, &old, &msg) == 0, "a schema-5 generation: %s", store_errmsg(s));
	store_rating_set(s, old, "thumb", 1, NULL);
	store_close(s);
	CHECK(query_int(p, "SELECT count(*) FROM sqlite_master WHERE name = 'generation_adapters'") == 0,
	    "schema 5 has no adapter table");
	CHECK(query_int(p, "SELECT count(*) FROM sqlite_master WHERE name = 'preferences'") == 0,
	    "schema 5 has no preferences table");
	CHECK(store_open_version(p, 6, &s, err, sizeof(err)) == 0, "migrate 5 -> 6: %s", err);
	if (!s)
		return;
	CHECK(store_schema_version(s) == 6, "at schema 6");
	CHECK(query_int(p, "SELECT count(*) FROM generation_adapters") == 0, "old generations have no adapters");

	/* New alternatives of the same reply: with an adapter, with two, without. */
	g.content = "taught song";
	g.adapters = &taught;
	g.n_adapters = 1;
	CHECK(store_gen_add(s, conv, msg, &g, &a1, NULL) == 0, "with an adapter: %s", store_errmsg(s));
	both[0] = taught;
	both[1] = other;
	g.content = "both song";
	g.adapters = both;
	g.n_adapters = 2;
	store_gen_add(s, conv, msg, &g, &a2, NULL);
	g.adapters = NULL;
	g.n_adapters = 0;
	g.content = "bare song";
	store_gen_add(s, conv, msg, &g, &b1, NULL);
	g.content = "bare song";                  /* the same text as b1 */
	store_gen_add(s, conv, msg, &g, &b2, NULL);
	g.content = "another song";
	store_gen_add(s, conv, msg, &g, &b3, NULL);
	g.content = "cut so";
	g.end = STORE_END_MAX_TOKENS;
	store_gen_add(s, conv, msg, &g, &cut, NULL);
	CHECK(!strcmp(query_text(p, "SELECT group_concat(file_name || ':' || scale || ':' || sha256, ' ') FROM "
	    "(SELECT * FROM generation_adapters ORDER BY generation_id, position)", t, sizeof(t)),
	    "taught.gguf:0.5:ab12cd taught.gguf:0.5:ab12cd other.gguf:1.0:ff00"), "adapters recorded: %s", t);

	/* Preferences. */
	CHECK(store_pref_add(s, a1, b1, STORE_PICK_A, "adapter off", NULL) == 0, "A over B: %s", store_errmsg(s));
	CHECK(store_pref_add(s, b1, a1, STORE_PICK_B, "adapter on", NULL) == 0, "the same pair again, as B");
	CHECK(store_pref_add(s, a2, b3, STORE_PICK_TIE, "adapter off", NULL) == 0, "a tie");
	CHECK(store_pref_add(s, b1, b2, STORE_PICK_B, "seed 2", NULL) == 0, "two identical texts");
	CHECK(store_pref_add(s, b3, cut, STORE_PICK_A, "temp 1", NULL) == 0, "a cut reply");
	CHECK(store_pref_add(s, a1, a1, STORE_PICK_A, "", NULL) < 0 && strstr(store_errmsg(s), "two different"),
	    "a generation against itself: %s", store_errmsg(s));
	CHECK(store_pref_add(s, a1, 999, STORE_PICK_A, "", NULL) < 0 && strstr(store_errmsg(s), "no generation 999"),
	    "a missing generation: %s", store_errmsg(s));
	{
		enum store_pick pk;
		CHECK(store_pick_parse("tie", &pk) == 0 && pk == STORE_PICK_TIE && store_pick_parse("c", &pk) < 0 &&
		    !strcmp(store_pick_name(STORE_PICK_B), "b"), "pick words");
	}
	memset(&o, 0, sizeof(o));
	o.min_rating = 4;
	o.format = STORE_DPO;
	out = export_to(s, &o, &n);
	/* One line: taught over bare (picked twice); no tie, no identical
	 * texts, no cut reply; the rated old song pairs with nothing rated. */
	CHECK(out && count_lines(out) == 1 && strstr(out, "\"chosen\":[{\"role\":\"assistant\",\"content\":\"taught song\"}],"
	    "\"rejected\":[{\"role\":\"assistant\",\"content\":\"bare song\"}]"), "dpo from preferences (%d lines): %s",
	    count_lines(out), out);
	free(out);
	o.include_incomplete = 1;
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 2 && strstr(out, "\"another song\"}],\"rejected\":[{\"role\":\"assistant\","
	    "\"content\":\"cut so\"}]"), "dpo --include-incomplete: the cut pair too: %s", out);
	free(out);
	o.include_incomplete = 0;
	/* A rating that says the same as a preference: still one line. */
	store_rating_set(s, a1, "thumb", 1, NULL);
	store_rating_set(s, b1, "thumb", 0, NULL);
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 2 && strstr(out, "\"old song\"}],\"rejected\":[{\"role\":\"assistant\","
	    "\"content\":\"bare song\"}]"), "ratings and a preference, each pair once (%d lines): %s",
	    count_lines(out), out);
	free(out);
	/* Unrated replies of a preference are no SFT or KTO target. */
	o.format = STORE_KTO;
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 3 && !strstr(out, "another song") && !strstr(out, "both song"),
	    "kto: the rated replies only (%d lines): %s", count_lines(out), out);
	free(out);
	o.format = STORE_SFT;
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 2 && strstr(out, "old song") && strstr(out, "taught song"),
	    "sft: the replies rated up (%d lines): %s", count_lines(out), out);
	free(out);
	/* --adapter: by SHA-256 prefix, or none. */
	o.adapter = "none";
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 1 && strstr(out, "old song"), "--adapter none: the old reply: %s", out);
	free(out);
	o.adapter = "AB1";
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 1 && strstr(out, "taught song"), "--adapter AB1 (a prefix, any case): %s", out);
	free(out);
	o.adapter = "ff";
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 0, "--adapter ff: its reply is not rated: %s", out);
	free(out);
	o.format = STORE_DPO;
	o.adapter = "none";
	out = export_to(s, &o, &n);
	CHECK(out && count_lines(out) == 1 && strstr(out, "\"old song\"}],\"rejected\":[{\"role\":\"assistant\","
	    "\"content\":\"bare song\"}]"), "dpo --adapter none: pairs of replies without adapters: %s", out);
	free(out);
	CHECK(query_int(p, "SELECT count(*) FROM preferences") == 5, "five preferences stored");
	store_close(s);

	/* 6 -> 7: the cache type and exact activations of each generation;
	 * NULL for the earlier ones and for a model whose session is not
	 * known (remote). */
	CHECK(store_open_version(p, 7, &s, err, sizeof(err)) == 0, "migrate 6 -> 7: %s", err);
	if (!s)
		return;
	CHECK(store_schema_version(s) == 7, "at schema 7");
	CHECK(query_int(p, "SELECT count(*) FROM generations WHERE kv_type IS NOT NULL OR exact_act IS NOT NULL") == 0,
	    "earlier generations: no cache type recorded");
	g.content = "exact song";
	g.end = STORE_END_FINISHED;
	g.kv_type = "q8_0";
	g.exact_act = 1;
	int64_t e1 = 0, e2 = 0;
	CHECK(store_gen_add(s, conv, msg, &g, &e1, NULL) == 0, "with a cache type: %s", store_errmsg(s));
	g.kv_type = NULL;
	g.content = "remote song";
	store_gen_add(s, conv, msg, &g, &e2, NULL);
	char q[160];
	snprintf(q, sizeof(q), "SELECT kv_type || ':' || exact_act FROM generations WHERE id = %lld", (long long)e1);
	CHECK(!strcmp(query_text(p, q, t, sizeof(t)), "q8_0:1"), "recorded: %s", t);
	snprintf(q, sizeof(q), "SELECT count(*) FROM generations WHERE id = %lld AND kv_type IS NULL AND exact_act IS NULL",
	    (long long)e2);
	CHECK(query_int(p, q) == 1, "not known: both NULL");
	store_close(s);

	/* 7 -> 8: the stop strings, a JSON array ("[]": none); NULL for the
	 * earlier generations and for one whose stops are not known; history
	 * show names them. */
	CHECK(store_open_version(p, 8, &s, err, sizeof(err)) == 0, "migrate 7 -> 8: %s", err);
	if (!s)
		return;
	CHECK(store_schema_version(s) == 8, "at schema 8");
	CHECK(query_int(p, "SELECT count(*) FROM generations WHERE stop IS NOT NULL") == 0,
	    "earlier generations: no stop strings recorded");
	{
		static const char *const stops[] = { "END", "say \"bye\"" };
		int64_t s1 = 0, s2 = 0, s3 = 0;
		char *shown;
		size_t len;
		FILE *f;
		g.content = "stopped song";
		g.end = STORE_END_STOP_STRING;
		g.stop = stops;
		g.n_stop = 2;
		CHECK(store_gen_add(s, conv, msg, &g, &s1, NULL) == 0, "with stop strings: %s", store_errmsg(s));
		g.n_stop = 0;
		g.content = "plain song";
		CHECK(store_gen_add(s, conv, msg, &g, &s2, NULL) == 0, "without: %s", store_errmsg(s));
		g.n_stop = -1;
		g.content = "unknown song";
		CHECK(store_gen_add(s, conv, msg, &g, &s3, NULL) == 0, "not known: %s", store_errmsg(s));
		snprintf(q, sizeof(q), "SELECT stop FROM generations WHERE id = %lld", (long long)s1);
		CHECK(!strcmp(query_text(p, q, t, sizeof(t)), "[\"END\",\"say \\\"bye\\\"\"]"), "two recorded: %s", t);
		snprintf(q, sizeof(q), "SELECT stop FROM generations WHERE id = %lld", (long long)s2);
		CHECK(!strcmp(query_text(p, q, t, sizeof(t)), "[]"), "none recorded: %s", t);
		snprintf(q, sizeof(q), "SELECT count(*) FROM generations WHERE id = %lld AND stop IS NULL", (long long)s3);
		CHECK(query_int(p, q) == 1, "not known: NULL");
		f = open_memstream(&shown, &len);
		CHECK(f && store_history_show(s, conv, f) == 0, "history show: %s", store_errmsg(s));
		if (f)
			fclose(f);
		CHECK(f && strstr(shown, "stop [\"END\",\"say \\\"bye\\\"\"]") && !strstr(shown, "stop []"),
		    "history show names the stop strings: %s", f ? shown : "");
		if (f)
			free(shown);
		g.stop = NULL;
		g.n_stop = 0;
	}
	store_close(s);
}

/* 8 -> 9: the think switch.  A generation recorded at schema 8 (which
 * has no column for it) proves nothing about it, before the migration
 * and after; one recorded since proves it.  Everything else in the
 * record is what a reply made now would get. */
static void
test_migration_think(void)
{
	char p[512], err[512], why[256], q[128], t[32];
	struct store *s = NULL;
	struct store_gen g;
	struct sampler_params sp;
	const struct store_turn fed[] = { { "user", "Sing" } };
	int64_t m, conv, u, msg = 0, old = 0, th = 0;

	path_of(p, sizeof(p), "think.db");
	CHECK(store_open_version(p, 8, &s, err, sizeof(err)) == 0, "v8: %s", err);
	if (!s)
		return;
	store_model_remote(s, "http://a", "m", &m);
	store_conv_new(s, m, NULL, NULL, NULL, &conv);
	store_msg_add(s, conv, "user", "Sing", &u);
	g = gen("la la");
	g.model_id = m;
	g.template_source = "{{ enable_thinking }}";
	g.fed = fed;
	g.n_fed = 1;
	g.think = "true";   /* what the session had: schema 8 cannot keep it */
	CHECK(store_gen_add(s, conv, 0, &g, &old, &msg) == 0, "add at schema 8: %s", store_errmsg(s));
	CHECK(store_gen_made(s, old, &g, &sp, NULL, why, sizeof(why)) == 1 &&
	    strstr(why, "has no record of its think switch"), "at schema 8: %s", why);
	store_close(s);

	CHECK(store_open_version(p, 9, &s, err, sizeof(err)) == 0, "migrate 8 -> 9: %s", err);
	if (!s)
		return;
	CHECK(store_schema_version(s) == 9, "at schema 9");
	snprintf(q, sizeof(q), "SELECT count(*) FROM generations WHERE id = %lld AND think IS NULL", (long long)old);
	CHECK(query_int(p, q) == 1, "the earlier generation: no switch recorded");
	CHECK(store_gen_made(s, old, &g, &sp, NULL, why, sizeof(why)) == 1 &&
	    strstr(why, "has no record of its think switch"), "after the migration: %s", why);
	CHECK(store_gen_add(s, conv, msg, &g, &th, NULL) == 0, "add at schema 9: %s", store_errmsg(s));
	snprintf(q, sizeof(q), "SELECT think FROM generations WHERE id = %lld", (long long)th);
	CHECK(!strcmp(query_text(p, q, t, sizeof(t)), "true"), "recorded: %s", t);
	CHECK(store_gen_made(s, th, &g, &sp, NULL, why, sizeof(why)) == 0 && sp.seed == 1234, "the same switch: %s",
	    why);
	/* history show names the switch, and a KV cache type other than
	 * f16 and exact activations, where recorded. */
	{
		int64_t kv = 0;
		char *shown = NULL, *a, *b, *c;
		size_t len;
		FILE *f;
		g.kv_type = "q8_0";
		g.exact_act = 1;
		g.think = NULL;
		CHECK(store_gen_add(s, conv, msg, &g, &kv, NULL) == 0, "with a q8_0 cache: %s", store_errmsg(s));
		f = open_memstream(&shown, &len);
		CHECK(f && store_history_show(s, conv, f) == 0, "history show: %s", store_errmsg(s));
		if (f)
			fclose(f);
		/* Each generation's line, in order: none, think true, the cache. */
		snprintf(q, sizeof(q), "generation %lld", (long long)old);
		a = shown ? strstr(shown, q) : NULL;
		snprintf(q, sizeof(q), "generation %lld", (long long)th);
		b = shown ? strstr(shown, q) : NULL;
		snprintf(q, sizeof(q), "generation %lld", (long long)kv);
		c = shown ? strstr(shown, q) : NULL;
		CHECK(a && b && c && a < b && b < c, "three generations shown: %s", shown ? shown : "");
		if (a && b && c) {
			*strchr(a, '\n') = *strchr(b, '\n') = *strchr(c, '\n') = 0;
			CHECK(!strstr(a, "think") && !strstr(a, "KV cache") && !strstr(a, "exact"), "none recorded: %s", a);
			CHECK(strstr(b, ", think true") && !strstr(b, "KV cache") && !strstr(b, "exact"), "think: %s", b);
			CHECK(strstr(c, ", KV cache q8_0, exact activations") && !strstr(c, "think"), "the cache: %s", c);
		}
		free(shown);
		g.kv_type = NULL;
		g.exact_act = 0;
	}
	store_close(s);
}

/* The tables whose ids natters hold in memory, and those that refer to
 * them: what the 9 -> 10 rebuild must leave as it found. */
static const char *const id_tables[] = {
	"models", "model_files", "templates", "conversations", "messages", "generations", "ratings",
	"generation_adapters", "preferences",
};

/* Every row of TABLE in the database at PATH, every column by name with
 * its type and value, in rowid order: one string the caller frees (NULL
 * if it cannot be read). */
static char *
table_rows(const char *path, const char *table)
{
	sqlite3 *db;
	sqlite3_stmt *st = NULL;
	char sql[128], *buf = NULL;
	size_t len = 0;
	FILE *f;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		sqlite3_close(db);
		return NULL;
	}
	snprintf(sql, sizeof(sql), "SELECT rowid, * FROM %s ORDER BY rowid", table);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && (f = open_memstream(&buf, &len))) {
		while (sqlite3_step(st) == SQLITE_ROW) {
			for (int i = 0; i < sqlite3_column_count(st); i++)
				fprintf(f, "%s:%d:%s|", sqlite3_column_name(st, i), sqlite3_column_type(st, i),
				    sqlite3_column_type(st, i) == SQLITE_NULL ? "" : (const char *)sqlite3_column_text(st, i));
			fputc('\n', f);
		}
		fclose(f);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return buf;
}

/* TABLE's shape in the database at PATH: its columns (name, type, NOT
 * NULL, default, key), foreign keys (with their actions) and indexes
 * (with their columns), into BUF (N bytes). */
static char *
table_shape(const char *path, const char *table, char *buf, size_t n)
{
	char sql[1400];
	snprintf(sql, sizeof(sql), "SELECT (SELECT group_concat(x, ', ') FROM (SELECT name || ' ' || type || ' ' || "
	    "\"notnull\" || ' ' || ifnull(dflt_value, '-') || ' ' || pk AS x FROM pragma_table_xinfo('%s') ORDER BY cid))"
	    " || ' / ' || ifnull((SELECT group_concat(x, ', ') FROM (SELECT \"from\" || '->' || \"table\" || '(' || "
	    "ifnull(\"to\", '') || ') ' || on_update || ' ' || on_delete AS x FROM pragma_foreign_key_list('%s') "
	    "ORDER BY \"from\")), '') || ' / ' || ifnull((SELECT group_concat(x, ', ') FROM (SELECT il.name || '(' || "
	    "(SELECT group_concat(name) FROM (SELECT name FROM pragma_index_info(il.name) ORDER BY seqno)) || ') ' || "
	    "il.\"unique\" || il.partial AS x FROM pragma_index_list('%s') il ORDER BY il.name)), '')",
	    table, table, table);
	return query_text(path, sql, buf, n);
}

/* Ids are never given twice: the newest conversation deleted (its
 * messages, generations, rating, preference with it), a new one gets
 * ids above all of them, as do its message, generations and
 * preference.  A natter holding an old id (a chat's conversation, the
 * reply /rate names) can then never write into, or rate, another's. */
static void
test_ids_not_reused(void)
{
	char p[512], err[512], q[256];
	struct store *s = NULL;
	struct store_gen g = gen("first answer");
	const struct store_turn fed[] = { { "user", "Ask" } };
	int64_t old_conv, keep, u, msg, g1, g2, pref, conv, u2, msg2, h1, h2, pref2;

	CHECK(open_test_db(p, sizeof(p), "ids", &s, err, sizeof(err)) == 0, "open: %s", err);
	if (!s)
		return;
	g.fed = fed;
	g.n_fed = 1;
	store_conv_new(s, 0, NULL, NULL, NULL, &keep);
	store_msg_add(s, keep, "user", "kept", &u);
	CHECK(store_conv_new(s, 0, NULL, NULL, NULL, &old_conv) == 0 && store_msg_add(s, old_conv, "user", "Ask", &u) == 0 &&
	    store_gen_add(s, old_conv, 0, &g, &g1, &msg) == 0 && store_gen_add(s, old_conv, msg, &g, &g2, NULL) == 0 &&
	    store_rating_set(s, g1, "thumb", 1, NULL) == 0 && store_pref_add(s, g1, g2, STORE_PICK_A, "", &pref) == 0,
	    "the newest conversation: %s", store_errmsg(s));
	CHECK(store_conv_delete(s, old_conv) == 0, "deleted: %s", store_errmsg(s));
	snprintf(q, sizeof(q), "SELECT (SELECT count(*) FROM ratings) + (SELECT count(*) FROM preferences) + "
	    "(SELECT count(*) FROM generations) + (SELECT count(*) FROM messages WHERE conversation_id = %lld)",
	    (long long)old_conv);
	CHECK(query_int(p, q) == 0, "with its messages, generations, rating and preference");

	CHECK(store_conv_new(s, 0, NULL, NULL, NULL, &conv) == 0 && store_msg_add(s, conv, "user", "Ask", &u2) == 0 &&
	    store_gen_add(s, conv, 0, &g, &h1, &msg2) == 0 && store_gen_add(s, conv, msg2, &g, &h2, NULL) == 0 &&
	    store_pref_add(s, h1, h2, STORE_PICK_B, "", &pref2) == 0, "a new conversation: %s", store_errmsg(s));
	CHECK(conv > old_conv, "the new conversation %lld is not the deleted %lld again", (long long)conv,
	    (long long)old_conv);
	CHECK(u2 > msg && msg2 > msg, "its messages %lld, %lld are above the deleted %lld", (long long)u2,
	    (long long)msg2, (long long)msg);
	CHECK(h1 > g2 && h2 > g2, "its generations %lld, %lld are above the deleted %lld", (long long)h1,
	    (long long)h2, (long long)g2);
	CHECK(pref2 > pref, "its preference %lld is above the deleted %lld", (long long)pref2, (long long)pref);
	/* The rating /rate would give the deleted reply finds no row. */
	CHECK(store_rating_set(s, g1, "thumb", 0, NULL) < 0 && query_int(p, "SELECT count(*) FROM ratings") == 0,
	    "rating the deleted reply rates nothing: %s", store_errmsg(s));
	store_close(s);
	remove_db(p);
}

/* 9 -> 10: conversations, messages, generations and preferences rebuilt
 * so that their ids are never given twice.  Every row of every table
 * (ids, contents, ratings, adapters, preferences) and every table's shape
 * stay as they were; the keys and the file check out; search finds
 * what it found; deleting a conversation still takes its rows with it;
 * and the deleted ids are not given again. */
static void
test_migration_ids(void)
{
	char p[512], err[512], q[512], t[256], *rows[sizeof(id_tables) / sizeof(id_tables[0])],
	    shape[sizeof(id_tables) / sizeof(id_tables[0])][2048], after[2048], *out;
	char schema[2048];
	struct store *s = NULL;
	struct store_gen g;
	const struct store_turn fed[] = { { "system", "Be brief." }, { "user", "Name a lighthouse" } };
	const struct store_adapter ad = { "ab12cd", "taught.gguf", 0.5 };
	static const char *const stops[] = { "END" };
	const size_t nt = sizeof(id_tables) / sizeof(id_tables[0]);
	int64_t m, m2, keep, u0, a0, k1, conv, u, msg, g1, g2, g3, pref, edited, newest, nu, nmsg, ng;

	path_of(p, sizeof(p), "v9-ids.db");
	path_of(q, sizeof(q), "v9-model.gguf");
	fake_model(q, "weights of nine");
	CHECK(store_open_version(p, 9, &s, err, sizeof(err)) == 0 && store_schema_version(s) == 9, "v9: %s", err);
	if (!s)
		return;
	CHECK(store_model(s, q, "llama", "F32", &m) == 0 && store_model_remote(s, "http://a", "m", &m2) == 0,
	    "models: %s", store_errmsg(s));
	/* An older conversation, kept, and the newest, deleted later. */
	store_conv_new(s, m, "kept", "chatml", "Be brief.", &keep);
	store_msg_add(s, keep, "user", "Hello there", &u0);
	g = gen("General Kenobi");
	g.model_id = m2;
	CHECK(store_gen_add(s, keep, 0, &g, &k1, &a0) == 0, "kept reply: %s", store_errmsg(s));
	store_rating_set(s, k1, "stars", 4, "fine");
	CHECK(store_conv_new(s, m, "newest", "chatml", "Be brief.", &conv) == 0 &&
	    store_msg_add(s, conv, "user", "Name a lighthouse", &u) == 0, "newest: %s", store_errmsg(s));
	g = gen("Pharos of Alexandria");
	g.model_id = m;
	g.reasoning = "thinking of old ones";
	g.n_reasoning = 3;
	g.template_name = "chatml";
	g.template_source = "{{ messages }}";
	g.fed = fed;
	g.n_fed = 2;
	g.prompt_text = "<|im_start|>user\nName a lighthouse";
	g.prompt_tokens = 9;
	g.kv_type = "q8_0";
	g.exact_act = 1;
	g.stop = stops;
	g.n_stop = 1;
	g.think = "false";
	g.adapters = &ad;
	g.n_adapters = 1;
	CHECK(store_gen_add(s, conv, 0, &g, &g1, &msg) == 0, "gen 1: %s", store_errmsg(s));
	g.content = "Eddystone";
	g.seed = 99;
	CHECK(store_gen_add(s, conv, msg, &g, &g2, NULL) == 0, "gen 2: %s", store_errmsg(s));
	g.content = "Bell Rock";
	g.end = STORE_END_STOPPED;
	CHECK(store_gen_add(s, conv, msg, &g, &g3, NULL) == 0, "gen 3: %s", store_errmsg(s));
	CHECK(store_rating_set(s, g1, "thumb", 1, "classic") == 0 && store_rating_set(s, g2, "thumb", 0, NULL) == 0 &&
	    store_pref_add(s, g1, g2, STORE_PICK_A, "seed 99", &pref) == 0, "ratings, a preference: %s", store_errmsg(s));
	CHECK(store_msg_edit(s, u, "Name a famous lighthouse", &edited) == 0, "an edit (a branch): %s", store_errmsg(s));
	store_close(s);
	snprintf(schema, sizeof(schema), "%s", "");
	query_text(p, "SELECT group_concat(x, ', ') FROM (SELECT type || ' ' || name || ' on ' || tbl_name AS x "
	    "FROM sqlite_master WHERE type IN ('index', 'trigger') ORDER BY name)", schema, sizeof(schema));
	for (size_t i = 0; i < nt; i++) {
		rows[i] = table_rows(p, id_tables[i]);
		table_shape(p, id_tables[i], shape[i], sizeof(shape[i]));
	}
	CHECK(rows[7] && strstr(rows[7], "taught.gguf") && rows[8] && strstr(rows[8], "seed 99") && rows[6] &&
	    strstr(rows[6], "classic"), "schema 9 holds adapters, a preference, ratings");

	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "migrate 9 -> 10: %s", err);
	if (!s)
		goto out;
	CHECK(STORE_SCHEMA_VERSION == 10 && store_schema_version(s) == 10, "at schema 10");
	for (size_t i = 0; i < nt; i++) {
		char *now = table_rows(p, id_tables[i]);
		CHECK(rows[i] && now && !strcmp(rows[i], now), "%s: every row as it was:\n%s\nnow:\n%s", id_tables[i],
		    rows[i] ? rows[i] : "(none)", now ? now : "(none)");
		free(now);
		table_shape(p, id_tables[i], after, sizeof(after));
		CHECK(shape[i][0] && !strcmp(shape[i], after), "%s: the same columns, keys and indexes:\n%s\nnow:\n%s",
		    id_tables[i], shape[i], after);
	}
	query_text(p, "SELECT group_concat(x, ', ') FROM (SELECT type || ' ' || name || ' on ' || tbl_name AS x "
	    "FROM sqlite_master WHERE type IN ('index', 'trigger') ORDER BY name)", after, sizeof(after));
	CHECK(!strcmp(schema, after), "the same indexes and triggers:\n%s\nnow:\n%s", schema, after);
	CHECK(query_int(p, "SELECT count(*) FROM sqlite_master WHERE instr(name, 'new_') OR instr(sql, 'new_')") == 0,
	    "no table, index, trigger or key names the rebuilt tables' temporary names");
	CHECK(query_int(p, "SELECT count(*) FROM pragma_foreign_key_check") == 0, "foreign_key_check: clean");
	CHECK(!strcmp(query_text(p, "PRAGMA integrity_check", t, sizeof(t)), "ok"), "integrity_check: %s", t);
	CHECK(exec_sql(p, "INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')") == 0,
	    "the full-text index matches the messages");
	/* The CHECKs are still there. */
	snprintf(q, sizeof(q), "INSERT INTO messages(conversation_id, seq, role, content, created) VALUES (%lld, 99, "
	    "'robot', 'x', 1)", (long long)conv);
	CHECK(exec_sql(p, q) != 0, "a role that is none: refused");
	snprintf(q, sizeof(q), "INSERT INTO preferences(message_id, gen_a, gen_b, pick, created) VALUES (%lld, %lld, "
	    "%lld, 'a', 1)", (long long)msg, (long long)g1, (long long)g1);
	CHECK(exec_sql(p, q) != 0, "a preference of a reply over itself: refused");
	out = capture_search(s, "lighthouse");
	CHECK(out && strstr(out, "famous [lighthouse]"), "search finds what it found: %s", out ? out : "");
	free(out);
	CHECK(store_msg_add(s, keep, "user", "a walrus appears", &nu) == 0, "a message after: %s", store_errmsg(s));
	out = capture_search(s, "walrus");
	CHECK(out && strstr(out, "[walrus]"), "and finds a new message: %s", out ? out : "");
	free(out);

	/* Deleting the newest conversation still takes its rows with it
	 * (through the rebuilt tables' keys), and nothing of the other. */
	CHECK(store_conv_delete(s, conv) == 0, "delete: %s", store_errmsg(s));
	snprintf(q, sizeof(q), "SELECT (SELECT count(*) FROM messages WHERE conversation_id = %lld) + "
	    "(SELECT count(*) FROM generations WHERE id IN (%lld, %lld, %lld)) + "
	    "(SELECT count(*) FROM ratings WHERE generation_id IN (%lld, %lld)) + "
	    "(SELECT count(*) FROM generation_adapters) + (SELECT count(*) FROM preferences)",
	    (long long)conv, (long long)g1, (long long)g2, (long long)g3, (long long)g1, (long long)g2);
	CHECK(query_int(p, q) == 0, "its messages, generations, ratings, adapters and preference are gone");
	snprintf(q, sizeof(q), "SELECT (SELECT count(*) FROM messages WHERE conversation_id = %lld) || ' ' || "
	    "(SELECT count(*) FROM generations) || ' ' || (SELECT group_concat(kind || value || comment) FROM ratings)",
	    (long long)keep);
	CHECK(!strcmp(query_text(p, q, t, sizeof(t)), "3 1 stars4fine"), "the other conversation's stay: %s", t);
	out = capture_search(s, "lighthouse");
	CHECK(out && !strstr(out, "[lighthouse]"), "search no longer finds its messages: %s", out ? out : "");
	free(out);
	/* ... and its ids are not given again. */
	CHECK(store_conv_new(s, m, NULL, NULL, NULL, &newest) == 0 && store_msg_add(s, newest, "user", "Ask", &nu) == 0 &&
	    store_gen_add(s, newest, 0, &g, &ng, &nmsg) == 0, "a new conversation: %s", store_errmsg(s));
	CHECK(newest > conv && nu > edited && nmsg > edited && ng > g3, "new ids above the deleted: conversation %lld "
	    "(deleted %lld), messages %lld, %lld (%lld), generation %lld (%lld)", (long long)newest, (long long)conv,
	    (long long)nu, (long long)nmsg, (long long)edited, (long long)ng, (long long)g3);
	store_close(s);
out:
	for (size_t i = 0; i < nt; i++)
		free(rows[i]);
}

/* Schema 5: models on remote servers, keyed by endpoint and model id.  A
 * schema-3 database migrates (through 4) with its file models intact; a remote model
 * is one row per pair; its replies show as "MODEL @ ENDPOINT", record an
 * unknown context as NULL, and export's --model finds them. */
static void
test_remote_models(void)
{
	char p[512], err[512], t[256], mf[512], hex[65], *out;
	struct store *s;
	struct store_export_opts o;
	struct store_export_counts n;
	struct store_conv_info ci[4];
	struct store_turn fed[1] = { { "user", "Hi" } };
	struct store_gen g;
	struct sha256 h;
	int64_t r1, r1b, r2, fm, conv, u, msg, gr, gf;
	int nci;
	const char *ep = "http://127.0.0.1:8000/v1";

	path_of(p, sizeof(p), "remote-v3.db");
	path_of(mf, sizeof(mf), "local.gguf");
	fake_model(mf, "local weights");
	CHECK(store_open_version(p, 3, &s, err, sizeof(err)) == 0 && store_schema_version(s) == 3, "v3: %s", err);
	if (!s)
		return;
	CHECK(store_model(s, mf, "llama", "F32", &fm) == 0, "file model at schema 3: %s", store_errmsg(s));
	store_close(s);
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0 && store_schema_version(s) == STORE_SCHEMA_VERSION,
	    "migrate 3 -> %d: %s", STORE_SCHEMA_VERSION, err);
	if (!s)
		return;
	CHECK(!strcmp(query_text(p, "SELECT kind || '|' || COALESCE(endpoint, 'NULL') || '|' || file_name FROM models",
	    t, sizeof(t)), "file|NULL|local.gguf"), "the file's row is kind file: %s", t);
	CHECK(store_model_remote(s, ep, "qwen2.5:0.5b", &r1) == 0 && store_model_remote(s, ep, "qwen2.5:0.5b", &r1b) == 0 &&
	    r1 == r1b && r1 != fm, "one row per endpoint and model (%lld %lld)", (long long)r1, (long long)r1b);
	CHECK(store_model_remote(s, "http://other:8000/v1", "qwen2.5:0.5b", &r2) == 0 && r2 != r1, "another endpoint");
	CHECK(store_model_remote(s, ep, "", &r2) < 0 && strstr(store_errmsg(s), "model id"), "no model id: refused");
	sha256_init(&h);
	sha256_update(&h, "remote\n", 7);
	sha256_update(&h, ep, strlen(ep));
	sha256_update(&h, "\nqwen2.5:0.5b\n", 14);
	sha256_final_hex(&h, hex);
	snprintf(err, sizeof(err), "SELECT kind || '|' || endpoint || '|' || file_name || '|' || sha256 FROM models WHERE id = %lld",
	    (long long)r1);
	snprintf(mf, sizeof(mf), "remote|%s|qwen2.5:0.5b|%s", ep, hex);
	CHECK(!strcmp(query_text(p, err, t, sizeof(t)), mf), "the remote row: %s", t);
	CHECK(exec_sql(p, "INSERT INTO models(sha256, file_name, kind, endpoint, created) VALUES "
	    "('x', 'qwen2.5:0.5b', 'remote', 'http://127.0.0.1:8000/v1', 1)") != 0, "the pair is unique");
	CHECK(exec_sql(p, "INSERT INTO models(sha256, file_name, kind, created) VALUES ('y', 'z', 'cloud', 1)") != 0,
	    "kind is file or remote");

	/* A conversation with a remote reply and a local one. */
	store_conv_new(s, r1, NULL, "the server's (remote)", NULL, &conv);
	store_msg_add(s, conv, "user", "Hi", &u);
	g = gen("remote words");
	g.fed = fed;
	g.n_fed = 1;
	g.model_id = r1;
	g.prompt_text = "{\"model\":\"qwen2.5:0.5b\"}";
	g.n_gen = 2;
	CHECK(store_gen_add(s, conv, 0, &g, &gr, &msg) == 0, "remote reply: %s", store_errmsg(s));
	g = gen("local words");
	g.fed = fed;
	g.n_fed = 1;
	g.model_id = fm;
	g.n_ctx = 128;
	g.n_ctx_used = 20;
	CHECK(store_gen_add(s, conv, msg, &g, &gf, NULL) == 0, "local reply: %s", store_errmsg(s));
	snprintf(err, sizeof(err), "SELECT COALESCE(n_ctx, 'NULL') || ' ' || COALESCE(n_ctx_used, 'NULL') FROM generations "
	    "WHERE id = %lld", (long long)gr);
	CHECK(!strcmp(query_text(p, err, t, sizeof(t)), "NULL NULL"), "an unknown context is NULL: %s", t);
	store_rating_set(s, gr, "thumb", 1, NULL);
	store_rating_set(s, gf, "thumb", 0, NULL);
	CHECK(store_conv_recent(s, ci, 4, &nci) == 0 && nci == 1 && !strcmp(ci[0].model, "qwen2.5:0.5b @ http://127.0.0.1:8000/v1") &&
	    ci[0].n_models == 2 && strstr(ci[0].models, "qwen2.5:0.5b @ http://127.0.0.1:8000/v1, local.gguf"),
	    "the history names the remote model: %s / %s", ci[0].model, ci[0].models);
	out = capture_show(s, conv);
	CHECK(out && strstr(out, "with qwen2.5:0.5b @ http://127.0.0.1:8000/v1 (remote)") && strstr(out, "model local.gguf"),
	    "history show: %s", out ? out : "");
	free(out);

	memset(&o, 0, sizeof(o));
	o.format = STORE_SFT;
	o.min_rating = 1;
	o.include_incomplete = 1;
	{
		static const struct {
			const char *model;
			int lines;
			const char *has;
		} cases[] = {
			{ "remote", 1, "remote words" }, { "qwen2.5", 1, "remote words" }, { "127.0.0.1:8000", 1, "remote words" },
			{ "file", 1, "local words" }, { "local.gguf", 1, "local words" }, { "other-host", 0, NULL },
			/* Text, not a LIKE pattern (% and _ matched every name);
			 * ASCII case ignored, as before. */
			{ "LOCAL.GGUF", 1, "local words" }, { "%", 0, NULL }, { "_", 0, NULL }, { "local_gguf", 0, NULL },
		};
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			o.model = cases[i].model;
			out = export_to(s, &o, &n);
			CHECK(out && n.lines == cases[i].lines && (!cases[i].has || strstr(out, cases[i].has)),
			    "export --model %s: %d lines: %s", cases[i].model, n.lines, out ? out : "");
			free(out);
		}
	}
	store_close(s);
}

/* Reading without writing: a database that does not exist is not created;
 * an older schema opened read-only is upgraded in memory, the file left
 * as it was. */
static void
test_readonly_open(void)
{
	char p[512], err[512], *before, *after, *out;
	struct store *s;
	size_t l1, l2;
	struct stat stt;

	path_of(p, sizeof(p), "absent.db");
	CHECK(store_open(p, STORE_READONLY, &s, err, sizeof(err)) < 0 && strstr(err, "no database here") &&
	    strstr(err, "nothing was created") && stat(p, &stt) < 0, "read-only, absent: %s", err);
	CHECK(store_open(p, STORE_MUST_EXIST, &s, err, sizeof(err)) < 0 && stat(p, &stt) < 0, "must exist: %s", err);

	path_of(p, sizeof(p), "ro2.db");
	CHECK(store_open_version(p, 2, &s, err, sizeof(err)) == 0, "v2: %s", err);
	store_close(s);
	CHECK(exec_sql(p, "INSERT INTO conversations(title, created, updated) VALUES ('kept', 1, 1);"
	    "INSERT INTO messages(conversation_id, seq, role, content, created) VALUES (1, 1, 'user', 'an old question', 1),"
	    "(1, 2, 'assistant', 'an old answer', 1);"
	    "INSERT INTO generations(message_id, content, chosen, state, stop_reason, created) VALUES (2, 'an old answer', 1, "
	    "'complete', 'done', 1); INSERT INTO ratings(generation_id, kind, value, created) VALUES (1, 'thumb', 1, 1);"
	    "PRAGMA wal_checkpoint(TRUNCATE);") == 0, "schema-2 rows");
	before = test_read_file(p, &l1);
	CHECK(store_open(p, STORE_READONLY, &s, err, sizeof(err)) == 0, "read-only open of schema 2: %s", err);
	if (s) {
		struct store_export_opts o = { STORE_SFT, 4, NULL, 0, 0, 1, 0, NULL };
		struct store_export_counts n;
		char op[512];
		int64_t conv;
		CHECK(store_schema_version(s) == STORE_SCHEMA_VERSION, "upgraded in memory");
		out = capture_show(s, 1);
		CHECK(strstr(out, "an old answer"), "history show reads it: %s", out);
		free(out);
		snprintf(op, sizeof(op), "%s/ro.jsonl", dir);
		CHECK(store_export(s, &o, op, &n, err, sizeof(err)) == 0 && n.lines == 1, "export reads it: %s", err);
		CHECK(store_conv_new(s, 0, NULL, NULL, NULL, &conv) < 0 &&
		    strstr(store_errmsg(s), "the database is read-only (natter may not write to it), so the new "
		    "conversation was not saved"), "writing refused, in a sentence: %s", store_errmsg(s));
		store_close(s);
	}
	after = test_read_file(p, &l2);
	CHECK(before && after && l1 == l2 && !memcmp(before, after, l1) && query_int(p, "PRAGMA user_version") == 2,
	    "the file is untouched, still schema 2");
	free(before);
	free(after);
}

/* Two natters creating one new database at once: both succeed, every time. */
static void
test_create_race(void)
{
	char p[512], err[512];
	int both = 0;

	for (int trial = 0; trial < 20; trial++) {
		pid_t kids[2];
		int ok = 1;
		char sh[1800];
		path_of(p, sizeof(p), "race.db");
		snprintf(sh, sizeof(sh), "rm -f '%s' '%s-wal' '%s-shm'", p, p, p);
		if (system(sh) != 0)
			break;
		for (int k = 0; k < 2; k++) {
			kids[k] = fork();
			if (kids[k] == 0) {
				struct store *s;
				if (store_open(p, 0, &s, err, sizeof(err)) < 0) {
					fprintf(stderr, "trial %d, natter %d: %s\n", trial, k, err);
					_exit(3);
				}
				store_close(s);
				_exit(0);
			}
		}
		for (int k = 0; k < 2; k++) {
			int st;
			waitpid(kids[k], &st, 0);
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				ok = 0;
		}
		if (ok && query_int(p, "PRAGMA user_version") == STORE_SCHEMA_VERSION &&
		    query_int(p, "SELECT count(*) FROM sqlite_master WHERE name = 'templates'") == 1)
			both++;
	}
	printf("creation race: both natters succeeded in %d of 20 trials\n", both);
	CHECK(both == 20, "two natters creating one database: both succeeded in %d of 20 trials", both);
}

/* A child writing messages is killed at random moments; every message it
 * reported as stored survives, and the database checks out. */
static void
test_crashes(void)
{
	char p[512], err[512];
	int lost = 0, bad = 0, reported = 0;

	path_of(p, sizeof(p), "crash.db");
	srand(7);
	for (int round = 0; round < 100; round++) {
		int fd[2];
		pid_t pid;
		if (pipe(fd) < 0)
			break;
		pid = fork();
		if (pid == 0) {
			struct store *s;
			int64_t conv, id;
			close(fd[0]);
			if (store_open(p, 0, &s, err, sizeof(err)) < 0)
				_exit(3);
			store_conv_new(s, 0, NULL, NULL, NULL, &conv);
			for (int i = 0;; i++) {
				char msg[64];
				snprintf(msg, sizeof(msg), "round %d message %d", round, i);
				if (store_msg_add(s, conv, i % 2 ? "assistant" : "user", msg, &id) < 0)
					_exit(4);
				if (write(fd[1], &id, sizeof(id)) != sizeof(id))   /* acknowledged */
					_exit(5);
			}
		}
		close(fd[1]);
		int64_t ids[65536];
		ssize_t n;
		int k = 0;
		/* Kill the child after a random number of acknowledged messages
		 * (it keeps writing meanwhile): mid-transaction, mid-commit,
		 * anywhere.  What is awaited is its progress, not time. */
		{
			int want = 1 + rand() % 6;
			while (k < want && read(fd[0], &ids[k], sizeof(ids[k])) == sizeof(ids[k]))
				k++;
		}
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		while (k < 65536 && (n = read(fd[0], &ids[k], sizeof(ids[k]))) == sizeof(ids[k]))
			k++;
		close(fd[0]);
		reported += k;
		for (int i = 0; i < k; i++) {
			char q[128];
			snprintf(q, sizeof(q), "SELECT count(*) FROM messages WHERE id = %lld", (long long)ids[i]);
			if (query_int(p, q) != 1)
				lost++;
		}
	}
	{
		sqlite3 *db;
		sqlite3_stmt *st;
		sqlite3_open(p, &db);
		sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
		if (sqlite3_step(st) != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 0), "ok"))
			bad = 1;
		sqlite3_finalize(st);
		sqlite3_close(db);
	}
	printf("crash test: 100 kills, %d acknowledged messages, %d lost, integrity %s\n", reported, lost, bad ? "BAD" : "ok");
	CHECK(reported > 100, "the child stored messages (%d)", reported);
	CHECK(lost == 0, "%d acknowledged messages lost", lost);
	CHECK(!bad, "integrity_check after the kills");
}

static void
test_concurrency(void)
{
	char p[512], err[512];
	pid_t kids[2];
	int ok = 1;

	path_of(p, sizeof(p), "two.db");
	{
		struct store *s;
		if (store_open(p, 0, &s, err, sizeof(err)) == 0)
			store_close(s);
	}
	for (int k = 0; k < 2; k++) {
		kids[k] = fork();
		if (kids[k] == 0) {
			struct store *s;
			int64_t conv, id;
			if (store_open(p, 0, &s, err, sizeof(err)) < 0)
				_exit(3);
			if (store_conv_new(s, 0, NULL, NULL, NULL, &conv) < 0)
				_exit(4);
			for (int i = 0; i < 150; i++) {
				struct store_gen g = gen("reply");
				if (store_msg_add(s, conv, "user", "hello from a writer", &id) < 0 ||
				    store_gen_add(s, conv, 0, &g, &id, NULL) < 0) {
					fprintf(stderr, "writer %d: %s\n", k, store_errmsg(s));
					_exit(5);
				}
			}
			store_close(s);
			_exit(0);
		}
	}
	for (int k = 0; k < 2; k++) {
		int st;
		waitpid(kids[k], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			ok = 0;
	}
	CHECK(ok, "both writers succeeded");
	CHECK(query_int(p, "SELECT count(*) FROM messages") == 600, "all 600 messages of the two writers (%d)",
	    query_int(p, "SELECT count(*) FROM messages"));
}

/* Every sampler setting (sampler_settings) has a column of its name in
 * generations: a setting added to the sampler is recorded, or this
 * fails. */
static void
test_settings_columns(void)
{
	char p[512], err[512], q[256];
	struct store *s;

	path_of(p, sizeof(p), "columns.db");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "open: %s", err);
	if (!s)
		return;
	store_close(s);
	for (int i = 0; i < sampler_n_settings; i++) {
		snprintf(q, sizeof(q), "SELECT count(*) FROM pragma_table_info('generations') WHERE name = '%s'",
		    sampler_settings[i].name);
		CHECK(query_int(p, q) == 1, "generations has no column %s", sampler_settings[i].name);
	}
}

/* store_on_upgrade: what is said before an older database is upgraded. */
static char upgrade_said[4][4600];
static int n_upgrade_said;

static void
on_upgrade(void *ctx, const char *msg)
{
	(void)ctx;
	if (n_upgrade_said < 4)
		snprintf(upgrade_said[n_upgrade_said], sizeof(upgrade_said[0]), "%s", msg);
	n_upgrade_said++;
}

static void
test_upgrade_notice(void)
{
	char p[512], err[512], want[700];
	struct store *s;

	store_on_upgrade(on_upgrade, NULL);
	/* A new database: made at once, nothing said. */
	path_of(p, sizeof(p), "notice-new.db");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "new: %s", err);
	store_close(s);
	CHECK(n_upgrade_said == 0, "a new database is not called an upgrade: %s", upgrade_said[0]);
	/* One at schema 9: opened for reading, a copy is upgraded (said as
	 * such), the file stays at 9; opened for writing, it is upgraded
	 * (said), once. */
	path_of(p, sizeof(p), "notice-9.db");
	CHECK(store_open_version(p, 9, &s, err, sizeof(err)) == 0, "v9: %s", err);
	store_close(s);
	CHECK(n_upgrade_said == 0, "creating at schema 9 is not an upgrade: %s", upgrade_said[0]);
	CHECK(store_open(p, STORE_READONLY, &s, err, sizeof(err)) == 0, "read-only open of schema 9: %s", err);
	store_close(s);
	snprintf(want, sizeof(want), "%s: written by an older natter (schema 9); reading it through a copy upgraded "
	    "in memory to schema %d (the file stays as it is; every read does this until natter opens it for "
	    "writing)", p, STORE_SCHEMA_VERSION);
	CHECK(n_upgrade_said == 1 && strstr(upgrade_said[0], want), "read-only upgrade said: %d '%s'", n_upgrade_said,
	    upgrade_said[0]);
	CHECK(query_int(p, "PRAGMA user_version") == 9, "the file read stays at schema 9");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "open of schema 9: %s", err);
	store_close(s);
	snprintf(want, sizeof(want), "%s: written by an older natter (schema 9); upgrading it to schema %d (once;", p,
	    STORE_SCHEMA_VERSION);
	CHECK(n_upgrade_said == 2 && strstr(upgrade_said[1], want), "upgrade said: %d '%s'", n_upgrade_said,
	    upgrade_said[1]);
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "reopen: %s", err);
	store_close(s);
	CHECK(n_upgrade_said == 2, "an upgraded database is not upgraded again: %s", upgrade_said[2]);
	store_on_upgrade(NULL, NULL);
}

int
main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/natter-test-store-%ld", (long)getpid());
	if (mkdir(dir, 0700) < 0) {
		perror(dir);
		return 99;
	}
	test_sha256();
	test_schema_and_history();
	test_rating_comment();
	test_file_gone();
	test_model_rewritten();
	test_end_words();
	test_migration_and_refusals();
	test_upgrade_notice();
	test_settings_columns();
	test_migration_from_2();
	test_migration_from_3();
	test_chatlog_reasoning();
	test_chatlog_unsaved_reply();
	test_parent_loop();
	test_tree();
	test_chatlog();
	test_chatlog_parents();
	test_chatlog_model_later();
	test_chatlog_system_later();
	test_chatlog_deleted();
	test_chatlog_uncounted();
	test_chatlog_settings();
	test_gen_made();
	test_migration_think();
	test_export_truth();
	test_export_pairs();
	test_export_as_stored();
	test_export_bare_prompt();
	test_export_damaged();
	test_export_verdicts();
	test_export_many();
	test_adapters_and_preferences();
	test_ids_not_reused();
	test_migration_ids();
	test_remote_models();
	test_readonly_open();
	test_create_race();
	test_crashes();
	test_concurrency();
	{
		char cmd[512];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	return test_done("test-store");
}
