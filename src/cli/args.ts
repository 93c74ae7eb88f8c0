import { parseArgs, type ParseArgsConfig } from 'node:util';
import { setValue } from '../config/set-value';

/** A mistake in how the CLI was called: one line of explanation, the usage, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A runtime failure the user can act on: printed as one calm line, exit code 1. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Flags shared by `chat` and `history`: who we are and where the server is. */
export const CONNECTION_OPTIONS = {
  'client-id': { type: 'string' },
  token: { type: 'string' },
  insecure: { type: 'boolean' },
  server: { type: 'string' },
  tls: { type: 'boolean' },
  ca: { type: 'string' },
  'data-dir': { type: 'string' },
  tz: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

export interface ConnectionFlags {
  clientId?: string;
  token?: string;
  insecure: boolean;
  server: string;
  /** Speak TLS to the server; `ca`: trust this PEM certificate (a server's self-signed one) instead of the system's roots. */
  tls: boolean;
  ca?: string;
  dataDir: string;
  timeZone: string;
  json: boolean;
}

/** parseArgs in strict mode, with its errors turned into short UsageErrors. */
export function parse<O extends Options>(args: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError(describeParseError(e));
  }
}

function describeParseError(e: unknown): string {
  const err = e as { code?: string; message?: string };
  const quoted = /'([^']+)'/.exec(err.message ?? '')?.[1];
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${quoted ?? ''}`.trim();
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${quoted ?? ''}`.trim();
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return (err.message ?? 'invalid option value').split('. ')[0]!.replace(/\.$/, '');
    default:
      return err.message ?? String(e);
  }
}

/** The data dir a command works on: `--data-dir`, else `CHATFLOW_DATA_DIR` read as the server reads it, else `./data`. */
export function dataDirOf(flag: unknown, env: NodeJS.ProcessEnv = process.env): string {
  return (typeof flag === 'string' ? flag : undefined) ?? setValue(env, 'CHATFLOW_DATA_DIR') ?? './data';
}

export function connectionFlags(values: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): ConnectionFlags {
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const insecure = values.insecure === true;
  const token = str('token');
  if (insecure && token) throw new UsageError('--insecure and --token exclude each other');
  return {
    clientId: str('client-id'),
    token,
    insecure,
    server: str('server') ?? setValue(env, 'CHATFLOW_GRPC_ADDR') ?? '127.0.0.1:50051',
    tls: values.tls === true || str('ca') !== undefined,
    ca: str('ca'),
    dataDir: dataDirOf(values['data-dir'], env),
    timeZone: str('tz') ?? Intl.DateTimeFormat().resolvedOptions().timeZone,
    json: values.json === true,
  };
}

const TTL_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** `3600`, `3600s`, `90m`, `24h`, `7d` → seconds (1 s to 365 d). */
export function parseTtl(raw: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(raw.trim());
  if (!m) throw new UsageError(`--ttl must look like 3600s, 90m, 24h or 7d, got "${raw}"`);
  const seconds = Number(m[1]) * TTL_UNITS[m[2] || 's']!;
  if (seconds < 1 || seconds > 365 * 86400) throw new UsageError('--ttl must be between 1s and 365d');
  return seconds;
}

/** A non-negative integer flag (undefined when absent). */
export function intFlag(name: string, raw: string | undefined, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  }
  return Number(raw);
}
