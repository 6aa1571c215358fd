/* gguf.c -- validating GGUF reader: every byte is checked before it is used. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "natter/gguf.h"
#include "llm/hugemem.h"
#include "llm/pool.h"

static const struct ggml_type_info type_infos[GGML_TYPE_COUNT] = {
	[GGML_TYPE_F32] = { "F32", 1, 4 },
	[GGML_TYPE_F16] = { "F16", 1, 2 },
	[GGML_TYPE_Q4_0] = { "Q4_0", 32, 18 },
	[GGML_TYPE_Q4_1] = { "Q4_1", 32, 20 },
	[GGML_TYPE_Q5_0] = { "Q5_0", 32, 22 },
	[GGML_TYPE_Q5_1] = { "Q5_1", 32, 24 },
	[GGML_TYPE_Q8_0] = { "Q8_0", 32, 34 },
	[GGML_TYPE_Q8_1] = { "Q8_1", 32, 36 },
	[GGML_TYPE_Q2_K] = { "Q2_K", 256, 84 },
	[GGML_TYPE_Q3_K] = { "Q3_K", 256, 110 },
	[GGML_TYPE_Q4_K] = { "Q4_K", 256, 144 },
	[GGML_TYPE_Q5_K] = { "Q5_K", 256, 176 },
	[GGML_TYPE_Q6_K] = { "Q6_K", 256, 210 },
	[GGML_TYPE_Q8_K] = { "Q8_K", 256, 292 },
	[GGML_TYPE_IQ2_XXS] = { "IQ2_XXS", 256, 66 },
	[GGML_TYPE_IQ2_XS] = { "IQ2_XS", 256, 74 },
	[GGML_TYPE_IQ3_XXS] = { "IQ3_XXS", 256, 98 },
	[GGML_TYPE_IQ1_S] = { "IQ1_S", 256, 50 },
	[GGML_TYPE_IQ4_NL] = { "IQ4_NL", 32, 18 },
	[GGML_TYPE_IQ3_S] = { "IQ3_S", 256, 110 },
	[GGML_TYPE_IQ2_S] = { "IQ2_S", 256, 82 },
	[GGML_TYPE_IQ4_XS] = { "IQ4_XS", 256, 136 },
	[GGML_TYPE_I8] = { "I8", 1, 1 },
	[GGML_TYPE_I16] = { "I16", 1, 2 },
	[GGML_TYPE_I32] = { "I32", 1, 4 },
	[GGML_TYPE_I64] = { "I64", 1, 8 },
	[GGML_TYPE_F64] = { "F64", 1, 8 },
	[GGML_TYPE_IQ1_M] = { "IQ1_M", 256, 56 },
	[GGML_TYPE_BF16] = { "BF16", 1, 2 },
	[GGML_TYPE_TQ1_0] = { "TQ1_0", 256, 54 },
	[GGML_TYPE_TQ2_0] = { "TQ2_0", 256, 66 },
	[GGML_TYPE_MXFP4] = { "MXFP4", 32, 17 },
};

const struct ggml_type_info *
ggml_type_info_get(uint32_t type)
{
	static const struct ggml_type_info unknown = { "unknown", 0, 0 };
	if (type >= GGML_TYPE_COUNT || type_infos[type].blck_size == 0)
		return &unknown;
	return &type_infos[type];
}

const char *
gguf_vtype_name(uint32_t t)
{
	static const char *names[GGUF_VT_COUNT] = {
		"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
		"string", "array", "u64", "i64", "f64",
	};
	return t < GGUF_VT_COUNT ? names[t] : "?";
}

/* Fixed sizes of scalar value types; 0 for string/array. */
static const uint8_t vtype_size[GGUF_VT_COUNT] = {
	1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8,
};

/* A bounded reader over the file; the first failure sticks. */
struct cursor {
	const uint8_t *base;
	size_t size;
	size_t pos;
	char *err;
	size_t errlen;
	const char *name;
	int failed;
};

