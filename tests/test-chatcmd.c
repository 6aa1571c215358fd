/* test-chatcmd.c -- the shared slash-command table: dispatch, refusals while busy, help from the table. */
#include "config.h"

#include <sqlite3.h>
#include <unistd.h>

#include "natter/chat.h"
#include "natter/chatcmd.h"
#include "natter/chatlog.h"
#include "natter/llm.h"
#include "natter/store.h"
#include "test.h"
#include "test-sql.h"

/* A front end that records what it was asked. */
struct fe {
	char said[1024];
	int err, busy, regen, new_conv, params, help, n_help;
	char help_text[4096];
};

static void
say(void *p, int is_err, const char *msg)
{
	struct fe *f = p;
	snprintf(f->said, sizeof(f->said), "%s", msg);
	f->err = is_err;
}
static int busy(void *p) { return ((struct fe *)p)->busy; }
static void regen(void *p) { ((struct fe *)p)->regen++; }
static void new_conv(void *p) { ((struct fe *)p)->new_conv++; }
static void params(void *p) { ((struct fe *)p)->params++; }
static void help(void *p) { ((struct fe *)p)->help++; }

/* No history, stats or copy: like chat --plain. */
static const struct chatcmd_ops ops = {
	.say = say, .busy = busy, .regen = regen, .new_conv = new_conv, .params = params, .help = help,
};

static void
help_line(void *ctx, const char *usage, const char *line)
{
	struct fe *f = ctx;
	size_t l = strlen(f->help_text);
	snprintf(f->help_text + l, sizeof(f->help_text) - l, "%s|%s\n", usage, line);
	f->n_help++;
}

static int
run(struct chatcmd_env *e, const char *line)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", line);
	return chatcmd_run(e, buf);
}

/* A front end with /ab: B is made at once, as the full screen's
 * generation thread makes it (chat_regenerate_with, then chatlog_reply). */
struct abfe {
	struct fe f;                 /* first: say and busy read it */
	struct chat *c;
	struct chatlog *l;
	int made;
};

static void
ab(void *p, const struct chatcmd_variant *v)
{
	struct abfe *a = p;
	struct chat_stats st;
	char err[256];
	a->made = chat_regenerate_with(a->c, &v->sp, v->scales, NULL, NULL, &st, err, sizeof(err)) == 0 &&
	    chatlog_reply(a->l, a->c, &st) == 0;
}

static const struct chatcmd_ops ab_ops = { .say = say, .busy = busy, .ab = ab };

/* E runs commands on session C (logged by L) through A, which makes B. */
static void
ab_env(struct chatcmd_env *e, struct abfe *a, struct chat *c, struct chatlog *l)
{
	a->c = c;
	a->l = l;
	e->c = c;
	e->log = l;
	e->ops = &ab_ops;
	e->fe = a;
}

/* What a generation was made under, for comparing two. */
static char *
gen_settings(const char *db, int64_t gen, char *buf, size_t n)
{
	char q[512];
	snprintf(q, sizeof(q), "SELECT printf('%%.2f', temp) || ' ' || top_k || ' ' || printf('%%g %%g %%g %%g %%g', "
	    "top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty) || ' ' || penalty_last_n || ' ' || "
	    "seed || ' ' || max_tokens || ' ' || model_id || ' ' || template_id || ' ' || system_prompt || ' ' || "
	    "prompt_messages || ' ' || stop FROM generations WHERE id = %lld", (long long)gen);
	return query_text(db, q, buf, n);
}

/* /ab on a reply resumed from the history, in a session whose own settings
 * are elsewhere: A is the stored generation, with the settings its record
 * gives; B is made with those but the one changed, and the pair is
 * stored.  A record that shows another model or another context size is
 * refused, naming it. */
