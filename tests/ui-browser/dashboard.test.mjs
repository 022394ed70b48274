// The /ui dashboard in a real browser: Debian's chromium driven by
// playwright-core against `switchyard serve` on the simulated provider.
// A wrong admin key gets the login page and no data; the right one shows the
// overview, whose figures are checked against the ledger (read with
// python3's sqlite3); a key is created (secret shown once) and revoked; a
// request row opens its full record; every page is saved as a screenshot in
// target/ui-screenshots/.
// Run by scripts/test: SWITCHYARD_BIN=target/debug/switchyard node --test tests/ui-browser
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, mkdirSync, existsSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');
const BIN = process.env.SWITCHYARD_BIN || join(ROOT, 'target/debug/switchyard');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = join(ROOT, 'target/ui-screenshots');
const ADMIN = 'adm-browser-test-3b7f09';

const CONFIG = `
[server]
admin_key = "${ADMIN}"

[providers.sim]
type = "simulated"
latency_ms = 5
tokens_per_second = 5000

[models.sim-small]
provider = "sim"
model = "sim-small-1"
tier = "economy"
price = { input = 0.5, output = 1.5 }

[models.sim-large]
provider = "sim"
model = "sim-large-1"
tier = "frontier"
price = { input = 5.0, output = 25.0 }

[routes.auto]
default_task = "simple_chat"
[routes.auto.tasks.simple_chat]
models = ["sim-small"]
[routes.auto.tasks.code_generation]
models = ["sim-large"]

[budgets]
daily = 0.05
monthly = 1.0

[experiments.small-vs-large]
model = "sim-small"
candidates = [{ model = "sim-large", share = 0.5 }]
`;

// The page's money format (assets/ui/app.js `usd`).
function usd(x) {
  const a = Math.abs(x);
  const digits = a === 0 ? 2 : a < 0.01 ? 6 : a < 1 ? 4 : 2;
  return (x < 0 ? '-$' : '$') + a.toFixed(digits);
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

let gw, proc, browser, dir, ledger;

async function waitFor(what, f) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const v = await f().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), 'switchyard-ui-'));
  const cfg = join(dir, 'switchyard.toml');
  writeFileSync(cfg, CONFIG);
  ledger = join(dir, 'ledger.sqlite');
  const port = await freePort();
  const log = join(dir, 'stderr.log');
  proc = spawn(BIN, ['serve', '--config', cfg, '--listen', `127.0.0.1:${port}`, '--ledger', ledger], {
    stdio: ['ignore', 'ignore', openSync(log, 'w')],
  });
  gw = `http://127.0.0.1:${port}`;
  await waitFor(`switchyard at ${gw}:\n${existsSync(log) ? readFileSync(log, 'utf8') : ''}`, async () => {
    if (proc.exitCode !== null) throw new Error(readFileSync(log, 'utf8'));
    return (await fetch(`${gw}/ready`)).status === 200;
  });
  // Known traffic: 4 routed (3 simple_chat on sim-small, 1 code_generation on
  // sim-large), 2 for sim-small directly (the experiment's traffic), 1 unknown model.
  const chat = (model, task) =>
    fetch(`${gw}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(task ? { 'x-switchyard-task': task } : {}) },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Say hello to the dashboard.' }] }),
    });
  for (const t of ['simple_chat', 'simple_chat', 'simple_chat', 'code_generation']) {
    assert.equal((await chat('auto', t)).status, 200);
  }
  for (let i = 0; i < 2; i++) assert.equal((await chat('sim-small')).status, 200);
  assert.equal((await chat('no-such-model')).status, 404);
  // Every row written (the admin API reports the writer's queue).
  await waitFor('the ledger', async () => {
    const r = await fetch(`${gw}/admin/spend`, { headers: { authorization: `Bearer ${ADMIN}` } });
    const v = await r.json();
    return v.ledger_queue_depth === 0 && v.total.requests === 6;
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (proc && proc.exitCode === null) {
    await new Promise((res) => {
      proc.once('exit', res);
      proc.kill('SIGTERM');
    });
  }
});

function sql(query) {
  const py = 'import sqlite3, sys, json; c = sqlite3.connect(sys.argv[1]); print(json.dumps(c.execute(sys.argv[2]).fetchone()))';
  return JSON.parse(execFileSync('python3', ['-c', py, ledger, query], { encoding: 'utf8' }));
}

async function newPage() {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  return ctx.newPage();
}

async function logIn(page, key) {
  await page.goto(`${gw}/ui`);
  await page.fill('#key', key);
  await page.click('button[type=submit]');
  await page.waitForSelector('#tabs, .error');
}

async function tab(page, name) {
  await page.click(`#tabs a[data-tab=${name}]`);
  await page.waitForSelector(`body[data-loaded=${name}]:not([data-loading])`);
}

test('a wrong admin key gets the login page, never data', async () => {
  const page = await newPage();
  let dataCalls = 0;
  page.on('response', (r) => {
    if (new URL(r.url()).pathname.startsWith('/admin/') && r.status() === 200) dataCalls++;
  });
  await logIn(page, 'not-the-key');
  assert.equal(await page.textContent('.error'), 'Wrong admin key.');
  assert.equal(await page.locator('#key').count(), 1);
  assert.equal(await page.locator('#tabs').count(), 0);
  assert.equal(dataCalls, 0);
  const cookies = await page.context().cookies();
  assert.equal(cookies.length, 0);
  await page.screenshot({ path: join(SHOTS, 'login-wrong-key.png') });
  await page.context().close();
});

