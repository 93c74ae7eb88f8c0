import pino from 'pino';
import { createRenderer, inlineRenderer, type ReplyMediaRenderer } from './renderer';
import { renderImage } from './png';

const logger = pino({ level: 'silent' });

describe('reply media renderer', () => {
  let pool: ReplyMediaRenderer;
  beforeAll(() => {
    pool = createRenderer(2, logger);
  });
  afterAll(() => pool.close());

  it('given a thread pool, when images are rendered, then the bytes equal the same work done inline', async () => {
    const background = { rgb: Buffer.alloc(64 * 48 * 3, 7), width: 64, height: 48 };
    const framed = await pool.image({ title: 'on a keyframe', seed: 'k', background });
    expect(Buffer.isBuffer(framed.bytes)).toBe(true);
    expect(framed.bytes.equals(renderImage({ title: 'on a keyframe', seed: 'k', background }).bytes)).toBe(true);
    const spec = { title: 'ChatFlow', lines: ['Mon 09:15', 'a picture for you'], seed: 'img-1' };
    const image = await pool.image(spec);
    expect(image.bytes.equals(renderImage(spec).bytes)).toBe(true);
    expect([image.width, image.height, image.mimeType]).toEqual([480, 270, 'image/png']);
  });

  it('given many tasks at once, when they run, then every one is answered with its own result', async () => {
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => pool.image({ title: `n${i}`, seed: `s${i}` })));
    results.forEach((r) => expect(r.mimeType).toBe('image/png'));
    const distinct = new Set(results.map((r) => r.bytes.toString('base64')));
    expect(distinct.size).toBe(40);
  });

  it('given a render thread that dies, when tasks were outstanding, then they are done again by its replacement; dying twice fails the task', async () => {
    const own = createRenderer(1, logger);
    const slots = (own as unknown as { slots: { thread: { terminate(): Promise<number> }; pending: Map<number, unknown> }[] }).slots;
    try {
      const spec = { title: 'survives', seed: 'x', width: 1024, height: 1024 };
      const outstanding = own.image(spec);
      await slots[0]!.thread.terminate();
      expect((await outstanding).bytes.equals(renderImage(spec).bytes)).toBe(true);

      const doomed = own.image({ title: 'lost', seed: 'z', width: 2048, height: 2048 });
      const first = slots[0]!;
      await first.thread.terminate();
      // Wait until the retry sits on the replacement thread, then kill that one too.
      while (slots[0] === first || slots[0]!.pending.size === 0) await new Promise((r) => setTimeout(r, 5));
      await slots[0]!.thread.terminate();
      await expect(doomed).rejects.toThrow(/media render thread exited/);

      const v = await own.image({ title: 'after the crash', seed: 'y' });
      expect(v.bytes.equals(renderImage({ title: 'after the crash', seed: 'y' }).bytes)).toBe(true);
    } finally {
      await own.close();
    }
  });

  it('given a closed renderer, when asked for media, then it refuses clearly', async () => {
    const own = createRenderer(1, logger);
    await own.close();
    await expect(own.image({ title: 'x', seed: 'y' })).rejects.toThrow('media renderer is closed');
  });

  it('given zero threads, when media is rendered, then no thread is started and the bytes are the same', async () => {
    const r = createRenderer(0, logger);
    expect(r).not.toHaveProperty('slots');
    const v = await r.image({ title: 'inline', seed: 's' });
    expect(v.bytes.equals((await inlineRenderer().image({ title: 'inline', seed: 's' })).bytes)).toBe(true);
    await r.close();
  });
});
