// Superseded by the load-test runner: `npm run loadtest -- --scenario saturate`
// (loadtest/run.ts) does what this quick benchmark did — the server as its own
// process, 50 native gRPC clients each keeping W text messages outstanding,
// simulated delay 0 — and adds the processing-peak check, a CPU profile of the
// server, charts and a report. This wrapper keeps `npm run bench:quick`
// working by running that scenario, writing into a temporary folder (printed at
// the end) so it never replaces the committed results.
//   npm run bench:quick -- [--window 20] [--fsync true] [--duration 20s]
// (`--messages N` is gone: saturate runs for a duration.)
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    messages: { type: 'string' },
    window: { type: 'string', default: '20' },
    fsync: { type: 'string', default: 'true' },
    duration: { type: 'string', default: '20s' },
  },
});
if (values.messages) console.error('bench:quick: --messages is replaced by --duration (the saturate scenario runs for a time); ignoring it.');
const out = mkdtempSync(join(tmpdir(), 'chatflow-bench-'));
const r = spawnSync(
  process.execPath,
  ['--require', 'tsx/cjs', 'loadtest/run.ts', '--scenario', 'saturate', '--window', values.window!, '--fsync', values.fsync!, '--duration', values.duration!, '--profile', 'false', '--out', out],
  { cwd: resolve(__dirname, '..'), stdio: 'inherit' },
);
process.exit(r.status ?? 1);
