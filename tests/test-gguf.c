/* test-gguf.c -- GGUF reader: round trips through the writer, and every malformed-file class. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "natter/gguf.h"
#include "natter/gguf-write.h"
#include "test.h"

/* --- a raw byte builder, to craft files the writer would never produce --- */

struct rb {
	uint8_t *p;
	size_t n, cap;
};

static void
rb_put(struct rb *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void rb_u32(struct rb *b, uint32_t v) { rb_put(b, &v, 4); }
static void rb_u64(struct rb *b, uint64_t v) { rb_put(b, &v, 8); }

static void
rb_str(struct rb *b, const char *s)
{
	rb_u64(b, strlen(s));
	rb_put(b, s, strlen(s));
}

static void
rb_header(struct rb *b, uint32_t version, uint64_t nt, uint64_t nkv)
{
	rb_put(b, "GGUF", 4);
	rb_u32(b, version);
	rb_u64(b, nt);
	rb_u64(b, nkv);
}

static void
rb_tensor(struct rb *b, const char *name, uint32_t ndims, const uint64_t *ne, uint32_t type, uint64_t off)
{
	rb_str(b, name);
	rb_u32(b, ndims);
	for (uint32_t i = 0; i < ndims; i++)
		rb_u64(b, ne[i]);
	rb_u32(b, type);
	rb_u64(b, off);
}

static void
rb_pad(struct rb *b, size_t align, size_t extra)
{
	while (b->n % align)
		rb_put(b, "", 1);
	for (size_t i = 0; i < extra; i++)
		rb_put(b, "\x01", 1);
}

/* Opens B's bytes; expects failure whose message contains WANT. */
static void
expect_fail(const char *label, struct rb *b, const char *want)
{
	struct gguf_file *f = NULL;
	char err[512] = "";
	int rc = gguf_open_buffer(b->p, b->n, "evil.gguf", &f, err, sizeof(err));

	CHECK(rc < 0 && f == NULL, "%s: accepted a bad file", label);
	CHECK(strstr(err, want) != NULL, "%s: message \"%s\" lacks \"%s\"", label, err, want);
	CHECK(strncmp(err, "evil.gguf: ", 11) == 0, "%s: message does not name the file: %s", label, err);
	if (rc == 0)
		gguf_close(f);
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static void
test_attacks(void)
{
	struct rb b = { 0 };
	uint64_t ne2[2] = { 32, 2 };

	rb_put(&b, "GGU", 3);
	expect_fail("3 bytes", &b, "not a GGUF file");

	rb_put(&b, "GGML\x03\0\0\0", 8);
	rb_u64(&b, 0); rb_u64(&b, 0);
	expect_fail("wrong magic", &b, "bad magic");

	rb_put(&b, "ggjt\x03\0\0\0", 8);
	rb_u64(&b, 0); rb_u64(&b, 0);
	expect_fail("old ggjt", &b, "old GGML");

	rb_header(&b, 1, 0, 0);
	expect_fail("version 1", &b, "version 1 is obsolete");

	rb_header(&b, 4, 0, 0);
	expect_fail("version 4", &b, "unknown GGUF version 4");

	rb_header(&b, 3, 1ull << 60, 0);
	expect_fail("2^60 tensors", &b, "tensor count 1152921504606846976 is impossible");

	rb_header(&b, 3, 0, 1ull << 60);
	expect_fail("2^60 keys", &b, "metadata count 1152921504606846976 is impossible");

	rb_header(&b, 3, 0, 1);
	rb_u64(&b, 1000000000000ull);
	rb_put(&b, "abcdefghijklmnop", 16);
	expect_fail("key length past end", &b, "string length 1000000000000");

	rb_header(&b, 3, 0, 1);
	rb_str(&b, "general.name");
	rb_u32(&b, GGUF_VT_STRING);
	rb_u64(&b, 50);
	rb_put(&b, "short", 5);
	expect_fail("value string past end", &b, "metadata 'general.name': string length 50");

	rb_header(&b, 3, 0, 1);
	rb_str(&b, "k");
	rb_u32(&b, 99);
	rb_u64(&b, 0);
	expect_fail("unknown value type", &b, "unknown value type 99");

	rb_header(&b, 3, 0, 1);
	rb_str(&b, "k");
	rb_u32(&b, GGUF_VT_ARRAY);
	rb_u32(&b, GGUF_VT_UINT32);
	rb_u64(&b, 1ull << 61);
	rb_u64(&b, 0);
	expect_fail("array count past end", &b, "array of 2305843009213693952 u32 values runs past");

	rb_header(&b, 3, 0, 1);
	rb_str(&b, "k");
	rb_u32(&b, GGUF_VT_ARRAY);
	rb_u32(&b, GGUF_VT_STRING);
	rb_u64(&b, 1ull << 40);
	rb_u64(&b, 0);
	expect_fail("string array count past end", &b, "cannot fit");

	rb_header(&b, 3, 0, 1);
	rb_str(&b, "k");
	rb_u32(&b, GGUF_VT_ARRAY);
	rb_u32(&b, GGUF_VT_ARRAY);
	rb_u64(&b, 1);
	rb_u64(&b, 0);
	expect_fail("array of arrays", &b, "arrays of arrays");

	rb_header(&b, 3, 0, 1);
	rb_str(&b, "k");
	rb_u32(&b, GGUF_VT_BOOL);
	rb_put(&b, "\x02", 1);
	expect_fail("bool 2", &b, "boolean has value 2");

	rb_header(&b, 3, 0, 2);
	rb_str(&b, "k"); rb_u32(&b, GGUF_VT_UINT8); rb_put(&b, "\x01", 1);
	rb_str(&b, "k"); rb_u32(&b, GGUF_VT_UINT8); rb_put(&b, "\x02", 1);
	expect_fail("duplicate key", &b, "duplicate metadata key 'k'");

	rb_header(&b, 3, 0, 1);
	rb_str(&b, "general.alignment"); rb_u32(&b, GGUF_VT_UINT32); rb_u32(&b, 0);
	expect_fail("alignment 0", &b, "general.alignment is 0");

	rb_header(&b, 3, 0, 1);
	rb_str(&b, "general.alignment"); rb_u32(&b, GGUF_VT_UINT32); rb_u32(&b, 24);
	expect_fail("alignment 24", &b, "general.alignment is 24 (must be a power of two, 8 or more)");

	/* Less than the specification's 8: floats at odd addresses. */
	rb_header(&b, 3, 0, 1);
	rb_str(&b, "general.alignment"); rb_u32(&b, GGUF_VT_UINT32); rb_u32(&b, 2);
	expect_fail("alignment 2", &b, "general.alignment is 2 (must be a power of two, 8 or more)");

	rb_header(&b, 3, 0, 1);
	rb_str(&b, "general.alignment"); rb_str(&b, "32");
	b.n -= 10;   /* rewrite: key, then type STRING, then the string */
	rb_u32(&b, GGUF_VT_STRING); rb_str(&b, "32");
	expect_fail("alignment of type string", &b, "general.alignment has type string");

	{
		uint64_t ne5[5] = { 32, 1, 1, 1, 1 };
		rb_header(&b, 3, 1, 0);
		rb_tensor(&b, "t", 5, ne5, GGML_TYPE_F32, 0);
		rb_pad(&b, 32, 128);
		expect_fail("n_dims 5", &b, "tensor 't' has 5 dimensions (must be 1 to 4)");
	}
	{
		uint64_t ne3[3] = { 1ull << 32, 1ull << 32, 1ull << 10 };
		rb_header(&b, 3, 1, 0);
		rb_tensor(&b, "big", 3, ne3, GGML_TYPE_F32, 0);
		rb_pad(&b, 32, 128);
		expect_fail("element overflow", &b, "element count overflows");
	}
	{
		uint64_t ne1[1] = { 1ull << 62 };
		rb_header(&b, 3, 1, 0);
		rb_tensor(&b, "wide", 1, ne1, GGML_TYPE_F32, 0);
		rb_pad(&b, 32, 128);
		expect_fail("byte size overflow", &b, "byte size overflows");
	}
	{
		uint64_t neg[1] = { (uint64_t)-32 };
		rb_header(&b, 3, 1, 0);
		rb_tensor(&b, "neg", 1, neg, GGML_TYPE_F32, 0);
		rb_pad(&b, 32, 128);
		expect_fail("negative dimension", &b, "negative as a signed count");
	}
	rb_header(&b, 3, 1, 0);
	rb_tensor(&b, "t", 2, ne2, 99, 0);
	rb_pad(&b, 32, 256);
	expect_fail("unknown tensor type", &b, "unknown tensor type 99");

	{
		uint64_t ne1[1] = { 33 };
		rb_header(&b, 3, 1, 0);
		rb_tensor(&b, "q", 1, ne1, GGML_TYPE_Q4_0, 0);
		rb_pad(&b, 32, 256);
		expect_fail("row not multiple of block", &b, "not a multiple of the Q4_0 block size 32");
	}
	rb_header(&b, 3, 1, 0);
	rb_tensor(&b, "t", 2, ne2, GGML_TYPE_F32, 3);
	rb_pad(&b, 32, 512);
	expect_fail("misaligned offset", &b, "data offset 3 is not a multiple of the alignment 32");

	rb_header(&b, 3, 2, 0);
	rb_tensor(&b, "a", 2, ne2, GGML_TYPE_F32, 0);
	rb_tensor(&b, "b", 2, ne2, GGML_TYPE_F32, 128);
	rb_pad(&b, 32, 512);
	expect_fail("overlap", &b, "overlap");

	/* An empty tensor between two that overlap does not hide them. */
	{
		uint64_t ne0[1] = { 0 };
		rb_header(&b, 3, 3, 0);
		rb_tensor(&b, "a", 2, ne2, GGML_TYPE_F32, 0);
		rb_tensor(&b, "e", 1, ne0, GGML_TYPE_F32, 64);
		rb_tensor(&b, "b", 2, ne2, GGML_TYPE_F32, 128);
		rb_pad(&b, 32, 512);
		expect_fail("overlap around an empty tensor", &b, "tensors 'a' and 'b' overlap");
	}

	rb_header(&b, 3, 2, 0);
	rb_tensor(&b, "a", 2, ne2, GGML_TYPE_F32, 0);
	rb_tensor(&b, "a", 2, ne2, GGML_TYPE_F32, 256);
	rb_pad(&b, 32, 512);
	expect_fail("duplicate tensor", &b, "duplicate tensor name 'a'");

	rb_header(&b, 3, 1, 0);
	rb_tensor(&b, "t", 2, ne2, GGML_TYPE_F32, 0);
	rb_pad(&b, 32, 100);   /* needs 256 */
	expect_fail("data past end", &b, "runs past the end of the file");

	rb_header(&b, 3, 1, 0);
	rb_tensor(&b, "t", 2, ne2, GGML_TYPE_F32, 0xFFFFFFFFFFFFFFE0ull);
	rb_pad(&b, 32, 256);
	expect_fail("offset that wraps", &b, "runs past the end of the file");

	rb_header(&b, 3, 1, 0);
	rb_tensor(&b, "t", 2, ne2, GGML_TYPE_F32, 0);
	expect_fail("no data section", &b, "truncated");
}

/* --- round trip --- */

static uint8_t *
build_valid(size_t *len)
{
	struct gguf_writer *w = gguf_writer_new(32);
	uint8_t u8 = 200, *buf;
	int8_t i8 = -100;
	uint16_t u16 = 60000;
	int16_t i16 = -30000;
	int32_t i32 = -2000000000;
	uint64_t u64 = 18000000000000000000ull;
	int64_t i64 = -9000000000000000000ll;
	double f64 = 3.141592653589793;
	float f32[3] = { 1.5f, -2.25f, 1e-7f };
	int32_t ai32[4] = { -1, 0, 1, 2147483647 };
	uint8_t abool[3] = { 1, 0, 1 };
	const char *strs[3] = { "hello", "", "w\xc3\xb6rld" };
	float data[64];
	uint64_t ne_a[2] = { 32, 2 }, ne_b[1] = { 32 };

	for (int i = 0; i < 64; i++)
		data[i] = (float)i;
	gguf_w_scalar(w, "t.u8", GGUF_VT_UINT8, &u8);
	gguf_w_scalar(w, "t.i8", GGUF_VT_INT8, &i8);
	gguf_w_scalar(w, "t.u16", GGUF_VT_UINT16, &u16);
	gguf_w_scalar(w, "t.i16", GGUF_VT_INT16, &i16);
	gguf_w_u32(w, "t.u32", 4000000000u);
	gguf_w_i32(w, "t.i32", i32);
	gguf_w_f32(w, "t.f32", 0.5f);
	gguf_w_bool(w, "t.bool", 1);
	gguf_w_str(w, "t.str", "natter \xe2\x9c\x93");
	gguf_w_scalar(w, "t.u64", GGUF_VT_UINT64, &u64);
	gguf_w_scalar(w, "t.i64", GGUF_VT_INT64, &i64);
	gguf_w_scalar(w, "t.f64", GGUF_VT_FLOAT64, &f64);
	gguf_w_arr(w, "t.arr_f32", GGUF_VT_FLOAT32, f32, 3);
	gguf_w_arr(w, "t.arr_i32", GGUF_VT_INT32, ai32, 4);
	gguf_w_arr(w, "t.arr_bool", GGUF_VT_BOOL, abool, 3);
	gguf_w_arr(w, "t.arr_empty", GGUF_VT_UINT8, NULL, 0);
	gguf_w_arr_str(w, "t.arr_str", strs, 3);
	gguf_w_tensor(w, "a", GGML_TYPE_F32, 2, ne_a, data, NULL, NULL);
	gguf_w_tensor(w, "b", GGML_TYPE_Q8_0, 1, ne_b, NULL, NULL, NULL);
	if (gguf_writer_to_buffer(w, &buf, len) < 0)
		buf = NULL;
	gguf_writer_free(w);
	return buf;
}

static void
test_round_trip(void)
{
	size_t len;
	uint8_t *buf = build_valid(&len);
	struct gguf_file *f;
	char err[512];
	uint64_t u;
	int64_t i;
	double d;
	int bl;
	char *s;
	const struct gguf_kv *kv;
	const struct gguf_tensor *t;

	CHECK(buf != NULL, "writer failed");
	if (!buf)
		return;
	CHECK(gguf_open_buffer(buf, len, "rt.gguf", &f, err, sizeof(err)) == 0, "open: %s", err);
	if (!f) {
		free(buf);
		return;
	}
	CHECK(f->version == 3 && f->n_kv == 17 && f->n_tensors == 2, "counts %u %llu %llu", f->version,
	    (unsigned long long)f->n_kv, (unsigned long long)f->n_tensors);
	CHECK(gguf_get_u64(f, "t.u8", &u) == 0 && u == 200, "u8");
	CHECK(gguf_get_i64(f, "t.i8", &i) == 0 && i == -100, "i8");
	CHECK(gguf_get_u64(f, "t.u16", &u) == 0 && u == 60000, "u16");
	CHECK(gguf_get_i64(f, "t.i16", &i) == 0 && i == -30000, "i16");
	CHECK(gguf_get_u64(f, "t.u32", &u) == 0 && u == 4000000000u, "u32");
	CHECK(gguf_get_i64(f, "t.i32", &i) == 0 && i == -2000000000, "i32");
	CHECK(gguf_get_f64(f, "t.f32", &d) == 0 && d == 0.5, "f32");
	CHECK(gguf_get_bool(f, "t.bool", &bl) == 0 && bl == 1, "bool");
	s = gguf_get_str(f, "t.str");
	CHECK(s && strcmp(s, "natter \xe2\x9c\x93") == 0, "str");
	free(s);
	CHECK(gguf_get_u64(f, "t.u64", &u) == 0 && u == 18000000000000000000ull, "u64");
	CHECK(gguf_get_i64(f, "t.i64", &i) == 0 && i == -9000000000000000000ll, "i64");
	CHECK(gguf_get_f64(f, "t.f64", &d) == 0 && d == 3.141592653589793, "f64");
	CHECK(gguf_get_i64(f, "t.u64", &i) < 0, "u64 too large for i64 must be refused");
	CHECK(gguf_get_u64(f, "t.i8", &u) < 0, "negative i8 must not read as unsigned");
	kv = gguf_get_arr(f, "t.arr_f32", GGUF_VT_FLOAT32);
	CHECK(kv && kv->val.v.arr.n == 3 && gguf_arr_f64(&kv->val, 1) == -2.25 &&
	    (float)gguf_arr_f64(&kv->val, 2) == 1e-7f, "arr f32");
	kv = gguf_get_arr(f, "t.arr_i32", GGUF_VT_INT32);
	CHECK(kv && kv->val.v.arr.n == 4 && gguf_arr_i64(&kv->val, 0) == -1 &&
	    gguf_arr_i64(&kv->val, 3) == 2147483647, "arr i32");
	kv = gguf_get_arr(f, "t.arr_bool", GGUF_VT_BOOL);
	CHECK(kv && kv->val.v.arr.n == 3 && gguf_arr_i64(&kv->val, 1) == 0, "arr bool");
	kv = gguf_get_arr(f, "t.arr_empty", GGUF_VT_UINT8);
	CHECK(kv && kv->val.v.arr.n == 0, "empty arr");
	kv = gguf_get_arr(f, "t.arr_str", GGUF_VT_STRING);
	CHECK(kv && kv->val.v.arr.n == 3, "arr str");
	if (kv) {
		const uint8_t *p = kv->val.v.arr.data;
		struct gguf_str a = gguf_arr_str_next(&p), b = gguf_arr_str_next(&p), c = gguf_arr_str_next(&p);
		CHECK(a.len == 5 && memcmp(a.ptr, "hello", 5) == 0 && b.len == 0 && c.len == 6 &&
		    memcmp(c.ptr, "w\xc3\xb6rld", 6) == 0, "arr str contents");
	}
	CHECK(gguf_get_arr(f, "t.arr_str", GGUF_VT_INT32) == NULL, "wrong element type must be refused");
	CHECK(gguf_find_kv(f, "absent") == NULL, "absent key");
	t = gguf_find_tensor(f, "a");
	CHECK(t && t->type == GGML_TYPE_F32 && t->ne[0] == 32 && t->ne[1] == 2 && t->nbytes == 256 &&
	    ((const float *)t->data)[63] == 63.0f && ((uintptr_t)t->data - (uintptr_t)buf) % 32 == 0,
	    "tensor a");
	t = gguf_find_tensor(f, "b");
	CHECK(t && t->type == GGML_TYPE_Q8_0 && t->nbytes == 34 && t->offset % 32 == 0, "tensor b");
	gguf_close(f);

	/* Truncated at every byte: each refused, none crashes, each names a reason. */
	{
		int refused = 0, truncated_msg = 0;
		for (size_t cut = 0; cut < len; cut++) {
			uint8_t *copy = malloc(cut ? cut : 1);
			memcpy(copy, buf, cut);
			err[0] = 0;
			if (gguf_open_buffer(copy, cut, "cut.gguf", &f, err, sizeof(err)) < 0)
				refused++;
			else
				gguf_close(f);
			if (strstr(err, "truncated") || strstr(err, "past the end") ||
			    strstr(err, "not a GGUF") || strstr(err, "cannot fit") || strstr(err, "impossible"))
				truncated_msg++;
			free(copy);
		}
		/* The file's last tensor is padded: cutting only padding still leaves
		 * the data whole, so allow those few offsets to load. */
		CHECK(refused >= (int)len - 32, "only %d of %zu truncations refused", refused, len);
		CHECK(truncated_msg == refused, "%d of %d refusals explain the truncation", truncated_msg, refused);
	}
	free(buf);
}

/* natter's own files (GGUF_WRITE_ALIGNMENT): every tensor's data on a
 * cache line of the file, whatever the sizes before it, and
 * general.alignment saying so, so that any reader finds the data; the
 * GGUF default writes no such key (test_round_trip counts the keys). */
static void
test_write_alignment(void)
{
	struct gguf_writer *w = gguf_writer_new(GGUF_WRITE_ALIGNMENT);
	struct gguf_file *f = NULL;
	float data[3][7];
	const uint64_t ne[3] = { 3, 5, 7 };
	uint8_t *buf = NULL;
	size_t len = 0;
	uint64_t a = 0;
	char err[512];

	CHECK(w != NULL, "writer");
	if (!w)
		return;
	/* An odd header: the data section must still start on a line. */
	gguf_w_str(w, "t.name", "x");
	for (int i = 0; i < 3; i++) {
		char name[8];
		for (int k = 0; k < 7; k++)
			data[i][k] = (float)(10 * i + k);
		snprintf(name, sizeof(name), "t%d", i);
		gguf_w_tensor(w, name, GGML_TYPE_F32, 1, &ne[i], data[i], NULL, NULL);
	}
	CHECK(gguf_writer_to_buffer(w, &buf, &len) == 0, "write");
	gguf_writer_free(w);
	if (!buf)
		return;
	CHECK(gguf_open_buffer(buf, len, "a64.gguf", &f, err, sizeof(err)) == 0, "open: %s", err);
	if (f) {
		CHECK(gguf_get_u64(f, "general.alignment", &a) == 0 && a == 64, "general.alignment %llu",
		    (unsigned long long)a);
		CHECK(f->alignment == 64 && f->data_offset % 64 == 0, "alignment %llu, data at %llu",
		    (unsigned long long)f->alignment, (unsigned long long)f->data_offset);
		CHECK(f->n_tensors == 3, "%llu tensors", (unsigned long long)f->n_tensors);
		for (uint64_t i = 0; i < f->n_tensors && i < 3; i++) {
			const struct gguf_tensor *t = &f->tensors[i];
			const uint64_t at = f->data_offset + t->offset;   /* in the file */
			CHECK(at % 64 == 0, "tensor %llu at %llu", (unsigned long long)i, (unsigned long long)at);
			CHECK(t->ne[0] == ne[i] && memcmp(t->data, data[i], ne[i] * sizeof(float)) == 0,
			    "tensor %llu's values", (unsigned long long)i);
		}
		gguf_close(f);
	}
	free(buf);
}

/* GGUF_OPEN_COPY reads a file larger than one chunk of the copy (64 MiB,
 * gguf.c) on several threads: every byte where it belongs.  The file is
 * a header of 64 bytes and a tensor of NE floats; SIZE, if not 0, the
 * size it must come to.  PAD: a string in the header too, so that the
 * data starts 32 bytes into a cache line of the file, and must start on
 * a line of the copy all the same. */
static void
test_copy(uint64_t ne, uint64_t size, int pad)
{
	char path[] = "/tmp/natter-test-gguf-XXXXXX", err[512];
	struct gguf_file *f = NULL;
	const struct gguf_tensor *t;
	struct rb b = { 0 };
	int fd = mkstemp(path), ok = fd >= 0;
	uint32_t *buf = malloc((size_t)1 << 20);
	uint64_t w = 0;

	rb_header(&b, 3, 1, pad ? 1 : 0);
	if (pad) {
		/* 24 bytes of header, 23 + L of this, 35 of the tensor's. */
		size_t l = 0;
		while ((24 + 23 + l + 35 + 31) / 32 * 32 % 64 != 32)
			l++;
		rb_str(&b, "pad");
		rb_u32(&b, GGUF_VT_STRING);
		rb_u64(&b, l);
		for (size_t i = 0; i < l; i++)
			rb_put(&b, "p", 1);
	}
	rb_tensor(&b, "big", 1, &ne, GGML_TYPE_F32, 0);
	rb_pad(&b, 32, 0);
	CHECK(b.n % 64 == (pad ? 32u : 0u), "the data starts %zu bytes into the file's line", b.n % 64);
	ok = ok && buf && write(fd, b.p, b.n) == (ssize_t)b.n;
	/* Word i of the data is i * 2654435761: no two chunks alike. */
	while (ok && w < ne) {
		size_t n = ne - w < ((uint64_t)1 << 18) ? (size_t)(ne - w) : (size_t)1 << 18;
		for (size_t i = 0; i < n; i++)
			buf[i] = (uint32_t)((w + i) * 2654435761u);
		ok = write(fd, buf, n * 4) == (ssize_t)(n * 4);
		w += n;
	}
	if (fd >= 0)
		close(fd);
	CHECK(ok, "could not write %s", path);
	CHECK(!size || b.n + ne * 4 == size, "the file is %llu bytes, not %llu", (unsigned long long)(b.n + ne * 4),
	    (unsigned long long)size);
	if (ok && gguf_open_flags(path, GGUF_OPEN_COPY, &f, err, sizeof(err)) == 0) {
		uint64_t bad = 0;
		t = gguf_find_tensor(f, "big");
		CHECK(f->copied && t && t->nbytes == ne * 4 && f->size == b.n + ne * 4, "the copy of %llu bytes: copied "
		    "%d, tensor %p", (unsigned long long)f->size, f->copied, (const void *)t);
		for (uint64_t i = 0; t && i < ne; i++)
			bad += ((const uint32_t *)t->data)[i] != (uint32_t)(i * 2654435761u);
		CHECK(bad == 0, "%llu words of the copy of %llu bytes differ from the file", (unsigned long long)bad,
		    (unsigned long long)f->size);
		CHECK(t && (uintptr_t)t->data % 64 == 0, "the copy's data starts %u bytes into a cache line",
		    t ? (unsigned)((uintptr_t)t->data % 64) : 0);
		CHECK(memcmp(f->map, "GGUF", 4) == 0 && (!pad || gguf_find_kv(f, "pad")), "the header as in the file");
		/* Made writable and read-only again, as the load's packing does. */
		const int writable = gguf_copy_writable(f, 1) == 0;
		CHECK(writable, "the copy made writable");
		if (t && writable) {
			((uint32_t *)(uintptr_t)t->data)[ne - 1] ^= 1;
			bad = ((const uint32_t *)t->data)[ne - 1] != (uint32_t)((ne - 1) * 2654435761u ^ 1);
			CHECK(!bad, "a write to the writable copy");
		}
		CHECK(gguf_copy_writable(f, 0) == 0, "the copy made read-only again");
		gguf_close(f);
	} else if (ok) {
		CHECK(0, "open with GGUF_OPEN_COPY: %s", err);
	}
	unlink(path);
	free(buf);
	free(b.p);
}

/* GGUF_OPEN_COPY of a file that is no GGUF: refused as a mapping of it
 * is, the message naming the file and the problem. */
static void
test_copy_bad(void)
{
	char path[] = "/tmp/natter-test-gguf-XXXXXX", err[512] = "";
	struct gguf_file *f = NULL;
	int fd = mkstemp(path), ok = fd >= 0;
	static const char junk[256] = "GGML this is not a model";

	ok = ok && write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk);
	if (fd >= 0)
		close(fd);
	CHECK(ok, "could not write %s", path);
	if (ok) {
		const int rc = gguf_open_flags(path, GGUF_OPEN_COPY, &f, err, sizeof(err));
		CHECK(rc < 0 && !f, "a file that is no GGUF was accepted");
		CHECK(strncmp(err, path, strlen(path)) == 0 && strstr(err, "bad magic"), "the message: %s", err);
		gguf_close(f);
	}
	unlink(path);
}

int
main(void)
{
	/* Two whole chunks and part of a third (148 MiB), the data 32 bytes
	 * into a line of the file; exactly two. */
	test_copy((uint64_t)37 << 20, 0, 1);
	test_copy(((uint64_t)128 << 20) / 4 - 64 / 4, (uint64_t)128 << 20, 0);
	test_copy_bad();
	test_round_trip();
	test_write_alignment();
	test_attacks();
	return test_done("test-gguf");
}
