/* cmd-finetune.c -- `natter finetune`: LoRA training on the CPU (SFT or DPO) from rated replies or JSONL files. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "natter/gguf.h"
#include "natter/llm.h"
#include "natter/lora.h"
#include "natter/sha256.h"
#include "natter/store.h"
#include "natter/sysbench.h"
#include "natter/train.h"

#define MAX_DATA 32

/* Every option of the command, parsed into one struct. */
struct ft_args {
	const char *model, *out, *db, *method, *tmpl, *targets, *init, *log, *resume, *out_type, *name;
	struct {
		const char *v[MAX_DATA];
		int n;
	} data;
	int min_rating, all_turns, rank, batch, grad_accum, warmup, ctx, threads, recompute, save_every;
	long long steps, epochs, seed;
	double alpha, dropout, lr, lr_min, beta1, beta2, weight_decay, beta;
};

enum ft_kind { FT_STR, FT_LIST, FT_INT, FT_LONG, FT_NUM, FT_FLAG };

/* One option: the table is the parser, the range check and the --help text. */
struct ft_opt {
	const char *name;
	int key;                 /* its short letter, or a code >= 256 for a long option alone */
	enum ft_kind kind;
	size_t offset;           /* of its field in struct ft_args */
	const char *arg;         /* its argument in --help, NULL for a flag */
	const char *help;
	double lo, hi;           /* the range of a number */
};

#define FT(name, key, kind, field, arg, help, lo, hi) \
	{ name, key, kind, offsetof(struct ft_args, field), arg, help, lo, hi }

enum {
	O_DATA = 256, O_DB, O_MIN_RATING, O_METHOD, O_TEMPLATE, O_ALL_TURNS, O_RANK, O_ALPHA, O_DROPOUT, O_TARGETS,
	O_INIT, O_LR, O_LR_MIN, O_BETA1, O_BETA2, O_WD, O_WARMUP, O_BATCH, O_ACCUM, O_STEPS, O_EPOCHS, O_CTX,
	O_BETA, O_SEED, O_RECOMPUTE, O_LOG, O_SAVE_EVERY, O_RESUME, O_OUT_TYPE, O_NAME,
};

static const struct ft_opt opts[] = {
	FT("model", 'm', FT_STR, model, "FILE", "the base model (GGUF); its weights stay frozen in their own type", 0, 0),
	FT("output", 'o', FT_STR, out, "FILE", "the adapter to write (GGUF, llama.cpp's LoRA format); an existing file must "
	    "be an adapter, not an input nor the history database", 0, 0),
	FT("data", O_DATA, FT_LIST, data, "FILE.jsonl", "examples in natter's export format (repeatable; - for stdin)", 0, 0),
	FT("db", O_DB, FT_STR, db, "FILE", "rated replies from this database (default without --data: natter's)", 0, 0),
	FT("min-rating", O_MIN_RATING, FT_INT, min_rating, "N", "SFT from the database: replies rated N..5 (thumbs up 5; 4)",
	    1, 5),
	FT("method", O_METHOD, FT_STR, method, "sft|dpo", "imitate good replies, or prefer better to worse (sft)", 0, 0),
	FT("chat-template", O_TEMPLATE, FT_STR, tmpl, "NAME|FILE", "the template to render with (the model's, as chat)",
	    0, 0),
	FT("all-turns", O_ALL_TURNS, FT_FLAG, all_turns, NULL,
	    "SFT, --data files: learn every assistant message, not only the last",
	    0, 0),
	FT("rank", O_RANK, FT_INT, rank, "N", "LoRA rank (8)", 1, 4096),
	FT("alpha", O_ALPHA, FT_NUM, alpha, "A", "LoRA alpha: the update is scaled by alpha / rank (16; 0: not scaled)",
	    0, 1e6),
	FT("dropout", O_DROPOUT, FT_NUM, dropout, "P", "dropout on the LoRA branch's input (0)", 0, 0.95),
	FT("targets", O_TARGETS, FT_STR, targets, "LIST", "weights to adapt: q,k,v,o,gate,up,down,output or all "
	    "(q,k,v,o,gate,up,down); expert stacks are not adapted: in a layer of experts gate, up and down adapt "
	    "nothing", 0, 0),
	FT("init", O_INIT, FT_STR, init, "ADAPTER", "start from this adapter (its targets, rank and alpha)", 0, 0),
	FT("lr", O_LR, FT_NUM, lr, "LR", "peak learning rate (1e-4)", 0, 10),
	FT("lr-min", O_LR_MIN, FT_NUM, lr_min, "LR", "learning rate at the end of the cosine (0)", 0, 10),
	FT("beta1", O_BETA1, FT_NUM, beta1, "B", "AdamW beta1 (0.9)", 0, 0.999999),
	FT("beta2", O_BETA2, FT_NUM, beta2, "B", "AdamW beta2 (0.999)", 0, 0.999999999),
	FT("weight-decay", O_WD, FT_NUM, weight_decay, "W", "AdamW decoupled weight decay (0)", 0, 10),
	FT("warmup", O_WARMUP, FT_INT, warmup, "N", "steps of linear warm-up before the cosine (0)", 0, INT_MAX),
	FT("batch", O_BATCH, FT_INT, batch, "N", "examples per micro-batch, one sequence after another (1)", 1, 65536),
	FT("grad-accum", O_ACCUM, FT_INT, grad_accum, "N", "micro-batches per optimizer step (1); times --batch at most "
	    "1048576", 1, 65536),
	FT("steps", O_STEPS, FT_LONG, steps, "N", "optimizer steps in all (default: from --epochs)", 1, 1e12),
	FT("epochs", O_EPOCHS, FT_LONG, epochs, "N", "passes over the examples (1), in whole steps: the last may take "
	    "some examples of one more pass", 1, 1e6),
	FT("ctx", O_CTX, FT_INT, ctx, "N", "tokens per example; longer ones are cut, with a warning (512, or the "
	    "model's training context if shorter)", 2, 1 << 20),
	FT("beta", O_BETA, FT_NUM, beta, "B", "DPO: how far from the reference the policy may go (0.1)", 1e-6, 1e6),
	FT("seed", O_SEED, FT_LONG, seed, "N", "the examples' order, the initial A and the dropout masks (0)", 0, 1e18),
	FT("threads", 't', FT_INT, threads, "N", "threads (default: physical cores)", 1, 512),
	FT("recompute", O_RECOMPUTE, FT_FLAG, recompute, NULL, "keep only each layer's input; recompute the layer in the "
	    "backward (less memory, about a third more time)", 0, 0),
	FT("log", O_LOG, FT_STR, log, "FILE.jsonl", "one JSON object per step: step, loss, lr, tokens, tokens_per_s "
	    "(DPO: margin, accuracy); not an input nor the history database", 0, 0),
	FT("save-every", O_SAVE_EVERY, FT_INT, save_every, "N", "write a checkpoint every N steps (next to -o: "
	    "NAME.ckpt.gguf)", 1, INT_MAX),
	FT("resume", O_RESUME, FT_STR, resume, "CHECKPOINT", "continue a run from its checkpoint (same options; exact "
	    "with the same -t)", 0, 0),
	FT("out-type", O_OUT_TYPE, FT_STR, out_type, "f32|f16|bf16", "the adapter's tensor type (f32)", 0, 0),
	FT("name", O_NAME, FT_STR, name, "NAME", "the adapter's general.name (default: -o's file name)", 0, 0),
};
#define N_OPTS ((int)(sizeof(opts) / sizeof(opts[0])))