static void
cur_fail(struct cursor *c, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (c->failed)
		return;
	c->failed = 1;
	if (c->err == NULL || c->errlen == 0)
		return;
	n = snprintf(c->err, c->errlen, "%s: ", c->name);
	if (n < 0 || (size_t)n >= c->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(c->err + n, c->errlen - n, fmt, ap);
	va_end(ap);
}

/* Checks that N bytes remain; WHAT names the field for the message. */
static int
cur_need(struct cursor *c, uint64_t n, const char *what)
{
	if (c->failed)
		return -1;
	if (n > c->size - c->pos) {
		cur_fail(c, "file is truncated: %s needs %" PRIu64 " bytes at offset %zu, "
		    "but the file ends at %zu", what, n, c->pos, c->size);
		return -1;
	}
	return 0;
}

static uint64_t
cur_u(struct cursor *c, int nbytes, const char *what)
{
	uint64_t v = 0;

	if (cur_need(c, nbytes, what) < 0)
		return 0;
	/* Little-endian, unaligned-safe. */
	for (int i = nbytes - 1; i >= 0; i--)
		v = (v << 8) | c->base[c->pos + i];
	c->pos += nbytes;
	return v;
}

static struct gguf_str
cur_str(struct cursor *c, const char *what)
{
	struct gguf_str s = { "", 0 };
	uint64_t len = cur_u(c, 8, what);

	if (c->failed)
		return s;
	if (len > c->size - c->pos) {
		cur_fail(c, "%s: string length %" PRIu64 " at offset %zu runs past the end of "
		    "the file (%zu bytes)", what, len, c->pos - 8, c->size);
		return s;
	}
	s.ptr = (const char *)c->base + c->pos;
	s.len = len;
	c->pos += len;
	return s;
}

/* Reads a value of type T (already read) into V. */
static void
cur_value(struct cursor *c, uint32_t t, struct gguf_value *v, const char *what)
{
	double f;
	float f32;
	uint64_t u;

	v->type = t;
	switch (t) {
	case GGUF_VT_UINT8: case GGUF_VT_UINT16: case GGUF_VT_UINT32: case GGUF_VT_UINT64:
		v->v.u64 = cur_u(c, vtype_size[t], what);
		break;
	case GGUF_VT_BOOL:
		v->v.u64 = cur_u(c, 1, what);
		if (!c->failed && v->v.u64 > 1)
			cur_fail(c, "%s: boolean has value %" PRIu64 " (must be 0 or 1)", what, v->v.u64);
		break;
	case GGUF_VT_INT8:
		v->v.i64 = (int8_t)cur_u(c, 1, what);
		break;
	case GGUF_VT_INT16:
		v->v.i64 = (int16_t)cur_u(c, 2, what);
		break;
	case GGUF_VT_INT32:
		v->v.i64 = (int32_t)cur_u(c, 4, what);
		break;
	case GGUF_VT_INT64:
		v->v.i64 = (int64_t)cur_u(c, 8, what);
		break;
	case GGUF_VT_FLOAT32:
		u = cur_u(c, 4, what);
		{
			uint32_t u32 = (uint32_t)u;
			memcpy(&f32, &u32, 4);
		}
		v->v.f64 = f32;
		break;
	case GGUF_VT_FLOAT64:
		u = cur_u(c, 8, what);
		memcpy(&f, &u, 8);
		v->v.f64 = f;
		break;
	case GGUF_VT_STRING:
		v->v.str = cur_str(c, what);
		break;
	case GGUF_VT_ARRAY: {
		uint32_t et = (uint32_t)cur_u(c, 4, what);
		uint64_t n = cur_u(c, 8, what);
		if (c->failed)
			return;
		if (et == GGUF_VT_ARRAY) {
			cur_fail(c, "%s: arrays of arrays are not supported", what);
			return;
		}
		if (et >= GGUF_VT_COUNT) {
			cur_fail(c, "%s: array has unknown element type %u", what, et);
			return;
		}
		v->v.arr.type = et;
		v->v.arr.n = n;
		v->v.arr.data = c->base + c->pos;
		if (et == GGUF_VT_STRING) {
			/* Each string needs at least its 8-byte length. */
			if (n > (c->size - c->pos) / 8) {
				cur_fail(c, "%s: array of %" PRIu64 " strings cannot fit in the %zu "
				    "bytes left in the file", what, n, c->size - c->pos);
				return;
			}
			for (uint64_t i = 0; i < n && !c->failed; i++)
				(void)cur_str(c, what);
		} else {
			uint64_t sz = vtype_size[et];
			if (n > (c->size - c->pos) / sz) {
				cur_fail(c, "%s: array of %" PRIu64 " %s values runs past the end of "
				    "the file (%zu bytes left)", what, n, gguf_vtype_name(et),
				    c->size - c->pos);
				return;
			}
			if (et == GGUF_VT_BOOL) {
				for (uint64_t i = 0; i < n; i++) {
					if (c->base[c->pos + i] > 1) {
						cur_fail(c, "%s: boolean array element %" PRIu64
						    " is not 0 or 1", what, i);
						return;
					}
				}
			}
			c->pos += n * sz;
		}
		break;
	}
	default:
		cur_fail(c, "%s: unknown value type %u", what, t);
		break;
	}
}

/* --- name hash, for duplicate detection and lookup --- */

static uint64_t
str_hash(const char *p, uint64_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (uint64_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 1099511628211ULL;
	return h;
}

static int
str_eq(struct gguf_str a, const char *p, uint64_t n)
{
	return a.len == n && memcmp(a.ptr, p, n) == 0;
}

struct gguf_index {
	uint64_t cap;         /* power of two */
	uint64_t *slot;       /* index + 1; 0 = empty */
};

struct gguf_file_priv {
	struct gguf_file pub;
	struct gguf_index kv_index;
	struct gguf_index tensor_index;
	int owns_map;
	void *base;             /* what was mapped: the file (at pub.map), or the copy (pub.map some bytes in) */
	size_t map_len;         /* bytes mapped at base (the copy's, rounded) */
};

static int
index_build(struct gguf_index *ix, uint64_t n)
{
	uint64_t cap = 16;
	while (cap < n * 2)
		cap <<= 1;
	ix->cap = cap;
	ix->slot = calloc(cap, sizeof(*ix->slot));
	return ix->slot ? 0 : -1;
}

/* Inserts entry I named S; returns the existing index if a duplicate, else -1. */
static int64_t
index_insert(struct gguf_index *ix, struct gguf_str s, uint64_t i,
	     struct gguf_str (*name_of)(const struct gguf_file *, uint64_t), const struct gguf_file *f)
{
	uint64_t h = str_hash(s.ptr, s.len) & (ix->cap - 1);
	while (ix->slot[h]) {
		uint64_t j = ix->slot[h] - 1;
		if (str_eq(name_of(f, j), s.ptr, s.len))
			return (int64_t)j;
		h = (h + 1) & (ix->cap - 1);
	}
	ix->slot[h] = i + 1;
	return -1;
}

static int64_t
index_find(const struct gguf_index *ix, const char *p, uint64_t n,
	   struct gguf_str (*name_of)(const struct gguf_file *, uint64_t), const struct gguf_file *f)
{
	if (ix->cap == 0)
		return -1;
	uint64_t h = str_hash(p, n) & (ix->cap - 1);
	while (ix->slot[h]) {
		uint64_t j = ix->slot[h] - 1;
		if (str_eq(name_of(f, j), p, n))
			return (int64_t)j;
		h = (h + 1) & (ix->cap - 1);
	}
	return -1;
}

static struct gguf_str
kv_name(const struct gguf_file *f, uint64_t i)
{
	return f->kv[i].key;
}

static struct gguf_str
tensor_name(const struct gguf_file *f, uint64_t i)
{
	return f->tensors[i].name;
}

static int
cmp_by_offset(const void *a, const void *b)
{
	const struct gguf_tensor *x = *(const struct gguf_tensor * const *)a;
	const struct gguf_tensor *y = *(const struct gguf_tensor * const *)b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Prints a possibly-binary name for an error message, cut and sanitised. */
static const char *
printable(struct gguf_str s, char *buf, size_t n)
{
	size_t j = 0;
	for (uint64_t i = 0; i < s.len && j + 4 < n; i++) {
		unsigned char ch = (unsigned char)s.ptr[i];
		buf[j++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	if (s.len > 0 && j + 4 >= n) {
		buf[j++] = '.'; buf[j++] = '.'; buf[j++] = '.';
	}
	buf[j] = 0;
	return buf;
}

static int
parse(struct gguf_file_priv *pf, char *err, size_t errlen)
{
	struct gguf_file *f = &pf->pub;
	struct cursor c = { f->map, f->size, 0, err, errlen, f->path, 0 };
	char what[128], nb[80];
	uint64_t magic;

	if (f->size < 4) {
		cur_fail(&c, "not a GGUF file: only %zu bytes long", f->size);
		return -GGUF_ERR_FORMAT;
	}
	magic = cur_u(&c, 4, "magic");
	if (magic != 0x46554747u) {   /* "GGUF" */
		if (memcmp(f->map, "ggjt", 4) == 0 || memcmp(f->map, "tjgg", 4) == 0 ||
		    memcmp(f->map, "ggml", 4) == 0 || memcmp(f->map, "lmgg", 4) == 0)
			cur_fail(&c, "this is an old GGML/GGJT model, not GGUF; convert it "
			    "with llama.cpp's conversion scripts or download a GGUF version");
		else
			cur_fail(&c, "not a GGUF file (bad magic %02x %02x %02x %02x, expected \"GGUF\")",
			    f->map[0], f->map[1], f->map[2], f->map[3]);
		return -GGUF_ERR_FORMAT;
	}
	f->version = (uint32_t)cur_u(&c, 4, "version");
	if (c.failed)
		return -GGUF_ERR_FORMAT;
	if (f->version == 1) {
		cur_fail(&c, "GGUF version 1 is obsolete and not supported; use a v2 or v3 file");
		return -GGUF_ERR_FORMAT;
	}
	if (f->version != 2 && f->version != 3) {
		cur_fail(&c, "unknown GGUF version %u (natter reads versions 2 and 3)", f->version);
		return -GGUF_ERR_FORMAT;
	}
	f->n_tensors = cur_u(&c, 8, "tensor count");
	f->n_kv = cur_u(&c, 8, "metadata count");
	if (c.failed)
		return -GGUF_ERR_FORMAT;
	/* A kv needs >= 13 bytes (key length, type, 1-byte value); a tensor
	 * info >= 28 (name length, n_dims, one dim, type, offset). */
	if (f->n_kv > (f->size - c.pos) / 13) {
		cur_fail(&c, "metadata count %" PRIu64 " is impossible for a file of %zu bytes",
		    f->n_kv, f->size);
		return -GGUF_ERR_FORMAT;
	}
	if (f->n_tensors > (f->size - c.pos) / 28) {
		cur_fail(&c, "tensor count %" PRIu64 " is impossible for a file of %zu bytes",
		    f->n_tensors, f->size);
		return -GGUF_ERR_FORMAT;
	}

	f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof(*f->kv));
	f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof(*f->tensors));
	if (!f->kv || !f->tensors || index_build(&pf->kv_index, f->n_kv) < 0 ||
	    index_build(&pf->tensor_index, f->n_tensors) < 0) {
		snprintf(err, errlen, "%s: out of memory reading the header", f->path);
		return -GGUF_ERR_NOMEM;
	}

	for (uint64_t i = 0; i < f->n_kv; i++) {
		struct gguf_kv *kv = &f->kv[i];
		snprintf(what, sizeof(what), "metadata entry %" PRIu64 " key", i);
		kv->key = cur_str(&c, what);
		if (c.failed)
			return -GGUF_ERR_FORMAT;
		snprintf(what, sizeof(what), "metadata '%s'", printable(kv->key, nb, sizeof(nb)));
		uint32_t t = (uint32_t)cur_u(&c, 4, what);
		if (c.failed)
			return -GGUF_ERR_FORMAT;
		if (t >= GGUF_VT_COUNT) {
			cur_fail(&c, "%s has unknown value type %u", what, t);
			return -GGUF_ERR_FORMAT;
		}
		cur_value(&c, t, &kv->val, what);
		if (c.failed)
			return -GGUF_ERR_FORMAT;
		if (index_insert(&pf->kv_index, kv->key, i, kv_name, f) >= 0) {
			cur_fail(&c, "duplicate metadata key '%s'", printable(kv->key, nb, sizeof(nb)));
			return -GGUF_ERR_FORMAT;
		}
	}

	f->alignment = GGUF_DEFAULT_ALIGNMENT;
	{
		const struct gguf_kv *a = gguf_find_kv(f, "general.alignment");
		if (a) {
			if (a->val.type != GGUF_VT_UINT32) {
				cur_fail(&c, "general.alignment has type %s (must be u32)",
				    gguf_vtype_name(a->val.type));
				return -GGUF_ERR_FORMAT;
			}
			/* The GGUF specification: a multiple of 8.  Less would put
			 * weights at addresses no float may be read from. */
			if (a->val.v.u64 < 8 || (a->val.v.u64 & (a->val.v.u64 - 1)) != 0) {
				cur_fail(&c, "general.alignment is %" PRIu64 " (must be a power of two, 8 or more)",
				    a->val.v.u64);
				return -GGUF_ERR_FORMAT;
			}
			f->alignment = a->val.v.u64;
		}
	}

	for (uint64_t i = 0; i < f->n_tensors; i++) {
		struct gguf_tensor *t = &f->tensors[i];
		uint64_t nelem = 1;
		const struct ggml_type_info *ti;

		snprintf(what, sizeof(what), "tensor %" PRIu64 " name", i);
		t->name = cur_str(&c, what);
		if (c.failed)
			return -GGUF_ERR_FORMAT;
		snprintf(what, sizeof(what), "tensor '%s'", printable(t->name, nb, sizeof(nb)));
		t->n_dims = (uint32_t)cur_u(&c, 4, what);
		if (c.failed)
			return -GGUF_ERR_FORMAT;
		if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS) {
			cur_fail(&c, "%s has %u dimensions (must be 1 to %d)", what, t->n_dims, GGUF_MAX_DIMS);
			return -GGUF_ERR_FORMAT;
		}
		for (int d = 0; d < GGUF_MAX_DIMS; d++)
			t->ne[d] = 1;
		for (uint32_t d = 0; d < t->n_dims; d++) {
			t->ne[d] = cur_u(&c, 8, what);
			if (c.failed)
				return -GGUF_ERR_FORMAT;
			if (t->ne[d] > (uint64_t)INT64_MAX) {
				cur_fail(&c, "%s: dimension %u is %" PRIu64 " (negative as a signed count)",
				    what, d, t->ne[d]);
				return -GGUF_ERR_FORMAT;
			}
			if (t->ne[d] != 0 && nelem > (uint64_t)INT64_MAX / t->ne[d]) {
				cur_fail(&c, "%s: element count overflows 64 bits", what);
				return -GGUF_ERR_FORMAT;
			}
			nelem *= t->ne[d];
		}
		t->type = (enum ggml_type)cur_u(&c, 4, what);
		t->offset = cur_u(&c, 8, what);
		if (c.failed)
			return -GGUF_ERR_FORMAT;
		ti = ggml_type_info_get(t->type);
		if (ti->blck_size == 0) {
			cur_fail(&c, "%s has unknown tensor type %u", what, (unsigned)t->type);
			return -GGUF_ERR_FORMAT;
		}
		if (t->ne[0] % ti->blck_size != 0) {
			cur_fail(&c, "%s: row length %" PRIu64 " is not a multiple of the %s block size %u",
			    what, t->ne[0], ti->name, ti->blck_size);
			return -GGUF_ERR_FORMAT;
		}
		/* nelem <= INT64_MAX and type_size <= 292, blck >= 1: divide first. */
		if (nelem / ti->blck_size > UINT64_MAX / ti->type_size) {
			cur_fail(&c, "%s: byte size overflows 64 bits", what);
			return -GGUF_ERR_FORMAT;
		}
		t->nbytes = nelem / ti->blck_size * ti->type_size;
		if (t->offset % f->alignment != 0) {
			cur_fail(&c, "%s: data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
			    what, t->offset, f->alignment);
			return -GGUF_ERR_FORMAT;
		}
		if (index_insert(&pf->tensor_index, t->name, i, tensor_name, f) >= 0) {
			cur_fail(&c, "duplicate tensor name '%s'", printable(t->name, nb, sizeof(nb)));
			return -GGUF_ERR_FORMAT;
		}
	}

	/* The data section starts at the next multiple of the alignment. */
	f->data_offset = c.pos;
	if (f->data_offset % f->alignment)
		f->data_offset += f->alignment - f->data_offset % f->alignment;
	if (f->n_tensors > 0 && f->data_offset > f->size) {
		cur_fail(&c, "file is truncated: tensor data would start at offset %" PRIu64
		    " but the file ends at %zu", f->data_offset, f->size);
		return -GGUF_ERR_FORMAT;
	}

	{
		uint64_t avail = f->n_tensors > 0 ? f->size - f->data_offset : 0;
		const struct gguf_tensor **order;

		for (uint64_t i = 0; i < f->n_tensors; i++) {
			struct gguf_tensor *t = &f->tensors[i];
			if (t->offset > avail || t->nbytes > avail - t->offset) {
				cur_fail(&c, "tensor '%s': data [%" PRIu64 ", +%" PRIu64 ") runs past the end "
				    "of the file (data section holds %" PRIu64 " bytes; the file may be "
				    "truncated)", printable(t->name, nb, sizeof(nb)), t->offset, t->nbytes, avail);
				return -GGUF_ERR_FORMAT;
			}
			t->data = f->map + f->data_offset + t->offset;
		}
		order = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof(*order));
		if (!order) {
			snprintf(err, errlen, "%s: out of memory", f->path);
			return -GGUF_ERR_NOMEM;
		}
		for (uint64_t i = 0; i < f->n_tensors; i++)
			order[i] = &f->tensors[i];
		qsort(order, f->n_tensors, sizeof(*order), cmp_by_offset);
		/* Each tensor against the one before it that reaches furthest (an
		 * empty tensor between two that overlap hid them from each other). */
		for (uint64_t i = 0, far = UINT64_MAX; i < f->n_tensors; i++) {
			const struct gguf_tensor *b = order[i], *a = far == UINT64_MAX ? NULL : order[far];
			if (!b->nbytes)
				continue;
			if (!a || b->offset + b->nbytes > a->offset + a->nbytes)
				far = i;
			if (a && a->offset + a->nbytes > b->offset) {
				char nb2[80];
				cur_fail(&c, "tensors '%s' and '%s' overlap in the data section",
				    printable(a->name, nb, sizeof(nb)), printable(b->name, nb2, sizeof(nb2)));
				free(order);
				return -GGUF_ERR_FORMAT;
			}
		}
		free(order);
	}
	return 0;
}

static int
open_common(struct gguf_file_priv *pf, struct gguf_file **out, char *err, size_t errlen)
{
	int rc = parse(pf, err, errlen);
	if (rc < 0) {
		gguf_close(&pf->pub);
		*out = NULL;
		return rc;
	}
	*out = &pf->pub;
	return 0;
}

/*
 * The copy is read in chunks by as many threads as this process may run
 * on (at most COPY_THREADS): the kernel zeroes each new page on the
 * thread that first touches it, and that, not the copy, is most of the
 * time.  Qwen2.5-0.5B F16 (990 MB) from the page cache into 2 MiB pages,
 * 2 cores of a Zen 3 EPYC: 0.23-0.26 s on one thread, 0.14-0.18 s on
 * two.  A file of one chunk or less is read on the calling thread.
 */
#define COPY_CHUNK ((size_t)64 << 20)
#define COPY_THREADS 8

struct copy_job {
	int fd;
	uint8_t *a;
	size_t size;
	atomic_int failed;
};

/* Reads chunk TASK of the file; an error, or the file shrunk meanwhile,
 * fails the copy. */
static void
copy_task(void *arg, int task, int worker)
{
	struct copy_job *j = arg;
	size_t at = (size_t)task * COPY_CHUNK, end = at + COPY_CHUNK < j->size ? at + COPY_CHUNK : j->size;

	(void)worker;
	while (at < end && !atomic_load_explicit(&j->failed, memory_order_relaxed)) {
		ssize_t got = pread(j->fd, j->a + at, end - at, (off_t)at);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			atomic_store(&j->failed, 1);
			return;
		}
		at += (size_t)got;
	}
}

