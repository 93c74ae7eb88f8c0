import { beatPrunable, claimsPrunable, replyClaim, type ReplyClaimCommand, type ReplyClaimEvent, type ReplyClaimState } from '../domain/reply-claim';
import { claimResultOf, type ClaimResult, type ReplyClaims, type ReplyClaimsOptions } from './port';

/**
 * Reply claims of the embedded default: the decider on in-memory state (one
 * command at a time, so each decision is atomic). They live as long as the
 * process, like the embedded log's single consumer: after a restart the read
 * models are rebuilt from the whole log before the worker starts, so the
 * worker's "already answered?" check is exact there. An appended outcome keeps
 * only its record, not its bytes.
 */
export class MemoryReplyClaims implements ReplyClaims {
  private readonly messages = new Map<string, Omit<ReplyClaimState, 'beats'>>();
  private beats: Record<string, number> = {};

  readonly deadAfterMs: number;
  readonly volatile = true;

  constructor(options: ReplyClaimsOptions) {
    this.deadAfterMs = options.deadAfterMs;
  }

  private run(messageId: string, command: ReplyClaimCommand): ReplyClaimEvent[] {
    const state: ReplyClaimState = { ...(this.messages.get(messageId) ?? replyClaim.initialState()), beats: this.beats };
    const events = replyClaim.decide(command, state);
    const next = events.reduce(replyClaim.evolve, state);
    const { beats, ...rest } = next;
    this.beats = beats;
    if (rest.outcome?.appended && rest.outcome.event.length > 0) rest.outcome = { ...rest.outcome, event: new Uint8Array() };
    if (command.type !== 'Beat') this.messages.set(messageId, rest);
    return events;
  }

  async claim(messageId: string, owner: string, now: number): Promise<ClaimResult> {
    return claimResultOf(this.run(messageId, { type: 'Claim', owner, now, deadAfterMs: this.deadAfterMs }));
  }

  async commit(messageId: string, owner: string, gen: number, event: Uint8Array): Promise<boolean> {
    return this.run(messageId, { type: 'Commit', owner, gen, event })[0]?.type === 'Committed';
  }

  async confirmAppended(messageId: string, now: number): Promise<void> {
    this.run(messageId, { type: 'ConfirmAppended', now });
  }

  async release(messageId: string, owner: string, gen: number): Promise<void> {
    this.run(messageId, { type: 'Release', owner, gen });
  }

  async beat(owner: string, now: number): Promise<void> {
    this.run('', { type: 'Beat', owner, now });
  }

  async prune(now: number, keepMs: number): Promise<{ messages: number; heartbeats: number }> {
    let messages = 0;
    for (const [id, m] of this.messages) if (claimsPrunable(m.outcome, now, keepMs) && this.messages.delete(id)) messages++;
    const silent = Object.keys(this.beats).filter((o) => beatPrunable(this.beats[o], now, this.deadAfterMs, keepMs));
    if (silent.length > 0) this.beats = Object.fromEntries(Object.entries(this.beats).filter(([o]) => !silent.includes(o)));
    return { messages, heartbeats: silent.length };
  }

  async close(): Promise<void> {}
}