static void
print_help(void)
{
	printf("usage: natter finetune -m MODEL -o ADAPTER.gguf [--data FILE.jsonl ... | --db FILE] [OPTIONS]\n"
	    "Trains a LoRA adapter on the CPU: SFT on replies rated --min-rating or better, or DPO on pairs\n"
	    "of replies to one turn rated differently; the loss falls on the replies' tokens only.\n");
	for (int i = 0; i < N_OPTS; i++) {
		char left[64];
		if (opts[i].key < 256)
			snprintf(left, sizeof(left), "-%c, --%s%s%s", opts[i].key, opts[i].name, opts[i].arg ? " " : "",
			    opts[i].arg ? opts[i].arg : "");
		else
			snprintf(left, sizeof(left), "    --%s%s%s", opts[i].name, opts[i].arg ? " " : "",
			    opts[i].arg ? opts[i].arg : "");
		printf("  %-30s %s\n", left, opts[i].help);
	}
	printf("  %-30s %s\n", "-h, --help", "show this help");
	printf("Ctrl-C saves a checkpoint and stops; --resume CHECKPOINT with the same options continues exactly\n"
	    "(byte for byte with the same -t; another thread count may differ within float rounding).\n"
	    "Models: every architecture natter runs (natter info --architectures) whose layers are attention, full\n"
	    "or sliding-window, or Gated DeltaNet (qwen35), with the blocks of the registry (q/k and post norms,\n"
	    "soft-caps, LongRoPE, routed and shared experts: the router and the experts stay frozen; gated\n"
	    "attention).  A DeltaNet layer's q,k,v adapt its attn_qkv and o its ssm_out.  Others are refused,\n"
	    "naming what is missing.\n");
}

/* Returns 0 to go on, 1 when help was printed, 2 on a usage error (message printed). */
static int
parse(int argc, char **argv, struct ft_args *a)
{
	struct option lo[N_OPTS + 2];
	char shorts[3 * N_OPTS + 4];
	size_t ns = 0;
	int c;

	for (int i = 0; i < N_OPTS; i++) {
		lo[i] = (struct option){ opts[i].name, opts[i].kind == FT_FLAG ? no_argument : required_argument, NULL,
			opts[i].key };
		if (opts[i].key < 256) {
			shorts[ns++] = (char)opts[i].key;
			if (opts[i].kind != FT_FLAG)
				shorts[ns++] = ':';
		}
	}
	lo[N_OPTS] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[N_OPTS + 1] = (struct option){ NULL, 0, NULL, 0 };
	shorts[ns++] = 'h';
	shorts[ns] = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
		const struct ft_opt *o = NULL;
		void *field;
		char *end;
		double v;
		long long whole;

		if (c == 'h') {
			print_help();
			return 1;
		}
		for (int i = 0; i < N_OPTS; i++)
			if (opts[i].key == c)
				o = &opts[i];
		if (!o)
			return 2;   /* getopt has said what was wrong */
		field = (char *)a + o->offset;
		switch (o->kind) {
		case FT_STR:
			*(const char **)field = optarg;
			continue;
		case FT_FLAG:
			*(int *)field = 1;
			continue;
		case FT_LIST:
			if (a->data.n == MAX_DATA) {
				cli_error("finetune: at most %d --%s files", MAX_DATA, o->name);
				return 2;
			}
			a->data.v[a->data.n++] = optarg;
			continue;
		default:
			break;
		}
		errno = 0;
		v = strtod(optarg, &end);
		/* A whole number read whole: strtod rounds one past 2^53 (a --seed). */
		if (o->kind != FT_NUM && end != optarg && !*end && !errno && strspn(optarg, "0123456789") == strlen(optarg))
			whole = strtoll(optarg, NULL, 10);
		else
			whole = (long long)v;
		/* strtod alone takes " 5" and "0x10" */
		if (end == optarg || *end || errno || !isfinite(v) || v < o->lo || v > o->hi ||
		    isspace((unsigned char)optarg[0]) || strpbrk(optarg, "xX") ||
		    (o->kind != FT_NUM && v != floor(v))) {
			cli_error("finetune: --%s wants %s from %g to %g, got '%s'", o->name,
			    o->kind == FT_NUM ? "a number" : "a whole number", o->lo, o->hi, optarg);
			return 2;
		}
		if (o->kind == FT_INT)
			*(int *)field = (int)v;
		else if (o->kind == FT_LONG)
			*(long long *)field = whole;
		else
			*(double *)field = v;
	}
	if (cli_no_more_args("finetune", argc, argv, optind) < 0)
		return 2;
	return 0;
}

