import { parseEnv, type RawConfig } from './schema';

/** Typed, validated configuration used by every part of the process. */
export interface Config {
  role: RawConfig['CHATFLOW_ROLE'];
  grpcAddr: string;
  httpAddr: string;
  publicHttpUrl?: string;
  dataDir: string;
  authSecret?: string;
  insecureClientId: boolean;
  maxClients: number;
  maxProcessing: number;
  firstMessageTimeoutMs: number;
  allowedTimeZones: string[];
  leaseMs: number;
  retryAfterMs: number;
  simDelayScale: number;
  maxMediaBytes: number;
  maxTextChars: number;
  mediaUrlTtlMs: number;
  logFsync: boolean;
  shutdownGraceMs: number;
  logLevel: RawConfig['LOG_LEVEL'];
  engines: { kafkaBrokers?: string; mongodbUri?: string; natsUrl?: string; s3Endpoint?: string };
  llm: {
    provider: RawConfig['LLM_PROVIDER'];
    baseUrl?: string;
    apiKey?: string;
    model: string;
    timeoutMs: number;
  };
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const c = parseEnv(env);
  return {
    role: c.CHATFLOW_ROLE,
    grpcAddr: c.CHATFLOW_GRPC_ADDR,
    httpAddr: c.CHATFLOW_HTTP_ADDR,
    publicHttpUrl: c.CHATFLOW_PUBLIC_HTTP_URL,
    dataDir: c.CHATFLOW_DATA_DIR,
    authSecret: c.CHATFLOW_AUTH_SECRET,
    insecureClientId: c.CHATFLOW_INSECURE_CLIENT_ID,
    maxClients: c.CHATFLOW_MAX_CLIENTS,
    maxProcessing: c.CHATFLOW_MAX_PROCESSING,
    firstMessageTimeoutMs: c.CHATFLOW_FIRST_MESSAGE_TIMEOUT_MS,
    allowedTimeZones: c.CHATFLOW_ALLOWED_TIMEZONES,
    leaseMs: c.CHATFLOW_LEASE_MS,
    retryAfterMs: c.CHATFLOW_RETRY_AFTER_MS,
    simDelayScale: c.CHATFLOW_SIM_DELAY_SCALE,
    maxMediaBytes: c.CHATFLOW_MAX_MEDIA_BYTES,
    maxTextChars: c.CHATFLOW_MAX_TEXT_CHARS,
    mediaUrlTtlMs: c.CHATFLOW_MEDIA_URL_TTL_MS,
    logFsync: c.CHATFLOW_LOG_FSYNC,
    shutdownGraceMs: c.CHATFLOW_SHUTDOWN_GRACE_MS,
    logLevel: c.LOG_LEVEL,
    engines: { kafkaBrokers: c.KAFKA_BROKERS, mongodbUri: c.MONGODB_URI, natsUrl: c.NATS_URL, s3Endpoint: c.S3_ENDPOINT },
    llm: { provider: c.LLM_PROVIDER, baseUrl: c.LLM_BASE_URL, apiKey: c.LLM_API_KEY, model: c.LLM_MODEL, timeoutMs: c.LLM_TIMEOUT_MS },
  };
}
