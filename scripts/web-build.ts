// `npm run web:build` (part of `npm run build`): bundles the browser page
// (gateway/web) into gateway/web/dist. `--if-stale` builds only when the
// bundle is missing or older than its sources (the test setup uses it).
import { buildWebBundle, bundleMtime, newestWebSource, BUNDLE_FILE } from '../src/http/web-bundle';

async function main(): Promise<void> {
  if (process.argv.includes('--if-stale')) {
    const [built, newest] = await Promise.all([bundleMtime(), newestWebSource()]);
    if (built !== undefined && built >= newest) return;
  }
  const { ms, bytes } = await buildWebBundle();
  process.stdout.write(`built ${BUNDLE_FILE} (${Math.round(bytes / 1024)} KiB) in ${ms} ms\n`);
}

main().catch((err: Error) => {
  process.stderr.write(`web build failed: ${err.message}\n`);
  process.exit(1);
});
