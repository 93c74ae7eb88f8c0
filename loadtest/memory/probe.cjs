// Preloaded into the server child by loadtest/memory-per-message.ts
// (`node --expose-gc --require ./loadtest/memory/probe.cjs src/main.ts`):
// answers the parent's IPC requests with the heap after full collections,
// and writes a heap snapshot on request. The server itself is `npm start`'s,
// unchanged.
const v8 = require('node:v8');

function settle() {
  // Several full GCs: weak callbacks and finalizers can free more on the next one.
  for (let i = 0; i < 4; i++) global.gc();
}

process.on('message', (msg) => {
  if (!msg || typeof msg !== 'object') return;
  if (msg.type === 'measure') {
    settle();
    const h = v8.getHeapStatistics();
    const m = process.memoryUsage();
    process.send({ type: 'measured', id: msg.id, heapUsed: h.used_heap_size, heapTotal: h.total_heap_size, external: m.external, arrayBuffers: m.arrayBuffers, rss: m.rss });
  } else if (msg.type === 'cpu') {
    const c = process.cpuUsage();
    process.send({ type: 'cpu', id: msg.id, micros: c.user + c.system });
  } else if (msg.type === 'snapshot') {
    settle();
    const file = v8.writeHeapSnapshot(msg.file);
    process.send({ type: 'snapshot-written', id: msg.id, file });
  }
});
// The IPC channel must not keep the server alive after its own shutdown.
process.channel?.unref();
