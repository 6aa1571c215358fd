/* chatlog.c -- a chat session's messages and generations, written to the store as they happen. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natter/chat-engine.h"
#include "natter/chat.h"
#include "natter/chatlog.h"
#include "natter/lora.h"
#include "natter/store.h"
#include "store/store-impl.h"

/* How a reply ended, in the session's words and the store's. */
static const struct {
	enum chat_stop stop;
	enum store_end end;
} stop_ends[] = {
	{ CHAT_STOP_EOG, STORE_END_FINISHED },
	{ CHAT_STOP_STRING, STORE_END_STOP_STRING },
	{ CHAT_STOP_CANCEL, STORE_END_STOPPED },
	{ CHAT_STOP_CONTEXT, STORE_END_CONTEXT },
	{ CHAT_STOP_LIMIT, STORE_END_MAX_TOKENS },
	{ CHAT_STOP_ERROR, STORE_END_ERROR },
	{ CHAT_STOP_EOG_OR_STRING, STORE_END_FINISHED_OR_STOP_STRING },
};

static enum store_end
end_of(enum chat_stop s)
{
	for (size_t i = 0; i < sizeof(stop_ends) / sizeof(stop_ends[0]); i++)
		if (stop_ends[i].stop == s)
			return stop_ends[i].end;
	return STORE_END_UNKNOWN;
}

/* Records the model of session C (MODEL_PATH: its file, for a model run
 * here; NULL: none) and keeps its id in L.  Returns 0 or -1. */
static int
record_model(struct chatlog *l, struct chat *c, const char *model_path)
{
	struct chat_engine_info i;
	int64_t id = 0;
	int rc = 0;

	chat_engine_info(c, &i);
	if (i.endpoint && i.model)
		rc = store_model_remote(l->s, i.endpoint, i.model, &id);
	else if (model_path)
		rc = store_model(l->s, model_path, i.arch ? i.arch : "", i.type_name ? i.type_name : "", &id);
	l->model_id = rc < 0 ? 0 : id;
	l->model_missing = rc < 0;
	return rc;
}

int
chatlog_model(struct chatlog *l, struct chat *c, const char *model_path)
{
	l->model_id = 0;
	l->model_path = model_path;
	l->model_missing = 0;
	if (!l->s)
		return 0;
	l->template_name = chat_template_name(c);
	return record_model(l, c, model_path);
}

/* Whether the session's model is recorded, recording it now if it could
 * not be at the start (the database was busy, say): a reply saved under
 * no model would be exported as any model's, the conversation's first
 * one's included.  Returns 0, or -1 with store_errmsg(L->s) explaining:
 * the reply is then not saved. */
static int
model_known(struct chatlog *l, struct chat *c)
{
	char why[sizeof(l->s->err)];

	if (!l->model_missing || record_model(l, c, l->model_path) == 0)
		return 0;
	snprintf(why, sizeof(why), "%s", store_errmsg(l->s));
	store_seterr(l->s, "the reply was not saved: its model could not be recorded (%s)", why);
	return -1;
}

/* A remote server that says another model answered than the one asked
 * for (OpenAI: the dated snapshot an alias stands for): the reply ST
 * describes is recorded as that model's, and so are the session's next
 * ones, until a reply names another.  Returns 0, or -1 with
 * store_errmsg(L->s) explaining: the reply is then not saved. */
static int
served_model(struct chatlog *l, struct chat *c, const struct chat_stats *st)
{
	struct chat_engine_info i;
	char why[sizeof(l->s->err)];
	int64_t id;

	chat_engine_info(c, &i);
	if (!i.endpoint || !i.model || !st->served_model[0])
		return 0;
	if (store_model_remote(l->s, i.endpoint, st->served_model, &id) == 0) {
		l->model_id = id;
		return 0;
	}
	snprintf(why, sizeof(why), "%s", store_errmsg(l->s));
	store_seterr(l->s, "the reply was not saved: the model the server named (%s) could not be recorded (%s)",
	    st->served_model, why);
	return -1;
}

