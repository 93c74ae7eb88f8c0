import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/**
 * mkdir -p that reports the real cause: node's recursive mkdir says ENOENT
 * ("no such file or directory") whatever stopped it, a full disk included.
 * `mode` as mkdir's, for each folder it makes (an option, not a bare number:
 * `folders.map(makeDir)` would pass each index as the mode).
 */
export async function makeDir(dir: string, { mode }: { mode?: number } = {}): Promise<void> {
  try {
    await fsp.mkdir(dir, { recursive: true, mode });
  } catch (err) {
    const parent = path.dirname(dir);
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || parent === dir) throw err;
    await makeDir(parent, { mode });
    await fsp.mkdir(dir, mode).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
  }
}
