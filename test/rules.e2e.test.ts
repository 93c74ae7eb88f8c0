import { Metadata, status } from '@grpc/grpc-js';
import { connected, codeName, metric, openChat, startTestApp, type TestApp } from './harness';

/** The rules table of DESIGN.md, end to end, against the real server. */
describe('admission and connection rules', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ CHATFLOW_ALLOWED_TIMEZONES: '', CHATFLOW_RETRY_AFTER_MS: '1500' });
  });
  afterAll(async () => t.close());

  it('admits exactly 50 of 60 clients connecting at once; the other 10 get RESOURCE_EXHAUSTED with retry-after-ms', async () => {
    const streams = await Promise.all(Array.from({ length: 60 }, (_, i) => openChat(t, `crowd-${i}`)));
    const outcomes = await Promise.all(
      streams.map((s) =>
        Promise.race([
          s.until((f) => f.some((x) => x.frame?.$case === 'welcome'), 15_000, 'welcome').then(() => 'admitted' as const),
          s.status.then((st) => st),
        ]).catch(() => s.status),
      ),
    );
    const admitted = outcomes.filter((o) => o === 'admitted');
    const refused = outcomes.filter((o) => o !== 'admitted') as import('@grpc/grpc-js').StatusObject[];
    expect(admitted).toHaveLength(50);
    expect(refused).toHaveLength(10);
    for (const r of refused) {
      expect(codeName(r.code)).toBe('RESOURCE_EXHAUSTED');
      expect(r.details).toMatch(/server full/);
      expect(r.metadata.get('retry-after-ms')).toEqual(['1500']);
    }
    expect(await metric(t, 'chatflow_clients_connected')).toBe(50);
    // Leaving frees slots for the next clients.
    const leaving = streams.filter((_, i) => outcomes[i] === 'admitted');
    for (const s of leaving) s.cancel();
    await waitFor(async () => (await metric(t, 'chatflow_clients_connected')) === 0);
    const next = await connected(t, 'after-crowd');
    next.cancel();
  });

  it('refuses a second stream of a connected client with ALREADY_EXISTS, and the first keeps working', async () => {
    const first = await connected(t, 'twice');
    const second = await openChat(t, 'twice');
    const st = await second.status;
    expect(codeName(st.code)).toBe('ALREADY_EXISTS');
    expect(st.details).toMatch(/already connected/);
    const cm = first.text('still here?');
    await first.reply(cm);
    first.end();
    expect(codeName((await first.status).code)).toBe('OK');
  });

  it.each([
    ['missing', '', /missing x-timezone/],
    ['not a zone', 'Mars/Olympus_Mons', /not an IANA time zone/],
    ['an offset', '+02:00', /not an IANA time zone/],
  ])('refuses a %s time zone with INVALID_ARGUMENT', async (_, tz, message) => {
    const s = await openChat(t, `tz-${Math.random()}`.replace('.', ''), { 'x-timezone': tz });
    const st = await s.status;
    expect(codeName(st.code)).toBe('INVALID_ARGUMENT');
    expect(st.details).toMatch(message);
  });

  it('refuses a missing or bad token with UNAUTHENTICATED', async () => {
    const md = new Metadata();
    md.set('x-timezone', 'UTC');
    const noToken = t.chat.chat(md);
    noToken.on('error', () => undefined);
    const st = await new Promise<import('@grpc/grpc-js').StatusObject>((r) => noToken.on('status', r));
    expect(codeName(st.code)).toBe('UNAUTHENTICATED');
    const bad = await openChat(t, 'x', { authorization: 'Bearer not.a.jwt' });
    expect(codeName((await bad.status).code)).toBe('UNAUTHENTICATED');
    // The insecure switch is off: x-client-id alone is not an identity.
    const insecure = await openChat(t, 'x', { authorization: '', 'x-client-id': 'x' });
    expect(codeName((await insecure.status).code)).toBe('UNAUTHENTICATED');
  });

  it('refuses another client\'s conversation (PERMISSION_DENIED) and an unknown one (NOT_FOUND)', async () => {
    const owner = await connected(t, 'owner');
    const conversationId = owner.welcome()!.conversationId;
    await owner.reply(owner.text('mine'));
    const thief = await openChat(t, 'thief', { 'x-conversation-id': conversationId });
    expect(codeName((await thief.status).code)).toBe('PERMISSION_DENIED');
    const lost = await openChat(t, 'lost', { 'x-conversation-id': 'no-such-conversation' });
    expect(codeName((await lost.status).code)).toBe('NOT_FOUND');
    owner.end();
  });

  it('refuses a malformed x-resume-after with INVALID_ARGUMENT', async () => {
    const s = await openChat(t, 'resume-bad', { 'x-resume-after': 'yesterday' });
    expect(codeName((await s.status).code)).toBe('INVALID_ARGUMENT');
  });

  it('answers a ping with a pong, which does not count as the first message', async () => {
    const s = await connected(t, 'pinger');
    s.call.write({ frame: { $case: 'ping', ping: { nonce: 42 } } });
    await s.until((f) => f.some((x) => x.frame?.$case === 'pong'), 5000, 'pong');
    expect(s.of('pong')[0].pong.nonce).toBe(42);
    s.cancel();
  });
});

