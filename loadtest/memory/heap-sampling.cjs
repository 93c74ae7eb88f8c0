// Preloaded into a load test's server (issue 15: which objects become old-space garbage):
//
//   CHATFLOW_HEAPPROF_DIR=/tmp/hp CHATFLOW_HEAPPROF_PLAN=30,25 \
//   LOADTEST_SERVER_NODE_FLAGS="--require $PWD/loadtest/memory/heap-sampling.cjs" \
//   npm run loadtest -- --scenario reference --profile false
//
// With CHATFLOW_HEAPPROF_THREADS=1 the worker threads are sampled too (each its own folder).
// After PLAN's first number of seconds it runs three back-to-back windows of the
// second number each, under the inspector's sampling heap profiler
// (HeapProfiler.startSampling), each with other flags:
//   all   includeObjectsCollectedByMinorGC + ByMajorGC: every sampled allocation
//   major includeObjectsCollectedByMajorGC only: what was still live at the end, or
//         was collected by a Mark-Compact (the garbage that costs full GCs)
//   live  neither: what was still live (or not yet collected) at the end
// Per allocation site, major - live = bytes collected by Mark-Compacts and
// all - major = bytes collected by scavenges (the load is steady across the
// windows; loadtest/memory/heap-sampling.ts does the subtraction). Each window
// also records the GCs (count and pause by kind), the process's CPU time and the
// replies answered (the server's own /metrics), into <dir>/<window>.json.
const inspector = require('node:inspector');
const { PerformanceObserver, constants } = require('node:perf_hooks');
const { writeFileSync, mkdirSync } = require('node:fs');
const { join } = require('node:path');
const { isMainThread, threadId } = require('node:worker_threads');

// On the stack each process (CHATFLOW_ROLE) writes into a folder of its own: <dir>/<role>-<pid>.
const dir = process.env.CHATFLOW_HEAPPROF_DIR && (process.env.CHATFLOW_ROLE ? join(process.env.CHATFLOW_HEAPPROF_DIR, `${process.env.CHATFLOW_ROLE}-${process.pid}`) : process.env.CHATFLOW_HEAPPROF_DIR);
const [delayS, windowS] = (process.env.CHATFLOW_HEAPPROF_PLAN ?? '30,25').split(',').map(Number);
const interval = Number(process.env.CHATFLOW_HEAPPROF_INTERVAL ?? 16384);
const WINDOWS = [
  { name: 'all', flags: { includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true } },
  { name: 'major', flags: { includeObjectsCollectedByMajorGC: true } },
  { name: 'live', flags: {} },
];
const KIND = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'markCompact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

// Worker threads inherit the preload: only the event loop's thread is profiled, unless
// CHATFLOW_HEAPPROF_THREADS=1 (then each thread too, into <dir>/thread-<threadId>).
const here = dir && (isMainThread ? dir : process.env.CHATFLOW_HEAPPROF_THREADS === '1' ? join(dir, `thread-${threadId}`) : undefined);
if (here) {
  mkdirSync(here, { recursive: true });
  let gc = {};
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const k = KIND[e.detail?.kind ?? e.kind] ?? 'other';
      const g = (gc[k] ??= { count: 0, ms: 0, maxMs: 0 });
      g.count++;
      g.ms += e.duration;
      g.maxMs = Math.max(g.maxMs, e.duration);
    }
  }).observe({ entryTypes: ['gc'] });

  const session = new inspector.Session();
  session.connect();
  const post = (method, params) => new Promise((res, rej) => session.post(method, params, (e, r) => (e ? rej(e) : res(r))));

  async function answered() {
    // The server's own count of replies (all outcomes), from its /metrics.
    const addr = process.env.CHATFLOW_HTTP_ADDR ?? '127.0.0.1:8080';
    try {
      const text = await (await fetch(`http://${addr}/metrics`)).text();
      let n = 0;
      for (const line of text.split('\n')) if (line.startsWith('chatflow_responses_total')) n += Number(line.split(' ').pop());
      return n;
    } catch {
      return NaN;
    }
  }

  async function run() {
    await post('HeapProfiler.enable');
    for (const w of WINDOWS) {
      gc = {};
      const cpu0 = process.cpuUsage();
      const n0 = await answered();
      const t0 = performance.now();
      await post('HeapProfiler.startSampling', { samplingInterval: interval, ...w.flags });
      await new Promise((r) => setTimeout(r, windowS * 1000));
      const { profile } = await post('HeapProfiler.stopSampling');
      const ms = performance.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      const n1 = await answered();
      writeFileSync(
        join(here, `${w.name}.json`),
        JSON.stringify({ window: w.name, flags: w.flags, interval, ms, cpuMicros: cpu.user + cpu.system, answered: n1 - n0, gc, profile }),
      );
    }
    await post('HeapProfiler.disable');
    session.disconnect();
  }
  setTimeout(() => run().catch((e) => console.error('heap-sampling probe:', e)), delayS * 1000).unref();
}
