// The Vercel AI SDK's default `openai(model)` (the Responses API) against
// the gateway: chat, stream and a tool round trip.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText, tool, stepCountIs } from 'ai';
import { z } from 'zod';
import { startGateway } from './gateway.mjs';

let gw;
let openai;
before(async () => {
  gw = await startGateway();
  openai = createOpenAI({ baseURL: gw.baseURL, apiKey: 'sk-anything' });
});
after(async () => {
  assert.equal(await gw.stop(), 0);
});

test('generateText', async () => {
  const r = await generateText({ model: openai('sim-small'), prompt: 'Say hi', maxRetries: 0 });
  assert.match(r.text, /^\[simulated\]/);
  assert.ok(r.usage.inputTokens > 0 && r.usage.outputTokens > 0);
  assert.equal(r.finishReason, 'stop');
});

test('streamText', async () => {
  const r = streamText({ model: openai('sim-small'), prompt: 'Say hi', maxRetries: 0 });
  let text = '';
  let parts = 0;
  for await (const t of r.textStream) {
    text += t;
    parts += 1;
  }
  assert.match(text, /^\[simulated\]/);
  assert.ok(parts > 1, 'the text arrives in several parts');
  assert.equal(await r.text, text);
});

test('tool round trip', async () => {
  const seen = [];
  const r = await generateText({
    model: openai('sim-small'),
    prompt: 'What is the weather in Paris?',
    maxRetries: 0,
    tools: {
      weather: tool({
        description: 'Current weather for a city.',
        inputSchema: z.object({ city: z.string() }),
        execute: async ({ city }) => {
          seen.push(city);
          return `sunny in ${city}`;
        },
      }),
    },
    stopWhen: stepCountIs(3),
  });
  assert.deepEqual(seen, ['example'], 'the tool ran once with the model arguments');
  assert.equal(r.steps.length, 2);
  assert.equal(r.steps[0].finishReason, 'tool-calls');
  assert.match(r.text, /^\[simulated\]/);
});
