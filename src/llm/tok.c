/* tok.c -- SentencePiece-style and byte-level BPE tokenizers over GGUF vocabularies. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natter/gguf.h"
#include "natter/tok.h"
#include "llm/fnv.h"
#include "llm/regex.h"
#include "llm/strbuf.h"
#include "llm/unicode.h"

/* --- pre-tokenizers: tokenizer.ggml.pre names and their split patterns --- */

#define PAT_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define PAT_LLAMA3 "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define PAT_QWEN2 "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* Qwen3.5's (tokenizer.json): Qwen2's, with combining marks (\p{M}) part
 * of a word, not split off as punctuation (Devanagari, decomposed accents). */
#define PAT_QWEN35 "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define PAT_CJK "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+"

struct pretok {
	const char *names;        /* NUL-separated list, ending with an empty name */
	int ignore_merges;        /* a word found whole in the vocabulary is one token */
	const char *pats[6];
};

static const struct pretok pretoks[] = {
	{ "llama-bpe\0llama3\0llama-v3\0falcon3\0dbrx\0smaug-bpe\0chatglm-bpe\0", 1, { PAT_LLAMA3 } },
	{ "qwen2\0stablelm2\0deepseek-r1-qwen\0megrez\0", 0, { PAT_QWEN2 } },
	{ "qwen35\0", 0, { PAT_QWEN35 } },
	{ "gpt-2\0gpt2\0phi-2\0mpt\0olmo\0jais\0jina-es\0jina-de\0roberta-bpe\0", 0, { PAT_GPT2 } },
	{ "deepseek-llm\0", 0, {
		"[\r\n]",
		"\\s?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-\xc6\xbf"
		"\xc7\x84-\xca\x93\xca\x95-\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb-\xcd\xbd"
		"\xcd\xbf\xce\x86\xce\x88-\xce\x8a\xce\x8c\xce\x8e-\xce\xa1\xce\xa3-\xcf\xb5\xcf\xb7-\xd2\x81"
		"\xd2\x8a-\xd4\xaf\xd4\xb1-\xd5\x96\xe1\x82\xa0-\xe1\x83\x85\xe1\x8e\xa0-\xe1\x8f\xb5"
		"\xe1\x8f\xb8-\xe1\x8f\xbd\xe1\xb2\x90-\xe1\xb2\xba\xe1\xb2\xbd-\xe1\xb2\xbf\xe1\xb4\x80-\xe1\xb4\xab"
		"\xe1\xb5\xab-\xe1\xb5\xb7\xe1\xb5\xb9-\xe1\xb6\x9a\xe1\xb8\x80-\xe1\xbc\x95\xe1\xbc\x98-\xe1\xbc\x9d"
		"\xe1\xbc\xa0-\xe1\xbd\x85\xe1\xbd\x88-\xe1\xbd\x8d\xe1\xbd\x90-\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd\x9b"
		"\xe1\xbd\x9d\xe1\xbd\x9f-\xe1\xbd\xbd\xe1\xbe\x80-\xe1\xbe\xb4\xe1\xbe\xb6-\xe1\xbe\xbc\xe1\xbe\xbe"
		"\xe1\xbf\x82-\xe1\xbf\x84\xe1\xbf\x86-\xe1\xbf\x8c\xe1\xbf\x90-\xe1\xbf\x93\xe1\xbf\x96-\xe1\xbf\x9b"
		"\xe1\xbf\xa0-\xe1\xbf\xac\xe1\xbf\xb2-\xe1\xbf\xb4\xe1\xbf\xb6-\xe1\xbf\xbc\xe2\x84\x82\xe2\x84\x87"
		"\xe2\x84\x8a-\xe2\x84\x93\xe2\x84\x95\xe2\x84\x99-\xe2\x84\x9d\xe2\x84\xa4\xe2\x84\xa6\xe2\x84\xa8"
		"\xe2\x84\xaa-\xe2\x84\xad\xe2\x84\xaf-\xe2\x84\xb4\xe2\x84\xb9\xe2\x84\xbc-\xe2\x84\xbf"
		"\xe2\x85\x85-\xe2\x85\x89\xe2\x85\x8e\xe2\x86\x83\xe2\x86\x84\xe2\xb0\x80-\xe2\xb1\xbb"
		"\xe2\xb1\xbe-\xe2\xb3\xa4\xe2\xb3\xab-\xe2\xb3\xae\xe2\xb3\xb2\xe2\xb3\xb3\xea\x99\x80-\xea\x99\xad"
		"\xea\x9a\x80-\xea\x9a\x9b\xea\x9c\xa2-\xea\x9d\xaf\xea\x9d\xb1-\xea\x9e\x87\xea\x9e\x8b-\xea\x9e\x8e"
		"\xea\xad\xb0-\xea\xae\xbf\xef\xac\x80-\xef\xac\x86\xef\xac\x93-\xef\xac\x97\xef\xbc\xa1-\xef\xbc\xba"
		"\xef\xbd\x81-\xef\xbd\x9a\xf0\x90\x90\x80-\xf0\x90\x91\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93"
		"\xf0\x90\x93\x98-\xf0\x90\x93\xbb\xf0\x90\xb2\x80-\xf0\x90\xb2\xb2\xf0\x90\xb3\x80-\xf0\x90\xb3\xb2"
		"\xf0\x91\xa2\xa0-\xf0\x91\xa3\x9f\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+",
		"\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f\xe3\x80\x80-\xe3\x80\x82]+",
		"\\s+$",
		PAT_CJK,
		"\\p{N}+",
	} },
	{ "deepseek-coder\0", 0, {
		"[\r\n]",
		"\\s?\\p{L}+",
		"\\s?\\p{P}+",
		PAT_CJK,
		"\\p{N}",
	} },
	{ "falcon\0", 0, {
		"[\\p{P}\\$\\+<=>\\^~\\|`]+",
		PAT_GPT2,
		"[0-9][0-9][0-9]",
	} },
	{ "starcoder\0refact\0command-r\0smollm\0codeshell\0exaone\0minerva-7b\0", 0, {
		"\\p{N}",
		PAT_GPT2,
	} },
	{ "poro-chat\0bloom\0gpt3-finnish\0", 0, {
		" ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+",
	} },
	{ "viking\0", 0, {
		" ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+",
		"\\p{N}",
	} },
	{ "default\0\0", 0, {   /* also used when the key is absent */
		"[\\p{P}\\$\\+<=>\\^~\\|]+",
		PAT_GPT2,
		"\\p{N}+",
		"[0-9][0-9][0-9]",
	} },
};

