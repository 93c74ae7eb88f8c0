// What the distributed stack costs when nobody talks to it: the CPU each
// ChatFlow process (projector, workers, gateways) and each engine uses while
// idle, read from /proc over a window. On 2 shared cores, background work is
// what every message's latency competes with.
//
//   npm run stack:up && eval "$(npm run -s stack:env)"
//   npx tsx loadtest/idle-cpu.ts [--settle 20] [--window 30] [--server-dir .] [--profile-dir DIR]
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { stackTarget } from './target/stack';

const { values } = parseArgs({ options: { settle: { type: 'string' }, window: { type: 'string' }, 'server-dir': { type: 'string' }, 'profile-dir': { type: 'string' } } });
const SETTLE_S = Number(values.settle ?? 20);
const WINDOW_S = Number(values.window ?? 30);
const TICK = 100; // USER_HZ on Linux

/** utime + stime of a process and its threads, in seconds. */
function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICK;
  } catch {
    return undefined;
  }
}

/** Every process on the machine whose command line names an engine of the stack. */
function engines(): { name: string; pid: number }[] {
  const names = ['kafka', 'ferretdb', 'postgres', 'nats-server', 'minio', 'envoy'];
  const found: { name: string; pid: number }[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    const name = names.find((n) => cmd.includes(n) && !cmd.includes('idle-cpu'));
    if (name) found.push({ name: `${name} (${d})`, pid: Number(d) });
  }
  return found;
}

async function main(): Promise<void> {
  const logDir = await mkdtemp(join(tmpdir(), 'chatflow-idle-'));
  const target = await stackTarget().start({ env: {}, logDir, serverDir: values['server-dir'], profileDir: values['profile-dir'] });
  try {
    await new Promise((r) => setTimeout(r, SETTLE_S * 1000));
    const procs = [...target.processes.map((p) => ({ name: p.name, pid: p.pid })), ...engines()];
    const before = procs.map((p) => cpuSeconds(p.pid));
    await new Promise((r) => setTimeout(r, WINDOW_S * 1000));
    const after = procs.map((p) => cpuSeconds(p.pid));
    console.log(`idle ${WINDOW_S} s after ${SETTLE_S} s settling; share of one core:`);
    let chatflow = 0;
    procs.forEach((p, i) => {
      if (before[i] === undefined || after[i] === undefined) return;
      const share = (after[i]! - before[i]!) / WINDOW_S;
      if (i < target.processes.length) chatflow += share;
      console.log(`  ${p.name.padEnd(24)} ${(share * 100).toFixed(1)} %`);
    });
    console.log(`  ChatFlow processes together: ${(chatflow * 100).toFixed(1)} %   (logs: ${logDir})`);
  } finally {
    await target.stop();
  }
}

void main();
