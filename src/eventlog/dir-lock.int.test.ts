import { spawn, spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import * as path from 'node:path';
import { acquireDirLock, DataDirLockedError, ownerAlive } from './dir-lock';
import { EmbeddedEventLog } from './embedded';

const silent = { warn: () => {}, info: () => {} };

describe('ownerAlive', () => {
  const here = { host: 'a', alive: (pid: number) => pid === 42 };
  it('given no readable owner, then the lock is stale', () => expect(ownerAlive(undefined, here)).toBe(false));
  it('given an owner on this host that runs, then it holds', () => expect(ownerAlive({ pid: 42, host: 'a' }, here)).toBe(true));
  it('given an owner on this host that is gone, then the lock is stale', () => expect(ownerAlive({ pid: 7, host: 'a' }, here)).toBe(false));
  it('given an owner on another host, then it is presumed to hold (cannot be checked from here)', () => expect(ownerAlive({ pid: 7, host: 'b' }, here)).toBe(true));
  it('given this very process as owner, then it holds', () => expect(ownerAlive({ pid: process.pid, host: 'a' }, { host: 'a', alive: () => false })).toBe(true));
});

describe('data dir lock', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(tmpdir(), 'chatflow-lock-'));
  });
  afterEach(() => fsp.rm(dir, { recursive: true, force: true }));

  it('given a held lock, when it is taken again, then it is refused naming the holder; after release it is free', async () => {
    const lock = await acquireDirLock(dir);
    const err = await acquireDirLock(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataDirLockedError);
    expect((err as Error).message).toBe(`${dir} is in use by process ${process.pid} (another ChatFlow on the same CHATFLOW_DATA_DIR?); stop it or use another data dir`);
    await lock.release();
    await (await acquireDirLock(dir)).release();
    expect(await fsp.readdir(dir)).toEqual([]);
  });

  it('given a full disk, when the lock is taken, then it fails saying so and leaves nothing in the dir (not its half-made draft)', async () => {
    const realWriteFile = fsp.writeFile.bind(fsp);
    const full = jest.spyOn(fsp, 'writeFile').mockImplementation(async (file) => {
      await realWriteFile(file as string, ''); // created, then no room for a byte of it
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    });
    try {
      await expect(acquireDirLock(dir)).rejects.toThrow(`cannot take ${path.join(dir, 'LOCK')}: no space left on device; make room there and start again`);
    } finally {
      full.mockRestore();
    }
    expect(await fsp.readdir(dir)).toEqual([]);
  });

  it('given a lock left by a process that died, when taken, then it is taken over', async () => {
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    await fsp.writeFile(path.join(dir, 'LOCK'), JSON.stringify({ pid: dead, host: hostname() }));
    const lock = await acquireDirLock(dir);
    expect(JSON.parse(await fsp.readFile(path.join(dir, 'LOCK'), 'utf8'))).toEqual({ pid: process.pid, host: hostname() });
    await lock.release();
  });

  it('given an unreadable lock file, when taken, then it is taken over', async () => {
    await fsp.writeFile(path.join(dir, 'LOCK'), 'not json');
    await (await acquireDirLock(dir)).release();
  });

  it('given another process holding the dir, when the log is opened, then it is refused; once that process is killed -9, it opens', async () => {
    const hook = require.resolve('tsx/cjs');
    const code = `require(${JSON.stringify(hook)}); require(${JSON.stringify(path.join(__dirname, 'dir-lock.ts'))}).acquireDirLock(${JSON.stringify(dir)}).then(() => { console.log('locked'); setInterval(() => {}, 1000); });`;
    const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => d.toString().includes('locked') && resolve());
        child.on('exit', (c) => reject(new Error(`child exited ${c}`)));
      });
      await expect(EmbeddedEventLog.open({ dir, logger: silent })).rejects.toThrow(`in use by process ${child.pid}`);
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await new Promise((r) => child.once('exit', r));
      }
    }
    const log = await EmbeddedEventLog.open({ dir, logger: silent });
    await expect(EmbeddedEventLog.open({ dir, logger: silent })).rejects.toBeInstanceOf(DataDirLockedError);
    await log.close();
    await (await EmbeddedEventLog.open({ dir, logger: silent })).close();
  });
});
