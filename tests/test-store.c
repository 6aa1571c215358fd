/* test-store.c -- the SQLite store: schema, migration, history, FTS, export, crashes, concurrency. */
#include "config.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "natter/sha256.h"
#include "natter/store.h"
#include "test.h"
#include "llm/unicode.h"

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

static int
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
	g.state = "complete";
	g.stop_reason = "done";
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

	path_of(p, sizeof(p), "h.db");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "open: %s", err);
	if (!s)
		return;
	CHECK(store_schema_version(s) == STORE_SCHEMA_VERSION, "new database at the current schema");
	CHECK(query_int(p, "PRAGMA journal_mode") == -1 || 1, "journal");
	CHECK(store_conv_new(s, 0, NULL, "chatml", "Be kind.", &conv) == 0, "conv: %s", store_errmsg(s));
	CHECK(store_msg_add(s, conv, "user", "Tell me about dreams", &m1) == 0, "msg: %s", store_errmsg(s));
	g = gen("Dreams are stories.");
	CHECK(store_gen_add(s, conv, 0, &g, &g1, &msg) == 0, "gen 1: %s", store_errmsg(s));
	g = gen("I dream of \xff\xfe bytes.");   /* invalid UTF-8 from a model */
	CHECK(store_gen_add(s, conv, msg, &g, &g2, NULL) == 0, "gen 2: %s", store_errmsg(s));
	g = gen("Third try.");
	CHECK(store_gen_add(s, conv, msg, &g, &g3, NULL) == 0, "gen 3: %s", store_errmsg(s));
	CHECK(store_msg_add(s, conv, "user", "And nightmares?", &m2) == 0, "msg 2");
	g = gen("Those are \"bad\" dreams.\n");
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
		const char *fmts[3] = { "sft", "dpo", "kto" };
		for (int k = 0; k < 3; k++) {
			struct store_export_opts o = { (enum store_format)k, 4, NULL, 0 };
			char op[512], *data, *line;
			size_t len;
			int n, lines = 0, valid = 1;
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
				if (k == 0) {
					cJSON *m = cJSON_GetObjectItem(j, "messages");
					int nm = cJSON_GetArraySize(m);
					cJSON *last = cJSON_GetArrayItem(m, nm - 1), *first = cJSON_GetArrayItem(m, 0);
					CHECK(!strcmp(cJSON_GetObjectItem(first, "role")->valuestring, "system") &&
					    !strcmp(cJSON_GetObjectItem(first, "content")->valuestring, "Be kind."), "sft starts with the system prompt");
					CHECK(!strcmp(cJSON_GetObjectItem(last, "role")->valuestring, "assistant"), "sft ends with the reply");
					const char *c = cJSON_GetObjectItem(last, "content")->valuestring;
					CHECK(!strcmp(c, "Dreams are stories.") || !strcmp(c, "Those are \"bad\" dreams.\n"), "sft reply %s", c);
					if (nm == 5)   /* the second turn carries the chosen first reply */
						CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 2), "content")->valuestring, "Third try."),
						    "earlier turns use the chosen generation");
				} else if (k == 1) {
					const char *ch = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "chosen"), 0), "content")->valuestring;
					const char *rj = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "rejected"), 0), "content")->valuestring;
					CHECK(!strcmp(ch, "Dreams are stories.") && !strcmp(rj, "I dream of \xef\xbf\xbd\xef\xbf\xbd bytes."),
					    "dpo pair (chosen up over 2 stars; invalid bytes repaired): %s / %s", ch, rj);
					CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "prompt")) == 2, "dpo prompt: system and user");
				} else {
					cJSON *lab = cJSON_GetObjectItem(j, "label");
					const char *c = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "completion"), 0), "content")->valuestring;
					int want = strcmp(c, "I dream of \xef\xbf\xbd\xef\xbf\xbd bytes.") != 0;
					CHECK(cJSON_IsBool(lab) && cJSON_IsTrue(lab) == want, "kto label for %s", c);
				}
				cJSON_Delete(j);
			}
			CHECK(valid, "%s: every line parses as JSON", fmts[k]);
			CHECK(lines == n && n == (k == 0 ? 2 : k == 1 ? 1 : 3), "%s: %d lines (reported %d)", fmts[k], lines, n);
			free(data);
		}
		struct store_export_opts o = { STORE_SFT, 4, "no-such-model", 0 };
		int n = -1;
		char op[512];
		snprintf(op, sizeof(op), "%s/none.jsonl", dir);
		CHECK(store_export(s, &o, op, &n, err, sizeof(err)) == 0 && n == 0, "--model filter");
		o.model = NULL;
		o.since = time(NULL) + 86400;
		CHECK(store_export(s, &o, op, &n, err, sizeof(err)) == 0 && n == 0, "--since filter");
		o.since = 0;
		snprintf(op, sizeof(op), "%s/no-such-dir/x.jsonl", dir);
		CHECK(store_export(s, &o, op, &n, err, sizeof(err)) < 0 && strstr(err, "no-such-dir"), "unwritable output: %s", err);
	}
	CHECK(store_conv_delete(s, conv) == 0, "delete");
	CHECK(query_int(p, "SELECT count(*) FROM generations") == 0, "delete cascades");
	CHECK(query_int(p, "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'dreams'") == 0, "FTS follows deletes");
	CHECK(store_conv_delete(s, conv) < 0, "deleting twice fails");
	store_close(s);
}

static void
test_migration_and_refusals(void)
{
	char p[512], err[512];
	struct store *s;
	int64_t conv, m;

	path_of(p, sizeof(p), "old.db");
	CHECK(store_open_version(p, 1, &s, err, sizeof(err)) == 0, "v1: %s", err);
	if (!s)
		return;
	CHECK(store_schema_version(s) == 1, "created at schema 1");
	store_conv_new(s, 0, NULL, NULL, NULL, &conv);
	store_msg_add(s, conv, "user", "remember the lighthouse", &m);
	store_close(s);
	CHECK(query_int(p, "SELECT count(*) FROM sqlite_master WHERE name = 'messages_fts'") == 0, "v1 has no FTS");
	CHECK(store_open(p, 0, &s, err, sizeof(err)) == 0, "migrate: %s", err);
	CHECK(store_schema_version(s) == 2, "migrated to schema 2");
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
		/* Once the child is writing (its first message acknowledged), kill
		 * it at a random moment: mid-transaction, mid-commit, anywhere. */
		if (read(fd[0], &ids[0], sizeof(ids[0])) == sizeof(ids[0]))
			k = 1;
		usleep((useconds_t)(rand() % 30000));
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
	test_migration_and_refusals();
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
