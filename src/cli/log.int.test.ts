import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedEventLog } from '../eventlog/embedded';
import { connectedEvent } from '../eventlog/eventlog.contract';
import { CliError, UsageError } from './args';
import { logCommand } from './log';
import { describeWhen } from '../../test/engines';
import { mountSmallFs, smallFsSupport } from '../../test/small-fs';

const quiet = { warn: () => {}, info: () => {} };

describe('chatflow log check|repair', () => {
  let dataDir: string;
  let out: string;
  const file = () => join(dataDir, 'log', 'events.log');
  const run = async (...args: string[]) => {
    out = '';
    const spies = [process.stdout, process.stderr].map((s) => jest.spyOn(s, 'write').mockImplementation((chunk: string | Uint8Array) => ((out += String(chunk)), true)));
    try {
      // As src/cli/main.ts reports them (main itself loads the terminal UI, an ES module jest cannot require).
      return await logCommand([...args, '--data-dir', dataDir]).catch((e: unknown) => {
        if (e instanceof CliError) return (out += e.message), e.exitCode;
        if (e instanceof UsageError) return (out += e.message), 2;
        throw e;
      });
    } finally {
      spies.forEach((s) => s.mockRestore());
    }
  };
  const seed = async (n: number) => {
    const log = await EmbeddedEventLog.open({ dir: join(dataDir, 'log'), fsync: false, logger: quiet });
    for (let i = 0; i < n; i++) await log.append(connectedEvent(`c${i}`));
    await log.close();
  };
  beforeEach(async () => (dataDir = await mkdtemp(join(tmpdir(), 'chatflow-cli-log-'))));
  afterEach(async () => rm(dataDir, { recursive: true, force: true }));

  it('given a sound log, when checked or repaired, then it says so and changes nothing', async () => {
    await seed(5);
    const before = await readFile(file());
    expect(await run('check')).toBe(0);
    expect(out).toMatch(/5 records, \d+ bytes, every record verified; nothing to repair/);
    expect(await run('repair')).toBe(0);
    expect(await readFile(file())).toEqual(before);
  });

  it('given a damaged log, when checked, then it exits 1 naming the record and leaves the file as it was', async () => {
    await seed(5);
    const bytes = await readFile(file());
    bytes[8 + 8 + 2] ^= 0x01; // a payload byte of record 0
    await writeFile(file(), bytes);
    expect(await run('check')).toBe(1);
    expect(out).toContain(`record 0 (seq 1) at byte 8 fails its check (checksum mismatch); the ${bytes.length - 8} bytes from there to the end hold 4 valid records.`);
    expect(await readFile(file())).toEqual(bytes);
  });

  it('given a bad region of 64 MiB, when repaired, then it sets it aside in bounded memory (not the region in one buffer)', async () => {
    // An operator's log of many GiB damaged early: the tool they need then read everything after the damage into one
    // buffer (over 4 GiB cannot be allocated at all).
    await seed(3);
    const sound = (await stat(file())).size;
    await truncate(file(), sound + 64 * 1024 * 1024); // zeros to the end: no valid record after them
    const base = process.memoryUsage().arrayBuffers;
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().arrayBuffers - base)), 1);
    try {
      expect(await run('repair')).toBe(0);
    } finally {
      clearInterval(sampler);
    }
    expect(peak).toBeLessThan(16 * 1024 * 1024);
    expect((await stat(file())).size).toBe(sound);
    const copy = /to (\S+)\.\n/.exec(out)?.[1];
    expect((await stat(copy!)).size).toBe(64 * 1024 * 1024);
  }, 60_000);

  const smallFs = smallFsSupport();
  describeWhen(smallFs.ok, 'on a disk too full for the bytes it sets aside', smallFs.reason, () => {
    it('when repaired, then it says so, keeps no part of the copy and leaves the log as it was', async () => {
      const disk = await mountSmallFs(2);
      const realDir = dataDir;
      dataDir = disk.dir;
      try {
        await seed(3);
        await truncate(file(), (await stat(file())).size + 8 * 1024 * 1024); // sparse: takes no room until copied
        const before = await stat(file());
        expect(await run('repair')).toBe(1);
        expect(out).toContain(`cannot set those bytes aside next to ${file()}: the disk is full (they need ${8 * 1024 * 1024} bytes). The log was not changed`);
        expect((await stat(file())).size).toBe(before.size);
        expect((await readdir(join(dataDir, 'log'))).filter((f) => f.includes('.corrupt-'))).toEqual([]);
      } finally {
        dataDir = realDir;
        await disk.unmount();
      }
    }, 30_000);
  });

  it('given a running server on the data dir, when repair is asked, then it refuses and says to stop it', async () => {
    await seed(1);
    const log = await EmbeddedEventLog.open({ dir: join(dataDir, 'log'), fsync: false, logger: quiet });
    try {
      expect(await run('repair')).toBe(1);
      expect(out).toMatch(/in use by process \d+.*only be checked or repaired while ChatFlow is stopped/);
    } finally {
      await log.close();
    }
  });

  it('given no log, or no action, then it says what is missing', async () => {
    expect(await run('check')).toBe(1);
    expect(out).toContain(`no event log at ${file()}`);
    expect(await run('mend')).toBe(2);
    expect(out).toContain('unknown action "mend" (check or repair)');
  });
});
