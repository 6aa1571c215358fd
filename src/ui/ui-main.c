/* ui-main.c -- the full-screen chat: start-up in order, then one event loop that owns the terminal. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "natter/chat-engine.h"
#include "natter/chat.h"
#include "natter/chatlog.h"
#include "natter/llm.h"
#include "natter/store.h"
#include "natter/ui.h"
#include "ui/ui.h"

/* Opens the history; the chat still works without it, and says so. */
static void
open_history(struct ui *u)
{
	char path[4096], err[1024];
	const char *db = u->o->db ? u->o->db : store_default_path(path, sizeof(path), err, sizeof(err));

	if (!db || store_open(db, 0, &u->log.s, err, sizeof(err)) < 0) {
		ui_screen_notify(u, 1, "history off: %.200s", err);
		u->log.s = NULL;
		return;
	}
	if (chatlog_model(&u->log, u->c, u->o->model_path) < 0)
		ui_screen_notify(u, 1, "the model is not recorded: %.200s", store_errmsg(u->log.s));
}

/* The history locked by another program for a while: the screen, which
 * stalls until the store gets it or gives up, says why. */
#define WAIT_NOTICE "the history is locked by another program: waiting for it (up to %d s)"

static void
history_wait(void *ctx)
{
	struct ui *u = ctx;

	if (!u->waiting) {
		memcpy(u->wait_prev, u->notice, sizeof(u->wait_prev));
		u->wait_prev_err = u->notice_err;
		u->wait_prev_t = u->notice_t;
		u->waiting = 1;
	}
	ui_screen_notify(u, 1, WAIT_NOTICE, STORE_BUSY_MS / 1000);
	ui_draw(u);
}

/* After the event whose store calls waited: the notice the wait replaced
 * is back, unless something was said since (that the save failed, say). */
static void
history_waited(struct ui *u)
{
	char w[sizeof(u->notice)];

	if (!u->waiting)
		return;
	u->waiting = 0;
	snprintf(w, sizeof(w), WAIT_NOTICE, STORE_BUSY_MS / 1000);
	if (strcmp(u->notice, w) != 0)
		return;
	memcpy(u->notice, u->wait_prev, sizeof(u->notice));
	u->notice_err = u->wait_prev_err;
	u->notice_t = u->wait_prev_t;
}

/* The two lines of the statistics pane that say what answers: the model
 * file and its kind, or the remote model and where it runs. */
static void
describe(struct ui *u)
{
	struct chat_engine_info i;

	chat_engine_info(u->c, &i);
	if (i.endpoint) {
		const char *h = strstr(i.endpoint, "://");
		snprintf(u->model_file, sizeof(u->model_file), "%s", i.model);
		snprintf(u->model_kind, sizeof(u->model_kind), "remote %s", h ? h + 3 : i.endpoint);
		return;
	}
	{
		const char *b = strrchr(u->o->model_path, '/');
		snprintf(u->model_file, sizeof(u->model_file), "%s", b ? b + 1 : u->o->model_path);
		snprintf(u->model_kind, sizeof(u->model_kind), "%s %s", i.arch ? i.arch : "?", i.type_name ? i.type_name : "");
	}
}

/* One turn of the loop: what woke it up, handled; returns UI_KH_* bits. */
static int
loop_turn(struct ui *u)
{
	struct pollfd pfd[2] = { { STDIN_FILENO, POLLIN, 0 }, { u->wake[0], POLLIN, 0 } };
	int res = 0, sig;

	if (poll(pfd, 2, u->gen ? 100 : 1000) < 0 && errno != EINTR)
		return UI_KH_QUIT;
	if ((sig = ui_signals_take()) == SIGINT) {
		res |= ui_keys_stop_or_quit(u);
	} else if (sig) {
		u->exit_status = 128 + sig;   /* SIGTERM, SIGHUP: leave cleanly, as killed */
		return UI_KH_QUIT;
	}
	if (pfd[1].revents & POLLIN) {
		char drain[256];
		while (read(u->wake[0], drain, sizeof(drain)) > 0)
			;
	}
	if (pfd[0].revents & (POLLHUP | POLLERR))
		return UI_KH_QUIT;   /* the terminal went away */
	res |= ui_input_read(u);
	res |= ui_conv_poll(u);
	return res;
}

