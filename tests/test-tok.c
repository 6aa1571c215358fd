/* test-tok.c -- tokenizer conformance against the fixtures' vocabularies and test vectors. */
#include "config.h"

#include <dirent.h>
#include <stdint.h>

#include "natter/gguf.h"
#include "natter/tok.h"
#include "test.h"

static const char *vocabs[] = {
	"ggml-vocab-llama-spm", "ggml-vocab-phi-3", "vocab-llama3", "vocab-qwen2",
	"ggml-vocab-gpt-2", "ggml-vocab-starcoder", "ggml-vocab-falcon",
	"ggml-vocab-deepseek-llm", "ggml-vocab-deepseek-coder",
};

static void
show(const char *label, const int32_t *ids, size_t n)
{
	fprintf(stderr, "  %s:", label);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, " %d", ids[i]);
	fputc('\n', stderr);
}

static void
run_vocab(const char *dir, const char *name)
{
	char path[4096], err[512];
	char *inp, *outp, *p, *q;
	size_t ninp, nout;
	struct gguf_file *f;
	struct tok_vocab *v;
	int n_cases = 0, enc_ok = 0, dec_ok = 0, dec_cases = 0;
	const char *sep = "\n__ggml_vocab_test__\n";

	snprintf(path, sizeof(path), "%s/vocab/%s.gguf", dir, name);
	if (gguf_open(path, &f, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return;
	}
	if (tok_vocab_load(f, &v, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		gguf_close(f);
		return;
	}
	snprintf(path, sizeof(path), "%s/vocab/%s.gguf.inp", dir, name);
	inp = test_read_file(path, &ninp);
	snprintf(path, sizeof(path), "%s/vocab/%s.gguf.out", dir, name);
	outp = test_read_file(path, &nout);
	CHECK(inp && outp, "%s: cannot read test vectors", name);
	if (!inp || !outp)
		goto out;

	p = inp;
	q = outp;
	while (*p) {
		char *end = strstr(p, sep);
		char *eol = strchr(q, '\n');
		struct tok_ids ids = { 0 };
		int32_t want[4096];
		size_t nwant = 0;

		if (!end || !eol)
			break;
		*eol = 0;
		for (char *s = q; *s;) {
			char *e2;
			long id = strtol(s, &e2, 10);
			if (e2 == s)
				break;
			want[nwant++] = (int32_t)id;
			s = e2;
		}
		n_cases++;
		tok_encode(v, p, end - p, 0, 0, &ids);
		int same = ids.n == nwant && (nwant == 0 || memcmp(ids.ids, want, nwant * sizeof(int32_t)) == 0);
		if (same) {
			enc_ok++;
		} else {
			fprintf(stderr, "%s case %d mismatch for \"%.*s\"\n", name, n_cases, (int)(end - p), p);
			show("want", want, nwant);
			show("got ", ids.ids, ids.n);
		}
		CHECK(same, "%s: case %d encodes differently", name, n_cases);

		/* Lossless unless an <unk> was needed. */
		int lossless = 1;
		for (size_t i = 0; i < nwant; i++)
			if (tok_type_of(v, want[i]) == TOK_TYPE_UNKNOWN)
				lossless = 0;
		if (lossless) {
			size_t dl;
			char *d = tok_decode(v, want, nwant, 0, &dl);
			dec_cases++;
			int ok = d && dl == (size_t)(end - p) && memcmp(d, p, dl) == 0;
			if (ok)
				dec_ok++;
			else
				fprintf(stderr, "%s case %d decodes to \"%s\"\n", name, n_cases, d ? d : "(null)");
			CHECK(ok, "%s: case %d does not decode back", name, n_cases);
			free(d);
		}
		tok_ids_free(&ids);
		p = end + strlen(sep);
		q = eol + 1;
	}
	printf("%-28s encode %d/%d passed, decode %d/%d passed\n", name, enc_ok, n_cases, dec_ok, dec_cases);
	CHECK(n_cases > 0, "%s: no test cases read", name);
out:
	free(inp);
	free(outp);
	tok_vocab_free(v);
	gguf_close(f);
}

int
main(void)
{
	const char *dir = test_fixtures();

	if (!dir) {
		SKIP("fixtures folder not found (set NATTER_FIXTURES)");
		return test_done("test-tok");
	}
	for (size_t i = 0; i < sizeof(vocabs) / sizeof(vocabs[0]); i++)
		run_vocab(dir, vocabs[i]);
	return test_done("test-tok");
}
