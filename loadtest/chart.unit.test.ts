import { escapeXml, formatTick, histogram, lineChart, logTicks, niceTicks } from './report/chart';
import { figuresOf } from './report/figures';
import type { ResultFile } from './report/result';

/** Minimal well-formedness: every opened tag closes, attributes quoted, one root. */
function assertWellFormed(svg: string): void {
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
  expect(svg.trim().endsWith('</svg>')).toBe(true);
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)([^>]*?)(\/?)>/g)) {
    const [, closing, name, , selfClosing] = m;
    if (selfClosing) continue;
    if (closing) expect(stack.pop()).toBe(name);
    else stack.push(name!);
  }
  expect(stack).toEqual([]);
}

describe('ticks', () => {
  it('niceTicks covers the range with 1-2-5 steps', () => {
    expect(niceTicks(0, 100)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(0, 7)).toEqual([0, 2, 4, 6, 8]);
    expect(niceTicks(3, 3).length).toBeGreaterThan(1);
    const t = niceTicks(0.013, 0.98);
    expect(t[0]).toBeLessThanOrEqual(0.013);
    expect(t[t.length - 1]).toBeGreaterThanOrEqual(0.98);
  });

  it('logTicks gives decades, with 2 and 5 in short spans', () => {
    expect(logTicks(1.5, 800)).toEqual([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]);
    expect(logTicks(0.3, 20_000)).toEqual([0.1, 1, 10, 100, 1000, 10000, 100000]);
  });

  it('formatTick is short', () => {
    expect(formatTick(0)).toBe('0');
    expect(formatTick(1500)).toBe('1500');
    expect(formatTick(25_000)).toBe('25k');
    expect(formatTick(2_000_000)).toBe('2M');
    expect(formatTick(0.25)).toBe('0.25');
  });
});

describe('lineChart', () => {
  it('draws one polyline per series with every point, a legend and escaped text', () => {
    const svg = lineChart({
      title: 'Latency <p50> & "p99"',
      xLabel: 'time (s)',
      yLabel: 'ms',
      series: [
        { name: 'p50', points: [[0, 10], [1, 12], [2, 11]] },
        { name: 'p99', points: [[0, 40], [1, 80], [2, 60]], dashed: true },
      ],
    });
    assertWellFormed(svg);
    const lines = [...svg.matchAll(/<polyline [^>]*points="([^"]+)"/g)];
    expect(lines).toHaveLength(2);
    expect(lines[0]![1]!.split(' ')).toHaveLength(3);
    expect(svg).toContain('Latency &lt;p50&gt; &amp; &quot;p99&quot;');
    expect(svg).toContain('stroke-dasharray');
    expect(svg).toContain('>p99</text>');
  });

  it('maps larger values higher (SVG y grows downwards), on a log axis too', () => {
    for (const yLog of [false, true]) {
      const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', yLog, series: [{ name: 's', points: [[0, 1], [1, 1000]] }] });
      const [a, b] = /points="([^"]+)"/.exec(svg)![1]!.split(' ').map((p) => Number(p.split(',')[1]));
      expect(b!).toBeLessThan(a!);
    }
  });

  it('says "no data" rather than failing on empty series', () => {
    const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 's', points: [] }] });
    assertWellFormed(svg);
    expect(svg).toContain('no data');
  });
});

describe('histogram', () => {
  it('draws each series as a closed step path, as shares of its own total', () => {
    const svg = histogram({
      title: 'h',
      xLabel: 'ms',
      series: [
        { name: 'text', bins: [{ lo: 0, hi: 1, count: 1 }, { lo: 1, hi: 10, count: 3 }] },
        { name: 'video', bins: [{ lo: 1000, hi: 2000, count: 100 }] },
      ],
    });
    assertWellFormed(svg);
    const paths = [...svg.matchAll(/<path d="([^"]+)"/g)].map((m) => m[1]!);
    expect(paths).toHaveLength(2);
    for (const d of paths) expect(d.trim().endsWith('Z')).toBe(true);
    // The y axis runs to at least 100 % (video has all its messages in one bin).
    expect(svg).toContain('>100</text>');
  });
});

describe('escapeXml', () => {
  it('escapes the five characters that matter', () => {
    expect(escapeXml(`a<b>&"c"`)).toBe('a&lt;b&gt;&amp;&quot;c&quot;');
  });
});

describe('figuresOf', () => {
  it('names the charts of a result after its date, scenario and mode', () => {
    const r = {
      scenario: 'reference', mode: 'embedded', date: '2030-01-02',
      charts: {
        latency: [{ t: 0, count: 2, p50: 10, p99: 20, max: 20 }, { t: 1, count: 1, p50: 12, p99: 12, max: 12 }],
        overhead: [{ t: 0, count: 2, p50: 1, p99: 2, max: 2 }],
        latencyByKind: { text: [{ t: 0, p50: 10 }] },
        throughput: [{ t: 0, perS: 2 }],
        histLatency: { text: [{ lo: 0, hi: 10, count: 2 }], all: [{ lo: 0, hi: 10, count: 2 }] },
        histOverhead: [{ lo: 0, hi: 1, count: 2 }],
      },
      server: { readings: [] },
    } as unknown as ResultFile;
    const files = figuresOf(r).map((f) => f.file);
    expect(files).toEqual([
      '2030-01-02-reference-embedded-latency-time.svg',
      '2030-01-02-reference-embedded-overhead-time.svg',
      '2030-01-02-reference-embedded-latency-hist.svg',
      '2030-01-02-reference-embedded-overhead-hist.svg',
    ]);
    for (const f of figuresOf(r)) assertWellFormed(f.svg);
  });
});
