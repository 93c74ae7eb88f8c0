import { constants as fsc, promises as fsp } from 'node:fs';
import { join, resolve } from 'node:path';
import { acquireDirLock, DataDirLockedError } from '../eventlog/dir-lock';
import { cutTail, inspectLog, type Inspection } from '../eventlog/embedded-file';
import { CliError, dataDirOf, parse, UsageError } from './args';

export const LOG_HELP = `Usage: chatflow log check [--data-dir ./data]
       chatflow log repair [--data-dir ./data]

The embedded event log (<data-dir>/log/events.log), with ChatFlow stopped.
  check    verify every record and say what is wrong, if anything (exit 1 if damaged)
  repair   cut the log at its first bad record; the bytes from there to the end
           (valid records after it included) are moved to
           <data-dir>/log/events.log.corrupt-<time>-<pid>, never deleted

ChatFlow cuts a torn tail (a crash in the middle of its last write) by itself
at start; any other damage makes it refuse to start and name this command.

Options:
  --data-dir <dir>     default $CHATFLOW_DATA_DIR or ./data`;

export async function logCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { 'data-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, true);
  if (values.help) {
    process.stdout.write(LOG_HELP + '\n');
    return 0;
  }
  const [action, ...extra] = positionals;
  if (action !== 'check' && action !== 'repair') throw new UsageError(action ? `unknown action "${action}" (check or repair)` : 'say check or repair');
  if (extra.length > 0) throw new UsageError(`unexpected argument ${extra[0]}`);
  const dir = resolve(dataDirOf(values['data-dir']), 'log');
  const file = join(dir, 'events.log');
  await fsp.stat(file).catch((err: NodeJS.ErrnoException) => {
    throw new CliError(err.code === 'ENOENT' ? `no event log at ${file}` : `cannot read ${file}: ${err.message}`);
  });
  let lock;
  try {
    lock = await acquireDirLock(dir);
  } catch (err) {
    if (err instanceof DataDirLockedError) throw new CliError(`${err.message}: the log can only be checked or repaired while ChatFlow is stopped`);
    throw new CliError(`cannot use ${dir}: ${(err as Error).message}`);
  }
  try {
    const fh = await fsp.open(file, fsc.O_RDWR).catch((err: NodeJS.ErrnoException) => {
      throw new CliError(`cannot open ${file}: ${err.message}`);
    });
    try {
      const size = (await fh.stat()).size;
      let found: Inspection;
      try {
        found = await inspectLog(fh, file, size);
      } catch (err) {
        throw new CliError((err as Error).message);
      }
      const bad = found.bad;
      if (!bad) {
        process.stdout.write(`${file}: ${found.records} records, ${size} bytes, every record verified; nothing to repair.\n`);
        return 0;
      }
      const what =
        `${file}: record ${bad.record} (seq ${bad.record + 1}) at byte ${bad.at} fails its check (${bad.problem}); ` +
        `the ${bad.bytesAfter} bytes from there to the end hold ${bad.validRecordsAfter} valid records` +
        (bad.kind === 'torn-tail' ? ' (a torn tail: ChatFlow cuts it by itself at start).\n' : '.\n');
      process.stdout.write(what);
      if (action === 'check') return 1;
      const copy = await cutTail(fh, file, bad.at, size).catch((err: NodeJS.ErrnoException) => {
        const why = err.code === 'ENOSPC' || err.code === 'EDQUOT' ? `the disk is full (they need ${bad.bytesAfter} bytes)` : err.code === 'EACCES' || err.code === 'EROFS' ? 'it cannot be written' : err.message;
        throw new CliError(`cannot set those bytes aside next to ${file}: ${why}. The log was not changed; free some space (or fix the folder) and run repair again.`);
      });
      process.stdout.write(
        `Moved those ${bad.bytesAfter} bytes (byte ${bad.at} to ${size}) to ${copy}.\n` +
          `Cut ${file} at byte ${bad.at}: it keeps the ${bad.record} records before it; new events continue from seq ${bad.record + 1}.\n`,
      );
      return 0;
    } finally {
      await fh.close();
    }
  } finally {
    await lock.release();
  }
}
