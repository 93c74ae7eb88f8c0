import { constants as fsc, promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ChatFlowError, fileFault } from './domain/errors';
import { makeDir } from './make-dir';

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

/**
 * Makes the data dir if it is missing and checks that this process may use it: the folder, and the files and folders
 * ChatFlow keeps in it, readable and writable. A folder it cannot use (a backup taken with sudo, then started as the
 * service's user) is refused in words naming the path, its owner and this process's user; then a copy not yet
 * complete (see INCOMPLETE_BACKUP) is refused. `keepsState`: this process keeps something there (the embedded log,
 * local media, or the generated token secret); a role of the real stack with CHATFLOW_AUTH_SECRET keeps nothing,
 * and may be given a read-only folder.
 */
export async function openDataDir(dataDir: string, keepsState: boolean): Promise<void> {
  await makeDir(dataDir).catch((err: NodeJS.ErrnoException) => {
    const full = err.code === 'ENOSPC' || err.code === 'EDQUOT';
    const why = err.code === 'EACCES' ? 'permission denied on a folder above it' : fileFault(err);
    const remedy = full ? 'make room there, or set CHATFLOW_DATA_DIR to a folder on another disk' : 'set CHATFLOW_DATA_DIR to a folder this user can write';
    throw new ChatFlowError('FAILED_PRECONDITION', `cannot create the data dir ${dataDir}: ${why}; ${remedy}`);
  });
  if (!keepsState) return;
  for (const rel of ['', 'secret', 'log', 'log/events.log', 'log/offsets', 'media']) {
    const path = join(dataDir, rel);
    const err = await fsp.access(path, fsc.R_OK | fsc.W_OK | (rel === 'secret' || rel.endsWith('.log') ? 0 : fsc.X_OK)).then(
      () => undefined,
      (e: NodeJS.ErrnoException) => e,
    );
    if (!err || err.code === 'ENOENT') continue;
    if (err.code !== 'EACCES' && err.code !== 'EPERM' && err.code !== 'EROFS') throw err;
    const st = await fsp.stat(path).catch(() => undefined);
    const whose = st ? ` (it belongs to uid ${st.uid}, mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}; ChatFlow runs as uid ${process.getuid?.() ?? '?'})` : '';
    throw new ChatFlowError(
      'FAILED_PRECONDITION',
      err.code === 'EROFS'
        ? `cannot use the data dir ${dataDir}: ${path} is on a read-only file system; set CHATFLOW_DATA_DIR to a folder this user can write`
        : `cannot use the data dir ${dataDir}: ${path} is not readable and writable by this user${whose}. Run ChatFlow as the folder's owner, or give it the folder (chown -R <user> ${dataDir})`,
    );
  }
  await refuseIncompleteBackup(dataDir);
}
