/* ui-tty.c -- the terminal itself: is it usable, take it, give it back (also from a crash), clipboard. */
#define _XOPEN_SOURCE_EXTENDED 1
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "ui/ui.h"

/* After ui.h: term.h defines the capabilities' names (lines, columns ...) as macros. */
#include <curses.h>
#include <term.h>

/* Bracketed paste (xterm's mode 2004): a paste arrives between ESC [ 200 ~
 * and ESC [ 201 ~, so that its newlines are not taken for Enter. */
static const char paste_on[] = "\033[?2004h";
static const char paste_off[] = "\033[?2004l";
/* Every mouse mode curses may have turned on. */
static const char mouse_off[] = "\033[?1000l\033[?1002l\033[?1003l\033[?1006l";

/* What ui_tty_restore writes, saved at start-up so that a signal handler
 * needs neither curses nor malloc. */
static struct termios saved_tio;
static int have_tio;
static char restore_seq[512];
static size_t restore_len;
static volatile sig_atomic_t is_open;
static SCREEN *screen;

int
ui_tty_check(char *err, size_t errlen)
{
	const char *term = getenv("TERM");
	int e = 0;

	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
		snprintf(err, errlen, "the full-screen chat needs a terminal; in pipes and scripts use "
		    "'natter chat -m MODEL --plain'");
		return -1;
	}
	/* A terminal that cannot move its cursor (TERM=dumb, emacs' shell) cannot
	 * hold a full screen. */
	if (!term || !*term || !strcmp(term, "dumb") || setupterm((char *)term, STDOUT_FILENO, &e) != OK ||
	    !tigetstr("cup") || tigetstr("cup") == (char *)-1) {
		TERMINAL *t = set_curterm(NULL);
		snprintf(err, errlen, "cannot drive this terminal (TERM=%s); try TERM=xterm, or "
		    "'natter chat -m MODEL --plain'", term && *term ? term : "unset");
		if (t)
			del_curterm(t);
		return -1;
	}
	{
		TERMINAL *t = set_curterm(NULL);
		if (t)
			del_curterm(t);
	}
	return 0;
}

static void
save_cap(const char *name)
{
	const char *s = tigetstr((char *)name);
	size_t n;
	if (!s || s == (char *)-1)
		return;
	n = strlen(s);
	if (restore_len + n < sizeof(restore_seq)) {
		memcpy(restore_seq + restore_len, s, n);
		restore_len += n;
	}
}

static void
save_str(const char *s)
{
	size_t n = strlen(s);
	if (restore_len + n < sizeof(restore_seq)) {
		memcpy(restore_seq + restore_len, s, n);
		restore_len += n;
	}
}

int
ui_tty_open(char *err, size_t errlen)
{
	have_tio = tcgetattr(STDIN_FILENO, &saved_tio) == 0;
	/* newterm, unlike initscr, returns instead of exiting when the terminal
	 * is unknown. */
	if (!(screen = newterm(NULL, stdout, stdin))) {
		const char *term = getenv("TERM");
		snprintf(err, errlen, "cannot drive this terminal (TERM=%s); try TERM=xterm, or "
		    "'natter chat -m MODEL --plain'", term ? term : "unset");
		return -1;
	}
	restore_len = 0;
	save_cap("sgr0");
	save_str(paste_off);
	save_str(mouse_off);
	save_cap("rmkx");
	save_cap("cnorm");
	save_cap("rmcup");
	is_open = 1;

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
	/* The paste brackets arrive as keys of their own. */
	define_key("\033[200~", UI_KEY_PASTE_BEGIN);
	define_key("\033[201~", UI_KEY_PASTE_END);
	refresh();
	fflush(stdout);
	if (write(STDOUT_FILENO, paste_on, sizeof(paste_on) - 1) < 0) {
		/* pastes then arrive as typed keys: still usable */
	}
	return 0;
}

void
ui_tty_close(void)
{
	if (!is_open)
		return;
	fflush(stdout);
	if (write(STDOUT_FILENO, paste_off, sizeof(paste_off) - 1) < 0) {
		/* the terminal is going away anyway */
	}
	endwin();
	delscreen(screen);
	screen = NULL;
	is_open = 0;
}

void
ui_tty_restore(void)
{
	/* Async-signal-safe: tcsetattr and write only, of data saved earlier. */
	if (!is_open)
		return;
	if (have_tio)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
	if (restore_len && write(STDOUT_FILENO, restore_seq, restore_len) < 0) {
		/* nothing more can be done from a signal handler */
	}
	is_open = 0;
}

int
ui_tty_clipboard(const char *text, size_t len)
{
	static const char head[] = "\033]52;c;", tail[] = "\a";
	char *b64 = ui_text_base64(text, len);
	int rc = 0;

	if (!b64)
		return -1;
	fflush(stdout);
	if (write(STDOUT_FILENO, head, sizeof(head) - 1) < 0 || write(STDOUT_FILENO, b64, strlen(b64)) < 0 ||
	    write(STDOUT_FILENO, tail, sizeof(tail) - 1) < 0)
		rc = -1;
	free(b64);
	return rc;
}
