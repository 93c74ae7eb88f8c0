/**
 * Domain errors carry a kind; one place (src/gateway/status.ts) turns kinds
 * into gRPC statuses. Anything that is not a ChatFlowError is INTERNAL.
 */
export type ErrorKind =
  | 'INVALID_ARGUMENT'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'RESOURCE_EXHAUSTED'
  | 'DEADLINE_EXCEEDED'
  | 'FAILED_PRECONDITION'
  | 'UNAVAILABLE';

export class ChatFlowError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    /** Trailing metadata to send with the status (e.g. retry-after-ms). */
    readonly trailers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ChatFlowError';
  }
}
