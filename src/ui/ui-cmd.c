/* ui-cmd.c -- the slash commands in the full screen: the shared table (chatcmd) with this front end's hooks. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "natter/chatcmd.h"
#include "ui/ui.h"

static void
say(void *fe, int is_err, const char *msg)
{
	ui_screen_notify(fe, is_err, "%s", msg);
}

static int
busy(void *fe)
{
	return ui_conv_busy(fe, NULL);
}

static void
regen(void *fe)
{
	ui_conv_start(fe, 1);
}

static void
new_conv(void *fe)
{
	ui_conv_new(fe);
}

static void
history(void *fe)
{
	ui_conv_history(fe);
}

static void
open_box(struct ui *u, enum ui_box b)
{
	u->box = b;
	u->box_top = 0;
}

static void
params(void *fe)
{
	open_box(fe, UI_BOX_PARAMS);
}

static void
stats(void *fe)
{
	open_box(fe, UI_BOX_STATS);
}

static void
copy(void *fe)
{
	ui_conv_copy(fe);
}

static void
help(void *fe)
{
	open_box(fe, UI_BOX_HELP);
}

static void
notices(void *fe)
{
	open_box(fe, UI_BOX_NOTICES);
}

static void
ab(void *fe, const struct chatcmd_variant *v)
{
	ui_ab_start(fe, v);
}

/* A reply flipped to (Left/Right) is shown before Enter chooses it: a
 * rating, typed or keyed, rates the one shown. */
static int
shown_alt(void *fe, int i)
{
	struct ui *u = fe;

	for (int j = u->nmsgs - 1; j >= 0; j--)
		if (u->msgs[j].idx == i)
			return u->msgs[j].alt;
	return chat_alt_index(u->c, i);
}

/* The rating a comment (c) goes with: the last one saved, by a key or
 * by /rate. */
static void
rated(void *fe, int64_t gen, const char *word)
{
	struct ui *u = fe;

	snprintf(u->last_rating_word, sizeof(u->last_rating_word), "%s", word);
	u->last_rating_gen = gen;
}

static const struct chatcmd_ops ops = {
	.say = say, .busy = busy, .regen = regen, .new_conv = new_conv, .history = history,
	.params = params, .stats = stats, .copy = copy, .help = help, .notices = notices, .ab = ab,
	.shown_alt = shown_alt, .rated = rated,
};

const struct chatcmd_ops *
ui_cmd_ops(void)
{
	return &ops;
}

void
ui_cmd_env(struct ui *u, struct chatcmd_env *e)
{
	e->c = u->c;
	e->log = &u->log;
	e->ops = &ops;
	e->fe = u;
}

int
ui_cmd_run(struct ui *u, char *line, int *failed)
{
	struct chatcmd_env e;
	int rc;

	ui_cmd_env(u, &e);
	rc = chatcmd_run(&e, line);
	*failed = rc < 0;
	return rc == CHATCMD_QUIT ? UI_KH_QUIT : UI_KH_REDRAW;
}
