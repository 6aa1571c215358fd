/* test-net.c -- the network modules without a network: SSE, the OpenAI protocol, URLs, hub helpers, and
 * the HTTP client's redirect and token rules against a tiny server on loopback. */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "natter/http.h"
#include "natter/hub.h"
#include "natter/oai.h"
#include "natter/remote.h"
#include "natter/serve.h"
#include "natter/sse.h"
#include "net/serve-impl.h"
#include "test.h"
#include "test-sql.h"

/* --- SSE --- */

struct events {
	char buf[4096];
	int n;
	int stop_at;
};

static int
on_event(void *ctx, const char *event, const char *data, size_t len)
{
	struct events *e = ctx;
	size_t l = strlen(e->buf);
	snprintf(e->buf + l, sizeof(e->buf) - l, "[%s:%.*s]", event, (int)len, data);
	e->n++;
	return e->stop_at && e->n == e->stop_at ? 7 : 0;
}

static void
test_sse(void)
{
	char *out = NULL;
	size_t len = 0, cap = 0;
	struct events ev = { "", 0, 0 };
	struct sse_reader *r;
	const char *stream = ": keep-alive\r\nevent: delta\r\ndata: a\r\ndata:b\r\n\r\nid: 3\ndata: c\n\ndata\n\n"
	    "retry: 10\n\n";

	CHECK(sse_format(&out, &len, &cap, "{\"x\":1}", 7) == 0 && !strcmp(out, "data: {\"x\":1}\n\n"), "format: %s", out);
	len = 0;
	CHECK(sse_format(&out, &len, &cap, "a\nb\n", 4) == 0 && !strcmp(out, "data: a\ndata: b\ndata: \n\n"),
	    "format of lines: %s", out);
	/* What the writer wrote, the reader reads back, fed one byte at a time. */
	r = sse_reader_new(0, on_event, &ev);
	for (size_t i = 0; i < len; i++)
		CHECK(sse_reader_feed(r, out + i, 1) == 0, "feed byte %zu", i);
	CHECK(!strcmp(ev.buf, "[message:a\nb\n]"), "round trip: %s", ev.buf);
	sse_reader_free(r);
	free(out);

	/* CRLF split between feeds, comments, event types, fields without a value. */
	memset(&ev, 0, sizeof(ev));
	r = sse_reader_new(0, on_event, &ev);
	for (size_t i = 0, sl = strlen(stream); i < sl; i += 3)
		sse_reader_feed(r, stream + i, sl - i < 3 ? sl - i : 3);
	CHECK(!strcmp(ev.buf, "[delta:a\nb][message:c][message:]"), "events: %s", ev.buf);
	sse_reader_free(r);

	/* The callback's value stops the reader; an event past the limit is refused. */
	memset(&ev, 0, sizeof(ev));
	ev.stop_at = 1;
	r = sse_reader_new(0, on_event, &ev);
	CHECK(sse_reader_feed(r, "data: 1\n\ndata: 2\n\n", 18) == 7 && ev.n == 1, "stop value, %d events", ev.n);
	sse_reader_free(r);
	memset(&ev, 0, sizeof(ev));
	r = sse_reader_new(16, on_event, &ev);
	CHECK(sse_reader_feed(r, "data: 0123456789abcdefghij\n\n", 28) == -1 && ev.n == 0, "limit");
	sse_reader_free(r);
}

/* --- the OpenAI protocol --- */

