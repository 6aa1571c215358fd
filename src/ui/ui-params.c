/* ui-params.c -- the parameters pane's rows: one table of what each shows, how Left/Right steps it, and what Enter puts in the line. */
#include "config.h"

#include <math.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "natter/chat.h"
#include "natter/lora.h"
#include "natter/sampler.h"
#include "ui/ui.h"

struct row;
typedef void (*show_fn)(struct ui *u, const struct row *r, const struct sampler_params *p, char *buf, size_t n);
/* The value Left/Right (DIR -1 or +1) asks /set for, into VAL; 0 when the
 * row has none to step (the system prompt). */
typedef int (*next_fn)(struct ui *u, const struct row *r, const struct sampler_params *p, int dir, char *val,
		       size_t n);

/* A parameter, as /set names it ("system": the system prompt, which Enter
 * edits).  A float setting steps by STEP within [LO, HI]. */
struct row {
	const char *name;
	double step, lo, hi;
	show_fn show;
	next_fn next;
};

static double
value(const struct row *r, const struct sampler_params *p)
{
	const struct sampler_setting *s = sampler_setting_find(r->name);
	return s ? sampler_setting_get(p, s) : 0;
}

static void
show_float(struct ui *u, const struct row *r, const struct sampler_params *p, char *buf, size_t n)
{
	(void)u;
	snprintf(buf, n, "%.2f", value(r, p));
}

static int
next_float(struct ui *u, const struct row *r, const struct sampler_params *p, int dir, char *val, size_t n)
{
	(void)u;
	snprintf(val, n, "%g", fmin(r->hi, fmax(r->lo, round((value(r, p) + r->step * dir) * 100) / 100)));
	return 1;
}

static void
show_top_k(struct ui *u, const struct row *r, const struct sampler_params *p, char *buf, size_t n)
{
	(void)u;
	(void)r;
	snprintf(buf, n, p->top_k ? "%d" : "off", p->top_k);
}

/* By 1, and by 5 from 20 on; down to 0 (off). */
static int
next_top_k(struct ui *u, const struct row *r, const struct sampler_params *p, int dir, char *val, size_t n)
{
	(void)u;
	(void)r;
	/* In long long: a step up from near INT_MAX overflowed (the /set refused it). */
	long long k = (long long)p->top_k + dir * (p->top_k >= 20 ? 5 : 1);
	snprintf(val, n, "%lld", k < 0 ? 0 : k > INT_MAX ? INT_MAX : k);
	return 1;
}

static void
show_max_tokens(struct ui *u, const struct row *r, const struct sampler_params *p, char *buf, size_t n)
{
	(void)r;
	(void)p;
	snprintf(buf, n, chat_max_tokens(u->c) ? "%d" : "no limit", chat_max_tokens(u->c));
}

static int
next_max_tokens(struct ui *u, const struct row *r, const struct sampler_params *p, int dir, char *val, size_t n)
{
	long long mt = (long long)chat_max_tokens(u->c) + (long long)r->step * dir;
	(void)p;
	snprintf(val, n, "%lld", mt < 0 ? 0 : mt > INT_MAX ? INT_MAX : mt);
	return 1;
}

static void
show_seed(struct ui *u, const struct row *r, const struct sampler_params *p, char *buf, size_t n)
{
	(void)u;
	(void)r;
	if (p->seed == SAMPLER_SEED_RANDOM)
		snprintf(buf, n, "random");
	else
		snprintf(buf, n, "%llu", (unsigned long long)p->seed);
}

/* From random to 42; below 0, random. */
static int
next_seed(struct ui *u, const struct row *r, const struct sampler_params *p, int dir, char *val, size_t n)
{
	(void)u;
	(void)r;
	if (p->seed == SAMPLER_SEED_RANDOM)
		snprintf(val, n, "%d", 42);
	else if (dir < 0 && p->seed == 0)
		snprintf(val, n, "random");
	else
		snprintf(val, n, "%llu", (unsigned long long)(p->seed + dir));
	return 1;
}

static void
show_system(struct ui *u, const struct row *r, const struct sampler_params *p, char *buf, size_t n)
{
	/* The generation thread only reads the system prompt; the UI changes
	 * it only while no reply runs. */
	const char *sys = chat_system(u->c);
	(void)r;
	(void)p;
	snprintf(buf, n, "%s", sys[0] ? sys : "(none)");
}

