// The official `openai` Node SDK against the gateway (simulated provider).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startGateway } from './gateway.mjs';

let gw;
let client;
before(async () => {
  gw = await startGateway();
  client = new OpenAI({ baseURL: gw.baseURL, apiKey: 'sk-anything', maxRetries: 0 });
});
after(async () => {
  assert.equal(await gw.stop(), 0);
});

const weather = {
  type: 'function',
  name: 'get_weather',
  description: 'Current weather for a city.',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

test('chat.completions.create, plain and streamed', async () => {
  const r = await client.chat.completions.create({ model: 'sim-small', messages: [{ role: 'user', content: 'Say hi' }] });
  assert.match(r.choices[0].message.content, /^\[simulated\]/);
  assert.ok(r.usage.total_tokens > 0);
  const stream = await client.chat.completions.create({
    model: 'sim-small',
    messages: [{ role: 'user', content: 'Say hi' }],
    stream: true,
  });
  let text = '';
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
  assert.match(text, /^\[simulated\]/);
});

test('responses.create, plain', async () => {
  const r = await client.responses.create({ model: 'sim-small', instructions: 'Be brief.', input: 'Say hi' });
  assert.equal(r.object, 'response');
  assert.equal(r.status, 'completed');
  assert.match(r.output_text, /^\[simulated\]/);
  assert.ok(r.usage.input_tokens > 0 && r.usage.output_tokens > 0);
});

test('responses.create, streamed', async () => {
  const stream = await client.responses.create({ model: 'sim-small', input: 'Say hi', stream: true });
  const types = [];
  let text = '';
  let final;
  for await (const e of stream) {
    types.push(e.type);
    if (e.type === 'response.output_text.delta') text += e.delta;
    if (e.type === 'response.completed') final = e.response;
  }
  assert.equal(types[0], 'response.created');
  assert.equal(types.at(-1), 'response.completed');
  assert.ok(text.length > 0);
  assert.equal(final.output[0].content[0].text, text);
  assert.ok(final.usage.output_tokens > 0);
});

test('responses.create with a function tool, round trip, streamed', async () => {
  const stream = await client.responses.create({ model: 'sim-small', input: 'Weather in Paris?', tools: [weather], stream: true });
  let args = '';
  let final;
  for await (const e of stream) {
    if (e.type === 'response.function_call_arguments.delta') args += e.delta;
    if (e.type === 'response.completed') final = e.response;
  }
  const call = final.output.find((o) => o.type === 'function_call');
  assert.ok(call, 'the model called the tool');
  assert.equal(call.name, 'get_weather');
  assert.deepEqual(JSON.parse(args), JSON.parse(call.arguments));
  const second = await client.responses.create({
    model: 'sim-small',
    tools: [weather],
    previous_response_id: final.id,
    input: [{ type: 'function_call_output', call_id: call.call_id, output: 'sunny' }],
  });
  assert.equal(second.status, 'completed');
  assert.match(second.output_text, /^\[simulated\]/);
  assert.ok(!second.output.some((o) => o.type === 'function_call'), 'answered after the tool output');
});

test('responses.create with model auto', async () => {
  const r = await client.responses.create({ model: 'auto', input: 'Translate into German: good morning' }).withResponse();
  assert.equal(r.response.headers.get('x-switchyard-route'), 'auto');
  assert.ok(['sim-small', 'sim-large'].includes(r.response.headers.get('x-switchyard-model')));
  assert.match(r.data.output_text, /^\[simulated\]/);
});

test('completions.create (legacy)', async () => {
  const r = await client.completions.create({ model: 'sim-small', prompt: 'Once upon a time', max_tokens: 30 });
  assert.equal(r.object, 'text_completion');
  assert.match(r.choices[0].text, /^\[simulated\]/);
});
