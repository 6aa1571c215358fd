/* ui-main.c -- the full-screen chat: one event loop owns the terminal; panes draw from the model. */
#define _XOPEN_SOURCE_EXTENDED 1
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curses.h>
#include <readline/history.h>
#include <readline/readline.h>

#include "natter/chat.h"
#include "natter/chatlog.h"
#include "natter/gguf.h"
#include "natter/llm.h"
#include "natter/store.h"
#include "natter/ui.h"
#include "ui/ui.h"

/* Key handlers return these bits (as htop's panes do). */
enum { KH_HANDLED = 1, KH_REDRAW = 2, KH_QUIT = 4 };

enum focus { F_INPUT, F_CONV, F_PARAMS, F_COUNT };
enum input_mode { IM_MESSAGE, IM_COMMENT, IM_SYSTEM };

struct msgv {
	char *role;
	char *clean;              /* sanitized for display */
	struct ui_line *lines;
	int nlines, wrap_w;
};

struct ui {
	struct ui_opts *o;
	struct llm_model *m;
	struct chat *c;
	struct chatlog log;
	char model_name[128];

	struct msgv *msgs;
	int nmsgs, capmsgs;

	/* The reply being written. */
	struct ui_gen *gen;
	char *sbuf;
	size_t slen, scap;
	int spieces, regen;
	double t_start, t_first;
	struct chat_stats stats;
	int have_stats;
	const char *state;

	int rows, cols;
	enum focus focus;
	int follow, top;          /* conversation scroll */
	int conv_h;               /* rows of the conversation pane at the last draw */
	int param_sel;
	char notice[256];
	int notice_err;
	double notice_t;
	int help;
	int hist_open, nhist, hist_sel;
	struct store_conv_info hist[64];
	enum input_mode mode;
	char last_rating_word[8];  /* what c comments on */
	char pending[4096];       /* text to put back into readline after a line */
	int wake[2];
	double ctrlc_t;
	int quit;
	char rl_hist_path[4096];
};

static struct ui *U;            /* readline's callbacks reach the UI here */
static volatile sig_atomic_t got_signal;
static int wake_w = -1;

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* --- signals: they only set a flag and wake the loop --- */

static void
on_term(int sig)
{
	char b = 2;
	got_signal = sig;
	if (wake_w >= 0 && write(wake_w, &b, 1) < 0) {
		/* nothing to do: the loop also polls with a timeout */
	}
}

static void
on_crash(int sig)
{
	if (sig == SIGBUS) {
		static const char msg[] = "natter: the model file was truncated or became unreadable while in use; "
		    "stopping (your conversation so far is in the history)\n";
		endwin();
		if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
			/* nothing more can be done */
		}
		_exit(3);
	}
	/* Restore the terminal before dying (endwin is not async-signal-safe,
	 * but a terminal left in raw mode is worse, as htop also judges). */
	endwin();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void
