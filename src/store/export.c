/* export.c -- rated generations as JSON lines for fine-tuning (SFT, DPO, KTO). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "natter/store.h"
#include "natter/text.h"
#include "store/store-impl.h"

struct gen {
	int64_t id;
	char *content;
	int score;          /* 0: unrated; thumbs up 5, down 1; stars 1..5 */
	int64_t created;
	char *fed;          /* the messages it was fed, as stored (JSON); NULL before schema 3 */
};

struct xmsg {
	char *role;
	char *content;      /* for an assistant turn: the chosen generation */
	struct gen *gens;
	int ngens;
};

static char *
dup_text(const unsigned char *t)
{
	const char *s = t ? (const char *)t : "";
	size_t n = strlen(s);
	char *o = malloc(n * 3 + 1);   /* each bad byte may become U+FFFD (3 bytes) */
	if (!o)
		return NULL;
	o[text_repair_utf8(s, n, o, n * 3)] = 0;
	return o;
}

static cJSON *
msg_json(const char *role, const char *content)
{
	cJSON *m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "role", role);
	cJSON_AddStringToObject(m, "content", content);
	return m;
}

/* The prompt of generation G of message I: the messages it was fed, as
 * recorded; for a generation from before schema 3, the stored conversation
 * before message I (system prompt first). */
static cJSON *
prompt_json(const char *system, const struct xmsg *m, int i, const struct gen *g)
{
	cJSON *a = cJSON_CreateArray();
	if (g->fed) {
		cJSON *rec = cJSON_Parse(g->fed), *it;
		cJSON_ArrayForEach(it, rec) {
			cJSON *r = cJSON_GetObjectItem(it, "role"), *c = cJSON_GetObjectItem(it, "content");
			char *role, *content;
			if (!cJSON_IsString(r) || !cJSON_IsString(c))
				continue;
			role = dup_text((const unsigned char *)r->valuestring);
			content = dup_text((const unsigned char *)c->valuestring);
			if (role && content)
				cJSON_AddItemToArray(a, msg_json(role, content));
			free(role);
			free(content);
		}
		cJSON_Delete(rec);
		return a;
	}
	if (system && system[0])
		cJSON_AddItemToArray(a, msg_json("system", system));
	for (int k = 0; k < i; k++)
		cJSON_AddItemToArray(a, msg_json(m[k].role, m[k].content));
	return a;
}

static int
emit(FILE *f, cJSON *o, int *n)
{
	char *s = cJSON_PrintUnformatted(o);
	int rc = -1;
	if (s && fputs(s, f) >= 0 && fputc('\n', f) != EOF) {
		rc = 0;
		(*n)++;
	}
	free(s);
	cJSON_Delete(o);
	return rc;
}

static void
free_msgs(struct xmsg *m, int n)
{
	for (int i = 0; i < n; i++) {
		free(m[i].role);
		free(m[i].content);
		for (int k = 0; k < m[i].ngens; k++) {
			free(m[i].gens[k].content);
			free(m[i].gens[k].fed);
		}
		free(m[i].gens);
	}
	free(m);
}