static void
test_oai_parse(void)
{
	struct oai_req r;
	struct oai_error e;
	const char *ok = "{\"model\": \"m\", \"messages\": [{\"role\": \"system\", \"content\": \"S1\"}, "
	    "{\"role\": \"developer\", \"content\": [{\"type\": \"text\", \"text\": \"S2\"}]}, "
	    "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"}, {\"type\": \"text\", \"text\": \"b\"}]}, "
	    "{\"role\": \"assistant\", \"content\": null}, {\"role\": \"user\", \"content\": \"q\"}], "
	    "\"temperature\": 0.5, \"top_k\": 7, \"seed\": -1, \"max_tokens\": 5, \"max_completion_tokens\": 9, "
	    "\"stop\": [\"x\", \"\", \"yy\"], \"stream\": true, \"stream_options\": {\"include_usage\": true}, "
	    "\"user\": \"ignored\", \"logprobs\": false, \"tools\": [], \"n\": 1}";
	struct sampler_params sp;
	int max = 100;

	CHECK(oai_req_parse(OAI_CHAT, ok, strlen(ok), &r, &e) == 0, "valid chat refused: %s", e.message);
	CHECK(r.system && !strcmp(r.system, "S1\n\nS2"), "system: %s", r.system ? r.system : "(null)");
	CHECK(r.n_msgs == 3 && !strcmp(r.msgs[0].content, "a\nb") && !strcmp(r.msgs[1].role, "assistant") &&
	    !strcmp(r.msgs[1].content, "") && !strcmp(r.msgs[2].content, "q"), "messages");
	CHECK(r.n_stop == 2 && !strcmp(r.stop[1], "yy"), "stop strings: %d", r.n_stop);
	CHECK(r.stream && r.include_usage && r.max_tokens == 9, "stream, usage, max_completion_tokens");
	sampler_params_default(&sp);
	oai_req_apply(&r, &sp, &max);
	CHECK(sp.temp == 0.5f && sp.top_k == 7 && sp.seed == SAMPLER_SEED_RANDOM && max == 9 && sp.top_p == 0.95f,
	    "applied");
	/* Written out as a client sends it, it reads back the same. */
	{
		char *json = oai_req_to_json(&r);
		struct oai_req r2;
		CHECK(json && oai_req_parse(OAI_CHAT, json, strlen(json), &r2, &e) == 0, "round trip: %s", e.message);
		CHECK(r2.n_msgs == 3 && !strcmp(r2.system, r.system) && r2.set == r.set && r2.max_tokens == 9 &&
		    r2.temperature == 0.5 && r2.n_stop == 2 && r2.include_usage, "round trip fields");
		oai_req_free(&r2);
		free(json);
	}
	oai_req_free(&r);
	/* Many parts and many leading system messages: each joined once, in
	 * order (the join keeps its length; it used to measure the whole
	 * text again for every part). */
	{
		enum { NP = 20000 };
		size_t cap = (size_t)NP * 80 + 256, len = 0;
		char *body = malloc(cap);
		CHECK(body != NULL, "out of memory");
		if (body) {
			len += (size_t)snprintf(body + len, cap - len, "{\"model\": \"m\", \"messages\": [");
			for (int k = 0; k < NP; k++)
				len += (size_t)snprintf(body + len, cap - len, "{\"role\": \"system\", \"content\": \"s%d\"}, ", k % 10);
			len += (size_t)snprintf(body + len, cap - len, "{\"role\": \"user\", \"content\": [");
			for (int k = 0; k < NP; k++)
				len += (size_t)snprintf(body + len, cap - len, "%s{\"type\": \"text\", \"text\": \"%d\"}",
				    k ? ", " : "", k % 10);
			len += (size_t)snprintf(body + len, cap - len, "]}]}");
			int rc = oai_req_parse(OAI_CHAT, body, len, &r, &e), good = rc == 0 && r.system && r.n_msgs == 1 &&
			    strlen(r.system) == (size_t)NP * 4 - 2 && strlen(r.msgs[0].content) == (size_t)NP * 2 - 1;
			for (int k = 0; good && k < NP; k++)
				good = r.system[4 * k] == 's' && r.system[4 * k + 1] == '0' + k % 10 &&
				    (k == NP - 1 || !memcmp(r.system + 4 * k + 2, "\n\n", 2)) &&
				    r.msgs[0].content[2 * k] == '0' + k % 10 && (k == NP - 1 || r.msgs[0].content[2 * k + 1] == '\n');
			CHECK(good, "%d system messages and %d parts joined in order (rc %d: %s)", NP, NP, rc,
			    rc ? e.message : "");
			if (rc == 0)
				oai_req_free(&r);
			free(body);
		}
	}

	/* An escaped NUL is refused (it would end the text there); an escaped
	 * backslash before "u0000" is just text. */
	{
		const char *nul = "{\"model\": \"m\", \"prompt\": \"A\\u0000 and a much longer tail\"}";
		const char *msg = "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\\u0000y\"}]}";
		const char *text = "{\"model\": \"m\", \"prompt\": \"a \\\\u0000 b\"}";
		CHECK(oai_req_parse(OAI_COMPLETION, nul, strlen(nul), &r, &e) < 0 && e.status == 400 &&
		    strstr(e.message, "NUL"), "an escaped NUL in a prompt: %s", e.message);
		CHECK(oai_req_parse(OAI_CHAT, msg, strlen(msg), &r, &e) < 0 && e.status == 400 && strstr(e.message, "NUL"),
		    "an escaped NUL in a message: %s", e.message);
		CHECK(oai_req_parse(OAI_COMPLETION, text, strlen(text), &r, &e) == 0 && !strcmp(r.prompt, "a \\u0000 b"),
		    "a backslash and u0000 as text: %s", e.message);
		oai_req_free(&r);
		{
			/* A raw NUL byte in a string, which cJSON takes. */
			static const char raw[] = "{\"model\": \"m\", \"prompt\": \"A\0B and a tail\"}";
			CHECK(oai_req_parse(OAI_COMPLETION, raw, sizeof(raw) - 1, &r, &e) < 0 && e.status == 400 &&
			    strstr(e.message, "NUL"), "a raw NUL in a prompt: %s", e.message);
		}
	}
	{
		const char *c = "{\"model\": \"m\", \"prompt\": [\"raw <s> text\"], \"top_p\": 0}";
		CHECK(oai_req_parse(OAI_COMPLETION, c, strlen(c), &r, &e) == 0 && !strcmp(r.prompt, "raw <s> text"),
		    "completion: %s", e.message);
		sampler_params_default(&sp);
		oai_req_apply(&r, &sp, &max);
		CHECK(sp.top_k == 1 && sp.top_p == 1.0f, "top_p 0 keeps the most likely token");
		oai_req_free(&r);
	}

	/* As OpenAI's API takes them: a system (or developer) message amid the
	 * conversation stays where it is, the leading ones are the system
	 * prompt; the last message may be the assistant's. */
	{
		const char *mid = "{\"model\": \"m\", \"messages\": [{\"role\": \"developer\", \"content\": \"d\"}, "
		    "{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"developer\", \"content\": \"s\"}, "
		    "{\"role\": \"user\", \"content\": \"b\"}, {\"role\": \"assistant\", \"content\": \"c\"}]}";
		CHECK(oai_req_parse(OAI_CHAT, mid, strlen(mid), &r, &e) == 0, "mid-conversation system refused: %s", e.message);
		CHECK(r.system && !strcmp(r.system, "d") && r.n_msgs == 4 && !strcmp(r.msgs[1].role, "system") &&
		    !strcmp(r.msgs[1].content, "s") && !strcmp(r.msgs[3].role, "assistant") && !strcmp(r.msgs[3].content, "c"),
		    "messages in their places");
		oai_req_free(&r);
	}

	/* Every refusal: 400 and the field named. */
	static const struct {
		enum oai_kind kind;
		const char *body;
		const char *param;
		const char *says;
	} bad[] = {
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [", "", "not valid JSON" },
		/* Anything but whitespace after the value: refused, not dropped. */
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]} xyz", "", "not valid JSON" },
		{ OAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\"}{}", "", "not valid JSON" },
		{ OAI_CHAT, "", "", "not valid JSON" },
		{ OAI_CHAT, "\"text\"", "", "JSON object" },
		{ OAI_CHAT, "{\"messages\": []}", "model", "required" },
		{ OAI_CHAT, "{\"model\": 3, \"messages\": []}", "model", "string" },
		{ OAI_CHAT, "{\"model\": \"m\"}", "messages", "required" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": {}}", "messages", "array" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": []}", "messages", "empty" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [3]}", "messages[0]", "object" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"content\": \"x\"}]}", "messages[0].role", "string" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}", "messages[0].role", "must be" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", "messages[0].role", "tool calling" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": 5}]}", "messages[0].content", "string" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\"}]}", "messages[0].content", "string" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"input_audio\"}]}]}", "messages[0].content[0]", "text only" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}", "messages[0].content[0]", "text must be" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"system\", \"content\": \"s\"}]}", "messages", "not only system" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"assistant\", \"content\": \"a\", \"tool_calls\": [{}]}, {\"role\": \"user\", \"content\": \"b\"}]}", "messages[0].tool_calls", "tool calls" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"temperature\": \"hot\"}", "temperature", "number" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"temperature\": -1}", "temperature", "[0, 100]" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_p\": 1.5}", "top_p", "[0, 1]" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"repeat_penalty\": 0}", "repeat_penalty", "(0, 10]" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_k\": 2.5}", "top_k", "integer" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 0}", "max_tokens", "[1, " },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"seed\": \"7\"}", "seed", "integer" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"seed\": -5}", "seed", "between" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stop\": [1]}", "stop", "strings" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stop\": [\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}", "stop", "at most" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stream\": 1}", "stream", "true or false" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stream_options\": 1}", "stream_options", "object" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"n\": 3}", "n", "must be 1" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logprobs\": true}", "logprobs", "not supported" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{}]}", "tools", "not supported" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"functions\": [{}]}", "functions", "not supported" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logit_bias\": {\"5\": 100}}", "logit_bias", "not supported" },
		{ OAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"logit_bias\": {\"5\": -100}}", "logit_bias", "not supported" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_logprobs\": 2}", "top_logprobs", "not supported" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"response_format\": {\"type\": \"json_object\"}}", "response_format", "only" },
		{ OAI_COMPLETION, "{\"model\": \"m\"}", "prompt", "required" },
		{ OAI_COMPLETION, "{\"model\": \"m\", \"prompt\": [1, 2]}", "prompt", "token arrays" },
		{ OAI_COMPLETION, "{\"model\": \"m\", \"prompt\": 3}", "prompt", "string" },
		{ OAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"echo\": true}", "echo", "not supported" },
		{ OAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"suffix\": \"y\"}", "suffix", "not supported" },
		{ OAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"best_of\": 2}", "best_of", "must be 1" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"response_format\": [{\"type\": \"text\"}]}", "response_format", "only" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"n\": true}", "n", "must be 1" },
		{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logit_bias\": []}", "logit_bias", "not supported" },
		{ OAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"suffix\": \"\"}", "suffix", "not supported" },
		{ OAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"echo\": 0}", "echo", "not supported" },
		/* The first field set, in the table's order, is the one named. */
		{ OAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"best_of\": 3, \"echo\": true, \"n\": 2}", "n", "must be 1" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = oai_req_parse(bad[i].kind, bad[i].body, strlen(bad[i].body), &r, &e);
		CHECK(rc == -1 && e.status == 400 && !strcmp(e.param, bad[i].param) && strstr(e.message, bad[i].says),
		    "case %zu (%s): rc %d, status %d, param '%s', message '%s'", i, bad[i].body, rc, e.status, e.param,
		    e.message);
		CHECK(r.model == NULL && r.msgs == NULL, "case %zu: nothing left allocated in the request", i);
	}

	/* Every unsupported field at its neutral value (or null) is accepted, by
	 * the endpoint it belongs to; another endpoint's fields are not looked
	 * at; whitespace may follow the value. */
	{
		static const struct {
			enum oai_kind kind;
			const char *body;
		} neutral[] = {
			{ OAI_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"n\": 1, "
			    "\"logprobs\": false, \"logit_bias\": {}, \"top_logprobs\": 0, \"tools\": [], \"functions\": null, "
			    "\"response_format\": {\"type\": \"text\"}, \"echo\": true, \"suffix\": \"s\", \"best_of\": 5} \r\n\t " },
			{ OAI_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"n\": null, \"logprobs\": null, \"logit_bias\": null, "
			    "\"top_logprobs\": null, \"echo\": false, \"suffix\": null, \"best_of\": 1, \"tools\": [{}], "
			    "\"response_format\": {\"type\": \"json_object\"}}\n" },
		};
		for (size_t i = 0; i < sizeof(neutral) / sizeof(neutral[0]); i++) {
			CHECK(oai_req_parse(neutral[i].kind, neutral[i].body, strlen(neutral[i].body), &r, &e) == 0,
			    "neutral values %zu refused: %s", i, e.message);
			oai_req_free(&r);
		}
	}

	/* The error's shape: null param and code when there are none. */
	{
		char *json;
		oai_error_set(&e, 404, "invalid_request_error", "model_not_found", "model", "no '%s'", "x\x01\xff");
		json = oai_error_json(&e);
		CHECK(json && !strcmp(json, "{\"error\":{\"message\":\"no 'x\\u0001\xef\xbf\xbd'\",\"type\":"
		    "\"invalid_request_error\",\"param\":\"model\",\"code\":\"model_not_found\"}}"), "error JSON: %s", json);
		free(json);
		oai_error_set(&e, 400, "invalid_request_error", NULL, NULL, "bad");
		json = oai_error_json(&e);
		CHECK(json && strstr(json, "\"param\":null,\"code\":null"), "nulls: %s", json);
		free(json);
	}
}

