/* oai.c -- OpenAI-compatible requests and replies: parsing, checking, building, reading back. */
#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "natter/oai.h"
#include "natter/text.h"
#include "llm/strbuf.h"

/* cJSON records the position of a syntax error in a global: parses are
 * serialised so that two server threads never write it at once. */
static pthread_mutex_t parse_mu = PTHREAD_MUTEX_INITIALIZER;

/* The JSON value at the start of S (LEN bytes; caller frees), or NULL
 * with *ERR_AT (when not NULL) the byte where it went wrong.  WHOLE: S
 * must hold nothing after the value but JSON's whitespace (a request body:
 * what follows would be silently lost); else the rest is ignored. */
static cJSON *
json_parse(const char *s, size_t len, int whole, size_t *err_at)
{
	const char *end = NULL;
	cJSON *j;

	pthread_mutex_lock(&parse_mu);
	j = cJSON_ParseWithLengthOpts(s, len, &end, 0);
	pthread_mutex_unlock(&parse_mu);
	if (j && whole && end && end >= s && end <= s + len) {
		while (end < s + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
			end++;
		if (end < s + len) {
			cJSON_Delete(j);
			j = NULL;
		}
	}
	if (!j && err_at)
		*err_at = end && end >= s && end <= s + len ? (size_t)(end - s) : 0;
	return j;
}

/* --- errors --- */

void
oai_error_set(struct oai_error *e, int status, const char *type, const char *code, const char *param,
	      const char *fmt, ...)
{
	va_list ap;

	e->status = status;
	e->type = type;
	e->code = code;
	snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}

static cJSON *
str_or_null(const char *s)
{
	return s && *s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

char *
oai_error_json(const struct oai_error *e)
{
	cJSON *root = cJSON_CreateObject(), *o = cJSON_CreateObject();
	char *msg = oai_text_clean(e->message, strlen(e->message), NULL), *out = NULL;

	if (!root || !o || !msg) {
		cJSON_Delete(root);
		cJSON_Delete(o);
		free(msg);
		return NULL;
	}
	cJSON_AddItemToObject(root, "error", o);
	cJSON_AddStringToObject(o, "message", msg);
	cJSON_AddStringToObject(o, "type", e->type ? e->type : "invalid_request_error");
	cJSON_AddItemToObject(o, "param", str_or_null(e->param));
	cJSON_AddItemToObject(o, "code", str_or_null(e->code));
	out = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	free(msg);
	return out;
}

static int
bad(struct oai_error *e, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
bad(struct oai_error *e, const char *param, const char *fmt, ...)
{
	va_list ap;

	e->status = 400;
	e->type = "invalid_request_error";
	e->code = NULL;
	snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return -1;
}

/* --- the sampling fields: one table for parsing, checking and writing --- */

enum pkind { P_NUM, P_INT };

/* OpenAI's own fields, and the extras that llama.cpp's server and vLLM
 * read (EXTRA: OpenAI itself refuses them; oai_req_to_json leaves them out
 * when asked to).  A client writes every row whose bit is set; a server
 * reads every row, a later one of the same bit winning. */
static const struct oai_param {
	const char *name;
	enum pkind kind;
	double min, max;
	int min_open;        /* MIN itself is out of range */
	unsigned bit;
	size_t off;          /* a double (P_NUM) or an int (P_INT) in struct oai_req */
	int extra;           /* not OpenAI's: llama-server's and vLLM's */
	int client;          /* written by a client (0: read only) */
} params[] = {
	{ "temperature", P_NUM, 0, 100, 0, OAI_SET_TEMP, offsetof(struct oai_req, temperature), 0, 1 },
	{ "top_p", P_NUM, 0, 1, 0, OAI_SET_TOP_P, offsetof(struct oai_req, top_p), 0, 1 },
	{ "min_p", P_NUM, 0, 1, 0, OAI_SET_MIN_P, offsetof(struct oai_req, min_p), 1, 1 },
	/* llama-server's name, then vLLM's for the same thing. */
	{ "repeat_penalty", P_NUM, 0, 10, 1, OAI_SET_REPEAT, offsetof(struct oai_req, repeat_penalty), 1, 1 },
	{ "repetition_penalty", P_NUM, 0, 10, 1, OAI_SET_REPEAT, offsetof(struct oai_req, repeat_penalty), 1, 1 },
	{ "presence_penalty", P_NUM, -2, 2, 0, OAI_SET_PRESENCE, offsetof(struct oai_req, presence_penalty), 0, 1 },
	{ "frequency_penalty", P_NUM, -2, 2, 0, OAI_SET_FREQUENCY, offsetof(struct oai_req, frequency_penalty), 0, 1 },
	{ "top_k", P_INT, 0, 1e9, 0, OAI_SET_TOP_K, offsetof(struct oai_req, top_k), 1, 1 },
	{ "max_tokens", P_INT, 1, 1e9, 0, OAI_SET_MAX_TOKENS, offsetof(struct oai_req, max_tokens), 0, 1 },
	/* The newer name wins when both are given: it comes later. */
	{ "max_completion_tokens", P_INT, 1, 1e9, 0, OAI_SET_MAX_TOKENS, offsetof(struct oai_req, max_tokens), 0, 0 },
};

unsigned
oai_param_bit(const char *name, int *extra)
{
	if (extra)
		*extra = 0;
	for (size_t i = 0; name && i < sizeof(params) / sizeof(params[0]); i++)
		if (!strcmp(params[i].name, name)) {
			if (extra)
				*extra = params[i].extra;
			return params[i].bit;
		}
	if (name && !strcmp(name, "seed"))
		return OAI_SET_SEED;
	return 0;
}

const char *
oai_param_named(const char *text, unsigned bits)
{
	const char *best = NULL, *at = NULL;
	for (size_t i = 0; text && i < sizeof(params) / sizeof(params[0]); i++) {
		size_t nl = strlen(params[i].name);
		if (!(params[i].bit & bits))
			continue;
		/* As a word: "top_k" in "'top_k' is not supported", not in "top_kx". */
		for (const char *h = strstr(text, params[i].name); h; h = strstr(h + 1, params[i].name)) {
			char b = h > text ? h[-1] : ' ', a = h[nl];
			if ((b == '_' || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9')) ||
			    (a == '_' || (a >= 'a' && a <= 'z') || (a >= '0' && a <= '9')))
				continue;
			if (!at || h < at) {
				at = h;
				best = params[i].name;
			}
			break;
		}
	}
	return best;
}

static int
parse_params(const cJSON *root, struct oai_req *r, struct oai_error *e)
{
	const cJSON *v;

	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
		const struct oai_param *p = &params[i];
		double d;
		v = cJSON_GetObjectItemCaseSensitive(root, p->name);
		if (!v || cJSON_IsNull(v))
			continue;
		if (!cJSON_IsNumber(v))
			return bad(e, p->name, "%s must be a number", p->name);
		d = v->valuedouble;
		if (p->kind == P_INT && d != floor(d))
			return bad(e, p->name, "%s must be an integer", p->name);
		if (!(d <= p->max) || (p->min_open ? !(d > p->min) : !(d >= p->min)))
			return bad(e, p->name, "%s must be in %c%g, %g]", p->name, p->min_open ? '(' : '[', p->min,
			    p->max);
		if (p->kind == P_NUM)
			*(double *)((char *)r + p->off) = d;
		else
			*(int *)((char *)r + p->off) = (int)d;
		r->set |= p->bit;
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "seed");
	if (v && !cJSON_IsNull(v)) {
		if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
			return bad(e, "seed", "seed must be an integer");
		/* A number arrives as a double: past 2^53 - 1 it may be another
		 * integer rounded (9007199254740993 reads as 2^53), and a seed
		 * taken as another would not repeat its reply. */
		if (v->valuedouble < -1 || v->valuedouble >= 9007199254740992.0)
			return bad(e, "seed", "seed must be an integer between 0 and 2^53 - 1 = 9007199254740991 "
			    "(or -1 for a random one): larger ones are not read exactly");
		r->seed = v->valuedouble < 0 ? SAMPLER_SEED_RANDOM : (uint64_t)v->valuedouble;
		r->set |= OAI_SET_SEED;
	}
	return 0;
}

void
oai_req_apply(const struct oai_req *r, struct sampler_params *sp, int *max_tokens)
{
	if (r->set & OAI_SET_TEMP)
		sp->temp = (float)r->temperature;
	if (r->set & OAI_SET_TOP_P) {
		if (r->top_p > 0) {
			sp->top_p = (float)r->top_p;
		} else {
			/* top_p 0 keeps only the most likely token. */
			sp->top_p = 1.0f;
			sp->top_k = 1;
		}
	}
	if (r->set & OAI_SET_TOP_K)
		sp->top_k = r->top_k;
	if (r->set & OAI_SET_MIN_P)
		sp->min_p = (float)r->min_p;
	if (r->set & OAI_SET_REPEAT)
		sp->repeat_penalty = (float)r->repeat_penalty;
	if (r->set & OAI_SET_PRESENCE)
		sp->presence_penalty = (float)r->presence_penalty;
	if (r->set & OAI_SET_FREQUENCY)
		sp->frequency_penalty = (float)r->frequency_penalty;
	if (r->set & OAI_SET_SEED)
		sp->seed = r->seed;
	if (r->set & OAI_SET_MAX_TOKENS)
		*max_tokens = r->max_tokens;
}

/* --- messages and prompts --- */

/* Appends T to *S (*LEN bytes of *CAP), after SEP when *S holds text:
 * the running length, not strlen, so many parts cost their bytes once. */
static int
append(char **s, size_t *len, size_t *cap, const char *sep, const char *t)
{
	if (*len && strbuf_append(s, len, cap, sep, strlen(sep)) < 0)
		return -1;
	return strbuf_append(s, len, cap, t, strlen(t));
}

/* The text of message I's content: a string, null (assistant only), or
 * an array of text parts (joined with newlines). */
static char *
content_text(const cJSON *m, int i, const char *role, struct oai_error *e)
{
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content"), *part;
	char param[64], *out = NULL;
	size_t len = 0, cap = 0;
	int j = 0;

	snprintf(param, sizeof(param), "messages[%d].content", i);
	if (cJSON_IsString(c))
		return strdup(c->valuestring);
	if ((!c || cJSON_IsNull(c)) && !strcmp(role, "assistant"))
		return strdup("");
	if (!cJSON_IsArray(c)) {
		bad(e, param, "%s must be a string or an array of text parts", param);
		return NULL;
	}
	cJSON_ArrayForEach(part, c) {
		const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
		const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
		snprintf(param, sizeof(param), "messages[%d].content[%d]", i, j++);
		if (!cJSON_IsObject(part) || !cJSON_IsString(type)) {
			bad(e, param, "%s must be an object with a \"type\"", param);
			goto fail;
		}
		if (strcmp(type->valuestring, "text") != 0) {
			bad(e, param, "%s: natter serve reads text only (a part of type '%.40s' is not supported)", param,
			    type->valuestring);
			goto fail;
		}
		if (!cJSON_IsString(text)) {
			bad(e, param, "%s.text must be a string", param);
			goto fail;
		}
		if (append(&out, &len, &cap, "\n", text->valuestring) < 0) {
			bad(e, param, "out of memory");
			goto fail;
		}
	}
	return out ? out : strdup("");
fail:
	free(out);
	return NULL;
}

static int
parse_messages(const cJSON *arr, struct oai_req *r, struct oai_error *e)
{
	const cJSON *m;
	size_t sys_len = 0, sys_cap = 0;
	int i = 0, n;

	if (!arr)
		return bad(e, "messages", "messages is required");
	if (!cJSON_IsArray(arr))
		return bad(e, "messages", "messages must be an array of messages");
	n = cJSON_GetArraySize(arr);
	if (n == 0)
		return bad(e, "messages", "messages must not be empty");
	r->msgs = calloc((size_t)n, sizeof(*r->msgs));
	if (!r->msgs)
		return bad(e, "messages", "out of memory");
	cJSON_ArrayForEach(m, arr) {
		const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
		const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
		char param[48], *text;
		const char *rs;

		snprintf(param, sizeof(param), "messages[%d]", i);
		if (!cJSON_IsObject(m))
			return bad(e, param, "%s must be an object", param);
		snprintf(param, sizeof(param), "messages[%d].role", i);
		if (!cJSON_IsString(role))
			return bad(e, param, "%s must be a string", param);
		rs = role->valuestring;
		if (!strcmp(rs, "tool") || !strcmp(rs, "function"))
			return bad(e, param, "%s '%s' is not supported: natter serve has no tool calling", param, rs);
		if (strcmp(rs, "system") && strcmp(rs, "developer") && strcmp(rs, "user") && strcmp(rs, "assistant"))
			return bad(e, param, "%s must be system, developer, user or assistant", param);
		if (cJSON_IsArray(calls) && cJSON_GetArraySize(calls) > 0) {
			snprintf(param, sizeof(param), "messages[%d].tool_calls", i);
			return bad(e, param, "tool calls are not supported by natter serve");
		}
		text = content_text(m, i, rs, e);
		if (!text)
			return -1;
		if (!strcmp(rs, "developer"))
			rs = "system";   /* OpenAI's newer name for it */
		if (!strcmp(rs, "system") && r->n_msgs == 0) {
			/* Before the conversation: the system prompt. */
			int rc = append(&r->system, &sys_len, &sys_cap, "\n\n", text);
			free(text);
			if (rc < 0)
				return bad(e, "messages", "out of memory");
		} else {
			/* A later system message stays where it is: the chat
			 * template decides what it means (or refuses it). */
			r->msgs[r->n_msgs].content = text;
			r->msgs[r->n_msgs].role = strdup(rs);
			if (!r->msgs[r->n_msgs].role) {
				free(text);
				return bad(e, "messages", "out of memory");
			}
			r->n_msgs++;
		}
		i++;
	}
	/* The last message may be the assistant's, as OpenAI's API allows:
	 * the reply is the next assistant message after it. */
	if (r->n_msgs == 0)
		return bad(e, "messages", "messages must hold a user or assistant message, not only system ones");
	return 0;
}

static int
parse_prompt(const cJSON *p, struct oai_req *r, struct oai_error *e)
{
	if (!p)
		return bad(e, "prompt", "prompt is required");
	if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(cJSON_GetArrayItem(p, 0)))
		p = cJSON_GetArrayItem(p, 0);
	if (cJSON_IsArray(p))
		return bad(e, "prompt", "prompt must be a string (or an array of one string); token arrays and "
		    "several prompts are not supported");
	if (!cJSON_IsString(p))
		return bad(e, "prompt", "prompt must be a string");
	r->prompt = strdup(p->valuestring);
	return r->prompt ? 0 : bad(e, "prompt", "out of memory");
}

static int
parse_stop(const cJSON *s, struct oai_req *r, struct oai_error *e)
{
	const cJSON *it;

	if (!s || cJSON_IsNull(s))
		return 0;
	if (cJSON_IsString(s)) {
		if (s->valuestring[0] && !(r->stop[r->n_stop++] = strdup(s->valuestring)))
			return bad(e, "stop", "out of memory");
		return 0;
	}
	if (!cJSON_IsArray(s))
		return bad(e, "stop", "stop must be a string or an array of strings");
	if (cJSON_GetArraySize(s) > OAI_MAX_STOP)
		return bad(e, "stop", "stop holds at most %d strings", OAI_MAX_STOP);
	cJSON_ArrayForEach(it, s) {
		if (!cJSON_IsString(it))
			return bad(e, "stop", "stop must be a string or an array of strings");
		if (it->valuestring[0] && !(r->stop[r->n_stop++] = strdup(it->valuestring)))
			return bad(e, "stop", "out of memory");
	}
	return 0;
}

/* --- fields natter cannot honour: refused rather than silently ignored --- */

/* The one value of a field that asks for nothing natter lacks (null is
 * always neutral: the field left at its default). */
enum neutral {
	NEUTRAL_NULL,          /* only null */
	NEUTRAL_FALSE,         /* false */
	NEUTRAL_ONE,           /* the number 1 */
	NEUTRAL_ZERO,          /* the number 0 */
	NEUTRAL_EMPTY_ARRAY,   /* [] */
	NEUTRAL_EMPTY_OBJECT,  /* {} */
	NEUTRAL_TEXT_FORMAT,   /* {"type": "text"} */
};

#define FOR_CHAT (1u << OAI_CHAT)
#define FOR_COMPLETION (1u << OAI_COMPLETION)

/* In the order they are looked at: the first one set is the one named. */
static const struct unsupported {
	const char *name;
	unsigned kinds;        /* the endpoints that refuse it (1 << enum oai_kind) */
	enum neutral neutral;
	const char *message;
} unsupported[] = {
	{ "n", FOR_CHAT | FOR_COMPLETION, NEUTRAL_ONE, "n must be 1: natter serve generates one choice per request" },
	{ "logprobs", FOR_CHAT | FOR_COMPLETION, NEUTRAL_FALSE, "logprobs are not supported by natter serve" },
	/* A bias changes what the model says: ignored, the reply would not be
	 * what was asked for (an empty object asks nothing). */
	{ "logit_bias", FOR_CHAT | FOR_COMPLETION, NEUTRAL_EMPTY_OBJECT, "logit_bias is not supported by natter serve" },
	{ "top_logprobs", FOR_CHAT | FOR_COMPLETION, NEUTRAL_ZERO, "logprobs are not supported by natter serve" },
	{ "tools", FOR_CHAT, NEUTRAL_EMPTY_ARRAY, "tools are not supported by natter serve" },
	{ "functions", FOR_CHAT, NEUTRAL_EMPTY_ARRAY, "tools are not supported by natter serve" },
	{ "response_format", FOR_CHAT, NEUTRAL_TEXT_FORMAT, "only response_format {\"type\": \"text\"} is supported" },
	{ "echo", FOR_COMPLETION, NEUTRAL_FALSE, "echo is not supported by natter serve" },
	{ "suffix", FOR_COMPLETION, NEUTRAL_NULL, "suffix is not supported by natter serve" },
	{ "best_of", FOR_COMPLETION, NEUTRAL_ONE, "best_of must be 1" },
};

/* Is V (not NULL, not null) the neutral value KIND? */
static int
is_neutral(const cJSON *v, enum neutral kind)
{
	const cJSON *t;

	switch (kind) {
	case NEUTRAL_NULL: return 0;
	case NEUTRAL_FALSE: return cJSON_IsFalse(v);
	case NEUTRAL_ONE: return cJSON_IsNumber(v) && v->valuedouble == 1;
	case NEUTRAL_ZERO: return cJSON_IsNumber(v) && v->valuedouble == 0;
	case NEUTRAL_EMPTY_ARRAY: return cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0;
	case NEUTRAL_EMPTY_OBJECT: return cJSON_IsObject(v) && cJSON_GetArraySize(v) == 0;
	case NEUTRAL_TEXT_FORMAT:
		t = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "type") : NULL;
		return cJSON_IsString(t) && strcmp(t->valuestring, "text") == 0;
	}
	return 0;
}

/* Refuses (400, the field named) the first field of ROOT that KIND's
 * endpoint cannot honour and that is set to anything but null or its
 * neutral value.  Returns 0 or -1 with E set. */
static int
refuse_unsupported(const cJSON *root, enum oai_kind kind, struct oai_error *e)
{
	for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
		const struct unsupported *u = &unsupported[i];
		const cJSON *v;
		if (!(u->kinds & (1u << kind)))
			continue;
		v = cJSON_GetObjectItemCaseSensitive(root, u->name);
		if (v && !cJSON_IsNull(v) && !is_neutral(v, u->neutral))
			return bad(e, u->name, "%s", u->message);
	}
	return 0;
}

