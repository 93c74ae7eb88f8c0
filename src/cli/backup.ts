import { constants as fsc, promises as fsp } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { hostname } from 'node:os';
import { ownerAlive, pidAlive } from '../eventlog/dir-lock';
import { inspectLog, syncDir } from '../eventlog/embedded-file';
import { INCOMPLETE_BACKUP, incompleteBackupIn, incompleteBackupText } from '../data-dir';
import { CliError, dataDirOf, parse, UsageError } from './args';
import { makeDir } from '../make-dir';
import { fileFault } from '../domain/errors';

export const BACKUP_HELP = `Usage: chatflow backup --to <dir> [--data-dir ./data]

Copies the embedded default's data dir (the event log, the consumer groups'
offsets, local media, the token secret) into <dir>, a new folder, while
ChatFlow runs or not. The copy is consistent: every message accepted before
the backup began is in it, with the media it names; a message it holds without
its reply is answered once when a server starts on the copy. The copy's log is
verified record by record (a record being written as it was read is left out).
Until the copy is complete, <dir> holds ${INCOMPLETE_BACKUP} and ChatFlow
will not start on it: a backup that was killed is taken again into the same
folder (the remains are cleared first).

Restore: stop ChatFlow, then start it with CHATFLOW_DATA_DIR=<dir> (or move
<dir> in place of the data dir). On the real stack, back up Kafka, MongoDB and
the S3 bucket with their own tools; the read models can be rebuilt from the log.

Options:
  --to <dir>           where the copy goes; must not exist, be empty, or hold
                       an interrupted backup
  --data-dir <dir>     default $CHATFLOW_DATA_DIR or ./data`;

export interface BackupSummary {
  records: number;
  /** Bytes of a record being written as the log was read, left out of the copy. */
  tornBytes: number;
  groups: number;
  mediaFiles: number;
  mediaBytes: number;
  secret: boolean;
  /** The remains of an interrupted backup were cleared from the folder first. */
  cleared: boolean;
}

export async function backupCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { 'data-dir': { type: 'string' }, to: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, true);
  if (values.help) {
    process.stdout.write(BACKUP_HELP + '\n');
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
  if (!values.to) throw new UsageError('say where the copy goes: --to <dir>');
  const from = resolve(dataDirOf(values['data-dir']));
  const to = resolve(values.to);
  const started = Date.now();
  const s = await backupDataDir(from, to);
  const cleared = s.cleared ? `The remains of an interrupted backup in ${to} were cleared first.\n` : '';
  const torn = s.tornBytes > 0 ? ` (the ${s.tornBytes} bytes of a record being written as it was read left out)` : '';
  process.stdout.write(
    cleared +
      `Backed up ${from} to ${to} in ${((Date.now() - started) / 1000).toFixed(1)} s: ` +
      `${s.records} events, every record verified${torn}; offsets of ${s.groups} consumer group${s.groups === 1 ? '' : 's'}; ` +
      `${s.mediaFiles} media file${s.mediaFiles === 1 ? '' : 's'} (${(s.mediaBytes / 1024 / 1024).toFixed(1)} MiB); ${s.secret ? 'the token secret' : 'no token secret (none in the data dir)'}.\n` +
      `Restore: stop ChatFlow and start it with CHATFLOW_DATA_DIR=${to}.\n`,
  );
  return 0;
}

/**
 * The copy, in the order that keeps it consistent with a server writing meanwhile:
 * 1. the consumer groups' offsets first: they then point at or before the copy's end, as after a crash (a message
 *    the worker had passed whose reply is not in the copy is answered once on the copy; test/backup.e2e.test.ts);
 * 2. the log, up to its length when the copy begins (appends only ever add to it), checked record by record and cut
 *    where a record was being written;
 * 3. the media after the log: an upload or a reply's image is durable before the event that names it is appended,
 *    so every object the copied log names is there. Objects being written in place read as missing, as after a crash.
 * Every file and folder of the copy is synced before it is reported done. Until then the folder holds
 * INCOMPLETE_BACKUP, written first and removed last: a copy killed half-way cannot pass for a backup (a server refuses
 * to start on it), and the next backup into the folder clears it. `afterStep` runs between the steps (tests write to
 * the server there, to hold the order to account).
 */
