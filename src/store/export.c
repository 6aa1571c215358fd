/* export.c -- rated generations as JSON lines for fine-tuning (SFT, DPO, KTO, OpenAI's SFT and DPO). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "natter/outfile.h"
#include "natter/store.h"
#include "natter/text.h"
#include "natter/think.h"
#include "store/store-impl.h"

/* One generation of an assistant message on the active branch. */
struct gen {
	int64_t id, created, rated_at;
	char *content;      /* repaired UTF-8; the answer, or with keep_reasoning the reasoning and the answer */
	int score;          /* 0: unrated; thumbs up 5, down 1; stars 1..5 */
	enum store_end end;
	struct store_origin made;   /* what it was made from; made.messages NULL before schema 3 */
	int model_ok;       /* made by the model --model asks for */
	int adapter_ok;     /* made with the adapter --adapter asks for (or with none, for "none") */
	int pref;           /* one of an A/B preference for A or B */
	int raw;            /* fed a bare prompt, no chat template (natter serve's /v1/completions) */
	int usable;         /* may be exported as a target */
	cJSON *prompt;      /* what it was fed (usable ones only) */
	char *key;          /* PROMPT printed: equal keys, equal prompts */
};

/* An A/B preference (not a tie): indices into the message's generations. */
struct xpref {
	int better, worse;
	int64_t created;
};

