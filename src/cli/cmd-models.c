/* cmd-models.c -- `natter models`: the GGUF files of the models folder, with what they are and when used; or what a remote server offers. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "natter/gguf.h"
#include "natter/http.h"
#include "natter/hub.h"
#include "natter/oai.h"
#include "natter/remote.h"
#include "natter/store.h"

/* general.file_type, numbered as llama.cpp's llama_ftype. */
static const struct {
	int id;
	const char *name;
} ftypes[] = {
	{ 0, "F32" }, { 1, "F16" }, { 2, "Q4_0" }, { 3, "Q4_1" }, { 7, "Q8_0" }, { 8, "Q5_0" }, { 9, "Q5_1" },
	{ 10, "Q2_K" }, { 11, "Q3_K_S" }, { 12, "Q3_K_M" }, { 13, "Q3_K_L" }, { 14, "Q4_K_S" }, { 15, "Q4_K_M" },
	{ 16, "Q5_K_S" }, { 17, "Q5_K_M" }, { 18, "Q6_K" }, { 19, "IQ2_XXS" }, { 20, "IQ2_XS" }, { 21, "Q2_K_S" },
	{ 22, "IQ3_XS" }, { 23, "IQ3_XXS" }, { 24, "IQ1_S" }, { 25, "IQ4_NL" }, { 26, "IQ3_S" }, { 27, "IQ3_M" },
	{ 28, "IQ2_S" }, { 29, "IQ2_M" }, { 30, "IQ4_XS" }, { 31, "IQ1_M" }, { 32, "BF16" }, { 36, "TQ1_0" },
	{ 37, "TQ2_0" }, { 38, "MXFP4_MOE" },
};

struct entry {
	char name[256];
	int64_t size;
	int partial;              /* a .part file of natter pull */
	char arch[32];
	char quant[32];
	char problem[160];
	int64_t last_used;        /* unix time, 0: never */
};

/* Architecture and quantization from the file's metadata; the most common
 * weight type when the file does not say. */