int
oai_req_parse(enum oai_kind kind, const char *body, size_t len, struct oai_req *r, struct oai_error *e)
{
	cJSON *root;
	const cJSON *v;
	size_t at = 0;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->seed = SAMPLER_SEED_RANDOM;
	root = json_parse(body, len, 1, &at);
	if (!root)
		return bad(e, NULL, "the request body is not valid JSON (error near byte %zu of %zu)", at, len);
	if (!cJSON_IsObject(root)) {
		bad(e, NULL, "the request body must be a JSON object");
		goto out;
	}
	if (memchr(body, '\0', len) || text_json_has_nul(body, len)) {
		bad(e, NULL, "the request holds a NUL character (\\u0000), which natter's text cannot keep "
		    "(everything after it would be lost); leave it out");
		goto out;
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "model");
	if (!v) {
		bad(e, "model", "model is required");
		goto out;
	}
	if (!cJSON_IsString(v)) {
		bad(e, "model", "model must be a string");
		goto out;
	}
	if (!(r->model = strdup(v->valuestring))) {
		bad(e, "model", "out of memory");
		goto out;
	}
	if (refuse_unsupported(root, kind, e) < 0 || parse_params(root, r, e) < 0)
		goto out;
	v = cJSON_GetObjectItemCaseSensitive(root, "stream");
	if (v && !cJSON_IsNull(v)) {
		if (!cJSON_IsBool(v)) {
			bad(e, "stream", "stream must be true or false");
			goto out;
		}
		r->stream = cJSON_IsTrue(v);
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
	if (v && !cJSON_IsNull(v)) {
		const cJSON *u = cJSON_GetObjectItemCaseSensitive(v, "include_usage");
		if (!cJSON_IsObject(v) || (u && !cJSON_IsNull(u) && !cJSON_IsBool(u))) {
			bad(e, "stream_options", "stream_options must be an object like {\"include_usage\": true}");
			goto out;
		}
		r->include_usage = cJSON_IsTrue(u);
	}
	/* vLLM's and llama-server's way to reach a template's switches; of
	 * them natter's templates see enable_thinking (Qwen3's), the rest is
	 * ignored. */
	v = cJSON_GetObjectItemCaseSensitive(root, "chat_template_kwargs");
	if (v && !cJSON_IsNull(v)) {
		const cJSON *t = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "enable_thinking") : NULL;
		if (!cJSON_IsObject(v) || (t && !cJSON_IsNull(t) && !cJSON_IsBool(t))) {
			bad(e, "chat_template_kwargs", "chat_template_kwargs must be an object like {\"enable_thinking\": false}");
			goto out;
		}
		if (cJSON_IsBool(t))
			r->think = cJSON_IsTrue(t) ? 1 : -1;
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "reasoning_format");
	if (v && !cJSON_IsNull(v)) {
		if (!cJSON_IsString(v) || (strcmp(v->valuestring, "none") && strcmp(v->valuestring, "deepseek") &&
		    strcmp(v->valuestring, "auto"))) {
			bad(e, "reasoning_format", "reasoning_format must be \"none\", \"deepseek\" or \"auto\"");
			goto out;
		}
		r->reasoning = strcmp(v->valuestring, "none") ? 1 : -1;
	}
	if (parse_stop(cJSON_GetObjectItemCaseSensitive(root, "stop"), r, e) < 0)
		goto out;
	if (kind == OAI_CHAT)
		rc = parse_messages(cJSON_GetObjectItemCaseSensitive(root, "messages"), r, e);
	else
		rc = parse_prompt(cJSON_GetObjectItemCaseSensitive(root, "prompt"), r, e);
out:
	cJSON_Delete(root);
	if (rc < 0)
		oai_req_free(r);
	return rc;
}

