/* tdata.c -- training examples from JSON lines: conversations rendered with the chat template and tokenized as a chat sees them, the loss on the replies. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "natter/gguf.h"
#include "natter/jsonl.h"
#include "natter/tmpl.h"
#include "natter/tok.h"
#include "natter/train.h"

struct tdata_tmpl {
	struct tmpl *t;
	char *src;           /* kept: the compiled template points into its source text */
	char name[256];
	char *bos_text, *eos_text;
	const struct tok_vocab *v;
	time_t now;          /* one date for every render: prefixes of one conversation agree */
	int dated;           /* the template asks for the time (strftime_now) */
};

static char *
token_text(const struct tok_vocab *v, int32_t id)
{
	const char *t = id >= 0 ? tok_text(v, id) : NULL;
	return strdup(t ? t : "");
}

/* The template's source as chat.c's load_template finds it (the same order, the same
 * fallbacks), so that training renders what a chat renders. */
static char *
template_source(struct tdata_tmpl *t, const struct gguf_file *f, const char *arch, const char *spec, char *err,
		size_t errlen)
{
	const char *builtin;
	char *src;

	if (spec && (builtin = tmpl_builtin(spec))) {
		snprintf(t->name, sizeof(t->name), "%s (built-in)", spec);
		src = strdup(builtin);
	} else if (spec) {
		FILE *fp = fopen(spec, "rb");
		long sz = -1;
		if (!fp) {
			snprintf(err, errlen, "chat template '%s' is neither a built-in (chatml, llama2, llama3, phi3, zephyr, "
			    "gemma) nor a readable file", spec);
			return NULL;
		}
		if (fseek(fp, 0, SEEK_END) == 0)
			sz = ftell(fp);
		src = sz >= 0 && sz < (16 << 20) && fseek(fp, 0, SEEK_SET) == 0 ? malloc((size_t)sz + 1) : NULL;
		if (!src || fread(src, 1, (size_t)sz, fp) != (size_t)sz) {
			fclose(fp);
			free(src);
			snprintf(err, errlen, "%s: cannot read the chat template", spec);
			return NULL;
		}
		src[sz] = 0;
		fclose(fp);
		snprintf(t->name, sizeof(t->name), "%s", spec);
	} else if ((src = gguf_get_str(f, "tokenizer.chat_template")) != NULL) {
		snprintf(t->name, sizeof(t->name), "model");
	} else {
		const char *g = tmpl_builtin_guess(arch, NULL);
		snprintf(t->name, sizeof(t->name), "%s (built-in; the model has none)", g);
		src = strdup(tmpl_builtin(g));
	}
	if (!src)
		snprintf(err, errlen, "out of memory");
	return src;
}

int
tdata_tmpl_new(const struct gguf_file *f, const char *arch, const struct tok_vocab *v, const char *spec,
	       struct tdata_tmpl **out, char *err, size_t errlen)
{
	struct tdata_tmpl *t = calloc(1, sizeof(*t));
	char terr[384], *src = NULL;

	*out = NULL;
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	t->v = v;
	t->now = time(NULL);
	t->bos_text = token_text(v, tok_bos(v));
	t->eos_text = token_text(v, tok_eos(v));
	if (!t->bos_text || !t->eos_text) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (!(src = template_source(t, f, arch, spec, err, errlen)))
		goto fail;
	t->dated = strstr(src, "strftime_now") != NULL;
	if (tmpl_compile(src, strlen(src), &t->t, terr, sizeof(terr)) < 0) {
		const char *g;
		if (spec) {
			snprintf(err, errlen, "chat template %s: %s", t->name, terr);
			goto fail;
		}
		/* (tmpl_builtin's text is static: it outlives the template.) */
		/* The model's own template is broken: chat.c falls back, and so does training. */
		g = tmpl_builtin_guess(arch, src);
		snprintf(t->name, sizeof(t->name), "%s (built-in; the model's template failed: %.120s)", g, terr);
		if (tmpl_compile(tmpl_builtin(g), strlen(tmpl_builtin(g)), &t->t, terr, sizeof(terr)) < 0) {
			snprintf(err, errlen, "internal error: %s", terr);
			goto fail;
		}
		t->dated = strstr(tmpl_builtin(g), "strftime_now") != NULL;
	}
	t->src = src;
	*out = t;
	return 0;
fail:
	free(src);
	tdata_tmpl_free(t);
	return -1;
}

