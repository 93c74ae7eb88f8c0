import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * `program` behind a stand-in at `dir`/`name` that runs it (same arguments,
 * input and output, exit code) and, when it ends, writes what it used: its
 * peak memory and the data limit it ran under (what a test of a memory bound
 * asks of a program ChatFlow starts, e.g. ffmpeg).
 */
export async function measuredProgram(program: string, dir: string, name: string): Promise<{ path: string; used(): Promise<{ peakKb: number; dataLimitBytes: number }> }> {
  const path = join(dir, name);
  const report = join(dir, `${name}.used`);
  await writeFile(
    path,
    [
      '#!/usr/bin/env python3',
      'import resource, subprocess, sys',
      `r = subprocess.run([${JSON.stringify(program)}] + sys.argv[1:]).returncode`,
      // RLIMIT_DATA as the program got it: -1 when unlimited.
      `open(${JSON.stringify(report)}, 'w').write('%d %d' % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, resource.getrlimit(resource.RLIMIT_DATA)[0]))`,
      'sys.exit(r)',
      '',
    ].join('\n'),
  );
  await chmod(path, 0o755);
  return {
    path,
    used: async () => {
      const [peakKb, dataLimitBytes] = (await readFile(report, 'utf8')).split(' ').map(Number);
      return { peakKb: peakKb!, dataLimitBytes: dataLimitBytes! };
    },
  };
}