install_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_crash;
	sa.sa_flags = SA_RESETHAND;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGABRT, &sa, NULL);
	sigaction(SIGFPE, &sa, NULL);
	sigaction(SIGILL, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* --- the conversation model --- */

static void
msg_free(struct msgv *m)
{
	free(m->role);
	free(m->clean);
	free(m->lines);
	memset(m, 0, sizeof(*m));
}

static void
msg_set(struct msgv *m, const char *text, size_t len)
{
	free(m->clean);
	free(m->lines);
	m->lines = NULL;
	m->nlines = 0;
	m->wrap_w = 0;
	m->clean = ui_text_clean(text, len);
}

static struct msgv *
msg_push(struct ui *u, const char *role, const char *text)
{
	if (u->nmsgs == u->capmsgs) {
		int cap = u->capmsgs ? u->capmsgs * 2 : 32;
		struct msgv *v = realloc(u->msgs, cap * sizeof(*v));
		if (!v)
			return NULL;
		u->msgs = v;
		u->capmsgs = cap;
	}
	struct msgv *m = &u->msgs[u->nmsgs++];
	memset(m, 0, sizeof(*m));
	m->role = strdup(role);
	msg_set(m, text, strlen(text));
	return m;
}

static void
msgs_clear(struct ui *u)
{
	for (int i = 0; i < u->nmsgs; i++)
		msg_free(&u->msgs[i]);
	u->nmsgs = 0;
	u->follow = 1;
}

static void
notify(struct ui *u, int is_err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(u->notice, sizeof(u->notice), fmt, ap);
	va_end(ap);
	u->notice_err = is_err;
	u->notice_t = now_s();
}

/* --- drawing helpers: everything clips to the screen --- */

static void
put(int y, int x, int maxw, const char *s, int attr)
{
	size_t n, cut;
	if (y < 0 || y >= LINES || x < 0 || x >= COLS || maxw <= 0)
		return;
	if (x + maxw > COLS)
		maxw = COLS - x;
	n = strlen(s);
	cut = ui_text_col_to_byte(s, n, maxw);
	/* Never let a wide character straddle the edge. */
	while (cut > 0 && ui_text_width(s, cut) > maxw)
		cut--;
	attron(attr);
	mvaddnstr(y, x, s, (int)cut);
	attroff(attr);
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

/* --- panes --- */

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
draw_conv(struct ui *u, int y0, int x0, int h, int w)
{
	int total = 0, text_w = w - 2 > 1 ? w - 2 : 1, start, row;

	hline_at(y0, x0, w, "Conversation", u->focus == F_CONV);
	y0++;
	h--;
	u->conv_h = h;
	if (h <= 0)
		return;
	for (int i = 0; i < u->nmsgs; i++) {
		struct msgv *m = &u->msgs[i];
		if (m->wrap_w != text_w) {
			free(m->lines);
			m->nlines = ui_text_wrap(m->clean ? m->clean : "", text_w, &m->lines);
			if (m->nlines < 0)
				m->nlines = 0;
			m->wrap_w = text_w;
		}
		total += 1 + m->nlines + 1;   /* header, text, blank line */
	}
	if (u->nmsgs == 0) {
		put(y0 + h / 2, x0 + 2, w - 4, "Type a message below and press Enter.  F1 for help.", ui_theme_attr(UE_DIM));
		return;
	}
	if (u->follow || u->top > total - h)
		u->top = total - h;
	if (u->top < 0)
		u->top = 0;
	start = u->top;
	row = 0;
	for (int i = 0; i < u->nmsgs && row - start < h; i++) {
		struct msgv *m = &u->msgs[i];
		int attr = ui_theme_attr(!strcmp(m->role, "user") ? UE_USER : !strcmp(m->role, "assistant") ?
		    UE_ASSISTANT : UE_SYSTEM);
		if (row >= start) {
			char head[64];
			snprintf(head, sizeof(head), "%s:", role_label(m->role));
			put(y0 + row - start, x0, w, head, ui_theme_attr(UE_TITLE) | (attr & A_BOLD));
		}
		row++;
		for (int k = 0; k < m->nlines && row - start < h; k++, row++) {
			if (row < start)
				continue;
			char buf[4096];
			size_t n = m->lines[k].len < sizeof(buf) - 1 ? m->lines[k].len : sizeof(buf) - 1;
			memcpy(buf, m->clean + m->lines[k].off, n);
			buf[n] = 0;
			put(y0 + row - start, x0 + 2, w - 2, buf, attr);
		}
		row++;
	}
	if (!u->follow && total > h) {
		char more[48];
		snprintf(more, sizeof(more), " %d more below (PgDn) ", total - h - u->top);
		if (total - h - u->top > 0)
			put(y0 + h - 1, x0 + w - (int)strlen(more) - 1, (int)strlen(more), more, ui_theme_attr(UE_NOTICE));
	}
}

/* The parameters, in display order. */
static const char *const param_names[] = {
	"temp", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens", "seed", "system",
};
#define N_PARAMS 8

static void
param_text(struct ui *u, int i, char *buf, size_t n)
{
	struct sampler_params p;
	chat_get_params(u->c, &p);
	switch (i) {
	case 0: snprintf(buf, n, "%.2f", p.temp); break;
	case 1: snprintf(buf, n, "%.2f", p.top_p); break;
	case 2: snprintf(buf, n, p.top_k ? "%d" : "off", p.top_k); break;
	case 3: snprintf(buf, n, "%.2f", p.min_p); break;
	case 4: snprintf(buf, n, "%.2f", p.repeat_penalty); break;
	case 5: snprintf(buf, n, chat_max_tokens(u->c) ? "%d" : "no limit", chat_max_tokens(u->c)); break;
	case 6:
		if (p.seed == SAMPLER_SEED_RANDOM)
			snprintf(buf, n, "random");
		else
			snprintf(buf, n, "%llu", (unsigned long long)p.seed);
		break;
	default: {
		const char *sys = chat_system(u->c);
		snprintf(buf, n, "%s", sys[0] ? sys : "(none)");
	}
	}
}

/* Left/Right on a parameter: DIR is -1 or +1. */
static void
param_adjust(struct ui *u, int i, int dir)
{
	struct sampler_params p;
	char err[256], val[64];
	chat_get_params(u->c, &p);
	switch (i) {
	case 0: snprintf(val, sizeof(val), "%g", fmax(0, round((p.temp + 0.05 * dir) * 100) / 100)); break;
	case 1: snprintf(val, sizeof(val), "%g", fmin(1, fmax(0.05, round((p.top_p + 0.05 * dir) * 100) / 100))); break;
	case 2: snprintf(val, sizeof(val), "%d", p.top_k + dir < 0 ? 0 : p.top_k + dir * (p.top_k >= 20 ? 5 : 1)); break;
	case 3: snprintf(val, sizeof(val), "%g", fmin(1, fmax(0, round((p.min_p + 0.01 * dir) * 100) / 100))); break;
	case 4: snprintf(val, sizeof(val), "%g", fmax(0.5, round((p.repeat_penalty + 0.05 * dir) * 100) / 100)); break;
	case 5: {
		int mt = chat_max_tokens(u->c) + 64 * dir;
		snprintf(val, sizeof(val), "%d", mt < 0 ? 0 : mt);
		break;
	}
	case 6:
		if (p.seed == SAMPLER_SEED_RANDOM)
			snprintf(val, sizeof(val), "%d", 42);
		else if (dir < 0 && p.seed == 0)
			snprintf(val, sizeof(val), "random");
		else
			snprintf(val, sizeof(val), "%llu", (unsigned long long)(p.seed + dir));
		break;
	default:
		return;
	}
	if (chat_set_param_str(u->c, param_names[i], val, err, sizeof(err)) < 0)
		notify(u, 1, "%s", err);
	else if (u->gen)
		notify(u, 0, "%s = %s from the next token", param_names[i], val);
}

static void
draw_params(struct ui *u, int y0, int x0, int h, int w)
{
	hline_at(y0, x0, w, "Parameters", u->focus == F_PARAMS);
	for (int i = 0; i < N_PARAMS && i + 1 < h; i++) {
		char v[256], line[320];
		int sel = u->focus == F_PARAMS && i == u->param_sel;
		param_text(u, i, v, sizeof(v));
		snprintf(line, sizeof(line), " %-14s %s", param_names[i], v);
		if (sel)
			fill(y0 + 1 + i, x0, w, ui_theme_attr(UE_SELECTED));
		put(y0 + 1 + i, x0, w, line, ui_theme_attr(sel ? UE_SELECTED : UE_NORMAL));
	}
}

static void
draw_stats(struct ui *u, int y0, int x0, int h, int w)
{
	char line[256];
	int r = y0 + 1, used = chat_ctx_used(u->c), nctx = chat_ctx_size(u->c);
	const struct chat_stats *s = &u->stats;
	double gen_tps = 0, ttft = 0;
	int ntok = u->gen ? u->spieces : s->n_gen;

	hline_at(y0, x0, w, "Statistics", 0);
	if (u->gen) {
		double t = now_s();
		if (u->spieces > 1 && t > u->t_first)
			gen_tps = (u->spieces - 1) / (t - u->t_first);
		ttft = u->t_first > 0 ? (u->t_first - u->t_start) * 1000 : 0;
	} else if (u->have_stats) {
		gen_tps = s->gen_tps;
		ttft = s->ttft_ms;
	}
#define ROW(...) do { if (r < y0 + h) { snprintf(line, sizeof(line), __VA_ARGS__); put(r++, x0, w, line, ui_theme_attr(UE_NORMAL)); } } while (0)
	ROW(" %s", u->model_name);
	ROW(" state      %s", u->state);
	ROW(" prompt     %.1f tok/s", u->have_stats && !u->gen ? s->prompt_tps : 0.0);
	ROW(" generation %.1f tok/s", gen_tps);
	ROW(" first tok  %.0f ms", ttft);
	ROW(" reply      %d tokens", ntok);
	if (r < y0 + h) {
		int bw = w - 14 > 4 ? w - 14 : 4, fillw = nctx ? (int)((double)used / nctx * bw + 0.5) : 0;
		snprintf(line, sizeof(line), " context ");
		put(r, x0, w, line, ui_theme_attr(UE_NORMAL));
		for (int i = 0; i < bw && x0 + 9 + i < x0 + w; i++)
			put(r, x0 + 9 + i, 1, i < fillw ? " " : ".", ui_theme_attr(i < fillw ? UE_BAR : UE_BAR_EMPTY));
		r++;
	}
	ROW("            %d / %d", used, nctx);
#undef ROW
}

static const char *
footer_text(struct ui *u)
{
	if (u->hist_open)
		return " Up/Down choose  Enter resume  Esc close ";
	if (u->mode == IM_COMMENT)
		return " Type a comment for the last reply, Enter to save, Esc to cancel ";
	if (u->mode == IM_SYSTEM)
		return " Edit the system prompt, Enter to save, Esc to cancel ";
	switch (u->focus) {
	case F_CONV:
		return " +/- rate up/down  1-5 stars  c comment  r regenerate  PgUp/PgDn scroll  Tab focus  F1 help ";
	case F_PARAMS:
		return " Up/Down choose  Left/Right change  Enter edit  Tab focus  F1 help ";
	default:
		return " Enter send  Esc stop  F5 regen  Tab focus  F2 new  F3 history  F1 help  F10 quit ";
	}
}

/* The input line: readline's buffer, wrapped, cursor kept visible. */
static void
draw_input(struct ui *u, int y0, int h, int *cy, int *cx)
{
	const char *prompt = u->mode == IM_COMMENT ? "comment> " : u->mode == IM_SYSTEM ? "system> " : "> ";
	size_t pl = strlen(prompt), bl = rl_line_buffer ? strlen(rl_line_buffer) : 0;
	char *all = malloc(pl + bl + 1);
	struct ui_line *lines = NULL;
	int n, cur_line = 0, first;
	size_t cur_byte;

	*cy = y0;
	*cx = 0;
	if (!all)
		return;
	memcpy(all, prompt, pl);
	if (bl)
		memcpy(all + pl, rl_line_buffer, bl);
	all[pl + bl] = 0;
	cur_byte = pl + (rl_line_buffer ? (size_t)rl_point : 0);
	n = ui_text_wrap(all, COLS > 1 ? COLS - 1 : 1, &lines);
	for (int i = 0; i < n; i++)
		if (cur_byte >= lines[i].off)
			cur_line = i;
	first = cur_line - h + 1 > 0 ? cur_line - h + 1 : 0;
	for (int i = 0; i < h; i++)
		fill(y0 + i, 0, COLS, ui_theme_attr(UE_INPUT));
	for (int i = first; i < n && i - first < h; i++) {
		char buf[4096];
		size_t len = lines[i].len < sizeof(buf) - 1 ? lines[i].len : sizeof(buf) - 1;
		memcpy(buf, all + lines[i].off, len);
		buf[len] = 0;
		/* Control characters typed into the line are shown, not sent. */
		char *clean = ui_text_clean(buf, len);
		put(y0 + i - first, 0, COLS, clean ? clean : "", ui_theme_attr(i == 0 ? UE_TITLE : UE_INPUT));
		free(clean);
		if (i == cur_line) {
			*cy = y0 + i - first;
			*cx = ui_text_width(all + lines[i].off, cur_byte - lines[i].off);
		}
	}
	free(lines);
	free(all);
}

static int
input_height(struct ui *u, int max)
{
	size_t bl = rl_line_buffer ? strlen(rl_line_buffer) : 0;
	int w = COLS > 1 ? COLS - 1 : 1, h = 1;
	(void)u;
	if (bl) {
		struct ui_line *lines = NULL;
		char *all = malloc(bl + 12);
		if (all) {
			snprintf(all, bl + 12, "system> %s", rl_line_buffer);
			h = ui_text_wrap(all, w, &lines);
			free(lines);
			free(all);
		}
	}
	return h < 1 ? 1 : h > max ? max : h;
}

static void
draw_help(void)
{
	static const char *const lines[] = {
		"natter keys",
		"",
		"Enter          send the message (in the input line)",
		"Alt-Enter, \\   a new line inside the message (trailing backslash)",
		"Esc, Ctrl-C    stop the reply; Ctrl-C twice on an idle screen quits",
		"F5, r          regenerate the last reply (both are kept)",
		"+ / -          rate the last reply up / down (conversation focus)",
		"1 .. 5         rate it with stars; c adds a comment",
		"Tab            focus: input, conversation, parameters",
		"Up/Down        in parameters: choose; Left/Right change it live",
		"PgUp/PgDn      scroll the conversation (also the mouse wheel)",
		"F2             new conversation      F3  past conversations",
		"F1             this help             F10, Ctrl-Q  quit",
		"",
		"Typed commands: /set NAME VALUE, /regen, /rate up|down|1..5 [COMMENT],",
		"/system [TEXT], /stats, /new, /history, /help, /quit",
		"",
		"Readline editing (emacs or vi, from ~/.inputrc) and history in the",
		"input line.  Any key closes this help.",
	};
	int n = sizeof(lines) / sizeof(lines[0]), w = 72, h = n + 2;
	int y0 = (LINES - h) / 2, x0 = (COLS - w) / 2;
	if (y0 < 0) y0 = 0;
	if (x0 < 0) x0 = 0;
	for (int i = 0; i < h && y0 + i < LINES; i++)
		fill(y0 + i, x0, w, ui_theme_attr(UE_SELECTED));
	for (int i = 0; i < n && y0 + 1 + i < LINES; i++)
		put(y0 + 1 + i, x0 + 2, w - 4, lines[i], ui_theme_attr(UE_SELECTED) | (i == 0 ? A_BOLD : 0));
}

static void
draw_history(struct ui *u)
{
	int w = COLS - 4 > 20 ? COLS - 4 : COLS, h = u->nhist + 3 < LINES - 2 ? u->nhist + 3 : LINES - 2;
	int y0 = 1, x0 = (COLS - w) / 2;
	for (int i = 0; i < h; i++)
		fill(y0 + i, x0, w, ui_theme_attr(UE_SELECTED));
	put(y0, x0 + 2, w - 4, "Past conversations (Enter resumes)", ui_theme_attr(UE_SELECTED) | A_BOLD);
	if (u->nhist == 0)
		put(y0 + 1, x0 + 2, w - 4, "(none yet)", ui_theme_attr(UE_SELECTED));
	for (int i = 0; i < u->nhist && 1 + i < h; i++) {
		char line[256], tb[32];
		time_t t = (time_t)u->hist[i].updated;
		struct tm tm;
		localtime_r(&t, &tm);
		strftime(tb, sizeof(tb), "%Y-%m-%d %H:%M", &tm);
		snprintf(line, sizeof(line), "%4lld  %s  %3d msgs  %s", (long long)u->hist[i].id, tb, u->hist[i].n_msgs,
		    u->hist[i].title);
		put(y0 + 1 + i, x0 + 1, w - 2, line,
		    i == u->hist_sel ? (int)(ui_theme_attr(UE_NORMAL) | A_REVERSE) : ui_theme_attr(UE_SELECTED));
	}
}

static void
draw(struct ui *u)
{
	int side, in_h, body_h, cy = 0, cx = 0;

	erase();
	u->rows = LINES;
	u->cols = COLS;
	if (LINES < 1 || COLS < 1) {
		refresh();
		return;
	}
	if (LINES < 3) {
		/* Too small for panes: the input line alone. */
		draw_input(u, 0, 1, &cy, &cx);
		move(cy, cx < COLS ? cx : COLS - 1);
		refresh();
		return;
	}
	in_h = input_height(u, LINES / 3 > 1 ? LINES / 3 : 1);
	body_h = LINES - in_h - 1;
	side = COLS >= 72 ? 32 : 0;
	if (body_h > 0) {
		draw_conv(u, 0, 0, body_h, COLS - side);
		if (side) {
			int ph = N_PARAMS + 1 < body_h / 2 ? N_PARAMS + 1 : body_h / 2;
			attron(ui_theme_attr(UE_BORDER));
			mvvline(0, COLS - side, ACS_VLINE, body_h);
			attroff(ui_theme_attr(UE_BORDER));
			draw_params(u, 0, COLS - side + 1, ph, side - 1);
			draw_stats(u, ph, COLS - side + 1, body_h - ph, side - 1);
		}
	}
	/* Notices sit on the line above the input. */
	if (u->notice[0] && now_s() - u->notice_t < 8 && body_h > 0)
		put(body_h - 1, 1, COLS - 2, u->notice, ui_theme_attr(u->notice_err ? UE_ERROR : UE_NOTICE));
	draw_input(u, body_h, in_h, &cy, &cx);
	fill(LINES - 1, 0, COLS, ui_theme_attr(UE_FOOTER));
	put(LINES - 1, 0, COLS, footer_text(u), ui_theme_attr(UE_FOOTER));
	if (u->help)
		draw_help();
	if (u->hist_open)
		draw_history(u);
	curs_set(u->focus == F_INPUT && !u->help && !u->hist_open);
	move(cy, cx < COLS ? cx : COLS - 1);
	refresh();
}

/* --- actions --- */

static void
start_generation(struct ui *u, int regen)
{
	if (u->gen)
		return;
	if (regen) {
		int n = chat_n_messages(u->c);
		if (n == 0 || strcmp(chat_message_role(u->c, n - 1), "assistant")) {
			notify(u, 1, "there is no reply to regenerate");
			return;
		}
		/* The screen shows the new alternative in place of the old one. */
		if (u->nmsgs > 0 && !strcmp(u->msgs[u->nmsgs - 1].role, "assistant"))
			msg_free(&u->msgs[--u->nmsgs]);
	}
	u->slen = 0;
	if (u->sbuf)
		u->sbuf[0] = 0;
	u->spieces = 0;
	u->regen = regen;
	u->t_start = now_s();
	u->t_first = 0;
	msg_push(u, "assistant", "");
	u->gen = ui_gen_start(u->c, regen, u->wake[1]);
	if (!u->gen) {
		notify(u, 1, "cannot start the generation thread");
		msg_free(&u->msgs[--u->nmsgs]);
		return;
	}
	u->state = "generating";
	u->follow = 1;
}

static void
finish_generation(struct ui *u)
{
	char err[512];
	int rc = ui_gen_finish(u->gen, &u->stats, err, sizeof(err));
	u->gen = NULL;
	if (rc < 0) {
		u->state = "error";
		notify(u, 1, "%s", err);
		if (u->nmsgs > 0 && !strcmp(u->msgs[u->nmsgs - 1].role, "assistant"))
			msg_free(&u->msgs[--u->nmsgs]);
		/* The message that could not be answered is withdrawn from the
		 * session (it stays in the history). */
		if (!u->regen && chat_n_messages(u->c) > 0 &&
		    !strcmp(chat_message_role(u->c, chat_n_messages(u->c) - 1), "user"))
			chat_pop(u->c);
		return;
	}
	u->have_stats = 1;
	u->last_rating_word[0] = 0;   /* a comment needs a rating of this reply */
	u->state = u->stats.stop == CHAT_STOP_CANCEL ? "stopped" : u->stats.stop == CHAT_STOP_CONTEXT ?
	    "context full" : "done";
	/* The stored reply is the session's (complete) text. */
	{
		const char *t = chat_message_content(u->c, chat_n_messages(u->c) - 1);
		msg_set(&u->msgs[u->nmsgs - 1], t, strlen(t));
	}
	if (chatlog_reply(&u->log, u->c, &u->stats, u->regen) < 0)
		notify(u, 1, "not saved: %s", store_errmsg(u->log.s));
}

static void
send_message(struct ui *u, const char *text)
{
	if (u->gen) {
		notify(u, 1, "wait for the reply to finish, or stop it with Esc");
		return;
	}
	if (chat_add_user(u->c, text, strlen(text)) < 0) {
		notify(u, 1, "out of memory");
		return;
	}
	msg_push(u, "user", chat_message_content(u->c, chat_n_messages(u->c) - 1));
	/* Committed before the model starts: a crash loses no message. */
	if (chatlog_user(&u->log, u->c) < 0)
		notify(u, 1, "not saved: %s", store_errmsg(u->log.s));
	start_generation(u, 0);
}

static void
rate(struct ui *u, const char *word, const char *comment)
{
	const char *kind;
	int value;
	if (store_rating_parse(word, &kind, &value) < 0) {
		notify(u, 1, "a rating is up, down or 1..5");
		return;
	}
	if (!u->log.s || !u->log.last_gen) {
		notify(u, 1, "nothing to rate yet%s", u->log.s ? "" : " (the history is off)");
		return;
	}
	if (store_rating_set(u->log.s, u->log.last_gen, kind, value, comment) < 0)
		notify(u, 1, "%s", store_errmsg(u->log.s));
	else
		notify(u, 0, "rated the last reply %s%s", word, comment && *comment ? " with a comment" : "");
}

static void
new_conversation(struct ui *u)
{
	if (u->gen) {
		notify(u, 1, "stop the reply first (Esc)");
		return;
	}
	chat_clear(u->c);
	chatlog_new(&u->log);
	msgs_clear(u);
	u->have_stats = 0;
	u->state = "idle";
	notify(u, 0, "new conversation");
}

struct load_ctx {
	struct ui *u;
	int64_t last_msg, last_gen;
};

static int
load_msg(void *ctx, int64_t id, const char *role, const char *content, int64_t gen)
{
	struct load_ctx *l = ctx;
	if (chat_add_message(l->u->c, role, content, strlen(content)) == 0)
		msg_push(l->u, role, content);
	if (!strcmp(role, "assistant")) {
		l->last_msg = id;
		l->last_gen = gen;
	}
	return 0;
}

static void
resume(struct ui *u, int64_t conv)
{
	struct load_ctx l = { u, 0, 0 };
	char *system = NULL;
	new_conversation(u);
	if (store_conv_load(u->log.s, conv, &system, load_msg, &l) < 0) {
		notify(u, 1, "%s", store_errmsg(u->log.s));
		return;
	}
	chat_set_system(u->c, system);
	free(system);
	u->log.conv = conv;
	u->log.last_msg = l.last_msg;
	u->log.last_gen = l.last_gen;
	notify(u, 0, "resumed conversation %lld", (long long)conv);
}

static void
open_history(struct ui *u)
{
	if (!u->log.s) {
		notify(u, 1, "the history is off");
		return;
	}
	if (store_conv_recent(u->log.s, u->hist, 64, &u->nhist) < 0) {
		notify(u, 1, "%s", store_errmsg(u->log.s));
		return;
	}
	u->hist_sel = 0;
	u->hist_open = 1;
}

/* Typed commands, as in chat --plain. */
static int
command(struct ui *u, char *line)
{
	char *cmd = strtok(line, " \t"), *rest = strtok(NULL, "");
	char err[256];

	if (!strcmp(cmd, "/quit") || !strcmp(cmd, "/exit"))
		return KH_QUIT;
	if (!strcmp(cmd, "/set")) {
		char *name = rest ? strtok(rest, " \t") : NULL, *val = name ? strtok(NULL, " \t") : NULL;
		if (chat_set_param_str(u->c, name, val, err, sizeof(err)) < 0)
			notify(u, 1, "%s", err);
		else
			notify(u, 0, "%s = %s", name, val);
	} else if (!strcmp(cmd, "/regen")) {
		start_generation(u, 1);
	} else if (!strcmp(cmd, "/rate")) {
		char *word = rest ? strtok(rest, " \t") : NULL;
		rate(u, word, word ? strtok(NULL, "") : NULL);
	} else if (!strcmp(cmd, "/system")) {
		chat_set_system(u->c, rest ? rest : "");
		if (chatlog_system(&u->log, u->c) < 0)
			notify(u, 1, "%s", store_errmsg(u->log.s));
		else
			notify(u, 0, rest ? "system prompt set" : "system prompt removed");
	} else if (!strcmp(cmd, "/stats")) {
		const struct chat_stats *s = &u->stats;
		if (u->have_stats)
			notify(u, 0, "prompt %d new + %d cached tokens, %.1f tok/s; reply %d tokens, %.1f tok/s; seed %llu; "
			    "generation %lld", s->n_prompt, s->n_reused, s->prompt_tps, s->n_gen, s->gen_tps,
			    (unsigned long long)s->seed, (long long)u->log.last_gen);
		else
			notify(u, 0, "no reply yet");
	} else if (!strcmp(cmd, "/new")) {
		new_conversation(u);
	} else if (!strcmp(cmd, "/history")) {
		open_history(u);
	} else if (!strcmp(cmd, "/help")) {
		u->help = 1;
	} else {
		notify(u, 1, "unknown command %s (F1 for help)", cmd);
	}
	return KH_REDRAW;
}

/* --- readline glue: bytes in, our redraw out --- */

static int rl_byte, rl_have;

static int
rl_getc_hook(FILE *f)
{
	(void)f;
	rl_have = 0;
	return rl_byte;
}

static int
rl_avail_hook(void)
{
	return rl_have;
}

static void
rl_redisplay_hook(void)
{
	/* Drawn by the event loop. */
}

static void
on_line(char *line)
{
	struct ui *u = U;
	size_t n;

	if (!line) {
		notify(u, 0, "F10 quits");
		return;
	}
	n = strlen(line);
	if (u->mode == IM_MESSAGE && n > 0 && line[n - 1] == '\\') {
		/* A trailing backslash continues the message on a new line. */
		line[n - 1] = 0;
		snprintf(u->pending, sizeof(u->pending), "%s\n", line);
		free(line);
		return;
	}
	if (u->mode == IM_COMMENT) {
		u->mode = IM_MESSAGE;
		if (u->last_rating_word[0])
			rate(u, u->last_rating_word, line);
		free(line);
		return;
	}
	if (u->mode == IM_SYSTEM) {
		u->mode = IM_MESSAGE;
		chat_set_system(u->c, line);
		if (chatlog_system(&u->log, u->c) < 0)
			notify(u, 1, "%s", store_errmsg(u->log.s));
		else
			notify(u, 0, line[0] ? "system prompt set" : "system prompt removed");
		free(line);
		return;
	}
	if (line[0] == 0) {
		free(line);
		return;
	}
	add_history(line);
	if (line[0] == '/') {
		if (command(u, line) & KH_QUIT)
			u->quit = 1;
	} else {
		send_message(u, line);
	}
	free(line);
}

static void
feed(struct ui *u, const char *bytes, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		rl_byte = (unsigned char)bytes[i];
		rl_have = 1;
		rl_callback_read_char();
		if (u->pending[0]) {
			rl_insert_text(u->pending);
			u->pending[0] = 0;
		}
	}
}

static int
rl_newline_cmd(int count, int key)
{
	(void)count;
	(void)key;
	rl_insert_text("\n");
	return 0;
}

static void
rl_setup(struct ui *u)
{
	const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
	static FILE *devnull;

	rl_readline_name = "natter";
	rl_catch_signals = 0;
	rl_catch_sigwinch = 0;
	rl_change_environment = 0;
	rl_prep_term_function = NULL;
	rl_deprep_term_function = NULL;
	rl_getc_function = rl_getc_hook;
	rl_input_available_hook = rl_avail_hook;
	rl_redisplay_function = rl_redisplay_hook;
	if (!devnull)
		devnull = fopen("/dev/null", "w");
	rl_outstream = devnull;   /* readline must never write to our screen */
	rl_bind_key('\t', rl_insert);
	rl_callback_handler_install("", on_line);
	rl_bind_keyseq("\\e\\r", rl_newline_cmd);
	rl_bind_keyseq("\\e\\n", rl_newline_cmd);
	using_history();
	stifle_history(1000);
	if (xdg && *xdg)
		snprintf(u->rl_hist_path, sizeof(u->rl_hist_path), "%s/natter/input_history", xdg);
	else if (home)
		snprintf(u->rl_hist_path, sizeof(u->rl_hist_path), "%s/.local/share/natter/input_history", home);
	if (u->rl_hist_path[0])
		read_history(u->rl_hist_path);
}

/* Keys that readline understands as escape sequences. */
static void
feed_key(struct ui *u, int key)
{
	const char *seq = NULL;
	switch (key) {
	case KEY_LEFT: seq = "\033[D"; break;
	case KEY_RIGHT: seq = "\033[C"; break;
	case KEY_UP: seq = "\033[A"; break;
	case KEY_DOWN: seq = "\033[B"; break;
	case KEY_HOME: seq = "\033[H"; break;
	case KEY_END: seq = "\033[F"; break;
	case KEY_DC: seq = "\033[3~"; break;
	case KEY_BACKSPACE: seq = "\177"; break;
	case KEY_ENTER: seq = "\r"; break;
	}
	if (seq)
		feed(u, seq, strlen(seq));
}

static void
feed_char(struct ui *u, wint_t ch)
{
	char buf[8];
	size_t n = 0;
	uint32_t cp = (uint32_t)ch;
	if (cp == '\n')
		cp = '\r';
	if (cp < 0x80) buf[n++] = (char)cp;
	else if (cp < 0x800) { buf[n++] = (char)(0xC0 | (cp >> 6)); buf[n++] = (char)(0x80 | (cp & 0x3F)); }
	else if (cp < 0x10000) { buf[n++] = (char)(0xE0 | (cp >> 12)); buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F)); buf[n++] = (char)(0x80 | (cp & 0x3F)); }
	else { buf[n++] = (char)(0xF0 | (cp >> 18)); buf[n++] = (char)(0x80 | ((cp >> 12) & 0x3F)); buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F)); buf[n++] = (char)(0x80 | (cp & 0x3F)); }
	feed(u, buf, n);
}