/*
 * The SIZE bytes of FD read into memory from huge_alloc, SHIFT bytes
 * into it, then made read-only.  Returns the mapping (*LEN its bytes),
 * or NULL (nothing left mapped).
 */
static uint8_t *
copy_file(int fd, size_t size, size_t shift, size_t *len)
{
	uint8_t *a = huge_alloc(size + shift, len);
	const size_t chunks = (size + COPY_CHUNK - 1) / COPY_CHUNK;
	struct copy_job j = { fd, a + shift, size, 0 };
	struct pool *p = NULL;

	if (!a)
		return NULL;
	if (chunks > 1) {
		int n = pool_cpus_available();
		p = pool_new(n < COPY_THREADS ? n : COPY_THREADS);
	}
	if (p) {
		pool_run_tasks(p, copy_task, &j, (int)chunks);
		pool_free(p);
	} else {
		for (size_t c = 0; c < chunks; c++)
			copy_task(&j, (int)c, 0);
	}
	if (atomic_load(&j.failed)) {
		huge_free(a, *len);
		return NULL;
	}
	mprotect(a, *len, PROT_READ);
	return a;
}

int
gguf_copy_writable(struct gguf_file *f, int writable)
{
	struct gguf_file_priv *pf = (struct gguf_file_priv *)f;

	if (!f->copied || !pf->owns_map)
		return -1;
	return mprotect(pf->base, pf->map_len, writable ? PROT_READ | PROT_WRITE : PROT_READ) == 0 ? 0 : -1;
}

