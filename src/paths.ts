import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * The package root: the nearest folder above this file holding package.json.
 * The same from the sources (`src/`) and from the build (`dist/src/`), so
 * assets (proto/, gateway/web/) are found in both layouts.
 */
function packageRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

export const PACKAGE_ROOT = packageRoot(__dirname);
export const PROTO_DIR = join(PACKAGE_ROOT, 'proto');
