/* store.h -- the SQLite store: conversations (a tree of messages), every generation with what produced it, ratings; export. */
#ifndef NATTER_STORE_H
#define NATTER_STORE_H

#include <stdint.h>
#include <stdio.h>

#include "natter/sampler.h"

struct store;

/* 3: messages form a tree (parent_id; each conversation has a current leaf);
 * each generation records its model, template, the messages and rendered
 * text it was fed, and how it ended; trigram full-text search.
 * 4: a generation's reasoning (and its tokens) apart from its answer.
 * 5: a model is a file (kind 'file', by SHA-256) or a model on a remote
 * server (kind 'remote', by endpoint and model id).
 * 6: the LoRA adapters of each generation; A/B preferences.
 * 10: the ids of conversations, messages, generations and preferences
 * are never given twice (AUTOINCREMENT), so an id a natter holds never
 * comes to name another's row. */
#define STORE_SCHEMA_VERSION 10

enum {
	STORE_READONLY = 1,      /* never write: reading works on a read-only file or folder; an older
				  * schema is upgraded in a private in-memory copy */
	STORE_MUST_EXIST = 2,    /* refuse, creating nothing, when there is no database at PATH */
};

/*
 * Opens (creating if needed, unless STORE_READONLY or STORE_MUST_EXIST)
 * the database at PATH: WAL journal, foreign keys, full sync, a busy
 * timeout, and forward migrations up to STORE_SCHEMA_VERSION (two natters
 * creating or upgrading one database at once both succeed).  A database
 * from a newer natter, a damaged file or one that is not a natter
 * database is refused with a message naming it, and left untouched; so is
 * a read-only one when opened for writing.  Returns 0, or -1 with ERR set.
 * One thread uses a store; open one per thread.
 */
int store_open(const char *path, unsigned flags, struct store **out, char *err, size_t errlen);
/* For tests: create or migrate only up to schema VERSION. */
int store_open_version(const char *path, int version, struct store **out, char *err, size_t errlen);
void store_close(struct store *s);
/* The last error message (borrowed). */
const char *store_errmsg(const struct store *s);
/*
 * A database another connection holds locked is waited for up to
 * STORE_BUSY_MS before a call fails ("stayed busy").  FN (NULL: none) is
 * called once per such wait, after STORE_WAIT_SAY_MS of it, while the
 * store keeps waiting: a front end says why it stalls.  On the store's
 * thread, inside the call that waits.
 */
#define STORE_BUSY_MS 10000
#define STORE_WAIT_SAY_MS 300
void store_on_wait(struct store *s, void (*fn)(void *ctx), void *ctx);
/*
 * Said before a database written by an older natter is upgraded (once,
 * in one transaction per schema version; a large history takes a while;
 * for STORE_READONLY, a copy in memory, on every such open): FN gets a
 * sentence naming the file and the two schema versions.  Not for a new
 * database.  Process-wide; set once before any store is opened (natter's
 * main says it on standard error, before the screen starts).  NULL:
 * nothing is said.
 */
void store_on_upgrade(void (*fn)(void *ctx, const char *msg), void *ctx);
int store_schema_version(struct store *s);

/* $NATTER_DB, else $XDG_DATA_HOME/natter/natter.db (default
 * ~/.local/share/natter), creating the folder.  Returns BUF, or NULL with
 * ERR saying why for people (no HOME, a folder that cannot be made). */
char *store_default_path(char *buf, size_t n, char *err, size_t errlen);
/* The same path; the folder is created only when CREATE is nonzero. */
char *store_default_path_ex(char *buf, size_t n, int create, char *err, size_t errlen);

/* Records a model file (by SHA-256, cached by path, size and the file's
 * identity and times) and returns its id in *ID. */
int store_model(struct store *s, const char *path, const char *arch, const char *type_name, int64_t *id);
/* The same, with the file's SHA-256 kept by the caller across calls in
 * HEX (65 bytes): "" the first time, filled once computed, even when the
 * write then failed, so that trying again does not hash the file again.
 * The caller makes sure the file is still the one hashed. */
