import { closest, distance } from 'fastest-levenshtein';
import { z } from 'zod';
import { canonicalTimeZone } from '../domain/timezone';
import { parseOrigins } from '../http/cors';
import { setValue } from './set-value';

/**
 * Every setting ChatFlow reads, with its default and meaning. The README
 * configuration table is generated from this list (`npm run config:doc`), so
 * the two cannot drift apart.
 */
/** A whole number from min to max, said in words when it is not one ("12abc", "1.5" and "1e3" are not). */
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => {
  const error = max === Number.MAX_SAFE_INTEGER ? `must be a whole number, at least ${min}` : `must be a whole number from ${min} to ${max}`;
  return z.string().regex(/^-?\d+$/, { error }).transform(Number).pipe(z.number().int({ error }).min(min, { error }).max(max, { error }));
};
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const HOST_PORT = /^(\[[0-9a-fA-F:]+\]|[^:\s/]+):\d{1,5}$/;
const portInRange = (hostPort: string) => Number(hostPort.slice(hostPort.lastIndexOf(':') + 1)) <= 65535;
const addr = z
  .string()
  .regex(HOST_PORT, 'must be host:port, e.g. 127.0.0.1:50051')
  .refine(portInRange, 'the port must be a number from 0 to 65535');
const urlWith = (v: string, protocols: readonly string[]): boolean => {
  try {
    const u = new URL(v);
    return protocols.includes(u.protocol) && u.hostname !== '';
  } catch {
    return false;
  }
};
/** Unset when not given (parseEnv passes values trimmed, blank ones as unset: see setValue). */
const optionalString = z.string().optional();
/** The entries of a comma-separated value, trimmed, empty ones dropped. */
export const entries = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);
const list = z.string().default('').transform(entries);
/** A comma-separated list whose every entry passes `ok` (empty: unset). */
const listOf = (ok: (entry: string) => boolean, message: string) => optionalString.refine((v) => v === undefined || entries(v).every(ok), message);
/** The same rule as at connect (src/domain/timezone.ts): a zone nobody can connect with is a typo. */
const timeZones = list.superRefine((zones, ctx) => {
  for (const zone of zones) {
    if (canonicalTimeZone(zone) === null) ctx.addIssue({ code: 'custom', message: `"${zone}" is not an IANA time zone (e.g. Europe/Paris, UTC)` });
  }
});

/** An OpenAI-compatible server's base URL (model, speech): http(s), checked here once for all of them. */
const httpUrl = (example: string) => optionalString.refine((v) => v === undefined || urlWith(v, ['http:', 'https:']), `must be an http(s) URL, e.g. ${example}`);
const baseUrl = httpUrl('http://127.0.0.1:11434/v1');

const origin = optionalString.refine((v) => {
  if (v === undefined) return true;
  try {
    const u = new URL(v);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.pathname === '/' && !u.search && !u.hash;
  } catch {
    return false;
  }
}, 'must be an http(s) origin only, e.g. http://127.0.0.1:8081').transform((v) => (v === undefined ? undefined : new URL(v).origin));

interface Setting {
  schema: z.ZodType;
  default?: string;
  doc: string;
}

