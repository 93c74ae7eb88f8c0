import { mkdir, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';

/** The page's sources (gateway/web) and where its bundle goes (gateway/web/dist, not committed). */
export const WEB_DIR = resolve(__dirname, '..', '..', 'gateway', 'web');
export const WEB_DIST = join(WEB_DIR, 'dist');
export const BUNDLE_FILE = join(WEB_DIST, 'app.js');
const ENTRY = join(WEB_DIR, 'app.ts');
const LOCKFILE = resolve(WEB_DIR, '..', '..', 'package-lock.json');

type BundleState = { ok: true; file: string } | { ok: false; problem: string };

/** Newest modification time of the page's TypeScript (and of the lockfile: new library versions). */
async function newestSource(dir = WEB_DIR): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name === 'dist' || entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const p = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, await newestSource(p));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, (await stat(p)).mtimeMs);
  }
  if (dir === WEB_DIR) newest = Math.max(newest, await stat(LOCKFILE).then((s) => s.mtimeMs, () => 0));
  return newest;
}

async function mtimeOf(file: string): Promise<number | undefined> {
  return stat(file).then((s) => s.mtimeMs, () => undefined);
}

/**
 * Bundles gateway/web/app.ts with esbuild (a dev dependency) into
 * gateway/web/dist/app.js. Each output is written to a temporary file and
 * renamed, so processes building at the same time never serve half a file.
 */
export async function buildWebBundle(): Promise<{ ms: number; bytes: number }> {
  const started = Date.now();
  const esbuild = await import('esbuild');
  const result = await esbuild.build({
    entryPoints: [ENTRY],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    outfile: BUNDLE_FILE,
    sourcemap: 'linked',
    minify: true,
    legalComments: 'none',
    write: false,
    logLevel: 'silent',
    tsconfig: join(WEB_DIR, 'tsconfig.json'),
  });
  await mkdir(WEB_DIST, { recursive: true });
  let bytes = 0;
  // The map first: once app.js is renamed into place the bundle counts as built.
  const files = [...result.outputFiles].sort((a, b) => Number(b.path.endsWith('.map')) - Number(a.path.endsWith('.map')));
  for (const f of files) {
    const tmp = `${f.path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    await writeFile(tmp, f.contents);
    await rename(tmp, f.path);
    if (f.path.endsWith('.js')) bytes = f.contents.length;
  }
  return { ms: Date.now() - started, bytes };
}

/**
 * Keeps the bundle current: builds it when missing or older than its sources
 * (checked at most once a second), one build at a time. Without esbuild (a
 * production install without dev dependencies) an existing bundle is served
 * as it is.
 */
export class WebBundle {
  private building?: Promise<BundleState>;
  private checkedAt = 0;
  private last?: BundleState;

  constructor(private readonly logger: Logger) {}

  async current(): Promise<BundleState> {
    if (this.building) return this.building;
    if (this.last?.ok && Date.now() - this.checkedAt < 1000) return this.last;
    this.building = this.refresh().finally(() => (this.building = undefined));
    return this.building;
  }

  private async refresh(): Promise<BundleState> {
    this.checkedAt = Date.now();
    const [built, newest] = await Promise.all([mtimeOf(BUNDLE_FILE), newestSource().catch(() => 0)]);
    if (built !== undefined && built >= newest) return (this.last = { ok: true, file: BUNDLE_FILE });
    try {
      const { ms, bytes } = await buildWebBundle();
      this.logger.info({ ms, kib: Math.round(bytes / 1024), file: BUNDLE_FILE }, built === undefined ? 'web page built' : 'web page rebuilt (sources changed)');
      return (this.last = { ok: true, file: BUNDLE_FILE });
    } catch (err) {
      const missingEsbuild = (err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND';
      if (built !== undefined) {
        if (!missingEsbuild) this.logger.warn({ err }, 'web page rebuild failed; serving the previous bundle');
        return (this.last = { ok: true, file: BUNDLE_FILE });
      }
      const problem = missingEsbuild
        ? 'the web page is not built and esbuild (a dev dependency) is not installed: run `npm install` then `npm run web:build`'
        : `the web page failed to build: ${(err as Error).message.split('\n')[0]}`;
      this.logger.error({ err: missingEsbuild ? undefined : err }, problem);
      return (this.last = { ok: false, problem });
    }
  }
}