static void
test_oai_replies(void)
{
	struct oai_result res = { .id = "chatcmpl-1", .created = 1700000000, .model = "m", .text = "caf\xc3\xa9 \xff\0!",
		.len = 9, .finish = "stop", .usage = 1, .prompt_tokens = 10, .completion_tokens = 4, .cached_tokens = 6 };
	struct oai_parsed p;
	char *json;

	json = oai_reply_json(OAI_CHAT, &res);
	CHECK(json && oai_reply_parse(json, strlen(json), &p) == 0, "reply parses: %s", json);
	CHECK(p.text && !strcmp(p.text, "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd!") && !strcmp(p.finish, "stop") &&
	    p.has_usage && p.prompt_tokens == 10 && p.completion_tokens == 4 && p.cached_tokens == 6,
	    "reply read back: %s", json);
	oai_parsed_free(&p);
	free(json);
	CHECK((json = oai_reply_json(OAI_CHAT, &res)) && !strstr(json, "reasoning"), "no reasoning, no field: %s", json);
	free(json);

	/* A reasoning model's reply, its reasoning apart (invalid UTF-8
	 * replaced there too), read back as natter's remote engine reads it. */
	res.reasoning = "hmm \xc3";
	res.reasoning_len = 5;
	res.reasoning_tokens = 3;
	json = oai_reply_json(OAI_CHAT, &res);
	CHECK(json && strstr(json, "\"reasoning_content\":\"hmm \xef\xbf\xbd\"") &&
	    strstr(json, "\"completion_tokens_details\":{\"reasoning_tokens\":3}") &&
	    oai_reply_parse(json, strlen(json), &p) == 0 && !strcmp(p.reasoning, "hmm \xef\xbf\xbd") &&
	    p.reasoning_tokens == 3 && !strcmp(p.text, "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd!"), "reasoning reply: %s", json);
	oai_parsed_free(&p);
	free(json);
	res.text = "";
	res.len = 0;
	res.reasoning = "so";
	res.reasoning_len = 2;
	res.usage = 0;
	json = oai_chunk_json(OAI_CHAT, &res, 0, 0);
	CHECK(json && strstr(json, "\"delta\":{\"reasoning_content\":\"so\"}") && oai_reply_parse(json, strlen(json), &p) == 0 &&
	    !strcmp(p.reasoning, "so") && !strcmp(p.text, ""), "reasoning chunk: %s", json);
	oai_parsed_free(&p);
	free(json);
	res.reasoning = NULL;
	res.reasoning_len = 0;
	res.reasoning_tokens = 0;

	res.usage = -1;
	res.finish = NULL;
	res.text = "hi";
	res.len = 2;
	json = oai_chunk_json(OAI_CHAT, &res, 1, 0);
	CHECK(json && strstr(json, "\"object\":\"chat.completion.chunk\"") &&
	    strstr(json, "\"delta\":{\"role\":\"assistant\",\"content\":\"hi\"}") && strstr(json, "\"finish_reason\":null") &&
	    strstr(json, "\"usage\":null"), "first chunk: %s", json);
	CHECK(oai_reply_parse(json, strlen(json), &p) == 0 && !strcmp(p.text, "hi") && !p.finish[0] && !p.has_usage,
	    "chunk read back");
	oai_parsed_free(&p);
	free(json);
	res.len = 0;
	res.finish = "length";
	json = oai_chunk_json(OAI_CHAT, &res, 0, 0);
	CHECK(json && strstr(json, "\"delta\":{}") && strstr(json, "\"finish_reason\":\"length\""), "last chunk: %s", json);
	free(json);
	json = oai_chunk_json(OAI_CHAT, &res, 0, 1);
	CHECK(json && strstr(json, "\"choices\":[]") && strstr(json, "\"total_tokens\":14"), "usage chunk: %s", json);
	free(json);
	res.text = "abc";
	res.len = 3;
	json = oai_chunk_json(OAI_COMPLETION, &res, 0, 0);
	CHECK(json && strstr(json, "\"object\":\"text_completion\"") && strstr(json, "\"text\":\"abc\""), "completion chunk: %s",
	    json);
	free(json);
	json = "{\"error\": {\"message\": \"nope\", \"type\": \"x\"}}";
	CHECK(oai_reply_parse(json, strlen(json), &p) == 0 && !strcmp(p.error, "nope"), "error read back");
	oai_parsed_free(&p);
	CHECK(oai_reply_parse("[]", 2, &p) == -1, "not a reply");
	oai_parsed_free(&p);
}

