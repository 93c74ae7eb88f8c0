import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { ChatError } from '../gen/chatflow/v1/chat';
import { ChatFlowError, type ErrorKind } from '../domain/errors';
import { echoId } from '../domain/ids';

const CODES: Record<ErrorKind | 'INTERNAL', status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  UNAVAILABLE: status.UNAVAILABLE,
  INTERNAL: status.INTERNAL,
};

/** What a client is told about an error: a domain error as it is, anything else as INTERNAL with no detail. */
interface Told {
  kind: ErrorKind | 'INTERNAL';
  message: string;
  trailers: Record<string, string>;
}

const INTERNAL: Told = { kind: 'INTERNAL', message: 'internal error; it has been logged', trailers: {} };

/**
 * The one place where errors become what a client sees: a gRPC status
 * (unary replies, stream ends, forwarded Sends) or a ChatError frame. Domain
 * errors keep their message and trailers; anything else is logged once, with
 * context, and becomes `unexpected` (INTERNAL by default) with no detail
 * leaked to the client.
 */
function told(err: unknown, logger: Pick<Logger, 'error'>, unexpected?: ChatFlowError): Told {
  if (err instanceof ChatFlowError) return err;
  logger.error({ err }, 'unexpected error');
  return unexpected ?? INTERNAL;
}

/** The status a call ends with (unary callback, stream end). */
export function toStatus(err: unknown, logger: Pick<Logger, 'error'>, unexpected?: ChatFlowError): StatusObject {
  return statusOf(told(err, logger, unexpected));
}

/** toStatus of an error known to be a domain error (nothing to log). */
export function domainStatus(err: ChatFlowError): StatusObject {
  return statusOf(err);
}

function statusOf(t: Told): StatusObject {
  const metadata = new Metadata();
  for (const [k, v] of Object.entries(t.trailers)) metadata.set(k, v);
  return { code: CODES[t.kind], details: t.message, metadata };
}

/** The same error as a ChatError frame about one message (the stream stays open). */
export function toChatError(inReplyTo: string, err: unknown, logger: Pick<Logger, 'error'>, unexpected?: ChatFlowError): ChatError {
  const t = told(err, logger, unexpected);
  return { inReplyTo: echoId(inReplyTo), code: t.kind, message: t.message, seq: 0, retryAfterMs: Number(t.trailers['retry-after-ms'] ?? 0) };
}

/** An error carried from the gateway that answered a forwarded Send back to the one that forwarded it. */
export interface CarriedError {
  code: ErrorKind;
  message: string;
  trailers?: Record<string, string>;
}

/** `unexpected` is what the client is told of an error that is not a domain error (it is logged here). */
export function carryError(err: unknown, logger: Pick<Logger, 'error'>, unexpected: ChatFlowError): CarriedError {
  const e = err instanceof ChatFlowError ? err : (logger.error({ err }, 'unexpected error'), unexpected);
  return { code: e.kind, message: e.message, trailers: e.trailers };
}

/** The error as the answering gateway told it: trailers (e.g. retry-after-ms) included. */
export function uncarryError(c: CarriedError): ChatFlowError {
  return c.code in CODES && c.code !== ('INTERNAL' as string) ? new ChatFlowError(c.code, c.message, c.trailers ?? {}) : new ChatFlowError('UNAVAILABLE', c.message);
}