static void
test_ab_resumed(struct llm_model *m, const char *model_path)
{
	char db[256], err[512], q[256], t[1024], ta[1024], tb[1024];
	struct store *s = NULL;
	struct chat_opts o;
	struct chat *c1 = NULL, *c2 = NULL, *c3 = NULL;
	struct chatlog l1, l2, l3;
	struct chat_stats st;
	struct abfe a;
	struct chatcmd_env e;
	int64_t ga, gb, other;

	memset(&l1, 0, sizeof(l1));
	memset(&l2, 0, sizeof(l2));
	memset(&l3, 0, sizeof(l3));
	memset(&a, 0, sizeof(a));
	if (open_test_db(db, sizeof(db), "chatcmd", &s, err, sizeof(err)) < 0) {
		CHECK(0, "store: %s", err);
		return;
	}
	chat_opts_default(&o);
	o.max_tokens = 8;
	o.sp.temp = 0.6f;
	o.sp.top_k = 20;
	o.sp.seed = 5;
	CHECK(chat_new(m, &o, &c1, err, sizeof(err)) == 0, "chat_new: %s", err);
	l1.s = s;
	CHECK(c1 && chatlog_model(&l1, c1, model_path) == 0 && l1.model_id > 0, "model: %s", store_errmsg(s));
	if (c1)
		chat_add_user(c1, "Hi", 2);
	CHECK(c1 && chatlog_user(&l1, c1) == 0 && chat_generate(c1, NULL, NULL, &st, err, sizeof(err)) == 0 &&
	    chatlog_reply(&l1, c1, &st) == 0, "the reply: %s %s", err, store_errmsg(s));
	ga = l1.last_gen;

	o.sp.temp = 1.3f;
	o.sp.top_k = 0;
	o.sp.seed = SAMPLER_SEED_RANDOM;
	CHECK(chat_new(m, &o, &c2, err, sizeof(err)) == 0, "chat_new: %s", err);
	l2.s = s;
	if (!c1 || !c2 || chatlog_model(&l2, c2, model_path) < 0 || chatlog_resume(&l2, c2, l1.conv, err, sizeof(err)) < 0) {
		CHECK(0, "resume: %s", err);
		goto out;
	}
	ab_env(&e, &a, c2, &l2);
	CHECK(run(&e, "/ab temp 0.9") == CHATCMD_DONE && a.made && !a.f.err, "/ab temp 0.9 on the resumed reply: %s",
	    a.f.said);
	CHECK(run(&e, "/pick b") == CHATCMD_DONE, "/pick b: %s", a.f.said);
	gb = l2.last_gen;
	snprintf(q, sizeof(q), "SELECT gen_a || ' ' || gen_b || ' ' || pick || ' ' || setting FROM preferences");
	snprintf(ta, sizeof(ta), "%lld %lld b temp 0.9", (long long)ga, (long long)gb);
	CHECK(gb != ga && !strcmp(query_text(db, q, t, sizeof(t)), ta), "the pair: %s (want %s)", t, ta);
	gen_settings(db, ga, ta, sizeof(ta));
	gen_settings(db, gb, tb, sizeof(tb));
	CHECK(!strncmp(ta, "0.60 20 ", 8) && strstr(ta, " 5 8 ") && !strncmp(tb, "0.90 ", 5) && !strcmp(ta + 4, tb + 4),
	    "A as recorded, B the same but temp 0.9:\nA %s\nB %s", ta, tb);

	/* A under another model than the session's: refused, naming it. */
	CHECK(store_model_remote(s, "http://127.0.0.1:1/v1", "elsewhere", &other) == 0, "%s", store_errmsg(s));
	l2.model_id = other;
	CHECK(chatlog_alt_select(&l2, c2, 1, 0, err, sizeof(err)) == 0, "A again: %s", err);
	CHECK(run(&e, "/ab temp 0.9") < 0 && a.f.err && strstr(a.f.said, "the last reply was made with another model "
	    "(aidreams260K-f32.gguf)"), "/ab on a reply of another model: %s", a.f.said);

	/* Resumed in another context size: its cut of a long conversation
	 * may differ, so B could be fed another prompt; refused, naming both. */
	o.n_ctx = chat_ctx_size(c1) / 2;
	CHECK(chat_new(m, &o, &c3, err, sizeof(err)) == 0, "chat_new: %s", err);
	l3.s = s;
	if (!c3 || chatlog_model(&l3, c3, model_path) < 0 || chatlog_resume(&l3, c3, l1.conv, err, sizeof(err)) < 0) {
		CHECK(0, "resume: %s", err);
		goto out;
	}
	CHECK(chatlog_alt_select(&l3, c3, 1, 0, err, sizeof(err)) == 0, "A in the third session: %s", err);
	a.c = c3;
	a.l = &l3;
	e.c = c3;
	e.log = &l3;
	snprintf(ta, sizeof(ta), "was made in a context of %d tokens (this session: %d)", chat_ctx_size(c1),
	    chat_ctx_size(c3));
	CHECK(run(&e, "/ab temp 0.9") < 0 && a.f.err && strstr(a.f.said, ta), "/ab in another context: %s", a.f.said);
out:
	chat_free(c1);
	chat_free(c2);
	chat_free(c3);
	store_close(s);
	remove_db(db);
}

/* A front end showing alternative SHOWN of every reply (-1: the chosen
 * one), as the full screen shows one flipped to before Enter. */
struct showfe {
	struct fe f;                 /* first: say and busy read it */
	int shown;
};

static int
shown_alt(void *p, int i)
{
	struct showfe *sf = p;
	(void)i;
	return sf->shown;
}

static const struct chatcmd_ops show_ops = { .say = say, .busy = busy, .shown_alt = shown_alt };

/* The rating of generation GEN as "kind value", into BUF ("" if none). */
static char *
rating_of(const char *db, int64_t gen, char *buf, size_t n)
{
	char q[256];
	snprintf(q, sizeof(q), "SELECT kind || ' ' || value FROM ratings "
	    "WHERE generation_id = %lld", (long long)gen);
	return query_text(db, q, buf, n);
}

/* /rate rates the reply the user sees: a regeneration whose save failed
 * is refused, not rated in the place of the alternative stored before
 * it; an alternative shown but not chosen is rated, not the chosen one. */
