// What the load generator records, as columns of plain numbers/strings (cheap
// to build, to send between processes and to merge). Times are epoch ms with
// sub-millisecond precision (performance.timeOrigin + performance.now()).
import { performance } from 'node:perf_hooks';

export const now = (): number => performance.timeOrigin + performance.now();

/** Per message: sent, Accepted, reply (BotResponse or ChatError), the worker's processing_ms. −1 = never. */
export interface MessageRecords {
  kind: number[];
  sent: number[];
  accepted: number[];
  response: number[];
  processingMs: number[];
  /** '' = answered with a BotResponse; else a ChatError code, `NO_REPLY`, or `STREAM_<status>`. */
  error: string[];
}

/** Per connection attempt: start, outcome time, outcome (`OK` = Welcome, else the gRPC status name). */
export interface AttemptRecords {
  user: number[];
  start: number[];
  end: number[];
  outcome: string[];
}

export function emptyMessages(): MessageRecords {
  return { kind: [], sent: [], accepted: [], response: [], processingMs: [], error: [] };
}

export function emptyAttempts(): AttemptRecords {
  return { user: [], start: [], end: [], outcome: [] };
}

export function addMessage(r: MessageRecords, kind: number, sent: number): number {
  r.kind.push(kind);
  r.sent.push(sent);
  r.accepted.push(-1);
  r.response.push(-1);
  r.processingMs.push(-1);
  r.error.push('');
  return r.kind.length - 1;
}

export function addAttempt(r: AttemptRecords, user: number, start: number, end: number, outcome: string): void {
  r.user.push(user);
  r.start.push(start);
  r.end.push(end);
  r.outcome.push(outcome);
}

/** Concatenates, column by column, the records of several client processes into `out` (an empty set of columns). */
function mergeColumns<T extends object>(out: T, parts: T[]): T {
  // concat, not push(...xs): spreading 100 000s of arguments overflows the stack.
  for (const k of Object.keys(out) as (keyof T)[]) (out as unknown as Record<keyof T, unknown[]>)[k] = ([] as unknown[]).concat(...parts.map((p) => p[k] as unknown[]));
  return out;
}

export function mergeMessages(parts: MessageRecords[]): MessageRecords {
  return mergeColumns(emptyMessages(), parts);
}

export function mergeAttempts(parts: AttemptRecords[]): AttemptRecords {
  return mergeColumns(emptyAttempts(), parts);
}

/** Live counters a driver reports while it runs. */
export interface Progress {
  users: number;
  connected: number;
  attempts: number;
  refused: number;
  sent: number;
  answered: number;
  failed: number;
}

export function emptyProgress(): Progress {
  return { users: 0, connected: 0, attempts: 0, refused: 0, sent: 0, answered: 0, failed: 0 };
}

export function addProgress(a: Progress, b: Progress): Progress {
  return {
    users: a.users + b.users, connected: a.connected + b.connected, attempts: a.attempts + b.attempts, refused: a.refused + b.refused,
    sent: a.sent + b.sent, answered: a.answered + b.answered, failed: a.failed + b.failed,
  };
}
