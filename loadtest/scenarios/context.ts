// What every scenario gets (the running target, the options, progress) and
// what it returns (its part of the result file).
import type { ConnectionReport, Charts, MessageReport } from '../analyze';
import type { GoalCheck } from '../goals';
import type { Progress } from '../engine/records';
import type { ProfileSummary } from '../report/profile';
import type { ServerWatch, StageTiming } from '../target/prometheus';
import type { ModeName, RunningTarget } from '../target/target';
import type { Kind } from '../payloads';

export const SCENARIOS = ['reference', 'saturate', 'admission', 'soak', 'ghz-chat', 'ghz-history', 'voice', 'scale'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export interface Options {
  scenario: ScenarioName;
  modes: ModeName[];
  /** Sending period, ms (reference 120 s, saturate 30 s, soak 10 min by default). */
  durationMs: number;
  users: number;
  rampPerSec: number;
  thinkMs: [number, number];
  window: number;
  /** saturate: also drive the echo baseline (loadtest/echo) with the same plan. */
  echo: boolean;
  /** scale: streams to hold (the server's CHATFLOW_MAX_CLIENTS is set to it). */
  streams: number;
  mix: Kind[];
  delayScale: number;
  maxClients: number;
  fsync: boolean;
  /** Client processes for the load (0 = in the runner's own process). */
  clientProcs: number;
  channels: number;
  /** Admission: attempts in the burst. */
  burst: number;
  /** on: profile the measured run; auto: measure unprofiled, and when a target is missed run again briefly under the profiler; off. */
  profile: 'on' | 'auto' | 'off';
  outDir: string;
  workDir: string;
  date: string;
  /** Extra server environment (KEY=VALUE from --env). */
  serverEnv: Record<string, string>;
  quiet: boolean;
  timeZone: string;
  /** ghz scenarios: calls (streams for ghz-chat), concurrency, reflection instead of --proto. */
  ghzTotal: number;
  ghzConcurrency: number;
  ghzReflect: boolean;
  /** Where the server's src/main.ts lives (default: this checkout). */
  serverDir: string;
}

export interface RunContext {
  opts: Options;
  mode: ModeName;
  target: RunningTarget;
  watch: ServerWatch;
  /** Short random id: client ids are `lt-<runId>-<n>` so runs against a long-lived stack never collide. */
  runId: string;
  /** This run's log folder (server logs, echo baseline log). */
  logDir: string;
  /** Prints a progress line (rate-limited); call with the live counters. */
  progress(p: Progress): void;
  log(line: string): void;
}

/** A scenario's part of the result file. */
export interface ScenarioOutput {
  settings: Record<string, unknown>;
  messages?: MessageReport;
  connections?: ConnectionReport;
  charts?: Charts;
  /** Scenario-specific figures (admission phases, saturation peak, soak drift, ghz report). */
  figures?: Record<string, unknown>;
  checks: GoalCheck[];
  clientCpu?: { process: number; cpuMs: number; wallMs: number; coreShare: number; loopDelayMs?: { p50: number; p99: number; max: number } }[];
  notes: string[];
  /** Filled by the runner. */
  profiles?: ProfileSummary[];
  /** When the profiles come from a separate, shorter run under the profiler (`--profile auto` after a missed target). */
  profileRun?: { startedAt: string; durationS: number; loadavgStart: number[]; checks: GoalCheck[] };
  server?: ServerSummary;
}

export interface ServerSummary {
  /** Highest chatflow_messages_processing_peak seen (summed over workers in the stack). */
  processingPeak: number | null;
  rssMB: { start: number | null; end: number | null; max: number | null };
  /** CPU seconds each process used during the run, and as a share of one core. */
  cpu: { process: string; seconds: number; coreShare: number }[];
  /** Downsampled readings (RSS MB, processing, waiting, clients) for charts. */
  readings: { t: number; process: string; rssMB: number; processing: number; waiting: number; clients: number; lagP99Ms: number }[];
  /** Server-side stage timings (log append, media put) from the processes' histograms, whole run. */
  stages?: StageTiming[];
}

export type Scenario = (ctx: RunContext) => Promise<ScenarioOutput>;
