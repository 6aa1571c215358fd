/* ui-draw.c -- draws the panes, the footer and the boxes from the screen model; everything clips. */
#define _XOPEN_SOURCE_EXTENDED 1
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curses.h>
#include <readline/readline.h>

#include "natter/chat.h"
#include "natter/chatcmd.h"
#include "natter/text.h"
#include "ui/ui.h"

/* --- helpers: everything clips to the screen --- */

/* S[0..N) at row Y from column X, at most MAXW columns wide. */
static void
put_n(int y, int x, int maxw, const char *s, size_t n, int attr)
{
	size_t cut;
	char *clean = NULL;

	if (y < 0 || y >= LINES || x < 0 || x >= COLS || maxw <= 0)
		return;
	if (x + maxw > COLS)
		maxw = COLS - x;
	/* One row: controls as the conversation shows them (control
	 * pictures, a tab 4 spaces), a line break as a space -- curses would
	 * go on at the next row's start, over the pane below. */
	if (ui_text_needs_clean(s, n)) {
		if (!(clean = ui_text_clean(s, n)))
			return;
		for (char *p = clean; *p; p++)
			if (*p == '\n')
				*p = ' ';
		s = clean;
		n = strlen(s);
	}
	/* Whole characters only: a wide one that would straddle the edge is
	 * left out, never cut into half a UTF-8 sequence. */
	cut = ui_text_fit(s, n, maxw);
	attron(attr);
	mvaddnstr(y, x, s, (int)cut);
	attroff(attr);
	free(clean);
}

static void
put(int y, int x, int maxw, const char *s, int attr)
{
	put_n(y, x, maxw, s, strlen(s), attr);
}

static void
fill(int y, int x, int w, int attr)
{
	if (y < 0 || y >= LINES)
		return;
	attron(attr);
	for (int i = 0; i < w && x + i < COLS; i++)
		mvaddch(y, x + i, ' ');
	attroff(attr);
}

void
ui_draw_put(int y, int x, int maxw, const char *s, int attr)
{
	put(y, x, maxw, s, attr);
}

void
ui_draw_put_n(int y, int x, int maxw, const char *s, size_t n, int attr)
{
	put_n(y, x, maxw, s, n, attr);
}

void
ui_draw_fill(int y, int x, int w, int attr)
{
	fill(y, x, w, attr);
}

static void
hline_at(int y, int x, int w, const char *title, int focused)
{
	if (y < 0 || y >= LINES || w <= 0)
		return;
	attron(ui_theme_attr(UE_BORDER));
	mvhline(y, x, ACS_HLINE, w < COLS - x ? w : COLS - x);
	attroff(ui_theme_attr(UE_BORDER));
	if (title && w > 4) {
		char t[128];
		snprintf(t, sizeof(t), " %s ", title);
		put(y, x + 1, w - 2, t, ui_theme_attr(focused ? UE_SELECTED : UE_TITLE));
	}
}

/* --- the conversation --- */

static const char *
role_label(const char *role)
{
	if (!strcmp(role, "user"))
		return "You";
	if (!strcmp(role, "assistant"))
		return "Assistant";
	return "System";
}

static void
draw_line(struct ui_msg *m, int k, int y, int x, int w, int attr)
{
	const struct ui_line *l = &m->lines[k];
	const char *s = m->clean + l->off;

	if (!(l->flags & UI_LINE_CODE)) {
		put_n(y, x, w, s, l->len, attr);
		return;
	}
	/* Code keeps its lines: clipped at the edge, marked where it goes on. */
	fill(y, x, w, ui_theme_attr(UE_CODE));
	put_n(y, x, w, s, l->len, ui_theme_attr(UE_CODE));
	if (l->width > w && w > 1)
		put(y, x + w - 1, 1, ">", ui_theme_attr(UE_DIM));
}

/* The line that stands for a reply's reasoning: folded, "> thought for N
 * tokens (t shows it)"; unfolded, the same with the other arrow; while
 * the reply is still in its reasoning, a live count.  Shorter forms for
 * narrow panes. */
static void
draw_fold(struct ui *u, struct ui_msg *m, int y, int x, int w)
{
	/* Triangles where the terminal's encoding has them. */
	const char *arrow = MB_CUR_MAX > 1 ? (m->unfold ? "\xe2\x96\xbe" : "\xe2\x96\xb8") : (m->unfold ? "-" : "+");
	int live = u->gen && m->idx < 0 && !(m->clean && m->clean[0]);
	char n[32], line[160], shorter[64];

	ui_text_count(n, sizeof(n), m->rtokens);
	if (live)
		snprintf(line, sizeof(line), "%s thinking... %s tokens%s", arrow, n, m->unfold ? "" : " (F4 shows it)");
	else if (m->rtokens > 0)
		snprintf(line, sizeof(line), "%s thought for %s tokens%s", arrow, n, m->unfold ? "" : " (F4 shows it)");
	else
		snprintf(line, sizeof(line), "%s reasoning%s", arrow, m->unfold ? "" : " (F4 shows it)");
	if (ui_text_width(line, strlen(line)) > w) {
		snprintf(shorter, sizeof(shorter), "%s %s tok", arrow, m->rtokens > 0 ? n : "?");
		put(y, x, w, shorter, ui_theme_attr(UE_REASONING));
		return;
	}
	put(y, x, w, line, ui_theme_attr(UE_REASONING));
}