export const SETTINGS = {
  CHATFLOW_ROLE: { schema: z.enum(['all', 'gateway', 'worker', 'projector']), default: 'all', doc: '`all`, `gateway`, `worker`, `projector`; the last three need the real engines' },
  CHATFLOW_GRPC_ADDR: { schema: addr, default: '127.0.0.1:50051', doc: 'gRPC listen address (port 0 = any free port)' },
  CHATFLOW_HTTP_ADDR: { schema: addr, default: '127.0.0.1:8080', doc: '`/healthz`, `/metrics`, signed media URLs' },
  CHATFLOW_PUBLIC_HTTP_URL: { schema: optionalString, doc: 'base of the media URLs handed to clients; default `http://` (`https://` with TLS) + the HTTP address' },
  CHATFLOW_TLS_CERT_FILE: { schema: optionalString, doc: 'PEM certificate (chain) of this server: with `CHATFLOW_TLS_KEY_FILE`, the gRPC and HTTP listeners speak TLS only (the page, gRPC-Web, media URLs, `/healthz`, `/metrics` on https); unset = plain text' },
  CHATFLOW_TLS_KEY_FILE: { schema: optionalString, doc: 'PEM private key of `CHATFLOW_TLS_CERT_FILE`' },
  CHATFLOW_TLS_RELOAD_MS: { schema: int(0), default: '60000', doc: 'how often the two TLS files are checked for a renewed certificate (their inode, size and modification time): a renewal that is a certificate and its key is served to new connections from then on, without a restart (open connections keep theirs); one that is not (half written, a key of another certificate) is refused in the log and the certificate served stays. `0` = read once at start' },
  CHATFLOW_DATA_DIR: { schema: z.string().min(1), default: './data', doc: 'embedded log, media, generated secret; one process at a time (a second one is refused: `<dir>/log/LOCK`)' },
  CHATFLOW_AUTH_SECRET: { schema: optionalString, doc: 'HS256 secret (≥ 32 chars); default: generated once into `<data dir>/secret`' },
  CHATFLOW_INSECURE_CLIENT_ID: { schema: bool, default: 'false', doc: '`true` accepts `x-client-id` metadata without a token (load tests only)' },
  CHATFLOW_MAX_CLIENTS: { schema: int(1), default: '50', doc: 'connected clients, all gateways together' },
  CHATFLOW_MAX_CONNECTIONS: { schema: int(0, 10_000_000), default: '0', doc: 'TCP connections the gRPC and HTTP listeners hold at once, together: one more is closed as soon as it is accepted (`chatflow_connections_dropped_total`), so a peer opening sockets by the thousand cannot fill the process\'s open-file table (then no client could connect, no upload or log segment be opened); clients already connected are not touched. `0` = 4 × `CHATFLOW_MAX_CLIENTS` + 1,000 (1,200 at the defaults: browsers hold several connections each). Lowered at start, with a warning, to leave 1,024 of the open-file limit (`ulimit -n`, systemd `LimitNOFILE`) to the process' },
  CHATFLOW_SILENT_CONNECTION_MS: { schema: int(100, 600_000), default: '10000', doc: 'a new connection that has not begun to speak its protocol within this long is closed (`chatflow_connections_silent_total`): on the gRPC listener the HTTP/2 preface or a TLS hello, on the HTTP one a request\'s first byte (Node\'s headers timeout bounds the rest). With TLS, the handshake must be done within this long too (Node\'s default: 120 s). Before, a connection that never sent a byte was kept for ever. A call of history, health or reflection whose request has not arrived whole within this long is ended `DEADLINE_EXCEEDED` (`chatflow_calls_refused_total{reason="request_late"}`)' },
  CHATFLOW_MAX_PROCESSING: { schema: int(1), default: '500', doc: 'messages in processing, all workers together' },
  CHATFLOW_CONNECTS_PER_MINUTE: { schema: int(0), default: '120', doc: 'connection attempts one client may make per minute on one gateway, after a first burst of `CHATFLOW_CONNECT_BURST`; more get `RESOURCE_EXHAUSTED` + `retry-after-ms` (a client reconnecting in a loop otherwise opened ~250 streams a second, each kept in the read models); `0` = no limit' },
  CHATFLOW_CONNECT_BURST: { schema: int(1), default: '20', doc: 'connection attempts one client may make at once on one gateway before `CHATFLOW_CONNECTS_PER_MINUTE` holds it back' },
  CHATFLOW_FIRST_MESSAGE_TIMEOUT_MS: { schema: int(1), default: '30000', doc: 'a client must send its first message within this' },
  CHATFLOW_ALLOWED_TIMEZONES: { schema: timeZones, default: '', doc: 'comma-separated allow-list of IANA zones (each checked at start); empty = every zone' },
  CHATFLOW_LEASE_MS: { schema: int(1000), default: '10000', doc: 'connection lease; a dead gateway\'s slots return within it' },
  CHATFLOW_RETRY_AFTER_MS: { schema: int(0), default: '2000', doc: 'hint sent in the `retry-after-ms` trailer (or `retry_after_ms` of a `ChatError`) when the server is full or an engine it needs is unavailable' },
  CHATFLOW_SIM_DELAY_SCALE: { schema: z.coerce.number().min(0).max(100), default: '1', doc: 'multiplies the simulated processing times; `0` = none' },
  CHATFLOW_MAX_MEDIA_BYTES: { schema: int(1, 1024 ** 3), default: '8388608', doc: 'largest media accepted (bytes; at most 1 GiB: an upload is held whole in memory while it is checked and stored, and the transport takes twice this plus 1 MiB)' },
  CHATFLOW_SENDS_AT_ONCE: { schema: int(1, 10_000), default: '16', doc: '`Send`s (each may carry an upload, up to 2 × `CHATFLOW_MAX_MEDIA_BYTES` + 1 MiB) a gateway reads and answers at once, all clients together: one more waits unread, and after 5 s is refused `RESOURCE_EXHAUSTED` + `retry-after-ms` (the embedded gRPC-Web endpoint has as many of its own). A `Send` that says it carries no upload (`x-no-upload: true`: a text, a ping) takes one of `CHATFLOW_CALLS_AT_ONCE` instead' },
  CHATFLOW_SENDS_PER_CLIENT: { schema: int(1, 10_000), default: '2', doc: 'of those, how many one client may have read at once' },
  CHATFLOW_UPLOAD_TIMEOUT_MS: { schema: int(1000, 3_600_000), default: '300000', doc: 'a `Send` carrying an upload must have sent it whole within this once it is read (it holds one of the `Send` places meanwhile: 8 MiB in 5 min is 28 KB/s); one later is ended `DEADLINE_EXCEEDED` "the request did not arrive whole within … ms" and its place given back (`chatflow_calls_refused_total{reason="upload_late"}`), so an upload that stopped arriving on a connection still alive cannot hold it for good. Over gRPC-Web the HTTP server\'s request timeout, which Node checks every 30 s' },
  CHATFLOW_CALLS_AT_ONCE: { schema: int(1, 100_000), default: '1024', doc: 'calls of every method but `Chat`, `Connect` and `Send` (history, health, reflection; and `Send`s with `x-no-upload: true`) a gateway holds open at once, all callers together, each until its answer is taken (the embedded gRPC-Web endpoint has as many of its own): one more waits unread, and after 1 s is refused `RESOURCE_EXHAUSTED` + `retry-after-ms` (`chatflow_calls_refused_total{reason="busy"}`). Each call may hold its request (at most 64 KiB) and ~9 KB of its own: before, one connection opening 50,000 health checks that sent part of their request took the server to 2.2 GB' },
  CHATFLOW_CALLS_PER_CLIENT: { schema: int(1, 100_000), default: '32', doc: 'of those, how many one caller may hold: a token\'s client id, or, for calls without a token (health, reflection), the peer\'s address' },
  CHATFLOW_UNANSWERED_PER_CLIENT: { schema: int(1, 100_000), default: '50', doc: 'messages one client may have sent and not had answered (reply or error) at once, on one gateway (what a closed stream left unanswered counts on the client\'s next one): beyond, its Chat stream\'s next message is not read until an answer went out (HTTP/2 flow control holds the client back; nothing is refused), and a `Send` is refused with `RESOURCE_EXHAUSTED` + `retry-after-ms`, not stored. Keeps one client from taking all of `CHATFLOW_MAX_PROCESSING` and putting everyone else\'s messages behind its own in the log. 50 = the places one partition of the log has on the stack (`CHATFLOW_MAX_PROCESSING / KAFKA_PARTITIONS`), so a client\'s messages never queue in its partition ahead of others\' there: keep it at most that' },
  CHATFLOW_MAX_TEXT_CHARS: { schema: int(1), default: '16000', doc: 'longest text message accepted (Unicode characters)' },
  CHATFLOW_SILENCE_LIMIT_MS: { schema: int(0), default: '120000', doc: 'a client that pings over `Send` (the page, on `Connect`) and then sends nothing (no ping, no message) for this long is taken for dead: its stream is closed (`DEADLINE_EXCEEDED`) and its slot freed; told in `Welcome.silence_limit_ms`; `0` = off' },
  CHATFLOW_SLOW_CLIENT_TIMEOUT_MS: { schema: int(1000), default: '60000', doc: 'a client that takes none of its queued replies for this long is cut off (`RESOURCE_EXHAUSTED`); one that reads is only slowed down. A media download (`/media/…`) whose client takes nothing for this long is cut off too' },
  CHATFLOW_APPEND_TIMEOUT_MS: { schema: int(100), default: '5000', doc: 'a message not durably in the event log (with its media stored) within this gets `ChatError{UNAVAILABLE, retry_after_ms}` instead of `Accepted`; a resend with the same `client_message_id` is recognised if the late append went through' },
  CHATFLOW_HEAP_REFUSE_PERCENT: { schema: int(10, 100), default: '85', doc: 'a gateway whose heap, after a full collection, fills this share of the room it has for what lives (`--max-old-space-size` less five semi-spaces) refuses new messages and connections with `RESOURCE_EXHAUSTED`, saying why (accepted messages are still answered, resends acknowledged, history read), instead of collecting without end and then crashing; it takes them again 5 points below. The embedded read models keep every message in memory (~1–2 KB each), so steady traffic gets there; `100` = never refuse' },
  CHATFLOW_DELTA_INTERVAL_MS: { schema: int(0, 10_000), default: '100', doc: 'a reply\'s streamed words (`ResponseDelta`) go to its client at most once per this many ms: the first at once, the words that follow gathered until the interval is up (fewer messages on the bus, the stream and the client for a model that streams token by token); `0` = each turn of the worker\'s event loop' },
  CHATFLOW_ENGINE_RETRY_DEADLINE_MS: { schema: int(0), default: '60000', doc: 'how long a message in processing waits out an engine failing transiently (connection refused, timeouts, leader changes, S3 5xx) before it fails as `UNAVAILABLE` with `retry_after_ms`' },
  CHATFLOW_REPLY_CLAIMS_KEEP_MS: { schema: int(60_000), default: '900000', doc: 'workers: how long the reply claims of an answered message are kept (they make a late copy of the message answered once); after that the read models, long caught up, answer for it. Pruned every minute at most (a scan of the claims on FerretDB)' },
  CHATFLOW_READ_YOUR_WRITES_MS: { schema: int(0), default: '5000', doc: 'longest wait for the read models to reach the log\'s end before a gateway answers from them (conversation ownership, resends, the replay of a resume)' },
  CHATFLOW_MEDIA_URL_TTL_MS: { schema: int(1000), default: '3600000', doc: 'validity of media download URLs' },
  CHATFLOW_WORKER_THREAD: { schema: bool, default: 'true', doc: 'role `all` on the embedded log: the worker answers messages in a thread of its own, a second core beside the gateway and projector; `false` keeps it on the event loop' },
  CHATFLOW_MEDIA_THREADS: { schema: int(0, 64), default: '1', doc: 'worker threads that render reply voice and images off the event loop; `0` renders on it' },
  CHATFLOW_LOG_FSYNC: { schema: bool, default: 'true', doc: 'fsync the embedded event log before `Accepted` (group commit); `false` only for benchmarks' },
  CHATFLOW_SHUTDOWN_GRACE_MS: { schema: int(0), default: '5000', doc: 'on SIGINT/SIGTERM, how long the drain waits for the replies in processing before ending the streams (and then, as long again at most, for their slots to go back in one write and their disconnects to be recorded)' },
  CHATFLOW_GRPC_KEEPALIVE_MS: { schema: int(1000), default: '30000', doc: 'the server pings every gRPC connection this often (HTTP/2 PING, also with no call open), so a dead peer or a proxy\'s idle timeout is found' },
  CHATFLOW_GRPC_KEEPALIVE_TIMEOUT_MS: { schema: int(1000), default: '10000', doc: 'a ping unanswered this long closes the connection: its streams end and their slots are freed' },
  CHATFLOW_GRPC_WINDOW_BYTES: { schema: int(65_535, 2 ** 31 - 1), default: '1048576', doc: 'the HTTP/2 receive window the gateway gives each gRPC stream and each connection: what a client may send before the gateway reads it. Node\'s default, 64 KiB, made an upload above it wait for the gateway\'s window updates; a stream the gateway does not read (a `Send` waiting for its place, a client far ahead of its replies) holds at most this much, so at most 64 MiB ÷ this many `Send`s wait (64 at 1 MiB). A client\'s `Chat` stream is not read while it is far ahead of its replies: that much may wait per client, clients × this much in all (50 MiB at the default 50 clients; at 10,000 clients, 10 GiB: set 65535 there, ~640 MiB). An upload over a link with a round trip of R sends at most this much per R' },
  CHATFLOW_GRPC_MAX_IDLE_MS: { schema: int(0), default: '300000', doc: 'a gRPC connection with no call open for this long gets GOAWAY and is closed (a client opens a new one for its next call): connections a client opened and forgot (a channel per request, never closed: its library still answers the pings) do not keep places of `CHATFLOW_MAX_CONNECTIONS` for good. `0` = never' },
  CHATFLOW_GRPC_MAX_CONNECTION_AGE_MS: { schema: int(0), default: '0', doc: '`0` = no limit; else a connection older than this gets GOAWAY: new calls open a new connection, which a load balancer may send to another replica' },
  CHATFLOW_GRPC_MAX_CONNECTION_AGE_GRACE_MS: { schema: int(0), default: '300000', doc: 'after that GOAWAY, how long the streams still open on the old connection may go on before it is closed (clients reconnect with `x-resume-after`)' },
  CHATFLOW_SHUTDOWN_MARGIN_MS: { schema: int(0), default: '5000', doc: 'hard deadline of a shutdown = grace + this margin: a drain still running then is ended (exit 1, logging what was pending)' },
  LOG_LEVEL: { schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), default: 'info', doc: 'pino log level' },
  CHATFLOW_DEV_TOKENS: { schema: bool, default: 'false', doc: '`true` serves `POST /dev/token`: anyone who can reach the HTTP port gets a token for any client id (local development only)' },
  CHATFLOW_WEB_ORIGINS: {
    schema: z.string().transform((v, ctx) => {
      try {
        return parseOrigins(v);
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: (e as Error).message });
        return z.NEVER;
      }
    }),
    default: 'http://localhost:*,http://127.0.0.1:*,http://[::1]:*,https://localhost:*,https://127.0.0.1:*,https://[::1]:*',
    doc: 'pages of other origins that may call the embedded gRPC-Web endpoint (CORS), as Envoy allows them in the stack: comma-separated, `https://app.example.com`, `http://localhost:*` (any port), `*` (any), `none` (the page\'s own origin only). Default: pages served from this machine (a web app under development on its own port). Tokens travel in `authorization`, never cookies, and `POST /dev/token` stays same-origin',
  },
  CHATFLOW_WEB_API_URL: { schema: origin, doc: 'gRPC-Web origin the web page talks to, e.g. Envoy `http://127.0.0.1:8081`; default: the page\'s own origin (embedded endpoint)' },
  CHATFLOW_GATEWAY_ID: { schema: optionalString, doc: 'name of this gateway in leases and events; default `gw-` + random' },
  CHATFLOW_PROJECTION_BATCH: { schema: int(1, 10_000), default: '256', doc: 'projector: most events applied in one batch (each document gets its events in one write); `1` = one event at a time' },
  CHATFLOW_REBUILD_READ_MODELS: { schema: bool, default: 'false', doc: 'projector: drop the MongoDB read models and rebuild them from the start of the log' },
  KAFKA_BROKERS: { schema: listOf((b) => HOST_PORT.test(b) && portInRange(b), 'each broker must be host:port, e.g. 127.0.0.1:9092'), doc: 'comma-separated brokers: the event log on Kafka instead of the embedded log' },
  KAFKA_PREFIX: { schema: z.string().regex(/^[A-Za-z0-9._-]*$/, 'letters, digits, `.`, `_`, `-` only'), default: 'chatflow.', doc: 'prefix of topic and consumer-group names' },
  KAFKA_PARTITIONS: { schema: int(1, 10000), default: '10', doc: 'partitions per topic when ChatFlow creates them; each worker partition runs `MAX_PROCESSING / partitions` messages at once' },
  MONGODB_URI: { schema: optionalString.refine((v) => v === undefined || /^mongodb(\+srv)?:\/\/./.test(v), 'must be a mongodb:// or mongodb+srv:// URI, e.g. mongodb://127.0.0.1:27017/chatflow'), doc: 'read models and admission slots on MongoDB (or FerretDB); database from the path, default `chatflow`' },
  CHATFLOW_MONGO_TIMEOUT_MS: { schema: int(0), default: '10000', doc: 'bound of each stage of a MongoDB operation (finding the server, a pooled connection, the server\'s answer); past it the operation fails as a transient error (retried, or `UNAVAILABLE` + `retry-after-ms` to the client), so a stalled or frozen database cannot hang a gateway, a worker or the projector; `0` = none' },
  CHATFLOW_MONGO_POOL_SIZE: { schema: int(1, 1000), default: '16', doc: 'most MongoDB operations one process runs at once (its connection pool; the connection registry has a pool of its own); the rest wait in the process, at most `CHATFLOW_MONGO_TIMEOUT_MS`: a burst (Kafka back after an outage) queues here instead of slowing the database for every caller' },
  CHATFLOW_MONGO_UPDATE_CONCURRENCY: { schema: int(0, 1000), default: '8', doc: 'most update-shaped MongoDB statements (update, replace, findAndModify) one process has in flight, over all its clients; the rest wait in the process, at most `CHATFLOW_MONGO_TIMEOUT_MS`. FerretDB v1 holds two of its pooled connections per such statement and hangs for good once they are all taken: keep the sum over all processes below FerretDB\'s pool (SQLite: 100; PostgreSQL: `pool_max_conns`). `0` = no bound (MongoDB)' },
  CHATFLOW_MONGO_REPLACE_BATCH: { schema: int(1, 100), default: '8', doc: 'most read-model replaces the projector sends in one MongoDB command (its writes of one batch, made together); a command of n holds n of `CHATFLOW_MONGO_UPDATE_CONCURRENCY`\'s places, so it is capped by that. `1` = one replace per command' },
  NATS_URL: { schema: listOf((n) => urlWith(n.includes('://') ? n : `nats://${n}`, ['nats:', 'tls:', 'ws:', 'wss:']), 'each server must be nats://host:port (or tls://, ws://, wss://, or host:port), e.g. nats://127.0.0.1:4222'), doc: 'responses, deltas and `Send` routing over NATS instead of in-process' },
  S3_ENDPOINT: { schema: httpUrl('http://127.0.0.1:9000'), doc: 'media on S3 (presigned URLs) instead of the data dir' },
  S3_BUCKET: { schema: z.string().min(3), default: 'chatflow-media', doc: 'bucket, created if missing' },
  S3_REGION: { schema: z.string().min(1), default: 'us-east-1', doc: 'S3 region' },
  S3_ACCESS_KEY_ID: { schema: optionalString, doc: 'S3 credentials (default: the AWS SDK chain)' },
  S3_SECRET_ACCESS_KEY: { schema: optionalString, doc: 'S3 credentials (default: the AWS SDK chain)' },
  S3_FORCE_PATH_STYLE: { schema: bool, default: 'true', doc: 'path-style bucket URLs (MinIO and most self-hosted servers need it)' },
  LLM_PROVIDER: { schema: z.enum(['simulated', 'openai']), default: 'simulated', doc: '`openai` = any OpenAI-compatible chat-completions server' },
  LLM_BASE_URL: { schema: baseUrl, doc: 'e.g. `http://127.0.0.1:11434/v1` (required for `openai`)' },
  LLM_API_KEY: { schema: optionalString, doc: 'bearer key for the provider, if it needs one' },
  LLM_MODEL: { schema: z.string().min(1), default: 'gpt-4o-mini', doc: 'model name sent to the provider' },
  LLM_TIMEOUT_MS: { schema: int(100), default: '60000', doc: 'a provider call that takes longer fails with `DEADLINE_EXCEEDED`' },
  LLM_VISION: { schema: bool, default: 'false', doc: '`true` sends a video\'s keyframe to the model as an `image_url` part (the model must accept images)' },
  CHATFLOW_STT_MAX_SECONDS: { schema: int(1, 3600), default: '120', doc: 'the most seconds of a voice message the offline recognizer hears, and of a video\'s sound any recognizer gets (the first ones; the reply says when the rest was not heard): PocketSphinx takes up to ~0.7 s per second of sound here and hears one recording at a time' },
  CHATFLOW_STT: { schema: z.enum(['auto', 'local', 'openai', 'none']), default: 'auto', doc: 'speech recognizer: `local` = PocketSphinx installed by `npm run speech:install`, `openai` = `CHATFLOW_STT_URL`, `none`; `auto` = `openai` if the URL is set, else `local` if installed, else `none`' },
  CHATFLOW_STT_URL: { schema: baseUrl, doc: 'OpenAI-compatible base URL for `POST …/audio/transcriptions`, e.g. `https://api.openai.com/v1`' },
  CHATFLOW_STT_MODEL: { schema: z.string().min(1), default: 'whisper-1', doc: 'transcription model name sent to `CHATFLOW_STT_URL`' },
  CHATFLOW_STT_API_KEY: { schema: optionalString, doc: 'bearer key for `CHATFLOW_STT_URL`, if it needs one' },
  CHATFLOW_TTS: { schema: z.enum(['auto', 'local', 'openai', 'none']), default: 'auto', doc: 'speech synthesizer: `local` = Piper installed by `npm run speech:install`, `openai` = `CHATFLOW_TTS_URL`, `none` (no voice replies); `auto` as for `CHATFLOW_STT`' },
  CHATFLOW_TTS_URL: { schema: baseUrl, doc: 'OpenAI-compatible base URL for `POST …/audio/speech`' },
  CHATFLOW_TTS_MODEL: { schema: z.string().min(1), default: 'tts-1', doc: 'speech model name sent to `CHATFLOW_TTS_URL`' },
  CHATFLOW_TTS_VOICE: { schema: z.string().min(1), default: 'alloy', doc: 'voice name sent to `CHATFLOW_TTS_URL`' },
  CHATFLOW_TTS_API_KEY: { schema: optionalString, doc: 'bearer key for `CHATFLOW_TTS_URL`, if it needs one' },
  CHATFLOW_SPEECH_TIMEOUT_MS: { schema: int(100), default: '120000', doc: 'a transcription or synthesis call that takes longer fails (retried like a model error)' },
  CHATFLOW_SPEECH_DIR: { schema: optionalString, doc: 'where `npm run speech:install` put the offline engines; default `.speech/` in the project' },
  CHATFLOW_FFMPEG: { schema: optionalString, doc: 'ffmpeg program for video (audio track, keyframe); default `ffmpeg` on the `PATH`; `none`: videos are answered without their sound or picture, even where ffmpeg is installed' },
  CHATFLOW_FFMPEG_CONCURRENCY: { schema: int(1, 64), default: '2', doc: 'most videos one process splits with ffmpeg at once (each ffmpeg costs ~80 ms of CPU and tens of MB just to start); the others wait their turn within their message\'s deadline' },
} satisfies Record<string, Setting>;