static const struct pretok *
pretok_find(const char *name)
{
	for (size_t i = 0; i < sizeof(pretoks) / sizeof(pretoks[0]); i++) {
		for (const char *s = pretoks[i].names; *s; s += strlen(s) + 1)
			if (strcmp(s, name) == 0)
				return &pretoks[i];
	}
	return NULL;
}

/* --- the vocabulary --- */

struct tok_entry {
	const char *text;     /* in the arena, NUL-terminated (may hold NULs too) */
	uint32_t len;
	float score;
	uint8_t type;
	uint8_t rstrip;       /* as a special token, swallows the whitespace after it (Phi-3's) */
};

struct strmap {
	uint64_t mask;
	int32_t *slot;        /* index + 1, 0 = empty */
};

/* Ids of the tokens matched whole in text, grouped by their first byte and
 * longest first within a group, so that the first match is the longest and
 * a position whose byte starts no such token costs one comparison. */
struct special_index {
	int32_t *ids;              /* by first byte, then longest first, then text, then id descending */
	uint32_t *group_end;       /* (as ids) where the run of ids[k]'s first byte and length ends */
	uint32_t start[257];       /* ids[start[b] .. start[b + 1]) begin with byte b */
};

struct tok_vocab {
	enum tok_kind kind;
	int32_t n;
	struct tok_entry *tok;
	char *arena;
	struct strmap map;

	/* BPE merges: "left right" strings with their rank = index. */
	int32_t n_merges;
	const char **merge_text;
	uint32_t *merge_len;
	struct strmap merge_map;
	char *merge_arena;

	int32_t bos, eos, eot, eom, unk, pad;
	int add_bos, add_space_prefix;
	char pre[64];
	struct re *re[6];
	int n_re;
	int ignore_merges;

	int32_t byte_tok[256];     /* SPM <0xNN> tokens, or BPE single-byte tokens */
	uint8_t *eog;              /* (n) */
	/* Tokens matched whole in text: [0] the user-defined ones (always),
	 * [1] those and the control and unknown ones (when parsing specials). */
	struct special_index spec[2];
};

static int
strmap_init(struct strmap *m, size_t n)
{
	uint64_t cap = 64;
	while (cap < n * 2)
		cap <<= 1;
	m->mask = cap - 1;
	m->slot = calloc(cap, sizeof(*m->slot));
	return m->slot ? 0 : -1;
}

static int32_t
vocab_lookup(const struct tok_vocab *v, const char *text, size_t len)
{
	uint64_t h = fnv(FNV_INIT, text, len) & v->map.mask;

	while (v->map.slot[h]) {
		const struct tok_entry *e = &v->tok[v->map.slot[h] - 1];
		if (e->len == len && memcmp(e->text, text, len) == 0)
			return v->map.slot[h] - 1;
		h = (h + 1) & v->map.mask;
	}
	return TOK_NONE;
}

int32_t
tok_find(const struct tok_vocab *v, const char *text)
{
	return vocab_lookup(v, text, strlen(text));
}

/* Rank of merging A and B, or -1. */
static int32_t
merge_rank(const struct tok_vocab *v, const char *a, size_t na, const char *b, size_t nb)
{
	uint64_t h = fnv(fnv(fnv(FNV_INIT, a, na), " ", 1), b, nb) & v->merge_map.mask;

	while (v->merge_map.slot[h]) {
		int32_t r = v->merge_map.slot[h] - 1;
		const char *t = v->merge_text[r];
		if (v->merge_len[r] == na + 1 + nb && memcmp(t, a, na) == 0 && t[na] == ' ' &&
		    memcmp(t + na + 1, b, nb) == 0)
			return r;
		h = (h + 1) & v->merge_map.mask;
	}
	return -1;
}

void
tok_vocab_free(struct tok_vocab *v)
{
	if (!v)
		return;
	free(v->tok);
	free(v->arena);
	free(v->map.slot);
	free(v->merge_text);
	free(v->merge_len);
	free(v->merge_map.slot);
	free(v->merge_arena);
	for (int i = 0; i < v->n_re; i++)
		re_free(v->re[i]);
	free(v->eog);
	free(v->spec[0].ids);
	free(v->spec[1].ids);
	free(v->spec[0].group_end);
	free(v->spec[1].group_end);
	free(v);
}

static int32_t
get_id(const struct gguf_file *f, const char *key, int32_t n)
{
	int64_t id;
	/* Absent, "none" (0xFFFFFFFF / -1) and out-of-range ids all mean none. */
	if (gguf_get_i64(f, key, &id) < 0 || id < 0 || id >= n)
		return TOK_NONE;
	return (int32_t)id;
}

static int
cmp_special(const void *a, const void *b, void *ctx)
{
	const struct tok_vocab *v = ctx;
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	uint8_t bx = (uint8_t)v->tok[x].text[0], by = (uint8_t)v->tok[y].text[0];
	if (bx != by)
		return bx < by ? -1 : 1;
	if (v->tok[x].len != v->tok[y].len)
		return v->tok[x].len > v->tok[y].len ? -1 : 1;
	int c = memcmp(v->tok[x].text, v->tok[y].text, v->tok[x].len);
	if (c)
		return c;
	return x > y ? -1 : x < y;   /* of duplicate texts the last id first, as vocab_lookup */
}

/* Parses "<0xNN>" exactly; returns the byte or -1. */
static int
parse_byte_token(const char *s, size_t len)
{
	int v = 0;
	if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
		return -1;
	for (int i = 3; i < 5; i++) {
		char c = s[i];
		v <<= 4;
		if (c >= '0' && c <= '9') v |= c - '0';
		else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
		else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
		else return -1;
	}
	return v;
}

