import type { Decider } from './decider';

/**
 * Exactly one reply per message id, as a pure decider, without trusting a read
 * model that lags behind the log.
 *
 * A worker answers a message only under a claim: generation `gen` of the
 * message's claims, owned by one worker process. Only the outcome record
 * decides who appends: the first owner whose Commit records the reply (or
 * failure) appends it; any later Commit is Superseded and appends nothing. So
 * two copies of one MessageReceived, two workers given the same partition, or a
 * zombie that lost its partition but finished anyway, give one outcome in the log.
 *
 * Whether a holder is alive is read from its heartbeat (per worker process),
 * never guessed from how long a message has been in processing: a live worker
 * answering a slow model keeps its claim for as long as it takes; a dead one's
 * claim is taken over `deadAfterMs` after its last beat. A holder that gives
 * the message up (its partition moved) releases the claim for the next owner.
 *
 * The one case the records cannot settle alone: an outcome recorded by an owner
 * that died, failed or gave the message up before marking it appended. The log may or may not hold
 * it, so the decider says Unconfirmed: the caller checks the log (through a read
 * model caught up with it AFTER the owner stopped) and appends the recorded
 * outcome only if it is not there.
 *
 * Adapters store each generation and the outcome as separate records keyed
 * `<messageId>#<gen>` and `<messageId>#outcome` (and, in MongoDB, the outcome's
 * being appended as a third, `<messageId>#appended`): each event below is one
 * insert on a unique key (atomic on MongoDB and on FerretDB v1 alike) or an
 * update of a record only its owner writes.
 */

export interface ClaimRecord {
  readonly gen: number;
  readonly owner: string;
  readonly released: boolean;
}

export interface OutcomeRecord {
  readonly gen: number;
  readonly owner: string;
  /** The outcome event (encoded), so whoever confirms it can append exactly this one. */
  readonly event: Uint8Array;
  /** Known to be in the log. */
  readonly appended: boolean;
  /** When it was known to be (absent on records kept before this was). */
  readonly appendedAt?: number;
}

export interface ReplyClaimState {
  /** Claims of one message, any order. */
  readonly claims: readonly ClaimRecord[];
  readonly outcome: OutcomeRecord | null;
  /** Last heartbeat per owner (absent: never seen, i.e. dead). */
  readonly beats: Readonly<Record<string, number>>;
}

export type ReplyClaimCommand =
  | { type: 'Claim'; owner: string; now: number; deadAfterMs: number }
  | { type: 'Commit'; owner: string; gen: number; event: Uint8Array }
  | { type: 'Release'; owner: string; gen: number }
  | { type: 'ConfirmAppended'; now: number }
  | { type: 'Beat'; owner: string; now: number };

export type ReplyClaimEvent =
  /** The outcome is in the log: nothing to do. */
  | { type: 'Answered' }
  /** Another live owner holds the message: wait for its outcome or its release. */
  | { type: 'Busy'; holder: string }
  /** `owner` holds generation `gen` (new, or its own still held). */
  | { type: 'Claimed'; gen: number; owner: string; taken: boolean }
  /** An outcome is recorded but not known to be in the log (its owner died or failed before saying so). */
  | { type: 'Unconfirmed'; outcome: OutcomeRecord }
  /** `owner`'s outcome is the message's: it appends it. */
  | { type: 'Committed'; outcome: OutcomeRecord }
  /** Another owner's outcome was recorded first: append nothing. */
  | { type: 'Superseded'; by: string }
  | { type: 'Released'; gen: number; owner: string }
  | { type: 'Appended'; at: number }
  | { type: 'Beaten'; owner: string; at: number };

function alive(state: ReplyClaimState, owner: string, now: number, deadAfterMs: number): boolean {
  const at = state.beats[owner];
  return at !== undefined && now - at < deadAfterMs;
}

function latest(claims: readonly ClaimRecord[]): ClaimRecord | undefined {
  let top: ClaimRecord | undefined;
  for (const c of claims) if (!top || c.gen > top.gen) top = c;
  return top;
}