/* What the remote engine reads: every error shape, the servers' extras
 * (vLLM's stop_reason and reasoning, llama-server's timings), model lists;
 * which field a refusal names; the request's extras left out; base URLs. */
static void
test_remote_protocol(void)
{
	static const struct {
		const char *json;
		const char *msg, *param, *code;
	} errs[] = {
		{ "{\"error\":{\"message\":\"Unrecognized request argument supplied: top_k\",\"type\":\"invalid_request_error\","
		  "\"param\":null,\"code\":null}}", "Unrecognized request argument supplied: top_k", "", "" },
		{ "{\"error\":{\"code\":503,\"message\":\"Loading model\",\"type\":\"unavailable_error\"}}", "Loading model", "",
		  "503" },
		{ "{\"object\":\"error\",\"message\":\"bad top_k\",\"type\":\"BadRequestError\",\"param\":\"top_k\",\"code\":400}",
		  "bad top_k", "top_k", "400" },
		{ "{\"error\":\"Input validation error\",\"error_type\":\"validation\"}", "Input validation error", "", "" },
		{ "{\"error\":{\"type\":\"x\"}}", "(no message)", "", "" },
	};
	struct oai_parsed p;
	struct oai_model *m;
	char out[1100], err[512];
	int n;

	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		CHECK(oai_reply_parse(errs[i].json, strlen(errs[i].json), &p) == 0 && !strcmp(p.error, errs[i].msg) &&
		    !strcmp(p.error_param, errs[i].param) && !strcmp(p.error_code, errs[i].code),
		    "error shape %zu: [%s] [%s] [%s]", i, p.error, p.error_param, p.error_code);
		oai_parsed_free(&p);
	}
	{
		const char *j = "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hmm\",\"content\":null},"
		    "\"finish_reason\":\"stop\",\"stop_reason\":\"END\"}],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":6,"
		    "\"prompt_tokens_details\":{\"cached_tokens\":12}},\"timings\":{\"cache_n\":12,\"prompt_n\":8,"
		    "\"prompt_ms\":40.5,\"prompt_per_second\":197.53,\"predicted_n\":6,\"predicted_ms\":60,"
		    "\"predicted_per_second\":100}}";
		CHECK(oai_reply_parse(j, strlen(j), &p) == 0 && p.has_choice && !strcmp(p.text, "") &&
		    !strcmp(p.reasoning, "hmm") && !strcmp(p.stop_reason, "END") && p.has_usage && p.cached_tokens == 12 &&
		    p.has_timings && p.t_predicted_n == 6 && p.t_prompt_per_second > 197.5 && p.t_predicted_per_second == 100 &&
		    p.t_cache_n == 12, "vLLM's and llama-server's fields");
		oai_parsed_free(&p);
		j = "{\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}";
		CHECK(oai_reply_parse(j, strlen(j), &p) == 0 && !p.has_choice && p.completion_tokens == 2, "a usage chunk");
		oai_parsed_free(&p);
		j = "{\"choices\":[{\"delta\":{\"content\":\"x\"}}]";
		CHECK(oai_reply_parse(j, strlen(j), &p) == -1 && !p.text, "malformed JSON");
		oai_parsed_free(&p);
	}
	CHECK(oai_param_named("Unrecognized request argument supplied: top_k", OAI_SET_EXTRAS) &&
	    !strcmp(oai_param_named("Unrecognized request argument supplied: top_k", OAI_SET_EXTRAS), "top_k"),
	    "a field named in a message");
	CHECK(!oai_param_named("top_kx and xmin_p", OAI_SET_EXTRAS), "only as a word");
	CHECK(oai_param_named("'repetition_penalty' is not allowed", OAI_SET_EXTRAS) &&
	    !strcmp(oai_param_named("'repetition_penalty' is not allowed", OAI_SET_EXTRAS), "repetition_penalty"),
	    "vLLM's name");
	CHECK(!oai_param_named("top_k", OAI_SET_TEMP), "only among the bits asked for");
	{
		int extra;
		CHECK(oai_param_bit("min_p", &extra) == OAI_SET_MIN_P && extra && oai_param_bit("temperature", &extra) ==
		    OAI_SET_TEMP && !extra && oai_param_bit("nope", &extra) == 0, "field bits");
	}
	{
		struct oai_req r;
		char *json;
		memset(&r, 0, sizeof(r));
		r.kind = OAI_CHAT;
		r.model = "m";
		r.repeat_penalty = 1.1;
		r.top_k = 5;
		r.max_tokens = 9;
		r.set = OAI_SET_REPEAT | OAI_SET_MAX_TOKENS;
		r.max_completion_tokens = 1;
		json = oai_req_to_json(&r);
		CHECK(json && strstr(json, "\"repeat_penalty\":1.1") && strstr(json, "\"repetition_penalty\":1.1") &&
		    !strstr(json, "top_k") && strstr(json, "\"max_completion_tokens\":9") && !strstr(json, "\"max_tokens\""),
		    "request fields: %s", json);
		free(json);
	}
	{
		const char *j = "{\"object\":\"list\",\"data\":[{\"id\":\"Qwen/Qwen2.5\",\"object\":\"model\",\"created\":1732000000,"
		    "\"owned_by\":\"vllm\",\"max_model_len\":32768},{\"object\":\"model\"},{\"id\":\"b\"}]}";
		CHECK(oai_models_parse(j, strlen(j), &m, &n) == 0 && n == 2 && !strcmp(m[0].id, "Qwen/Qwen2.5") &&
		    m[0].max_model_len == 32768 && !strcmp(m[0].owned_by, "vllm") && !strcmp(m[1].id, "b") && !m[1].created,
		    "a model list (%d)", n);
		free(m);
		CHECK(oai_models_parse("{\"data\":{}}", 11, &m, &n) == -1 && !m, "not a model list");
	}
	{
		static const struct {
			const char *url, *base;
		} bases[] = {
			{ "http://127.0.0.1:8000", "http://127.0.0.1:8000/v1" },
			{ "http://127.0.0.1:8000/", "http://127.0.0.1:8000/v1" },
			{ "http://localhost:11434/v1/", "http://localhost:11434/v1" },
			{ "https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1" },
			{ "HTTPS://API.example.com/v1", "https://api.example.com/v1" },
		};
		static const char *const refused[] = {
			"ftp://x/v1", "http://u:secret@x/v1", "http://x/v1?key=secret", "http://x/v1#f", "not a url", "",
		};
		for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++)
			CHECK(remote_url_base(bases[i].url, out, sizeof(out), err, sizeof(err)) == 0 &&
			    !strcmp(out, bases[i].base), "base of %s: %s", bases[i].url, out);
		for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
			CHECK(remote_url_base(refused[i], out, sizeof(out), err, sizeof(err)) < 0 && !strstr(err, "secret"),
			    "refused %s: %s", refused[i], err);
	}
}