void
oai_req_free(struct oai_req *r)
{
	if (!r)
		return;
	free(r->model);
	free(r->system);
	for (int i = 0; i < r->n_msgs; i++) {
		free(r->msgs[i].role);
		free(r->msgs[i].content);
	}
	free(r->msgs);
	free(r->prompt);
	for (int i = 0; i < r->n_stop; i++)
		free(r->stop[i]);
	memset(r, 0, sizeof(*r));
}

char *
oai_req_to_json(const struct oai_req *r)
{
	cJSON *root = cJSON_CreateObject(), *a;
	char *out = NULL;

	if (!root)
		return NULL;
	cJSON_AddStringToObject(root, "model", r->model ? r->model : "");
	if (r->kind == OAI_CHAT) {
		a = cJSON_AddArrayToObject(root, "messages");
		if (r->system) {
			cJSON *m = cJSON_CreateObject();
			cJSON_AddStringToObject(m, "role", "system");
			cJSON_AddStringToObject(m, "content", r->system);
			cJSON_AddItemToArray(a, m);
		}
		for (int i = 0; i < r->n_msgs; i++) {
			cJSON *m = cJSON_CreateObject();
			cJSON_AddStringToObject(m, "role", r->msgs[i].role);
			cJSON_AddStringToObject(m, "content", r->msgs[i].content);
			cJSON_AddItemToArray(a, m);
		}
	} else {
		cJSON_AddStringToObject(root, "prompt", r->prompt ? r->prompt : "");
	}
	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
		const struct oai_param *p = &params[i];
		if (!(r->set & p->bit) || !p->client)
			continue;
		if (p->kind == P_NUM)
			cJSON_AddNumberToObject(root, p->name, *(const double *)((const char *)r + p->off));
		else
			cJSON_AddNumberToObject(root, p->bit == OAI_SET_MAX_TOKENS && r->max_completion_tokens ?
			    "max_completion_tokens" : p->name, *(const int *)((const char *)r + p->off));
	}
	if (r->set & OAI_SET_SEED) {
		/* Its digits, not a double's 15 of them: the seed sent is the
		 * seed recorded, whatever its size. */
		char d[24];
		snprintf(d, sizeof(d), "%" PRIu64, r->seed);
		cJSON_AddItemToObject(root, "seed", r->seed == SAMPLER_SEED_RANDOM ? cJSON_CreateNumber(-1) :
		    cJSON_CreateRaw(d));
	}
	if (r->n_stop > 0) {
		a = cJSON_AddArrayToObject(root, "stop");
		for (int i = 0; i < r->n_stop; i++)
			cJSON_AddItemToArray(a, cJSON_CreateString(r->stop[i]));
	}
	if (r->think) {
		cJSON *kw = cJSON_AddObjectToObject(root, "chat_template_kwargs");
		cJSON_AddBoolToObject(kw, "enable_thinking", r->think > 0);
	}
	if (r->stream) {
		cJSON_AddBoolToObject(root, "stream", 1);
		if (r->include_usage) {
			cJSON *so = cJSON_AddObjectToObject(root, "stream_options");
			cJSON_AddBoolToObject(so, "include_usage", 1);
		}
	}
	out = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return out;
}