int store_model_keep(struct store *s, const char *path, const char *arch, const char *type_name, char *hex,
		     int64_t *id);
/* Records a model served by a remote OpenAI-compatible server: ENDPOINT
 * (its base URL, e.g. "http://127.0.0.1:8000/v1", without credentials)
 * and MODEL (the id asked for), and returns its id in *ID; the same pair
 * gets the same row.  The row's sha256 is the SHA-256 of "remote\n" +
 * ENDPOINT + "\n" + MODEL + "\n" (its identity: what weights the server
 * runs is unknown here); the history names it "MODEL @ ENDPOINT". */
int store_model_remote(struct store *s, const char *endpoint, const char *model, int64_t *id);

/* A new conversation.  MODEL_ID (0: none) is the model it was started
 * with; CHAT_TEMPLATE and SYSTEM_PROMPT describe its start (each
 * generation records its own). */
int store_conv_new(struct store *s, int64_t model_id, const char *title, const char *chat_template,
		   const char *system_prompt, int64_t *id);
/* The system prompt the conversation's next replies get (earlier replies
 * keep the one they were given, recorded with each generation). */
int store_conv_set_system(struct store *s, int64_t conv_id, const char *system_prompt);
/* Appends a message to the conversation's active branch (a child of its
 * current leaf, then the new leaf); committed before returning.  *ID gets
 * its id. */
int store_msg_add(struct store *s, int64_t conv_id, const char *role, const char *content, int64_t *id);
/* The same, as a child of PARENT (a message of CONV_ID; 0: none, the
 * conversation's first; -1: the current leaf, as store_msg_add).  A
 * session names the message its new one follows: another natter writing
 * to the same conversation meanwhile moved the leaf to its own. */
int store_msg_add_after(struct store *s, int64_t conv_id, int64_t parent, const char *role, const char *content,
			int64_t *id);

/* How a generation ended.  store_end_name gives the word stored and
 * exported ("finished", "stop-string", "finished-or-stop-string", "stopped",
 * "context", "max-tokens", "error"); store_end_complete tells whether the reply is whole (it ended
 * by itself or at a stop string) and so may be a training target. */
enum store_end {
	STORE_END_UNKNOWN,       /* recorded before schema 3 without a reason */
	STORE_END_FINISHED,      /* the model ended its turn */
	STORE_END_STOP_STRING,   /* a stop string the user set appeared; the reply is the text before it */
	STORE_END_STOPPED,       /* the user stopped it */
	STORE_END_CONTEXT,       /* cut: the context was full */
	STORE_END_MAX_TOKENS,    /* cut: the reply reached max_tokens */
	STORE_END_ERROR,         /* cut by an error */
	STORE_END_FINISHED_OR_STOP_STRING,   /* FINISHED or STOP_STRING: a remote server, sent stop
					      * strings, said "stop" and not which (since schema 10) */
};
const char *store_end_name(enum store_end e);
int store_end_complete(enum store_end e);
/* Parses a stored word; STORE_END_UNKNOWN when it is none of them. */
enum store_end store_end_parse(const char *word);

/* One message as fed to the model. */
struct store_turn {
	const char *role;          /* "system", "user" or "assistant" */
	const char *content;
};

/* A LoRA adapter a generation was made with. */
struct store_adapter {
	const char *sha256;            /* of the adapter file, 64 hex digits */
	const char *file_name;         /* its base name */
	double scale;                  /* the user's scale (never 0: an adapter at 0 is off, not recorded) */
};