/* Feeds PIECES (NULL-terminated) through a stopper; returns what was sent. */
static void
run_stopper(char *const *stops, int n, const char *const *pieces, char *sent, size_t cap, int *hit)
{
	struct oai_stopper s;
	const char *out;
	size_t len;

	sent[0] = 0;
	oai_stopper_init(&s, stops, n);
	*hit = 0;
	for (int i = 0; pieces[i] && !*hit; i++) {
		*hit = oai_stopper_push(&s, pieces[i], strlen(pieces[i]), &out, &len);
		strncat(sent, out ? out : "", len < cap - strlen(sent) - 1 ? len : cap - strlen(sent) - 1);
	}
	if (!*hit) {
		oai_stopper_flush(&s, &out, &len);
		strncat(sent, out, len);
	}
	oai_stopper_free(&s);
}

static void
test_stopper(void)
{
	char *stops[] = { "END", "\n\nUser:", "xy" };
	char sent[256];
	int hit;
	const char *a[] = { "Hello E", "N", "D more", NULL };
	const char *b[] = { "Hi\n", "\nUs", "er: no", NULL };
	const char *c[] = { "EN", "x", "tra EN", NULL };
	const char *d[] = { "a", "b", "x", "x", "y", "z", NULL };
	const char *e[] = { "END", NULL };

	run_stopper(stops, 3, a, sent, sizeof(sent), &hit);
	CHECK(hit && !strcmp(sent, "Hello "), "across pieces: [%s]", sent);
	run_stopper(stops, 3, b, sent, sizeof(sent), &hit);
	CHECK(hit && !strcmp(sent, "Hi"), "multi-line stop: [%s]", sent);
	run_stopper(stops, 3, c, sent, sizeof(sent), &hit);
	CHECK(!hit && !strcmp(sent, "ENxtra EN"), "held text released: [%s]", sent);
	run_stopper(stops, 3, d, sent, sizeof(sent), &hit);
	CHECK(hit && !strcmp(sent, "abx"), "overlapping prefix: [%s]", sent);
	run_stopper(stops, 3, e, sent, sizeof(sent), &hit);
	CHECK(hit && !strcmp(sent, ""), "stop at once: [%s]", sent);
	run_stopper(NULL, 0, a, sent, sizeof(sent), &hit);
	CHECK(!hit && !strcmp(sent, "Hello END more"), "no stops: [%s]", sent);
}