/* --- keys --- */

static void
scroll_by(struct ui *u, int d)
{
	if (d < 0) {
		u->follow = 0;
		u->top += d;
		if (u->top < 0)
			u->top = 0;
	} else {
		u->top += d;
		/* draw_conv clamps; reaching the bottom resumes following */
		int h = u->conv_h > 0 ? u->conv_h : 1, total = 0;
		for (int i = 0; i < u->nmsgs; i++)
			total += u->msgs[i].nlines + 2;
		if (u->top >= total - h)
			u->follow = 1;
	}
}

static int
stop_or_quit(struct ui *u)
{
	if (u->gen) {
		chat_cancel(u->c);
		notify(u, 0, "stopping the reply");
		return KH_REDRAW;
	}
	if (now_s() - u->ctrlc_t < 2)
		return KH_QUIT;
	u->ctrlc_t = now_s();
	notify(u, 0, "press Ctrl-C again to quit");
	return KH_REDRAW;
}

static int
handle_key(struct ui *u, int is_key, wint_t ch)
{
	if (is_key && ch == KEY_RESIZE)
		return KH_REDRAW;
	if (u->help) {
		u->help = 0;
		return KH_REDRAW;
	}
	if (u->hist_open) {
		if (is_key && ch == KEY_UP && u->hist_sel > 0)
			u->hist_sel--;
		else if (is_key && ch == KEY_DOWN && u->hist_sel + 1 < u->nhist)
			u->hist_sel++;
		else if ((!is_key && (ch == '\r' || ch == '\n')) || (is_key && ch == KEY_ENTER)) {
			u->hist_open = 0;
			if (u->nhist > 0)
				resume(u, u->hist[u->hist_sel].id);
		} else if ((!is_key && (ch == 27 || ch == 'q')) || (is_key && ch == KEY_F(3)))
			u->hist_open = 0;
		return KH_REDRAW;
	}
	if (is_key) {
		switch (ch) {
		case KEY_F(1): u->help = 1; return KH_REDRAW;
		case KEY_F(10): return KH_QUIT;
		case KEY_F(2): new_conversation(u); return KH_REDRAW;
		case KEY_F(3): open_history(u); return KH_REDRAW;
		case KEY_F(5): start_generation(u, 1); return KH_REDRAW;
		case KEY_PPAGE: scroll_by(u, -(u->conv_h > 2 ? u->conv_h - 2 : 1)); return KH_REDRAW;
		case KEY_NPAGE: scroll_by(u, u->conv_h > 2 ? u->conv_h - 2 : 1); return KH_REDRAW;
		case KEY_BTAB: u->focus = (u->focus + F_COUNT - 1) % F_COUNT; return KH_REDRAW;
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
			return KH_REDRAW;
		}
		}
	} else {
		switch (ch) {
		case 3: return stop_or_quit(u);               /* Ctrl-C */
		case 17: return KH_QUIT;                     /* Ctrl-Q */
		case '\t':
			if (u->mode == IM_MESSAGE)
				u->focus = (u->focus + 1) % F_COUNT;
			return KH_REDRAW;
		case 27:                                     /* a lone Esc */
			if (u->mode != IM_MESSAGE) {
				u->mode = IM_MESSAGE;
				rl_replace_line("", 0);
				notify(u, 0, "cancelled");
			} else if (u->gen) {
				chat_cancel(u->c);
				notify(u, 0, "stopping the reply");
			} else if (u->focus != F_INPUT) {
				u->focus = F_INPUT;
			}
			return KH_REDRAW;
		}
	}
	if (u->focus == F_CONV && u->mode == IM_MESSAGE) {
		if (!is_key) {
			char w[2] = { (char)ch, 0 };
			if (ch == '+' || ch == '-') {
				snprintf(u->last_rating_word, sizeof(u->last_rating_word), "%s", ch == '+' ? "up" : "down");
				rate(u, u->last_rating_word, NULL);
			} else if (ch >= '1' && ch <= '5') {
				snprintf(u->last_rating_word, sizeof(u->last_rating_word), "%s", w);
				rate(u, w, NULL);
			} else if (ch == 'c') {
				if (!u->last_rating_word[0])
					notify(u, 1, "rate the reply first (+, - or 1..5), then c for a comment");
				else {
					u->mode = IM_COMMENT;
					u->focus = F_INPUT;
					rl_replace_line("", 0);
				}
			} else if (ch == 'r') {
				start_generation(u, 1);
			}
			return KH_REDRAW;
		}
		if (ch == KEY_UP)
			scroll_by(u, -1);
		else if (ch == KEY_DOWN)
			scroll_by(u, 1);
		else if (ch == KEY_HOME) {
			u->follow = 0;
			u->top = 0;
		} else if (ch == KEY_END)
			u->follow = 1;
		return KH_REDRAW;
	}
	if (u->focus == F_PARAMS && u->mode == IM_MESSAGE) {
		if (is_key && ch == KEY_UP && u->param_sel > 0)
			u->param_sel--;
		else if (is_key && ch == KEY_DOWN && u->param_sel + 1 < N_PARAMS)
			u->param_sel++;
		else if ((is_key && ch == KEY_LEFT) || (!is_key && ch == '-'))
			param_adjust(u, u->param_sel, -1);
		else if ((is_key && ch == KEY_RIGHT) || (!is_key && ch == '+'))
			param_adjust(u, u->param_sel, +1);
		else if ((!is_key && (ch == '\r' || ch == '\n')) || (is_key && ch == KEY_ENTER)) {
			if (u->param_sel == N_PARAMS - 1) {
				u->mode = IM_SYSTEM;
				u->focus = F_INPUT;
				rl_replace_line(chat_system(u->c), 0);
				rl_point = rl_end;
			} else {
				char v[64];
				param_text(u, u->param_sel, v, sizeof(v));
				snprintf(u->pending, sizeof(u->pending), "/set %s ", param_names[u->param_sel]);
				u->focus = F_INPUT;
				rl_replace_line(u->pending, 0);
				rl_point = rl_end;
				u->pending[0] = 0;
			}
		}
		return KH_REDRAW;
	}
	/* The input line. */
	u->focus = F_INPUT;
	if (is_key)
		feed_key(u, (int)ch);
	else
		feed_char(u, ch);
	return KH_REDRAW;
}

