/* test-chat.c -- chat sessions: KV reuse across turns, context overflow, live changes, stop strings, alternatives, edits. */
#include "config.h"

#include <math.h>

#include "natter/chat-engine.h"
#include "natter/chat.h"
#include "natter/think.h"
#include "natter/llm.h"
#include "natter/tok.h"
#include "test.h"

static int
count_piece(void *ctx, const char *p, size_t n)
{
	(void)p;
	*(size_t *)ctx += n;
	return 0;
}

/* Turn two evaluates only what is new, and its logits equal a fresh run's. */
static void
test_reuse(const char *path)
{
	struct llm_model *m;
	struct chat *c;
	struct chat_opts o;
	struct chat_stats s1, s2;
	char err[512];
	size_t got = 0;

	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return;
	}
	chat_opts_default(&o);
	o.sp.temp = 0;
	o.max_tokens = 12;
	o.n_threads = 2;
	o.system_prompt = "Dream.";
	o.n_ctx = 512;    /* room for both turns: this test is about reuse, not overflow */
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0, "chat_new: %s", err);
	chat_add_user(c, "Hello there", 11);
	CHECK(chat_generate(c, count_piece, &got, &s1, err, sizeof(err)) == 0, "turn 1: %s", err);
	CHECK(s1.n_reused == 0 && s1.n_prompt > 0 && s1.n_gen > 0, "turn 1 evaluates its prompt (%d)", s1.n_prompt);
	chat_add_user(c, "And again", 9);
	CHECK(chat_generate(c, count_piece, &got, &s2, err, sizeof(err)) == 0, "turn 2: %s", err);
	{
		int n;
		const int32_t *toks = chat_prompt_tokens(c, &n);
		const float *reused = chat_prompt_logits(c);
		int nv = llm_model_hparams(m)->n_vocab, am = 0, bm = 0;
		/* Turn 1's prompt and every reply token but the last sampled one are cached. */
		/* Cached after turn 1: its prompt and every reply token that was fed
		 * back (all of them when the reply hit the length limit). */
		int cached = s1.n_prompt + s1.n_gen;
		printf("turn 1: %d prompt + %d reply tokens; turn 2: %d new + %d reused of %d\n",
		    s1.n_prompt, s1.n_gen, s2.n_prompt, s2.n_reused, n);
		CHECK(s2.n_prompt + s2.n_reused == n, "turn 2 prompt accounting");
		CHECK(s1.stop == CHAT_STOP_LIMIT, "turn 1 ran to its limit (%s)", chat_stop_name(s1.stop));
		CHECK(s2.n_reused == cached, "turn 2 reuses turn 1's prompt and reply exactly (%d of %d)", s2.n_reused, cached);
		/* What is evaluated is only the new text: end of turn 1, the user's
		 * message, the generation prompt. */
		CHECK(s2.n_prompt == n - cached, "turn 2 evaluates only its %d new tokens (%d)", n - cached, s2.n_prompt);

		struct llm_ctx *x = llm_ctx_new(m, 512, 64, 2, err, sizeof(err));
		float *fresh = malloc(nv * sizeof(float));
		CHECK(x && llm_eval(x, toks, n, fresh, 0, err, sizeof(err)) == 0, "fresh eval: %s", err);
		double maxd = 0, maxv = 0;
		for (int j = 0; j < nv; j++) {
			double d = fabs((double)reused[j] - fresh[j]);
			if (d > maxd) maxd = d;
			if (fabs(fresh[j]) > maxv) maxv = fabs(fresh[j]);
			if (fresh[j] > fresh[am]) am = j;
			if (reused[j] > reused[bm]) bm = j;
		}
		printf("turn 2 logits with the cache vs from scratch: max |d| %.3g (max |logit| %.3g), argmax %d / %d\n",
		    maxd, maxv, bm, am);
		/* Equal up to float rounding (different batch shapes sum in other orders). */
		CHECK(maxd <= 1e-4 * (maxv > 1 ? maxv : 1), "logits after reuse equal a fresh evaluation (max |d| %g)", maxd);
		CHECK(am == bm, "same argmax");
		free(fresh);
		llm_ctx_free(x);
	}
	chat_free(c);
	llm_model_free(m);
}

static int overflow_notices;

static void
on_notice(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
	overflow_notices++;
}

/* A conversation three times the context keeps answering and keeps its
 * system prompt.  When a turn drops the oldest ones, the window moves far
 * enough that the next turn fits as it is and extends the cache: no two
 * turns in a row drop messages, and a turn after one that did reuses at
 * least the previous prompt (the model's replies are valid text, so it
 * reuses them too). */
