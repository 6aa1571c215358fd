/* regex.h -- the small regex engine behind the BPE pre-tokenizers. */
#ifndef NATTER_REGEX_H
#define NATTER_REGEX_H

#include <stddef.h>
#include <stdint.h>

/*
 * Supports what tokenizer pre-split patterns use, with ECMAScript semantics
 * (ordered alternation, greedy backtracking quantifiers): literals, `.`,
 * classes `[...]`/`[^...]` with ranges, `\s \S \d \D \w \W \r \n \t`,
 * `\p{L}` `\p{N}` `\p{P}` `\p{S}` `\p{M}` `\p{Z}` `\p{C}` and `\P{..}`,
 * groups `(...)` `(?:...)`, lookahead `(?=...)` `(?!...)`, quantifiers
 * `? * + {m} {m,} {m,n}`, anchors `^ $`.  Text is an array of code points.
 */
struct re;

/* Compiles PATTERN (UTF-8).  Returns NULL and fills ERR on a syntax error. */
struct re *re_compile(const char *pattern, char *err, size_t errlen);
void re_free(struct re *re);

/* Finds the leftmost match in T[from..n) (anchors see T[0..n)); returns 1 and
 * sets *MS, *ME, or 0 if none.  Bounded by a step budget: a pathological
 * pattern returns -1 rather than running forever. */
int re_search(const struct re *re, const uint32_t *t, size_t n, size_t from,
	      size_t *ms, size_t *me);

#endif
