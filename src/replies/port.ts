import type { OutcomeRecord, ReplyClaimEvent } from '../domain/reply-claim';

/** What a claim attempt found (see src/domain/reply-claim.ts). */
export type ClaimResult =
  | { type: 'claimed'; gen: number; taken: boolean }
  | { type: 'answered' }
  | { type: 'busy'; holder: string }
  | { type: 'unconfirmed'; event: Uint8Array };

export interface ReplyClaims {
  /** A holder whose last beat is this old is dead (its owners beat several times within it). */
  readonly deadAfterMs: number;
  /**
   * True when the claims live only as long as the process (the embedded
   * default): after a restart they know nothing of the answers given before,
   * so a message received before they existed is checked against the read
   * models instead (rebuilt from the whole log before the worker starts).
   */
  readonly volatile?: boolean;
  /**
   * Claims message `messageId` for `owner` (a worker process), unless it is
   * answered or a live owner holds it. `intact`: the caller knows no prune can
   * have removed any of the message's records yet (it is younger than half the
   * keep time), so an adapter may skip what it reads only to see through a
   * half-done prune.
   */
  claim(messageId: string, owner: string, now: number, hints?: { intact?: boolean }): Promise<ClaimResult>;
  /**
   * Records `event` as the message's outcome under generation `gen`. True: it
   * is the message's outcome and the caller appends it; false: another owner's
   * outcome was recorded first and the caller appends nothing.
   */
  commit(messageId: string, owner: string, gen: number, event: Uint8Array): Promise<boolean>;
  /** The recorded outcome is in the log (as of `now`). */
  confirmAppended(messageId: string, now: number): Promise<void>;
  /** Gives the message up (its partition moved): the next owner claims it at once. */
  release(messageId: string, owner: string, gen: number): Promise<void>;
  /** Says `owner` is alive at `now`; a holder silent for the adapter's `deadAfterMs` loses its claims. */
  beat(owner: string, now: number): Promise<void>;
  /**
   * Removes what can no longer matter (see claimsPrunable, beatPrunable): the
   * records of messages whose outcome has been in the log for `keepMs`, and
   * the heartbeats of workers silent as long. Returns how many of each went.
   */
  prune(now: number, keepMs: number): Promise<{ messages: number; heartbeats: number }>;
  close(): Promise<void>;
}

/**
 * A worker silent this long is dead and its messages pass to others (it beats
 * every quarter of it). Safety never depends on it — an outcome is appended
 * only by the owner the claims recorded first — only how soon a dead worker's
 * messages are answered.
 */
export const WORKER_DEAD_AFTER_MS = 5_000;

export interface ReplyClaimsOptions {
  /** A holder whose last beat is this old is dead: its claims are taken over. */
  deadAfterMs: number;
}

/** What a Claim decided, as the port reports it. */
export function claimResultOf(events: readonly ReplyClaimEvent[]): ClaimResult {
  const e = events[0];
  switch (e?.type) {
    case 'Answered':
      return { type: 'answered' };
    case 'Busy':
      return { type: 'busy', holder: e.holder };
    case 'Claimed':
      return { type: 'claimed', gen: e.gen, taken: e.taken };
    case 'Unconfirmed':
      return { type: 'unconfirmed', event: e.outcome.event };
    default:
      throw new Error(`a Claim ended in ${e?.type ?? 'nothing'}`);
  }
}

export type { OutcomeRecord };