/* A system prompt the store refused (chatlog_system): written again,
 * before the next message or reply.  Failing again, it stays to do. */
static void
system_again(struct chatlog *l, struct chat *c)
{
	if (l->system_unsaved && l->conv && store_conv_set_system(l->s, l->conv, chat_system(c)) == 0)
		l->system_unsaved = 0;
}

static int reply_save(struct chatlog *l, struct chat *c, int i, const struct chat_stats *st);

/* Saves user message J of C as the child of the message before it in
 * the session (not whatever the conversation's leaf is now: another
 * natter may be writing to it), making the conversation first if there is
 * none yet. */
static int
save_user(struct chatlog *l, struct chat *c, int j)
{
	int64_t id, parent = j > 0 ? chat_message_tag(c, j - 1) : 0;

	if (!l->conv) {
		if (store_conv_new(l->s, l->model_id, NULL, l->template_name, chat_system(c), &l->conv) < 0)
			return -1;
		l->first = j;
		l->system_unsaved = 0;   /* the new conversation has it */
	}
	system_again(l, c);
	/* The reply it answers could not be saved when it was made: saved
	 * now, before it (the session's figures of the last reply are still
	 * that reply's), or the message would hang from the one before the
	 * reply, and the reply be lost from the history. */
	if (j > 0 && !parent && l->unsaved_reply == j && !strcmp(chat_message_role(c, j - 1), "assistant")) {
		if (reply_save(l, c, j - 1, &l->unsaved_st) < 0)
			return -1;
		parent = chat_message_tag(c, j - 1);
	}
	l->unsaved_reply = 0;
	/* The message before it was never saved: one of this conversation
	 * (the database was busy) is after the conversation's last; one from
	 * before the conversation began here (a move, chatlog_moved; an edit
	 * of such a message) is not in it, and the message starts a branch
	 * at its root. */
	if (j > 0 && !parent)
		parent = j - 1 < l->first ? 0 : -1;
	if (store_msg_add_after(l->s, l->conv, parent, "user", chat_message_content(c, j), &id) < 0)
		return -1;
	chat_set_message_tag(c, j, id);
	return 0;
}

/* Whether L's conversation is known to be gone from the store, after a
 * write into it failed (another process deleted it).  The failure's
 * message stays the store's error when it is there, or when the store
 * cannot tell. */
static int
conv_gone(struct chatlog *l)
{
	char why[sizeof(l->s->err)];
	sqlite3_stmt *st;
	int rc = SQLITE_ERROR;

	if (!l->conv)
		return 0;
	snprintf(why, sizeof(why), "%s", store_errmsg(l->s));
	if ((st = store_prepare(l->s, "SELECT 1 FROM conversations WHERE id = ?"))) {
		sqlite3_bind_int64(st, 1, l->conv);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
	}
	store_seterr(l->s, "%s", why);
	return rc == SQLITE_DONE;
}

/* L's conversation was deleted elsewhere: the session's messages and
 * replies, whose rows are gone, are no longer saved, and the next one
 * saved starts a new conversation. */
static void
conv_leave(struct chatlog *l, struct chat *c)
{
	for (int i = 0; i < chat_n_messages(c); i++) {
		chat_set_message_tag(c, i, 0);
		for (int k = 0; k < chat_alt_count(c, i); k++)
			chat_set_alt_tag(c, i, k, 0);
	}
	l->moved_from = l->conv;
	l->conv = l->last_msg = l->last_gen = l->made_gen = l->user_msg = 0;
	l->system_unsaved = 0;   /* the next conversation is made with it */
	l->ab.state = CHATLOG_AB_NONE;
}

int
chatlog_left(struct chatlog *l, struct chat *c)
{
	if (!l->s || !conv_gone(l))
		return 0;
	conv_leave(l, c);
	return 1;
}

