// Starts `switchyard serve` on 127.0.0.1 with a config on the simulated
// provider (no network, no key) and waits until /ready answers.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.SWITCHYARD_BIN || resolve(HERE, '../../target/debug/switchyard');

// Two simulated models; `auto` routes between them by task.
export const SIM_CONFIG = `
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
tier = "quality"
price = { input = 2.0, output = 8.0 }
`;

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

export async function startGateway(config = SIM_CONFIG) {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-node-'));
  const cfg = join(dir, 'switchyard.toml');
  writeFileSync(cfg, config);
  const port = await freePort();
  const log = join(dir, 'stderr.log');
  const { openSync } = await import('node:fs');
  const err = openSync(log, 'w');
  const proc = spawn(BIN, ['serve', '--config', cfg, '--listen', `127.0.0.1:${port}`, '--ledger', join(dir, 'ledger.sqlite')], {
    stdio: ['ignore', 'ignore', err],
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`switchyard exited early:\n${readFileSync(log, 'utf8')}`);
    try {
      const r = await fetch(`${url}/ready`);
      if (r.status === 200) break;
    } catch {}
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`switchyard not ready in 30 s:\n${readFileSync(log, 'utf8')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    baseURL: `${url}/v1`,
    dir,
    log: () => readFileSync(log, 'utf8'),
    stop: () =>
      new Promise((res) => {
        if (proc.exitCode !== null) return res(proc.exitCode);
        proc.once('exit', (code) => res(code));
        proc.kill('SIGTERM');
      }),
  };
}
