import { format } from 'node:util';
import { setLogger as setGrpcLogger } from '@grpc/grpc-js';
import pino, { type Logger } from 'pino';

/** pino: pretty on a TTY, JSON lines otherwise (for log shippers). */
export function createLogger(level: string, opts: { pretty?: boolean; name?: string } = {}): Logger {
  const pretty = opts.pretty ?? Boolean(process.stdout.isTTY);
  const options = { name: opts.name ?? 'chatflow', level };
  if (!pretty) return pino(options);
  const transport = pino.transport({ target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } });
  // The terminal can go away under a running server (an SSH session that dropped, a window closed): pino-pretty's
  // thread then fails to write to it (EIO) and ends, and every later line fails. Unheard, that failure was an
  // uncaught exception that ended the drain SIGHUP had begun. Lines no terminal can show are dropped.
  transport.on('error', () => undefined);
  return pino(options, transport);
}

/**
 * grpc-js writes its own lines to stderr ("E No address added …" next to the
 * error it also throws): route them through pino at debug level, so a process
 * prints one format, and a failed start one line.
 */
export function routeGrpcJsLogs(logger: Logger): void {
  const child = logger.child({ component: 'grpc-js' });
  setGrpcLogger({ error: (...args: unknown[]) => child.debug(format(...args)) });
}