/*
 * Where a copy of the file MAP (SIZE bytes) starts in its first cache
 * line, so that its tensor data starts on a line: a GGUF aligns the data
 * to 32 bytes (general.alignment), and a file whose data began 32 bytes
 * into a line had every tensor there (36 of the 79 fixtures with
 * tensors), each 64-byte load of its weights split over two lines.  -1
 * when the file does not parse: no copy then (its open says why).
 */
static long
copy_shift(const void *map, size_t size)
{
	struct gguf_file *g;
	char err[8];
	long shift;

	if (gguf_open_buffer(map, size, NULL, &g, err, sizeof(err)) < 0)
		return -1;
	shift = (long)((64 - g->data_offset % 64) % 64);
	gguf_close(g);
	return shift;
}

int
gguf_open(const char *path, struct gguf_file **out, char *err, size_t errlen)
{
	return gguf_open_flags(path, 0, out, err, errlen);
}

int
gguf_open_flags(const char *path, unsigned flags, struct gguf_file **out, char *err, size_t errlen)
{
	struct gguf_file_priv *pf;
	struct stat st;
	int fd;
	uint8_t *map, *copy = NULL;
	size_t map_len;
	long shift = 0;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -GGUF_ERR_IO;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
		close(fd);
		return -GGUF_ERR_IO;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -GGUF_ERR_IO;
	}
	if (st.st_size == 0) {
		snprintf(err, errlen, "%s: file is empty (not a GGUF model)", path);
		close(fd);
		return -GGUF_ERR_FORMAT;
	}
	map_len = (size_t)st.st_size;
	map = mmap(NULL, map_len, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		snprintf(err, errlen, "%s: cannot map: %s", path, strerror(errno));
		close(fd);
		return -GGUF_ERR_IO;
	}
	/* The copy, where asked for and possible, replaces the mapping. */
	if (flags & GGUF_OPEN_COPY) {
		size_t copy_len;
		shift = copy_shift(map, map_len);
		if (shift >= 0 && (copy = copy_file(fd, (size_t)st.st_size, (size_t)shift, &copy_len))) {
			munmap(map, map_len);
			map = copy;
			map_len = copy_len;
		}
	}
	close(fd);
	pf = calloc(1, sizeof(*pf));
	if (!pf || !(pf->pub.path = strdup(path))) {
		free(pf);
		munmap(map, map_len);
		snprintf(err, errlen, "%s: out of memory", path);
		return -GGUF_ERR_NOMEM;
	}
	pf->pub.map = copy ? copy + shift : map;
	pf->pub.size = (size_t)st.st_size;
	pf->pub.copied = copy != NULL;
	pf->owns_map = 1;
	pf->base = map;
	pf->map_len = map_len;
	return open_common(pf, out, err, errlen);
}