void
tdata_tmpl_free(struct tdata_tmpl *t)
{
	if (!t)
		return;
	tmpl_free(t->t);
	free(t->src);
	free(t->bos_text);
	free(t->eos_text);
	free(t);
}

const char *tdata_tmpl_name(const struct tdata_tmpl *t) { return t->name; }
int64_t tdata_tmpl_now(const struct tdata_tmpl *t) { return (int64_t)t->now; }
int tdata_tmpl_dated(const struct tdata_tmpl *t) { return t->dated; }
void tdata_tmpl_set_now(struct tdata_tmpl *t, int64_t now) { t->now = (time_t)now; }

void
tdata_seq_free(struct tdata_seq *s)
{
	if (!s)
		return;
	free(s->tok);
	free(s->loss);
	memset(s, 0, sizeof(*s));
}

/* Renders MSGS[0..N) as chat-local.c's render does, the messages' control-
 * token texts marked (tok_mark_specials: learned as the text a chat would
 * feed); NULL with ERR set on failure. */
static char *
render(const struct tdata_tmpl *t, const struct tdata_msg *msgs, int n, int add_gen, size_t *len, char *err,
       size_t errlen)
{
	struct tmpl_msg *m = calloc((size_t)(n > 0 ? n : 1), sizeof(*m));
	char **own = calloc((size_t)(n > 0 ? n : 1), sizeof(*own));
	struct tmpl_opts o = { .add_generation_prompt = add_gen, .bos_token = t->bos_text, .eos_token = t->eos_text,
		.now = t->now };   /* enable_thinking left undefined, as a chat starts */
	char *out = NULL, terr[384];
	int rc = 0;

	if (!m || !own) {
		free(m);
		free(own);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (int i = 0; i < n; i++) {
		m[i].role = msgs[i].role;
		m[i].content = msgs[i].content;
		if (msgs[i].content && !(m[i].content = own[i] = tok_mark_specials(t->v, msgs[i].content,
		    strlen(msgs[i].content), NULL)))
			rc = -1;
	}
	if (rc == 0)
		rc = tmpl_render(t->t, m, n, &o, &out, len, terr, sizeof(terr));
	else
		snprintf(terr, sizeof(terr), "out of memory");
	for (int i = 0; i < n; i++)
		free(own[i]);
	free(own);
	free(m);
	if (rc == TMPL_ERR_RAISED)
		snprintf(err, errlen, "the chat template refuses this conversation: %s", terr);
	else if (rc < 0)
		snprintf(err, errlen, "chat template: %s", terr);
	return rc == 0 ? out : NULL;
}

/* Whether chat.c would put BOS before TEXT: the model asks for it and the text lacks it. */
static int
wants_bos(const struct tdata_tmpl *t, const char *text)
{
	size_t bl = strlen(t->bos_text);
	return tok_add_bos(t->v) && !(bl && strncmp(text, t->bos_text, bl) == 0);
}

struct seg {
	size_t start, end;
	int turn;   /* an assistant reply to learn: the loss runs to its end-of-turn token */
};

/* Appends the tokens of TEXT[S->start, S->end) to IDS and their loss flags to LOSS; a
 * reply whose tokens hold no end-of-generation token counts in *OPEN. */
static int
encode_seg(const struct tdata_tmpl *t, const char *text, const struct seg *s, struct tok_ids *ids, uint8_t **loss,
	   size_t *cap, int *n_open)
{
	size_t n0 = ids->n;
	unsigned flags = TOK_ENC_SPECIAL | TOK_ENC_MARKED;
	int scoring = s->turn;

	/* The text's start (BOS, and SentencePiece's leading space) once: a
	 * prompt that renders as nothing leaves the reply at the start too,
	 * which got a second BOS, learned as the reply's first token. */
	if (s->start == 0)
		flags |= ids->n == 0 && wants_bos(t, text) ? TOK_ENC_BOS : 0;
	else
		flags |= TOK_ENC_CONTINUE;
	if (s->end > s->start || s->start == 0) {
		if (tok_encode_ex(t->v, text + s->start, s->end - s->start, flags, ids) < 0)
			return -1;
	}
	if (ids->n > *cap) {
		size_t nc = ids->n * 2;
		uint8_t *nl = realloc(*loss, nc);
		if (!nl)
			return -1;
		*loss = nl;
		*cap = nc;
	}
	for (size_t i = n0; i < ids->n; i++) {
		(*loss)[i] = (uint8_t)(scoring && i > 0);
		if (scoring && tok_is_eog(t->v, ids->ids[i]))
			scoring = 0;   /* what follows the end-of-turn token is never generated */
	}
	/* Learned to its end with no token a chat stops at: the template closes the turn
	 * with none (or with text this vocabulary has no token for), so the model learns
	 * to go on. */
	*n_open += s->turn && scoring;
	return 0;
}

/*
 * Which tokens are the replies, found by rendering prefixes.  For every assistant message
 * I to learn, two renders of the conversation so far:
 *   P = the messages before I with the generation prompt: what a chat sends to ask for I;
 *   F = the messages up to I inclusive, without it: the conversation once I is said.
 * When P is a prefix of F and F of the whole conversation's render, F[|P|, |F|) is exactly
 * what the model writes as reply I: its content and the template's closing of the turn.
 * The text is tokenized in pieces cut at these boundaries: the first piece (with BOS as
 * chat.c adds it) is the prompt of the first reply; each reply piece is tokenized on its
 * own, as the tokens a model generates after a prompt start at the prompt's end; the
 * context between replies is tokenized as chat.c tokenizes a later turn (special tokens
 * parsed, no SentencePiece space prefix).  The loss covers a reply piece's tokens up to
 * and including its first end-of-generation token (EOS, <|im_end|>, <|eot_id|>, <|end|>
 * ...): the content and the end-of-turn marker, where generation stops; a template whose
 * turns end in plain text (a vocabulary without such a token) has the whole closing text
 * learned and is counted in OUT->n_open (as is a reply rendered with no end of turn at
 * all): tdata_read_jsonl warns that it does not teach the model to stop.  Tokens after
 * the last scored token affect no loss and are dropped.
 */
int
tdata_encode(const struct tdata_tmpl *t, const struct tdata_msg *msgs, int n, struct tdata_seq *out, char *err,
	     size_t errlen)
{
	struct tok_ids ids = { 0 };
	struct seg *segs = calloc((size_t)2 * n + 2, sizeof(*segs));
	char *full = NULL, *p = NULL, *f = NULL;
	uint8_t *loss = NULL;
	size_t full_len, pl, fl, pos = 0, cap = 0;
	int ns = 0, rc = -1, last = 0, n_open = 0;

	memset(out, 0, sizeof(*out));
	if (!segs) {
		snprintf(err, errlen, "out of memory");
		return -2;
	}
	if (!(full = render(t, msgs, n, 0, &full_len, err, errlen)))
		goto out;
	for (int i = 0; i < n; i++) {
		if (!msgs[i].train || strcmp(msgs[i].role, "assistant") != 0)
			continue;
		free(p);
		free(f);
		f = NULL;
		if (!(p = render(t, msgs, i, 1, &pl, err, errlen)) || !(f = render(t, msgs, i + 1, 0, &fl, err, errlen)))
			goto out;
		if (pl > fl || memcmp(p, f, pl) != 0 || fl > full_len || memcmp(f, full, fl) != 0 || pl < pos) {
			snprintf(err, errlen, "the chat template does not render assistant message %d as a continuation of "
			    "the conversation before it, so its tokens cannot be told apart", i + 1);
			goto out;
		}
		segs[ns++] = (struct seg){ pos, pl, 0 };
		segs[ns++] = (struct seg){ pl, fl, 1 };
		pos = fl;
	}
	segs[ns++] = (struct seg){ pos, full_len, 0 };
	for (int k = 0; k < ns; k++) {
		if (encode_seg(t, full, &segs[k], &ids, &loss, &cap, &n_open) < 0) {
			snprintf(err, errlen, "out of memory");
			rc = -2;
			goto out;
		}
	}
	for (size_t i = 0; i < ids.n; i++) {
		if (loss[i]) {
			out->n_loss++;
			last = (int)i + 1;
		}
	}
	if (ids.n > (size_t)1 << 30) {
		snprintf(err, errlen, "the conversation is too long");
		goto out;
	}
	out->n = out->n_loss ? last : (int)ids.n;
	out->n_open = n_open;
	out->tok = ids.ids;
	out->loss = loss;
	ids.ids = NULL;
	loss = NULL;
	rc = 0;
out:
	free(segs);
	free(full);
	free(p);
	free(f);
	free(loss);
	tok_ids_free(&ids);
	return rc;
}

int
tdata_encode_prompt(const struct tdata_tmpl *t, const struct tdata_msg *msgs, int n, struct tdata_seq *out,
		    char *err, size_t errlen)
{
	struct tok_ids ids = { 0 };
	size_t len;
	char *text;

	memset(out, 0, sizeof(*out));
	if (!(text = render(t, msgs, n, 1, &len, err, errlen)))
		return -1;
	if (tok_encode_ex(t->v, text, len, (wants_bos(t, text) ? TOK_ENC_BOS : 0) | TOK_ENC_SPECIAL | TOK_ENC_MARKED,
	    &ids) < 0 || !(out->loss = calloc(ids.n + 1, 1))) {
		free(text);
		tok_ids_free(&ids);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	free(text);
	out->tok = ids.ids;
	out->n = (int)ids.n;
	return 0;
}

/* --- examples from JSON lines --- */

void
tdata_set_init(struct tdata_set *s, enum tdata_method method, int max_tokens, int all_turns)
{
	memset(s, 0, sizeof(*s));
	s->method = method;
	s->max_tokens = max_tokens;
	s->all_turns = all_turns;
}

static void
example_free(struct tdata_example *e)
{
	tdata_seq_free(&e->seq[0]);
	tdata_seq_free(&e->seq[1]);
}

void
tdata_set_free(struct tdata_set *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n; i++)
		example_free(&s->ex[i]);
	free(s->ex);
	memset(s, 0, sizeof(*s));
}

/* A conversation being read from one line: its messages and the strings it had to make. */
struct conv {
	struct tdata_msg *m;
	int n, cap;
	char **owned;
	int n_owned;
};

static void
conv_free(struct conv *c)
{
	for (int i = 0; i < c->n_owned; i++)
		free(c->owned[i]);
	free(c->owned);
	free(c->m);
	memset(c, 0, sizeof(*c));
}

static int
conv_push(struct conv *c, const char *role, const char *content, int train)
{
	if (c->n == c->cap) {
		int nc = c->cap ? 2 * c->cap : 8;
		struct tdata_msg *m = realloc(c->m, (size_t)nc * sizeof(*m));
		if (!m)
			return -1;
		c->m = m;
		c->cap = nc;
	}
	c->m[c->n++] = (struct tdata_msg){ role, content, train };
	return 0;
}

/* Keeps S for as long as the conversation (NULL: out of memory). */
static char *
conv_own(struct conv *c, char *s)
{
	char **o;
	if (!s || !(o = realloc(c->owned, (size_t)(c->n_owned + 1) * sizeof(*o)))) {
		free(s);
		return NULL;
	}
	c->owned = o;
	c->owned[c->n_owned++] = s;
	return s;
}

/* A message's content: a string, or OpenAI's list of parts whose text parts are joined. */
static const char *
content_of(struct conv *c, const cJSON *v, const char **why)
{
	const cJSON *part;
	size_t len = 0;
	char *s;

	if (cJSON_IsString(v))
		return v->valuestring;
	if (!cJSON_IsArray(v)) {
		*why = "a message's \"content\" must be a string or a list of text parts";
		return NULL;
	}
	cJSON_ArrayForEach(part, v) {
		const char *tx = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(part, "text"));
		const char *ty = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(part, "type"));
		if (!tx || (ty && strcmp(ty, "text") != 0)) {
			*why = "natter trains on text parts only (a content part is not {\"type\": \"text\", \"text\": ...})";
			return NULL;
		}
		len += strlen(tx);
	}
	if (!(s = malloc(len + 1)))
		return *why = "out of memory", NULL;
	s[0] = 0;
	len = 0;
	cJSON_ArrayForEach(part, v) {
		const char *tx = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(part, "text"));
		size_t l = strlen(tx);
		memcpy(s + len, tx, l + 1);
		len += l;
	}
	if (!conv_own(c, s))
		return *why = "out of memory", NULL;
	return s;
}

