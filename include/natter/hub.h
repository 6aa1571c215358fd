/* hub.h -- the Hugging Face hub: listing a repository's files, downloading one with resume and checksum. */
#ifndef NATTER_HUB_H
#define NATTER_HUB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* A file of a repository, from the tree listing. */
struct hub_file {
	char *path;              /* in the repository, e.g. "Qwen3-0.6B-Q8_0.gguf" or "Q8_0/x.gguf" */
	int64_t size;            /* bytes, -1 when unknown */
	char sha256[65];         /* the LFS object id (the content's SHA-256); "" when not in LFS */
	int unlisted;            /* no file list said what it is (size and SHA-256 unknown) */
};

/* Progress of a download: DONE of TOTAL bytes (-1 unknown); the run began
 * with RESUMED bytes already on disk. */
typedef void (*hub_progress_fn)(void *ctx, int64_t done, int64_t total, int64_t resumed);
/* A line for the user ("resuming at ...", "retrying ..."). */
typedef void (*hub_notice_fn)(void *ctx, const char *msg);

struct hub_opts {
	const char *endpoint;        /* default https://huggingface.co ($HF_ENDPOINT) */
	const char *token;           /* $HF_TOKEN or NULL: sent to the endpoint's origin only, never printed */
	const char *revision;        /* default "main" */
	int retries;                 /* attempts after a broken connection (default 3) */
	hub_progress_fn progress;    /* called at most ~10 times a second, and at the end */
	hub_notice_fn notice;
	void *ctx;                   /* for both callbacks */
	const atomic_int *cancel;    /* may be NULL */
};

/* Errors (negative returns); ERR always says what happened. */
enum {
	HUB_ERR = -1,        /* anything else (bad reply, I/O error) */
	HUB_EAUTH = -2,      /* 401/403: no token, a refused token, a gated model */
	HUB_ENOTFOUND = -3,  /* no such repository, revision or file */
	HUB_ESPACE = -4,     /* not enough free space (checked before, or ENOSPC while writing) */
	HUB_EVERIFY = -5,    /* SHA-256 or size mismatch: the download was removed */
	HUB_ECANCEL = -6,    /* interrupted: the partial file is kept for resuming */
	HUB_ENET = -7,       /* the connection failed or kept breaking: the partial file is kept */
	HUB_EEXIST = -8,     /* a different file of that name is already there */
};

/* Defaults, then $HF_ENDPOINT and $HF_TOKEN. */
void hub_opts_from_env(struct hub_opts *o);

/* Checks "owner/name" (letters, digits, '-', '_', '.'; no "..").  Returns 0 or -1 with ERR. */
int hub_repo_check(const char *repo, char *err, size_t errlen);

/*
 * Lists REPO's files at the revision (GET ENDPOINT/api/models/REPO/tree/REV,
 * recursively, following Link: rel="next" pages).  *FILES (caller frees
 * with hub_files_free) gets *N entries.  Returns 0 or a HUB_E* value.
 */
int hub_list(const struct hub_opts *o, const char *repo, struct hub_file **files, int *n, char *err, size_t errlen);
void hub_files_free(struct hub_file *f, int n);

/* A model file natter can use: *.gguf, not a vision projector (mmproj). */
int hub_is_model(const char *path);
/* A multimodal (vision) projector by its name ("mmproj*.gguf"): a GGUF file
 * that goes with a model, not one natter loads.  Pure; any thread. */
int hub_is_projector(const char *path);
/* A part of a split GGUF ("-00001-of-00003.gguf"). */
int hub_is_split(const char *path);
/* The file `natter pull REPO` takes: the one model file whose name says
 * Q4_K_M (any case); -1 when there is none, -2 when several. */
int hub_pick(const struct hub_file *f, int n);

/*
 * Downloads F of REPO into DIR (created if needed) as DIR/basename:
 * resolves ENDPOINT/REPO/resolve/REV/PATH, following the hub's redirect
 * to its CDN (the token stays with the hub), writes to DIR/NAME.part
 * (resuming it with a Range request when it exists), refuses before
 * starting when the file system lacks the space, verifies the size and the
 * SHA-256 (the tree's lfs.oid and the resolve reply's X-Linked-Etag or
 * ETag), and renames the part to its name only when they match.  A broken
 * connection is resumed up to o->retries times.  DEST gets the final
 * path.  Returns 0 (also when the same file is already there), or a HUB_E*
 * value with ERR set.  One thread.
 */
int hub_download(const struct hub_opts *o, const char *repo, const struct hub_file *f, const char *dir,
		 char *dest, size_t destlen, char *err, size_t errlen);

/* $XDG_DATA_HOME/natter/models (default ~/.local/share/natter/models) into
 * BUF; NULL when neither variable is set.  Not created. */
char *hub_models_dir(char *buf, size_t n);

#endif