int
tok_vocab_load(const struct gguf_file *f, struct tok_vocab **out, char *err, size_t errlen)
{
	struct tok_vocab *v;
	const struct gguf_kv *toks, *scores, *types, *merges;
	char *model = NULL, *pre = NULL;
	size_t total = 0;
	const uint8_t *p;

	*out = NULL;
	model = gguf_get_str(f, "tokenizer.ggml.model");
	if (!model) {
		snprintf(err, errlen, "%s: no tokenizer (tokenizer.ggml.model is missing)", f->path);
		return -1;
	}
	v = calloc(1, sizeof(*v));
	if (!v)
		goto nomem;
	if (strcmp(model, "llama") == 0) {
		v->kind = TOK_SPM;
	} else if (strcmp(model, "gpt2") == 0) {
		v->kind = TOK_BPE;
	} else {
		snprintf(err, errlen, "%s: tokenizer model '%s' is not supported (natter knows "
		    "'llama' SentencePiece and 'gpt2' byte-level BPE)", f->path, model);
		goto fail;
	}

	toks = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_VT_STRING);
	if (!toks || toks->val.v.arr.n == 0) {
		snprintf(err, errlen, "%s: tokenizer.ggml.tokens is missing, empty or not a string array", f->path);
		goto fail;
	}
	if (toks->val.v.arr.n > (1u << 30)) {
		snprintf(err, errlen, "%s: vocabulary of %llu tokens is too large", f->path,
		    (unsigned long long)toks->val.v.arr.n);
		goto fail;
	}
	v->n = (int32_t)toks->val.v.arr.n;
	scores = gguf_find_kv(f, "tokenizer.ggml.scores");
	if (scores && (scores->val.type != GGUF_VT_ARRAY || scores->val.v.arr.type != GGUF_VT_FLOAT32 ||
	    scores->val.v.arr.n != (uint64_t)v->n)) {
		snprintf(err, errlen, "%s: tokenizer.ggml.scores must be %d f32 values", f->path, v->n);
		goto fail;
	}
	types = gguf_find_kv(f, "tokenizer.ggml.token_type");
	if (types && (types->val.type != GGUF_VT_ARRAY ||
	    (types->val.v.arr.type != GGUF_VT_INT32 && types->val.v.arr.type != GGUF_VT_UINT32) ||
	    types->val.v.arr.n != (uint64_t)v->n)) {
		snprintf(err, errlen, "%s: tokenizer.ggml.token_type must be %d i32 values", f->path, v->n);
		goto fail;
	}

	v->tok = calloc(v->n, sizeof(*v->tok));
	if (!v->tok)
		goto nomem;
	p = toks->val.v.arr.data;
	for (int32_t i = 0; i < v->n; i++) {
		struct gguf_str s = gguf_arr_str_next(&p);
		if (s.len > 65535) {
			snprintf(err, errlen, "%s: token %d is %llu bytes long (limit 65535)", f->path, i,
			    (unsigned long long)s.len);
			goto fail;
		}
		total += s.len + 1;
	}
	v->arena = malloc(total ? total : 1);
	if (!v->arena || strmap_init(&v->map, v->n) < 0)
		goto nomem;
	p = toks->val.v.arr.data;
	total = 0;
	for (int32_t i = 0; i < v->n; i++) {
		struct gguf_str s = gguf_arr_str_next(&p);
		struct tok_entry *e = &v->tok[i];
		memcpy(v->arena + total, s.ptr, s.len);
		v->arena[total + s.len] = 0;
		e->text = v->arena + total;
		e->len = (uint32_t)s.len;
		total += s.len + 1;
		e->score = scores ? (float)gguf_arr_f64(&scores->val, i) : 0.0f;
		e->type = TOK_TYPE_NORMAL;
		if (types) {
			int64_t t = gguf_arr_i64(&types->val, i);
			e->type = (t >= TOK_TYPE_NORMAL && t <= TOK_TYPE_BYTE) ? (uint8_t)t : TOK_TYPE_NORMAL;
		}
		/* The last of duplicate texts wins, as in llama.cpp (its
		 * token_to_id map is written id by id). */
		uint64_t h = fnv(FNV_INIT, e->text, e->len) & v->map.mask;
		while (v->map.slot[h]) {
			const struct tok_entry *o = &v->tok[v->map.slot[h] - 1];
			if (o->len == e->len && memcmp(o->text, e->text, e->len) == 0)
				break;
			h = (h + 1) & v->map.mask;
		}
		v->map.slot[h] = i + 1;
	}
	/* The arena moved nothing: text pointers were set after it was sized. */

	v->bos = get_id(f, "tokenizer.ggml.bos_token_id", v->n);
	v->eos = get_id(f, "tokenizer.ggml.eos_token_id", v->n);
	v->eot = get_id(f, "tokenizer.ggml.eot_token_id", v->n);
	v->eom = get_id(f, "tokenizer.ggml.eom_token_id", v->n);
	v->unk = get_id(f, "tokenizer.ggml.unknown_token_id", v->n);
	v->pad = get_id(f, "tokenizer.ggml.padding_token_id", v->n);
	v->add_bos = v->kind == TOK_SPM;
	v->add_space_prefix = v->kind == TOK_SPM;
	(void)gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &v->add_bos);
	(void)gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix);
	if (v->kind == TOK_SPM && v->unk == TOK_NONE)
		v->unk = tok_find(v, "<unk>");
	{
		/* Phi-3's special tokens swallow the whitespace after them
		 * (rstrip in its tokenizer_config.json), all but <unk>, <s> and
		 * <|endoftext|>: "<|user|>\nHi" is <|user|> Hi.  Known by the
		 * model's name, as llama.cpp knows it. */
		char *name = gguf_get_str(f, "general.name");
		if (name && (strcasestr(name, "phi3") || strcasestr(name, "phi-3"))) {
			static const char *const keep[] = { "<unk>", "<s>", "<|endoftext|>" };
			int32_t id;
			for (int32_t i = 0; i < v->n; i++)
				v->tok[i].rstrip = v->tok[i].type == TOK_TYPE_CONTROL ||
				    v->tok[i].type == TOK_TYPE_USER_DEFINED;
			if ((id = tok_find(v, "</s>")) != TOK_NONE)
				v->tok[id].rstrip = 1;
			for (size_t k = 0; k < sizeof(keep) / sizeof(keep[0]); k++)
				if ((id = tok_find(v, keep[k])) != TOK_NONE)
					v->tok[id].rstrip = 0;
		}
		free(name);
	}

	for (int i = 0; i < 256; i++)
		v->byte_tok[i] = TOK_NONE;
	if (v->kind == TOK_SPM) {
		/* As llama.cpp looks a byte up: "<0xNN>" (upper case), else
		 * the byte itself as a token's text. */
		for (int b = 0; b < 256; b++) {
			char buf[8], c = (char)b;
			snprintf(buf, sizeof(buf), "<0x%02X>", b);
			v->byte_tok[b] = vocab_lookup(v, buf, 6);
			if (v->byte_tok[b] == TOK_NONE)
				v->byte_tok[b] = vocab_lookup(v, &c, 1);
		}
	} else {
		for (int b = 0; b < 256; b++) {
			char buf[4];
			size_t l = utf8_encode(unicode_byte_to_cp((uint8_t)b), buf);
			v->byte_tok[b] = vocab_lookup(v, buf, l);
		}
	}

	if (v->kind == TOK_BPE) {
		const struct pretok *pt;
		size_t mtotal = 0;

		merges = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_VT_STRING);
		if (!merges) {
			snprintf(err, errlen, "%s: byte-level BPE tokenizer without tokenizer.ggml.merges", f->path);
			goto fail;
		}
		if (merges->val.v.arr.n > (1u << 30)) {
			snprintf(err, errlen, "%s: too many merges", f->path);
			goto fail;
		}
		v->n_merges = (int32_t)merges->val.v.arr.n;
		v->merge_text = calloc(v->n_merges ? v->n_merges : 1, sizeof(*v->merge_text));
		v->merge_len = calloc(v->n_merges ? v->n_merges : 1, sizeof(*v->merge_len));
		if (!v->merge_text || !v->merge_len || strmap_init(&v->merge_map, v->n_merges) < 0)
			goto nomem;
		p = merges->val.v.arr.data;
		for (int32_t i = 0; i < v->n_merges; i++)
			mtotal += gguf_arr_str_next(&p).len + 1;
		v->merge_arena = malloc(mtotal ? mtotal : 1);
		if (!v->merge_arena)
			goto nomem;
		p = merges->val.v.arr.data;
		mtotal = 0;
		for (int32_t i = 0; i < v->n_merges; i++) {
			struct gguf_str s = gguf_arr_str_next(&p);
			char *t = v->merge_arena + mtotal;
			memcpy(t, s.ptr, s.len);
			t[s.len] = 0;
			mtotal += s.len + 1;
			v->merge_text[i] = t;
			v->merge_len[i] = (uint32_t)s.len;
			/* The separator is the first space after the first character. */
			const char *sp = s.len > 1 ? memchr(t + 1, ' ', s.len - 1) : NULL;
			if (!sp) {
				v->merge_len[i] = 0;   /* malformed: never matches */
				continue;
			}
			uint64_t h = fnv(FNV_INIT, t, s.len) & v->merge_map.mask;
			int dup = 0;
			while (v->merge_map.slot[h]) {
				int32_t r = v->merge_map.slot[h] - 1;
				if (v->merge_len[r] == s.len && memcmp(v->merge_text[r], t, s.len) == 0) {
					dup = 1;
					break;
				}
				h = (h + 1) & v->merge_map.mask;
			}
			if (!dup)
				v->merge_map.slot[h] = i + 1;
		}

		pre = gguf_get_str(f, "tokenizer.ggml.pre");
		snprintf(v->pre, sizeof(v->pre), "%s", pre ? pre : "default");
		pt = pretok_find(v->pre);
		if (!pt) {
			snprintf(err, errlen, "%s: unknown pre-tokenizer '%s' (tokenizer.ggml.pre); natter "
			    "knows llama-bpe, qwen2, gpt-2, deepseek-llm, deepseek-coder, falcon, "
			    "starcoder, default and their aliases", f->path, v->pre);
			goto fail;
		}
		v->ignore_merges = pt->ignore_merges;
		for (int i = 0; i < 6 && pt->pats[i]; i++) {
			char rerr[128];
			v->re[i] = re_compile(pt->pats[i], rerr, sizeof(rerr));
			if (!v->re[i]) {
				snprintf(err, errlen, "internal error: pre-tokenizer '%s': %s", v->pre, rerr);
				goto fail;
			}
			v->n_re = i + 1;
		}
	}

	/* End-of-generation tokens: the declared ids and the usual turn enders. */
	v->eog = calloc(v->n, 1);
	if (!v->eog)
		goto nomem;
	{
		static const char *enders[] = {
			"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
			"<|eom_id|>", "<EOT>", "_<EOT>", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
			"<|end_of_text|>",
		};
		int32_t ids[4] = { v->eos, v->eot, v->eom, TOK_NONE };
		for (int i = 0; i < 3; i++)
			if (ids[i] != TOK_NONE)
				v->eog[ids[i]] = 1;
		for (size_t i = 0; i < sizeof(enders) / sizeof(enders[0]); i++) {
			int32_t id = tok_find(v, enders[i]);
			if (id != TOK_NONE && (v->tok[id].type == TOK_TYPE_CONTROL ||
			    v->tok[id].type == TOK_TYPE_USER_DEFINED))
				v->eog[id] = 1;
		}
	}

	/* Tokens matched whole in text: user-defined always; control and
	 * unknown too when the caller parses special tokens. */
	for (int s = 0; s < 2; s++) {
		struct special_index *x = &v->spec[s];
		uint32_t n = 0;
		x->ids = malloc(v->n * sizeof(*x->ids));
		x->group_end = malloc(v->n * sizeof(*x->group_end));
		if (!x->ids || !x->group_end)
			goto nomem;
		for (int32_t i = 0; i < v->n; i++) {
			uint8_t t = v->tok[i].type;
			if (v->tok[i].len > 0 && (t == TOK_TYPE_USER_DEFINED ||
			    (s == 1 && (t == TOK_TYPE_CONTROL || t == TOK_TYPE_UNKNOWN))))
				x->ids[n++] = i;
		}
		qsort_r(x->ids, n, sizeof(*x->ids), cmp_special, v);
		memset(x->start, 0, sizeof(x->start));
		for (uint32_t k = 0; k < n; k++)
			x->start[(uint8_t)v->tok[x->ids[k]].text[0] + 1]++;
		for (int b = 0; b < 256; b++)
			x->start[b + 1] += x->start[b];
		for (uint32_t k = n; k-- > 0;) {
			const struct tok_entry *e = &v->tok[x->ids[k]], *f2 = k + 1 < n ? &v->tok[x->ids[k + 1]] : NULL;
			x->group_end[k] = f2 && f2->len == e->len && f2->text[0] == e->text[0] ? x->group_end[k + 1] : k + 1;
		}
	}

	free(model);
	free(pre);
	*out = v;
	return 0;