/* Reads every pending key; Esc followed at once by another key is Alt. */
static int
read_keys(struct ui *u)
{
	int res = 0;
	wint_t ch;
	int r;

	while ((r = wget_wch(stdscr, &ch)) != ERR) {
		if (r == OK && ch == 27) {
			wint_t next;
			int r2 = wget_wch(stdscr, &next);
			if (r2 == OK && (next == '\r' || next == '\n')) {
				if (u->mode == IM_MESSAGE && u->focus == F_INPUT)
					rl_insert_text("\n");
				res |= KH_REDRAW;
				continue;
			}
			if (r2 == OK) {
				/* Meta-key for readline (Alt-B, Alt-F ...). */
				if (u->focus == F_INPUT && !u->help && !u->hist_open) {
					feed(u, "\033", 1);
					feed_char(u, next);
				}
				res |= KH_REDRAW;
				continue;
			}
			if (r2 == KEY_CODE_YES)
				res |= handle_key(u, 1, next);
			else
				res |= handle_key(u, 0, 27);
			continue;
		}
		res |= handle_key(u, r == KEY_CODE_YES, ch);
		if (res & KH_QUIT)
			break;
	}
	return res;
}

/* --- start-up --- */

/* The models folder, and the .gguf files in it: calls FN for each (if not
 * NULL) and returns how many there are. */
