import fc from 'fast-check';
import { SendAck, SendRequest } from '../gen/chatflow/v1/chat';
import { ChatFlowError } from '../domain/errors';
import { decodeRoutedReply, decodeRoutedRequest, decodeYieldReply, encodeRoutedReply, encodeRoutedSend, encodeRoutedYield, PROBE_PAYLOAD } from './routed';

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const request = SendRequest.fromPartial({ sessionId: 's-1', message: { clientMessageId: 'm-1', content: { $case: 'text', text: 'hello' } } });
const b64 = (r: SendRequest) => Buffer.from(SendRequest.encode(r).finish()).toString('base64');

function refusal(f: () => unknown): ChatFlowError {
  try {
    f();
  } catch (err) {
    if (err instanceof ChatFlowError) return err;
    throw new Error(`not a ChatFlowError: ${String(err)}`);
  }
  throw new Error('accepted');
}

describe('requests between gateways', () => {
  it('carries a Send (a message or a ping), a probe and a take-over', () => {
    expect(decodeRoutedRequest(encodeRoutedSend('alice', request))).toEqual({ kind: 'send', clientId: 'alice', request });
    const ping = SendRequest.fromPartial({ sessionId: 's-1', ping: { nonce: 3 } });
    expect(decodeRoutedRequest(encodeRoutedSend('alice', ping))).toEqual({ kind: 'send', clientId: 'alice', request: ping });
    expect(decodeRoutedRequest(PROBE_PAYLOAD)).toEqual({ kind: 'probe' });
    expect(decodeRoutedRequest(encodeRoutedYield('alice'))).toEqual({ kind: 'yield', clientId: 'alice' });
  });

  it.each([
    ['not JSON', Buffer.from('{"clientId":'), 'payload'],
    ['null', json(null), 'payload'],
    ['a string', json('probe'), 'payload'],
    ['an array', json([1, 2]), 'payload'],
    ['no fields', json({}), ''],
    ['a numeric client id', json({ clientId: 5, request: b64(request) }), 'clientId'],
    ['an empty client id', json({ clientId: '', request: b64(request) }), 'clientId'],
    ['a numeric request', json({ clientId: 'alice', request: 123 }), 'request'],
    ['a request that is not base64', json({ clientId: 'alice', request: '%%%' }), 'request'],
    ['probe: false', json({ probe: false }), ''],
    ['a take-over without a client', json({ yield: true }), 'clientId'],
    ['a take-over with an empty client id', json({ yield: true, clientId: '' }), 'clientId'],
    ['yield: false', json({ yield: false, clientId: 'alice' }), 'yield'],
  ])('refuses %s with INVALID_ARGUMENT naming what is wrong', (_what, payload, field) => {
    const e = refusal(() => decodeRoutedRequest(payload));
    expect(e.kind).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(/^malformed request between gateways: /);
    if (field) expect(e.message).toContain(field);
  });

  it('refuses bytes that are not a SendRequest, or one without a message', () => {
    expect(refusal(() => decodeRoutedRequest(json({ clientId: 'alice', request: Buffer.from([0xff, 0xff, 0xff]).toString('base64') }))).message).toMatch(/not a SendRequest/);
    expect(refusal(() => decodeRoutedRequest(json({ clientId: 'alice', request: b64(SendRequest.fromPartial({ sessionId: 's' })) }))).message).toMatch(/no message and no ping/);
  });

  it('never throws anything but a ChatFlowError, whatever the bytes', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.jsonValue().map((v) => new Uint8Array(json(v)))), (bytes) => {
        try {
          decodeRoutedRequest(bytes);
        } catch (err) {
          return err instanceof ChatFlowError && err.kind === 'INVALID_ARGUMENT';
        }
        return true;
      }),
    );
  });
});

describe('replies between gateways', () => {
  const ack = SendAck.fromPartial({ clientMessageId: 'm-1', messageId: 'id-1', seq: 3 });

  it('carries the acknowledgement, and the holder\'s error with its trailers', () => {
    expect(decodeRoutedReply(encodeRoutedReply({ ack: Buffer.from(SendAck.encode(ack).finish()).toString('base64') }))).toEqual(ack);
    const e = refusal(() => decodeRoutedReply(encodeRoutedReply({ code: 'RESOURCE_EXHAUSTED', message: 'busy', trailers: { 'retry-after-ms': '500' } })));
    expect([e.kind, e.message, e.trailers]).toEqual(['RESOURCE_EXHAUSTED', 'busy', { 'retry-after-ms': '500' }]);
  });

  it.each([
    ['not JSON', Buffer.from('<html>')],
    ['null', json(null)],
    ['an ack that is not base64', json({ ack: '!!' })],
    ['an ack that is not a SendAck', json({ ack: Buffer.from([0xff, 0xff, 0xff]).toString('base64') })],
    ['an error without a message', json({ code: 'NOT_FOUND' })],
    ['held', json({ held: true })],
    ['yielded', json({ yielded: true })],
  ])('turns %s into UNAVAILABLE: send again', (_what, payload) => {
    const e = refusal(() => decodeRoutedReply(payload));
    expect(e.kind).toBe('UNAVAILABLE');
    expect(e.message).toMatch(/send again/);
  });

  it('takes from a take-over\'s answer what the replaced stream left unanswered, and nothing from anything else', () => {
    expect(decodeYieldReply(encodeRoutedReply({ yielded: true, unanswered: ['m1', 'm2'] }))).toEqual(['m1', 'm2']);
    for (const other of [json({ yielded: true }), json({ held: true }), json({ yielded: true, unanswered: [1] }), json({ yielded: true, unanswered: ['x'.repeat(300)] }), Buffer.from('<html>')]) {
      expect(decodeYieldReply(other)).toEqual([]);
    }
  });

  it('never passes INTERNAL or an unknown code on to the client', () => {
    expect(refusal(() => decodeRoutedReply(json({ code: 'INTERNAL', message: 'boom' }))).kind).toBe('UNAVAILABLE');
    expect(refusal(() => decodeRoutedReply(json({ code: 'NOPE', message: 'boom' }))).kind).toBe('UNAVAILABLE');
  });
});
