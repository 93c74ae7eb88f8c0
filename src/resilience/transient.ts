/**
 * Is this error an engine's passing trouble (it will likely work again soon:
 * connection refused or reset, a timeout, a leader or primary changing hands,
 * a 5xx or a throttle from S3) rather than a fault of the request or a bug?
 * One pure classifier over the error shapes of every engine we speak to
 * (node sockets, kafkajs, the MongoDB driver, the AWS SDK, NATS): callers
 * retry transient errors inside a deadline and report them as UNAVAILABLE
 * with `retry-after-ms`, never as INTERNAL. Causes are followed
 * (`cause`, kafkajs `originalError`, AggregateError `errors`).
 */
export function isTransient(err: unknown): boolean {
  return classify(err, 0);
}

/** Socket and DNS error codes of node (and undici) that a restarted or reachable-again peer cures. */
const NET_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN',
  'EAI_AGAIN', 'ENOTFOUND', 'ESOCKETTIMEDOUT', 'EADDRNOTAVAIL',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CLOSED',
  'ERR_HTTP2_STREAM_ERROR', 'ERR_HTTP2_GOAWAY_SESSION', 'ERR_STREAM_PREMATURE_CLOSE',
]);

const NET_CODE_IN_TEXT = new RegExp(`\\b(${[...NET_CODES].join('|')})\\b`);

/** kafkajs errors that say "not now" although kafkajs itself gave up on them (their retries ran out, a lock or coordinator wait). */
const KAFKA_NAMES = new Set(['KafkaJSNumberOfRetriesExceeded', 'KafkaJSTimeout', 'KafkaJSLockTimeout', 'KafkaJSGroupCoordinatorNotFound', 'KafkaJSNoBrokerAvailableError', 'KafkaJSRequestTimeoutError', 'KafkaJSConnectionError', 'KafkaJSConnectionClosedError', 'KafkaJSBrokerNotFound']);

/** MongoDB driver errors of the network, of server selection (no reachable primary) or of a wait bounded by our timeouts. */
const MONGO_NAMES = new Set(['MongoNetworkError', 'MongoNetworkTimeoutError', 'MongoServerSelectionError', 'MongoWaitQueueTimeoutError', 'MongoOperationTimeoutError', 'MongoServerClosedError', 'MongoStalePrimaryError']);
/** MongoDB server codes the driver itself treats as retryable (primary stepped down, shutting down, network). */
const MONGO_CODES = new Set([6, 7, 89, 91, 134, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 63, 150, 462]);
const MONGO_LABELS = ['RetryableWriteError', 'TransientTransactionError', 'ResetPool', 'SystemOverloadedError', 'RetryableError'];

/** AWS SDK (S3, MinIO) error names that mean "try again later". */
const AWS_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'RequestTimeoutException', 'ServiceUnavailable', 'SlowDown', 'InternalError', 'Throttling', 'ThrottlingException', 'TooManyRequestsException', 'RequestThrottled', 'XMinioServerNotInitialized', 'XMinioStorageFull']);

/** NATS client errors of a connection that is down or a request that timed out. */
const NATS_CODES = new Set(['CONNECTION_CLOSED', 'CONNECTION_DRAINING', 'CONNECTION_REFUSED', 'CONNECTION_TIMEOUT', 'DISCONNECT', 'TIMEOUT']);

type Shape = {
  name?: unknown;
  code?: unknown;
  retriable?: unknown;
  $fault?: unknown;
  $metadata?: { httpStatusCode?: unknown };
  $retryable?: unknown;
  hasErrorLabel?: unknown;
  errorResponse?: unknown;
  cause?: unknown;
  originalError?: unknown;
  errors?: unknown;
};

function classify(err: unknown, depth: number): boolean {
  if (depth > 5 || err === null || typeof err !== 'object') return false;
  const e = err as Shape;
  const name = typeof e.name === 'string' ? e.name : '';
  // Our own: a disk that cannot take a write now (StorageUnavailableError), or anything we already called UNAVAILABLE.
  if ((e as { kind?: unknown }).kind === 'UNAVAILABLE') return true;
  if (name === 'AbortError') return false; // we cancelled it ourselves
  if (typeof e.code === 'string' && NET_CODES.has(e.code)) return true;
  if (name.startsWith('KafkaJS')) {
    if (e.retriable === true || KAFKA_NAMES.has(name)) return true;
  }
  if (name.startsWith('Mongo')) {
    if (MONGO_NAMES.has(name)) return true;
    if (typeof e.code === 'number' && MONGO_CODES.has(e.code)) return true;
    if (typeof e.hasErrorLabel === 'function' && MONGO_LABELS.some((l) => (e.hasErrorLabel as (l: string) => boolean).call(err, l))) return true;
    // A bulk write that failed on the driver's side (a network timeout) carries that error as its errorResponse.
    if (name === 'MongoBulkWriteError' && e.errorResponse instanceof Error && classify(e.errorResponse, depth + 1)) return true;
  }
  if (e.$metadata !== undefined || e.$fault !== undefined) {
    const http = Number(e.$metadata?.httpStatusCode);
    if (e.$retryable || e.$fault === 'server' || http >= 500 || http === 429 || AWS_NAMES.has(name)) return true;
    // No HTTP answer at all: a socket error, which the SDK may wrap keeping only its message.
    if (!(http > 0) && NET_CODE_IN_TEXT.test(String((err as Error).message))) return true;
  }
  if (name === 'TimeoutError' || AWS_NAMES.has(name)) return true;
  if (name === 'NatsError' && typeof e.code === 'string' && NATS_CODES.has(e.code)) return true;
  const causes = [e.cause, e.originalError, ...(Array.isArray(e.errors) ? e.errors : [])];
  return causes.some((c) => c !== err && classify(c, depth + 1));
}