/* --- replies --- */

char *
oai_text_clean(const char *s, size_t n, size_t *outlen)
{
	char *rep = malloc(n * 3 + 1), *out;
	size_t m, nul = 0, o = 0;

	if (!rep)
		return NULL;
	m = text_repair_utf8(s, n, rep, n * 3);
	for (size_t i = 0; i < m; i++)
		nul += rep[i] == 0;
	if (nul == 0) {
		rep[m] = 0;
		if (outlen)
			*outlen = m;
		return rep;
	}
	out = malloc(m + nul * 2 + 1);
	if (!out) {
		free(rep);
		return NULL;
	}
	for (size_t i = 0; i < m; i++) {
		if (rep[i]) {
			out[o++] = rep[i];
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
		}
	}
	out[o] = 0;
	free(rep);
	if (outlen)
		*outlen = o;
	return out;
}

static void
add_usage(cJSON *root, const struct oai_result *res, int force)
{
	cJSON *u, *d;

	if (res->usage < 0 && !force) {
		cJSON_AddNullToObject(root, "usage");
		return;
	}
	u = cJSON_AddObjectToObject(root, "usage");
	cJSON_AddNumberToObject(u, "prompt_tokens", res->prompt_tokens);
	cJSON_AddNumberToObject(u, "completion_tokens", res->completion_tokens);
	cJSON_AddNumberToObject(u, "total_tokens", res->prompt_tokens + res->completion_tokens);
	d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
	cJSON_AddNumberToObject(d, "cached_tokens", res->cached_tokens);
	if (res->reasoning_tokens > 0) {
		d = cJSON_AddObjectToObject(u, "completion_tokens_details");
		cJSON_AddNumberToObject(d, "reasoning_tokens", res->reasoning_tokens);
	}
}

