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

#endif