export async function backupDataDir(from: string, to: string, opts: { afterStep?: (step: 'secret' | 'offsets' | 'log' | 'media') => Promise<void> } = {}): Promise<BackupSummary> {
  const logFile = join(from, 'log', 'events.log');
  await fsp.stat(logFile).catch((err: NodeJS.ErrnoException) => {
    throw new CliError(err.code === 'ENOENT' ? `no event log at ${logFile}: is ${from} a ChatFlow data dir?` : `cannot read ${logFile}: ${err.message}`);
  });
  if (to === from || to.startsWith(from + '/')) throw new CliError(`the copy cannot go inside the data dir it copies (${to})`);
  const { existed, cleared } = await makeEmptyDir(to);
  try {
    await writeMarker(to);
    return { ...(await copyDataDir(from, to, logFile, opts.afterStep ?? (async () => {}))), cleared };
  } catch (err) {
    // A partial copy must not pass for a backup: what was written goes (the folder was new, or empty: a mount
    // point, say, which stays).
    if (existed) await clearDir(to).catch(() => undefined);
    else await fsp.rm(to, { recursive: true, force: true }).catch(() => undefined);
    if (err instanceof CliError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOSPC' || e.code === 'EDQUOT') throw new CliError(`cannot write the copy into ${to}: the disk is full; nothing was kept there`);
    throw new CliError(`the copy failed (${e.message}); nothing was kept at ${to}`);
  }
}

async function copyDataDir(from: string, to: string, logFile: string, after: (step: 'secret' | 'offsets' | 'log' | 'media') => Promise<void>): Promise<Omit<BackupSummary, 'cleared'>> {
  const secret = await copyIfExists(join(from, 'secret'), join(to, 'secret'), 0o600);
  await after('secret');
  const groups = await copyTree(join(from, 'log', 'offsets'), join(to, 'log', 'offsets'), (name) => name.endsWith('.json'));
  await after('offsets');
  const { records, tornBytes } = await copyLog(logFile, join(to, 'log', 'events.log'));
  await after('log');
  const media = await copyTree(join(from, 'media'), join(to, 'media'), (name, rel) => !rel.split('/').includes('.tmp') && !name.endsWith('.tmp'));
  await after('media');
  for (const dir of [join(to, 'log'), to]) await syncDir(dir);
  // Complete: only now may the folder pass for a backup.
  await fsp.unlink(join(to, INCOMPLETE_BACKUP));
  await syncDir(to);
  return { records, tornBytes, groups: groups.files, mediaFiles: media.files, mediaBytes: media.bytes, secret };
}

/**
 * Makes `dir` a new empty folder, owner-only. A folder already there must be empty, or hold an interrupted backup
 * (its marker names a process that is gone): that one is cleared. `existed`: the folder was there before.
 */
async function makeEmptyDir(dir: string): Promise<{ existed: boolean; cleared: boolean }> {
  const entries = await fsp.readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new CliError(`cannot use ${dir}: ${fileFault(err)}`);
  });
  let cleared = false;
  if (entries && entries.length > 0) {
    const interrupted = await incompleteBackupIn(dir);
    if (!interrupted) throw new CliError(`${dir} is not empty: give a new folder, so no earlier backup is mixed into this one`);
    // A marker of another host (a shared folder) counts as running: its process cannot be looked at from here.
    const { pid, host } = interrupted;
    if (pid !== undefined && host !== undefined && pid !== process.pid && ownerAlive({ pid, host }, { host: hostname(), alive: pidAlive }))
      throw new CliError(`a backup into ${dir} is under way (pid ${pid}${host === hostname() ? '' : ` on ${host}`}): wait for it to finish; if that process is not a backup, delete ${dir}`);
    await clearDir(dir);
    cleared = true;
  }
  // The copy holds the token secret: only its owner may read it, as the data dir.
  await makeDir(join(dir, 'log'), { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    throw new CliError(`cannot create ${dir}: ${fileFault(err)}`);
  });
  await fsp.chmod(dir, 0o700);
  return { existed: entries !== undefined, cleared };
}

