/* test-chatcmd.c -- the shared slash-command table: dispatch, refusals while busy, help from the table. */
#include "config.h"

#include "natter/chat.h"
#include "natter/chatcmd.h"
#include "natter/chatlog.h"
#include "natter/llm.h"
#include "test.h"

/* A front end that records what it was asked. */
struct fe {
	char said[1024];
	int err, busy, regen, new_conv, params, help, n_help;
	char help_text[4096];
};

static void
say(void *p, int is_err, const char *msg)
{
	struct fe *f = p;
	snprintf(f->said, sizeof(f->said), "%s", msg);
	f->err = is_err;
}
static int busy(void *p) { return ((struct fe *)p)->busy; }
static void regen(void *p) { ((struct fe *)p)->regen++; }
static void new_conv(void *p) { ((struct fe *)p)->new_conv++; }
static void params(void *p) { ((struct fe *)p)->params++; }
static void help(void *p) { ((struct fe *)p)->help++; }

/* No history, stats or copy: like chat --plain. */
static const struct chatcmd_ops ops = {
	.say = say, .busy = busy, .regen = regen, .new_conv = new_conv, .params = params, .help = help,
};

static void
help_line(void *ctx, const char *usage, const char *line)
{
	struct fe *f = ctx;
	size_t l = strlen(f->help_text);
	snprintf(f->help_text + l, sizeof(f->help_text) - l, "%s|%s\n", usage, line);
	f->n_help++;
}

static int
run(struct chatcmd_env *e, const char *line)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", line);
	return chatcmd_run(e, buf);
}

