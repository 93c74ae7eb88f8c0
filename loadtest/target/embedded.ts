// Mode `embedded`: ChatFlow as `npm start` runs it (role `all`, embedded log,
// in-memory read models, local media), one child process, ephemeral data dir
// and free ports.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ENGINE_KEYS } from '../../test/engines';
import { freePort, profilesOf, spawnChatFlow, stopChild, waitHealthy } from './process';
import type { RunningTarget, Target, TargetOptions } from './target';

/** Settings that select a real engine instead of an embedded one. */
export const ENGINE_VARS = [...ENGINE_KEYS, 'KAFKA_PREFIX', 'CHATFLOW_ROLE'];

export const embeddedTarget: Target = {
  mode: 'embedded',
  async start(opts: TargetOptions): Promise<RunningTarget> {
    const dataDir = await mkdtemp(join(tmpdir(), 'chatflow-loadtest-'));
    const [grpcPort, httpPort] = [await freePort(), await freePort()];
    const grpc = `127.0.0.1:${grpcPort}`;
    const http = `http://127.0.0.1:${httpPort}`;
    const logFile = join(opts.logDir, 'embedded-all.log');
    const child = await spawnChatFlow({
      name: 'all',
      logFile,
      cwd: opts.serverDir,
      profileDir: opts.profileDir,
      // The embedded default even when the runner's shell has the stack's settings (`--mode both`).
      unset: ENGINE_VARS,
      env: {
        CHATFLOW_ROLE: 'all',
        CHATFLOW_GRPC_ADDR: grpc,
        CHATFLOW_HTTP_ADDR: `127.0.0.1:${httpPort}`,
        CHATFLOW_DATA_DIR: dataDir,
        CHATFLOW_INSECURE_CLIENT_ID: 'true',
        LOG_LEVEL: 'warn',
        ...opts.env,
      },
    });
    try {
      await waitHealthy(child, http, logFile);
    } catch (err) {
      await stopChild(child, 2000);
      await rm(dataDir, { recursive: true, force: true });
      throw err;
    }
    return {
      mode: 'embedded',
      grpc: [grpc],
      processes: [{ name: 'all', role: 'all', pid: child.proc.pid!, http, grpc }],
      async stop() {
        await stopChild(child);
        await rm(dataDir, { recursive: true, force: true });
        return { profiles: await profilesOf(child) };
      },
    };
  },
};
