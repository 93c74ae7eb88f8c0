import type { Bus } from './port';
import { clientSubject, NoResponderError, RemoteError, sessionSubject } from './port';

const waitFor = async (cond: () => boolean, ms = 2000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

/** The contract every Bus adapter (memory, NATS) must keep. */
export function describeBus(name: string, factory: () => Promise<{ a: Bus; b: Bus; cleanup(): Promise<void> }>): void {
  describe(`Bus contract: ${name}`, () => {
    let a: Bus;
    let b: Bus;
    let cleanup: () => Promise<void>;
    beforeEach(async () => ({ a, b, cleanup } = await factory()));
    afterEach(async () => cleanup());

    it('delivers to a subscriber of the subject, in publish order', async () => {
      const got: string[] = [];
      const sub = b.subscribe(clientSubject('alice'), (p) => got.push(Buffer.from(p).toString()));
      await b.flush();
      for (let i = 0; i < 20; i++) await a.publish(clientSubject('alice'), Buffer.from(`m${i}`));
      await waitFor(() => got.length === 20);
      expect(got).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
      sub.unsubscribe();
    });

    it('does not deliver other subjects, nor after unsubscribe', async () => {
      const got: string[] = [];
      const sub = b.subscribe(clientSubject('bob'), (p) => got.push(Buffer.from(p).toString()));
      const marks: string[] = [];
      const marker = b.subscribe(clientSubject('marker'), (p) => marks.push(Buffer.from(p).toString()));
      await b.flush();
      await a.publish(clientSubject('carol'), Buffer.from('no'));
      await a.publish(clientSubject('bob'), Buffer.from('yes'));
      await waitFor(() => got.length === 1);
      sub.unsubscribe();
      await b.flush();
      // One publisher's messages arrive in order: once the marker is in, 'late' would have been too.
      await a.publish(clientSubject('bob'), Buffer.from('late'));
      await a.publish(clientSubject('marker'), Buffer.from('end'));
      await waitFor(() => marks.length === 1);
      expect(got).toEqual(['yes']);
      marker.unsubscribe();
    });

    it('routes a request to the one responder of the subject and returns its reply', async () => {
      const sub = b.serve(sessionSubject('s-1'), async (p) => Buffer.from(`echo:${Buffer.from(p).toString()}`));
      await b.flush();
      const reply = await a.request(sessionSubject('s-1'), Buffer.from('hi'), 2000);
      expect(Buffer.from(reply).toString()).toBe('echo:hi');
      sub.unsubscribe();
    });

    it('carries a responder failure back as RemoteError with its message', async () => {
      const sub = b.serve(sessionSubject('s-2'), async () => {
        throw new Error('session closed');
      });
      await b.flush();
      await expect(a.request(sessionSubject('s-2'), Buffer.from('x'), 2000)).rejects.toEqual(expect.objectContaining({ message: 'session closed' }));
      await expect(a.request(sessionSubject('s-2'), Buffer.from('x'), 2000)).rejects.toBeInstanceOf(RemoteError);
      sub.unsubscribe();
    });

    it('rejects with NoResponderError when nobody serves the subject', async () => {
      const sub = b.serve(sessionSubject('s-3'), async (p) => p);
      await b.flush();
      sub.unsubscribe();
      await b.flush();
      await expect(a.request(sessionSubject('s-3'), Buffer.from('x'), 1000)).rejects.toBeInstanceOf(NoResponderError);
    });

    // A subscriber that throws past the adapter is an uncaught exception: jest fails the suite, as it would kill the server.
    it('keeps delivering to the other subscribers when one throws, and nothing escapes to the process', async () => {
      const got: string[] = [];
      const bad = b.subscribe(clientSubject('thrower'), () => {
        throw new Error('a subscriber failed');
      });
      const good = b.subscribe(clientSubject('thrower'), (p) => got.push(Buffer.from(p).toString()));
      await b.flush();
      await a.publish(clientSubject('thrower'), Buffer.from('1'));
      await a.publish(clientSubject('thrower'), Buffer.from('2'));
      await waitFor(() => got.length === 2);
      expect(got).toEqual(['1', '2']);
      bad.unsubscribe();
      good.unsubscribe();
    });

    it('makes any client id a valid subject', () => {
      expect(clientSubject('a.b *>c d')).toMatch(/^chatflow\.client\.[A-Za-z0-9_-]+$/);
    });
  });
}