/* --targets: names to TMODEL_* bits; 0 on an unknown name (message printed).  *FFN is set
 * when gate, up or down is named on its own (not through "all"). */
static unsigned
parse_targets(const char *list, int *ffn)
{
	static const struct {
		const char *name;
		unsigned bits;
	} names[] = {
		{ "q", TMODEL_Q }, { "k", TMODEL_K }, { "v", TMODEL_V }, { "o", TMODEL_O }, { "gate", TMODEL_GATE },
		{ "up", TMODEL_UP }, { "down", TMODEL_DOWN }, { "output", TMODEL_OUTPUT }, { "all", TMODEL_ALL_LINEAR },
	};
	unsigned bits = 0;
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, ",");
		unsigned b = 0;
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strlen(names[i].name) == n && strncmp(p, names[i].name, n) == 0)
				b = names[i].bits;
		if (!b) {
			cli_error("finetune: --targets: unknown weight '%.*s' (q, k, v, o, gate, up, down, output, all)", (int)n,
			    p);
			return 0;
		}
		if (b & (TMODEL_GATE | TMODEL_UP | TMODEL_DOWN) && b != TMODEL_ALL_LINEAR)
			*ffn = 1;
		bits |= b;
		p += n + (p[n] == ',');
	}
	if (!bits)
		cli_error("finetune: --targets names no weight");
	return bits;
}

/* --- what happens while training --- */

static volatile sig_atomic_t interrupted;

static void
on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

struct run {
	const struct ft_args *a;
	struct tloop *loop;
	const char *ckpt;
	FILE *log;
	int tty;
	double t_start, secs;     /* this process's training time so far */
	int64_t first, steps;     /* the first step of this process, and the total */
	int n_warn;
	int bar_shown;
	char err[512];
};

static void
on_warn(void *ctx, const char *msg)
{
	struct run *r = ctx;
	if (++r->n_warn <= 5)
		fprintf(stderr, "%s: warning: %s\n", cli_progname, msg);
	else if (r->n_warn == 6)
		fprintf(stderr, "%s: warning: (further warnings only counted)\n", cli_progname);
}

static void
fmt_eta(double s, char *buf, size_t n)
{
	long t = (long)(s + 0.5);
	if (t >= 3600)
		snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
	else if (t >= 60)
		snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
	else
		snprintf(buf, n, "%lds", t);
}

/* A number for JSON: null when not finite. */
static void
json_num(FILE *f, const char *key, double v, int last)
{
	if (isfinite(v))
		fprintf(f, "\"%s\":%.9g%s", key, v, last ? "" : ",");
	else
		fprintf(f, "\"%s\":null%s", key, last ? "" : ",");
}