/*
 * Appends the messages of V: a list of {"role", "content"[, "weight"]}, or a string taken
 * as one message of role AS_ROLE.  TRAIN 0 learns none of them (a prompt); 1 learns every
 * assistant message not weighted 0; -1 follows "weight" and leaves the others undecided
 * (-1) for conv_settle.  Returns 0, or -1 with *WHY set.
 */
static int
conv_add(struct conv *c, const cJSON *v, const char *as_role, int train, const char **why)
{
	const cJSON *it;

	if (cJSON_IsString(v)) {
		if (conv_push(c, as_role, v->valuestring, train > 0 && strcmp(as_role, "assistant") == 0) < 0)
			return *why = "out of memory", -1;
		return 0;
	}
	if (!cJSON_IsArray(v)) {
		*why = "expected a list of messages";
		return -1;
	}
	cJSON_ArrayForEach(it, v) {
		const char *role = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "role"));
		const cJSON *w = cJSON_GetObjectItemCaseSensitive(it, "weight");
		const char *content;
		int tr = 0;

		if (!role) {
			*why = "a message has no string \"role\"";
			return -1;
		}
		if (!(content = content_of(c, cJSON_GetObjectItemCaseSensitive(it, "content"), why)))
			return -1;
		if (w && !(cJSON_IsNumber(w) && (w->valuedouble == 0 || w->valuedouble == 1))) {
			*why = "a message's \"weight\" must be 0 or 1";
			return -1;
		}
		if (strcmp(role, "assistant") == 0) {
			if (train == 0)
				tr = 0;
			else if (w)
				tr = (int)w->valuedouble;
			else
				tr = train;
		}
		if (conv_push(c, role, content, tr) < 0)
			return *why = "out of memory", -1;
	}
	return 0;
}

