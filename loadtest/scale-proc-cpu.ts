/*
 * CPU of every process of a stack run, read from /proc (no pidstat here):
 * the engines (FerretDB, Kafka, NATS, MinIO, Envoy), ChatFlow's roles (by
 * CHATFLOW_ROLE and gateway id) and the load generator. Every `--every` ms it
 * notes each process's CPU since the last sample, as a share of one core;
 * on SIGTERM/SIGINT (or after --for ms) it writes the samples (JSON lines) and
 * prints per process the mean and the highest share over the run, and per
 * 10-second window, so a phase (the scale scenario's opening) can be read off.
 *
 *   npx tsx loadtest/scale-proc-cpu.ts --out cpu.jsonl [--every 2000] [--for 900000]
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

const arg = (name: string, d?: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : d;
};
const every = Number(arg('every', '2000'));
const forMs = Number(arg('for', '1800000'));
const out = arg('out', 'proc-cpu.jsonl')!;
const HZ = 100;

function nameOf(pid: string): string | undefined {
  let cmd: string;
  try {
    cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return undefined;
  }
  if (/\/ferretdb\b/.test(cmd)) return 'ferretdb';
  if (/^java .*kafka/.test(cmd)) return 'kafka';
  if (/nats-server/.test(cmd)) return 'nats';
  if (/\bminio\b/.test(cmd)) return 'minio';
  if (/\benvoy\b/.test(cmd) && !/python/.test(cmd)) return 'envoy';
  if (/postgres/.test(cmd) && !/ferretdb/.test(cmd)) return 'postgres';
  if (/loadtest\/run\.ts/.test(cmd) && /^\S*node /.test(cmd) && !/tsx\/dist\/cli/.test(cmd)) return 'load-generator';
  if (/src\/main\.ts|dist\/src\/main\.js/.test(cmd)) {
    try {
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      const get = (k: string) => env.find((e) => e.startsWith(`${k}=`))?.slice(k.length + 1);
      return `${get('CHATFLOW_ROLE') ?? 'all'}${get('CHATFLOW_GATEWAY_ID') ? `:${get('CHATFLOW_GATEWAY_ID')}` : ''}:${pid}`;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

function ticks(pid: string): number | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return Number(rest[11]) + Number(rest[12]); // utime + stime
  } catch {
    return undefined;
  }
}

const last = new Map<string, { name: string; ticks: number }>();
const samples: { t: number; cpu: Record<string, number> }[] = [];
let prevT = Date.now();
function sample(): void {
  const t = Date.now();
  const cpu: Record<string, number> = {};
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    const known = last.get(pid);
    const name = known?.name ?? nameOf(pid);
    if (!name) continue;
    const tk = ticks(pid);
    if (tk === undefined) continue;
    if (known) cpu[name] = (cpu[name] ?? 0) + (tk - known.ticks) / HZ / ((t - prevT) / 1000);
    last.set(pid, { name, ticks: tk });
  }
  prevT = t;
  if (Object.keys(cpu).length) samples.push({ t, cpu });
}

function finish(): void {
  writeFileSync(out, samples.map((s) => JSON.stringify(s)).join('\n') + '\n');
  const names = [...new Set(samples.flatMap((s) => Object.keys(s.cpu)))].sort();
  const t0 = samples[0]?.t ?? 0;
  console.log(`process: mean / max share of one core over ${samples.length} samples`);
  for (const n of names) {
    const xs = samples.map((s) => s.cpu[n] ?? 0);
    console.log(`${n}: ${(xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(2)} / ${Math.max(...xs).toFixed(2)}`);
  }
  console.log(`per 10 s (t from the first sample): ${names.join(' | ')}`);
  const windows = new Map<number, number[][]>();
  for (const s of samples) {
    const w = Math.floor((s.t - t0) / 10_000) * 10;
    if (!windows.has(w)) windows.set(w, []);
    windows.get(w)!.push(names.map((n) => s.cpu[n] ?? 0));
  }
  for (const [w, rows] of windows) console.log(`${w}s: ${names.map((_, i) => (rows.reduce((a, r) => a + r[i]!, 0) / rows.length).toFixed(2)).join(' | ')}`);
  process.exit(0);
}

sample();
const timer = setInterval(sample, every);
setTimeout(() => {
  clearInterval(timer);
  finish();
}, forMs);
process.on('SIGTERM', finish);
process.on('SIGINT', finish);