static void
test_overflow(const char *path)
{
	struct llm_model *m;
	struct chat *c;
	struct chat_opts o;
	char err[512];
	int total = 0, ok = 1, turns = 0, drop_turns = 0, in_a_row = 0, after = 0, after_bad = 0, whole = 0;
	int prev_dropped = 0, prev_prompt = 0, prev_used = 0;

	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return;
	}
	chat_opts_default(&o);
	o.max_tokens = 16;
	o.n_threads = 2;
	o.sp.seed = 3;
	o.system_prompt = "SYSTEM-PROMPT-KEPT";
	o.n_ctx = 384;   /* beyond its training (128): room for several turns after an overflow */
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0, "chat_new: %s", err);
	chat_set_notice(c, on_notice, NULL);
	while (total < 3 * chat_ctx_size(c) && turns < 200) {
		struct chat_stats st;
		char msg[64];
		snprintf(msg, sizeof(msg), "Tell me dream number %d please", turns);
		chat_add_user(c, msg, strlen(msg));
		if (chat_generate(c, NULL, NULL, &st, err, sizeof(err)) < 0) {
			ok = 0;
			fprintf(stderr, "turn %d: %s\n", turns, err);
			break;
		}
		total += st.n_prompt + st.n_gen;
		turns++;
		if (st.n_ctx_used > st.n_ctx)
			ok = 0;
		if (st.n_dropped > 0) {
			drop_turns++;
			in_a_row += prev_dropped;
		} else if (drop_turns > 0) {
			after++;
			after_bad += st.n_reused < prev_prompt;
			whole += st.n_reused == prev_used;
		}
		prev_dropped = st.n_dropped > 0;
		prev_prompt = st.prompt_tokens;
		prev_used = st.n_ctx_used;
	}
	char *r = chat_render(c, err, sizeof(err));
	printf("overflow: %d turns, %d tokens through a context of %d, %d drop notices, %d messages kept\n",
	    turns, total, chat_ctx_size(c), overflow_notices, chat_n_messages(c));
	CHECK(ok && total >= 3 * chat_ctx_size(c), "every turn answered (%d tokens)", total);
	CHECK(overflow_notices > 0, "the user was told about dropped turns");
	printf("overflow: %d turns dropped messages, %d right after another; %d of the %d turns after one reused the "
	    "previous prompt and reply whole, %d not even the prompt\n", drop_turns, in_a_row, whole, after, after_bad);
	CHECK(drop_turns >= 2 && in_a_row == 0 && after >= 2 && after_bad == 0 && whole >= 1,
	    "after an overflow the next turns reuse the cache (%d drops, %d in a row, %d after, %d of them reusing "
	    "less than the previous prompt)", drop_turns, in_a_row, after, after_bad);
	CHECK(r && strstr(r, "SYSTEM-PROMPT-KEPT"), "the system prompt survives");
	CHECK(!strcmp(chat_system(c), "SYSTEM-PROMPT-KEPT"), "chat_system unchanged");
	free(r);
	/* What the last reply was fed, recorded: the system prompt and the
	 * messages after the dropped ones, not the dropped ones. */
	{
		int w = chat_window_start(c), n = chat_n_messages(c);
		const char *role;
		printf("overflow: the last reply was fed %d messages; %d earlier ones were dropped\n",
		    chat_prompt_n_messages(c) - 1, chat_prompt_dropped(c));
		CHECK(w > 0 && chat_prompt_dropped(c) == w, "dropped messages recorded (%d, window %d)", chat_prompt_dropped(c), w);
		CHECK(chat_prompt_n_messages(c) == 1 + (n - 1 - w), "fed: the system prompt and messages %d..%d", w, n - 2);
		CHECK(!strcmp(chat_prompt_message(c, 0, &role), "SYSTEM-PROMPT-KEPT") && !strcmp(role, "system") &&
		    !strcmp(chat_prompt_message(c, 1, NULL), chat_message_content(c, w)), "the first fed message");
		CHECK(!strstr(chat_prompt_text(c, NULL), "dream number 0 ") && strstr(chat_prompt_text(c, NULL),
		    "SYSTEM-PROMPT-KEPT"), "the dropped turns are not in the prompt text");
	}

	/* A single message longer than the context: a clear error, the session usable. */
	{
		char *big = malloc(8001);
		struct chat_stats st;
		memset(big, 'a', 8000);
		big[8000] = 0;
		for (int i = 0; i < 8000; i += 5)
			big[i] = ' ';
		int n = chat_n_messages(c);
		chat_add_user(c, big, 8000);
		int rc = chat_generate(c, NULL, NULL, &st, err, sizeof(err));
		CHECK(rc < 0 && strstr(err, "more than the context"), "too-long message refused: %s", err);
		/* By its code, for a front end that answers it otherwise (serve's context_length_exceeded). */
		CHECK(rc == CHAT_ERR_CONTEXT, "the refusal's code: %d, not CHAT_ERR_CONTEXT", rc);
		CHECK(chat_n_messages(c) == n && !strcmp(chat_message_role(c, n - 1), "assistant"),
		    "the refused message is not left in the session (%d messages, %d before)", chat_n_messages(c), n);
		chat_add_user(c, "short", 5);
		CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0, "session still works: %s", err);
		free(big);
	}
	chat_free(c);
	llm_model_free(m);
}

struct live {
	struct chat *c;
	int pieces;
};

static int
live_piece(void *ctx, const char *p, size_t n)
{
	struct live *l = ctx;
	(void)p;
	(void)n;
	if (++l->pieces == 3)
		chat_set_max_tokens(l->c, 5);   /* as the UI would, while the reply streams */
	return 0;
}

static const char *stop_seen;

static int
stop_piece(void *ctx, const char *p, size_t n)
{
	struct { char buf[4096]; size_t n; } *acc = ctx;
	if (acc->n + n < sizeof(acc->buf)) {
		memcpy(acc->buf + acc->n, p, n);
		acc->n += n;
		acc->buf[acc->n] = 0;
	}
	return 0;
}

static void
test_live_and_stops(const char *path)
{
	struct llm_model *m;
	struct chat *c;
	struct chat_opts o;
	struct chat_stats st;
	struct live l;
	char err[512];

	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return;
	}
	chat_opts_default(&o);
	o.max_tokens = 40;
	o.n_threads = 2;
	o.sp.seed = 9;
	o.template_spec = "zephyr";
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0, "chat_new: %s", err);
	l.c = c;
	l.pieces = 0;
	chat_add_user(c, "Once upon a time", 16);
	CHECK(chat_generate(c, live_piece, &l, &st, err, sizeof(err)) == 0, "generate: %s", err);
	printf("live: max_tokens lowered to 5 after 3 pieces; the reply has %d tokens (%s)\n", st.n_gen,
	    chat_stop_name(st.stop));
	CHECK(st.n_gen == 5 && st.stop == CHAT_STOP_LIMIT, "a limit changed mid-reply applies at once (%d)", st.n_gen);

	/* Stop strings: greedy output, then stop at its own second word. */
	{
		struct { char buf[4096]; size_t n; } acc = { "", 0 }, acc2 = { "", 0 };
		struct sampler_params p;
		chat_get_params(c, &p);
		p.temp = 0;
		chat_set_params(c, &p);
		chat_set_max_tokens(c, 30);
		CHECK(chat_regenerate(c, stop_piece, &acc, &st, err, sizeof(err)) == 0, "regen: %s", err);
		const char *full = chat_message_content(c, chat_n_messages(c) - 1);
		CHECK(acc.n == strlen(full) && !memcmp(acc.buf, full, acc.n), "streamed pieces equal the stored reply");
		/* Choose a stop string from the middle of the greedy reply. */
		size_t L = strlen(full);
		size_t at = L / 3;
		while (at < L && !((full[at] >= 'a' && full[at] <= 'z') || (full[at] >= 'A' && full[at] <= 'Z')))
			at++;
		/* A reply too short to cut is a failure, not a skipped case. */
		CHECK(at + 4 < L, "the greedy reply (%zu bytes: \"%s\") is long enough to take a stop string from", L, full);
		if (at + 4 < L) {
			char stop[8];
			memcpy(stop, full + at, 3);
			stop[3] = 0;
			struct chat *c2;
			struct chat_opts o2 = o;
			o2.sp.temp = 0;
			o2.max_tokens = 30;
			o2.stop[0] = stop;
			CHECK(chat_new(m, &o2, &c2, err, sizeof(err)) == 0, "chat_new: %s", err);
			chat_add_user(c2, "Once upon a time", 16);
			CHECK(chat_generate(c2, stop_piece, &acc2, &st, err, sizeof(err)) == 0, "generate: %s", err);
			const char *cut = chat_message_content(c2, 0 + 1);
			stop_seen = strstr(full, stop);
			printf("stop string \"%s\": reply cut to %zu of %zu bytes (%s)\n", stop, strlen(cut), L,
			    chat_stop_name(st.stop));
			CHECK(st.stop == CHAT_STOP_STRING, "stopped by the stop string");
			CHECK(strlen(cut) == (size_t)(stop_seen - full) && !memcmp(cut, full, strlen(cut)),
			    "the reply ends right before the stop string");
			CHECK(acc2.n == strlen(cut) && !strstr(acc2.buf, stop), "no part of the stop string was shown");
			chat_free(c2);
		}
		/* Two stop strings that one token completes, the one listed first
		 * starting later: the reply is cut where the first in the text
		 * starts, not where the first in the list does. */
		{
			const size_t p1 = at;
			char late[16] = "", early[16] = "";
			for (size_t k = 2; k <= 8 && p1 + k + 1 <= L && !late[0]; k++) {
				memcpy(late, full + p1 + 1, k);
				late[k] = 0;
				memcpy(early, full + p1, k + 1);
				early[k + 1] = 0;
				if (strstr(full, late) != full + p1 + 1 || strstr(full, early) != full + p1)
					late[0] = 0;
			}
			CHECK(late[0], "two overlapping stop strings found in the greedy reply \"%s\"", full);
			if (late[0]) {
				struct chat *c3;
				struct chat_opts o3 = o;
				struct { char buf[4096]; size_t n; } acc3 = { "", 0 };
				o3.sp.temp = 0;
				o3.max_tokens = 30;
				o3.stop[0] = late;
				o3.stop[1] = early;
				CHECK(chat_new(m, &o3, &c3, err, sizeof(err)) == 0, "chat_new: %s", err);
				chat_add_user(c3, "Once upon a time", 16);
				stop_seen = full + p1;
				CHECK(chat_generate(c3, stop_piece, &acc3, &st, err, sizeof(err)) == 0, "generate: %s", err);
				const char *cut = chat_message_content(c3, 1);
				CHECK(st.stop == CHAT_STOP_STRING && strlen(cut) == p1 && !memcmp(cut, full, p1),
				    "stops \"%s\" then \"%s\": cut at %zu (got %zu: \"%s\")", late, early, p1, strlen(cut), cut);
				chat_free(c3);
			}
		}
	}
	chat_free(c);
	llm_model_free(m);
}

