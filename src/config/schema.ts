import { z } from 'zod';

/**
 * Every setting ChatFlow reads, with its default and meaning. The README
 * configuration table is generated from this list (`npm run config:doc`), so
 * the two cannot drift apart.
 */
const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max);
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const addr = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'must be host:port, e.g. 127.0.0.1:50051');
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));
const list = z
  .string()
  .default('')
  .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean));

interface Setting {
  schema: z.ZodType;
  default?: string;
  doc: string;
}

export const SETTINGS = {
  CHATFLOW_ROLE: { schema: z.enum(['all', 'gateway', 'worker', 'projector']), default: 'all', doc: '`all`, `gateway`, `worker`, `projector` (only `all` runs on the embedded default)' },
  CHATFLOW_GRPC_ADDR: { schema: addr, default: '127.0.0.1:50051', doc: 'gRPC listen address (port 0 = any free port)' },
  CHATFLOW_HTTP_ADDR: { schema: addr, default: '127.0.0.1:8080', doc: '`/healthz`, `/metrics`, signed media URLs' },
  CHATFLOW_PUBLIC_HTTP_URL: { schema: optionalString, doc: 'base of the media URLs handed to clients; default `http://` + the HTTP address' },
  CHATFLOW_DATA_DIR: { schema: z.string().min(1), default: './data', doc: 'embedded log, media, generated secret' },
  CHATFLOW_AUTH_SECRET: { schema: optionalString, doc: 'HS256 secret (≥ 32 chars); default: generated once into `<data dir>/secret`' },
  CHATFLOW_INSECURE_CLIENT_ID: { schema: bool, default: 'false', doc: '`true` accepts `x-client-id` metadata without a token (load tests only)' },
  CHATFLOW_MAX_CLIENTS: { schema: int(1), default: '50', doc: 'connected clients, all gateways together' },
  CHATFLOW_MAX_PROCESSING: { schema: int(1), default: '500', doc: 'messages in processing, all workers together' },
  CHATFLOW_FIRST_MESSAGE_TIMEOUT_MS: { schema: int(1), default: '30000', doc: 'a client must send its first message within this' },
  CHATFLOW_ALLOWED_TIMEZONES: { schema: list, default: '', doc: 'comma-separated allow-list of IANA zones; empty = every zone' },
  CHATFLOW_LEASE_MS: { schema: int(1000), default: '10000', doc: 'connection lease; a dead gateway\'s slots return within it' },
  CHATFLOW_RETRY_AFTER_MS: { schema: int(0), default: '2000', doc: 'hint sent in the `retry-after-ms` trailer when the server is full' },
  CHATFLOW_SIM_DELAY_SCALE: { schema: z.coerce.number().min(0).max(100), default: '1', doc: 'multiplies the simulated processing times; `0` = none' },
  CHATFLOW_MAX_MEDIA_BYTES: { schema: int(1), default: '8388608', doc: 'largest media accepted (bytes)' },
  CHATFLOW_MAX_TEXT_CHARS: { schema: int(1), default: '16000', doc: 'longest text message accepted (characters)' },
  CHATFLOW_MEDIA_URL_TTL_MS: { schema: int(1000), default: '3600000', doc: 'validity of media download URLs' },
  CHATFLOW_LOG_FSYNC: { schema: bool, default: 'true', doc: 'fsync the embedded event log before `Accepted` (group commit); `false` only for benchmarks' },
  CHATFLOW_SHUTDOWN_GRACE_MS: { schema: int(0), default: '5000', doc: 'how long shutdown waits for messages in processing' },
  LOG_LEVEL: { schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), default: 'info', doc: 'pino log level' },
  KAFKA_BROKERS: { schema: optionalString, doc: 'real event log (not built yet: see README)' },
  MONGODB_URI: { schema: optionalString, doc: 'real read models (not built yet)' },
  NATS_URL: { schema: optionalString, doc: 'real response bus (not built yet)' },
  S3_ENDPOINT: { schema: optionalString, doc: 'real media store (not built yet; also `S3_BUCKET`, `S3_REGION`, `S3_ACCESS_KEY_ID`, `S3_SECRET_ACCESS_KEY`)' },
  LLM_PROVIDER: { schema: z.enum(['simulated', 'openai']), default: 'simulated', doc: '`openai` = any OpenAI-compatible chat-completions server' },
  LLM_BASE_URL: { schema: optionalString, doc: 'e.g. `http://127.0.0.1:11434/v1` (required for `openai`)' },
  LLM_API_KEY: { schema: optionalString, doc: 'bearer key for the provider, if it needs one' },
  LLM_MODEL: { schema: z.string().min(1), default: 'gpt-4o-mini', doc: 'model name sent to the provider' },
  LLM_TIMEOUT_MS: { schema: int(100), default: '60000', doc: 'a provider call that takes longer fails with `DEADLINE_EXCEEDED`' },
} satisfies Record<string, Setting>;

type Settings = typeof SETTINGS;
export type RawConfig = { [K in keyof Settings]: z.output<Settings[K]['schema']> };

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses the environment; throws ConfigError with one line per bad value. */
export function parseEnv(env: Record<string, string | undefined>): RawConfig {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [name, setting] of Object.entries(SETTINGS) as [string, Setting][]) {
    const raw = env[name] ?? setting.default;
    const parsed = setting.schema.safeParse(raw);
    if (parsed.success) out[name] = parsed.data;
    else problems.push(`${name}=${JSON.stringify(env[name])}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  }
  if (out.LLM_PROVIDER === 'openai' && !out.LLM_BASE_URL) problems.push('LLM_BASE_URL: required when LLM_PROVIDER=openai');
  const secret = out.CHATFLOW_AUTH_SECRET as string | undefined;
  if (secret !== undefined && secret.length < 32) problems.push('CHATFLOW_AUTH_SECRET: must be at least 32 characters');
  if (problems.length > 0) throw new ConfigError(problems);
  return out as RawConfig;
}

/** The README table, from the same list. */
export function configTable(): string {
  const rows = Object.entries(SETTINGS as Record<string, Setting>).map(
    ([name, s]) => `| \`${name}\` | ${s.default === undefined ? 'unset' : s.default === '' ? 'empty' : `\`${s.default}\``} | ${s.doc} |`,
  );
  return ['| variable | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}
