/* ui-keys.c -- what each key does: boxes first, then the global keys, then the focused pane's. */
#define _XOPEN_SOURCE_EXTENDED 1
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <curses.h>

#include "natter/chat.h"
#include "ui/ui.h"

/* --- the parameters pane --- */

static int
is_enter(int is_key, unsigned ch)
{
	return (!is_key && (ch == '\r' || ch == '\n')) || (is_key && ch == KEY_ENTER);
}

/* A character that types text (not a control, not a key code). */
static int
is_printable(int is_key, unsigned ch)
{
	return !is_key && ch >= 0x20 && ch != 0x7F;
}

static int
params_key(struct ui *u, int is_key, unsigned ch)
{
	if (is_key && ch == KEY_UP && u->param_sel > 0)
		u->param_sel--;
	else if (is_key && ch == KEY_DOWN && u->param_sel + 1 < ui_param_rows(u))
		u->param_sel++;
	else if ((is_key && ch == KEY_LEFT) || (!is_key && ch == '-'))
		ui_param_step(u, u->param_sel, -1);
	else if ((is_key && ch == KEY_RIGHT) || (!is_key && ch == '+'))
		ui_param_step(u, u->param_sel, +1);
	else if (is_enter(is_key, ch))
		ui_param_enter(u, u->param_sel);
	else if (is_printable(is_key, ch))
		return 0;   /* typed text goes to the input line */
	return UI_KH_REDRAW;
}

/* --- the conversation pane --- */

static void
scroll_by(struct ui *u, int d)
{
	if (d < 0) {
		u->follow = 0;
		u->top += d;
		if (u->top < 0)
			u->top = 0;
	} else {
		int h = u->lay.conv.h > 1 ? u->lay.conv.h - 1 : 1;
		int total = ui_screen_conv_lines(u, u->lay.conv.w - 2 > 1 ? u->lay.conv.w - 2 : 1);
		u->top += d;
		/* drawing clamps; reaching the bottom resumes following */
		if (u->top >= total - h)
			u->follow = 1;
	}
}

static int
page(struct ui *u)
{
	int h = u->lay.conv.h - 1;
	return h > 2 ? h - 2 : 1;
}

static int
conv_key(struct ui *u, int is_key, unsigned ch)
{
	if (u->sel < 0)
		ui_conv_select(u, 0);
	if (is_enter(is_key, ch)) {
		if (u->sel >= 0 && u->sel < u->nmsgs && !strcmp(u->msgs[u->sel].role, "user"))
			ui_conv_edit_begin(u);
		else
			ui_conv_pick(u);
		return UI_KH_REDRAW;
	}
	if (!is_key) {
		char w[2] = { (char)ch, 0 };
		if (ch == '+' || ch == '-') {
			ui_conv_rate(u, ch == '+' ? "up" : "down");
		} else if (ch >= '1' && ch <= '5') {
			ui_conv_rate(u, w);
		} else if (ch == 'c') {
			if (!u->last_rating_word[0])
				ui_screen_notify(u, 1, "rate the reply first (+, - or 1..5), then c for a comment");
			else {
				u->mode = UI_IM_COMMENT;
				u->focus = UI_F_INPUT;
				ui_input_stash(u, "");
			}
		} else if (ch == 'r') {
			ui_conv_start(u, 1);
		} else if (ch == 'b') {
			ui_ab_choose(u);
		} else if (ch == 'y') {
			ui_conv_copy(u);
		} else if (ch == 'e') {
			ui_conv_edit_begin(u);
		} else if (ch == '[' || ch == ']') {
			ui_conv_flip(u, ch == '[' ? -1 : 1);
		} else if (ch == '*') {
			ui_conv_pick(u);
		} else if (ch == 't') {
			ui_conv_fold(u);
		} else if (is_printable(is_key, ch)) {
			return 0;   /* not a shortcut: it types into the input line */
		}
		return UI_KH_REDRAW;
	}
	if (ch == KEY_UP)
		ui_conv_select(u, -1);
	else if (ch == KEY_DOWN)
		ui_conv_select(u, 1);
	else if (ch == KEY_LEFT || ch == KEY_RIGHT)
		ui_conv_flip(u, ch == KEY_LEFT ? -1 : 1);
	else if (ch == KEY_HOME) {
		u->follow = 0;
		u->top = 0;
		u->sel = u->nmsgs ? 0 : -1;
	} else if (ch == KEY_END) {
		u->follow = 1;
		u->sel = u->nmsgs - 1;
	}
	return UI_KH_REDRAW;
}

/* --- boxes --- */

