/* gguf.h -- read-only GGUF (v2/v3) model files over mmap. */
#ifndef NATTER_GGUF_H
#define NATTER_GGUF_H

#include <stddef.h>
#include <stdint.h>

/* Value types of GGUF metadata, as numbered by the format. */
enum gguf_vtype {
	GGUF_VT_UINT8 = 0,
	GGUF_VT_INT8 = 1,
	GGUF_VT_UINT16 = 2,
	GGUF_VT_INT16 = 3,
	GGUF_VT_UINT32 = 4,
	GGUF_VT_INT32 = 5,
	GGUF_VT_FLOAT32 = 6,
	GGUF_VT_BOOL = 7,
	GGUF_VT_STRING = 8,
	GGUF_VT_ARRAY = 9,
	GGUF_VT_UINT64 = 10,
	GGUF_VT_INT64 = 11,
	GGUF_VT_FLOAT64 = 12,
	GGUF_VT_COUNT
};

/* Tensor element types, numbered as ggml numbers them (the file stores them). */
enum ggml_type {
	GGML_TYPE_F32 = 0,
	GGML_TYPE_F16 = 1,
	GGML_TYPE_Q4_0 = 2,
	GGML_TYPE_Q4_1 = 3,
	GGML_TYPE_Q5_0 = 6,
	GGML_TYPE_Q5_1 = 7,
	GGML_TYPE_Q8_0 = 8,
	GGML_TYPE_Q8_1 = 9,
	GGML_TYPE_Q2_K = 10,
	GGML_TYPE_Q3_K = 11,
	GGML_TYPE_Q4_K = 12,
	GGML_TYPE_Q5_K = 13,
	GGML_TYPE_Q6_K = 14,
	GGML_TYPE_Q8_K = 15,
	GGML_TYPE_IQ2_XXS = 16,
	GGML_TYPE_IQ2_XS = 17,
	GGML_TYPE_IQ3_XXS = 18,
	GGML_TYPE_IQ1_S = 19,
	GGML_TYPE_IQ4_NL = 20,
	GGML_TYPE_IQ3_S = 21,
	GGML_TYPE_IQ2_S = 22,
	GGML_TYPE_IQ4_XS = 23,
	GGML_TYPE_I8 = 24,
	GGML_TYPE_I16 = 25,
	GGML_TYPE_I32 = 26,
	GGML_TYPE_I64 = 27,
	GGML_TYPE_F64 = 28,
	GGML_TYPE_IQ1_M = 29,
	GGML_TYPE_BF16 = 30,
	GGML_TYPE_TQ1_0 = 34,
	GGML_TYPE_TQ2_0 = 35,
	GGML_TYPE_MXFP4 = 39,
	GGML_TYPE_COUNT = 40
};

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* Error codes returned (negated) by gguf_open. */
enum {
	GGUF_OK = 0,
	GGUF_ERR_IO = 1,      /* open/stat/mmap failed */
	GGUF_ERR_FORMAT = 2,  /* the bytes are not a valid GGUF file */
	GGUF_ERR_NOMEM = 3,
};

/* A string inside the mapped file: not NUL-terminated. */
struct gguf_str {
	const char *ptr;
	uint64_t len;
};

/* One metadata value.  Scalars are decoded; arrays point into the map. */
struct gguf_value {
	enum gguf_vtype type;
	union {
		uint64_t u64;   /* every unsigned integer type and bool */
		int64_t i64;    /* every signed integer type */
		double f64;     /* FLOAT32 and FLOAT64 */
		struct gguf_str str;
		struct {
			enum gguf_vtype type;   /* element type (never ARRAY) */
			uint64_t n;             /* element count */
			const uint8_t *data;    /* first element, in the map */
		} arr;
	} v;
};

struct gguf_kv {
	struct gguf_str key;
	struct gguf_value val;
};

struct gguf_tensor {
	struct gguf_str name;
	uint32_t n_dims;
	uint64_t ne[GGUF_MAX_DIMS];   /* ne[0] is the innermost (row) length; unused dims are 1 */
	enum ggml_type type;
	uint64_t offset;              /* relative to the data section */
	uint64_t nbytes;
	const void *data;             /* into the map */
};

