import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, status, type CallOptions, type ClientDuplexStream, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { startApp, type App, type AppOverrides } from '../src/app';
import { loadConfig } from '../src/config/config';
import { createLogger } from '../src/logging';
import { ChatServiceClient, type ClientFrame, type ServerFrame, type UserMessage } from '../src/gen/chatflow/v1/chat';
import { HistoryServiceClient, type HistoryMessage } from '../src/gen/chatflow/v1/history';

export interface TestApp {
  app: App;
  dataDir: string;
  chat: ChatServiceClient;
  history: HistoryServiceClient;
  restart(env?: Record<string, string>): Promise<void>;
  close(opts?: { keepData?: boolean }): Promise<void>;
}

/** Starts the real server in-process on ephemeral ports with its own data dir. */
export async function startTestApp(env: Record<string, string> = {}, overrides: AppOverrides = {}, dataDir?: string): Promise<TestApp> {
  const dir = dataDir ?? (await mkdtemp(join(tmpdir(), 'chatflow-e2e-')));
  const baseEnv = {
    CHATFLOW_GRPC_ADDR: '127.0.0.1:0',
    CHATFLOW_HTTP_ADDR: '127.0.0.1:0',
    CHATFLOW_DATA_DIR: dir,
    CHATFLOW_SIM_DELAY_SCALE: '0',
    // No speech engines unless the test asks (see test/engines-setup.js).
    CHATFLOW_STT: 'none',
    CHATFLOW_TTS: 'none',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...env,
  };
  const logger = createLogger(baseEnv.LOG_LEVEL, { pretty: false });
  const t: TestApp = {
    dataDir: dir,
    app: await startApp(loadConfig(baseEnv), logger, overrides),
    chat: undefined as never,
    history: undefined as never,
    async restart(more = {}) {
      await t.app.stop();
      t.chat.close();
      t.history.close();
      t.app = await startApp(loadConfig({ ...baseEnv, ...more }), logger, overrides);
      connectClients();
    },
    async close(opts = {}) {
      t.chat.close();
      t.history.close();
      await t.app.stop();
      if (!opts.keepData) await rm(dir, { recursive: true, force: true });
    },
  };
  // A server on TLS (CHATFLOW_TLS_CERT_FILE): its clients trust its own certificate.
  const certFile = (baseEnv as Record<string, string | undefined>).CHATFLOW_TLS_CERT_FILE;
  const channel = () => (certFile ? credentials.createSsl(readFileSync(certFile)) : credentials.createInsecure());
  const connectClients = () => {
    t.chat = new ChatServiceClient(t.app.grpcAddress, channel());
    t.history = new HistoryServiceClient(t.app.grpcAddress, channel());
  };
  connectClients();
  return t;
}

export async function metadataFor(t: TestApp, clientId: string, extra: Record<string, string> = {}): Promise<Metadata> {
  const md = new Metadata();
  md.set('authorization', `Bearer ${await t.app.auth.mint(clientId)}`);
  md.set('x-timezone', 'Europe/Paris');
  for (const [k, v] of Object.entries(extra)) {
    if (v === '') md.remove(k);
    else md.set(k, v);
  }
  return md;
}

/** A bidi Chat stream with a frame inbox and the final status. */
export class ChatStream {
  readonly frames: ServerFrame[] = [];
  readonly status: Promise<StatusObject>;
  private waiters: (() => void)[] = [];
  private n = 0;

  constructor(readonly call: ClientDuplexStream<ClientFrame, ServerFrame>) {
    call.on('data', (f: ServerFrame) => {
      this.frames.push(f);
      this.wake();
    });
    call.on('error', () => undefined); // the status promise reports it
    this.status = new Promise((resolve) => call.on('status', (s) => {
      resolve(s);
      this.wake();
    }));
    let done = false;
    void this.status.then(() => (done = true));
    this.isDone = () => done;
  }