static const struct row rows[] = {
	{ "temp", 0.05, 0, HUGE_VAL, show_float, next_float },
	{ "top_p", 0.05, 0.05, 1, show_float, next_float },
	{ "top_k", 0, 0, 0, show_top_k, next_top_k },
	{ "min_p", 0.01, 0, 1, show_float, next_float },
	{ "repeat_penalty", 0.05, 0.5, HUGE_VAL, show_float, next_float },
	{ "max_tokens", 64, 0, 0, show_max_tokens, next_max_tokens },
	{ "seed", 0, 0, 0, show_seed, next_seed },
	{ "system", 0, 0, 0, show_system, NULL },
};
#define N_ROWS ((int)(sizeof(rows) / sizeof(rows[0])))

int
ui_param_rows(struct ui *u)
{
	return N_ROWS + chat_n_adapters(u->c);
}

void
ui_param_name(struct ui *u, int i, char *buf, size_t n)
{
	if (i < N_ROWS) {
		snprintf(buf, n, "%s", rows[i].name);
	} else {
		const struct lora_adapter *a = chat_adapter(u->c, i - N_ROWS);
		const char *nm = a ? lora_name(a) : "", *path = a ? lora_path(a) : "", *b = strrchr(path, '/');
		snprintf(buf, n, "lora %s", nm[0] ? nm : b ? b + 1 : path);
	}
}

void
ui_param_text(struct ui *u, int i, char *buf, size_t n)
{
	struct sampler_params p;
	size_t l;

	if (i >= N_ROWS) {
		/* An adapter's scale as set (it applies from the next reply). */
		float sc = chat_adapter_scale(u->c, i - N_ROWS);
		if (sc == 0.0f)
			snprintf(buf, n, "off");
		else
			snprintf(buf, n, "%.2f", sc);
		return;
	}
	chat_get_params(u->c, &p);
	rows[i].show(u, &rows[i], &p, buf, n);
	/* A parameter the engine does not pass on (a remote server refused it). */
	l = strlen(buf);
	if (!chat_param_sent(u->c, rows[i].name) && l < n)
		snprintf(buf + l, n - l, " (not sent)");
}

void
ui_param_step(struct ui *u, int i, int dir)
{
	struct sampler_params p;
	char err[256], val[64];

	if (i >= N_ROWS) {
		/* An adapter's scale, by tenths, down to 0 (off). */
		int k = i - N_ROWS;
		float sc = (float)fmax(0, round((chat_adapter_scale(u->c, k) + 0.1 * dir) * 10) / 10);
		char name[64];
		ui_param_name(u, i, name, sizeof(name));
		if (sc == 0.0f)
			snprintf(val, sizeof(val), "off");
		else
			snprintf(val, sizeof(val), "x%.1f", sc);
		if (chat_set_adapter_scale(u->c, k, sc, err, sizeof(err)) < 0)
			ui_screen_notify(u, 1, "%s", err);
		else
			ui_screen_notify(u, 0, "%s %s from the next reply, which reads the conversation again first", name,
			    val);
		return;
	}
	chat_get_params(u->c, &p);
	if (!rows[i].next || !rows[i].next(u, &rows[i], &p, dir, val, sizeof(val)))
		return;
	if (chat_set_param_str(u->c, rows[i].name, val, err, sizeof(err)) < 0)
		ui_screen_notify(u, 1, "%s", err);
	else if (u->gen)
		ui_screen_notify(u, 0, "%s = %s from the next token", rows[i].name, val);
}

void
ui_param_enter(struct ui *u, int i)
{
	char line[64];

	if (i < N_ROWS && !rows[i].next) {
		/* The system prompt is the generation thread's to read while a
		 * reply runs: it is edited between replies. */
		if (ui_conv_busy(u, "system prompt"))
			return;
		u->mode = UI_IM_SYSTEM;
		u->focus = UI_F_INPUT;
		ui_input_stash(u, chat_system(u->c));
		return;
	}
	if (i >= N_ROWS)
		snprintf(line, sizeof(line), "/lora %d ", i - N_ROWS + 1);
	else
		snprintf(line, sizeof(line), "/set %s ", rows[i].name);
	u->focus = UI_F_INPUT;
	ui_input_stash(u, line);
}
