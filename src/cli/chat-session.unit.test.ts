import { EventEmitter } from 'node:events';
import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import type { ChatServiceClient, ClientFrame, ServerFrame, Welcome } from '../gen/chatflow/v1/chat';
import { CliChatSession, type SessionOptions } from './chat-session';
import type { Output } from './output';

/** A Chat stream the test plays the server of: it records what the CLI writes. */
class FakeCall extends EventEmitter {
  readonly written: ClientFrame[] = [];
  halfClosed = false;
  constructor(readonly md: Metadata) {
    super();
  }
  write(f: ClientFrame) {
    this.written.push(f);
    return true;
  }
  end() {
    this.halfClosed = true;
  }
  cancel() {
    this.finish(status.CANCELLED, 'cancelled');
  }
  frame(frame: ServerFrame['frame']) {
    this.emit('data', { frame } as ServerFrame);
  }
  finish(code: status, details: string, md = new Metadata()) {
    this.emit('status', { code, details, metadata: md } as StatusObject);
  }
  messageIds() {
    return this.written.flatMap((f) => (f.frame?.$case === 'message' ? [f.frame.message.clientMessageId] : []));
  }
}

const quiet: Output = { line: () => undefined, error: () => undefined, changed: () => undefined, done: () => undefined, status: () => undefined, close: () => undefined };
const options: SessionOptions = { server: 'test', insecure: true, tls: false, saveDir: '/nonexistent', json: false, timeZone: 'UTC', interactive: false, strict: true, reconnectForMs: 60_000 };

function setup(opts: Partial<SessionOptions> = {}) {
  const calls: FakeCall[] = [];
  const client = { chat: (md: Metadata) => calls[calls.push(new FakeCall(md)) - 1] } as unknown as ChatServiceClient;
  const md = new Metadata();
  md.set('x-timezone', 'UTC');
  const session = new CliChatSession(client, md, { ...options, ...opts }, quiet);
  return { session, calls };
}

const welcome = (sessionId: string, lastSeq = 0): ServerFrame['frame'] => ({
  $case: 'welcome',
  welcome: { sessionId, conversationId: 'conv-1', clientId: 'c', lastSeq, localTime: '', timeZone: 'UTC', firstMessageDeadlineMs: 30_000 } as unknown as Welcome,
});

afterEach(() => jest.useRealTimers());

