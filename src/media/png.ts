import { crc32, deflateSync } from 'node:zlib';
import { createHash } from 'node:crypto';

/**
 * A picture for a reply: a real RGB PNG (own encoder: signature, IHDR, IDAT
 * via deflate, IEND, CRC32) with a seed-dependent gradient and pattern and
 * the text drawn with a built-in 5x8 bitmap font scaled 2x.
 */
export interface RenderedImage {
  bytes: Buffer;
  mimeType: 'image/png';
  width: number;
  height: number;
}

/**
 * The classic 5x8 ASCII bitmap font (printable characters 0x20–0x7E).
 * Five columns per glyph, least significant bit = top row; row 7 holds descenders.
 */
const GLYPHS = [
  '0000000000', '00005f0000', '0007000700', '147f147f14', '242a7f2a12', '2313086462', '3649562050', '0008070300',
  '001c224100', '0041221c00', '2a1c7f1c2a', '08083e0808', '0080703000', '0808080808', '0000606000', '2010080402',
  '3e5149453e', '00427f4000', '7249494946', '2141494d33', '1814127f10', '2745454539', '3c4a494931', '4121110907',
  '3649494936', '464949291e', '0000140000', '0040340000', '0008142241', '1414141414', '0041221408', '0201590906',
  '3e415d594e', '7c1211127c', '7f49494936', '3e41414122', '7f4141413e', '7f49494941', '7f09090901', '3e41415173',
  '7f0808087f', '00417f4100', '2040413f01', '7f08142241', '7f40404040', '7f021c027f', '7f0408107f', '3e4141413e',
  '7f09090906', '3e4151215e', '7f09192946', '2649494932', '03017f0103', '3f4040403f', '1f2040201f', '3f4038403f',
  '6314081463', '0304780403', '61594d4543', '007f414141', '0204081020', '004141417f', '0402010204', '4040404040',
  '0003070800', '2054547840', '7f28444438', '3844444428', '384444287f', '3854545418', '00087e0902', '18a4a49c78',
  '7f08040478', '00447d4000', '2040403d00', '7f10284400', '00417f4000', '7c04780478', '7c08040478', '3844444438',
  'fc18242418', '18242418fc', '7c08040408', '4854545424', '04043f4424', '3c4040207c', '1c2040201c', '3c4030403c',
  '4428102844', '4c9090907c', '4464544c44', '0008364100', '0000770000', '0041360800', '0201020402',
].join('');

const GLYPH_WIDTH = 5;
const GLYPH_HEIGHT = 8;

/** Column bitmasks of a character; anything outside printable ASCII draws as '?'. */
function glyph(ch: string): number[] {
  let code = ch.charCodeAt(0);
  if (!(code >= 0x20 && code <= 0x7e)) code = 0x3f;
  const at = (code - 0x20) * 10;
  return [0, 1, 2, 3, 4].map((i) => parseInt(GLYPHS.slice(at + i * 2, at + i * 2 + 2), 16));
}

/** Replace accents and typographic punctuation by ASCII so more text stays readable. */
function toAscii(text: string): string {
  return text
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[\u2018\u2019]/g, "'")
    .replace(/[\u201c\u201d]/g, '"')
    .replace(/[\u2013\u2014]/g, '-')
    .replace(/\u2026/g, '...')
    .replace(/[^\x20-\x7e]/g, '?');
}

type Rgb = [number, number, number];

const MARGIN = 16;

export interface ImageSpec {
  width?: number;
  height?: number;
  title: string;
  /** Paragraphs, each wrapped here (once) to the image's width. */
  lines?: string[];
  seed: string;
  /** A picture to draw the text over (a video's keyframe) instead of the seeded pattern; sets the size. */
  background?: { rgb: Uint8Array; width: number; height: number };
}

/** What a text layout holds at one font scale. */
interface Layout {
  scale: number;
  lines: { s: string; color: Rgb }[];
  shortened: boolean;
}

/**
 * Lays the title and paragraphs out at the largest font scale (2, else 1) at
 * which everything fits; when even the small font cannot hold it all, the
 * last line says the text was shortened.
 */
