// The latency-floor tool end to end, tiny: the echo and embedded ChatFlow
// (worker in a thread, then on the event loop) each answer three texts and
// three video clips.
import { floorReport, measureFloor } from './latency-floor';

jest.setTimeout(120_000);

// LOADTEST_SERVER_DIR: run the server from another checkout (as loadtest.e2e.test.ts).
const serverDir = process.env.LOADTEST_SERVER_DIR;

describe('loadtest/latency-floor.ts', () => {
  it('times Accepted, the reply and the overhead of every message, per kind, on the echo and on ChatFlow with and without its worker thread', async () => {
    const rows = await measureFloor({ messages: 3, gapMs: 5, kinds: ['text', 'video'], serverDir });
    expect(rows.map((r) => r.target)).toEqual([
      'bare grpc-js echo (the transport alone), text',
      'bare grpc-js echo (the transport alone), video',
      'ChatFlow embedded, worker in a thread (default), text',
      'ChatFlow embedded, worker in a thread (default), video',
      'ChatFlow embedded, worker on the event loop, text',
      'ChatFlow embedded, worker on the event loop, video',
    ]);
    for (const { target, probe } of rows) {
      expect([target, probe.accepted.length, probe.reply.length, probe.overhead.length]).toEqual([target, 3, 3, 3]);
      probe.reply.forEach((reply, i) => {
        expect(probe.accepted[i]).toBeGreaterThan(0);
        expect(reply).toBeGreaterThanOrEqual(probe.accepted[i]!);
        // The overhead is the reply less what the server says it spent processing: for a text at delay 0,
        // next to nothing; a video's processing includes drawing and storing its reply image.
        expect(probe.overhead[i]).toBeLessThanOrEqual(reply);
        expect(probe.overhead[i]).toBeGreaterThan(0);
        if (target.endsWith(', text')) expect(probe.overhead[i]).toBeGreaterThan(reply - 50);
      });
    }
    // The echo does no processing: its overhead is its reply time.
    expect(rows[0]!.probe.overhead).toEqual(rows[0]!.probe.reply);
    expect(rows[1]!.probe.overhead).toEqual(rows[1]!.probe.reply);
    const report = floorReport(rows, { messages: 3, gapMs: 5, kinds: ['text', 'video'], load: [0.5, 0.4, 0.3] });
    expect(report).toContain('one client, 3 messages of each kind (text, video) one at a time 5 ms apart');
    expect(report.split('\n').filter((l) => l.startsWith('| ChatFlow') || l.startsWith('| bare'))).toHaveLength(6);
  });
});