static int
box_key(struct ui *u, int is_key, unsigned ch)
{
	if (u->box == UI_BOX_HISTORY) {
		if (is_key && ch == KEY_UP && u->hist_sel > 0)
			u->hist_sel--;
		else if (is_key && ch == KEY_DOWN && u->hist_sel + 1 < u->nhist)
			u->hist_sel++;
		else if (is_enter(is_key, ch)) {
			u->box = UI_BOX_NONE;
			if (u->nhist > 0)
				ui_conv_resume(u, u->hist[u->hist_sel].id);
		} else if ((!is_key && (ch == 27 || ch == 'q')) || (is_key && ch == KEY_F(3)))
			u->box = UI_BOX_NONE;
		return UI_KH_REDRAW;
	}
	if (is_key && (ch == KEY_UP || ch == KEY_DOWN || ch == KEY_PPAGE || ch == KEY_NPAGE)) {
		int step = ch == KEY_UP || ch == KEY_DOWN ? 1 : (u->box_vis > 2 ? u->box_vis - 1 : 1);
		u->box_top += ch == KEY_UP || ch == KEY_PPAGE ? -step : step;
		return UI_KH_REDRAW;
	}
	u->box = UI_BOX_NONE;
	return UI_KH_REDRAW;
}

static int
stop_or_quit(struct ui *u)
{
	if (u->gen) {
		ui_conv_stop(u);
		return UI_KH_REDRAW;
	}
	if (ui_screen_now() - u->ctrlc_t < 2)
		return UI_KH_QUIT;
	u->ctrlc_t = ui_screen_now();
	ui_screen_notify(u, 0, "press Ctrl-C again to quit");
	return UI_KH_REDRAW;
}

int
ui_keys_stop_or_quit(struct ui *u)
{
	return stop_or_quit(u);
}

/* Keys that mean the same in every focus; 0 if KEY is not one of them. */
static int
global_key(struct ui *u, int is_key, unsigned ch)
{
	if (is_key) {
		switch (ch) {
		case KEY_F(1): u->box = UI_BOX_HELP; u->box_top = 0; return UI_KH_REDRAW;
		case KEY_F(10): return UI_KH_QUIT;
		case KEY_F(2): ui_conv_new(u); return UI_KH_REDRAW;
		case KEY_F(3): ui_conv_history(u); return UI_KH_REDRAW;
		case KEY_F(5): ui_conv_start(u, 1); return UI_KH_REDRAW;
		case KEY_F(6): ui_ab_choose(u); return UI_KH_REDRAW;
		case KEY_F(4): ui_conv_fold(u); return UI_KH_REDRAW;
		case KEY_PPAGE: scroll_by(u, -page(u)); return UI_KH_REDRAW;
		case KEY_NPAGE: scroll_by(u, page(u)); return UI_KH_REDRAW;
		case KEY_BTAB:
			if (u->mode == UI_IM_MESSAGE)
				ui_screen_focus_next(u, -1);
			return UI_KH_REDRAW;
		case KEY_MOUSE: {
			MEVENT ev;
			if (getmouse(&ev) == OK) {
				if (ev.bstate & BUTTON4_PRESSED)
					scroll_by(u, -3);
#ifdef BUTTON5_PRESSED
				else if (ev.bstate & BUTTON5_PRESSED)
					scroll_by(u, 3);
#endif
			}
			return UI_KH_REDRAW;
		}
		}
		return 0;
	}
	switch (ch) {
	case 3: return stop_or_quit(u);               /* Ctrl-C */
	case 17: return UI_KH_QUIT;                  /* Ctrl-Q */
	case '\t':
		if (u->mode == UI_IM_MESSAGE)
			ui_screen_focus_next(u, +1);
		return UI_KH_REDRAW;
	case 27:                                     /* a lone Esc */
		if (u->mode != UI_IM_MESSAGE) {
			u->mode = UI_IM_MESSAGE;
			/* The draft the mode pushed aside back; what was typed
			 * over the mode's line to the input history. */
			if (ui_input_cancel(u))
				ui_screen_notify(u, 0, "cancelled (what you typed is in the input history: Up)");
			else
				ui_screen_notify(u, 0, "cancelled");
		} else if (u->gen) {
			ui_conv_stop(u);
		} else if (u->focus != UI_F_INPUT) {
			u->focus = UI_F_INPUT;
		}
		return UI_KH_REDRAW;
	}
	return 0;
}

int
ui_keys_handle(struct ui *u, int is_key, unsigned ch)
{
	int r;

	if (is_key && ch == KEY_RESIZE)
		return UI_KH_REDRAW;
	if ((u->box == UI_BOX_AB || (u->box == UI_BOX_NONE && u->ab_view)) && (r = ui_ab_key(u, is_key, ch)))
		return r;
	if (u->box != UI_BOX_NONE)
		return box_key(u, is_key, ch);
	if ((r = global_key(u, is_key, ch)))
		return r;
	if (u->mode == UI_IM_MESSAGE) {
		if (u->focus == UI_F_CONV && (r = conv_key(u, is_key, ch)))
			return r;
		if (u->focus == UI_F_PARAMS && (r = params_key(u, is_key, ch)))
			return r;
	}
	/* The input line. */
	u->focus = UI_F_INPUT;
	if (is_key)
		ui_input_key(u, (int)ch);
	else
		ui_input_char(u, ch);
	return UI_KH_REDRAW;
}
