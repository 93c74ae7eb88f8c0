// `npm run web:build`: bundles the browser page (gateway/web) into gateway/web/dist.
// `npm start` does the same on demand when the bundle is missing or stale.
import { buildWebBundle, BUNDLE_FILE } from '../src/http/web-bundle';

buildWebBundle().then(
  ({ ms, bytes }) => process.stdout.write(`built ${BUNDLE_FILE} (${Math.round(bytes / 1024)} KiB) in ${ms} ms\n`),
  (err: Error) => {
    process.stderr.write(`web build failed: ${err.message}\n`);
    process.exit(1);
  },
);
