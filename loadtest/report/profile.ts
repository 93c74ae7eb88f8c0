// Where the CPU time goes, from a V8 `.cpuprofile` (node --cpu-prof): self
// time per function, self time per area (a package, node internals, a
// ChatFlow source file, GC, idle), and inclusive time of ChatFlow's own
// functions. Sample durations come from timeDeltas, as DevTools computes them.
import { readFile } from 'node:fs/promises';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface FunctionTime {
  fn: string;
  where: string;
  area: string;
  ms: number;
  /** Share of the busy (non-idle) time, %. */
  pct: number;
}

export interface ProfileSummary {
  file: string;
  /** 'load' = only the samples taken while the scenario ran; 'whole' = the process's whole life (startup included). */
  window: 'load' | 'whole';
  /** Wall time the profile covers, ms. */
  durationMs: number;
  idleMs: number;
  busyMs: number;
  /** busy / duration: how much of one core the process used, %. */
  busyPct: number;
  bySelf: FunctionTime[];
  byArea: { area: string; ms: number; pct: number }[];
  /** ChatFlow's own functions (src/, projections/) by inclusive time: the paths the time flows through. */
  chatflowInclusive: FunctionTime[];
}

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

/** The area a frame belongs to: an npm package, a node internal module, a ChatFlow file, or a V8 pseudo-frame. */
export function areaOf(cf: CallFrame): string {
  if (SPECIAL.has(cf.functionName) && !cf.url) return cf.functionName;
  const url = cf.url;
  if (!url) return '(native / V8 builtins)';
  if (url.startsWith('node:')) {
    const mod = url.slice(5).replace(/^internal\//, '');
    return `node:${mod.split('/')[0]}`;
  }
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const own = /\/((?:src|projections|loadtest)\/.*)$/.exec(url.replace(/^file:\/\//, ''));
  if (own) return `chatflow ${own[1]}`;
  return url.replace(/^file:\/\//, '');
}

function whereOf(cf: CallFrame): string {
  if (!cf.url) return '';
  const u = cf.url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  const own = /\/((?:src|projections|loadtest)\/.*)$/.exec(u)?.[1];
  // ChatFlow's .ts files run transpiled by tsx: V8's line numbers are of the generated code, not the source.
  if (nm < 0 && own && /\.[cm]?ts$/.test(own)) return own;
  const short = nm >= 0 ? u.slice(nm + 14) : (own ?? u);
  return `${short}:${cf.lineNumber + 1}`;
}

/**
 * A time window in the profile's clock: V8 stamps samples with a monotonic
 * clock in µs (CLOCK_MONOTONIC on Linux), the same clock as
 * process.hrtime() in any process on the machine, so the runner can say
 * "only while the load ran".
 */
export interface ProfileWindow {
  fromUs: number;
  toUs: number;
}

/** Now, in the profile's clock (µs). */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export function summarizeProfile(p: CpuProfile, file = '', top = 25, window?: ProfileWindow): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Duration of sample i = time until the next sample (the last one: until endTime).
  const times: number[] = [];
  let t = p.startTime;
  for (const d of p.timeDeltas) times.push((t += d));
  const durOf = (i: number) => ((i + 1 < times.length ? times[i + 1]! : p.endTime) - times[i]!) / 1000;
  // Keep the window only if it really overlaps the profile (else the clocks differ: use everything).
  const w = window && window.fromUs < p.endTime && window.toUs > p.startTime ? window : undefined;
  const inWindow = (i: number) => !w || (times[i]! >= w.fromUs && times[i]! < w.toUs);

  const self = new Map<number, number>();
  const inclusive = new Map<string, number>();
  for (let i = 0; i < p.samples.length; i++) {
    if (!inWindow(i)) continue;
    const id = p.samples[i]!;
    const d = Math.max(0, durOf(i));
    self.set(id, (self.get(id) ?? 0) + d);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)!.callFrame;
      if (!areaOf(cf).startsWith('chatflow ')) continue;
      const key = `${cf.functionName || '(anonymous)'}\u0000${whereOf(cf)}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + d);
    }
  }
  const durationMs = w ? (Math.min(w.toUs, p.endTime) - Math.max(w.fromUs, p.startTime)) / 1000 : (p.endTime - p.startTime) / 1000;
  let idleMs = 0;
  const fnTimes = new Map<string, { cf: CallFrame; ms: number }>();
  const areas = new Map<string, number>();
  for (const [id, ms] of self) {
    const cf = byId.get(id)!.callFrame;
    if (cf.functionName === '(idle)') {
      idleMs += ms;
      continue;
    }
    const key = `${cf.functionName || '(anonymous)'}\u0000${whereOf(cf)}`;
    const e = fnTimes.get(key) ?? { cf, ms: 0 };
    e.ms += ms;
    fnTimes.set(key, e);
    const a = areaOf(cf);
    areas.set(a, (areas.get(a) ?? 0) + ms);
  }
  const busyMs = [...areas.values()].reduce((a, b) => a + b, 0);
  const pct = (ms: number) => Math.round((1000 * ms) / (busyMs || 1)) / 10;
  const r1 = (x: number) => Math.round(x * 10) / 10;
  return {
    file,
    window: w ? 'load' : 'whole',
    durationMs: r1(durationMs),
    idleMs: r1(idleMs),
    busyMs: r1(busyMs),
    busyPct: Math.round((1000 * busyMs) / (durationMs || 1)) / 10,
    bySelf: [...fnTimes.values()]
      .sort((a, b) => b.ms - a.ms)
      .slice(0, top)
      .map(({ cf, ms }) => ({ fn: cf.functionName || '(anonymous)', where: whereOf(cf), area: areaOf(cf), ms: r1(ms), pct: pct(ms) })),
    byArea: [...areas.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([area, ms]) => ({ area, ms: r1(ms), pct: pct(ms) })),
    chatflowInclusive: [...inclusive.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, ms]) => {
        const [fn, where] = key.split('\u0000') as [string, string];
        return { fn, where, area: 'chatflow', ms: r1(ms), pct: pct(ms) };
      }),
  };
}

export async function summarizeProfileFile(file: string, window?: ProfileWindow, top = 25): Promise<ProfileSummary> {
  return summarizeProfile(JSON.parse(await readFile(file, 'utf8')) as CpuProfile, file, top, window);
}
