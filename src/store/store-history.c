/* store-history.c -- reading the store: history list, show (the active branch), search, resuming. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "natter/store.h"
#include "natter/text.h"
#include "store/store-impl.h"

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

/* Messages on the active branch of CONV; -1 on error. */
static int
path_len(struct store *s, int64_t conv)
{
	sqlite3_stmt *st = store_prepare(s, STORE_PATH_CTE "SELECT count(*) FROM path");
	int n = -1;
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, conv);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	else
		store_sqlfail(s, "the conversation");
	sqlite3_finalize(st);
	return n;
}

/* SRC into DST (CAP bytes, at least 1), cut where it must be at a
 * character's end, never inside one (a title is 60 characters, a model's
 * file name any length); bytes that are not UTF-8 become U+FFFD.
 * Returns the bytes written before the terminating NUL. */
static size_t
copy_text(char *dst, size_t cap, const char *src)
{
	size_t w = text_repair_utf8(src, strlen(src), dst, cap - 1);
	dst[w] = 0;
	return w;
}

/* The file names of the models that replied in CONV, in order of first
 * use, ", "-separated into BUF; *COUNT how many.  A conversation with no
 * recorded generation model shows the model it was started with
 * (STARTED, may be ""). */
static int
conv_models(struct store *s, int64_t conv, const char *started, char *buf, size_t n, int *count)
{
	sqlite3_stmt *st = store_prepare(s, "SELECT " STORE_MODEL_LABEL("md") " FROM generations g JOIN messages m "
	    "ON m.id = g.message_id JOIN models md ON md.id = g.model_id WHERE m.conversation_id = ? "
	    "GROUP BY md.id ORDER BY min(g.id)");
	size_t len = 0;
	int rc;

	*count = 0;
	buf[0] = 0;
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, conv);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		/* Past a full buffer the names are counted, not cut together. */
		if (*count == 0 || len + 2 < n) {
			if (*count)
				len += (size_t)snprintf(buf + len, n - len, ", ");
			len += copy_text(buf + len, n - len, col_text(st, 0));
		}
		(*count)++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return store_sqlfail(s, "the list");
	if (*count == 0 && started && started[0]) {
		copy_text(buf, n, started);
		*count = 1;
	}
	return 0;
}

/* The conversations, newest first, as conv_row reads them. */
#define CONV_ROW_SQL "SELECT c.id, c.updated, COALESCE(" STORE_MODEL_LABEL("md") ", ''), c.title " \
	"FROM conversations c LEFT JOIN models md ON md.id = c.model_id ORDER BY c.updated DESC, c.id DESC"

/* The row of CONV_ROW_SQL at ST into CI, with its length and models. */
static int
conv_row(struct store *s, sqlite3_stmt *st, struct store_conv_info *ci)
{
	memset(ci, 0, sizeof(*ci));
	ci->id = sqlite3_column_int64(st, 0);
	ci->updated = sqlite3_column_int64(st, 1);
	copy_text(ci->model, sizeof(ci->model), col_text(st, 2));
	copy_text(ci->title, sizeof(ci->title), col_text(st, 3));
	if ((ci->n_msgs = path_len(s, ci->id)) < 0 ||
	    conv_models(s, ci->id, ci->model, ci->models, sizeof(ci->models), &ci->n_models) < 0)
		return -1;
	return 0;
}

