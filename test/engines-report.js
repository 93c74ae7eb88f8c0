// jest globalTeardown: says which real-engine suites did not run, and how to run them.
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
    console.log('\nReal-engine suites: all ran.');
    return;
  }
  console.log(`\nReal-engine suites SKIPPED (${lines.length}) — engines not configured:`);
  for (const l of lines) console.log(`  - ${l}`);
  console.log('Run them: npm run stack:up && eval "$(npm run -s stack:env)" && npm test');
};
