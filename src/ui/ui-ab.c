/* ui-ab.c -- A/B comparisons in the full screen: the chooser of B's setting, the two replies side by side, the pick. */
#define _XOPEN_SOURCE_EXTENDED 1
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curses.h>

#include "natter/chat.h"
#include "natter/chatcmd.h"
#include "natter/chatlog.h"
#include "ui/ui.h"

/* Below this width the two replies are stacked rather than side by side. */
enum { AB_SIDE_MIN_COLS = 80 };

static void
add(struct ui *u, const char *spec, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
add(struct ui *u, const char *spec, const char *fmt, ...)
{
	va_list ap;
	if (u->ab_n >= (int)(sizeof(u->ab_spec) / sizeof(u->ab_spec[0])))
		return;
	snprintf(u->ab_spec[u->ab_n], sizeof(u->ab_spec[0]), "%s", spec);
	va_start(ap, fmt);
	vsnprintf(u->ab_what[u->ab_n], sizeof(u->ab_what[0]), fmt, ap);
	va_end(ap);
	u->ab_n++;
}

void
ui_ab_choose(struct ui *u)
{
	struct sampler_params p;
	float sc[CHAT_MAX_ADAPTERS];
	char spec[32], err[512];
	int n = chat_n_messages(u->c), on = 0;

	if (ui_conv_busy(u, "A/B"))
		return;
	if (n < 2 || strcmp(chat_message_role(u->c, n - 1), "assistant")) {
		ui_screen_notify(u, 1, "A/B compares the last reply with a second one: send a message first");
		return;
	}
	if (chatcmd_ab_base(&u->log, u->c, &p, sc, err, sizeof(err)) < 0) {
		ui_screen_notify(u, 1, "%s", err);
		return;
	}
	for (int i = 0; i < chat_n_adapters(u->c); i++)
		on |= sc[i] != 0.0f;
	/* The default first: the adapter toggled when there is one. */
	u->ab_n = 0;
	if (chat_n_adapters(u->c))
		add(u, "adapter", "adapter toggled (%s for B)", on ? "off" : "on");
	add(u, "next", "seed + 1 and temperature + 0.3 (%.2f)", p.temp + 0.3);
	if (p.seed != SAMPLER_SEED_RANDOM) {
		snprintf(spec, sizeof(spec), "seed %llu", (unsigned long long)(p.seed + 1));
		add(u, spec, "another seed (%llu), the rest the same", (unsigned long long)(p.seed + 1));
	}
	snprintf(spec, sizeof(spec), "temp %.2f", p.temp + 0.3);
	add(u, spec, "temperature %.2f (A: %.2f)", p.temp + 0.3, p.temp);
	if (p.temp >= 0.3f) {
		snprintf(spec, sizeof(spec), "temp %.2f", p.temp - 0.3);
		add(u, spec, "temperature %.2f (A: %.2f)", p.temp - 0.3, p.temp);
	}
	if (p.top_p < 1.0f)
		add(u, "top_p 1", "top_p 1 (A: %.2f)", p.top_p);
	else
		add(u, "top_p 0.8", "top_p 0.80 (A: 1)");
	u->ab_sel = 0;
	u->box = UI_BOX_AB;
}

/* Closes the view and forgets the copy of A. */
static void
view_close(struct ui *u)
{
	u->ab_view = 0;
	u->ab_top = 0;
	free(u->ab_a);
	u->ab_a = NULL;
}

void
ui_ab_start(struct ui *u, const struct chatcmd_variant *v)
{
	const struct chatlog_ab *ab = &u->log.ab;
	const char *a = chat_alt_content(u->c, ab->idx, ab->alt_a);

	view_close(u);
	/* The session is the generation thread's while B is written: A's
	 * text is copied now. */
	u->ab_a = strdup(a ? a : "");
	u->box = UI_BOX_NONE;
	u->focus = UI_F_INPUT;
	ui_conv_start_with(u, v);
	if (!u->gen) {
		chatlog_ab_cancel(&u->log);
		view_close(u);
		return;
	}
	u->ab_view = 1;
	ui_screen_notify(u, 0, "B: %s", ab->setting);
}

void
ui_ab_leave(struct ui *u)
{
	if (!u->ab_view)
		return;
	view_close(u);
	chatlog_ab_cancel(&u->log);
	/* An error just said (the message not saved) is not covered up. */
	if (!u->notice_err || !ui_screen_notice_live(u))
		ui_screen_notify(u, 0, "A/B closed: a new reply ends the comparison, with no pick saved");
}

/* The user's pick: WORD a, b or tie. */
static void
pick(struct ui *u, const char *word)
{
	struct chatcmd_env e;
	ui_cmd_env(u, &e);
	if (chatcmd_pick(&e, word) == 0 || u->log.ab.state != CHATLOG_AB_READY) {
		view_close(u);
		ui_conv_sync(u);
	}
}

int
ui_ab_key(struct ui *u, int is_key, unsigned ch)
{
	if (u->box == UI_BOX_AB) {
		if (is_key && ch == KEY_UP && u->ab_sel > 0)
			u->ab_sel--;
		else if (is_key && ch == KEY_DOWN && u->ab_sel + 1 < u->ab_n)
			u->ab_sel++;
		else if ((!is_key && (ch == '\r' || ch == '\n')) || (is_key && ch == KEY_ENTER)) {
			struct chatcmd_env e;
			u->box = UI_BOX_NONE;
			ui_cmd_env(u, &e);
			chatcmd_ab_start(&e, u->ab_spec[u->ab_sel]);
		} else if (!is_key && (ch == 27 || ch == 'q')) {
			u->box = UI_BOX_NONE;
		} else if (!is_key && (ch == 3 || ch == 17)) {
			return 0;   /* Ctrl-C, Ctrl-Q keep their meaning */
		}
		return UI_KH_REDRAW;
	}
	if (!u->ab_view)
		return 0;
	if (is_key && (ch == KEY_UP || ch == KEY_DOWN || ch == KEY_PPAGE || ch == KEY_NPAGE)) {
		int step = ch == KEY_UP || ch == KEY_DOWN ? 1 : (u->lay.conv.h > 6 ? u->lay.conv.h / 2 : 1);
		u->ab_top += ch == KEY_UP || ch == KEY_PPAGE ? -step : step;
		if (u->ab_top < 0)
			u->ab_top = 0;
		return UI_KH_REDRAW;
	}
	if (u->gen) {
		if (!is_key && ch == 27) {
			ui_conv_stop(u);
			return UI_KH_REDRAW;
		}
		return 0;   /* the other keys work as ever; B keeps streaming */
	}
	if (u->log.ab.state != CHATLOG_AB_READY) {
		view_close(u);
		return 0;
	}
	/* A pick, away from the input line: there a letter is a message's
	 * (the first letter of one, typed into the empty line, picked: a
	 * message starting "t" recorded a tie the user never chose). */
	if (!is_key && (ch == 'a' || ch == 'b' || ch == 't') && u->focus != UI_F_INPUT) {
		pick(u, ch == 'a' ? "a" : ch == 'b' ? "b" : "tie");
		return UI_KH_REDRAW;
	}
	/* A rating key on the conversation would rate B alone, the
	 * session's reply, while both are shown: which one is said after the
	 * pick.  (Elsewhere they keep their meaning: a parameter's step, a
	 * character typed.) */
	if (!is_key && u->focus == UI_F_CONV && u->mode == UI_IM_MESSAGE &&
	    (ch == '+' || ch == '-' || (ch >= '1' && ch <= '5') || ch == 'c')) {
		ui_screen_notify(u, 1, "pick first (a, b or t); then +, - or 1..5 rate the chosen reply");
		return UI_KH_REDRAW;
	}
	if (!is_key && ch == 27) {
		view_close(u);
		ui_conv_sync(u);
		ui_screen_notify(u, 0, "A/B left open: /pick a, /pick b or /pick tie decides later");
		return UI_KH_REDRAW;
	}
	return 0;
}

/* One reply in R: a header line (its label, LABEL) and TEXT wrapped, from line TOP on. */
static void
draw_reply(struct ui_rect r, const char *which, const char *label, const char *text, int top, int attr)
{
	char head[256];
	char *clean;
	struct ui_line *lines = NULL;
	int n;

	if (r.h < 1 || r.w < 4)
		return;
	snprintf(head, sizeof(head), "%s: %s", which, label);
	ui_draw_put(r.y, r.x, r.w, head, ui_theme_attr(UE_TITLE) | A_BOLD);
	clean = ui_text_clean(text ? text : "", text ? strlen(text) : 0);
	if (!clean)
		return;
	n = ui_text_layout(clean, r.w, &lines);
	for (int i = 0; i < r.h - 1 && top + i < n; i++) {
		const struct ui_line *l = &lines[top + i];
		ui_draw_put_n(r.y + 1 + i, r.x, r.w, clean + l->off, l->len, attr);
	}
	if (n > top + r.h - 1 && r.w > 12)
		ui_draw_put(r.y + r.h - 1, r.x + r.w - 10, 10, " more (Dn)", ui_theme_attr(UE_NOTICE));
	free(lines);
	free(clean);
}

static void
draw_chooser(struct ui *u)
{
	int w = COLS < 60 ? COLS : 60, h = u->ab_n + 3, x0 = (COLS - w) / 2, y0;

	if (h > LINES)
		h = LINES;
	y0 = (LINES - h) / 2;
	for (int i = 0; i < h; i++)
		ui_draw_fill(y0 + i, x0, w, ui_theme_attr(UE_SELECTED));
	ui_draw_put(y0, x0 + 2, w - 4, "A/B: generate reply B with", ui_theme_attr(UE_SELECTED) | A_BOLD);
	for (int i = 0; i < u->ab_n && 1 + i < h; i++)
		ui_draw_put(y0 + 1 + i, x0 + 1, w - 2, u->ab_what[i],
		    i == u->ab_sel ? (int)(ui_theme_attr(UE_NORMAL) | A_REVERSE) : ui_theme_attr(UE_SELECTED));
}

void
ui_ab_draw(struct ui *u)
{
	struct ui_rect r = u->lay.conv, ra, rb;
	const struct chatlog_ab *ab = &u->log.ab;
	const char *b;
	int attr = ui_theme_attr(UE_ASSISTANT);

	if (u->box == UI_BOX_AB) {
		draw_chooser(u);
		return;
	}
	if (!u->ab_view || r.h < 3 || r.w < 10)
		return;
	for (int i = 0; i < r.h; i++)
		ui_draw_fill(r.y + i, r.x, r.w, ui_theme_attr(UE_NORMAL));
	ui_draw_put(r.y, r.x + 1, r.w - 2, u->gen ? "A/B: writing B (Esc stops it)" : u->focus == UI_F_INPUT ?
	    "A/B: which reply is better? Tab: a/b/t" :
	    "A/B: which reply is better?  a: A   b: B   t: tie", ui_theme_attr(UE_TITLE) | A_BOLD);
	/* B streams from the queue while it is written; then it is the
	 * session's alternative. */
	b = u->gen ? (u->answer.p ? u->answer.p : "") : chat_alt_content(u->c, ab->idx, ab->alt_b);
	if (r.w >= AB_SIDE_MIN_COLS) {
		int cw = (r.w - 3) / 2;
		ra = (struct ui_rect){ r.y + 1, r.x + 1, r.h - 1, cw };
		rb = (struct ui_rect){ r.y + 1, r.x + 2 + cw + 1, r.h - 1, r.w - cw - 4 };
		attron(ui_theme_attr(UE_BORDER));
		mvvline(r.y + 1, r.x + 2 + cw - 1, ACS_VLINE, r.h - 1);
		attroff(ui_theme_attr(UE_BORDER));
	} else {
		int hh = (r.h - 1) / 2;
		ra = (struct ui_rect){ r.y + 1, r.x + 1, hh, r.w - 2 };
		rb = (struct ui_rect){ r.y + 1 + hh, r.x + 1, r.h - 1 - hh, r.w - 2 };
	}
	draw_reply(ra, "A", ab->label_a, u->ab_a, u->ab_top, attr);
	draw_reply(rb, "B", ab->label_b, b, u->ab_top, attr);
}
