import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mediaFile, readMediaFile, saveMedia } from './media';

describe('readMediaFile', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chatflow-media-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('reads a file within the limit', async () => {
    const path = join(dir, 'a.png');
    await writeFile(path, Buffer.alloc(100, 1));
    const content = await readMediaFile(await mediaFile('image', path), 100);
    expect(content?.$case).toBe('image');
    expect(content?.$case === 'image' && content.image.data.length).toBe(100);
  });

  it('refuses a file over the limit unread', async () => {
    const path = join(dir, 'a.png');
    await writeFile(path, Buffer.alloc(101, 1));
    await expect(readMediaFile(await mediaFile('image', path), 100)).rejects.toThrow(/a\.png is 101 bytes, more than this server takes \(100 bytes\)/);
  });

  it('refuses a file that grew past the limit after it was checked (the bytes read are what is sent)', async () => {
    const path = join(dir, 'a.png');
    await writeFile(path, Buffer.alloc(50, 1));
    const checked = await mediaFile('image', path);
    await appendFile(path, Buffer.alloc(100, 1));
    await expect(readMediaFile(checked, 100)).rejects.toThrow(/a\.png is 150 bytes, more than this server takes \(100 bytes\)/);
  });
});

describe('saveMedia', () => {
  let dir: string;
  const realFetch = global.fetch;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chatflow-save-'));
    global.fetch = (async () => new Response(new Uint8Array([82, 73, 70, 70]))) as typeof fetch;
  });
  afterEach(async () => {
    global.fetch = realFetch;
    await rm(dir, { recursive: true, force: true });
  });

  const voice = { mimeType: 'audio/wav', url: 'http://127.0.0.1:1/media/r.wav', sizeBytes: 4n, durationMs: 0 } as unknown as Parameters<typeof saveMedia>[0];

  it('saves a reply under its message id', async () => {
    const path = await saveMedia(voice, 'r/1', join(dir, 'downloads'), '.bin');
    expect(path).toBe(join(dir, 'downloads', 'r_1.wav'));
    expect(await readFile(path)).toEqual(Buffer.from('RIFF'));
  });

  it('says which folder it could not write and what to do, not a bare errno (a read-only working directory: the container image)', async () => {
    await writeFile(join(dir, 'downloads'), 'a file in the way');
    await expect(saveMedia(voice, 'r1', join(dir, 'downloads', 'sub'), '.bin')).rejects.toThrow(
      new RegExp(`^cannot save into ${join(dir, 'downloads', 'sub').replace(/[/.]/g, '\\$&')}: a file is in the way; pass --save-dir <a folder you can write>$`),
    );
  });
});
