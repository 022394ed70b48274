// `codex exec` (the @openai/codex CLI, whose only wire API is the Responses
// API) completing a turn against the gateway on the simulated provider.
// Scratch CODEX_HOME and HOME; the model provider's base_url is the gateway.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGateway } from './gateway.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const CODEX = resolve(HERE, 'node_modules/.bin/codex');

let gw;
before(async () => {
  gw = await startGateway();
});
after(async () => {
  assert.equal(await gw.stop(), 0);
});

function run(cmd, args, opts) {
  return new Promise((res) => {
    const p = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    // A generous overall limit: a hung CLI fails the test instead of the suite.
    const t = setTimeout(() => p.kill('SIGKILL'), 120_000);
    p.on('close', (code) => {
      clearTimeout(t);
      res({ code, out, err });
    });
  });
}

test('codex exec finishes a turn through /v1/responses', async () => {
  const home = mkdtempSync(join(tmpdir(), 'switchyard-codex-'));
  const codexHome = join(home, '.codex');
  const work = join(home, 'work');
  mkdirSync(codexHome);
  mkdirSync(work);
  writeFileSync(
    join(codexHome, 'config.toml'),
    `model = "sim-small"
model_provider = "switchyard"
# Web search is a hosted tool (OpenAI-only); the gateway refuses it for other upstreams.
web_search = "disabled"

[model_providers.switchyard]
name = "Switchyard"
base_url = "${gw.baseURL}"
wire_api = "responses"
env_key = "SWITCHYARD_API_KEY"

[analytics]
enabled = false
`,
  );
  const env = {
    PATH: process.env.PATH,
    HOME: home,
    CODEX_HOME: codexHome,
    SWITCHYARD_API_KEY: 'sk-anything',
    NO_COLOR: '1',
  };
  const r = await run(
    CODEX,
    ['exec', '--skip-git-repo-check', '--json', 'Say hello to the gateway.'],
    { cwd: work, env },
  );
  const events = r.out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
  const detail = `exit ${r.code}\n--- stdout ---\n${r.out}\n--- stderr ---\n${r.err}\n--- gateway ---\n${gw.log()}`;
  assert.equal(r.code, 0, detail);
  const done = events.find((e) => e.type === 'turn.completed');
  assert.ok(done, `no turn.completed event\n${detail}`);
  assert.ok(done.usage.input_tokens > 0, detail);
  const messages = events
    .filter((e) => e.type === 'item.completed' && e.item.type === 'agent_message')
    .map((e) => e.item.text);
  assert.ok(messages.some((m) => m.startsWith('[simulated]')), `no agent message from the gateway\n${detail}`);
  // The simulated model calls Codex's first tool, Codex sends the tool's
  // output back, and the model answers: two /v1/responses calls.
  const served = gw.log().split('\n').filter((l) => l.includes('endpoint="responses"') && l.includes('status=200'));
  assert.ok(served.length >= 2, `expected a tool round trip (2+ responses calls)\n${detail}`);
});
