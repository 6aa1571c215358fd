/* ui.h -- the interface's internals: screen model, panes, theme, terminal, generation thread. */
#ifndef NATTER_UI_INTERNAL_H
#define NATTER_UI_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "natter/chat.h"
#include "natter/chatlog.h"
#include "natter/store.h"

/*
 * Files, one concern each (a function's prefix is its file's name):
 *   ui-main.c     ui_run and the event loop
 *   ui-screen.c   the screen model: messages as shown, notices, layout (no curses)
 *   ui-conv.c     actions on the conversation: send, regenerate, resume, rate
 *   ui-draw.c     drawing the panes and boxes from the model (curses)
 *   ui-keys.c     what each key does in each focus
 *   ui-input.c    reading keys and pastes; the readline glue of the input line
 *   ui-cmd.c      the slash commands typed into the input line
 *   ui-tty.c      the terminal itself: open, close, raw restore, clipboard
 *   ui-signals.c  signals become events; a crash restores the terminal
 *   ui-start.c    start-up: finding the model, the config file, warming up
 *   ui-gen.c      the generation thread and its queue
 *   ui-ab.c       A/B comparisons: the chooser of B's setting, the two replies side by side
 *   ui-text.c     display widths and wrapping (no curses)
 *   ui-theme.c    colour themes
 * Only the UI thread touches anything here, except where ui-gen.c says so.
 */

/* --- text (ui-text.c): display width and wrapping; no curses here --- */

enum { UI_LINE_CODE = 1, UI_LINE_FENCE = 2 };

/* One display line: bytes [off, off + len) of a sanitized string. */
struct ui_line {
	size_t off, len;
	int width;
	int flags;                /* UI_LINE_CODE: inside a ``` block, shown unwrapped */
};

/* Sanitizes untrusted TEXT for display (controls made visible, invalid
 * UTF-8 replaced, each tab 4 spaces, joiners, zero-width spaces and
 * direction marks left out); returns a new string (caller frees), NULL if
 * out of memory. */
char *ui_text_clean(const char *text, size_t len);
/* Whether ui_text_clean would change TEXT[0..LEN), or it holds a line
 * break: what a terminal would act on or mis-measure (controls, DEL,
 * bytes that are not UTF-8, the characters of no width it leaves out). */
int ui_text_needs_clean(const char *text, size_t len);
/* Display width of S[0..N) (wide CJK and emoji count 2). */
int ui_text_width(const char *s, size_t n);
/* Wraps S at word boundaries into lines of at most WIDTH columns (>= 1);
 * hard newlines are kept.  Returns the number of lines, or -1 if out of
 * memory; *LINES is a new array (caller frees). */
int ui_text_wrap(const char *s, int width, struct ui_line **lines);
/* As ui_text_wrap, but the lines of fenced code blocks (from a line
 * starting with ``` to the next such line, fences included) are kept whole,
 * one display line each, flagged UI_LINE_CODE (and UI_LINE_FENCE for the
 * fences): the caller clips them instead of wrapping. */
int ui_text_layout(const char *s, int width, struct ui_line **lines);
/* The bytes of S[0..N) that fit in COL columns, whole characters only (a
 * wide one that would straddle the edge is left out). */
size_t ui_text_fit(const char *s, size_t n, int col);
/* Byte offset in S of the character that starts at or after column COL. */
size_t ui_text_col_to_byte(const char *s, size_t n, int col);
/* Formats N with thousands separators ("3,544") into BUF; returns BUF. */
char *ui_text_count(char *buf, size_t n, long long v);
/* Base64 of S[0..N) (RFC 4648, padded); a new string, NULL if out of memory. */
char *ui_text_base64(const char *s, size_t n);
/* Whether S holds nothing but spaces, tabs and newlines. */
int ui_text_blank(const char *s);

/* --- the input history's file (ui-history.c) --- */

/* Writes the N ENTRIES to PATH in natter's format (an entry a line, line
 * breaks escaped), under a temporary name renamed over the old file.
 * Returns 0, or -1 with ERR (the old file left as it was). */