/* The logits a fresh context gives for the last prompt's tokens equal the
 * session's (the KV cache it reused held the right thing). */
static void
check_reuse_exact(struct llm_model *m, struct chat *c, const char *what)
{
	int n, nv = llm_model_hparams(m)->n_vocab;
	const int32_t *toks = chat_prompt_tokens(c, &n);
	const float *reused = chat_prompt_logits(c);
	char err[256];
	struct llm_ctx *x = llm_ctx_new(m, 512, 64, 2, err, sizeof(err));
	float *fresh = malloc(nv * sizeof(float));
	double maxd = 0, maxv = 0;
	CHECK(x && fresh && llm_eval(x, toks, n, fresh, 0, err, sizeof(err)) == 0, "%s: fresh eval: %s", what, err);
	for (int j = 0; x && fresh && j < nv; j++) {
		double d = fabs((double)reused[j] - fresh[j]);
		if (d > maxd)
			maxd = d;
		if (fabs(fresh[j]) > maxv)
			maxv = fabs(fresh[j]);
	}
	CHECK(maxd <= 1e-4 * (maxv > 1 ? maxv : 1), "%s: logits after reuse equal a fresh evaluation (max |d| %g)",
	    what, maxd);
	free(fresh);
	llm_ctx_free(x);
}

/* Alternatives and edits in the session: a regeneration keeps the old
 * reply, either can be selected, an edit branches; the prompt fed is
 * recorded exactly; the KV cache is reused and stays right. */
static void
test_alternatives_and_edits(const char *path)
{
	struct llm_model *m;
	struct chat *c;
	struct chat_opts o;
	struct chat_stats st;
	char err[512], *r0 = NULL, *r1 = NULL, *want;
	size_t plen;
	const char *role;

	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return;
	}
	chat_opts_default(&o);
	o.max_tokens = 10;
	o.n_threads = 2;
	o.n_ctx = 512;
	o.sp.seed = 21;
	o.system_prompt = "Dream.";
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0, "chat_new: %s", err);
	CHECK(chat_regenerate(c, NULL, NULL, &st, err, sizeof(err)) < 0 && strstr(err, "no reply"),
	    "nothing to regenerate: %s", err);
	chat_add_user(c, "Hello there", 11);
	chat_set_message_tag(c, 0, 101);
	want = chat_render(c, err, sizeof(err));
	CHECK(chat_check(c, err, sizeof(err)) == 0, "chat_check: %s", err);
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0, "turn 1: %s", err);
	CHECK(want && !strcmp(chat_prompt_text(c, &plen), want) && plen == strlen(want),
	    "the recorded prompt is the rendering fed");
	free(want);
	CHECK(chat_prompt_n_messages(c) == 2 && !strcmp(chat_prompt_message(c, 0, &role), "Dream.") &&
	    !strcmp(role, "system") && !strcmp(chat_prompt_message(c, 1, &role), "Hello there") && !strcmp(role, "user") &&
	    chat_prompt_dropped(c) == 0, "the recorded messages: the system prompt and the user's");
	{
		int n;
		chat_prompt_tokens(c, &n);
		CHECK(st.prompt_tokens == n && st.prompt_tokens == st.n_prompt + st.n_reused, "prompt tokens %d", st.prompt_tokens);
	}
	r0 = strdup(chat_message_content(c, 1));
	chat_set_alt_tag(c, 1, 0, 201);
	chat_set_message_tag(c, 1, 200);
	/* A new seed for the regeneration: the same one would repeat the reply. */
	{
		struct sampler_params p;
		chat_get_params(c, &p);
		p.seed = 22;
		chat_set_params(c, &p);
	}
	CHECK(chat_regenerate(c, NULL, NULL, &st, err, sizeof(err)) == 0, "regenerate: %s", err);
	r1 = strdup(chat_message_content(c, 1));
	printf("alternatives: \"%s\" / \"%s\"\n", r0, r1);
	CHECK(chat_n_messages(c) == 2 && chat_alt_count(c, 1) == 2 && chat_alt_index(c, 1) == 1 &&
	    !strcmp(chat_alt_content(c, 1, 0), r0) && !strcmp(chat_alt_content(c, 1, 1), r1),
	    "the regeneration is a second alternative; the first is kept");
	CHECK(chat_prompt_n_messages(c) == 2 && !strcmp(chat_prompt_message(c, 1, NULL), "Hello there"),
	    "a regeneration is fed what the first reply was, without it");
	CHECK(chat_message_tag(c, 0) == 101 && chat_message_tag(c, 1) == 200 && chat_alt_tag(c, 1, 0) == 201 &&
	    chat_alt_tag(c, 1, 1) == 0, "tags stay with their message and alternative");
	CHECK(strcmp(r0, r1) != 0, "another seed, another reply");
	/* Flip back to the first reply and go on: the next prompt has it. */
	CHECK(chat_alt_select(c, 1, 0) == 0 && !strcmp(chat_message_content(c, 1), r0) &&
	    chat_alt_select(c, 1, 2) < 0 && chat_alt_select(c, 0, 1) < 0, "select an alternative; bad ones refused");
	chat_add_user(c, "And again", 9);
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0, "turn 2: %s", err);
	CHECK(strstr(chat_prompt_text(c, NULL), r0) != NULL && (!*r1 || strstr(chat_prompt_text(c, NULL), r1) == NULL) &&
	    !strcmp(chat_prompt_message(c, 2, NULL), r0), "the next prompt is fed the selected alternative");
	CHECK(st.n_reused > 0, "the cache is reused up to the change (%d of %d)", st.n_reused, st.prompt_tokens);
	check_reuse_exact(m, c, "after selecting an alternative");
	/* Edit the second user message: the conversation branches there. */
	chat_set_message_tag(c, 2, 300);
	CHECK(chat_edit(c, 1, "x", 1) < 0 && chat_edit(c, 9, "x", 1) < 0, "only user messages can be edited");
	CHECK(chat_edit(c, 2, "Tell me more", 12) == 0 && chat_n_messages(c) == 3 &&
	    !strcmp(chat_message_content(c, 2), "Tell me more") && chat_message_tag(c, 2) == 0, "edit: %s", err);
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0, "after the edit: %s", err);
	CHECK(strstr(chat_prompt_text(c, NULL), "Tell me more") && !strstr(chat_prompt_text(c, NULL), "And again"),
	    "the edited message is fed, the old one not");
	CHECK(st.n_reused > 0, "the cache is reused up to the edit (%d of %d)", st.n_reused, st.prompt_tokens);
	check_reuse_exact(m, c, "after an edit");
	/* chat_check changes nothing. */
	{
		char *big = malloc(6001);
		int n = chat_n_messages(c), w = chat_window_start(c);
		memset(big, 'a', 6000);
		big[6000] = 0;
		for (int i = 0; i < 6000; i += 5)
			big[i] = ' ';
		chat_add_user(c, big, 6000);
		CHECK(chat_check(c, err, sizeof(err)) < 0 && strstr(err, "more than the context"), "chat_check refuses: %s", err);
		CHECK(chat_n_messages(c) == n + 1 && chat_window_start(c) == w, "chat_check changed nothing");
		chat_pop(c);
		free(big);
	}
	free(r0);
	free(r1);
	chat_free(c);
	llm_model_free(m);
}