int
chatlog_moved(struct chatlog *l, char *msg, size_t n)
{
	if (!l->moved_from)
		return 0;
	/* Since schema 10 no number is given twice, but one deleted before
	 * the upgrade to it may be given once more (the highest plus one;
	 * nothing recorded it): said, not left to look like a mistake. */
	if (l->conv)
		snprintf(msg, n, "conversation %lld was deleted from the history by another program; this chat is saved "
		    "from your last message on as a new conversation, %lld%s (the messages before it are not saved "
		    "again)", (long long)l->moved_from, (long long)l->conv,
		    l->conv == l->moved_from ? ", which took the same number" : "");
	else
		snprintf(msg, n, "conversation %lld was deleted from the history by another program; this chat is saved "
		    "from your next message on as a new conversation (the messages before it are not saved again)",
		    (long long)l->moved_from);
	l->moved_from = 0;
	return 1;
}

int
chatlog_user(struct chatlog *l, struct chat *c)
{
	int n = chat_n_messages(c);

	char why[256];

	l->last_msg = 0;   /* the reply will be a new assistant message */
	l->ab.state = CHATLOG_AB_NONE;
	if (!l->s || n == 0 || chat_check(c, why, sizeof(why)) < 0)
		return 0;
	if (save_user(l, c, n - 1) == 0)
		return 0;
	if (!conv_gone(l))
		return -1;
	conv_leave(l, c);
	return save_user(l, c, n - 1);
}

void
chatlog_sending(struct chatlog *l, struct chat *c)
{
	int n = chat_n_messages(c);
	l->user_msg = n > 0 && !strcmp(chat_message_role(c, n - 1), "user") ? chat_message_tag(c, n - 1) : 0;
}

int
chatlog_withdrawn(struct chatlog *l, struct chat *c)
{
	const int64_t id = l->user_msg;
	int gone;

	l->user_msg = 0;
	if (!l->s || !id)
		return 0;
	for (int i = 0; i < chat_n_messages(c); i++)
		if (chat_message_tag(c, i) == id) {
			l->user_msg = id;
			return 0;   /* still in the session: the engine failed, not the message */
		}
	if (store_msg_withdraw(l->s, id, &gone) < 0) {
		/* Deleted elsewhere with its conversation: nothing to take
		 * back, and the next message starts a new one (said). */
		if (!conv_gone(l))
			return -1;
		conv_leave(l, c);
		return 0;
	}
	if (gone)
		l->conv = 0;   /* the next message begins a conversation again */
	return 0;
}

/* C's adapters into OUT (room for CHAT_MAX_ADAPTERS): with USED_ONLY
 * those its last reply was made with (a nonzero scale used), at those
 * scales; else every one, in order, at the scale set now.  Returns how
 * many. */
static int
session_adapters(struct chat *c, int used_only, struct store_adapter *out)
{
	int n = 0;
	for (int a = 0; a < chat_n_adapters(c) && n < CHAT_MAX_ADAPTERS; a++) {
		const struct lora_adapter *ad = chat_adapter(c, a);
		const char *path = lora_path(ad), *base = strrchr(path, '/');
		const float scale = used_only ? chat_adapter_scale_used(c, a) : chat_adapter_scale(c, a);
		if (used_only && scale == 0.0f)
			continue;   /* off: the reply was not made with it */
		out[n].sha256 = lora_sha256(ad);
		out[n].file_name = base ? base + 1 : path;
		out[n++].scale = scale;
	}
	return n;
}

/* The think switch T as the store records it (store_gen.think), for a
 * session whose template reads it (or a server, which gets it); NULL
 * otherwise: the switch changes nothing there.  A server that refused
 * chat_template_kwargs got no switch: its template's default. */
static const char *
think_name(struct chat *c, enum chat_think t)
{
	if (!chat_param_sent(c, "think"))
		return "default";
	if (chat_template_thinks(c) == 0)
		return NULL;
	return t == CHAT_THINK_ON ? "true" : t == CHAT_THINK_OFF ? "false" : "default";
}

