import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { HotHistogram } from './hot-histogram';

type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/**
 * Prometheus metrics of one ChatFlow process (one registry per app instance).
 * A worker thread (src/threads) has a registry of its own without the
 * process-wide default metrics (`defaults: false`); the process's /metrics
 * adds its values in (`include`).
 */
export function createMetrics(opts: { defaults?: boolean } = {}) {
  const registry = new Registry();
  const included: (() => Promise<MetricsJson>)[] = [];
  // Node's default metrics already start with process_ or nodejs_: one prefix, e.g. chatflow_process_cpu_seconds_total.
  const latencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 30];
  // Engine round trips: fine steps where the overhead targets (5–60 ms) live.
  const stageBuckets = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5];
  // GC pauses on the same fine steps (prom-client's default, 1 / 10 / 100 ms, cannot tell a 12 ms pause from a 90 ms one).
  if (opts.defaults !== false) collectDefaultMetrics({ register: registry, prefix: 'chatflow_', gcDurationBuckets: stageBuckets });
  return {
    registry,
    /** Counts of another registry of this process (a thread's), summed into `exposition` per name and labels. */
    include(source: () => Promise<MetricsJson>): void {
      included.push(source);
    },
    /** What /metrics serves. */
    exposition: {
      contentType: registry.contentType,
      async metrics(): Promise<string> {
        if (!included.length) return registry.metrics();
        // A thread that is stopping or gone gives nothing: the process's own figures still come.
        const all = await Promise.all([registry.getMetricsAsJSON(), ...included.map((f) => f().catch((): MetricsJson => []))]);
        return AggregatorRegistry.aggregate(all).metrics();
      },
    },
    heapRefusing: new Gauge({ name: 'chatflow_heap_refusing', help: '1 while this gateway refuses new messages and connections because its heap is nearly full after a full collection (CHATFLOW_HEAP_REFUSE_PERCENT)', registers: [registry] }),
    tlsCertificateExpiry: new Gauge({ name: 'chatflow_tls_certificate_expiry_timestamp_seconds', help: 'When the TLS certificate served to new connections expires (its notAfter, Unix seconds); with TLS only. Alert on it minus time()', registers: [registry] }),
    tlsRenewals: new Counter({ name: 'chatflow_tls_renewals_total', help: 'Changes of the TLS files seen: renewed (served to new connections from then on), refused (not a certificate and its key: the one served stays), listener_failed (renewed, but one listener could not take it and serves the one before)', labelNames: ['outcome'] as const, registers: [registry] }),
    connectionsOpen: new Gauge({ name: 'chatflow_connections_open', help: 'TCP connections open on a listener (grpc, http); at CHATFLOW_MAX_CONNECTIONS new ones are dropped', labelNames: ['listener'] as const, registers: [registry] }),
    connectionsDropped: new Counter({ name: 'chatflow_connections_dropped_total', help: 'TCP connections closed as soon as accepted because the listener held CHATFLOW_MAX_CONNECTIONS', labelNames: ['listener'] as const, registers: [registry] }),
    connectionsFlooded: new Counter({ name: 'chatflow_connections_flooded_total', help: 'HTTP/1.1 connections closed for sending more than 16 requests ahead of their answers (pipelining; browsers send none ahead)', labelNames: ['listener'] as const, registers: [registry] }),
    connectionsSilent: new Counter({ name: 'chatflow_connections_silent_total', help: 'TCP connections closed for not beginning to speak their protocol within CHATFLOW_SILENT_CONNECTION_MS', labelNames: ['listener'] as const, registers: [registry] }),
    clientsConnected: new Gauge({ name: 'chatflow_clients_connected', help: 'Clients holding a stream on this gateway', registers: [registry] }),
    admissionsRefused: new Counter({
      name: 'chatflow_admissions_refused_total',
      help: 'Connections refused, by reason (full, duplicate, holder-late, unauthenticated, invalid_timezone, timezone_not_allowed, not_found, permission_denied, read_model_behind, unavailable, memory_full, rate_limited, registry_late, invalid_request)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    sendsBusy: new Counter({
      name: 'chatflow_sends_busy_total',
      help: 'Sends refused RESOURCE_EXHAUSTED because too many were being received at once (CHATFLOW_SENDS_AT_ONCE, CHATFLOW_SENDS_PER_CLIENT), by transport (grpc, grpc-web)',
      labelNames: ['transport'] as const,
      registers: [registry],
    }),
    callsRefused: new Counter({
      name: 'chatflow_calls_refused_total',
      help: 'Calls of history, health and reflection (and Sends that say x-no-upload; over gRPC or the embedded gRPC-Web endpoint) refused or ended, by reason: busy (RESOURCE_EXHAUSTED: CHATFLOW_CALLS_AT_ONCE or CHATFLOW_CALLS_PER_CLIENT held), request_late (DEADLINE_EXCEEDED: the request not whole within CHATFLOW_SILENT_CONNECTION_MS), upload_late (DEADLINE_EXCEEDED: the upload of a Send, over gRPC, not whole within CHATFLOW_UPLOAD_TIMEOUT_MS)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    admissionsAccepted: new Counter({ name: 'chatflow_admissions_accepted_total', help: 'Connections admitted', registers: [registry] }),
    disconnects: new Counter({ name: 'chatflow_disconnects_total', help: 'Connections ended, by reason', labelNames: ['reason'] as const, registers: [registry] }),
    messagesAccepted: new Counter({ name: 'chatflow_messages_accepted_total', help: 'Messages durably appended', labelNames: ['kind'] as const, registers: [registry] }),
    messagesRejected: new Counter({ name: 'chatflow_messages_rejected_total', help: 'Messages refused with a ChatError', labelNames: ['code'] as const, registers: [registry] }),
    inputHeld: new Counter({ name: 'chatflow_input_held_total', help: 'Times a Chat stream\'s input stopped being read because its client was behind: outbound (it does not read its replies), appends, uploads (waiting to be stored), unanswered (CHATFLOW_UNANSWERED_PER_CLIENT reached)', labelNames: ['reason'] as const, registers: [registry] }),
    messagesProcessing: new Gauge({ name: 'chatflow_messages_processing', help: 'Messages being processed by this worker', registers: [registry] }),
    messagesProcessingPeak: new Gauge({ name: 'chatflow_messages_processing_peak', help: 'Highest number of messages in processing at once, since start', registers: [registry] }),
    projectionLag: new Gauge({ name: 'chatflow_projection_lag_events', help: 'Events in the log not yet applied to the read models by this projector', registers: [registry] }),
    messagesWaiting: new Gauge({ name: 'chatflow_messages_waiting', help: 'Messages in the log not yet taken by a worker (backpressure)', registers: [registry] }),
    earlyStarts: new Counter({
      name: 'chatflow_early_starts_total',
      help: 'Messages whose processing began while the log was still storing them (the worker in the gateway\'s process, less than half its budget busy): begun; adopted once the log handed them out; called_off (their append failed, or the worker stopped, or they were not handed out within 5 s)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    responses: new Counter({ name: 'chatflow_responses_total', help: 'Replies produced, by outcome', labelNames: ['outcome'] as const, registers: [registry] }),
    storageWaits: new Counter({ name: 'chatflow_storage_waits_total', help: 'Parts of replies (events, media) that had to wait for the disk to take writes again', registers: [registry] }),
    projectionLagSeconds: new HotHistogram({
      name: 'chatflow_projection_lag_seconds',
      help: 'From an event\'s time to its projection into the read models (how stale a read can be)',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60],
      registers: [registry],
    }),
    processingSeconds: new HotHistogram({ name: 'chatflow_processing_seconds', help: 'Processing time reported by the worker', labelNames: ['kind'] as const, buckets: latencyBuckets, registers: [registry] }),
    transcriptionSeconds: new HotHistogram({ name: 'chatflow_transcription_seconds', help: 'Time to transcribe a voice message or a video\'s audio track, by engine', labelNames: ['engine'] as const, buckets: latencyBuckets, registers: [registry] }),
    synthesisSeconds: new HotHistogram({ name: 'chatflow_synthesis_seconds', help: 'Time to synthesize a whole voice reply, by engine (stage="first" = until its first chunk)', labelNames: ['engine', 'stage'] as const, buckets: latencyBuckets, registers: [registry] }),
    logAppendSeconds: new HotHistogram({
      name: 'chatflow_log_append_seconds',
      help: 'From an append to the event log acknowledging it (embedded: fsync; Kafka: acks=all), by topic',
      labelNames: ['topic'] as const,
      buckets: stageBuckets,
      registers: [registry],
    }),
    logAppendStageSeconds: new HotHistogram({
      name: 'chatflow_log_append_stage_seconds',
      help: 'Embedded event log: where an append\'s time went (queue: waiting for the batch before it; write: its batch\'s write + sync; settle: durable until its appender was told)',
      labelNames: ['stage'] as const,
      buckets: stageBuckets,
      registers: [registry],
    }),
    messageStageSeconds: new HotHistogram({
      name: 'chatflow_message_stage_seconds',
      help: 'Gateway, per client message, from its arrival (decoded): checked (validated, in the session\'s order), stored (media bytes durable), appended (MessageReceived acknowledged by the log), accepted (Accepted handed to the stream); append = append requested → acknowledged. By kind',
      labelNames: ['stage', 'kind'] as const,
      buckets: stageBuckets,
      registers: [registry],
    }),
    replyStageSeconds: new HotHistogram({
      name: 'chatflow_reply_stage_seconds',
      help: 'A message\'s way to its reply outside its processing. Worker: taken (the message\'s event time → the worker has it from the log), started (taken → its processing starts: its budget slot, and its claim unless the claim is decided while the model works: a fresh message on claims in MongoDB), claimed (taken → that claim decided), recorded / appended / told (processing done → the outcome recorded in the claims / appended to the log / published to its gateway). Gateway: delivered (the reply\'s event time → its frame handed to the stream). Spans that cross processes compare their clocks',
      labelNames: ['stage'] as const,
      buckets: stageBuckets,
      registers: [registry],
    }),
    framesQueued: new Counter({
      name: 'chatflow_frames_queued_total',
      help: 'Frames that waited behind the stream\'s flow control (the client or HTTP/2 window behind), by frame type',
      labelNames: ['frame'] as const,
      registers: [registry],
    }),
    mediaPutSeconds: new HotHistogram({
      name: 'chatflow_media_put_seconds',
      help: 'Storing one media object (upload or reply voice/image), by kind',
      labelNames: ['kind'] as const,
      buckets: stageBuckets,
      registers: [registry],
    }),
    mongoCommandSeconds: new HotHistogram({
      name: 'chatflow_mongo_command_seconds',
      help: 'One MongoDB command (the driver\'s command monitoring), by command name: the count per message says how many round trips a message costs',
      labelNames: ['command'] as const,
      buckets: stageBuckets,
      registers: [registry],
    }),
    mongoUpdateWaitSeconds: new HotHistogram({
      name: 'chatflow_mongo_update_wait_seconds',
      help: 'How long an update-shaped MongoDB statement waited in the process for a place (CHATFLOW_MONGO_UPDATE_CONCURRENCY) before it was sent, by method',
      labelNames: ['method'] as const,
      buckets: stageBuckets,
      registers: [registry],
    }),
    leaseRenewalSeconds: new HotHistogram({
      name: 'chatflow_lease_renewal_seconds',
      help: 'One renewal of this gateway\'s connection slots (its heartbeat) from sent to answered, by outcome (ok, failed): past the trust window (5 s on MongoDB, whose heartbeats lapse after 8 s; 6.25 s at the default 10 s lease in memory) a gateway closes its streams, and a claim that came back later than that after it was sent is given back (registry_late)',
      labelNames: ['outcome'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    admissionSeconds: new HotHistogram({
      name: 'chatflow_admission_seconds',
      help: 'A Chat or Connect call on this gateway from its arrival to its answer, by outcome: admitted (its Welcome handed to the stream) or the status it was refused with (RESOURCE_EXHAUSTED for a full house, ALREADY_EXISTS, UNAUTHENTICATED…), or cancelled by its client first. What a client waits beyond this is the network and this process\'s event loop before the call reached the handler',
      labelNames: ['outcome'] as const,
      buckets: stageBuckets,
      registers: [registry],
    }),
    replyLatencySeconds: new HotHistogram({
      name: 'chatflow_reply_latency_seconds',
      help: 'From Accepted to the reply written to the client stream, at the gateway',
      buckets: latencyBuckets,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