struct stopper {
	struct chat *c;
	int at, pieces, by_return;
	char buf[4096];
	size_t n;
};

/* Stops the reply at piece AT: by returning nonzero (as chat --plain's
 * Ctrl-C does), or by calling chat_cancel (as another thread would, at
 * that moment). */
static int
stop_at_piece(void *ctx, const char *p, size_t n)
{
	struct stopper *s = ctx;
	if (s->n + n < sizeof(s->buf)) {
		memcpy(s->buf + s->n, p, n);
		s->n += n;
		s->buf[s->n] = 0;
	}
	if (++s->pieces == s->at) {
		if (s->by_return)
			return 1;
		chat_cancel(s->c);
	}
	return 0;
}

static char notice_seen[256];

/* Takes the notice; with CTX set, stops the generation right then (the
 * prompt is built and not yet read). */
static void
notice_and_stop(void *ctx, const char *msg)
{
	snprintf(notice_seen, sizeof(notice_seen), "%s", msg);
	if (ctx)
		chat_cancel(ctx);
}

/* Every stop at a known point, none timed: before the reply starts, from
 * the piece callback both ways, while a regeneration reads its prompt.
 * Each keeps what was produced, and the next reply is not stopped. */
static void
test_stops(const char *path)
{
	struct llm_model *m;
	struct chat *c;
	struct chat_opts o;
	struct chat_stats st;
	char err[512];

	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return;
	}
	chat_opts_default(&o);
	o.max_tokens = 20;
	o.n_threads = 2;
	o.n_ctx = 512;
	o.sp.seed = 4;
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0, "chat_new: %s", err);

	/* A stop pressed while the front end starts the reply is not lost. */
	chat_add_user(c, "Once upon a time", 16);
	chat_cancel(c);
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0, "generate: %s", err);
	CHECK(st.stop == CHAT_STOP_CANCEL && st.n_gen == 0 && chat_n_messages(c) == 2 &&
	    !strcmp(chat_message_content(c, 1), ""), "a stop before the start stops the reply at once (%s, %d tokens)",
	    chat_stop_name(st.stop), st.n_gen);
	CHECK(st.seed == 4, "the stopped reply is recorded with the session's seed, 4 (%llu)",
	    (unsigned long long)st.seed);
	CHECK(chat_regenerate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && st.stop != CHAT_STOP_CANCEL &&
	    st.n_gen > 0, "the stop was used up: the next reply runs (%s)", chat_stop_name(st.stop));

	/* A stop that came after its reply had ended is forgotten by
	 * chat_cancel_reset (what a front end calls when it learns of the
	 * end), so the next reply runs. */
	chat_add_user(c, "Late", 4);
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0, "generate: %s", err);
	chat_cancel(c);
	chat_cancel_reset(c);
	chat_add_user(c, "Next", 4);
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && st.stop != CHAT_STOP_CANCEL && st.n_gen > 0,
	    "a late stop, reset, does not stop the next reply (%s)", chat_stop_name(st.stop));

	/* Stopped from the piece callback: by its return value, and by
	 * chat_cancel; both while the token is being evaluated. */
	for (int by_return = 1; by_return >= 0; by_return--) {
		struct stopper sp = { c, 3, 0, by_return, "", 0 };
		chat_add_user(c, "Tell me more", 12);
		CHECK(chat_generate(c, stop_at_piece, &sp, &st, err, sizeof(err)) == 0,
		    "stopped by %s: returns the reply (%s)", by_return ? "the callback" : "chat_cancel", err);
		printf("stop at piece 3 (%s): %d tokens, \"%s\"\n", by_return ? "callback" : "chat_cancel", st.n_gen, sp.buf);
		CHECK(st.stop == CHAT_STOP_CANCEL && st.n_gen == 3, "stopped at the third token (%d, %s)", st.n_gen,
		    chat_stop_name(st.stop));
		CHECK(!strcmp(chat_message_content(c, chat_n_messages(c) - 1), sp.buf),
		    "the reply is what was shown");
		CHECK(chat_ctx_used(c) == st.prompt_tokens + 2, "the cache holds the prompt and the tokens fed back "
		    "(%d of %d + 2)", chat_ctx_used(c), st.prompt_tokens);
	}
	chat_add_user(c, "And then", 8);
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && st.stop != CHAT_STOP_CANCEL,
	    "the next reply runs: %s", err);
	check_reuse_exact(m, c, "after stopped replies");

	/* A fixed seed: the regeneration moves on, and says so. */
	{
		char first[4096];
		struct sampler_params p;
		snprintf(first, sizeof(first), "%s", chat_message_content(c, chat_n_messages(c) - 1));
		/* The reply was made with the session's seed (5: the regeneration
		 * above moved it from 4); make that 4 again for this turn's reply. */
		chat_get_params(c, &p);
		CHECK(p.seed == 5, "the first regeneration moved the seed to 5 (%llu)", (unsigned long long)p.seed);
		chat_pop(c);
		p.seed = 4;
		chat_set_params(c, &p);
		CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && st.seed == 4, "the reply with seed 4");
		snprintf(first, sizeof(first), "%s", chat_message_content(c, chat_n_messages(c) - 1));
		notice_seen[0] = 0;
		chat_set_notice(c, notice_and_stop, NULL);
		CHECK(chat_regenerate(c, NULL, NULL, &st, err, sizeof(err)) == 0, "regenerate: %s", err);
		chat_get_params(c, &p);
		printf("fixed seed 4: regenerated with seed %llu (\"%s\"): \"%s\" / \"%s\"\n", (unsigned long long)st.seed,
		    notice_seen, first, chat_message_content(c, chat_n_messages(c) - 1));
		CHECK(st.seed == 5 && p.seed == 5, "the regeneration used seed 5 (%llu) and kept it",
		    (unsigned long long)st.seed);
		CHECK(strstr(notice_seen, "seed 4") && strstr(notice_seen, "seed 5"), "the user is told: %s", notice_seen);
		CHECK(strcmp(first, chat_message_content(c, chat_n_messages(c) - 1)) != 0, "another reply");
		/* Stopped while the regeneration reads its prompt. */
		chat_set_notice(c, notice_and_stop, c);
		CHECK(chat_regenerate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && st.stop == CHAT_STOP_CANCEL &&
		    st.n_gen == 0, "stopped while reading the prompt (%s, %d)", chat_stop_name(st.stop), st.n_gen);
		/* Nothing was sampled: recorded with the seed it was to be
		 * sampled with (moved to 6 by this regeneration), not 0. */
		chat_get_params(c, &p);
		CHECK(st.seed == 6 && p.seed == 6, "the stopped regeneration is recorded with seed 6 (%llu, session %llu)",
		    (unsigned long long)st.seed, (unsigned long long)p.seed);
		CHECK(chat_alt_count(c, chat_n_messages(c) - 1) == 3, "the stopped regeneration is an (empty) alternative");
		chat_set_notice(c, NULL, NULL);
		chat_add_user(c, "Again", 5);
		CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && st.stop != CHAT_STOP_CANCEL, "then: %s", err);
		check_reuse_exact(m, c, "after a stop while reading the prompt");
	}
	/* A random seed is left alone. */
	{
		struct sampler_params p;
		chat_get_params(c, &p);
		p.seed = SAMPLER_SEED_RANDOM;
		chat_set_params(c, &p);
		notice_seen[0] = 0;
		chat_set_notice(c, notice_and_stop, NULL);
		CHECK(chat_regenerate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && notice_seen[0] == 0,
		    "no notice with a random seed: %s", notice_seen);
		chat_set_notice(c, NULL, NULL);
	}
	chat_free(c);
	llm_model_free(m);
}