/* Writes the lines of one conversation. */
static int
export_conv(struct store *s, const struct store_export_opts *o, int64_t cid, const char *system, FILE *f, int *n)
{
	/* The active branch, first message first. */
	sqlite3_stmt *ms = store_prepare(s, STORE_PATH_CTE "SELECT m.id, m.role, m.content FROM path "
	    "JOIN messages m ON m.id = path.id ORDER BY path.depth DESC");
	sqlite3_stmt *gs = store_prepare(s, "SELECT g.id, g.content, COALESCE(CASE r.kind WHEN 'thumb' THEN "
	    "CASE r.value WHEN 1 THEN 5 ELSE 1 END ELSE r.value END, 0), g.created, g.prompt_messages "
	    "FROM generations g LEFT JOIN ratings r ON r.generation_id = g.id WHERE g.message_id = ? ORDER BY g.id");
	struct xmsg *m = NULL;
	int nm = 0, cap = 0, rc = -1;

	if (!ms || !gs)
		goto out;
	sqlite3_bind_int64(ms, 1, cid);
	while (sqlite3_step(ms) == SQLITE_ROW) {
		if (nm == cap) {
			cap = cap ? cap * 2 : 16;
			struct xmsg *nmv = realloc(m, cap * sizeof(*m));
			if (!nmv)
				goto out;
			m = nmv;
		}
		memset(&m[nm], 0, sizeof(m[nm]));
		m[nm].role = dup_text(sqlite3_column_text(ms, 1));
		m[nm].content = dup_text(sqlite3_column_text(ms, 2));
		sqlite3_reset(gs);
		sqlite3_bind_int64(gs, 1, sqlite3_column_int64(ms, 0));
		while (sqlite3_step(gs) == SQLITE_ROW) {
			struct gen *g = realloc(m[nm].gens, (m[nm].ngens + 1) * sizeof(*g));
			if (!g)
				goto out;
			m[nm].gens = g;
			g += m[nm].ngens++;
			g->id = sqlite3_column_int64(gs, 0);
			g->content = dup_text(sqlite3_column_text(gs, 1));
			g->score = sqlite3_column_int(gs, 2);
			g->created = sqlite3_column_int64(gs, 3);
			g->fed = sqlite3_column_type(gs, 4) == SQLITE_NULL ? NULL :
			    strdup((const char *)sqlite3_column_text(gs, 4));
		}
		nm++;
	}
	for (int i = 0; i < nm; i++) {
		if (strcmp(m[i].role, "assistant"))
			continue;
		for (int a = 0; a < m[i].ngens; a++) {
			const struct gen *ga = &m[i].gens[a];
			if (!ga->score || ga->created < o->since)
				continue;
			if (o->format == STORE_SFT && ga->score >= o->min_rating) {
				cJSON *line = cJSON_CreateObject();
				cJSON *msgs = prompt_json(system, m, i, ga);
				cJSON_AddItemToArray(msgs, msg_json("assistant", ga->content));
				cJSON_AddItemToObject(line, "messages", msgs);
				if (emit(f, line, n) < 0)
					goto out;
			} else if (o->format == STORE_KTO) {
				cJSON *line = cJSON_CreateObject(), *comp = cJSON_CreateArray();
				cJSON_AddItemToObject(line, "prompt", prompt_json(system, m, i, ga));
				cJSON_AddItemToArray(comp, msg_json("assistant", ga->content));
				cJSON_AddItemToObject(line, "completion", comp);
				cJSON_AddBoolToObject(line, "label", ga->score >= o->min_rating);
				if (emit(f, line, n) < 0)
					goto out;
			} else if (o->format == STORE_DPO) {
				/* Every pair of this turn's generations rated differently. */
				for (int b = 0; b < m[i].ngens; b++) {
					const struct gen *gb = &m[i].gens[b];
					if (!gb->score || gb->score >= ga->score)
						continue;
					/* A pair compares two answers to one prompt. */
					if (!ga->fed != !gb->fed || (ga->fed && strcmp(ga->fed, gb->fed)))
						continue;
					cJSON *line = cJSON_CreateObject(), *ch = cJSON_CreateArray(), *rj = cJSON_CreateArray();
					cJSON_AddItemToObject(line, "prompt", prompt_json(system, m, i, ga));
					cJSON_AddItemToArray(ch, msg_json("assistant", ga->content));
					cJSON_AddItemToArray(rj, msg_json("assistant", gb->content));
					cJSON_AddItemToObject(line, "chosen", ch);
					cJSON_AddItemToObject(line, "rejected", rj);
					if (emit(f, line, n) < 0)
						goto out;
				}
			}
		}
	}
	rc = 0;
out:
	sqlite3_finalize(ms);
	sqlite3_finalize(gs);
	free_msgs(m, nm);
	return rc;
}

int
store_export(struct store *s, const struct store_export_opts *o, const char *path, int *n_lines,
	     char *err, size_t errlen)
{
	sqlite3_stmt *cs;
	FILE *f;
	char *tmp = NULL;
	int to_stdout = !path || !strcmp(path, "-"), rc = -1, step;

	*n_lines = 0;
	if (o->min_rating < 1 || o->min_rating > 5) {
		snprintf(err, errlen, "--min-rating must be 1 to 5");
		return -1;
	}
	if (to_stdout) {
		f = stdout;
	} else {
		/* A temporary name renamed at the end: an interrupted export never
		 * leaves half a file where the result should be. */
		tmp = malloc(strlen(path) + 32);
		if (!tmp) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		sprintf(tmp, "%s.tmp%ld", path, (long)getpid());
		f = fopen(tmp, "w");
		if (!f) {
			snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
			free(tmp);
			return -1;
		}
	}
	cs = store_prepare(s, "SELECT c.id, COALESCE(c.system_prompt, '') FROM conversations c LEFT JOIN models md "
	    "ON md.id = c.model_id WHERE (?1 IS NULL OR md.sha256 LIKE ?1 || '%' OR md.file_name LIKE '%' || ?1 || '%') "
	    "ORDER BY c.id");
	if (!cs) {
		snprintf(err, errlen, "%s", store_errmsg(s));
		goto out;
	}
	if (o->model)
		sqlite3_bind_text(cs, 1, o->model, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(cs, 1);
	while ((step = sqlite3_step(cs)) == SQLITE_ROW) {
		char *system = dup_text(sqlite3_column_text(cs, 1));
		int r = export_conv(s, o, sqlite3_column_int64(cs, 0), system, f, n_lines);
		free(system);
		if (r < 0) {
			snprintf(err, errlen, "%s: %s", to_stdout ? "export" : tmp,
			    ferror(f) ? strerror(errno) : store_errmsg(s));
			sqlite3_finalize(cs);
			goto out;
		}
	}
	sqlite3_finalize(cs);
	if (step != SQLITE_DONE) {
		snprintf(err, errlen, "%s", store_errmsg(s));
		goto out;
	}
	if (fflush(f) != 0 || (!to_stdout && fsync(fileno(f)) != 0)) {
		snprintf(err, errlen, "%s: write failed: %s", to_stdout ? "stdout" : tmp, strerror(errno));
		goto out;
	}
	if (!to_stdout) {
		int cr = fclose(f);
		f = NULL;
		if (cr != 0 || rename(tmp, path) != 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			goto out;
		}
	}
	rc = 0;
out:
	if (!to_stdout) {
		if (f)
			fclose(f);
		if (rc != 0)
			unlink(tmp);
		free(tmp);
	}
	return rc;
}