static void
describe(const char *path, struct entry *e)
{
	struct gguf_file *f;
	char err[256], *arch;
	uint64_t ft;

	if (gguf_open(path, &f, err, sizeof(err)) < 0) {
		const char *p = strstr(err, ": ");
		snprintf(e->problem, sizeof(e->problem), "%.150s", p ? p + 2 : err);
		return;
	}
	arch = gguf_get_str(f, "general.architecture");
	snprintf(e->arch, sizeof(e->arch), "%s", arch ? arch : "?");
	free(arch);
	if (gguf_get_u64(f, "general.file_type", &ft) == 0) {
		for (size_t i = 0; i < sizeof(ftypes) / sizeof(ftypes[0]); i++)
			if ((uint64_t)ftypes[i].id == ft)
				snprintf(e->quant, sizeof(e->quant), "%s", ftypes[i].name);
	}
	if (!e->quant[0]) {
		uint64_t bytes[GGML_TYPE_COUNT] = { 0 };
		int best = -1;
		for (uint64_t i = 0; i < f->n_tensors; i++)
			if (f->tensors[i].n_dims >= 2 && (unsigned)f->tensors[i].type < GGML_TYPE_COUNT)
				bytes[f->tensors[i].type] += f->tensors[i].nbytes;
		for (int t = 0; t < GGML_TYPE_COUNT; t++)
			if (bytes[t] && (best < 0 || bytes[t] > bytes[best]))
				best = t;
		snprintf(e->quant, sizeof(e->quant), "%s", best >= 0 && ggml_type_info_get(best)->name ?
		    ggml_type_info_get(best)->name : "?");
	}
	gguf_close(f);
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

/* When each model was last used: the newest conversation the store holds
 * for its file name.  (Over the public store API; a store query per model
 * would be cheaper.) */
static void
last_used(const char *db, struct entry *es, int n)
{
	char path[4096];
	struct store *s;
	struct store_conv_info *ci;
	int m = 0, cap = 20000;
	struct stat st;
	char err[512];

	/* The history the other commands read. */
	if (cli_db_path(db, 0, path, sizeof(path), err, sizeof(err)) != 0)
		return;
	if (stat(path, &st) < 0)
		return;   /* no history yet: do not create one just to read it */
	if (store_open(path, STORE_READONLY, &s, err, sizeof(err)) < 0) {
		fprintf(stderr, "natter models: %s (last use not shown)\n", err);
		return;
	}
	ci = malloc((size_t)cap * sizeof(*ci));
	if (ci && store_conv_recent(s, ci, cap, &m) == 0) {
		for (int k = 0; k < n; k++) {
			/* The store's list holds the file name cut to its field's size. */
			char cut[sizeof(ci->model)];
			snprintf(cut, sizeof(cut), "%s", es[k].name);
			for (int i = 0; i < m; i++)
				if (!es[k].partial && !strcmp(ci[i].model, cut) && ci[i].updated > es[k].last_used)
					es[k].last_used = ci[i].updated;
		}
	}
	free(ci);
	store_close(s);
}

static void
human(int64_t b, char *out, size_t n)
{
	if (b >= (int64_t)1 << 30)
		snprintf(out, n, "%.2f GiB", b / (double)((int64_t)1 << 30));
	else if (b >= 1 << 20)
		snprintf(out, n, "%.1f MiB", b / (double)(1 << 20));
	else
		snprintf(out, n, "%.1f KiB", b / 1024.0);
}

/* `natter models --remote URL`: GET /v1/models, one line a model. */
static int
list_remote(const struct cli_chat_args *a)
{
	struct remote_opts ro;
	struct oai_model *m;
	char err[1024];
	int n;

	if (cli_remote_opts(a, &ro) < 0)
		return 2;
	if (http_global_init(err, sizeof(err)) < 0) {
		cli_error("%s", err);
		return 1;
	}
	if (remote_models_list(&ro, &m, &n, err, sizeof(err)) < 0) {
		cli_error("models: %s", err);
		return 1;
	}
	if (n == 0)
		printf("The server lists no models.\n");
	else
		printf("%-44s %-20s %-16s %s\n", "MODEL", "OWNED BY", "CREATED", "CONTEXT");
	for (int i = 0; i < n; i++) {
		char when[32] = "-", ctx[16] = "-";
		if (m[i].created > 0) {
			time_t t = (time_t)m[i].created;
			struct tm tm;
			localtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
		}
		if (m[i].max_model_len > 0)
			snprintf(ctx, sizeof(ctx), "%d", m[i].max_model_len);
		/* Names come from the server: no terminal controls. */
		for (char *p = m[i].id; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		for (char *p = m[i].owned_by; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		printf("%-44s %-20s %-16s %s\n", m[i].id, m[i].owned_by[0] ? m[i].owned_by : "-", when, ctx);
	}
	free(m);
	return 0;
}

int
cmd_models(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "db", required_argument, NULL, 'D' },
		{ "remote", required_argument, NULL, CLI_OPT_REMOTE },
		{ "api-key-env", required_argument, NULL, CLI_OPT_KEY_ENV },
		{ "connect-timeout", required_argument, NULL, CLI_OPT_CONNECT_TIMEOUT },
		{ "read-timeout", required_argument, NULL, CLI_OPT_READ_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *db = NULL;
	char dirbuf[4096];
	struct entry *es = NULL;
	struct cli_chat_args args;
	int n = 0, cap = 0, ch;
	DIR *d;
	struct dirent *de;

	/* The remote options only, as the chat front ends read them; the
	 * config file's server is not listed unless asked for. */
	memset(&args, 0, sizeof(args));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int r = cli_chat_option(ch, optarg, &args, "models");
		if (r < 0)
			return 2;
		if (r)
			continue;
		switch (ch) {
		case 'd': dir = optarg; break;
		case 'D': db = optarg; break;
		case 'h':
			printf("usage: natter models [--dir DIR] [--db FILE]\n"
			    "       natter models --remote URL [--api-key-env VAR] [--connect-timeout S] [--read-timeout S]\n"
			    "Lists the GGUF models in $XDG_DATA_HOME/natter/models (or DIR): size,\n"
			    "architecture, quantization, and when the history last used each.  With\n"
			    "--remote, what an OpenAI-compatible server offers (GET /v1/models); the API\n"
			    "key is read from $OPENAI_API_KEY or the variable --api-key-env names.\n");
			return 0;
		default:
			return 2;
		}
	}
	if (cli_no_more_args("models", argc, argv, optind) < 0)
		return 2;
	/* Each option is for one of the two lists: given to the other, it was dropped without a word. */
	if (!args.remote && (args.api_key_env || args.connect_timeout_s || args.read_timeout_s)) {
		cli_error("models: %s is for a server's models (--remote URL)", args.api_key_env ? "--api-key-env" :
		    args.connect_timeout_s ? "--connect-timeout" : "--read-timeout");
		return 2;
	}
	if (args.remote && (dir || db)) {
		cli_error("models: %s is for the models folder, not with --remote", dir ? "--dir" : "--db");
		return 2;
	}
	if (args.remote)
		return list_remote(&args);
	if (!dir && !(dir = hub_models_dir(dirbuf, sizeof(dirbuf)))) {
		cli_error("models: cannot find the models folder: set XDG_DATA_HOME or HOME, or use --dir DIR");
		return 2;
	}
	d = opendir(dir);
	if (!d && (errno != ENOENT || dir != dirbuf)) {
		/* The default folder may not exist yet; a folder named must. */
		cli_error("models: %s: %s", dir, strerror(errno));
		return 1;
	}
	while (d && (de = readdir(d))) {
		size_t l = strlen(de->d_name);
		int part = l > 10 && !strcmp(de->d_name + l - 10, ".gguf.part");
		char path[8192];
		struct stat st;
		struct entry *e;

		if (!(l > 5 && !strcmp(de->d_name + l - 5, ".gguf")) && !part)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (n == cap) {
			int nc = cap ? cap * 2 : 16;
			struct entry *ne = realloc(es, (size_t)nc * sizeof(*ne));
			if (!ne) {
				cli_error("out of memory");
				break;
			}
			es = ne;
			cap = nc;
		}
		e = &es[n++];
		memset(e, 0, sizeof(*e));
		snprintf(e->name, sizeof(e->name), "%.*s", (int)(part ? l - 5 : l), de->d_name);
		e->size = (int64_t)st.st_size;
		e->partial = part;
		if (!part)
			describe(path, e);
	}
	if (d)
		closedir(d);
	if (n == 0) {
		printf("No models in %s.\nGet one with, for example:  natter pull Qwen/Qwen3-0.6B-GGUF\n", dir);
		free(es);
		return 0;
	}
	qsort(es, (size_t)n, sizeof(*es), by_name);
	last_used(db, es, n);
	printf("%-44s %10s  %-10s %-9s %s\n", "MODEL", "SIZE", "ARCH", "QUANT", "LAST USED");
	for (int i = 0; i < n; i++) {
		struct entry *e = &es[i];
		char sz[32], when[32] = "never", name[1024], shown[1024];
		human(e->size, sz, sizeof(sz));
		if (e->last_used > 0) {
			time_t t = (time_t)e->last_used;
			struct tm tm;
			localtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
		}
		/* A file's name and what the file says of itself, made safe to show. */
		cli_shown(e->name, strlen(e->name), name, sizeof(name));
		if (e->partial)
			printf("%-44s %10s  (an unfinished natter pull: run it again to resume)\n", name, sz);
		else if (e->problem[0])
			printf("%-44s %10s  (not readable: %s)\n", name, sz,
			    cli_shown(e->problem, strlen(e->problem), shown, sizeof(shown)));
		else
			printf("%-44s %10s  %-10s %-9s %s\n", name, sz, cli_shown(e->arch, strlen(e->arch), shown,
			    sizeof(shown)), e->quant, when);
	}
	free(es);
	return 0;
}
