// The echo baseline: a bare grpc-js server of ChatService.Chat with no
// ChatFlow in it — no admission, no log, no fsync, no worker. It answers a
// stream with a Welcome and every message with the two frames the load client
// waits for (Accepted, then a BotResponse echoing the text), so the same
// client, unchanged, measures the transport's ceiling on this machine.
//   node --require tsx/cjs loadtest/echo/server.ts 127.0.0.1:PORT
// Prints "listening <addr>" once bound; exits on SIGTERM.
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { ChatServiceService, type ClientFrame, type ServerFrame, Welcome } from '../../src/gen/chatflow/v1/chat';

type Call = ServerDuplexStream<ClientFrame, ServerFrame>;

export function echoServer(): Server {
  const server = new Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  let sessions = 0;
  let seq = 0;
  const unimplemented = (_: unknown, cb: (e: Error) => void) => cb(Object.assign(new Error('echo baseline: Chat only'), { code: 12 }));
  const impl: Record<string, unknown> = {};
  for (const name of Object.keys(ChatServiceService)) impl[name] = unimplemented;
  impl.chat = (call: Call) => {
    const sessionId = `echo-${++sessions}`;
    const clientId = String(call.metadata.get('x-client-id')[0] ?? '');
    call.write({ frame: { $case: 'welcome', welcome: Welcome.fromPartial({ sessionId, conversationId: sessionId, clientId, serverTime: new Date() }) } });
    call.on('data', (f: ClientFrame) => {
      if (f.frame?.$case !== 'message') return;
      const m = f.frame.message;
      const messageId = `${sessionId}-${++seq}`;
      call.write({ frame: { $case: 'accepted', accepted: { clientMessageId: m.clientMessageId, messageId, seq, duplicate: false } } });
      const text = m.content?.$case === 'text' ? m.content.text : '';
      call.write({ frame: { $case: 'response', response: { messageId: `${messageId}-r`, inReplyTo: messageId, seq, text, processingMs: 0 } } });
    });
    call.on('end', () => call.end());
    call.on('error', () => undefined);
  };
  server.addService(ChatServiceService, impl as never);
  return server;
}

if (require.main === module) {
  const addr = process.argv[2] ?? '127.0.0.1:0';
  const server = echoServer();
  server.bindAsync(addr, ServerCredentials.createInsecure(), (err, port) => {
    if (err) {
      console.error(`echo: cannot bind ${addr}: ${err.message}`);
      process.exit(1);
    }
    console.log(`listening ${addr.replace(/:\d+$/, `:${port}`)}`);
  });
  process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
}