/** What is in `dir` goes; the folder stays. */
async function clearDir(dir: string): Promise<void> {
  for (const name of await fsp.readdir(dir)) await fsp.rm(join(dir, name), { recursive: true, force: true });
}

/** The marker that the folder is not yet a backup, durable before anything else is copied into it. */
async function writeMarker(dir: string): Promise<void> {
  const file = join(dir, INCOMPLETE_BACKUP);
  await fsp.writeFile(file, incompleteBackupText(dir, process.pid, new Date()), { mode: 0o600, flag: 'wx' });
  await syncFile(file);
  await syncDir(dir);
}

/** The log's bytes up to its length now, then verified: a record cut short at the end (one being written) is left out. */
async function copyLog(file: string, dest: string): Promise<{ records: number; tornBytes: number }> {
  const src = await fsp.open(file, fsc.O_RDONLY);
  const out = await fsp.open(dest, 'wx+', 0o600);
  try {
    const size = (await src.stat()).size;
    const buf = Buffer.allocUnsafe(Math.min(size, 4 * 1024 * 1024));
    for (let pos = 0; pos < size; ) {
      const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, size - pos), pos);
      if (bytesRead === 0) throw new CliError(`${file} grew shorter while it was copied (${pos} of ${size} bytes): was it repaired meanwhile?`);
      await out.write(buf, 0, bytesRead, pos);
      pos += bytesRead;
    }
    let found;
    try {
      found = await inspectLog(out, dest, size);
    } catch (err) {
      throw new CliError((err as Error).message.replace(dest, file));
    }
    const bad = found.bad;
    if (bad && bad.kind !== 'torn-tail')
      throw new CliError(
        `${file} is damaged: record ${bad.record} (seq ${bad.record + 1}) at byte ${bad.at} fails its check (${bad.problem}), with ${bad.validRecordsAfter} valid records after it; nothing was copied that ChatFlow would not refuse. Stop ChatFlow and run: chatflow log check`,
      );
    if (bad) await out.truncate(bad.at);
    await out.sync();
    return { records: found.records, tornBytes: bad ? size - bad.at : 0 };
  } catch (err) {
    await fsp.rm(dest, { force: true });
    throw err;
  } finally {
    await src.close();
    await out.close();
  }
}

async function copyIfExists(src: string, dest: string, mode: number): Promise<boolean> {
  try {
    await fsp.copyFile(src, dest, fsc.COPYFILE_EXCL);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  await fsp.chmod(dest, mode);
  await syncFile(dest);
  return true;
}

/** Copies the files under `src` that `keep` accepts (a file removed meanwhile is skipped), each synced, then their folders. */
async function copyTree(src: string, dest: string, keep: (name: string, rel: string) => boolean): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  const dirs: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const target = join(dest, relative(src, dir));
    await fsp.mkdir(target, { recursive: true, mode: 0o700 });
    dirs.push(target);
    for (const e of entries) {
      const rel = relative(src, join(dir, e.name)).split('\\').join('/');
      if (!keep(e.name, rel)) continue;
      if (e.isDirectory()) await walk(join(dir, e.name));
      else if (e.isFile()) {
        try {
          await fsp.copyFile(join(dir, e.name), join(target, e.name), fsc.COPYFILE_EXCL);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // replaced or removed meanwhile
          throw err;
        }
        bytes += await syncFile(join(target, e.name));
        files++;
      }
    }
  };
  await walk(src);
  for (const d of dirs.reverse()) await syncDir(d);
  return { files, bytes };
}

async function syncFile(file: string): Promise<number> {
  const fh = await fsp.open(file, fsc.O_RDONLY);
  try {
    await fh.sync();
    return (await fh.stat()).size;
  } finally {
    await fh.close();
  }
}
