/* ui-conv.c -- actions on the conversation: send, regenerate, stop, resume, rate, copy. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natter/chat.h"
#include "natter/chatcmd.h"
#include "natter/chatlog.h"
#include "natter/store.h"
#include "natter/ui.h"
#include "ui/ui.h"

int
ui_conv_busy(struct ui *u, const char *what)
{
	if (!u->gen)
		return 0;
	if (what)
		ui_screen_notify(u, 1, "%s: stop the reply first (Esc)", what);
	return 1;
}

/* The conversation was deleted elsewhere and recording moved to a new
 * one (chatlog_moved): said once, when it happens. */
static void
conv_moved_say(struct ui *u)
{
	char msg[400];

	if (chatlog_moved(&u->log, msg, sizeof(msg)))
		ui_screen_notify(u, 0, "%s", msg);
}

/* Starts a reply; V (not NULL) makes it reply B of an A/B comparison. */
static void
start(struct ui *u, int regen, const struct chatcmd_variant *v)
{
	if (ui_conv_busy(u, regen ? "regenerate" : "send"))
		return;
	if (regen) {
		int n = chat_n_messages(u->c);
		/* A user's message at the end is one whose reply failed: it is
		 * answered again. */
		if (n == 0 || (strcmp(chat_message_role(u->c, n - 1), "assistant") &&
		    strcmp(chat_message_role(u->c, n - 1), "user"))) {
			ui_screen_notify(u, 1, "there is no reply to regenerate");
			return;
		}
		/* The screen shows the new alternative in place of the old one. */
		if (!strcmp(chat_message_role(u->c, n - 1), "assistant") && u->nmsgs > 0 &&
		    !strcmp(u->msgs[u->nmsgs - 1].role, "assistant"))
			ui_screen_pop(u);
		/* A user's message answered again may be refused and withdrawn
		 * (a resumed conversation under a smaller context): it goes
		 * back into the input line as a message sent does. */
		if (!strcmp(chat_message_role(u->c, n - 1), "user")) {
			free(u->unsent);
			u->unsent = strdup(chat_message_content(u->c, n - 1));
		}
	}
	/* The A/B view would show this reply as B. */
	if (!v)
		ui_ab_leave(u);
	u->answer.len = u->reasoning.len = 0;
	if (u->answer.p)
		u->answer.p[0] = 0;
	if (u->reasoning.p)
		u->reasoning.p[0] = 0;
	memset(&u->gs, 0, sizeof(u->gs));
	u->regen = regen;
	u->t_start = ui_screen_now();
	u->t_first = 0;
	if (!ui_screen_push(u, "assistant", "")) {
		ui_screen_notify(u, 1, "out of memory");
		return;
	}
	chatlog_sending(&u->log, u->c);
	u->gen = v ? ui_gen_start_with(u->c, v, u->wake[1]) : ui_gen_start(u->c, regen, u->wake[1]);
	if (!u->gen) {
		ui_screen_notify(u, 1, "cannot start the generation thread");
		ui_screen_pop(u);
		return;
	}
	u->state = "generating";
	u->follow = 1;
	u->sel = -1;
}

void
ui_conv_start(struct ui *u, int regen)
{
	start(u, regen, NULL);
}

void
ui_conv_start_with(struct ui *u, const struct chatcmd_variant *v)
{
	start(u, 1, v);
}

int
ui_conv_poll(struct ui *u)
{
	char notice[256];
	int pieces = u->gs.pieces;

	if (!u->gen)
		return 0;
	if (ui_gen_take(u->gen, &u->answer, &u->reasoning, &u->gs, notice, sizeof(notice)) < 0)
		ui_screen_notify(u, 1, "out of memory: the reply is shown when it ends");
	if (u->gs.pieces > 0 && u->t_first == 0)
		u->t_first = ui_screen_now();
	if (u->gs.pieces != pieces && u->nmsgs > 0) {
		struct ui_msg *m = &u->msgs[u->nmsgs - 1];
		ui_screen_set(m, u->answer.p ? u->answer.p : "", u->answer.len);
		if (u->reasoning.len)
			ui_screen_set_reasoning(m, u->reasoning.p, u->reasoning.len, u->gs.n_reasoning);
	}
	if (u->gs.prompt_total && u->gs.prompt_done < u->gs.prompt_total)
		u->state = "prompt";
	else
		u->state = "generating";
	if (notice[0])
		ui_screen_notify(u, 0, "%s", notice);
	if (u->gs.done)
		ui_conv_finish(u);
	return UI_KH_REDRAW;
}

