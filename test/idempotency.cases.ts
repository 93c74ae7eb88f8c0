import type { ChatStream } from './harness';

/**
 * The idempotency contract, one case per test, run against the embedded
 * server (chaos.e2e) and the real stack (stack-idempotency.e2e). `open` opens a
 * Chat stream for a client and waits for Welcome; `gate` holds the model so a
 * message stays in processing until released (absent on the stack: a slow
 * simulated model plays that part).
 */
export interface IdempotencyTarget {
  open(clientId: string, extra?: Record<string, string>): Promise<ChatStream>;
  /** A client id not used before in this run. */
  fresh(prefix: string): string;
  /** Milliseconds a text reply takes at most (the stack's simulated model is slow). */
  replyWithinMs: number;
}

/** Opens again while the previous stream of the same client is still being released (ALREADY_EXISTS, or UNAVAILABLE + retry-after-ms once its gateway no longer serves it, for a moment). */
export async function openRetrying(open: () => Promise<ChatStream>, ms = 10_000): Promise<ChatStream> {
  for (const end = Date.now() + ms; ; ) {
    try {
      return await open();
    } catch (err) {
      if (!/ALREADY_EXISTS|UNAVAILABLE/.test(String(err)) || Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const accepted = (s: ChatStream, cmid: string) => s.of('accepted').filter((a) => a.accepted.clientMessageId === cmid).map((a) => a.accepted);
const responsesTo = (s: ChatStream, messageId: string) => s.of('response').filter((r) => r.response.inReplyTo === messageId).map((r) => r.response);

export function idempotencyCases(target: () => IdempotencyTarget): void {
  it('answers a client_message_id reused in a new conversation as a new message', async () => {
    const t = target();
    const id = t.fresh('reuse');
    const first = await t.open(id);
    const a = await first.reply(first.text('first conversation', '1'), t.replyWithinMs);
    first.end();
    await first.status;
    const second = await t.open(id);
    expect(second.welcome()!.conversationId).not.toBe(first.welcome()!.conversationId);
    const b = await second.reply(second.text('second conversation', '1'), t.replyWithinMs);
    const ack = accepted(second, '1')[0];
    expect(ack.duplicate).toBe(false);
    expect(ack.messageId).not.toBe(accepted(first, '1')[0].messageId);
    expect(b.inReplyTo).toBe(ack.messageId);
    expect(b.seq).toBeGreaterThan(0);
    expect(a.inReplyTo).not.toBe(b.inReplyTo);
    second.end();
  });

  it('gives a resend of an answered message the original ids and the reply again, also after a reconnect', async () => {
    const t = target();
    const id = t.fresh('resend');
    const s = await t.open(id);
    const reply = await s.reply(s.text('hello once', 'k1'), t.replyWithinMs);
    const original = accepted(s, 'k1')[0];
    s.text('hello once', 'k1');
    await s.until(() => responsesTo(s, original.messageId).length === 2, t.replyWithinMs, 'the reply sent again');
    const again = accepted(s, 'k1')[1];
    expect(again).toEqual({ ...original, duplicate: true });
    expect(responsesTo(s, original.messageId)[1]).toMatchObject({ messageId: reply.messageId, text: reply.text, seq: reply.seq });
    s.cancel();
    await s.status;
    // Another stream (possibly another gateway): the read model answers.
    const back = await t.open(id, { 'x-conversation-id': s.welcome()!.conversationId });
    back.text('hello once', 'k1');
    await back.until(() => responsesTo(back, original.messageId).length === 1, t.replyWithinMs, 'the recorded reply');
    expect(accepted(back, 'k1')).toEqual([{ ...original, duplicate: true }]);
    expect(responsesTo(back, original.messageId)[0]).toMatchObject({ messageId: reply.messageId, text: reply.text });
    back.end();
  });

  it('refuses the same key with different content with a ChatError INVALID_ARGUMENT naming the conflict', async () => {
    const t = target();
    const id = t.fresh('conflict');
    const s = await t.open(id);
    await s.reply(s.text('the original text', 'same-key'), t.replyWithinMs);
    s.text('a different text', 'same-key');
    await s.until((f) => f.some((x) => x.frame?.$case === 'error'), 10_000, 'the conflict error');
    const err = s.of('error')[0].error;
    expect(err).toMatchObject({ inReplyTo: 'same-key', code: 'INVALID_ARGUMENT' });
    expect(err.message).toMatch(/client_message_id "same-key" .*different content/);
    expect(accepted(s, 'same-key')).toHaveLength(1);
    s.cancel();
    await s.status;
    const back = await t.open(id, { 'x-conversation-id': s.welcome()!.conversationId });
    back.text('yet another text', 'same-key');
    await back.until((f) => f.some((x) => x.frame?.$case === 'error'), 10_000, 'the conflict error after a reconnect');
    expect(back.of('error')[0].error).toMatchObject({ inReplyTo: 'same-key', code: 'INVALID_ARGUMENT' });
    back.end();
  });
}

/** The in-processing case needs a model held back; the embedded suite has one, the stack a slow simulated model. */
export function resendWhileProcessingCase(target: () => IdempotencyTarget, hold: () => { release(): void; reset(): void }): void {
  it('gives a resend of a message still in processing its reply once, when ready, on the stream it came in on', async () => {
    const t = target();
    const gate = hold();
    gate.reset();
    const id = t.fresh('inflight');
    const s = await t.open(id);
    s.text('take your time', 'slow-1');
    await s.until(() => accepted(s, 'slow-1').length === 1, 10_000, 'Accepted');
    const original = accepted(s, 'slow-1')[0];
    s.cancel();
    await s.status;
    const back = await t.open(id, { 'x-conversation-id': s.welcome()!.conversationId });
    back.text('take your time', 'slow-1');
    await back.until(() => accepted(back, 'slow-1').length === 1, 10_000, 'the duplicate Accepted');
    expect(accepted(back, 'slow-1')[0]).toEqual({ ...original, duplicate: true });
    expect(responsesTo(back, original.messageId)).toHaveLength(0);
    gate.release();
    await back.until(() => responsesTo(back, original.messageId).length === 1, t.replyWithinMs, 'the reply when ready');
    // Once: nothing more comes for it.
    await new Promise((r) => setTimeout(r, 500));
    expect(responsesTo(back, original.messageId)).toHaveLength(1);
    back.end();
  });
}
