/* ui-theme.c -- colour themes from the .theme files, NO_COLOR, 8-colour terminals. */
#include "config.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curses.h>

#include "ui/ui.h"

const char *const ui_elem_names[UE_COUNT] = {
	"normal", "border", "title", "user", "assistant", "system", "notice", "error",
	"footer", "key", "selected", "bar", "bar_empty", "dim", "input", "code", "reasoning",
};

struct style {
	short fg, bg;    /* -1: the terminal's default */
	int attr;
};

static struct style styles[UE_COUNT];
static int attrs[UE_COUNT];

/* The built-in default, as a theme file would say it. */
static const char default_theme[] =
	"normal = default default\n"
	"border = blue default\n"
	"title = cyan default bold\n"
	"user = green default bold\n"
	"assistant = default default\n"
	"system = magenta default\n"
	"notice = yellow default\n"
	"error = red default bold\n"
	"footer = black cyan\n"
	"key = black cyan bold\n"
	"selected = black white\n"
	"bar = green default reverse\n"
	"bar_empty = default default dim\n"
	"dim = default default dim\n"
	"input = default default\n"
	"code = cyan default\n"
	"reasoning = default default dim\n";

static int
color_of(const char *w, short *out)
{
	static const char *names[] = { "black", "red", "green", "yellow", "blue", "magenta", "cyan", "white" };
	if (!strcmp(w, "default")) {
		*out = -1;
		return 0;
	}
	for (int i = 0; i < 8; i++)
		if (!strcmp(w, names[i])) {
			*out = (short)i;
			return 0;
		}
	return -1;
}

static int
parse(const char *text, char *err, size_t errlen)
{
	const char *p = text;
	int lineno = 0;

	while (*p) {
		char line[256], *q, *words[8];
		int nw = 0, e;
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);

		lineno++;
		snprintf(line, sizeof(line), "%.*s", (int)(n < sizeof(line) ? n : sizeof(line) - 1), p);
		p += n + (nl != NULL);
		if ((q = strchr(line, '#')))
			*q = 0;
		for (q = strtok(line, " \t=\r"); q && nw < 8; q = strtok(NULL, " \t=\r"))
			words[nw++] = q;
		if (nw == 0)
			continue;
		for (e = 0; e < UE_COUNT; e++)
			if (!strcmp(words[0], ui_elem_names[e]))
				break;
		if (e == UE_COUNT || nw < 3) {
			snprintf(err, errlen, "line %d: expected 'ELEMENT = FG BG [bold|dim|reverse|underline]'", lineno);
			return -1;
		}
		if (color_of(words[1], &styles[e].fg) < 0 || color_of(words[2], &styles[e].bg) < 0) {
			snprintf(err, errlen, "line %d: colours are default, black, red, green, yellow, blue, magenta, cyan, white",
			    lineno);
			return -1;
		}
		styles[e].attr = 0;
		for (int k = 3; k < nw; k++) {
			if (!strcmp(words[k], "bold")) styles[e].attr |= A_BOLD;
			else if (!strcmp(words[k], "dim")) styles[e].attr |= A_DIM;
			else if (!strcmp(words[k], "reverse")) styles[e].attr |= A_REVERSE;
			else if (!strcmp(words[k], "underline")) styles[e].attr |= A_UNDERLINE;
			else {
				snprintf(err, errlen, "line %d: unknown attribute '%s'", lineno, words[k]);
				return -1;
			}
		}
	}
	return 0;
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = n >= 0 && n < 65536 ? malloc(n + 1) : NULL;
	if (buf && fread(buf, 1, n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf)
		buf[n] = 0;
	return buf;
}

/* Finds NAME: a path, or NAME.theme in the user's, the installed and the
 * build tree's themes folders. */
static char *
find_theme(const char *name)
{
	char path[PATH_MAX + 64], exe[PATH_MAX];
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	char *t;
	ssize_t n;

	if (strchr(name, '/'))
		return slurp(name);
	if (xdg && *xdg)
		snprintf(path, sizeof(path), "%s/natter/themes/%s.theme", xdg, name);
	else
		snprintf(path, sizeof(path), "%s/.config/natter/themes/%s.theme", home ? home : "", name);
	if ((t = slurp(path)))
		return t;
	snprintf(path, sizeof(path), "%s/themes/%s.theme", NATTER_DATADIR, name);
	if ((t = slurp(path)))
		return t;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			snprintf(path, sizeof(path), "%s/themes/%s.theme", exe, name);
			if ((t = slurp(path)))
				return t;
			snprintf(path, sizeof(path), "%s/../themes/%s.theme", exe, name);
			if ((t = slurp(path)))
				return t;
		}
	}
	if (getenv("NATTER_SRCDIR")) {
		snprintf(path, sizeof(path), "%s/themes/%s.theme", getenv("NATTER_SRCDIR"), name);
		if ((t = slurp(path)))
			return t;
	}
	return NULL;
}

int
ui_theme_load(const char *name, char *err, size_t errlen)
{
	int rc = 0, color;
	char perr[160];

	parse(default_theme, perr, sizeof(perr));
	if (name && strcmp(name, "default")) {
		char *text = find_theme(name);
		if (!text) {
			snprintf(err, errlen, "theme '%s' not found (looked in ~/.config/natter/themes, %s/themes "
			    "and next to natter); using the default", name, NATTER_DATADIR);
			rc = -1;
		} else {
			if (parse(text, perr, sizeof(perr)) < 0) {
				snprintf(err, errlen, "theme '%s': %s; using the default for the rest", name, perr);
				rc = -1;
			}
			free(text);
		}
	}
	/* NO_COLOR (no-color.org): any value, even empty, turns colour off. */
	color = has_colors() && getenv("NO_COLOR") == NULL && (!name || strcmp(name, "mono"));
	if (color) {
		start_color();
		use_default_colors();
	}
	for (int e = 0; e < UE_COUNT; e++) {
		if (color && COLOR_PAIRS > e + 1) {
			init_pair((short)(e + 1), styles[e].fg, styles[e].bg);
			attrs[e] = COLOR_PAIR(e + 1) | styles[e].attr;
		} else {
			/* Without colours: keep the attributes, and make the parts that
			 * were told apart by colour stand out otherwise. */
			int a = styles[e].attr;
			if (e == UE_FOOTER || e == UE_KEY || e == UE_SELECTED || e == UE_BAR)
				a |= A_REVERSE;
			if (e == UE_USER || e == UE_TITLE || e == UE_ERROR)
				a |= A_BOLD;
			if ((e == UE_CODE || e == UE_REASONING) && !a)
				a = A_DIM;
			attrs[e] = a;
		}
	}
	return rc;
}

int
ui_theme_attr(enum ui_elem e)
{
	return attrs[e];
}
