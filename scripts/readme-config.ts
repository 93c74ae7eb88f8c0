// Writes the configuration table into README.md between its markers.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configTable } from '../src/config/schema';

const file = join(__dirname, '..', 'README.md');
const text = readFileSync(file, 'utf8');
const out = text.replace(/(<!-- config-table:start -->\n)[\s\S]*?(<!-- config-table:end -->)/, `$1${configTable()}\n$2`);
writeFileSync(file, out);
