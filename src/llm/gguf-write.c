/* gguf-write.c -- builds GGUF v3 files: metadata, tensor infos, aligned data. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natter/gguf-write.h"
#include "natter/outfile.h"

struct wtensor {
	char *name;
	enum ggml_type type;
	int n_dims;
	uint64_t ne[GGUF_MAX_DIMS];
	uint64_t nbytes, offset;
	const void *data;
	gguf_fill_fn fill;
	void *ctx;
};

struct gguf_writer {
	uint32_t alignment;
	uint8_t *meta;            /* encoded kv pairs */
	size_t meta_len, meta_cap;
	uint64_t n_kv;
	struct wtensor *t;
	size_t n_t, cap_t;
	uint64_t data_len;
	int failed;
};

struct gguf_writer *
gguf_writer_new(uint32_t alignment)
{
	struct gguf_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->alignment = alignment ? alignment : GGUF_DEFAULT_ALIGNMENT;
	if (w->alignment != GGUF_DEFAULT_ALIGNMENT && gguf_w_u32(w, "general.alignment", w->alignment) < 0) {
		gguf_writer_free(w);
		return NULL;
	}
	return w;
}

void
gguf_writer_free(struct gguf_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n_t; i++)
		free(w->t[i].name);
	free(w->t);
	free(w->meta);
	free(w);
}

static int
put(struct gguf_writer *w, const void *p, size_t n)
{
	if (w->failed)
		return -1;
	if (n == 0)
		return 0;   /* an empty array may come with a NULL pointer */
	if (w->meta_len + n > w->meta_cap) {
		size_t cap = w->meta_cap ? w->meta_cap : 1024;
		while (cap < w->meta_len + n)
			cap *= 2;
		uint8_t *m = realloc(w->meta, cap);
		if (!m) {
			w->failed = 1;
			return -1;
		}
		w->meta = m;
		w->meta_cap = cap;
	}
	memcpy(w->meta + w->meta_len, p, n);
	w->meta_len += n;
	return 0;
}

static int
put_u32(struct gguf_writer *w, uint32_t v)
{
	uint8_t b[4] = { v, v >> 8, v >> 16, v >> 24 };
	return put(w, b, 4);
}

static int
put_u64(struct gguf_writer *w, uint64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	return put(w, b, 8);
}

static int
put_str(struct gguf_writer *w, const char *s)
{
	size_t n = strlen(s);
	return put_u64(w, n) < 0 ? -1 : put(w, s, n);
}

static const uint8_t vsize[GGUF_VT_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };

int
gguf_w_scalar(struct gguf_writer *w, const char *key, enum gguf_vtype t, const void *val)
{
	if (t >= GGUF_VT_COUNT || t == GGUF_VT_ARRAY)
		return -1;
	if (put_str(w, key) < 0 || put_u32(w, t) < 0)
		return -1;
	w->n_kv++;
	if (t == GGUF_VT_STRING)
		return put_str(w, val);
	return put(w, val, vsize[t]);
}

int gguf_w_u32(struct gguf_writer *w, const char *key, uint32_t v) { return gguf_w_scalar(w, key, GGUF_VT_UINT32, &v); }
int gguf_w_i32(struct gguf_writer *w, const char *key, int32_t v) { return gguf_w_scalar(w, key, GGUF_VT_INT32, &v); }
int gguf_w_f32(struct gguf_writer *w, const char *key, float v) { return gguf_w_scalar(w, key, GGUF_VT_FLOAT32, &v); }
int gguf_w_str(struct gguf_writer *w, const char *key, const char *v) { return gguf_w_scalar(w, key, GGUF_VT_STRING, v); }

int
gguf_w_bool(struct gguf_writer *w, const char *key, int v)
{
	uint8_t b = v != 0;
	return gguf_w_scalar(w, key, GGUF_VT_BOOL, &b);
}

int
gguf_w_arr(struct gguf_writer *w, const char *key, enum gguf_vtype etype, const void *data, uint64_t n)
{
	if (etype >= GGUF_VT_COUNT || vsize[etype] == 0)
		return -1;
	if (put_str(w, key) < 0 || put_u32(w, GGUF_VT_ARRAY) < 0 || put_u32(w, etype) < 0 ||
	    put_u64(w, n) < 0 || put(w, data, n * vsize[etype]) < 0)
		return -1;
	w->n_kv++;
	return 0;
}

int
gguf_w_arr_str(struct gguf_writer *w, const char *key, const char *const *strs, uint64_t n)
{
	if (put_str(w, key) < 0 || put_u32(w, GGUF_VT_ARRAY) < 0 || put_u32(w, GGUF_VT_STRING) < 0 ||
	    put_u64(w, n) < 0)
		return -1;
	for (uint64_t i = 0; i < n; i++)
		if (put_str(w, strs[i]) < 0)
			return -1;
	w->n_kv++;
	return 0;
}

