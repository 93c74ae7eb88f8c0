// How late a load-generator process's event loop ran: what every time it
// records includes. One definition for the driver, the probe process and the
// scale scenario's runner, so their figures can be set side by side.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** Lateness in ms: how much later than asked the monitor's timer fired (its resolution taken off). */
export interface LoopDelay {
  p50: number;
  p99: number;
  max: number;
}

/** The monitor's timer: a timer every RESOLUTION_MS, whose figures include that interval. */
const RESOLUTION_MS = 5;

/** Starts recording this process's event-loop delay. */
export function monitorLoop(): IntervalHistogram {
  const h = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  h.enable();
  return h;
}

/** Stops the monitor and gives its lateness: the delay beyond the timer's own interval, in ms to 0.1. */
export function lateness(h: IntervalHistogram): LoopDelay {
  h.disable();
  const late = (ns: number) => Math.round(Math.max(0, ns / 1e6 - RESOLUTION_MS) * 10) / 10;
  return { p50: late(h.percentile(50)), p99: late(h.percentile(99)), max: late(h.max) };
}
