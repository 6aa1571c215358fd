/* unicode.h -- UTF-8 decoding, code point classes and case mappings (tokenizers, templates). */
#ifndef NATTER_UNICODE_H
#define NATTER_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* General-category flags (first letter of the category) and White_Space. */
enum {
	UCP_LETTER = 1,
	UCP_NUMBER = 2,
	UCP_PUNCT = 4,
	UCP_SYMBOL = 8,
	UCP_MARK = 16,
	UCP_SEPARATOR = 32,
	UCP_CONTROL = 64,
	UCP_SPACE = 128,
};

/* A byte that is not part of valid UTF-8 decodes to UCP_RAW_BYTE | byte:
 * a value outside Unicode, with no flags, that encodes back to the byte. */
#define UCP_RAW_BYTE 0x110000u

/* Decodes one code point from S (N bytes left, N > 0) into *CP; returns the
 * bytes used (1-4).  Invalid, overlong, surrogate and truncated sequences
 * give one UCP_RAW_BYTE per byte.  Never reads past N. */
size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Encodes CP (or a raw byte) into OUT (>= 4 bytes); returns the length. */
size_t utf8_encode(uint32_t cp, char *out);

/* Length of the longest prefix of S[0..N) that ends on a complete UTF-8
 * character: the bytes of a trailing incomplete sequence are held back. */
size_t utf8_complete_prefix(const unsigned char *s, size_t n);

/* Returns 1 if S[0..N) is valid UTF-8. */
int utf8_valid(const unsigned char *s, size_t n);

/* Category flags of CP (0 for unassigned and raw bytes). */
uint8_t unicode_flags(uint32_t cp);

/* Case mappings, as Python's str methods apply them to one code point. */
enum { UNICODE_LOWER, UNICODE_UPPER, UNICODE_TITLE };
/* Writes the WHICH mapping of CP (full: U+00DF upper-cased is "SS") to
 * OUT as 1 to 3 code points and returns how many; a code point without one,
 * or a raw byte, maps to itself.  (The final sigma is the caller's.) */
int unicode_case_map(uint32_t cp, int which, uint32_t out[3]);
/* UNICODE_CASED if CP is cased (Lowercase, Uppercase or Lt), ORed with
 * UNICODE_CASE_IGNORABLE if it is case-ignorable, as Python's tables say. */
enum { UNICODE_CASED = 1, UNICODE_CASE_IGNORABLE = 2 };
int unicode_case_class(uint32_t cp);

/* GPT-2 byte-level encoding: each byte maps to a printable code point. */
uint32_t unicode_byte_to_cp(uint8_t b);
/* The inverse; returns -1 if CP is not the image of a byte. */
int unicode_cp_to_byte(uint32_t cp);

#endif