struct xmsg {
	char *role;
	char *content;      /* for an assistant turn: the chosen generation */
	struct gen *gens;
	int ngens;
	struct xpref *prefs;
	int nprefs;
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

static cJSON *
reply_json(const struct gen *g)
{
	cJSON *a = cJSON_CreateArray();
	cJSON_AddItemToArray(a, msg_json("assistant", g->content));
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

/* --- the writers: each writes the lines of assistant message I --- */

typedef int (*writer_fn)(FILE *f, const struct store_export_opts *o, const struct xmsg *m, int i, int *n);

/* Whether an earlier generation of M than A already gave the same line
 * (same prompt and text, both chosen by KEEP). */
static int
seen_before(const struct xmsg *m, int a, int (*keep)(const struct store_export_opts *, const struct gen *),
	    const struct store_export_opts *o)
{
	const struct gen *ga = &m->gens[a];
	for (int b = 0; b < a; b++) {
		const struct gen *gb = &m->gens[b];
		if (gb->usable && keep(o, gb) && !strcmp(gb->key, ga->key) && !strcmp(gb->content, ga->content))
			return 1;
	}
	return 0;
}

static int
keep_good(const struct store_export_opts *o, const struct gen *g)
{
	return g->score >= o->min_rating;
}

static int
keep_rated(const struct store_export_opts *o, const struct gen *g)
{
	(void)o;
	return g->score > 0;
}

/* The prompt, for OpenAI's format: earlier assistant turns are context,
 * not targets ("weight": 0). */
static cJSON *
weighted(const cJSON *prompt)
{
	cJSON *a = cJSON_Duplicate(prompt, 1), *it;
	cJSON_ArrayForEach(it, a) {
		cJSON *r = cJSON_GetObjectItem(it, "role");
		if (cJSON_IsString(r) && !strcmp(r->valuestring, "assistant"))
			cJSON_AddNumberToObject(it, "weight", 0);
	}
	return a;
}

static int
sft_lines(FILE *f, const struct store_export_opts *o, const struct xmsg *m, int i, int *n, int openai)
{
	for (int a = 0; a < m[i].ngens; a++) {
		const struct gen *g = &m[i].gens[a];
		cJSON *line, *msgs, *reply;
		if (!g->usable || !keep_good(o, g) || seen_before(&m[i], a, keep_good, o))
			continue;
		line = cJSON_CreateObject();
		msgs = openai ? weighted(g->prompt) : cJSON_Duplicate(g->prompt, 1);
		reply = msg_json("assistant", g->content);
		if (openai)
			cJSON_AddNumberToObject(reply, "weight", 1);
		cJSON_AddItemToArray(msgs, reply);
		cJSON_AddItemToObject(line, "messages", msgs);
		if (emit(f, line, n) < 0)
			return -1;
	}
	return 0;
}

static int
write_sft(FILE *f, const struct store_export_opts *o, const struct xmsg *m, int i, int *n)
{
	return sft_lines(f, o, m, i, n, 0);
}

static int
write_openai_sft(FILE *f, const struct store_export_opts *o, const struct xmsg *m, int i, int *n)
{
	return sft_lines(f, o, m, i, n, 1);
}

/* Writes one DPO line: GA preferred to GB. */
static int
dpo_line(FILE *f, const struct gen *ga, const struct gen *gb, int *n, int openai)
{
	cJSON *line = cJSON_CreateObject();
	if (openai) {
		cJSON *in = cJSON_CreateObject();
		cJSON_AddItemToObject(in, "messages", cJSON_Duplicate(ga->prompt, 1));
		cJSON_AddItemToObject(line, "input", in);
		cJSON_AddItemToObject(line, "preferred_output", reply_json(ga));
		cJSON_AddItemToObject(line, "non_preferred_output", reply_json(gb));
	} else {
		cJSON_AddItemToObject(line, "prompt", cJSON_Duplicate(ga->prompt, 1));
		cJSON_AddItemToObject(line, "chosen", reply_json(ga));
		cJSON_AddItemToObject(line, "rejected", reply_json(gb));
	}
	return emit(f, line, n);
}

/* Whether GA over GB is a usable pair: made by one model through one
 * template from one prompt (store_origin_differs, the rule an A/B
 * preference is held to), different texts. */
static int
pair_ok(const struct gen *ga, const struct gen *gb)
{
	return ga->usable && gb->usable && !strcmp(ga->key, gb->key) && !store_origin_differs(&ga->made, &gb->made) &&
	    strcmp(ga->content, gb->content) != 0;
}

/*
 * One turn's DPO pairs.  Replies with one text to one prompt are one
 * class (CLS: a generation's class, -1 if it is not usable); a verdict
 * is about classes: the newest that class C is better than class D
 * (V[C * NC + D], -1 for none) is a pair of ratings that says so (the
 * later of the two) or an A/B preference.  Verdicts both ways (a reply
 * rated again, an A/B pick against the ratings) are settled by the
 * newer, and given in one second, by neither.  A pair of classes is
 * written once (DONE).
 */
struct dpo_verdicts {
	int nc;
	int *cls;
	int64_t *v;
	unsigned char *done;
};

/* Whether rated replies P over Q make a pair of ratings: both rated,
 * Q lower, and a usable pair (pair_ok). */
static int
rated_pair(const struct gen *p, const struct gen *q)
{
	return p->score && q->score && q->score < p->score && pair_ok(p, q);
}

static void
verdict_note(struct dpo_verdicts *d, int a, int b, int64_t when)
{
	int64_t *t = &d->v[(size_t)d->cls[a] * d->nc + d->cls[b]];
	*t = when > *t ? when : *t;
}

/* Fills D for turn X.  Returns 0 or -1 (out of memory). */
static int
verdicts_init(struct dpo_verdicts *d, const struct xmsg *x)
{
	const int ng = x->ngens;
	memset(d, 0, sizeof(*d));
	d->cls = malloc((ng ? ng : 1) * sizeof(*d->cls));
	if (!d->cls)
		return -1;
	for (int a = 0; a < ng; a++) {
		const struct gen *ga = &x->gens[a];
		d->cls[a] = -1;
		if (!ga->usable)
			continue;
		for (int b = 0; b < a && d->cls[a] < 0; b++)
			if (d->cls[b] >= 0 && !strcmp(x->gens[b].key, ga->key) && !strcmp(x->gens[b].content, ga->content))
				d->cls[a] = d->cls[b];
		if (d->cls[a] < 0)
			d->cls[a] = d->nc++;
	}
	const size_t nn = (size_t)d->nc * d->nc;
	d->v = malloc((nn ? nn : 1) * sizeof(*d->v));
	d->done = calloc(nn ? nn : 1, 1);
	if (!d->v || !d->done)
		return -1;
	for (size_t k = 0; k < nn; k++)
		d->v[k] = -1;
	for (int a = 0; a < ng; a++)
		for (int b = 0; b < ng; b++) {
			const struct gen *p = &x->gens[a], *q = &x->gens[b];
			if (rated_pair(p, q))
				verdict_note(d, a, b, p->rated_at > q->rated_at ? p->rated_at : q->rated_at);
		}
	for (int k = 0; k < x->nprefs; k++)
		if (pair_ok(&x->gens[x->prefs[k].better], &x->gens[x->prefs[k].worse]))
			verdict_note(d, x->prefs[k].better, x->prefs[k].worse, x->prefs[k].created);
	return 0;
}

static void
verdicts_free(struct dpo_verdicts *d)
{
	free(d->cls);
	free(d->v);
	free(d->done);
}

/* Writes generation A over B (a usable pair) unless the user's last word
 * says otherwise or the pair of texts was written. */
static int
dpo_pair(FILE *f, const struct xmsg *x, struct dpo_verdicts *d, int a, int b, int *n, int openai)
{
	const size_t ab = (size_t)d->cls[a] * d->nc + d->cls[b], ba = (size_t)d->cls[b] * d->nc + d->cls[a];
	if (d->v[ab] <= d->v[ba] || d->done[ab])
		return 0;
	d->done[ab] = 1;
	return dpo_line(f, &x->gens[a], &x->gens[b], n, openai);
}

/* Every pair of one turn's rated replies to one prompt rated differently,
 * the better first, then every A/B preference for A or B (a tie is no
 * pair); replies with the same text are no pair, a pair of texts is
 * written once, and not against the newer verdict. */
static int
dpo_lines(FILE *f, const struct store_export_opts *o, const struct xmsg *m, int i, int *n, int openai)
{
	const struct xmsg *x = &m[i];
	struct dpo_verdicts d;
	int rc = verdicts_init(&d, x);
	(void)o;
	for (int a = 0; a < x->ngens && rc == 0; a++)
		for (int b = 0; b < x->ngens && rc == 0; b++)
			if (rated_pair(&x->gens[a], &x->gens[b]))
				rc = dpo_pair(f, x, &d, a, b, n, openai);
	for (int k = 0; k < x->nprefs && rc == 0; k++)
		if (pair_ok(&x->gens[x->prefs[k].better], &x->gens[x->prefs[k].worse]))
			rc = dpo_pair(f, x, &d, x->prefs[k].better, x->prefs[k].worse, n, openai);
	verdicts_free(&d);
	return rc;
}

static int
write_dpo(FILE *f, const struct store_export_opts *o, const struct xmsg *m, int i, int *n)
{
	return dpo_lines(f, o, m, i, n, 0);
}

static int
write_openai_dpo(FILE *f, const struct store_export_opts *o, const struct xmsg *m, int i, int *n)
{
	return dpo_lines(f, o, m, i, n, 1);
}

/* Each rated reply with a label; replies with the same text to the same
 * prompt are one line, labelled by the latest rating among them. */
static int
write_kto(FILE *f, const struct store_export_opts *o, const struct xmsg *m, int i, int *n)
{
	const struct xmsg *x = &m[i];
	for (int a = 0; a < x->ngens; a++) {
		const struct gen *g = &x->gens[a], *latest = g;
		cJSON *line;
		if (!g->usable || !g->score || seen_before(x, a, keep_rated, o))
			continue;
		for (int b = a + 1; b < x->ngens; b++) {
			const struct gen *h = &x->gens[b];
			if (h->usable && h->score && !strcmp(h->key, g->key) && !strcmp(h->content, g->content) &&
			    (h->rated_at > latest->rated_at || (h->rated_at == latest->rated_at && h->id > latest->id)))
				latest = h;
		}
		line = cJSON_CreateObject();
		cJSON_AddItemToObject(line, "prompt", cJSON_Duplicate(g->prompt, 1));
		cJSON_AddItemToObject(line, "completion", reply_json(g));
		cJSON_AddBoolToObject(line, "label", latest->score >= o->min_rating);
		if (emit(f, line, n) < 0)
			return -1;
	}
	return 0;
}

/* The formats: one table for the exporter, --help and the tests. */
static const struct {
	const char *name;
	writer_fn write;
	const char *help;
} formats[STORE_N_FORMATS] = {
	[STORE_SFT] = { "sft", write_sft,
	    "each reply rated at least N, after the messages it was fed (messages)" },
	[STORE_DPO] = { "dpo", write_dpo,
	    "each pair of replies to one prompt rated differently or picked in an A/B (prompt, chosen, rejected)" },
	[STORE_KTO] = { "kto", write_kto,
	    "each rated reply, labelled true when rated at least N (prompt, completion, label)" },
	[STORE_OPENAI_SFT] = { "openai-sft", write_openai_sft,
	    "OpenAI supervised fine-tuning: messages, earlier replies with weight 0" },
	[STORE_OPENAI_DPO] = { "openai-dpo", write_openai_dpo,
	    "OpenAI preference fine-tuning (pairs as dpo): input.messages, preferred_output, non_preferred_output" },
};

const char *
store_format_name(enum store_format f)
{
	return (int)f >= 0 && f < STORE_N_FORMATS ? formats[f].name : NULL;
}

const char *
store_format_help(enum store_format f)
{
	return (int)f >= 0 && f < STORE_N_FORMATS ? formats[f].help : NULL;
}

int
store_format_find(const char *name)
{
	for (int i = 0; name && i < STORE_N_FORMATS; i++)
		if (!strcmp(formats[i].name, name))
			return i;
	return -1;
}

/* --- a reply's reasoning --- */

struct parts {
	char *answer, *reasoning;
	size_t alen, acap, rlen, rcap;
	int oom;
};

/* Appends S[0..N) to *BUF; nonzero if out of memory. */
static int
strbuf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t c = *cap ? *cap * 2 : 256;
		char *b;
		while (c < *len + n + 1)
			c *= 2;
		if (!(b = realloc(*buf, c)))
			return 1;
		*buf = b;
		*cap = c;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = 0;
	return 0;
}

static void
part_add(void *ctx, enum think_kind k, const char *s, size_t n)
{
	struct parts *p = ctx;
	if (k == THINK_REASONING ? strbuf_add(&p->reasoning, &p->rlen, &p->rcap, s, n) :
	    strbuf_add(&p->answer, &p->alen, &p->acap, s, n))
		p->oom = 1;
}

/*
 * The text a reply is exported as, from its stored answer CONTENT and
 * REASONING.  HAS_REASONING: the reply was recorded with its reasoning
 * apart, or with none (reasoning or n_reasoning not NULL), and is
 * exported as stored, even an answer that holds <think> (a session with
 * other --think-tags).  A reply recorded before schema 4 had no
 * reasoning column, and its content is what the model wrote, tags and
 * all: it is split as the session splits a reply (PROMPT, the rendered
 * prompt when recorded, tells whether the reply started inside the
 * reasoning).  KEEP puts the reasoning back before the answer, between
 * <think> and </think> as Qwen3 and DeepSeek-R1 write it; otherwise the
 * answer alone.  Returns a new string, or NULL (out of memory).
 */
static char *
reply_text(const char *content, const char *reasoning, int has_reasoning, const char *prompt, int keep)
{
	struct parts p = { 0 };
	const char *answer = content, *r = has_reasoning ? reasoning : NULL;
	char *out;
	size_t rl, al;

	if (!has_reasoning) {
		struct think_split t;
		think_split_init(&t, NULL, NULL, prompt && think_prompt_opens(prompt, strlen(prompt), NULL, NULL));
		think_split_push(&t, content, strlen(content), part_add, &p);
		think_split_flush(&t, part_add, &p);
		if (p.oom) {
			free(p.answer);
			free(p.reasoning);
			return NULL;
		}
		if (think_split_entered(&t)) {
			answer = p.answer ? p.answer : "";
			r = p.reasoning ? p.reasoning : "";
		}
	}
	if (!keep || !r) {
		out = strdup(answer);
	} else {
		/* The reasoning trimmed of the newlines around it, as the
		 * templates that read it back do. */
		while (*r == '\n')
			r++;
		rl = strlen(r);
		while (rl > 0 && r[rl - 1] == '\n')
			rl--;
		al = strlen(answer);
		out = malloc(rl + al + 32);
		if (out)
			sprintf(out, "<think>\n%.*s\n</think>\n\n%s", (int)rl, r, answer);
	}
	free(p.answer);
	free(p.reasoning);
	return out;
}

/* --- reading a conversation --- */

static void
free_msgs(struct xmsg *m, int n)
{
	for (int i = 0; i < n; i++) {
		free(m[i].role);
		free(m[i].content);
		for (int k = 0; k < m[i].ngens; k++) {
			free(m[i].gens[k].content);
			store_origin_clear(&m[i].gens[k].made);
			free(m[i].gens[k].key);
			cJSON_Delete(m[i].gens[k].prompt);
		}
		free(m[i].gens);
		free(m[i].prefs);
	}
	free(m);
}

/* What G was fed, from its record (strings repaired); NULL if the record
 * is not a list of messages each with a string role and content (a
 * prompt with a turn left out would misstate what the model saw). */
static cJSON *
recorded_prompt(const struct gen *g)
{
	cJSON *rec = cJSON_Parse(g->made.messages), *a, *it;
	if (!cJSON_IsArray(rec)) {
		cJSON_Delete(rec);
		return NULL;
	}
	a = cJSON_CreateArray();
	cJSON_ArrayForEach(it, rec) {
		cJSON *r = cJSON_GetObjectItem(it, "role"), *c = cJSON_GetObjectItem(it, "content");
		char *role, *content;
		if (!cJSON_IsString(r) || !cJSON_IsString(c)) {
			cJSON_Delete(a);
			a = NULL;
			break;
		}
		role = dup_text((const unsigned char *)r->valuestring);
		content = dup_text((const unsigned char *)c->valuestring);
		if (role && content)
			cJSON_AddItemToArray(a, msg_json(role, content));
		free(role);
		free(content);
		if (!role || !content) {
			cJSON_Delete(a);
			a = NULL;
			break;
		}
	}
	cJSON_Delete(rec);
	return a;
}

/* For a generation from before schema 3: the stored conversation before
 * message I, after the conversation's system prompt as it is now. */
static cJSON *
rebuilt_prompt(const char *system, const struct xmsg *m, int i)
{
	cJSON *a = cJSON_CreateArray();
	if (system && system[0])
		cJSON_AddItemToArray(a, msg_json("system", system));
	for (int k = 0; k < i; k++)
		cJSON_AddItemToArray(a, msg_json(m[k].role, m[k].content));
	return a;
}

/* Decides which of message I's generations may be exported, counting what
 * is left out, and builds their prompts.  Returns 0 or -1 (out of memory). */
static int
prepare(const struct store_export_opts *o, const char *system, struct xmsg *m, int i,
	struct store_export_counts *counts)
{
	for (int a = 0; a < m[i].ngens; a++) {
		struct gen *g = &m[i].gens[a];
		if ((!g->score && !g->pref) || g->created < o->since || !g->model_ok || !g->adapter_ok)
			continue;
		if (g->raw) {
			counts->skipped_raw += g->score > 0;
			continue;
		}
		if (!g->made.messages && !o->include_legacy) {
			counts->skipped_legacy += g->score > 0;
			continue;
		}
		if (!store_end_complete(g->end) && !o->include_incomplete) {
			counts->skipped_incomplete += g->score > 0;
			continue;
		}
		g->prompt = g->made.messages ? recorded_prompt(g) : rebuilt_prompt(system, m, i);
		if (!g->prompt) {
			counts->skipped_damaged += g->score > 0;   /* nothing true to say */
			continue;
		}
		g->key = cJSON_PrintUnformatted(g->prompt);
		if (!g->key)
			return -1;
		g->usable = 1;
	}
	return 0;
}

/* Reads the preferences of message MSG_ID (its generations already in X)
 * and marks the generations they name.  Returns 0, -1 (out of memory) or
 * -2 (the database failed: store_sqlfail). */
static int
load_prefs(sqlite3_stmt *ps, int64_t msg_id, struct xmsg *x)
{
	int rc;
	sqlite3_reset(ps);
	sqlite3_bind_int64(ps, 1, msg_id);
	while ((rc = sqlite3_step(ps)) == SQLITE_ROW) {
		int64_t ga = sqlite3_column_int64(ps, 0), gb = sqlite3_column_int64(ps, 1);
		const char *pick = (const char *)sqlite3_column_text(ps, 2);
		int ia = -1, ib = -1;
		struct xpref *np;
		for (int k = 0; k < x->ngens; k++) {
			if (x->gens[k].id == ga)
				ia = k;
			if (x->gens[k].id == gb)
				ib = k;
		}
		if (ia < 0 || ib < 0 || !pick)
			continue;
		np = realloc(x->prefs, (x->nprefs + 1) * sizeof(*np));
		if (!np)
			return -1;
		x->prefs = np;
		x->prefs[x->nprefs].created = sqlite3_column_int64(ps, 3);
		x->prefs[x->nprefs].better = !strcmp(pick, "a") ? ia : ib;
		x->prefs[x->nprefs++].worse = !strcmp(pick, "a") ? ib : ia;
		x->gens[ia].pref = x->gens[ib].pref = 1;
	}
	return rc == SQLITE_DONE ? 0 : -2;
}

/*
 * Whether generation g was fed a bare prompt: a model run here whose
 * rendered prompt is the text of the messages it was fed and nothing
 * else, so no chat template wrapped them (natter serve's /v1/completions
 * records its prompt as one user message so).  Exported as chat turns, it
 * would teach the model a template it never saw around that prompt; the
 * formats are all of chat turns, so it is left out and counted.  (What
 * shows it is the text itself, not the template's name.  A remote
 * model's prompt_text is its request, never the bare messages.)
 */
#define RAW_PROMPT "(g.prompt_text IS NOT NULL AND om.kind IS NOT 'remote' AND json_valid(g.prompt_messages) AND " \
	"g.prompt_text = (SELECT COALESCE(group_concat(json_extract(j.value, '$.content'), ''), '') " \
	"FROM json_each(g.prompt_messages) j))"

/* Whether the hex SHA-256 in column COL starts with parameter P (any case). */
#define SHA_PREFIX(col, p) "substr(" col ", 1, length(" p ")) = lower(" p ")"

/* Whether models row md is the one --model names (parameter P): a prefix
 * of its SHA-256, a part of its file name or endpoint (ASCII case
 * ignored), or its kind ("remote").  Taken as text, not as a LIKE
 * pattern: % and _ are only themselves. */
#define MODEL_NAMED(p) "(" SHA_PREFIX("md.sha256", p) " OR instr(lower(md.file_name), lower(" p ")) > 0 OR " \
	"instr(lower(md.endpoint), lower(" p ")) > 0 OR md.kind = " p ")"

/* Writes the lines of one conversation. */
static int
export_conv(struct store *s, const struct store_export_opts *o, int64_t cid, const char *system,
	    const char *conv_model_ok, FILE *f, struct store_export_counts *counts)
{
	/* The active branch, first message first. */
	sqlite3_stmt *ms = store_prepare(s, STORE_PATH_CTE "SELECT m.id, m.role, m.content FROM path "
	    "JOIN messages m ON m.id = path.id ORDER BY path.depth DESC");
	char sql[4096];
	sqlite3_stmt *gs;
	snprintf(sql, sizeof(sql), "SELECT g.id, g.content, COALESCE(CASE r.kind WHEN 'thumb' THEN "
	    "CASE r.value WHEN 1 THEN 5 ELSE 1 END ELSE r.value END, 0), g.created, g.prompt_messages, g.end_reason, "
	    "COALESCE(r.created, 0), CASE WHEN g.model_id IS NULL THEN ?2 ELSE (?3 IS NULL OR EXISTS (SELECT 1 FROM "
	    "models md WHERE md.id = g.model_id AND " MODEL_NAMED("?3") ")) "
	    "END, g.reasoning, g.prompt_text, CASE WHEN ?4 IS NULL THEN 1 WHEN ?4 = 'none' THEN NOT EXISTS (SELECT 1 "
	    "FROM generation_adapters ga WHERE ga.generation_id = g.id) ELSE EXISTS (SELECT 1 FROM generation_adapters "
	    "ga WHERE ga.generation_id = g.id AND " SHA_PREFIX("ga.sha256", "?4") ") END, " STORE_ORIGIN_COLUMNS ", "
	    "g.reasoning IS NOT NULL OR g.n_reasoning IS NOT NULL, " RAW_PROMPT " "
	    "FROM generations g LEFT JOIN ratings r ON r.generation_id = g.id " STORE_ORIGIN_JOIN " "
	    "WHERE g.message_id = ?1 ORDER BY g.id", store_origin_think(s));
	gs = store_prepare(s, sql);
	/* The A/B preferences for A or B (a tie says neither is better). */
	sqlite3_stmt *ps = store_prepare(s, "SELECT gen_a, gen_b, pick, created FROM preferences WHERE message_id = ? "
	    "AND pick <> 'tie' ORDER BY id");
	struct xmsg *m = NULL;
	int nm = 0, cap = 0, rc = -1, step;

	if (!ms || !gs || !ps)
		goto out;
	sqlite3_bind_int64(ms, 1, cid);
	/* A step that ends in anything but SQLITE_DONE (a damaged page, a
	 * busy database) fails the export: never a file missing rows. */
	while ((step = sqlite3_step(ms)) == SQLITE_ROW) {
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
		nm++;
		if (!m[nm - 1].role || !m[nm - 1].content)
			goto out;
		sqlite3_reset(gs);
		sqlite3_bind_int64(gs, 1, sqlite3_column_int64(ms, 0));
		sqlite3_bind_int(gs, 2, conv_model_ok[0] == '1');
		if (o->model)
			sqlite3_bind_text(gs, 3, o->model, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(gs, 3);
		if (o->adapter)
			sqlite3_bind_text(gs, 4, o->adapter, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(gs, 4);
		while ((step = sqlite3_step(gs)) == SQLITE_ROW) {
			struct xmsg *x = &m[nm - 1];
			struct gen *g = realloc(x->gens, (x->ngens + 1) * sizeof(*g));
			if (!g)
				goto out;
			x->gens = g;
			g += x->ngens++;
			memset(g, 0, sizeof(*g));
			g->id = sqlite3_column_int64(gs, 0);
			{
				/* No reasoning recorded (NULL) is no reasoning, not an empty one:
				 * --reasoning keep gives it no <think></think>. */
				const int has_r = sqlite3_column_type(gs, 8) != SQLITE_NULL;
				char *answer = dup_text(sqlite3_column_text(gs, 1));
				char *reasoning = has_r ? dup_text(sqlite3_column_text(gs, 8)) : NULL;
				char *prompt = dup_text(sqlite3_column_text(gs, 9));
				g->content = answer && (reasoning || !has_r) && prompt ? reply_text(answer, reasoning,
				    sqlite3_column_int(gs, 17), sqlite3_column_type(gs, 9) != SQLITE_NULL ?
				    prompt : NULL, o->keep_reasoning) : NULL;
				free(answer);
				free(reasoning);
				free(prompt);
			}
			g->score = sqlite3_column_int(gs, 2);
			g->created = sqlite3_column_int64(gs, 3);
			g->end = store_end_parse((const char *)sqlite3_column_text(gs, 5));
			g->rated_at = sqlite3_column_int64(gs, 6);
			g->model_ok = sqlite3_column_int(gs, 7);
			g->adapter_ok = sqlite3_column_int(gs, 10);
			g->raw = sqlite3_column_int(gs, 18);
			if (!g->content || store_origin_read(gs, 11, &g->made) < 0)
				goto out;
		}
		int pr = step == SQLITE_DONE ? load_prefs(ps, sqlite3_column_int64(ms, 0), &m[nm - 1]) : -2;
		if (pr == -2)
			store_sqlfail(s, "the export");
		if (pr < 0)
			goto out;
	}
	if (step != SQLITE_DONE) {
		store_sqlfail(s, "the export");
		goto out;
	}
	for (int i = 0; i < nm; i++) {
		if (strcmp(m[i].role, "assistant"))
			continue;
		if (prepare(o, system, m, i, counts) < 0 || formats[o->format].write(f, o, m, i, &counts->lines) < 0)
			goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(ms);
	sqlite3_finalize(gs);
	sqlite3_finalize(ps);
	free_msgs(m, nm);
	return rc;
}

int
store_export(struct store *s, const struct store_export_opts *o, const char *path,
	     struct store_export_counts *counts, char *err, size_t errlen)
{
	struct store_export_counts none;
	sqlite3_stmt *cs;
	FILE *f;
	struct outfile of = { 0 };
	const char *name;
	int to_stdout = !path || !strcmp(path, "-"), rc = -1, step;

	if (!counts)
		counts = &none;
	memset(counts, 0, sizeof(*counts));
	if ((int)o->format < 0 || o->format >= STORE_N_FORMATS) {
		snprintf(err, errlen, "no such export format");
		return -1;
	}
	if (o->min_rating < 1 || o->min_rating > 5) {
		snprintf(err, errlen, "--min-rating must be 1 to 5");
		return -1;
	}
	/* Errors name what the user asked for, not the temporary file. */
	name = to_stdout ? "standard output" : path;
	if (to_stdout) {
		f = stdout;
	} else {
		/* A temporary name renamed at the end: an interrupted export never
		 * leaves half a file where the result should be. */
		if (outfile_open(&of, path, "w", err, errlen) < 0)
			return -1;
		f = of.f;
	}
	/* Each conversation, and whether its starting model matches --model
	 * (for generations that did not record theirs). */
	cs = store_prepare(s, "SELECT c.id, COALESCE(c.system_prompt, ''), (?1 IS NULL OR " MODEL_NAMED("?1") ") "
	    "FROM conversations c LEFT JOIN models md ON md.id = c.model_id ORDER BY c.id");
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
		int r = system ? export_conv(s, o, sqlite3_column_int64(cs, 0), system,
		    sqlite3_column_int(cs, 2) ? "1" : "0", f, counts) : -1;
		free(system);
		if (r < 0) {
			/* The output is named only when writing it failed. */
			if (ferror(f))
				snprintf(err, errlen, "%s: %s", name, strerror(errno));
			else
				snprintf(err, errlen, "%s", *store_errmsg(s) ? store_errmsg(s) : "out of memory");
			sqlite3_finalize(cs);
			goto out;
		}
	}
	if (step != SQLITE_DONE)
		store_sqlfail(s, "the export");
	sqlite3_finalize(cs);
	if (step != SQLITE_DONE) {
		snprintf(err, errlen, "%s", store_errmsg(s));
		goto out;
	}
	if (to_stdout ? fflush(f) != 0 : outfile_commit(&of, err, errlen) < 0) {
		if (to_stdout)
			snprintf(err, errlen, "%s: writing failed: %s", name, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	outfile_abort(&of);   /* nothing left to do once committed */
	return rc;
}