static int
scan_models(char *dir, size_t n, void (*fn)(const char *path, void *ctx), void *ctx)
{
	const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
	DIR *d;
	struct dirent *de;
	int count = 0;

	if (xdg && *xdg)
		snprintf(dir, n, "%s/natter/models", xdg);
	else
		snprintf(dir, n, "%s/.local/share/natter/models", home ? home : "");
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l > 5 && !strcmp(de->d_name + l - 5, ".gguf")) {
			char path[8192];
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			if (fn)
				fn(path, ctx);
			count++;
		}
	}
	if (d)
		closedir(d);
	return count;
}

static void
print_model(const char *path, void *ctx)
{
	int *n = ctx;
	if ((*n)++ == 0)
		fprintf(stderr, "Models found there:\n");
	fprintf(stderr, "  %s\n", path);
}

static void
list_models(void)
{
	char dir[4096];
	int n = 0;

	scan_models(dir, sizeof(dir), NULL, NULL);
	fprintf(stderr, "Get a GGUF model (for example TinyLlama, Qwen2.5 or Phi-3 from Hugging Face, in\n"
	    "Q4_K_M), then run:  natter -m FILE.gguf\n"
	    "or put it in %s/ and run natter without -m.\n", dir);
	scan_models(dir, sizeof(dir), print_model, &n);
}