int
store_history_list(struct store *s, FILE *out)
{
	struct store_conv_info *ci = NULL;
	int n = 0, cap = 0, width = 5, rc;
	sqlite3_stmt *st = store_prepare(s, CONV_ROW_SQL);

	if (!st)
		return -1;
	/* Every row first: the models column is as wide as its widest entry. */
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_conv_info *x;
		int w;
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			x = realloc(ci, cap * sizeof(*ci));
			if (!x) {
				rc = SQLITE_NOMEM;
				break;
			}
			ci = x;
		}
		x = &ci[n];
		if (conv_row(s, st, x) < 0) {
			rc = SQLITE_ERROR;
			break;
		}
		n++;
		w = (int)strlen(x->models);
		if (w > width)
			width = w;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(ci);
		return rc == SQLITE_NOMEM ? store_seterr(s, "out of memory") : rc == SQLITE_ERROR ? -1 :
		    store_sqlfail(s, "the list");
	}
	fprintf(out, "%5s  %-16s  %4s  %-*s  %s\n", "ID", "UPDATED", "MSGS", width, "MODEL", "TITLE");
	for (int i = 0; i < n; i++) {
		char tb[32];
		fmt_time(ci[i].updated, tb, sizeof(tb));
		fprintf(out, "%5lld  %-16s  %4d  %-*s  %s\n", (long long)ci[i].id, tb, ci[i].n_msgs, width, ci[i].models,
		    ci[i].title);
	}
	if (n == 0)
		fprintf(out, "(no conversations yet)\n");
	free(ci);
	return 0;
}

/* Prints a reply's reasoning (N tokens; 0: not known), marked off from
 * the answer that follows: a header, then each line after "| ". */
static void
print_reasoning(FILE *out, const char *indent, const char *text, int n)
{
	const char *p = text;

	if (n > 0)
		fprintf(out, "%s[reasoning, %d token%s]\n", indent, n, n == 1 ? "" : "s");
	else
		fprintf(out, "%s[reasoning]\n", indent);
	while (*p) {
		size_t l = strcspn(p, "\n");
		fprintf(out, "%s| %.*s\n", indent, (int)l, p);
		p += l + (p[l] == '\n');
	}
	fprintf(out, "%s[answer]\n", indent);
}

/* " NAME VALUE" of column COL, an integer (INTEGER) or a real; NULL, a
 * setting not known (not sent to a server, changed while the reply was
 * written, or from before it was recorded), is "?". */
static void
put_setting(FILE *out, const char *name, sqlite3_stmt *st, int col, int integer)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		fprintf(out, " %s ?", name);
	else if (integer)
		fprintf(out, " %s %d", name, sqlite3_column_int(st, col));
	else
		fprintf(out, " %s %.2f", name, sqlite3_column_double(st, col));
}

#define SHOW_GENS(STOP, NUMERIC, THINK) "SELECT g.id, g.chosen, COALESCE(g.end_reason, g.state), g.temp, " \
	"g.top_p, g.top_k, g.min_p, g.seed, g.n_gen, g.gen_tps, g.ttft_ms, r.kind, r.value, r.comment, " \
	"g.content, COALESCE(" STORE_MODEL_LABEL("md") ", ''), g.prompt_tokens, g.n_dropped, g.reasoning, " \
	"COALESCE(g.n_reasoning, 0), " STOP ", " NUMERIC ", " THINK " FROM generations g " \
	"LEFT JOIN ratings r ON r.generation_id = g.id LEFT JOIN models md ON md.id = g.model_id " \
	"WHERE g.message_id = ? ORDER BY g.id"

/* The query for a database at schema V (one kept older, opened to read:
 * the columns it has not are NULL): stop strings from 8, the KV cache
 * type and exact activations from 7, the think switch from 9. */
static const char *
show_gens_sql(int v)
{
	static const char *const sql[] = {
		SHOW_GENS("NULL", "NULL, NULL", "NULL"),
		SHOW_GENS("NULL", "g.kv_type, g.exact_act", "NULL"),
		SHOW_GENS("g.stop", "g.kv_type, g.exact_act", "NULL"),
		SHOW_GENS("g.stop", "g.kv_type, g.exact_act", "g.think"),
	};
	return sql[v >= 9 ? 3 : v >= 8 ? 2 : v >= 7 ? 1 : 0];
}

/* Prints the generations (alternatives) of assistant message MSG; a model
 * other than CONV_MODEL is named.  Returns 0 or -1. */