int
gguf_open_buffer(const void *buf, size_t size, const char *name,
		 struct gguf_file **out, char *err, size_t errlen)
{
	struct gguf_file_priv *pf = calloc(1, sizeof(*pf));

	*out = NULL;
	if (!pf || !(pf->pub.path = strdup(name ? name : "(buffer)"))) {
		free(pf);
		snprintf(err, errlen, "%s: out of memory", name ? name : "(buffer)");
		return -GGUF_ERR_NOMEM;
	}
	pf->pub.map = buf;
	pf->pub.size = size;
	return open_common(pf, out, err, errlen);
}

void
gguf_close(struct gguf_file *f)
{
	struct gguf_file_priv *pf = (struct gguf_file_priv *)f;

	if (f == NULL)
		return;
	if (pf->owns_map && pf->base)
		munmap(pf->base, pf->map_len);
	free(pf->kv_index.slot);
	free(pf->tensor_index.slot);
	free(f->kv);
	free(f->tensors);
	free(f->path);
	free(pf);
}

const struct gguf_kv *
gguf_find_kv(const struct gguf_file *f, const char *key)
{
	const struct gguf_file_priv *pf = (const struct gguf_file_priv *)f;
	int64_t i = index_find(&pf->kv_index, key, strlen(key), kv_name, f);
	return i < 0 ? NULL : &f->kv[i];
}

