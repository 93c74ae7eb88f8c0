/**
 * npm run faults -- [--fault kafka-kill[,nats-kill…]] [--runs 3] [--clients 20] [--rate 2] [--fault-ms 15000] [--out loadtest/results]
 * npm run faults -- --summary loadtest/results/<time>-faults.json [--summary …]
 *
 * Issue 10's fault matrix on private engines (the stack's binaries in .stack/,
 * or CHATFLOW_STACK_DIR): each fault, each run on a fresh cluster, scored by
 * reading the log back (test/faults.ts). Prints the table and writes it as
 * markdown and JSON. Exit 1 when a fault broke an invariant or a run could not
 * be carried out, 2 on bad usage.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { explain, FAULTS, markdownTable, PrivateEngines, runFault, summaryTable, type FaultName, type FaultResult } from '../test/faults';
import { FERRETDB_BIN, KAFKA_LIBS, MINIO_BIN, NATS_BIN, STACK_DIR } from '../test/private-engines';

const USAGE = `usage: npm run faults -- [--fault ${FAULTS.join('|')}[,…]] [--runs N] [--clients N] [--rate MSG_PER_S] [--fault-ms MS] [--out DIR]\n       npm run faults -- --summary RESULTS.json [--summary …]   (one row per fault over earlier runs)`;

/** Where the time went: the database's slowest answer and each role's longest event-loop stall. */
const probeLine = (r: FaultResult) =>
  `slowest database read ${r.probe.mongoSlowestMs} ms (sent ${(r.probe.mongoSlowestAt / 1000).toFixed(1)} s after the fault); longest event-loop stall ${Object.entries(r.probe.eventLoopLagMs).map(([n, ms]) => `${n} ${ms} ms`).join(', ')}`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      fault: { type: 'string', multiple: true }, runs: { type: 'string', default: '1' }, clients: { type: 'string' }, rate: { type: 'string' },
      'fault-ms': { type: 'string' }, out: { type: 'string', default: 'loadtest/results' }, summary: { type: 'string', multiple: true }, help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  // --summary a.json --summary b.json: the per-fault summary of earlier runs, nothing run.
  if (values.summary) {
    const all = (await Promise.all(values.summary.map(async (f) => (JSON.parse(await readFile(f, 'utf8')) as { results: FaultResult[] }).results))).flat();
    console.log(summaryTable(all));
    return 0;
  }
  const faults = (values.fault ?? [...FAULTS]).flatMap((f) => f.split(',')) as FaultName[];
  const unknown = faults.filter((f) => !FAULTS.includes(f));
  const num = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, not ${v}\n${USAGE}`);
    return n;
  };
  if (unknown.length > 0) throw new Error(`unknown fault ${unknown.join(', ')}\n${USAGE}`);
  const runs = num('runs', values.runs)!;
  const load = Object.fromEntries(Object.entries({ clients: num('clients', values.clients), rate: num('rate', values.rate), faultMs: num('fault-ms', values['fault-ms']) }).filter(([, v]) => v !== undefined));
  const missing = [KAFKA_LIBS, FERRETDB_BIN, NATS_BIN, MINIO_BIN].filter((p) => !existsSync(p));
  if (missing.length > 0) throw new Error(`the engines' binaries are not installed: ${missing.join(', ')} (npm run stack:install, or CHATFLOW_STACK_DIR=<a .stack folder>)`);

  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD']).toString().trim();
  const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src']).toString().trim() !== '';
  const log = (line: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
  log(`engines from ${STACK_DIR}; faults ${faults.join(', ')}; ${runs} run(s) each; code ${commit}${dirty ? ' (src modified)' : ''}`);
  const engines = await PrivateEngines.start();
  const results: FaultResult[] = [];
  let failedRuns = 0;
  try {
    for (let run = 1; run <= runs; run++) {
      for (const fault of faults) {
        let r: FaultResult;
        try {
          r = await runFault(engines, fault, load, log);
        } catch (e) {
          // A run that could not be carried out (an engine that did not come back) is said, and the matrix goes on.
          log(`${fault} run ${run}: not measured — ${(e as Error).message.slice(0, 500)}`);
          failedRuns++;
          continue;
        }
        results.push(r);
        log(`${fault} run ${run}: ${r.violations.length === 0 ? 'hit' : `miss — ${r.violations.join('; ')}`}`);
        log(`${fault} run ${run}: ${probeLine(r)}`);
        if (r.readback.short.length > 0 || r.readback.moved.length > 0 || r.undeliveredSamples.length > 0) log(`${fault} run ${run}:\n${explain(r)}`);
      }
    }
  } finally {
    await engines.remove();
  }
  const table = `${markdownTable(results)}${runs > 1 ? `\n\nOver all runs:\n\n${summaryTable(results)}` : ''}`;
  console.log(table);
  const stamp = new Date().toISOString().slice(0, 16).replace(':', '');
  await mkdir(values.out!, { recursive: true });
  const base = join(values.out!, `${stamp}-faults`);
  const head = `# Fault matrix, ${new Date().toISOString()}\n\nCode ${commit}${dirty ? ' (src modified)' : ''}; ${runs} run(s) of ${faults.join(', ')}; load ${JSON.stringify(results[0]?.load ?? {})}.\n\n`;
  const said = (r: FaultResult) => Object.keys(r.nonRetryable).map((k) => ` ${k}: "${r.statusDetails[k]}".`).join('');
  const notes = results.filter((r) => r.violations.length > 0).map((r) => `- ${r.fault}: ${r.violations.join('; ')}.${said(r)}`).join('\n');
  const probes = results.map((r) => `- ${r.fault}: ${probeLine(r)}.\n${explain(r)}`).join('\n');
  await writeFile(`${base}.md`, `${head}${table}\n${notes ? `\nInvariants broken:\n\n${notes}\n` : ''}\nWhere the time went:\n\n${probes}\n`);
  await writeFile(`${base}.json`, JSON.stringify({ commit, dirty, results }, null, 2));
  log(`written ${base}.md and ${base}.json`);
  return failedRuns > 0 || results.some((r) => r.violations.length > 0) ? 1 : 0;
}

main().then((code) => process.exit(code), (e: Error) => {
  console.error(e.message);
  process.exit(2);
});