static int
show_gens(struct store *s, int64_t msg, const char *conv_model, FILE *out)
{
	sqlite3_stmt *gs = store_prepare(s, show_gens_sql(store_schema_version(s)));
	int rc;
	if (!gs)
		return -1;
	sqlite3_bind_int64(gs, 1, msg);
	while ((rc = sqlite3_step(gs)) == SQLITE_ROW) {
		fprintf(out, "  generation %lld%s: %s,", (long long)sqlite3_column_int64(gs, 0),
		    sqlite3_column_int(gs, 1) ? " (chosen)" : "", col_text(gs, 2));
		put_setting(out, "temp", gs, 3, 0);
		put_setting(out, "top_p", gs, 4, 0);
		put_setting(out, "top_k", gs, 5, 1);
		put_setting(out, "min_p", gs, 6, 0);
		/* The seed is stored as its 64 bits, signed. */
		fprintf(out, " seed %llu, ", (unsigned long long)sqlite3_column_int64(gs, 7));
		/* A server that counted nothing: the speed is of the pieces it sent. */
		if (sqlite3_column_type(gs, 8) == SQLITE_NULL)
			fprintf(out, "tokens not counted, %.1f pieces/s", sqlite3_column_double(gs, 9));
		else
			fprintf(out, "%d tokens, %.1f tok/s", sqlite3_column_int(gs, 8), sqlite3_column_double(gs, 9));
		fprintf(out, ", first token %.0f ms", sqlite3_column_double(gs, 10));
		if (*col_text(gs, 15) && strcmp(col_text(gs, 15), conv_model))
			fprintf(out, ", model %s", col_text(gs, 15));
		/* The stop strings as stored (a JSON array), when there were any. */
		if (sqlite3_column_type(gs, 20) != SQLITE_NULL && strcmp(col_text(gs, 20), "[]"))
			fprintf(out, ", stop %s", col_text(gs, 20));
		/* What changes a local model's logits beyond the defaults, and the
		 * think switch the prompt was rendered with. */
		if (sqlite3_column_type(gs, 21) != SQLITE_NULL && strcmp(col_text(gs, 21), "f16"))
			fprintf(out, ", KV cache %s", col_text(gs, 21));
		if (sqlite3_column_int(gs, 22))
			fprintf(out, ", exact activations");
		if (sqlite3_column_type(gs, 23) != SQLITE_NULL)
			fprintf(out, ", think %s", col_text(gs, 23));
		if (sqlite3_column_type(gs, 16) != SQLITE_NULL) {
			fprintf(out, ", fed %d tokens", sqlite3_column_int(gs, 16));
			if (sqlite3_column_int(gs, 17) > 0)
				fprintf(out, " (%d earlier messages dropped)", sqlite3_column_int(gs, 17));
		}
		if (sqlite3_column_type(gs, 11) != SQLITE_NULL) {
			if (!strcmp(col_text(gs, 11), "thumb"))
				fprintf(out, ", rated %s", sqlite3_column_int(gs, 12) ? "up" : "down");
			else
				fprintf(out, ", rated %d/5", sqlite3_column_int(gs, 12));
			if (*col_text(gs, 13))
				fprintf(out, " (\"%s\")", col_text(gs, 13));
		}
		fputc('\n', out);
		if (!sqlite3_column_int(gs, 1)) {
			if (sqlite3_column_type(gs, 18) != SQLITE_NULL)
				print_reasoning(out, "    ", col_text(gs, 18), sqlite3_column_int(gs, 19));
			fprintf(out, "    %s\n", col_text(gs, 14));
		}
	}
	sqlite3_finalize(gs);
	return rc == SQLITE_DONE ? 0 : store_sqlfail(s, "the conversation");
}

