/* lora.c -- LoRA adapter files: validated against a base model, converted to float32; the writer. */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natter/gguf-write.h"
#include "natter/gguf.h"
#include "natter/llm.h"
#include "natter/lora.h"
#include "natter/quant.h"
#include "natter/text.h"

struct lora_adapter {
	char *path;
	char name[128];
	char arch[32];            /* general.architecture */
	char sha256[65];
	char *base_name;           /* owned; NULL: the file does not say (lora_base_name) */
	char *base_file;           /* owned; NULL likewise (lora_base_file) */
	float alpha, user_scale;
	int n, n_ignored;
	struct lora_pair *pairs;   /* (n) */
	char **names;              /* (n) owned copies of the base names */
	float **data;              /* (2n) owned: a, b of each pair */
};

void
lora_free(struct lora_adapter *a)
{
	if (!a)
		return;
	for (int i = 0; i < a->n; i++) {
		free(a->names[i]);
		free(a->data[2 * i]);
		free(a->data[2 * i + 1]);
	}
	free(a->names);
	free(a->data);
	free(a->pairs);
	free(a->path);
	free(a->base_name);
	free(a->base_file);
	free(a);
}

/* A file's tensor name made safe to print (it may hold any bytes). */
static const char *
shown(struct gguf_str s, char *buf, size_t cap)
{
	size_t j = 0;
	for (uint64_t i = 0; i < s.len && j + 4 < cap; i++) {
		unsigned char ch = (unsigned char)s.ptr[i];
		buf[j++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	if (s.len > cap - 4 && cap > 4) {
		buf[j++] = '.';
		buf[j++] = '.';
		buf[j++] = '.';
	}
	buf[j] = 0;
	return buf;
}

static int
ends_with(struct gguf_str s, const char *suffix)
{
	size_t n = strlen(suffix);
	return s.len >= n && memcmp(s.ptr + s.len - n, suffix, n) == 0;
}

static float
pair_scale(float user, float alpha, int rank)
{
	return alpha != 0.0f ? user * alpha / (float)rank : user;
}

/* Converts tensor T (NE rows of ROW elements, any readable type) to a new float array. */
static float *
to_f32(const struct gguf_tensor *t, const char *path, char *err, size_t errlen)
{
	const struct q_traits *qt = q_traits_get(t->type);
	uint64_t n = t->ne[0] * t->ne[1];
	float *out;
	char nb[128];

	if (!qt->supported || !qt->to_float) {
		snprintf(err, errlen, "%s: tensor '%s' has type %s, which natter cannot read", path,
		    shown(t->name, nb, sizeof(nb)), ggml_type_info_get(t->type)->name);
		return NULL;
	}
	out = malloc(n * sizeof(float));
	if (!out) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	qt->to_float(t->data, out, (int64_t)n);
	for (uint64_t i = 0; i < n; i++) {
		if (!isfinite(out[i])) {
			snprintf(err, errlen, "%s: tensor '%s' holds a value that is not a finite number "
			    "(element %llu)", path, shown(t->name, nb, sizeof(nb)), (unsigned long long)i);
			free(out);
			return NULL;
		}
	}
	return out;
}

/* Looks up the tensor named NAME[0..LEN) + SUFFIX in F. */
static const struct gguf_tensor *
find_with_suffix(const struct gguf_file *f, const char *name, size_t len, const char *suffix)
{
	char buf[512];
	if (len + strlen(suffix) >= sizeof(buf))
		return NULL;
	memcpy(buf, name, len);
	strcpy(buf + len, suffix);
	return gguf_find_tensor(f, buf);
}

/* Checks the metadata of an adapter file F against the base architecture. */
static int
check_meta(const struct gguf_file *f, const char *path, const char *base_arch, struct lora_adapter *a,
	   char *err, size_t errlen)
{
	char *s;
	const struct gguf_kv *kv;
	int ok;

	s = gguf_get_str(f, "general.type");
	if (!s || strcmp(s, "adapter") != 0) {
		if (s)
			snprintf(err, errlen, "%s: not an adapter (general.type is \"%.40s\"; a model file "
			    "cannot be used as an adapter)", path, s);
		else
			snprintf(err, errlen, "%s: not an adapter (general.type is missing; natter reads "
			    "adapters in llama.cpp's GGUF format)", path);
		free(s);
		return -1;
	}
	free(s);
	s = gguf_get_str(f, "adapter.type");
	ok = s && strcmp(s, "lora") == 0;
	if (!ok) {
		snprintf(err, errlen, "%s: adapter type %s%.40s%s is not supported (natter reads LoRA adapters)",
		    path, s ? "\"" : "", s ? s : "(missing)", s ? "\"" : "");
		free(s);
		return -1;
	}
	free(s);
	s = gguf_get_str(f, "general.architecture");
	if (!s || strcmp(s, base_arch) != 0) {
		snprintf(err, errlen, "%s: the adapter is for architecture '%.40s' but the model is '%s'",
		    path, s ? s : "(missing)", base_arch);
		free(s);
		return -1;
	}
	snprintf(a->arch, sizeof(a->arch), "%s", s);
	free(s);
	s = gguf_get_str(f, "general.name");
	snprintf(a->name, sizeof(a->name), "%s", s ? s : "");
	free(s);
	/* The base it was trained on.  Several bases (a merge's parents) name
	 * none in particular: only a single one is taken.  An empty string
	 * says nothing. */
	{
		int64_t nb;
		if (gguf_get_i64(f, "general.base_model.count", &nb) == 0 && nb == 1)
			a->base_name = gguf_get_str(f, "general.base_model.0.name");
		a->base_file = gguf_get_str(f, "natter.base_model.file");
		if (a->base_name && !*a->base_name) {
			free(a->base_name);
			a->base_name = NULL;
		}
		if (a->base_file && !*a->base_file) {
			free(a->base_file);
			a->base_file = NULL;
		}
	}

	a->alpha = 0.0f;
	kv = gguf_find_kv(f, "adapter.lora.alpha");
	if (kv) {
		double v;
		int64_t iv;
		if (gguf_get_f64(f, "adapter.lora.alpha", &v) == 0) {
			/* float */
		} else if (gguf_get_i64(f, "adapter.lora.alpha", &iv) == 0) {
			v = (double)iv;
		} else {
			snprintf(err, errlen, "%s: adapter.lora.alpha is a %s, not a number", path,
			    gguf_vtype_name(kv->val.type));
			return -1;
		}
		if (!isfinite(v) || fabs(v) > LORA_ALPHA_MAX) {
			snprintf(err, errlen, "%s: adapter.lora.alpha is %s", path,
			    isfinite(v) ? "out of range (-1e6 to 1e6)" : "not a finite number");
			return -1;
		}
		a->alpha = (float)v;
	}
	return 0;
}

int
lora_open_gguf(const char *path, const struct gguf_file *base, const char *base_arch, float scale,
	       lora_digest_fn digest, struct lora_adapter **out, char *err, size_t errlen)
{
	struct gguf_file *f = NULL;
	struct lora_adapter *a;
	char nb[128], nb2[128];

	*out = NULL;
	if (!isfinite(scale)) {
		snprintf(err, errlen, "%s: the adapter scale is not a finite number", path);
		return -1;
	}
	a = calloc(1, sizeof(*a));
	if (!a || !(a->path = strdup(path))) {
		free(a);
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	a->user_scale = scale;
	if (gguf_open(path, &f, err, errlen) < 0)
		goto fail;
	if (check_meta(f, path, base_arch, a, err, errlen) < 0)
		goto fail;
	if (digest)
		digest(f->map, f->size, a->sha256);

	/* Every tensor must be a half of a pair (or a skipped norm); each pair is
	 * taken when its lora_a is met, so the pairs keep the file's order. */
	a->pairs = calloc(f->n_tensors + 1, sizeof(*a->pairs));
	a->names = calloc(f->n_tensors + 1, sizeof(*a->names));
	a->data = calloc(2 * f->n_tensors + 2, sizeof(*a->data));
	if (!a->pairs || !a->names || !a->data) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const struct gguf_tensor *t = &f->tensors[i], *ta, *tb, *w;
		size_t blen;
		struct lora_pair *p;

		if (ends_with(t->name, "_norm.weight")) {
			a->n_ignored++;
			continue;
		}
		if (ends_with(t->name, ".lora_b")) {
			/* Its partner is checked here; the pair is built from the lora_a. */
			if (!find_with_suffix(f, t->name.ptr, t->name.len - 7, ".lora_a")) {
				snprintf(err, errlen, "%s: tensor '%s' has no matching '.lora_a' half", path,
				    shown(t->name, nb, sizeof(nb)));
				goto fail;
			}
			continue;
		}
		if (!ends_with(t->name, ".lora_a")) {
			snprintf(err, errlen, "%s: unknown tensor '%s' (an adapter holds only X.lora_a / X.lora_b "
			    "pairs)", path, shown(t->name, nb, sizeof(nb)));
			goto fail;
		}
		blen = t->name.len - 7;
		ta = t;
		tb = find_with_suffix(f, t->name.ptr, blen, ".lora_b");
		if (!tb) {
			snprintf(err, errlen, "%s: tensor '%s' has no matching '.lora_b' half", path,
			    shown(t->name, nb, sizeof(nb)));
			goto fail;
		}
		p = &a->pairs[a->n];
		a->names[a->n] = strndup(t->name.ptr, blen);
		if (!a->names[a->n]) {
			snprintf(err, errlen, "%s: out of memory", path);
			goto fail;
		}
		p->base = a->names[a->n];
		a->n++;   /* from here on lora_free releases this pair's memory */
		w = gguf_find_tensor(base, p->base);
		if (!w) {
			snprintf(err, errlen, "%s: tensor '%s' adapts '%s', which the model does not have", path,
			    shown(t->name, nb, sizeof(nb)), p->base);
			goto fail;
		}
		if (w->n_dims < 2) {
			snprintf(err, errlen, "%s: tensor '%s' adapts '%s', which is a vector, not a matrix", path,
			    shown(t->name, nb, sizeof(nb)), p->base);
			goto fail;
		}
		if (w->n_dims > 2 && (w->ne[2] != 1 || w->ne[3] != 1)) {
			snprintf(err, errlen, "%s: tensor '%s' adapts '%s', a stack of %llu matrices; natter "
			    "applies adapters to plain matrices only", path, shown(t->name, nb, sizeof(nb)), p->base,
			    (unsigned long long)w->ne[2]);
			goto fail;
		}
		if (ta->n_dims != 2 || tb->n_dims != 2) {
			snprintf(err, errlen, "%s: tensor '%s' is not a matrix (%u dims)", path,
			    shown(ta->n_dims != 2 ? ta->name : tb->name, nb, sizeof(nb)),
			    ta->n_dims != 2 ? ta->n_dims : tb->n_dims);
			goto fail;
		}
		if (ta->ne[1] != tb->ne[0]) {
			snprintf(err, errlen, "%s: rank mismatch: '%s' has rank %llu but '%s' has rank %llu", path,
			    shown(ta->name, nb, sizeof(nb)), (unsigned long long)ta->ne[1],
			    shown(tb->name, nb2, sizeof(nb2)), (unsigned long long)tb->ne[0]);
			goto fail;
		}
		if (ta->ne[0] != w->ne[0] || ta->ne[1] < 1 || ta->ne[1] > 65536) {
			snprintf(err, errlen, "%s: tensor '%s' has shape [%llu, %llu], expected [%llu, r] for '%s' "
			    "of shape [%llu, %llu]", path, shown(ta->name, nb, sizeof(nb)),
			    (unsigned long long)ta->ne[0], (unsigned long long)ta->ne[1],
			    (unsigned long long)w->ne[0], p->base, (unsigned long long)w->ne[0],
			    (unsigned long long)w->ne[1]);
			goto fail;
		}
		if (tb->ne[1] != w->ne[1]) {
			snprintf(err, errlen, "%s: tensor '%s' has shape [%llu, %llu], expected [%llu, %llu] for '%s' "
			    "of shape [%llu, %llu]", path, shown(tb->name, nb, sizeof(nb)),
			    (unsigned long long)tb->ne[0], (unsigned long long)tb->ne[1],
			    (unsigned long long)ta->ne[1], (unsigned long long)w->ne[1], p->base,
			    (unsigned long long)w->ne[0], (unsigned long long)w->ne[1]);
			goto fail;
		}
		p->n_in = (int)w->ne[0];
		p->n_out = (int)w->ne[1];
		p->rank = (int)ta->ne[1];
		a->data[2 * (a->n - 1)] = to_f32(ta, path, err, errlen);
		if (!a->data[2 * (a->n - 1)])
			goto fail;
		a->data[2 * (a->n - 1) + 1] = to_f32(tb, path, err, errlen);
		if (!a->data[2 * (a->n - 1) + 1])
			goto fail;
		p->a = a->data[2 * (a->n - 1)];
		p->b = a->data[2 * (a->n - 1) + 1];
		p->scale = pair_scale(scale, a->alpha, p->rank);
	}
	if (a->n == 0) {
		snprintf(err, errlen, "%s: the adapter holds no LoRA tensors", path);
		goto fail;
	}
	gguf_close(f);
	*out = a;
	return 0;
fail:
	gguf_close(f);
	lora_free(a);
	return -1;
}

int
lora_open(const char *path, const struct llm_model *base, float scale, lora_digest_fn digest,
	  struct lora_adapter **out, char *err, size_t errlen)
{
	return lora_open_gguf(path, llm_model_gguf(base), llm_model_hparams(base)->arch_name, scale, digest,
	    out, err, errlen);
}

int lora_count(const struct lora_adapter *a) { return a->n; }
float lora_scale(const struct lora_adapter *a) { return a->user_scale; }
float lora_alpha(const struct lora_adapter *a) { return a->alpha; }
const char *lora_path(const struct lora_adapter *a) { return a->path; }
const char *lora_name(const struct lora_adapter *a) { return a->name; }
const char *lora_arch(const struct lora_adapter *a) { return a->arch; }
const char *lora_sha256(const struct lora_adapter *a) { return a->sha256; }
int lora_n_ignored(const struct lora_adapter *a) { return a->n_ignored; }
const char *lora_base_name(const struct lora_adapter *a) { return a->base_name ? a->base_name : ""; }
const char *lora_base_file(const struct lora_adapter *a) { return a->base_file ? a->base_file : ""; }

static const char *
base_of(const char *path)
{
	const char *b = strrchr(path, '/');
	return b ? b + 1 : path;
}

/* S as one line a terminal shows as text: sanitized (text.h), newlines and
 * tabs made spaces, cut with "..." past about 160 bytes.  BUF holds CAP >= 8. */
static const char *
one_line(const char *s, char *buf, size_t cap)
{
	size_t n = strlen(s), used, w = text_sanitize(s, n, buf, cap - 4, &used, 1);

	/* Sanitized text has no byte below 0x20 but these two (UTF-8
	 * sequences never hold one). */
	for (size_t i = 0; i < w; i++)
		if (buf[i] == '\n' || buf[i] == '\t')
			buf[i] = ' ';
	if (used < n) {
		memcpy(buf + w, "...", 3);
		w += 3;
	}
	buf[w] = 0;
	return buf;
}

int
lora_base_notice(const struct lora_adapter *a, const char *model_name, const char *model_path, char *buf,
		 size_t cap)
{
	const char *mname = model_name ? model_name : "", *mfile = base_of(model_path ? model_path : "");
	int name_differs = a->base_name && strcmp(a->base_name, mname) != 0;
	int file_differs = a->base_file && strcmp(base_of(a->base_file), mfile) != 0;
	char ad[168], bn[168], bf[168], mn[168], mf[168];

	if (cap)
		buf[0] = 0;
	if (!name_differs && !file_differs)
		return 0;
	one_line(base_of(a->path), ad, sizeof(ad));
	one_line(a->base_name ? a->base_name : "", bn, sizeof(bn));
	one_line(a->base_file ? base_of(a->base_file) : "", bf, sizeof(bf));
	one_line(mname, mn, sizeof(mn));
	one_line(mfile, mf, sizeof(mf));
	/* What the adapter records, then what the model is, each as "name" (file). */
	snprintf(buf, cap, "adapter %s was trained on %s%s%s%s%s%s; this model is %s%s%s%s%s", ad,
	    a->base_name ? "\"" : "", bn, a->base_name ? "\"" : "",
	    a->base_name && a->base_file ? " (" : "", bf, a->base_name && a->base_file ? ")" : "",
	    *mname ? "\"" : "", mn, *mname ? "\" (" : "", mf, *mname ? ")" : "");
	return 1;
}

int
lora_model_notice(const struct lora_adapter *a, const struct llm_model *m, char *buf, size_t cap)
{
	const struct gguf_file *f = llm_model_gguf(m);
	char *name = gguf_get_str(f, "general.name");
	int r = lora_base_notice(a, name, f->path, buf, cap);

	free(name);
	return r;
}

const struct lora_pair *
lora_get(const struct lora_adapter *a, int i)
{
	return i >= 0 && i < a->n ? &a->pairs[i] : NULL;
}

const struct lora_pair *
lora_find(const struct lora_adapter *a, const char *base_name)
{
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->pairs[i].base, base_name) == 0)
			return &a->pairs[i];
	return NULL;
}