static cJSON *
reply_head(enum oai_kind kind, const struct oai_result *res, int chunk)
{
	cJSON *root = cJSON_CreateObject();
	if (!root)
		return NULL;
	cJSON_AddStringToObject(root, "id", res->id ? res->id : "");
	cJSON_AddStringToObject(root, "object", kind == OAI_COMPLETION ? "text_completion" :
	    chunk ? "chat.completion.chunk" : "chat.completion");
	cJSON_AddNumberToObject(root, "created", (double)res->created);
	cJSON_AddStringToObject(root, "model", res->model ? res->model : "");
	return root;
}

static char *
finish(cJSON *root, char *text)
{
	char *out = root ? cJSON_PrintUnformatted(root) : NULL;
	cJSON_Delete(root);
	free(text);
	return out;
}

/* Adds RES's reasoning to a chat message or delta O as "reasoning_content"
 * (valid UTF-8, as the content).  Returns -1 when out of memory. */
static int
add_reasoning(cJSON *o, const struct oai_result *res)
{
	char *r = oai_text_clean(res->reasoning, res->reasoning_len, NULL);
	if (!r)
		return -1;
	cJSON_AddStringToObject(o, "reasoning_content", r);
	free(r);
	return 0;
}

char *
oai_reply_json(enum oai_kind kind, const struct oai_result *res)
{
	cJSON *root = reply_head(kind, res, 0), *choices, *c;
	char *text = oai_text_clean(res->text ? res->text : "", res->text ? res->len : 0, NULL);

	if (!root || !text)
		return finish(root, text);
	choices = cJSON_AddArrayToObject(root, "choices");
	c = cJSON_CreateObject();
	cJSON_AddItemToArray(choices, c);
	cJSON_AddNumberToObject(c, "index", 0);
	if (kind == OAI_CHAT) {
		cJSON *m = cJSON_AddObjectToObject(c, "message");
		cJSON_AddStringToObject(m, "role", "assistant");
		cJSON_AddStringToObject(m, "content", text);
		if (res->reasoning && add_reasoning(m, res) < 0) {
			cJSON_Delete(root);
			return finish(NULL, text);
		}
	} else {
		cJSON_AddStringToObject(c, "text", text);
	}
	cJSON_AddNullToObject(c, "logprobs");
	cJSON_AddItemToObject(c, "finish_reason", str_or_null(res->finish));
	add_usage(root, res, 1);
	return finish(root, text);
}