int
chatlog_gen(struct chat *c, const struct chat_stats *st, struct store_gen *g, struct store_adapter *adapters,
	    struct store_turn **fed)
{
	struct sampler_params sp;
	struct chat_engine_info ei;
	int n_fed = chat_prompt_n_messages(c), max_tokens;
	size_t plen;

	memset(g, 0, sizeof(*g));
	*fed = NULL;
	if (n_fed > 0 && !(*fed = calloc(n_fed, sizeof(**fed))))
		return -1;
	for (int j = 0; j < n_fed; j++)
		(*fed)[j].content = chat_prompt_message(c, j, &(*fed)[j].role);
	g->fed = *fed;
	g->n_fed = n_fed;
	g->prompt_text = chat_prompt_text(c, &plen);
	g->prompt_tokens = st->prompt_tokens;
	g->n_dropped = chat_prompt_dropped(c);
	g->template_name = chat_template_name(c);
	g->template_source = chat_template_source(c);
	chat_reply_params(c, &sp, &max_tokens, &g->unknown);
	g->temp = sp.temp;
	g->top_k = sp.top_k;
	g->top_p = sp.top_p;
	g->min_p = sp.min_p;
	g->repeat_penalty = sp.repeat_penalty;
	g->presence_penalty = sp.presence_penalty;
	g->frequency_penalty = sp.frequency_penalty;
	g->penalty_last_n = sp.penalty_last_n;
	g->seed = st->seed;
	g->max_tokens = max_tokens;
	g->n_adapters = session_adapters(c, 1, adapters);
	g->adapters = adapters;
	chat_engine_info(c, &ei);
	g->kv_type = ei.kv_type;
	g->exact_act = ei.exact_act;
	g->stop = chat_stops(c, &g->n_stop);
	g->think = think_name(c, chat_reply_think(c));
	g->n_prompt = st->n_prompt;
	g->n_reused = st->n_reused;
	g->n_gen = st->n_gen;
	/* A server that reported no counts: the pieces that came are not
	 * tokens, and the prompt's length is not known (not 0). */
	if (st->gen_counted)
		g->prompt_tokens = g->n_prompt = g->n_reused = g->n_gen = -1;
	g->n_ctx_used = st->n_ctx_used;
	g->n_ctx = st->n_ctx;
	g->prompt_tps = st->prompt_tps;
	g->gen_tps = st->gen_tps;
	g->ttft_ms = st->ttft_ms;
	g->end = end_of(st->stop);
	return 0;
}

/* Records reply I of C (chatlog_reply). */
static int
reply_save(struct chatlog *l, struct chat *c, int i, const struct chat_stats *st)
{
	struct store_gen g;
	struct store_adapter adapters[CHAT_MAX_ADAPTERS];
	struct store_turn *fed;
	int k, rc;
	int64_t msg, gen;

	k = chat_alt_index(c, i);
	/* A first alternative makes the message; a later one joins it.  (A
	 * message whose first alternative was never saved has no tag: this
	 * one makes it.) */
	msg = chat_alt_count(c, i) > 1 ? chat_message_tag(c, i) : 0;
	/* The message it answers is saved first if it was not (the database
	 * was busy, say): the reply is never stored under another one. */
	if (!msg && i > 0 && !chat_message_tag(c, i - 1) && !strcmp(chat_message_role(c, i - 1), "user") &&
	    save_user(l, c, i - 1) < 0)
		return -1;
	if (!l->conv)
		return 0;
	if (model_known(l, c) < 0 || served_model(l, c, st) < 0)
		return -1;
	if (chatlog_gen(c, st, &g, adapters, &fed) < 0)
		return -1;
	g.parent = !msg && i > 0 ? chat_message_tag(c, i - 1) : 0;
	g.content = chat_alt_content(c, i, k);
	g.reasoning = chat_alt_reasoning(c, i, k);
	/* Its tokens when they were counted (not a remote server's pieces). */
	g.n_reasoning = st->reasoning_counted ? 0 : st->n_reasoning;
	g.model_id = l->model_id;
	rc = store_gen_add(l->s, l->conv, msg, &g, &gen, &msg);
	free(fed);
	if (rc < 0)
		return -1;
	chat_set_message_tag(c, i, msg);
	chat_set_alt_tag(c, i, k, gen);
	l->last_msg = msg;
	l->last_gen = l->made_gen = gen;
	return 0;
}

