/**
 * Engines a fault test owns: started from the stack's installed binaries on
 * free ports with private data folders, so the test can kill, freeze and
 * restart them without disturbing any other suite on the shared stack.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { MongoClient } from 'mongodb';

export const STACK_DIR = process.env.CHATFLOW_STACK_DIR ?? resolve(__dirname, '..', '.stack');
export const FERRETDB_BIN = join(STACK_DIR, 'bin', 'ferretdb');
export const KAFKA_LIBS = join(STACK_DIR, 'kafka', 'libs');
export const NATS_BIN = join(STACK_DIR, 'bin', 'nats-server');
export const MINIO_BIN = join(STACK_DIR, 'bin', 'minio');
/** PostgreSQL 15 from Debian (deploy/lib/postgres.sh installs it for CHATFLOW_FERRETDB_BACKEND=postgresql). */
export const PG_BIN = process.env.CHATFLOW_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/**
 * For tests that run a FerretDB of their own beside the stack's other
 * engines: whether those engines' variables are set and the FerretDB binary
 * is installed, and if not what is missing (describeWhen's reason).
 */
export function privateFerretDbReady(engines: readonly string[]): { ready: boolean; needs: string } {
  const missing = [...engines.filter((v) => !process.env[v]), ...(existsSync(FERRETDB_BIN) ? [] : [`FerretDB at ${FERRETDB_BIN} (npm run stack:install)`])];
  return { ready: missing.length === 0, needs: `needs ${missing.join(', ')}` };
}

/** FerretDB's storage: the stack's default is deploy/lib/mongo.sh's FERRETDB_BACKEND. */
export type FerretDbBackend = 'sqlite' | 'postgresql';

export const freePort = () =>
  new Promise<number>((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });

const exited = (p: ChildProcess) => p.exitCode !== null || p.signalCode !== null;

abstract class PrivateEngine {
  proc?: ChildProcess;
  constructor(readonly dir: string) {}
  abstract start(): Promise<void>;
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || exited(p)) return;
    await new Promise<void>((r) => {
      p.once('exit', () => r());
      p.kill('SIGKILL');
    });
  }
  /** SIGSTOP: the process keeps its sockets but answers nothing, as a frozen VM or a long GC pause would. */
  freeze(): void {
    this.proc?.kill('SIGSTOP');
  }
  thaw(): void {
    this.proc?.kill('SIGCONT');
  }
  async remove(): Promise<void> {
    this.thaw();
    await this.kill();
    await rm(this.dir, { recursive: true, force: true });
  }
}

export interface PrivateFerretDbOptions {
  /** Default sqlite. postgresql starts a PrivatePostgres beside it (removed with it). */
  backend?: FerretDbBackend;
  /** Another FerretDB binary (benchmarks of a build not installed in the stack). */
  bin?: string;
  /** PostgreSQL backend only: FerretDB's pool of PostgreSQL connections (`pool_max_conns` in its URL; FerretDB's default 50). */
  pgPoolMaxConns?: number;
}

export class PrivateFerretDb extends PrivateEngine {
  private constructor(readonly port: number, dir: string, private readonly options: PrivateFerretDbOptions, readonly postgres?: PrivatePostgres) {
    super(dir);
  }
  static async create(options: PrivateFerretDbOptions = {}): Promise<PrivateFerretDb> {
    const postgres = options.backend === 'postgresql' ? await PrivatePostgres.create() : undefined;
    return new PrivateFerretDb(await freePort(), await mkdtemp(join(tmpdir(), 'chatflow-private-ferretdb-')), options, postgres);
  }
  get uri(): string {
    return `mongodb://127.0.0.1:${this.port}/chatflow_private`;
  }
  async start(): Promise<void> {
    const pg = this.postgres;
    if (pg && (!pg.proc || exited(pg.proc))) await pg.start();
    const storage = pg ? ['--handler=postgresql', `--postgresql-url=${pg.url}${this.options.pgPoolMaxConns ? `?pool_max_conns=${this.options.pgPoolMaxConns}` : ''}`] : ['--handler=sqlite', `--sqlite-url=file:${this.dir}/?_pragma=synchronous(NORMAL)`];
    this.proc = spawn(this.options.bin ?? FERRETDB_BIN, [
      ...storage, `--listen-addr=127.0.0.1:${this.port}`,
      '--debug-addr=-', '--state-dir=-', '--telemetry=disable', '--log-level=warn',
    ], { stdio: 'ignore' });
    for (const end = Date.now() + 30_000; Date.now() < end; await new Promise((r) => setTimeout(r, 200))) {
      if (exited(this.proc)) throw new Error('private FerretDB exited during start-up');
      const client = new MongoClient(this.uri, { serverSelectionTimeoutMS: 500 });
      try {
        await client.db().command({ ping: 1 });
        return;
      } catch {
        // not listening yet
      } finally {
        await client.close();
      }
    }
    throw new Error('private FerretDB did not start within 30 s');
  }
  override async remove(): Promise<void> {
    await super.remove();
    await this.postgres?.remove();
  }
}