char *
oai_chunk_json(enum oai_kind kind, const struct oai_result *res, int role, int usage_only)
{
	cJSON *root = reply_head(kind, res, 1), *choices, *c;
	char *text = oai_text_clean(res->text ? res->text : "", res->text ? res->len : 0, NULL);

	if (!root || !text)
		return finish(root, text);
	choices = cJSON_AddArrayToObject(root, "choices");
	if (!usage_only) {
		c = cJSON_CreateObject();
		cJSON_AddItemToArray(choices, c);
		cJSON_AddNumberToObject(c, "index", 0);
		if (kind == OAI_CHAT) {
			cJSON *d = cJSON_AddObjectToObject(c, "delta");
			if (role)
				cJSON_AddStringToObject(d, "role", "assistant");
			if (role || res->len > 0)
				cJSON_AddStringToObject(d, "content", text);
			if (res->reasoning && res->reasoning_len > 0 && add_reasoning(d, res) < 0) {
				cJSON_Delete(root);
				return finish(NULL, text);
			}
		} else {
			cJSON_AddStringToObject(c, "text", text);
		}
		cJSON_AddNullToObject(c, "logprobs");
		cJSON_AddItemToObject(c, "finish_reason", str_or_null(res->finish));
	}
	if (usage_only || res->usage)
		add_usage(root, res, usage_only);
	return finish(root, text);
}