void
ui_conv_finish(struct ui *u)
{
	char err[512];
	int rc = ui_gen_finish(u->gen, &u->stats, err, sizeof(err));

	u->gen = NULL;
	/* An Esc handled after the reply ended (before its "done" was read
	 * here) must not stop the next reply. */
	chat_cancel_reset(u->c);
	if (rc < 0) {
		/* No reply could be started.  A message the conversation could
		 * not take was withdrawn by the session: it goes back into the
		 * input line to be shortened or changed.  One the engine failed
		 * on (a server that refused or could not be reached) stays, for
		 * F5 to send again. */
		int n = chat_n_messages(u->c);
		/* Recorded before a server refused it even alone (sent, or sent
		 * again with F5): its record goes too. */
		if (chatlog_withdrawn(&u->log, u->c) < 0) {
			size_t l = strlen(err);
			snprintf(err + l, sizeof(err) - l, "; the history keeps the message: %s", store_errmsg(u->log.s));
		}
		if (u->log.ab.state == CHATLOG_AB_RUNNING) {
			chatlog_ab_cancel(&u->log);   /* no B: nothing to compare */
			u->ab_view = 0;
		}
		/* The engine failed, not the message: it stays. */
		const int kept = n > 0 && !strcmp(chat_message_role(u->c, n - 1), "user") && n >= u->nmsgs - 1;
		u->state = "error";
		if (u->nmsgs > 0 && !strcmp(u->msgs[u->nmsgs - 1].role, "assistant"))
			ui_screen_pop(u);
		if (u->nmsgs > 0 && !strcmp(u->msgs[u->nmsgs - 1].role, "user") && chat_n_messages(u->c) < u->nmsgs) {
			/* Withdrawn: back in the input line as typed (a message
			 * starting with "/" was typed "//"), or, when the user has
			 * typed on meanwhile, in the input history, as every line
			 * sent is, and said so. */
			const char *m = u->unsent ? u->unsent : "";
			if (!ui_input_text()[0]) {
				char *typed = malloc(strlen(m) + 2);
				if (typed)
					snprintf(typed, strlen(m) + 2, "%s%s", m[0] == '/' ? "/" : "", m);
				ui_input_set(u, typed ? typed : m);
				free(typed);
				ui_screen_notify(u, 1, "%s", err);
			} else {
				ui_screen_notify(u, 1, "%s (your message is in the input history: Up)", err);
			}
			ui_screen_pop(u);
		} else if (kept) {
			ui_screen_notify(u, 1, "no reply (F5 sends your message again): %s", err);
		} else {
			ui_screen_notify(u, 1, "%s", err);
		}
		if (u->regen)
			ui_conv_sync(u);   /* the reply that was to be replaced is still there */
		return;
	}
	u->have_stats = 1;
	u->last_rating_word[0] = 0;   /* a comment needs a rating of this reply */
	u->state = u->stats.stop == CHAT_STOP_CANCEL ? "stopped" : u->stats.stop == CHAT_STOP_CONTEXT ?
	    "context full" : u->stats.stop == CHAT_STOP_ERROR ? "error" : "done";
	if (u->stats.stop == CHAT_STOP_ERROR)
		ui_screen_notify(u, 1, "the reply broke off: %s", err);
	/* The screen shows the session's conversation (the reply complete). */
	ui_conv_sync(u);
	/* The message the reply answers, refused by the store when it was
	 * sent or edited ("not saved" then): the reply's save tries it
	 * again, and what it stores is said. */
	int n = chat_n_messages(u->c);
	int unsaved = n >= 2 && !strcmp(chat_message_role(u->c, n - 2), "user") && !chat_message_tag(u->c, n - 2);
	{
		const int ab_b = u->log.ab.state == CHATLOG_AB_RUNNING;
		if (chatlog_reply(&u->log, u->c, &u->stats) < 0)
			ui_screen_notify(u, 1, "not saved: %s", store_errmsg(u->log.s));
		else if (unsaved && u->log.s && chat_message_tag(u->c, n - 2) && u->log.last_gen)
			ui_screen_notify(u, 0, "saved after all: your message, with its reply");
		if (ab_b && u->log.ab.state == CHATLOG_AB_NONE && u->ab_view) {
			/* B was stopped or broke off: nothing to pick. */
			u->ab_view = 0;
			ui_screen_notify(u, 1, "A/B ended: reply B was not finished, so there is no pick to make (it "
			    "stays as another version of the reply)");
		}
	}
	conv_moved_say(u);
}

