// jest globalSetup: a fresh skip report per run, and a current web page bundle
// (a build step the server never does itself; the browser suites need it).
const { execFileSync } = require('node:child_process');
const { rmSync } = require('node:fs');
const { join } = require('node:path');
const { tmpdir } = require('node:os');
module.exports = async () => {
  process.env.CHATFLOW_TEST_RUN = String(process.pid);
  rmSync(join(tmpdir(), `chatflow-skipped-suites-${process.pid}.txt`), { force: true });
  execFileSync(process.execPath, ['--require', 'tsx/cjs', join(__dirname, '..', 'scripts', 'web-build.ts'), '--if-stale'], { stdio: 'inherit' });
};
