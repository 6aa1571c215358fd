/* ui-screen.c -- the screen model: messages as shown, notices, where the panes go (no curses). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "natter/chat.h"
#include "ui/ui.h"

double
ui_screen_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void
ui_screen_notify(struct ui *u, int is_err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(u->notice, sizeof(u->notice), fmt, ap);
	va_end(ap);
	u->notice_err = is_err;
	u->notice_t = ui_screen_now();
	/* Kept, for /notices: the line shows one at a time. */
	struct ui_note *n = &u->notes[u->n_notes++ % UI_NOTES];
	memcpy(n->text, u->notice, sizeof(n->text));
	n->err = is_err;
	n->at = time(NULL);
}

int
ui_screen_notice_live(const struct ui *u)
{
	return u->notice[0] && ui_screen_now() - u->notice_t < 8;
}

static void
msg_free(struct ui_msg *m)
{
	free(m->role);
	free(m->clean);
	free(m->lines);
	free(m->rclean);
	free(m->rlines);
	memset(m, 0, sizeof(*m));
}

void
ui_screen_set(struct ui_msg *m, const char *text, size_t len)
{
	free(m->clean);
	free(m->lines);
	m->lines = NULL;
	m->nlines = 0;
	m->wrap_w = 0;
	m->clean = ui_text_clean(text, len);
}

void
ui_screen_set_reasoning(struct ui_msg *m, const char *text, size_t len, int tokens)
{
	free(m->rclean);
	free(m->rlines);
	m->rlines = NULL;
	m->nrlines = 0;
	m->rwrap_w = 0;
	/* The blank lines a model puts around its reasoning are no part of it. */
	while (text && len > 0 && (*text == '\n' || *text == '\r')) {
		text++;
		len--;
	}
	while (text && len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		len--;
	/* An empty block (Qwen3 writes one when told not to think) shows nothing. */
	m->rclean = text && len > 0 ? ui_text_clean(text, len) : NULL;
	m->rtokens = tokens;
}

int
ui_screen_msg_lines(const struct ui_msg *m)
{
	return (m->rclean ? 1 + (m->unfold ? m->nrlines : 0) : 0) + m->nlines;
}

struct ui_msg *
ui_screen_push(struct ui *u, const char *role, const char *text)
{
	struct ui_msg *m;

	if (u->nmsgs == u->capmsgs) {
		int cap = u->capmsgs ? u->capmsgs * 2 : 32;
		struct ui_msg *v = realloc(u->msgs, cap * sizeof(*v));
		if (!v)
			return NULL;
		u->msgs = v;
		u->capmsgs = cap;
	}
	m = &u->msgs[u->nmsgs];
	memset(m, 0, sizeof(*m));
	m->idx = -1;
	m->nalt = 1;
	m->role = strdup(role);
	if (!m->role)
		return NULL;
	u->nmsgs++;
	ui_screen_set(m, text, strlen(text));
	return m;
}

void
ui_screen_pop(struct ui *u)
{
	if (u->nmsgs > 0)
		msg_free(&u->msgs[--u->nmsgs]);
}

void
ui_screen_clear(struct ui *u)
{
	for (int i = 0; i < u->nmsgs; i++)
		msg_free(&u->msgs[i]);
	u->nmsgs = 0;
	u->follow = 1;
	u->top = 0;
	u->sel = -1;
}

int
ui_screen_conv_lines(struct ui *u, int text_w)
{
	int total = 0;
	for (int i = 0; i < u->nmsgs; i++) {
		struct ui_msg *m = &u->msgs[i];
		if (m->wrap_w != text_w) {
			free(m->lines);
			m->lines = NULL;
			m->nlines = ui_text_layout(m->clean ? m->clean : "", text_w, &m->lines);
			if (m->nlines < 0)
				m->nlines = 0;
			m->wrap_w = text_w;
		}
		if (m->rclean && m->rwrap_w != text_w) {
			free(m->rlines);
			m->rlines = NULL;
			m->nrlines = ui_text_wrap(m->rclean, text_w, &m->rlines);
			if (m->nrlines < 0)
				m->nrlines = 0;
			m->rwrap_w = text_w;
		}
		total += 1 + ui_screen_msg_lines(m) + 1;   /* header, reasoning and text, blank line */
	}
	return total;
}

static struct ui_rect
rect(int y, int x, int h, int w)
{
	struct ui_rect r = { y, x, h > 0 ? h : 0, w > 0 ? w : 0 };
	if (r.h == 0 || r.w == 0)
		r.h = r.w = 0;
	return r;
}

/* The side column (parameters above statistics) needs 72 columns in all:
 * below that the conversation keeps the whole width. */
enum { SIDE_W = 32, SIDE_MIN_COLS = 72 };

void
ui_screen_layout(struct ui *u, int rows, int cols, int input_h)
{
	struct ui_layout *l = &u->lay;
	int body_h, side;

	memset(l, 0, sizeof(*l));
	l->rows = rows;
	l->cols = cols;
	l->notice_y = -1;
	if (rows < 1 || cols < 1)
		return;
	if (rows < 3) {
		/* Too small for panes: the input line alone. */
		l->input = rect(0, 0, 1, cols);
		return;
	}
	if (input_h > rows / 3)
		input_h = rows / 3 > 1 ? rows / 3 : 1;
	if (input_h < 1)
		input_h = 1;
	body_h = rows - input_h - 1;
	/* Side panes too short to draw (under 4 rows) leave their width to the conversation. */
	side = cols >= SIDE_MIN_COLS && body_h >= 4 ? SIDE_W : 0;
	/* The conversation needs its title row and one of text. */
	l->conv = rect(0, 0, body_h >= 2 ? body_h : 0, cols - side);
	if (side) {
		int rows_p = ui_param_rows(u);
		int ph = rows_p + 1 < body_h / 2 ? rows_p + 1 : body_h / 2;
		l->params = rect(0, cols - side + 1, ph, side - 1);
		l->stats = rect(ph, cols - side + 1, body_h - ph, side - 1);
	}
	l->notice_y = body_h > 0 ? body_h - 1 : -1;
	l->input = rect(body_h, 0, input_h, cols);
	l->footer = rect(rows - 1, 0, 1, cols);
}

int
ui_screen_focusable(const struct ui *u, enum ui_focus f)
{
	switch (f) {
	case UI_F_CONV: return u->lay.conv.h > 1;
	case UI_F_PARAMS: return u->lay.params.h > 1;
	default: return 1;
	}
}

void
ui_screen_focus_next(struct ui *u, int dir)
{
	enum ui_focus f = u->focus;
	for (int i = 0; i < UI_F_COUNT; i++) {
		f = (enum ui_focus)((f + UI_F_COUNT + dir) % UI_F_COUNT);
		if (ui_screen_focusable(u, f)) {
			u->focus = f;
			if (f == UI_F_CONV && (u->sel < 0 || u->sel >= u->nmsgs))
				u->sel = u->nmsgs - 1;
			return;
		}
	}
	u->focus = UI_F_INPUT;
}