/* A string field's value, or "" (a number is written out: vLLM's stop_reason
 * may be a token id, an error code a number). */
static void
field_text(const cJSON *o, const char *name, char *out, size_t n)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	out[0] = 0;
	if (cJSON_IsString(v))
		snprintf(out, n, "%s", v->valuestring);
	else if (cJSON_IsNumber(v))
		snprintf(out, n, "%g", v->valuedouble);
}

static int
field_int(const cJSON *o, const char *name)
{
	const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, name) : NULL;
	return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 2e9 ? (int)v->valuedouble : 0;
}

static double
field_num(const cJSON *o, const char *name)
{
	const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, name) : NULL;
	return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : 0;
}

/* The error shapes servers send, in a body or as a stream event:
 * {"error": {"message", "type", "param", "code"}} (OpenAI, llama-server,
 * ollama, vLLM now), {"object": "error", "message", ...} (vLLM before
 * 0.9), {"error": "text", "error_type": ...} (text-generation-inference). */
static int
read_error(const cJSON *root, struct oai_parsed *p)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "error"), *o = NULL;
	const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, "object");

	if (cJSON_IsObject(v))
		o = v;
	else if (cJSON_IsString(obj) && !strcmp(obj->valuestring, "error"))
		o = root;
	if (o) {
		field_text(o, "message", p->error, sizeof(p->error));
		if (!p->error[0])
			snprintf(p->error, sizeof(p->error), "(no message)");
		field_text(o, "type", p->error_type, sizeof(p->error_type));
		field_text(o, "param", p->error_param, sizeof(p->error_param));
		field_text(o, "code", p->error_code, sizeof(p->error_code));
		return 1;
	}
	if (cJSON_IsString(v)) {
		snprintf(p->error, sizeof(p->error), "%s", v->valuestring[0] ? v->valuestring : "(no message)");
		field_text(root, "error_type", p->error_type, sizeof(p->error_type));
		return 1;
	}
	return 0;
}

/* JSON[0..LEN) parsed, each \u0000 escape read as U+FFFD: cJSON would end
 * the string at the NUL, and the rest of a reply's text would be lost
 * without a word. */
static cJSON *
parse_no_nul(const char *json, size_t len)
{
	char *copy;
	cJSON *root;

	if (!text_json_has_nul(json, len))
		return json_parse(json, len, 0, NULL);
	if (!(copy = malloc(len + 1)))
		return NULL;
	memcpy(copy, json, len);
	copy[len] = 0;
	text_json_nul_to_fffd(copy, len);
	root = json_parse(copy, len, 0, NULL);
	free(copy);
	return root;
}

int
oai_reply_parse(const char *json, size_t len, struct oai_parsed *p)
{
	cJSON *root = parse_no_nul(json, len);
	const cJSON *v, *c, *t = NULL, *rs = NULL;
	int rc = -1;

	memset(p, 0, sizeof(*p));
	if (!cJSON_IsObject(root))
		goto out;
	if (read_error(root, p)) {
		rc = 0;
		goto out;
	}
	/* Which model answered, as the server names it (OpenAI: the dated
	 * snapshot an alias stands for), and its build. */
	field_text(root, "model", p->model, sizeof(p->model));
	field_text(root, "system_fingerprint", p->fingerprint, sizeof(p->fingerprint));
	v = cJSON_GetObjectItemCaseSensitive(root, "choices");
	if (!cJSON_IsArray(v))
		goto out;
	c = cJSON_GetArrayItem(v, 0);
	if (c) {
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "finish_reason");
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, "delta");
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(c, "message");
		const cJSON *in = cJSON_IsObject(d) ? d : cJSON_IsObject(m) ? m : NULL;
		p->has_choice = 1;
		if (in) {
			t = cJSON_GetObjectItemCaseSensitive(in, "content");
			/* vLLM and llama-server with a reasoning parser; ollama and
			 * OpenRouter call it "reasoning". */
			rs = cJSON_GetObjectItemCaseSensitive(in, "reasoning_content");
			if (!cJSON_IsString(rs))
				rs = cJSON_GetObjectItemCaseSensitive(in, "reasoning");
		} else {
			t = cJSON_GetObjectItemCaseSensitive(c, "text");
		}
		if (cJSON_IsString(f))
			snprintf(p->finish, sizeof(p->finish), "%s", f->valuestring);
		field_text(c, "stop_reason", p->stop_reason, sizeof(p->stop_reason));
		p->stop_reason_given = cJSON_GetObjectItemCaseSensitive(c, "stop_reason") != NULL;
	}
	p->text = strdup(cJSON_IsString(t) ? t->valuestring : "");
	p->reasoning = strdup(cJSON_IsString(rs) ? rs->valuestring : "");
	if (!p->text || !p->reasoning) {
		oai_parsed_free(p);
		goto out;
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "usage");
	if (cJSON_IsObject(v)) {
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(v, "prompt_tokens_details");
		const cJSON *cd = cJSON_GetObjectItemCaseSensitive(v, "completion_tokens_details");
		const cJSON *rt = cJSON_IsObject(cd) ? cJSON_GetObjectItemCaseSensitive(cd, "reasoning_tokens") : NULL;
		p->has_usage = 1;
		p->prompt_tokens = field_int(v, "prompt_tokens");
		p->completion_tokens = field_int(v, "completion_tokens");
		p->cached_tokens = cJSON_IsObject(d) ? field_int(d, "cached_tokens") : 0;
		p->reasoning_tokens = cJSON_IsNumber(rt) ? field_int(cd, "reasoning_tokens") : -1;
	}
	/* llama-server's own measurements, on its last chunk. */
	v = cJSON_GetObjectItemCaseSensitive(root, "timings");
	if (cJSON_IsObject(v)) {
		p->has_timings = 1;
		p->t_prompt_n = field_int(v, "prompt_n");
		p->t_prompt_ms = field_num(v, "prompt_ms");
		p->t_prompt_per_second = field_num(v, "prompt_per_second");
		p->t_predicted_n = field_int(v, "predicted_n");
		p->t_predicted_ms = field_num(v, "predicted_ms");
		p->t_predicted_per_second = field_num(v, "predicted_per_second");
		p->t_cache_n = field_int(v, "cache_n");
	}
	rc = 0;