export function layoutText(title: string, paragraphs: string[], width: number, height: number): Layout {
  let layout: Layout | undefined;
  for (const scale of [2, 1]) {
    const cols = Math.max(1, Math.floor((width - 2 * MARGIN) / ((GLYPH_WIDTH + 1) * scale)));
    const rows = Math.max(1, Math.floor((height - 2 * MARGIN) / ((GLYPH_HEIGHT + 1) * scale)));
    const all = [
      ...wrap(toAscii(title), cols).map((s) => ({ s, color: [255, 230, 120] as Rgb })),
      ...paragraphs.flatMap((p) => wrap(toAscii(p), cols)).map((s) => ({ s, color: [255, 255, 255] as Rgb })),
    ];
    if (all.length <= rows) return { scale, lines: all, shortened: false };
    const mark = ' [shortened]';
    const kept = all.slice(0, rows);
    const last = kept[rows - 1]!;
    kept[rows - 1] = { ...last, s: last.s.slice(0, Math.max(0, cols - mark.length)).trimEnd() + mark };
    layout = { scale, lines: kept, shortened: true };
  }
  return layout!;
}

export function renderImage(opts: ImageSpec): RenderedImage {
  const bg = opts.background;
  const width = bg ? bg.width : clampInt(opts.width ?? 480, 64, 2048);
  const height = bg ? bg.height : clampInt(opts.height ?? 270, 48, 2048);
  const rgb = Buffer.alloc(width * height * 3);
  if (bg) {
    if (bg.rgb.length !== width * height * 3) throw new Error(`background has ${bg.rgb.length} bytes, ${width}x${height} RGB needs ${width * height * 3}`);
    rgb.set(bg.rgb);
  } else pattern(rgb, width, height, opts.seed);

  // Text: wrapped once, on a darkened panel so it stays readable on any background.
  const { scale, lines } = layoutText(opts.title, opts.lines ?? [], width, height);
  if (lines.length > 0) {
    const advance = (GLYPH_WIDTH + 1) * scale;
    const lineHeight = (GLYPH_HEIGHT + 1) * scale;
    const panelW = Math.min(width, Math.max(...lines.map((t) => t.s.length)) * advance + MARGIN);
    const panelH = Math.min(height, lines.length * lineHeight + MARGIN);
    shade(rgb, width, MARGIN / 2, MARGIN / 2, panelW, panelH, 0.45);
    lines.forEach((t, i) => drawText(rgb, width, height, t.s, MARGIN, MARGIN + i * lineHeight, t.color, scale));
  }
  return { bytes: encodePng(rgb, width, height), mimeType: 'image/png', width, height };
}

/**
 * What the seed chooses of a background: two colours, the gradient's
 * direction (dx, dy) and length (span), and a wave of `period` pixels, in
 * rings around (cx, cy) or in stripes. Pixel (x, y) is
 * `(c0 + (c1 − c0)·t) · (1 + 0.08·sin(2π·(⌊d⌋ mod period)/period))`, where
 * `t = ((x − width/2)·dx + (y − height/2)·dy)/span + 0.5` and d is the
 * distance to (cx, cy) (rings) or `x·dy − y·dx` (stripes).
 */
export function patternOf(seed: string, width: number, height: number) {
  const h = createHash('sha256').update(seed).digest();
  const c0 = hsl((h[0]! / 256) * 360, 0.55, 0.3);
  const c1 = hsl(((h[0]! / 256) * 360 + 60 + (h[1]! % 120)) % 360, 0.6, 0.55);
  const angle = (h[2]! / 256) * Math.PI * 2;
  const [dx, dy] = [Math.cos(angle), Math.sin(angle)];
  const [cx, cy] = [(h[3]! / 256) * width, (h[4]! / 256) * height];
  const period = 12 + (h[5]! % 40);
  const rings = (h[6]! & 1) === 0;
  const span = Math.abs(dx) * width + Math.abs(dy) * height;
  return { c0, c1, dx, dy, cx, cy, period, rings, span };
}