int ui_history_save(const char *path, const char *const *entries, int n, char *err, size_t errlen);
/* Reads PATH, calling ADD for each entry in order.  Returns 1 when PATH
 * is in natter's format, 0 when it is not (readline's format, or empty)
 * or does not exist, and -1 with ERR when it cannot be read. */
int ui_history_load(const char *path, void (*add)(const char *entry, void *arg), void *arg, char *err,
    size_t errlen);

/* --- theme (ui-theme.c) --- */

enum ui_elem {
	UE_NORMAL, UE_BORDER, UE_TITLE, UE_USER, UE_ASSISTANT, UE_SYSTEM, UE_NOTICE, UE_ERROR,
	UE_FOOTER, UE_KEY, UE_SELECTED, UE_BAR, UE_BAR_EMPTY, UE_DIM, UE_INPUT, UE_CODE, UE_REASONING, UE_COUNT
};

/* Loads NAME (a theme name or a file) and sets up colour pairs; falls back
 * to attributes only without colours or with NO_COLOR.  Call after initscr.
 * Returns 0, or -1 with ERR set (the built-in default is then in force). */
int ui_theme_load(const char *name, char *err, size_t errlen);
/* The curses attributes of an element. */
int ui_theme_attr(enum ui_elem e);
extern const char *const ui_elem_names[UE_COUNT];

/* --- generation thread (ui-gen.c) --- */

/* What the generation thread has reported so far (a snapshot). */
struct ui_gen_status {
	int pieces;               /* pieces of text produced */
	int n_gen, n_reasoning;   /* tokens generated, and of them the reasoning's */
	int prompt_done;          /* prompt tokens evaluated so far */
	int prompt_total;         /* prompt tokens to evaluate (0: not known yet) */
	double prompt_t0;         /* when the prompt started (seconds, monotonic) */
	double prompt_t;          /* when prompt_done was last reported */
	int ctx_used;             /* tokens in the KV cache at the last report */
	int done;                 /* the generation has ended: call ui_gen_finish */
};

struct ui_gen;
struct chatcmd_variant;
/* Starts generating (or regenerating, REGEN) on its own thread; every
 * report is announced by a byte written to WAKE_FD.  The session C belongs
 * to that thread until ui_gen_finish: the UI thread may then only call
 * chat_cancel, chat_set_params, chat_set_param_str, chat_get_params,
 * chat_max_tokens and chat_ctx_size on it.  UI thread.  Returns NULL if
 * no thread could be started (C untouched). */
struct ui_gen *ui_gen_start(struct chat *c, int regen, int wake_fd);
/* The same for reply B of an A/B comparison: chat_regenerate_with under V (copied). */
struct ui_gen *ui_gen_start_with(struct chat *c, const struct chatcmd_variant *v, int wake_fd);
/* A growable, NUL-terminated text. */
struct ui_buf {
	char *p;
	size_t len, cap;
};
/* Moves the answer and the reasoning produced since the last call onto
 * the ends of ANSWER and REASONING, fills ST, and copies a pending notice
 * into NOTICE (empty if none).  UI thread.  Returns -1 if out of memory
 * (the text stays queued), else 0. */
int ui_gen_take(struct ui_gen *g, struct ui_buf *answer, struct ui_buf *reasoning, struct ui_gen_status *st,
		char *notice, size_t nlen);
/* After ST.done: joins the thread, frees G, and returns chat_generate's
 * result with its statistics and error.  UI thread. */
int ui_gen_finish(struct ui_gen *g, struct chat_stats *st, char *err, size_t errlen);

/* --- the screen model (ui-screen.c): no curses --- */

enum ui_focus { UI_F_INPUT, UI_F_CONV, UI_F_PARAMS, UI_F_COUNT };
enum ui_mode { UI_IM_MESSAGE, UI_IM_COMMENT, UI_IM_SYSTEM, UI_IM_EDIT };
/* Notices kept for /notices. */
#define UI_NOTES 32

