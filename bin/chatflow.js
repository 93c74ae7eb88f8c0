#!/usr/bin/env node
'use strict';
// Runs the TypeScript CLI through tsx, no build step needed.
require('tsx/cjs');
const { run } = require('../src/cli/main.ts');
run(process.argv.slice(2));
