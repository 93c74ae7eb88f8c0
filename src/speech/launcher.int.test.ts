import { LauncherExited, ProgramLauncher } from './launcher';

const SH = '/bin/sh';
const opts = { timeoutMs: 10_000, maxBuffer: 1 << 20 };

describe('ProgramLauncher', () => {
  let launcher: ProgramLauncher;
  beforeEach(() => (launcher = new ProgramLauncher()));
  afterEach(() => launcher.close());

  it('runs the program from its helper process, not from this one, and returns its stderr', async () => {
    const { stderr, error } = await launcher.run(SH, ['-c', 'echo "$PPID" >&2'], opts);
    expect(error).toBeUndefined();
    const parent = Number(stderr.trim());
    expect(parent).toBe(launcher.pid);
    expect(parent).not.toBe(process.pid);
  });

  it('reports a failing program with its exit code and stderr, and a missing one as ENOENT', async () => {
    const failed = await launcher.run(SH, ['-c', 'echo "bad input" >&2; exit 3'], opts);
    expect(failed.error).toMatchObject({ code: 3, killed: false });
    expect(failed.stderr).toBe('bad input\n');
    const missing = await launcher.run('/nonexistent/ffmpeg', [], opts);
    expect(missing.error).toMatchObject({ code: 'ENOENT' });
  });

  it('runs a program under a data limit when asked (its soft RLIMIT_DATA), a missing one still ENOENT', async () => {
    const limited = await launcher.run(SH, ['-c', 'ulimit -S -d >&2'], { ...opts, maxDataBytes: 64 * 1024 * 1024 });
    expect(limited).toEqual({ stderr: '65536\n', error: undefined });
    const failed = await launcher.run(SH, ['-c', 'exit 3'], { ...opts, maxDataBytes: 64 * 1024 * 1024 });
    expect(failed.error).toMatchObject({ code: 3, killed: false });
    const missing = await launcher.run('/nonexistent/ffmpeg', [], { ...opts, maxDataBytes: 64 * 1024 * 1024 });
    expect(missing.error).toMatchObject({ code: 'ENOENT' });
  });

  it('kills a program that outlives its timeout', async () => {
    const { error } = await launcher.run(SH, ['-c', 'sleep 30'], { ...opts, timeoutMs: 200 });
    expect(error).toMatchObject({ killed: true });
  });

  it('rejects with the abort reason when aborted, and keeps working', async () => {
    const ac = new AbortController();
    const running = launcher.run(SH, ['-c', 'sleep 30'], { ...opts, signal: ac.signal });
    setTimeout(() => ac.abort(new Error('client left')), 100);
    await expect(running).rejects.toThrow('client left');
    await expect(launcher.run(SH, ['-c', 'true'], opts)).resolves.toEqual({ stderr: '', error: undefined });
  });

  it('fails what was running when the helper dies, then starts a new helper', async () => {
    const running = launcher.run(SH, ['-c', 'sleep 30'], opts);
    const first = launcher.pid!;
    process.kill(first, 'SIGKILL');
    await expect(running).rejects.toBeInstanceOf(LauncherExited);
    const { stderr } = await launcher.run(SH, ['-c', 'echo "$PPID" >&2'], opts);
    expect(Number(stderr.trim())).not.toBe(first);
    expect(Number(stderr.trim())).toBe(launcher.pid);
  });

  it('close() ends the helper', async () => {
    await launcher.run(SH, ['-c', 'true'], opts);
    const pid = launcher.pid!;
    launcher.close();
    await waitGone(pid);
    expect(launcher.pid).toBeUndefined();
  });
});

async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`process ${pid} still running`);
}
