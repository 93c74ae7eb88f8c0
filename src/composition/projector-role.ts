import type { Logger } from 'pino';
import type { Config } from '../config/config';
import type { EventLog } from '../eventlog/port';
import type { Health } from '../health';
import type { Metrics } from '../metrics';
import type { ReadStore } from '../readstore/port';
import { ProjectionRunner } from '../../projections/runner';
import { ALL_PROJECTIONS } from '../../projections/definitions';
import type { Part } from './lifecycle';
import { abortable } from '../resilience/retry';

export interface ProjectorRole extends Part {
  runner: ProjectionRunner;
}

/** Keeps the read models up to date with the log; its start returns once they have caught up, or rejects as soon as `startup` is called off (the operator stopped the process during the replay of a long log). */
export function projectorRole(deps: { config: Config; logger: Logger; log: EventLog; store: ReadStore; metrics: Metrics; health?: Pick<Health, 'report'>; startup?: AbortSignal }): ProjectorRole {
  const { config, logger, store, metrics } = deps;
  // A store that starts empty is rebuilt from the whole log; a persistent one resumes where it stopped.
  const runner = new ProjectionRunner(deps.log, store, {
    fromBeginning: !store.persistent || config.rebuildReadModels,
    batch: config.projectionBatch,
    onApplied: (lagMs) => metrics.projectionLagSeconds.observe(lagMs / 1000),
    onProblem: (problem) => deps.health?.report('projector-consumer-group', problem),
    onStoreProblem: (problem) => {
      if (problem) logger.error({ problem }, 'the read models are not being updated');
      else logger.warn('read-model writes work again');
      deps.health?.report('projector-read-store', problem);
    },
  });
  let lagTimer: NodeJS.Timeout | undefined;
  const stop = async () => {
    clearInterval(lagTimer);
    await runner.stop();
  };
  return {
    runner,
    async start() {
      if (store.persistent && config.rebuildReadModels) {
        await store.drop(ALL_PROJECTIONS.map((p) => p.collection));
        logger.warn('read models dropped: rebuilding them from the start of the log');
      }
      const replayStart = Date.now();
      await runner.start();
      lagTimer = setInterval(() => metrics.projectionLag.set(runner.lag()), 1000).unref();
      try {
        await abortable(runner.caughtUp(), deps.startup);
      } catch (err) {
        await stop();
        throw err;
      }
      logger.info({ ms: Date.now() - replayStart }, 'read models caught up with the event log');
    },
    stop,
  };
}