describe('CliChatSession coming back after a lost connection', () => {
  test('resumes after the last seq seen, names the lost stream, sends again what was not accepted (same id), and ends once answered', async () => {
    jest.useFakeTimers();
    const { session, calls } = setup();
    calls[0]!.frame(welcome('session-1', 4));
    await expect(session.welcomed).resolves.toMatchObject({ sessionId: 'session-1' });
    const answered = session.send({ $case: 'text', text: 'accepted before the loss' });
    const unanswered = session.send({ $case: 'text', text: 'written, never accepted' });
    const [acceptedId, lostId] = calls[0]!.messageIds();
    calls[0]!.frame({ $case: 'accepted', accepted: { clientMessageId: acceptedId!, messageId: 'm-1', seq: 5, duplicate: false } as never });
    calls[0]!.finish(status.UNAVAILABLE, 'Connection dropped');

    // Sent while away: goes out after the next Welcome.
    const whileAway = session.send({ $case: 'text', text: 'typed while away' });
    expect(calls).toHaveLength(1);
    jest.advanceTimersByTime(499);
    expect(calls).toHaveLength(1);
    jest.advanceTimersByTime(1);
    expect(calls).toHaveLength(2);
    const again = calls[1]!;
    expect([again.md.get('x-conversation-id'), again.md.get('x-resume-after'), again.md.get('x-replaces-session'), again.md.get('x-timezone')]).toEqual([['conv-1'], ['5'], ['session-1'], ['UTC']]);
    expect(again.messageIds()).toEqual([]); // nothing before its Welcome
    again.frame(welcome('session-2', 5));
    const awayId = again.messageIds()[1];
    expect(again.messageIds()).toEqual([lostId, awayId]);

    // The reply to the accepted message (replayed), and the two others accepted and answered on the new stream.
    again.frame({ $case: 'response', response: { messageId: 'r-1', inReplyTo: 'm-1', seq: 6, text: 'one' } as never });
    again.frame({ $case: 'accepted', accepted: { clientMessageId: lostId!, messageId: 'm-2', seq: 7, duplicate: false } as never });
    again.frame({ $case: 'accepted', accepted: { clientMessageId: awayId!, messageId: 'm-3', seq: 8, duplicate: false } as never });
    again.frame({ $case: 'response', response: { messageId: 'r-2', inReplyTo: 'm-2', seq: 9, text: 'two' } as never });
    again.frame({ $case: 'response', response: { messageId: 'r-3', inReplyTo: 'm-3', seq: 10, text: 'three' } as never });
    jest.useRealTimers();
    await Promise.all([answered, unanswered, whileAway]);
    expect(session.outstanding).toBe(0);
    session.halfClose();
    expect(again.halfClosed).toBe(true);
    again.finish(status.OK, 'done');
    await expect(session.ended).resolves.toMatchObject({ code: status.OK });
    expect(calls).toHaveLength(2);
  });

  test('failed attempts back off, doubling; past --reconnect-for the session ends with the last status', async () => {
    jest.useFakeTimers();
    const { session, calls } = setup({ reconnectForMs: 3_000 });
    calls[0]!.frame(welcome('session-1'));
    void session.send({ $case: 'text', text: 'waiting' });
    calls[0]!.finish(status.UNAVAILABLE, 'lost');
    jest.advanceTimersByTime(500);
    calls[1]!.finish(status.UNAVAILABLE, 'No connection established');
    jest.advanceTimersByTime(999);
    expect(calls).toHaveLength(2);
    jest.advanceTimersByTime(1);
    expect(calls).toHaveLength(3);
    // 1.5 s lost, the next wait (2 s) would end after the 3 s window.
    calls[2]!.finish(status.UNAVAILABLE, 'still nothing');
    await expect(session.ended).resolves.toMatchObject({ code: status.UNAVAILABLE, details: 'still nothing' });
    jest.advanceTimersByTime(60_000);
    expect(calls).toHaveLength(3);
  });

  test("the server's answers end it: a stream taken over by a newer connection is not taken back", async () => {
    const { session, calls } = setup();
    calls[0]!.frame(welcome('session-1'));
    calls[0]!.finish(status.ALREADY_EXISTS, 'this stream was replaced by a newer connection');
    await expect(session.ended).resolves.toMatchObject({ code: status.ALREADY_EXISTS });
    expect(calls).toHaveLength(1);
  });

  test('Ctrl-C while waiting to come back stops at once; /quit with nothing outstanding ends without coming back', async () => {
    jest.useFakeTimers();
    const a = setup();
    a.calls[0]!.frame(welcome('session-1'));
    a.calls[0]!.finish(status.UNAVAILABLE, 'lost');
    a.session.cancel();
    await expect(a.session.ended).resolves.toMatchObject({ code: status.CANCELLED });
    const b = setup();
    b.calls[0]!.frame(welcome('session-1'));
    b.calls[0]!.finish(status.UNAVAILABLE, 'lost');
    b.session.halfClose();
    await expect(b.session.ended).resolves.toMatchObject({ code: status.OK });
    // Lost after /quit with every reply in: nothing to come back for, and nothing went wrong.
    const c = setup();
    c.calls[0]!.frame(welcome('session-1'));
    c.session.halfClose();
    c.calls[0]!.finish(status.UNAVAILABLE, 'Connection dropped');
    await expect(c.session.ended).resolves.toMatchObject({ code: status.OK, details: 'disconnected' });
    jest.advanceTimersByTime(60_000);
    expect([a.calls.length, b.calls.length, c.calls.length]).toEqual([1, 1, 1]);
  });

  test('back from a loss and closed by the first-message deadline: replies owed, it opens again at once; interactive with none, the next message reconnects', async () => {
    jest.useFakeTimers();
    const owed = setup();
    owed.calls[0]!.frame(welcome('session-1'));
    void owed.session.send({ $case: 'text', text: 'a long answer' });
    owed.calls[0]!.frame({ $case: 'accepted', accepted: { clientMessageId: owed.calls[0]!.messageIds()[0]!, messageId: 'm-1', seq: 1, duplicate: false } as never });
    owed.calls[0]!.finish(status.UNAVAILABLE, 'lost');
    jest.advanceTimersByTime(500);
    owed.calls[1]!.frame(welcome('session-2', 1));
    owed.calls[1]!.finish(status.DEADLINE_EXCEEDED, 'no message within 30000 ms');
    expect(owed.calls).toHaveLength(3);
    expect(owed.calls[2]!.md.get('x-replaces-session')).toEqual(['session-2']);

    const idle = setup({ interactive: true });
    idle.calls[0]!.frame(welcome('session-1'));
    idle.calls[0]!.finish(status.UNAVAILABLE, 'lost');
    jest.advanceTimersByTime(500);
    idle.calls[1]!.frame(welcome('session-2'));
    idle.calls[1]!.finish(status.DEADLINE_EXCEEDED, 'no message within 30000 ms');
    jest.advanceTimersByTime(60_000);
    expect(idle.calls).toHaveLength(2);
    void idle.session.send({ $case: 'text', text: 'back at the keyboard' });
    expect(idle.calls).toHaveLength(3);
    idle.calls[2]!.frame(welcome('session-3'));
    expect(idle.calls[2]!.written).toHaveLength(1);

    // A first stream closed by the deadline ends the session: the rule is that a client sends something.
    const first = setup({ interactive: true });
    first.calls[0]!.frame(welcome('session-1'));
    first.calls[0]!.finish(status.DEADLINE_EXCEEDED, 'no message within 30000 ms');
    await expect(first.session.ended).resolves.toMatchObject({ code: status.DEADLINE_EXCEEDED });
  });
});