static void
keep_model(const char *path, void *ctx)
{
	char **found = ctx;
	free(*found);
	*found = strdup(path);
}

/* The single model in the models folder, if there is exactly one. */
static char *
default_model(void)
{
	char dir[4096], *found = NULL;
	if (scan_models(dir, sizeof(dir), keep_model, &found) != 1) {
		free(found);
		return NULL;
	}
	return found;
}

/* Pages the weights in with a progress bar, so the first reply is not slow. */
static void
warm_up(struct ui *u)
{
	const struct gguf_file *f = llm_model_gguf(u->m);
	const volatile uint8_t *p = f->map;
	size_t step = 4096, chunk = (size_t)64 << 20;
	unsigned sum = 0;

	for (size_t off = 0; off < f->size; off += chunk) {
		size_t end = off + chunk < f->size ? off + chunk : f->size;
		for (size_t i = off; i < end; i += step)
			sum += p[i];
		erase();
		if (LINES > 2 && COLS > 10) {
			int bw = COLS - 20 > 10 ? COLS - 20 : 10, fw = (int)((double)end / f->size * bw);
			char line[256];
			snprintf(line, sizeof(line), "Loading %s", u->model_name);
			put(LINES / 2 - 1, 2, COLS - 4, line, ui_theme_attr(UE_TITLE));
			for (int i = 0; i < bw; i++)
				put(LINES / 2, 2 + i, 1, " ", ui_theme_attr(i < fw ? UE_BAR : UE_BAR_EMPTY));
			snprintf(line, sizeof(line), " %3.0f%%", 100.0 * end / f->size);
			put(LINES / 2, 2 + bw, 8, line, ui_theme_attr(UE_NORMAL));
		}
		refresh();
	}
	(void)sum;
}

