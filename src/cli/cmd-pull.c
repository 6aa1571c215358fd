/* cmd-pull.c -- `natter pull REPO[:FILE]`: a GGUF from the Hugging Face hub into the models folder. */
#include "config.h"

#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "natter/http.h"
#include "natter/hub.h"

static atomic_int interrupted;

static void
on_sigint(int sig)
{
	(void)sig;
	atomic_store(&interrupted, 1);
}

static void
human(int64_t b, char *out, size_t n)
{
	if (b < 0)
		snprintf(out, n, "?");
	else if (b >= (int64_t)1 << 30)
		snprintf(out, n, "%.2f GiB", b / (double)((int64_t)1 << 30));
	else if (b >= 1 << 20)
		snprintf(out, n, "%.1f MiB", b / (double)(1 << 20));
	else if (b >= 1 << 10)
		snprintf(out, n, "%.1f KiB", b / (double)(1 << 10));
	else
		snprintf(out, n, "%lld B", (long long)b);
}

/* What the progress display remembers between calls. */
struct bar {
	int tty;
	double t0;
	int64_t start;            /* bytes at t0 */
	int last_step;            /* plain output: the last tenth printed */
	int drawn;                /* a bar is on the line */
};

static void
on_progress(void *ctx, int64_t done, int64_t total, int64_t resumed)
{
	struct bar *b = ctx;
	double t = cli_now(), rate;
	char d[32], tot[32], r[32];

	if (b->t0 == 0) {
		b->t0 = t;
		b->start = done;
	}
	(void)resumed;
	rate = t - b->t0 > 0.2 ? (done - b->start) / (t - b->t0) : 0;
	human(done, d, sizeof(d));
	human(total, tot, sizeof(tot));
	human((int64_t)rate, r, sizeof(r));
	if (b->tty) {
		char bar[31], eta[32] = "";
		int fill = total > 0 ? (int)(30.0 * done / total) : 0;
		for (int i = 0; i < 30; i++)
			bar[i] = i < fill ? '#' : '-';
		bar[30] = 0;
		if (rate > 0 && total > 0) {
			long s = (long)((total - done) / rate);
			snprintf(eta, sizeof(eta), "  ETA %ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
		}
		if (total > 0)
			fprintf(stderr, "\r  %5.1f%% [%s] %s / %s  %s/s%s\033[K", 100.0 * done / total, bar, d, tot, r, eta);
		else
			fprintf(stderr, "\r  %s  %s/s\033[K", d, r);
		b->drawn = 1;
	} else if (total > 0) {
		int step = (int)(10 * done / total);
		if (step > b->last_step) {
			b->last_step = step;
			fprintf(stderr, "natter pull: %d%% (%s of %s)\n", step * 10, d, tot);
		}
	}
	fflush(stderr);
}

static void
on_notice(void *ctx, const char *msg)
{
	struct bar *b = ctx;
	if (b->drawn) {
		fputc('\n', stderr);
		b->drawn = 0;
	}
	fprintf(stderr, "natter pull: %s\n", msg);
}

static void
list_models(const struct hub_file *f, int n, const char *repo)
{
	char s[32];
	int k = 0;
	for (int i = 0; i < n; i++) {
		if (!hub_is_model(f[i].path))
			continue;
		if (k++ == 0)
			fprintf(stderr, "GGUF files in %s:\n", repo);
		human(f[i].size, s, sizeof(s));
		fprintf(stderr, "  %-60s %10s%s\n", f[i].path, s, hub_is_split(f[i].path) ? "  (split: not supported)" : "");
	}
	if (k == 0)
		fprintf(stderr, "%s has no GGUF model files.\n", repo);
}

/* Whether PATH has a ".." component (a name like "a..b.gguf" is fine). */
static int
has_dotdot(const char *path)
{
	for (const char *p = path;; p++) {
		if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || !p[2]))
			return 1;
		if (!(p = strchr(p, '/')))
			return 0;
	}
}