int
chatlog_reply(struct chatlog *l, struct chat *c, const struct chat_stats *st)
{
	int i = chat_n_messages(c) - 1;

	if (i >= 0 && l->ab.state == CHATLOG_AB_RUNNING && i == l->ab.idx && chat_alt_index(c, i) != l->ab.alt_a) {
		l->ab.alt_b = chat_alt_index(c, i);
		/* A B stopped or broken off is no reply to rank: a pick would
		 * store a preference over a reply never finished (one cut by
		 * its length is ranked, and exported as incomplete). */
		l->ab.state = st->stop == CHAT_STOP_CANCEL || st->stop == CHAT_STOP_ERROR ? CHATLOG_AB_NONE :
		    CHATLOG_AB_READY;
	} else if (i >= 0 && l->ab.state == CHATLOG_AB_READY && i == l->ab.idx) {
		/* Another reply to the message (a /regen) ends the comparison:
		 * a pick would choose a reply no longer shown. */
		l->ab.state = CHATLOG_AB_NONE;
	}
	if (!l->s || i < 0)
		return 0;
	l->last_gen = l->made_gen = 0;   /* until this reply is stored: /stats must not name the one before */
	l->unsaved_reply = 0;
	system_again(l, c);
	if (reply_save(l, c, i, st) == 0)
		return 0;
	/* Deleted while the reply was written: the reply and the message it
	 * answers start a new conversation. */
	if (conv_gone(l)) {
		conv_leave(l, c);
		if (reply_save(l, c, i, st) == 0)
			return 0;
	}
	/* Tried again before the next message (save_user). */
	l->unsaved_reply = i + 1;
	l->unsaved_st = *st;
	return -1;
}

int
chatlog_system(struct chatlog *l, struct chat *c)
{
	l->system_unsaved = 0;
	if (!l->s || !l->conv)
		return 0;   /* a new conversation is made with it */
	if (store_conv_set_system(l->s, l->conv, chat_system(c)) == 0)
		return 0;
	l->system_unsaved = 1;
	return -1;
}

void
chatlog_new(struct chatlog *l)
{
	l->conv = l->last_msg = l->last_gen = l->made_gen = l->user_msg = 0;
	l->system_unsaved = l->unsaved_reply = 0;
	l->ab.state = CHATLOG_AB_NONE;
}

int
chatlog_edit(struct chatlog *l, struct chat *c, int i, const char *text, size_t len, char *err, size_t errlen)
{
	int64_t old = chat_message_tag(c, i), id;

	/* One the session could not answer changes nothing, as a new
	 * message it refuses is not stored (chatlog_user). */
	if (i >= 0 && i < chat_n_messages(c) && !strcmp(chat_message_role(c, i), "user") &&
	    chat_check_edit(c, text, len, err, errlen) < 0)
		return -1;
	if (chat_edit(c, i, text, len) < 0) {
		snprintf(err, errlen, "message %d cannot be edited (only the user's messages can)", i + 1);
		return -1;
	}
	l->ab.state = CHATLOG_AB_NONE;
	if (!l->s || !l->conv)
		return 0;
	/* A message never saved (the database was busy, or it is from
	 * before a move): its new version is saved with its reply, as a
	 * message the store refused is (save_user, from reply_save). */
	if (!old)
		return 0;
	if (store_msg_edit(l->s, old, chat_message_content(c, i), &id) < 0) {
		/* Deleted by another program: the edited message is saved with
		 * its reply, in a new conversation (chatlog_reply, said by
		 * chatlog_moved then). */
		if (conv_gone(l)) {
			conv_leave(l, c);
			return 0;
		}
		snprintf(err, errlen, "%s", store_errmsg(l->s));
		return -2;
	}
	chat_set_message_tag(c, i, id);
	l->last_msg = l->last_gen = 0;
	l->ab.state = CHATLOG_AB_NONE;
	return 0;
}

