/* ui-theme.c -- colour themes from the .theme files, NO_COLOR, 8-colour terminals. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

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
		if (n >= sizeof(line)) {
			snprintf(err, errlen, "line %d is longer than %zu characters", lineno, sizeof(line) - 1);
			return -1;
		}
		snprintf(line, sizeof(line), "%.*s", (int)n, p);
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

/* The theme file at PATH, or NULL: WHY is "" when there is none, else
 * says what is wrong with the file there.  Only a regular file under 64
 * KiB is read (opened without blocking: a FIFO would wait for a writer
 * that never comes, on a terminal in raw mode). */
static char *
slurp(const char *path, char *why, size_t whylen)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	ssize_t r = 0;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	why[0] = 0;
	if (fd < 0) {
		if (errno != ENOENT && errno != ENOTDIR)
			snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		snprintf(why, whylen, "%s: not a regular file", path);
	else if (st.st_size >= 65536)
		snprintf(why, whylen, "%s: larger than 64 KiB", path);
	else if (!(buf = malloc((size_t)st.st_size + 1)))
		snprintf(why, whylen, "out of memory");
	while (buf && got < (size_t)st.st_size && (r = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
		got += (size_t)r;
	if (buf && r < 0)
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
	else if (buf && memchr(buf, 0, got))
		snprintf(why, whylen, "%s: holds a NUL byte (not a text file)", path);
	close(fd);
	if (why[0]) {
		free(buf);
		return NULL;
	}
	buf[got] = 0;
	return buf;
}

/* Finds NAME: a path, or NAME.theme in the user's, the installed and the
 * build tree's themes folders; the first file there is the one read. */
static char *
find_theme(const char *name, char *why, size_t whylen)
{
	char path[PATH_MAX + 64], exe[PATH_MAX], conf[PATH_MAX];
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	struct { const char *dir, *sub; } dirs[5];
	int nd = 0;
	ssize_t n;

	if (strchr(name, '/'))
		return slurp(name, why, whylen);
	/* The folders looked in, first match wins: the user's, the installed
	 * ones, next to the binary (a build tree), the source tree. */
	if (xdg && *xdg)
		snprintf(conf, sizeof(conf), "%s/natter", xdg);
	else
		snprintf(conf, sizeof(conf), "%s/.config/natter", home ? home : "");
	dirs[nd].dir = conf, dirs[nd++].sub = "themes";
	dirs[nd].dir = NATTER_DATADIR, dirs[nd++].sub = "themes";
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			dirs[nd].dir = exe, dirs[nd++].sub = "themes";
			dirs[nd].dir = exe, dirs[nd++].sub = "../themes";
		}
	}
	if (getenv("NATTER_SRCDIR"))
		dirs[nd].dir = getenv("NATTER_SRCDIR"), dirs[nd++].sub = "themes";
	for (int i = 0; i < nd; i++) {
		char *t;
		snprintf(path, sizeof(path), "%s/%s/%s.theme", dirs[i].dir, dirs[i].sub, name);
		if ((t = slurp(path, why, whylen)) || why[0])
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
		char why[PATH_MAX + 128];
		char *text = find_theme(name, why, sizeof(why));
		if (!text && why[0]) {
			snprintf(err, errlen, "theme '%s': %s; using the default", name, why);
			rc = -1;
		} else if (!text) {
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
