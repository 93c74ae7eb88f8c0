import { loadConfig } from './config/config';
import { ConfigError } from './config/schema';
import { createLogger } from './logging';
import { startApp } from './app';
import { ChatFlowError } from './domain/errors';

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
  let app;
  try {
    app = await startApp(config, logger);
  } catch (err) {
    if (err instanceof ChatFlowError || (err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      logger.fatal((err as Error).message);
    } else {
      logger.fatal({ err }, 'could not start');
    }
    logger.flush?.();
    setTimeout(() => process.exit(1), 100);
    return;
  }
  const a = app;
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals > 1) {
      logger.warn('second signal: exiting now');
      process.exit(1);
    }
    logger.info({ signal }, 'shutting down');
    a.stop().then(
      () => {
        logger.info('stopped');
        logger.flush?.();
        setTimeout(() => process.exit(0), 50);
      },
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

void main();
