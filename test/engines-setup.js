// jest globalSetup: a fresh skip report per run.
const { rmSync } = require('node:fs');
const { join } = require('node:path');
const { tmpdir } = require('node:os');
module.exports = async () => {
  process.env.CHATFLOW_TEST_RUN = String(process.pid);
  rmSync(join(tmpdir(), `chatflow-skipped-suites-${process.pid}.txt`), { force: true });
};
