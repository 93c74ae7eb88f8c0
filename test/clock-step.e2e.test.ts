import { status } from '@grpc/grpc-js';
import { connected, startTestApp, type TestApp } from './harness';
import type { LlmProvider } from '../src/llm/port';

/*
 * The wall clock stepped while clients chat: an operator's `date -s`, NTP
 * stepping a clock that was far off, a virtual machine resumed. Before, every
 * time the gateway judged was read on the wall clock: a step forward past the
 * lease's trust window closed every stream ("the connection registry is
 * unreachable"), and a step back held a silent client's slot until the wall
 * clock caught up again. The wall clock is the one the app is given here
 * (`clock`); its steady clock is the real one.
 */
jest.setTimeout(60_000);

const FIRST_MESSAGE_MS = 3_000;
let offset = 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Answers at once; told "step <ms>", steps the wall clock by that much while it works, and takes 200 ms. */
const model: LlmProvider = {
  name: 'clock-stepper',
  usesHistory: false,
  async generate(request) {
    const step = /^step (-?\d+)$/.exec(request.text ?? '');
    if (step) {
      offset += Number(step[1]);
      await sleep(200);
    }
    return { text: `heard: ${request.text}`, model: 'clock-stepper' };
  },
};

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ CHATFLOW_LEASE_MS: '2000', CHATFLOW_FIRST_MESSAGE_TIMEOUT_MS: String(FIRST_MESSAGE_MS) }, { clock: () => Date.now() + offset, llm: model });
});
afterAll(async () => t.close());

test.each([
  ['forward an hour', 3_600_000],
  ['back an hour', -3_600_000],
])('the wall clock stepped %s: streams stay open and chat, and the time they are told is the new one', async (_, step) => {
  const s = await connected(t, `c${step}`);
  await s.reply(s.text('before the step'));
  offset += step;
  // Two lease periods: renewals, sweeps and the keeper's checks all ran on the stepped clock.
  await sleep(4_000);
  expect(s.isDone()).toBe(false);
  const reply = await s.reply(s.text('after the step'));
  expect(Math.abs(reply.time!.getTime() - (Date.now() + offset))).toBeLessThan(5_000);
  expect(reply.processingMs).toBeLessThan(5_000);
  s.end();
  expect((await s.status).code).toBe(status.OK);
});

test('a client that never sends is still closed at its first-message deadline after the clock stepped back', async () => {
  const s = await connected(t, 'silent');
  const opened = Date.now();
  offset -= 3_600_000;
  const end = await s.status;
  expect(end.code).toBe(status.DEADLINE_EXCEEDED);
  expect(Date.now() - opened).toBeGreaterThanOrEqual(FIRST_MESSAGE_MS - 100);
  expect(Date.now() - opened).toBeLessThan(FIRST_MESSAGE_MS + 2_000);
});

test('a client that has not sent yet is not closed before its deadline by a step forward, nor when it connects after one', async () => {
  const before = await connected(t, 'quiet-before');
  offset += 3_600_000;
  const after = await connected(t, 'quiet-after');
  await sleep(1_000);
  for (const s of [before, after]) {
    expect(s.isDone()).toBe(false);
    await s.reply(s.text('here I am'));
    s.end();
  }
});

test('the wall clock stepped forward an hour while a reply was made: its processing time is the time it took', async () => {
  const s = await connected(t, 'mid-reply');
  const reply = await s.reply(s.text('step 3600000'));
  expect(reply.processingMs).toBeGreaterThanOrEqual(190);
  expect(reply.processingMs).toBeLessThan(5_000);
  s.end();
});
