import fc from 'fast-check';
import { Event } from '../gen/chatflow/v1/events';
import { decodeReplyUpdate, encodeReplyUpdate, outcomeUpdate, withSeq, type ReplyUpdate } from './messages';

describe('withSeq: the seq added to an update encoded before the append', () => {
  it('reads back as the update with that seq, whatever the update and the seq', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.option(fc.string(), { nil: undefined }), fc.option(fc.nat(), { nil: undefined }), fc.maxSafeNat(), (inReplyTo, text, attempt, before, seq) => {
        const update: ReplyUpdate = { inReplyTo, attempt, seq: before, update: { $case: 'ready', ready: { responseId: 'r1', text, processingMs: 3 } } };
        const read = decodeReplyUpdate(withSeq(encodeReplyUpdate(update), seq));
        expect(read).toEqual(decodeReplyUpdate(encodeReplyUpdate({ ...update, seq })));
        expect(read.seq).toBe(seq);
      }),
    );
  });

  it('adds the very bytes the library encodes for the field', () => {
    fc.assert(
      fc.property(fc.oneof(fc.maxSafeNat(), fc.integer({ min: 0, max: 300 }), fc.constantFrom(0, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 32, Number.MAX_SAFE_INTEGER)), (seq) => {
        const update: ReplyUpdate = { inReplyTo: 'm1', update: { $case: 'failed', failed: { code: 'INTERNAL', message: 'x', retryAfterMs: 0 } } };
        expect([...withSeq(encodeReplyUpdate(update), seq)]).toEqual([...encodeReplyUpdate(update), ...encodeReplyUpdate({ inReplyTo: '', seq })]);
      }),
    );
  });

  it('refuses a seq the log cannot give', () => {
    for (const seq of [-1, 1.5, Number.NaN, 2 ** 53]) expect(() => withSeq(new Uint8Array(), seq)).toThrow(RangeError);
  });
});

describe('outcomeUpdate: what a gateway is told of an outcome', () => {
  const base = { eventId: 'e1', time: new Date('2026-11-26T10:00:00Z'), clientId: 'alice', conversationId: 'c1', sessionId: 's1' };

  it('a reply is ready, a failure failed, with no seq (only the log gives it); any other event is nothing to tell', () => {
    const reply = Event.fromPartial({ ...base, payload: { $case: 'responseProduced', responseProduced: { messageId: 'r1', inReplyTo: 'm1', text: 'hi', processingMs: 12 } } });
    expect(outcomeUpdate(reply)).toEqual({ inReplyTo: 'm1', update: { $case: 'ready', ready: { responseId: 'r1', time: base.time, text: 'hi', voice: undefined, image: undefined, processingMs: 12 } } });
    const failure = Event.fromPartial({ ...base, payload: { $case: 'processingFailed', processingFailed: { inReplyTo: 'm2', code: 'UNAVAILABLE', message: 'down', retryAfterMs: 500 } } });
    expect(outcomeUpdate(failure)).toEqual({ inReplyTo: 'm2', update: { $case: 'failed', failed: { code: 'UNAVAILABLE', message: 'down', retryAfterMs: 500 } } });
    expect(outcomeUpdate(Event.fromPartial({ ...base, payload: { $case: 'messageReceived', messageReceived: { messageId: 'm3' } } }))).toBeUndefined();
  });
});
