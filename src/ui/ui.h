/* ui.h -- the interface's internals: screen model, panes, theme, generation thread. */
#ifndef NATTER_UI_INTERNAL_H
#define NATTER_UI_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* --- text (ui-text.c): display width and wrapping; no curses here --- */

/* One wrapped line: bytes [off, off + len) of a sanitized string. */
struct ui_line {
	size_t off, len;
	int width;
};

/* Sanitizes untrusted TEXT for display (controls made visible, invalid
 * UTF-8 replaced); returns a new string (caller frees). */
char *ui_text_clean(const char *text, size_t len);
/* Display width of S[0..N) (wide CJK and emoji count 2). */
int ui_text_width(const char *s, size_t n);
/* Wraps S at word boundaries into lines of at most WIDTH columns (>= 1);
 * hard newlines are kept.  Returns the number of lines; *LINES is a new
 * array (caller frees). */
int ui_text_wrap(const char *s, int width, struct ui_line **lines);
/* Byte offset in S of the character that starts at or after column COL. */
size_t ui_text_col_to_byte(const char *s, size_t n, int col);

/* --- theme (ui-theme.c) --- */

enum ui_elem {
	UE_NORMAL, UE_BORDER, UE_TITLE, UE_USER, UE_ASSISTANT, UE_SYSTEM, UE_NOTICE, UE_ERROR,
	UE_FOOTER, UE_KEY, UE_SELECTED, UE_BAR, UE_BAR_EMPTY, UE_DIM, UE_INPUT, UE_COUNT
};

/* Loads NAME (a theme name or a file) and sets up colour pairs; falls back
 * to attributes only without colours or with NO_COLOR.  Call after initscr.
 * Returns 0, or -1 with ERR set (the built-in default is then in force). */
int ui_theme_load(const char *name, char *err, size_t errlen);
/* The curses attributes of an element. */
int ui_theme_attr(enum ui_elem e);
extern const char *const ui_elem_names[UE_COUNT];

/* --- generation thread (ui-gen.c) --- */

struct chat;
struct chat_stats;

struct ui_gen;
/* Starts generating (or regenerating) on its own thread; pieces and the end
 * are announced by writing to WAKE_FD.  Returns NULL if no thread. */
struct ui_gen *ui_gen_start(struct chat *c, int regen, int wake_fd);
/* Moves the text produced since the last call into *BUF (appending) and
 * reports whether the generation has ended.  UI thread only. */
int ui_gen_take(struct ui_gen *g, char **buf, size_t *len, size_t *cap, int *n_pieces, char *notice, size_t nlen);
/* After it ended: joins the thread and returns chat_generate's result. */
int ui_gen_finish(struct ui_gen *g, struct chat_stats *st, char *err, size_t errlen);

#endif