/** The seeded background: a diagonal gradient between two colours, with soft rings or stripes (see patternOf). */
function pattern(rgb: Buffer, width: number, height: number, seed: string): void {
  const { c0, c1, dx, dy, cx, cy, period, rings, span } = patternOf(seed, width, height);
  // One period of the pattern's wave, precomputed: the pixel loop stays cheap.
  const wave = Float64Array.from({ length: period }, (_, i) => 1 + 0.08 * Math.sin((i / period) * Math.PI * 2));
  const px = new Uint8ClampedArray(rgb.buffer, rgb.byteOffset, rgb.length); // clamps and rounds for us
  // Each pixel is c0 + (c1 - c0)·t, t the pixel's place along the gradient, times the wave. t is the row's start
  // plus x steps of one size: worked out per row, not per pixel (the background took ~6 of a reply image's 14 ms, issue 15).
  const [r0, g0, b0] = c0;
  const [rd, gd, bd] = [c1[0] - r0, c1[1] - g0, c1[2] - b0];
  const tStep = dx / span;
  for (let y = 0, o = 0; y < height; y++) {
    const tRow = ((0 - width / 2) * dx + (y - height / 2) * dy) / span + 0.5;
    const ry = (y - cy) * (y - cy);
    for (let x = 0; x < width; x++, o += 3) {
      const t = tRow + x * tStep;
      const d = rings ? Math.sqrt((x - cx) * (x - cx) + ry) : x * dy - y * dx;
      let k = Math.floor(d) % period;
      if (k < 0) k += period;
      const w = wave[k]!;
      px[o] = (r0 + rd * t) * w;
      px[o + 1] = (g0 + gd * t) * w;
      px[o + 2] = (b0 + bd * t) * w;
    }
  }
}

/**
 * zlib's fastest level: a reply image is made on the worker's event loop, and
 * the default level spent a third of the worker's CPU in the reference load
 * test (loadtest/results) for files only slightly smaller.
 */
const DEFLATE_LEVEL = 1;

/** Encode 8-bit RGB pixels (row-major) as a PNG. */
export function encodePng(rgb: Uint8Array, width: number, height: number): Buffer {
  const stride = width * 3;
  const raw = Buffer.alloc(height * (1 + stride));
  for (let y = 0; y < height; y++) {
    // Filter 1 (Sub): each byte minus the byte one pixel to the left; compresses gradients well.
    const out = y * (1 + stride) + 1;
    const row = y * stride;
    raw[out - 1] = 1;
    raw.set(rgb.subarray(row, row + 3), out);
    for (let i = 3; i < stride; i++) raw[out + i] = rgb[row + i]! - rgb[row + i - 3]!; // a Buffer keeps the low 8 bits
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  // compression 0, filter method 0, no interlace
  return Buffer.concat([PNG_SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: DEFLATE_LEVEL })), chunk('IEND', Buffer.alloc(0))]);
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'ascii');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

function drawText(rgb: Buffer, width: number, height: number, s: string, x0: number, y0: number, color: Rgb, scale: number): void {
  const advance = (GLYPH_WIDTH + 1) * scale;
  for (let i = 0; i < s.length; i++) {
    glyph(s[i]!).forEach((bits, col) => {
      for (let row = 0; row < GLYPH_HEIGHT; row++) {
        if (!((bits >> row) & 1)) continue;
        for (let sy = 0; sy < scale; sy++) {
          for (let sx = 0; sx < scale; sx++) {
            const x = x0 + i * advance + col * scale + sx;
            const y = y0 + row * scale + sy;
            if (x < width && y < height) rgb.set(color, (y * width + x) * 3);
          }
        }
      }
    });
  }
}

function shade(rgb: Buffer, width: number, x0: number, y0: number, w: number, h: number, alpha: number): void {
  const height = rgb.length / 3 / width;
  // Every byte value darkened once, then looked up: the panel is up to the whole image.
  const darker = Uint8Array.from({ length: 256 }, (_, v) => Math.round(v * (1 - alpha)));
  const x1 = Math.min(width, x0 + w);
  for (let y = y0; y < Math.min(height, y0 + h); y++) {
    for (let o = (y * width + x0) * 3, end = (y * width + x1) * 3; o < end; o++) rgb[o] = darker[rgb[o]!]!;
  }
}

/** Greedy word wrap; words longer than a line are cut. */
function wrap(text: string, cols: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    for (let w = word; w.length > 0; ) {
      const room = line ? cols - line.length - 1 : cols;
      if (w.length <= room) { line = line ? `${line} ${w}` : w; w = ''; }
      else if (line) { lines.push(line); line = ''; }
      else { lines.push(w.slice(0, cols)); w = w.slice(cols); }
    }
  }
  if (line) lines.push(line);
  return lines;
}

function hsl(hDeg: number, s: number, l: number): Rgb {
  const a = s * Math.min(l, 1 - l);
  const f = (n: number) => {
    const k = (n + hDeg / 30) % 12;
    return 255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)));
  };
  return [f(0), f(8), f(4)];
}

const clampInt = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, Math.round(v)));