type Settings = typeof SETTINGS;
export type RawConfig = { [K in keyof Settings]: z.output<Settings[K]['schema']> };

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/** Parses the environment; throws ConfigError with one line per bad value. */
export function parseEnv(env: Record<string, string | undefined>): RawConfig {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [name, setting] of Object.entries(SETTINGS) as [string, Setting][]) {
    const raw = setValue(env, name) ?? setting.default;
    if (raw !== undefined && CONTROL_CHARACTER.test(raw)) {
      problems.push(`${name}=${JSON.stringify(env[name])}: contains a control character (a line break, a tab, …); no setting takes one`);
      continue;
    }
    const parsed = setting.schema.safeParse(raw);
    if (parsed.success) out[name] = parsed.data;
    else problems.push(`${name}=${JSON.stringify(env[name])}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  }
  if (out.LLM_PROVIDER === 'openai' && !out.LLM_BASE_URL) problems.push('LLM_BASE_URL: required when LLM_PROVIDER=openai');
  if (out.CHATFLOW_STT === 'openai' && !out.CHATFLOW_STT_URL) problems.push('CHATFLOW_STT_URL: required when CHATFLOW_STT=openai');
  if (out.CHATFLOW_TTS === 'openai' && !out.CHATFLOW_TTS_URL) problems.push('CHATFLOW_TTS_URL: required when CHATFLOW_TTS=openai');
  if (!out.CHATFLOW_TLS_CERT_FILE !== !out.CHATFLOW_TLS_KEY_FILE) problems.push('CHATFLOW_TLS_CERT_FILE, CHATFLOW_TLS_KEY_FILE: set both (TLS) or neither (plain text)');
  const secret = out.CHATFLOW_AUTH_SECRET as string | undefined;
  if (secret !== undefined && secret.length < 32) problems.push('CHATFLOW_AUTH_SECRET: must be at least 32 characters');
  const role = out.CHATFLOW_ROLE as string;
  if (role !== 'all' && role !== undefined) {
    // Separate processes share nothing but the engines: embedded ones would split the state.
    const needs = role === 'projector' ? ['KAFKA_BROKERS', 'MONGODB_URI'] : ['KAFKA_BROKERS', 'MONGODB_URI', 'NATS_URL', 'S3_ENDPOINT'];
    const missing = needs.filter((n) => !out[n]);
    if (missing.length > 0) problems.push(`CHATFLOW_ROLE=${role}: needs ${missing.join(', ')} (only role \`all\` runs on the embedded engines)`);
  }
  const partitions = out.KAFKA_PARTITIONS as number | undefined;
  if (out.KAFKA_BROKERS && partitions && (out.CHATFLOW_MAX_PROCESSING as number) < partitions) {
    problems.push(`KAFKA_PARTITIONS=${partitions}: must not exceed CHATFLOW_MAX_PROCESSING (each partition runs at least one message)`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out as RawConfig;
}

/**
 * CHATFLOW_ variables read by the project's scripts and tests, not by the
 * server: setting them beside the server's is no mistake.
 */
export const SCRIPT_VARIABLES: readonly string[] = [
  'CHATFLOW_STACK_DIR', // deploy/stack.sh: where the real stack's engines keep their files
  'CHATFLOW_ENVOY_CONFIG', // deploy/lib/envoy.sh
  'CHATFLOW_ENVOY_URL', // deploy/stack.sh
  'CHATFLOW_FERRETDB_BACKEND', // deploy/stack.sh: sqlite or postgresql
  'CHATFLOW_FERRETDB_PG_POOL', // deploy/lib/postgres.sh
  'CHATFLOW_PG_BIN', // deploy/lib/postgres.sh
  'CHATFLOW_PG_PORT', // deploy/lib/postgres.sh
  'CHATFLOW_HEAPPROF_DIR', // loadtest/memory/heap-sampling.cjs
  'CHATFLOW_HEAPPROF_INTERVAL',
  'CHATFLOW_HEAPPROF_PLAN',
  'CHATFLOW_HEAPPROF_THREADS',
  'CHATFLOW_TEST_RUN', // test/engines.ts
];

/**
 * A line for each CHATFLOW_ variable in `env` that is neither a setting nor
 * one of the scripts' (a misspelt setting would otherwise be ignored without
 * a word), naming the setting it is closest to when one is close.
 */
export function unknownSettings(env: Record<string, string | undefined>): string[] {
  const settings = Object.keys(SETTINGS);
  const known = new Set([...settings, ...SCRIPT_VARIABLES]);
  return Object.keys(env)
    .filter((name) => name.startsWith('CHATFLOW_') && !known.has(name))
    .map((name) => {
      const near = closest(name, settings);
      const guess = distance(name, near) <= Math.max(2, Math.floor(name.length / 6)) ? ` (did you mean ${near}?)` : '';
      return `${name} is not a ChatFlow setting and is ignored${guess}`;
    });
}

/** The README table, from the same list. */
export function configTable(): string {
  const rows = Object.entries(SETTINGS as Record<string, Setting>).map(
    ([name, s]) => `| \`${name}\` | ${s.default === undefined ? 'unset' : s.default === '' ? 'empty' : `\`${s.default}\``} | ${s.doc} |`,
  );
  return ['| variable | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}