/* --- the engine interface, over a scripted engine: what the session does
 * on its own (stop strings across pieces, the window, notices, cancel)
 * does not depend on the in-process engine. --- */

struct fake {
	int capacity;              /* turns that fit (the system prompt counts) */
	int n_prepared;            /* turns of the last prepare */
	char prompt[256];          /* "role:content|..." of the last run */
	char pend[256];
	const char *const *pieces; /* what each run produces */
	int sent_top_k;
	int runs, freed;
	int cancel_after;          /* stops itself after this many pieces when the session is cancelled */
	int nomem;                 /* 1: prepare, 2: run, 3: prepare after a run's refusal fails, out of memory */
	int refused;               /* a run refused the prompt as too long */
	int run_fits;              /* 0, or the turns a run takes: more are refused as too long, as a server does */
	const size_t *lens;        /* each piece's length (NUL bytes in it), or NULL: strlen */
};

static int
fake_prepare(void *e, const struct chat_turn *t, int n, int max_tokens, int think, char *err, size_t errlen)
{
	struct fake *f = e;
	size_t k = 0;
	(void)max_tokens;
	(void)think;
	f->n_prepared = n;
	f->pend[0] = 0;
	if (f->nomem == 1 || (f->nomem == 3 && f->refused)) {
		snprintf(err, errlen, "out of memory");
		return CHAT_ERR_NOMEM;
	}
	for (int i = 0; i < n; i++)
		k += (size_t)snprintf(f->pend + k, k < sizeof(f->pend) ? sizeof(f->pend) - k : 0, "%s:%s|", t[i].role,
		    t[i].content);
	if (n <= f->capacity)
		return CHAT_FIT_OK;
	snprintf(err, errlen, "fake: %d turns do not fit in %d", n, f->capacity);
	return CHAT_FIT_NO;
}

static int
fake_run(void *e, struct chat_run *r, struct chat_stats *st, char *err, size_t errlen)
{
	struct fake *f = e;
	if (f->nomem == 2) {
		snprintf(err, errlen, "out of memory");
		return CHAT_ERR_NOMEM;
	}
	if (f->run_fits && f->n_prepared > f->run_fits) {
		f->refused = 1;
		snprintf(err, errlen, "fake: %d turns exceed the context", f->n_prepared);
		return CHAT_ERR_CONTEXT;
	}
	snprintf(f->prompt, sizeof(f->prompt), "%s", f->pend);
	f->runs++;
	st->stop = CHAT_STOP_EOG;
	for (int i = 0; f->pieces[i]; i++) {
		if (chat_run_cancelled(r)) {
			st->stop = CHAT_STOP_CANCEL;
			break;
		}
		st->n_gen++;
		if (chat_run_piece(r, f->pieces[i], f->lens ? f->lens[i] : strlen(f->pieces[i])) == CHAT_RUN_STOP) {
			st->stop = CHAT_STOP_STRING;
			break;
		}
	}
	return 0;
}

static void fake_free(void *e) { ((struct fake *)e)->freed++; }
static void fake_info(void *e, struct chat_engine_info *i) { (void)e; i->kind = "fake"; i->template_name = "none"; }
static const char *fake_prompt_text(void *e, size_t *len) { *len = strlen(((struct fake *)e)->prompt); return ((struct fake *)e)->prompt; }
static char *fake_render(void *e, const struct chat_turn *t, int n, int think, char *err, size_t errlen)
{
	(void)e; (void)t; (void)think; (void)err; (void)errlen;
	return n > 0 ? strdup(t[n - 1].content) : strdup("");
}
static int fake_zero(void *e) { (void)e; return 0; }
static int fake_param_sent(void *e, const char *name) { return strcmp(name, "top_k") || ((struct fake *)e)->sent_top_k; }

static const struct chat_engine_ops fake_ops = {
	.kind = "fake", .prepare = fake_prepare, .run = fake_run, .free = fake_free, .info = fake_info,
	.prompt_text = fake_prompt_text, .render = fake_render, .ctx_used = fake_zero, .ctx_size = fake_zero,
	.param_sent = fake_param_sent,
};

struct collect {
	char text[256];
	int calls;
};

static int
collect_piece(void *ctx, const char *p, size_t n)
{
	struct collect *c = ctx;
	size_t l = strlen(c->text);
	snprintf(c->text + l, sizeof(c->text) - l, "%.*s", (int)n, p);
	c->calls++;
	return 0;
}

static int n_notices;
static void count_notice(void *ctx, const char *msg) { (void)ctx; (void)msg; n_notices++; }

