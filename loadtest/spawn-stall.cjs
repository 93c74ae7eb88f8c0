// Event-loop delay while a process with a large heap starts a program 10 times a second,
// from its event loop (`main`), from a worker thread (`worker`) or through a small helper
// process (`helper`, what src/speech/launcher.ts does); `none` starts nothing.
// Why ffmpeg is started by a helper (README "Where the time goes"). Heavy: run under the lock.
//   flock -o /work/briefs/heavy.lock sh -c 'for m in none main worker helper; do node --max-semi-space-size=64 loadtest/spawn-stall.cjs $m 300; done'

const { monitorEventLoopDelay, performance } = require('node:perf_hooks');
const { execFile, fork } = require('node:child_process');
const { Worker } = require('node:worker_threads');
const mode = process.argv[2];
const heapMB = +(process.argv[3] ?? 300);
const rate = 10, seconds = 8;
const PROGRAM = process.env.PROGRAM ?? 'ffmpeg';
if (mode === 'helper-child') {
  process.on('message', (m) => execFile(m.cmd, m.args, (e) => process.connected && process.send({ id: m.id, err: e && e.message })));
  process.on('disconnect', () => process.exit(0));
  return;
}
// a large live heap, and keep writing to it (like a server)
const keep = [];
for (let i = 0; i < heapMB; i++) keep.push(Buffer.alloc(1 << 20, i)); // external memory
const objs = []; for (let i = 0; i < heapMB * 2000; i++) objs.push({ a: i, b: 'x' + i });
let runner;
if (mode === 'main') runner = (cb) => execFile(PROGRAM, ['-version'], cb);
else if (mode === 'worker') {
  const w = new Worker(`const { parentPort } = require('node:worker_threads'); const { execFile } = require('node:child_process');
    parentPort.on('message', (id) => execFile(${JSON.stringify(PROGRAM)}, ['-version'], () => parentPort.postMessage(id)));`, { eval: true });
  const cbs = new Map(); let n = 0; w.on('message', (id) => { cbs.get(id)(); cbs.delete(id); }); w.unref();
  runner = (cb) => { const id = n++; cbs.set(id, cb); w.postMessage(id); };
} else if (mode === 'helper') {
  const c = fork(__filename, ['helper-child'], { execArgv: ['--max-old-space-size=32'] });
  const cbs = new Map(); let n = 0; c.on('message', (m) => { cbs.get(m.id)(); cbs.delete(m.id); });
  runner = (cb) => { const id = n++; cbs.set(id, cb); c.send({ id, cmd: PROGRAM, args: ['-version'] }); };
  setTimeout(() => c.kill(), seconds * 1000 + 3000);
}
setTimeout(() => {
  const h = monitorEventLoopDelay({ resolution: 1 }); h.enable();
  const cpu0 = process.cpuUsage();
  let done = 0; const lat = [];
  const iv = setInterval(() => { if (mode !== 'none') { const t = performance.now(); runner(() => { done++; lat.push(performance.now() - t); }); } 
    for (let i = 0; i < 2000; i++) objs[(Math.random() * objs.length) | 0].a++; }, 1000 / rate);
  setTimeout(() => { clearInterval(iv); h.disable(); const c = process.cpuUsage(cpu0);
    lat.sort((a, b) => a - b);
    console.log(JSON.stringify({ mode, heapMB, rss: Math.round(process.memoryUsage().rss / 2 ** 20), spawns: done, loopP50: +(h.percentile(50) / 1e6).toFixed(2), loopP99: +(h.percentile(99) / 1e6).toFixed(2), loopMax: +(h.max / 1e6).toFixed(2), cpuMsPerSpawn: done ? +((c.user + c.system) / 1000 / done).toFixed(2) : 0, latP50: lat[lat.length >> 1]?.toFixed(1) }));
    setTimeout(() => process.exit(0), 200);
  }, seconds * 1000);
}, 1500);
