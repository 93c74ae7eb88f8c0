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

/**
 * The disk cannot take a write right now (full, over quota, failing) and is
 * expected to again; nothing of the refused write was kept. Clients get
 * UNAVAILABLE with a `retry-after-ms` trailer; the server's own writes
 * (replies) wait and try again.
 */
export class StorageUnavailableError extends ChatFlowError {
  constructor(message: string, readonly retryAfterMs: number) {
    super('UNAVAILABLE', message, { 'retry-after-ms': String(retryAfterMs) });
    this.name = 'StorageUnavailableError';
  }
}

const DISK_FAULTS: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EIO: 'I/O error',
  EROFS: 'read-only file system',
  EFBIG: 'file too large',
};

/** Plain words for an error a disk gives when it cannot take a write; undefined for any other error. */
export function diskFault(err: unknown): string | undefined {
  return DISK_FAULTS[(err as NodeJS.ErrnoException | undefined)?.code ?? ''];
}

const FILE_FAULTS: Record<string, string> = {
  ...DISK_FAULTS,
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ENOENT: 'no such file or folder',
  ENOTDIR: 'a file is in the way',
  EEXIST: 'a file is in the way',
  EISDIR: 'a folder is in the way',
};

/** Plain words for why a file or folder could not be made, read or written; the error's own message for any other error. */
export function fileFault(err: unknown): string {
  return FILE_FAULTS[(err as NodeJS.ErrnoException | undefined)?.code ?? ''] ?? (err as Error).message;
}