/* Settles the assistant messages still undecided (-1): the last one, or all of them. */
static void
conv_settle(struct conv *c, int all_turns)
{
	int last = -1;
	for (int i = 0; i < c->n; i++)
		if (strcmp(c->m[i].role, "assistant") == 0)
			last = i;
	for (int i = 0; i < c->n; i++)
		if (c->m[i].train < 0)
			c->m[i].train = all_turns || i == last;
}

static int
conv_has_train(const struct conv *c)
{
	for (int i = 0; i < c->n; i++)
		if (c->m[i].train > 0)
			return 1;
	return 0;
}

/* Cuts SEQ to MAX tokens; returns 1 if it was cut. */
static int
seq_cut(struct tdata_seq *q, int max)
{
	if (q->n <= max)
		return 0;
	q->n = max;
	q->n_loss = 0;
	for (int i = 0; i < max; i++)
		q->n_loss += q->loss[i];
	return 1;
}

/* Whether a message of C to learn is empty or holds blanks only. */
static int
conv_learns_blank(const struct conv *c)
{
	for (int i = 0; i < c->n; i++) {
		const char *s = c->m[i].content;
		while (s && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
			s++;
		if (c->m[i].train > 0 && (!s || !*s))
			return 1;
	}
	return 0;
}

/* Reads one JSON line into E.  Returns 1 for an example, 0 for a line to skip, -1 with
 * ERR set (-2: out of memory). */
static int
read_line(struct tdata_set *s, const struct tdata_tmpl *t, const cJSON *o, struct tdata_example *e, char *err,
	  size_t errlen)
{
	struct conv c[2] = { { 0 }, { 0 } };
	const char *why = NULL;
	char terr[400];
	int rc = -1, nconv = 1;

	if (!cJSON_IsObject(o)) {
		why = "not a JSON object";
		goto bad;
	}
	if (s->method == TDATA_SFT) {
		const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
		const cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "prompt");
		const cJSON *co = cJSON_GetObjectItemCaseSensitive(o, "completion");
		if (msgs) {
			if (conv_add(&c[0], msgs, "user", -1, &why) < 0)
				goto bad;
			conv_settle(&c[0], s->all_turns);
		} else if (pr && co) {
			const cJSON *label = cJSON_GetObjectItemCaseSensitive(o, "label");
			if (label && !cJSON_IsBool(label)) {
				why = "\"label\" is not true or false";   /* 0 was trained as a good reply */
				goto bad;
			}
			if (cJSON_IsFalse(label)) {
				rc = 0;   /* a reply rated bad (KTO's shape): nothing to imitate */
				goto out;
			}
			if (conv_add(&c[0], pr, "user", 0, &why) < 0 || conv_add(&c[0], co, "assistant", 1, &why) < 0)
				goto bad;
			conv_settle(&c[0], 0);
		} else if (cJSON_GetObjectItemCaseSensitive(o, "chosen")) {
			why = "this is a preference pair (prompt, chosen, rejected): train it with --method dpo";
			goto bad;
		} else {
			why = "an SFT line needs \"messages\" (or \"prompt\" and \"completion\")";
			goto bad;
		}
		if (!conv_has_train(&c[0])) {
			why = "no assistant message to learn";
			goto bad;
		}
		e->blank = conv_learns_blank(&c[0]);
	} else {
		const cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "prompt");
		const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "chosen");
		const cJSON *rj = cJSON_GetObjectItemCaseSensitive(o, "rejected");
		const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "input");
		nconv = 2;
		if (in) {
			pr = cJSON_GetObjectItemCaseSensitive(in, "messages");
			ch = cJSON_GetObjectItemCaseSensitive(o, "preferred_output");
			rj = cJSON_GetObjectItemCaseSensitive(o, "non_preferred_output");
		}
		if (!pr || !ch || !rj) {
			why = cJSON_GetObjectItemCaseSensitive(o, "messages") ?
			    "this is a conversation, not a preference pair: train it with --method sft" :
			    "a DPO line needs \"prompt\", \"chosen\" and \"rejected\" (or OpenAI's \"input\", "
			    "\"preferred_output\", \"non_preferred_output\")";
			goto bad;
		}
		for (int k = 0; k < 2; k++) {
			/* The prompt's earlier replies are context; the reply is learned. */
			if (conv_add(&c[k], pr, "user", 0, &why) < 0)
				goto bad;
			if (conv_add(&c[k], k ? rj : ch, "assistant", 1, &why) < 0)
				goto bad;
			if (!conv_has_train(&c[k])) {
				why = k ? "the rejected reply has no assistant message" : "the chosen reply has no assistant message";
				goto bad;
			}
			if (k == 0)
				e->blank = conv_learns_blank(&c[0]);   /* the chosen reply */
		}
	}
	for (int k = 0; k < nconv; k++) {
		int r = tdata_encode(t, c[k].m, c[k].n, &e->seq[k], terr, sizeof(terr));
		if (r < 0) {
			snprintf(err, errlen, "%s: %s", e->where, terr);
			rc = r;
			goto out;
		}
	}
	if (nconv == 2) {
		/* One prompt for both: the tokens before the first learned one
		 * agree (turns of their own in "chosen" or "rejected" made a pair
		 * of answers to two prompts, learned as a preference). */
		const struct tdata_seq *a = &e->seq[0], *b = &e->seq[1];
		int fa = 0, fb = 0;
		while (fa < a->n && !a->loss[fa])
			fa++;
		while (fb < b->n && !b->loss[fb])
			fb++;
		if (fa != fb || memcmp(a->tok, b->tok, (size_t)fa * sizeof(*a->tok)) != 0) {
			why = "the chosen and the rejected reply answer different prompts (the turns before them differ)";
			goto bad;
		}
	}
	rc = 1;
	goto out;