nomem:
	snprintf(err, errlen, "%s: out of memory loading the vocabulary", f->path);
fail:
	free(model);
	free(pre);
	tok_vocab_free(v);
	return -1;
}

enum tok_kind tok_vocab_kind(const struct tok_vocab *v) { return v->kind; }
int32_t tok_vocab_size(const struct tok_vocab *v) { return v->n; }
const char *tok_vocab_pre(const struct tok_vocab *v) { return v->pre; }
int32_t tok_bos(const struct tok_vocab *v) { return v->bos; }
int32_t tok_eos(const struct tok_vocab *v) { return v->eos; }
int tok_add_bos(const struct tok_vocab *v) { return v->add_bos; }

int
tok_is_eog(const struct tok_vocab *v, int32_t id)
{
	return id >= 0 && id < v->n && v->eog[id];
}

const char *
tok_text(const struct tok_vocab *v, int32_t id)
{
	return id >= 0 && id < v->n ? v->tok[id].text : NULL;
}

enum tok_type
tok_type_of(const struct tok_vocab *v, int32_t id)
{
	return id >= 0 && id < v->n ? (enum tok_type)v->tok[id].type : TOK_TYPE_UNUSED;
}

void
tok_ids_free(struct tok_ids *t)
{
	free(t->ids);
	t->ids = NULL;
	t->n = t->cap = 0;
}

