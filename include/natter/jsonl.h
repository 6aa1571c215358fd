/* jsonl.h -- one line of a JSON-lines file, read so that nothing of it is lost. */
#ifndef NATTER_JSONL_H
#define NATTER_JSONL_H

#include <stddef.h>

#include <cjson/cJSON.h>

/*
 * Parses the line S[0..N) (without its newline) as one JSON value with
 * only blanks around it.  Refused, with what is wrong written to ERR
 * (ERRLEN bytes; ITEM names what a line holds, "one ITEM a line"): a NUL
 * byte, bytes that are not UTF-8 (naming the first), text that is not
 * JSON, a second value after the first (cJSON stops after one), and
 * \u0000 in a string (cJSON would end the string there).  Returns the
 * value, for cJSON_Delete, or NULL.
 */
cJSON *jsonl_parse(const char *s, size_t n, const char *item, char *err, size_t errlen);

#endif