/* One generation of an assistant message, with everything it was produced under. */
struct store_gen {
	const char *content;           /* the answer (the message reads as it) */
	const char *reasoning;         /* what the model reasoned before it (<think>...); NULL: none */
	int n_reasoning;               /* the reasoning's tokens (of n_gen); 0: not known (NULL) */
	enum store_end end;
	int64_t model_id;              /* the model (store_model, store_model_remote); 0: unknown */
	int64_t parent;                /* a new assistant message's parent (store_gen_add's MSG_ID 0);
					* 0: the conversation's current leaf */
	const char *template_name;     /* e.g. "model", "chatml (built-in)", a file name */
	const char *template_source;   /* the template's text (stored once per distinct text, by SHA-256) */
	const struct store_turn *fed;  /* the messages fed, in order, the system prompt of the time first, */
	int n_fed;                     /* after any oldest-turn dropping */
	const char *prompt_text;       /* the rendered prompt exactly as fed */
	int prompt_tokens;             /* its length in tokens; -1: not known (NULL) */
	int n_dropped;                 /* earlier messages left out to fit the context */
	double temp, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty;
	int top_k, penalty_last_n, max_tokens;
	unsigned unknown;              /* SP_ bits (sampler.h) of those settings that were not one known
					* value (changed while the reply was written, not sent to a
					* server): stored as NULL */
	uint64_t seed;                 /* the seed actually used */
	int n_prompt, n_reused, n_gen;   /* -1: not known, stored as NULL (a server that counted none) */
	int n_ctx_used, n_ctx;         /* n_ctx 0: unknown (both stored as NULL) */
	double prompt_tps, gen_tps, ttft_ms;
	const struct store_adapter *adapters;   /* in the order applied; none: the base model alone */
	int n_adapters;
	const char *kv_type;           /* the KV cache's type ("f16" ...); NULL: not known (a remote model) */
	int exact_act;                 /* exact activations (--exact-act); stored only with kv_type */
	const char *const *stop;       /* the stop strings it was made with beyond its template's end of */
	int n_stop;                    /* turn (--stop, a request's "stop"); -1: not known (stored NULL) */
	const char *think;             /* the think switch (enable_thinking) the prompt was rendered with:
					* "true", "false", "default" (left undefined); NULL: the template
					* does not read it, nor a server get it (stored NULL, as
					* before schema 9) */
};

/* Adds a generation.  MSG_ID 0 creates the assistant message in CONV_ID
 * (on its active branch); otherwise it is another alternative of MSG_ID.
 * The new generation becomes the chosen one.  *GEN_ID and *MSG_ID_OUT get
 * the ids.  Strings are copied; invalid UTF-8 is stored as given. */
int store_gen_add(struct store *s, int64_t conv_id, int64_t msg_id, const struct store_gen *g,
		  int64_t *gen_id, int64_t *msg_id_out);

/*
 * Whether generation GEN_ID is recorded as made under what NOW describes
 * (a generation of its message made now, as chatlog_gen would fill it)
 * in all but its sampling settings and its adapters' scales, so that
 * another reply made now under settings that differ from its in one
 * differs from it in that one alone.  That is, it is recorded: as a
 * reply that was not stopped nor cut by an error; made by model
 * NOW->model_id; rendered by template NOW->template_source with system
 * prompt and messages NOW->fed (less as many of the oldest turns as it
 * left out); with stop strings NOW->stop, max_tokens NOW->max_tokens, KV
 * cache type and activations NOW->kv_type and NOW->exact_act (when NOW
 * has a cache type); in a context of NOW->n_ctx tokens (when NOW has
 * one); with think switch NOW->think (when NOW has one); with adapters each of which is one of
 * NOW->adapters, by SHA-256 (their scales in NOW are not read); and
 * with every sampling setting and its seed known (none NULL).  Returns
 * 0 with *SP the sampling settings it was made with, the seed it used
 * included, and SCALES (NOW->n_adapters of them) the scale each of
 * NOW's adapters had (0: off); 1 with WHY saying for people what
 * differs or was not recorded, as a phrase about the reply ("was made
 * with another model (x.gguf)", "has no record of its temp"); -1 with
 * store_errmsg (no generation GEN_ID, a database error).
 */
int store_gen_made(struct store *s, int64_t gen_id, const struct store_gen *now, struct sampler_params *sp,
		   float *scales, char *why, size_t whylen);

/* --- Alternatives: the generations (regenerations) of one assistant message. --- */

