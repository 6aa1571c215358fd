/* gguf-write.h -- writing GGUF v3 files (mkmodel, tests). */
#ifndef NATTER_GGUF_WRITE_H
#define NATTER_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "natter/gguf.h"

struct gguf_writer;

/* Fills BUF (NBYTES) with the data of one tensor; returns 0 or -1. */
typedef int (*gguf_fill_fn)(void *ctx, void *buf, size_t nbytes);

/* The alignment of the tensor data in natter's own files (mkmodel's,
 * training checkpoints): a cache line, where the GGUF default (32) puts
 * the data 32 bytes into one about every other file, and a program that
 * maps the file reads it there (gguf.c's copy moves it).  Adapters keep
 * the default: byte for byte as llama.cpp's converter writes them. */
#define GGUF_WRITE_ALIGNMENT 64

/* ALIGNMENT 0 is the GGUF default; any other is written as
 * general.alignment, the first key, as the format requires. */
struct gguf_writer *gguf_writer_new(uint32_t alignment);
void gguf_writer_free(struct gguf_writer *w);

/* Metadata.  Values are copied.  Return 0, or -1 on allocation failure. */
int gguf_w_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_w_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_w_f32(struct gguf_writer *w, const char *key, float v);
int gguf_w_bool(struct gguf_writer *w, const char *key, int v);
int gguf_w_str(struct gguf_writer *w, const char *key, const char *v);
/* Any scalar type: VAL points to the value in its GGUF encoding (little-endian). */
int gguf_w_scalar(struct gguf_writer *w, const char *key, enum gguf_vtype t, const void *val);
/* Array of fixed-size elements (N of ETYPE) or of strings (STRS). */
int gguf_w_arr(struct gguf_writer *w, const char *key, enum gguf_vtype etype, const void *data, uint64_t n);
int gguf_w_arr_str(struct gguf_writer *w, const char *key, const char *const *strs, uint64_t n);

/* A tensor.  NE[0] is the row length.  Either DATA (borrowed until the write)
 * or FILL produces the bytes.  The byte size follows from TYPE and NE. */
int gguf_w_tensor(struct gguf_writer *w, const char *name, enum ggml_type type,
		  int n_dims, const uint64_t *ne, const void *data, gguf_fill_fn fill, void *ctx);

/* Writes to PATH through a temporary file renamed at the end.  Returns 0, or
 * -1 with ERR set (the temporary file is removed). */
int gguf_writer_write(struct gguf_writer *w, const char *path, char *err, size_t errlen);
/* Writes into a new buffer (caller frees *BUF). */
int gguf_writer_to_buffer(struct gguf_writer *w, uint8_t **buf, size_t *len);

#endif
