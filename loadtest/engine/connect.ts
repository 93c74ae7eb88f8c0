// Opening Chat streams as a load-test client: channels, metadata, and the
// outcome of one connection attempt (Welcome, or the status that refused it).
import { credentials, Metadata, status, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { ChatServiceClient, type ClientFrame, type ServerFrame, type Welcome } from '../../src/gen/chatflow/v1/chat';
import { now } from './records';

export type ChatCall = ClientDuplexStream<ClientFrame, ServerFrame>;

/**
 * `perEndpoint` channels (own TCP connection each) to every gRPC endpoint.
 * Clients pick `pick(i)`: endpoints round-robin first, so users spread over
 * every gateway, then channels.
 */
export class Channels {
  private readonly clients: ChatServiceClient[][];

  constructor(readonly endpoints: string[], perEndpoint: number) {
    this.clients = endpoints.map((addr) =>
      Array.from({ length: Math.max(1, perEndpoint) }, () =>
        new ChatServiceClient(addr, credentials.createInsecure(), {
          'grpc.use_local_subchannel_pool': 1,
          'grpc.max_receive_message_length': 64 * 1024 * 1024,
          'grpc.max_send_message_length': 64 * 1024 * 1024,
        }),
      ),
    );
  }

  pick(i: number): ChatServiceClient {
    const e = this.clients[i % this.clients.length]!;
    return e[Math.floor(i / this.clients.length) % e.length]!;
  }

  /** Connects every channel now, so the first streams do not pay for TCP + HTTP/2 setup. */
  async warm(timeoutMs = 10_000): Promise<void> {
    const deadline = new Date(Date.now() + timeoutMs);
    await Promise.all(this.clients.flat().map((c) => new Promise<void>((res, rej) => c.waitForReady(deadline, (err) => (err ? rej(err) : res())))));
  }

  close(): void {
    for (const c of this.clients.flat()) c.close();
  }
}

export function chatMetadata(clientId: string, timeZone: string): Metadata {
  const md = new Metadata();
  md.set('x-client-id', clientId);
  md.set('x-timezone', timeZone);
  return md;
}

export type OpenOutcome =
  | { ok: true; call: ChatCall; start: number; end: number; welcome: Welcome }
  | { ok: false; code: string; start: number; end: number; retryAfterMs?: number; details: string };

/**
 * Opens a Chat stream and waits for its first answer: the Welcome frame, or
 * the status that refused it. On Welcome the call is paused: the caller
 * attaches its own 'data' listener and calls `call.resume()`.
 */
export function openChat(client: ChatServiceClient, clientId: string, timeZone: string, timeoutMs = 30_000): Promise<OpenOutcome> {
  const start = now();
  const call = client.chat(chatMetadata(clientId, timeZone));
  return new Promise((resolve) => {
    let settled = false;
    const finish = (o: OpenOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      call.removeListener('data', onData);
      call.removeListener('error', onError);
      resolve(o);
    };
    const onData = (f: ServerFrame) => {
      if (f.frame?.$case === 'welcome') {
        call.pause();
        finish({ ok: true, call, start, end: now(), welcome: f.frame.welcome });
      }
    };
    const onError = (err: ServiceError) => {
      const ra = err.metadata?.get('retry-after-ms')?.[0];
      finish({ ok: false, code: status[err.code] ?? String(err.code), start, end: now(), retryAfterMs: ra === undefined ? undefined : Number(ra), details: err.details });
    };
    const timer = setTimeout(() => {
      call.cancel();
      finish({ ok: false, code: 'CLIENT_TIMEOUT', start, end: now(), details: `no Welcome within ${timeoutMs} ms` });
    }, timeoutMs);
    call.on('data', onData);
    call.on('error', onError);
    // Errors after the outcome belong to the caller's listeners; never let one go unhandled.
    call.on('error', () => undefined);
  });
}
