#!/usr/bin/env node
'use strict';
// The CLI: the compiled build (`npm run build`, run by `npm install`) when it
// is there, as in a production install; otherwise the TypeScript sources
// through tsx (a dev dependency).
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const built = join(__dirname, '..', 'dist', 'src', 'cli', 'main.js');
if (existsSync(built)) {
  require(built).run(process.argv.slice(2));
} else {
  require('tsx/cjs');
  require('../src/cli/main.ts').run(process.argv.slice(2));
}