/* Where the conversation's top row is in the text, not in rows (which a
 * new width changes): message *MSG, and the byte of its text that the
 * row starts at (*OFF; -1: the message's header or reasoning).  From
 * the wrapping the last frame drew. */
static void
top_anchor(const struct ui *u, int *msg, long *off)
{
	int row = 0;

	*msg = -1;
	*off = -1;
	for (int i = 0; i < u->nmsgs; i++) {
		const struct ui_msg *m = &u->msgs[i];
		const int n = 2 + ui_screen_msg_lines(m);
		if (u->top < row + n) {
			const int k = u->top - row - 1 - (ui_screen_msg_lines(m) - m->nlines);
			*msg = i;
			*off = k >= 0 && k < m->nlines ? (long)m->lines[k].off : -1;
			return;
		}
		row += n;
	}
}

/* The row of TOP_ANCHOR's place in the wrapping now. */
static int
anchor_row(const struct ui *u, int msg, long off)
{
	const struct ui_msg *m = &u->msgs[msg];
	int row = 0, k = 0;

	for (int i = 0; i < msg; i++)
		row += 2 + ui_screen_msg_lines(&u->msgs[i]);
	if (off < 0)
		return row;
	while (k + 1 < m->nlines && (long)m->lines[k + 1].off <= off)
		k++;
	return row + 1 + (ui_screen_msg_lines(m) - m->nlines) + k;
}

static void
draw_conv(struct ui *u, struct ui_rect r)
{
	int total, text_w, start, row, y0 = r.y + 1, x0 = r.x, h = r.h - 1, w = r.w;

	if (r.h == 0)
		return;
	hline_at(r.y, r.x, r.w, "Conversation", u->focus == UI_F_CONV);
	if (h <= 0)
		return;
	text_w = w - 2 > 1 ? w - 2 : 1;
	{
		/* Scrolled back, a new width keeps the same text at the top. */
		int amsg = -1;
		long aoff = -1;
		if (!u->follow && u->nmsgs > 0 && u->msgs[0].wrap_w && u->msgs[0].wrap_w != text_w)
			top_anchor(u, &amsg, &aoff);
		total = ui_screen_conv_lines(u, text_w);
		if (amsg >= 0)
			u->top = anchor_row(u, amsg, aoff);
	}
	if (u->nmsgs == 0) {
		put(y0 + h / 2, x0 + 2, w - 4, "Type a message below and press Enter.  F1 for help.", ui_theme_attr(UE_DIM));
		return;
	}
	if (u->sel_show && u->sel >= 0 && u->sel < u->nmsgs) {
		/* Scroll so that the chosen message's header shows, with as
		 * much of its text as fits. */
		int at = 0, len;
		for (int i = 0; i < u->sel; i++)
			at += ui_screen_msg_lines(&u->msgs[i]) + 2;
		len = ui_screen_msg_lines(&u->msgs[u->sel]) + 1;
		if (at < u->top || at + (len < h ? len : h) > u->top + h) {
			u->top = len < h ? at + len - h : at;
			if (u->top > at)
				u->top = at;
		}
		u->follow = u->sel == u->nmsgs - 1 && at + len <= total && u->top >= total - h;
		u->sel_show = 0;
	}
	if (u->follow || u->top > total - h)
		u->top = total - h;
	if (u->top < 0)
		u->top = 0;
	start = u->top;
	row = 0;
	for (int i = 0; i < u->nmsgs && row - start < h; i++) {
		struct ui_msg *m = &u->msgs[i];
		int attr = ui_theme_attr(!strcmp(m->role, "user") ? UE_USER : !strcmp(m->role, "assistant") ?
		    UE_ASSISTANT : UE_SYSTEM);
		if (row >= start) {
			char head[64];
			int chosen = u->focus == UI_F_CONV && i == u->sel;
			if (m->nalt > 1)
				snprintf(head, sizeof(head), "%s (%d/%d)%s:", role_label(m->role), m->alt + 1, m->nalt,
				    m->alt != m->chosen ? ", not chosen" : "");   /* never the session: it may be generating */
			else
				snprintf(head, sizeof(head), "%s:", role_label(m->role));
			put(y0 + row - start, x0, w, head, chosen ? ui_theme_attr(UE_SELECTED) :
			    (int)(ui_theme_attr(UE_TITLE) | (attr & A_BOLD)));
		}
		row++;
		if (m->rclean) {
			if (row >= start && row - start < h)
				draw_fold(u, m, y0 + row - start, x0 + 2, w - 2);
			row++;
			for (int k = 0; m->unfold && k < m->nrlines && row - start < h; k++, row++) {
				if (row >= start) {
					const struct ui_line *l = &m->rlines[k];
					put_n(y0 + row - start, x0 + 2, w - 2, m->rclean + l->off, l->len,
					    ui_theme_attr(UE_REASONING));
				}
			}
		}
		for (int k = 0; k < m->nlines && row - start < h; k++, row++)
			if (row >= start)
				draw_line(m, k, y0 + row - start, x0 + 2, w - 2, attr);
		row++;
	}
	if (!u->follow && total > h && total - h - u->top > 0) {
		char more[48];
		snprintf(more, sizeof(more), " %d more below (PgDn) ", total - h - u->top);
		put(y0 + h - 1, x0 + w - (int)strlen(more) - 1, (int)strlen(more), more, ui_theme_attr(UE_NOTICE));
	}
}

