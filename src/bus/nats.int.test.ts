import pino from 'pino';
import { describeWithEngines } from '../../test/engines';
import { PrivateNats } from '../../test/private-engines';
import { describeBus } from './bus.contract';
import { NatsBus } from './nats';
import { clientSubject, NoResponderError, sessionSubject } from './port';

const waitFor = async (cond: () => boolean | Promise<boolean>, ms: number) => {
  for (const end = Date.now() + ms; !(await cond()); await new Promise((r) => setTimeout(r, 50))) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms`);
  }
};

const logger = pino({ level: 'silent' });
const connectTwo = async () => {
  const url = process.env.NATS_URL!;
  const a = await NatsBus.connect({ url, name: 'contract-a', logger });
  const b = await NatsBus.connect({ url, name: 'contract-b', logger }).catch(async (err: unknown) => {
    await a.close();
    throw err;
  });
  return { a, b, cleanup: async () => void (await Promise.all([a.close(), b.close()])) };
};

describeWithEngines(['NATS_URL'], 'Bus contract: nats', () => {
  describeBus('nats (two connections)', connectTwo);

  describe('NatsBus specifics', () => {
    let t: Awaited<ReturnType<typeof connectTwo>>;
    beforeEach(async () => (t = await connectTwo()));
    afterEach(() => t.cleanup());

    it('rejects with a timed-out NoResponderError when the responder does not answer in time', async () => {
      const sub = t.b.serve(sessionSubject('slow'), () => new Promise((r) => setTimeout(() => r(Buffer.from('late')), 1_000)));
      await t.b.flush();
      const err = await t.a.request(sessionSubject('slow'), Buffer.from('x'), 200).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NoResponderError);
      expect((err as NoResponderError).timedOut).toBe(true);
      sub.unsubscribe();
    });

    it('delivers what was published just before close (close drains)', async () => {
      const got: string[] = [];
      t.b.subscribe('chatflow.test.drain', (p) => got.push(Buffer.from(p).toString()));
      await t.b.flush();
      for (let i = 0; i < 1000; i++) await t.a.publish('chatflow.test.drain', Buffer.from(String(i)));
      await t.a.close();
      const end = Date.now() + 2_000;
      while (got.length < 1000 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      expect(got).toHaveLength(1000);
    });
  });

  describe('NatsBus across a server restart (private NATS)', () => {
    let nats: PrivateNats;
    beforeAll(async () => {
      nats = await PrivateNats.create();
      await nats.start();
    });
    afterAll(() => nats.remove());

    it('tells onReconnect listeners, and its subscriptions deliver again', async () => {
      const a = await NatsBus.connect({ url: nats.url, name: 'restart-a', logger });
      const b = await NatsBus.connect({ url: nats.url, name: 'restart-b', logger });
      try {
        const got: string[] = [];
        let reconnects = 0;
        let publisherReconnects = 0;
        b.subscribe(clientSubject('restart'), (p) => got.push(Buffer.from(p).toString()));
        b.onReconnect(() => reconnects++);
        a.onReconnect(() => publisherReconnects++);
        await b.flush();
        expect(a.connected()).toBe(true);
        await nats.kill();
        await waitFor(() => !a.connected() && !b.connected(), 15_000);
        await nats.start();
        // Both clients reconnect on their own schedule: the publisher's flush rejects ("connection disconnected") until it has.
        await waitFor(() => reconnects === 1 && publisherReconnects === 1, 15_000);
        await b.flush();
        await waitFor(async () => {
          await a.publish(clientSubject('restart'), Buffer.from('after'));
          await a.flush();
          return got.includes('after');
        }, 15_000);
        expect(reconnects).toBe(1);
        expect(a.connected() && b.connected()).toBe(true);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    }, 40_000);
  });
});
