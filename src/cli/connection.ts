import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { credentials, Metadata, status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { TokenAuthority, loadOrCreateSecret, validateClientId } from '../auth/tokens';
import { ChatFlowError } from '../domain/errors';
import { ChatServiceClient } from '../gen/chatflow/v1/chat';
import { HistoryServiceClient } from '../gen/chatflow/v1/history';
import { CliError, UsageError, type ConnectionFlags } from './args';

/** Mints a token from $CHATFLOW_AUTH_SECRET or <dataDir>/secret. `created` when the secret file was just generated. */
export async function mintLocalToken(clientId: string, dataDir: string, ttlSeconds: number): Promise<{ token: string; created: boolean }> {
  const problem = validateClientId(clientId);
  if (problem) throw new UsageError(problem);
  const configured = process.env.CHATFLOW_AUTH_SECRET || undefined;
  if (configured !== undefined && configured.length < 32) throw new CliError('CHATFLOW_AUTH_SECRET must be at least 32 characters');
  const created = !configured && !existsSync(join(dataDir, 'secret'));
  try {
    const secret = await loadOrCreateSecret(dataDir, configured);
    const token = await new TokenAuthority(secret, false).mint(clientId, ttlSeconds);
    return { token, created };
  } catch (e) {
    if (e instanceof ChatFlowError) throw new UsageError(e.message);
    throw new CliError(`could not read or create the secret in ${dataDir}: ${(e as Error).message}`);
  }
}

/** Call metadata: authorization (given or minted token) or x-client-id. */
export async function identityMetadata(flags: ConnectionFlags): Promise<Metadata> {
  const md = new Metadata();
  if (flags.token) {
    md.set('authorization', `Bearer ${flags.token}`);
    return md;
  }
  if (!flags.clientId) throw new UsageError('--client-id is required (or --token <jwt>)');
  if (flags.insecure) {
    md.set('x-client-id', flags.clientId);
    return md;
  }
  const { token, created } = await mintLocalToken(flags.clientId, flags.dataDir, 3600);
  if (created) process.stderr.write(`note: no secret was found, so a new one was created in ${flags.dataDir}; a server using another secret will refuse this token\n`);
  md.set('authorization', `Bearer ${token}`);
  return md;
}

export function chatClient(server: string): ChatServiceClient {
  return new ChatServiceClient(server, credentials.createInsecure(), {
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  });
}

export function historyClient(server: string): HistoryServiceClient {
  return new HistoryServiceClient(server, credentials.createInsecure());
}

/** `RESOURCE_EXHAUSTED: server full ... (retry-after-ms 2000)`, with a hint when the server is unreachable. */
export function describeStatus(s: Pick<StatusObject, 'code' | 'details' | 'metadata'>, server?: string, insecure = false): string {
  const name = status[s.code] ?? `code ${s.code}`;
  const details = (s.details ?? '').replace(/\.?\s*Resolution note:\s*$/, '');
  let text = details ? `${name}: ${details}` : name;
  const retry = s.metadata?.get('retry-after-ms')[0];
  if (retry !== undefined) text += ` (retry-after-ms ${String(retry)})`;
  if (s.code === status.UNAVAILABLE && server && /No connection established|ECONNREFUSED|Failed to connect/i.test(s.details ?? '')) {
    text += `\nis the server running at ${server}? (start it with "npm start", or pass --server)`;
  }
  if (s.code === status.UNAUTHENTICATED && insecure) text += '\n--insecure needs a server started with CHATFLOW_INSECURE_CLIENT_ID=true';
  return text;
}

/** A unary gRPC call as a promise; a non-OK status becomes a CliError carrying its description. */
export function unary<Res>(server: string, insecure: boolean, invoke: (cb: (err: ServiceError | null, res: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    invoke((err, res) => (err ? reject(new CliError(describeStatus(err, server, insecure))) : resolve(res)));
  });
}
