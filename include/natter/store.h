/* store.h -- the SQLite store: conversations, messages, every generation, ratings; export. */
#ifndef NATTER_STORE_H
#define NATTER_STORE_H

#include <stdint.h>
#include <stdio.h>

struct store;

#define STORE_SCHEMA_VERSION 2

enum { STORE_READONLY = 1 };

/*
 * Opens (creating if needed) the database at PATH: WAL journal, foreign
 * keys, full sync, a busy timeout, and forward migrations up to
 * STORE_SCHEMA_VERSION.  A database from a newer natter, a damaged file or
 * one that is not a natter database is refused with a message naming it,
 * and left untouched.  Returns 0, or -1 with ERR set.  One thread uses a
 * store; open one per thread.
 */
int store_open(const char *path, unsigned flags, struct store **out, char *err, size_t errlen);
/* For tests: create or migrate only up to schema VERSION. */
int store_open_version(const char *path, int version, struct store **out, char *err, size_t errlen);
void store_close(struct store *s);
/* The last error message (borrowed). */
const char *store_errmsg(const struct store *s);
int store_schema_version(struct store *s);

/* $NATTER_DB, else $XDG_DATA_HOME/natter/natter.db (default
 * ~/.local/share/natter), creating the folder.  Returns BUF or NULL. */
char *store_default_path(char *buf, size_t n);

/* Records a model file (by SHA-256, cached by path, size and mtime) and
 * returns its id in *ID. */
int store_model(struct store *s, const char *path, const char *arch, const char *type_name, int64_t *id);

int store_conv_new(struct store *s, int64_t model_id, const char *title, const char *chat_template,
		   const char *system_prompt, int64_t *id);
int store_conv_set_system(struct store *s, int64_t conv_id, const char *system_prompt);
/* Appends a message (committed before returning).  *ID gets its id. */
int store_msg_add(struct store *s, int64_t conv_id, const char *role, const char *content, int64_t *id);

/* One generation of an assistant message, with what produced it. */
struct store_gen {
	const char *content;
	const char *state;        /* "complete", "cancelled" or "error" */
	const char *stop_reason;
	double temp, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty;
	int top_k, penalty_last_n, max_tokens;
	uint64_t seed;
	int n_prompt, n_reused, n_gen, n_ctx_used, n_ctx;
	double prompt_tps, gen_tps, ttft_ms;
};

/* Adds a generation.  MSG_ID 0 creates the assistant message in CONV_ID;
 * otherwise it is another alternative of MSG_ID.  The new generation
 * becomes the chosen one.  *GEN_ID and *MSG_ID_OUT get the ids. */
int store_gen_add(struct store *s, int64_t conv_id, int64_t msg_id, const struct store_gen *g,
		  int64_t *gen_id, int64_t *msg_id_out);

/* Rates a generation: KIND "thumb" (VALUE 1 up, 0 down) or "stars" (1..5).
 * A new rating replaces the previous one.  COMMENT may be NULL. */
int store_rating_set(struct store *s, int64_t gen_id, const char *kind, int value, const char *comment);
/* Parses "up", "down" or "1".."5"; returns 0 or -1. */
int store_rating_parse(const char *word, const char **kind, int *value);

/* Recent conversations, newest first (for a chooser). */
struct store_conv_info {
	int64_t id;
	int64_t updated;
	int n_msgs;
	char title[96];
	char model[64];
};
int store_conv_recent(struct store *s, struct store_conv_info *out, int max, int *n);
/* Loads a conversation: *SYSTEM gets its system prompt (caller frees, may
 * be NULL); FN is called for each message in order, with the id of the
 * chosen generation for assistant messages (0 otherwise). */
typedef int (*store_msg_fn)(void *ctx, int64_t msg_id, const char *role, const char *content, int64_t chosen_gen);
int store_conv_load(struct store *s, int64_t conv_id, char **system, store_msg_fn fn, void *ctx);

/* History, printed to OUT (the CLI's history command). */
int store_history_list(struct store *s, FILE *out);
int store_history_show(struct store *s, int64_t conv_id, FILE *out);
int store_history_search(struct store *s, const char *query, FILE *out);
int store_conv_delete(struct store *s, int64_t conv_id);

/* Export of rated generations for fine-tuning tools. */
enum store_format { STORE_SFT, STORE_DPO, STORE_KTO };
struct store_export_opts {
	enum store_format format;
	int min_rating;           /* 1..5; thumbs up counts 5, down 1; default 4 */
	const char *model;        /* SHA-256 prefix or file-name part; NULL: all */
	int64_t since;            /* unix time; 0: all */
};
/* Writes JSON lines to PATH (through a temporary file renamed at the end;
 * NULL or "-" for stdout).  *N_LINES gets the count.  Returns 0 or -1. */
int store_export(struct store *s, const struct store_export_opts *o, const char *path, int *n_lines,
		 char *err, size_t errlen);

#endif