void
lora_set_scale(struct lora_adapter *a, float scale)
{
	a->user_scale = scale;
	for (int i = 0; i < a->n; i++)
		a->pairs[i].scale = pair_scale(scale, a->alpha, a->pairs[i].rank);
}

/* --- writing --- */

/* The order of the weights inside one block, as llama.cpp's converter writes them. */
static const char *const kind_order[] = {
	"attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
};

struct wkey {
	long layer;   /* LONG_MAX: outside the blocks */
	int kind;     /* index in kind_order, or its length for the others */
	int index;    /* the caller's order, to keep the sort stable */
};

static struct wkey
key_of(const char *name, int index)
{
	struct wkey k = { 0x7fffffffL, (int)(sizeof(kind_order) / sizeof(kind_order[0])), index };
	char *end;
	if (strncmp(name, "blk.", 4) == 0) {
		long l = strtol(name + 4, &end, 10);
		if (end != name + 4 && *end == '.') {
			k.layer = l;
			for (size_t i = 0; i < sizeof(kind_order) / sizeof(kind_order[0]); i++) {
				size_t n = strlen(kind_order[i]);
				if (strncmp(end + 1, kind_order[i], n) == 0 && strcmp(end + 1 + n, ".weight") == 0)
					k.kind = (int)i;
			}
		}
	}
	return k;
}