int
chatlog_alt_select(struct chatlog *l, struct chat *c, int i, int k, char *err, size_t errlen)
{
	int64_t gen;

	if (chat_alt_select(c, i, k) < 0) {
		snprintf(err, errlen, "message %d has no alternative %d", i + 1, k + 1);
		return -1;
	}
	if (!l->s || !l->conv)
		return 0;
	gen = chat_alt_tag(c, i, k);
	if (!gen) {
		snprintf(err, errlen, "that alternative was never saved, so the choice is not saved either");
		return -2;
	}
	if (store_alt_choose(l->s, gen) < 0) {
		/* Deleted by another program: nothing left to choose in. */
		if (conv_gone(l)) {
			conv_leave(l, c);
			chatlog_moved(l, err, errlen);
		} else {
			snprintf(err, errlen, "%s", store_errmsg(l->s));
		}
		return -2;
	}
	if (i == chat_n_messages(c) - 1) {
		l->last_msg = chat_message_tag(c, i);
		l->last_gen = gen;
	}
	return 0;
}

/*
 * Resuming reads the whole conversation into a staging copy first: the
 * session is replaced only once the store has given every message and
 * alternative, so a conversation that cannot be loaded (deleted meanwhile,
 * a busy database) leaves the one the user is in as it was.
 */
struct resume_alt {
	int64_t gen;
	char *content, *reasoning;  /* reasoning NULL: none */
	int n_reasoning;
};
struct resume_msg {
	int64_t id, chosen_gen;
	const char *role;          /* "user", "assistant" or "system" (one amid the conversation, as natter serve
				    * records an OpenAI client's) */
	char *content;             /* the message's text (a reply without generations) */
	struct resume_alt *alts;
	int nalt, capalt, chosen;
};
struct resume_ctx {
	struct chatlog *l;
	struct resume_msg *msgs;
	int n, cap;
	int failed;                /* 1: out of memory; 2: the store failed (store_errmsg) */
};

static void
resume_free(struct resume_ctx *r)
{
	for (int i = 0; i < r->n; i++) {
		for (int k = 0; k < r->msgs[i].nalt; k++) {
			free(r->msgs[i].alts[k].content);
			free(r->msgs[i].alts[k].reasoning);
		}
		free(r->msgs[i].alts);
		free(r->msgs[i].content);
	}
	free(r->msgs);
	r->msgs = NULL;
	r->n = r->cap = 0;
}

static int
resume_alt(void *arg, const struct store_alt *a)
{
	struct resume_ctx *r = arg;
	struct resume_msg *m = &r->msgs[r->n - 1];
	struct resume_alt *x;

	if (m->nalt == m->capalt) {
		int cap = m->capalt ? m->capalt * 2 : 4;
		struct resume_alt *p = realloc(m->alts, cap * sizeof(*p));
		if (!p)
			return r->failed = 1;
		m->alts = p;
		m->capalt = cap;
	}
	x = &m->alts[m->nalt];
	memset(x, 0, sizeof(*x));
	x->gen = a->gen_id;
	x->n_reasoning = a->n_reasoning;
	if (!(x->content = strdup(a->content)) || (a->reasoning && !(x->reasoning = strdup(a->reasoning)))) {
		free(x->content);
		return r->failed = 1;
	}
	if (a->chosen)
		m->chosen = m->nalt;
	m->nalt++;
	return 0;
}