static void
test_rate_shown(struct llm_model *m)
{
	char db[256], err[256], t[300];
	struct store *s = NULL;
	struct chat_opts o;
	struct chat *c = NULL;
	struct chatlog l;
	struct chat_stats st;
	struct showfe sf;
	struct chatcmd_env e;
	int64_t g0, g2;

	memset(&l, 0, sizeof(l));
	memset(&sf, 0, sizeof(sf));
	sf.shown = -1;
	if (open_test_db(db, sizeof(db), "chatcmd-rate", &s, err, sizeof(err)) < 0) {
		CHECK(0, "store: %s", err);
		return;
	}
	chat_opts_default(&o);
	o.max_tokens = 4;
	if (chat_new(m, &o, &c, err, sizeof(err)) < 0) {
		CHECK(0, "chat_new: %s", err);
		goto out;
	}
	l.s = s;
	e.c = c;
	e.log = &l;
	e.ops = &ops;
	e.fe = &sf.f;
	chat_add_user(c, "Hi", 2);
	CHECK(chatlog_user(&l, c) == 0 && chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 &&
	    chatlog_reply(&l, c, &st) == 0, "the reply: %s %s", err, store_errmsg(s));
	g0 = chat_alt_tag(c, 1, 0);
	CHECK(g0 > 0 && run(&e, "/rate up spot on") == CHATCMD_DONE && !strcmp(rating_of(db, g0, t, sizeof(t)), "thumb 1"),
	    "/rate up on the reply: %s; stored %s", sf.f.said, t);

	/* The regeneration is not saved (a fault as a full disk would make). */
	CHECK(exec_sql(db, "CREATE TRIGGER full BEFORE INSERT ON generations BEGIN SELECT RAISE(ABORT, 'disk full'); END") == 0,
	    "the fault is set");
	CHECK(chat_regenerate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && chat_alt_index(c, 1) == 1 &&
	    chatlog_reply(&l, c, &st) < 0 && chat_alt_tag(c, 1, 1) == 0, "a regeneration the store did not take");
	CHECK(run(&e, "/rate down") < 0 && sf.f.err && strstr(sf.f.said, "not saved, so it is not rated"),
	    "/rate on a reply not saved: %s", sf.f.said);
	CHECK(!strcmp(rating_of(db, g0, t, sizeof(t)), "thumb 1"), "the reply before keeps its rating: %s", t);
	CHECK(l.last_gen == 0, "the stats name generation %lld as the reply's, which was not saved", (long long)l.last_gen);
	CHECK(exec_sql(db, "DROP TRIGGER full") == 0, "the fault is gone");

	/* A third alternative is saved; the front end shows the first. */
	CHECK(chat_regenerate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l, c, &st) == 0 &&
	    chat_alt_index(c, 1) == 2, "the next regeneration: %s %s", err, store_errmsg(s));
	g2 = chat_alt_tag(c, 1, 2);
	CHECK(g2 > 0 && run(&e, "/rate 4") == CHATCMD_DONE && !strcmp(rating_of(db, g2, t, sizeof(t)), "stars 4"),
	    "/rate 4 on the new alternative: %s; stored %s", sf.f.said, t);
	/* A rating the store refuses: what did not happen, then why. */
	CHECK(exec_sql(db, "CREATE TRIGGER full BEFORE INSERT ON ratings BEGIN SELECT RAISE(ABORT, 'disk full'); END") == 0,
	    "the ratings fault is set");
	CHECK(run(&e, "/rate 5") < 0 && sf.f.err && strstr(sf.f.said, "not rated: ") && strstr(sf.f.said, "disk full"),
	    "/rate the store refused: %s", sf.f.said);
	CHECK(exec_sql(db, "DROP TRIGGER full") == 0, "the ratings fault is gone");
	e.ops = &show_ops;
	sf.shown = 0;
	CHECK(run(&e, "/rate down") == CHATCMD_DONE && !strcmp(rating_of(db, g0, t, sizeof(t)), "thumb 0") &&
	    !strcmp(rating_of(db, g2, t, sizeof(t)), "stars 4"), "/rate on the alternative shown: %s", sf.f.said);
	sf.shown = 1;
	CHECK(run(&e, "/rate up") < 0 && strstr(sf.f.said, "not saved"), "/rate on the one not saved, shown: %s",
	    sf.f.said);
	sf.shown = 0;
	/* The conversation deleted by another program: /rate says so, not a
	 * store error, and the chat leaves it (its next message starts a new
	 * one; the reply, no longer saved, is not rated again). */
	{
		struct store *other = NULL;
		char q[96];
		int64_t conv = l.conv;
		CHECK(store_open(db, 0, &other, err, sizeof(err)) == 0 && store_conv_delete(other, conv) == 0,
		    "deleted elsewhere: %s", other ? store_errmsg(other) : err);
		store_close(other);
		snprintf(q, sizeof(q), "not rated: conversation %lld was deleted from the history by another program",
		    (long long)conv);
		CHECK(run(&e, "/rate up") < 0 && sf.f.err && strstr(sf.f.said, q) && l.conv == 0,
		    "/rate after the deletion: %s", sf.f.said);
		CHECK(run(&e, "/rate up") < 0 && strstr(sf.f.said, "not saved, so it is not rated"),
		    "/rate again: %s", sf.f.said);
		CHECK(!strcmp(query_text(db, "SELECT count(*) FROM ratings", q, sizeof(q)), "0"), "no rating left: %s", q);
	}