int
store_history_show(struct store *s, int64_t conv_id, FILE *out)
{
	sqlite3_stmt *st = store_prepare(s, "SELECT c.title, COALESCE(" STORE_MODEL_LABEL("md") ", ''), "
	    "CASE md.kind WHEN 'remote' THEN 'remote' ELSE 'sha256 ' || substr(md.sha256, 1, 12) END, "
	    "COALESCE(c.chat_template, ''), COALESCE(c.system_prompt, ''), c.created FROM conversations c "
	    "LEFT JOIN models md ON md.id = c.model_id WHERE c.id = ?");
	sqlite3_stmt *ms;
	char tb[32], *conv_model, *system;
	int rc, k = 0;

	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, conv_id);
	if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		/* A busy or damaged database is not a missing conversation. */
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			return store_seterr(s, "%s: reading conversation %lld: %s", s->path, (long long)conv_id,
			    sqlite3_errmsg(s->db));
		return store_seterr(s, "there is no conversation %lld", (long long)conv_id);
	}
	fmt_time(sqlite3_column_int64(st, 5), tb, sizeof(tb));
	fprintf(out, "conversation %lld: %s\nstarted %s with %s (%s), template %s\n", (long long)conv_id,
	    col_text(st, 0), tb, col_text(st, 1), col_text(st, 2), col_text(st, 3));
	conv_model = strdup(col_text(st, 1));
	/* The system prompt the first generation was given (when recorded),
	 * else the conversation's. */
	system = strdup(col_text(st, 4));
	sqlite3_finalize(st);
	if (!conv_model || !system) {
		free(conv_model);
		free(system);
		return store_seterr(s, "out of memory");
	}
	/* The active branch, first message first; the system prompt the reply
	 * to each message was given, told at the message that prompted the
	 * reply (NULL when not recorded); how many versions the message has. */
	ms = store_prepare(s, STORE_PATH_CTE ", rows AS (SELECT m.id, m.role, m.content, path.depth, (SELECT g.system_prompt "
	    "FROM generations g WHERE g.message_id = m.id AND g.chosen) AS sys, (SELECT count(*) FROM messages o WHERE "
	    "o.conversation_id = ?1 AND o.parent_id IS m.parent_id AND o.role = m.role) AS nv, (SELECT count(*) FROM "
	    "messages o WHERE o.conversation_id = ?1 AND o.parent_id IS m.parent_id AND o.role = m.role AND o.id <= m.id) "
	    "AS v, (SELECT g.reasoning FROM generations g WHERE g.message_id = m.id AND g.chosen) AS reasoning, "
	    "(SELECT COALESCE(g.n_reasoning, 0) FROM generations g WHERE g.message_id = m.id AND g.chosen) AS nr "
	    "FROM path JOIN messages m ON m.id = path.id) SELECT id, role, content, CASE WHEN role = 'user' THEN "
	    "lead(sys) OVER w WHEN lag(role) OVER w IS NOT 'user' THEN sys END, nv, v, reasoning, nr FROM rows "
	    "WINDOW w AS (ORDER BY depth DESC) ORDER BY depth DESC");
	if (!ms) {
		free(conv_model);
		free(system);
		return -1;
	}
	sqlite3_bind_int64(ms, 1, conv_id);
	{
		/* The first reply's system prompt, when recorded, is the one the
		 * conversation started with. */
		sqlite3_stmt *fs = store_prepare(s, STORE_PATH_CTE "SELECT g.system_prompt FROM path JOIN generations g "
		    "ON g.message_id = path.id AND g.chosen WHERE g.system_prompt IS NOT NULL ORDER BY path.depth DESC LIMIT 1");
		if (fs) {
			sqlite3_bind_int64(fs, 1, conv_id);
			if (sqlite3_step(fs) == SQLITE_ROW) {
				free(system);
				system = strdup(col_text(fs, 0));
			}
			sqlite3_finalize(fs);
		}
	}
	if (system && *system)
		fprintf(out, "system: %s\n", system);
	while ((rc = sqlite3_step(ms)) == SQLITE_ROW) {
		const char *role = col_text(ms, 1);
		k++;
		if (sqlite3_column_type(ms, 3) != SQLITE_NULL && system && strcmp(col_text(ms, 3), system)) {
			free(system);
			system = strdup(col_text(ms, 3));
			if (system && *system)
				fprintf(out, "\n-- from here on the system prompt was: %s\n", system);
			else
				fprintf(out, "\n-- from here on there was no system prompt\n");
		}
		if (sqlite3_column_int(ms, 4) > 1)
			fprintf(out, "\n[%d] %s (version %d of %d):\n", k, role, sqlite3_column_int(ms, 5),
			    sqlite3_column_int(ms, 4));
		else
			fprintf(out, "\n[%d] %s:\n", k, role);
		if (sqlite3_column_type(ms, 6) != SQLITE_NULL)
			print_reasoning(out, "", col_text(ms, 6), sqlite3_column_int(ms, 7));
		fprintf(out, "%s\n", col_text(ms, 2));
		if (!strcmp(role, "assistant") && show_gens(s, sqlite3_column_int64(ms, 0), conv_model, out) < 0) {
			rc = SQLITE_ERROR;
			break;
		}
	}
	sqlite3_finalize(ms);
	free(conv_model);
	free(system);
	if (rc == SQLITE_ERROR)
		return -1;
	return rc == SQLITE_DONE ? 0 : store_sqlfail(s, "the conversation");
}

