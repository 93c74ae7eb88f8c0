import { crc32, inflateSync } from 'node:zlib';
import { validateMedia } from '../domain/media-validation';
import { layoutText, patternOf, renderImage } from './png';

/** An independent PNG decoder for RGB/8-bit images: checks every chunk CRC, inflates and unfilters IDAT. */
function decodePng(b: Buffer): { width: number; height: number; pixels: Buffer; chunks: string[] } {
  expect([...b.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const chunks: string[] = [];
  const idat: Buffer[] = [];
  let width = 0, height = 0, at = 8;
  while (at < b.length) {
    const len = b.readUInt32BE(at);
    const type = b.toString('ascii', at + 4, at + 8);
    const data = b.subarray(at + 8, at + 8 + len);
    expect(b.readUInt32BE(at + 8 + len)).toBe(crc32(b.subarray(at + 4, at + 8 + len)));
    chunks.push(type);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      expect([...data.subarray(8)]).toEqual([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, adaptive filters, no interlace
    } else if (type === 'IDAT') idat.push(data);
    at += 12 + len;
  }
  expect(at).toBe(b.length);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * 3;
  expect(raw.length).toBe(height * (1 + stride));
  const pixels = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (1 + stride)]!;
    if (filter > 4) throw new Error(`row ${y}: unknown filter ${filter}`);
    for (let i = 0; i < stride; i++) {
      const a = i >= 3 ? pixels[y * stride + i - 3]! : 0;
      const up = y > 0 ? pixels[(y - 1) * stride + i]! : 0;
      const c = i >= 3 && y > 0 ? pixels[(y - 1) * stride + i - 3]! : 0;
      pixels[y * stride + i] = (raw[y * (1 + stride) + 1 + i]! + predict(filter, a, up, c)) & 0xff;
    }
  }
  return { width, height, pixels, chunks };
}

/** Width and height from the IHDR chunk. */
const decodePngHeader = (b: Buffer) => ({ width: b.readUInt32BE(16), height: b.readUInt32BE(20) });

function predict(filter: number, a: number, up: number, c: number): number {
  switch (filter) {
    case 1: return a;
    case 2: return up;
    case 3: return (a + up) >> 1;
    case 4: {
      const p = a + up - c;
      const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - up), Math.abs(p - c)];
      return pa <= pb && pa <= pc ? a : pb <= pc ? up : c;
    }
    default: return 0;
  }
}