test('log in, check the overview against the ledger, visit every page', async () => {
  const page = await newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await logIn(page, ADMIN);
  await page.waitForSelector('body[data-loaded=overview]:not([data-loading])');
  const cookies = await page.context().cookies();
  assert.ok(cookies.length >= 1 && cookies.every((c) => c.httpOnly && c.sameSite === 'Strict' && !c.value.includes(ADMIN)));

  const dayStart = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
  const [cost, requests] = sql(
    `SELECT COALESCE(SUM(cost_usd), 0), COUNT(DISTINCT request_id) FROM ledger WHERE ts_ms >= ${dayStart} AND shadow = 0`,
  );
  assert.ok(cost > 0, 'the simulated traffic cost something');
  assert.equal(requests, 6);
  assert.equal(await page.textContent('#ov-today'), usd(cost));
  assert.match(await page.textContent('#ov-today-req'), /^6 requests/);
  assert.equal(await page.textContent('#ov-month'), usd(cost));
  const global = page.locator('#ov-budgets tr[data-scope=global] td');
  assert.equal(await global.nth(2).textContent(), usd(0.05));
  assert.ok(await page.locator('#ov-chart canvas').count() >= 1, 'the day chart is drawn');
  await page.screenshot({ path: join(SHOTS, 'overview.png'), fullPage: true });

  await tab(page, 'savings');
  const [routedCost] = sql(`SELECT COALESCE(SUM(cost_usd), 0) FROM ledger WHERE route = 'auto'`);
  assert.ok(routedCost > 0);
  const saved = await page.textContent('#sv-saved');
  assert.notEqual(saved, '–');
  assert.ok(Number(saved.replace('$', '')) > 0, `saved ${saved}`);
  assert.ok((await page.locator('#sv-tasks tbody tr').count()) >= 2);
  await page.screenshot({ path: join(SHOTS, 'savings.png'), fullPage: true });

  await tab(page, 'traffic');
  const groups = await page.locator('#tr-groups tbody tr td:first-child').allTextContents();
  assert.ok(groups.includes('sim-small') && groups.includes('sim-large'), groups.join(','));
  await page.selectOption('#tr-by', 'tier');
  await page.waitForSelector('body[data-loaded=traffic]:not([data-loading])');
  await page.waitForFunction(() => [...document.querySelectorAll('#tr-groups tbody td:first-child')].some((t) => t.textContent === 'economy'));
  await page.screenshot({ path: join(SHOTS, 'traffic.png'), fullPage: true });

  await tab(page, 'health');
  assert.equal(await page.textContent('#hl-table tbody tr td:first-child'), 'sim');
  await page.screenshot({ path: join(SHOTS, 'health.png'), fullPage: true });

  await tab(page, 'experiments');
  await page.waitForSelector('[data-experiment="small-vs-large"]');
  await page.screenshot({ path: join(SHOTS, 'experiments.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.context().close();
});

test('open a request row', async () => {
  const page = await newPage();
  await logIn(page, ADMIN);
  await page.waitForSelector('body[data-loaded=overview]:not([data-loading])');
  await tab(page, 'requests');
  const rows = page.locator('#rq-table tbody tr');
  assert.equal(await rows.count(), 6);
  const [lastId] = sql('SELECT request_id FROM ledger ORDER BY id DESC LIMIT 1');
  assert.equal(await rows.first().getAttribute('data-request'), lastId);
  await page.screenshot({ path: join(SHOTS, 'requests.png'), fullPage: true });
  // The code_generation request: routed to sim-large.
  const [codeId, model, reason] = sql(`SELECT request_id, served_model, route_reason FROM ledger WHERE task = 'code_generation'`);
  await page.click(`#rq-table tr[data-request="${codeId}"]`);
  await page.waitForSelector('#detail-attempts tbody tr');
  assert.equal(await page.textContent('#detail-title'), `Request ${codeId}`);
  assert.equal(await page.textContent('#detail-attempts tbody tr td:nth-child(2)'), model);
  assert.ok((await page.textContent('#detail-body')).includes(reason));
  await page.screenshot({ path: join(SHOTS, 'request-detail.png') });
  await page.context().close();
});

test('create a key (secret shown once) and revoke it', async () => {
  const page = await newPage();
  await logIn(page, ADMIN);
  await page.waitForSelector('body[data-loaded=overview]:not([data-loading])');
  await tab(page, 'keys');
  await page.fill('#key-form input[name=name]', 'browser-team');
  await page.fill('#key-form input[name=daily_budget]', '2.5');
  await page.click('#key-form button[type=submit]');
  await page.waitForSelector('#key-secret:not([hidden])');
  const secret = await page.textContent('#key-secret-value');
  assert.match(secret, /^sk-/);
  await page.waitForSelector('#key-table tr[data-key="browser-team"]');
  // The key works on the API.
  const ok = await fetch(`${gw}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
    body: JSON.stringify({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal(ok.status, 200);
  await page.screenshot({ path: join(SHOTS, 'keys.png'), fullPage: true });
  // Reloading the page never shows the secret again.
  await page.reload();
  await page.waitForSelector('body[data-loaded=keys]:not([data-loading])');
  await page.waitForSelector('#key-table tr[data-key="browser-team"]');
  assert.ok(!(await page.content()).includes(secret));
  const revoke = page.locator('#key-table tr[data-key="browser-team"] button[data-revoke]');
  await revoke.click();
  assert.equal(await revoke.textContent(), 'Confirm revoke');
  await revoke.click();
  await page.waitForSelector('#key-table tr[data-key="browser-team"]', { state: 'detached' });
  const gone = await fetch(`${gw}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
    body: JSON.stringify({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal(gone.status, 401);
  // Log out: back to the login page, and the cookie no longer reads data.
  await Promise.all([page.waitForURL(`${gw}/ui`), page.click('#logout')]);
  await page.waitForSelector('#key');
  const r = await page.evaluate(async () => (await fetch('/admin/keys')).status);
  assert.equal(r, 401);
  await page.context().close();
});