static int
resume_msg(void *arg, int64_t id, const char *role, const char *content, int64_t chosen_gen)
{
	static const char *const roles[] = { "user", "assistant", "system" };
	struct resume_ctx *r = arg;
	struct resume_msg *m;
	const char *known = NULL;

	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (!strcmp(role, roles[i]))
			known = roles[i];
	if (!known)
		return 0;   /* (no other role is ever stored) */
	if (r->n == r->cap) {
		int cap = r->cap ? r->cap * 2 : 16;
		struct resume_msg *p = realloc(r->msgs, cap * sizeof(*p));
		if (!p)
			return r->failed = 1;
		r->msgs = p;
		r->cap = cap;
	}
	m = &r->msgs[r->n];
	memset(m, 0, sizeof(*m));
	if (!(m->content = strdup(content)))
		return r->failed = 1;
	m->id = id;
	m->chosen_gen = chosen_gen;
	m->role = known;
	r->n++;
	if (!strcmp(known, "assistant")) {
		if (store_alt_list(r->l->s, id, resume_alt, r) < 0)
			return r->failed = 2;
		if (r->failed)
			return 1;
	}
	return 0;
}

/* Replaces C's conversation with the staged one.  Returns 0, or -1 when
 * out of memory. */
static int
resume_fill(struct resume_ctx *r, struct chat *c)
{
	chat_clear(c);
	for (int i = 0; i < r->n; i++) {
		struct resume_msg *m = &r->msgs[i];
		int n = chat_n_messages(c);
		if (m->nalt == 0) {
			/* A user's or a system message, or a reply with no generation
			 * recorded (an old database, or one an OpenAI client sent
			 * natter serve): the message's text. */
			if (chat_add_message(c, m->role, m->content, strlen(m->content)) < 0)
				return -1;
		} else {
			for (int k = 0; k < m->nalt; k++) {
				struct resume_alt *x = &m->alts[k];
				if (k == 0 ? chat_add_message(c, "assistant", x->content, strlen(x->content)) < 0 :
				    chat_alt_add(c, n, x->content, strlen(x->content)) != k)
					return -1;
				if (x->reasoning &&
				    chat_alt_set_reasoning(c, n, k, x->reasoning, strlen(x->reasoning), x->n_reasoning) < 0)
					return -1;
				chat_set_alt_tag(c, n, k, x->gen);
			}
			chat_alt_select(c, n, m->chosen);
		}
		chat_set_message_tag(c, n, m->id);
	}
	return 0;
}