int
cmd_pull(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "retries", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct hub_opts o;
	struct hub_file *files = NULL, one;
	const struct hub_file *pick = NULL;
	struct bar bar = { 0 };
	char repo[512], dirbuf[4096], dest[4400], err[1024], *colon;
	const char *dir = NULL, *file = NULL;
	int n = 0, ch, rc = 1, lr;

	hub_opts_from_env(&o);
	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': dir = optarg; break;
		case 'r':
			if (cli_arg_int(optarg, 0, 100, &o.retries, "pull: --retries wants a count") < 0)
				return 2;
			break;
		case 'h':
			printf("usage: natter pull REPO[:FILE] [--dir DIR] [--retries N]\n"
			    "Downloads a GGUF model from the Hugging Face hub into $XDG_DATA_HOME/natter/models\n"
			    "(or DIR), e.g.  natter pull Qwen/Qwen3-0.6B-GGUF:Qwen3-0.6B-Q8_0.gguf\n"
			    "Without :FILE it lists the repository's GGUF files and takes the Q4_K_M one.\n"
			    "An interrupted download resumes where it stopped; the file gets its name only\n"
			    "after its size and SHA-256 match what the hub says (when it gives no SHA-256:\n"
			    "once it reads as a whole GGUF file).  A broken connection is resumed up to N\n"
			    "times (default 3); a size other than the hub's, a redirect loop or a reply\n"
			    "that cannot be read fails at once, the size mismatch removing the .part.\n"
			    "Vision projectors (mmproj*.gguf) are not models and are refused.\n"
			    "HF_ENDPOINT must be an http:// or https:// address.\n"
			    "Environment: HF_TOKEN (for gated or private models; sent to the hub only, never\n"
			    "printed), HF_ENDPOINT (default https://huggingface.co).\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind != argc - 1) {
		cli_error("pull: give one REPO or REPO:FILE (see natter pull --help)");
		return 2;
	}
	snprintf(repo, sizeof(repo), "%s", argv[optind]);
	colon = strchr(repo, ':');
	if (colon) {
		*colon = 0;
		file = colon + 1;
		if (!*file || file[0] == '/' || has_dotdot(file)) {
			cli_error("pull: '%s' is not a file of the repository", file);
			return 2;
		}
		if (!hub_is_model(file)) {
			if (hub_is_projector(file))
				cli_error("pull: %s is a multimodal projector (mmproj), the image part of a vision model, "
				    "which natter does not load; name the model's own .gguf file", file);
			else
				cli_error("pull: %s is not a GGUF model file (natter reads .gguf files)", file);
			return 2;
		}
	}
	{
		char origin[1024];
		if (http_url_origin(o.endpoint, origin, sizeof(origin)) < 0) {
			cli_error("pull: HF_ENDPOINT '%s' is not an http:// or https:// address", o.endpoint);
			return 2;
		}
	}
	if (hub_repo_check(repo, err, sizeof(err)) < 0) {
		cli_error("pull: %s", err);
		return 2;
	}
	if (!dir && !(dir = hub_models_dir(dirbuf, sizeof(dirbuf)))) {
		cli_error("pull: cannot find the models folder: set XDG_DATA_HOME or HOME, or use --dir DIR");
		return 2;
	}
	if (http_global_init(err, sizeof(err)) < 0) {
		cli_error("pull: %s", err);
		return 1;
	}
	{
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_sigint;
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	bar.tty = isatty(STDERR_FILENO);
	o.progress = on_progress;
	o.notice = on_notice;
	o.ctx = &bar;
	o.cancel = &interrupted;

	lr = hub_list(&o, repo, &files, &n, err, sizeof(err));
	if (lr < 0 && (!file || lr == HUB_EAUTH || lr == HUB_ENOTFOUND || lr == HUB_ECANCEL)) {
		cli_error("pull: %s", err);
		goto out;
	}
	if (file) {
		for (int i = 0; i < n && !pick; i++)
			if (!strcmp(files[i].path, file))
				pick = &files[i];
		if (!pick && lr == 0) {
			cli_error("pull: %s has no file %s", repo, file);
			list_models(files, n, repo);
			goto out;
		}
		if (!pick) {
			/* No listing (a mirror without the API): the download's own headers must do. */
			fprintf(stderr, "natter pull: the file list is unavailable (%s); going on without it\n", err);
			memset(&one, 0, sizeof(one));
			one.path = (char *)file;
			one.size = -1;
			one.unlisted = 1;
			pick = &one;
		}
	} else {
		int k;
		list_models(files, n, repo);
		k = hub_pick(files, n);
		if (k < 0) {
			cli_error("pull: %s; choose one: natter pull %s:FILE", k == -1 ? "there is no single-file Q4_K_M "
			    "model here" : "several files say Q4_K_M", repo);
			goto out;
		}
		pick = &files[k];
		fprintf(stderr, "natter pull: taking %s (the Q4_K_M quantization; name another with %s:FILE)\n",
		    pick->path, repo);
	}
	if (hub_is_split(pick->path)) {
		cli_error("pull: %s is one part of a split GGUF, which natter cannot load yet", pick->path);
		goto out;
	}
	{
		int r = hub_download(&o, repo, pick, dir, dest, sizeof(dest), err, sizeof(err));
		if (bar.drawn)
			fputc('\n', stderr);
		if (r < 0) {
			cli_error("pull: %s", err);
			goto out;
		}
	}
	printf("%s\n", dest);
	rc = 0;
out:
	hub_files_free(files, n);
	http_global_cleanup();
	return rc;
}
