import { spec } from '../../test/decider-specification';
import { replyClaim, type ReplyClaimEvent } from './reply-claim';

const bytes = new Uint8Array([1, 2, 3]);
const beat = (owner: string, at: number): ReplyClaimEvent => ({ type: 'Beaten', owner, at });
const claimed = (gen: number, owner: string): ReplyClaimEvent => ({ type: 'Claimed', gen, owner, taken: gen > 1 });
const claim = (owner: string, now: number) => ({ type: 'Claim' as const, owner, now, deadAfterMs: 1000 });

describe('reply claim decider', () => {
  it('gives an unclaimed message to the first owner', () => {
    spec(replyClaim).given([]).when(claim('a', 0)).then([{ type: 'Claimed', gen: 1, owner: 'a', taken: false }]);
  });

  it('keeps a live holder\'s message from others, however long it works', () => {
    spec(replyClaim).given([beat('a', 50_000), claimed(1, 'a')]).when(claim('b', 50_500)).then([{ type: 'Busy', holder: 'a' }]);
  });

  it('hands a silent holder\'s message to the next owner under the next generation', () => {
    spec(replyClaim).given([beat('a', 0), claimed(1, 'a')]).when(claim('b', 1000)).then([{ type: 'Claimed', gen: 2, owner: 'b', taken: true }]);
  });

  it('hands a released message over at once', () => {
    spec(replyClaim).given([beat('a', 0), claimed(1, 'a'), { type: 'Released', gen: 1, owner: 'a' }]).when(claim('b', 1)).then([{ type: 'Claimed', gen: 2, owner: 'b', taken: true }]);
  });

  it('records only the first outcome: a zombie\'s later commit is superseded', () => {
    const committed: ReplyClaimEvent = { type: 'Committed', outcome: { gen: 2, owner: 'b', event: bytes, appended: false } };
    spec(replyClaim).given([claimed(1, 'a'), claimed(2, 'b'), committed]).when({ type: 'Commit', owner: 'a', gen: 1, event: bytes }).then([{ type: 'Superseded', by: 'b' }]);
  });

  it('refuses a commit under a generation the owner never claimed', () => {
    expect(() => replyClaim.decide({ type: 'Commit', owner: 'x', gen: 1, event: bytes }, replyClaim.initialState())).toThrow(/never claimed/);
  });

  it('says Unconfirmed for an outcome whose owner died before confirming it, Answered once confirmed', () => {
    const outcome = { gen: 1, owner: 'a', event: bytes, appended: false };
    const given = [beat('a', 0), claimed(1, 'a'), { type: 'Committed', outcome } as ReplyClaimEvent];
    spec(replyClaim).given(given).when(claim('b', 500)).then([{ type: 'Busy', holder: 'a' }]);
    spec(replyClaim).given(given).when(claim('b', 2000)).then([{ type: 'Unconfirmed', outcome }]);
    spec(replyClaim).given([...given, { type: 'Appended', at: 1500 }]).when(claim('b', 2000)).then([{ type: 'Answered' }]);
  });

  it('says Unconfirmed for an outcome whose live owner gave the message up while appending it (its partition moved)', () => {
    const outcome = { gen: 1, owner: 'a', event: bytes, appended: false };
    spec(replyClaim).given([beat('a', 0), claimed(1, 'a'), { type: 'Committed', outcome }]).when({ type: 'Release', owner: 'a', gen: 1 }).then([{ type: 'Released', gen: 1, owner: 'a' }]);
    spec(replyClaim).given([beat('a', 0), claimed(1, 'a'), { type: 'Committed', outcome }, { type: 'Released', gen: 1, owner: 'a' }]).when(claim('b', 10)).then([{ type: 'Unconfirmed', outcome }]);
  });
});
