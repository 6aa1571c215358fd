/* lora.h -- LoRA adapters in llama.cpp's GGUF adapter format: reading, validating, writing. */
#ifndef NATTER_LORA_H
#define NATTER_LORA_H

#include <stddef.h>

#include "natter/gguf.h"

/* The largest user's scale (--lora FILE:SCALE, /lora) and alpha an
 * adapter may have: far past any use, short of overflowing float. */
#define LORA_SCALE_MAX 1e6f
#define LORA_ALPHA_MAX 1e6

struct llm_model;
struct lora_adapter;   /* one adapter file, converted to float32 in memory */

/*
 * One adapted weight W (n_out rows of n_in, GGUF dims {n_in, n_out}):
 * y = W x + scale * B (A x).  A and B are row-major float32.
 */
struct lora_pair {
	const char *base;   /* the base weight's name, e.g. "blk.0.attn_q.weight" */
	int n_in, n_out;    /* of W */
	int rank;           /* r */
	const float *a;     /* (rank, n_in): GGUF X.lora_a, dims {n_in, r} */
	const float *b;     /* (n_out, rank): GGUF X.lora_b, dims {r, n_out} */
	float scale;        /* user_scale * alpha / rank; user_scale alone when alpha is 0 */
};

/* Computes the hex SHA-256 (64 digits and a NUL) of DATA[0..LEN).  The
 * inference core has no hash of its own: the caller passes one in
 * (src/store/sha256.c), so that llm does not depend on store. */
typedef void (*lora_digest_fn)(const void *data, size_t len, char hex[65]);

/*
 * Opens the adapter at PATH for the model BASE and checks it completely:
 * general.type "adapter", adapter.type "lora", the base's architecture,
 * every tensor a half of an X.lora_a / X.lora_b pair (tensors ending in
 * "_norm.weight" are skipped, as llama.cpp skips them) whose base X exists
 * in BASE with matching dims and whose halves agree on the rank.  Each
 * tensor is converted to float32 (any type natter reads: F32, F16, BF16,
 * the quantized ones); the file is closed before returning.  SCALE is the
 * user's scale (1 = as trained).  DIGEST, if not NULL, hashes the file's
 * bytes for lora_sha256().  Returns 0 with *OUT owned by the caller, or -1
 * with ERR naming the file and the tensor at fault.  BASE must outlive
 * nothing here (the adapter keeps no pointer to it).  A base model that the
 * adapter records and BASE is not is no error: lora_base_notice says so.
 * Any thread.
 */
int lora_open(const char *path, const struct llm_model *base, float scale, lora_digest_fn digest,
	      struct lora_adapter **out, char *err, size_t errlen);
/* The same against a base given as an open GGUF file and its architecture name. */
int lora_open_gguf(const char *path, const struct gguf_file *base, const char *base_arch, float scale,
		   lora_digest_fn digest, struct lora_adapter **out, char *err, size_t errlen);
/* lora_free(NULL) is a no-op. */
void lora_free(struct lora_adapter *a);

/* Adapted weights, in file order; the pointers live as long as A. */
int lora_count(const struct lora_adapter *a);
const struct lora_pair *lora_get(const struct lora_adapter *a, int i);
/* The pair adapting the base weight BASE_NAME, or NULL. */
const struct lora_pair *lora_find(const struct lora_adapter *a, const char *base_name);

/* Changes the user's scale; every pair's scale follows. */
void lora_set_scale(struct lora_adapter *a, float scale);
float lora_scale(const struct lora_adapter *a);
float lora_alpha(const struct lora_adapter *a);   /* 0: none in the file */
const char *lora_path(const struct lora_adapter *a);
const char *lora_name(const struct lora_adapter *a);   /* general.name, or "" */
const char *lora_arch(const struct lora_adapter *a);   /* general.architecture: the base model's */
/* Hex SHA-256 of the file as read, or "" when lora_open had no DIGEST. */
const char *lora_sha256(const struct lora_adapter *a);
/* Tensors ending in _norm.weight that were skipped. */
int lora_n_ignored(const struct lora_adapter *a);
/* The base model the adapter records it was trained on, as lora_write puts it
 * (general.base_model.0.name when general.base_model.count is 1, and
 * natter.base_model.file), or "" for what the file does not say: adapters
 * from other tools may record neither. */
const char *lora_base_name(const struct lora_adapter *a);
const char *lora_base_file(const struct lora_adapter *a);

/*
 * Whether A was trained on another model than the one it is applied to:
 * MODEL_NAME is that model's general.name (NULL or "" when it has none),
 * MODEL_PATH its file (NULL for none).  The names compare exactly and the
 * files by their names alone (a model moved to another folder is the same
 * model); what A does not record is not compared, so an adapter that
 * records no base gets no notice.  When they differ, writes into BUF (CAP bytes; 1024 hold any
 * notice whole) one line naming both, safe to show on a terminal, e.g.
 *   adapter x.gguf was trained on "Qwen2.5 0.5B Instruct" (qwen-instruct.gguf);
 *   this model is "Qwen2.5 0.5B" (qwen-base.gguf)
 * and returns 1; else writes "" and returns 0.  Loading goes on either way:
 * an adapter on a sibling model is sometimes meant, but its replies are not
 * those it was trained for, and the user must know.  Any thread.
 */
int lora_base_notice(const struct lora_adapter *a, const char *model_name, const char *model_path, char *buf,
		     size_t cap);
/* The same against model M (its general.name and file). */
int lora_model_notice(const struct lora_adapter *a, const struct llm_model *m, char *buf, size_t cap);

/* What lora_write puts in the metadata. */
struct lora_file_info {
	const char *arch;        /* general.architecture: the base model's */
	const char *name;        /* general.name, or NULL for none */
	float alpha;             /* adapter.lora.alpha (0: no alpha) */
	enum ggml_type type;     /* of the tensors: F32, F16 or BF16 */
	/* What produced it (each NULL for none): */
	const char *base_name;   /* general.base_model.0.name (general.base_model.count 1): the base's general.name */
	const char *base_file;   /* natter.base_model.file: the base model's file name */
	const char *config;      /* natter.training.config: the options it was trained with, one a line */
};

/*
 * Writes N pairs (their SCALE is not stored: alpha is) as an adapter file
 * that llama.cpp's --lora reads: metadata general.architecture,
 * general.type = "adapter", general.name, adapter.type = "lora",
 * adapter.lora.alpha, then what INFO says produced it (general.base_model.*,
 * natter.base_model.file, natter.training.config); tensors X.lora_a {n_in, r} and X.lora_b {r, n_out}
 * ordered by layer, then q, k, v, qkv, output, gate, up, down (others after
 * those of their layer, tensors outside blocks last).  Writes through a
 * temporary file renamed into place.  Returns 0, or -1 with ERR set (bad
 * pair, duplicate name, I/O error), or LORA_ERR_RANGE with ERR set when a
 * finite value is past the largest of INFO's F16 or BF16 (F32 holds it).
 * Any thread.
 */
#define LORA_ERR_RANGE (-2)
int lora_write(const char *path, const struct lora_file_info *info, const struct lora_pair *pairs, int n,
	       char *err, size_t errlen);

#endif
