// A small SVG chart writer: line charts (latency over time) and histograms
// (latency distribution, log-scaled x). No dependencies; the output is a
// standalone SVG that GitHub and browsers render.

export interface LineSeries {
  name: string;
  /** [x, y] pairs, x ascending. */
  points: [number, number][];
  color?: string;
  dashed?: boolean;
}

export interface LineChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  width?: number;
  height?: number;
  /** Logarithmic y axis (values ≤ 0 are clamped to the smallest positive value). */
  yLog?: boolean;
}

export interface HistogramSeries {
  name: string;
  /** Bins [lo, hi) with counts; drawn as the share of this series' total, so series of different sizes compare. */
  bins: { lo: number; hi: number; count: number }[];
  color?: string;
}

export interface HistogramSpec {
  title: string;
  xLabel: string;
  series: HistogramSeries[];
  width?: number;
  height?: number;
}

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#7f7f7f'];
const M = { l: 68, r: 18, t: 40, b: 50 };

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** 3–8 round tick values (1, 2, 5 × 10^k steps) covering [min, max]. */
export function niceTicks(min: number, max: number, target = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (max === min) max = min + 1;
  const raw = (max - min) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => raw <= s)!;
  const first = Math.floor(min / step) * step;
  const out: number[] = [];
  for (let v = first; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  if (out[out.length - 1]! < max) out.push(Number((out[out.length - 1]! + step).toPrecision(12)));
  return out;
}

/** Powers of ten covering [min, max] (with 2 and 5 between them when the span is under three decades). */
export function logTicks(min: number, max: number): number[] {
  const lo = Math.floor(Math.log10(min));
  const hi = Math.ceil(Math.log10(max));
  const between = hi - lo <= 3 ? [1, 2, 5] : [1];
  const out: number[] = [];
  for (let e = lo; e <= hi; e++) for (const f of between) out.push(Number((f * 10 ** e).toPrecision(12)));
  return out.filter((v) => v >= 10 ** lo && v <= 10 ** hi);
}

export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a >= 1) return `${+v.toPrecision(4)}`;
  return `${+v.toPrecision(2)}`;
}

function frame(w: number, h: number, title: string, xLabel: string, yLabel: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${w}" height="${h}" fill="#ffffff"/>`,
    `<text x="${w / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    `<text x="${M.l + (w - M.l - M.r) / 2}" y="${h - 10}" text-anchor="middle">${escapeXml(xLabel)}</text>`,
    `<text transform="translate(16 ${M.t + (h - M.t - M.b) / 2}) rotate(-90)" text-anchor="middle">${escapeXml(yLabel)}</text>`,
  ];
}

function axes(out: string[], w: number, h: number, xt: { v: number; px: number }[], yt: { v: number; px: number }[]): void {
  const x0 = M.l, x1 = w - M.r, y0 = h - M.b, y1 = M.t;
  for (const t of yt) {
    out.push(`<line x1="${x0}" y1="${f(t.px)}" x2="${x1}" y2="${f(t.px)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${x0 - 6}" y="${f(t.px + 4)}" text-anchor="end">${formatTick(t.v)}</text>`);
  }
  for (const t of xt) {
    out.push(`<line x1="${f(t.px)}" y1="${y0}" x2="${f(t.px)}" y2="${y0 + 5}" stroke="#333"/>`);
    out.push(`<text x="${f(t.px)}" y="${y0 + 18}" text-anchor="middle">${formatTick(t.v)}</text>`);
  }
  out.push(`<line x1="${x0}" y1="${y0}" x2="${x1}" y2="${y0}" stroke="#333"/>`);
  out.push(`<line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y1}" stroke="#333"/>`);
}

function legend(out: string[], w: number, items: { name: string; color: string; dashed?: boolean }[]): void {
  let y = M.t + 6;
  const x = w - M.r - 170;
  out.push(`<rect x="${x - 8}" y="${y - 12}" width="176" height="${items.length * 16 + 8}" fill="#ffffff" fill-opacity="0.85" stroke="#cccccc"/>`);
  for (const it of items) {
    out.push(`<line x1="${x}" y1="${y}" x2="${x + 22}" y2="${y}" stroke="${it.color}" stroke-width="2.5"${it.dashed ? ' stroke-dasharray="6 3"' : ''}/>`);
    out.push(`<text x="${x + 28}" y="${y + 4}">${escapeXml(it.name)}</text>`);
    y += 16;
  }
}

const f = (x: number) => (Math.round(x * 10) / 10).toString();