const struct gguf_tensor *
gguf_find_tensor(const struct gguf_file *f, const char *name)
{
	const struct gguf_file_priv *pf = (const struct gguf_file_priv *)f;
	int64_t i = index_find(&pf->tensor_index, name, strlen(name), tensor_name, f);
	return i < 0 ? NULL : &f->tensors[i];
}

static int
is_unsigned(uint32_t t)
{
	return t == GGUF_VT_UINT8 || t == GGUF_VT_UINT16 || t == GGUF_VT_UINT32 ||
	    t == GGUF_VT_UINT64 || t == GGUF_VT_BOOL;
}

static int
is_signed(uint32_t t)
{
	return t == GGUF_VT_INT8 || t == GGUF_VT_INT16 || t == GGUF_VT_INT32 || t == GGUF_VT_INT64;
}

int
gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out)
{
	const struct gguf_kv *kv = gguf_find_kv(f, key);
	if (!kv)
		return -1;
	if (is_unsigned(kv->val.type)) {
		*out = kv->val.v.u64;
		return 0;
	}
	if (is_signed(kv->val.type) && kv->val.v.i64 >= 0) {
		*out = (uint64_t)kv->val.v.i64;
		return 0;
	}
	return -1;
}

int
gguf_get_i64(const struct gguf_file *f, const char *key, int64_t *out)
{
	const struct gguf_kv *kv = gguf_find_kv(f, key);
	if (!kv)
		return -1;
	if (is_signed(kv->val.type)) {
		*out = kv->val.v.i64;
		return 0;
	}
	if (is_unsigned(kv->val.type) && kv->val.v.u64 <= (uint64_t)INT64_MAX) {
		*out = (int64_t)kv->val.v.u64;
		return 0;
	}
	return -1;
}

