import { spawn, type ChildProcess } from 'node:child_process';
import { appendFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { credentials, Metadata } from '@grpc/grpc-js';
import { ChatServiceClient } from '../src/gen/chatflow/v1/chat';
import { HistoryServiceClient, Author, type HistoryMessage } from '../src/gen/chatflow/v1/history';
import { TokenAuthority, loadOrCreateSecret } from '../src/auth/tokens';
import { allMessages, ChatStream, connected, metadataFor, startTestApp, type TestApp } from './harness';
import { withoutEngines } from './engines';

/** Every history entry of a conversation, without the signed URLs (they carry an expiry). */
async function historyOf(history: HistoryServiceClient, md: Metadata, conversationId: string): Promise<HistoryMessage[]> {
  const all = await allMessages(history, md, conversationId);
  return all.map((m) => JSON.parse(JSON.stringify(m, (k, v) => (k === 'url' ? undefined : v))));
}

describe('durability of the embedded default', () => {
  let t: TestApp;
  afterEach(async () => t?.close());

  it('loses no accepted message across a restart, and replay rebuilds an identical history', async () => {
    t = await startTestApp({ CHATFLOW_SIM_DELAY_SCALE: '0.5', CHATFLOW_SHUTDOWN_GRACE_MS: '50' });
    const s = await connected(t, 'restarter');
    const conversationId = s.welcome()!.conversationId;
    const sent = Array.from({ length: 30 }, (_, i) => s.text(`message ${i}`));
    await s.until(() => sent.every((cm) => s.messageIdOf(cm)), 10_000, 'all accepted');
    // Stop while most replies are still being produced.
    await t.restart();
    const back = await connected(t, 'restarter', { 'x-conversation-id': conversationId, 'x-resume-after': '0' });
    const ids = sent.map((cm) => s.messageIdOf(cm)!);
    await back.until((f) => ids.every((id) => f.some((x) => x.frame?.$case === 'response' && x.frame.response.inReplyTo === id)), 20_000, 'every reply');
    back.end();
    await back.status;

    const md = await metadataFor(t, 'restarter');
    const before = await historyOf(t.history, md, conversationId);
    const bot = before.filter((m) => m.author === Author.AUTHOR_BOT);
    expect(bot.map((m) => m.inReplyTo).sort()).toEqual([...ids].sort()); // exactly one reply each
    await t.restart();
    expect(await historyOf(t.history, md, conversationId)).toEqual(before);
  }, 60_000);

  it('recovers a torn last record in the event log and keeps every earlier event', async () => {
    t = await startTestApp();
    const s = await connected(t, 'torn');
    const conversationId = s.welcome()!.conversationId;
    for (let i = 0; i < 5; i++) await s.reply(s.text(`m${i}`));
    s.end();
    await s.status;
    const md = await metadataFor(t, 'torn');
    const before = await historyOf(t.history, md, conversationId);
    await t.app.stop();
    // A write cut short by a crash: a record header promising more bytes than exist.
    await appendFile(join(t.dataDir, 'log', 'events.log'), Buffer.from([0xff, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x78, 1, 2, 3]));
    await t.restart();
    expect(await historyOf(t.history, md, conversationId)).toEqual(before);
    expect((await readdir(join(t.dataDir, 'log'))).some((f) => f.startsWith('events.log.corrupt-'))).toBe(true);
    // And the log keeps working.
    const again = await connected(t, 'torn', { 'x-conversation-id': conversationId });
    await again.reply(again.text('after recovery'));
    again.end();
  }, 30_000);
});

describe('crash (kill -9) of the process', () => {
  const root = resolve(__dirname, '..');
  let dataDir: string;
  let child: ChildProcess | undefined;

  const start = async (): Promise<{ proc: ChildProcess; grpc: string }> => {
    const proc = spawn(process.execPath, ['--require', 'tsx/cjs', 'src/main.ts'], {
      cwd: root,
      env: {
        // The embedded default, also when the shell points at the stack (CI does).
        ...withoutEngines(process.env),
        CHATFLOW_GRPC_ADDR: '127.0.0.1:0',
        CHATFLOW_HTTP_ADDR: '127.0.0.1:0',
        CHATFLOW_DATA_DIR: dataDir,
        CHATFLOW_SIM_DELAY_SCALE: '1',
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const grpc = await new Promise<string>((res, rej) => {
      const timer = setTimeout(() => rej(new Error('server did not start')), 30_000);
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        try {
          const rec = JSON.parse(line);
          if (rec.msg === 'ChatFlow ready') {
            clearTimeout(timer);
            res(rec.grpc);
          }
        } catch {
          /* not a log line */
        }
      });
      proc.on('exit', (code) => rej(new Error(`server exited with ${code}`)));
    });
    return { proc, grpc };
  };

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'chatflow-kill-'));
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  });

  it('gives every accepted message exactly one reply after a kill -9 mid-load', async () => {
    const auth = new TokenAuthority(await loadOrCreateSecret(dataDir), false);
    const mdFor = async (clientId: string, extra: Record<string, string> = {}) => {
      const md = new Metadata();
      md.set('authorization', `Bearer ${await auth.mint(clientId)}`);
      md.set('x-timezone', 'UTC');
      for (const [k, v] of Object.entries(extra)) md.set(k, v);
      return md;
    };
    let { proc, grpc } = await start();
    child = proc;
    let client = new ChatServiceClient(grpc, credentials.createInsecure());
    const streams = await Promise.all(
      Array.from({ length: 5 }, async (_, i) => {
        const s = new ChatStream(client.chat(await mdFor(`crash-${i}`)));
        await s.until((f) => f.some((x) => x.frame?.$case === 'welcome'), 10_000, 'welcome');
        return s;
      }),
    );
    const sent = streams.map((s) => Array.from({ length: 20 }, (_, j) => s.text(`load ${j}`)));
    await Promise.all(streams.map((s) => s.until((f) => f.filter((x) => x.frame?.$case === 'accepted').length >= 10, 10_000, 'accepted')));
    proc.kill('SIGKILL');
    await new Promise((r) => proc.once('exit', r));
    client.close();
    const accepted = streams.map((s) => s.of('accepted').map((a) => a.accepted.messageId));
    expect(accepted.flat().length).toBeGreaterThanOrEqual(50);

    ({ proc, grpc } = await start());
    child = proc;
    client = new ChatServiceClient(grpc, credentials.createInsecure());
    const history = new HistoryServiceClient(grpc, credentials.createInsecure());
    for (const [i, s] of streams.entries()) {
      const conversationId = s.welcome()!.conversationId;
      const back = new ChatStream(client.chat(await mdFor(`crash-${i}`, { 'x-conversation-id': conversationId, 'x-resume-after': '0' })));
      await back.until((f) => accepted[i].every((id) => f.some((x) => x.frame?.$case === 'response' && x.frame.response.inReplyTo === id)), 30_000, `replies for client ${i}`);
      back.end();
      // History is a projection: it may trail the live reply by a batch. Wait (bounded) for every reply to be in it.
      let entries = await historyOf(history, await mdFor(`crash-${i}`), conversationId);
      const answered = () => accepted[i].every((id) => entries.some((m) => m.author === Author.AUTHOR_BOT && m.inReplyTo === id));
      for (const end = Date.now() + 10_000; !answered() && Date.now() < end; ) {
        await new Promise((r) => setTimeout(r, 100));
        entries = await historyOf(history, await mdFor(`crash-${i}`), conversationId);
      }
      for (const id of accepted[i]) {
        expect(entries.filter((m) => m.author === Author.AUTHOR_BOT && m.inReplyTo === id)).toHaveLength(1);
      }
      expect(sent[i].length).toBe(20);
    }
    client.close();
    history.close();
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    child = undefined;
  }, 90_000);
});
