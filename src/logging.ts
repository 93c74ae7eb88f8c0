import { format } from 'node:util';
import { setLogger as setGrpcLogger } from '@grpc/grpc-js';
import pino, { type Logger } from 'pino';

/** pino: pretty on a TTY, JSON lines otherwise (for log shippers). */
export function createLogger(level: string, opts: { pretty?: boolean; name?: string } = {}): Logger {
  const pretty = opts.pretty ?? Boolean(process.stdout.isTTY);
  return pino({
    name: opts.name ?? 'chatflow',
    level,
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } } : {}),
  });
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
