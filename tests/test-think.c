/* test-think.c -- the reasoning/answer split of a streamed reply, with tags cut at every byte. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "natter/think.h"
#include "test.h"

struct out {
	char reason[512], answer[512];
	size_t nr, na;
	int runs;
};

static void
collect(void *ctx, enum think_kind k, const char *s, size_t n)
{
	struct out *o = ctx;
	char *dst = k == THINK_REASONING ? o->reason : o->answer;
	size_t *len = k == THINK_REASONING ? &o->nr : &o->na;

	if (*len + n < sizeof(o->reason)) {
		memcpy(dst + *len, s, n);
		*len += n;
		dst[*len] = 0;
	}
	o->runs++;
}

struct tcase {
	const char *reply;
	int inside;              /* the prompt opened the reasoning */
	const char *reason, *answer;
};

static const struct tcase cases[] = {
	{ "<think>\nLet me see.\n</think>\n\nThe answer is 4.", 0, "\nLet me see.\n", "The answer is 4." },
	{ "Plain answer, no reasoning.", 0, "", "Plain answer, no reasoning." },
	{ "  \n<think>a</think>b", 0, "a", "b" },
	{ "Okay, so 2+2.\n</think>\n\n4", 1, "Okay, so 2+2.\n", "4" },
	{ "<think></think>Hi", 0, "", "Hi" },
	{ "I wrote <think> in my answer", 0, "", "I wrote <think> in my answer" },
	{ "<think>a < b and </thin k> is not a tag</think>yes", 0, "a < b and </thin k> is not a tag", "yes" },
	{ "<think>never closed <", 0, "never closed <", "" },
	{ "<thin", 0, "", "<thin" },
	{ "<think>x</think></think>", 0, "x", "</think>" },
	{ "<think>x</thi</think>y", 0, "x</thi", "y" },
	{ "<think>\xe4\xbd\xa0\xe5\xa5\xbd</think>\xe5\x86\x8d\xe8\xa7\x81", 0, "\xe4\xbd\xa0\xe5\xa5\xbd", "\xe5\x86\x8d\xe8\xa7\x81" },
	{ "", 0, "", "" },
	{ "", 1, "", "" },
};

/* Feeds REPLY cut at the positions in CUTS (sorted), and checks the result. */
static int
run_split(const struct tcase *c, const size_t *cuts, int ncuts, struct out *o)
{
	struct think_split t;
	size_t len = strlen(c->reply), from = 0;

	memset(o, 0, sizeof(*o));
	think_split_init(&t, NULL, NULL, c->inside);
	for (int i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : len;
		think_split_push(&t, c->reply + from, to - from, collect, o);
		from = to;
	}
	think_split_flush(&t, collect, o);
	return strcmp(o->reason, c->reason) == 0 && strcmp(o->answer, c->answer) == 0;
}

int
main(void)
{
	int n_cases = (int)(sizeof(cases) / sizeof(cases[0])), n_splits = 0, bad = 0;

	for (int ci = 0; ci < n_cases; ci++) {
		const struct tcase *c = &cases[ci];
		size_t len = strlen(c->reply), cuts[512];
		struct out o;

		/* Whole, then one cut at every byte position, then two cuts at every
		 * pair, then every byte on its own. */
		CHECK(run_split(c, NULL, 0, &o), "case %d whole: reasoning '%s' answer '%s'", ci, o.reason, o.answer);
		for (size_t a = 0; a <= len; a++) {
			cuts[0] = a;
			bad += !run_split(c, cuts, 1, &o);
			n_splits++;
			for (size_t b = a; b <= len; b++) {
				cuts[1] = b;
				if (!run_split(c, cuts, 2, &o)) {
					bad++;
					fprintf(stderr, "case %d cut at %zu and %zu: reasoning '%s' answer '%s'\n", ci, a, b,
					    o.reason, o.answer);
				}
				n_splits++;
			}
		}
		for (size_t i = 0; i < len; i++)
			cuts[i] = i + 1;
		CHECK(run_split(c, cuts, len ? (int)len - 1 : 0, &o), "case %d byte by byte: '%s' / '%s'", ci,
		    o.reason, o.answer);
	}
	CHECK(bad == 0, "%d of %d cut streams split wrongly", bad, n_splits);
	printf("think split: %d replies, %d cut streams, %d wrong\n", n_cases, n_splits, bad);

	/* The state is visible while streaming. */
	{
		struct think_split t;
		struct out o = { 0 };
		think_split_init(&t, NULL, NULL, 0);
		think_split_push(&t, "<thi", 4, collect, &o);
		CHECK(!think_split_inside(&t), "not inside before the tag completes");
		think_split_push(&t, "nk>x", 4, collect, &o);
		CHECK(think_split_inside(&t), "inside after the open tag");
		think_split_push(&t, "</think>", 8, collect, &o);
		CHECK(!think_split_inside(&t), "outside after the close tag");
	}
	/* Other tags (e.g. a model's own reasoning markers). */
	{
		struct think_split t;
		struct out o = { 0 };
		think_split_init(&t, "[R]", "[/R]", 0);
		think_split_push(&t, "[R]why[/", 8, collect, &o);
		think_split_push(&t, "R] ok", 5, collect, &o);
		think_split_flush(&t, collect, &o);
		CHECK(!strcmp(o.reason, "why") && !strcmp(o.answer, "ok"), "custom tags: '%s' / '%s'", o.reason, o.answer);
	}
	/* Prompts that open the reasoning themselves. */
	{
		const char *p1 = "<|im_start|>assistant\n<think>\n";
		const char *p2 = "<|im_start|>assistant\n<think>\n\n</think>\n\n";
		const char *p3 = "<|im_start|>assistant\n";
		CHECK(think_prompt_opens(p1, strlen(p1), NULL, NULL), "a prompt ending in <think> opens");
		CHECK(!think_prompt_opens(p2, strlen(p2), NULL, NULL), "an empty think block does not");
		CHECK(!think_prompt_opens(p3, strlen(p3), NULL, NULL), "a plain prompt does not");
	}
	return test_done("test-think");
}
