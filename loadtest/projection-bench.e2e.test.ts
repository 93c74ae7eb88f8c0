// The projection micro-benchmark, tiny: it must apply every event it times,
// through the runner the projector role runs, so its figures stay about that.
import { benchProjections } from './projection-bench';
import { REPO } from './target/process';

jest.setTimeout(120_000);

describe('loadtest/projection-bench.ts', () => {
  it('projects every message and its reply into the messages read model, in each round, and times them', async () => {
    const rounds = await benchProjections({ messages: 300, rounds: 2, dirs: [REPO] });
    expect(rounds.map((r) => [r.round, r.documents])).toEqual([
      [0, 600],
      [1, 600],
    ]);
    for (const r of rounds) {
      expect(r.wallUs).toBeGreaterThan(0);
      expect(r.cpuUs).toBeGreaterThan(0);
    }
  });
});
