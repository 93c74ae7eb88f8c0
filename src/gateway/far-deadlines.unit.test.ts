import { EventEmitter } from 'node:events';
import { createDeadlineSignal } from '@connectrpc/connect/protocol';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { BaseServerInterceptingCall } = require('@grpc/grpc-js/build/src/server-interceptors');

/*
 * A client's deadline weeks away (grpc-timeout 720H = 2,592,000,000 ms) is more than a Node timer can wait
 * (2^31 - 1 ms: a longer delay fires after 1 ms). Both deadline timers of the gateway's listeners, grpc-js's server
 * and Connect's (the gRPC-Web endpoint), are patched to wait for it in steps (patches/). The end to end tests
 * (test/chat.e2e.test.ts, test/grpc-web.e2e.test.ts) show such a call served; these show it still ends on time.
 */
const DAY = 86_400_000;

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

it('the fake timers fire a delay over 2^31 - 1 ms after 1 ms, as Node does', () => {
  const fired = jest.fn();
  setTimeout(fired, 30 * DAY);
  jest.advanceTimersByTime(2);
  expect(fired).toHaveBeenCalled();
});

it("grpc-js ends a call whose grpc-timeout is 30 days away after 30 days, not at once, nor at 24.8 days", () => {
  const stream = Object.assign(new EventEmitter(), { pause: () => undefined });
  const call = new BaseServerInterceptingCall(stream, { 'grpc-timeout': '720H' }, null, { path: '/chatflow.v1.ChatService/Chat' }, {});
  const sendStatus = jest.fn();
  call.sendStatus = sendStatus;
  jest.advanceTimersByTime(29 * DAY);
  expect(sendStatus).not.toHaveBeenCalled();
  jest.advanceTimersByTime(DAY - 1);
  expect(sendStatus).not.toHaveBeenCalled();
  jest.advanceTimersByTime(1);
  expect(sendStatus).toHaveBeenCalledWith(expect.objectContaining({ code: 4, details: 'Deadline exceeded' }));
  expect(call.getDeadline()).toBe(Date.now());
});

it('grpc-js ends a call whose grpc-timeout is 2 s away after 2 s', () => {
  const stream = Object.assign(new EventEmitter(), { pause: () => undefined });
  const call = new BaseServerInterceptingCall(stream, { 'grpc-timeout': '2S' }, null, { path: '/chatflow.v1.ChatService/Chat' }, {});
  const sendStatus = jest.fn();
  call.sendStatus = sendStatus;
  jest.advanceTimersByTime(1_999);
  expect(sendStatus).not.toHaveBeenCalled();
  jest.advanceTimersByTime(1);
  expect(sendStatus).toHaveBeenCalledTimes(1);
});

it("Connect's deadline (the gRPC-Web endpoint) aborts a call 30 days away after 30 days, and not once it was cleaned up", () => {
  const far = createDeadlineSignal(30 * DAY);
  jest.advanceTimersByTime(30 * DAY - 1);
  expect(far.signal.aborted).toBe(false);
  jest.advanceTimersByTime(1);
  expect(far.signal.aborted).toBe(true);

  const done = createDeadlineSignal(30 * DAY);
  jest.advanceTimersByTime(25 * DAY);
  done.cleanup();
  jest.advanceTimersByTime(10 * DAY);
  expect(done.signal.aborted).toBe(false);
});