static int
cmp_key(const void *x, const void *y)
{
	const struct wkey *a = x, *b = y;
	if (a->layer != b->layer)
		return a->layer < b->layer ? -1 : 1;
	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	return a->index < b->index ? -1 : a->index > b->index;
}

/* Tensor bytes for the writer: one half of a pair converted to the file's type. */
struct wfill {
	const float *src;
	int64_t n;
	enum ggml_type type;
};

static int
fill_tensor(void *ctx, void *buf, size_t nbytes)
{
	const struct wfill *w = ctx;
	if (w->type == GGML_TYPE_F32) {
		memcpy(buf, w->src, nbytes);
		return 0;
	}
	q_traits_get(w->type)->from_float(w->src, buf, w->n);
	return 0;
}

/* The first of V[0..N) that is not a finite number, or would not be one in TYPE (F16 from
 * 65520 up, BF16 from 2^128 - 2^119 up round to infinity), or -1. */
static int64_t
value_unfit(const float *v, int64_t n, enum ggml_type type)
{
	const float big = type == GGML_TYPE_F16 ? 65520.0f : type == GGML_TYPE_BF16 ? 0x1.ff0p127f : INFINITY;

	for (int64_t i = 0; i < n; i++)
		if (!(fabsf(v[i]) < big))
			return i;
	return -1;
}