/* --- parameters and statistics --- */

static void
draw_params(struct ui *u, struct ui_rect r)
{
	if (r.h == 0)
		return;
	const int focused = u->focus == UI_F_PARAMS, shown = r.h - 1;
	/* The row being changed is always on screen: a short pane scrolls. */
	const int first = focused && u->param_sel >= shown ? u->param_sel - shown + 1 : 0;

	hline_at(r.y, r.x, r.w, "Parameters", focused);
	for (int i = first; i < ui_param_rows(u) && i - first < shown; i++) {
		char v[256], line[320], name[64];
		const int sel = focused && i == u->param_sel, y = r.y + 1 + i - first;
		ui_param_text(u, i, v, sizeof(v));
		ui_param_name(u, i, name, sizeof(name));
		snprintf(line, sizeof(line), " %-14.14s %s", name, v);
		if (sel)
			fill(y, r.x, r.w, ui_theme_attr(UE_SELECTED));
		put(y, r.x, r.w, line, ui_theme_attr(sel ? UE_SELECTED : UE_NORMAL));
	}
}

/* "12.3 MiB", "57.0 KiB" into BUF. */
static const char *
bytes_text(char *buf, size_t n, size_t b)
{
	if (b >= (size_t)1 << 30)
		snprintf(buf, n, "%.1f GiB", b / 1073741824.0);
	else if (b >= (size_t)1 << 20)
		snprintf(buf, n, "%.1f MiB", b / 1048576.0);
	else
		snprintf(buf, n, "%.1f KiB", b / 1024.0);
	return buf;
}

/* Prompt tokens per second: live while the prompt is read, else the last reply's. */
static double
prompt_tps(struct ui *u)
{
	if (u->gen) {
		double dt = u->gs.prompt_t - u->gs.prompt_t0;
		return u->gs.prompt_done > 0 && dt > 0 ? u->gs.prompt_done / dt : 0;
	}
	return u->have_stats ? u->stats.prompt_tps : 0;
}

static void
draw_stats(struct ui *u, struct ui_rect r)
{
	char line[256], a[32], b[32];
	int y = r.y + 1, end = r.y + r.h, nctx = chat_ctx_size(u->c);
	/* While a reply runs the session is the generation thread's: the
	 * context in use comes through the queue. */
	int used = u->gen ? u->gs.ctx_used : chat_ctx_used(u->c);
	const struct chat_stats *s = &u->stats;
	double gen_tps = 0, ttft = 0;
	int ntok = u->gen ? u->gs.n_gen : u->have_stats ? s->n_gen : 0;
	int nreason = u->gen ? u->gs.n_reasoning : u->have_stats ? s->n_reasoning : 0;

	if (r.h == 0)
		return;
	hline_at(r.y, r.x, r.w, "Statistics", 0);
	if (u->gen) {
		double t = ui_screen_now();
		if (u->gs.pieces > 1 && t > u->t_first)
			gen_tps = (u->gs.pieces - 1) / (t - u->t_first);
		ttft = u->t_first > 0 ? (u->t_first - u->t_start) * 1000 : 0;
	} else if (u->have_stats) {
		gen_tps = s->gen_tps;
		ttft = s->ttft_ms;
	}
#define ROW(...) do { if (y < end) { snprintf(line, sizeof(line), __VA_ARGS__); put(y++, r.x, r.w, line, ui_theme_attr(UE_NORMAL)); } } while (0)
	ROW(" %s", u->model_file);
	ROW(" %s", u->model_kind);
	ROW(" state      %s", u->state);
	if (u->gen && u->gs.prompt_total > 0 && u->gs.prompt_done < u->gs.prompt_total)
		ROW(" prompt %s / %s", ui_text_count(a, sizeof(a), u->gs.prompt_done),
		    ui_text_count(b, sizeof(b), u->gs.prompt_total));
	ROW(" prompt     %.1f tok/s", prompt_tps(u));
	ROW(" generation %.1f tok/s", gen_tps);
	ROW(" first tok  %.0f ms", ttft);
	ROW(" reply      %d %s", ntok, u->gen || !s->gen_counted ? "tokens" : "pieces");
	if (nreason > 0)   /* a reasoning model's: the answer is the rest */
		ROW(" reasoning  %d %s", nreason, u->gen || !s->reasoning_counted ? "tokens" : "pieces");
	if (nctx == 0) {
		/* A remote server's context is its own. */
		ROW(" context    unknown");
	} else if (y < end) {
		int bw = r.w - 10 > 4 ? r.w - 10 : 4, fillw = nctx ? (int)((double)used / nctx * bw + 0.5) : 0;
		put(y, r.x, r.w, " context ", ui_theme_attr(UE_NORMAL));
		for (int i = 0; i < bw && 9 + i < r.w; i++)
			put(y, r.x + 9 + i, 1, i < fillw ? " " : ".", ui_theme_attr(i < fillw ? UE_BAR : UE_BAR_EMPTY));
		y++;
		ROW("            %s / %s", ui_text_count(a, sizeof(a), used), ui_text_count(b, sizeof(b), nctx));
	}
	/* The session's memory, as of the last reply: the cache, and for a
	 * hybrid model its recurrent states and their checkpoints. */
	if (u->have_stats && s->cache_bytes) {
		ROW(" cache      %s", bytes_text(a, sizeof(a), s->cache_bytes));
		if (s->state_bytes) {
			ROW(" recurrent  %s", bytes_text(a, sizeof(a), s->state_bytes));
			ROW(" checkpts   %s", bytes_text(a, sizeof(a), s->checkpoint_bytes));
		}
	}
#undef ROW
}