int
tok_ids_push(struct tok_ids *t, int32_t id)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		int32_t *ids = realloc(t->ids, cap * sizeof(*ids));
		if (!ids)
			return -1;
		t->ids = ids;
		t->cap = cap;
	}
	t->ids[t->n++] = id;
	return 0;
}

/* --- the merge loop shared by both tokenizers --- */

struct sym {
	uint32_t off, len;     /* into the working string */
	int32_t prev, next;
};

struct bigram {
	double key;            /* smaller is better */
	int32_t left, right;
	uint32_t size;
};

struct work {
	char *s;               /* the working string */
	size_t slen, scap;
	struct sym *sym;
	size_t nsym, capsym;
	struct bigram *heap;
	size_t nheap, capheap;
};

static void
work_free(struct work *w)
{
	free(w->s);
	free(w->sym);
	free(w->heap);
}

static int
work_append(struct work *w, const char *p, size_t n)
{
	return strbuf_append(&w->s, &w->slen, &w->scap, p, n);
}

static int
sym_push(struct work *w, uint32_t off, uint32_t len)
{
	if (w->nsym == w->capsym) {
		size_t cap = w->capsym ? w->capsym * 2 : 256;
		struct sym *s = realloc(w->sym, cap * sizeof(*s));
		if (!s)
			return -1;
		w->sym = s;
		w->capsym = cap;
	}
	struct sym *s = &w->sym[w->nsym];
	s->off = off;
	s->len = len;
	s->prev = (int32_t)w->nsym - 1;
	s->next = (int32_t)w->nsym + 1;
	w->nsym++;
	return 0;
}

static int
bigram_less(const struct bigram *a, const struct bigram *b)
{
	return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static int
heap_push(struct work *w, struct bigram b)
{
	size_t i;
	if (w->nheap == w->capheap) {
		size_t cap = w->capheap ? w->capheap * 2 : 256;
		struct bigram *h = realloc(w->heap, cap * sizeof(*h));
		if (!h)
			return -1;
		w->heap = h;
		w->capheap = cap;
	}
	i = w->nheap++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!bigram_less(&b, &w->heap[parent]))
			break;
		w->heap[i] = w->heap[parent];
		i = parent;
	}
	w->heap[i] = b;
	return 0;
}

static struct bigram
heap_pop(struct work *w)
{
	struct bigram top = w->heap[0], last = w->heap[--w->nheap];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= w->nheap)
			break;
		if (c + 1 < w->nheap && bigram_less(&w->heap[c + 1], &w->heap[c]))
			c++;
		if (!bigram_less(&w->heap[c], &last))
			break;
		w->heap[i] = w->heap[c];
		i = c;
	}
	if (w->nheap > 0)
		w->heap[i] = last;
	return top;
}

/* Queues the pair (L, R) if it may merge. */
static int
try_bigram(const struct tok_vocab *v, struct work *w, int32_t l, int32_t r)
{
	struct bigram b;
	const struct sym *a, *c;

	if (l < 0 || r < 0 || r >= (int32_t)w->nsym)
		return 0;
	a = &w->sym[l];
	c = &w->sym[r];
	if (v->kind == TOK_SPM) {
		int32_t id = vocab_lookup(v, w->s + a->off, a->len + c->len);
		if (id == TOK_NONE)
			return 0;
		b.key = -(double)v->tok[id].score;
	} else {
		int32_t rank = merge_rank(v, w->s + a->off, a->len, w->s + c->off, c->len);
		if (rank < 0)
			return 0;
		b.key = rank;
	}
	b.left = l;
	b.right = r;
	b.size = a->len + c->len;
	return heap_push(w, b);
}

/* Splits W->s[from..slen) into characters and merges them.  Symbols are
 * contiguous in the string, so a merged symbol is a longer span. */
static int
merge_all(const struct tok_vocab *v, struct work *w, size_t from)
{
	w->nsym = 0;
	w->nheap = 0;
	for (size_t i = from; i < w->slen;) {
		uint32_t cp;
		size_t l = utf8_decode((const unsigned char *)w->s + i, w->slen - i, &cp);
		if (sym_push(w, (uint32_t)i, (uint32_t)l) < 0)
			return -1;
		i += l;
	}
	if (w->nsym == 0)
		return 0;
	w->sym[w->nsym - 1].next = -1;
	for (size_t i = 1; i < w->nsym; i++)
		if (try_bigram(v, w, (int32_t)i - 1, (int32_t)i) < 0)
			return -1;
	while (w->nheap > 0) {
		struct bigram b = heap_pop(w);
		struct sym *l = &w->sym[b.left], *r = &w->sym[b.right];
		if (l->len == 0 || r->len == 0 || l->len + r->len != b.size || l->next != b.right)
			continue;
		l->len += r->len;
		r->len = 0;
		l->next = r->next;
		if (r->next >= 0)
			w->sym[r->next].prev = b.left;
		if (try_bigram(v, w, l->prev, b.left) < 0 || try_bigram(v, w, b.left, l->next) < 0)
			return -1;
	}
	return 0;
}

