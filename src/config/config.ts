import type { OriginRule } from '../http/cors';
import { entries, parseEnv, type RawConfig } from './schema';
import type { SpeechConfig } from '../speech/factory';

/** Typed, validated configuration used by every part of the process. */
export interface Config {
  role: RawConfig['CHATFLOW_ROLE'];
  grpcAddr: string;
  httpAddr: string;
  publicHttpUrl?: string;
  /** PEM files of this server's certificate and key: both listeners speak TLS. */
  tls?: { certFile: string; keyFile: string; reloadMs: number };
  dataDir: string;
  authSecret?: string;
  insecureClientId: boolean;
  maxClients: number;
  /** TCP connections each listener holds (0 = from maxClients), and how long a new one may stay silent (src/connection-guard.ts). */
  connections: { max: number; silentMs: number };
  maxProcessing: number;
  /** Connection attempts per client per minute on one gateway (0 = no limit), after a burst of connectBurst. */
  connectsPerMinute: number;
  connectBurst: number;
  firstMessageTimeoutMs: number;
  allowedTimeZones: string[];
  leaseMs: number;
  retryAfterMs: number;
  simDelayScale: number;
  /** Role `all` on the embedded log: the worker in its own thread (src/threads). */
  workerThread: boolean;
  mediaThreads: number;
  maxMediaBytes: number;
  /** Sends read and answered at once, in all and per client (see RequestPlaces). */
  sends: { atOnce: number; perClient: number; uploadTimeoutMs: number };
  /** Calls of history, health and reflection open at once, in all and per caller (see RequestPlaces). */
  calls: { atOnce: number; perClient: number };
  /** Messages one client may have unanswered at once (see src/domain/input-flow.ts). */
  unansweredPerClient: number;
  maxTextChars: number;
  slowClientTimeoutMs: number;
  silenceLimitMs: number;
  readYourWritesMs: number;
  appendTimeoutMs: number;
  /** Share of the heap's room for what lives, after a full collection, at which new messages and connections are refused (100 = never). */
  heapRefusePercent: number;
  engineRetryDeadlineMs: number;
  deltaIntervalMs: number;
  replyClaimsKeepMs: number;
  mediaUrlTtlMs: number;
  logFsync: boolean;
  shutdownGraceMs: number;
  shutdownMarginMs: number;
  grpc: { keepaliveMs: number; keepaliveTimeoutMs: number; maxIdleMs: number; maxConnectionAgeMs: number; maxConnectionAgeGraceMs: number; windowBytes: number };
  logLevel: RawConfig['LOG_LEVEL'];
  /** The web page: development tokens, and the gRPC-Web origin it talks to (undefined = its own); the pages of other origins that may call the embedded gRPC-Web endpoint. */
  web: { devTokens: boolean; apiUrl?: string; origins: OriginRule[]; maxTextChars: number };
  gatewayId?: string;
  rebuildReadModels: boolean;
  projectionBatch: number;
  kafka?: { brokers: string[]; prefix: string; partitions: number };
  mongodbUri?: string;
  /** Bound of each stage of a MongoDB operation (ms, 0 = none). */
  mongoTimeoutMs: number;
  /** Most MongoDB operations of one client at once. */
  mongoPoolSize: number;
  mongoUpdateConcurrency: number;
  mongoReplaceBatch: number;
  natsUrl?: string;
  s3?: { endpoint: string; bucket: string; region: string; accessKeyId?: string; secretAccessKey?: string; forcePathStyle: boolean };
  llm: {
    provider: RawConfig['LLM_PROVIDER'];
    baseUrl?: string;
    apiKey?: string;
    model: string;
    timeoutMs: number;
    /** Send a video's keyframe to the model (it accepts images). */
    vision: boolean;
  };
  speech: SpeechConfig;
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const c = parseEnv(env);
  return {
    role: c.CHATFLOW_ROLE,
    grpcAddr: c.CHATFLOW_GRPC_ADDR,
    httpAddr: c.CHATFLOW_HTTP_ADDR,
    publicHttpUrl: c.CHATFLOW_PUBLIC_HTTP_URL,
    tls: c.CHATFLOW_TLS_CERT_FILE && c.CHATFLOW_TLS_KEY_FILE ? { certFile: c.CHATFLOW_TLS_CERT_FILE, keyFile: c.CHATFLOW_TLS_KEY_FILE, reloadMs: c.CHATFLOW_TLS_RELOAD_MS } : undefined,
    dataDir: c.CHATFLOW_DATA_DIR,
    authSecret: c.CHATFLOW_AUTH_SECRET,
    insecureClientId: c.CHATFLOW_INSECURE_CLIENT_ID,
    maxClients: c.CHATFLOW_MAX_CLIENTS,
    connections: { max: c.CHATFLOW_MAX_CONNECTIONS, silentMs: c.CHATFLOW_SILENT_CONNECTION_MS },
    maxProcessing: c.CHATFLOW_MAX_PROCESSING,
    connectsPerMinute: c.CHATFLOW_CONNECTS_PER_MINUTE,
    connectBurst: c.CHATFLOW_CONNECT_BURST,
    firstMessageTimeoutMs: c.CHATFLOW_FIRST_MESSAGE_TIMEOUT_MS,
    allowedTimeZones: c.CHATFLOW_ALLOWED_TIMEZONES,
    leaseMs: c.CHATFLOW_LEASE_MS,
    retryAfterMs: c.CHATFLOW_RETRY_AFTER_MS,
    simDelayScale: c.CHATFLOW_SIM_DELAY_SCALE,
    workerThread: c.CHATFLOW_WORKER_THREAD,
    mediaThreads: c.CHATFLOW_MEDIA_THREADS,
    maxMediaBytes: c.CHATFLOW_MAX_MEDIA_BYTES,
    maxTextChars: c.CHATFLOW_MAX_TEXT_CHARS,
    sends: { atOnce: c.CHATFLOW_SENDS_AT_ONCE, perClient: c.CHATFLOW_SENDS_PER_CLIENT, uploadTimeoutMs: c.CHATFLOW_UPLOAD_TIMEOUT_MS },
    calls: { atOnce: c.CHATFLOW_CALLS_AT_ONCE, perClient: c.CHATFLOW_CALLS_PER_CLIENT },
    unansweredPerClient: c.CHATFLOW_UNANSWERED_PER_CLIENT,
    slowClientTimeoutMs: c.CHATFLOW_SLOW_CLIENT_TIMEOUT_MS,
    silenceLimitMs: c.CHATFLOW_SILENCE_LIMIT_MS,
    readYourWritesMs: c.CHATFLOW_READ_YOUR_WRITES_MS,
    appendTimeoutMs: c.CHATFLOW_APPEND_TIMEOUT_MS,
    heapRefusePercent: c.CHATFLOW_HEAP_REFUSE_PERCENT,
    engineRetryDeadlineMs: c.CHATFLOW_ENGINE_RETRY_DEADLINE_MS,
    deltaIntervalMs: c.CHATFLOW_DELTA_INTERVAL_MS,
    replyClaimsKeepMs: c.CHATFLOW_REPLY_CLAIMS_KEEP_MS,
    mediaUrlTtlMs: c.CHATFLOW_MEDIA_URL_TTL_MS,
    logFsync: c.CHATFLOW_LOG_FSYNC,
    shutdownGraceMs: c.CHATFLOW_SHUTDOWN_GRACE_MS,
    shutdownMarginMs: c.CHATFLOW_SHUTDOWN_MARGIN_MS,
    grpc: {
      keepaliveMs: c.CHATFLOW_GRPC_KEEPALIVE_MS,
      keepaliveTimeoutMs: c.CHATFLOW_GRPC_KEEPALIVE_TIMEOUT_MS,
      maxIdleMs: c.CHATFLOW_GRPC_MAX_IDLE_MS,
      maxConnectionAgeMs: c.CHATFLOW_GRPC_MAX_CONNECTION_AGE_MS,
      maxConnectionAgeGraceMs: c.CHATFLOW_GRPC_MAX_CONNECTION_AGE_GRACE_MS,
      windowBytes: c.CHATFLOW_GRPC_WINDOW_BYTES,
    },
    logLevel: c.LOG_LEVEL,
    web: { devTokens: c.CHATFLOW_DEV_TOKENS, apiUrl: c.CHATFLOW_WEB_API_URL, origins: c.CHATFLOW_WEB_ORIGINS, maxTextChars: c.CHATFLOW_MAX_TEXT_CHARS },
    gatewayId: c.CHATFLOW_GATEWAY_ID,
    rebuildReadModels: c.CHATFLOW_REBUILD_READ_MODELS,
    projectionBatch: c.CHATFLOW_PROJECTION_BATCH,
    kafka: c.KAFKA_BROKERS ? { brokers: entries(c.KAFKA_BROKERS), prefix: c.KAFKA_PREFIX, partitions: c.KAFKA_PARTITIONS } : undefined,
    mongodbUri: c.MONGODB_URI,
    mongoTimeoutMs: c.CHATFLOW_MONGO_TIMEOUT_MS,
    mongoPoolSize: c.CHATFLOW_MONGO_POOL_SIZE,
    mongoUpdateConcurrency: c.CHATFLOW_MONGO_UPDATE_CONCURRENCY,
    mongoReplaceBatch: c.CHATFLOW_MONGO_REPLACE_BATCH,
    natsUrl: c.NATS_URL,
    s3: c.S3_ENDPOINT
      ? { endpoint: c.S3_ENDPOINT, bucket: c.S3_BUCKET, region: c.S3_REGION, accessKeyId: c.S3_ACCESS_KEY_ID, secretAccessKey: c.S3_SECRET_ACCESS_KEY, forcePathStyle: c.S3_FORCE_PATH_STYLE }
      : undefined,
    llm: { provider: c.LLM_PROVIDER, baseUrl: c.LLM_BASE_URL, apiKey: c.LLM_API_KEY, model: c.LLM_MODEL, timeoutMs: c.LLM_TIMEOUT_MS, vision: c.LLM_VISION },
    speech: {
      stt: { mode: c.CHATFLOW_STT, url: c.CHATFLOW_STT_URL, model: c.CHATFLOW_STT_MODEL, apiKey: c.CHATFLOW_STT_API_KEY },
      tts: { mode: c.CHATFLOW_TTS, url: c.CHATFLOW_TTS_URL, model: c.CHATFLOW_TTS_MODEL, voice: c.CHATFLOW_TTS_VOICE, apiKey: c.CHATFLOW_TTS_API_KEY },
      timeoutMs: c.CHATFLOW_SPEECH_TIMEOUT_MS,
      maxHeardSeconds: c.CHATFLOW_STT_MAX_SECONDS,
      dir: c.CHATFLOW_SPEECH_DIR,
      ffmpeg: c.CHATFLOW_FFMPEG,
      ffmpegConcurrency: c.CHATFLOW_FFMPEG_CONCURRENCY,
    },
  };
}
