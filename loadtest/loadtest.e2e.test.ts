// The load-test runner end to end, tiny: the server as a child process (as
// `npm run loadtest` starts it), a few users in this process, results written
// to a temp folder. And, when ghz is installed, one ghz run against it.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeWhen } from '../test/engines';
import { parseOptions, runOne, runScenario, writeReports } from './run';
import { writeResult } from './report/result';
import { writeFigures } from './report/figures';
import { GHZ_BIN } from './scenarios/ghz';

jest.setTimeout(60_000);

// LOADTEST_SERVER_DIR: run the server from another checkout (e.g. while this one's src/ is mid-change).
const serverDir = process.env.LOADTEST_SERVER_DIR ? ['--server-dir', process.env.LOADTEST_SERVER_DIR] : [];

describe('npm run loadtest (smoke)', () => {
  let out: string;
  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'chatflow-loadtest-e2e-'));
  });
  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it('a mode that cannot start (the stack\'s engines not set) fails with what to do, and leaves no timer behind (the runner hung after "NOT RUN")', async () => {
    const vars = ['KAFKA_BROKERS', 'MONGODB_URI', 'NATS_URL', 'S3_ENDPOINT'];
    const saved = vars.map((v) => [v, process.env[v]] as const);
    for (const v of vars) delete process.env[v];
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    try {
      const opts = parseOptions(['--scenario', 'admission', '--out', out, '--date', '2000-01-01', '--quiet']);
      opts.workDir = join(out, 'work');
      await expect(runScenario(opts, 'stack', 'test')).rejects.toThrow(/stack mode needs the real engines: KAFKA_BROKERS, MONGODB_URI, NATS_URL, S3_ENDPOINT not set/);
      // The count is the whole process's: a timer of another suite's leftovers (a client reconnecting) may come and
      // go meanwhile (CI, 2026-11-26: 3 for 2). The runner's own (its 2 s load sampler was the hang) would stay.
      for (const until = Date.now() + 3_000; timers() > before && Date.now() < until; ) await new Promise((r) => setTimeout(r, 50));
      expect(timers()).toBeLessThanOrEqual(before);
    } finally {
      for (const [v, value] of saved) if (value !== undefined) process.env[v] = value;
    }
  });

  it('runs a tiny reference scenario with no failure and writes its JSON, charts, profile summary and report', async () => {
    const opts = parseOptions([
      '--scenario', 'reference', '--users', '4', '--ramp', '20', '--duration', '3s', '--think', '200-400',
      '--delay-scale', '0.01', '--client-procs', '0', '--channels', '1', '--profile', 'true', '--out', out, '--date', '2000-01-01', '--quiet', ...serverDir,
    ]);
    opts.workDir = join(out, 'work'); // logs and the raw profile stay in the temp folder
    const r = await runScenario(opts, 'embedded', 'test');
    await writeResult(out, r);
    await writeFigures(out, r);
    await writeReports(out, 'reference', r.date);

    expect(r.messages!.overall.count).toBeGreaterThan(8);
    expect(r.messages!.overall.failures).toBe(0);
    expect(r.messages!.failuresByCode).toEqual({});
    expect(r.connections!.byStatus).toEqual({ OK: 4 });
    expect(r.messages!.overall.overhead.p50).not.toBeNull();
    expect(r.server!.rssMB.end).toBeGreaterThan(10);
    expect(r.machine.loadavgStart).toHaveLength(3);
    // The server ran under --cpu-prof: one profile per thread (event loop, the worker, its media renderer), each summarized for the load window.
    expect(r.profiles).toHaveLength(3);
    const [loop, worker, media] = [...r.profiles!].sort((a, b) => a.file.localeCompare(b.file));
    expect(loop).toMatchObject({ window: 'load' });
    expect(loop!.bySelf.length).toBeGreaterThan(0);
    // The built server (dist/, as `npm start` runs it): JavaScript files and their lines.
    const ran = (p: typeof loop) => p!.chatflowInclusive.map((f) => f.where);
    expect(ran(worker)).toContainEqual(expect.stringMatching(/^src\/worker\/worker\.js:\d+$/));
    expect(ran(loop)).not.toContainEqual(expect.stringMatching(/^src\/worker\//));
    expect(ran(media)).toContainEqual(expect.stringMatching(/^src\/media\/render-thread\.js:\d+$/));

    const files = await readdir(out);
    expect(files).toEqual(expect.arrayContaining(['2000-01-01-reference-embedded.json', '2000-01-01-reference.md', '2000-01-01-reference-embedded-latency-time.svg']));
    const json = JSON.parse(await readFile(join(out, '2000-01-01-reference-embedded.json'), 'utf8'));
    expect(json).toMatchObject({ schema: 1, scenario: 'reference', mode: 'embedded' });
    const md = await readFile(join(out, '2000-01-01-reference.md'), 'utf8');
    expect(md).toContain('## Against the reference');
    expect(md).toContain('(event loop)');
    expect(md).toContain('(worker thread 1: the worker)');
    expect(md).toContain('(worker thread 2: a media renderer)');
    expect(md).toContain('overhead p99');
  });

  it('runs a tiny saturate scenario and its echo baseline with the same client, and states the ratio', async () => {
    const opts = parseOptions([
      '--scenario', 'saturate', '--users', '3', '--window', '4', '--duration', '2s', '--client-procs', '0', '--channels', '1',
      '--profile', 'false', '--out', out, '--date', '2000-01-01', '--quiet', ...serverDir,
    ]);
    opts.workDir = join(out, 'work');
    const r = await runScenario(opts, 'embedded', 'test');
    const f = r.figures as { steadyPerS: number; echo: { steadyPerS: number; failures: number }; echoRatio: number };
    expect(r.messages!.overall.failures).toBe(0);
    expect(f.steadyPerS).toBeGreaterThan(0);
    expect(f.echo.failures).toBe(0);
    expect(f.echo.steadyPerS).toBeGreaterThan(0);
    expect(f.echoRatio).toBeCloseTo(f.steadyPerS / f.echo.steadyPerS, 2);
    expect(r.checks.map((c) => c.name)).toContain('share of echo');
    await writeResult(out, r);
    await writeReports(out, 'saturate', r.date);
    expect(await readFile(join(out, '2000-01-01-saturate.md'), 'utf8')).toContain('ChatFlow / echo');
  });

  it('runs a tiny scale scenario: every stream held, memory per stream measured, the next client refused', async () => {
    const opts = parseOptions(['--scenario', 'scale', '--streams', '30', '--channels', '2', '--out', out, '--date', '2000-01-01', '--quiet', ...serverDir]);
    opts.workDir = join(out, 'work');
    expect(opts.maxClients).toBe(30);
    const r = await runOne(opts, 'embedded', 'test');
    type Probe = { attempts: number; byStatus: Record<string, number>; loopDelayMs: { p99: number } };
    const f = r.figures as { memory: { streamsHeld: number; rssBytesPerStream: number | null; heapBytesPerStream: number | null }; probe: Probe; runnerProbe: Probe };
    expect(f.memory.streamsHeld).toBe(30);
    expect(f.memory.rssBytesPerStream).not.toBeNull();
    expect(f.memory.heapBytesPerStream).not.toBeNull();
    expect(f.probe.byStatus).toEqual({ RESOURCE_EXHAUSTED: f.probe.attempts });
    // The same attempts from the runner that holds the streams, one after each of the probe process's.
    expect(f.runnerProbe.byStatus).toEqual({ RESOURCE_EXHAUSTED: f.probe.attempts });
    expect(f.probe.loopDelayMs.p99).toBeGreaterThan(0);
    expect(r.messages!.overall.failures).toBe(0);
    expect(r.messages!.overall.count).toBeGreaterThan(0);
  }, 120_000); // fixed phases: 2 × 5 memory readings 1 s apart, 2 × 200 probes 25 ms apart, 3 s settles
});

describeWhen(existsSync(GHZ_BIN), 'ghz against the embedded server', 'ghz not installed (bash loadtest/install-ghz.sh)', () => {
  it('runs the Chat stream configuration with every call OK', async () => {
    const out = await mkdtemp(join(tmpdir(), 'chatflow-loadtest-ghz-'));
    try {
      const opts = parseOptions(['--scenario', 'ghz-chat', '--ghz-total', '20', '--ghz-concurrency', '4', '--out', out, '--date', '2000-01-01', '--quiet', ...serverDir]);
      opts.workDir = join(out, 'work');
      const r = await runOne(opts, 'embedded', 'test');
      const [g] = (r.figures as { ghz: { count: number; statusCodes: Record<string, number> }[] }).ghz;
      expect(g).toMatchObject({ count: 20, statusCodes: { OK: 20 } });
      expect(r.checks.every((c) => c.hit)).toBe(true);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
