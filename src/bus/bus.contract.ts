import type { Bus } from './port';
import { clientSubject } from './port';

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
      await new Promise((r) => setTimeout(r, 50));
      for (let i = 0; i < 20; i++) await a.publish(clientSubject('alice'), Buffer.from(`m${i}`));
      await waitFor(() => got.length === 20);
      expect(got).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
      sub.unsubscribe();
    });

    it('does not deliver other subjects, nor after unsubscribe', async () => {
      const got: string[] = [];
      const sub = b.subscribe(clientSubject('bob'), (p) => got.push(Buffer.from(p).toString()));
      await new Promise((r) => setTimeout(r, 50));
      await a.publish(clientSubject('carol'), Buffer.from('no'));
      await a.publish(clientSubject('bob'), Buffer.from('yes'));
      await waitFor(() => got.length === 1);
      sub.unsubscribe();
      await a.publish(clientSubject('bob'), Buffer.from('late'));
      await new Promise((r) => setTimeout(r, 100));
      expect(got).toEqual(['yes']);
    });

    it('makes any client id a valid subject', () => {
      expect(clientSubject('a.b *>c d')).toMatch(/^chatflow\.client\.[A-Za-z0-9_-]+$/);
    });
  });
}
