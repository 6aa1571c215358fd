/* ui-input.c -- reading keys and bracketed pastes; the readline glue of the input line. */
#define _XOPEN_SOURCE_EXTENDED 1
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curses.h>
#include <readline/history.h>
#include <readline/readline.h>

#include "natter/outfile.h"
#include "ui/ui.h"

static struct ui *U;            /* readline's callbacks reach the UI here */
/* A line readline handed over (on_line running): its buffer still holds
 * the line until on_line returns, but the line has been taken; what the
 * input line will hold is what on_line keeps (pending), or nothing.  A
 * screen drawn meanwhile (a save that waits for a locked history) shows
 * that, not the sent message a second time. */
static int taking;

/* A bracketed paste being received (it may span several reads). */
static struct {
	int on, prev_cr;
	char *buf;
	size_t len, cap;
} paste;

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

/* Puts LINE back into the input line once readline is done with it: a
 * line that could not be used now is not lost. */
static void
keep(struct ui *u, const char *line, const char *tail)
{
	size_t a = strlen(line), b = strlen(tail);
	char *p = malloc(a + b + 1);
	if (!p) {
		ui_screen_notify(u, 1, "out of memory: the line is in the input history (Up)");
		return;
	}
	memcpy(p, line, a);
	memcpy(p + a, tail, b + 1);
	free(u->pending);
	u->pending = p;
}

/* An entry of the input history's file. */
static void
add_entry(const char *entry, void *arg)
{
	(void)arg;
	add_history(entry);
}

/* readline's input history into PATH, in natter's format; a failure is
 * said on stderr (the terminal is the user's again). */
static void
save_history(const char *path)
{
	HIST_ENTRY **all = history_list();
	const char **lines;
	char err[4200];
	int n = 0;

	while (all && all[n])
		n++;
	if ((lines = malloc((size_t)(n ? n : 1) * sizeof(*lines))) == NULL) {
		fprintf(stderr, "natter: the input history was not saved to %s: out of memory\n", path);
		return;
	}
	for (int i = 0; i < n; i++)
		lines[i] = all[i]->line;
	if (ui_history_save(path, lines, n, err, sizeof(err)) != 0)
		fprintf(stderr, "natter: the input history was not saved: %s\n", err);
	free(lines);
}

/* LINE into the input history.  readline's place in it stays past the
 * end unless the user is going through it (Up): ui_input_set tells so by
 * that place. */
static void
remember(const char *line)
{
	add_history(line);
	using_history();
}

/* After a line the mode or command took was used: the draft it had
 * pushed aside comes back (inserted once readline has finished the line). */
static void
restore_after(struct ui *u)
{
	free(u->stashed);
	u->stashed = NULL;
	if (!u->draft)
		return;
	keep(u, u->draft, "");
	free(u->draft);
	u->draft = NULL;
}

static void take_line(char *line);

static void
on_line(char *line)
{
	char *draft = NULL;

	/* An entry recalled with Up (or Ctrl-R) was sent: the line being
	 * typed before, which readline keeps aside until the next line and
	 * then drops, comes back once the entry is used. */
	if (line && where_history() < history_length) {
		rl_maybe_unsave_line();
		if (rl_line_buffer && !ui_text_blank(rl_line_buffer) && strcmp(rl_line_buffer, line) != 0)
			draft = strdup(rl_line_buffer);
	}
	taking = 1;
	take_line(line);
	taking = 0;
	if (draft) {
		if (!U->pending && !U->quit)
			keep(U, draft, "");
		else
			remember(draft);   /* the line holds another text: Up finds it */
		free(draft);
	}
}

