/**
 * Real-engine suites run only when the engine is configured (`eval "$(npm run -s stack:env)"`
 * after `npm run stack:up`). Without it they are skipped, and the skip is said plainly:
 * jest lists them as skipped and test/engines-report.js prints which and why at the end.
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

export type EngineVar = 'KAFKA_BROKERS' | 'MONGODB_URI' | 'NATS_URL' | 'S3_ENDPOINT';

export const SKIP_FILE = join(tmpdir(), `chatflow-skipped-suites-${process.env.CHATFLOW_TEST_RUN ?? 'local'}.txt`);

/** `describe` when every variable is set, else `describe.skip` and a line in the skip report. */
export function describeWithEngines(vars: readonly EngineVar[], name: string, fn: () => void): void {
  const missing = vars.filter((v) => !process.env[v]);
  if (missing.length === 0) {
    describe(name, fn);
    return;
  }
  appendFileSync(SKIP_FILE, `${name} — needs ${missing.join(', ')}\n`);
  describe.skip(`${name} (skipped: ${missing.join(', ')} not set)`, fn);
}

export const ENGINE_KEYS = ['KAFKA_BROKERS', 'MONGODB_URI', 'NATS_URL', 'S3_ENDPOINT', 'S3_BUCKET', 'S3_REGION', 'S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY', 'S3_FORCE_PATH_STYLE'];

/** `env` without the engine settings: for child processes that must run the embedded default even when the stack is configured. */
export function withoutEngines(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !ENGINE_KEYS.includes(k)));
}

/** The engine settings of the running stack, for suites that start ChatFlow on it. */
export function engineEnv(): Record<string, string> {
  return Object.fromEntries(ENGINE_KEYS.filter((k) => process.env[k]).map((k) => [k, process.env[k]!]));
}

/**
 * `describe` when `condition` holds, else `describe.skip` and a line in the skip
 * report saying what is missing (`reason`), for suites that need a tool rather
 * than an engine variable (Chromium, Envoy).
 */
export function describeWhen(condition: boolean, name: string, reason: string, fn: () => void): void {
  if (condition) {
    describe(name, fn);
    return;
  }
  appendFileSync(SKIP_FILE, `${name} — ${reason}\n`);
  describe.skip(`${name} (skipped: ${reason})`, fn);
}
