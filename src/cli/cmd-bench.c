/* cmd-bench.c -- `natter bench`: prompt and generation speed, measured like llama-bench. */
#include "config.h"

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

static const char *
base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

int
cmd_bench(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "n-prompt", required_argument, NULL, 'p' },
		{ "n-gen", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ "repetitions", required_argument, NULL, 'r' },
		{ "depth", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "sys", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	int n_prompt = 128, n_gen = 32, threads = 0, reps = 3, json = 0, sys = 0, c, rc = 1, depth = 0;
	struct llm_model *m = NULL;
	struct llm_ctx *ctx = NULL;
	int32_t *toks = NULL;
	float *logits = NULL;
	char err[512];
	double t_load, samples[2][64];
	uint64_t n_params = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "m:p:n:t:r:d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': path = optarg; break;
		case 'p': n_prompt = atoi(optarg); break;
		case 'n': n_gen = atoi(optarg); break;
		case 't': threads = atoi(optarg); break;
		case 'r': reps = atoi(optarg); break;
		case 'd': depth = atoi(optarg); break;
		case 'j': json = 1; break;
		case 's': sys = 1; break;
		case 'h':
			printf("usage: natter bench -m FILE [-p 128] [-n 32] [-d 0] [-t N] [-r 3] [--json] [--sys]\n"
			    "  -d, --depth N   measure after N tokens of context (evaluated once, untimed)\n");
			return 0;
		default:
			return 2;
		}
	}
	if (!path) {
		cli_error("bench: no model given (use -m FILE)");
		return 2;
	}
	if (n_prompt < 0 || n_gen < 0 || reps < 1 || reps > 64 || n_prompt > 65536 || n_gen > 65536 || depth < 0 ||
	    depth > 1 << 20) {
		cli_error("bench: -p and -n must be 0..65536, -d 0..1048576, -r 1..64");
		return 2;
	}
	if (threads <= 0)
		threads = sysbench_physical_cores();

	{
		double t0 = cli_now();
		if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
			cli_error("%s", err);
			goto out;
		}
		/* The tests run one after another from the same depth. */
		ctx = llm_ctx_new(m, depth + (n_prompt > n_gen ? n_prompt : n_gen) + 1,
		    n_prompt > 0 ? n_prompt : depth > 0 ? 256 : 1, threads, err, sizeof(err));
		if (!ctx) {
			cli_error("%s", err);
			goto out;
		}
		t_load = cli_now() - t0;
	}
	{
		const struct llm_hparams *hp = llm_model_hparams(m);
		const struct gguf_file *f = llm_model_gguf(m);
		int nv = tok_vocab_size(llm_model_vocab(m));
		uint64_t s = 42;

		for (uint64_t i = 0; i < f->n_tensors; i++)
			n_params += f->tensors[i].ne[0] * f->tensors[i].ne[1] * f->tensors[i].ne[2] * f->tensors[i].ne[3];
		const int n_toks = depth + n_prompt + n_gen + 1;
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
		/* Warm up: page the weights in and spin the threads up. */
		if (llm_eval(ctx, toks, 1, logits, 0, err, sizeof(err)) < 0) {
			cli_error("bench: %s", err);
			goto out;
		}
		/* The context every test starts from: DEPTH tokens evaluated
		 * once, then a checkpoint (a hybrid's recurrent states; a KV
		 * cache goes back by itself), so that each test goes back there
		 * instead of evaluating it again. */
		if (depth > 0) {
			llm_ctx_truncate(ctx, 0);
			if (llm_eval(ctx, toks, depth, NULL, 0, err, sizeof(err)) < 0) {
				cli_error("bench: %s", err);
				goto out;
			}
			llm_ctx_checkpoint(ctx, depth);
		}
		for (int r = 0; r < reps; r++) {
			for (int k = 0; k < 2; k++) {
				int kept;
				double t0;
				if ((k == 0 && n_prompt == 0) || (k == 1 && n_gen == 0))
					continue;
				kept = llm_ctx_truncate(ctx, depth);
				/* A ring that cannot go back that far: evaluate again. */
				if (kept < depth && llm_eval(ctx, toks + kept, depth - kept, NULL, 0, err, sizeof(err)) < 0) {
					cli_error("bench: %s", err);
					goto out;
				}
				t0 = cli_now();
				if (k == 0) {
					llm_eval(ctx, toks + depth, n_prompt, logits, 0, err, sizeof(err));
					samples[0][r] = n_prompt / (cli_now() - t0);
				} else {
					for (int i = 0; i < n_gen; i++)
						llm_eval(ctx, &toks[depth + i], 1, logits, 0, err, sizeof(err));
					samples[1][r] = n_gen / (cli_now() - t0);
				}
			}
		}
	}
	{
		struct rusage ru;
		double peak_rss;
		double bw = -1, gf = -1;
		const char *name = base_name(path);
		uint64_t size = llm_model_weight_bytes(m);

		getrusage(RUSAGE_SELF, &ru);
		peak_rss = ru.ru_maxrss * 1024.0;
		if (sys) {
			bw = sysbench_read_bandwidth(threads);
			gf = sysbench_sgemm_gflops(1024);
		}
		if (!json) {
			printf("model: %s (%s, %.2f GiB, %.2fB params), %d threads, kernels %s\n", name,
			    llm_model_type_name(m), size / 1073741824.0, n_params / 1e9, threads, q_cpu_features());
			printf("load %.2f s, peak RSS %.1f MiB\n", t_load, peak_rss / 1048576.0);
			printf("| %-*s | %14s |\n", depth ? 16 : 8, "test", "t/s");
			printf("| %-*s | %14s |\n", depth ? 16 : 8, depth ? "----------------" : "--------", "--------------");
		}
		for (int k = 0; k < 2; k++) {
			int np = k == 0 ? n_prompt : 0, ng = k == 1 ? n_gen : 0;
			double mean, sd;
			if ((k == 0 && n_prompt == 0) || (k == 1 && n_gen == 0))
				continue;
			mean_sd(samples[k], reps, &mean, &sd);
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
				cJSON_AddNumberToObject(o, "n_prompt", np);
				cJSON_AddNumberToObject(o, "n_gen", ng);
				cJSON_AddNumberToObject(o, "n_depth", depth);
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
				cJSON_AddStringToObject(o, "kernels", q_cpu_features());
				if (sys) {
					cJSON_AddNumberToObject(o, "mem_read_gbps", bw);
					cJSON_AddNumberToObject(o, "sgemm_gflops", gf);
				}
				txt = cJSON_PrintUnformatted(o);
				if (txt)
					puts(txt);
				free(txt);
				cJSON_Delete(o);
			} else {
				char test[48];
				int tl = snprintf(test, sizeof(test), k == 0 ? "pp%d" : "tg%d", k == 0 ? n_prompt : n_gen);
				if (depth > 0)
					snprintf(test + tl, sizeof(test) - tl, " @ d%d", depth);
				printf("| %-*s | %7.2f ± %4.2f |", depth ? 16 : 8, test, mean, sd);
				if (k == 1 && bw > 0)
					printf("  %.0f%% of bandwidth/bytes-per-token (%.1f tok/s)", 100.0 * mean * size / (bw * 1e9),
					    bw * 1e9 / size);
				if (k == 0 && gf > 0)
					printf("  %.1f GFLOP/s", mean * 2.0 * n_params / 1e9);
				putchar('\n');
			}
		}
		if (sys && !json)
			printf("machine: memory read %.1f GB/s (%d threads), sgemm %.1f GFLOP/s (OpenBLAS, n=1024)\n", bw,
			    threads, gf);
	}
	rc = 0;
out:
	free(toks);
	free(logits);
	llm_ctx_free(ctx);
	llm_model_free(m);
	return rc;
}