int
gguf_get_f64(const struct gguf_file *f, const char *key, double *out)
{
	const struct gguf_kv *kv = gguf_find_kv(f, key);
	if (!kv)
		return -1;
	if (kv->val.type == GGUF_VT_FLOAT32 || kv->val.type == GGUF_VT_FLOAT64) {
		*out = kv->val.v.f64;
		return 0;
	}
	if (is_unsigned(kv->val.type)) {
		*out = (double)kv->val.v.u64;
		return 0;
	}
	if (is_signed(kv->val.type)) {
		*out = (double)kv->val.v.i64;
		return 0;
	}
	return -1;
}

int
gguf_get_bool(const struct gguf_file *f, const char *key, int *out)
{
	uint64_t v;
	if (gguf_get_u64(f, key, &v) < 0)
		return -1;
	*out = v != 0;
	return 0;
}

char *
gguf_get_str(const struct gguf_file *f, const char *key)
{
	const struct gguf_kv *kv = gguf_find_kv(f, key);
	char *s;

	if (!kv || kv->val.type != GGUF_VT_STRING)
		return NULL;
	if (kv->val.v.str.len >= SIZE_MAX)
		return NULL;
	s = malloc(kv->val.v.str.len + 1);
	if (!s)
		return NULL;
	memcpy(s, kv->val.v.str.ptr, kv->val.v.str.len);
	s[kv->val.v.str.len] = 0;
	return s;
}

