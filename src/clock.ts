/**
 * The two clocks a process keeps apart. The wall clock (`Date.now`) says what
 * time it is: event times, a Welcome's server time, a token's expiry, stamps
 * other processes read. It can jump: an operator's `date -s`, NTP stepping a
 * clock that was far off, a virtual machine resumed. How long something took,
 * or may still take (a lease's trust, a client's first-message deadline or
 * silence, an append's timeout, a reply's processing time), is measured on a
 * steady clock, which only moves forward at the rate of time: a step of the
 * wall clock then closes no stream, expires no deadline early and holds none
 * open late.
 */

/**
 * A steady clock in whole wall-clock milliseconds: the wall clock's reading when it
 * was made, advanced by the monotonic clock since (`performance.now`,
 * CLOCK_MONOTONIC). NTP's frequency corrections move both; its steps, and an
 * operator's, move neither. For times only this process compares (the leases
 * of a registry in its memory, durations): other processes judge stamps on
 * their own wall clocks.
 */
export function steadyClock(wall: () => number = Date.now, monotonic: () => number = () => performance.now()): () => number {
  const offset = wall() - monotonic();
  // Whole milliseconds, as the wall clock gives them (they go into int64 fields).
  return () => Math.floor(offset + monotonic());
}
