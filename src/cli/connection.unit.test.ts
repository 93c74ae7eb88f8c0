import { Metadata, status } from '@grpc/grpc-js';
import { describeStatus } from './connection';

const where = { server: '127.0.0.1:50051', insecure: false, tls: false };
const unavailable = (details: string) => ({ code: status.UNAVAILABLE, details, metadata: new Metadata() });

describe('describeStatus: what the CLI says when it cannot reach the server', () => {
  test('nothing listening: is the server running? (not a TLS matter)', () => {
    const text = describeStatus(unavailable('No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:50051. Resolution note: '), where);
    expect(text).toBe('UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:50051\nis the server running at 127.0.0.1:50051? (start it with "npm start", or pass --server)');
  });

  test('a server that dropped the plain text (one on TLS): also asks whether it speaks TLS, unless --tls was given', () => {
    const dropped = unavailable('No connection established. Last error: Failed to connect (2026-11-28T05:36:54.483Z)');
    expect(describeStatus(dropped, where)).toMatch(/\ndoes it speak TLS\? \(then pass --tls, or --ca <its certificate> if it is self-signed\)\n/);
    expect(describeStatus(dropped, { ...where, tls: true })).not.toMatch(/TLS/);
  });

  test('a connection closed as soon as it was accepted (the listeners full): says so too', () => {
    const dropped = unavailable('No connection established. Last error: Failed to connect (2026-11-28T21:14:04.520Z)');
    expect(describeStatus(dropped, where)).toMatch(/\nor it holds all the connections it takes \(CHATFLOW_MAX_CONNECTIONS\): then try again shortly$/);
    expect(describeStatus(dropped, { ...where, tls: true })).toMatch(/\nor it holds all the connections it takes/);
  });
});
