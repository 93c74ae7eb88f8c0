// The charts of one result, as SVG files beside its JSON:
//   <date>-<scenario>-<mode>-<chart>.svg
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { histogram, lineChart, PALETTE, type LineSeries } from './chart';
import { resultName, type ResultFile } from './result';
import type { Bin } from '../stats';

export interface Figure {
  /** File name (in the results folder). */
  file: string;
  caption: string;
  svg: string;
}

const KIND_COLORS: Record<string, string> = { text: PALETTE[2]!, audio: PALETTE[3]!, video: PALETTE[4]!, all: PALETTE[0]! };

export function figuresOf(r: ResultFile): Figure[] {
  const base = resultName(r.date, r.scenario, r.mode);
  const label = `${r.scenario}, ${r.mode}`;
  const out: Figure[] = [];
  const c = r.charts;
  if (c && c.latency.length > 0) {
    const series: LineSeries[] = [
      { name: 'p50 (all)', points: c.latency.map((p) => [p.t, p.p50]), color: PALETTE[0] },
      { name: 'p99 (all)', points: c.latency.map((p) => [p.t, p.p99]), color: PALETTE[1] },
    ];
    if (r.scenario !== 'saturate') {
      for (const [k, pts] of Object.entries(c.latencyByKind)) series.push({ name: `p50 ${k}`, points: pts.map((p) => [p.t, p.p50]), color: KIND_COLORS[k], dashed: true });
    }
    out.push({
      file: `${base}-latency-time.svg`,
      caption: 'Latency over time (send → BotResponse), per second of completion',
      svg: lineChart({ title: `Latency over time — ${label}`, xLabel: 'time since start (s)', yLabel: 'latency (ms, log)', series, yLog: true }),
    });
    out.push({
      file: `${base}-overhead-time.svg`,
      caption: 'OVERHEAD over time (latency − worker processing_ms)',
      svg: lineChart({
        title: `Overhead over time — ${label}`,
        xLabel: 'time since start (s)',
        yLabel: 'overhead (ms, log)',
        yLog: true,
        series: [
          { name: 'overhead p50', points: c.overhead.map((p) => [p.t, Math.max(0.01, p.p50)]), color: PALETTE[0] },
          { name: 'overhead p99', points: c.overhead.map((p) => [p.t, Math.max(0.01, p.p99)]), color: PALETTE[1] },
        ],
      }),
    });
    const hist = Object.entries(c.histLatency).filter(([k]) => r.scenario === 'saturate' || k !== 'all');
    out.push({
      file: `${base}-latency-hist.svg`,
      caption: 'Latency histogram per message type',
      svg: histogram({ title: `Latency distribution — ${label}`, xLabel: 'latency (ms, log)', series: hist.map(([k, bins]) => ({ name: k, bins, color: KIND_COLORS[k] })) }),
    });
    out.push({
      file: `${base}-overhead-hist.svg`,
      caption: 'OVERHEAD histogram (all messages)',
      svg: histogram({ title: `Overhead distribution — ${label}`, xLabel: 'overhead (ms, log)', series: [{ name: 'overhead', bins: c.histOverhead, color: PALETTE[0] }] }),
    });
    if (r.scenario === 'saturate') {
      out.push({
        file: `${base}-throughput-time.svg`,
        caption: 'Replies per second over time',
        svg: lineChart({ title: `Throughput — ${label}`, xLabel: 'time since start (s)', yLabel: 'replies / s', series: [{ name: 'replies/s', points: c.throughput.map((p) => [p.t, p.perS]) }] }),
      });
    }
  }
  const readings = r.server?.readings ?? [];
  if ((r.scenario === 'soak' || r.scenario === 'reference') && readings.length > 1) {
    const byProc = new Map<string, [number, number][]>();
    for (const x of readings) {
      if (!byProc.has(x.process)) byProc.set(x.process, []);
      byProc.get(x.process)!.push([x.t, x.rssMB]);
    }
    out.push({
      file: `${base}-rss-time.svg`,
      caption: 'Server resident memory over time',
      svg: lineChart({ title: `Server RSS — ${label}`, xLabel: 'time since start (s)', yLabel: 'RSS (MB)', series: [...byProc.entries()].map(([name, points]) => ({ name, points })) }),
    });
  }
  const hist = (r.figures as { hist?: Record<string, Bin[]> } | undefined)?.hist;
  if ((r.scenario === 'admission' || r.scenario === 'scale') && hist) {
    out.push({
      file: `${base}-connect-hist.svg`,
      caption: 'Time to admit / refuse a connection',
      svg: histogram({
        title: `Connection outcome latency — ${label}`,
        xLabel: 'stream open → Welcome or refusal (ms, log)',
        series: Object.entries(hist).map(([name, bins], i) => ({ name, bins, color: PALETTE[i % PALETTE.length] })),
      }),
    });
  }
  return out;
}

export async function writeFigures(dir: string, r: ResultFile): Promise<Figure[]> {
  const figs = figuresOf(r);
  for (const f of figs) await writeFile(join(dir, f.file), f.svg + '\n');
  return figs;
}
