/* ui-history.c -- the input history's file: an entry a line, its line breaks escaped, so a message comes back whole. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natter/outfile.h"
#include "ui/ui.h"

/*
 * The file starts with UI_HISTORY_MAGIC; then each entry is one line, with
 * "\\" for a backslash, "\n" for a line break and "\r" for a carriage
 * return.  Every other byte is written as it is (a line that is not UTF-8
 * stays as typed).  readline's own format cannot hold a message with an
 * empty line (its reader skips empty lines) or a line that reads "#123"
 * (taken for a time stamp); a file in that format, from before, is read
 * by readline (ui_input_setup).
 */
#define UI_HISTORY_MAGIC "#natter input history 1"

int
ui_history_save(const char *path, const char *const *entries, int n, char *err, size_t errlen)
{
	struct outfile o;

	if (outfile_open(&o, path, "w", err, errlen) != 0)
		return -1;
	fputs(UI_HISTORY_MAGIC "\n", o.f);
	for (int i = 0; i < n; i++) {
		for (const char *p = entries[i]; *p; p++)
			switch (*p) {
			case '\\': fputs("\\\\", o.f); break;
			case '\n': fputs("\\n", o.f); break;
			case '\r': fputs("\\r", o.f); break;
			default: putc(*p, o.f);
			}
		putc('\n', o.f);
	}
	if (ferror(o.f)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
		outfile_abort(&o);
		return -1;
	}
	return outfile_commit(&o, err, errlen);
}

/* Undoes the escapes of S in place. */
static void
unescape(char *s)
{
	char *w = s;

	for (const char *r = s; *r; r++) {
		if (*r == '\\' && (r[1] == '\\' || r[1] == 'n' || r[1] == 'r')) {
			r++;
			*w++ = *r == 'n' ? '\n' : *r == 'r' ? '\r' : '\\';
		} else
			*w++ = *r;   /* a lone backslash stays one */
	}
	*w = 0;
}

int
ui_history_load(const char *path, void (*add)(const char *entry, void *arg), void *arg, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int r = 1;

	if (!f) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	len = getline(&line, &cap, f);
	if (len < 0 || strcmp(line, UI_HISTORY_MAGIC "\n") != 0) {
		/* Empty, or readline's format. */
		r = ferror(f) ? -1 : 0;
		goto out;
	}
	while ((len = getline(&line, &cap, f)) >= 0) {
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = 0;
		if (!len)
			continue;
		unescape(line);
		add(line, arg);
	}
	if (ferror(f))
		r = -1;
out:
	if (r < 0)
		snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
	free(line);
	fclose(f);
	return r;
}
