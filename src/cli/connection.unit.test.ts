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
    expect(describeStatus(dropped, where)).toMatch(/\ndoes it speak TLS\? \(then pass --tls, or --ca <its certificate> if it is self-signed\)$/);
    expect(describeStatus(dropped, { ...where, tls: true })).not.toMatch(/TLS/);
  });
});
