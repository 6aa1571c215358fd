// serve-openai.mjs -- drives natter serve with the official openai npm package (tests/test-serve.sh runs it).
// Environment: OPENAI_PREFIX (where npm installed openai), PORT, SLOW_PORT (a server with a token
// delay), KEY (the API key), MODEL (its id), EXPECT (the greedy text natter generate printed),
// PROMPT.  Prints "ok LABEL" or "FAIL LABEL: why" per check.
import { createRequire } from 'node:module';

const require = createRequire(process.env.OPENAI_PREFIX + '/');
const mod = require('openai');
const OpenAI = mod.OpenAI || mod.default || mod;
const { PORT, SLOW_PORT, KEY, MODEL, EXPECT, PROMPT } = process.env;

let failed = 0;
function check(label, cond, why) {
	if (cond) {
		console.log('ok ' + label);
	} else {
		failed++;
		console.log('FAIL ' + label + ': ' + why);
	}
}
function client(port, key) {
	return new OpenAI({ apiKey: key, baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0, timeout: 60000 });
}
async function status(fn) {
	try {
		await fn();
		return { status: 200 };
	} catch (e) {
		return { status: e.status, error: e.error, name: e.constructor.name, message: String(e.message) };
	}
}

const c = client(PORT, KEY);
const msgs = [{ role: 'user', content: PROMPT }];

const list = await c.models.list();
check('models.list', list.data.length === 1 && list.data[0].id === MODEL, JSON.stringify(list.data));

const r1 = await c.chat.completions.create({ model: MODEL, messages: msgs, temperature: 0, max_tokens: 24 });
check('chat non-streamed equals generate', r1.choices[0].message.content === EXPECT,
	JSON.stringify(r1.choices[0].message.content) + ' vs ' + JSON.stringify(EXPECT));
check('chat finish_reason length', r1.choices[0].finish_reason === 'length', r1.choices[0].finish_reason);
check('chat usage', r1.usage && r1.usage.completion_tokens === 24, JSON.stringify(r1.usage));

const s1 = await c.chat.completions.create({ model: MODEL, messages: msgs, temperature: 0, max_tokens: 24,
	stream: true, stream_options: { include_usage: true } });
let text = '', finish = null, usage = null, chunks = 0;
for await (const ch of s1) {
	chunks++;
	if (ch.choices.length > 0) {
		text += ch.choices[0].delta.content || '';
		if (ch.choices[0].finish_reason)
			finish = ch.choices[0].finish_reason;
	}
	if (ch.usage)
		usage = ch.usage;
}
check('chat streamed equals generate', text === EXPECT, JSON.stringify(text));
check('chat streamed in pieces', chunks > 3, String(chunks));
check('chat stream finish_reason', finish === 'length', String(finish));
check('chat stream usage chunk', usage && usage.completion_tokens === 24, JSON.stringify(usage));

const r2 = await c.completions.create({ model: MODEL, prompt: PROMPT, temperature: 0, max_tokens: 24 });
check('completion equals generate', r2.choices[0].text === EXPECT, JSON.stringify(r2.choices[0].text));
const s2 = await c.completions.create({ model: MODEL, prompt: PROMPT, temperature: 0, max_tokens: 24, stream: true });
let text2 = '';
for await (const ch of s2)
	text2 += ch.choices[0]?.text || '';
check('completion streamed equals generate', text2 === EXPECT, JSON.stringify(text2));

const r3 = await c.chat.completions.create({ model: MODEL, messages: msgs, temperature: 0, max_tokens: 24,
	stop: ['unfold'] });
check('stop string', r3.choices[0].message.content === EXPECT.slice(0, EXPECT.indexOf('unfold')) &&
	r3.choices[0].finish_reason === 'stop', JSON.stringify(r3.choices[0]));

// Bad requests: 4xx with OpenAI's error shape, and the server goes on.
let e = await status(() => c.chat.completions.create({ model: MODEL, messages: msgs, temperature: 'hot' }));
check('wrong type 400', e.status === 400 && e.error && e.error.param === 'temperature' &&
	e.error.type === 'invalid_request_error', JSON.stringify(e));
e = await status(() => c.chat.completions.create({ model: MODEL, messages: 'hello' }));
check('messages not an array 400', e.status === 400 && e.error && e.error.param === 'messages', JSON.stringify(e));
e = await status(() => c.chat.completions.create({ model: 'gpt-4o', messages: msgs }));
check('unknown model 404', e.status === 404 && e.error && e.error.code === 'model_not_found', JSON.stringify(e));
e = await status(() => c.chat.completions.create({ model: MODEL,
	messages: [{ role: 'user', content: 'a'.repeat(10 * 1024 * 1024) }] }));
check('10 MB body 413', e.status === 413 && e.error && e.error.code === 'request_too_large', JSON.stringify(e));
e = await status(() => client(PORT, 'not-the-key').models.list());
check('wrong key 401', e.status === 401 && e.name === 'AuthenticationError', JSON.stringify(e));
const raw = await fetch(`http://127.0.0.1:${PORT}/v1/chat/completions`, { method: 'POST',
	headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + KEY }, body: '{"model": ' });
const rawBody = await raw.json();
check('malformed JSON 400', raw.status === 400 && rawBody.error && rawBody.error.type === 'invalid_request_error' &&
	'param' in rawBody.error && 'code' in rawBody.error, raw.status + ' ' + JSON.stringify(rawBody));

// A stream the client abandons after two chunks (the shell checks the server cancelled it).
if (SLOW_PORT) {
	const slow = client(SLOW_PORT, KEY);
	const s3 = await slow.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 100, stream: true });
	let n = 0;
	for await (const ch of s3) {
		if (ch.choices[0]?.delta?.content && ++n >= 2) {
			s3.controller.abort();
			break;
		}
	}
	check('abandoned a stream after 2 chunks', n === 2, String(n));
}

const r4 = await c.chat.completions.create({ model: MODEL, messages: msgs, temperature: 0, max_tokens: 24 });
check('still serving after bad requests', r4.choices[0].message.content === EXPECT, JSON.stringify(r4.choices[0]));
process.exit(failed ? 1 : 0);
