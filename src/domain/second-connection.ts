import { ChatFlowError } from './errors';
import { heardAt, type LeaseState } from './admission';

/**
 * What the gateway learnt by asking the holder of a client's slot, over the
 * bus, whether the session is open there: it answered; nobody serves the
 * session (its gateway is gone, or the session is closing); or no answer in
 * time / no bus (nothing learnt).
 */
export type HolderProbe = 'answered' | 'no-responder' | 'unknown';

/**
 * A client asked for a stream while its slot is held (the registry refused it
 * as `duplicate` or `holder-late`): what it is told. ALREADY_EXISTS says "your
 * other connection lives; do not retry", so it is said only when that is
 * known: the holder answered for the session, or nothing was learnt and the
 * holder's heartbeat is recent. Otherwise the first connection is gone or may
 * be, and the client is told UNAVAILABLE with `retry-after-ms`: until the slot
 * lapses when the holder is late (it is freed then unless the holder renews),
 * or one renewal period (`retrySoonMs`) when a holder heard from lately does not
 * serve the session (it is closing and gives the slot back in a moment, or
 * the holder has just died: by the next try its heartbeat may be late).
 */
export function secondConnection(r: {
  clientId: string;
  reason: 'duplicate' | 'holder-late';
  holder: LeaseState;
  now: number;
  probe: HolderProbe;
  retrySoonMs: number;
}): ChatFlowError {
  const late = r.reason === 'holder-late';
  const untilLapse = Math.max(1, r.holder.expiresAt - r.now);
  if (r.probe === 'answered' || (r.probe === 'unknown' && !late)) {
    return new ChatFlowError('ALREADY_EXISTS', `client ${r.clientId} is already connected (one connection per client); close the other stream first`);
  }
  if (late) {
    const silent = r.now - heardAt(r.holder);
    return new ChatFlowError(
      'UNAVAILABLE',
      `client ${r.clientId}: your previous connection's gateway has not been heard from for ${silent} ms; its connection slot is freed in ${untilLapse} ms unless that gateway comes back; retry then`,
      { 'retry-after-ms': String(untilLapse) },
    );
  }
  const soon = Math.min(untilLapse, r.retrySoonMs);
  return new ChatFlowError(
    'UNAVAILABLE',
    `client ${r.clientId}: your previous connection is not open on any gateway that answers, but still holds your connection slot until it is given back or lapses; retry in ${soon} ms`,
    { 'retry-after-ms': String(soon) },
  );
}