/* --- URLs and the hub's helpers --- */

static void
test_urls(void)
{
	char o[256], *s;
	static const struct { const char *base, *ref, *want; } res[] = {
		{ "https://h.co/a/b?x=1", "/c", "https://h.co/c" },
		{ "https://h.co/a/b", "c?d=1", "https://h.co/a/c?d=1" },
		{ "https://h.co/a", "http://cdn.h.co:8080/x", "http://cdn.h.co:8080/x" },
		{ "https://h.co/a", "//cdn.h.co/y", "https://cdn.h.co/y" },
	};
	for (size_t i = 0; i < sizeof(res) / sizeof(res[0]); i++) {
		s = http_url_resolve(res[i].base, res[i].ref);
		CHECK(s && !strcmp(s, res[i].want), "resolve %s + %s: %s", res[i].base, res[i].ref, s ? s : "(null)");
		free(s);
	}
	CHECK(http_url_origin("HTTPS://HuggingFace.co/x", o, sizeof(o)) == 0 && !strcmp(o, "https://huggingface.co:443"),
	    "origin: %s", o);
	CHECK(http_url_origin("http://127.0.0.1:9/x", o, sizeof(o)) == 0 && !strcmp(o, "http://127.0.0.1:9"), "origin: %s", o);
	CHECK(http_url_origin("ftp://h/x", o, sizeof(o)) == -1, "ftp refused");
	s = http_path_escape("a b/ü?#%.gguf");
	CHECK(s && !strcmp(s, "a%20b/%C3%BC%3F%23%25.gguf"), "escape: %s", s);
	free(s);
	s = http_link_next("<https://h.co/p?c=1>; rel=\"prev\", <https://h.co/p?c=3>; rel=\"next\"", "https://h.co/p");
	CHECK(s && !strcmp(s, "https://h.co/p?c=3"), "link next: %s", s ? s : "(null)");
	free(s);
	s = http_link_next("</p?c=2>; rel=next", "https://h.co/p?c=1");
	CHECK(s && !strcmp(s, "https://h.co/p?c=2"), "relative link next: %s", s ? s : "(null)");
	free(s);
	CHECK(http_link_next("<https://h.co/p?c=1>; rel=\"prev\"", "https://h.co/") == NULL, "no next");
}

static void
test_hub_helpers(void)
{
	char err[256];
	struct hub_file f[] = {
		{ "README.md", 10, "", 0 },
		{ "mmproj-Q4_K_M.gguf", 10, "", 0 },
		{ "big-Q4_K_M-00001-of-00002.gguf", 10, "", 0 },
		{ "x-Q8_0.gguf", 10, "", 0 },
		{ "sub/x-q4_k_m.gguf", 10, "", 0 },
		{ "x-Q4_K_M.gguf", 10, "", 0 },
	};
	CHECK(hub_pick(f, 5) == 4, "pick the Q4_K_M (not the projector, not a split)");
	CHECK(hub_pick(f, 4) == -1, "no Q4_K_M");
	CHECK(hub_pick(f, 6) == -2, "two Q4_K_M");
	CHECK(hub_is_split("a/b-00001-of-00003.gguf") && !hub_is_split("of-x.gguf"), "split names");
	CHECK(hub_is_model("A.GGUF") && !hub_is_model("mmproj.gguf") && !hub_is_model("a.bin"), "model names");
	CHECK(hub_repo_check("Qwen/Qwen3-0.6B-GGUF", err, sizeof(err)) == 0, "good repo");
	static const char *badrepo[] = { "Qwen", "/x", "a/", "a/b/c", "a/../b", ".a/b", "a/.b", "a b/c", "a/b?c" };
	for (size_t i = 0; i < sizeof(badrepo) / sizeof(badrepo[0]); i++)
		CHECK(hub_repo_check(badrepo[i], err, sizeof(err)) == -1, "repo '%s' accepted", badrepo[i]);
}

