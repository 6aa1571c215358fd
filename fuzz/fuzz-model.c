/* fuzz-model.c -- libFuzzer: a model file loaded, packed and run for a few tokens (the whole engine). */
#define _GNU_SOURCE
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "natter/llm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Zero bytes after the input: a cut file still holds the tensors it
 * names (the tiny models' weights are under 2 MiB), so that libFuzzer,
 * which keeps the smallest input of the same coverage, can drop the
 * weights and mutate the header, metadata and tensor table. */
#define FUZZ_PAD (4u << 20)

/*
 * The input, then FUZZ_PAD zeros, is a GGUF file held in memory (memfd)
 * and loaded as natter loads one: every check of the loader and of the
 * architecture's description, the weights copied and packed for the
 * best tier the build and machine have (Makefile.am), then a batch of
 * three tokens and one more (the prompt's and generation's paths) in a
 * session of 8 positions.  A load, a session or an evaluation refused
 * with a message passes; one refused without a message aborts, as does a
 * loaded model without a vocabulary; crashes and sanitizer reports are
 * libFuzzer's to catch.  The logits are not checked: fuzzed weights may
 * be NaN, and so rightly are they.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512], path[64];
	struct llm_model *m = NULL;
	struct llm_ctx *c;
	int fd;

	fd = memfd_create("fuzz-model.gguf", 0);
	if (fd < 0) {
		perror("fuzz-model: memfd_create");
		abort();
	}
	for (size_t off = 0; off < size;) {
		ssize_t n = write(fd, data + off, size - off);
		if (n <= 0) {
			perror("fuzz-model: write");
			abort();
		}
		off += (size_t)n;
	}
	if (ftruncate(fd, (off_t)(size + FUZZ_PAD)) < 0) {
		perror("fuzz-model: ftruncate");
		abort();
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	err[0] = 0;
	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		if (!err[0])
			abort();   /* refused without saying why */
		close(fd);
		return 0;
	}
	if (llm_model_pack(m) < 0)
		abort();   /* no memory for one group's rows of a file of a few MiB: a bug */
	struct llm_ctx_params p;
	llm_ctx_params_default(&p);
	p.n_ctx = 8;
	p.n_batch = 4;
	p.n_threads = 1;
	err[0] = 0;
	c = llm_ctx_new_ex(m, &p, err, sizeof(err));
	if (!c) {
		if (!err[0])
			abort();
	} else {
		const int nv = llm_model_hparams(m)->n_vocab;
		if (nv <= 0)
			abort();
		const int32_t toks[4] = { 1 % nv, 2 % nv, (nv - 1) % nv, 0 };
		float *logits = malloc((size_t)nv * sizeof(float));
		if (!logits)
			abort();
		err[0] = 0;
		if (llm_eval(c, toks, 3, logits, 0, err, sizeof(err)) < 0 && !err[0])
			abort();
		err[0] = 0;
		if (llm_eval(c, toks + 3, 1, logits, 0, err, sizeof(err)) < 0 && !err[0])
			abort();
		free(logits);
		llm_ctx_free(c);
	}
	llm_model_free(m);
	close(fd);
	return 0;
}