/* --- the footer: the keys of the focus, as many as fit --- */

struct hint {
	const char *key, *what;
};

static const struct hint hints_input[] = {
	{ "F1", "help" }, { "Enter", "send" }, { "Esc", "stop" }, { "F5", "regen" }, { "Tab", "focus" },
	{ "F2", "new" }, { "F3", "history" }, { "F10", "quit" }, { "F6", "A/B" }, { NULL, NULL },
};
static const struct hint hints_conv[] = {
	{ "F1", "help" }, { "+/-", "rate" }, { "Up/Down", "message" }, { "Left/Right", "alternative" },
	{ "Enter", "pick/edit" }, { "r", "regen" }, { "b", "A/B" }, { "y", "copy" }, { "c", "comment" },
	{ "t", "reasoning" }, { NULL, NULL },
};
static const struct hint hints_params[] = {
	{ "F1", "help" }, { "Up/Down", "choose" }, { "Left/Right", "change" }, { "Enter", "edit" },
	{ "Tab", "focus" }, { NULL, NULL },
};
static const struct hint hints_box[] = {
	{ "Up/Down", "scroll" }, { "Esc", "close" }, { NULL, NULL },
};
static const struct hint hints_history[] = {
	{ "Up/Down", "choose" }, { "Enter", "resume" }, { "Esc", "close" }, { NULL, NULL },
};
static const struct hint hints_comment[] = {
	{ "Enter", "save the comment" }, { "Esc", "cancel" }, { NULL, NULL },
};
static const struct hint hints_edit[] = {
	{ "Enter", "send as a new branch" }, { "Esc", "cancel" }, { NULL, NULL },
};
static const struct hint hints_system[] = {
	{ "Enter", "save the system prompt" }, { "Esc", "cancel" }, { NULL, NULL },
};

static const struct hint hints_ab_choose[] = {
	{ "Up/Down", "choose" }, { "Enter", "generate B" }, { "Esc", "cancel" }, { NULL, NULL },
};
static const struct hint hints_ab_running[] = {
	{ "Esc", "stop B" }, { "Up/Down", "scroll" }, { NULL, NULL },
};
static const struct hint hints_ab_ready[] = {
	{ "a", "A better" }, { "b", "B better" }, { "t", "tie" }, { "Up/Down", "scroll" }, { "Esc", "later (/pick)" },
	{ NULL, NULL },
};

static const struct hint *
footer_hints(struct ui *u)
{
	if (u->box == UI_BOX_AB)
		return hints_ab_choose;
	if (u->box == UI_BOX_NONE && u->ab_view)
		return u->gen ? hints_ab_running : hints_ab_ready;
	if (u->box == UI_BOX_HISTORY)
		return hints_history;
	if (u->box != UI_BOX_NONE)
		return hints_box;
	if (u->mode == UI_IM_COMMENT)
		return hints_comment;
	if (u->mode == UI_IM_SYSTEM)
		return hints_system;
	if (u->mode == UI_IM_EDIT)
		return hints_edit;
	return u->focus == UI_F_CONV ? hints_conv : u->focus == UI_F_PARAMS ? hints_params : hints_input;
}

static void
draw_footer(struct ui *u, struct ui_rect r)
{
	int x = r.x + 1;

	if (r.h == 0)
		return;
	fill(r.y, r.x, r.w, ui_theme_attr(UE_FOOTER));
	for (const struct hint *h = footer_hints(u); h->key; h++) {
		int kw = (int)strlen(h->key), ww = (int)strlen(h->what);
		/* Whole hints only: one that does not fit is left out. */
		if (x + kw + 1 + ww > r.x + r.w)
			break;
		put(r.y, x, kw, h->key, ui_theme_attr(UE_KEY));
		put(r.y, x + kw + 1, ww, h->what, ui_theme_attr(UE_FOOTER));
		x += kw + 1 + ww + 2;
	}
}

