import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { latestResults } from './report/result';

describe('the latest results for the index (REPORT.md, README tables)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'latest-results-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const put = (date: string, scenario: string, mode: string) =>
    writeFile(join(dir, `${date}-${scenario}-${mode}.json`), JSON.stringify({ date, scenario, mode }));

  it('given a newer run of one mode only, then the other mode keeps its older row', async () => {
    await put('2026-11-22', 'reference', 'embedded');
    await put('2026-11-22', 'reference', 'stack');
    await put('2026-11-23', 'reference', 'embedded');
    await put('2026-11-21', 'saturate', 'stack');
    const latest = await latestResults(dir);
    expect(latest.map((l) => [l.scenario, l.date, l.results.map((r) => `${r.mode} ${r.date}`)])).toEqual([
      ['reference', '2026-11-23', ['embedded 2026-11-23', 'stack 2026-11-22']],
      ['saturate', '2026-11-21', ['stack 2026-11-21']],
    ]);
  });
});