struct gguf_file {
	char *path;
	const uint8_t *map;
	size_t size;
	uint32_t version;
	uint64_t n_kv;
	struct gguf_kv *kv;           /* (n_kv) */
	uint64_t n_tensors;
	struct gguf_tensor *tensors;  /* (n_tensors) */
	uint64_t alignment;
	uint64_t data_offset;         /* start of the tensor data section */
	int copied;                   /* map is a private copy (GGUF_OPEN_COPY), not the file */
};

/*
 * gguf_open maps PATH read-only and validates it completely: header,
 * every metadata value (arrays included), every tensor info, alignment and
 * data bounds.  On success *OUT owns the map and returns 0.  On failure it
 * returns a negative GGUF_ERR_* and writes a message naming the file and the
 * problem into ERR (ERRLEN bytes).  Any thread; no shared state.
 */
int gguf_open(const char *path, struct gguf_file **out, char *err, size_t errlen);

/*
 * gguf_open with FLAGS.  GGUF_OPEN_COPY: read the file into private
 * memory, in 2 MiB pages where the kernel gives them (MADV_HUGEPAGE),
 * instead of mapping it: a reader streaming through the data crosses a
 * page boundary every 2 MiB instead of every 4 KiB, and the file may
 * change under it; the memory is the process's own (not the page cache's,
 * which the kernel may drop).  If the copy cannot be made (memory, a read
 * error), the file is mapped as by gguf_open (f->copied tells).
 */
#define GGUF_OPEN_COPY 1u
int gguf_open_flags(const char *path, unsigned flags, struct gguf_file **out, char *err, size_t errlen);

/* A private copy's data made writable (WRITABLE 1) or read-only again
 * (0): for rearranging the weights in place at load (llm_model_pack).
 * Returns 0, or -1 when F is not a private copy or the kernel refused. */
int gguf_copy_writable(struct gguf_file *f, int writable);

/* Same, over a caller-owned buffer (tests, fuzzing).  BUF must outlive F. */
int gguf_open_buffer(const void *buf, size_t size, const char *name,
		     struct gguf_file **out, char *err, size_t errlen);

/* Unmaps and frees.  gguf_close(NULL) is a no-op. */
void gguf_close(struct gguf_file *f);

/* Lookups.  Return NULL / -1 when absent.  Borrowed pointers into F. */
const struct gguf_kv *gguf_find_kv(const struct gguf_file *f, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name);

/* Typed getters: return 0 and store the value when KEY exists with a
 * compatible type (any integer for the integer getters), else -1. */
int gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out);
int gguf_get_i64(const struct gguf_file *f, const char *key, int64_t *out);
int gguf_get_f64(const struct gguf_file *f, const char *key, double *out);
int gguf_get_bool(const struct gguf_file *f, const char *key, int *out);
/* Returns a newly allocated NUL-terminated copy (caller frees), or NULL. */
char *gguf_get_str(const struct gguf_file *f, const char *key);
/* Array of any element type: returns the kv or NULL if KEY is not an array of ETYPE. */
const struct gguf_kv *gguf_get_arr(const struct gguf_file *f, const char *key, enum gguf_vtype etype);

/* Element I of a numeric array as double/int64 (no bounds check beyond arr.n). */
double gguf_arr_f64(const struct gguf_value *v, uint64_t i);
int64_t gguf_arr_i64(const struct gguf_value *v, uint64_t i);

/* Iterate a string array: *POS starts at the array's data; each call yields
 * the next string.  The array was validated at open, so this cannot fail. */
struct gguf_str gguf_arr_str_next(const uint8_t **pos);

/* Type facts for every ggml type.  Unknown types have blck_size 0. */
struct ggml_type_info {
	const char *name;
	uint32_t blck_size;   /* elements per block */
	uint32_t type_size;   /* bytes per block */
};
const struct ggml_type_info *ggml_type_info_get(uint32_t type);
const char *gguf_vtype_name(uint32_t t);

#endif
