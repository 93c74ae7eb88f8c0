// jest globalTeardown: says which gated suites did not run, and why.
const { readFileSync, rmSync } = require('node:fs');
const { join } = require('node:path');
const { tmpdir } = require('node:os');
module.exports = async () => {
  const file = join(tmpdir(), `chatflow-skipped-suites-${process.env.CHATFLOW_TEST_RUN}.txt`);
  let lines = [];
  try {
    lines = [...new Set(readFileSync(file, 'utf8').split('\n').filter(Boolean))];
  } catch {
    /* nothing skipped */
  }
  rmSync(file, { force: true });
  if (lines.length === 0) {
    console.log('\nGated suites (real engines, browser, Envoy): all ran.');
    return;
  }
  console.log(`\nSuites SKIPPED (${lines.length}) — what each needs:`);
  for (const l of lines) console.log(`  - ${l}`);
  console.log('Real engines: npm run stack:up && eval "$(npm run -s stack:env)" && npm test');
};
