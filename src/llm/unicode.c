/* unicode.c -- UTF-8 decoding, category and case lookup, GPT-2 byte encoding. */
#include "config.h"

#include "llm/unicode.h"
#include "llm/unicode-data.h"

/* The flags of the range of T (N ranges, sorted, apart) that holds CP; 0 if none does. */
static uint8_t
ucp_range_find(const struct ucp_range *t, size_t n, uint32_t cp)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (cp < t[mid].lo)
			hi = mid;
		else if (cp > t[mid].hi)
			lo = mid + 1;
		else
			return t[mid].flags;
	}
	return 0;
}

size_t
utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t v, min;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2; v = c & 0x1F; min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3; v = c & 0x0F; min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4; v = c & 0x07; min = 0x10000;
	} else {
		*cp = UCP_RAW_BYTE | c;
		return 1;
	}
	if (len > n)
		goto bad;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			goto bad;
		v = (v << 6) | (s[i] & 0x3F);
	}
	if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
		goto bad;
	*cp = v;
	return len;
bad:
	*cp = UCP_RAW_BYTE | c;
	return 1;
}

size_t
utf8_encode(uint32_t cp, char *out)
{
	if (cp >= UCP_RAW_BYTE) {
		out[0] = (char)(cp & 0xFF);
		return 1;
	}
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

size_t
utf8_complete_prefix(const unsigned char *s, size_t n)
{
	/* Look back at most 3 bytes for the start of an unfinished sequence. */
	for (size_t back = 1; back <= 3 && back <= n; back++) {
		unsigned char c = s[n - back];
		if ((c & 0xC0) == 0x80)
			continue;           /* continuation byte: keep looking */
		size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3 :
		    c >= 0xC2 && c <= 0xDF ? 2 : 1;
		if (need > back) {
			/* Hold it back only if what we have so far could still be valid. */
			uint32_t cp;
			unsigned char tmp[4] = { 0x80, 0x80, 0x80, 0x80 };
			for (size_t i = 0; i < back; i++)
				tmp[i] = s[n - back + i];
			/* Pad with the smallest continuation that keeps it valid. */
			if (c == 0xE0 && back == 1) tmp[1] = 0xA0;
			if (c == 0xF0 && back == 1) tmp[1] = 0x90;
			if (utf8_decode(tmp, need, &cp) == need)
				return n - back;
		}
		return n;
	}
	return n;
}

int
utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;
	uint32_t cp;

	while (i < n) {
		i += utf8_decode(s + i, n - i, &cp);
		if (cp >= UCP_RAW_BYTE)
			return 0;
	}
	return 1;
}

uint8_t
unicode_flags(uint32_t cp)
{
	if (cp >= UCP_RAW_BYTE)
		return 0;
	return ucp_range_find(unicode_ranges, sizeof(unicode_ranges) / sizeof(unicode_ranges[0]), cp);
}

int
unicode_case_map(uint32_t cp, int which, uint32_t out[3])
{
	size_t lo = 0, hi = sizeof(unicode_case_special) / sizeof(unicode_case_special[0]);

	out[0] = cp;
	if (cp >= UCP_RAW_BYTE || which < UNICODE_LOWER || which > UNICODE_TITLE)
		return 1;
	/* The specials are sorted by code point, then by WHICH. */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (unicode_case_special[mid].cp < cp ||
		    (unicode_case_special[mid].cp == cp && unicode_case_special[mid].which < which))
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < sizeof(unicode_case_special) / sizeof(unicode_case_special[0]) && unicode_case_special[lo].cp == cp &&
	    unicode_case_special[lo].which == which) {
		int n;
		for (n = 0; n < 3 && unicode_case_special[lo].to[n]; n++)
			out[n] = unicode_case_special[lo].to[n];
		return n;
	}
	lo = 0;
	hi = sizeof(unicode_case_ranges) / sizeof(unicode_case_ranges[0]);
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (cp < unicode_case_ranges[mid].lo)
			hi = mid;
		else if (cp > unicode_case_ranges[mid].hi)
			lo = mid + 1;
		else {
			const int32_t *d = (cp - unicode_case_ranges[mid].lo) % 2 ? unicode_case_ranges[mid].odd :
			    unicode_case_ranges[mid].even;
			out[0] = (uint32_t)((int32_t)cp + d[which]);
			return 1;
		}
	}
	return 1;
}

int
unicode_case_class(uint32_t cp)
{
	return ucp_range_find(unicode_cased_ranges, sizeof(unicode_cased_ranges) / sizeof(unicode_cased_ranges[0]), cp);
}

/* GPT-2 maps the printable bytes !..~, ¡..¬, ®..ÿ to themselves and the
 * other 68 bytes, in order, to U+0100 onwards. */
static int
byte_is_printable(int b)
{
	return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t
unicode_byte_to_cp(uint8_t b)
{
	int n = 0;

	if (byte_is_printable(b))
		return b;
	for (int i = 0; i < b; i++)
		if (!byte_is_printable(i))
			n++;
	return 0x100 + n;
}

int
unicode_cp_to_byte(uint32_t cp)
{
	if (cp < 0x100)
		return byte_is_printable((int)cp) ? (int)cp : -1;
	if (cp >= 0x100 + 68)
		return -1;
	int n = (int)(cp - 0x100);
	for (int b = 0; b < 256; b++)
		if (!byte_is_printable(b) && n-- == 0)
			return b;
	return -1;
}
