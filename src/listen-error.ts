/**
 * A listen address that is taken, as the one line `npm start` prints (src/main.ts
 * prints the message of an EADDRINUSE error, no stack). Node's HTTP server and
 * grpc-js report it differently ("listen EADDRINUSE …" vs "No address added out
 * of total 1 resolved errors: […]"); both become the same sentence naming the
 * variable to change.
 */
export function listenError(err: unknown, variable: string, addr: string): unknown {
  const message = err instanceof Error ? err.message : String(err);
  const inUse = (err as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE' || /\bEADDRINUSE\b/.test(message);
  if (!inUse) return err;
  const e: NodeJS.ErrnoException = new Error(`${addr} is already in use (${variable}): is another ChatFlow running? Stop it, or set ${variable} to another address`);
  e.code = 'EADDRINUSE';
  return e;
}