int
chatlog_resume(struct chatlog *l, struct chat *c, int64_t conv, char *err, size_t errlen)
{
	struct resume_ctx r = { l, NULL, 0, 0, 0 };
	char *system = NULL;

	if (!l->s) {
		snprintf(err, errlen, "the history is off");
		return -1;
	}
	l->unsaved_reply = 0;   /* the session's messages are replaced */
	if (store_conv_load(l->s, conv, &system, resume_msg, &r) < 0 || r.failed) {
		snprintf(err, errlen, "%s", r.failed == 1 ? "out of memory" : store_errmsg(l->s));
		free(system);
		resume_free(&r);
		return -1;   /* C and L as they were */
	}
	chatlog_new(l);   /* abandons any A/B comparison too */
	if (resume_fill(&r, c) < 0 || chat_set_system(c, system) < 0) {
		/* Out of memory half-way: an empty session, not half of one. */
		chat_clear(c);
		free(system);
		resume_free(&r);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (int i = 0; i < r.n; i++)
		if (!strcmp(r.msgs[i].role, "assistant")) {
			l->last_msg = r.msgs[i].id;
			l->last_gen = r.msgs[i].chosen_gen;
		}
	free(system);
	resume_free(&r);
	l->conv = conv;
	l->user_msg = 0;
	l->first = 0;
	l->system_unsaved = 0;   /* the session has the one stored */
	return 0;
}

/* --- A/B preference capture --- */

int
chatlog_alt_made(struct chatlog *l, struct chat *c, int i, int k, struct sampler_params *sp, float *scales,
		 char *err, size_t errlen)
{
	struct store_gen now;
	struct store_adapter ads[CHAT_MAX_ADAPTERS];
	struct store_turn *fed;
	struct chat_engine_info ei;
	int64_t gen = chat_alt_tag(c, i, k);
	int n = 0, rc;

	if (!l->s || !gen || i < 0 || i >= chat_n_messages(c)) {
		snprintf(err, errlen, "has no record (%s)", !l->s ? "the history is off" : "it was not saved");
		return 1;
	}
	/* What a regeneration now would be made under: the session's model,
	 * template, system prompt and the messages before the reply. */
	memset(&now, 0, sizeof(now));
	if (!(fed = calloc((size_t)i + 1, sizeof(*fed)))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (chat_system(c)[0]) {
		fed[n].role = "system";
		fed[n++].content = chat_system(c);
	}
	for (int j = 0; j < i; j++) {
		fed[n].role = chat_message_role(c, j);
		fed[n++].content = chat_message_content(c, j);
	}
	now.fed = fed;
	now.n_fed = n;
	now.model_id = l->model_id;
	now.template_name = chat_template_name(c);
	now.template_source = chat_template_source(c);
	now.stop = chat_stops(c, &now.n_stop);
	now.think = think_name(c, chat_think(c));
	now.max_tokens = chat_max_tokens(c);
	now.n_ctx = chat_ctx_size(c);
	chat_engine_info(c, &ei);
	now.kv_type = ei.kv_type;
	now.exact_act = ei.exact_act;
	now.n_adapters = session_adapters(c, 0, ads);
	now.adapters = ads;
	rc = store_gen_made(l->s, gen, &now, sp, scales, err, errlen);
	free(fed);
	if (rc < 0)
		snprintf(err, errlen, "%s", store_errmsg(l->s));
	return rc;
}

int
chatlog_ab_begin(struct chatlog *l, struct chat *c, const char *setting, const char *label_a, const char *label_b,
		 char *err, size_t errlen)
{
	int i = chat_n_messages(c) - 1;

	if (!chat_reply_last(c)) {
		snprintf(err, errlen, "there is no reply to compare yet");
		return -1;
	}
	l->ab.state = CHATLOG_AB_RUNNING;
	l->ab.idx = i;
	l->ab.alt_a = chat_alt_index(c, i);
	l->ab.alt_b = -1;
	snprintf(l->ab.setting, sizeof(l->ab.setting), "%s", setting ? setting : "");
	snprintf(l->ab.label_a, sizeof(l->ab.label_a), "%s", label_a ? label_a : "");
	snprintf(l->ab.label_b, sizeof(l->ab.label_b), "%s", label_b ? label_b : "");
	return 0;
}

void
chatlog_ab_cancel(struct chatlog *l)
{
	l->ab.state = CHATLOG_AB_NONE;
}

int
chatlog_ab_pick(struct chatlog *l, struct chat *c, enum store_pick pick, char *err, size_t errlen)
{
	struct chatlog_ab *ab = &l->ab;
	int64_t ga, gb;
	int rc;

	if (ab->state != CHATLOG_AB_READY || ab->idx >= chat_n_messages(c) || ab->alt_b < 0 ||
	    ab->alt_b >= chat_alt_count(c, ab->idx)) {
		snprintf(err, errlen, ab->state == CHATLOG_AB_RUNNING ? "B is still being written" :
		    "there is no A/B comparison to pick from (make one with /ab)");
		return -1;
	}
	ga = chat_alt_tag(c, ab->idx, ab->alt_a);
	gb = chat_alt_tag(c, ab->idx, ab->alt_b);
	ab->state = CHATLOG_AB_NONE;
	rc = chatlog_alt_select(l, c, ab->idx, pick == STORE_PICK_B ? ab->alt_b : ab->alt_a, err, errlen);
	if (rc < 0)
		return rc;
	if (!l->s)
		return 0;
	if (!ga || !gb) {
		snprintf(err, errlen, "the replies were not both saved, so the preference is not saved either");
		return -2;
	}
	if (store_pref_add(l->s, ga, gb, pick, ab->setting, NULL) < 0) {
		snprintf(err, errlen, "%s", store_errmsg(l->s));
		return -2;
	}
	return 0;
}
