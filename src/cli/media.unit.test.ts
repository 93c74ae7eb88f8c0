import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mediaFile, readMediaFile } from './media';

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
