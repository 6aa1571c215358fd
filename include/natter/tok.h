/* tok.h -- tokenizers read from GGUF metadata: SentencePiece BPE and byte-level BPE. */
#ifndef NATTER_TOK_H
#define NATTER_TOK_H

#include <stddef.h>
#include <stdint.h>

struct gguf_file;
struct tok_vocab;

enum tok_kind {
	TOK_SPM = 1,     /* tokenizer.ggml.model = "llama" */
	TOK_BPE = 2,     /* tokenizer.ggml.model = "gpt2" */
};

/* Token types, as GGUF numbers them (tokenizer.ggml.token_type). */
enum tok_type {
	TOK_TYPE_NORMAL = 1,
	TOK_TYPE_UNKNOWN = 2,
	TOK_TYPE_CONTROL = 3,
	TOK_TYPE_USER_DEFINED = 4,
	TOK_TYPE_UNUSED = 5,
	TOK_TYPE_BYTE = 6,
};

#define TOK_NONE (-1)

/*
 * Builds the vocabulary from F's tokenizer.ggml.* metadata (the strings are
 * copied: the result does not borrow from F).  Returns 0, or a negative
 * value with ERR naming the file and the problem (missing or inconsistent
 * arrays, unknown model or pre-tokenizer).  Any thread.
 */
int tok_vocab_load(const struct gguf_file *f, struct tok_vocab **out, char *err, size_t errlen);
void tok_vocab_free(struct tok_vocab *v);

enum tok_kind tok_vocab_kind(const struct tok_vocab *v);
int32_t tok_vocab_size(const struct tok_vocab *v);
const char *tok_vocab_pre(const struct tok_vocab *v);      /* pre-tokenizer name, "" for SPM */
int32_t tok_bos(const struct tok_vocab *v);                /* TOK_NONE if absent */
int32_t tok_eos(const struct tok_vocab *v);
int tok_add_bos(const struct tok_vocab *v);                 /* model wants BOS prepended */
/* 1 if ID ends a generation (EOS, EOT, <|im_end|>, <|eot_id|>, <|end|> ...). */
int tok_is_eog(const struct tok_vocab *v, int32_t id);
/* Raw text of token ID as stored in the vocabulary (borrowed), or NULL. */
const char *tok_text(const struct tok_vocab *v, int32_t id);
enum tok_type tok_type_of(const struct tok_vocab *v, int32_t id);
/* Id of the token whose raw text is TEXT, or TOK_NONE. */
int32_t tok_find(const struct tok_vocab *v, const char *text);

/* A growable array of token ids. */
struct tok_ids {
	int32_t *ids;
	size_t n, cap;
};
void tok_ids_free(struct tok_ids *t);
int tok_ids_push(struct tok_ids *t, int32_t id);

/*
 * Appends the tokens of TEXT[0..LEN) to OUT.  ADD_BOS prepends BOS when the
 * vocabulary has one.  PARSE_SPECIAL matches control tokens (<|im_start|> ...)
 * written in the text; user-defined tokens are always matched.  Invalid
 * UTF-8 is encoded byte by byte (byte fallback or byte-level tokens).  A
 * byte no token spells becomes <unk>; a vocabulary with neither, or whose
 * unknown token is a control or end-of-generation one (StarCoder's is
 * <|endoftext|>), drops it, as llama.cpp does.
 * Returns 0, or -1 on allocation failure.
 */
int tok_encode(const struct tok_vocab *v, const char *text, size_t len,
	       int add_bos, int parse_special, struct tok_ids *out);

/* The same with flags.  TOK_ENC_CONTINUE: TEXT continues text tokenized
 * before, so SentencePiece adds no leading space to it. */
enum { TOK_ENC_BOS = 1, TOK_ENC_SPECIAL = 2, TOK_ENC_CONTINUE = 4, TOK_ENC_MARKED = 8 };
int tok_encode_ex(const struct tok_vocab *v, const char *text, size_t len, unsigned flags,
		  struct tok_ids *out);

/*
 * Text a user wrote goes into a chat template's output, which is tokenized
 * with control tokens parsed: "<|im_end|>" typed in a message would end the
 * turn, and what follows would be a turn of the user's making.  Before
 * rendering, each message's text is marked: TOK_MARK goes before every
 * control (or unknown) token's text in it, and before each TOK_MARK already
 * there.  tok_encode_ex with TOK_ENC_MARKED drops a mark and encodes what it
 * marks as text; tok_unmark gives the text as it reads.  A new string (and
 * its length in *OUTLEN, when not NULL), or NULL when out of memory.
 * TOK_MARK is U+FFFF, a noncharacter.
 */
#define TOK_MARK "\xef\xbf\xbf"
#define TOK_MARK_LEN 3
char *tok_mark_specials(const struct tok_vocab *v, const char *s, size_t len, size_t *outlen);
char *tok_unmark(const struct tok_vocab *v, const char *s, size_t len, size_t *outlen);

/*
 * Writes the bytes token ID stands for into BUF (CAP bytes); returns the
 * length, or -1 for an id out of range.  Control tokens give "" unless
 * SPECIAL.  The bytes may be part of a UTF-8 character: use tok_stream to
 * print.  If the piece is longer than CAP it is cut at CAP.
 */
int tok_piece(const struct tok_vocab *v, int32_t id, int special, char *buf, size_t cap);

/* Decodes a whole sequence into a new NUL-terminated string (caller frees).
 * With SPM's space prefix, the first token's leading space is removed, so
 * that decode(encode(s)) == s for ids encoded without BOS (after a BOS the
 * space stays, as in llama.cpp).  *LEN gets the byte length (may contain
 * NULs). */
char *tok_decode(const struct tok_vocab *v, const int32_t *ids, size_t n, int special, size_t *len);

/*
 * Streaming detokenizer: feed ids one at a time; each call returns the bytes
 * now printable, never a partial UTF-8 character (an incomplete sequence is
 * held until completed; bytes that can never form a character come out as
 * they are, for the caller to repair).  Single-threaded per stream.
 */
struct tok_stream;
struct tok_stream *tok_stream_new(const struct tok_vocab *v, int special);
void tok_stream_free(struct tok_stream *s);
/* Returns a borrowed buffer valid until the next call; *LEN its length. */
const char *tok_stream_push(struct tok_stream *s, int32_t id, size_t *len);
/* Whatever is still held back (an incomplete character at the end). */
const char *tok_stream_flush(struct tok_stream *s, size_t *len);
void tok_stream_reset(struct tok_stream *s);

#endif
