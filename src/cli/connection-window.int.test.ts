import http2 from 'node:http2';
import { chatClient } from './connection';

/**
 * The CLI's HTTP/2 receive window: replies carry voice and images (hundreds
 * of KiB); with Node's default of 64 KiB, each further 64 KiB of a reply
 * waited a round trip to the server for the CLI's window update.
 */
it("the CLI's Chat channel gives the server 1 MiB per stream and per connection to send its replies in", async () => {
  const server = http2.createServer();
  const seen = new Promise<{ stream: number; connection: number }>((resolve) =>
    server.on('session', (session) =>
      session.once('remoteSettings', (settings) => {
        // The connection's window comes as a WINDOW_UPDATE right after the client's SETTINGS: a ping's answer comes after it.
        session.ping(() => resolve({ stream: settings.initialWindowSize!, connection: session.state.remoteWindowSize! }));
      }),
    ),
  );
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const client = chatClient({ server: `127.0.0.1:${(server.address() as { port: number }).port}`, tls: false });
  try {
    client.waitForReady(Date.now() + 5_000, () => undefined);
    expect(await seen).toEqual({ stream: 1 << 20, connection: 1 << 20 });
  } finally {
    client.close();
    await new Promise<void>((res) => server.close(() => res()));
  }
});
