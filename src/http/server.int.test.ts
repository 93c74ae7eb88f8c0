import { neverRead } from '../../test/never-read';
import pino from 'pino';
import { startHttpServer } from './server';

/*
 * The HTTP server's own routes under clients that ask a lot and read nothing
 * (no token is needed for them). Pipelining itself is bounded per connection
 * (MAX_PIPELINED, test/call-flood.chaos.e2e.test.ts); these are the many
 * connections that each stay under it.
 */
describe('GET /metrics', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  async function serverWith(metrics: () => Promise<string>) {
    return startHttpServer({
      addr: '127.0.0.1:0',
      registry: { contentType: 'text/plain; version=0.0.4', metrics },
      health: () => ({ ok: true, detail: {} }),
      routes: [],
      logger: pino({ level: 'silent' }),
    });
  }

  it('is computed once for the requests that ask while it is computed (50 connections × 16 pipelined, never read), and afresh for a request after', async () => {
    let computed = 0;
    const http = await serverWith(async () => {
      const n = ++computed;
      await sleep(300);
      return `# scrape ${n}\n${'x'.repeat(100_000)}\n`;
    });
    const flood = neverRead(http.port, 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(16), 50);
    try {
      await sleep(600);
      // Before: once per request (800), each answer a copy held until its client read it.
      expect(computed).toBeLessThanOrEqual(2);
      const before = computed;
      const next = await fetch(`http://127.0.0.1:${http.port}/metrics`).then((r) => r.text());
      expect(next.startsWith(`# scrape ${before + 1}\n`)).toBe(true);
    } finally {
      flood.destroy();
      await http.close();
    }
  });

  it('answers 500 when the figures cannot be computed, and computes them again for the next request', async () => {
    let calls = 0;
    const http = await serverWith(async () => {
      if (++calls === 1) throw new Error('a collector failed');
      return 'ok\n';
    });
    try {
      expect((await fetch(`http://127.0.0.1:${http.port}/metrics`)).status).toBe(500);
      const next = await fetch(`http://127.0.0.1:${http.port}/metrics`);
      expect([next.status, await next.text()]).toEqual([200, 'ok\n']);
    } finally {
      await http.close();
    }
  });
});