  isDone: () => boolean;

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Waits until `pred` holds for the frames received so far. */
  async until(pred: (frames: ServerFrame[]) => boolean, timeoutMs = 15_000, what = 'frames'): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!pred(this.frames)) {
      if (this.isDone()) throw new Error(`stream ended (${JSON.stringify(await this.status.then((s) => ({ code: status[s.code], details: s.details })))}) before ${what}; got ${this.describe()}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.describe()}`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          r();
        });
      });
    }
  }

  describe(): string {
    const kinds = this.frames.map((f) => f.frame?.$case);
    return (kinds.length > 40 ? [...kinds.slice(0, 20), `… ${kinds.length - 40} more …`, ...kinds.slice(-20)] : kinds).join(',') || 'no frames';
  }

  of<K extends NonNullable<ServerFrame['frame']>['$case']>(kind: K): Extract<NonNullable<ServerFrame['frame']>, { $case: K }>[] {
    return this.frames.map((f) => f.frame).filter((f): f is Extract<NonNullable<ServerFrame['frame']>, { $case: K }> => f?.$case === kind);
  }

  welcome() {
    return this.of('welcome')[0]?.welcome;
  }

  send(message: Partial<UserMessage> & Pick<UserMessage, 'content'>): string {
    const clientMessageId = message.clientMessageId ?? `cm-${++this.n}-${Math.random().toString(36).slice(2)}`;
    this.call.write({ frame: { $case: 'message', message: { clientMessageId, content: message.content } } });
    return clientMessageId;
  }

  text(text: string, clientMessageId?: string): string {
    return this.send({ clientMessageId, content: { $case: 'text', text } });
  }

  /** The message id the server gave a client message (from its Accepted). */
  messageIdOf(clientMessageId: string): string | undefined {
    return this.of('accepted').find((a) => a.accepted.clientMessageId === clientMessageId)?.accepted.messageId;
  }

  responseTo(clientMessageId: string) {
    const id = this.messageIdOf(clientMessageId);
    return id ? this.of('response').find((r) => r.response.inReplyTo === id)?.response : undefined;
  }

  async reply(clientMessageId: string, timeoutMs = 15_000) {
    await this.until(() => this.responseTo(clientMessageId) !== undefined, timeoutMs, `the reply to ${clientMessageId}`);
    return this.responseTo(clientMessageId)!;
  }

  end(): void {
    this.call.end();
  }

  cancel(): void {
    this.call.cancel();
  }
}

export async function openChat(t: TestApp, clientId: string, extra: Record<string, string> = {}): Promise<ChatStream> {
  return new ChatStream(t.chat.chat(await metadataFor(t, clientId, extra)));
}

/** Opens a stream and waits for Welcome (throws with the status if refused). */
export async function connected(t: TestApp, clientId: string, extra: Record<string, string> = {}): Promise<ChatStream> {
  const s = await openChat(t, clientId, extra);
  await s.until((f) => f.some((x) => x.frame?.$case === 'welcome'), 10_000, 'welcome');
  return s;
}

/** A closed conversation of `clientId` holding `n` texts of 16,000 emoji (64,000 bytes each), each answered: its id. */
export async function longConversation(t: TestApp, clientId: string, n: number): Promise<string> {
  const s = await connected(t, clientId);
  const conversationId = s.welcome()!.conversationId;
  for (let i = 0; i < n; i++) await s.reply(s.text('😀'.repeat(16_000)), 30_000);
  s.end();
  await s.status;
  return conversationId;
}

/** Promisifies a generated unary method (its last overload takes metadata, options and a callback). */
export function unary<Req, Res>(
  fn: (req: Req, md: Metadata, options: Partial<CallOptions>, cb: (err: ServiceError | null, res: Res) => void) => unknown,
  req: Req,
  md: Metadata,
): Promise<Res> {
  return new Promise((resolve, reject) => fn(req, md, {}, (err, res) => (err ? reject(err) : resolve(res))));
}

export async function metric(t: TestApp, name: string): Promise<number> {
  const body = await (await fetch(`${t.app.httpUrl}/metrics`)).text();
  const line = body.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').pop()) : NaN;
}

export const codeName = (code: number) => status[code];

/** Every message of a conversation, page after page (`history`: a client of the server; `md`: its caller's metadata). */
export async function allMessages(history: HistoryServiceClient, md: Metadata, conversationId: string): Promise<HistoryMessage[]> {
  const all: HistoryMessage[] = [];
  let pageToken = '';
  do {
    const page = await unary(history.listMessages.bind(history), { conversationId, pageSize: 1000, pageToken, afterSeq: 0 }, md);
    all.push(...page.messages);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return all;
}
