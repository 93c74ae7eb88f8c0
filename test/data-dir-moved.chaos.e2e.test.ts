import { cp, mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connected, metadataFor, startTestApp, unary, type ChatStream, type TestApp } from './harness';

/*
 * A careless operator restores a backup, or "starts afresh", while the server
 * still runs: `mv data data.old && cp -a backup data`, or `rm -rf data`. The
 * server holds its log file open, so its writes follow the file to where it
 * went (or into a file no path names any more). Before, it went on
 * acknowledging messages there: Accepted, and gone once it restarted on the
 * folder now at its path. An acknowledged message must be in the log the
 * server reads when it starts again.
 */
jest.setTimeout(60_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until `clientMessageId` got Accepted or a ChatError: which one. */
async function outcomeOf(s: ChatStream, clientMessageId: string): Promise<{ accepted: boolean; error?: { code: string; message: string } }> {
  await s.until((f) => s.messageIdOf(clientMessageId) !== undefined || s.of('error').some((e) => e.error.inReplyTo === clientMessageId), 15_000, `an answer to ${clientMessageId}`);
  const error = s.of('error').find((e) => e.error.inReplyTo === clientMessageId)?.error;
  return s.messageIdOf(clientMessageId) !== undefined ? { accepted: true } : { accepted: false, error: { code: error!.code, message: error!.message } };
}

async function texts(t: TestApp, clientId: string, conversationId: string): Promise<string[]> {
  const res = await unary<{ conversationId: string; pageSize: number }, { messages: { text: string; author: number }[] }>(
    t.history.listMessages.bind(t.history) as never, { conversationId, pageSize: 1000 }, await metadataFor(t, clientId));
  return res.messages.map((m) => m.text);
}

describe.each([
  ['moved away and a copy put in its place', async (dir: string) => {
    await rename(dir, `${dir}.old`);
    await cp(`${dir}.old`, dir, { recursive: true, filter: (src) => !src.endsWith('LOCK') });
  }],
  ['removed', async (dir: string) => rm(dir, { recursive: true, force: true })],
])('chaos: the data dir %s while the server runs', (_, tamper) => {
  let dir: string;
  let t: TestApp;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chatflow-moved-'));
    t = await startTestApp({ CHATFLOW_AUTH_SECRET: 's'.repeat(40) }, {}, dir);
  });
  afterEach(async () => {
    await t.close().catch(() => undefined);
    await rm(`${dir}.old`, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  });

  it('acknowledges no message into the log it no longer finds at its path; after a restart every acknowledged message is there', async () => {
    const s = await connected(t, 'alice');
    const conversationId = s.welcome()!.conversationId;
    await s.reply(s.text('before'));
    await tamper(dir);
    const sent: string[] = [];
    const outcomes = [];
    for (let i = 0; i < 5; i++) {
      const text = `after ${i}`;
      sent.push(text);
      outcomes.push({ text, ...(await outcomeOf(s, s.text(text))) });
      await sleep(50);
    }
    const accepted = outcomes.filter((o) => o.accepted).map((o) => o.text);
    for (const o of outcomes.filter((x) => !x.accepted)) {
      expect(o.error!.code).toBe('UNAVAILABLE');
      expect(o.error!.message).toMatch(/moved or removed/);
    }
    const health = await fetch(`${t.app.httpUrl}/healthz`);
    expect(health.status).toBe(503);
    expect(await health.text()).toMatch(/moved or removed/);
    s.cancel();
    await t.restart();
    const kept = await texts(t, 'alice', conversationId).catch(() => [] as string[]);
    expect(accepted.filter((x) => !kept.includes(x))).toEqual([]);
  });
});

describe('chaos: the data dir moved away and back while the server runs', () => {
  let dir: string;
  let t: TestApp;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chatflow-moved-'));
    t = await startTestApp({ CHATFLOW_AUTH_SECRET: 's'.repeat(40) }, {}, dir);
  });
  afterAll(async () => t.close());

  it('takes messages again, with no restart, once the log is back at its path', async () => {
    const s = await connected(t, 'bob');
    await s.reply(s.text('before'));
    await rename(dir, `${dir}.old`);
    expect(await outcomeOf(s, s.text('while away'))).toMatchObject({ accepted: false, error: { code: 'UNAVAILABLE' } });
    await rename(`${dir}.old`, dir);
    let back = false;
    for (let i = 0; i < 50 && !back; i++) {
      await sleep(100);
      back = (await fetch(`${t.app.httpUrl}/healthz`)).status === 200;
    }
    expect(back).toBe(true);
    await s.reply(s.text('back'));
    s.end();
  });
});
