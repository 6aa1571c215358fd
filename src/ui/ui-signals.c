/* ui-signals.c -- signals become events (a flag and a byte on the wake-up pipe); a crash restores the terminal. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "ui/ui.h"

static volatile sig_atomic_t pending;
static volatile sig_atomic_t wake_fd = -1;

static void
on_term(int sig)
{
	int saved = errno;
	char b = 2;

	pending = sig;
	if (wake_fd >= 0 && write(wake_fd, &b, 1) < 0) {
		/* a full pipe already wakes the loop */
	}
	errno = saved;
}

/* Only async-signal-safe calls here: the terminal is put back from what
 * ui_tty_open saved (tcsetattr and write), never through curses. */
static void
on_crash(int sig)
{
	ui_tty_restore();
	if (sig == SIGBUS) {
		static const char msg[] = "natter: the model file was truncated or became unreadable while in use; "
		    "stopping (your conversation so far is in the history)\n";
		if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
			/* nothing more can be done */
		}
		_exit(3);
	}
	/* SA_RESETHAND put the default action back: die of the same signal
	 * (with its core dump) once this handler returns. */
	raise(sig);
}

void
ui_signals_install(int fd)
{
	static const int crashes[] = { SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL };
	struct sigaction sa;

	wake_fd = fd;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_crash;
	sa.sa_flags = SA_RESETHAND;
	for (size_t i = 0; i < sizeof(crashes) / sizeof(crashes[0]); i++)
		sigaction(crashes[i], &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int
ui_signals_take(void)
{
	int s = pending;
	pending = 0;
	return s;
}

void
ui_signals_remove(void)
{
	static const int sigs[] = { SIGTERM, SIGHUP, SIGINT, SIGSEGV, SIGABRT, SIGFPE, SIGILL };
	wake_fd = -1;
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], SIG_DFL);
}
