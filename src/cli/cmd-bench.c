/* cmd-bench.c -- `natter bench`: prompt and generation speed, measured like llama-bench, and the machine's bounds. */
#include "config.h"

#include <ctype.h>
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli/cli.h"
#include "natter/gguf.h"
#include "natter/llm.h"
#include "natter/quant.h"
#include "natter/sysbench.h"
#include "natter/tok.h"

static void
mean_sd(const double *v, int n, double *mean, double *sd)
{
	double s = 0, ss = 0;
	for (int i = 0; i < n; i++)
		s += v[i];
	*mean = s / n;
	for (int i = 0; i < n; i++)
		ss += (v[i] - *mean) * (v[i] - *mean);
	*sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

/* The machine's limits, measured by --sys. */
struct roof {
	double bw;      /* read GB/s */
	double fma;     /* float GFLOP/s */
	double i8;      /* int8 GOPS */
	double bf16;    /* bfloat16 pair products, GFLOP/s (0: none; BF16 at the float peak) */
	double sgemm;   /* OpenBLAS GFLOP/s */
};

/* The peak of the kernels a matrix of type T runs on: int8 products for
 * the quantized types, bfloat16 pair products for BF16 where the tier has
 * them, float FMAs for the rest. */
static double
type_peak(const struct roof *r, enum ggml_type t)
{
	if (t == GGML_TYPE_BF16 && r->bf16 > 0)
		return r->bf16;
	return t != GGML_TYPE_F32 && t != GGML_TYPE_F16 && t != GGML_TYPE_BF16 ? r->i8 : r->fma;
}

/* Whether T is one of the last layer's matrices that a prompt runs for
 * the token whose logits it asks for alone (blk_out_first): all but the
 * keys' and values' projections -- and in a recurrent layer, all but its
 * FFN's, since every token moves the state. */
static int
once_per_prompt(const struct gguf_tensor *t, const struct llm_hparams *hp)
{
	const int last = hp->n_layer - 1;
	char pre[32];
	const int n = snprintf(pre, sizeof(pre), "blk.%d.", last);
	const char *s = t->name.ptr + n;

	if (t->name.len <= (uint64_t)n || memcmp(t->name.ptr, pre, (size_t)n) != 0)
		return 0;
	if (hp->layer[last].kind == LLM_LAYER_RECURRENT)
		return !strncmp(s, "ffn_", 4);
	return strncmp(s, "attn_k", 6) != 0 && strncmp(s, "attn_v", 6) != 0 && strncmp(s, "attn_qkv", 8) != 0;
}

/*
 * The fastest this machine could run a test, from its measured limits:
 * prompt processing (NP tokens from position DEPTH) by compute, each matrix
 * at the peak of the kernels its type uses (the output matrix and the last
 * layer's once_per_prompt ones, and its attention, once per prompt, the
 * attention at the float peak), generation (NG tokens) by reading every
 * weight byte (the embedding table one row) and the KV cache once per
 * token.  Tokens per second, or 0 when unknown.
 */
static double
roof_bound(const struct gguf_file *f, const struct llm_hparams *hp, const struct roof *r, int np, int ng, int depth)
{
	const struct gguf_tensor *untied = sysbench_untied_embd(f), *out = untied ? gguf_find_tensor(f, "output.weight") :
	    gguf_find_tensor(f, "token_embd.weight");
	double t_tok = 0, bytes = 0;
	int n = np > 0 ? np : ng, n_att = 0;

	/* Only attention layers read a KV cache (a recurrent layer's state is
	 * small and of fixed size). */
	for (int il = 0; il < hp->n_layer; il++)
		n_att += hp->layer[il].kind != LLM_LAYER_RECURRENT;

	if (r->bw <= 0 || r->fma <= 0 || r->i8 <= 0 || n <= 0)
		return 0;
	for (uint64_t i = 0; i < f->n_tensors; i++) {
		const struct gguf_tensor *t = &f->tensors[i];
		double el = (double)t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
		enum sysbench_read rd = sysbench_token_read(t, untied);
		if (rd == SYSBENCH_READ_NONE)
			continue;
		if (rd == SYSBENCH_READ_ROW) {
			bytes += (double)t->nbytes / t->ne[1];
			continue;
		}
		bytes += (double)t->nbytes;
		double flops = 2 * el / (np > 0 && (t == out || once_per_prompt(t, hp)) ? np : 1);
		t_tok += flops / (type_peak(r, t->type) * 1e9);
	}
	if (np > 0) {
		/* q.k and the weighted sum of v over DEPTH + NP / 2 positions on
		 * average; in the last layer, one query over DEPTH + NP. */
		const int last_att = hp->layer[hp->n_layer - 1].kind != LLM_LAYER_RECURRENT;
		t_tok += 4.0 * (n_att - last_att) * hp->n_head * hp->head_dim * (depth + np / 2.0 + 1) / (r->fma * 1e9);
		t_tok += 4.0 * last_att * hp->n_head * hp->head_dim * (depth + np) / np / (r->fma * 1e9);
		return 1 / t_tok;
	}
	bytes += 2.0 * n_att * hp->n_head_kv * hp->head_dim * sizeof(float) * (depth + ng / 2.0 + 1);
	return r->bw * 1e9 / bytes;
}

/* A comma-separated list of counts (0..65536), at most MAX; returns how
 * many, or -1. */
static int
parse_list(const char *s, int *v, int max)
{
	int n = 0;
	for (;;) {
		char *end;
		long x = isdigit((unsigned char)*s) ? strtol(s, &end, 10) : -1;   /* digits only */
		if (x < 0 || x > 65536 || n == max)
			return -1;
		v[n++] = (int)x;
		if (*end == 0)
			return n;
		if (*end != ',')
			return -1;
		s = end + 1;
	}
}

static const char *
base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/*
 * --stop: the abort callback of a timed stop.  It notes the longest time
 * between two of its calls, and says stop from AT on (0: never), so that
 * a stop's latency -- from AT to llm_eval's return -- includes the wait
 * for the next look at the flag, as Esc's does.
 */
struct stopper {
	double at, last, max_gap;
};

static int
stopper_fn(void *arg)
{
	struct stopper *s = arg;
	double now = cli_now();
	if (s->last > 0 && now - s->last > s->max_gap)
		s->max_gap = now - s->last;
	s->last = now;
	return s->at > 0 && now >= s->at;
}

/* For a model of float weights: which way their prompt batches go
 * (q_float_gemm_choice), and what was measured. */
static void
float_gemm_line(const char *type)
{
	static const enum ggml_type ft[] = { GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16 };

	for (size_t i = 0; i < sizeof(ft) / sizeof(ft[0]); i++) {
		if (strcmp(type, ggml_type_info_get(ft[i])->name))
			continue;
		printf("%s batches:", type);
		for (int cls = 0; cls < 2; cls++) {
			double ms[2];
			enum q_float_gemm g = q_float_gemm_choice(ft[i], cls ? Q_FLOAT_GEMM_SPLIT : 32, ms);
			printf("%s %s", cls ? ";" : "", g == Q_FLOAT_GEMM_OPENBLAS ? "OpenBLAS sgemm" : "natter's tiles");
			if (ms[0] <= 0)
				break;
			printf(" %s %d tokens (measured: tiles %.3f ms, OpenBLAS %.3f ms)", cls ? "from" : "below",
			    Q_FLOAT_GEMM_SPLIT, ms[0], ms[1]);
		}
		putchar('\n');
	}
}

/* Takes CX back to the first DEPTH tokens of TOKS: a ring that cannot go
 * back that far evaluates them again.  Returns 0, or -1 with ERR. */
static int
rewind_to(struct llm_ctx *cx, const int32_t *toks, int depth, char *err, size_t errlen)
{
	int kept = llm_ctx_truncate(cx, depth);
	return kept < depth && llm_eval(cx, toks + kept, depth - kept, NULL, 0, err, errlen) < 0 ? -1 : 0;
}

int
cmd_bench(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "n-prompt", required_argument, NULL, 'p' },
		{ "n-gen", required_argument, NULL, 'n' },
		{ "repetitions", required_argument, NULL, 'r' },
		{ "depth", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "sys", no_argument, NULL, 's' },
		{ "no-warmup", no_argument, NULL, 'W' },
		{ "stop", no_argument, NULL, 'S' },
		{ "batch-size", required_argument, NULL, 'b' },
		CLI_ENGINE_LONGOPTS,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	enum { MAX_LIST = 8 };
	const char *path = NULL;
	int pl[MAX_LIST] = { 128 }, gl[MAX_LIST] = { 32 }, npl = 1, ngl = 1;
	int n_prompt = 0, n_gen = 0, threads, reps = 3, json = 0, sys = 0, stop = 0, c, handled, rc = 1, n_toks;
	int warmup = 1;
	/* -t, --kv-type, --exact-act, --lora (bench has no -c: each depth's
	 * context is sized to its tests). */
	struct cli_engine_args eng = { 0 };
	struct stopper st = { 0 };
	int n_stopped = 0;
	double stop_sum = 0, stop_max = 0;
	/* Tokens per batch: a longer prompt is evaluated in batches of this
	 * many, as llama-bench's n_ubatch (also 512) does (chat sessions:
	 * 256). */
	int n_batch = 512;
	/* Depths of context, ascending; the deepest. */
	int dl[MAX_LIST] = { 0 }, ndl = 1, depth = 0;
	/* The tests: at each depth, prompt sizes, then generation lengths
	 * (zeros skipped); {n_prompt, n_gen, the depth's index in DL}. */
	int tests[2 * MAX_LIST * MAX_LIST][3], n_tests = 0;
	struct llm_model *m = NULL;
	/* One context per depth (CTX: the deepest's), so that repetitions can go
	 * round every test in turn. */
	struct llm_ctx *ctxs[MAX_LIST] = { NULL }, *ctx = NULL;
	int32_t *toks = NULL;
	float *logits = NULL;
	char err[512];
	double t_load = 0, samples[2 * MAX_LIST * MAX_LIST][64];
	/* --sys: seconds spent reading the weights between each test's tokens
	 * and the reads, by read loop (sysbench.h: without and with its
	 * read-ahead, token by token in turn), and the bytes of one read. */
	double read_s[2 * MAX_LIST * MAX_LIST][2] = { { 0 } };
	unsigned long read_n[2 * MAX_LIST * MAX_LIST][2] = { { 0 } };
	/* Each test's jobs on the threads, and those the caller ran alone
	 * (the machine busy: llm_ctx_jobs). */
	unsigned long jobs[2 * MAX_LIST * MAX_LIST] = { 0 }, alone[2 * MAX_LIST * MAX_LIST] = { 0 };
	unsigned long alone_all = 0, jobs_all = 0;
	uint64_t w_bytes = 0;
	uint64_t n_params = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "m:p:n:t:r:b:d:h", opts, NULL)) != -1) {
		if ((handled = cli_engine_option(c, optarg, "bench", &eng)) < 0)
			goto usage;
		if (handled)
			continue;
		switch (c) {
		case 'm': path = optarg; break;
		case 'p':
			if ((npl = parse_list(optarg, pl, MAX_LIST)) < 0) {
				cli_error("bench: -p takes counts 0..65536, comma-separated (at most %d)", MAX_LIST);
				goto usage;
			}
			break;
		case 'n':
			if ((ngl = parse_list(optarg, gl, MAX_LIST)) < 0) {
				cli_error("bench: -n takes counts 0..65536, comma-separated (at most %d)", MAX_LIST);
				goto usage;
			}
			break;
		case 'r':
			if (cli_arg_int(optarg, 1, 64, &reps, "bench: -r wants a count of repetitions") < 0)
				goto usage;
			break;
		case 'b':
			if (cli_arg_int(optarg, 1, 65536, &n_batch, "bench: -b takes 1..65536 tokens per batch") < 0)
				goto usage;
			break;
		case 'd':
			if ((ndl = parse_list(optarg, dl, MAX_LIST)) < 0) {
				cli_error("bench: -d takes counts 0..65536, comma-separated (at most %d)", MAX_LIST);
				goto usage;
			}
			break;
		case 'j': json = 1; break;
		case 's': sys = 1; break;
		case 'S': stop = 1; break;
		case 'W': warmup = 0; break;
		case 'h':
			printf("usage: natter bench -m FILE [-p 128[,512...]] [-n 32[,...]] [-d 0[,4000...]] [-t N] [-r 3] [--json] [--sys]\n"
			    "       [-b 512] [--kv-type f16|q8_0|f32] [--exact-act] [--stop] [--no-warmup] [--lora FILE[:SCALE]]...\n"
			    "  -b N   tokens per batch (default 512, as llama-bench's n_ubatch): longer prompts\n"
			    "         are evaluated N tokens at a time\n"
			    "  -d N   measure every test after N tokens of context (evaluated once, untimed;\n"
			    "         each depth in a context of its own); the repetitions go round every\n"
			    "         test in turn\n"
			    "  --sys  also measure the machine (memory read bandwidth, float, int8 and, where the\n"
			    "         tier has it, bfloat16 dot peaks of the kernel tier in use) and show each test\n"
			    "         as a share of the bound they set;\n"
			    "         generation's bound is the rate at which the weights were read alone\n"
			    "         between its tokens (the faster of two read loops, plain and reading ahead)\n"
			    "  --no-warmup  time the first repetition cold (by default each prompt test is run\n"
			    "         once untimed first, as llama-bench does: its buffers and the KV cache's\n"
			    "         pages are touched before the clock starts)\n"
			    "  --lora measure with LoRA adapters on (repeatable)\n"
			    "  --stop also stop the longest prompt test at -r points spread over it, as Esc does,\n"
			    "         and report how long each stop took, and the longest time between two looks\n"
			    "         at the stop flag\n"
			    "  --exact-act  quantized products see their activations to about 16 bits, not\n"
			    "         rounded to 8 as llama.cpp does (natter's default)\n"
			    "  NATTER_CPU=TIER chooses a lower kernel tier (natter info --cpu lists them)\n"
			    "  NATTER_PREFETCH=B32,K[,F[,L2]] sets how many bytes ahead generation's matrix products\n"
			    "         ask for the weights: packed 32-weight block groups, packed K-quant ones, and\n"
			    "         F32, F16 and BF16 rows; L2 1 or 0: whether the packed groups also ask for what\n"
			    "         follows into L2 (default: as measured for the CPU's maker, natter info --cpu\n"
			    "         says; shown above the table)\n"
			    "  NATTER_FLOAT_GEMM=tiles|openblas forces how float weights' prompt batches run\n"
			    "         (default: whichever measured faster here, shown above the table)\n"
			    "  NATTER_PACK=0 leaves the weights as in the file (default: Q4_0, Q4_1, Q5_0, Q5_1,\n"
			    "         Q8_0, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS matrices held in memory are\n"
			    "         packed at load, as the chat does, and F16 and BF16 ones where their batches\n"
			    "         go through the tiles; the load line says so)\n");
			cli_lora_free(&eng.lora);
			return 0;
		default:
			goto usage;
		}
	}
	if (cli_no_more_args("bench", argc, argv, optind) < 0)
		goto usage;
	if (!path) {
		cli_error("bench: no model given (use -m FILE)");
		goto usage;
	}
	/* Depths ascending (the deepest context is the one --stop and the
	 * header use). */
	for (int i = 1; i < ndl; i++)
		for (int j = i; j > 0 && dl[j - 1] > dl[j]; j--) {
			int t = dl[j];
			dl[j] = dl[j - 1];
			dl[j - 1] = t;
		}
	depth = dl[ndl - 1];
	for (int i = 0; i < npl; i++)
		if (pl[i] > n_prompt)
			n_prompt = pl[i];
	for (int i = 0; i < ngl; i++)
		if (gl[i] > n_gen)
			n_gen = gl[i];
	for (int d = 0; d < ndl; d++) {
		for (int i = 0; i < npl; i++)
			if (pl[i] > 0) {
				tests[n_tests][0] = pl[i];
				tests[n_tests][1] = 0;
				tests[n_tests++][2] = d;
			}
		for (int i = 0; i < ngl; i++)
			if (gl[i] > 0) {
				tests[n_tests][0] = 0;
				tests[n_tests][1] = gl[i];
				tests[n_tests++][2] = d;
			}
	}
	if (n_tests == 0) {
		cli_error("bench: nothing to measure (-p and -n are all 0)");
		goto usage;
	}
	if (stop && n_prompt == 0) {
		cli_error("bench: --stop stops the longest prompt test, and -p has none");
		goto usage;
	}
	if (q_cpu_init(err, sizeof(err)) < 0) {
		cli_error("bench: %s", err);
		goto usage;
	}
	/* The count used, not 0, since the tables and --sys report it. */
	threads = eng.threads <= 0 ? sysbench_physical_cores() : cli_threads("bench", eng.threads);

	{
		double t0 = cli_now();
		if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
			cli_error("%s", err);
			goto out;
		}
		llm_model_pack(m);
		struct llm_ctx_params cp;
		cli_engine_ctx_params(&eng, &cp);
		n_batch = n_prompt < 1 ? (depth > 0 ? n_batch : 1) : n_prompt < n_batch ? n_prompt : n_batch;
		cp.n_batch = n_batch;
		cp.n_threads = threads;
		/* Deepest first (its creation is timed with the load): room for
		 * each depth and the longest test after it. */
		for (int d = ndl - 1; d >= 0; d--) {
			cp.n_ctx = dl[d] + (n_prompt > n_gen ? n_prompt : n_gen) + 1;
			ctxs[d] = llm_ctx_new_ex(m, &cp, err, sizeof(err));
			if (!ctxs[d]) {
				cli_error("%s", err);
				goto out;
			}
			if (cli_lora_attach(&eng.lora, m, ctxs[d]) < 0)
				goto out;
			if (d == ndl - 1)
				t_load = cli_now() - t0;
		}
		ctx = ctxs[ndl - 1];
	}
	{
		const struct llm_hparams *hp = llm_model_hparams(m);
		const struct gguf_file *f = llm_model_gguf(m);
		int nv = tok_vocab_size(llm_model_vocab(m));
		uint64_t s = 42;

		for (uint64_t i = 0; i < f->n_tensors; i++)
			n_params += f->tensors[i].ne[0] * f->tensors[i].ne[1] * f->tensors[i].ne[2] * f->tensors[i].ne[3];
		n_toks = depth + n_prompt + n_gen + 1;
		toks = malloc((size_t)n_toks * sizeof(*toks));
		logits = malloc((size_t)hp->n_vocab * sizeof(float));
		if (!toks || !logits) {
			cli_error("out of memory");
			goto out;
		}
		for (int i = 0; i < n_toks; i++) {
			s ^= s << 13; s ^= s >> 7; s ^= s << 17;
			toks[i] = (int32_t)(s % (uint64_t)nv);
		}
		/*
		 * Every test reads TOKS from 0, so a cache always holds a prefix
		 * of it.  Each depth's context is evaluated to its depth once
		 * (untimed; the first token warms the weights and the threads up)
		 * and a checkpoint taken there (a hybrid's recurrent states; a KV
		 * cache goes back by itself), so that each repetition goes back to
		 * it instead of evaluating it again.  The repetitions go round
		 * every test in turn, so that a machine whose speed drifts moves
		 * all of them alike and their ratios hold within the run.
		 */
		for (int d = 0; d < ndl; d++) {
			if (llm_eval(ctxs[d], toks, dl[d] > 0 ? dl[d] : 1, logits, 0, err, sizeof(err)) < 0) {
				cli_error("bench: %s", err);
				goto out;
			}
			llm_ctx_truncate(ctxs[d], dl[d]);
			llm_ctx_checkpoint(ctxs[d], dl[d]);
		}
		/* Round -1, untimed: every prompt test once (as llama-bench
		 * warms up), so that the first repetition does not pay for
		 * touching the batch's buffers and the cache's pages. */
		for (int r = warmup ? -1 : 0; r < reps; r++) {
			for (int k = 0; k < n_tests; k++) {
				int np = tests[k][0], ng = tests[k][1], dp = dl[tests[k][2]];
				struct llm_ctx *cx = ctxs[tests[k][2]];
				if (rewind_to(cx, toks, dp, err, sizeof(err)) < 0 ||
				    (r < 0 && np > 0 && llm_eval(cx, toks + dp, np, logits, 0, err, sizeof(err)) < 0)) {
					cli_error("bench: %s", err);
					goto out;
				}
				if (r < 0)
					continue;
				unsigned long a0, j0 = llm_ctx_jobs(cx, &a0), a1;
				double t0 = cli_now(), t_read = 0;
				if (np > 0 && llm_eval(cx, toks + dp, np, logits, 0, err, sizeof(err)) < 0) {
					cli_error("bench: %s", err);
					goto out;
				}
				for (int i = 0; i < ng; i++) {
					if (llm_eval(cx, &toks[dp + i], 1, logits, 0, err, sizeof(err)) < 0) {
						cli_error("bench: %s", err);
						goto out;
					}
					/* --sys: the weights read once more after every
					 * token, untimed as the token's own: its bound,
					 * measured moment by moment with it; the two
					 * loops by turns over all of the test's tokens
					 * (a one-token test's repetitions too). */
					if (sys) {
						int l = (int)((read_n[k][0] + read_n[k][1]) % 2);
						double dt = sysbench_read_weights(cx, &w_bytes, l ? SYSBENCH_AHEAD : 0);
						t_read += dt;
						read_s[k][l] += dt;
						read_n[k][l]++;
					}
				}
				samples[k][r] = (np + ng) / (cli_now() - t0 - t_read);
				jobs[k] += llm_ctx_jobs(cx, &a1) - j0;
				alone[k] += a1 - a0;
			}
		}
		for (int k = 0; k < n_tests; k++) {
			int np = tests[k][0], ng = tests[k][1], dp = dl[tests[k][2]];
			/* --stop: the longest prompt test again, stopped at -r
			 * points spread over its measured time. */
			if (stop && np == n_prompt && ng == 0 && dp == depth) {
				double mean, sd;
				mean_sd(samples[k], reps, &mean, &sd);
				llm_ctx_set_abort(ctx, stopper_fn, &st);
				for (int r = 0; r < reps; r++) {
					if (rewind_to(ctx, toks, dp, err, sizeof(err)) < 0) {
						cli_error("bench: %s", err);
						goto out;
					}
					st.last = 0;
					st.at = cli_now() + np / mean * (r + 0.5) / reps;
					int e = llm_eval(ctx, toks + dp, np, logits, 0, err, sizeof(err));
					double took = cli_now() - st.at;
					if (e == LLM_ESTOPPED) {
						n_stopped++;
						stop_sum += took;
						if (took > stop_max)
							stop_max = took;
					} else if (e < 0) {
						cli_error("bench: %s", err);
						goto out;
					}
				}
				llm_ctx_set_abort(ctx, NULL, NULL);
			}
		}
	}
	{
		struct rusage ru;
		double peak_rss;
		struct roof roof = { -1, -1, -1, 0, -1 };
		const char *name = base_name(path);
		uint64_t size = llm_model_weight_bytes(m);

		getrusage(RUSAGE_SELF, &ru);
		peak_rss = ru.ru_maxrss * 1024.0;
		if (sys) {
			roof.bw = sysbench_read_bandwidth(threads);
			roof.fma = sysbench_fma_gflops(threads);
			roof.i8 = sysbench_int8_gops(threads);
			roof.bf16 = sysbench_bf16_gflops(threads);
			roof.sgemm = sysbench_sgemm_gflops(1024);
		}
		if (!json) {
			int b32, k, f, l2;
			const char *why;
			q_cpu_prefetch(q_cpu_tier_chosen(), &b32, &k, &f, &l2, &why);
			printf("model: %s (%s, %.2f GiB, %.2fB params), %d threads, kernel tier %s (read-ahead %d/%d/%d "
			    "bytes%s)\n", name, llm_model_type_name(m), size / 1073741824.0, n_params / 1e9, threads,
			    q_cpu_features(), b32, k, f, l2 ? ", and past that into L2" : "");
			int group;
			uint64_t packed = llm_model_packed_bytes(m, &group);
			char pk[96] = "";
			if (packed)
				snprintf(pk, sizeof(pk), ", %.1f MiB of them packed in groups of %d rows", packed / 1048576.0,
				    group);
			char how[192];
			if (llm_model_weights_copied(m))
				snprintf(how, sizeof(how), "copied into memory");
			else
				snprintf(how, sizeof(how), "mapped from the file: %s; never packed",
				    llm_model_weights_why(m));
			printf("load %.2f s (weights %s%s), peak RSS %.1f MiB, KV cache %s %.1f MiB%s%s\n", t_load,
			    how, pk, peak_rss / 1048576.0,
			    llm_kv_type_name(eng.kv_type), llm_ctx_cache_bytes(ctx) / 1048576.0,
			    ndl > 1 ? " (the deepest context's)" : "",
			    eng.exact_act ? ", exact activations" : "");
			float_gemm_line(llm_model_type_name(m));
			for (int i = 0; i < eng.lora.n; i++)
				printf("adapter: %s, scale %g\n", base_name(eng.lora.path[i]), eng.lora.scale[i]);
			if (eng.lora.n)
				printf("adapters on %d weight products\n", llm_ctx_n_adapted(ctx));
			printf("| %-*s | %14s |%s\n", depth ? 16 : 8, "test", "t/s", sys ? " bound t/s | share" : "");
			printf("| %-*s | %14s |%s\n", depth ? 16 : 8, depth ? "----------------" : "--------", "--------------",
			    sys ? " --------- | -----" : "");
		}
		for (int k = 0; k < n_tests; k++) {
			int np = tests[k][0], ng = tests[k][1], d = dl[tests[k][2]];
			double mean, sd, bound;
			mean_sd(samples[k], reps, &mean, &sd);
			/* Generation's bound: the bandwidth of the weights' reads
			 * between its tokens, rather than of the buffer read once. */
			struct roof rk = roof;
			double loop_bw[2], pair_bw = sysbench_faster_read(read_s[k], read_n[k], (double)w_bytes, loop_bw);
			if (pair_bw > 0)
				rk.bw = pair_bw;
			bound = sys ? roof_bound(llm_model_gguf(m), llm_model_hparams(m), &rk, np, ng, d) : 0;
			if (json) {
				cJSON *o = cJSON_CreateObject();
				cJSON *arr = cJSON_CreateArray();
				char *txt;
				double mns, sdns;
				cJSON_AddStringToObject(o, "model_filename", path);
				cJSON_AddStringToObject(o, "model_type", llm_model_type_name(m));
				cJSON_AddNumberToObject(o, "model_size", (double)size);
				cJSON_AddNumberToObject(o, "model_n_params", (double)n_params);
				cJSON_AddNumberToObject(o, "n_threads", threads);
				cJSON_AddNumberToObject(o, "n_ubatch", n_batch);
				cJSON_AddNumberToObject(o, "n_prompt", np);
				cJSON_AddNumberToObject(o, "n_gen", ng);
				cJSON_AddNumberToObject(o, "n_depth", d);
				mns = (np + ng) / mean * 1e9;
				sdns = mean > 0 ? mns * sd / mean : 0;
				cJSON_AddNumberToObject(o, "avg_ns", mns);
				cJSON_AddNumberToObject(o, "stddev_ns", sdns);
				cJSON_AddNumberToObject(o, "avg_ts", mean);
				cJSON_AddNumberToObject(o, "stddev_ts", sd);
				for (int r = 0; r < reps; r++)
					cJSON_AddItemToArray(arr, cJSON_CreateNumber(samples[k][r]));
				cJSON_AddItemToObject(o, "samples_ts", arr);
				cJSON_AddNumberToObject(o, "load_s", t_load);
				cJSON_AddNumberToObject(o, "peak_rss_bytes", peak_rss);
				cJSON_AddStringToObject(o, "kv_type", llm_kv_type_name(eng.kv_type));
				cJSON_AddBoolToObject(o, "exact_act", eng.exact_act);
				cJSON_AddBoolToObject(o, "warmup", warmup);
				cJSON_AddNumberToObject(o, "kv_bytes", (double)llm_ctx_cache_bytes(ctx));
				cJSON_AddStringToObject(o, "tier", q_cpu_features());
				int pf32, pfk, pff, pfl2;
				const char *pfwhy;
				q_cpu_prefetch(q_cpu_tier_chosen(), &pf32, &pfk, &pff, &pfl2, &pfwhy);
				cJSON_AddNumberToObject(o, "read_ahead_b32", pf32);
				cJSON_AddNumberToObject(o, "read_ahead_k", pfk);
				cJSON_AddNumberToObject(o, "read_ahead_f", pff);
				cJSON_AddBoolToObject(o, "read_ahead_l2", pfl2);
				cJSON_AddNumberToObject(o, "packed_bytes", (double)llm_model_packed_bytes(m, NULL));
				cJSON_AddNumberToObject(o, "jobs", (double)jobs[k]);
				cJSON_AddNumberToObject(o, "jobs_alone", (double)alone[k]);
				if (stop && np == n_prompt && ng == 0 && d == depth) {
					cJSON_AddNumberToObject(o, "stops", n_stopped);
					cJSON_AddNumberToObject(o, "stop_mean_ms", n_stopped ? 1e3 * stop_sum / n_stopped : 0);
					cJSON_AddNumberToObject(o, "stop_max_ms", 1e3 * stop_max);
					cJSON_AddNumberToObject(o, "stop_flag_gap_ms", 1e3 * st.max_gap);
				}
				if (eng.lora.n) {
					cJSON *la = cJSON_CreateArray();
					for (int i = 0; i < eng.lora.n; i++) {
						cJSON *x = cJSON_CreateObject();
						cJSON_AddStringToObject(x, "file", eng.lora.path[i]);
						cJSON_AddNumberToObject(x, "scale", eng.lora.scale[i]);
						cJSON_AddItemToArray(la, x);
					}
					cJSON_AddItemToObject(o, "lora", la);
				}
				if (sys) {
					cJSON_AddNumberToObject(o, "mem_read_gbps", roof.bw);
					if (pair_bw > 0) {
						cJSON_AddNumberToObject(o, "weights_read_gbps", pair_bw);
						/* A loop that never ran (a one-token test of
						 * one repetition reads the plain loop only)
						 * is left out. */
						if (loop_bw[0] > 0)
							cJSON_AddNumberToObject(o, "weights_read_plain_gbps", loop_bw[0]);
						if (loop_bw[1] > 0)
							cJSON_AddNumberToObject(o, "weights_read_ahead_gbps", loop_bw[1]);
					}
					cJSON_AddNumberToObject(o, "fma_gflops", roof.fma);
					cJSON_AddNumberToObject(o, "int8_gops", roof.i8);
					if (roof.bf16 > 0)
						cJSON_AddNumberToObject(o, "bf16_gflops", roof.bf16);
					cJSON_AddNumberToObject(o, "sgemm_gflops", roof.sgemm);
					cJSON_AddNumberToObject(o, "bound_ts", bound);
					cJSON_AddNumberToObject(o, "bound_share", bound > 0 ? mean / bound : 0);
				}
				txt = cJSON_PrintUnformatted(o);
				if (txt)
					puts(txt);
				free(txt);
				cJSON_Delete(o);
			} else {
				char test[48];
				int tl = snprintf(test, sizeof(test), np > 0 ? "pp%d" : "tg%d", np > 0 ? np : ng);
				if (depth > 0)
					snprintf(test + tl, sizeof(test) - tl, " @ d%d", d);
				printf("| %-*s | %7.2f ± %4.2f |", depth ? 16 : 8, test, mean, sd);
				if (bound > 0)
					printf(" %9.1f | %4.0f%%", bound, 100 * mean / bound);
				if (pair_bw > 0 && loop_bw[1] > 0)
					printf(" (weights read at %.1f GB/s between its tokens; %.1f plain, %.1f read ahead)",
					    pair_bw, loop_bw[0], loop_bw[1]);
				else if (pair_bw > 0)
					printf(" (weights read at %.1f GB/s after its one token, plain loop only)", pair_bw);
				putchar('\n');
			}
			alone_all += alone[k];
			jobs_all += jobs[k];
		}
		if (alone_all && !json)
			printf("note: %lu of the timed tests' %lu jobs ran on one thread, not %d: the load average said "
			    "other programs wanted the CPUs (they share them by session); measure on an idle machine\n",
			    alone_all, jobs_all, threads);
		if (stop && !json && n_prompt > 0)
			printf("stop (as Esc) during pp%d: %d of %d stopped, mean %.1f ms, max %.1f ms; longest time between "
			    "two looks at the stop flag %.1f ms\n", n_prompt, n_stopped, reps,
			    n_stopped ? 1e3 * stop_sum / n_stopped : 0, 1e3 * stop_max, 1e3 * st.max_gap);
		if (sys && !json) {
			char bf[48] = "";
			if (roof.bf16 > 0)
				snprintf(bf, sizeof(bf), ", bf16 dot %.0f GFLOP/s", roof.bf16);
			printf("machine (%d threads, tier %s): memory read %.1f GB/s, float FMA %.0f GFLOP/s, int8 %.0f GOPS%s; "
			    "OpenBLAS sgemm %.0f GFLOP/s (n=1024)\n"
			    "bound: prompt by compute (int8 peak for quantized matrices, %sfloat peak for the rest and "
			    "attention; the output and the last layer past its keys and values once per prompt), "
			    "generation by reading the weights and KV cache once per token (recurrent "
			    "layers: no KV) at the rate natter read the weights (%.1f MiB) alone between the tokens; "
			    "memory and weights each read in two loops, plain and asking %d KiB ahead, the faster's rate\n",
			    threads, q_cpu_features(), roof.bw, roof.fma, roof.i8, bf, roof.sgemm,
			    roof.bf16 > 0 ? "bf16 dot peak for BF16 ones, " : "", w_bytes / 1048576.0, SYSBENCH_AHEAD / 1024);
		}
	}
	rc = 0;
out:
	free(toks);
	free(logits);
	for (int d = 0; d < ndl; d++)
		llm_ctx_free(ctxs[d]);
	llm_model_free(m);
	cli_lora_free(&eng.lora);
	return rc;
usage:
	cli_lora_free(&eng.lora);
	return 2;
}
