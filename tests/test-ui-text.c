/* test-ui-text.c -- the screen model's text: wrapping, code blocks kept whole, counts, base64. */
#include "config.h"

#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "ui/ui.h"

static int
line_is(const char *s, const struct ui_line *l, const char *want)
{
	return l->len == strlen(want) && !memcmp(s + l->off, want, l->len);
}

/* The input history's file, read back. */
struct got {
	char *e[16];
	int n;
};

static void
got_add(const char *entry, void *arg)
{
	struct got *g = arg;
	if (g->n < 16)
		g->e[g->n] = strdup(entry);
	g->n++;
}

static void
history_file(void)
{
	char dir[] = "/tmp/test-ui-hist-XXXXXX", path[64], err[256], big[70000];
	/* What readline's format lost or misread: an empty line inside a
	 * message, a line that looks like a time, backslashes, a carriage
	 * return, bytes that are not UTF-8, a line longer than any buffer. */
	const char *in[] = { "plain", "para one\n\npara two\n", "#1700000000\nnot a time", "a\\nb \\ c\\",
		"cr\r\nlf", "bad \xff\xfe utf-8", big };
	int n = (int)(sizeof(in) / sizeof(in[0]));
	struct got g = { { 0 }, 0 };
	FILE *f;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	big[100] = '\n';
	if (!mkdtemp(dir)) {
		CHECK(0, "mkdtemp: %s", strerror(errno));
		return;
	}
	snprintf(path, sizeof(path), "%s/h", dir);
	CHECK(ui_history_load(path, got_add, &g, err, sizeof(err)) == 0 && g.n == 0, "no file: nothing, %d", g.n);
	CHECK(ui_history_save(path, in, n, err, sizeof(err)) == 0, "save: %s", err);
	CHECK(ui_history_load(path, got_add, &g, err, sizeof(err)) == 1, "load: %s", err);
	CHECK(g.n == n, "%d entries back of %d", g.n, n);
	for (int i = 0; i < n && i < g.n; i++)
		CHECK(g.e[i] && !strcmp(g.e[i], in[i]), "entry %d back as it was: '%.40s'", i, g.e[i] ? g.e[i] : "");
	for (int i = 0; i < g.n && i < 16; i++)
		free(g.e[i]);
	/* A file of readline's (from before) is left to readline: 0. */
	if ((f = fopen(path, "w")) != NULL) {
		fputs("#1700000000\nold entry\n", f);
		fclose(f);
	}
	g.n = 0;
	CHECK(ui_history_load(path, got_add, &g, err, sizeof(err)) == 0 && g.n == 0, "readline's format: %d", g.n);
	/* A save that cannot be made leaves the file as it was. */
	{
		char sub[96], hold[96];
		snprintf(sub, sizeof(sub), "%s/d", dir);
		snprintf(hold, sizeof(hold), "%s/d/h", dir);
		CHECK(mkdir(sub, 0700) == 0 && mkdir(hold, 0700) == 0, "mkdir");
		CHECK(ui_history_save(hold, in, n, err, sizeof(err)) != 0 && strstr(err, hold), "a folder in the way: %s",
		    err);
		CHECK(ui_history_load(hold, got_add, &g, err, sizeof(err)) == -1, "a folder read");
		rmdir(hold);
		rmdir(sub);
	}
	unlink(path);
	rmdir(dir);
}

