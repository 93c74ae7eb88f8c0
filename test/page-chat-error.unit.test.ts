import { chatErrorView } from '../gateway/web/chat-error';

/** How the chat page words a ChatError (gateway/web/chat-error.ts): the server's words, and when to send again. */
describe('the page, when a message is not answered or not taken', () => {
  const error = (code: string, message: string, retryAfterMs = 0n) => ({ code, message, retryAfterMs });

  it('given a failure that may pass (the model rate-limited, with retry_after_ms), then it says when the message can be sent again, and is not called too large', () => {
    expect(chatErrorView(error('RESOURCE_EXHAUSTED', 'the model could not answer: rate limited', 3_000n))).toEqual({
      text: 'the model could not answer: rate limited; you can send it again in 3 s',
      sendAgainInMs: 3_000,
    });
    expect(chatErrorView(error('UNAVAILABLE', 'could not listen to the message: the speech engine is down', 1_500n)).text).toBe(
      'could not listen to the message: the speech engine is down; you can send it again in 2 s',
    );
  });

  it('given the server\'s memory nearly full (RESOURCE_EXHAUSTED, no retry_after_ms), then it is told in the server\'s words alone', () => {
    const words = "the server's memory is nearly full (290 MiB of 300 MiB in use after a full collection): it takes no new messages or connections";
    expect(chatErrorView(error('RESOURCE_EXHAUSTED', words))).toEqual({ text: words });
  });

  it('given a verdict on the message itself, then it is the server\'s words, with no offer to send it again', () => {
    expect(chatErrorView(error('INVALID_ARGUMENT', 'the model refused the message: it asks for what it may not give'))).toEqual({
      text: 'the model refused the message: it asks for what it may not give',
    });
  });

  it('given a code the words do not explain (a bug in the server), then the code is shown beside them, and something is always said', () => {
    expect(chatErrorView(error('INTERNAL', 'the reply could not be produced')).text).toBe('the reply could not be produced (INTERNAL)');
    expect(chatErrorView(error('UNAVAILABLE', '')).text).toBe('failed (UNAVAILABLE)');
  });
});
