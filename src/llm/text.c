/* text.c -- sanitising untrusted text for terminals, repairing invalid UTF-8. */
#include "config.h"

#include <string.h>

#include "natter/text.h"
#include "llm/unicode.h"

static const char repl[] = "\xef\xbf\xbd";   /* U+FFFD */

static size_t
emit(char *out, size_t cap, size_t at, const char *p, size_t n, int *full)
{
	if (*full || at + n > cap) {
		*full = 1;
		return at;
	}
	memcpy(out + at, p, n);
	return at + n;
}

size_t
text_sanitize(const char *s, size_t n, char *out, size_t cap, size_t *used, int final)
{
	size_t i = 0, o = 0;
	int full = 0;
	size_t stop = final ? n : utf8_complete_prefix((const unsigned char *)s, n);

	while (i < stop && !full) {
		uint32_t cp;
		size_t l = utf8_decode((const unsigned char *)s + i, stop - i, &cp);
		char buf[4];
		size_t before = o;

		if (cp >= UCP_RAW_BYTE || (cp >= 0x80 && cp < 0xA0)) {
			o = emit(out, cap, o, repl, 3, &full);
		} else if ((cp < 0x20 && cp != '\n' && cp != '\t') || cp == 0x7F) {
			uint32_t pic = cp == 0x7F ? 0x2421 : 0x2400 + cp;
			o = emit(out, cap, o, buf, utf8_encode(pic, buf), &full);
		} else {
			o = emit(out, cap, o, s + i, l, &full);
		}
		if (o == before && full)
			break;
		i += l;
	}
	if (used)
		*used = i;
	return o;
}

size_t
text_repair_utf8(const char *s, size_t n, char *out, size_t cap)
{
	size_t i = 0, o = 0;
	int full = 0;

	while (i < n && !full) {
		uint32_t cp;
		size_t l = utf8_decode((const unsigned char *)s + i, n - i, &cp);
		if (cp >= UCP_RAW_BYTE)
			o = emit(out, cap, o, repl, 3, &full);
		else
			o = emit(out, cap, o, s + i, l, &full);
		i += l;
	}
	return o;
}

size_t
text_utf8_bad_at(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint32_t cp;
		size_t l = utf8_decode((const unsigned char *)s + i, n - i, &cp);
		if (cp >= UCP_RAW_BYTE)
			return i;
		i += l;
	}
	return n;
}

int
text_json_has_nul(const char *s, size_t n)
{
	/* Outside strings valid JSON has no backslash, so every one starts an
	 * escape, and an escaped backslash is skipped whole. */
	for (size_t i = 0; i + 1 < n; i++) {
		if (s[i] != '\\')
			continue;
		if (s[i + 1] == 'u' && i + 6 <= n && !memcmp(s + i + 2, "0000", 4))
			return 1;
		i++;
	}
	return 0;
}

int
text_json_nul_to_fffd(char *s, size_t n)
{
	int k = 0;

	/* As text_json_has_nul reads escapes; "\ufffd" is as long as "\u0000". */
	for (size_t i = 0; i + 1 < n; i++) {
		if (s[i] != '\\')
			continue;
		if (s[i + 1] == 'u' && i + 6 <= n && !memcmp(s + i + 2, "0000", 4)) {
			memcpy(s + i + 2, "fffd", 4);
			k++;
		}
		i++;
	}
	return k;
}