static void
take_line(char *line)
{
	struct ui *u = U;
	size_t n;

	if (!line) {
		ui_screen_notify(u, 0, "F10 quits");
		return;
	}
	n = strlen(line);
	if ((u->mode == UI_IM_MESSAGE || u->mode == UI_IM_EDIT) && n > 0 && line[n - 1] == '\\') {
		/* A trailing backslash continues the message on a new line. */
		line[n - 1] = 0;
		keep(u, line, "\n");
		free(line);
		return;
	}
	if (u->mode == UI_IM_COMMENT) {
		/* A comment the store did not take stays, to be sent again or
		 * copied (Esc leaves it). */
		if (ui_conv_comment(u, line) < 0) {
			keep(u, line, "");
		} else {
			u->mode = UI_IM_MESSAGE;
			restore_after(u);
		}
		free(line);
		return;
	}
	if (u->mode == UI_IM_SYSTEM) {
		if (ui_conv_busy(u, "system prompt")) {
			keep(u, line, "");
		} else {
			u->mode = UI_IM_MESSAGE;
			ui_conv_system(u, line);
			restore_after(u);
		}
		free(line);
		return;
	}
	if (u->mode == UI_IM_EDIT) {
		if (ui_text_blank(line)) {
			ui_screen_notify(u, 1, "an empty message is not sent (Esc cancels the edit)");
			keep(u, line, "");
		} else if (ui_conv_busy(u, "edit")) {
			keep(u, line, "");
		} else {
			remember(line);
			u->mode = UI_IM_MESSAGE;
			if (ui_conv_edit(u, line) < 0) {
				/* Refused: the text is not thrown away. */
				u->mode = UI_IM_EDIT;
				keep(u, line, "");
			} else {
				restore_after(u);
			}
		}
		free(line);
		return;
	}
	if (ui_text_blank(line)) {
		/* Nothing to say: not a message (the line stays as typed). */
		if (line[0])
			ui_screen_notify(u, 1, "an empty message is not sent");
		keep(u, line, "");
		free(line);
		return;
	}
	remember(line);
	if (line[0] == '/' && line[1] != '/') {
		/* A command that failed (a typo, a value refused, a reply
		 * running) stays in the line to be corrected, as a message not
		 * sent does; the command modifies its line, hence the copy. */
		char *typed = strdup(line);
		int failed = 0;
		if (ui_cmd_run(u, line, &failed) & UI_KH_QUIT)
			u->quit = 1;
		if (failed && typed)
			keep(u, typed, "");
		else
			restore_after(u);   /* a /set the parameters pane put in the line */
		free(typed);
	} else if (ui_conv_send(u, line + (line[0] == '/')) < 0) {   /* "//": a message starting with "/" */
		keep(u, line, "");   /* not sent (a reply running, say): it stays in the line */
	} else {
		restore_after(u);
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
		if (u->pending) {
			rl_insert_text(u->pending);
			free(u->pending);
			u->pending = NULL;
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

void
ui_input_setup(struct ui *u)
{
	const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
	static FILE *devnull;

	U = u;
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
	/* An input history from before natter wrote its own format is
	 * readline's: a line an entry, or entries after "#TIME" lines
	 * (history_comment_char), their lines together. */
	history_comment_char = '#';
	if (xdg && *xdg)
		snprintf(u->rl_hist_path, sizeof(u->rl_hist_path), "%s/natter/input_history", xdg);
	else if (home)
		snprintf(u->rl_hist_path, sizeof(u->rl_hist_path), "%s/.local/share/natter/input_history", home);
	if (u->rl_hist_path[0]) {
		char err[4200];
		int r = ui_history_load(u->rl_hist_path, add_entry, NULL, err, sizeof(err));
		if (r == 0)
			read_history(u->rl_hist_path);
		else if (r < 0)
			u->rl_hist_err = strdup(err);
	}
	using_history();   /* past its end (remember) */
}

void
ui_input_teardown(struct ui *u)
{
	/* What was in the line when natter quit (and a draft a command had
	 * pushed aside) is not thrown away: Up finds it next time. */
	if (rl_line_buffer && !ui_text_blank(rl_line_buffer))
		remember(rl_line_buffer);
	if (u->draft && !ui_text_blank(u->draft))
		remember(u->draft);
	/* Called after the terminal is given back: stderr is the user's.
	 * The data folder may not exist yet (with --no-history or another
	 * --db nothing else made it). */
	if (u->rl_hist_path[0]) {
		char dir[sizeof(u->rl_hist_path)], *slash;
		int e = 0;

		/* Its folder (the path is FOLDER/natter/input_history), made
		 * 0700: what was typed is private. */
		snprintf(dir, sizeof(dir), "%s", u->rl_hist_path);
		if ((slash = strrchr(dir, '/')) != NULL) {
			*slash = 0;
			if (outfile_mkdirs(dir, 0700, NULL, 0) < 0)
				e = errno;
		}
		if (e)
			fprintf(stderr, "natter: the input history was not saved to %s: %s\n", u->rl_hist_path,
			    strerror(e));
		else if (u->rl_hist_err)
			fprintf(stderr, "natter: the input history was not saved: it could not be read (%s), "
			    "and is left as it was\n", u->rl_hist_err);
		else
			save_history(u->rl_hist_path);
	}
	free(u->rl_hist_err);
	u->rl_hist_err = NULL;
	rl_callback_handler_remove();
	free(u->pending);
	u->pending = NULL;
	free(u->draft);
	u->draft = NULL;
	free(u->stashed);
	u->stashed = NULL;
	free(paste.buf);
	memset(&paste, 0, sizeof(paste));
	U = NULL;
}

const char *
ui_input_text(void)
{
	if (taking)
		return U && U->pending ? U->pending : "";
	return rl_line_buffer ? rl_line_buffer : "";
}

int
ui_input_point(void)
{
	if (taking)
		return (int)strlen(ui_input_text());
	return rl_line_buffer ? rl_point : 0;
}

void
ui_input_set(struct ui *u, const char *text)
{
	(void)u;
	if (where_history() < history_length) {
		/* The line is an entry recalled with Up (the caller took what
		 * it needs of its text).  As readline does when a line is
		 * finished, the entry gets its own text back (else its edits,
		 * or this text with them replayed, stay in it); the line from
		 * before Up, which Down would bring back over this one, goes
		 * to the input history. */
		HIST_ENTRY *h = current_history();
		if (h && rl_undo_list) {
			rl_revert_line(1, 0);
			if ((h = replace_history_entry(where_history(), rl_line_buffer, NULL)) != NULL)
				free_history_entry(h);
		}
		using_history();
		rl_maybe_unsave_line();
		if (!ui_text_blank(rl_line_buffer))
			remember(rl_line_buffer);
	}
	/* A new line, not an edit of the one there (its undo list would be
	 * replayed over this text). */
	rl_replace_line(text, 1);
	rl_point = rl_end;
}

int
ui_input_stash(struct ui *u, const char *text)
{
	const char *now = ui_input_text();
	/* Still what the last stash put there: no words of the user's. */
	int same = u->stashed && !strcmp(now, u->stashed);
	int hist = 0;
	char *typed = NULL;

	if (!u->draft) {
		/* The user's draft, given back when the line is used. */
		if (now[0] && !same && !(u->draft = strdup(now))) {
			ui_screen_notify(u, 1, "out of memory: what you typed is in the input history (Up)");
			hist = 1;
		}
	} else if (!ui_text_blank(now) && !same) {
		/* A draft is held already (kept once: a second command put in
		 * the line replaces the first, not the draft), and the user
		 * typed something else over the first: not thrown away. */
		hist = 1;
		ui_screen_notify(u, 0, "what you typed is in the input history (Up)");
	}
	/* Into the input history once the line is replaced (ui_input_set
	 * reads readline's place in it). */
	if (hist && !(typed = strdup(now)))
		remember(now);
	free(u->stashed);
	u->stashed = strdup(text);   /* (out of memory: a line is kept twice, not lost) */
	ui_input_set(u, text);
	if (typed)
		remember(typed);
	free(typed);
	return hist;
}

void
ui_input_restore(struct ui *u)
{
	ui_input_set(u, u->draft ? u->draft : "");
	free(u->draft);
	u->draft = NULL;
	free(u->stashed);
	u->stashed = NULL;
}

int
ui_input_cancel(struct ui *u)
{
	const char *now = ui_input_text();
	char *typed = NULL;
	int kept = !ui_text_blank(now) && !(u->stashed && !strcmp(now, u->stashed));

	/* Words the user typed over what the mode put in the line (an
	 * edit's rewrite, a comment): not thrown away by Esc.  (Into the
	 * input history once the line is replaced: ui_input_set reads
	 * readline's place in it.) */
	if (kept && !(typed = strdup(now)))
		remember(now);
	ui_input_restore(u);
	if (typed)
		remember(typed);
	free(typed);
	return kept;
}

/* Keys that readline understands as escape sequences. */
void
ui_input_key(struct ui *u, int key)
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

static size_t
utf8_put(char *buf, unsigned cp)
{
	size_t n = 0;
	if (cp < 0x80) buf[n++] = (char)cp;
	else if (cp < 0x800) { buf[n++] = (char)(0xC0 | (cp >> 6)); buf[n++] = (char)(0x80 | (cp & 0x3F)); }
	else if (cp < 0x10000) { buf[n++] = (char)(0xE0 | (cp >> 12)); buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F)); buf[n++] = (char)(0x80 | (cp & 0x3F)); }
	else { buf[n++] = (char)(0xF0 | (cp >> 18)); buf[n++] = (char)(0x80 | ((cp >> 12) & 0x3F)); buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F)); buf[n++] = (char)(0x80 | (cp & 0x3F)); }
	return n;
}