static int
on_step(void *ctx, const struct tloop_step *st)
{
	struct run *r = ctx;
	const int dpo = strcmp(r->a->method, "dpo") == 0;
	double tps = st->seconds > 0 ? st->tokens / st->seconds : 0, eta;
	int64_t done_here = st->step - r->first + 1;
	char etas[32], extra[64] = "";

	r->secs += st->seconds;
	eta = r->secs / (double)done_here * (double)(st->steps - st->step);
	fmt_eta(eta, etas, sizeof(etas));
	if (dpo)
		snprintf(extra, sizeof(extra), " margin %.4f acc %3.0f%%", st->margin, 100 * st->accuracy);
	if (r->tty) {
		/* One line redrawn in place, cut to the terminal's width: a line that wrapped
		 * would not be redrawn by the carriage return. */
		struct winsize ws;
		char bar[21], line[256];
		int fill = (int)(20 * st->step / (st->steps ? st->steps : 1)), cols = 80;
		if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
			cols = ws.ws_col;
		for (int i = 0; i < 20; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[20] = 0;
		snprintf(line, sizeof(line), "step %lld/%lld [%s] loss %.4f%s lr %.2e %.0f tok/s ETA %s", (long long)st->step,
		    (long long)st->steps, bar, st->loss, extra, st->lr, tps, etas);
		if (cols - 1 < (int)sizeof(line))
			line[cols > 1 ? cols - 1 : 0] = 0;
		fprintf(stderr, "\r\033[K%s", line);
		r->bar_shown = 1;
	} else {
		fprintf(stderr, "step %lld/%lld loss %.4f%s lr %.3e tokens %ld %.1f tok/s eta %s\n", (long long)st->step,
		    (long long)st->steps, st->loss, extra, st->lr, st->tokens, tps, etas);
	}
	if (r->log) {
		fprintf(r->log, "{\"step\":%lld,", (long long)st->step);
		json_num(r->log, "loss", st->loss, 0);
		json_num(r->log, "lr", st->lr, 0);
		fprintf(r->log, "\"tokens\":%ld,", st->tokens);
		json_num(r->log, "tokens_per_s", tps, !dpo);
		if (dpo) {
			json_num(r->log, "margin", st->margin, 0);
			json_num(r->log, "accuracy", st->accuracy, 1);
		}
		fputs("}\n", r->log);
		if (fflush(r->log) != 0 || ferror(r->log)) {
			snprintf(r->err, sizeof(r->err), "%s: cannot write the log: %s", r->a->log, strerror(errno));
			return 1;
		}
	}
	if (r->a->save_every && st->step % r->a->save_every == 0 && st->step < st->steps) {
		if (tloop_save(r->loop, r->ckpt, r->err, sizeof(r->err)) < 0)
			return 1;
	}
	return 0;
}

/* A resumed run's log, cut after the checkpoint's step DONE: a run that
 * died after logging steps its checkpoint lacks would log them twice.
 * Leaves F at its end for appending; -1 with the error printed. */
static int
log_trim(FILE *f, int64_t done, const char *path)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	off_t keep = 0;

	while ((n = getline(&line, &cap, f)) > 0) {
		long long step;
		/* A line cut short by the crash goes too. */
		if (line[n - 1] != '\n' || (sscanf(line, "{\"step\":%lld,", &step) == 1 && step > done))
			break;
		keep += n;
	}
	free(line);
	if (ferror(f) || fflush(f) != 0 || ftruncate(fileno(f), keep) < 0 || fseeko(f, keep, SEEK_SET) < 0) {
		cli_error("%s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* NAME.gguf -> NAME.ckpt.gguf (a new string). */
static char *
ckpt_path(const char *out)
{
	size_t n = strlen(out);
	char *p = malloc(n + 16);
	if (!p)
		return NULL;
	if (n > 5 && strcmp(out + n - 5, ".gguf") == 0)
		n -= 5;
	snprintf(p, n + 16, "%.*s.ckpt.gguf", (int)n, out);
	return p;
}

static void
digest(const void *data, size_t len, char hex[65])
{
	struct sha256 s;
	sha256_init(&s);
	sha256_update(&s, data, len);
	sha256_final_hex(&s, hex);
}

/* Rated replies from the database, through natter's own export (its lines are the
 * contract with the store), read back as any JSONL file.  DB (N bytes) gets the path of
 * the database opened, for the adapter to record. */
static int
read_db(const struct ft_args *a, struct tdata_set *set, const struct tdata_tmpl *t, struct run *r, char *db,
	size_t dbn)
{
	struct store_export_opts eo = { .format = strcmp(a->method, "dpo") == 0 ? STORE_DPO : STORE_SFT,
		.min_rating = a->min_rating };
	struct store_export_counts cnt = { 0 };
	const char *tmpdir = getenv("TMPDIR");
	char dir[4096], path[4200], err[1024];
	struct store *s;
	int n, rc = -1;

	snprintf(dir, sizeof(dir), "%s/natter-finetune-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
	if (!mkdtemp(dir)) {
		cli_error("%s: %s", dir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/export.jsonl", dir);
	if (!(s = cli_store_open_path(a->db, STORE_READONLY, db, dbn)))
		goto out;
	if (store_export(s, &eo, path, &cnt, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		store_close(s);
		goto out;
	}
	store_close(s);
	n = cnt.lines;
	if (n == 0) {
		cli_error("finetune: the database has no %s to train on%s", eo.format == STORE_DPO ?
		    "pair of replies to one turn rated differently" : "rated reply", eo.format == STORE_DPO ? "" :
		    " (lower --min-rating?)");
		goto out;
	}
	if (tdata_read_jsonl(set, t, path, on_warn, r, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		goto out;
	}
	rc = 0;
out:
	unlink(path);
	rmdir(dir);
	return rc;
}

/* The file name of PATH, without its folders. */
static const char *
base_name(const char *path)
{
	const char *b = strrchr(path, '/');
	return b ? b + 1 : path;
}

/*
 * S (a file's name) as a value of a config line, a new string (NULL: out of memory).  A
 * name may hold any byte but '/' and NUL: a newline in it would end the line, and what
 * follows would read as a line of its own (a data_source=, a min_rating=).  A backslash
 * and each control character are written as C escapes (\\, \n, \t, \x1b), so one value
 * stays one line and reads back as the one name it was.
 */
static char *
config_escape(const char *s)
{
	size_t n = strlen(s);
	char *out, *p;

	if (n > (SIZE_MAX - 1) / 4 || !(out = p = malloc(4 * n + 1)))
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '\\' || c == '\n' || c == '\t') {
			*p++ = '\\';
			*p++ = c == '\n' ? 'n' : c == '\t' ? 't' : '\\';
		} else if (c < 0x20 || c == 0x7f) {
			p += sprintf(p, "\\x%02x", c);
		} else {
			*p++ = (char)c;
		}
	}
	*p = 0;
	return out;
}

/* The config's line of the time the examples were rendered at (the chat template's
 * strftime_now): a resumed run renders them at its checkpoint's. */
#define RENDER_TIME "render_time="

/* The render time in checkpoint PATH's config into *NOW; 0 when it has none (made before
 * natter recorded it) or cannot be read (tloop_resume says why, later). */
static int
checkpoint_render_time(const char *path, int64_t *now)
{
	struct gguf_file *f = NULL;
	char err[512], *config, *line;
	int found = 0;

	if (gguf_open(path, &f, err, sizeof(err)) < 0)
		return 0;
	config = gguf_get_str(f, "natter.checkpoint.config");
	for (line = config; line && *line && !found; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		char *end;
		long long v;
		if (strncmp(line, RENDER_TIME, strlen(RENDER_TIME)) != 0)
			continue;
		errno = 0;
		v = strtoll(line + strlen(RENDER_TIME), &end, 10);
		if (errno == 0 && end != line + strlen(RENDER_TIME) && (*end == '\n' || !*end)) {
			*now = v;
			found = 1;
		}
	}
	free(config);
	gguf_close(f);
	return found;
}

/* The options a checkpoint must have been made with to be resumed: one per line. */
static char *
config_text(const struct ft_args *a, const struct llm_model *m, const char *model_sha, const struct tdata_tmpl *t,
	    const struct lora_adapter *init, const struct tdata_set *set, unsigned targets, long long steps,
	    int with_time)
{
	char *buf = NULL, pairs[64], when[64] = "", *model = config_escape(base_name(llm_model_gguf(m)->path)),
	     *tmpl = config_escape(tdata_tmpl_name(t));

	if (!model || !tmpl) {
		free(model);
		free(tmpl);
		return NULL;
	}
	/* From an adapter, its pairs, ranks and alpha are the adapter's (--targets, --rank and
	 * --alpha are not used): said so, not as the options' values. */
	if (init)
		snprintf(pairs, sizeof(pairs), "targets=the init's\nrank=the init's\nalpha=%.9g", (double)lora_alpha(init));
	else
		snprintf(pairs, sizeof(pairs), "targets=%#x\nrank=%d\nalpha=%.9g", targets, a->rank, a->alpha);
	if (with_time)
		snprintf(when, sizeof(when), RENDER_TIME "%lld\n", (long long)tdata_tmpl_now(t));
	/* (Sized to fit: names escaped may be long, and a line cut short would
	 * lose the lines after it.) */
	if (asprintf(&buf,
	    "model=%s %zu bytes, sha256 %s\ntemplate=%s\nmethod=%s\ndata=%d examples, fingerprint %016llx\nctx=%d\n"
	    "all_turns=%d\n"
	    "init=%s\n%s\ndropout=%.9g\nlr=%.9g\nlr_min=%.9g\nbeta1=%.9g\nbeta2=%.9g\n"
	    "weight_decay=%.9g\nwarmup=%d\nbatch=%d\ngrad_accum=%d\nsteps=%lld\nbeta=%.9g\nseed=%lld\n%s",
	    model, llm_model_gguf(m)->size, model_sha, tmpl, a->method, set->n,
	    (unsigned long long)tdata_set_fingerprint(set), a->ctx, a->all_turns, init ? lora_sha256(init) : "none",
	    pairs, a->dropout, a->lr, a->lr_min, a->beta1, a->beta2,
	    a->weight_decay, a->warmup, a->batch, a->grad_accum, steps, a->beta, a->seed,
	    when) < 0)
		buf = NULL;
	free(model);
	free(tmpl);
	return buf;
}

/*
 * The adapter's natter.training.config: CONFIG (what a checkpoint must match) and what
 * the examples were read from, so that an adapter tells what it was trained on: one
 * data_source line per --data file, or the history database and which of its replies
 * (min_rating for SFT, the only export it selects).  Files by name only, as the model
 * is: the data= line's fingerprint tells their content, and an adapter is shared
 * without its maker's folders.  Not in the checkpoint's config: a file moved or named
 * another way between a run and its --resume reads the same examples.  Names as
 * config_escape writes them.  DB: the path of the database read_db opened (NULL with
 * --data).  A new string (NULL: out of memory).
 */
static char *
adapter_config(const struct ft_args *a, const char *config, const char *db)
{
	char *buf = NULL, *name = NULL;
	size_t n = 0;
	int oom = 0;
	FILE *f;

	if (!(f = open_memstream(&buf, &n)))
		return NULL;
	fputs(config, f);
	for (int i = 0; i < a->data.n; i++) {
		const int in = strcmp(a->data.v[i], "-") == 0;
		if (!in && !(name = config_escape(base_name(a->data.v[i])))) {
			oom = 1;
			break;
		}
		fprintf(f, "data_source=file %s\n", in ? "(standard input)" : name);
		free(name);
		name = NULL;
	}
	if (!a->data.n && !(name = config_escape(base_name(db))))
		oom = 1;
	else if (!a->data.n && strcmp(a->method, "dpo") == 0)
		fprintf(f, "data_source=history %s: pairs of replies to one turn rated differently\n", name);
	else if (!a->data.n)
		fprintf(f, "data_source=history %s: replies rated %d or better\nmin_rating=%d\n", name,
		    a->min_rating, a->min_rating);
	free(name);
	if (ferror(f) | fclose(f) | oom) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Whether the adapter (and its checkpoints, at CKPT) can be written where -o says: found
 * out before training, not after.  Prints the error. */
static int
out_dir_check(const char *out, const char *ckpt)
{
	const char *slash = strrchr(out, '/');
	char dir[4096];
	struct stat st;

	if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) {
		cli_error("%s: is a folder; -o names the adapter file to write", out);
		return -1;
	}
	if (stat(ckpt, &st) == 0 && S_ISDIR(st.st_mode)) {
		cli_error("%s: is a folder, where the checkpoint of -o %s would be written", ckpt, out);
		return -1;
	}
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == out)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - out), out);
	if (access(dir, W_OK | X_OK) != 0) {
		cli_error("%s: cannot write the adapter there: %s", dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* Whether OUT (a file finetune writes, named by OPT) is the same file as any input, or the
 * history database: an adapter written over the model or the data would destroy them.  The
 * checkpoint being the --resume file is normal: SKIP_RESUME.  Prints the error. */
static int
same_file_check(const struct ft_args *a, const char *out, const char *opt, int skip_resume)
{
	struct cli_input in[MAX_DATA + 5];
	int n = 0;

	in[n].opt = "-m", in[n++].path = a->model;
	/* (A built-in template's name is no file here: nothing matches it.) */
	in[n].opt = "--chat-template", in[n++].path = a->tmpl;
	for (int i = 0; i < a->data.n; i++)
		if (strcmp(a->data.v[i], "-") != 0)
			in[n].opt = "--data", in[n++].path = a->data.v[i];
	in[n].opt = "--init", in[n++].path = a->init;
	if (!skip_resume)
		in[n].opt = "--resume", in[n++].path = a->resume;
	if (strcmp(opt, "--log") != 0)
		in[n].opt = "--log", in[n++].path = a->log;
	return cli_output_check("finetune", opt, out, a->db, in, n);
}

/* An existing file at PATH (-o, or its checkpoint: WHAT) is written over only when it is
 * of general.type TYPE (an earlier run's adapter or checkpoint): any other file (a model,
 * data, notes) the user removes first.  Prints the error. */
static int
out_old_check(const char *path, const char *what, const char *type_want, const char *kind)
{
	struct gguf_file *f = NULL;
	struct stat st;
	char err[512], *type = NULL;
	int ok;

	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;   /* new, or a device or a FIFO (/dev/null) */
	if (gguf_open(path, &f, err, sizeof(err)) < 0) {
		cli_error("finetune: %s %s exists and is not a GGUF %s (%s); remove it first or choose another -o",
		    what, path, kind, err);
		return -1;
	}
	type = gguf_get_str(f, "general.type");
	ok = type && strcmp(type, type_want) == 0;
	if (!ok)
		cli_error("finetune: %s %s exists and is not a %s (general.type is %s%.40s%s); remove it "
		    "first or choose another -o", what, path, kind, type ? "\"" : "", type ? type : "missing",
		    type ? "\"" : "");
	free(type);
	gguf_close(f);
	return ok ? 0 : -1;
}

/* The FFN targets on a model with layers of experts, whose stacks natter does not adapt:
 * named on their own (NAMED), refused when no layer has a dense feed-forward, else a
 * warning; through "all" (the default), a note. */
static int
experts_check(const struct ft_args *a, const struct llm_hparams *hp, int named)
{
	int moe = 0;

	for (int il = 0; il < hp->n_layer; il++)
		moe += (hp->layer[il].flags & LLM_LAYER_MOE) != 0;
	if (moe && !named) {
		fprintf(stderr, "%s: %d of %d layers hold experts: their feed-forward (experts, router, shared expert) "
		    "stays frozen\n", cli_progname, moe, hp->n_layer);
		return 0;
	}
	if (moe == hp->n_layer) {
		cli_error("%s: every layer's feed-forward is a mixture of experts, which natter does not adapt: "
		    "--targets gate, up and down select nothing here (q, k, v, o and output do)", a->model);
		return -1;
	}
	if (moe)
		fprintf(stderr, "%s: warning: %d of %d layers hold experts; gate, up and down adapt the other layers "
		    "only\n", cli_progname, moe, hp->n_layer);
	return 0;
}

static enum ggml_type
out_type(const char *s)
{
	if (!s || strcmp(s, "f32") == 0)
		return GGML_TYPE_F32;
	if (strcmp(s, "f16") == 0)
		return GGML_TYPE_F16;
	if (strcmp(s, "bf16") == 0)
		return GGML_TYPE_BF16;
	return GGML_TYPE_COUNT;
}

int
cmd_finetune(int argc, char **argv)
{
	struct ft_args a = { .method = "sft", .min_rating = 4, .rank = 8, .alpha = 16, .lr = 1e-4, .beta1 = 0.9,
		.beta2 = 0.999, .batch = 1, .grad_accum = 1, .beta = 0.1 };
	struct llm_model *m = NULL;
	struct tdata_tmpl *t = NULL;
	struct tdata_set set;
	struct lora_adapter *init = NULL;
	int with_time = 0;   /* the config says when the examples were rendered */
	struct tmodel *tm = NULL;
	struct tloop *loop = NULL;
	struct run r = { 0 };
	struct sigaction sa, old_sa;
	char err[1024], *ckpt = NULL, *config = NULL, name[256], model_sha[65], db[4096];
	unsigned targets = TMODEL_ALL_LINEAR;
	enum tdata_method method;
	enum ggml_type otype;
	long long steps;
	int rc = 1, prc, lrc, have_old = 0, ffn_named = 0;

	tdata_set_init(&set, TDATA_SFT, 0, 0);
	prc = parse(argc, argv, &a);
	if (prc)
		return prc == 1 ? 0 : 2;
	if (!a.model || !a.out) {
		cli_error("finetune: needs -m MODEL and -o ADAPTER.gguf (see natter finetune --help)");
		return 2;
	}
	if (strcmp(a.method, "sft") != 0 && strcmp(a.method, "dpo") != 0) {
		cli_error("finetune: --method is sft or dpo, not '%s'", a.method);
		return 2;
	}
	if ((otype = out_type(a.out_type)) == GGML_TYPE_COUNT) {
		cli_error("finetune: --out-type is f32, f16 or bf16, not '%s'", a.out_type);
		return 2;
	}
	if (a.targets && !(targets = parse_targets(a.targets, &ffn_named)))
		return 2;
	if (a.data.n && a.db) {
		cli_error("finetune: --data and --db exclude each other");
		return 2;
	}
	/* From the history only rated replies are learned; the turns before
	 * one are its prompt (unrated, or rated worse). */
	if (a.all_turns && !a.data.n) {
		cli_error("finetune: --all-turns is for --data files: from the history only the replies rated "
		    "--min-rating or better are learned");
		return 2;
	}
	if (a.steps && a.epochs) {
		cli_error("finetune: give --steps or --epochs, not both");
		return 2;
	}
	if ((long long)a.batch * a.grad_accum > TLOOP_MAX_STEP_EXAMPLES) {
		cli_error("finetune: --batch %d times --grad-accum %d is more than %d examples a step", a.batch,
		    a.grad_accum, TLOOP_MAX_STEP_EXAMPLES);
		return 2;
	}
	if (a.lr_min > a.lr) {
		cli_error("finetune: --lr-min %g is above --lr %g", a.lr_min, a.lr);
		return 2;
	}
	if (a.lr * a.weight_decay >= 1) {
		/* Each step multiplies every weight by 1 - lr wd: none or less, a sign that flips. */
		cli_error("finetune: --lr %g times --weight-decay %g is %g; it must be under 1", a.lr, a.weight_decay,
		    a.lr * a.weight_decay);
		return 2;
	}
	method = strcmp(a.method, "dpo") == 0 ? TDATA_DPO : TDATA_SFT;
	if (!a.threads)
		a.threads = sysbench_physical_cores();
	else
		a.threads = cli_threads("finetune", a.threads);
	r.a = &a;
	r.tty = isatty(STDERR_FILENO);
	if (!(ckpt = ckpt_path(a.out))) {
		cli_error("out of memory");
		return 1;
	}
	r.ckpt = ckpt;
	/* Before anything is loaded: a run that cannot end well does not begin. */
	if (same_file_check(&a, a.out, "-o", 0) < 0 || same_file_check(&a, ckpt, "the checkpoint", 1) < 0 ||
	    (a.log && same_file_check(&a, a.log, "--log", 0) < 0) ||
	    out_old_check(a.out, "-o", "adapter", "LoRA adapter") < 0 ||
	    out_old_check(ckpt, "the checkpoint", TLOOP_CKPT_TYPE, "natter checkpoint") < 0) {
		rc = 2;
		goto out;
	}
	if (out_dir_check(a.out, ckpt) < 0)
		goto out;

	if (llm_model_load(a.model, &m, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		goto out;
	}
	if (tmodel_check(llm_model_hparams(m), err, sizeof(err)) < 0) {
		cli_error("%s: natter finetune cannot train it: %s", a.model, err);
		goto out;
	}
	if (!a.init && (targets & (TMODEL_GATE | TMODEL_UP | TMODEL_DOWN)) &&
	    experts_check(&a, llm_model_hparams(m), ffn_named) < 0)
		goto out;
	if (!a.ctx) {
		int train = llm_model_hparams(m)->n_ctx_train;
		a.ctx = train >= 2 && train < 512 ? train : 512;
	}
	if (tdata_tmpl_new(llm_model_gguf(m), llm_model_hparams(m)->arch_name, llm_model_vocab(m), a.tmpl, &t, err,
	    sizeof(err)) < 0) {
		cli_error("%s", err);
		goto out;
	}
	/* A template that prints the date (as Llama 3's does): the config says when the
	 * examples were rendered, and a resumed run renders them at its checkpoint's time,
	 * as they were (a checkpoint from before natter recorded it has no such line, nor
	 * then has this run's config).  Other templates' runs are the same at any time. */
	with_time = tdata_tmpl_dated(t);
	if (with_time && a.resume) {
		int64_t then;
		with_time = checkpoint_render_time(a.resume, &then);
		if (with_time)
			tdata_tmpl_set_now(t, then);
	}
	tdata_set_init(&set, method, a.ctx, a.all_turns);
	if (a.data.n) {
		for (int i = 0; i < a.data.n; i++) {
			if (tdata_read_jsonl(&set, t, a.data.v[i], on_warn, &r, err, sizeof(err)) < 0) {
				cli_error("%s", err);
				goto out;
			}
		}
	} else if (read_db(&a, &set, t, &r, db, sizeof(db)) < 0) {
		goto out;
	}
	if (set.n == 0) {
		if (set.n_dropped && !set.n_empty)
			cli_error("finetune: no example left to train on (each was too long for --ctx)");
		else if (set.n_dropped && set.n_empty == set.n_dropped)
			cli_error("finetune: no example left to train on (no reply has a token to learn)");
		else if (set.n_dropped)
			cli_error("finetune: no example left to train on (%d too long for --ctx, %d with a reply that has "
			    "no token to learn)", set.n_dropped - set.n_empty, set.n_empty);
		else
			cli_error("finetune: no example left to train on");
		goto out;
	}
	if (r.n_warn > 5)
		fprintf(stderr, "%s: warning: %d warnings in all\n", cli_progname, r.n_warn);
	/* The passes' examples in whole steps: only the last step may take some of one more pass. */
	steps = a.steps ? a.steps :
	    ((a.epochs ? a.epochs : 1) * set.n + (long long)a.batch * a.grad_accum - 1) / ((long long)a.batch * a.grad_accum);
	fprintf(stderr, "%s: %d %s (%ld tokens; %d cut to %d tokens, %d skipped), template %s\n", cli_progname, set.n,
	    method == TDATA_DPO ? "pairs" : "examples", set.n_tokens, set.n_truncated, a.ctx, set.n_dropped,
	    tdata_tmpl_name(t));

	if (a.init && lora_open(a.init, m, 1.0f, digest, &init, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		goto out;
	}
	if (init)
		cli_lora_notice(init, m);
	{
		struct tmodel_opts o = { .max_tokens = a.ctx, .init = init, .targets = targets, .rank = a.rank,
			.alpha = (float)a.alpha, .dropout = (float)a.dropout, .seed = (uint64_t)a.seed,
			.n_threads = a.threads, .recompute = a.recompute };
		if (tmodel_new(m, &o, &tm, err, sizeof(err)) < 0) {
			cli_error("%s", err);
			goto out;
		}
	}
	/* The model by its bytes: a name and a size are the same for an F16 and a
	 * BF16 file of one shape, or two fine-tunes of one model. */
	if (sha256_file(a.model, model_sha, err, sizeof(err)) < 0) {
		cli_error("%s", err);
		goto out;
	}
	if (!(config = config_text(&a, m, model_sha, t, init, &set, targets, steps, with_time))) {
		cli_error("out of memory");
		goto out;
	}

	/* Ctrl-C from here on saves a checkpoint; a second one kills as usual. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sa.sa_flags = SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	have_old = sigaction(SIGINT, &sa, &old_sa) == 0;
	{
		struct tloop_cfg c = { method, a.batch, a.grad_accum, steps, adamw_cfg_default(),
			{ (float)a.lr, (float)a.lr_min, a.warmup, steps }, a.beta, (uint64_t)a.seed, config };
		c.adam.beta1 = a.beta1;
		c.adam.beta2 = a.beta2;
		c.adam.weight_decay = a.weight_decay;
		if (method == TDATA_DPO)
			fprintf(stderr, "%s: reference log-probabilities of %d pairs...\n", cli_progname, set.n);
		lrc = tloop_new(tm, &set, &c, &interrupted, &loop, err, sizeof(err));
		if (lrc < 0) {
			cli_error("%s", err);
			goto out;
		}
		if (lrc == 1) {
			fprintf(stderr, "%s: interrupted before training began; nothing saved\n", cli_progname);
			rc = 130;
			goto out;
		}
	}
	r.loop = loop;
	if (a.resume) {
		if (tloop_resume(loop, a.resume, err, sizeof(err)) < 0) {
			cli_error("%s", err);
			goto out;
		}
		fprintf(stderr, "%s: resumed %s at step %lld of %lld\n", cli_progname, a.resume,
		    (long long)tloop_steps_done(loop), steps);
	}
	/* A resumed run continues its log (a new one when there is none). */
	if (a.log) {
		if (a.resume && (r.log = fopen(a.log, "r+"))) {
			if (log_trim(r.log, tloop_steps_done(loop), a.log) < 0)
				goto out;
		} else if (!a.resume || errno == ENOENT) {
			r.log = fopen(a.log, "w");
		}
		if (!r.log) {
			cli_error("%s: %s", a.log, strerror(errno));
			goto out;
		}
	}
	r.first = tloop_steps_done(loop) + 1;
	r.steps = steps;
	fprintf(stderr, "%s: %lld steps of %d example%s, %d pairs of rank %d on %d thread%s%s\n", cli_progname, steps,
	    a.batch * a.grad_accum, a.batch * a.grad_accum > 1 ? "s" : "", tmodel_lora_count(tm),
	    tmodel_lora(tm, 0)->rank, tmodel_n_threads(tm), tmodel_n_threads(tm) > 1 ? "s" : "",
	    a.recompute ? ", recomputing layers" : "");

	lrc = tloop_run(loop, 0, on_step, &r, err, sizeof(err));
	if (r.bar_shown)
		fputc('\n', stderr);
	if (lrc < 0) {
		cli_error("%s", err);
		goto out;
	}
	if (lrc == 1) {
		/* Stopped between two steps, by Ctrl-C or because the log (or a --save-every
		 * checkpoint) could not be written: the steps done are kept either way. */
		const char *how = interrupted ? "interrupted" : "stopped";
		if (!interrupted)
			cli_error("%s", r.err);
		if (tloop_save(loop, ckpt, err, sizeof(err)) < 0) {
			cli_error("%s, and the checkpoint could not be written: %s", how, err);
			goto out;
		}
		fprintf(stderr, "%s: %s after step %lld of %lld; checkpoint saved to %s\n"
		    "%s: continue with the same options and --resume %s\n", cli_progname, how,
		    (long long)tloop_steps_done(loop), steps, ckpt, cli_progname, ckpt);
		rc = interrupted ? 130 : 1;
		goto out;
	}
	if (a.name) {
		snprintf(name, sizeof(name), "%s", a.name);
	} else {
		size_t n;
		snprintf(name, sizeof(name), "%s", base_name(a.out));
		n = strlen(name);
		if (n > 5 && strcmp(name + n - 5, ".gguf") == 0)
			name[n - 5] = 0;
	}
	{
		/* What produced the adapter: the base model and the options it was trained with. */
		char *base = gguf_get_str(llm_model_gguf(m), "general.name");
		char *aconfig = adapter_config(&a, config, a.data.n ? NULL : db);
		struct lora_file_info prov = { .base_name = base && *base ? base : NULL,
			.base_file = base_name(a.model), .config = aconfig };
		if (aconfig) {
			lrc = tmodel_lora_save(tm, a.out, name, otype, &prov, err, sizeof(err));
		} else {
			snprintf(err, sizeof(err), "out of memory");
			lrc = -1;
		}
		free(aconfig);
		free(base);
		if (lrc < 0) {
			/* A full disk, say, or a value F16 or BF16 cannot hold: the steps are
			 * kept for another try.  The type is no option a checkpoint must
			 * match, so F32 is one --resume away. */
			const int range = lrc == LORA_ERR_RANGE && otype != GGML_TYPE_F32;
			cli_error("%s", err);
			if (tloop_save(loop, ckpt, err, sizeof(err)) < 0)
				cli_error("and the checkpoint could not be written either: %s", err);
			else
				fprintf(stderr, "%s: the %lld steps are saved in %s; write the adapter with %s and "
				    "--resume %s\n", cli_progname, (long long)tloop_steps_done(loop), ckpt,
				    range ? "--out-type f32 (the other options the same)" : "the same options", ckpt);
			goto out;
		}
	}
	printf("wrote %s: %d pairs after %lld steps\n", a.out, tmodel_lora_count(tm), (long long)tloop_steps_done(loop));
	rc = 0;
out:
	if (have_old)
		sigaction(SIGINT, &old_sa, NULL);
	if (r.log && fclose(r.log) != 0 && rc == 0) {
		cli_error("%s: %s", a.log, strerror(errno));
		rc = 1;
	}
	tloop_free(loop);
	tmodel_free(tm);
	lora_free(init);
	tdata_set_free(&set);
	tdata_tmpl_free(t);
	llm_model_free(m);
	free(config);
	free(ckpt);
	return rc;
}
