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
 * And a third, once the caller is known: a request that may carry an upload
 * (`Send`) is read only once it holds one of the process's UploadPlaces, and
 * holds it until it is answered. A token holder's 200 Sends of 16 MiB at once
 * were otherwise all read together.
 */
import { ServerInterceptingCall, type Metadata, type ServerInterceptingCallInterface, type ServerInterceptor, type StatusObject } from '@grpc/grpc-js';
import type { UploadPlaces } from './upload-places';

/** The largest request of a method that carries no media: ids, page tokens, names (a few hundred bytes in practice). */
export const SMALL_REQUEST_BYTES = 64 * 1024;

export interface RequestGuardOptions {
  /** Whether callers of this path must be identified before anything of their request is read. */
  authenticated: (path: string) => boolean;
  /** Whether this path's requests may be as large as the server's largest message (they carry uploads). */
  carriesMedia: (path: string) => boolean;
  /** Resolves with the caller the metadata identifies; rejects with why not. */
  identify: (md: Metadata) => Promise<string>;
  /** The status a refused caller gets (and whatever is counted of it). */
  refused: (path: string, err: unknown) => StatusObject;
  /** The places this path's requests are read and handled in (see UploadPlaces), or undefined: no bound. */
  placesFor?: (path: string) => UploadPlaces | undefined;
}

export function requestGuard(opts: RequestGuardOptions): ServerInterceptor {
  return (method, call) => {
    if (!opts.carriesMedia(method.path)) limitRequest(call, SMALL_REQUEST_BYTES);
    if (!opts.authenticated(method.path)) return new ServerInterceptingCall(call);
    const places = opts.placesFor?.(method.path);
    // Aborted once the call is answered or cancelled: the place it holds or waits for is given back (UploadPlaces.take).
    const ended = places && new AbortController();
    const end = () => ended?.abort();
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          // Passed on (and the handler started, which asks for the message) only once the caller is known, and holds
          // a place if its path has them.
          onReceiveMetadata: (md, pass) =>
            void opts
              .identify(md)
              .then((caller) => places?.take(caller, ended!.signal))
              .then(
                () => {
                  if (!ended?.signal.aborted) pass(md);
                },
                (err: unknown) => call.sendStatus(opts.refused(method.path, err)),
              ),
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
