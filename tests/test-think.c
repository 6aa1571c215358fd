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
	/* Blanks past the 64 bytes held: out as answer, the tag still found. */
	{ "                                                              <think>r</think>a", 0, "r",
	  "                                                              a" },
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

/* Where the reasoning block of C's reply lies, as bytes [*FROM, *TO):
 * from the start (blanks before the open tag belong to it) to the end of
 * the first close tag (*CORE) and the blanks after it; empty when there
 * is none. */
static void
block_of(const struct tcase *c, size_t *from, size_t *core, size_t *to)
{
	const char *r = c->reply, *body, *end;
	size_t i = 0;

	*from = *to = *core = 0;
	if (c->inside) {
		body = r;
	} else {
		while (r[i] == ' ' || r[i] == '\n' || r[i] == '\r' || r[i] == '\t')
			i++;
		if (strncmp(r + i, "<think>", 7) != 0)
			return;
		body = r + i + 7;
	}
	end = strstr(body, "</think>");
	if (!end) {
		*to = *core = strlen(r);
		return;
	}
	end += 8;
	*core = (size_t)(end - r);
	while (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t')
		end++;
	*to = (size_t)(end - r);
}

/* Counts C's reply cut into the tokens that CUTS (sorted, inside the
 * reply) make, and compares with the block: a token counts as reasoning
 * when any byte of it lies in the block up to the end of the close tag,
 * or all of it in the blanks after that. */
static int
run_count(const struct tcase *c, const size_t *cuts, int ncuts, int *nr, int *na, int *want_r, int *want_a)
{
	struct think_count tc;
	size_t len = strlen(c->reply), from = 0, bf, bc, bt;

	block_of(c, &bf, &bc, &bt);
	*want_r = *want_a = 0;
	think_count_init(&tc, NULL, NULL, c->inside);
	for (int i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : len;
		if (to == from)
			continue;
		think_count_token(&tc, c->reply + from, to - from);
		if ((from < bc && to > bf) || (from >= bc && to <= bt && bt > bc))
			(*want_r)++;
		else
			(*want_a)++;
		from = to;
	}
	think_count_flush(&tc);
	*nr = tc.n_reasoning;
	*na = tc.n_answer;
	return *nr == *want_r && *na == *want_a;
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

	/* Token counts: every reply cut into tokens in every way with up to
	 * two cuts, and byte by byte. */
	{
		int n_streams = 0, wrong = 0, n_reasoned = 0;
		for (int ci = 0; ci < n_cases; ci++) {
			const struct tcase *c = &cases[ci];
			size_t len = strlen(c->reply), cuts[512];
			int nr, na, wr, wa;
			for (size_t a = 1; a < len; a++) {
				for (size_t b = a; b < len; b++) {
					int k = 0;
					cuts[k++] = a;
					if (b > a)
						cuts[k++] = b;
					if (!run_count(c, cuts, k, &nr, &na, &wr, &wa)) {
						wrong++;
						fprintf(stderr, "case %d cut at %zu, %zu: %d reasoning %d answer tokens, want %d %d\n",
						    ci, a, b, nr, na, wr, wa);
					}
					n_streams++;
				}
			}
			for (size_t i = 0; i + 1 < len; i++)
				cuts[i] = i + 1;
			CHECK(run_count(c, cuts, len ? (int)len - 1 : 0, &nr, &na, &wr, &wa),
			    "case %d byte by byte: %d reasoning %d answer tokens, want %d %d", ci, nr, na, wr, wa);
			n_reasoned += wr > 0;
		}
		CHECK(wrong == 0, "%d of %d token streams counted wrongly", wrong, n_streams);
		CHECK(n_reasoned >= 8, "the cases exercise reasoning tokens (%d replies with some)", n_reasoned);
		printf("think count: %d token streams, %d wrong\n", n_streams, wrong);
	}
	/* Tokens as a model writes them: the tags whole or cut, the blank
	 * after the close tag, an empty piece (half a character). */
	{
		static const struct {
			const char *toks[12];
			int inside, reasoning, answer;
		} seqs[] = {
			{ { "<think>", "\n", "Let", " me", " see", "\n", "</think>", "\n\n", "4", NULL }, 0, 8, 1 },
			{ { "<", "think", ">", "hm", "</", "think", ">", "The", " end", NULL }, 0, 7, 2 },
			{ { "Ok", "ay", "", "</think>", "\n\n", "4", "2", NULL }, 1, 5, 2 },
			{ { "Hello", " <think>", " there", NULL }, 0, 0, 3 },
			{ { " ", "<th", "ink", NULL }, 0, 0, 3 },       /* never completed: text */
			{ { "", "<think>", "a", "", "b", NULL }, 0, 5, 0 },
			{ { NULL }, 1, 0, 0 },
		};
		for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
			struct think_count tc;
			int n = 0;
			think_count_init(&tc, NULL, NULL, seqs[i].inside);
			for (; seqs[i].toks[n]; n++)
				think_count_token(&tc, seqs[i].toks[n], strlen(seqs[i].toks[n]));
			think_count_flush(&tc);
			CHECK(tc.n_reasoning == seqs[i].reasoning && tc.n_answer == seqs[i].answer && tc.n_reasoning +
			    tc.n_answer == n, "token sequence %zu: %d reasoning, %d answer (want %d, %d)", i, tc.n_reasoning,
			    tc.n_answer, seqs[i].reasoning, seqs[i].answer);
		}
		/* Other tags count the same way. */
		{
			struct think_count tc;
			think_count_init(&tc, "[THINK]", "[/THINK]", 0);
			think_count_token(&tc, "[TH", 3);
			CHECK(tc.n_reasoning + tc.n_answer == 0, "a maybe-tag waits");
			think_count_token(&tc, "INK]why[/", 9);
			think_count_token(&tc, "THINK]", 6);
			think_count_token(&tc, " ok", 3);
			think_count_flush(&tc);
			CHECK(tc.n_reasoning == 3 && tc.n_answer == 1, "custom tags: %d / %d", tc.n_reasoning, tc.n_answer);
		}
	}
	/* The entered flag: a reasoning part, even an empty one. */
	{
		struct think_split t;
		think_split_init(&t, NULL, NULL, 0);
		think_split_push(&t, "Plain", 5, NULL, NULL);
		CHECK(!think_split_entered(&t), "a plain reply has no reasoning part");
		think_split_init(&t, NULL, NULL, 0);
		think_split_push(&t, "<think></think>Hi", 17, NULL, NULL);
		CHECK(think_split_entered(&t), "an empty block is a reasoning part");
		think_split_init(&t, NULL, NULL, 1);
		CHECK(think_split_entered(&t), "a prompt that opened the block");
	}
	/* Tags as the options give them. */
	{
		char o[32], c[32], err[200];
		CHECK(think_tags_parse("[THINK] [/THINK]", o, c, sizeof(o), err, sizeof(err)) == 0 && !strcmp(o, "[THINK]") &&
		    !strcmp(c, "[/THINK]"), "tags parsed: %s", err);
		CHECK(think_tags_parse("  <a>\t</a>  ", o, c, sizeof(o), err, sizeof(err)) == 0 && !strcmp(o, "<a>") &&
		    !strcmp(c, "</a>"), "tags among blanks");
		CHECK(think_tags_parse("<think>", o, c, sizeof(o), err, sizeof(err)) < 0 && strstr(err, "two tags"),
		    "one tag refused: %s", err);
		CHECK(think_tags_parse("a b c", o, c, sizeof(o), err, sizeof(err)) < 0, "three refused");
		CHECK(think_tags_parse("", o, c, sizeof(o), err, sizeof(err)) < 0, "none refused");
		CHECK(think_tags_parse("x x", o, c, sizeof(o), err, sizeof(err)) < 0 && strstr(err, "differ"), "equal refused");
		CHECK(think_tags_parse("<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa> </a>", o, c, sizeof(o), err, sizeof(err)) < 0 &&
		    strstr(err, "31 bytes"), "a long tag refused: %s", err);
	}

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
