// The flood tool end to end, small: one client pipelines 300 texts while two
// others chat, against embedded ChatFlow with no bound per client and with a
// bound of 50 unanswered messages. Times are not asserted (the machine is
// shared); what is: every message of both answered, the bystanders measured
// during the flood, and the flood held to the bound.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { floodReport, measureFlood } from './flood';

jest.setTimeout(120_000);

describe('loadtest/flood.ts', () => {
  it('answers the flood and the bystanders with and without the bound, and times the bystanders during the flood', async () => {
    const logDir = await mkdtemp(join(tmpdir(), 'chatflow-flood-test-'));
    try {
      const opts = { flood: 300, bystanders: 2, chatS: 5 };
      const rows = [await measureFlood(100_000, opts, logDir), await measureFlood(50, opts, logDir)];
      for (const r of rows) {
        expect([r.bound, r.flood.messages, r.flood.failed, r.bystanderFailed]).toEqual([r.bound, 300, 0, 0]);
        expect(r.waited.length).toBeGreaterThan(0);
        for (const w of r.waited) expect(w).toBeGreaterThanOrEqual(0);
      }
      // 300 texts of 0–1 s (0.5 s on average) with 50 at a time take at least ~3 s; all at once, ~1 s.
      expect(rows[1]!.flood.ms).toBeGreaterThan(2_000);
      const report = floodReport(rows, { ...opts, load: [0.5, 0.4, 0.3] });
      expect(report).toContain('one client pipelines 300 texts at once, 2 others send one at a time');
      expect(report.split('\n').filter((l) => /^\| (100,000|50) \|/.test(l))).toHaveLength(2);
    } finally {
      await rm(logDir, { recursive: true, force: true });
    }
  });
});