static int
run_screen(struct ui *u)
{
	char err[1024];

	if (pipe(u->wake) < 0) {
		fprintf(stderr, "natter: pipe: %s\n", strerror(errno));
		u->wake[0] = u->wake[1] = -1;
		return 1;
	}
	fcntl(u->wake[0], F_SETFL, O_NONBLOCK);
	fcntl(u->wake[1], F_SETFL, O_NONBLOCK);
	fcntl(u->wake[0], F_SETFD, FD_CLOEXEC);
	fcntl(u->wake[1], F_SETFD, FD_CLOEXEC);
	ui_signals_install(u->wake[1]);
	if (ui_tty_open(err, sizeof(err)) < 0) {
		fprintf(stderr, "natter: %s\n", err);
		ui_signals_remove();
		return 2;
	}
	if (u->log.s)
		store_on_wait(u->log.s, history_wait, u);
	/* The theme: --theme, else the config file's (cmd-ui.c read it). */
	if (ui_theme_load(u->o->theme, err, sizeof(err)) < 0)
		ui_screen_notify(u, 1, "%s", err);
	ui_input_setup(u);
	/* A warning (an adapter trained on another model) wins over what is
	 * only information (the weights mapped), not over an error. */
	if ((u->notice[0] == 0 || !u->notice_err) && chat_warning(u->c))
		ui_screen_notify(u, 1, "%s", chat_warning(u->c));
	if (u->notice[0] == 0)
		ui_screen_notify(u, 0, "template: %s", chat_template_name(u->c));
	ui_start_warm(u);
	u->notice_t = ui_screen_now();

	ui_draw(u);
	while (!u->quit) {
		int r = loop_turn(u);
		history_waited(u);
		if (r & UI_KH_QUIT)
			break;
		ui_draw(u);
	}
	if (u->gen) {
		chat_cancel(u->c);
		ui_conv_finish(u);   /* the cancelled reply is kept */
	}
	if (u->log.s)
		store_on_wait(u->log.s, NULL, NULL);
	ui_tty_close();
	ui_input_teardown(u);
	ui_signals_remove();
	return u->exit_status;
}

int
ui_run(struct ui_opts *o)
{
	struct ui ui;
	struct ui *u = &ui;
	char err[1024], *auto_model = NULL;
	int rc;

	memset(u, 0, sizeof(*u));
	u->o = o;
	u->follow = 1;
	u->state = "idle";
	u->wake[0] = u->wake[1] = -1;
	setlocale(LC_ALL, "");
	if (o->session) {
		u->c = o->session;   /* ours now */
		o->session = NULL;
	} else if (!o->model_path) {
		o->model_path = auto_model = ui_start_default_model();
		if (!o->model_path) {
			fprintf(stderr, "natter: no model given.\n");
			ui_start_list_models();
			return 2;
		}
	}
	/* Before anything is loaded, opened or hashed: can this terminal hold
	 * a full screen at all? */
	if (ui_tty_check(err, sizeof(err)) < 0) {
		fprintf(stderr, "natter: %s\n", err);
		chat_free(u->c);
		free(auto_model);
		return 2;
	}
	/* Errors before the screen opens go to the terminal as they are. */
	if (!u->c && llm_model_load(o->model_path, &u->m, err, sizeof(err)) < 0) {
		fprintf(stderr, "natter: %s\n", err);
		ui_start_list_models();
		free(auto_model);
		return 1;
	}
	if (!u->c)
		llm_model_pack(u->m);
	if (!u->c && chat_new(u->m, &o->chat, &u->c, err, sizeof(err)) < 0) {
		fprintf(stderr, "natter: %s\n", err);
		llm_model_free(u->m);
		free(auto_model);
		return 1;
	}
	chat_set_token_delay(u->c, o->token_delay_ms);
	describe(u);
	if (u->m && !llm_model_weights_copied(u->m))
		ui_screen_notify(u, 0, "weights mapped from the file (%s): generation is slower than from memory",
		    llm_model_weights_why(u->m));
	if (!o->no_history)
		open_history(u);

	rc = run_screen(u);

	ui_screen_clear(u);
	free(u->msgs);
	free(u->answer.p);
	free(u->reasoning.p);
	free(u->unsent);
	free(u->ab_a);
	if (u->wake[0] >= 0) {
		close(u->wake[0]);
		close(u->wake[1]);
	}
	store_close(u->log.s);
	chat_free(u->c);
	llm_model_free(u->m);
	free(auto_model);
	return rc;
}
