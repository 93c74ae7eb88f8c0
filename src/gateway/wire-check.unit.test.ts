import { ClientFrame } from '../gen/chatflow/v1/chat';
import { decodeChecked, wireFlawOf } from './wire-check';

const encode = (text: string) => Buffer.from(ClientFrame.encode({ frame: { $case: 'message', message: { clientMessageId: 'k', content: { $case: 'text', text } } } }).finish());

describe('strict decoding of client frames', () => {
  it('given valid UTF-8, then the frame as encoded and no flaw', () => {
    const f = decodeChecked(ClientFrame, encode('héllo 😀'));
    expect(f.frame).toEqual({ $case: 'message', message: { clientMessageId: 'k', content: { $case: 'text', text: 'héllo 😀' } } });
    expect(wireFlawOf(f)).toBeUndefined();
  });
  it('given a text that is not UTF-8, then flagged invalid-utf8 (not silently replaced)', () => {
    const bytes = encode('ok XX ok');
    Buffer.from([0xc3, 0x28]).copy(bytes, bytes.indexOf('XX'));
    expect(wireFlawOf(decodeChecked(ClientFrame, bytes))).toBe('invalid-utf8');
  });
  it('given bytes that are not a protobuf message, then an empty frame flagged undecodable (no throw)', () => {
    const f = decodeChecked(ClientFrame, Buffer.from([10, 200, 1, 2]));
    expect(wireFlawOf(f)).toBe('undecodable');
    expect(f.frame).toBeUndefined();
  });
});