void
ui_conv_stop(struct ui *u)
{
	if (!u->gen)
		return;
	chat_cancel(u->c);
	ui_screen_notify(u, 0, "stopping the reply");
}

int
ui_conv_send(struct ui *u, const char *text)
{
	if (ui_conv_busy(u, "send"))
		return -1;
	if (chat_add_user(u->c, text, strlen(text)) < 0) {
		ui_screen_notify(u, 1, "out of memory: the message was not sent");
		return -1;
	}
	/* Kept until the reply starts: a message the session refuses comes back. */
	free(u->unsent);
	u->unsent = strdup(text);
	{
		struct ui_msg *m = ui_screen_push(u, "user", chat_message_content(u->c, chat_n_messages(u->c) - 1));
		if (m)
			m->idx = chat_n_messages(u->c) - 1;
	}
	/* Committed before the model starts: a crash loses no message. */
	if (chatlog_user(&u->log, u->c) < 0)
		ui_screen_notify(u, 1, "not saved: %s", store_errmsg(u->log.s));
	conv_moved_say(u);
	ui_conv_start(u, 0);
	return 0;
}

void
ui_conv_system(struct ui *u, const char *text)
{
	struct chatcmd_env e;
	if (ui_conv_busy(u, "system prompt"))
		return;
	ui_cmd_env(u, &e);
	chatcmd_system(&e, text);
}

/* Another conversation is on screen: an edit, a comment or the system
 * prompt editor begun in the old one would land on the new one's
 * messages (edit_idx is an index into the old one).  Back to typing a
 * message; what was typed stays in the input line.  Returns whether a
 * mode was left. */
static int
leave_mode(struct ui *u)
{
	if (u->mode == UI_IM_MESSAGE)
		return 0;
	u->mode = UI_IM_MESSAGE;
	u->edit_idx = -1;
	return 1;
}

void
ui_conv_new(struct ui *u)
{
	if (ui_conv_busy(u, "new conversation"))
		return;
	chat_clear(u->c);
	chatlog_new(&u->log);
	ui_screen_clear(u);
	u->last_rating_word[0] = 0;   /* a comment goes with a rating of this conversation */
	u->have_stats = 0;
	u->state = "idle";
	if (leave_mode(u))
		ui_screen_notify(u, 0, "new conversation; what you typed stays in the input line, as a message");
	else
		ui_screen_notify(u, 0, "new conversation");
}

void
ui_conv_sync(struct ui *u)
{
	int n = chat_n_messages(u->c), follow = u->follow, top = u->top, sel = u->sel;
	/* Which reasoning was unfolded stays so: by the session's message
	 * index; the reply being written is the session's last message now. */
	unsigned char *unfold = calloc(n + 1, 1);

	for (int i = 0; unfold && i < u->nmsgs; i++) {
		int idx = u->msgs[i].idx >= 0 ? u->msgs[i].idx : n - 1;
		if (idx >= 0 && idx < n)
			unfold[idx] = (unsigned char)u->msgs[i].unfold;
	}
	ui_screen_clear(u);
	for (int i = 0; i < n; i++) {
		struct ui_msg *m = ui_screen_push(u, chat_message_role(u->c, i), chat_message_content(u->c, i));
		const char *r = chat_message_reasoning(u->c, i);
		if (!m)
			break;
		m->idx = i;
		m->alt = m->chosen = chat_alt_index(u->c, i);
		m->nalt = chat_alt_count(u->c, i);
		if (r)
			ui_screen_set_reasoning(m, r, strlen(r), chat_alt_reasoning_tokens(u->c, i, m->alt));
		m->unfold = unfold ? unfold[i] : 0;
	}
	free(unfold);
	u->follow = follow;
	u->top = top;
	u->sel = sel < u->nmsgs ? sel : u->nmsgs - 1;
}

void
ui_conv_resume(struct ui *u, int64_t conv)
{
	char err[512];

	/* The running reply belongs to the conversation on screen: loading
	 * another one under it would file the reply there. */
	if (ui_conv_busy(u, "resume"))
		return;
	if (chatlog_resume(&u->log, u->c, conv, err, sizeof(err)) < 0) {
		ui_screen_notify(u, 1, "%s", err);
		ui_conv_sync(u);
		return;
	}
	ui_conv_sync(u);
	u->last_rating_word[0] = 0;   /* a comment goes with a rating of this conversation */
	u->have_stats = 0;
	u->state = "idle";
	if (leave_mode(u))
		ui_screen_notify(u, 0, "resumed conversation %lld; what you typed stays in the input line, as a message",
		    (long long)conv);
	else
		ui_screen_notify(u, 0, "resumed conversation %lld", (long long)conv);
}