enum ui_box { UI_BOX_NONE, UI_BOX_HELP, UI_BOX_HISTORY, UI_BOX_PARAMS, UI_BOX_STATS, UI_BOX_AB, UI_BOX_NOTICES };

/* Key handlers return these bits (as htop's panes do). */
enum { UI_KH_HANDLED = 1, UI_KH_REDRAW = 2, UI_KH_QUIT = 4 };

struct ui_msg {
	int idx;                  /* the session's message index (-1: the reply being written) */
	int alt, nalt;            /* alternative shown (0-based) and how many there are */
	int chosen;               /* the session's chosen alternative, as of the last sync */
	char *role;
	char *clean;              /* sanitized for display */
	struct ui_line *lines;
	int nlines, wrap_w;
	/* A reasoning model's reasoning, shown before the answer: folded to
	 * one line unless UNFOLD. */
	char *rclean;             /* sanitized; NULL: the message has none */
	struct ui_line *rlines;
	int nrlines, rwrap_w;
	int rtokens;              /* its tokens (0: not known) */
	int unfold;
};

struct ui_rect {
	int y, x, h, w;           /* h or w 0: hidden */
};

/* Where each part is, for the current terminal size (ui_screen_layout). */
struct ui_layout {
	int rows, cols;
	struct ui_rect conv, params, stats, input, footer;
	int notice_y;             /* -1: nowhere to show a notice */
};

struct ui_opts;

struct ui {
	struct ui_opts *o;
	struct llm_model *m;
	struct chat *c;
	struct chatlog log;
	char model_file[128];     /* the file's name */
	char model_kind[64];      /* architecture and type, e.g. "llama Q4_K_M" */

	struct ui_msg *msgs;
	int nmsgs, capmsgs;

	/* The reply being written (gen != NULL while it is). */
	struct ui_gen *gen;
	struct ui_buf answer, reasoning;
	int regen;
	double t_start, t_first;
	struct ui_gen_status gs;  /* the last report of the generation thread */
	struct chat_stats stats;  /* the last finished reply's */
	int have_stats;
	const char *state;

	struct ui_layout lay;
	enum ui_focus focus;
	int follow, top;          /* conversation scroll */
	int sel;                  /* the message chosen in the conversation focus (-1: none) */
	int sel_show;             /* scroll so that the chosen message shows (next draw) */
	int edit_idx;             /* the session's message being edited (UI_IM_EDIT) */
	int param_sel;
	char notice[256];
	int notice_err;
	double notice_t;
	/* The last UI_NOTES notices, a ring (n_notes of them given in all):
	 * the line shows only the newest, /notices every one kept. */
	struct ui_note {
		char text[256];
		int err;
		time_t at;
	} notes[UI_NOTES];
	int n_notes;
	/* The notice a wait for a locked history replaced (ui-main.c),
	 * back when the wait is over and its notice still shows. */
	char wait_prev[256];
	int wait_prev_err, waiting;
	double wait_prev_t;
	enum ui_box box;
	int box_top;              /* first line shown of a scrolled box */
	int box_rows, box_vis;    /* its lines, and how many show (at the last draw) */
	int nhist, hist_sel;
	struct store_conv_info hist[64];
	enum ui_mode mode;
	char last_rating_word[8];  /* what c comments on */
	int64_t last_rating_gen;  /* the generation that rating is on */
	char *pending;            /* text to put back into readline after a line (owned) */
	char *draft;              /* what was typed before a mode or a command took the line (owned) */
	char *stashed;            /* what that mode or command put in the line (owned) */
	char *unsent;             /* the last message sent (owned): back to the input if refused */
	int wake[2];
	double ctrlc_t;
	int quit;
	int exit_status;
	char rl_hist_path[4096];
	char *rl_hist_err;        /* why the input history could not be read: it is not written over (owned) */
	/* A/B comparisons (ui-ab.c); u->log.ab says which replies. */
	int ab_view;              /* the two replies are shown over the conversation */
	int ab_top;               /* the view's first line */
	int ab_sel, ab_n;         /* the chooser (UI_BOX_AB): its line, and how many */
	char ab_spec[8][32];      /* each line's setting, as /ab reads it */
	char ab_what[8][80];      /* and for people */
	char *ab_a;               /* reply A's text, copied when B starts (owned) */
};