/* --- the input line: readline's buffer, wrapped, cursor kept visible --- */

static const char *
input_prompt(struct ui *u)
{
	return u->mode == UI_IM_COMMENT ? "comment> " : u->mode == UI_IM_SYSTEM ? "system> " :
	    u->mode == UI_IM_EDIT ? "edit> " : "> ";
}

/* The prompt and readline's buffer as one string, *ALL, wrapped at WIDTH
 * columns into *LINES; the number of rows, or -1 (nothing to free).  The
 * prompt's blank is no place to break: a first word too long for the row
 * starts beside the prompt, not on the row below a prompt left alone. */
static int
input_wrap(struct ui *u, int width, char **all, struct ui_line **lines)
{
	const char *prompt = input_prompt(u), *text = ui_input_text();
	size_t pl = strlen(prompt), bl = strlen(text);
	int n;

	*lines = NULL;
	if (!(*all = malloc(pl + bl + 1)))
		return -1;
	memset(*all, '>', pl);   /* ASCII like the prompt: the same offsets and widths */
	memcpy(*all + pl, text, bl + 1);
	n = ui_text_wrap(*all, width, lines);
	memcpy(*all, prompt, pl);
	if (n < 1) {
		free(*all);
		free(*lines);
		*all = NULL;
		*lines = NULL;
		return -1;
	}
	return n;
}

static void
draw_input(struct ui *u, struct ui_rect r, int *cy, int *cx)
{
	char *all;
	struct ui_line *lines;
	int n, cur_line = 0, first;
	size_t cur_byte;

	*cy = r.y;
	*cx = 0;
	if (r.h == 0 || (n = input_wrap(u, r.w > 1 ? r.w - 1 : 1, &all, &lines)) < 0)
		return;
	cur_byte = strlen(input_prompt(u)) + (size_t)ui_input_point();
	for (int i = 0; i < n; i++)
		if (cur_byte >= lines[i].off)
			cur_line = i;
	first = cur_line - r.h + 1 > 0 ? cur_line - r.h + 1 : 0;
	for (int i = 0; i < r.h; i++)
		fill(r.y + i, r.x, r.w, ui_theme_attr(UE_INPUT));
	for (int i = first; i < n && i - first < r.h; i++) {
		/* Control characters typed into the line are shown, not sent. */
		char *clean = ui_text_clean(all + lines[i].off, lines[i].len);
		put(r.y + i - first, r.x, r.w, clean ? clean : "", ui_theme_attr(i == 0 ? UE_TITLE : UE_INPUT));
		free(clean);
		if (i == cur_line) {
			*cy = r.y + i - first;
			*cx = ui_text_width(all + lines[i].off, cur_byte - lines[i].off);
		}
	}
	free(lines);
	free(all);
}

/* Rows the input line needs at COLS columns. */
static int
input_height(struct ui *u)
{
	char *all;
	struct ui_line *lines;
	int h = input_wrap(u, COLS > 1 ? COLS - 1 : 1, &all, &lines);

	if (h < 0)
		return 1;
	free(lines);
	free(all);
	return h;
}

/* --- boxes over the panes: help, parameters, statistics, history --- */

struct box {
	char **lines;
	int n, cap;
};

static void
box_add(struct box *b, const char *s)
{
	if (b->n == b->cap) {
		int cap = b->cap ? b->cap * 2 : 32;
		char **v = realloc(b->lines, cap * sizeof(*v));
		if (!v)
			return;
		b->lines = v;
		b->cap = cap;
	}
	if ((b->lines[b->n] = strdup(s)))
		b->n++;
}