void
ui_conv_history(struct ui *u)
{
	if (ui_conv_busy(u, "history"))
		return;
	if (!u->log.s) {
		ui_screen_notify(u, 1, "the history is off");
		return;
	}
	if (store_conv_recent(u->log.s, u->hist, 64, &u->nhist) < 0) {
		ui_screen_notify(u, 1, "%s", store_errmsg(u->log.s));
		return;
	}
	u->hist_sel = 0;
	u->box = UI_BOX_HISTORY;
}

/* Terminals cap what OSC 52 may carry (xterm: about 100 kB of base64). */
enum { COPY_MAX = 64 * 1024 };

void
ui_conv_copy(struct ui *u)
{
	int n = chat_n_messages(u->c) - 1, alt = -1;
	const char *t;
	size_t len;

	if (u->gen) {
		ui_screen_notify(u, 1, "copy: the reply is still being written");
		return;
	}
	/* As it is shown (an alternative flipped to with Left is what is
	 * copied, as it is what is rated): in the conversation, the message
	 * chosen with Up/Down; from the input line (/copy), the last reply. */
	int i = u->focus == UI_F_CONV && u->sel >= 0 && u->sel < u->nmsgs ? u->sel : -1;
	if (i < 0)
		for (i = u->nmsgs - 1; i >= 0 && strcmp(u->msgs[i].role, "assistant"); i--)
			;
	if (i >= 0 && u->msgs[i].idx >= 0 && u->msgs[i].idx <= n) {
		n = u->msgs[i].idx;
		alt = strcmp(u->msgs[i].role, "assistant") ? -1 : u->msgs[i].alt;
	} else {
		n = -1;
	}
	if (n < 0) {
		ui_screen_notify(u, 1, "no reply to copy yet");
		return;
	}
	t = alt >= 0 ? chat_alt_content(u->c, n, alt) : chat_message_content(u->c, n);
	if (!t)
		t = chat_message_content(u->c, n);
	len = strlen(t);
	if (len > COPY_MAX) {
		ui_screen_notify(u, 1, "the message is too long for the terminal's clipboard (%zu bytes)", len);
		return;
	}
	if (ui_tty_clipboard(t, len) < 0)
		ui_screen_notify(u, 1, "copy: cannot write to the terminal");
	else
		ui_screen_notify(u, 0, "copied the %s (%zu bytes) to the clipboard",
		    strcmp(chat_message_role(u->c, n), "assistant") ? "message" : "reply", len);
}

/* --- alternatives and edits (the chosen message of the conversation focus) --- */

void
ui_conv_select(struct ui *u, int dir)
{
	if (u->nmsgs == 0)
		return;
	if (u->sel < 0 || u->sel >= u->nmsgs)
		u->sel = u->nmsgs - 1;
	else if (u->sel + dir >= 0 && u->sel + dir < u->nmsgs)
		u->sel += dir;
	u->sel_show = 1;
}

/* The chosen message, if it is in the session (not while a reply runs). */
static struct ui_msg *
chosen(struct ui *u, const char *what)
{
	struct ui_msg *m;
	if (ui_conv_busy(u, what))
		return NULL;
	if (u->sel < 0 || u->sel >= u->nmsgs) {
		ui_screen_notify(u, 1, "choose a message first (Up/Down)");
		return NULL;
	}
	m = &u->msgs[u->sel];
	return m->idx >= 0 && m->idx < chat_n_messages(u->c) ? m : NULL;
}

int
ui_conv_rate(struct ui *u, const char *word)
{
	/* The reply on screen, not the session's last generation: while a
	 * reply streams or replaces another (F5) the last one stored is not
	 * what the user sees, so rating waits; an older reply chosen with
	 * Up is rated as it is shown (its alternative on screen). */
	struct ui_msg *m = chosen(u, "rate");
	struct chatcmd_env e;

	if (!m)
		return -1;
	if (strcmp(m->role, "assistant")) {
		ui_screen_notify(u, 1, "only replies can be rated (Up/Down choose one)");
		return -1;
	}
	ui_cmd_env(u, &e);
	/* The rating is kept for a comment by the ops' rated. */
	return chatcmd_rate_reply(&e, m->idx, word, NULL, NULL) < 0 ? -1 : 0;
}

