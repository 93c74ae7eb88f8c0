import { promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ChatFlowError } from './domain/errors';

/**
 * The file `chatflow backup` writes first into the folder it fills and removes
 * last, once every byte of the copy is synced: while it is there the folder is
 * not a usable copy (a backup killed half-way holds a log without the media it
 * names), and ChatFlow does not start on it.
 */
export const INCOMPLETE_BACKUP = 'INCOMPLETE-BACKUP.txt';

export function incompleteBackupText(dir: string, pid: number, begunAt: Date): string {
  return (
    `This folder is a backup that chatflow backup began at ${begunAt.toISOString()} and has not finished.\n` +
    `Until this file is gone it is not a usable copy: ChatFlow will not start on it.\n` +
    `If no backup is running, take it again (it clears this folder first): chatflow backup --to ${dir}\n` +
    `pid: ${pid}\n` +
    `host: ${hostname()}\n`
  );
}

/** The backup process named in the marker (pid and host), if `dir` holds one (undefined: no marker). */
export async function incompleteBackupIn(dir: string): Promise<{ pid: number | undefined; host: string | undefined } | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(join(dir, INCOMPLETE_BACKUP), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw err;
  }
  const pid = /^pid: (\d+)$/m.exec(text)?.[1];
  return { pid: pid === undefined ? undefined : Number(pid), host: /^host: (.+)$/m.exec(text)?.[1] };
}

/** Refuses to start on a data dir that is a backup not (yet) complete. */
export async function refuseIncompleteBackup(dataDir: string): Promise<void> {
  if (!(await incompleteBackupIn(dataDir))) return;
  throw new ChatFlowError(
    'FAILED_PRECONDITION',
    `${dataDir} is a backup that was interrupted before it was complete (or is still being taken): it is not a usable copy, ` +
      `and ChatFlow will not start on it (see ${join(dataDir, INCOMPLETE_BACKUP)}). Take the backup again with chatflow backup --to ${dataDir}, or start on another data dir.`,
  );
}
