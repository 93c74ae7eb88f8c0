import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { credentials, loadPackageDefinition, Metadata, type GrpcObject, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { ChatServiceClient } from '../src/gen/chatflow/v1/chat';
import { ChatStream } from './harness';
import { waitReady } from './cluster';

export const ROOT = resolve(__dirname, '..');

/** Builds when the build is missing or older than the sources (what `npm start` checks first). */
export function ensureBuild(): void {
  const r = spawnSync(process.execPath, ['scripts/check-build.js'], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`the build failed (exit ${r.status})`);
}

/** The compiled server as an operator runs it, in its own process group (as under a terminal or a supervisor). */
export interface CompiledServer {
  /** `npm start`, or the server itself when started with node. */
  readonly proc: ChildProcess;
  /** The node process serving (its pid as logged). */
  readonly serverPid: number;
  readonly grpc: string;
  readonly http: string;
  readonly logs: Record<string, unknown>[];
  readonly stderr: () => string;
  /** Exit code and signal of `proc`, and when it exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

/** The compiled server spawned as startCompiled spawns it, not waited for: for a test that watches its start itself. */
export async function spawnCompiled(how: 'npm start' | 'node' | string[], env: Record<string, string> = {}): Promise<Pick<CompiledServer, 'proc' | 'stderr' | 'exited'>> {
  const dataDir = await mkdtemp(join(tmpdir(), 'chatflow-lifecycle-'));
  const [cmd, args] = how === 'npm start' ? ['npm', ['start', '--silent']] : how === 'node' ? [process.execPath, ['dist/src/main.js']] : [how[0]!, how.slice(1)];
  const proc = spawn(cmd, args, {
    cwd: ROOT,
    detached: true, // its own process group, so a group signal reaches npm and the server alone
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH, HOME: process.env.HOME,
      CHATFLOW_DATA_DIR: dataDir, CHATFLOW_GRPC_ADDR: '127.0.0.1:0', CHATFLOW_HTTP_ADDR: '127.0.0.1:0',
      CHATFLOW_INSECURE_CLIENT_ID: 'true', LOG_LEVEL: 'info', npm_config_update_notifier: 'false',
      ...env,
    },
  });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((r) =>
    proc.once('exit', (code, signal) => r({ code, signal, at: Date.now() })),
  );
  return { proc, stderr: () => stderr, exited };
}

/** `how`: `npm start`, `node dist/src/main.js`, or a command line of its own (a supervisor's: `[command, ...args]`). */
export async function startCompiled(how: 'npm start' | 'node' | string[], env: Record<string, string> = {}): Promise<CompiledServer> {
  const { proc, stderr, exited } = await spawnCompiled(how, env);
  const logs: Record<string, unknown>[] = [];
  const ready = await waitReady(proc, { name: Array.isArray(how) ? how.join(' ') : how, timeoutMs: 60_000, logs, stderr });
  return { proc, serverPid: Number(ready.pid), grpc: String(ready.grpc), http: String(ready.http), logs, stderr, exited };
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A Chat stream as client `clientId` (the server runs with CHATFLOW_INSECURE_CLIENT_ID). */
export async function chatOn(client: ChatServiceClient, clientId: string): Promise<ChatStream> {
  const md = new Metadata();
  md.set('x-client-id', clientId);
  md.set('x-timezone', 'Europe/Paris');
  const s = new ChatStream(client.chat(md));
  await s.until((f) => f.some((x) => x.frame?.$case === 'welcome'), 10_000, 'welcome');
  return s;
}

/** grpc.health.v1.Health/Check of the whole server (''). */
export function grpcHealth(address: string): Promise<string> {
  const pkg = loadPackageDefinition(loadSync(healthProto, { enums: String })) as GrpcObject;
  const Health = ((pkg.grpc as GrpcObject).health as GrpcObject).v1 as GrpcObject;
  const client = new (Health.Health as ServiceClientConstructor)(address, credentials.createInsecure());
  return new Promise<string>((resolve, reject) =>
    client.Check({ service: '' }, (err: Error | null, r: { status: string }) => {
      client.close();
      return err ? reject(err) : resolve(r.status);
    }),
  );
}

export const chatClient = (address: string) => new ChatServiceClient(address, credentials.createInsecure());