/* --- the HTTP client against two tiny servers on loopback --- */

struct tiny {
	int fd, port, other_port;
	int n_requests;
	char log[2048];           /* "PATH auth=yes|no;" per request */
};

static void *
tiny_main(void *arg)
{
	struct tiny *t = arg;
	for (;;) {
		char req[4096], resp[512], path[256] = "";
		int c = accept(t->fd, NULL, NULL);
		ssize_t n, got = 0;
		if (c < 0)
			return NULL;
		while (got < (ssize_t)sizeof(req) - 1 && (n = recv(c, req + got, sizeof(req) - 1 - got, 0)) > 0) {
			got += n;
			req[got] = 0;
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		req[got] = 0;
		sscanf(req, "GET %255s", path);
		snprintf(t->log + strlen(t->log), sizeof(t->log) - strlen(t->log), "%s auth=%s;", path,
		    strstr(req, "\r\nAuthorization: Bearer tok\r\n") ? "yes" : "no");
		t->n_requests++;
		if (!strcmp(path, "/quit")) {
			close(c);
			return NULL;
		}
		if (!strcmp(path, "/a"))
			snprintf(resp, sizeof(resp), "HTTP/1.1 302 Found\r\nLocation: /b\r\nX-Linked-Etag: \"e\"\r\n"
			    "Content-Length: 3\r\nConnection: close\r\n\r\nxyz");
		else if (!strcmp(path, "/c"))
			snprintf(resp, sizeof(resp), "HTTP/1.1 307 Moved\r\nLocation: http://127.0.0.1:%d/d\r\n"
			    "Content-Length: 0\r\nConnection: close\r\n\r\n", t->other_port);
		else if (!strcmp(path, "/loop"))
			snprintf(resp, sizeof(resp), "HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n"
			    "Connection: close\r\n\r\n");
		else if (!strcmp(path, "/short"))
			snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly this");
		else if (!strcmp(path, "/missing"))
			snprintf(resp, sizeof(resp), "HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\nConnection: close\r\n\r\n"
			    "{\"error\":\"x\"}");
		else
			snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
		if (send(c, resp, strlen(resp), MSG_NOSIGNAL) < 0) {
			/* the client may have gone */
		}
		close(c);
	}
}

static int
tiny_listen(struct tiny *t)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	t->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (t->fd < 0 || bind(t->fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(t->fd, 8) < 0 ||
	    getsockname(t->fd, (struct sockaddr *)&a, &l) < 0)
		return -1;
	t->port = ntohs(a.sin_port);
	return 0;
}

struct sink {
	char buf[256];
	size_t n;
};

static int
to_sink(void *ctx, const char *p, size_t n)
{
	struct sink *s = ctx;
	if (s->n + n < sizeof(s->buf)) {
		memcpy(s->buf + s->n, p, n);
		s->n += n;
		s->buf[s->n] = 0;
	}
	return 0;
}

static void
test_http(void)
{
	struct tiny a = { 0 }, b = { 0 };
	pthread_t ta, tb;
	char url[128], err[256];
	struct http_req q;
	struct http_resp r;
	struct sink sink;
	int rc;

	if (tiny_listen(&a) < 0 || tiny_listen(&b) < 0) {
		SKIP("cannot listen on 127.0.0.1");
		return;
	}
	a.other_port = b.port;
	pthread_create(&ta, NULL, tiny_main, &a);
	pthread_create(&tb, NULL, tiny_main, &b);

	/* A redirect within the origin keeps the token; the first hop's headers stay readable. */
	memset(&q, 0, sizeof(q));
	memset(&sink, 0, sizeof(sink));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/a", a.port);
	q.url = url;
	q.bearer = "tok";
	q.max_redirects = 3;
	q.on_body = to_sink;
	q.ctx = &sink;
	rc = http_request(&q, &r, err, sizeof(err));
	CHECK(rc == 0 && r.status == 200 && r.n_hops == 2 && !strcmp(sink.buf, "hello"), "same-origin redirect: rc %d "
	    "status %ld hops %d body %s (%s)", rc, r.status, r.n_hops, sink.buf, err);
	CHECK(http_resp_header(&r, 0, "x-linked-etag") && !strcmp(http_resp_header(&r, 0, "x-linked-etag"), "\"e\""),
	    "first hop header");
	http_resp_free(&r);
	/* A redirect to another port (another origin) drops it. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/c", a.port);
	rc = http_request(&q, &r, err, sizeof(err));
	CHECK(rc == 0 && r.status == 200, "cross-origin redirect: %d %s", rc, err);
	http_resp_free(&r);
	/* Too many hops; a short body; an error status keeps its body. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/loop", a.port);
	rc = http_request(&q, &r, err, sizeof(err));
	CHECK(rc == HTTP_EREDIRECT && r.status == 302 && r.n_hops == 4 && strstr(err, "redirect loop"),
	    "redirect limit: rc %d status %ld hops %d (%s)", rc, r.status, r.n_hops, err);
	http_resp_free(&r);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/short", a.port);
	rc = http_request(&q, &r, err, sizeof(err));
	CHECK(rc == HTTP_EPARTIAL, "a body shorter than announced: rc %d (%s)", rc, err);
	http_resp_free(&r);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/missing", a.port);
	rc = http_request(&q, &r, err, sizeof(err));
	CHECK(rc == 0 && r.status == 404 && r.body && !strcmp(r.body, "{\"error\":\"x\"}"), "404 body");
	http_resp_free(&r);
	/* A token that could split a header is refused before any request. */
	q.bearer = "tok\r\nX-Evil: 1";
	CHECK(http_request(&q, &r, err, sizeof(err)) == HTTP_ERR && strstr(err, "control characters"), "token check");
	http_resp_free(&r);
	q.bearer = NULL;
	/* Nobody listening. */
	{
		struct tiny z = { 0 };
		tiny_listen(&z);
		close(z.fd);
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/", z.port);
		CHECK(http_request(&q, &r, err, sizeof(err)) == HTTP_ERR, "connection refused");
		http_resp_free(&r);
	}

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/quit", a.port);
	http_request(&q, &r, err, sizeof(err));
	http_resp_free(&r);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/quit", b.port);
	http_request(&q, &r, err, sizeof(err));
	http_resp_free(&r);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	close(a.fd);
	close(b.fd);
	CHECK(!strncmp(a.log, "/a auth=yes;/b auth=yes;/c auth=yes;", 36), "origin A's requests: %s", a.log);
	CHECK(!strncmp(b.log, "/d auth=no;", 11), "the other origin never got the token: %s", b.log);
}

/* --- natter serve's engine: a client that goes away after its reply ended --- */

static struct job *
serve_submit(struct engine *e, const char *body, long long num)
{
	struct oai_req req;
	struct oai_error oe;
	struct job *j;

	if (oai_req_parse(OAI_COMPLETION, body, strlen(body), &req, &oe) < 0)
		return NULL;
	if (!(j = job_new(e, &req, num)))
		return NULL;
	if (engine_submit(e, j, &oe) < 0) {
		job_unref(e, j);
		return NULL;
	}
	return j;
}

/* Waits until J is done or (STREAM_END) its stream has sent [DONE]. */
static void
serve_await(struct engine *e, struct job *j, int stream_end)
{
	engine_lock(e);
	while (j->state != JOB_DONE && !(stream_end && j->out && memmem(j->out, j->out_len, "[DONE]", 6)))
		engine_wait(e, 1000);
	engine_unlock(e);
}

static int
serve_tokens(struct job *j, char *text, size_t n)
{
	cJSON *r = cJSON_ParseWithLength(j->out ? j->out : "", j->out_len);
	cJSON *u = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "usage"), "completion_tokens");
	cJSON *t = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "choices"), 0), "text");
	int k = cJSON_IsNumber(u) ? u->valueint : -1;
	snprintf(text, n, "%s", cJSON_IsString(t) ? t->valuestring : "");
	cJSON_Delete(r);
	return k;
}

