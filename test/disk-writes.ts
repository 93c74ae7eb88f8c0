// The disk as the embedded log meets it, for tests that make it fail: the log
// writes its records with `fs.write` on its file's fd (src/eventlog/embedded-file.ts),
// so that is where a full or failing disk is played (the media store and the
// offsets files write through FileHandle, which such tests spy on as well).
import fs = require('node:fs');

type WriteCallback = (err: NodeJS.ErrnoException | null, written: number) => void;

/**
 * What the process's `fs.write` to a file (not stdin/out/err: the logger's
 * output passes) does while installed: `decide` is asked for each call, with
 * the fd and the bytes asked for, and says how many of them go in (the real
 * write of that many), or which error the call fails with, before or after
 * the bytes went in (`{ error, after: true }`: the write happened, then the
 * sync in it failed, as an O_DSYNC file's write does).
 */
export type WriteDecision = { write: number } | { error: NodeJS.ErrnoException; after?: boolean };

export function interceptFileWrites(decide: (fd: number, length: number) => WriteDecision | undefined): { restore(): void } {
  const real = fs.write;
  const spy = jest.spyOn(fs, 'write').mockImplementation(((fd: number, buf: Buffer, offset: number, length: number, position: number, cb: WriteCallback) => {
    const d = fd > 2 ? decide(fd, length) : undefined;
    if (!d) return real(fd, buf, offset, length, position, cb);
    if ('write' in d) return real(fd, buf, offset, Math.min(d.write, length), position, cb);
    if (!d.after) return process.nextTick(cb, d.error, 0);
    return real(fd, buf, offset, length, position, (err) => cb(err ?? d.error, 0));
  }) as never);
  return { restore: () => spy.mockRestore() };
}

export const enospc = (): NodeJS.ErrnoException => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 });

/** FileHandle's prototype, where a test spies on the writes the media store and the offsets files make. */
export async function fileHandlePrototype(): Promise<Record<'write' | 'writeFile' | 'writev', (...a: unknown[]) => Promise<unknown>>> {
  const fh = await fs.promises.open(__filename, 'r');
  await fh.close();
  return Object.getPrototypeOf(fh) as Record<'write' | 'writeFile' | 'writev', (...a: unknown[]) => Promise<unknown>>;
}