/* --- SentencePiece --- */

static int
spm_encode(const struct tok_vocab *v, struct work *w, const char *text, size_t len,
	   int space_prefix, struct tok_ids *out)
{
	static const char ws[] = "\xe2\x96\x81";   /* U+2581, SentencePiece's space */

	w->slen = 0;
	if (space_prefix && work_append(w, ws, 3) < 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (text[i] == ' ' ? work_append(w, ws, 3) < 0 : work_append(w, text + i, 1) < 0)
			return -1;
	}
	if (merge_all(v, w, 0) < 0)
		return -1;
	for (int32_t i = w->nsym ? 0 : -1; i >= 0; i = w->sym[i].next) {
		const struct sym *s = &w->sym[i];
		int32_t id = vocab_lookup(v, w->s + s->off, s->len);
		if (id != TOK_NONE) {
			if (tok_ids_push(out, id) < 0)
				return -1;
			continue;
		}
		for (uint32_t j = 0; j < s->len; j++) {
			int32_t b = v->byte_tok[(uint8_t)w->s[s->off + j]];
			if (b == TOK_NONE)
				b = v->unk;
			if (b != TOK_NONE && tok_ids_push(out, b) < 0)
				return -1;
			if (b == v->unk)
				break;     /* one <unk> for the whole character */
		}
	}
	return 0;
}

/* --- byte-level BPE --- */

/* Splits CP[0..n) with each pattern in turn; BOUND gets fragment ends. */
static int
pretokenize(const struct tok_vocab *v, const uint32_t *cp, size_t n, size_t **bound, size_t *nb)
{
	size_t *b = malloc((n + 1) * sizeof(*b)), *nbnd = NULL;
	size_t cnt = 0;

	if (!b)
		return -1;
	if (n > 0)
		b[cnt++] = n;
	for (int r = 0; r < v->n_re; r++) {
		size_t ncnt = 0, start = 0;
		nbnd = malloc((n + 1) * sizeof(*nbnd));
		if (!nbnd) {
			free(b);
			return -1;
		}
		for (size_t f = 0; f < cnt; f++) {
			size_t end = b[f], pos = start, last = start;
			while (pos < end) {
				size_t ms, me;
				/* Anchors and lookahead see only this fragment, as in the reference. */
				int found = re_search(v->re[r], cp + start, end - start, pos - start, &ms, &me);
				if (found <= 0)
					break;     /* no more matches (or too costly): the rest stays whole */
				ms += start;
				me += start;
				if (me == ms) {
					pos = ms + 1;   /* an empty match splits nothing */
					continue;
				}
				if (ms > last)
					nbnd[ncnt++] = ms;
				nbnd[ncnt++] = me;
				last = pos = me;
			}
			if (last < end)
				nbnd[ncnt++] = end;
			start = end;
		}
		free(b);
		b = nbnd;
		cnt = ncnt;
	}
	*bound = b;
	*nb = cnt;
	return 0;
}

static int
bpe_encode(const struct tok_vocab *v, struct work *w, const char *text, size_t len, struct tok_ids *out)
{
	uint32_t *cp = malloc((len + 1) * sizeof(*cp));
	uint32_t *cpoff = malloc((len + 1) * sizeof(*cpoff));
	size_t n = 0, *bound = NULL, nb = 0, start = 0;
	int rc = -1;

	if (!cp || !cpoff)
		goto done;
	for (size_t i = 0; i < len;) {
		cpoff[n] = (uint32_t)i;
		i += utf8_decode((const unsigned char *)text + i, len - i, &cp[n]);
		n++;
	}
	cpoff[n] = (uint32_t)len;
	if (pretokenize(v, cp, n, &bound, &nb) < 0)
		goto done;
	for (size_t f = 0; f < nb; f++) {
		size_t a = cpoff[start], z = cpoff[bound[f]];
		start = bound[f];
		/* Byte-encode the word. */
		w->slen = 0;
		for (size_t i = a; i < z; i++) {
			char buf[4];
			size_t l = utf8_encode(unicode_byte_to_cp((uint8_t)text[i]), buf);
			if (work_append(w, buf, l) < 0)
				goto done;
		}
		if (v->ignore_merges) {
			int32_t id = vocab_lookup(v, w->s, w->slen);
			if (id != TOK_NONE) {
				if (tok_ids_push(out, id) < 0)
					goto done;
				continue;
			}
		}
		if (merge_all(v, w, 0) < 0)
			goto done;
		for (int32_t i = w->nsym ? 0 : -1; i >= 0; i = w->sym[i].next) {
			const struct sym *s = &w->sym[i];
			int32_t id = vocab_lookup(v, w->s + s->off, s->len);
			if (id != TOK_NONE) {
				if (tok_ids_push(out, id) < 0)
					goto done;
				continue;
			}
			/* Not in the vocabulary: one token per byte, as available. */
			for (uint32_t j = 0; j < s->len;) {
				uint32_t c;
				size_t l = utf8_decode((const unsigned char *)w->s + s->off + j, s->len - j, &c);
				int byte = unicode_cp_to_byte(c);
				int32_t t = byte >= 0 ? v->byte_tok[byte] : TOK_NONE;
				/* A vocabulary without that byte's token (StarCoder's has
				 * none for C0, C1, F5..FF) drops it, as llama.cpp does,
				 * when its unknown token is a control one: StarCoder's is
				 * <|endoftext|>, which would end the text in its middle. */
				if (t == TOK_NONE && v->unk != TOK_NONE && v->tok[v->unk].type != TOK_TYPE_CONTROL &&
				    !tok_is_eog(v, v->unk))
					t = v->unk;
				if (t != TOK_NONE && tok_ids_push(out, t) < 0)
					goto done;
				j += (uint32_t)l;
			}
		}
	}
	rc = 0;
done:
	free(cp);
	free(cpoff);
	free(bound);
	return rc;
}