static char *
config_theme(void)
{
	char path[4096], line[256];
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	FILE *f;
	char *theme = NULL;

	if (xdg && *xdg)
		snprintf(path, sizeof(path), "%s/natter/config", xdg);
	else
		snprintf(path, sizeof(path), "%s/.config/natter/config", home ? home : "");
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f)) {
		char key[64], val[128];
		if (sscanf(line, " %63[a-z_] = %127s", key, val) == 2 && !strcmp(key, "theme")) {
			free(theme);
			theme = strdup(val);
		}
	}
	if (f)
		fclose(f);
	return theme;
}

int
ui_run(struct ui_opts *o)
{
	struct ui ui;
	struct ui *u = &ui;
	char err[1024], *auto_model = NULL, *cfg_theme = NULL;
	int rc = 1;

	memset(u, 0, sizeof(*u));
	U = u;
	u->o = o;
	u->follow = 1;
	u->state = "idle";
	setlocale(LC_ALL, "");
	if (!o->model_path) {
		o->model_path = auto_model = default_model();
		if (!o->model_path) {
			fprintf(stderr, "natter: no model given.\n");
			list_models();
			return 2;
		}
	}
	/* Errors before the screen opens go to the terminal as they are. */
	if (llm_model_load(o->model_path, &u->m, err, sizeof(err)) < 0) {
		fprintf(stderr, "natter: %s\n", err);
		list_models();
		free(auto_model);
		return 1;
	}
	if (chat_new(u->m, &o->chat, &u->c, err, sizeof(err)) < 0) {
		fprintf(stderr, "natter: %s\n", err);
		llm_model_free(u->m);
		free(auto_model);
		return 1;
	}
	chat_set_token_delay(u->c, o->token_delay_ms);
	{
		const char *b = strrchr(o->model_path, '/');
		snprintf(u->model_name, sizeof(u->model_name), "%s (%s, %s)", b ? b + 1 : o->model_path,
		    llm_model_hparams(u->m)->arch_name, llm_model_type_name(u->m));
	}
	if (!o->no_history) {
		char path[4096];
		const char *db = o->db ? o->db : store_default_path(path, sizeof(path));
		if (!db || store_open(db, 0, &u->log.s, err, sizeof(err)) < 0) {
			/* The chat still works; the user is told it is not being saved. */
			snprintf(u->notice, sizeof(u->notice), "history off: %.200s", db ? err : "no place for the database");
			u->notice_err = 1;
			u->log.s = NULL;
		} else {
			u->log.template_name = chat_template_name(u->c);
			if (store_model(u->log.s, o->model_path, llm_model_hparams(u->m)->arch_name,
			    llm_model_type_name(u->m), &u->log.model_id) < 0)
				u->log.model_id = 0;
		}
	}
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
		fprintf(stderr, "natter: the full-screen chat needs a terminal; in pipes and scripts use "
		    "'natter chat -m %s --plain'\n", o->model_path);
		rc = 2;
		goto out_nocurses;
	}
	if (pipe(u->wake) < 0) {
		fprintf(stderr, "natter: pipe: %s\n", strerror(errno));
		goto out_nocurses;
	}
	fcntl(u->wake[0], F_SETFL, O_NONBLOCK);
	fcntl(u->wake[1], F_SETFL, O_NONBLOCK);
	wake_w = u->wake[1];
	install_signals();

	/* newterm, unlike initscr, returns instead of exiting when the terminal
	 * is unknown. */
	if (!newterm(NULL, stdout, stdin)) {
		fprintf(stderr, "natter: cannot drive this terminal (TERM=%s); try TERM=xterm, or "
		    "'natter chat --plain'\n", getenv("TERM") ? getenv("TERM") : "unset");
		goto out_nocurses;
	}
	raw();
	noecho();
	nonl();
	keypad(stdscr, TRUE);
	nodelay(stdscr, TRUE);
	set_escdelay(25);
	mousemask(BUTTON4_PRESSED
#ifdef BUTTON5_PRESSED
	    | BUTTON5_PRESSED
#endif
	    , NULL);
	cfg_theme = config_theme();
	if (ui_theme_load(o->theme ? o->theme : cfg_theme, err, sizeof(err)) < 0)
		notify(u, 1, "%s", err);
	free(cfg_theme);
	rl_setup(u);
	if (u->notice[0] == 0)
		notify(u, 0, "template: %s", chat_template_name(u->c));
	warm_up(u);
	u->notice_t = now_s();

	draw(u);
	while (!u->quit) {
		struct pollfd pfd[2] = { { STDIN_FILENO, POLLIN, 0 }, { u->wake[0], POLLIN, 0 } };
		int res = 0, timeout = u->gen ? 100 : 1000;

		if (poll(pfd, 2, timeout) < 0 && errno != EINTR)
			break;
		if (got_signal == SIGINT) {
			got_signal = 0;
			res |= stop_or_quit(u);
		} else if (got_signal) {
			break;   /* SIGTERM, SIGHUP: leave cleanly */
		}
		if (pfd[1].revents & POLLIN) {
			char drain[256];
			while (read(u->wake[0], drain, sizeof(drain)) > 0)
				;
		}
		if (pfd[0].revents & (POLLHUP | POLLERR))
			break;   /* the terminal went away */
		res |= read_keys(u);
		if (u->gen) {
			char notice[256] = "";
			int pieces, done = ui_gen_take(u->gen, &u->sbuf, &u->slen, &u->scap, &pieces, notice, sizeof(notice));
			if (pieces > 0 && u->t_first == 0)
				u->t_first = now_s();
			if (pieces != u->spieces) {
				u->spieces = pieces;
				msg_set(&u->msgs[u->nmsgs - 1], u->sbuf ? u->sbuf : "", u->slen);
			}
			if (notice[0])
				notify(u, 0, "%s", notice);
			if (done)
				finish_generation(u);
			res |= KH_REDRAW;
		}
		if (res & KH_QUIT)
			break;
		draw(u);
	}
	rc = 0;
	if (u->gen) {
		chat_cancel(u->c);
		finish_generation(u);
	}
	endwin();
	if (u->rl_hist_path[0])
		write_history(u->rl_hist_path);
	rl_callback_handler_remove();
out_nocurses:
	msgs_clear(u);
	free(u->msgs);
	free(u->sbuf);
	if (u->wake[0]) {
		close(u->wake[0]);
		close(u->wake[1]);
	}
	wake_w = -1;
	store_close(u->log.s);
	chat_free(u->c);
	llm_model_free(u->m);
	free(auto_model);
	return rc;
}
