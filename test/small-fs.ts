/**
 * A real, small filesystem for disk-full tests: an ext4 image loop-mounted
 * (a disk filesystem: block allocation, journal, fsync), or a size-capped
 * tmpfs where loop devices are not available. Both need root (CI runs as
 * root); `smallFsSupport()` says whether this machine can, and why not.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SmallFs {
  dir: string;
  kind: 'ext4 (loop)' | 'tmpfs';
  unmount(): Promise<void>;
}

const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });

/** Can this process mount a filesystem? Tried for real with a 1 MiB tmpfs. */
export function smallFsSupport(): { ok: boolean; reason: string } {
  if (process.platform !== 'linux') return { ok: false, reason: 'needs Linux (mount)' };
  const dir = mkdtempSync(join(tmpdir(), 'chatflow-fs-probe-'));
  try {
    run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
    run('umount', [dir]);
    return { ok: true, reason: '' };
  } catch (err) {
    return { ok: false, reason: `needs root to mount a small filesystem (${String((err as { stderr?: Buffer }).stderr ?? err).trim().slice(0, 120)})` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Mounts a filesystem of `mib` MiB on a fresh directory: ext4 on a loop device, else tmpfs. */
export async function mountSmallFs(mib: number): Promise<SmallFs> {
  const dir = await mkdtemp(join(tmpdir(), 'chatflow-smallfs-'));
  const image = `${dir}.img`;
  try {
    run('truncate', ['-s', `${mib}M`, image]);
    // -m 0: no blocks reserved for root (the server runs as root here and would use them).
    run('mkfs.ext4', ['-q', '-F', '-m', '0', image]);
    run('mount', ['-o', 'loop', image, dir]);
    return {
      dir,
      kind: 'ext4 (loop)',
      unmount: async () => {
        run('umount', [dir]); // a loop device set up by mount -o loop is detached with it
        await rm(image, { force: true });
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch {
    await rm(image, { force: true });
  }
  run('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir]);
  return {
    dir,
    kind: 'tmpfs',
    unmount: async () => {
      run('umount', [dir]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
