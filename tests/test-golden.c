/* test-golden.c -- logits conformance against llama.cpp's goldens, batch and KV-cache paths. */
#include "config.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>

#include "natter/llm.h"
#include "natter/quant.h"
#include "test.h"

struct golden {
	char name[128];
	int32_t tokens[256];
	int n_tokens, n_prompt, n_vocab;
	float *logits;
};

/* Goldens of other folders, by "folder/name" (the model is models/name.gguf). */
static const char *const extra_goldens[] = {
	"golden-archs/tiny-llama-iq4_nl", "golden-archs/tiny-llama-iq4_xs",
};
#define N_EXTRA (int)(sizeof(extra_goldens) / sizeof(extra_goldens[0]))

/* NAME without its folder. */
static const char *
base_name(const char *name)
{
	const char *s = strrchr(name, '/');
	return s ? s + 1 : name;
}

static int
golden_load(const char *dir, const char *name, struct golden *g)
{
	char path[4096];
	size_t len;
	char *js;
	cJSON *root, *toks, *it;
	const char *base = base_name(name);
	int folder = (int)(base - name);

	memset(g, 0, sizeof(*g));
	snprintf(g->name, sizeof(g->name), "%s", base);
	snprintf(path, sizeof(path), "%s/%.*s%s.json", dir, folder ? folder : 7, folder ? name : "golden/", base);
	js = test_read_file(path, &len);
	if (!js)
		return -1;
	root = cJSON_Parse(js);
	free(js);
	if (!root)
		return -1;
	toks = cJSON_GetObjectItem(root, "tokens");
	cJSON_ArrayForEach(it, toks) {
		if (g->n_tokens < 256)
			g->tokens[g->n_tokens++] = (int32_t)it->valuedouble;
	}
	g->n_prompt = cJSON_GetObjectItem(root, "n_prompt")->valueint;
	g->n_vocab = cJSON_GetObjectItem(root, "n_vocab")->valueint;
	cJSON_Delete(root);
	snprintf(path, sizeof(path), "%s/%.*s%s.logits", dir, folder ? folder : 7, folder ? name : "golden/", base);
	g->logits = test_read_file(path, &len);
	if (!g->logits || len != (size_t)g->n_tokens * g->n_vocab * sizeof(float))
		return -1;
	return 0;
}

struct score {
	double mean_kl, max_diff;
	int agree, considered;
};

static void
compare(const struct golden *g, const float *ours, struct score *s)
{
	const int V = g->n_vocab;
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < g->n_tokens; i++) {
		const float *r = g->logits + (size_t)i * V, *o = ours + (size_t)i * V;
		double mr = -INFINITY, mo = -INFINITY, zr = 0, zo = 0, kl = 0;
		int ar = 0, ao = 0;
		float top1 = -INFINITY, top2 = -INFINITY;
		for (int j = 0; j < V; j++) {
			if (r[j] > mr) { mr = r[j]; ar = j; }
			if (o[j] > mo) { mo = o[j]; ao = j; }
			if (r[j] > top1) { top2 = top1; top1 = r[j]; } else if (r[j] > top2) top2 = r[j];
			double d = fabs((double)r[j] - o[j]);
			if (d > s->max_diff || isnan(d))
				s->max_diff = isnan(d) ? INFINITY : d;
		}
		for (int j = 0; j < V; j++) {
			zr += exp(r[j] - mr);
			zo += exp(o[j] - mo);
		}
		zr = log(zr);
		zo = log(zo);
		for (int j = 0; j < V; j++) {
			double lp = r[j] - mr - zr, lq = o[j] - mo - zo;
			kl += exp(lp) * (lp - lq);
		}
		s->mean_kl += kl / g->n_tokens;
		if (top1 - top2 > 0.5f) {
			s->considered++;
			s->agree += ar == ao;
		}
	}
}

