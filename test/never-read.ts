import { connect, type Socket } from 'node:net';

/**
 * `n` raw connections to 127.0.0.1:`port` that each write `request` (one or
 * several HTTP/1.1 requests, pipelined) and never read a byte of the answers:
 * the clients the server must not hold answers for without bound.
 */
export function neverRead(port: number, request: string | Buffer, n: number): { sockets: Socket[]; destroy: () => void } {
  const sockets = Array.from({ length: n }, () => {
    const s = connect(port, '127.0.0.1');
    s.pause();
    s.on('error', () => undefined);
    s.write(request);
    return s;
  });
  return { sockets, destroy: () => sockets.forEach((s) => s.destroy()) };
}
