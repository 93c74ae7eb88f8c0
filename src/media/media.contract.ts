import { randomBytes } from 'node:crypto';
import type { MediaStore } from './port';

/**
 * The behaviour every MediaStore adapter must have. Run it from an adapter's
 * test file: `describeMediaStore('local', async () => ({ store, fetchUrl, cleanup }))`.
 * `fetchUrl` GETs a URL the store handed out, with no other credentials (and
 * the request headers given, as a browser's player sends `Range`).
 */
export interface MediaStoreHarness {
  store: MediaStore;
  fetchUrl(url: string, headers?: Record<string, string>): Promise<{ status: number; bytes: Buffer; contentType: string | null; headers: Headers }>;
  cleanup(): Promise<void>;
}

export function describeMediaStore(name: string, factory: () => Promise<MediaStoreHarness>): void {
  describe(`MediaStore contract: ${name}`, () => {
    let h: MediaStoreHarness;
    const prefix = `contract-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const key = (s: string) => `${prefix}/${s}`;

    beforeAll(async () => {
      h = await factory();
    });
    afterAll(async () => {
      await h?.store.close();
      await h?.cleanup();
    });

    it('round-trips bytes and mime type', async () => {
      const bytes = Buffer.from('RIFF fake but fine');
      await h.store.put(key('voice/r1.wav'), bytes, 'audio/wav');
      const got = await h.store.get(key('voice/r1.wav'));
      expect(got).not.toBeNull();
      expect(got!.mimeType).toBe('audio/wav');
      expect(got!.bytes.equals(bytes)).toBe(true);
    });

    it('returns null for a missing key', async () => {
      expect(await h.store.get(key('nope/never-written.png'))).toBeNull();
    });

    it('overwrites bytes and mime type', async () => {
      await h.store.put(key('over'), Buffer.from('first version'), 'text/plain');
      await h.store.put(key('over'), Buffer.from([1, 2, 3]), 'image/png');
      const got = await h.store.get(key('over'));
      expect(got!.mimeType).toBe('image/png');
      expect([...got!.bytes]).toEqual([1, 2, 3]);
    });

    it('keeps keys that share a prefix apart', async () => {
      await h.store.put(key('dir/a.bin'), Buffer.from('a'), 'application/octet-stream');
      await h.store.put(key('dir/b.bin'), Buffer.from('b'), 'application/octet-stream');
      expect((await h.store.get(key('dir/a.bin')))!.bytes.toString()).toBe('a');
      expect((await h.store.get(key('dir/b.bin')))!.bytes.toString()).toBe('b');
    });

    it('hands out a URL that returns the bytes with their content type', async () => {
      const bytes = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 255]);
      await h.store.put(key('img/reply.png'), bytes, 'image/png');
      const res = await h.fetchUrl(await h.store.url(key('img/reply.png'), 60_000));
      expect(res.status).toBe(200);
      expect(res.contentType).toBe('image/png');
      expect(res.bytes.equals(bytes)).toBe(true);
    });

    it('does not serve a missing key through a URL', async () => {
      const res = await h.fetchUrl(await h.store.url(key('img/missing.png'), 60_000));
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
    });

    it('is binary safe (2 MiB of random bytes), through get and through the URL', async () => {
      const bytes = randomBytes(2 * 1024 * 1024);
      await h.store.put(key('big.bin'), bytes, 'application/octet-stream');
      const got = await h.store.get(key('big.bin'));
      expect(got!.bytes.length).toBe(bytes.length);
      expect(got!.bytes.equals(bytes)).toBe(true);
      const res = await h.fetchUrl(await h.store.url(key('big.bin'), 60_000));
      expect(res.status).toBe(200);
      expect(res.bytes.equals(bytes)).toBe(true);
    });

    // Browsers ask for ranges to play and seek audio and video (Safari plays nothing from a server that answers a
    // range with the whole object); S3 serves them, and so must a store on disk.
    describe('byte ranges of a URL (a player that seeks)', () => {
      const bytes = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
      let url: string;
      beforeAll(async () => {
        await h.store.put(key('voice/long.wav'), bytes, 'audio/wav');
        url = await h.store.url(key('voice/long.wav'), 60_000);
      });

      it.each([
        ['bytes=0-1', 0, 1],
        ['bytes=100-199', 100, 199],
        ['bytes=990-', 990, 999],
        ['bytes=-10', 990, 999],
        ['bytes=995-5000', 995, 999],
      ])('%s: 206 with those bytes and their Content-Range', async (range, first, last) => {
        const res = await h.fetchUrl(url, { range });
        expect({ status: res.status, contentRange: res.headers.get('content-range'), type: res.contentType }).toEqual({
          status: 206,
          contentRange: `bytes ${first}-${last}/1000`,
          type: 'audio/wav',
        });
        expect(res.bytes.equals(bytes.subarray(first, last + 1))).toBe(true);
      });

      it('says it serves ranges (Accept-Ranges: bytes) with the whole object', async () => {
        const res = await h.fetchUrl(url);
        expect(res.status).toBe(200);
        expect(res.headers.get('accept-ranges')).toBe('bytes');
      });

      it('answers a range past the end 416', async () => {
        expect((await h.fetchUrl(url, { range: 'bytes=1000-' })).status).toBe(416);
      });

      it('serves the whole object for a range it does not read (another unit, several ranges, nonsense)', async () => {
        for (const range of ['items=0-1', 'bytes=0-1,5-6', 'bytes=abc', 'bytes=']) {
          const res = await h.fetchUrl(url, { range });
          expect({ range, status: res.status, size: res.bytes.length }).toEqual({ range, status: 200, size: 1000 });
        }
      });
    });
  });
}
