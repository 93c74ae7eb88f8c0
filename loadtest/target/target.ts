// A mode is only "how to start the system under test, and where its endpoints
// are". Scenarios see a RunningTarget: gRPC addresses to spread clients over,
// and the processes whose /metrics they read.

export type ModeName = 'embedded' | 'stack';
export const MODES: readonly ModeName[] = ['embedded', 'stack'];

export interface TargetOptions {
  /** Scenario settings (delay scale, max clients, ...) for every ChatFlow process. */
  env: Record<string, string>;
  /** When set, the processes that serve gRPC run with `--cpu-prof` into this folder. */
  profileDir?: string;
  /** Process logs go here, one file per process. */
  logDir: string;
  /** Checkout whose `src/main.ts` is started (default: this one). */
  serverDir?: string;
}

export interface TargetProcess {
  /** `all`, `gateway-1`, `worker-2`, ... */
  name: string;
  role: 'all' | 'gateway' | 'worker' | 'projector';
  pid: number;
  /** Base URL of its HTTP server (`/healthz`, `/metrics`). */
  http: string;
  /** gRPC address, for processes that serve clients. */
  grpc?: string;
}

export interface RunningTarget {
  mode: ModeName;
  /** gRPC endpoints clients connect to; clients are spread over them round-robin. */
  grpc: string[];
  processes: TargetProcess[];
  /** Stops every process (SIGTERM, then SIGKILL); resolves with the CPU profiles written. */
  stop(): Promise<{ profiles: string[] }>;
}

export interface Target {
  mode: ModeName;
  /** Throws with the reason when the mode cannot run here (e.g. the stack's engines are not configured). */
  start(opts: TargetOptions): Promise<RunningTarget>;
}