int
main(void)
{
	const char *fx = test_fixtures();
	char path[4096], err[256];
	struct llm_model *m = NULL;
	struct chat *c = NULL;
	struct chat_opts o;
	struct chatlog log = { 0 };
	struct fe f = { 0 };
	struct chatcmd_env e;
	struct sampler_params sp;
	const struct chatcmd *t;
	int n;

	/* The table: every row complete, names unique, help fitting a line. */
	t = chatcmd_table(&n);
	CHECK(n >= 10, "only %d commands", n);
	for (int i = 0; i < n; i++) {
		char u[128];
		CHECK(t[i].name && t[i].args && t[i].help && t[i].fn, "row %d incomplete", i);
		chatcmd_usage(&t[i], u, sizeof(u));
		CHECK(strlen(u) <= 29 && strlen(t[i].help) <= 44, "/%s: usage or help too long for 80 columns", t[i].name);
		for (int j = 0; j < i; j++)
			CHECK(strcmp(t[i].name, t[j].name), "/%s twice", t[i].name);
	}
	/* The help is the table less what this front end lacks. */
	chatcmd_help(&ops, help_line, &f);
	CHECK(strstr(f.help_text, "/rate up|down|1..5 [COMMENT]|rate the last reply\n") != NULL, "help: %s", f.help_text);
	CHECK(strstr(f.help_text, "/new, /clear|") != NULL, "help lists aliases: %s", f.help_text);
	CHECK(strstr(f.help_text, "/history") == NULL && strstr(f.help_text, "/copy") == NULL,
	    "help lists commands the front end lacks: %s", f.help_text);
	CHECK(f.n_help == n - 4, "help has %d lines for %d commands less 4 (history, stats, copy, ab)", f.n_help, n);
	CHECK(strstr(f.help_text, "/lora [N|NAME SCALE]|") && strstr(f.help_text, "/pick a|b|tie|") &&
	    !strstr(f.help_text, "/ab "), "help: /lora and /pick, no /ab without its hook: %s", f.help_text);

	if (!fx) {
		SKIP("fixtures folder not found (set NATTER_FIXTURES)");
		return test_done("test-chatcmd");
	}
	snprintf(path, sizeof(path), "%s/models/aidreams260K-f32.gguf", fx);
	if (llm_model_load(path, &m, err, sizeof(err)) < 0) {
		CHECK(0, "%s", err);
		return test_done("test-chatcmd");
	}
	chat_opts_default(&o);
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0, "%s", err);
	e.c = c;
	e.log = &log;
	e.ops = &ops;
	e.fe = &f;

	CHECK(run(&e, "/set temp 0.25") == CHATCMD_DONE && !f.err, "/set: %s", f.said);
	chat_get_params(c, &sp);
	CHECK(sp.temp > 0.249f && sp.temp < 0.251f, "temp is %g", sp.temp);
	CHECK(run(&e, "/set top_p 7") < 0 && f.err && strstr(f.said, "/set: top-p"), "bad /set: %s", f.said);
	/* Counts are whole numbers: 2.7 is refused, not applied as 2; so is a
	 * value past int's range (converting it was undefined). */
	CHECK(run(&e, "/set top_k 5") == CHATCMD_DONE && run(&e, "/set top_k 2.7") < 0 && f.err &&
	    strstr(f.said, "not a whole number"), "/set top_k 2.7: %s", f.said);
	CHECK(run(&e, "/set top_k -1e20") < 0 && run(&e, "/set max_tokens 3.9") < 0, "/set top_k -1e20, max_tokens 3.9");
	chat_get_params(c, &sp);
	CHECK(sp.top_k == 5 && chat_max_tokens(c) != 3, "refused counts left top_k %d, max_tokens %d", sp.top_k,
	    chat_max_tokens(c));
	CHECK(run(&e, "/set max_tokens 64") == CHATCMD_DONE && chat_max_tokens(c) == 64, "/set max_tokens 64");
	/* Seeds exactly (past 2^53 too), "-1" and "random" alike. */
	CHECK(run(&e, "/set seed 12345678901234567891") == CHATCMD_DONE, "/set seed: %s", f.said);
	chat_get_params(c, &sp);
	CHECK(sp.seed == 12345678901234567891ULL, "seed is %llu", (unsigned long long)sp.seed);
	CHECK(run(&e, "/set seed -1") == CHATCMD_DONE, "/set seed -1: %s", f.said);
	chat_get_params(c, &sp);
	CHECK(sp.seed == SAMPLER_SEED_RANDOM, "seed -1 is %llu", (unsigned long long)sp.seed);
	CHECK(run(&e, "/set seed 7") == CHATCMD_DONE && run(&e, "/set seed -2") < 0 && f.err &&
	    strstr(f.said, "seed must be"), "/set seed -2: %s", f.said);
	chat_get_params(c, &sp);
	CHECK(sp.seed == 7, "a refused seed left %llu", (unsigned long long)sp.seed);
	CHECK(run(&e, "/set seed random") == CHATCMD_DONE, "/set seed random: %s", f.said);
	chat_get_params(c, &sp);
	CHECK(sp.seed == SAMPLER_SEED_RANDOM, "seed random is %llu", (unsigned long long)sp.seed);
	CHECK(run(&e, "/regen") == CHATCMD_DONE && f.regen == 1, "/regen");
	CHECK(run(&e, "/clear") == CHATCMD_DONE && f.new_conv == 1, "/clear is /new");
	CHECK(run(&e, "/params   ") == CHATCMD_DONE && f.params == 1, "/params with trailing blanks");
	CHECK(run(&e, "/quit") == CHATCMD_QUIT && run(&e, "/exit") == CHATCMD_QUIT, "/quit, /exit");
	CHECK(run(&e, "/nonsense") < 0 && f.err && !strcmp(f.said, "unknown command /nonsense (try /help)"),
	    "unknown: %s", f.said);
	CHECK(run(&e, "/history") < 0 && f.err && strstr(f.said, "not available"), "lacking: %s", f.said);
	CHECK(run(&e, "/rate up") < 0 && strstr(f.said, "the history is off"), "/rate without history: %s", f.said);
	CHECK(run(&e, "/rate sideways") < 0 && strstr(f.said, "usage: /rate"), "/rate usage: %s", f.said);
	CHECK(run(&e, "/system   Be brief.  ") == CHATCMD_DONE && !strcmp(chat_system(c), "Be brief."),
	    "/system sets '%s'", chat_system(c));
	/* Adapters and A/B without either. */
	CHECK(run(&e, "/lora") == CHATCMD_DONE && strstr(f.said, "no adapters"), "/lora without any: %s", f.said);
	CHECK(run(&e, "/lora 1 0.5") < 0 && f.err && strstr(f.said, "no adapter '1'"), "/lora 1 0.5: %s", f.said);
	CHECK(run(&e, "/lora 1") < 0 && strstr(f.said, "usage: /lora"), "/lora 1: %s", f.said);
	CHECK(run(&e, "/ab") < 0 && strstr(f.said, "not available"), "/ab without its hook: %s", f.said);
	CHECK(run(&e, "/pick a") < 0 && strstr(f.said, "no A/B comparison"), "/pick before /ab: %s", f.said);
	CHECK(run(&e, "/pick maybe") < 0 && strstr(f.said, "usage: /pick a|b|tie"), "/pick maybe: %s", f.said);
	{
		struct chatcmd_variant v;
		char verr[256];
		CHECK(chatcmd_ab_parse(c, "temp 1.5", &v, verr, sizeof(verr)) == 0 && v.sp.temp == 1.5f &&
		    !strcmp(v.setting, "temp 1.5"), "/ab temp 1.5: %s", verr);
		CHECK(chatcmd_ab_parse(c, "", &v, verr, sizeof(verr)) == 0 && !strcmp(v.setting, "seed + 1, temp + 0.3"),
		    "/ab without adapters defaults to next: %s", v.setting);
		CHECK(chatcmd_ab_parse(c, "adapter off", &v, verr, sizeof(verr)) < 0 && strstr(verr, "no adapter"),
		    "/ab adapter without one: %s", verr);
		CHECK(chatcmd_ab_parse(c, "seed -3", &v, verr, sizeof(verr)) < 0 && strstr(verr, "usage: /ab"),
		    "/ab seed -3: %s", verr);
		CHECK(chatcmd_ab_parse(c, "top_p 7", &v, verr, sizeof(verr)) < 0, "/ab top_p 7 is refused");
	}
	/* A reply resumed from the history: its settings are not known here,
	 * so A/B refuses to say B differs from it in one setting; a reply
	 * made here is compared against what made it (a regeneration with a
	 * fixed seed takes the next one: 42). */
	{
		struct chatcmd_variant v;
		struct sampler_params now, made;
		struct chat_stats st;
		float sc[CHAT_MAX_ADAPTERS];
		char verr[256];
		chat_add_user(c, "Hi", 2);
		chat_add_message(c, "assistant", "Hello from before.", 18);
		CHECK(chatcmd_ab_base(c, &now, sc) < 0 && chatcmd_ab_parse(c, "", &v, verr, sizeof(verr)) < 0 &&
		    strstr(verr, "not known"), "/ab on a resumed reply: %s", verr);
		chat_get_params(c, &now);
		now.temp = 0.25f;
		now.seed = 41;
		chat_set_params(c, &now);
		CHECK(chat_regenerate(c, NULL, NULL, &st, verr, sizeof(verr)) == 0, "regenerate: %s", verr);
		now.temp = 0.9f;
		chat_set_params(c, &now);   /* the session moves on; A stays as made */
		CHECK(chatcmd_ab_base(c, &made, sc) == 0 && made.temp == 0.25f && made.seed == 42 &&
		    chatcmd_ab_parse(c, "", &v, verr, sizeof(verr)) == 0 && v.sp.temp == 0.55f && v.sp.seed == 43,
		    "/ab on a reply made here: A at temp %.2f seed %llu, B at %.2f: %s", made.temp,
		    (unsigned long long)made.seed, v.sp.temp, verr);
		chat_clear(c);
	}

	/* While a reply streams: what changes the conversation is refused,
	 * and nothing is changed. */
	f.busy = 1;
	CHECK(run(&e, "/system other") < 0 && f.err && strstr(f.said, "stop the reply first") &&
	    !strcmp(chat_system(c), "Be brief."), "/system while busy: %s", f.said);
	CHECK(run(&e, "/new") < 0 && f.new_conv == 1, "/new while busy");
	CHECK(run(&e, "/regen") < 0 && f.regen == 1, "/regen while busy");
	/* The last reply stored is not the one being written: nothing to rate yet. */
	CHECK(run(&e, "/rate up") < 0 && f.err && strstr(f.said, "stop the reply first"), "/rate while busy: %s", f.said);
	CHECK(run(&e, "/set temp 0.5") == CHATCMD_DONE, "/set stays live while busy: %s", f.said);
	CHECK(run(&e, "/help") == CHATCMD_DONE && f.help == 1, "/help while busy");
	f.busy = 0;
	CHECK(run(&e, "/system") == CHATCMD_DONE && !strcmp(chat_system(c), "") &&
	    !strcmp(f.said, "system prompt removed"), "/system removes: %s", f.said);

	/* /think: refused, and said why, where the template has no
	 * enable_thinking; set where it has (even while a reply runs: it
	 * applies to the next render). */
	CHECK(run(&e, "/think off") < 0 && f.err && strstr(f.said, "has no enable_thinking") &&
	    chat_think(c) == CHAT_THINK_DEFAULT, "/think without enable_thinking: %s", f.said);
	CHECK(run(&e, "/think") == CHATCMD_DONE && strstr(f.said, "this template has no enable_thinking"), "/think: %s",
	    f.said);
	chat_free(c);
	snprintf(path, sizeof(path), "%s/templates/Qwen-Qwen3.jinja", fx);
	o.template_spec = path;
	CHECK(chat_new(m, &o, &c, err, sizeof(err)) == 0, "Qwen3: %s", err);
	e.c = c;
	f.busy = 1;
	CHECK(run(&e, "/think off") == CHATCMD_DONE && !f.err && chat_think(c) == CHAT_THINK_OFF &&
	    strstr(f.said, "enable_thinking = false"), "/think off: %s", f.said);
	f.busy = 0;
	CHECK(run(&e, "/think") == CHATCMD_DONE && !strcmp(f.said, "enable_thinking: false"), "/think: %s", f.said);
	CHECK(run(&e, "/think on") == CHATCMD_DONE && chat_think(c) == CHAT_THINK_ON, "/think on: %s", f.said);
	CHECK(run(&e, "/think maybe") < 0 && f.err && strstr(f.said, "usage: /think on|off") && chat_think(c) == CHAT_THINK_ON,
	    "/think maybe: %s", f.said);
	{
		char *r = NULL;
		chat_add_user(c, "Hi", 2);
		CHECK(run(&e, "/think off") == CHATCMD_DONE && (r = chat_render(c, err, sizeof(err))) &&
		    strstr(r, "<think>\n\n</think>"), "the next render has the empty think block");
		free(r);
	}

	chat_free(c);
	llm_model_free(m);
	return test_done("test-chatcmd");
}
