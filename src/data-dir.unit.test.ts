import { promises as fsp } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { INCOMPLETE_BACKUP, incompleteBackupIn, incompleteBackupText, openDataDir, refuseIncompleteBackup } from './data-dir';

describe('an interrupted backup\'s marker', () => {
  let dir: string;
  beforeEach(async () => (dir = await mkdtemp(join(tmpdir(), 'chatflow-datadir-'))));
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('names the process that writes the copy, read back from the file', async () => {
    await writeFile(join(dir, INCOMPLETE_BACKUP), incompleteBackupText(dir, 4321, new Date('2026-11-29T17:00:00Z')));
    expect(await incompleteBackupIn(dir)).toEqual({ pid: 4321, host: hostname() });
  });

  it('stops a server on the folder in words (FAILED_PRECONDITION), even if the file was edited by hand', async () => {
    await writeFile(join(dir, INCOMPLETE_BACKUP), 'someone trimmed this');
    expect(await incompleteBackupIn(dir)).toEqual({ pid: undefined, host: undefined });
    await expect(refuseIncompleteBackup(dir)).rejects.toMatchObject({ kind: 'FAILED_PRECONDITION', message: expect.stringContaining(`${dir} is a backup that was interrupted before it was complete`) });
  });

  it('lets a data dir without it start, and one that does not exist yet (the first start)', async () => {
    await expect(refuseIncompleteBackup(dir)).resolves.toBeUndefined();
    await expect(refuseIncompleteBackup(join(dir, 'new'))).resolves.toBeUndefined();
  });
});

describe('opening the data dir', () => {
  let dir: string;
  beforeEach(async () => (dir = await mkdtemp(join(tmpdir(), 'chatflow-datadir-'))));
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('refuses in words a data dir that is a file, or lies under one', async () => {
    const file = join(dir, 'data');
    await writeFile(file, 'not a folder');
    for (const d of [file, join(file, 'inside')])
      await expect(openDataDir(d, true)).rejects.toMatchObject({ kind: 'FAILED_PRECONDITION', message: `cannot create the data dir ${d}: a file is in the way; set CHATFLOW_DATA_DIR to a folder this user can write` });
  });

  it('given a full disk, when the data dir is created, then it says the disk is full (node\'s recursive mkdir says ENOENT, "no such file or directory", whatever stopped it)', async () => {
    const d = join(dir, 'a', 'data');
    const realMkdir = fsp.mkdir.bind(fsp);
    // What a disk without a free inode does: each folder refused ENOSPC, which a recursive mkdir reports as ENOENT.
    const full = jest.spyOn(fsp, 'mkdir').mockImplementation(async (p, opts) => {
      if (p === dir) return realMkdir(p, opts);
      const recursive = typeof opts === 'object' && opts?.recursive;
      throw Object.assign(new Error(recursive ? `ENOENT: no such file or directory, mkdir '${String(p)}'` : 'ENOSPC: no space left on device'), { code: recursive ? 'ENOENT' : 'ENOSPC' });
    });
    try {
      await expect(openDataDir(d, true)).rejects.toMatchObject({ kind: 'FAILED_PRECONDITION', message: `cannot create the data dir ${d}: no space left on device; make room there, or set CHATFLOW_DATA_DIR to a folder on another disk` });
    } finally {
      full.mockRestore();
    }
  });
});
