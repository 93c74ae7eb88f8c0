import { ownershipError } from './ownership';
import { extensionOf, replyMediaKey, uploadKey } from './media-keys';

describe('ownership', () => {
  it('lets a client reach what it owns and refuses the rest with PERMISSION_DENIED', () => {
    expect(ownershipError('conversation', 'alice', 'alice')).toBeUndefined();
    const e = ownershipError('session', 'alice', 'bob');
    expect(e?.kind).toBe('PERMISSION_DENIED');
    expect(e?.message).toBe('this session belongs to another client');
  });
});

describe('media keys', () => {
  it('names an upload by its client (a safe path segment whatever the id) and message', () => {
    expect(uploadKey('alice', 'm_1', 'audio/wav')).toBe('uploads/YWxpY2U/m_1.wav');
    expect(uploadKey('../../etc', 'm_2', 'video/mp4')).toBe('uploads/Li4vLi4vZXRj/m_2.mp4');
    expect(uploadKey('a', 'm_3', 'application/x-unknown')).toBe('uploads/YQ/m_3');
  });
  it('names reply media by conversation and response', () => {
    expect(replyMediaKey('c1', 'r_1', 'audio/wav')).toBe('replies/c1/r_1.wav');
    expect(replyMediaKey('c1', 'r_1', 'image/png')).toBe('replies/c1/r_1.png');
    expect(extensionOf('image/jpeg')).toBe('.jpg');
  });
});
