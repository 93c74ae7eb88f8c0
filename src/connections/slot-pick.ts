// Which slot number an admission claims (MongoConnectionRegistry): pure, so
// that the walk's shortcut can be checked against the walk itself.

/**
 * The first slot number from `home` on (wrapping below `max`) that is not
 * `taken`, or undefined when every one is. Each holder starts at a home of its
 * own (homeSlot), so gateways whose views lag each other's claims (see
 * SlotView) fill different stretches and rarely race for the same number, even
 * in a nearly full house; one holder's concurrent admissions skip each other's
 * numbers (`taken` counts them).
 */
export function freeSlot(max: number, taken: (n: number) => boolean, home: number): number | undefined {
  for (let i = 0; i < max; i++) {
    const n = (home + i) % max;
    if (!taken(n)) return n;
  }
  return undefined;
}

/**
 * How far from `home` a holder's walk (see pickSlot) may start: every number
 * before `from` was taken and the holder's own when a walk last passed it.
 * The caller keeps it while that stays so (no slot of the view freed, no
 * number marked lost since) and forgets it otherwise; `reached` is where the
 * next walk may start.
 */
export interface Walk {
  from: number;
  reached?: number;
}

/**
 * The slot number to claim: walking from `home` over the numbers this holder
 * holds (`ours`), the first free one; when the walk meets a number taken
 * otherwise (another holder's, or one a claim lost), a random free one — a few
 * draws, then the first free one from a random number on.
 *
 * `walk`: starts at `walk.from` instead of `home` and sets `walk.reached`.
 * Walking again from `home` over its own numbers cost every admission a step
 * per slot its holder held: at 5,000 streams a gateway's admissions spent
 * ~11 % of its CPU there (the stack's scale run, 2026-11-27 profile:
 * pickSlot and the view's holderOf).
 */
export function pickSlot(max: number, taken: (n: number) => boolean, ours: (n: number) => boolean, home: number, random: () => number, walk?: Walk): number | undefined {
  for (let i = Math.min(walk?.from ?? 0, max); i < max; i++) {
    const n = (home + i) % max;
    const free = !taken(n);
    if (free || !ours(n)) {
      if (walk) walk.reached = i;
      if (free) return n;
      break;
    }
  }
  const draw = () => Math.min(max - 1, Math.floor(random() * max));
  for (let k = 0; k < 8; k++) {
    const n = draw();
    if (!taken(n)) return n;
  }
  return freeSlot(max, taken, draw());
}

/** A holder's first slot number: a hash of its name (FNV-1a) below `max`. */
export function homeSlot(holder: string, max: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < holder.length; i++) h = Math.imul(h ^ holder.charCodeAt(i), 0x01000193);
  return (h >>> 0) % Math.max(1, max);
}
