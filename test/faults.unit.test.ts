import { markdownTable, summaryTable, violations, type FaultResult } from './faults';

const survived: Omit<FaultResult, 'violations'> = {
  fault: 'worker-kill', what: 'a worker killed', load: { clients: 2, rate: 1, audioEvery: 0, warmupMs: 1, faultMs: 1, afterMs: 1, leaseMs: 1_000 },
  sent: 10, accepted: 10, lost: 0, duplicated: 0, unanswered: 0, undelivered: 0, deliveredTwice: 0, failed: 0, refused: 0, neverAcked: 0,
  nonRetryable: {}, retryable: { 'stream UNAVAILABLE': 2 }, statusDetails: {},
  admission: { at: '', slots: 2, openStreams: 2, disconnected: 0, maxClients: 50, duplicateClients: 0, streamsWithoutSlot: 0, slotsWithoutStream: 0, connectedMetric: 2, ok: true },
  baselineP99Ms: 500, longestStallMs: 1_200, longestReplyMs: 3_000, recoveryMs: 0, reconnects: 2, durationMs: 1,
  probe: { mongoSlowestMs: 30, mongoSlowestAt: 100, eventLoopLagMs: { 'worker-1': 20 } }, lostSamples: [],
  undeliveredSamples: [], readback: { first: { 9: 700 }, last: { 9: 700 }, fetches: 2, moved: [], short: [] }, acceptedPastEnd: 0,
};

describe('fault matrix scoring', () => {
  it('does not pass a read-back that stopped short of the log\'s end for the whole log', () => {
    const readback = { ...survived.readback, last: { 9: 657 }, short: [{ partition: 9, read: 587, end: 657 }] };
    expect(violations({ ...survived, readback, acceptedPastEnd: 1 })).toEqual([
      'the read-back of the log stopped short (lost and unanswered unknown): partition 9 read to 587 of 657',
      '1 accepted messages at positions past the log\'s end',
    ]);
  });

  it('finds nothing wrong when every invariant holds (retryable statuses are allowed)', () => {
    expect(violations(survived)).toEqual([]);
  });

  it('names each broken invariant with its number', () => {
    const v = violations({
      ...survived, lost: 1, duplicated: 2, unanswered: 3, undelivered: 4, failed: 5, nonRetryable: { 'ChatError INTERNAL': 6 },
      admission: { ...survived.admission, slots: 1, streamsWithoutSlot: 1, ok: false },
    });
    expect(v).toEqual([
      '1 accepted messages missing from the log',
      '2 messages with more than one reply or failure in the log',
      '3 accepted messages never answered',
      '4 replies in the log never delivered to their connected client',
      '5 accepted messages failed for good (a transient fault)',
      'non-retryable statuses for a transient fault: ChatError INTERNAL ×6',
      'admission one lease after: 1 slots for 2 open streams (max 50), 0 clients not back, 0 clients twice, 1 streams without a slot, 0 slots without a stream, gateways count 2',
    ]);
  });

  it('a run where nothing was accepted is not a survived fault', () => {
    expect(violations({ ...survived, accepted: 0 })).toEqual(['nothing was accepted']);
  });

  it('prints one row per run, a miss in bold', () => {
    const t = markdownTable([{ ...survived, violations: [] }, { ...survived, duplicated: 7, recoveryMs: null, violations: ['x'] }]).split('\n');
    expect(t).toHaveLength(4);
    expect(t[2]).toBe('| worker-kill | 10 | 0 | 0 | 0 | 0 | 0 | 0 | ok (2 slots, 2 streams) | 1.2 s | 3.0 s | 0.0 s | hit |');
    expect(t[3]).toContain('| **7** |');
    expect(t[3]).toMatch(/\| never \| miss \|$/);
  });
});

describe('fault matrix summary', () => {
  it('sums what must be 0 per run, gives ranges of the rest and hits out of runs', () => {
    const runs: FaultResult[] = [
      { ...survived, accepted: 900, longestStallMs: 1_000, recoveryMs: 500, violations: [] },
      { ...survived, accepted: 1_000, duplicated: 3, longestStallMs: 4_000, recoveryMs: null, violations: ['x'] },
    ];
    const row = summaryTable(runs).split('\n')[2];
    expect(row).toBe('| worker-kill | 2 | 900–1000 | 0 | **0, 3** | 0 | 0 | 0 | 0 | ok 2/2 | 1.0–4.0 | 1 never; 0.5 | **1/2** |');
  });
});