void
ui_input_char(struct ui *u, unsigned ch)
{
	char buf[8];
	if (ch == '\n')
		ch = '\r';
	feed(u, buf, utf8_put(buf, ch));
}

/* --- bracketed paste: the text goes into the line as it is, newlines included --- */

static void
paste_add(unsigned ch)
{
	char b[8];
	size_t n;
	int prev_cr = paste.prev_cr;

	paste.prev_cr = ch == '\r';
	if (ch == '\n' && prev_cr)
		return;   /* CR LF is one line end */
	if (ch == '\r')
		ch = '\n';
	/* Controls other than newline and tab would only corrupt the line. */
	if ((ch < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7F)
		return;
	n = utf8_put(b, ch);
	if (paste.len + n + 1 > paste.cap) {
		size_t cap = paste.cap ? paste.cap * 2 : 4096;
		char *p = realloc(paste.buf, cap);
		if (!p)
			return;
		paste.buf = p;
		paste.cap = cap;
	}
	memcpy(paste.buf + paste.len, b, n);
	paste.len += n;
	paste.buf[paste.len] = 0;
}

static void
paste_end(struct ui *u)
{
	paste.on = 0;
	if (!paste.len)
		return;
	if (u->box != UI_BOX_NONE)
		u->box = UI_BOX_NONE;
	u->focus = UI_F_INPUT;
	rl_insert_text(paste.buf);
	paste.len = 0;
}

/* --- reading --- */

int
ui_input_read(struct ui *u)
{
	int res = 0, r;
	wint_t ch;

	while ((r = wget_wch(stdscr, &ch)) != ERR) {
		if (r == KEY_CODE_YES && ch == UI_KEY_PASTE_BEGIN) {
			paste.on = 1;
			paste.len = 0;
			paste.prev_cr = 0;
			continue;
		}
		if (r == KEY_CODE_YES && ch == UI_KEY_PASTE_END) {
			paste_end(u);
			res |= UI_KH_REDRAW;
			continue;
		}
		if (paste.on) {
			if (r == OK)
				paste_add(ch);
			else if (ch == KEY_ENTER)
				paste_add('\n');
			continue;
		}
		if (r == OK && ch == 27) {
			/* Esc followed at once by another key is Alt. */
			wint_t next;
			int r2 = wget_wch(stdscr, &next);
			if (r2 == OK && (next == '\r' || next == '\n')) {
				if ((u->mode == UI_IM_MESSAGE || u->mode == UI_IM_EDIT) && u->focus == UI_F_INPUT &&
				    u->box == UI_BOX_NONE)
					rl_insert_text("\n");
				res |= UI_KH_REDRAW;
				continue;
			}
			if (r2 == OK) {
				/* Meta-key for readline (Alt-B, Alt-F ...). */
				if (u->focus == UI_F_INPUT && u->box == UI_BOX_NONE) {
					feed(u, "\033", 1);
					ui_input_char(u, next);
				}
				res |= UI_KH_REDRAW;
				continue;
			}
			if (r2 == KEY_CODE_YES && next == KEY_RESIZE) {
				/* A resize that came right after Esc: both (the Esc was
				 * lost, and with it a stop or a box closed). */
				res |= ui_keys_handle(u, 0, 27);
				if (!(res & UI_KH_QUIT))
					res |= ui_keys_handle(u, 1, next);
			} else if (r2 == KEY_CODE_YES) {
				res |= ui_keys_handle(u, 1, next);
			} else {
				res |= ui_keys_handle(u, 0, 27);
			}
			continue;
		}
		res |= ui_keys_handle(u, r == KEY_CODE_YES, ch);
		if (res & UI_KH_QUIT)
			break;
	}
	return res;
}
