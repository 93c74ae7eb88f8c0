import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { PACKAGE_ROOT } from '../paths';

/** The page's sources (gateway/web) and where its bundle goes (gateway/web/dist, not committed). */
export const WEB_DIR = join(PACKAGE_ROOT, 'gateway', 'web');
export const WEB_DIST = join(WEB_DIR, 'dist');
export const BUNDLE_FILE = join(WEB_DIST, 'app.js');
const ENTRY = join(WEB_DIR, 'app.ts');
const LOCKFILE = join(PACKAGE_ROOT, 'package-lock.json');

type BundleState = { ok: true; file: string } | { ok: false; problem: string };

/** Newest modification time of the page's TypeScript (and of the lockfile: new library versions). */
export async function newestWebSource(dir = WEB_DIR): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name === 'dist' || entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const p = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, await newestWebSource(p));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, (await stat(p)).mtimeMs);
  }
  if (dir === WEB_DIR) newest = Math.max(newest, await stat(LOCKFILE).then((s) => s.mtimeMs, () => 0));
  return newest;
}

export async function bundleMtime(): Promise<number | undefined> {
  return stat(BUNDLE_FILE).then((s) => s.mtimeMs, () => undefined);
}

/** The esbuild options of the page, for one build and for watch mode alike. */
async function esbuildOptions() {
  return {
    entryPoints: [ENTRY],
    bundle: true,
    format: 'esm' as const,
    platform: 'browser' as const,
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    outfile: BUNDLE_FILE,
    sourcemap: 'linked' as const,
    minify: true,
    legalComments: 'none' as const,
    logLevel: 'silent' as const,
    tsconfig: join(WEB_DIR, 'tsconfig.json'),
  };
}

/**
 * Bundles gateway/web/app.ts with esbuild (a dev dependency) into
 * gateway/web/dist/app.js: a build step (`npm run build`, `npm run web:build`),
 * never done by the server. Each output is written to a temporary file and
 * renamed, so a server reading it never serves half a file.
 */
export async function buildWebBundle(): Promise<{ ms: number; bytes: number }> {
  const started = Date.now();
  const esbuild = await import('esbuild');
  const result = await esbuild.build({ ...(await esbuildOptions()), write: false });
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

/** `npm run dev`: rebuilds the bundle whenever the page's sources change. Resolves to a stop function. */
export async function watchWebBundle(onBuilt: (errors: number) => void): Promise<() => Promise<void>> {
  const esbuild = await import('esbuild');
  const ctx = await esbuild.context({
    ...(await esbuildOptions()),
    plugins: [{ name: 'report', setup: (b) => b.onEnd((r) => onBuilt(r.errors.length)) }],
  });
  await ctx.watch();
  return () => ctx.dispose();
}

/**
 * The served bundle. The server only reads it: bundling is a build step. A
 * missing bundle is reported once at start and answers 503 with what to run;
 * one older than its sources is served with a warning at start.
 */
export class WebBundle {
  private state?: BundleState;

  constructor(private readonly logger: Logger) {}

  /** Checks the bundle once at start (and again while it is missing: a build may land later). */
  async current(): Promise<BundleState> {
    if (this.state?.ok) return this.state;
    const first = this.state === undefined;
    const built = await bundleMtime();
    if (built === undefined) {
      const problem = 'the web page is not built: run `npm run build` (or `npm run web:build`)';
      if (first) this.logger.warn(problem);
      return (this.state = { ok: false, problem });
    }
    // Only a source checkout has the page's TypeScript (the image ships the bundle alone).
    const newest = existsSync(ENTRY) ? await newestWebSource().catch(() => 0) : 0;
    if (newest > built) this.logger.warn({ file: BUNDLE_FILE }, 'the web page bundle is older than its sources: run `npm run web:build` (or `npm run dev`)');
    return (this.state = { ok: true, file: BUNDLE_FILE });
  }
}