/*
 * A streaming client that closes its connection once it has read [DONE]
 * (as the OpenAI SDK does) stops nothing: the reply has ended, though the
 * engine is still writing its history.  That stop once stayed on the
 * session and emptied the next request's reply.  The history is held
 * busy (another writer) so that the stop comes while the engine writes.
 */
static void
test_serve_late_cancel(void)
{
	const char *fx = test_fixtures();
	const char *ask = "{\"model\":\"m\",\"prompt\":\"Once upon a time\",\"max_tokens\":6,\"temperature\":0}";
	const char *ask_stream = "{\"model\":\"m\",\"prompt\":\"Once upon a time\",\"max_tokens\":6,"
	    "\"temperature\":0,\"stream\":true}";
	char model[2300], db[256], err[512], want[256], got[256];
	struct serve_opts o;
	struct engine *e;
	struct job *j;
	sqlite3 *h = NULL;
	int n_want = -1, n_got;

	if (!fx) {
		t_skip++;
		printf("SKIP: serve engine (no fixtures)\n");
		return;
	}
	snprintf(model, sizeof(model), "%s/models/tiny-llama-q8_0.gguf", fx);
	test_db_path(db, sizeof(db), "net");
	memset(&o, 0, sizeof(o));
	o.model_path = model;
	o.db = db;
	chat_opts_default(&o.chat);
	if (engine_new(&o, &e, err, sizeof(err)) < 0) {
		CHECK(0, "engine: %s", err);
		return;
	}
	j = serve_submit(e, ask, 1);
	CHECK(j != NULL, "submit the reference request");
	if (j) {
		serve_await(e, j, 0);
		n_want = serve_tokens(j, want, sizeof(want));
		CHECK(n_want > 0, "the reference reply has tokens (%d)", n_want);
		job_unref(e, j);
	}
	/* Another writer holds the history: the engine, past [DONE], waits
	 * in its write until this commits. */
	CHECK(sqlite3_open(db, &h) == SQLITE_OK && sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK,
	    "hold the history busy");
	j = serve_submit(e, ask_stream, 2);
	CHECK(j != NULL, "submit the stream");
	if (j) {
		serve_await(e, j, 1);
		engine_cancel(e, j);   /* the client closes after [DONE] */
		sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
		serve_await(e, j, 0);
		job_unref(e, j);
	}
	sqlite3_close(h);
	j = serve_submit(e, ask, 3);
	if (j) {
		serve_await(e, j, 0);
		n_got = serve_tokens(j, got, sizeof(got));
		CHECK(n_got == n_want && !strcmp(got, want), "the next request is whole: %d tokens '%s' (want %d '%s')",
		    n_got, got, n_want, want);
		job_unref(e, j);
	}
	engine_shutdown(e);
	engine_free(e);
	remove_db(db);
}

int
main(void)
{
	char err[256];

	if (http_global_init(err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	test_sse();
	test_oai_parse();
	test_oai_replies();
	test_remote_protocol();
	test_stopper();
	test_urls();
	test_hub_helpers();
	test_http();
	test_serve_late_cancel();
	http_global_cleanup();
	printf("%d passed, %d failed, %d skipped\n", t_pass, t_fail, t_skip);
	return t_fail ? 1 : 0;
}
