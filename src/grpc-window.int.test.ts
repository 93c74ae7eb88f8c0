import http2 from 'node:http2';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { grpcServerOptions } from './app';
import { loadConfig } from './config/config';

/**
 * The gateway's HTTP/2 receive window (issue 15): with Node's default of
 * 64 KiB per stream and per connection, a 150 KiB upload needed two or three
 * WINDOW_UPDATE round trips, each waiting for a turn of the gateway's event
 * loop. The window it advertises is CHATFLOW_GRPC_WINDOW_BYTES.
 */
describe("the gateway's HTTP/2 receive window", () => {
  async function windowsOf(env: Record<string, string>): Promise<{ stream: number; connection: number }> {
    const server = new Server(grpcServerOptions(loadConfig(env)));
    const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p))));
    const client = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const settings = await new Promise<http2.Settings>((res) => client.once('remoteSettings', res));
      // The connection's window comes as a WINDOW_UPDATE right after the server's SETTINGS: a ping's answer comes after it.
      await new Promise<void>((res, rej) => client.ping((err) => (err ? rej(err) : res())));
      return { stream: settings.initialWindowSize!, connection: client.state.remoteWindowSize! };
    } finally {
      client.close();
      server.forceShutdown();
    }
  }

  it('is 1 MiB per stream and per connection by default, so a reference upload (≤ 200 KiB) crosses without waiting for the gateway', async () => {
    expect(await windowsOf({})).toEqual({ stream: 1 << 20, connection: 1 << 20 });
  });

  it('is the configured size', async () => {
    expect(await windowsOf({ CHATFLOW_GRPC_WINDOW_BYTES: String(256 * 1024) })).toEqual({ stream: 256 * 1024, connection: 256 * 1024 });
  });
});
