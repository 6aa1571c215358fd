/* ui.h -- the full-screen interface: natter -m MODEL, or natter --remote URL. */
#ifndef NATTER_UI_H
#define NATTER_UI_H

#include "natter/chat.h"

struct ui_opts {
	const char *model_path;     /* NULL: look in the models folder (unless SESSION) */
	struct chat *session;       /* a session the caller made (over a remote server): ui_run takes it
				     * over, and loads no model; NULL: one over MODEL_PATH */
	const char *theme;          /* NULL: config file, else "default" */
	const char *db;             /* NULL: the default database */
	int no_history;
	int token_delay_ms;         /* slows replies down (demos, tests) */
	struct chat_opts chat;
};

/* Runs the interface until the user quits.  Owns the terminal for its whole
 * life and restores it on every exit path.  Returns the process status. */
int ui_run(struct ui_opts *o);

#endif