static void
test_engine_interface(void)
{
	static const char *const script[] = { "Hel", "lo S", "TO", "P never shown", NULL };
	static const char *const plain[] = { "a", "b", NULL };
	struct fake f = { 3, 0, "", "", script, 0, 0, 0, 0, 0, 0, 0, NULL };
	struct chat_opts o;
	struct chat_engine_info info;
	struct chat_stats st;
	struct collect got = { "", 0 };
	struct chat *c;
	char err[256];
	size_t len;

	chat_opts_default(&o);
	o.system_prompt = "Be brief.";
	o.stop[0] = "STOP";
	CHECK(chat_new_engine(&fake_ops, &f, &o, &c, err, sizeof(err)) == 0, "chat_new_engine: %s", err);
	chat_engine_info(c, &info);
	CHECK(!strcmp(info.kind, "fake") && !strcmp(chat_template_name(c), "none") && !chat_template_source(c),
	    "the engine describes itself");
	CHECK(chat_ctx_size(c) == 0 && chat_param_sent(c, "top_k") == 0 && chat_param_sent(c, "temp") == 1,
	    "unknown context, a parameter not sent");
	chat_add_user(c, "hi", 2);
	CHECK(chat_generate(c, collect_piece, &got, &st, err, sizeof(err)) == 0, "generate: %s", err);
	/* The stop string spans three pieces: what precedes it is shown, it is not. */
	CHECK(!strcmp(got.text, "Hello ") && !strcmp(chat_message_content(c, 1), "Hello ") &&
	    st.stop == CHAT_STOP_STRING, "stop string across pieces: [%s] [%s] %s", got.text,
	    chat_message_content(c, 1), chat_stop_name(st.stop));
	CHECK(!strcmp(chat_prompt_text(c, &len), "system:Be brief.|user:hi|") && len == strlen(f.prompt),
	    "the prompt is the engine's: %s", chat_prompt_text(c, NULL));
	CHECK(chat_prompt_n_messages(c) == 2 && st.n_ctx == 0 && st.ttft_ms >= 0, "fed two messages");
	/* The window: a fourth turn does not fit; the oldest pair is dropped
	 * and the front end told. */
	f.pieces = plain;
	chat_set_notice(c, count_notice, NULL);
	chat_add_user(c, "again", 5);
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0, "turn 2: %s", err);
	CHECK(chat_window_start(c) == 2 && chat_prompt_dropped(c) == 2 && n_notices == 1 && st.n_dropped == 2 &&
	    !strcmp(f.prompt, "system:Be brief.|user:again|"), "oldest turn dropped: first %d, %s",
	    chat_window_start(c), f.prompt);
	CHECK(!strcmp(chat_message_content(c, 3), "ab") && st.stop == CHAT_STOP_EOG && st.n_gen == 2, "turn 2 reply");
	/* A conversation the engine cannot take at all: refused, message withdrawn. */
	f.capacity = 1;
	chat_add_user(c, "too much", 8);
	{
		int rc = chat_generate(c, NULL, NULL, &st, err, sizeof(err));
		CHECK(rc < 0 && strstr(err, "do not fit") && chat_n_messages(c) == 4, "refused and withdrawn: %s (%d)",
		    err, chat_n_messages(c));
		CHECK(rc == CHAT_ERR_CONTEXT, "the refusal's code: %d, not CHAT_ERR_CONTEXT", rc);
	}
	f.capacity = 3;
	/* The engine out of memory, preparing or running: told by its code
	 * (natter serve answers it 500, not 400), whichever step failed. */
	for (f.nomem = 1; f.nomem <= 2; f.nomem++) {
		int rc;
		chat_add_user(c, "no room", 7);
		rc = chat_generate(c, NULL, NULL, &st, err, sizeof(err));
		CHECK(rc == CHAT_ERR_NOMEM && strstr(err, "out of memory"), "out of memory in step %d: %d %s", f.nomem, rc,
		    err);
		/* (Out of memory preparing withdraws the message, as any refusal
		 * of the conversation; running, the engine failed: it stays.) */
		CHECK(chat_n_messages(c) == (f.nomem == 1 ? 4 : 5), "step %d: %d messages", f.nomem, chat_n_messages(c));
		if (chat_n_messages(c) == 5)
			chat_pop(c);
	}
	f.nomem = 0;
	/* A stop pressed before the reply starts stops it; the reply is kept. */
	chat_add_user(c, "stop me", 7);
	chat_cancel(c);
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && st.stop == CHAT_STOP_CANCEL &&
	    !strcmp(chat_message_content(c, 5), ""), "cancelled: %s", chat_stop_name(st.stop));
	CHECK(chat_regenerate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && st.stop == CHAT_STOP_EOG &&
	    chat_alt_count(c, 5) == 2 && !strcmp(chat_message_content(c, 5), "ab"), "the cancel ended with its reply");
	/* A reply with a NUL byte in it (a model's <0x00> token): the
	 * message holds all of it, the NUL as U+FFFD (it ended the message,
	 * the history's row and the next prompt there). */
	{
		static const char *const nul[] = { "be\0fore", " after", NULL };
		static const size_t nul_len[] = { 7, 6 };
		f.pieces = nul;
		f.lens = nul_len;
		chat_add_user(c, "nul", 3);
		CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 &&
		    !strcmp(chat_message_content(c, chat_n_messages(c) - 1), "be\xef\xbf\xbd" "fore after"),
		    "a NUL in a reply: [%s]", chat_message_content(c, chat_n_messages(c) - 1));
		f.lens = NULL;
		f.pieces = plain;
	}
	chat_free(c);
	CHECK(f.freed == 1 && f.runs == 5, "the engine is freed with the session (%d runs)", f.runs);
	/* A session that cannot be made frees the engine it was given. */
	f.freed = 0;
	o.sp.temp = -1;
	CHECK(chat_new_engine(&fake_ops, &f, &o, &c, err, sizeof(err)) < 0 && f.freed == 1 && !c, "bad options: %s", err);
	/* An engine that finds the prompt too long only when it runs it (a
	 * server): the oldest turns go until it takes it, and the window and
	 * the recorded prompt are the attempt that ran. */
	o.sp.temp = 0.7f;
	f.capacity = 100;
	f.pieces = plain;
	CHECK(chat_new_engine(&fake_ops, &f, &o, &c, err, sizeof(err)) == 0, "chat_new_engine: %s", err);
	chat_set_notice(c, count_notice, NULL);
	for (int i = 0; i < 3; i++) {
		char u[16];
		snprintf(u, sizeof(u), "u%d", i);
		chat_add_user(c, u, strlen(u));
		CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0, "turn %d: %s", i, err);
	}
	f.run_fits = 4;   /* the system prompt and three messages */
	n_notices = 0;
	chat_add_user(c, "u3", 2);
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0, "refused, then taken: %s", err);
	CHECK(!strcmp(f.prompt, "system:Be brief.|user:u2|assistant:ab|user:u3|") && chat_window_start(c) == 4 &&
	    chat_prompt_dropped(c) == 4 && chat_prompt_n_messages(c) == 4 && st.n_dropped == 4 && n_notices == 1,
	    "two turns dropped at the run's refusal: %s, window %d, fed %d, dropped %d, %d notices", f.prompt,
	    chat_window_start(c), chat_prompt_n_messages(c), st.n_dropped, n_notices);
	/* Even alone too long: refused by its code, withdrawn, the window
	 * where it was. */
	f.run_fits = 1;
	chat_add_user(c, "u4", 2);
	{
		int rc = chat_generate(c, NULL, NULL, &st, err, sizeof(err));
		CHECK(rc == CHAT_ERR_CONTEXT && strstr(err, "alone is too long") && chat_n_messages(c) == 8 &&
		    chat_window_start(c) == 4, "refused alone: %d %s, %d messages, window %d", rc, err, chat_n_messages(c),
		    chat_window_start(c));
	}
	/* Out of memory preparing the retry: told by its code, the window
	 * where it was too. */
	f.run_fits = 2;
	f.nomem = 3;
	f.refused = 0;   /* (prepare fails only after the run's refusal: fit_prompt's goes through) */
	chat_add_user(c, "u5", 2);
	{
		int rc = chat_generate(c, NULL, NULL, &st, err, sizeof(err));
		CHECK(rc == CHAT_ERR_NOMEM && f.refused && chat_window_start(c) == 4,
		    "out of memory on the retry: %d %s, refused %d, window %d", rc, err, f.refused, chat_window_start(c));
	}
	chat_free(c);
}