bad:
	snprintf(err, errlen, "%s: %s", e->where, why);
out:
	conv_free(&c[0]);
	conv_free(&c[1]);
	if (rc != 1)
		example_free(e);
	return rc;
}

int
tdata_read_jsonl(struct tdata_set *s, const struct tdata_tmpl *t, const char *path, tdata_warn_fn warn, void *wctx,
		 char *err, size_t errlen)
{
	FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	const int n0 = s->n, tr0 = s->n_truncated, dr0 = s->n_dropped, em0 = s->n_empty;
	const long tok0 = s->n_tokens;
	char *line = NULL, msg[256];
	size_t cap = 0;
	ssize_t len;
	long lineno = 0;
	int rc = -1;

	if (!fp) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while ((len = getline(&line, &cap, fp)) >= 0) {
		struct tdata_example e;
		cJSON *o;
		int r, nseq = s->method == TDATA_DPO ? 2 : 1, cut = 0, empty = 0, none = 0, n_full = 0;
		size_t i;

		lineno++;
		for (i = 0; i < (size_t)len && line[i] && strchr(" \t\r\n", line[i]); i++)
			;
		if (i == (size_t)len)
			continue;
		memset(&e, 0, sizeof(e));
		snprintf(e.where, sizeof(e.where), "%.70s:%ld", path, lineno);
		if (!(o = jsonl_parse(line, (size_t)len, "example", msg, sizeof(msg)))) {
			snprintf(err, errlen, "%s: %s", e.where, msg);
			goto out;
		}
		r = read_line(s, t, o, &e, err, errlen);
		cJSON_Delete(o);
		if (r < 0)
			goto out;
		if (r == 0)
			continue;
		for (int k = 0; k < nseq; k++) {
			n_full = e.seq[k].n > n_full ? e.seq[k].n : n_full;
			none |= e.seq[k].n_loss == 0;   /* before any cut: the reply renders as nothing */
			cut |= seq_cut(&e.seq[k], s->max_tokens);
			empty |= e.seq[k].n_loss == 0;
		}
		if (none) {
			s->n_dropped++;
			s->n_empty++;
			snprintf(msg, sizeof(msg), "%s: skipped: %s has no token to learn (the template renders it as "
			    "nothing)", e.where, nseq == 2 ? "a reply" : "the reply");
			if (warn)
				warn(wctx, msg);
			example_free(&e);
			continue;
		}
		if (empty) {
			s->n_dropped++;
			snprintf(msg, sizeof(msg), "%s: skipped: no reply token is left within %d tokens (it has %d)", e.where,
			    s->max_tokens, n_full);
			if (warn)
				warn(wctx, msg);
			example_free(&e);
			continue;
		}
		if (e.blank) {
			/* Learned as it is (a rated empty reply is data too), but
			 * rarely what the rating meant. */
			snprintf(msg, sizeof(msg), "%s: the %s is empty: it teaches the model to end its turn at once",
			    e.where, nseq == 2 ? "chosen reply" : "reply learned");
			if (warn)
				warn(wctx, msg);
		}
		if (e.seq[0].n_open) {
			/* Learned too (a reply cut short is data of a kind), but a chat
			 * stops at such a token only: the model would run on. */
			snprintf(msg, sizeof(msg), "%s: %s has no end-of-generation token (the chat template ends the "
			    "turn with none this model has): it does not teach the model to stop", e.where,
			    nseq == 2 ? "the chosen reply" : e.seq[0].n_open > 1 ? "a reply learned" : "the reply learned");
			if (warn)
				warn(wctx, msg);
		}
		if (cut) {
			s->n_truncated++;
			snprintf(msg, sizeof(msg), "%s: cut to %d tokens (it has %d)", e.where, s->max_tokens, n_full);
			if (warn)
				warn(wctx, msg);
		}
		if (s->n == s->cap) {
			int nc = s->cap ? 2 * s->cap : 64;
			struct tdata_example *ne = realloc(s->ex, (size_t)nc * sizeof(*ne));
			if (!ne) {
				example_free(&e);
				snprintf(err, errlen, "%s: out of memory", path);
				goto out;
			}
			s->ex = ne;
			s->cap = nc;
		}
		for (int k = 0; k < nseq; k++)
			s->n_tokens += e.seq[k].n;
		s->ex[s->n++] = e;
	}
	if (ferror(fp)) {
		snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(line);
	if (fp != stdin)
		fclose(fp);
	if (rc < 0) {
		/* Nothing of a file at fault is kept. */
		for (int i = n0; i < s->n; i++)
			example_free(&s->ex[i]);
		s->n = n0;
		s->n_truncated = tr0;
		s->n_dropped = dr0;
		s->n_empty = em0;
		s->n_tokens = tok0;
	}
	return rc;
}

static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

uint64_t
tdata_set_fingerprint(const struct tdata_set *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	int m = (int)s->method;

	h = fnv(h, &m, sizeof(m));
	h = fnv(h, &s->n, sizeof(s->n));
	for (int i = 0; i < s->n; i++) {
		for (int k = 0; k < (s->method == TDATA_DPO ? 2 : 1); k++) {
			const struct tdata_seq *q = &s->ex[i].seq[k];
			h = fnv(h, &q->n, sizeof(q->n));
			h = fnv(h, q->tok, (size_t)q->n * sizeof(*q->tok));
			h = fnv(h, q->loss, (size_t)q->n);
		}
	}
	return h;
}