/* --- special-token partition and the entry point --- */

/* Returns the id of the longest special token at TEXT[i..len) (I < LEN), or TOK_NONE. */
static int32_t
special_at(const struct tok_vocab *v, const char *text, size_t len, size_t i, int parse_special)
{
	const struct special_index *x = &v->spec[parse_special != 0];
	uint8_t b = (uint8_t)text[i];

	/* A binary search per length, longest first: Gemma 3 has thousands
	 * of tokens that start with "<", and text may hold many a "<". */
	for (uint32_t k = x->start[b], end; k < x->start[b + 1]; k = end) {
		const uint32_t n = v->tok[x->ids[k]].len;
		uint32_t lo = k, hi;
		end = hi = x->group_end[k];
		if (n > len - i)
			continue;
		while (lo < hi) {
			uint32_t mid = lo + (hi - lo) / 2;
			if (memcmp(v->tok[x->ids[mid]].text, text + i, n) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < end && memcmp(v->tok[x->ids[lo]].text, text + i, n) == 0)
			return x->ids[lo];
	}
	return TOK_NONE;
}

/* --- text that must not become control tokens --- */

static int
is_mark(const char *s, size_t len, size_t i)
{
	return i + TOK_MARK_LEN <= len && memcmp(s + i, TOK_MARK, TOK_MARK_LEN) == 0;
}

char *
tok_mark_specials(const struct tok_vocab *v, const char *s, size_t len, size_t *outlen)
{
	size_t cap = len + 1, n = 0;
	char *o = malloc(cap);

	for (size_t i = 0; o && i < len;) {
		size_t k = 1;
		int mark = 0;
		int32_t sp;
		if (is_mark(s, len, i)) {
			k = TOK_MARK_LEN;
			mark = 1;
		} else if ((sp = special_at(v, s, len, i, 1)) != TOK_NONE && v->tok[sp].type != TOK_TYPE_USER_DEFINED) {
			k = v->tok[sp].len;
			mark = 1;
		}
		if (n + k + TOK_MARK_LEN + 1 > cap) {
			char *no;
			cap = 2 * cap + k + TOK_MARK_LEN + 1;
			if (!(no = realloc(o, cap))) {
				free(o);
				return NULL;
			}
			o = no;
		}
		if (mark) {
			memcpy(o + n, TOK_MARK, TOK_MARK_LEN);
			n += TOK_MARK_LEN;
		}
		memcpy(o + n, s + i, k);
		n += k;
		i += k;
	}
	if (o) {
		o[n] = 0;
		if (outlen)
			*outlen = n;
	}
	return o;
}

int
tok_encode(const struct tok_vocab *v, const char *text, size_t len,
	   int add_bos, int parse_special, struct tok_ids *out)
{
	return tok_encode_ex(v, text, len, (add_bos ? TOK_ENC_BOS : 0) | (parse_special ? TOK_ENC_SPECIAL : 0), out);
}

/* TEXT[0..LEN) without its marks, into *OUT (a new string, *OUTLEN long),
 * and the ranges [LIT[2k], LIT[2k+1]) of it that marks made text (*NLIT
 * of them, in order; *LIT a new array).  -1 when out of memory. */
static int
unmark_ranges(const struct tok_vocab *v, const char *text, size_t len, char **out, size_t *outlen, size_t **lit,
	      size_t *nlit)
{
	char *u = malloc(len + 1);
	size_t *r = malloc((len / TOK_MARK_LEN + 1) * 2 * sizeof(*r)), n = 0, k = 0;

	if (!u || !r) {
		free(u);
		free(r);
		return -1;
	}
	for (size_t i = 0; i < len;) {
		size_t l = 0;
		int32_t sp;
		if (!is_mark(text, len, i)) {
			u[n++] = text[i++];
			continue;
		}
		i += TOK_MARK_LEN;
		if (is_mark(text, len, i))
			l = TOK_MARK_LEN;
		else if (i < len && (sp = special_at(v, text, len, i, 1)) != TOK_NONE)
			l = v->tok[sp].len;
		if (l) {
			r[2 * k] = n;
			r[2 * k + 1] = n + l;
			k++;
			memcpy(u + n, text + i, l);
			n += l;
			i += l;
		}
	}
	u[n] = 0;
	*out = u;
	*outlen = n;
	*lit = r;
	*nlit = k;
	return 0;
}

char *
tok_unmark(const struct tok_vocab *v, const char *s, size_t len, size_t *outlen)
{
	char *u;
	size_t *lit, nlit, n;

	if (unmark_ranges(v, s, len, &u, &n, &lit, &nlit) < 0)
		return NULL;
	free(lit);
	if (outlen)
		*outlen = n;
	return u;
}

int
tok_encode_ex(const struct tok_vocab *v, const char *text, size_t len, unsigned flags, struct tok_ids *out)
{
	struct work w;
	size_t i = 0, frag = 0, *lit = NULL, nlit = 0, li = 0;
	int add_bos = (flags & TOK_ENC_BOS) != 0, parse_special = (flags & TOK_ENC_SPECIAL) != 0;
	int prev_special = !(flags & TOK_ENC_CONTINUE);
	int rc = 0;
	char *plain = NULL;

	/* Marked text: the marks go, and what they marked is text, encoded
	 * with the text around it as one piece (as a tokenizer would encode
	 * the whole text, control tokens unparsed). */
	if ((flags & TOK_ENC_MARKED) && memmem(text, len, TOK_MARK, TOK_MARK_LEN)) {
		if (unmark_ranges(v, text, len, &plain, &len, &lit, &nlit) < 0)
			return -1;
		text = plain;
	}
	memset(&w, 0, sizeof(w));
	if (add_bos && v->bos != TOK_NONE && tok_ids_push(out, v->bos) < 0)
		rc = -1;
	while (i <= len && rc == 0) {
		int32_t sp = TOK_NONE;
		while (li < nlit && lit[2 * li + 1] <= i)
			li++;
		if (i < len && !(li < nlit && lit[2 * li] <= i))
			sp = special_at(v, text, len, i, parse_special);
		if (sp == TOK_NONE && i < len) {
			i++;
			continue;
		}
		/* Flush the raw text before the special token (or the end). */
		if (i > frag) {
			if (v->kind == TOK_SPM)
				rc = spm_encode(v, &w, text + frag, i - frag,
				    v->add_space_prefix && prev_special, out);
			else
				rc = bpe_encode(v, &w, text + frag, i - frag, out);
			prev_special = 0;
		}
		if (rc == 0 && sp != TOK_NONE) {
			rc = tok_ids_push(out, sp);
			prev_special = 1;
			i += v->tok[sp].len;
			if (v->tok[sp].rstrip)
				while (i < len && (text[i] == ' ' || (text[i] >= '\t' && text[i] <= '\r')))
					i++;
			frag = i;
			continue;
		}
		break;
	}
	work_free(&w);
	free(plain);
	free(lit);
	return rc;
}

/* --- detokenization --- */

static size_t
put(char *buf, size_t cap, size_t at, const char *p, size_t n)
{
	if (at < cap) {
		size_t k = n < cap - at ? n : cap - at;
		memcpy(buf + at, p, k);
	}
	return at + n;
}

int
tok_piece(const struct tok_vocab *v, int32_t id, int special, char *buf, size_t cap)
{
	const struct tok_entry *e;
	size_t n = 0;

	if (id < 0 || id >= v->n)
		return -1;
	e = &v->tok[id];
	switch (e->type) {
	case TOK_TYPE_CONTROL:
	case TOK_TYPE_UNUSED:
		if (special)
			n = put(buf, cap, 0, e->text, e->len);
		break;
	case TOK_TYPE_UNKNOWN:
		if (v->kind == TOK_SPM)
			n = put(buf, cap, 0, "\xe2\x96\x85", 3);
		else if (special)
			n = put(buf, cap, 0, e->text, e->len);
		break;
	case TOK_TYPE_USER_DEFINED:
		n = put(buf, cap, 0, e->text, e->len);
		break;
	case TOK_TYPE_BYTE: {
		int b = parse_byte_token(e->text, e->len);
		if (b >= 0) {
			char c = (char)b;
			n = put(buf, cap, 0, &c, 1);
			break;
		}
	}
		/* fall through */
	default:
		if (v->kind == TOK_SPM) {
			for (uint32_t i = 0; i < e->len; i++) {
				if (i + 2 < e->len && memcmp(e->text + i, "\xe2\x96\x81", 3) == 0) {
					n = put(buf, cap, n, " ", 1);
					i += 2;
				} else {
					n = put(buf, cap, n, e->text + i, 1);
				}
			}
		} else {
			for (uint32_t i = 0; i < e->len;) {
				uint32_t c;
				size_t l = utf8_decode((const unsigned char *)e->text + i, e->len - i, &c);
				int b = unicode_cp_to_byte(c);
				if (b >= 0) {
					char ch = (char)b;
					n = put(buf, cap, n, &ch, 1);
				} else {
					n = put(buf, cap, n, e->text + i, l);
				}
				i += (uint32_t)l;
			}
		}
		break;
	}
	return (int)(n < cap ? n : cap);
}

char *
tok_decode(const struct tok_vocab *v, const int32_t *ids, size_t n, int special, size_t *lenp)
{
	size_t cap = 256, len = 0;
	char *out = malloc(cap), *tmp;
	char piece[1024];

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		int l = tok_piece(v, ids[i], special, piece, sizeof(piece));
		const char *p = piece;
		char *big = NULL;
		if (l < 0)
			continue;
		if ((size_t)l == sizeof(piece)) {
			/* A long token: fetch it whole. */
			size_t full = v->tok[ids[i]].len * 2 + 16;
			big = malloc(full);
			if (!big) {
				free(out);
				return NULL;
			}
			l = tok_piece(v, ids[i], special, big, full);
			p = big;
		}
		if (i == 0 && v->kind == TOK_SPM && v->add_space_prefix && l > 0 && p[0] == ' ') {
			p++;
			l--;
		}
		if (len + l + 1 > cap) {
			while (len + l + 1 > cap)
				cap *= 2;
			tmp = realloc(out, cap);
			if (!tmp) {
				free(big);
				free(out);
				return NULL;
			}
			out = tmp;
		}
		memcpy(out + len, p, l);
		len += l;
		free(big);
	}
	out[len] = 0;
	if (lenp)
		*lenp = len;
	return out;
}