/* What a reply streamed: raw through the piece callback, labelled through
 * the split callback. */
struct streamed {
	char raw[4096], reason[4096], answer[4096];
	size_t nraw, nreason, nanswer;
	int order_ok;              /* no reasoning piece after an answer piece */
	int counts_ok;             /* the live counts never go down, nor past each other */
	int last_gen, last_reason, n_pieces;
	int stop_after;            /* stop after this many pieces (0: never) */
	int stop_gen;              /* the tokens generated when it asked to stop */
};

static void
add(char *buf, size_t *n, size_t cap, const char *s, size_t len)
{
	if (*n + len < cap) {
		memcpy(buf + *n, s, len);
		*n += len;
		buf[*n] = 0;
	}
}

static int
raw_piece(void *ctx, const char *p, size_t n)
{
	struct streamed *s = ctx;
	add(s->raw, &s->nraw, sizeof(s->raw), p, n);
	return 0;
}

static int
split_piece(void *ctx, const struct chat_piece *p)
{
	struct streamed *s = ctx;
	if (p->kind == CHAT_PIECE_REASONING) {
		if (s->nanswer)
			s->order_ok = 0;
		add(s->reason, &s->nreason, sizeof(s->reason), p->text, p->len);
	} else {
		add(s->answer, &s->nanswer, sizeof(s->answer), p->text, p->len);
	}
	if (p->len == 0 || p->n_gen < s->last_gen || p->n_reasoning < s->last_reason || p->n_reasoning > p->n_gen)
		s->counts_ok = 0;
	s->last_gen = p->n_gen;
	s->last_reason = p->n_reasoning;
	s->n_pieces++;
	if (s->stop_after && s->n_pieces == s->stop_after)
		s->stop_gen = p->n_gen;
	return s->stop_after && s->n_pieces >= s->stop_after;
}

static void
streamed_reset(struct streamed *s)
{
	memset(s, 0, sizeof(*s));
	s->order_ok = s->counts_ok = 1;
}

/* Reasoning models, with templates whose generation prompt opens the
 * reasoning (DeepSeek-R1's): the reply is split as it streams, each
 * alternative keeps its reasoning apart from its answer, the next prompt
 * renders the answer only, tokens are counted by kind, and Qwen3's
 * enable_thinking reaches the template. */
