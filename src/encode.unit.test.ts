import { ServerFrame } from './gen/chatflow/v1/chat';
import { Event } from './gen/chatflow/v1/events';
import { encode, encodeToBuffer } from './encode';

describe('encoding with one shared writer', () => {
  const big: ServerFrame = { frame: { $case: 'delta', delta: { inReplyTo: 'm_1', textDelta: 'x'.repeat(5000) } } };
  const small: ServerFrame = { frame: { $case: 'pong', pong: { nonce: 7, serverTime: new Date(0) } } };

  it('gives the same bytes as the generated encoder, whatever came before', () => {
    expect(encode(ServerFrame, big)).toEqual(ServerFrame.encode(big).finish());
    expect(encode(ServerFrame, small)).toEqual(ServerFrame.encode(small).finish());
    expect(ServerFrame.decode(encodeToBuffer(ServerFrame, big))).toEqual(big);
  });

  it('hands out bytes that later encodings do not overwrite', () => {
    const first = encode(ServerFrame, small);
    const copy = Uint8Array.from(first);
    encode(ServerFrame, big);
    expect(first).toEqual(copy);
  });

  it('a message that fails to encode leaves nothing behind for the next one', () => {
    // A string field whose value throws half-way through the message (after eventId and clientId are written).
    const poison = { toString: () => { throw new Error('not a string'); } };
    const bad = { eventId: 'e', clientId: 'c', payload: { $case: 'messageReceived', messageReceived: { messageId: poison, content: { $case: 'text', text: 'hi' } } } } as unknown as Event;
    expect(() => encode(Event, bad)).toThrow();
    expect(encode(ServerFrame, small)).toEqual(ServerFrame.encode(small).finish());
  });

  it('gives the same bytes after a message larger than the writer keeps', () => {
    const huge: ServerFrame = { frame: { $case: 'delta', delta: { inReplyTo: 'm_2', textDelta: 'y'.repeat(2 << 20) } } };
    expect(ServerFrame.decode(encode(ServerFrame, huge))).toEqual(huge);
    expect(encode(ServerFrame, small)).toEqual(ServerFrame.encode(small).finish());
  });
});
