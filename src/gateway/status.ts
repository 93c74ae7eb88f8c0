import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ChatFlowError, type ErrorKind } from '../domain/errors';

const CODES: Record<ErrorKind, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  UNAVAILABLE: status.UNAVAILABLE,
};

/**
 * The one place where errors become gRPC statuses. Domain errors keep their
 * message; anything else is logged once with context and becomes INTERNAL
 * with no detail leaked to the client.
 */
export function toServiceError(err: unknown, logger: Logger): Partial<ServiceError> {
  if (err instanceof ChatFlowError) {
    const metadata = new Metadata();
    for (const [k, v] of Object.entries(err.trailers)) metadata.set(k, v);
    return { code: CODES[err.kind], details: err.message, metadata };
  }
  logger.error({ err }, 'unexpected error');
  return { code: status.INTERNAL, details: 'internal error; it has been logged' };
}