out:
	chat_free(c);
	store_close(s);
	remove_db(db);
}

/* The database's count of ROWS (a table) as a number. */
static long
count_rows(const char *db, const char *table)
{
	char q[128], t[32];
	snprintf(q, sizeof(q), "SELECT count(*) FROM %s", table);
	return strtol(query_text(db, q, t, sizeof(t)), NULL, 10);
}

/* The reply at the end of A's session, and what /ab on it made and stored. */
struct ab_state {
	int alts;
	long gens, prefs;
};

static struct ab_state
ab_state(struct chat *c, const char *db)
{
	struct ab_state s = { chat_alt_count(c, chat_n_messages(c) - 1), count_rows(db, "generations"),
	    count_rows(db, "preferences") };
	return s;
}

/* The options of the A/B tests under Qwen3's template, which reads
 * enable_thinking (its path, from the fixtures FX, into TMPL of N bytes):
 * six tokens a reply (test_ab_changed's cases name the six), seed 5. */
static void
qwen3_opts(struct chat_opts *o, char *tmpl, size_t n, const char *fx)
{
	snprintf(tmpl, n, "%s/templates/Qwen-Qwen3.jinja", fx);
	chat_opts_default(o);
	o->template_spec = tmpl;
	o->max_tokens = 6;
	o->sp.seed = 5;
}

/* /ab on a reply made in this session, after the session changed
 * something a second reply would get from it rather than from A: refused
 * before B is generated, naming what changed; nothing is made or stored.
 * Put back, /ab makes B and /pick stores the pair.  The template reads
 * enable_thinking, so the switch matters. */
static void
test_ab_changed(struct llm_model *m, const char *fx)
{
	static const struct {
		const char *change, *undo;   /* commands (NULL: the alternative chosen) */
		const char *said;            /* what the refusal names */
	} cases[] = {
		{ "/system Be brief.", "/system", "/ab: the system prompt changed since the last reply was made" },
		{ "/think off", "/think on", "/ab: the think switch (/think, enable_thinking) changed" },
		{ "/set max_tokens 4", "/set max_tokens 6", "/ab: max_tokens (6 then, 4 now) changed" },
		{ NULL, NULL, "/ab: the conversation before it (an earlier reply chosen" },
	};
	char db[256], err[512], tmpl[4096], t[64];
	struct store *s = NULL;
	struct chat_opts o;
	struct chat *c = NULL;
	struct chatlog l;
	struct chat_stats st;
	struct abfe a;
	struct chatcmd_env e;
	struct ab_state before, after;

	memset(&l, 0, sizeof(l));
	memset(&a, 0, sizeof(a));
	qwen3_opts(&o, tmpl, sizeof(tmpl), fx);
	if (open_test_db(db, sizeof(db), "chatcmd-changed", &s, err, sizeof(err)) < 0 ||
	    chat_new(m, &o, &c, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		goto out;
	}
	l.s = s;
	ab_env(&e, &a, c, &l);
	/* Two turns, the first with a second alternative to choose. */
	chat_set_think(c, CHAT_THINK_ON);
	CHECK(chatlog_model(&l, c, NULL) == 0, "model: %s", store_errmsg(s));
	for (int turn = 0; turn < 2; turn++) {
		chat_add_user(c, turn ? "Go on" : "Hi", turn ? 5 : 2);
		CHECK(chatlog_user(&l, c) == 0 && chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 &&
		    chatlog_reply(&l, c, &st) == 0, "turn %d: %s %s", turn, err, store_errmsg(s));
	}
	CHECK(chat_alt_add(c, 1, "Another hello.", 14) == 1, "an alternative of the first reply");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		before = ab_state(c, db);
		if (cases[i].change)
			CHECK(run(&e, cases[i].change) == CHATCMD_DONE, "%s: %s", cases[i].change, a.f.said);
		else
			CHECK(chat_alt_select(c, 1, 1) == 0, "the first reply's alternative");
		a.made = 0;
		CHECK(run(&e, "/ab temp 0.9") < 0 && a.f.err && strstr(a.f.said, cases[i].said) &&
		    strstr(a.f.said, "F5 or /regen makes one under it"), "/ab after %s: %s",
		    cases[i].change ? cases[i].change : "choosing an earlier reply", a.f.said);
		after = ab_state(c, db);
		CHECK(!a.made && after.alts == before.alts && after.gens == before.gens && after.prefs == before.prefs &&
		    l.ab.state == CHATLOG_AB_NONE, "after %s: B made %d, alternatives %d -> %d, generations %ld -> %ld",
		    cases[i].change ? cases[i].change : "choosing", a.made, before.alts, after.alts, before.gens,
		    after.gens);
		if (cases[i].undo)
			CHECK(run(&e, cases[i].undo) == CHATCMD_DONE, "%s: %s", cases[i].undo, a.f.said);
		else
			CHECK(chat_alt_select(c, 1, 0) == 0, "the first reply as it was");
		}
	/* Everything as A was made: B is made and the pair stored. */
	before = ab_state(c, db);
	a.f.err = 0;
	CHECK(run(&e, "/ab temp 0.9") == CHATCMD_DONE && a.made && !a.f.err, "/ab as made: %s", a.f.said);
	CHECK(run(&e, "/pick b") == CHATCMD_DONE, "/pick b: %s", a.f.said);
	after = ab_state(c, db);
	CHECK(after.alts == before.alts + 1 && after.gens == before.gens + 1 && after.prefs == before.prefs + 1,
	    "B and the pair: alternatives %d -> %d, preferences %ld -> %ld (%s)", before.alts, after.alts, before.prefs,
	    after.prefs, query_text(db, "SELECT count(*) FROM preferences", t, sizeof(t)));
out:
	chat_free(c);
	store_close(s);
	remove_db(db);
}