static void
box_addf(struct box *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
box_addf(struct box *b, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	box_add(b, line);
}

static void
box_free(struct box *b)
{
	for (int i = 0; i < b->n; i++)
		free(b->lines[i]);
	free(b->lines);
}

/* The keys, for the help: two to a line where they fit. */
static const struct hint help_keys[] = {
	{ "Enter", "send the message" },
	{ "Alt-Enter, \\", "new line in message" },
	{ "Esc, Ctrl-C", "stop; close a box" },
	{ "F5", "regenerate reply" },
	{ "Tab/Shift-Tab", "move the focus" },
	{ "F2", "new conversation" },
	{ "F3", "past conversations" },
	{ "PgUp/PgDn", "scroll (or wheel)" },
	{ "F6", "A/B: reply B, pick one" },
	{ "F10, Ctrl-Q", "quit" },
};

struct help_ctx {
	struct box *b;
	int wide;
	char held_usage[48], held_help[64];   /* a short command waiting for a neighbour */
};

/* Puts the held command on a line of its own. */
static void
help_flush(struct help_ctx *h)
{
	if (h->held_usage[0])
		box_addf(h->b, "%-29s %s", h->held_usage, h->held_help);
	h->held_usage[0] = 0;
}

/* Wide: one command a line, two short neighbours sharing one (so that the
 * help fits 80x24); narrow: the usage, then the help indented. */
static void
help_cmd(void *ctx, const char *usage, const char *help)
{
	struct help_ctx *h = ctx;
	if (!h->wide) {
		box_add(h->b, usage);
		box_addf(h->b, "    %s", help);
		return;
	}
	if (strlen(usage) + 1 + strlen(help) <= 36) {
		if (h->held_usage[0]) {
			char left[128];
			snprintf(left, sizeof(left), "%s %s", h->held_usage, h->held_help);
			box_addf(h->b, "%-37s %s %s", left, usage, help);
			h->held_usage[0] = 0;
		} else {
			snprintf(h->held_usage, sizeof(h->held_usage), "%s", usage);
			snprintf(h->held_help, sizeof(h->held_help), "%s", help);
		}
		return;
	}
	help_flush(h);
	box_addf(h->b, "%-29s %s", usage, help);
}

static void
help_lines(struct box *b, int inner_w)
{
	int nk = (int)(sizeof(help_keys) / sizeof(help_keys[0])), two = inner_w >= 74;
	struct help_ctx h = { b, inner_w >= 74, "", "" };

	for (int i = 0; i < nk; i += two ? 2 : 1) {
		if (two && i + 1 < nk)
			box_addf(b, "%-13s %-22s %-13s %s", help_keys[i].key, help_keys[i].what, help_keys[i + 1].key,
			    help_keys[i + 1].what);
		else
			box_addf(b, "%-13s %s", help_keys[i].key, help_keys[i].what);
	}
	box_add(b, "Conversation: Up/Down a message, Left/Right its alternatives, Enter picks");
	box_add(b, "  a reply or edits a message (a branch), + - 1..5 rate, c comment, r");
	box_add(b, "  regen, b A/B (F6), y copy, t (F4) the reasoning; other keys type.");
	box_add(b, "Parameters: Up/Down, Left/Right change (lora rows: scale), Enter edit");
	box_add(b, "Commands:");
	chatcmd_help(ui_cmd_ops(), help_cmd, &h);
	help_flush(&h);
}

static void
params_lines(struct ui *u, struct box *b)
{
	for (int i = 0; i < ui_param_rows(u); i++) {
		char v[256], name[64];
		ui_param_text(u, i, v, sizeof(v));
		ui_param_name(u, i, name, sizeof(name));
		box_addf(b, "%-15s %s", name, v);
	}
	box_add(b, "");
	box_add(b, "Change one with /set NAME VALUE (an adapter's scale with /lora N SCALE),");
	box_add(b, "or in the parameters pane (Tab) where the window is wide enough to show it.");
}

static void
stats_lines(struct ui *u, struct box *b)
{
	const struct chat_stats *s = &u->stats;
	if (!u->have_stats) {
		box_add(b, "No reply yet.");
		return;
	}
	box_addf(b, "prompt: %d new tokens (%d reused from the cache), %.1f tok/s", s->n_prompt, s->n_reused,
	    s->prompt_tps);
	box_addf(b, "reply: %d %s, %.1f tok/s, first token after %.0f ms, ended: %s", s->n_gen,
	    s->gen_counted ? "pieces (the server reported no token count)" : "tokens", s->gen_tps, s->ttft_ms,
	    chat_stop_name(s->stop));
	if (s->n_reasoning > 0 && s->reasoning_counted && !s->gen_counted)
		box_addf(b, "reasoning: %d pieces (the server reported no count of its tokens)", s->n_reasoning);
	else if (s->n_reasoning > 0)
		box_addf(b, "reasoning: %d %s, answer: %d %s", s->n_reasoning, s->gen_counted ? "pieces" : "tokens",
		    s->n_gen - s->n_reasoning, s->gen_counted ? "pieces" : "tokens");
	if (s->n_ctx > 0)
		box_addf(b, "context: %d of %d tokens used; seed %llu", s->n_ctx_used, s->n_ctx,
		    (unsigned long long)s->seed);
	else
		box_addf(b, "context: not known (the server's); seed %llu", (unsigned long long)s->seed);
	if (s->cache_bytes) {
		char c1[32], c2[32], c3[32];
		if (s->state_bytes)
			box_addf(b, "memory: cache %s, of which recurrent states %s; their checkpoints %s",
			    bytes_text(c1, sizeof(c1), s->cache_bytes), bytes_text(c2, sizeof(c2), s->state_bytes),
			    bytes_text(c3, sizeof(c3), s->checkpoint_bytes));
		else
			box_addf(b, "memory: cache %s", bytes_text(c1, sizeof(c1), s->cache_bytes));
	}
	if (s->n_dropped)
		box_addf(b, "dropped %d old messages to fit the context", s->n_dropped);
	if (u->log.made_gen)
		box_addf(b, "stored as generation %lld of conversation %lld", (long long)u->log.made_gen,
		    (long long)u->log.conv);
}

/* The notices kept, oldest first, each with its time. */
static void
notices_lines(const struct ui *u, struct box *b)
{
	const int n = u->n_notes < UI_NOTES ? u->n_notes : UI_NOTES;

	if (u->n_notes > UI_NOTES)
		box_addf(b, "(%d earlier notices are not kept)", u->n_notes - UI_NOTES);
	for (int i = u->n_notes - n; i < u->n_notes; i++) {
		const struct ui_note *t = &u->notes[i % UI_NOTES];
		struct tm tm;
		char hms[16] = "";
		if (localtime_r(&t->at, &tm))
			strftime(hms, sizeof(hms), "%H:%M:%S", &tm);
		box_addf(b, "%s %s%s", hms, t->err ? "error: " : "", t->text);
	}
	if (n == 0)
		box_add(b, "No notices yet.");
}

/* Draws a box of LINES (wrapped to its width), scrolled to u->box_top. */
static void
draw_box(struct ui *u, const char *title)
{
	struct box b = { 0 };
	int w = COLS < 78 ? COLS : 78, inner = w - 4 > 1 ? w - 4 : 1, x0 = (COLS - w) / 2;
	struct ui_line *wl = NULL;
	char **rows = NULL;
	int nrows = 0, h, y0, vis;

	if (u->box == UI_BOX_HELP)
		help_lines(&b, inner);
	else if (u->box == UI_BOX_PARAMS)
		params_lines(u, &b);
	else if (u->box == UI_BOX_NOTICES)
		notices_lines(u, &b);
	else
		stats_lines(u, &b);
	/* Wrap every line to the box. */
	for (int i = 0; i < b.n; i++) {
		int k = ui_text_wrap(b.lines[i], inner, &wl);
		char **nr = k > 0 ? realloc(rows, (nrows + k) * sizeof(*rows)) : NULL;
		if (nr) {
			rows = nr;
			for (int j = 0; j < k; j++) {
				char *s = malloc(wl[j].len + 1);
				if (!s)
					continue;
				memcpy(s, b.lines[i] + wl[j].off, wl[j].len);
				s[wl[j].len] = 0;
				rows[nrows++] = s;
			}
		}
		free(wl);
		wl = NULL;
	}
	box_free(&b);
	h = nrows + 2 < LINES ? nrows + 2 : LINES;
	y0 = (LINES - h) / 2;
	vis = h - 2 > 0 ? h - 2 : 0;
	if (u->box_top > nrows - vis)
		u->box_top = nrows - vis;
	if (u->box_top < 0)
		u->box_top = 0;
	u->box_rows = nrows;
	u->box_vis = vis;
	for (int i = 0; i < h; i++)
		fill(y0 + i, x0, w, ui_theme_attr(UE_SELECTED));
	put(y0, x0 + 2, w - 4, title, ui_theme_attr(UE_SELECTED) | A_BOLD);
	for (int i = 0; i < vis && u->box_top + i < nrows; i++)
		put(y0 + 1 + i, x0 + 2, inner, rows[u->box_top + i], ui_theme_attr(UE_SELECTED));
	if (nrows > vis && h > 1) {
		char more[48];
		snprintf(more, sizeof(more), " %d-%d of %d ", u->box_top + 1, u->box_top + vis, nrows);
		put(y0 + h - 1, x0 + w - (int)strlen(more) - 1, (int)strlen(more), more, ui_theme_attr(UE_SELECTED));
	}
	for (int i = 0; i < nrows; i++)
		free(rows[i]);
	free(rows);
}

/* The models of a conversation for the F3 list, into BUF: every one, each
 * without its ".gguf", or when they are wider than MAXW the first and how
 * many more ("qwen3-8b +2"). */
static void
models_label(const struct store_conv_info *c, int maxw, char *buf, size_t n)
{
	const char *p = c->models[0] ? c->models : c->model;
	size_t at = 0, first = 0;

	buf[0] = 0;
	while (*p && at + 1 < n) {
		const char *e = strstr(p, ", ");
		size_t len = e ? (size_t)(e - p) : strlen(p);
		int k = len > 5 && !strncmp(p + len - 5, ".gguf", 5) ? (int)len - 5 : (int)len;
		at += snprintf(buf + at, n - at, "%s%.*s", at ? ", " : "", k, p);
		if (at >= n)
			at = n - 1;
		if (!first)
			first = at;
		p = e ? e + 2 : p + len;
	}
	if (c->n_models > 1 && ui_text_width(buf, at) > maxw && first + 16 < n)
		snprintf(buf + first, n - first, " +%d", c->n_models - 1);
}

static void
draw_history(struct ui *u)
{
	int w = COLS - 4 > 20 ? COLS - 4 : COLS, h = u->nhist + 3 < LINES - 2 ? u->nhist + 3 : LINES - 2;
	int y0 = 1, x0 = (COLS - w) / 2;
	if (h < 1)
		h = LINES;
	for (int i = 0; i < h; i++)
		fill(y0 + i, x0, w, ui_theme_attr(UE_SELECTED));
	put(y0, x0 + 2, w - 4, "Past conversations (Enter resumes)", ui_theme_attr(UE_SELECTED) | A_BOLD);
	if (u->nhist == 0)
		put(y0 + 1, x0 + 2, w - 4, "(none yet)", ui_theme_attr(UE_SELECTED));
	for (int i = 0; i < u->nhist && 1 + i < h; i++) {
		const struct store_conv_info *c = &u->hist[i];
		char head[64], tb[32], models[sizeof(c->models)];
		time_t t = (time_t)c->updated;
		struct tm tm;
		int attr = i == u->hist_sel ? (int)(ui_theme_attr(UE_NORMAL) | A_REVERSE) : ui_theme_attr(UE_SELECTED);
		int y = y0 + 1 + i, avail = w - 2, hw, rest, mw, tw;
		localtime_r(&t, &tm);
		strftime(tb, sizeof(tb), "%Y-%m-%d %H:%M", &tm);
		snprintf(head, sizeof(head), "%4lld  %s  %3d msgs  ", (long long)c->id, tb, c->n_msgs);
		hw = ui_text_width(head, strlen(head));
		rest = avail - hw;
		/* The title keeps a third of the rest at least; the models,
		 * right-aligned, get what it leaves (clipped if need be). */
		models_label(c, rest - rest / 3 - 2, models, sizeof(models));
		mw = ui_text_width(models, strlen(models));
		tw = rest - (mw ? mw + 2 : 0);
		if (tw < rest / 3)
			tw = rest / 3;
		fill(y, x0 + 1, avail, attr);
		put(y, x0 + 1, avail, head, attr);
		if (rest > 0)
			put(y, x0 + 1 + hw, tw, c->title, attr);
		if (mw && tw + 2 < rest)
			put(y, x0 + 1 + hw + tw + 2, rest - tw - 2, models, attr);
	}
}

/* --- the whole screen --- */

void
ui_draw(struct ui *u)
{
	int cy = 0, cx = 0;
	struct ui_layout *l = &u->lay;

	erase();
	ui_screen_layout(u, LINES, COLS, input_height(u));
	if (!ui_screen_focusable(u, u->focus))
		u->focus = UI_F_INPUT;
	if (l->rows < 1 || l->cols < 1) {
		refresh();
		return;
	}
	draw_conv(u, l->conv);
	if (u->ab_view)
		ui_ab_draw(u);   /* over the conversation pane */
	if (l->params.h) {
		attron(ui_theme_attr(UE_BORDER));
		mvvline(0, l->params.x - 1, ACS_VLINE, l->conv.h);
		attroff(ui_theme_attr(UE_BORDER));
	}
	draw_params(u, l->params);
	draw_stats(u, l->stats);
	/* Notices sit on the line above the input. */
	if (ui_screen_notice_live(u) && l->notice_y >= 0)
		put(l->notice_y, 1, COLS - 2, u->notice, ui_theme_attr(u->notice_err ? UE_ERROR : UE_NOTICE));
	draw_input(u, l->input, &cy, &cx);
	draw_footer(u, l->footer);
	if (u->box == UI_BOX_HELP)
		/* How to use the box goes in its title: at 80x24 the help fits
		 * with not a line to spare. */
		draw_box(u, "natter help (Up/Down scroll it; any other key closes it)");
	else if (u->box == UI_BOX_PARAMS)
		draw_box(u, "Parameters");
	else if (u->box == UI_BOX_STATS)
		draw_box(u, "Statistics of the last reply");
	else if (u->box == UI_BOX_NOTICES)
		draw_box(u, "Notices, the newest last (Up/Down scroll; any other key closes)");
	else if (u->box == UI_BOX_HISTORY)
		draw_history(u);
	else if (u->box == UI_BOX_AB)
		ui_ab_draw(u);
	curs_set(u->focus == UI_F_INPUT && u->box == UI_BOX_NONE);
	move(cy, cx < COLS ? cx : COLS - 1);
	refresh();
}

void
ui_draw_loading(const char *name, double frac)
{
	erase();
	if (LINES > 2 && COLS > 10) {
		int bw = COLS - 20 > 10 ? COLS - 20 : 10, fw = (int)(frac * bw);
		char line[256];
		snprintf(line, sizeof(line), "Loading %s", name);
		put(LINES / 2 - 1, 2, COLS - 4, line, ui_theme_attr(UE_TITLE));
		for (int i = 0; i < bw; i++)
			put(LINES / 2, 2 + i, 1, " ", ui_theme_attr(i < fw ? UE_BAR : UE_BAR_EMPTY));
		snprintf(line, sizeof(line), " %3.0f%%", 100.0 * frac);
		put(LINES / 2, 2 + bw, 8, line, ui_theme_attr(UE_NORMAL));
	}
	refresh();
}
