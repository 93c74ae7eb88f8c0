// jest globalSetup: a fresh skip report per run, and a current web page bundle
// (a build step the server never does itself; the browser suites need it).
const { execFileSync } = require('node:child_process');
const { rmSync } = require('node:fs');
const { join } = require('node:path');
const { tmpdir } = require('node:os');
module.exports = async () => {
  process.env.CHATFLOW_TEST_RUN = String(process.pid);
  // Servers the tests start (in-process or as children) run without the speech engines unless a test asks for
  // them (test/speech.e2e.test.ts, src/speech/**): loading Piper per server and speaking every reply would
  // make suites about other things slow and timing-dependent.
  process.env.CHATFLOW_STT ??= 'none';
  process.env.CHATFLOW_TTS ??= 'none';
  rmSync(join(tmpdir(), `chatflow-skipped-suites-${process.pid}.txt`), { force: true });
  execFileSync(process.execPath, ['--require', 'tsx/cjs', join(__dirname, '..', 'scripts', 'web-build.ts'), '--if-stale'], { stdio: 'inherit' });
};
