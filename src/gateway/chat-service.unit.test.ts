import { EventEmitter } from 'node:events';
import { Metadata, status } from '@grpc/grpc-js';
import pino from 'pino';
import { loadConfig } from '../config/config';
import { createMetrics } from '../metrics';
import { ChatFlowError } from '../domain/errors';
import { ChatGateway } from './chat-service';
import type { GatewayDeps } from './deps';

/** A Chat stream as grpc-js hands it to the handler: whether its input is read shows in its `data` listeners. */
class FakeChatCall extends EventEmitter {
  readonly metadata = new Metadata();
  cancelled = false;
}

describe('ChatGateway: a stream\'s input is read only once it is admitted', () => {
  it('given a Chat stream whose admission is still being decided, then none of its frames is read (each can be 17 MiB), and a refused one is never read', async () => {
    let decide!: (outcome: Error) => void;
    const deps = {
      config: loadConfig({}),
      gatewayId: 'gw-1',
      registry: { deadHolderMs: undefined },
      metrics: createMetrics(),
      clock: Date.now,
      // Admission waits here first (the token's check), as it can wait later for the log, the registry or a replay.
      auth: { identify: () => new Promise((_, reject) => (decide = reject)) },
    } as unknown as GatewayDeps;
    const gateway = new ChatGateway(deps, pino({ level: 'silent' }));
    const call = new FakeChatCall();
    const refused = new Promise<{ code: number }>((r) => call.once('error', r));
    gateway.service.chat(call as never);
    await new Promise((r) => setImmediate(r));
    expect(call.listenerCount('data')).toBe(0);
    decide(new ChatFlowError('UNAUTHENTICATED', 'no token'));
    expect((await refused).code).toBe(status.UNAUTHENTICATED);
    expect(call.listenerCount('data')).toBe(0);
  });
});
