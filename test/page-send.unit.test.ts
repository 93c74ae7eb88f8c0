import { Code, ConnectError } from '@connectrpc/connect';
import { onSendRefused, SEND_ATTEMPTS } from '../gateway/web/send-outcome';

/** What the chat page does with a Send the server refused (gateway/web/send-outcome.ts). */
describe('the page, when a Send is refused', () => {
  const refusal = (code: Code, message: string, retryAfterMs?: number) =>
    new ConnectError(message, code, retryAfterMs === undefined ? undefined : new Headers({ 'retry-after-ms': String(retryAfterMs) }));

  it('given the server too busy to read it (RESOURCE_EXHAUSTED with retry-after-ms), then it sends it again when told, and is not called too large', () => {
    const busy = refusal(Code.ResourceExhausted, 'too many uploads are being received; send again in 3000 ms', 3_000);
    expect(onSendRefused(busy, 0)).toEqual({ retryInMs: 3_000 });
    expect(onSendRefused(busy, SEND_ATTEMPTS)).toEqual({ text: 'Server busy: too many uploads are being received; send again in 3000 ms', retryable: true });
  });

  it('given media over the limit or the server\'s memory nearly full (RESOURCE_EXHAUSTED, no retry-after-ms), then it is shown failed at once, in the server\'s words', () => {
    expect(onSendRefused(refusal(Code.ResourceExhausted, 'audio is 9 MiB; the limit is 8 MiB'), 0)).toEqual({ text: 'audio is 9 MiB; the limit is 8 MiB', retryable: false });
    const heapFull = "the server's memory is nearly full (290 MiB of 300 MiB in use after a full collection): it takes no new messages or connections";
    expect(onSendRefused(refusal(Code.ResourceExhausted, heapFull), 0)).toEqual({ text: heapFull, retryable: false });
  });

  it('given a refusal in passing, then it is sent again after a growing pause, or after the server\'s retry-after-ms when it says one', () => {
    const down = refusal(Code.Unavailable, 'the gateway holding this session did not answer; send again');
    expect([0, 1, 2].map((a) => onSendRefused(down, a))).toEqual([{ retryInMs: 500 }, { retryInMs: 1_000 }, { retryInMs: 2_000 }]);
    expect(onSendRefused(down, SEND_ATTEMPTS)).toEqual({ text: 'the gateway holding this session did not answer; send again', retryable: true });
    expect(onSendRefused(refusal(Code.Unavailable, 'disk full; send again', 1_500), 0)).toEqual({ retryInMs: 1_500 });
  });

  it('given a refusal that sending again cannot fix, then it is shown failed in the server\'s words', () => {
    expect(onSendRefused(refusal(Code.InvalidArgument, 'text is empty'), 0)).toEqual({ text: 'text is empty', retryable: false });
    expect(onSendRefused(refusal(Code.NotFound, 'session s-1 is not open: connect first'), 0)).toEqual({ text: 'Not delivered (the session moved): session s-1 is not open: connect first', retryable: true });
  });
});
