/**
 * What a call can make the gRPC server hold before any handler of ours runs.
 *
 * grpc-js reads a request's message whole, up to the server's largest message
 * (2 × the media limit + 1 MiB: a Chat frame carries an upload), before the
 * handler sees it. So a caller without a token could make the server hold
 * ~17 MiB per call: 200 such calls to HistoryService, all refused
 * UNAUTHENTICATED in the end, took an embedded server from ~150 MB to 3.4 GB
 * of RSS, and enough of them end it. Two bounds, before anything is read:
 * - a call of the public services is authenticated from its metadata first;
 *   a refused one is answered at once and none of its message is read (the
 *   stream stays paused, so HTTP/2 flow control stops the sender);
 * - only the methods that carry media may send a message that large; every
 *   other request (history, health, reflection) may be SMALL_REQUEST_BYTES,
 *   compressed or not, and a larger one is RESOURCE_EXHAUSTED.
 * And, once the caller is known, places: a request that may carry an upload
 * (`Send`) is read only once it holds one of the process's send places, and
 * holds it until it is answered (a token holder's 200 Sends of 16 MiB at once
 * were otherwise all read together), unless it says it carries none
 * (NO_UPLOAD_HEADER: then it is read as a small call, not behind slow
 * uploads); a call of any other method but the
 * sessions' (history, health, reflection) holds one of its call places
 * likewise, and must send its request whole within a time, or is ended
 * DEADLINE_EXCEEDED (50,000 health checks on one connection, each sending
 * part of its request and never the rest, were otherwise all read and kept).
 */
import { Metadata, ServerInterceptingCall, status, type ServerInterceptingCallInterface, type ServerInterceptor, type StatusObject } from '@grpc/grpc-js';
import type { Place, RequestPlaces } from '../resilience/request-places';

/** The largest request of a method that carries no media: ids, page tokens, names (a few hundred bytes in practice). */
export const SMALL_REQUEST_BYTES = 64 * 1024;

/**
 * Request metadata by which a single-message call of a method that may carry an upload (a `Send`; not a `Chat`
 * stream) says this request carries none (a text message or a ping): `x-no-upload: true`. It is then read as a
 * small request, at most SMALL_REQUEST_BYTES (a larger one is RESOURCE_EXHAUSTED), and does not wait behind uploads.
 */
export const NO_UPLOAD_HEADER = 'x-no-upload';

/** Whether the metadata says the request carries no upload (NO_UPLOAD_HEADER). */
export function declaresNoUpload(value: string | undefined): boolean {
  return value === 'true';
}

export interface RequestGuardOptions {
  /** Whether callers of this path must be identified before anything of their request is read. */
  authenticated: (path: string) => boolean;
  /**
   * Whether this path's requests may be as large as the server's largest message (they carry uploads). One that
   * declares it carries none (NO_UPLOAD_HEADER) is then read as a small request.
   */
  carriesMedia: (path: string) => boolean;
  /** Resolves with the caller the metadata identifies; rejects with why not. */
  identify: (md: Metadata) => Promise<string>;
  /** The status a refused caller gets (and whatever is counted of it). */
  refused: (path: string, err: unknown) => StatusObject;
  /**
   * The places this path's calls are read and handled in (see RequestPlaces), or undefined: no bound. A caller is
   * its identity, or on a path without one, its address.
   */
  placesFor?: (path: string, small: boolean) => RequestPlaces | undefined;
  /** How long a call of this path may take to send its request whole once read, or undefined: as long as it likes. */
  requestWithinMs?: (path: string, small: boolean) => number | undefined;
  /** Called for a call ended because its request was late (a metric); `small` as for requestWithinMs. */
  onLate?: (path: string, small: boolean) => void;
}

export function requestGuard(opts: RequestGuardOptions): ServerInterceptor {
  return (method, call) => {
    const { path } = method;
    // `small`: the request is at most SMALL_REQUEST_BYTES, by its path or, for one that may carry an upload, by
    // what its metadata declares (read once it arrives, before any of the request is).
    const mayUpload = opts.carriesMedia(path);
    if (!mayUpload) limitRequest(call, SMALL_REQUEST_BYTES);
    const authenticated = opts.authenticated(path);
    if (!authenticated && !opts.placesFor?.(path, true)) return new ServerInterceptingCall(call);
    const caller = (md: Metadata) => (authenticated ? opts.identify(md) : Promise.resolve(`address ${call.getPeer().replace(/:\d+$/, '')}`));
    let places: RequestPlaces | undefined;
    let small = !mayUpload;
    let withinMs: number | undefined;
    // Given back once the call is answered, cancelled or late (RequestPlaces): the place it holds, or waits for.
    let place: Place | undefined;
    let over = false;
    let late: NodeJS.Timeout | undefined;
    const end = () => {
      over = true;
      clearTimeout(late);
      place?.end();
    };
    const hold = (who: string): Promise<void> | undefined => {
      if (!places || over) return undefined;
      place = places.take(who);
      return place.wait;
    };
    const lateRequest = () => {
      end();
      opts.onLate?.(path, small);
      call.sendStatus({ code: status.DEADLINE_EXCEEDED, details: `the request did not arrive whole within ${withinMs} ms`, metadata: new Metadata() });
    };
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          // Passed on (and the handler started, which asks for the message) only once the caller is known, and holds
          // a place if its path has them.
          onReceiveMetadata: (md, pass) => {
            small = !mayUpload || (!method.requestStream && declaresNoUpload(md.get(NO_UPLOAD_HEADER)[0]?.toString()));
            if (mayUpload && small) limitRequest(call, SMALL_REQUEST_BYTES);
            places = opts.placesFor?.(path, small);
            withinMs = opts.requestWithinMs?.(path, small);
            void caller(md)
              .then(hold)
              .then(
                () => {
                  if (over) return; // ended meanwhile: its place, if it got one, is given back
                  if (withinMs !== undefined) late = setTimeout(lateRequest, withinMs);
                  pass(md);
                },
                (err: unknown) => call.sendStatus(opts.refused(path, err)),
              );
          },
          // The request is whole at its first message for a streaming one, at its end for a single message.
          onReceiveMessage: (message, pass) => {
            if (method.requestStream) clearTimeout(late);
            pass(message);
          },
          onReceiveHalfClose: (pass) => {
            clearTimeout(late);
            pass();
          },
          onCancel: end,
        }),
      sendStatus: (st, next) => {
        end();
        next(st);
      },
    });
  };
}

/**
 * grpc-js has one receive limit per server: the call's own (private state of
 * grpc-js's call) are set here, for the message's length as framed and once
 * decompressed. A grpc-js that keeps them elsewhere leaves them as they are,
 * and test/hostile.chaos.e2e.test.ts (*what a request can make the server
 * read*) fails.
 */
function limitRequest(call: ServerInterceptingCallInterface, bytes: number): void {
  const base = call as unknown as { maxReceiveMessageSize?: unknown; decoder?: { maxReadMessageLength?: unknown } };
  if (typeof base.maxReceiveMessageSize !== 'number' || typeof base.decoder?.maxReadMessageLength !== 'number') return;
  base.maxReceiveMessageSize = bytes;
  base.decoder.maxReadMessageLength = bytes;
}