static double
tolerance(const char *name)
{
	if (strstr(name, "-f32") || strstr(name, "-f16"))
		return 1e-5;
	if (strstr(name, "-bf16"))
		return 1e-4;
	return 5e-3;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
main(void)
{
	const char *dir = test_fixtures();
	char path[4096], err[512];
	char *names[256];
	int n_names = 0, n_files = 0;
	DIR *d;
	struct dirent *de;

	if (!dir) {
		SKIP("fixtures folder not found (set NATTER_FIXTURES)");
		return test_done("test-golden");
	}
	snprintf(path, sizeof(path), "%s/golden", dir);
	d = opendir(path);
	if (!d) {
		SKIP("no golden folder");
		return test_done("test-golden");
	}
	while ((de = readdir(d)) && n_names < 256) {
		size_t l = strlen(de->d_name);
		if (l > 5 && strcmp(de->d_name + l - 5, ".json") == 0) {
			names[n_names] = strndup(de->d_name, l - 5);
			n_names++;
		}
	}
	closedir(d);
	qsort(names, n_names, sizeof(*names), cmp_str);
	for (int i = 0; i < N_EXTRA && n_names < 256; i++)
		names[n_names++] = strdup(extra_goldens[i]);

	printf("%-26s %-12s %11s %11s %9s\n", "file", "mode", "mean KL", "max |dlogit|", "argmax");
	for (int i = 0; i < n_names; i++) {
		struct golden g;
		struct llm_model *m = NULL;
		struct llm_ctx *c = NULL;
		float *ours = NULL;

		if (golden_load(dir, names[i], &g) < 0) {
			CHECK(0, "%s: cannot read golden", names[i]);
			free(g.logits);
			continue;
		}
		snprintf(path, sizeof(path), "%s/models/%s.gguf", dir, base_name(names[i]));
		if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
			CHECK(0, "%s", err);
			free(g.logits);
			continue;
		}
		n_files++;
		ours = calloc((size_t)g.n_tokens * g.n_vocab, sizeof(float));
		c = llm_ctx_new(m, 256, 64, 2, err, sizeof(err));
		CHECK(c != NULL, "%s: %s", names[i], err);
		CHECK(llm_model_hparams(m)->n_vocab == g.n_vocab, "%s: vocabulary size", names[i]);
		for (int mode = 0; c && mode < 2; mode++) {
			struct score s;
			int rc = 0;
			llm_ctx_truncate(c, 0);
			if (mode == 0) {
				rc = llm_eval(c, g.tokens, g.n_tokens, ours, 1, err, sizeof(err));
			} else {
				/* The prompt as one batch, then one token at a time. */
				rc = llm_eval(c, g.tokens, g.n_prompt, ours, 1, err, sizeof(err));
				for (int t = g.n_prompt; rc == 0 && t < g.n_tokens; t++)
					rc = llm_eval(c, g.tokens + t, 1, ours + (size_t)t * g.n_vocab, 0, err, sizeof(err));
			}
			CHECK(rc == 0, "%s: eval: %s", names[i], err);
			compare(&g, ours, &s);
			printf("%-26s %-12s %11.3g %11.3g %5d/%-3d\n", names[i], mode ? "incremental" : "batch",
			    s.mean_kl, s.max_diff, s.agree, s.considered);
			CHECK(s.mean_kl <= tolerance(names[i]), "%s %s: mean KL %.3g above %.0e", names[i],
			    mode ? "incremental" : "batch", s.mean_kl, tolerance(names[i]));
			CHECK(s.agree == s.considered, "%s: argmax differs at %d of %d confident positions",
			    names[i], s.considered - s.agree, s.considered);
		}
		/* Greedy decoding reproduces the reference's continuation (f32 files). */
		if (c && strstr(names[i], "-f32")) {
			int ok = 1, at = -1;
			float *lg = malloc(g.n_vocab * sizeof(float));
			llm_ctx_truncate(c, 0);
			if (llm_eval(c, g.tokens, g.n_prompt, lg, 0, err, sizeof(err)) < 0)
				ok = 0;
			for (int t = g.n_prompt; ok && t < g.n_tokens; t++) {
				int best = 0;
				for (int j = 1; j < g.n_vocab; j++)
					if (lg[j] > lg[best])
						best = j;
				if (best != g.tokens[t]) {
					ok = 0;
					at = t;
					break;
				}
				if (llm_eval(c, &g.tokens[t], 1, lg, 0, err, sizeof(err)) < 0)
					ok = 0;
			}
			CHECK(ok, "%s: greedy continuation diverges at token %d", names[i], at);
			free(lg);
		}
		llm_ctx_free(c);
		llm_model_free(m);
		free(ours);
		free(g.logits);
	}
	printf("%d model files compared (kernels: %s)\n", n_files, q_cpu_features());
	CHECK(n_files >= 41 + N_EXTRA, "only %d golden models found", n_files);
	for (int i = 0; i < n_names; i++)
		free(names[i]);
	return test_done("test-golden");
}