/* Characters (UTF-8 code points) in S. */
static size_t
n_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

/* Case-insensitive (ASCII) search for NEEDLE in HAY. */
static const char *
find_ci(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	for (; *hay; hay++) {
		size_t i = 0;
		while (i < n && hay[i]) {
			unsigned char a = (unsigned char)hay[i], b = (unsigned char)needle[i];
			if (a >= 'A' && a <= 'Z')
				a += 32;
			if (b >= 'A' && b <= 'Z')
				b += 32;
			if (a != b)
				break;
			i++;
		}
		if (i == n)
			return hay;
	}
	return NULL;
}

/* A short excerpt of TEXT around the first match of Q, with the match in
 * brackets, as FTS5's snippet() marks it. */
static void
print_excerpt(FILE *out, const char *text, const char *q)
{
	const char *hit = find_ci(text, q), *from, *to;
	size_t ql = strlen(q);
	if (!hit) {
		fprintf(out, "%.60s", text);
		return;
	}
	from = hit;
	for (int k = 0; from > text && k < 30; k++)
		from--;
	while (from > text && ((unsigned char)*from & 0xC0) == 0x80)
		from--;
	to = hit + ql;
	for (int k = 0; *to && k < 30; k++)
		to++;
	while (*to && ((unsigned char)*to & 0xC0) == 0x80)
		to++;
	fprintf(out, "%s%.*s[%.*s]%.*s%s", from > text ? "..." : "", (int)(hit - from), from, (int)ql, hit,
	    (int)(to - hit - ql), hit + ql, *to ? "..." : "");
}