const run = (cmd: string, args: string[]) =>
  new Promise<void>((res, rej) => execFile(cmd, args, (err, _out, stderr) => (err ? rej(new Error(`${cmd} failed: ${stderr || err.message}`)) : res())));

/**
 * A PostgreSQL cluster of its own (FerretDB's PostgreSQL backend), set up as
 * deploy/lib/postgres.sh sets up the stack's: trust auth, TCP on 127.0.0.1
 * only, synchronous_commit=off. As root it runs as the `postgres` user.
 */
export class PrivatePostgres extends PrivateEngine {
  private constructor(readonly port: number, dir: string) {
    super(dir);
  }
  static async create(): Promise<PrivatePostgres> {
    return new PrivatePostgres(await freePort(), await mkdtemp(join(tmpdir(), 'chatflow-private-postgres-')));
  }
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }
  /** `setpriv` as the postgres user when root: PostgreSQL refuses to run as root. */
  private command(bin: string, args: string[]): [string, string[]] {
    if (process.getuid?.() !== 0) return [join(PG_BIN, bin), args];
    return ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', join(PG_BIN, bin), ...args]];
  }
  async start(): Promise<void> {
    if (!existsSync(join(PG_BIN, 'postgres'))) throw new Error(`PostgreSQL not found in ${PG_BIN} (CHATFLOW_FERRETDB_BACKEND=postgresql npm run stack:install installs it)`);
    const data = join(this.dir, 'data');
    if (!existsSync(join(data, 'PG_VERSION'))) {
      await mkdir(data, { mode: 0o700, recursive: true });
      if (process.getuid?.() === 0) {
        const [uid, gid] = postgresUser();
        await chown(this.dir, uid, gid);
        await chown(data, uid, gid);
      }
      await run(...this.command('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--no-instructions']));
    }
    const [cmd, args] = this.command('postgres', ['-D', data, '-p', String(this.port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'synchronous_commit=off', '-c', 'max_connections=200']);
    const proc = (this.proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] }));
    await untilPrinted(proc, 'stderr', 'private PostgreSQL', 'ready to accept connections', 30_000);
  }
}

/** uid and gid of the Debian package's `postgres` user. */
/**
 * Resolves once `proc` has printed `marker` on `stream` (then keeps draining
 * it); rejects if it exits first or `timeoutMs` passes, with the last output.
 */