/* One alternative; its strings are borrowed for the callback's duration. */
struct store_alt {
	int64_t gen_id;
	int index;                 /* 0.. in the order they were made */
	int chosen;                /* the one the conversation continues from */
	const char *content;
	const char *reasoning;     /* NULL: none (or recorded before schema 4) */
	int n_reasoning;           /* its tokens; 0: not known */
	enum store_end end;
	const char *model;         /* the model's file name, or "MODEL @ ENDPOINT" ("" when unknown) */
	uint64_t seed;
	const char *rating;        /* "up", "down", "1".."5", or "" when unrated */
	int64_t created;
};
/* Calls FN for each alternative of assistant message MSG_ID, oldest first;
 * a nonzero return stops the walk.  Returns 0, or -1 (no such message). */
typedef int (*store_alt_fn)(void *ctx, const struct store_alt *a);
int store_alt_list(struct store *s, int64_t msg_id, store_alt_fn fn, void *ctx);
/* Marks GEN_ID as its message's chosen (preferred) reply: the message
 * reads as it from now on (history, resuming, the next prompts).  What
 * earlier generations were fed is not changed. */
int store_alt_choose(struct store *s, int64_t gen_id);

/* --- Preferences: A/B comparisons of two generations of one message. --- */

/* Which of the two was better.  store_pick_name gives the word stored ("a",
 * "b", "tie"); store_pick_parse reads one (0, or -1 when it is none). */
enum store_pick { STORE_PICK_A, STORE_PICK_B, STORE_PICK_TIE };
const char *store_pick_name(enum store_pick p);
int store_pick_parse(const char *word, enum store_pick *p);
/* Records that the user compared generations GEN_A and GEN_B (two
 * alternatives of one assistant message) and picked PICK; SETTING says
 * for people what B changed ("adapter off", "temp 1.1").  A preference
 * for A or B makes a DPO pair in the export; a tie makes none.  Ratings
 * are not touched.  Refused (-1, store_errmsg says why) unless both were
 * made by one model through one template from one recorded prompt: the
 * same messages and (a model run here) the same text rendered, the rule
 * the export's DPO pairs follow.  *ID (may be NULL) gets the row's id. */
int store_pref_add(struct store *s, int64_t gen_a, int64_t gen_b, enum store_pick pick, const char *setting,
		   int64_t *id);

/* --- Branches: editing an earlier message. --- */

/* Adds a new version of message MSG_ID (normally a user message) with
 * CONTENT: a sibling in the tree (same parent), which becomes the
 * conversation's leaf, so the conversation continues from it.  The old
 * version and everything after it stay, on their own branch.  *NEW_ID
 * gets the new message's id. */
int store_msg_edit(struct store *s, int64_t msg_id, const char *content, int64_t *new_id);
/* The versions of the message at MSG_ID's place: itself and its siblings
 * of the same role, oldest first.  IDS gets up to MAX of them, *N how many
 * there are, *CUR the index of the one on the active branch (-1: none). */
int store_msg_versions(struct store *s, int64_t msg_id, int64_t *ids, int max, int *n, int *cur);
/* Takes back message MSG_ID, which nothing answers: a session withdrew it
 * (a server refused it as too long even alone).  The conversation's leaf
 * goes back to its parent; a conversation left with no message goes too
 * (*CONV_GONE, which may be NULL, says so).  A message with a child (a
 * reply) is refused.  Returns 0, or -1 with the error. */
int store_msg_withdraw(struct store *s, int64_t msg_id, int *conv_gone);
/* Makes the branch through MSG_ID the active one: the conversation's leaf
 * becomes the newest message below MSG_ID (MSG_ID itself when it has
 * none).  *LEAF (may be NULL) gets it. */
int store_branch_switch(struct store *s, int64_t msg_id, int64_t *leaf);

/* Rates a generation: KIND "thumb" (VALUE 1 up, 0 down) or "stars" (1..5).
 * A new rating replaces the previous one, its comment too: COMMENT (may be
 * NULL) replaces the old one; without one, the old comment stays only when
 * the rating is the same (rated again), never on another verdict. */
int store_rating_set(struct store *s, int64_t gen_id, const char *kind, int value, const char *comment);
/* Parses "up", "down" or "1".."5"; returns 0 or -1. */
int store_rating_parse(const char *word, const char **kind, int *value);