/* /ab on a reply resumed from the history whose template reads
 * enable_thinking: the switch it was rendered with is recorded, so a
 * session with the same one compares against it; another one is refused,
 * named, before B is made. */
static void
test_ab_resumed_think(struct llm_model *m, const char *fx)
{
	char db[256], err[512], tmpl[4096], model[4096];
	struct store *s = NULL;
	struct chat_opts o;
	struct chat *c1 = NULL, *c2 = NULL;
	struct chatlog l1, l2;
	struct chat_stats st;
	struct abfe a;
	struct chatcmd_env e;
	struct ab_state before, after;

	memset(&l1, 0, sizeof(l1));
	memset(&l2, 0, sizeof(l2));
	memset(&a, 0, sizeof(a));
	snprintf(model, sizeof(model), "%s/models/aidreams260K-f32.gguf", fx);
	qwen3_opts(&o, tmpl, sizeof(tmpl), fx);
	if (open_test_db(db, sizeof(db), "chatcmd-think", &s, err, sizeof(err)) < 0 ||
	    chat_new(m, &o, &c1, err, sizeof(err)) < 0 || chat_new(m, &o, &c2, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		goto out;
	}
	l1.s = l2.s = s;
	chat_set_think(c1, CHAT_THINK_OFF);
	chat_add_user(c1, "Hi", 2);
	CHECK(chatlog_model(&l1, c1, model) == 0 && chatlog_user(&l1, c1) == 0 &&
	    chat_generate(c1, NULL, NULL, &st, err, sizeof(err)) == 0 && chatlog_reply(&l1, c1, &st) == 0,
	    "the reply: %s %s", err, store_errmsg(s));
	chat_set_think(c2, CHAT_THINK_OFF);
	if (chatlog_model(&l2, c2, model) < 0 || chatlog_resume(&l2, c2, l1.conv, err, sizeof(err)) < 0) {
		CHECK(0, "resume: %s", err);
		goto out;
	}
	ab_env(&e, &a, c2, &l2);
	before = ab_state(c2, db);
	CHECK(run(&e, "/ab temp 0.9") == CHATCMD_DONE && a.made && !a.f.err, "/ab with the same switch: %s", a.f.said);
	CHECK(run(&e, "/pick b") == CHATCMD_DONE, "/pick b: %s", a.f.said);
	after = ab_state(c2, db);
	CHECK(after.alts == before.alts + 1 && after.prefs == before.prefs + 1, "B and the pair stored (%ld -> %ld)",
	    before.prefs, after.prefs);

	CHECK(chatlog_alt_select(&l2, c2, 1, 0, err, sizeof(err)) == 0, "A again: %s", err);
	CHECK(run(&e, "/think on") == CHATCMD_DONE, "/think on: %s", a.f.said);
	before = ab_state(c2, db);
	a.made = 0;
	CHECK(run(&e, "/ab temp 0.9") < 0 && a.f.err && strstr(a.f.said, "the last reply was made with "
	    "enable_thinking false (this session: true; /think off makes them the same)"),
	    "/ab with another switch: %s", a.f.said);
	after = ab_state(c2, db);
	CHECK(!a.made && after.alts == before.alts && after.gens == before.gens && after.prefs == before.prefs,
	    "nothing made nor stored");
out:
	chat_free(c1);
	chat_free(c2);
	store_close(s);
	remove_db(db);
}

int
main(void)
{
	const char *fx = test_fixtures();
	char path[4096], err[256];
	struct llm_model *m = NULL;
	struct chat *c = NULL;
	struct chat_opts o;
	struct chatlog log = { 0 };
	struct fe f = { 0 };
	struct chatcmd_env e;
	struct sampler_params sp;
	const struct chatcmd *t;
	int n;

	/* The table: every row complete, names unique, help fitting a line. */
	t = chatcmd_table(&n);
	CHECK(n >= 10, "only %d commands", n);
	for (int i = 0; i < n; i++) {
		char u[128];
		CHECK(t[i].name && t[i].args && t[i].help && t[i].fn, "row %d incomplete", i);
		chatcmd_usage(&t[i], u, sizeof(u));
		CHECK(strlen(u) <= 29 && strlen(t[i].help) <= 44, "/%s: usage or help too long for 80 columns", t[i].name);
		for (int j = 0; j < i; j++)
			CHECK(strcmp(t[i].name, t[j].name), "/%s twice", t[i].name);
	}
	/* The help is the table less what this front end lacks. */
	chatcmd_help(&ops, help_line, &f);
	CHECK(strstr(f.help_text, "/rate up|down|1..5 [COMMENT]|rate the last reply\n") != NULL, "help: %s", f.help_text);
	CHECK(strstr(f.help_text, "/new, /clear|") != NULL, "help lists aliases: %s", f.help_text);
	CHECK(strstr(f.help_text, "/history") == NULL && strstr(f.help_text, "/copy") == NULL,
	    "help lists commands the front end lacks: %s", f.help_text);
	CHECK(f.n_help == n - 5, "help has %d lines for %d commands less 5 (history, stats, copy, notices, ab)", f.n_help, n);
	CHECK(strstr(f.help_text, "/lora [N|NAME SCALE]|") && strstr(f.help_text, "/pick a|b|tie|") &&
	    !strstr(f.help_text, "/ab "), "help: /lora and /pick, no /ab without its hook: %s", f.help_text);

	if (!fx) {
		SKIP("fixtures folder not found (set NATTER_FIXTURES)");
		return test_done("test-chatcmd");
	}
	snprintf(path, sizeof(path), "%s/models/aidreams260K-f32.gguf", fx);
	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return test_done("test-chatcmd");
	}
	chat_opts_default(&o);
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0, "%s", err);
	e.c = c;
	e.log = &log;
	e.ops = &ops;
	e.fe = &f;

	CHECK(run(&e, "/set temp 0.25") == CHATCMD_DONE && !f.err, "/set: %s", f.said);
	chat_get_params(c, &sp);
	CHECK(sp.temp > 0.249f && sp.temp < 0.251f, "temp is %g", sp.temp);
	CHECK(run(&e, "/set top_p 7") < 0 && f.err && strstr(f.said, "/set: top-p"), "bad /set: %s", f.said);
	/* A name that is no setting is told as such, whatever its value. */
	CHECK(run(&e, "/set stop x") < 0 && f.err && strstr(f.said, "unknown parameter 'stop'"), "/set stop x: %s", f.said);
	/* Counts are whole numbers: 2.7 is refused, not applied as 2; so is a
	 * value past int's range (converting it was undefined). */
	CHECK(run(&e, "/set top_k 5") == CHATCMD_DONE && run(&e, "/set top_k 2.7") < 0 && f.err &&
	    strstr(f.said, "not a whole number"), "/set top_k 2.7: %s", f.said);
	CHECK(run(&e, "/set top_k -1e20") < 0 && run(&e, "/set max_tokens 3.9") < 0, "/set top_k -1e20, max_tokens 3.9");
	chat_get_params(c, &sp);
	CHECK(sp.top_k == 5 && chat_max_tokens(c) != 3, "refused counts left top_k %d, max_tokens %d", sp.top_k,
	    chat_max_tokens(c));
	CHECK(run(&e, "/set max_tokens 64") == CHATCMD_DONE && chat_max_tokens(c) == 64, "/set max_tokens 64");
	CHECK(run(&e, "/set temperature 0.5") == CHATCMD_DONE, "/set temperature: %s", f.said);
	chat_get_params(c, &sp);
	CHECK(sp.temp == 0.5f, "temperature is temp: %g", sp.temp);
	CHECK(run(&e, "/set penalty_last_n 16") == CHATCMD_DONE, "/set penalty_last_n: %s", f.said);
	chat_get_params(c, &sp);
	CHECK(sp.penalty_last_n == 16, "penalty_last_n %d", sp.penalty_last_n);
	/* /set alone names every setting. */
	CHECK(run(&e, "/set") < 0 && f.err && strstr(f.said, "usage: /set NAME VALUE (temp, top_k, top_p, min_p, "
	    "repeat_penalty, presence_penalty, frequency_penalty, penalty_last_n, seed, max_tokens)"),
	    "/set: %s", f.said);
	/* Seeds exactly (past 2^53 too), "-1" and "random" alike. */
	CHECK(run(&e, "/set seed 12345678901234567891") == CHATCMD_DONE, "/set seed: %s", f.said);
	chat_get_params(c, &sp);
	CHECK(sp.seed == 12345678901234567891ULL, "seed is %llu", (unsigned long long)sp.seed);
	CHECK(run(&e, "/set seed -1") == CHATCMD_DONE, "/set seed -1: %s", f.said);
	chat_get_params(c, &sp);
	CHECK(sp.seed == SAMPLER_SEED_RANDOM, "seed -1 is %llu", (unsigned long long)sp.seed);
	CHECK(run(&e, "/set seed 7") == CHATCMD_DONE && run(&e, "/set seed -2") < 0 && f.err &&
	    strstr(f.said, "seed must be"), "/set seed -2: %s", f.said);
	chat_get_params(c, &sp);
	CHECK(sp.seed == 7, "a refused seed left %llu", (unsigned long long)sp.seed);
	CHECK(run(&e, "/set seed random") == CHATCMD_DONE, "/set seed random: %s", f.said);
	chat_get_params(c, &sp);
	CHECK(sp.seed == SAMPLER_SEED_RANDOM, "seed random is %llu", (unsigned long long)sp.seed);
	CHECK(run(&e, "/regen") == CHATCMD_DONE && f.regen == 1, "/regen");
	CHECK(run(&e, "/clear") == CHATCMD_DONE && f.new_conv == 1, "/clear is /new");
	CHECK(run(&e, "/params   ") == CHATCMD_DONE && f.params == 1, "/params with trailing blanks");
	CHECK(run(&e, "/quit") == CHATCMD_QUIT && run(&e, "/exit") == CHATCMD_QUIT, "/quit, /exit");
	CHECK(run(&e, "/nonsense") < 0 && f.err && !strcmp(f.said, "unknown command /nonsense (try /help)"),
	    "unknown: %s", f.said);
	CHECK(run(&e, "/history") < 0 && f.err && strstr(f.said, "not available"), "lacking: %s", f.said);
	CHECK(run(&e, "/rate up") < 0 && strstr(f.said, "the history is off"), "/rate without history: %s", f.said);
	CHECK(run(&e, "/rate sideways") < 0 && strstr(f.said, "usage: /rate"), "/rate usage: %s", f.said);
	CHECK(run(&e, "/system   Be brief.  ") == CHATCMD_DONE && !strcmp(chat_system(c), "Be brief."),
	    "/system sets '%s'", chat_system(c));
	/* Adapters and A/B without either. */
	CHECK(run(&e, "/lora") == CHATCMD_DONE && strstr(f.said, "no adapters"), "/lora without any: %s", f.said);
	CHECK(run(&e, "/lora 1 0.5") < 0 && f.err && strstr(f.said, "no adapter '1'"), "/lora 1 0.5: %s", f.said);
	CHECK(run(&e, "/lora 1") < 0 && strstr(f.said, "usage: /lora"), "/lora 1: %s", f.said);
	CHECK(run(&e, "/ab") < 0 && strstr(f.said, "not available"), "/ab without its hook: %s", f.said);
	CHECK(run(&e, "/pick a") < 0 && strstr(f.said, "no A/B comparison"), "/pick before /ab: %s", f.said);
	CHECK(run(&e, "/pick maybe") < 0 && strstr(f.said, "usage: /pick a|b|tie"), "/pick maybe: %s", f.said);
	{
		struct chatcmd_variant v;
		char verr[256];
		CHECK(chatcmd_ab_parse(&log, c, "temp 1.5", &v, verr, sizeof(verr)) == 0 && v.sp.temp == 1.5f &&
		    !strcmp(v.setting, "temp 1.5"), "/ab temp 1.5: %s", verr);
		CHECK(chatcmd_ab_parse(&log, c, "", &v, verr, sizeof(verr)) == 0 && !strcmp(v.setting, "seed + 1, temp + 0.3"),
		    "/ab without adapters defaults to next: %s", v.setting);
		CHECK(chatcmd_ab_parse(&log, c, "adapter off", &v, verr, sizeof(verr)) < 0 && strstr(verr, "no adapter"),
		    "/ab adapter without one: %s", verr);
		CHECK(chatcmd_ab_parse(&log, c, "seed -3", &v, verr, sizeof(verr)) < 0 && strstr(verr, "usage: /ab"),
		    "/ab seed -3: %s", verr);
		CHECK(chatcmd_ab_parse(&log, c, "top_p 7", &v, verr, sizeof(verr)) < 0, "/ab top_p 7 is refused");
		CHECK(chatcmd_ab_parse(&log, c, "temp warm", &v, verr, sizeof(verr)) < 0 &&
		    strstr(verr, "/ab temp: 'warm' is not a number (usage: /ab"), "/ab temp warm: %s", verr);
		CHECK(chatcmd_ab_parse(&log, c, "top_p", &v, verr, sizeof(verr)) < 0 &&
		    strstr(verr, "/ab top_p needs a value, a number"), "/ab top_p: %s", verr);
	}
	/* A reply with no record of what made it (the history is off): A/B
	 * refuses to say B differs from it in one setting; a reply
	 * made here is compared against what made it (a regeneration with a
	 * fixed seed takes the next one: 42). */
	{
		struct chatcmd_variant v;
		struct sampler_params now, made;
		struct chat_stats st;
		float sc[CHAT_MAX_ADAPTERS];
		char verr[256];
		chat_add_user(c, "Hi", 2);
		chat_add_message(c, "assistant", "Hello from before.", 18);
		CHECK(chatcmd_ab_base(&log, c, &now, sc, verr, sizeof(verr)) < 0 &&
		    chatcmd_ab_parse(&log, c, "", &v, verr, sizeof(verr)) < 0 &&
		    strstr(verr, "not known"), "/ab on a reply with no record: %s", verr);
		chat_get_params(c, &now);
		now.temp = 0.25f;
		now.seed = 41;
		chat_set_params(c, &now);
		CHECK(chat_regenerate(c, NULL, NULL, &st, verr, sizeof(verr)) == 0, "regenerate: %s", verr);
		now.temp = 0.9f;
		chat_set_params(c, &now);   /* the session moves on; A stays as made */
		CHECK(chatcmd_ab_base(&log, c, &made, sc, verr, sizeof(verr)) == 0 && made.temp == 0.25f &&
		    made.seed == 42 &&
		    chatcmd_ab_parse(&log, c, "", &v, verr, sizeof(verr)) == 0 && v.sp.temp == 0.55f && v.sp.seed == 43 &&
		    v.a_sp.temp == 0.25f && v.a_sp.seed == 42,
		    "/ab on a reply made here: A at temp %.2f seed %llu (parsed: %.2f, %llu), B at %.2f: %s", made.temp,
		    (unsigned long long)made.seed, v.a_sp.temp, (unsigned long long)v.a_sp.seed, v.sp.temp, verr);
		chat_clear(c);
	}

	/* While a reply streams: what changes the conversation is refused,
	 * and nothing is changed. */
	f.busy = 1;
	CHECK(run(&e, "/system other") < 0 && f.err && strstr(f.said, "stop the reply first") &&
	    !strcmp(chat_system(c), "Be brief."), "/system while busy: %s", f.said);
	CHECK(run(&e, "/new") < 0 && f.new_conv == 1, "/new while busy");
	CHECK(run(&e, "/regen") < 0 && f.regen == 1, "/regen while busy");
	/* The last reply stored is not the one being written: nothing to rate yet. */
	CHECK(run(&e, "/rate up") < 0 && f.err && strstr(f.said, "stop the reply first"), "/rate while busy: %s", f.said);
	CHECK(run(&e, "/set temp 0.5") == CHATCMD_DONE, "/set stays live while busy: %s", f.said);
	CHECK(run(&e, "/help") == CHATCMD_DONE && f.help == 1, "/help while busy");
	f.busy = 0;
	CHECK(run(&e, "/system") == CHATCMD_DONE && !strcmp(chat_system(c), "") &&
	    !strcmp(f.said, "system prompt removed"), "/system removes: %s", f.said);

	/* /think: refused, and said why, where the template has no
	 * enable_thinking; set where it has (even while a reply runs: it
	 * applies to the next render). */
	CHECK(run(&e, "/think off") < 0 && f.err && strstr(f.said, "has no enable_thinking") &&
	    chat_think(c) == CHAT_THINK_DEFAULT, "/think without enable_thinking: %s", f.said);
	CHECK(run(&e, "/think") == CHATCMD_DONE && strstr(f.said, "this template has no enable_thinking"), "/think: %s",
	    f.said);
	chat_free(c);
	snprintf(path, sizeof(path), "%s/templates/Qwen-Qwen3.jinja", fx);
	o.template_spec = path;
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0, "Qwen3: %s", err);
	e.c = c;
	f.busy = 1;
	CHECK(run(&e, "/think off") == CHATCMD_DONE && !f.err && chat_think(c) == CHAT_THINK_OFF &&
	    strstr(f.said, "enable_thinking = false"), "/think off: %s", f.said);
	f.busy = 0;
	CHECK(run(&e, "/think") == CHATCMD_DONE && !strcmp(f.said, "enable_thinking: false"), "/think: %s", f.said);
	CHECK(run(&e, "/think on") == CHATCMD_DONE && chat_think(c) == CHAT_THINK_ON, "/think on: %s", f.said);
	CHECK(run(&e, "/think maybe") < 0 && f.err && strstr(f.said, "usage: /think on|off") && chat_think(c) == CHAT_THINK_ON,
	    "/think maybe: %s", f.said);
	{
		char *r = NULL;
		chat_add_user(c, "Hi", 2);
		CHECK(run(&e, "/think off") == CHATCMD_DONE && (r = chat_render(c, err, sizeof(err))) &&
		    strstr(r, "<think>\n\n</think>"), "the next render has the empty think block");
		free(r);
	}

	chat_free(c);
	test_ab_changed(m, fx);
	test_ab_resumed_think(m, fx);
	snprintf(path, sizeof(path), "%s/models/aidreams260K-f32.gguf", fx);
	test_ab_resumed(m, path);
	test_rate_shown(m);
	llm_model_free(m);
	return test_done("test-chatcmd");
}
