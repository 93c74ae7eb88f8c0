// `npm start` runs this first (prestart): `node dist/src/main.js` needs a build
// that is current (`--stamp`, the last step of `npm run build`, records one). `npm install` builds (prepare); after a `git pull` without
// it, this rebuilds when the TypeScript compiler is installed, and otherwise
// says what is wrong. Plain JavaScript: it must run before any build exists.
'use strict';
const { existsSync, readdirSync, statSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { spawnSync } = require('node:child_process');

const root = join(__dirname, '..');
const mtime = (f) => (existsSync(f) ? statSync(f).mtimeMs : 0);

/** Newest mtime of the .ts files under dir (tests and jest-only contract suites are not built). */
function newest(dir) {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'dist' || e.name === 'node_modules' || e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) n = Math.max(n, newest(p));
    else if (e.name.endsWith('.ts') && !/\.(test|contract)\.ts$/.test(e.name)) n = Math.max(n, statSync(p).mtimeMs);
  }
  return n;
}

const main = join(root, 'dist', 'src', 'main.js');
// Written by `npm run build` once both the compile and the page bundle succeeded.
const stamp = join(root, 'dist', '.build-stamp');
if (process.argv.includes('--stamp')) {
  writeFileSync(stamp, `${new Date().toISOString()}\n`);
  process.exit(0);
}
const sources = ['src', 'projections', join('gateway', 'web')].map((d) => newest(join(root, d)));
if (existsSync(main) && mtime(stamp) >= Math.max(...sources)) process.exit(0);

if (!existsSync(join(root, 'node_modules', 'typescript'))) {
  if (existsSync(main)) {
    process.stderr.write('chatflow: the build is older than the sources and the TypeScript compiler is not installed; starting the existing build\n');
    process.exit(0);
  }
  process.stderr.write('chatflow: no build (dist/src/main.js) and no TypeScript compiler: run `npm install` (it builds), then `npm start`\n');
  process.exit(1);
}
process.stderr.write(`chatflow: ${existsSync(main) ? 'the build is older than the sources' : 'no build yet'}; running \`npm run build\`\n`);
const r = spawnSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
