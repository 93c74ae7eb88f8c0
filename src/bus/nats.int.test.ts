import pino from 'pino';
import { describeWithEngines } from '../../test/engines';
import { describeBus } from './bus.contract';
import { NatsBus } from './nats';
import { NoResponderError, sessionSubject } from './port';

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
      await new Promise((r) => setTimeout(r, 50));
      const err = await t.a.request(sessionSubject('slow'), Buffer.from('x'), 200).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NoResponderError);
      expect((err as NoResponderError).timedOut).toBe(true);
      sub.unsubscribe();
    });

    it('delivers what was published just before close (close drains)', async () => {
      const got: string[] = [];
      t.b.subscribe('chatflow.test.drain', (p) => got.push(Buffer.from(p).toString()));
      await new Promise((r) => setTimeout(r, 50));
      for (let i = 0; i < 1000; i++) await t.a.publish('chatflow.test.drain', Buffer.from(String(i)));
      await t.a.close();
      const end = Date.now() + 2_000;
      while (got.length < 1000 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      expect(got).toHaveLength(1000);
    });
  });
});
