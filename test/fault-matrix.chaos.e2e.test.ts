import { existsSync } from 'node:fs';
import { describeWhen } from './engines';
import { explain, FAULTS, markdownTable, PrivateEngines, runFault, type FaultName, type Load } from './faults';
import { FERRETDB_BIN, KAFKA_LIBS, MINIO_BIN, NATS_BIN } from './private-engines';

/*
 * Issue 10's fault matrix in CI (the long version, every fault and several
 * runs, is `npm run faults`): a projector, two workers and two gateways on
 * private engines, clients sending text at a steady rate, one fault, the log
 * read back. Asserted for each fault in HOLDS: every accepted message in the
 * log with exactly one reply or failure and none failed for good, every
 * reply delivered to its still-connected client, no non-retryable status,
 * and one lease after the fault every open stream holds exactly one slot.
 *
 * A fault whose fix has not landed yet is listed as a todo with what broke
 * when it was last measured; moving it into HOLDS is the one-line change
 * that turns the assertion on (each adds about 1.5 min to CI).
 */
const HOLDS: readonly FaultName[] = ['nats-kill', 'worker-kill', 'projector-kill', 'worker-term', 'kafka-freeze', 'minio-kill', 'gateway-kill', 'kafka-kill', 'ferretdb-kill'];

/** What each fault not in HOLDS broke when last measured (`npm run faults`, see the README's Reliability table). */
const NOT_YET: Partial<Record<FaultName, string>> = {};

/** Shorter than the script's default: 10 clients × 2 msg/s, 5 s before the fault, 10 s of fault, 15 s after (the default 10 s lease). */
const CI_LOAD: Partial<Load> = { clients: 10, rate: 2, warmupMs: 5_000, faultMs: 10_000, afterMs: 15_000 };

const BINARIES = [KAFKA_LIBS, FERRETDB_BIN, NATS_BIN, MINIO_BIN];
const missing = BINARIES.filter((p) => !existsSync(p));

describeWhen(missing.length === 0, 'Fault matrix: engines and roles killed under load', `needs the stack's binaries: ${missing.join(', ')} (npm run stack:install)`, () => {
  jest.setTimeout(300_000);
  let engines: PrivateEngines;

  beforeAll(async () => {
    engines = await PrivateEngines.start();
  }, 180_000);
  afterAll(async () => {
    await engines?.remove();
  });

  for (const fault of FAULTS) {
    if (!HOLDS.includes(fault)) {
      it.todo(`${fault}: ${NOT_YET[fault] ?? 'not measured yet'} (add it to HOLDS once fixed)`);
      continue;
    }
    it(`${fault}: every accepted message answered once and delivered, admission exact one lease after`, async () => {
      const r = await runFault(engines, fault, CI_LOAD);
      // Printed for the record, like the other chaos tests; a miss names each undelivered outcome and its client's streams.
      process.stdout.write(`${markdownTable([r])}\n${explain(r)}\nstatuses: ${JSON.stringify(r.statusDetails)}\n`);
      expect(r.accepted).toBeGreaterThan(100);
      expect(r.violations).toEqual([]);
    });
  }
});