function untilPrinted(proc: ChildProcess, stream: 'stdout' | 'stderr', name: string, marker: string, timeoutMs: number): Promise<void> {
  const out = proc[stream]!;
  let seen = '';
  return new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${name} did not start within ${timeoutMs / 1000} s: ${seen.slice(-2000)}`)), timeoutMs);
    const onData = (d: Buffer) => {
      seen = (seen + d.toString()).slice(-20_000);
      if (!seen.includes(marker)) return;
      clearTimeout(timer);
      out.off('data', onData);
      out.resume();
      res();
    };
    out.on('data', onData);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`${name} exited with ${code} during start-up: ${seen.slice(-2000)}`));
    });
  });
}

function postgresUser(): [number, number] {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('no postgres user (install postgresql-15)');
  const [, , uid, gid] = line.split(':');
  return [Number(uid), Number(gid)];
}

/** A single-node KRaft broker from the stack's Kafka jars. */
export class PrivateKafka extends PrivateEngine {
  private constructor(readonly port: number, readonly controllerPort: number, dir: string) {
    super(dir);
  }
  static async create(): Promise<PrivateKafka> {
    return new PrivateKafka(await freePort(), await freePort(), await mkdtemp(join(tmpdir(), 'chatflow-private-kafka-')));
  }
  get brokers(): string {
    return `127.0.0.1:${this.port}`;
  }
  private java(main: string, args: string[], stdio: 'ignore' | 'pipe'): ChildProcess {
    const log4j = `-Dlog4j.configuration=file:${join(this.dir, 'log4j.properties')}`;
    return spawn('java', ['-Xmx384m', '-XX:+UseG1GC', '-XX:MaxGCPauseMillis=20', '-Djava.awt.headless=true', log4j, '-cp', `${KAFKA_LIBS}/*`, main, ...args], { stdio: ['ignore', stdio, stdio] });
  }
  async start(): Promise<void> {
    const props = join(this.dir, 'server.properties');
    const fresh = !existsSync(join(this.dir, 'data', 'meta.properties'));
    // The broker says 'Kafka Server started' on stdout once it serves.
    await writeFile(join(this.dir, 'log4j.properties'), [
      'log4j.rootLogger=WARN, stdout', 'log4j.appender.stdout=org.apache.log4j.ConsoleAppender',
      'log4j.appender.stdout.layout=org.apache.log4j.PatternLayout', 'log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n',
      'log4j.logger.kafka.server.KafkaRaftServer=INFO', 'log4j.logger.kafka.server.BrokerServer=INFO', '',
    ].join('\n'));
    await writeFile(props, [
      'process.roles=broker,controller', 'node.id=1', `controller.quorum.voters=1@127.0.0.1:${this.controllerPort}`,
      `listeners=PLAINTEXT://127.0.0.1:${this.port},CONTROLLER://127.0.0.1:${this.controllerPort}`, `advertised.listeners=PLAINTEXT://127.0.0.1:${this.port}`,
      'controller.listener.names=CONTROLLER', 'inter.broker.listener.name=PLAINTEXT', 'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
      `log.dirs=${join(this.dir, 'data')}`, 'num.partitions=1', 'auto.create.topics.enable=false', 'offsets.topic.replication.factor=1',
      'transaction.state.log.replication.factor=1', 'transaction.state.log.min.isr=1', 'default.replication.factor=1', 'min.insync.replicas=1',
      'group.initial.rebalance.delay.ms=0', 'num.network.threads=2', 'num.io.threads=4', '',
    ].join('\n'));
    if (fresh) {
      const format = this.java('kafka.tools.StorageTool', ['format', '-t', 'Q2hhdEZsb3dQcml2YXRlSw', '-c', props, '--ignore-formatted'], 'ignore');
      const code = await new Promise<number | null>((r) => format.once('exit', r));
      if (code !== 0) throw new Error(`private Kafka: storage format exited with ${code}`);
    }
    const proc = (this.proc = this.java('kafka.Kafka', [props], 'pipe'));
    proc.stderr!.resume();
    await untilPrinted(proc, 'stdout', 'private Kafka', 'Kafka Server started', 90_000);
  }
}

/** A core NATS server (no JetStream): what the bus uses. Restarts on the same port. */
export class PrivateNats extends PrivateEngine {
  private constructor(readonly port: number, dir: string) {
    super(dir);
  }
  static async create(): Promise<PrivateNats> {
    return new PrivateNats(await freePort(), await mkdtemp(join(tmpdir(), 'chatflow-private-nats-')));
  }
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    const proc = (this.proc = spawn(NATS_BIN, ['-a', '127.0.0.1', '-p', String(this.port)], { stdio: ['ignore', 'ignore', 'pipe'] }));
    await untilPrinted(proc, 'stderr', 'private NATS', 'Server is ready', 20_000);
  }
}

/** MinIO from the stack's binary, on a free port with a private data folder (S3 media). */
export class PrivateMinio extends PrivateEngine {
  static readonly accessKeyId = 'private-minio';
  static readonly secretAccessKey = 'private-minio-secret';
  private constructor(readonly port: number, readonly consolePort: number, dir: string) {
    super(dir);
  }
  static async create(): Promise<PrivateMinio> {
    return new PrivateMinio(await freePort(), await freePort(), await mkdtemp(join(tmpdir(), 'chatflow-private-minio-')));
  }
  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }
  /** What ChatFlow needs to use it (the bucket is created by the S3 media store). */
  env(bucket = 'chatflow-private'): Record<string, string> {
    return { S3_ENDPOINT: this.endpoint, S3_BUCKET: bucket, S3_REGION: 'us-east-1', S3_ACCESS_KEY_ID: PrivateMinio.accessKeyId, S3_SECRET_ACCESS_KEY: PrivateMinio.secretAccessKey, S3_FORCE_PATH_STYLE: 'true' };
  }
  async start(): Promise<void> {
    this.proc = spawn(MINIO_BIN, ['server', join(this.dir, 'data'), '--address', `127.0.0.1:${this.port}`, '--console-address', `127.0.0.1:${this.consolePort}`, '--certs-dir', join(this.dir, 'certs'), '--quiet'], {
      stdio: 'ignore',
      env: { ...process.env, MINIO_ROOT_USER: PrivateMinio.accessKeyId, MINIO_ROOT_PASSWORD: PrivateMinio.secretAccessKey, MINIO_REGION: 'us-east-1', MINIO_UPDATE: 'off', MINIO_CALLHOME_ENABLE: 'off' },
    });
    for (const end = Date.now() + 30_000; Date.now() < end; await new Promise((r) => setTimeout(r, 200))) {
      if (exited(this.proc)) throw new Error('private MinIO exited during start-up');
      try {
        if ((await fetch(`${this.endpoint}/minio/health/ready`, { signal: AbortSignal.timeout(1_000) })).ok) return;
      } catch {
        // not listening yet
      }
    }
    throw new Error('private MinIO did not start within 30 s');
  }
}