int
ui_conv_comment(struct ui *u, const char *comment)
{
	struct chatcmd_env e;

	if (!u->last_rating_word[0] || !u->last_rating_gen) {
		ui_screen_notify(u, 1, "rate the reply first (+, - or 1..5), then c for a comment");
		return -1;
	}
	ui_cmd_env(u, &e);
	return chatcmd_rate_gen(&e, u->last_rating_gen, u->last_rating_word, comment);
}

void
ui_conv_flip(struct ui *u, int dir)
{
	struct ui_msg *m = chosen(u, "alternatives");
	const char *t;
	int k;

	if (!m)
		return;
	if (m->nalt < 2) {
		ui_screen_notify(u, 1, "%s", strcmp(m->role, "assistant") ? "only replies have alternatives" :
		    "this reply has no alternatives yet (F5 or r makes one)");
		return;
	}
	k = (m->alt + dir + m->nalt) % m->nalt;
	if (!(t = chat_alt_content(u->c, m->idx, k)))
		return;
	ui_screen_set(m, t, strlen(t));
	t = chat_alt_reasoning(u->c, m->idx, k);
	ui_screen_set_reasoning(m, t, t ? strlen(t) : 0, chat_alt_reasoning_tokens(u->c, m->idx, k));
	m->alt = k;
	u->sel_show = 1;
	if (k != chat_alt_index(u->c, m->idx))
		ui_screen_notify(u, 0, "alternative %d of %d; Enter makes it the chosen reply", k + 1, m->nalt);
	else
		ui_screen_notify(u, 0, "alternative %d of %d (the chosen one)", k + 1, m->nalt);
}

void
ui_conv_pick(struct ui *u)
{
	struct ui_msg *m = chosen(u, "choose a reply");
	char err[512];
	int k;

	if (!m || strcmp(m->role, "assistant"))
		return;
	k = m->alt;
	if (k == chat_alt_index(u->c, m->idx)) {
		ui_screen_notify(u, 0, "alternative %d is already the chosen reply", k + 1);
		return;
	}
	switch (chatlog_alt_select(&u->log, u->c, m->idx, k, err, sizeof(err))) {
	case 0:
		ui_screen_notify(u, 0, "alternative %d of %d is the chosen reply", k + 1, m->nalt);
		break;
	case -2:
		ui_screen_notify(u, 1, "chosen, but not saved: %s", err);
		break;
	default:
		ui_screen_notify(u, 1, "%s", err);
	}
	ui_conv_sync(u);
}

void
ui_conv_fold(struct ui *u)
{
	struct ui_msg *m = NULL;

	if (u->focus == UI_F_CONV && u->sel >= 0 && u->sel < u->nmsgs) {
		m = &u->msgs[u->sel];
		if (!m->rclean) {
			ui_screen_notify(u, 1, "this message has no reasoning to show");
			return;
		}
	} else {
		/* Elsewhere: the last reply that has some (the one streaming too). */
		for (int i = u->nmsgs - 1; i >= 0 && !m; i--)
			if (u->msgs[i].rclean)
				m = &u->msgs[i];
		if (!m) {
			ui_screen_notify(u, 1, "no reply with reasoning to show");
			return;
		}
	}
	m->unfold = !m->unfold;
}

void
ui_conv_edit_begin(struct ui *u)
{
	struct ui_msg *m = chosen(u, "edit");

	if (!m)
		return;
	if (strcmp(m->role, "user")) {
		ui_screen_notify(u, 1, "only your messages can be edited (Left/Right choose among replies)");
		return;
	}
	u->edit_idx = m->idx;
	u->mode = UI_IM_EDIT;
	u->focus = UI_F_INPUT;
	if (ui_input_stash(u, chat_message_content(u->c, m->idx)))
		ui_screen_notify(u, 0, "edit the message (Enter sends, Esc cancels); what you typed is in the input "
		    "history (Up)");
	else
		ui_screen_notify(u, 0, "edit the message; Enter sends it as a new branch, Esc cancels");
}

int
ui_conv_edit(struct ui *u, const char *text)
{
	char err[512];
	int rc;

	if (ui_conv_busy(u, "edit"))
		return -1;
	rc = chatlog_edit(&u->log, u->c, u->edit_idx, text, strlen(text), err, sizeof(err));
	if (rc == -1) {
		ui_screen_notify(u, 1, "%s", err);
		return -1;
	}
	if (rc == -2)
		ui_screen_notify(u, 1, "edited, but not saved: %s", err);
	ui_conv_sync(u);
	u->follow = 1;
	free(u->unsent);
	u->unsent = strdup(text);
	ui_conv_start(u, 0);
	return 0;
}