/* Seconds on a monotonic clock. */
double ui_screen_now(void);
/* Shows a one-line notice (IS_ERR: as an error) above the input line. */
void ui_screen_notify(struct ui *u, int is_err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Whether the last notice is still shown (for 8 s after it was given). */
int ui_screen_notice_live(const struct ui *u);
/* Appends a message as shown (TEXT copied and sanitized); NULL if out of memory. */
struct ui_msg *ui_screen_push(struct ui *u, const char *role, const char *text);
/* Replaces a shown message's text. */
void ui_screen_set(struct ui_msg *m, const char *text, size_t len);
/* Replaces a shown message's reasoning (TEXT NULL: it has none) and its
 * token count (0: not known); the fold stays as it was. */
void ui_screen_set_reasoning(struct ui_msg *m, const char *text, size_t len, int tokens);
/* Display lines of message M below its header (after ui_screen_conv_lines
 * wrapped it): the reasoning's (one when folded) and the text's. */
int ui_screen_msg_lines(const struct ui_msg *m);
/* Removes the last shown message. */
void ui_screen_pop(struct ui *u);
/* Forgets every shown message. */
void ui_screen_clear(struct ui *u);
/* Computes where the panes go on a ROWS x COLS screen with an input line
 * of INPUT_H rows; a pane that does not fit gets an empty rectangle. */
void ui_screen_layout(struct ui *u, int rows, int cols, int input_h);
/* Whether focus F can be taken in the current layout. */
int ui_screen_focusable(const struct ui *u, enum ui_focus f);
/* Moves the focus by DIR (+1, -1) to the next pane that is shown. */
void ui_screen_focus_next(struct ui *u, int dir);
/* The conversation's height in display lines at the current width. */
int ui_screen_conv_lines(struct ui *u, int text_w);

/* --- actions (ui-conv.c) --- */

/* Sends TEXT as the user's message and starts the reply.  -1: not sent
 * (a reply is running, or no memory for it): the caller keeps TEXT. */
int ui_conv_send(struct ui *u, const char *text);
/* Starts generating: REGEN replaces the last reply with a new alternative. */
void ui_conv_start(struct ui *u, int regen);
/* Starts reply B of an A/B comparison (a new alternative under V). */
void ui_conv_start_with(struct ui *u, const struct chatcmd_variant *v);
/* Takes what the generation thread reported; finishes it when it ended.
 * Returns UI_KH_REDRAW if anything changed. */
int ui_conv_poll(struct ui *u);
/* Ends the reply: after ui_gen_take reported done. */
void ui_conv_finish(struct ui *u);
/* Stops the running reply (it is kept, marked cancelled). */
void ui_conv_stop(struct ui *u);
/* Whether a reply is being generated; if so and WHAT is not NULL, tells the
 * user that WHAT has to wait. */
int ui_conv_busy(struct ui *u, const char *what);
/* A new, empty conversation.  Refused while a reply streams.  An edit, a
 * comment or the system prompt editor in progress ends; its text stays in
 * the input line (as ui_conv_resume does). */
void ui_conv_new(struct ui *u);
/* Opens the list of past conversations.  Refused while a reply streams. */
void ui_conv_history(struct ui *u);
/* Shows the session's conversation as it is (not while a reply runs). */
void ui_conv_sync(struct ui *u);
/* Resumes stored conversation CONV.  Refused while a reply streams. */
void ui_conv_resume(struct ui *u, int64_t conv);
/* Sets the system prompt (TEXT NULL or "" removes it).  Refused while a reply streams. */
void ui_conv_system(struct ui *u, const char *text);
/* Rates the reply chosen in the conversation focus, as shown (its
 * alternative on screen): WORD up, down or 1..5.  Refused while a reply
 * is being generated.  Returns 0, or -1 (told in a notice). */
int ui_conv_rate(struct ui *u, const char *word);
/* Adds COMMENT to the last rating ui_conv_rate made, on the generation it
 * rated.  Returns 0, or -1 (told in a notice). */
int ui_conv_comment(struct ui *u, const char *comment);
/* Copies the last reply to the terminal's clipboard (OSC 52). */
void ui_conv_copy(struct ui *u);
/* Moves the chosen message of the conversation focus by DIR (-1, +1). */
void ui_conv_select(struct ui *u, int dir);
/* Shows the chosen reply's previous (DIR -1) or next (+1) alternative. */
void ui_conv_flip(struct ui *u, int dir);
/* Makes the alternative shown the chosen reply (stored as chosen). */
void ui_conv_pick(struct ui *u);
/* Unfolds the reasoning of the chosen message in the conversation focus,
 * else of the last reply that has one, or folds it again. */
void ui_conv_fold(struct ui *u);
/* Starts editing the chosen user message in the input line. */
void ui_conv_edit_begin(struct ui *u);
/* Replaces the message being edited with TEXT: the conversation branches
 * there (both branches stay in the history) and the reply is generated.
 * Returns 0, or -1 when the session refused the edit (told in a notice;
 * nothing changed). */
int ui_conv_edit(struct ui *u, const char *text);

/* --- drawing (ui-draw.c) --- */

/* Draws the whole screen from the model and puts the cursor where it belongs. */
void ui_draw(struct ui *u);
/* Writes S (put_n: S[0..N)) at (Y, X), clipped to MAXW columns and the screen; fills W
 * columns with spaces.  For the views drawn outside ui-draw.c. */
void ui_draw_put(int y, int x, int maxw, const char *s, int attr);
void ui_draw_put_n(int y, int x, int maxw, const char *s, size_t n, int attr);
void ui_draw_fill(int y, int x, int w, int attr);
/* The loading screen: NAME and a bar at FRAC (0..1). */
void ui_draw_loading(const char *name, double frac);

/* --- the parameters pane's rows (ui-params.c) --- */

/* The pane's rows: the parameters (the system prompt last), then one per
 * LoRA adapter. */
int ui_param_rows(struct ui *u);
/* The name of row I ("temp", "lora taught"), into BUF. */
void ui_param_name(struct ui *u, int i, char *buf, size_t n);
/* The text of row I (its current value; "(not sent)" after one a remote
 * server is not sent). */
void ui_param_text(struct ui *u, int i, char *buf, size_t n);
/* Left/Right on row I: DIR is -1 or +1.  Set at once, and said. */
void ui_param_step(struct ui *u, int i, int dir);
/* Enter on row I: "/set NAME " or "/lora N " in the input line, or the
 * system prompt editor (between replies); what was typed is stashed. */
void ui_param_enter(struct ui *u, int i);

/* --- A/B comparisons (ui-ab.c) --- */

/* Opens the chooser of B's setting (refused while a reply runs or before one). */
void ui_ab_choose(struct ui *u);
/* Starts B under V and shows the two replies (the /ab hook). */
void ui_ab_start(struct ui *u, const struct chatcmd_variant *v);
/* Closes the view, saying so, before another reply starts, and ends the
 * comparison with no pick: a reply made after B (another to the same
 * message, or one to a new message) ends it, as in chat --plain (chatlog),
 * and so does one that fails to start. */
void ui_ab_leave(struct ui *u);
/* Keys of the chooser and of the view; 0 when KEY is not theirs. */
int ui_ab_key(struct ui *u, int is_key, unsigned ch);
/* Draws the view over the conversation pane and the chooser box. */
void ui_ab_draw(struct ui *u);

/* --- keys (ui-keys.c) --- */

/* Key codes of our own (above curses' KEY_MAX) for the paste brackets. */
enum { UI_KEY_PASTE_BEGIN = 0x1001, UI_KEY_PASTE_END = 0x1002 };

/* Handles one key (IS_KEY: a curses KEY_ code, else a character).
 * Returns UI_KH_* bits. */
int ui_keys_handle(struct ui *u, int is_key, unsigned ch);
/* Ctrl-C (or SIGINT): stops the reply; on an idle screen, twice quits. */
int ui_keys_stop_or_quit(struct ui *u);

/* --- input (ui-input.c) --- */

/* Sets up readline for the input line (callback mode, no terminal of its own). */
void ui_input_setup(struct ui *u);
/* Saves the input history and removes readline's handler. */
void ui_input_teardown(struct ui *u);
/* Reads every pending key and paste.  Returns UI_KH_* bits. */
int ui_input_read(struct ui *u);
/* Feeds a key (a KEY_ code) or a character to readline. */
void ui_input_key(struct ui *u, int key);
void ui_input_char(struct ui *u, unsigned ch);
/* Replaces the input line with TEXT, cursor at the end. */
void ui_input_set(struct ui *u, const char *text);
/* As ui_input_set, for an edit, a comment, the system prompt or a command
 * put into the line for the user: what the user had typed is kept aside
 * (the first time) for ui_input_restore; what was typed over a line a
 * stash put there goes to the input history, and 1 is returned (a
 * notice says so; a caller that notifies after says it too). */
int ui_input_stash(struct ui *u, const char *text);
/* Puts back what ui_input_stash kept aside (else empties the line): when
 * the mode is cancelled (Esc).  Between lines only; after a line, on_line
 * puts the draft back itself. */
void ui_input_restore(struct ui *u);
/* The same for Esc: what the user typed over the mode's line goes to the
 * input history first.  Returns 1 when it did. */
int ui_input_cancel(struct ui *u);
/* The input line as it is now (borrowed; "" if none). */
const char *ui_input_text(void);
/* The cursor's byte offset in the input line. */
int ui_input_point(void);

/* --- typed commands (ui-cmd.c) --- */

struct chatcmd_ops;
struct chatcmd_env;
/* Runs a line starting with '/' (modified).  Returns UI_KH_* bits;
 * *FAILED: the command was unknown, refused or failed (said). */
int ui_cmd_run(struct ui *u, char *line, int *failed);
/* This front end's hooks for the shared command table. */
const struct chatcmd_ops *ui_cmd_ops(void);
/* Fills E to act on U's session and history. */
void ui_cmd_env(struct ui *u, struct chatcmd_env *e);

/* --- the terminal (ui-tty.c) --- */

/* Whether stdin and stdout are a terminal natter can drive; if not, fills
 * ERR with what to do instead.  Before anything else is opened. */
int ui_tty_check(char *err, size_t errlen);
/* Takes the terminal: curses, raw keys, bracketed paste, mouse wheel; saves
 * what ui_tty_restore needs.  Returns 0, or -1 with ERR set. */
int ui_tty_open(char *err, size_t errlen);
/* Gives the terminal back as it was. */
void ui_tty_close(void);
/* Puts the terminal back from a signal handler: only tcsetattr and write(2)
 * of what ui_tty_open saved.  Async-signal-safe. */
void ui_tty_restore(void);
/* Sends TEXT to the terminal's clipboard (OSC 52).  Returns 0 or -1. */
int ui_tty_clipboard(const char *text, size_t len);

/* --- signals (ui-signals.c) --- */

/* Installs the handlers: SIGTERM, SIGHUP and SIGINT set a flag and write to
 * WAKE_FD; crashes restore the terminal (ui_tty_restore) and die as they
 * would have. */
void ui_signals_install(int wake_fd);
/* Takes the pending signal (0: none). */
int ui_signals_take(void);
/* Puts the default handlers back. */
void ui_signals_remove(void);

/* --- start-up (ui-start.c) --- */

/* The single .gguf in the models folder (caller frees), or NULL. */
char *ui_start_default_model(void);
/* Tells the user how to get a model and lists the models folder (stderr). */
void ui_start_list_models(void);
/* Pages the model's weights in, drawing a progress bar. */
void ui_start_warm(struct ui *u);

#endif
