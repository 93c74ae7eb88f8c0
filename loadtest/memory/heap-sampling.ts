// Summarizes the windows of loadtest/memory/heap-sampling.cjs: bytes allocated per
// second by allocation site, split into what scavenges collected, what Mark-Compacts
// collected (promoted garbage, the part that costs full GCs) and what was still live.
//
//   npx tsx loadtest/memory/heap-sampling.ts DIR [--top 25] [--by chatflow|self|area] [--json out.json]
//
// Sites: `chatflow` = the innermost frame in this repository's src/ (what ChatFlow
// code caused the allocation, whatever library did it), `self` = the allocating
// frame itself, `area` = the npm package / node internal / ChatFlow file of that frame.
import { readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

interface CallFrame { functionName: string; url: string; lineNumber: number; columnNumber: number }
interface Node { callFrame: CallFrame; selfSize: number; id: number; children: Node[] }
interface Window {
  window: string;
  ms: number;
  cpuMicros: number;
  answered: number;
  interval: number;
  gc: Record<string, { count: number; ms: number; maxMs: number }>;
  profile: { head: Node; samples: { size: number; nodeId: number }[] };
}

const REPO = resolve(__dirname, '..', '..');

function fileOf(url: string): string {
  const p = url.startsWith('file://') ? url.slice(7) : url;
  // The server runs from its build (dist/src/…, as npm start does): named as its source.
  return (p.startsWith('/') ? relative(REPO, p) : p).replace(/^dist\//, '');
}

function area(f: CallFrame): string {
  const u = fileOf(f.url);
  if (!u) return '(native/VM)';
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = u.slice(nm + 13).split('/');
    return `npm:${rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  if (u.startsWith('node:')) return `node:${u.slice(5).split('/')[0]}`;
  return u;
}

function label(f: CallFrame): string {
  return f.functionName ? `${f.functionName} ${fileOf(f.url)}` : `(anonymous) ${fileOf(f.url)}:${f.lineNumber + 1}:${f.columnNumber + 1}`;
}

function isChatFlow(f: CallFrame): boolean {
  const u = fileOf(f.url);
  return (u.startsWith('src/') || u.startsWith('projections/')) && !u.includes('node_modules');
}

/** Bytes per site (selfSize: the profiler's estimate, already scaled for sampling). */
function bySite(w: Window, by: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (n: Node, cf: CallFrame | undefined) => {
    const here = isChatFlow(n.callFrame) ? n.callFrame : cf;
    if (n.selfSize > 0) {
      const key = by === 'self' ? label(n.callFrame) : by === 'area' ? area(n.callFrame) : here ? label(here) : `(outside ChatFlow) ${area(n.callFrame)}`;
      out.set(key, (out.get(key) ?? 0) + n.selfSize);
    }
    for (const c of n.children) walk(c, here);
  };
  walk(w.profile.head, undefined);
  return out;
}

function main(): void {
  const args = process.argv.slice(2);
  const dir = args[0];
  const opt = (k: string, d: string) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
  const top = Number(opt('--top', '25'));
  const by = opt('--by', 'chatflow');
  const win = Object.fromEntries(['all', 'major', 'live'].map((n) => [n, JSON.parse(readFileSync(join(dir, `${n}.json`), 'utf8')) as Window]));
  const rate = (w: Window) => 1000 / w.ms;
  const sites = Object.fromEntries(Object.entries(win).map(([k, w]) => [k, bySite(w, by)]));
  const keys = new Set([...sites.all.keys(), ...sites.major.keys()]);
  const rows = [...keys].map((k) => {
    const all = (sites.all.get(k) ?? 0) * rate(win.all);
    const major = (sites.major.get(k) ?? 0) * rate(win.major);
    const live = (sites.live.get(k) ?? 0) * rate(win.live);
    return { site: k, all, majorGarbage: Math.max(0, major - live), minorGarbage: Math.max(0, all - major), live };
  });
  const mb = (x: number) => (x / 1e6).toFixed(2);
  const sum = (f: (r: (typeof rows)[0]) => number) => rows.reduce((s, r) => s + f(r), 0);
  console.log(`| window | s | answered | msg/s | CPU µs/msg | scavenges | ms | Mark-Compacts | ms (max) | incremental | MC per 1,000 msg |`);
  console.log(`| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |`);
  for (const w of Object.values(win)) {
    const g = (k: string) => w.gc[k] ?? { count: 0, ms: 0, maxMs: 0 };
    console.log(
      `| ${w.window} | ${(w.ms / 1000).toFixed(1)} | ${w.answered} | ${((w.answered * 1000) / w.ms).toFixed(1)} | ${(w.cpuMicros / w.answered).toFixed(0)} | ${g('scavenge').count} | ${g('scavenge').ms.toFixed(0)} | ${g('markCompact').count} | ${g('markCompact').ms.toFixed(0)} (${g('markCompact').maxMs.toFixed(1)}) | ${g('incremental').count} | ${((g('markCompact').count * 1000) / w.answered).toFixed(1)} |`,
    );
  }
  const perMsg = (x: number, w: Window) => ((x * w.ms) / 1000 / w.answered / 1000).toFixed(1);
  console.log(`\nTotal MB/s: allocated ${mb(sum((r) => r.all))}, collected by scavenges ${mb(sum((r) => r.minorGarbage))}, by Mark-Compacts ${mb(sum((r) => r.majorGarbage))}, live at the end ${mb(sum((r) => r.live))}`);
  console.log(`Per answered message (KB): allocated ${perMsg(sum((r) => r.all), win.all)}, Mark-Compact garbage ${perMsg(sum((r) => r.majorGarbage), win.major)}\n`);
  console.log(`| site (${by}) | MC garbage MB/s | % | scavenged MB/s | allocated MB/s | live MB/s |`);
  console.log(`| --- | --- | --- | --- | --- | --- |`);
  const totalMajor = sum((r) => r.majorGarbage);
  for (const r of rows.sort((a, b) => b.majorGarbage - a.majorGarbage).slice(0, top)) {
    console.log(`| ${r.site} | ${mb(r.majorGarbage)} | ${((100 * r.majorGarbage) / totalMajor).toFixed(1)} | ${mb(r.minorGarbage)} | ${mb(r.all)} | ${mb(r.live)} |`);
  }
  const json = opt('--json', '');
  if (json) require('node:fs').writeFileSync(json, JSON.stringify({ windows: Object.values(win).map(({ profile, ...w }) => w), rows }, null, 1));
}

main();
