// Runs a driver plan over several client processes (or in this one), so the
// load generator is not the bottleneck: users are dealt round-robin to the
// processes, progress is summed, records merged.
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { runDriver, type DriverPlan, type DriverResult } from './driver';
import { addProgress, emptyProgress, mergeAttempts, mergeMessages, type Progress } from './records';

export type DriverMessage =
  | { type: 'ready' }
  | { type: 'progress'; progress: Progress }
  | { type: 'result'; result: DriverResult }
  | { type: 'failed'; error: string };

export type ParentMessage = { type: 'run'; plan: DriverPlan };

export interface FleetResult {
  result: DriverResult;
  /** Per client process: CPU use as a share of one core over its run (1 = a full core). */
  clientCpu: { process: number; cpuMs: number; wallMs: number; coreShare: number; loopDelayMs?: DriverResult['loopDelayMs'] }[];
}

/**
 * `processes` = 0 runs the users in this process; N ≥ 1 forks N client
 * processes. The schedule (plan.t0, plan.sendUntil) is shifted to start once every process is ready.
 */
export async function runFleet(plan: DriverPlan, processes: number, onProgress: (p: Progress) => void): Promise<FleetResult> {
  if (processes <= 0) {
    const shift = Date.now() - plan.t0;
    const result = await runDriver({ ...plan, t0: plan.t0 + Math.max(0, shift), sendUntil: plan.sendUntil + Math.max(0, shift) }, onProgress);
    return { result, clientCpu: [cpuOf(0, result)] };
  }
  const parts = Array.from({ length: processes }, (_, i) => plan.users.filter((_, j) => j % processes === i));
  const children = parts.map(() =>
    fork(join(__dirname, 'driver-child.ts'), [], { execArgv: ['--require', 'tsx/cjs'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  );
  const latest: Progress[] = parts.map((users) => ({ ...emptyProgress(), users: users.length }));
  try {
    await Promise.all(children.map((c) => once(c, 'ready')));
    // Everyone is loaded: shift the schedule to start now, the same for all.
    const shift = Date.now() + 200 - plan.t0;
    const shifted = { ...plan, t0: plan.t0 + shift, sendUntil: plan.sendUntil + shift };
    const timer = setInterval(() => onProgress(latest.reduce(addProgress, emptyProgress())), 1000);
    try {
      const results = await Promise.all(
        children.map((c, i) => {
          c.on('message', (m: DriverMessage) => {
            if (m.type === 'progress') latest[i] = m.progress;
          });
          c.send({ type: 'run', plan: { ...shifted, users: parts[i]! } } satisfies ParentMessage);
          return once(c, 'result').then((m) => (m as Extract<DriverMessage, { type: 'result' }>).result);
        }),
      );
      onProgress(latest.reduce(addProgress, emptyProgress()));
      const merged: DriverResult = {
        messages: mergeMessages(results.map((r) => r.messages)),
        attempts: mergeAttempts(results.map((r) => r.attempts)),
        cpuMs: results.reduce((a, r) => a + r.cpuMs, 0),
        wallMs: Math.max(...results.map((r) => r.wallMs)),
      };
      return { result: merged, clientCpu: results.map((r, i) => cpuOf(i + 1, r)) };
    } finally {
      clearInterval(timer);
    }
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill();
  }
}

function cpuOf(process: number, r: DriverResult) {
  return { process, cpuMs: Math.round(r.cpuMs), wallMs: Math.round(r.wallMs), coreShare: r.wallMs > 0 ? Math.round((r.cpuMs / r.wallMs) * 100) / 100 : 0, loopDelayMs: r.loopDelayMs };
}

function once(c: ChildProcess, type: DriverMessage['type']): Promise<DriverMessage> {
  return new Promise((resolve, reject) => {
    const onMsg = (m: DriverMessage) => {
      if (m.type === 'failed') return done(() => reject(new Error(`client process failed: ${m.error}`)));
      if (m.type === type) done(() => resolve(m));
    };
    const onExit = (code: number | null) => done(() => reject(new Error(`client process exited (${code}) before '${type}'`)));
    const done = (f: () => void) => {
      c.off('message', onMsg);
      c.off('exit', onExit);
      f();
    };
    c.on('message', onMsg);
    c.on('exit', onExit);
  });
}