describe('renderImage', () => {
  const opts = { title: 'ChatFlow', lines: ['It is 14:05 in Europe/Paris.', 'You sent a video of 2.3 MiB.'], seed: 'm_1' };

  it('produces a PNG that decodes fully (CRCs, IDAT size, filters)', () => {
    const img = renderImage(opts);
    expect(img).toMatchObject({ mimeType: 'image/png', width: 480, height: 270 });
    const png = decodePng(img.bytes);
    expect(png.chunks).toEqual(['IHDR', 'IDAT', 'IEND']);
    expect({ width: png.width, height: png.height }).toEqual({ width: 480, height: 270 });
    expect(decodePngHeader(img.bytes)).toEqual({ width: 480, height: 270 });
    expect(validateMedia({ kind: 'image', mimeType: 'image/png', data: img.bytes, maxBytes: 8 << 20 })).toMatchObject({ ok: true, container: 'png' });
  });

  it('draws the text (white and title-coloured pixels appear only with text)', () => {
    const count = (pixels: Buffer, rgb: number[]) => {
      let n = 0;
      for (let i = 0; i < pixels.length; i += 3) if (pixels[i] === rgb[0] && pixels[i + 1] === rgb[1] && pixels[i + 2] === rgb[2]) n++;
      return n;
    };
    const withText = decodePng(renderImage(opts).bytes).pixels;
    const blank = decodePng(renderImage({ title: '', seed: 'm_1' }).bytes).pixels;
    expect(count(withText, [255, 255, 255])).toBeGreaterThan(500);
    expect(count(withText, [255, 230, 120])).toBeGreaterThan(100);
    expect(count(blank, [255, 255, 255])).toBe(0);
  });

  it('differs per seed and per text, and is deterministic', () => {
    const a = renderImage(opts).bytes;
    expect(renderImage(opts).bytes.equals(a)).toBe(true);
    expect(renderImage({ ...opts, seed: 'm_2' }).bytes.equals(a)).toBe(false);
    expect(renderImage({ ...opts, title: 'Other' }).bytes.equals(a)).toBe(false);
    const bg = (seed: string) => decodePng(renderImage({ title: '', seed }).bytes).pixels;
    expect(bg('x').equals(bg('y'))).toBe(false);
  });

  it('honours and clamps the size, and survives long or non-ASCII text', () => {
    const small = renderImage({ width: 100, height: 60, title: 'a'.repeat(500), lines: ['héllo “wörld” — ✓', 'x'.repeat(1000)], seed: 's' });
    expect(decodePng(small.bytes)).toMatchObject({ width: 100, height: 60 });
    const clamped = renderImage({ width: 1, height: 99999, title: 't', seed: 's' });
    expect({ width: clamped.width, height: clamped.height }).toEqual({ width: 64, height: 2048 });
    expect(decodePngHeader(clamped.bytes)).toEqual({ width: 64, height: 2048 });
  });

  it('draws the seeded background as its formula says, pixel for pixel (rings and stripes, any size)', () => {
    // The formula (see patternOf), written plainly per pixel: the renderer works it out per row (issue 15) and
    // must not drift from it.
    const expected = (seed: string, width: number, height: number) => {
      const { c0, c1, dx, dy, cx, cy, period, rings, span } = patternOf(seed, width, height);
      const px = new Uint8ClampedArray(width * height * 3);
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const t = ((x - width / 2) * dx + (y - height / 2) * dy) / span + 0.5;
          const d = rings ? Math.sqrt((x - cx) ** 2 + (y - cy) ** 2) : x * dy - y * dx;
          const w = 1 + 0.08 * Math.sin((((Math.floor(d) % period) + period) % period / period) * Math.PI * 2);
          for (let c = 0; c < 3; c++) px[(y * width + x) * 3 + c] = (c0[c]! + (c1[c]! - c0[c]!) * t) * w;
        }
      }
      return { rings, px };
    };
    const kinds = new Set<boolean>();
    for (const [seed, width, height] of [['m_1', 480, 270], ['r_2', 480, 270], ['x', 64, 48], ['y', 301, 77], ['z', 97, 211], ['w', 480, 270]] as const) {
      const { rings, px } = expected(seed, width, height);
      kinds.add(rings);
      const got = decodePng(renderImage({ title: '', seed, width, height }).bytes).pixels;
      let worst = 0;
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - px[i]!));
      expect({ seed, worst }).toEqual({ seed, worst: 0 });
    }
    expect([...kinds].sort()).toEqual([false, true]); // both patterns were drawn
  });

  it('darkens the picture under the text by 45 %, and nothing outside it', () => {
    const background = { rgb: Buffer.alloc(120 * 60 * 3), width: 120, height: 60 };
    for (let i = 0; i < background.rgb.length; i++) background.rgb[i] = (i * 37) % 256;
    const png = decodePng(renderImage({ title: 'x', seed: 's', background }).bytes).pixels;
    const at = (x: number, y: number) => [...png.subarray((y * 120 + x) * 3, (y * 120 + x) * 3 + 3)];
    const was = (x: number, y: number) => [...background.rgb.subarray((y * 120 + x) * 3, (y * 120 + x) * 3 + 3)];
    expect(at(9, 9)).toEqual(was(9, 9).map((v) => Math.round(v * 0.55))); // in the panel, left of the glyph
    expect(at(7, 7)).toEqual(was(7, 7)); // just outside it
    expect(at(119, 59)).toEqual(was(119, 59));
  });

  it('draws a keyframe background as given, under the text panel', () => {
    const background = { rgb: Buffer.alloc(200 * 100 * 3), width: 200, height: 100 };
    for (let i = 0; i < background.rgb.length; i += 3) background.rgb.set([10, 200, 30], i);
    const png = decodePng(renderImage({ title: 'hi', seed: 's', background }).bytes);
    expect({ width: png.width, height: png.height }).toEqual({ width: 200, height: 100 });
    expect([...png.pixels.subarray(png.pixels.length - 3)]).toEqual([10, 200, 30]); // bottom-right corner untouched
  });

  it('wraps the text once: every line but the last is full (no orphan words), and all of it fits when it can', () => {
    const reply = 'Hello! You said: "what time is it in tokyo" (6 words). Here is my take: break it into small steps and start with the one you can check fastest. For you it is Sunday 22 November 2026, 20:45 (Asia/Tokyo).';
    const layout = layoutText('ChatFlow', ['Sun 20:45', reply], 480, 270);
    expect(layout.shortened).toBe(false);
    const cols = Math.floor((480 - 32) / (6 * layout.scale));
    const body = layout.lines.slice(2).map((l) => l.s);
    for (let i = 0; i < body.length - 1; i++) expect(body[i]!.length + 1 + body[i + 1]!.split(' ')[0]!.length).toBeGreaterThan(cols);
    expect(body.join(' ')).toBe(reply);
  });

  it('uses the small font when the text needs it, and says so when even that cannot hold it', () => {
    const long = 'word '.repeat(120).trim();
    expect(layoutText('t', [long], 480, 270)).toMatchObject({ scale: 1, shortened: false });
    const huge = layoutText('t', ['word '.repeat(2000).trim()], 480, 270);
    expect(huge.shortened).toBe(true);
    expect(huge.lines.at(-1)!.s).toMatch(/\[shortened\]$/);
  });
});
