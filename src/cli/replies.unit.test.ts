import { formatBlock, ReplyBoard } from './replies';

const accepted = (clientMessageId: string, messageId: string, seq: number) => ({ clientMessageId, messageId, seq, duplicate: false });
const response = (inReplyTo: string, text: string, seq: number) => ({ messageId: `r-${inReplyTo}`, inReplyTo, seq, text, processingMs: 120 }) as never;

describe('reply blocks', () => {
  it('given two replies streaming interleaved, then each block holds its own whole text under its message\'s label', () => {
    const board = new ReplyBoard();
    board.add('c1', { $case: 'text', text: 'first question' });
    board.add('c2', { $case: 'text', text: 'second question' });
    board.accepted(accepted('c1', 'm1', 4));
    board.accepted(accepted('c2', 'm2', 5));
    for (const [id, word] of [['m1', 'one'], ['m2', 'uno'], ['m1', ' two'], ['m2', ' dos']] as const) board.delta(id, word);
    expect(board.open().map((e) => formatBlock(e, { live: true }))).toEqual([
      '[1] you: "first question" (seq 4)\n[1] bot: one two ▍',
      '[2] you: "second question" (seq 5)\n[2] bot: uno dos ▍',
    ]);
    const second = board.response(response('m2', 'uno dos tres', 7));
    expect(board.finish(second)).toBe('[2] you: "second question" (seq 5)\n[2] bot: uno dos tres\n    (seq 7, processed in 120 ms)');
    expect(board.open().map((e) => e.n)).toEqual([1]);
  });

  it('given a message refused before the log (in_reply_to = client_message_id), then its block says why', () => {
    const board = new ReplyBoard();
    board.add('c1', { $case: 'text', text: ' ' });
    const e = board.error({ inReplyTo: 'c1', code: 'INVALID_ARGUMENT', message: 'the text is empty', seq: 0 } as never);
    expect(formatBlock(e)).toBe('[1] you: (empty text)\n[1] error INVALID_ARGUMENT: the text is empty');
  });

  it('given a message that failed in a way that may pass (retry_after_ms), then its block says when to send it again, as a new message', () => {
    const board = new ReplyBoard();
    board.add('c1', { $case: 'text', text: 'hello' });
    board.accepted(accepted('c1', 'm1', 4));
    const e = board.error({ inReplyTo: 'm1', code: 'UNAVAILABLE', message: 'the model could not answer: overloaded', seq: 5, retryAfterMs: 2_000 } as never);
    expect(formatBlock(e)).toBe('[1] you: "hello" (seq 4)\n[1] error UNAVAILABLE: the model could not answer: overloaded; it may pass: send it again (as a new message) in 2 s');
    const verdict = board.error({ inReplyTo: 'm1', code: 'INVALID_ARGUMENT', message: 'the model refused it', seq: 5, retryAfterMs: 0 } as never);
    expect(formatBlock(verdict)).toBe('[1] you: "hello" (seq 4)\n[1] error INVALID_ARGUMENT: the model refused it');
  });

  it('given a replayed reply to a message of an earlier session, then it is labelled as such', () => {
    const board = new ReplyBoard();
    const e = board.response(response('0b9d2f4e-6c1a-4f7e-9a55-2f3c4d5e6f70', 'answer', 9));
    expect(formatBlock(e)).toBe('[earlier] you: an earlier message (0b9d2f4e…)\n[earlier] bot: answer\n    (seq 9, processed in 120 ms)');
  });

  it('given a long multi-line reply, then its later lines are indented under the label', () => {
    const board = new ReplyBoard();
    board.add('c1', { $case: 'audio', audio: { mimeType: 'audio/wav', data: Buffer.alloc(2048), url: '', sizeBytes: 2048, durationMs: 0 } });
    board.accepted(accepted('c1', 'm1', 2));
    const e = board.response(response('m1', 'line one\nline two', 3));
    expect(formatBlock(e)).toBe('[1] you: [audio audio/wav, 2 KiB] (seq 2)\n[1] bot: line one\n    line two\n    (seq 3, processed in 120 ms)');
  });
});