int
store_history_search(struct store *s, const char *query, FILE *out)
{
	sqlite3_stmt *st;
	char *q, *term;
	size_t n = strlen(query), k = 0;
	int rc, hits = 0, short_q;

	/* The words as typed, less surrounding blanks and a trailing '*': the
	 * index matches any substring, so "whisp*" is "whisp". */
	term = malloc(n + 1);
	q = malloc(2 * n + 3);
	if (!term || !q) {
		free(term);
		free(q);
		return store_seterr(s, "out of memory");
	}
	while (*query == ' ' || *query == '\t')
		query++;
	snprintf(term, n + 1, "%s", query);
	n = strlen(term);
	while (n > 0 && (term[n - 1] == ' ' || term[n - 1] == '\t' || term[n - 1] == '*'))
		term[--n] = 0;
	if (n == 0) {
		free(term);
		free(q);
		fprintf(out, "no messages match\n");
		return 0;
	}
	/* Trigrams need three characters; shorter words are looked for by a
	 * scan of every message. */
	short_q = n_chars(term) < 3;
	if (short_q) {
		st = store_prepare(s, "SELECT conversation_id, seq, role, content FROM messages "
		    "WHERE instr(lower(content), lower(?)) > 0 ORDER BY conversation_id DESC, seq");
		if (st)
			sqlite3_bind_text(st, 1, term, -1, SQLITE_STATIC);
	} else {
		/* The user's words as one phrase: FTS5 syntax in them cannot misfire. */
		q[k++] = '"';
		for (size_t i = 0; i < n; i++) {
			if (term[i] == '"')
				q[k++] = '"';
			q[k++] = term[i];
		}
		q[k++] = '"';
		q[k] = 0;
		st = store_prepare(s, "SELECT m.conversation_id, m.seq, m.role, snippet(messages_fts, 0, '[', ']', '...', 64) "
		    "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid WHERE messages_fts MATCH ? "
		    "ORDER BY m.conversation_id DESC, m.seq");
		if (st)
			sqlite3_bind_text(st, 1, q, -1, SQLITE_STATIC);
	}
	if (!st) {
		free(term);
		free(q);
		return -1;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		fprintf(out, "conversation %lld [%d] %s: ", (long long)sqlite3_column_int64(st, 0),
		    sqlite3_column_int(st, 1), col_text(st, 2));
		if (short_q)
			print_excerpt(out, col_text(st, 3), term);
		else
			fputs(col_text(st, 3), out);
		fputc('\n', out);
		hits++;
	}
	sqlite3_finalize(st);
	free(term);
	free(q);
	if (rc != SQLITE_DONE)
		return store_sqlfail(s, "the search");
	if (hits == 0)
		fprintf(out, "no messages match\n");
	return 0;
}

int
store_conv_recent(struct store *s, struct store_conv_info *out, int max, int *n)
{
	sqlite3_stmt *st = store_prepare(s, CONV_ROW_SQL " LIMIT ?");
	int rc;
	*n = 0;
	if (!st)
		return -1;
	sqlite3_bind_int(st, 1, max);
	while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (conv_row(s, st, &out[*n]) < 0) {
			sqlite3_finalize(st);
			return -1;
		}
		(*n)++;
	}
	if (*n == max)
		rc = SQLITE_DONE;
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : store_sqlfail(s, "the list");
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
	if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		/* A busy or damaged database is not a missing conversation. */
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			return store_seterr(s, "%s: reading conversation %lld: %s", s->path, (long long)conv_id,
			    sqlite3_errmsg(s->db));
		return store_seterr(s, "there is no conversation %lld", (long long)conv_id);
	}
	if (sqlite3_column_type(st, 0) != SQLITE_NULL && !(*system = strdup(col_text(st, 0)))) {
		sqlite3_finalize(st);
		return store_seterr(s, "out of memory");
	}
	sqlite3_finalize(st);
	st = store_prepare(s, STORE_PATH_CTE "SELECT m.id, m.role, m.content, COALESCE((SELECT g.id FROM generations g "
	    "WHERE g.message_id = m.id AND g.chosen), 0) FROM path JOIN messages m ON m.id = path.id "
	    "ORDER BY path.depth DESC");
	if (!st) {
		free(*system);
		*system = NULL;
		return -1;
	}
	sqlite3_bind_int64(st, 1, conv_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (fn(ctx, sqlite3_column_int64(st, 0), col_text(st, 1), col_text(st, 2), sqlite3_column_int64(st, 3))) {
			rc = SQLITE_DONE;
			break;
		}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(*system);
		*system = NULL;
		return store_sqlfail(s, "the conversation");
	}
	return 0;
}
