/* text.h -- making untrusted text (model output, files) safe to show in a terminal. */
#ifndef NATTER_TEXT_H
#define NATTER_TEXT_H

#include <stddef.h>

/*
 * Writes into OUT (CAP bytes) a copy of S[0..N) that a terminal cannot
 * mistake for commands: C0 controls other than newline and tab become the
 * Unicode control pictures (ESC shows as U+241B), DEL as U+2421, C1
 * controls and bytes that are not UTF-8 as U+FFFD.  Returns the bytes
 * written (at most CAP; a character is never cut).  *USED gets how many
 * input bytes were consumed: a trailing incomplete character is left for
 * the next call unless FINAL.  Pure function, any thread.
 */
size_t text_sanitize(const char *s, size_t n, char *out, size_t cap, size_t *used, int final);

/* Same, repairing invalid UTF-8 only (controls kept): for storage and JSON. */
size_t text_repair_utf8(const char *s, size_t n, char *out, size_t cap);

/* Where S[0..N) stops being UTF-8 (no overlong forms, surrogates or code
 * points past U+10FFFF), or N. */
size_t text_utf8_bad_at(const char *s, size_t n);

/* Whether the JSON text S[0..N) holds the escape \u0000: cJSON decodes it
 * into a NUL byte, which ends the C string there, and the rest of the text
 * would be lost without a word.  (cJSON also takes a raw NUL byte inside a
 * string: callers look for that with memchr.) */
int text_json_has_nul(const char *s, size_t n);
/* Rewrites each \u0000 escape of the JSON text S[0..N) into \ufffd, in
 * place (the same length).  Returns how many. */
int text_json_nul_to_fffd(char *s, size_t n);

#endif