static void
test_reasoning(const char *path, const char *dir)
{
	struct llm_model *m;
	struct chat *c;
	struct chat_opts o;
	struct chat_stats st;
	struct streamed s;
	char err[512], r1[4096], tmpl_r1[4096], tmpl_qwen[4096], tags[128];
	const char *rs;
	size_t plen;

	snprintf(tmpl_r1, sizeof(tmpl_r1), "%s/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", dir);
	snprintf(tmpl_qwen, sizeof(tmpl_qwen), "%s/templates/Qwen-Qwen3.jinja", dir);
	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return;
	}
	chat_opts_default(&o);
	o.sp.seed = 1;       /* a fixed seed: the same prompt gives the same reply in another session */
	o.max_tokens = 24;
	o.n_threads = 2;
	o.n_ctx = 512;
	o.template_spec = tmpl_r1;
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0, "chat_new: %s", err);
	if (!c) {
		llm_model_free(m);
		return;
	}
	streamed_reset(&s);
	chat_set_split(c, split_piece, &s);
	chat_add_user(c, "Tell me a dream", 15);
	CHECK(chat_generate(c, raw_piece, &s, &st, err, sizeof(err)) == 0, "generate: %s", err);
	rs = chat_prompt_text(c, &plen);
	CHECK(think_prompt_opens(rs, plen, NULL, NULL), "the R1 template opens the reasoning: %s", rs);
	/* The whole reply is reasoning: no close tag ever comes. */
	CHECK(st.n_gen > 0 && st.n_reasoning == st.n_gen, "all %d tokens are reasoning (%d)", st.n_gen, st.n_reasoning);
	CHECK(s.nraw > 0 && !strcmp(s.reason, s.raw) && s.nanswer == 0, "streamed: raw '%s', reasoning '%s', answer '%s'",
	    s.raw, s.reason, s.answer);
	CHECK(s.order_ok && s.counts_ok && s.last_gen <= st.n_gen, "live counts (last %d of %d)", s.last_gen, st.n_gen);
	CHECK(!strcmp(chat_message_content(c, 1), "") && chat_message_reasoning(c, 1) &&
	    !strcmp(chat_message_reasoning(c, 1), s.raw), "the message: answer '%s', reasoning '%s'",
	    chat_message_content(c, 1), chat_message_reasoning(c, 1) ? chat_message_reasoning(c, 1) : "(none)");
	CHECK(chat_alt_reasoning_tokens(c, 1, 0) == st.n_reasoning, "the alternative keeps its token count");
	snprintf(r1, sizeof(r1), "%s", s.raw);

	/* The next turn renders the reply from its answer: the reasoning is
	 * not fed again (as R1's and Qwen3's templates themselves do). */
	chat_add_user(c, "And then", 8);
	streamed_reset(&s);
	CHECK(chat_generate(c, raw_piece, &s, &st, err, sizeof(err)) == 0, "turn 2: %s", err);
	rs = chat_prompt_text(c, &plen);
	CHECK(strlen(r1) > 8 && !strstr(rs, r1), "turn 2's prompt leaves out turn 1's reasoning: %s", rs);
	CHECK(chat_prompt_n_messages(c) == 3 && !strcmp(chat_prompt_message(c, 1, NULL), ""),
	    "the fed reply is its answer");

	/* A regeneration is an alternative with its own reasoning; the first keeps its own. */
	streamed_reset(&s);
	CHECK(chat_regenerate(c, NULL, NULL, &st, err, sizeof(err)) == 0, "regenerate: %s", err);
	CHECK(chat_alt_count(c, 3) == 2 && chat_alt_reasoning(c, 3, 0) && chat_alt_reasoning(c, 3, 1) &&
	    strcmp(chat_alt_reasoning(c, 3, 0), chat_alt_reasoning(c, 3, 1)) != 0, "two alternatives, two reasonings");
	CHECK(chat_alt_select(c, 3, 0) == 0 && chat_message_reasoning(c, 3) == chat_alt_reasoning(c, 3, 0),
	    "the selected alternative's reasoning");
	CHECK(chat_alt_set_reasoning(c, 3, 2, "x", 1, 1) < 0 && chat_alt_set_reasoning(c, 9, 0, "x", 1, 1) < 0,
	    "bad indexes refused");
	CHECK(chat_alt_set_reasoning(c, 3, 1, NULL, 0, 0) == 0 && chat_alt_reasoning(c, 3, 1) == NULL &&
	    chat_alt_reasoning_tokens(c, 3, 1) == 0, "reasoning removed");

	/* The split callback can stop the reply, like the piece callback. */
	chat_add_user(c, "Stop soon", 9);
	streamed_reset(&s);
	s.stop_after = 2;
	/* (What the stop strings and the tags held back still follows: it is
	 * part of the reply as stored.) */
	CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0 && st.stop == CHAT_STOP_CANCEL &&
	    s.stop_gen > 0 && st.n_gen == s.stop_gen, "stopped from the split callback (%s, %d tokens, asked at %d)",
	    chat_stop_name(st.stop), st.n_gen, s.stop_gen);
	chat_free(c);

	/* The same reply with a close tag that does come -- a word from inside
	 * it: the same tokens (same prompt, same seed), now reasoning up to the
	 * word and answer after it. */
	{
		const char *w = strchr(r1 + 3, ' '), *at;
		char word[16];
		size_t wl = 0;
		if (w)
			while (w[1 + wl] && w[1 + wl] != ' ' && wl < 5)
				wl++;
		CHECK(w && wl >= 2, "a word to close on in '%s'", r1);
		if (!w || wl < 2) {
			llm_model_free(m);
			return;
		}
		snprintf(word, sizeof(word), "%.*s", (int)wl, w + 1);
		at = strstr(r1, word);
		snprintf(tags, sizeof(tags), "<think> %s", word);
		o.think_tags = tags;
		CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0, "chat_new with tags '%s': %s", tags, err);
		streamed_reset(&s);
		chat_set_split(c, split_piece, &s);
		chat_add_user(c, "Tell me a dream", 15);
		CHECK(chat_generate(c, raw_piece, &s, &st, err, sizeof(err)) == 0, "generate: %s", err);
		{
			char want_r[4096];
			const char *want_a = at + wl;
			snprintf(want_r, sizeof(want_r), "%.*s", (int)(at - r1), r1);
			while (*want_a == ' ' || *want_a == '\n')
				want_a++;
			CHECK(!strcmp(s.raw, r1), "the same reply: '%s' / '%s'", s.raw, r1);
			CHECK(!strcmp(s.reason, want_r) && !strcmp(s.answer, want_a) && s.order_ok,
			    "closed on '%s': reasoning '%s' (want '%s'), answer '%s' (want '%s')", word, s.reason, want_r,
			    s.answer, want_a);
			CHECK(!strcmp(chat_message_content(c, 1), want_a) && chat_message_reasoning(c, 1) &&
			    !strcmp(chat_message_reasoning(c, 1), want_r), "stored apart");
			CHECK(st.n_reasoning > 0 && st.n_reasoning < st.n_gen, "%d of %d tokens reasoning", st.n_reasoning,
			    st.n_gen);
			printf("reasoning closed on '%s': %d of %d tokens reasoning, answer '%s'\n", word, st.n_reasoning,
			    st.n_gen, s.answer);
		}
		chat_free(c);
		o.think_tags = "<think>";
		CHECK(chat_new(m, &o, &c, err, sizeof(err)) < 0 && strstr(err, "reasoning tags") && strstr(err, "two tags"),
		    "one tag refused: %s", err);
		o.think_tags = NULL;
	}

	/* Qwen3's enable_thinking: on the next render, as the template reads it. */
	o.template_spec = tmpl_qwen;
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0, "chat_new (Qwen3): %s", err);
	if (c) {
		char *r;
		size_t n;
		CHECK(chat_template_thinks(c) && chat_think(c) == CHAT_THINK_DEFAULT, "Qwen3 reads enable_thinking");
		chat_add_user(c, "Hello!", 6);
		r = chat_render(c, err, sizeof(err));
		n = r ? strlen(r) : 0;
		CHECK(r && n > 22 && !strcmp(r + n - 22, "<|im_start|>assistant\n"), "default: no think block: %s", r);
		free(r);
		chat_set_think(c, CHAT_THINK_OFF);
		r = chat_render(c, err, sizeof(err));
		CHECK(r && strstr(r, "<|im_start|>assistant\n<think>\n\n</think>\n\n") && chat_think(c) == CHAT_THINK_OFF,
		    "off: an empty think block closes the reasoning: %s", r);
		free(r);
		chat_set_think(c, CHAT_THINK_ON);
		r = chat_render(c, err, sizeof(err));
		n = r ? strlen(r) : 0;
		CHECK(r && !strstr(r, "<think>") && !strcmp(r + n - 22, "<|im_start|>assistant\n"), "on: %s", r);
		free(r);
		/* Off: the prompt does not open the reasoning, and this model
		 * writes none: the reply has no reasoning part. */
		chat_set_think(c, CHAT_THINK_OFF);
		CHECK(chat_generate(c, NULL, NULL, &st, err, sizeof(err)) == 0, "generate (off): %s", err);
		rs = chat_prompt_text(c, &plen);
		CHECK(!think_prompt_opens(rs, plen, NULL, NULL) && strstr(rs, "</think>"), "the prompt closed it: %s", rs);
		CHECK(chat_message_reasoning(c, 1) == NULL && st.n_reasoning == 0 && st.n_gen > 0 &&
		    strlen(chat_message_content(c, 1)) > 0, "no reasoning: %d tokens", st.n_reasoning);
		chat_free(c);
	}
	o.template_spec = tmpl_r1;
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0 && !chat_template_thinks(c), "R1's template has no enable_thinking");
	chat_free(c);
	llm_model_free(m);
}

int
main(void)
{
	const char *dir = test_fixtures();
	char path[4096];

	test_engine_interface();
	if (!dir) {
		SKIP("fixtures folder not found (set NATTER_FIXTURES)");
		return test_done("test-chat");
	}
	/* aidreams is a trained model: its replies are valid text, as a real
	 * chat model's are, so the session can keep its own tokens. */
	snprintf(path, sizeof(path), "%s/models/aidreams260K-f32.gguf", dir);
	test_reuse(path);
	test_overflow(path);
	test_live_and_stops(path);
	test_alternatives_and_edits(path);
	test_stops(path);
	test_reasoning(path, dir);
	return test_done("test-chat");
}