struct tok_stream {
	const struct tok_vocab *v;
	int special;
	char *buf;
	size_t len, cap;
	size_t emitted;     /* bytes of buf handed out by the last call */
};

struct tok_stream *
tok_stream_new(const struct tok_vocab *v, int special)
{
	struct tok_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->v = v;
	s->special = special;
	s->cap = 256;
	s->buf = malloc(s->cap);
	if (!s->buf) {
		free(s);
		return NULL;
	}
	return s;
}

void
tok_stream_free(struct tok_stream *s)
{
	if (!s)
		return;
	free(s->buf);
	free(s);
}

void
tok_stream_reset(struct tok_stream *s)
{
	s->len = 0;
	s->emitted = 0;
}

const char *
tok_stream_push(struct tok_stream *s, int32_t id, size_t *len)
{
	size_t need;
	int l;

	/* Drop what the caller already has. */
	memmove(s->buf, s->buf + s->emitted, s->len - s->emitted);
	s->len -= s->emitted;
	s->emitted = 0;
	need = id >= 0 && id < s->v->n ? s->v->tok[id].len * 2 + 8 : 0;
	if (s->len + need > s->cap) {
		size_t cap = s->cap;
		while (cap < s->len + need)
			cap *= 2;
		char *b = realloc(s->buf, cap);
		if (!b) {
			*len = 0;
			return s->buf;
		}
		s->buf = b;
		s->cap = cap;
	}
	l = tok_piece(s->v, id, s->special, s->buf + s->len, s->cap - s->len);
	if (l > 0)
		s->len += l;
	s->emitted = utf8_complete_prefix((const unsigned char *)s->buf, s->len);
	*len = s->emitted;
	return s->buf;
}

const char *
tok_stream_flush(struct tok_stream *s, size_t *len)
{
	memmove(s->buf, s->buf + s->emitted, s->len - s->emitted);
	s->len -= s->emitted;
	s->emitted = s->len;
	*len = s->len;
	return s->buf;
}