int
lora_write(const char *path, const struct lora_file_info *info, const struct lora_pair *pairs, int n,
	   char *err, size_t errlen)
{
	struct gguf_writer *w = NULL;
	struct wkey *keys = NULL;
	struct wfill *fills = NULL;
	char name[600];
	int rc = -1;

	if (info->type != GGML_TYPE_F32 && info->type != GGML_TYPE_F16 && info->type != GGML_TYPE_BF16) {
		snprintf(err, errlen, "%s: adapters are written as F32, F16 or BF16, not %s", path,
		    ggml_type_info_get(info->type)->name);
		return -1;
	}
	if (!info->arch || !*info->arch || !isfinite(info->alpha) || n < 1) {
		snprintf(err, errlen, "%s: an adapter needs an architecture, a finite alpha and at least one pair",
		    path);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		const struct lora_pair *p = &pairs[i];
		if (!p->base || !*p->base || strlen(p->base) > 500 || p->n_in < 1 || p->n_out < 1 || p->rank < 1 ||
		    !p->a || !p->b) {
			snprintf(err, errlen, "%s: pair %d (%s) is incomplete", path, i, p->base ? p->base : "no name");
			return -1;
		}
		for (int j = 0; j < i; j++) {
			if (strcmp(pairs[j].base, p->base) == 0) {
				snprintf(err, errlen, "%s: '%s' is adapted twice", path, p->base);
				return -1;
			}
		}
		/* A chat refuses an adapter with a value that is no finite number: none is written. */
		for (int k = 0; k < 2; k++) {
			const float *v = k ? p->b : p->a;
			const int64_t at = value_unfit(v, (int64_t)p->rank * (k ? p->n_out : p->n_in), info->type);
			if (at < 0)
				continue;
			if (isfinite(v[at])) {
				snprintf(err, errlen, "%s: %s.lora_%c holds %g, past the largest %s number; write F32",
				    path, p->base, "ab"[k], (double)v[at], ggml_type_info_get(info->type)->name);
				return LORA_ERR_RANGE;
			}
			snprintf(err, errlen, "%s: %s.lora_%c holds a value that is not a finite number", path,
			    p->base, "ab"[k]);
			return -1;
		}
	}
	w = gguf_writer_new(GGUF_DEFAULT_ALIGNMENT);
	keys = calloc(n, sizeof(*keys));
	fills = calloc(2 * (size_t)n, sizeof(*fills));
	if (!w || !keys || !fills)
		goto nomem;
	if (gguf_w_str(w, "general.architecture", info->arch) < 0 ||
	    gguf_w_str(w, "general.type", "adapter") < 0 ||
	    (info->name && gguf_w_str(w, "general.name", info->name) < 0) ||
	    gguf_w_str(w, "adapter.type", "lora") < 0 ||
	    gguf_w_f32(w, "adapter.lora.alpha", info->alpha) < 0 ||
	    (info->base_name && (gguf_w_u32(w, "general.base_model.count", 1) < 0 ||
	    gguf_w_str(w, "general.base_model.0.name", info->base_name) < 0)) ||
	    (info->base_file && gguf_w_str(w, "natter.base_model.file", info->base_file) < 0) ||
	    (info->config && gguf_w_str(w, "natter.training.config", info->config) < 0))
		goto nomem;
	for (int i = 0; i < n; i++)
		keys[i] = key_of(pairs[i].base, i);
	qsort(keys, n, sizeof(*keys), cmp_key);
	for (int k = 0; k < n; k++) {
		const struct lora_pair *p = &pairs[keys[k].index];
		uint64_t ne_a[2] = { (uint64_t)p->n_in, (uint64_t)p->rank };
		uint64_t ne_b[2] = { (uint64_t)p->rank, (uint64_t)p->n_out };
		struct wfill *fa = &fills[2 * k], *fb = &fills[2 * k + 1];

		*fa = (struct wfill){ p->a, (int64_t)p->rank * p->n_in, info->type };
		*fb = (struct wfill){ p->b, (int64_t)p->n_out * p->rank, info->type };
		snprintf(name, sizeof(name), "%s.lora_a", p->base);
		if (gguf_w_tensor(w, name, info->type, 2, ne_a, NULL, fill_tensor, fa) < 0)
			goto nomem;
		snprintf(name, sizeof(name), "%s.lora_b", p->base);
		if (gguf_w_tensor(w, name, info->type, 2, ne_b, NULL, fill_tensor, fb) < 0)
			goto nomem;
	}
	rc = gguf_writer_write(w, path, err, errlen);
	goto out;
nomem:
	snprintf(err, errlen, "%s: out of memory", path);
out:
	gguf_writer_free(w);
	free(keys);
	free(fills);
	return rc;
}