export function lineChart(spec: LineChartSpec): string {
  const w = spec.width ?? 760, h = spec.height ?? 360;
  const out = frame(w, h, spec.title, spec.xLabel, spec.yLabel);
  const pts = spec.series.flatMap((s) => s.points);
  if (pts.length === 0) {
    out.push(`<text x="${w / 2}" y="${h / 2}" text-anchor="middle" fill="#888">no data</text></svg>`);
    return out.join('\n');
  }
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const xMin = Math.min(...xs), xMax = Math.max(...xs);
  const xt = niceTicks(xMin, xMax === xMin ? xMin + 1 : xMax);
  const [xa, xb] = [xt[0]!, xt[xt.length - 1]!];
  const px = (x: number) => M.l + ((x - xa) / (xb - xa)) * (w - M.l - M.r);
  let py: (y: number) => number;
  let yTicks: number[];
  if (spec.yLog) {
    const pos = ys.filter((y) => y > 0);
    const lo = pos.length ? Math.min(...pos) : 1, hi = pos.length ? Math.max(...pos) : 10;
    yTicks = logTicks(lo, hi === lo ? lo * 10 : hi);
    const [la, lb] = [Math.log10(yTicks[0]!), Math.log10(yTicks[yTicks.length - 1]!)];
    py = (y: number) => h - M.b - ((Math.log10(Math.max(y, 10 ** la)) - la) / (lb - la || 1)) * (h - M.t - M.b);
  } else {
    yTicks = niceTicks(Math.min(0, ...ys), Math.max(...ys));
    const [ya, yb] = [yTicks[0]!, yTicks[yTicks.length - 1]!];
    py = (y: number) => h - M.b - ((y - ya) / (yb - ya)) * (h - M.t - M.b);
  }
  axes(out, w, h, xt.map((v) => ({ v, px: px(v) })), yTicks.map((v) => ({ v, px: py(v) })));
  const items = spec.series.map((s, i) => ({ name: s.name, color: s.color ?? PALETTE[i % PALETTE.length]!, dashed: s.dashed }));
  spec.series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map(([x, y]) => `${f(px(x))},${f(py(y))}`).join(' ');
    out.push(`<polyline fill="none" stroke="${items[i]!.color}" stroke-width="1.8"${s.dashed ? ' stroke-dasharray="6 3"' : ''} points="${d}"/>`);
  });
  legend(out, w, items);
  out.push('</svg>');
  return out.join('\n');
}

export function histogram(spec: HistogramSpec): string {
  const w = spec.width ?? 760, h = spec.height ?? 360;
  const out = frame(w, h, spec.title, spec.xLabel, 'share of messages (%)');
  const bins = spec.series.flatMap((s) => s.bins.filter((b) => b.count > 0));
  if (bins.length === 0) {
    out.push(`<text x="${w / 2}" y="${h / 2}" text-anchor="middle" fill="#888">no data</text></svg>`);
    return out.join('\n');
  }
  // Log x: the open first bin [0, hi) is drawn from the smallest positive edge.
  const smallestHi = Math.min(...bins.map((b) => b.hi));
  const floor = Math.min(...bins.map((b) => (b.lo > 0 ? b.lo : smallestHi / 1.3)));
  const xt = logTicks(floor, Math.max(...bins.map((b) => b.hi)));
  const [la, lb] = [Math.log10(xt[0]!), Math.log10(xt[xt.length - 1]!)];
  const px = (x: number) => M.l + ((Math.log10(Math.max(x, 10 ** la)) - la) / (lb - la || 1)) * (w - M.l - M.r);
  const shares = spec.series.map((s) => {
    const n = s.bins.reduce((a, b) => a + b.count, 0) || 1;
    return s.bins.map((b) => ({ lo: b.lo > 0 ? b.lo : floor, hi: b.hi, pct: (100 * b.count) / n }));
  });
  const yt = niceTicks(0, Math.max(...shares.flat().map((b) => b.pct)));
  const yb = yt[yt.length - 1]!;
  const py = (y: number) => h - M.b - (y / yb) * (h - M.t - M.b);
  axes(out, w, h, xt.map((v) => ({ v, px: px(v) })), yt.map((v) => ({ v, px: py(v) })));
  const items = spec.series.map((s, i) => ({ name: s.name, color: s.color ?? PALETTE[i % PALETTE.length]! }));
  shares.forEach((bs, i) => {
    if (bs.length === 0) return;
    // A step outline over the bins, filled lightly.
    const y0 = py(0);
    let d = `M${f(px(bs[0]!.lo))},${f(y0)}`;
    for (const b of bs) d += ` L${f(px(b.lo))},${f(py(b.pct))} L${f(px(b.hi))},${f(py(b.pct))}`;
    d += ` L${f(px(bs[bs.length - 1]!.hi))},${f(y0)} Z`;
    out.push(`<path d="${d}" fill="${items[i]!.color}" fill-opacity="0.18" stroke="${items[i]!.color}" stroke-width="1.6"/>`);
  });
  legend(out, w, items);
  out.push('</svg>');
  return out.join('\n');
}
