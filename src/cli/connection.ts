import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { decodeJwt } from 'jose';
import { credentials, Metadata, status, type ChannelCredentials, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { TokenAuthority, readSecretFile, validateClientId } from '../auth/tokens';
import { ChatFlowError } from '../domain/errors';
import { ChatServiceClient } from '../gen/chatflow/v1/chat';
import { HistoryServiceClient } from '../gen/chatflow/v1/history';
import { CliError, UsageError, type ConnectionFlags } from './args';
import { setValue } from '../config/set-value';

/**
 * Mints a token from $CHATFLOW_AUTH_SECRET or <dataDir>/secret — the server's
 * secret. A missing secret is never created here: a token signed with a fresh
 * one would only be refused ("bad signature"), so the user is told where the
 * secret should be instead.
 */
export async function mintLocalToken(clientId: string, dataDir: string, ttlSeconds: number): Promise<string> {
  const problem = validateClientId(clientId);
  if (problem) throw new UsageError(problem);
  const configured = setValue(process.env, 'CHATFLOW_AUTH_SECRET');
  if (configured !== undefined && configured.length < 32) throw new CliError('CHATFLOW_AUTH_SECRET must be at least 32 characters');
  let secret: Uint8Array | null;
  try {
    secret = configured !== undefined ? new TextEncoder().encode(configured) : await readSecretFile(dataDir);
  } catch (e) {
    throw new CliError(e instanceof ChatFlowError ? e.message : `could not read the secret in ${dataDir}: ${(e as Error).message}`);
  }
  if (secret === null) throw new CliError(noSecret(clientId, dataDir));
  return new TokenAuthority(secret, false).mint(clientId, ttlSeconds);
}

function noSecret(clientId: string, dataDir: string): string {
  return [
    `no server secret in ${resolve(dataDir)} (no "secret" file there, or an empty one, and CHATFLOW_AUTH_SECRET is not set), so no token can be made for ${clientId}.`,
    'The server keeps its secret in its data dir (CHATFLOW_DATA_DIR, default ./data where it was started). Either:',
    '  run this from the directory where the server runs,',
    '  or pass --data-dir <the server\'s data dir>,',
    `  or pass --token <jwt>, made on the server's machine with: npm run client -- token ${clientId}`,
  ].join('\n');
}

export interface Identity {
  metadata: Metadata;
  /** Said when the server refuses the token: a minted token is only as good as the secret it came from. */
  authHint?: string;
}

/** Call metadata: authorization (given or minted token) or x-client-id. */
export async function identityMetadata(flags: ConnectionFlags): Promise<Identity> {
  const md = new Metadata();
  if (flags.token) {
    const subject = tokenSubject(flags.token);
    if (flags.clientId && subject !== undefined && subject !== flags.clientId) {
      throw new UsageError(`--client-id ${flags.clientId} does not match the token, which is for "${subject}" (the server knows you by the token): leave out --client-id, or use a token for ${flags.clientId}`);
    }
    md.set('authorization', `Bearer ${flags.token}`);
    return { metadata: md };
  }
  if (!flags.clientId) throw new UsageError('--client-id is required (or --token <jwt>)');
  if (flags.insecure) {
    md.set('x-client-id', flags.clientId);
    return { metadata: md };
  }
  const token = await mintLocalToken(flags.clientId, flags.dataDir, 3600);
  md.set('authorization', `Bearer ${token}`);
  const from = setValue(process.env, 'CHATFLOW_AUTH_SECRET') !== undefined ? 'CHATFLOW_AUTH_SECRET' : join(resolve(flags.dataDir), 'secret');
  return {
    metadata: md,
    authHint: `the token was made here from ${from}, which is not the secret of the server at ${flags.server}: pass --data-dir <the server's data dir>, or --token <jwt> made on the server's machine`,
  };
}

/** The subject (client id) a JWT claims, read without verifying it (the server verifies); undefined when it is not a JWT. */
function tokenSubject(token: string): string | undefined {
  try {
    return decodeJwt(token).sub;
  } catch {
    return undefined;
  }
}

/** Plain text, or TLS (--tls: the system's roots; --ca: this certificate), as the flags say. */
function channelCredentials(flags: Pick<ConnectionFlags, 'tls' | 'ca'>): ChannelCredentials {
  if (!flags.tls) return credentials.createInsecure();
  if (flags.ca === undefined) return credentials.createSsl();
  let ca: Buffer;
  try {
    ca = readFileSync(flags.ca);
  } catch (err) {
    throw new CliError(`--ca ${flags.ca}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return credentials.createSsl(ca);
}

export function chatClient(flags: Pick<ConnectionFlags, 'server' | 'tls' | 'ca'>): ChatServiceClient {
  return new ChatServiceClient(flags.server, channelCredentials(flags), {
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    // No limit of its own: a file is checked against the server's (Welcome.max_media_bytes) before it is sent.
    'grpc.max_send_message_length': -1,
    // Replies carry voice and images: with Node's 64 KiB, each further 64 KiB of one waited a round trip for our window update.
    'grpc-node.flow_control_window': 1024 * 1024,
  });
}

export function historyClient(flags: Pick<ConnectionFlags, 'server' | 'tls' | 'ca'>): HistoryServiceClient {
  return new HistoryServiceClient(flags.server, channelCredentials(flags));
}

/** The server's `retry-after-ms` trailer, when it sent one. */
export function retryAfterMs(s: Pick<StatusObject, 'metadata'>): number | undefined {
  const v = Number(s.metadata?.get('retry-after-ms')[0]);
  return Number.isFinite(v) && v >= 0 ? v : undefined;
}

/** Where the CLI talks to, as far as its hints need it. */
export type Where = Pick<ConnectionFlags, 'server' | 'insecure' | 'tls'>;

/** `RESOURCE_EXHAUSTED: server full ... (retry-after-ms 2000)`, with a hint when the server is unreachable. */
export function describeStatus(s: Pick<StatusObject, 'code' | 'details' | 'metadata'>, where?: Where): string {
  const name = status[s.code] ?? `code ${s.code}`;
  const details = (s.details ?? '').replace(/\.?\s*Resolution note:\s*$/, '');
  let text = details ? `${name}: ${details}` : name;
  const retry = retryAfterMs(s);
  if (retry !== undefined) text += ` (retry-after-ms ${retry})`;
  if (s.code === status.UNAVAILABLE && where && /No connection established|ECONNREFUSED|Failed to connect/i.test(s.details ?? '')) {
    text += `\nis the server running at ${where.server}? (start it with "npm start", or pass --server)`;
    // A TLS server drops a plain-text client's first bytes (grpc-js: "Failed to connect"); a refused connection is no TLS matter.
    if (!/ECONNREFUSED/.test(s.details ?? '')) {
      if (!where.tls) text += `\ndoes it speak TLS? (then pass --tls, or --ca <its certificate> if it is self-signed)`;
      // A connection closed as soon as it was accepted looks the same: the server's listeners were full.
      text += `\nor it holds all the connections it takes (CHATFLOW_MAX_CONNECTIONS): then try again shortly`;
    }
  }
  if (s.code === status.UNAUTHENTICATED && where?.insecure) text += '\n--insecure needs a server started with CHATFLOW_INSECURE_CLIENT_ID=true';
  return text;
}

/** Attempts of a unary read the server refuses for now (busy, or an engine it needs away) and says when to make again. */
const UNARY_ATTEMPTS = 3;
/** The longest the CLI waits between them, whatever the server says. */
const UNARY_RETRY_MAX_MS = 10_000;

/**
 * A unary gRPC call (a read: the CLI makes no other) as a promise; a non-OK status becomes a CliError carrying its
 * description. Refused `RESOURCE_EXHAUSTED` or `UNAVAILABLE` with `retry-after-ms` (too many calls open, the server
 * restarting), it is made again after that long, up to UNARY_ATTEMPTS in all: a history listed page by page is not
 * lost for one busy moment.
 */
export async function unary<Res>(where: Where, invoke: (cb: (err: ServiceError | null, res: Res) => void) => unknown): Promise<Res> {
  for (let attempt = 1; ; attempt++) {
    const outcome = await new Promise<{ res: Res } | { err: ServiceError }>((resolve) => {
      invoke((err, res) => resolve(err ? { err } : { res }));
    });
    if ('res' in outcome) return outcome.res;
    const { err } = outcome;
    const wait = retryAfterMs(err);
    const forNow = err.code === status.RESOURCE_EXHAUSTED || err.code === status.UNAVAILABLE;
    if (!forNow || wait === undefined || attempt >= UNARY_ATTEMPTS) throw new CliError(describeStatus(err, where));
    await new Promise((r) => setTimeout(r, Math.min(wait, UNARY_RETRY_MAX_MS)));
  }
}
