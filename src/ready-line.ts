import type { Config } from './config/config';

/** What the start-up log says once ChatFlow serves: where to go next, and loud warnings about insecure switches. */
export interface ReadyLines {
  /** How to start chatting (gateways only: workers and projectors serve no client). */
  next?: string;
  warnings: string[];
}

const DEFAULT_GRPC = '127.0.0.1:50051';
const DEFAULT_DATA_DIR = './data';

export function readyLines(config: Pick<Config, 'role' | 'grpcAddr' | 'dataDir' | 'insecureClientId' | 'web' | 'tls'>, where: { grpcAddress: string; httpUrl: string; selfSigned?: boolean }): ReadyLines {
  const warnings: string[] = [];
  const pageUrl = `${where.httpUrl}/`;
  if (config.web.devTokens) {
    warnings.push(`CHATFLOW_DEV_TOKENS=true: ANYONE who can reach ${pageUrl} gets a token for ANY client id (POST /dev/token). Local development only — never on a shared machine.`);
  }
  if (config.insecureClientId) {
    warnings.push('CHATFLOW_INSECURE_CLIENT_ID=true: clients are whoever they claim to be (x-client-id, no token). Load tests only — never on a shared machine.');
  }
  if (!where.grpcAddress) return { warnings };
  const flags = ['--client-id <your-name>'];
  if (config.insecureClientId) flags.push('--insecure');
  if (where.grpcAddress !== DEFAULT_GRPC || config.grpcAddr !== DEFAULT_GRPC) flags.push(`--server ${where.grpcAddress}`);
  if (config.dataDir !== DEFAULT_DATA_DIR && !config.insecureClientId) flags.push(`--data-dir ${config.dataDir}`);
  if (config.tls) flags.push(where.selfSigned ? `--ca ${config.tls.certFile}` : '--tls');
  const signIn = config.web.devTokens || config.insecureClientId ? '' : ' (it asks for a token: npm run client -- token <your-name>)';
  return { next: `Chat in the browser: ${pageUrl}${signIn} · in a terminal: npm run client -- chat ${flags.join(' ')}`, warnings };
}
