/**
 * deploy/chatflow.service, the systemd unit for a machine without containers:
 * ChatFlow started with the unit's own command line and environment (the
 * checkout standing in for /opt/chatflow, a temporary folder for systemd's
 * state directory) serves, drains on the unit's stop signal within its stop
 * timeout, and exits with the codes its restart policy expects. systemd itself
 * is not PID 1 here: `systemd-analyze verify` checks the file as systemd reads it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SETTINGS } from '../src/config/schema';
import { describeWhen } from './engines';
import { chatClient, chatOn, ensureBuild, ROOT, startCompiled, type CompiledServer } from './compiled';

jest.setTimeout(120_000);

const UNIT_FILE = join(ROOT, 'deploy', 'chatflow.service');

/** The unit's [Service] settings, each key with every value it is given (Environment= comes several times). */
function serviceSettings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      continue;
    }
    if (section !== 'Service') continue;
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

const unit = serviceSettings(readFileSync(UNIT_FILE, 'utf8'));
const one = (key: string): string => {
  const v = unit.get(key);
  if (!v || v.length !== 1) throw new Error(`${UNIT_FILE}: expected one ${key}=, found ${v?.length ?? 0}`);
  return v[0]!;
};
const seconds = (v: string) => Number(/^(\d+)s?$/.exec(v)?.[1] ?? NaN);

/** The unit's command line and environment as systemd would give them, its state directory at `stateDir` (%S). */
function asSystemdRuns(stateDir: string): { argv: string[]; env: Record<string, string> } {
  const env: Record<string, string> = {};
  for (const assignment of unit.get('Environment') ?? []) {
    const eq = assignment.indexOf('=');
    env[assignment.slice(0, eq)] = assignment.slice(eq + 1).replaceAll('%S', stateDir);
  }
  return { argv: one('ExecStart').split(/\s+/), env };
}

const hasVerify = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0;

describe('deploy/chatflow.service', () => {
  const servers: CompiledServer[] = [];
  let stateDir = '';
  beforeAll(() => ensureBuild());
  beforeEach(async () => {
    // systemd makes StateDirectory= (mode StateDirectoryMode=) under %S before it starts the service.
    stateDir = await mkdtemp(join(tmpdir(), 'chatflow-systemd-'));
  });
  afterEach(async () => {
    for (const s of servers.splice(0)) if (s.proc.exitCode === null) s.proc.kill('SIGKILL');
    await rm(stateDir, { recursive: true, force: true });
  });

  describeWhen(hasVerify, 'as systemd reads it', 'needs systemd-analyze', () => {
    it('has no setting systemd would ignore or refuse (systemd-analyze verify prints nothing)', () => {
      const r = spawnSync('systemd-analyze', ['verify', UNIT_FILE], { encoding: 'utf8' });
      expect({ status: r.status, output: (r.stdout + r.stderr).trim() }).toEqual({ status: 0, output: '' });
    });
  });

  it('starts ChatFlow with its command line and environment, its data in the state directory; its stop signal drains it to exit 0 within TimeoutStopSec', async () => {
    const { argv, env } = asSystemdRuns(stateDir);
    expect(one('WorkingDirectory')).toBe('/opt/chatflow'); // the checkout stands in for it: the command line is relative to it
    const s = await startCompiled(argv, { ...env, LOG_LEVEL: 'info' });
    servers.push(s);
    const client = chatClient(s.grpc);
    const chat = await chatOn(client, 'systemd-user');
    expect((await chat.reply(chat.text('hello'))).text.length).toBeGreaterThan(0);
    chat.end();
    await chat.status;
    client.close();
    const dataDir = join(stateDir, one('StateDirectory'));
    expect((await stat(join(dataDir, 'log', 'events.log'))).size).toBeGreaterThan(0);
    const signalledAt = Date.now();
    process.kill(s.serverPid, one('KillSignal') as NodeJS.Signals);
    const { code, at } = await s.exited;
    expect(code).toBe(0);
    expect(at - signalledAt).toBeLessThan(seconds(one('TimeoutStopSec')) * 1000);
  });

  it('waits longer than the server\'s own shutdown deadline before it kills, and restarts on every failure but a configuration error, which says why', async () => {
    // The server ends a drain at grace + margin (defaults) itself: systemd must not kill it before.
    const deadlineMs = Number(SETTINGS.CHATFLOW_SHUTDOWN_GRACE_MS.default) + Number(SETTINGS.CHATFLOW_SHUTDOWN_MARGIN_MS.default);
    expect(seconds(one('TimeoutStopSec')) * 1000).toBeGreaterThan(deadlineMs);
    expect(one('KillMode')).toBe('mixed'); // the signal to the server alone; ffmpeg and speech engines are its to stop
    expect(one('Restart')).toBe('on-failure'); // exit 70 (its worker thread died) and crashes start it again
    // A setting the server refuses: the exit code systemd is told not to restart on, and words in the journal.
    const { argv, env } = asSystemdRuns(stateDir);
    const refused = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const p = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env: { PATH: process.env.PATH, ...env, CHATFLOW_MAX_CLIENTS: 'fifty' }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('exit', (code) => resolve({ code, stderr }));
    });
    expect(refused.stderr).toContain('CHATFLOW_MAX_CLIENTS');
    expect(one('RestartPreventExitStatus').split(/\s+/)).toEqual([String(refused.code)]);
  });

  it('runs the server with the node flags npm start and the container image use', () => {
    const flags = (cmd: string[]) => cmd.filter((a) => a.startsWith('--'));
    const npmStart = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start as string;
    const image = /^CMD (\[.*\])$/m.exec(readFileSync(join(ROOT, 'deploy', 'Dockerfile'), 'utf8'))![1]!;
    const ours = flags(one('ExecStart').split(/\s+/));
    expect(ours.length).toBeGreaterThan(0);
    expect(flags(npmStart.split(/\s+/))).toEqual(ours);
    expect(flags(JSON.parse(image) as string[])).toEqual(ours);
    // And the thread pool npm start sizes.
    expect(unit.get('Environment')).toContain(`UV_THREADPOOL_SIZE=${/UV_THREADPOOL_SIZE:-(\d+)/.exec(npmStart)![1]}`);
  });
});