/* Recent conversations, newest first (for a chooser). */
struct store_conv_info {
	int64_t id;
	int64_t updated;
	int n_msgs;                /* messages on the active branch */
	char title[244];           /* a title is 60 characters: whole, as stored */
	char model[64];            /* the model it was started with */
	char models[160];          /* every model that replied in it, in order of first use, ", "-separated */
	int n_models;
};
int store_conv_recent(struct store *s, struct store_conv_info *out, int max, int *n);
/* Loads a conversation's active branch: *SYSTEM gets the system prompt
 * its next reply gets (caller frees, may be NULL); FN is called for each
 * message from the first to the leaf, with the id of the chosen
 * generation for assistant messages (0 otherwise); a nonzero return stops. */
typedef int (*store_msg_fn)(void *ctx, int64_t msg_id, const char *role, const char *content, int64_t chosen_gen);
int store_conv_load(struct store *s, int64_t conv_id, char **system, store_msg_fn fn, void *ctx);

/* History, printed to OUT (the CLI's history command).  show follows the
 * active branch and says where other versions exist; search matches
 * substrings (CJK too), case-insensitively for ASCII; a trailing '*' is
 * allowed (whisp* finds whisper). */
int store_history_list(struct store *s, FILE *out);
int store_history_show(struct store *s, int64_t conv_id, FILE *out);
int store_history_search(struct store *s, const char *query, FILE *out);
int store_conv_delete(struct store *s, int64_t conv_id);

/* --- Export of rated generations for fine-tuning tools. --- */

/* The formats, in the order of the table in export.c (name, writer, help
 * line) that the exporter, --help and the tests read and the man page
 * is checked against. */
enum store_format { STORE_SFT, STORE_DPO, STORE_KTO, STORE_OPENAI_SFT, STORE_OPENAI_DPO, STORE_N_FORMATS };
/* Its name as given to --format and its one-line description (static
 * strings); NULL for a value out of range. */
const char *store_format_name(enum store_format f);
const char *store_format_help(enum store_format f);
/* The format named NAME; -1 if there is none. */
int store_format_find(const char *name);

struct store_export_opts {
	enum store_format format;
	int min_rating;           /* 1..5; thumbs up counts 5, down 1; default 4 */
	const char *model;        /* the model that made the reply: a SHA-256 prefix, part of its file name
				   * (or remote model id, or endpoint), or "remote" / "file"; NULL: all */
	int64_t since;            /* unix time; 0: all */
	int include_incomplete;   /* also replies that were stopped or cut off as targets */
	int include_legacy;       /* also replies from before schema 3, whose prompt was not recorded:
				   * it is rebuilt from the stored conversation as it is now */
	int keep_reasoning;       /* a reply's reasoning stays in its content, between <think> and
				   * </think> before the answer; else the answer alone */
	const char *adapter;      /* SHA-256 prefix of an adapter the reply was made with, or "none": only
				   * replies made without any adapter; NULL: all */
};
struct store_export_counts {
	int lines;
	int skipped_incomplete;   /* rated replies left out: stopped or cut off */
	int skipped_legacy;       /* rated replies left out: what they were fed is unknown */
	int skipped_raw;          /* rated replies left out: fed a bare prompt, no chat turns (/v1/completions) */
	int skipped_damaged;      /* rated replies left out: their record of the prompt is not a list of messages */
};
/*
 * Writes JSON lines to PATH (through a temporary file renamed at the end;
 * NULL or "-" for standard output), following each conversation's active
 * branch.  A reply is its answer (its reasoning only with keep_reasoning;
 * a reply recorded before schema 4 is split as the session splits one).  Every prompt is the messages the model was actually fed for
 * that reply (its system prompt of the time, after any dropping); replies
 * that were stopped or cut off are not targets unless asked for; identical
 * replies never form a DPO pair; one reply text gets one KTO label (from
 * its latest rating).  COUNTS gets how many lines were written and what
 * was left out.  Errors name PATH.  Returns 0 or -1 with ERR set.
 */
int store_export(struct store *s, const struct store_export_opts *o, const char *path,
		 struct store_export_counts *counts, char *err, size_t errlen);

#endif