int
gguf_w_tensor(struct gguf_writer *w, const char *name, enum ggml_type type,
	      int n_dims, const uint64_t *ne, const void *data, gguf_fill_fn fill, void *ctx)
{
	const struct ggml_type_info *ti = ggml_type_info_get(type);
	struct wtensor *t;
	uint64_t nelem = 1;

	if (ti->blck_size == 0 || n_dims < 1 || n_dims > GGUF_MAX_DIMS || ne[0] % ti->blck_size)
		return -1;
	if (w->n_t == w->cap_t) {
		size_t cap = w->cap_t ? w->cap_t * 2 : 64;
		struct wtensor *nt = realloc(w->t, cap * sizeof(*nt));
		if (!nt)
			return -1;
		w->t = nt;
		w->cap_t = cap;
	}
	t = &w->t[w->n_t];
	memset(t, 0, sizeof(*t));
	t->name = strdup(name);
	if (!t->name)
		return -1;
	t->type = type;
	t->n_dims = n_dims;
	for (int d = 0; d < GGUF_MAX_DIMS; d++) {
		t->ne[d] = d < n_dims ? ne[d] : 1;
		nelem *= t->ne[d];
	}
	t->nbytes = nelem / ti->blck_size * ti->type_size;
	t->offset = w->data_len;
	w->data_len += t->nbytes;
	if (w->data_len % w->alignment)
		w->data_len += w->alignment - w->data_len % w->alignment;
	t->data = data;
	t->fill = fill;
	t->ctx = ctx;
	w->n_t++;
	return 0;
}

/* Header + metadata + tensor infos, padded to the alignment. */
static int
build_head(struct gguf_writer *w, uint8_t **out, size_t *len)
{
	struct gguf_writer h = { 0 };

	h.alignment = w->alignment;
	put(&h, "GGUF", 4);
	put_u32(&h, 3);
	put_u64(&h, w->n_t);
	put_u64(&h, w->n_kv);
	put(&h, w->meta, w->meta_len);
	for (size_t i = 0; i < w->n_t; i++) {
		const struct wtensor *t = &w->t[i];
		put_str(&h, t->name);
		put_u32(&h, t->n_dims);
		for (int d = 0; d < t->n_dims; d++)
			put_u64(&h, t->ne[d]);
		put_u32(&h, t->type);
		put_u64(&h, t->offset);
	}
	while (h.meta_len % w->alignment)
		put(&h, "", 1);
	if (h.failed || w->failed) {
		free(h.meta);
		return -1;
	}
	*out = h.meta;
	*len = h.meta_len;
	return 0;
}

static int
tensor_bytes(const struct wtensor *t, uint8_t *dst)
{
	if (t->fill)
		return t->fill(t->ctx, dst, t->nbytes);
	if (t->data)
		memcpy(dst, t->data, t->nbytes);
	else
		memset(dst, 0, t->nbytes);
	return 0;
}

int
gguf_writer_to_buffer(struct gguf_writer *w, uint8_t **buf, size_t *len)
{
	uint8_t *head, *out;
	size_t hl;

	if (build_head(w, &head, &hl) < 0)
		return -1;
	out = calloc(1, hl + w->data_len + 1);
	if (!out) {
		free(head);
		return -1;
	}
	memcpy(out, head, hl);
	free(head);
	for (size_t i = 0; i < w->n_t; i++) {
		if (tensor_bytes(&w->t[i], out + hl + w->t[i].offset) < 0) {
			free(out);
			return -1;
		}
	}
	*buf = out;
	*len = hl + w->data_len;
	return 0;
}

int
gguf_writer_write(struct gguf_writer *w, const char *path, char *err, size_t errlen)
{
	uint8_t *head = NULL, *tmpbuf = NULL;
	size_t hl, tmpcap = 0;
	struct outfile o;
	FILE *f;
	uint64_t at = 0;
	static const uint8_t zeros[64] = { 0 };

	if (build_head(w, &head, &hl) < 0) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	if (outfile_open(&o, path, "wb", err, errlen) < 0) {
		free(head);
		return -1;
	}
	f = o.f;
	if (fwrite(head, 1, hl, f) != hl)
		goto ioerr;
	for (size_t i = 0; i < w->n_t; i++) {
		const struct wtensor *t = &w->t[i];
		while (at < t->offset) {
			size_t k = t->offset - at < sizeof(zeros) ? (size_t)(t->offset - at) : sizeof(zeros);
			if (fwrite(zeros, 1, k, f) != k)
				goto ioerr;
			at += k;
		}
		if (t->nbytes > tmpcap) {
			free(tmpbuf);
			tmpcap = t->nbytes;
			tmpbuf = malloc(tmpcap);
			if (!tmpbuf) {
				snprintf(err, errlen, "%s: out of memory", path);
				goto fail;
			}
		}
		if (tensor_bytes(t, tmpbuf) < 0) {
			snprintf(err, errlen, "%s: could not produce the data of tensor %s", path, t->name);
			goto fail;
		}
		if (fwrite(tmpbuf, 1, t->nbytes, f) != t->nbytes)
			goto ioerr;
		at += t->nbytes;
	}
	while (at < w->data_len) {
		size_t k = w->data_len - at < sizeof(zeros) ? (size_t)(w->data_len - at) : sizeof(zeros);
		if (fwrite(zeros, 1, k, f) != k)
			goto ioerr;
		at += k;
	}
	free(head);
	free(tmpbuf);
	return outfile_commit(&o, err, errlen);
ioerr:
	snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
fail:
	outfile_abort(&o);
	free(head);
	free(tmpbuf);
	return -1;
}