int
main(void)
{
	struct ui_line *l = NULL;
	char buf[64], *b;
	int n;
	const char *s = "Here is code:\n```c\nint a_very_long_name_that_does_not_fit = 1;\n```\nand some words after it";

	/* Prose wraps at spaces; code lines stay whole and are flagged. */
	n = ui_text_layout(s, 12, &l);
	CHECK(n == 8, "%d lines", n);
	if (n == 8) {
		CHECK(line_is(s, &l[0], "Here is") && !l[0].flags, "prose line 1");
		CHECK(line_is(s, &l[1], "code:") && !l[1].flags, "prose line 2");
		CHECK(line_is(s, &l[2], "```c") && l[2].flags == (UI_LINE_CODE | UI_LINE_FENCE), "opening fence");
		CHECK(line_is(s, &l[3], "int a_very_long_name_that_does_not_fit = 1;") && l[3].flags == UI_LINE_CODE &&
		    l[3].width == 43, "code line kept whole");
		CHECK(line_is(s, &l[4], "```") && (l[4].flags & UI_LINE_FENCE), "closing fence");
		CHECK(line_is(s, &l[5], "and some") && !l[5].flags, "prose after the block");
		CHECK(line_is(s, &l[7], "it"), "last line");
	}
	free(l);
	/* An unclosed block runs to the end; ~~~ fences too; no block at all
	 * is the same as ui_text_wrap. */
	n = ui_text_layout("~~~\nx y z\nlast", 3, &l);
	CHECK(n == 3 && l[1].flags == UI_LINE_CODE && l[2].flags == UI_LINE_CODE, "unclosed ~~~ block: %d", n);
	free(l);
	{
		struct ui_line *w = NULL;
		int k = ui_text_wrap("one two three four", 7, &w);
		n = ui_text_layout("one two three four", 7, &l);
		CHECK(n == k && n >= 3, "plain text: %d vs %d", n, k);
		for (int i = 0; i < n && i < k; i++)
			CHECK(l[i].off == w[i].off && l[i].len == w[i].len && !l[i].flags, "line %d", i);
		free(w);
		free(l);
	}
	n = ui_text_layout("", 10, &l);
	CHECK(n == 1 && l[0].len == 0, "empty text: %d lines", n);
	free(l);

	CHECK(!strcmp(ui_text_count(buf, sizeof(buf), 1200), "1,200"), "%s", buf);
	CHECK(!strcmp(ui_text_count(buf, sizeof(buf), 3544), "3,544"), "%s", buf);
	CHECK(!strcmp(ui_text_count(buf, sizeof(buf), 999), "999"), "%s", buf);
	CHECK(!strcmp(ui_text_count(buf, sizeof(buf), 1234567), "1,234,567"), "%s", buf);
	CHECK(!strcmp(ui_text_count(buf, sizeof(buf), 0), "0"), "%s", buf);

	/* RFC 4648's test vectors. */
	{
		static const char *const v[][2] = {
			{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" }, { "foob", "Zm9vYg==" },
			{ "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
		};
		for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
			b = ui_text_base64(v[i][0], strlen(v[i][0]));
			CHECK(b && !strcmp(b, v[i][1]), "base64(%s) = %s", v[i][0], b ? b : "NULL");
			free(b);
		}
	}
	/* A tab is shown as the 4 columns it is measured as (curses would
	 * move it to an 8-column stop, past the layout and the clipping). */
	b = ui_text_clean("a\tb\n\tc\t", 7);
	CHECK(b && !strcmp(b, "a    b\n    c    "), "tabs: '%s'", b ? b : "NULL");
	CHECK(b && !strchr(b, '\t'), "a tab is left for curses");
	free(b);
	/* Joiners, zero-width spaces, direction overrides and a BOM are not
	 * drawn (terminals disagree on them); the rest is kept. */
	{
		const char *in = "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9 a\xe2\x80\x8b" "b "
		    "\xe2\x80\xae" "evil\xe2\x80\xac \xe2\x81\xa6x\xe2\x81\xa9 \xef\xbb\xbfz \xe2\x80\x94";
		b = ui_text_clean(in, strlen(in));
		CHECK(b && !strcmp(b, "\xf0\x9f\x91\xa8\xf0\x9f\x91\xa9 ab evil x z \xe2\x80\x94"),
		    "invisible characters: '%s'", b ? b : "NULL");
		free(b);
	}
	/* What a row is drawn from raw is what ui_text_clean would leave as it
	 * is (a direction override in a title went to the terminal as is). */
	{
		static const char *const rows[] = {
			"plain", "caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x91\xa8", "", "\xe2\x80\xae" "evil",
			"a\xe2\x80\x8b" "b", "\xef\xbb\xbfz", "x\xe2\x81\xa6y", "tab\there", "two\nrows", "esc\x1b[2J",
			"del\x7f", "c1 \xc2\x85", "nbsp\xc2\xa0", "bad \xff", "cut \xe2\x80",
		};
		for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
			const size_t len = strlen(rows[i]);
			b = ui_text_clean(rows[i], len);
			const int changes = !b || strcmp(b, rows[i]) != 0 || strchr(rows[i], '\n');
			CHECK(ui_text_needs_clean(rows[i], len) == changes, "row %zu: needs cleaning %d, the cleaning "
			    "changes it %d", i, ui_text_needs_clean(rows[i], len), changes);
			free(b);
		}
	}
	b = ui_text_clean("x\ty", 3);
	n = b ? ui_text_wrap(b, 6, &l) : -1;
	CHECK(n == 1 && l[0].width == 6 && l[0].len == 6, "a tabbed line measured as shown: %d lines, width %d", n,
	    n > 0 ? l[0].width : -1);
	if (n > 0)
		free(l);
	free(b);
	/* Clipping at a pane's edge keeps whole characters: a wide one that
	 * does not fit is left out, never half of its bytes. */
	if (!setlocale(LC_CTYPE, "C.UTF-8") && !setlocale(LC_CTYPE, "en_US.UTF-8")) {
		SKIP("no UTF-8 locale: wide characters");
	} else {
		const char *w = "ab\xe4\xbd\xa0\xe5\xa5\xbd";   /* ab你好: widths 1, 1, 2, 2 */
		CHECK(ui_text_fit(w, strlen(w), 3) == 2, "fit 3: %zu bytes", ui_text_fit(w, strlen(w), 3));
		CHECK(ui_text_fit(w, strlen(w), 4) == 5, "fit 4: %zu bytes", ui_text_fit(w, strlen(w), 4));
		CHECK(ui_text_fit(w, strlen(w), 5) == 5, "fit 5: %zu bytes", ui_text_fit(w, strlen(w), 5));
		CHECK(ui_text_fit(w, strlen(w), 99) == 8 && ui_text_fit(w, strlen(w), 0) == 0, "fit all, none");
	}
	CHECK(ui_text_blank("  \t\n ") && ui_text_blank("") && !ui_text_blank("  x "), "blank");
	history_file();
	return test_done("test-ui-text");
}