const struct gguf_kv *
gguf_get_arr(const struct gguf_file *f, const char *key, enum gguf_vtype etype)
{
	const struct gguf_kv *kv = gguf_find_kv(f, key);
	if (!kv || kv->val.type != GGUF_VT_ARRAY || kv->val.v.arr.type != etype)
		return NULL;
	return kv;
}

static uint64_t
load_le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

double
gguf_arr_f64(const struct gguf_value *v, uint64_t i)
{
	uint32_t et = v->v.arr.type;
	const uint8_t *p = v->v.arr.data + i * vtype_size[et];
	if (et == GGUF_VT_FLOAT32) {
		uint32_t u = (uint32_t)load_le(p, 4);
		float fl;
		memcpy(&fl, &u, 4);
		return fl;
	}
	if (et == GGUF_VT_FLOAT64) {
		uint64_t u = load_le(p, 8);
		double d;
		memcpy(&d, &u, 8);
		return d;
	}
	return (double)gguf_arr_i64(v, i);
}

int64_t
gguf_arr_i64(const struct gguf_value *v, uint64_t i)
{
	uint32_t et = v->v.arr.type;
	const uint8_t *p;

	if (et >= GGUF_VT_COUNT || vtype_size[et] == 0)
		return 0;
	p = v->v.arr.data + i * vtype_size[et];
	switch (et) {
	case GGUF_VT_INT8: return (int8_t)p[0];
	case GGUF_VT_INT16: return (int16_t)load_le(p, 2);
	case GGUF_VT_INT32: return (int32_t)load_le(p, 4);
	case GGUF_VT_INT64: return (int64_t)load_le(p, 8);
	case GGUF_VT_FLOAT32: case GGUF_VT_FLOAT64: {
		/* Cast only what int64 holds (NaN reads 0): a file's float may be anything. */
		double d = gguf_arr_f64(v, i);
		return d != d ? 0 : d >= 0x1p63 ? INT64_MAX : d < -0x1p63 ? INT64_MIN : (int64_t)d;
	}
	default: return (int64_t)load_le(p, vtype_size[et]);
	}
}

struct gguf_str
gguf_arr_str_next(const uint8_t **pos)
{
	struct gguf_str s;
	s.len = load_le(*pos, 8);
	s.ptr = (const char *)*pos + 8;
	*pos += 8 + s.len;
	return s;
}