describe('time-zone allow-list', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ CHATFLOW_ALLOWED_TIMEZONES: 'Europe/Paris,UTC' });
  });
  afterAll(async () => t.close());

  it('refuses a real zone outside the allow-list with PERMISSION_DENIED and admits one inside', async () => {
    const tokyo = await openChat(t, 'tokyo', { 'x-timezone': 'Asia/Tokyo' });
    const st = await tokyo.status;
    expect(codeName(st.code)).toBe('PERMISSION_DENIED');
    expect(st.details).toMatch(/Europe\/Paris, UTC/);
    const paris = await connected(t, 'paris');
    expect(paris.welcome()!.localTime).toMatch(/[+-]0[12]:00$/);
    paris.cancel();
  });
});

describe('first-message deadline', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ CHATFLOW_MAX_CLIENTS: '1', CHATFLOW_FIRST_MESSAGE_TIMEOUT_MS: '400' });
  });
  afterAll(async () => t.close());

  it('closes a silent stream with DEADLINE_EXCEEDED and gives its slot to the next client', async () => {
    const silent = await connected(t, 'silent');
    expect(silent.welcome()!.firstMessageDeadlineMs).toBe(400);
    const blocked = await openChat(t, 'waiting');
    expect(codeName((await blocked.status).code)).toBe('RESOURCE_EXHAUSTED');
    const st = await silent.status;
    expect(codeName(st.code)).toBe('DEADLINE_EXCEEDED');
    expect(st.details).toMatch(/no message within 400 ms/);
    const next = await connected(t, 'waiting');
    // A client that talks in time keeps its stream past the deadline.
    await next.reply(next.text('hello in time'));
    await new Promise((r) => setTimeout(r, 600));
    expect(next.isDone()).toBe(false);
    next.end();
    expect(codeName((await next.status).code)).toBe('OK');
  });

  it('does not count a refused message as the first message', async () => {
    const s = await connected(t, 'refused-only');
    s.text('   ');
    await s.until((f) => f.some((x) => x.frame?.$case === 'error'), 5000, 'chat error');
    expect(codeName((await s.status).code)).toBe('DEADLINE_EXCEEDED');
  });
});

async function waitFor(cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

export { status };

describe('connection rate per client', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ CHATFLOW_CONNECT_BURST: '3', CHATFLOW_CONNECTS_PER_MINUTE: '12' });
  });
  afterAll(async () => t.close());

  it('holds a client reconnecting in a loop to the limit with RESOURCE_EXHAUSTED + retry-after-ms, lets it in once it waits, and leaves other clients alone', async () => {
    // A burst of 3, then one every 5 s: the fourth attempt in a row is refused, saying when to come back.
    for (let i = 0; i < 3; i++) {
      const s = await connected(t, 'looper');
      s.cancel();
      await waitFor(async () => (await metric(t, 'chatflow_clients_connected')) === 0);
    }
    const held = await openChat(t, 'looper');
    const st = await held.status;
    expect(codeName(st.code)).toBe('RESOURCE_EXHAUSTED');
    expect(st.details).toMatch(/too many connections from client "looper": at most 12 a minute \(3 in a row\); retry in \d+ ms/);
    const wait = Number(st.metadata.get('retry-after-ms')[0]);
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(5_000);
    expect(await metric(t, 'chatflow_admissions_refused_total{reason="rate_limited"}')).toBe(1);
    // Another client is not held back by the looper's count.
    const other = await connected(t, 'bystander');
    other.cancel();
    // Waiting as told lets the looper in.
    await new Promise((r) => setTimeout(r, wait));
    const back = await connected(t, 'looper');
    back.cancel();
  }, 20_000);
});
