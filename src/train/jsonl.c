/* jsonl.c -- one line of a JSON-lines file (training examples, eval-choice questions), read strictly. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "natter/jsonl.h"
#include "natter/text.h"

cJSON *
jsonl_parse(const char *s, size_t n, const char *item, char *err, size_t errlen)
{
	const char *end;
	cJSON *o;
	size_t bad;

	if (memchr(s, 0, n)) {
		snprintf(err, errlen, "a NUL byte in the line");
		return NULL;
	}
	if ((bad = text_utf8_bad_at(s, n)) != n) {
		snprintf(err, errlen, "not valid UTF-8 (byte %zu of the line)", bad + 1);
		return NULL;
	}
	if (!(o = cJSON_ParseWithLengthOpts(s, n, &end, 0))) {
		snprintf(err, errlen, "not valid JSON");
		return NULL;
	}
	while (end < s + n && strchr(" \t\r\n", *end))
		end++;
	if (end < s + n)
		snprintf(err, errlen, "more after the JSON object (one %s a line)", item);
	else if (text_json_has_nul(s, n))
		snprintf(err, errlen, "a NUL character (\\u0000) in a string");
	else
		return o;
	cJSON_Delete(o);
	return NULL;
}
