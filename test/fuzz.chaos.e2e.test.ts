import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client, credentials, Metadata, status, type StatusObject } from '@grpc/grpc-js';
import fc from 'fast-check';
import { SignJWT } from 'jose';
import { ClientFrame, SendRequest, ServerFrame } from '../src/gen/chatflow/v1/chat';
import { codeName, connected, startTestApp, type TestApp } from './harness';

/*
 * Property-based fuzzing of a running server: random metadata, token claims
 * and frames (well-formed and not) on Chat streams, Send calls and HistoryService calls. Each call
 * must end with a documented status, every ChatError must carry a documented
 * code, and the server must keep serving. The seed is logged: replay a
 * failure with FUZZ_SEED=<seed> (and FUZZ_RUNS to run longer).
 */
jest.setTimeout(180_000);

/** The unary methods fuzzed beside Chat, with the same frames as their requests (a HistoryService request that was not protobuf got INTERNAL). */
const UNARY = ['ChatService/Send', 'HistoryService/ListConversations', 'HistoryService/ListMessages', 'HistoryService/GetConversation'] as const;

/** Statuses the README documents for Chat, Send and HistoryService; INTERNAL or UNKNOWN would mean a handler failed. */
const DOCUMENTED = new Set(['OK', 'INVALID_ARGUMENT', 'UNAUTHENTICATED', 'PERMISSION_DENIED', 'NOT_FOUND', 'ALREADY_EXISTS', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED', 'UNAVAILABLE', 'FAILED_PRECONDITION']);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

let t: TestApp;
let secret: Uint8Array;
beforeAll(async () => {
  t = await startTestApp({ CHATFLOW_MAX_MEDIA_BYTES: String(64 * 1024) });
  secret = new TextEncoder().encode((await readFile(join(t.dataDir, 'secret'), 'utf8')).trim());
});
afterAll(async () => t.close());

const now = () => Math.floor(Date.now() / 1000);
const anyText = fc.oneof(fc.string(), fc.string({ unit: 'grapheme', maxLength: 50 }), fc.string({ unit: 'binary', maxLength: 200 }), fc.constant(''), fc.constant('x'.repeat(20_000)));
/** 'fuzz' becomes a client id of its own per run (a client still connected from the previous run would get ALREADY_EXISTS). */
const clientIds = fc.constantFrom('fuzz', 'fuzz', 'fuzz-shared');
let run = 0;

/** Claims of every shape: types a JSON value can have where a string or a number belongs. */
const claims = fc.record(
  {
    sub: fc.oneof(clientIds, fc.jsonValue(), anyText),
    exp: fc.oneof(fc.constant(now() + 600), fc.constant(now() - 600), fc.jsonValue()),
    iat: fc.jsonValue(),
  },
  { requiredKeys: [] },
);

/** Mostly valid, so that most streams are admitted and their frames exercised. */
const mostly = <T>(valid: fc.Arbitrary<T>, ...others: fc.Arbitrary<T>[]) => fc.oneof({ weight: 3 * others.length, arbitrary: valid }, ...others);

type Authorization = { claims?: Record<string, unknown>; raw?: string };
const authorization = mostly<Authorization>(
  clientIds.map((sub) => ({ claims: { sub, exp: now() + 600 } as Record<string, unknown> })),
  claims.map((c) => ({ claims: c as Record<string, unknown> })),
  anyText.map((raw) => ({ raw })),
  fc.constant({ raw: undefined as string | undefined }),
);

const metadata = fc.record({
  authorization,
  timezone: mostly<string | undefined>(fc.constantFrom('UTC', 'Europe/Paris', 'Asia/Tokyo'), anyText, fc.constant(undefined)),
  conversation: mostly<string | undefined>(fc.constant(undefined), anyText, fc.uuid()),
  resumeAfter: mostly<string | undefined>(fc.constant(undefined), anyText, fc.nat().map(String), fc.constant('999999999999999999999')),
});

const media = fc.record({ mimeType: fc.oneof(fc.constantFrom('audio/wav', 'video/mp4', 'image/png', 'image/jpeg'), anyText), data: fc.uint8Array({ maxLength: 2048 }), url: fc.string(), sizeBytes: fc.integer(), durationMs: fc.integer() });
const content = fc.oneof(
  anyText.map((text) => ({ $case: 'text' as const, text })),
  media.map((audio) => ({ $case: 'audio' as const, audio })),
  media.map((video) => ({ $case: 'video' as const, video })),
  media.map((image) => ({ $case: 'image' as const, image })),
  fc.constant(undefined),
);
const typedFrame = fc.oneof(
  fc.record({ clientMessageId: fc.oneof(fc.constantFrom('1', '2', '3'), anyText), content }).map((message) => ({ frame: { $case: 'message' as const, message } })),
  fc.integer().map((nonce) => ({ frame: { $case: 'ping' as const, ping: { nonce } } })),
  fc.constant({ frame: undefined }),
);
/** A frame on the wire: encoded, encoded then corrupted, or noise. */
const wireFrame = fc.oneof(
  { weight: 3, arbitrary: typedFrame.map((f) => Buffer.from(ClientFrame.encode(f as ClientFrame).finish())) },
  { weight: 1, arbitrary: fc.tuple(typedFrame, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([f, at, byte]) => {
    const b = Buffer.from(ClientFrame.encode(f as ClientFrame).finish());
    if (b.length > 0) b[at % b.length] = byte;
    return b;
  }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)) },
);

async function metadataOf(m: { authorization: Authorization; timezone?: string; conversation?: string; resumeAfter?: string }): Promise<Metadata> {
  const md = new Metadata();
  // Metadata values must be printable ASCII: what grpc-js refuses to send is not the server's concern.
  const ascii = (v: string) => v.replace(/[^\x20-\x7e]/g, '?');
  const claims = m.authorization.claims && { ...m.authorization.claims, ...(m.authorization.claims.sub === 'fuzz' ? { sub: `fuzz-${++run}` } : {}) };
  if (claims) md.set('authorization', `Bearer ${await new SignJWT(claims as never).setProtectedHeader({ alg: 'HS256' }).sign(secret)}`);
  else if (m.authorization.raw !== undefined) md.set('authorization', ascii(m.authorization.raw));
  if (m.timezone !== undefined) md.set('x-timezone', ascii(m.timezone));
  if (m.conversation !== undefined) md.set('x-conversation-id', ascii(m.conversation));
  if (m.resumeAfter !== undefined) md.set('x-resume-after', ascii(m.resumeAfter));
  return md;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, rej) => (timer = setTimeout(() => rej(new Error(`${what}: no status within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

it(`survives random metadata, token claims and frames, answering each call with a documented status (seed ${SEED}, ${RUNS} runs)`, async () => {
  console.log(`fuzz seed ${SEED} (replay: FUZZ_SEED=${SEED} npx jest test/fuzz.chaos.e2e.test.ts)`);
  const client = new Client(t.app.grpcAddress, credentials.createInsecure());
  const seen = new Map<string, number>();
  try {
    await fc.assert(
      fc.asyncProperty(metadata, fc.array(wireFrame, { maxLength: 12 }), fc.constantFrom(...UNARY, 'Chat'), async (m, frames, method) => {
        const md = await metadataOf(m);
        if (method !== 'Chat') {
          const st = await withTimeout(
            new Promise<string>((resolve) => {
              const request = frames[0] ?? Buffer.from(SendRequest.encode({ sessionId: 'nope', message: undefined }).finish());
              client.makeUnaryRequest(`/chatflow.v1.${method}`, (b: Buffer) => b, (b: Buffer) => b, request, md, (err) => resolve(err ? codeName(err.code) : 'OK'));
            }),
            10_000,
            method,
          );
          seen.set(`${method} ${st}`, (seen.get(`${method} ${st}`) ?? 0) + 1);
          expect(DOCUMENTED).toContain(st);
          return;
        }
        const call = client.makeBidiStreamRequest<Buffer, Buffer>('/chatflow.v1.ChatService/Chat', (b) => b, (b) => b, md);
        const errors: string[] = [];
        call.on('data', (b: Buffer) => {
          const f = ServerFrame.decode(b).frame;
          if (f?.$case === 'error') errors.push(f.error.code);
        });
        call.on('error', () => undefined);
        const ended = new Promise<StatusObject>((r) => call.on('status', r));
        for (const f of frames) call.write(f);
        call.end();
        const st = await withTimeout(ended, 15_000, 'Chat');
        const name = codeName(st.code);
        seen.set(`Chat ${name}`, (seen.get(`Chat ${name}`) ?? 0) + 1);
        expect(DOCUMENTED).toContain(name);
        for (const code of errors) expect(DOCUMENTED).toContain(code);
        expect(st.code === status.INTERNAL || st.code === status.UNKNOWN).toBe(false);
      }),
      { seed: SEED, numRuns: RUNS, interruptAfterTimeLimit: 120_000, markInterruptAsFailure: false },
    );
  } finally {
    client.close();
    console.log(`fuzz outcomes: ${JSON.stringify(Object.fromEntries([...seen].sort()))}`);
  }
  // Still serving.
  const s = await connected(t, 'after-fuzz');
  await s.reply(s.text('still here?'));
  s.end();
});
