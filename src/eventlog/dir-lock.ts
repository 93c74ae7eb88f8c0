import { promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import * as path from 'node:path';
import { ChatFlowError, diskFault } from '../domain/errors';

/**
 * One process per data dir: two writers appending to one events.log would
 * interleave records and corrupt it. `<dir>/LOCK` holds the owner's pid and
 * host; it is created exclusively. A lock whose process is gone (a crash, a
 * kill -9) is stale and taken over; a live owner makes opening fail with a
 * message saying who holds it. (Two processes taking over the same stale
 * lock at the same instant could both win; node has no flock to close that.)
 */
export interface DirLock {
  release(): Promise<void>;
}

export class DataDirLockedError extends Error {
  constructor(readonly dir: string, readonly pid: number) {
    super(`${dir} is in use by process ${pid} (another ChatFlow on the same CHATFLOW_DATA_DIR?); stop it or use another data dir`);
    this.name = 'DataDirLockedError';
  }
}

interface Owner {
  pid: number;
  host: string;
}

/** Is the recorded owner still running? Only provable for this host; other hosts count as alive. */
export function ownerAlive(owner: Owner | undefined, here: { host: string; alive: (pid: number) => boolean }): boolean {
  if (!owner) return false; // unreadable: not a lock any running ChatFlow wrote
  if (owner.host !== here.host) return true;
  return owner.pid === process.pid || here.alive(owner.pid);
}

/** Is a process of this host with that pid running (EPERM: running, as another user)? */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

let tmpSeq = 0;

export async function acquireDirLock(dir: string): Promise<DirLock> {
  const file = path.join(dir, 'LOCK');
  const me: Owner = { pid: process.pid, host: hostname() };
  // Written aside, then linked into place: LOCK never exists half-written.
  const tmp = `${file}.${process.pid}.${++tmpSeq}.tmp`;
  try {
    await fsp.writeFile(tmp, JSON.stringify(me));
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await fsp.link(tmp, file);
        return { release: () => fsp.rm(file, { force: true }) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const owner = await readOwner(file);
      if (ownerAlive(owner, { host: me.host, alive: pidAlive })) throw new DataDirLockedError(dir, owner!.pid);
      await fsp.rm(file, { force: true }); // stale: the next link decides who takes it
    }
  } catch (err) {
    const why = diskFault(err);
    throw why ? new ChatFlowError('FAILED_PRECONDITION', `cannot take ${file}: ${why}; make room there and start again`) : err;
  } finally {
    await fsp.rm(tmp, { force: true });
  }
  throw new Error(`data dir ${dir}: could not take ${file} (other processes keep racing for it)`);
}

async function readOwner(file: string): Promise<Owner | undefined> {
  try {
    const o = JSON.parse(await fsp.readFile(file, 'utf8')) as Partial<Owner>;
    return typeof o.pid === 'number' && typeof o.host === 'string' ? { pid: o.pid, host: o.host } : undefined;
  } catch {
    return undefined;
  }
}
