import { isatty } from 'node:tty';
import { loadConfig } from './config/config';
import { ConfigError, unknownSettings } from './config/schema';
import { createLogger } from './logging';
import { startApp, type App } from './app';
import { ChatFlowError } from './domain/errors';

/**
 * The server process. One SIGINT or SIGTERM — sent to this process, to its
 * process group (a terminal's Ctrl-C) or passed on by `npm start` — starts
 * the graceful drain; further signals are the same request and do not cut it
 * short. A drain still running after grace + margin is ended, naming what it
 * was waiting for. SIGHUP (the terminal it ran in closed: an SSH session that
 * dropped, a window closed) drains too: its default would end the process at
 * once, cutting replies mid-stream, and ChatFlow has no settings to reload
 * (TLS files are read again when they change).
 */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`chatflow: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const logger = createLogger(config.logLevel);
  for (const line of unknownSettings(process.env)) logger.warn(line);
  const exit = (code: number) => {
    logger.flush?.();
    setTimeout(() => endProcess(code), 50);
  };
  const deadlineMs = config.shutdownGraceMs + config.shutdownMarginMs;
  let app: App | undefined;
  let stopping = false;
  const stop = (a: App) => {
    const deadline = setTimeout(() => {
      logger.error({ deadlineMs, pending: a.stopProgress() }, `shutdown did not finish within ${deadlineMs} ms; exiting anyway`);
      exit(1);
    }, deadlineMs);
    a.stop().then(
      () => {
        clearTimeout(deadline);
        logger.info('stopped');
        exit(0);
      },
      (err) => {
        logger.error({ err }, 'shutdown failed');
        exit(1);
      },
    );
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.info({ signal }, 'already shutting down; the drain goes on');
      return;
    }
    stopping = true;
    logger.info({ signal, graceMs: config.shutdownGraceMs, deadlineMs }, 'shutting down: draining');
    if (app) return stop(app);
    // During start-up: a wait on an engine that is away, or on the read models replaying the log, ends at once, and
    // nothing is served.
    startup.abort(new StartupStopped(signal));
  };
  const startup = new AbortController();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);

  try {
    // A dead worker thread took the messages it held with it: a restart answers them (see threads/worker-host.ts).
    app = await startApp(config, logger, { onWorkerDied: () => exit(70), startup: startup.signal });
  } catch (err) {
    if (err instanceof StartupStopped) {
      logger.info({ signal: err.signal }, 'stopped before it was up: nothing was served');
      exit(0);
      return;
    }
    if (err instanceof ChatFlowError || (err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      logger.fatal((err as Error).message);
    } else {
      logger.fatal({ err }, 'could not start');
    }
    exit(1);
    return;
  }
  if (stopping) stop(app);
}

/** The standard streams that were a terminal when the process started (read now: Node creates process.stdin & co. lazily). */
const TERMINAL_FDS = [0, 1, 2].filter((fd) => isatty(fd));

/**
 * process.exit, unless the terminal the process started on has hung up (an SSH session that dropped, a window
 * closed: SIGHUP, which drained the server): Node's exit then resets that terminal, fails (EIO) and aborts on an
 * assertion (ResetStdio), dumping core (SIGABRT, or SIGSEGV as a second thread met it). The process ends instead as
 * the hang-up's default would have ended it, killed by SIGHUP, once drained; its exit code is then that signal's.
 */
function endProcess(code: number): void {
  if (!TERMINAL_FDS.some((fd) => !isatty(fd))) process.exit(code);
  process.removeAllListeners('SIGHUP');
  process.kill(process.pid, 'SIGHUP');
}

/** The reason start-up was called off: a signal came before the app was up. */
class StartupStopped extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`start-up stopped by ${signal}`);
  }
}

void main();
