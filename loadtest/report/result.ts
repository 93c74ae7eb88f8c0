// The result file of one scenario in one mode:
//   loadtest/results/<YYYY-MM-DD>-<scenario>-<mode>.json
// Aggregates and downsampled series only (no per-message samples), so it stays
// far below 1 MB and can be committed.
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ScenarioName, ScenarioOutput } from '../scenarios/context';
import type { ModeName } from '../target/target';

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  totalMemMB: number;
  node: string;
  /** Commit of the server checkout, and whether its src/ or projections/ had uncommitted changes. */
  commit: string;
  dirty: boolean | null;
  /** os.loadavg() (1, 5, 15 min) when the run started and ended, and the highest 1-min value seen during it. */
  loadavgStart: number[];
  loadavgEnd: number[];
  loadavgMax1: number;
}

export interface ResultFile extends ScenarioOutput {
  schema: 1;
  scenario: ScenarioName;
  mode: ModeName;
  date: string;
  startedAt: string;
  wallS: number;
  command: string;
  machine: MachineInfo;
  target: { processes: { name: string; role: string }[]; env: Record<string, string> };
}

export function resultName(date: string, scenario: string, mode: string): string {
  return `${date}-${scenario}-${mode}`;
}

export async function writeResult(dir: string, r: ResultFile): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${resultName(r.date, r.scenario, r.mode)}.json`);
  await writeFile(file, JSON.stringify(r, null, 1) + '\n');
  return file;
}

/** Every result of one scenario on one date, embedded first. */
export async function readResults(dir: string, date: string, scenario: string): Promise<ResultFile[]> {
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.startsWith(`${date}-${scenario}-`) && f.endsWith('.json'));
  const out: ResultFile[] = [];
  for (const f of files) {
    const r = JSON.parse(await readFile(join(dir, f), 'utf8')) as ResultFile;
    if (r.scenario === scenario) out.push(r);
  }
  return out.sort((a, b) => (a.mode === b.mode ? 0 : a.mode === 'embedded' ? -1 : 1));
}

/** The newest date that has results, per scenario. */
export async function latestDates(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    const m = /^(\d{4}-\d{2}-\d{2})-(.+)-(embedded|stack)\.json$/.exec(f);
    if (!m) continue;
    const [, date, scenario] = m as unknown as [string, string, string];
    if (!out.has(scenario) || out.get(scenario)! < date) out.set(scenario, date);
  }
  return out;
}

/**
 * Per scenario (in SCENARIOS order when given, else by name), the newest result of each mode, which may be of
 * different dates: a run of one mode must not drop the other mode's row from the index. `date` is the newest.
 */
export async function latestResults(dir: string, order: readonly string[] = []): Promise<{ scenario: string; date: string; results: ResultFile[] }[]> {
  const newest = new Map<string, Map<string, string>>();
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    const m = /^(\d{4}-\d{2}-\d{2})-(.+)-(embedded|stack)\.json$/.exec(f);
    if (!m) continue;
    const [, date, scenario, mode] = m as unknown as [string, string, string, string];
    const modes = newest.get(scenario) ?? new Map<string, string>();
    if ((modes.get(mode) ?? '') < date) modes.set(mode, date);
    newest.set(scenario, modes);
  }
  const rank = (s: string) => (order.includes(s) ? order.indexOf(s) : order.length);
  const out = [];
  for (const scenario of [...newest.keys()].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))) {
    const modes = newest.get(scenario)!;
    const results: ResultFile[] = [];
    for (const [mode, date] of modes) {
      const r = (await readResults(dir, date, scenario)).find((x) => x.mode === mode);
      if (r) results.push(r);
    }
    results.sort((a, b) => (a.mode === b.mode ? 0 : a.mode === 'embedded' ? -1 : 1));
    out.push({ scenario, date: [...modes.values()].sort().pop()!, results });
  }
  return out;
}