export const replyClaim: Decider<ReplyClaimCommand, ReplyClaimEvent, ReplyClaimState> = {
  initialState: () => ({ claims: [], outcome: null, beats: {} }),

  decide(command, state) {
    switch (command.type) {
      case 'Claim': {
        const { owner, now, deadAfterMs } = command;
        const { outcome } = state;
        if (outcome?.appended) return [{ type: 'Answered' }];
        if (outcome) {
          // The owner that recorded it is about to append it (alive, someone else, still holding the message),
          // or cannot say any more (dead, or it gave the message up while appending).
          const given = state.claims.some((c) => c.gen === outcome.gen && c.released);
          if (outcome.owner !== owner && !given && alive(state, outcome.owner, now, deadAfterMs)) return [{ type: 'Busy', holder: outcome.owner }];
          return [{ type: 'Unconfirmed', outcome }];
        }
        const top = latest(state.claims);
        if (!top) return [{ type: 'Claimed', gen: 1, owner, taken: false }];
        if (!top.released && top.owner === owner) return [{ type: 'Claimed', gen: top.gen, owner, taken: false }];
        if (!top.released && alive(state, top.owner, now, deadAfterMs)) return [{ type: 'Busy', holder: top.owner }];
        return [{ type: 'Claimed', gen: top.gen + 1, owner, taken: true }];
      }
      case 'Commit': {
        const { outcome } = state;
        // The same commit again (its answer was lost): still this owner's, with the bytes first recorded.
        if (outcome && outcome.owner === command.owner && outcome.gen === command.gen) return [{ type: 'Committed', outcome }];
        if (outcome) return [{ type: 'Superseded', by: outcome.owner }];
        const held = state.claims.some((c) => c.gen === command.gen && c.owner === command.owner);
        if (!held) throw new Error(`commit of generation ${command.gen} by ${command.owner}, which never claimed it`);
        return [{ type: 'Committed', outcome: { gen: command.gen, owner: command.owner, event: command.event, appended: false } }];
      }
      case 'Release': {
        const c = state.claims.find((x) => x.gen === command.gen && x.owner === command.owner);
        return c && !c.released && !state.outcome?.appended ? [{ type: 'Released', gen: c.gen, owner: c.owner }] : [];
      }
      case 'ConfirmAppended':
        return state.outcome !== null && !state.outcome.appended ? [{ type: 'Appended', at: command.now }] : [];
      case 'Beat':
        return [{ type: 'Beaten', owner: command.owner, at: command.now }];
    }
  },

  evolve(state, event) {
    switch (event.type) {
      case 'Claimed':
        return state.claims.some((c) => c.gen === event.gen) ? state : { ...state, claims: [...state.claims, { gen: event.gen, owner: event.owner, released: false }] };
      case 'Committed':
        return { ...state, outcome: event.outcome };
      case 'Released':
        return { ...state, claims: state.claims.map((c) => (c.gen === event.gen ? { ...c, released: true } : c)) };
      case 'Appended':
        return state.outcome ? { ...state, outcome: { ...state.outcome, appended: true, appendedAt: event.at } } : state;
      case 'Beaten':
        return { ...state, beats: { ...state.beats, [event.owner]: event.at } };
      default:
        return state;
    }
  },
};

/**
 * Whether a message's records (its claims and outcome) can go: its outcome has
 * been in the log for `keepMs`, longer than a resend or a redelivery of the
 * message can arrive while the read models do not show it answered yet. Past
 * that, the worker's read-model check is exact and the records decide nothing.
 * A message without an appended outcome is kept whatever its age.
 */
export function claimsPrunable(outcome: OutcomeRecord | null, now: number, keepMs: number): boolean {
  return outcome?.appended === true && outcome.appendedAt !== undefined && outcome.appendedAt <= now - keepMs;
}

/**
 * Whether a worker's heartbeat can go: silent for `keepMs` and ten times
 * `deadAfterMs` (however skewed the clocks reading it). An absent heartbeat
 * means dead, as a lapsed one does, so removing it changes no decision.
 */
export function beatPrunable(at: number, now: number, deadAfterMs: number, keepMs: number): boolean {
  return at <= now - Math.max(keepMs, 10 * deadAfterMs);
}