out:
	cJSON_Delete(root);
	return rc;
}

int
oai_error_parse(const char *json, size_t len, struct oai_parsed *p)
{
	cJSON *root = parse_no_nul(json, len);
	int rc = -1;

	memset(p, 0, sizeof(*p));
	if (cJSON_IsObject(root) && !read_error(root, p)) {
		/* llama-server's "error:" line holds the error object itself. */
		field_text(root, "message", p->error, sizeof(p->error));
		field_text(root, "type", p->error_type, sizeof(p->error_type));
		field_text(root, "code", p->error_code, sizeof(p->error_code));
	}
	if (p->error[0])
		rc = 0;
	cJSON_Delete(root);
	return rc;
}

void
oai_parsed_free(struct oai_parsed *p)
{
	if (p) {
		free(p->text);
		free(p->reasoning);
		p->text = p->reasoning = NULL;
	}
}

int
oai_models_parse(const char *json, size_t len, struct oai_model **out, int *n)
{
	cJSON *root = json_parse(json, len, 0, NULL);
	const cJSON *data, *it;
	struct oai_model *m = NULL;
	int k = 0, rc = -1;

	*out = NULL;
	*n = 0;
	data = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "data") : NULL;
	if (!cJSON_IsArray(data))
		goto out;
	if (cJSON_GetArraySize(data) > 0 &&
	    !(m = calloc((size_t)cJSON_GetArraySize(data), sizeof(*m))))
		goto out;
	cJSON_ArrayForEach(it, data) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
		if (!cJSON_IsString(id))
			continue;   /* not a model card */
		snprintf(m[k].id, sizeof(m[k].id), "%s", id->valuestring);
		field_text(it, "owned_by", m[k].owned_by, sizeof(m[k].owned_by));
		{
			/* A unix time, or 0: a server's 1e300 is no time (nor a long long). */
			const double c = field_num(it, "created");
			m[k].created = c >= 0 && c < 9e15 ? (long long)c : 0;
		}
		m[k].max_model_len = field_int(it, "max_model_len");
		k++;
	}
	*out = m;
	*n = k;
	m = NULL;
	rc = 0;
out:
	free(m);
	cJSON_Delete(root);
	return rc;
}

/* --- stop strings --- */

void
oai_stopper_init(struct oai_stopper *s, char *const *stops, int n_stops)
{
	memset(s, 0, sizeof(*s));
	s->stops = stops;
	s->n_stops = n_stops;
}

int
oai_stopper_push(struct oai_stopper *s, const char *p, size_t n, const char **out, size_t *outlen)
{
	size_t safe, hold = 0, hit = (size_t)-1;

	*out = NULL;
	*outlen = 0;
	if (s->hit)
		return 1;
	if (strbuf_append(&s->acc, &s->len, &s->cap, p, n) < 0)
		return -1;
	for (int i = 0; i < s->n_stops; i++) {
		size_t sl = strlen(s->stops[i]);
		/* No stop string can begin in text already sent (see below), so
		 * the search starts where a new one could. */
		size_t from = s->emitted;
		const char *h = s->len >= from + sl ? memmem(s->acc + from, s->len - from, s->stops[i], sl) : NULL;
		if (h && (size_t)(h - s->acc) < hit)
			hit = (size_t)(h - s->acc);
		/* Hold back the longest end of the text that begins a stop string. */
		for (size_t k = sl - 1; k > hold; k--)
			if (k <= s->len - s->emitted && memcmp(s->acc + s->len - k, s->stops[i], k) == 0) {
				hold = k;
				break;
			}
	}
	if (hit != (size_t)-1) {
		s->hit = 1;
		s->len = hit;
		s->acc[hit] = 0;
		safe = hit;
	} else {
		safe = s->len - hold;
	}
	if (safe > s->emitted) {
		*out = s->acc + s->emitted;
		*outlen = safe - s->emitted;
		s->emitted = safe;
	}
	return s->hit;
}

void
oai_stopper_flush(struct oai_stopper *s, const char **out, size_t *outlen)
{
	*out = s->acc ? s->acc + s->emitted : "";
	*outlen = s->len - s->emitted;
	s->emitted = s->len;
}

const char *
oai_stopper_text(const struct oai_stopper *s, size_t *len)
{
	*len = s->len;
	return s->acc ? s->acc : "";
}

void
oai_stopper_free(struct oai_stopper *s)
{
	free(s->acc);
	memset(s, 0, sizeof(*s));
}
