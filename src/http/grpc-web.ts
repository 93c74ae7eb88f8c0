/**
 * The embedded gRPC-Web endpoint: what Envoy's grpc_web filter does in the
 * stack, done inside the process for the embedded default, so the page and its
 * API share one origin (no CORS).
 *
 * The gRPC-Web protocol itself is Connect's implementation (connect-node's
 * universal handler, gRPC-Web only). Each call is forwarded, like a proxy
 * would, to the native gRPC server through a grpc-js client: the connection
 * metadata travels on, statuses come back 1:1 with their messages and trailers
 * (`retry-after-ms`), and messages cross as protobuf bytes (protobuf-es
 * `toBinary`/`fromBinary` here, ts-proto on the server side): no field is
 * copied by hand. Closing the browser's stream cancels the upstream call,
 * which frees the client's slot.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Client, credentials, Metadata, status as grpcStatus, type CallOptions, type ClientReadableStream, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { Code, ConnectError, createConnectRouter, encodeBinaryHeader, type HandlerContext } from '@connectrpc/connect';
import type { UniversalServerResponse } from '@connectrpc/connect/protocol';
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from '@connectrpc/connect-node';
import { fromBinary, toBinary, type DescMethod, type DescService, type Message } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import { ChatFlowError } from '../domain/errors';
import { declaresNoUpload, NO_UPLOAD_HEADER, SMALL_REQUEST_BYTES } from '../gateway/request-guard';
import { domainStatus, toStatus } from '../gateway/status';
import type { Place, RequestPlaces } from '../resilience/request-places';
import { isPublicPath, MEDIA_METHOD_PATHS, PUBLIC_SERVICE_LIST, PUBLIC_SERVICES } from '../services';
import { EXPOSED_HEADERS, originAllowed, type OriginRule } from './cors';
import { binaryRequest, refusalType, SPOKEN_TYPES, textResponse, webModeOf, type WebMode } from './grpc-web-text';
import type { HttpRoute } from './server';

/** A session's stream for browsers. */
const CONNECT_PATH = PUBLIC_SERVICES.chat.definition.connect.path;

/** The services a browser may call; everything else under the HTTP server is not ours. */
const GRPC_WEB_SERVICES: readonly DescService[] = PUBLIC_SERVICE_LIST.map((s) => s.web);

/** Request metadata a browser may send and the gateway reads (CORS allows it, here and in Envoy: src/http/cors.ts). */
export const FORWARDED_REQUEST_HEADERS = ['authorization', 'x-timezone', 'x-conversation-id', 'x-resume-after', 'x-replaces-session', 'x-client-id', NO_UPLOAD_HEADER] as const;

/** The request headers a page of another origin may send (CORS): the metadata, and gRPC-Web's own. Envoy allows the same (test/envoy.e2e.test.ts). */
export const ALLOWED_HEADERS = [...FORWARDED_REQUEST_HEADERS, 'x-grpc-web', 'x-user-agent', 'content-type', 'grpc-timeout'] as const;

/** Response metadata that belongs to the transport, never forwarded as application metadata. */
const TRANSPORT_HEADERS = new Set(['content-type', 'content-length', 'date', 'te', 'user-agent', 'connection', 'keep-alive', 'transfer-encoding', 'host', 'accept-encoding']);

interface GrpcWebOptions {
  /** Resolves with the caller the request's headers identify (checked before its body is read); rejects with why not. */
  identify: (header: (name: string) => string | undefined) => Promise<string>;
  /**
   * Where a Send's body is read and forwarded: one place per Send, taken before its body is read and held until
   * it is answered (as on the gRPC server, src/gateway/request-guard.ts; places of their own, since each forwarded
   * Send then takes one there too).
   */
  sends: RequestPlaces;
  /**
   * Where every other call but a session's stream (Connect) is answered: one place each, from before its body is
   * read until its response is over. An answer its client does not read stays in memory until then: without a
   * bound, 100 connections pipelining 16 ListMessages each, one token, never reading, took a server from 134 to
   * 636 MB. Places of their own, as for Sends.
   */
  calls: RequestPlaces;
  /**
   * Address of the native gRPC server (`host:port`), read per call: the HTTP
   * server starts before gRPC is bound. Empty or undefined = not ready yet.
   */
  upstream: () => string | undefined;
  /** Pages of other origins that may call (CORS, src/http/cors.ts); the page's own origin needs no rule. */
  origins: readonly OriginRule[];
  /** Largest message either way for a Send (it carries up to the media limit); other requests: SMALL_REQUEST_BYTES. */
  maxMessageBytes: number;
  logger: Logger;
}

/** The upstream connection is dropped after this long without calls (and reopened on the next). */
const IDLE_CLOSE_MS = 60_000;

export type GrpcWebRoute = HttpRoute & { close(): void };

/** A route for startHttpServer that serves the public services (src/services.ts) over gRPC-Web. */
export function grpcWebRoute(opts: GrpcWebOptions): GrpcWebRoute {
  const upstream = new Upstream(opts);
  // connectNodeAdapter, minus its console.error: failures go to our logger, and a browser that left is not one.
  const routerOptions = {
    grpcWeb: true,
    grpc: false,
    connect: false,
    readMaxBytes: opts.maxMessageBytes,
    writeMaxBytes: opts.maxMessageBytes,
    acceptCompression: [compressionGzip, compressionBrotli],
  };
  const router = createConnectRouter(routerOptions);
  // A Send that declares it carries no upload (NO_UPLOAD_HEADER) is read as a small request, as on the gRPC server.
  const small = createConnectRouter({ ...routerOptions, readMaxBytes: SMALL_REQUEST_BYTES });
  for (const service of GRPC_WEB_SERVICES) {
    for (const method of service.methods) {
      // gRPC-Web has no client streaming: Chat is not served here (404, which clients read as UNIMPLEMENTED); browsers use Connect + Send.
      if (method.methodKind !== 'unary' && method.methodKind !== 'server_streaming') continue;
      // As on the gRPC server (src/gateway/request-guard.ts): only a Send carries an upload's worth.
      const carriesMedia = MEDIA_METHOD_PATHS.has(pathOf(method));
      router.rpc(method, forwarder(method, upstream) as never, carriesMedia ? {} : { readMaxBytes: SMALL_REQUEST_BYTES });
      if (carriesMedia) small.rpc(method, forwarder(method, upstream) as never);
    }
  }
  const handlers = new Map(router.handlers.map((h) => [h.requestPath, h]));
  const smallHandlers = new Map(small.handlers.map((h) => [h.requestPath, h]));
  const route = ((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (!isPublicPath(path)) return false;
    if (!crossOrigin(req, res, opts.origins)) return true;
    if (!handlers.has(path)) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('no such method over gRPC-Web\n');
      return true;
    }
    const mode = webModeOf(headerOf(req, 'content-type'), headerOf(req, 'accept'));
    if (!mode) {
      res.writeHead(415, { 'content-type': 'text/plain', connection: 'close' });
      res.end(`this endpoint speaks gRPC-Web: send ${SPOKEN_TYPES}\n`);
      return true;
    }
    // A Send read as a small request: one that says it carries no upload, and one in JSON, which is parsed whole on
    // the event loop (8 MB of nested arrays held it 2.5 s and took the server from 128 to 511 MB).
    const small = MEDIA_METHOD_PATHS.has(path) && (mode.json || declaresNoUpload(headerOf(req, NO_UPLOAD_HEADER)));
    const handler = (small ? smallHandlers : handlers).get(path)!;
    // The caller is identified, and given a place, before its body is read: a refused one costs its headers only
    // (the body is left unread). A session's stream (Connect) is bounded by its admission.
    const places = path === CONNECT_PATH ? undefined : MEDIA_METHOD_PATHS.has(path) && !small ? opts.sends : opts.calls;
    // Ended once the response is over, however it ends: the place it holds or waits for is given back (RequestPlaces.take).
    let place: Place | undefined;
    let over = false;
    if (places)
      res.once('close', () => {
        over = true;
        place?.end();
      });
    opts
      .identify((name) => headerOf(req, name))
      .then(
        (caller) => {
          if (places && !over) place = places.take(caller);
          return (place?.wait ?? Promise.resolve()).then(
            () => {
              if (over) return;
              const uReq = binaryRequest(universalRequestFromNodeRequest(req, res, undefined, undefined), mode);
              return handler(uReq).then((uRes) => universalResponseToNodeResponse(closingIfUnread(req, textResponse(uRes, mode)), res));
            },
            (err: unknown) => refuse(req, res, mode, toStatus(err, opts.logger)),
          );
        },
        (err: unknown) => refuse(req, res, mode, domainStatus(new ChatFlowError('UNAUTHENTICATED', err instanceof Error ? err.message : 'unauthenticated'))),
      )
      .catch((err: unknown) => {
        const gone = req.destroyed || res.destroyed || ConnectError.from(err).code === Code.Aborted;
        if (gone) opts.logger.debug({ err, path }, 'gRPC-Web client went away');
        else opts.logger.warn({ err, path }, 'gRPC-Web response failed');
      });
    return true;
  }) as GrpcWebRoute;
  route.close = () => upstream.close();
  return route;
}

/**
 * CORS for pages of other origins, as Envoy's cors filter does: a preflight (OPTIONS) is answered here, 204 for an
 * allowed origin, 403 in words for another; a call from an allowed origin gets the headers that let its page read
 * the answer. false: the request was answered (a preflight).
 */
function crossOrigin(req: IncomingMessage, res: ServerResponse, origins: readonly OriginRule[]): boolean {
  const origin = headerOf(req, 'origin');
  const allowed = origin !== undefined && originAllowed(origins, origin);
  if (req.method === 'OPTIONS') {
    if (!allowed) {
      res.writeHead(403, { 'content-type': 'text/plain', vary: 'Origin' });
      res.end(`pages of ${origin ?? 'no origin'} may not call this endpoint: list the origin in CHATFLOW_WEB_ORIGINS\n`);
      return false;
    }
    res.writeHead(204, {
      'access-control-allow-origin': origin,
      'access-control-allow-methods': 'POST, OPTIONS',
      'access-control-allow-headers': ALLOWED_HEADERS.join(','),
      'access-control-max-age': '86400',
      vary: 'Origin',
    });
    res.end();
    return false;
  }
  if (allowed) {
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('access-control-expose-headers', EXPOSED_HEADERS.join(','));
    res.setHeader('vary', 'Origin');
  }
  return true;
}

/**
 * Connect's answer to a request whose body it did not read whole (refused once its length was read: over the size
 * bound) closes the connection, as `refuse` does: kept open, the rest of that body sat unread before the client's
 * next request on it, which got no answer until the keep-alive timeout reset the connection.
 */
function closingIfUnread(req: IncomingMessage, uRes: UniversalServerResponse): UniversalServerResponse {
  if (req.complete) return uRes;
  const header = new Headers(uRes.header);
  header.set('connection', 'close');
  return { ...uRes, header };
}

function headerOf(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A refusal without a body (trailers-only: the status and its trailers in the headers); the connection is closed rather than the request body read. */
function refuse(req: IncomingMessage, res: ServerResponse, mode: WebMode, st: StatusObject): void {
  res.writeHead(200, {
    'content-type': refusalType(mode, headerOf(req, 'content-type')),
    'grpc-status': String(st.code),
    'grpc-message': encodeURIComponent(st.details),
    ...st.metadata.getMap(),
    connection: 'close',
  });
  res.end();
}

/** The handler Connect calls for one method: forwards by kind. */
function forwarder(method: DescMethod, upstream: Upstream) {
  return method.methodKind === 'unary'
    ? (req: Message, ctx: HandlerContext) => upstream.unary(method, req, ctx)
    : (req: Message, ctx: HandlerContext) => upstream.serverStream(method, req, ctx);
}

const passThrough = (b: Buffer) => b;

class Upstream {
  private client?: Client;

  constructor(private readonly opts: GrpcWebOptions) {}

  async unary(method: DescMethod, req: Message, ctx: HandlerContext): Promise<Message> {
    const md = requestMetadata(ctx);
    const client = this.acquire();
    return new Promise<Message>((resolve, reject) => {
      let result: { err: ServiceError | null; res?: Buffer } = { err: null };
      const call = client.makeUnaryRequest<Buffer, Buffer>(
        pathOf(method), passThrough, passThrough, Buffer.from(toBinary(method.input, req)), md, callOptions(ctx),
        (err, res) => (result = { err, res }),
      );
      const cancel = () => call.cancel();
      ctx.signal.addEventListener('abort', cancel, { once: true });
      call.on('metadata', (h: Metadata) => copyMetadata(h, ctx.responseHeader));
      // grpc-js calls back, then emits the status with the trailers, in the same tick.
      call.on('status', (s: StatusObject) => {
        ctx.signal.removeEventListener('abort', cancel);
        copyMetadata(s.metadata, ctx.responseTrailer);
        if (result.err) reject(this.toConnectError(result.err, method, ctx));
        else resolve(fromBinary(method.output, result.res!));
      });
    });
  }

  async *serverStream(method: DescMethod, req: Message, ctx: HandlerContext): AsyncGenerator<Message> {
    const md = requestMetadata(ctx);
    const client = this.acquire();
    let call: ClientReadableStream<Buffer>;
    try {
      call = client.makeServerStreamRequest<Buffer, Buffer>(pathOf(method), passThrough, passThrough, Buffer.from(toBinary(method.input, req)), md, callOptions(ctx));
    } catch (err) {
      throw this.toConnectError(err, method, ctx);
    }
    // The browser went away (or the RPC ended): end the upstream call, so the gateway frees the slot.
    const cancel = () => call.cancel();
    ctx.signal.addEventListener('abort', cancel, { once: true });
    let headers: Metadata | undefined;
    let trailers: Metadata | undefined;
    call.on('metadata', (h: Metadata) => (headers = h));
    call.on('status', (s: StatusObject) => (trailers = s.metadata));
    let headersSent = false;
    const sendHeaders = () => {
      if (headersSent || !headers) return;
      headersSent = true;
      copyMetadata(headers, ctx.responseHeader);
    };
    try {
      for await (const chunk of call as AsyncIterable<Buffer>) {
        sendHeaders();
        yield fromBinary(method.output, chunk);
      }
      sendHeaders();
      if (trailers) copyMetadata(trailers, ctx.responseTrailer);
    } catch (err) {
      throw this.toConnectError(err, method, ctx);
    } finally {
      ctx.signal.removeEventListener('abort', cancel);
      call.cancel();
    }
  }

  /**
   * One client (one HTTP/2 connection) shared by every call. The address is
   * fixed once the gRPC server is bound; grpc-js drops the idle connection itself.
   */
  private acquire(): Client {
    const address = this.opts.upstream();
    if (!address) throw new ConnectError('no gRPC server in this process right now (starting, stopping, or not a gateway); retry shortly', Code.Unavailable);
    this.client ??= new Client(address, credentials.createInsecure(), {
      'grpc.max_receive_message_length': this.opts.maxMessageBytes,
      'grpc.max_send_message_length': this.opts.maxMessageBytes,
      'grpc.client_idle_timeout_ms': IDLE_CLOSE_MS,
    });
    return this.client;
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
  }

  /**
   * A grpc-js status becomes the same Connect code (the numbering is gRPC's in both), message and trailers kept. A
   * call this endpoint ended itself (its deadline passed: `grpc-timeout`) ends as Connect says why, not with the
   * CANCELLED its cancelling gave the upstream call.
   */
  private toConnectError(err: unknown, method: DescMethod, ctx: HandlerContext): ConnectError {
    if (err instanceof ConnectError) return err;
    if (ctx.signal.aborted) return ConnectError.from(ctx.signal.reason);
    const e = err as Partial<ServiceError>;
    if (typeof e?.code !== 'number' || e.code === grpcStatus.OK) {
      this.opts.logger.error({ err, method: pathOf(method) }, 'gRPC-Web forwarding failed');
      return new ConnectError('internal error; it has been logged', Code.Internal);
    }
    const trailers = new Headers();
    if (e.metadata) copyMetadata(e.metadata, trailers);
    return new ConnectError(e.details ?? '', e.code as number as Code, trailers);
  }
}

function pathOf(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

function requestMetadata(ctx: HandlerContext): Metadata {
  const md = new Metadata();
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const v = ctx.requestHeader.get(name);
    if (v === null) continue;
    try {
      md.set(name, v);
    } catch {
      // gRPC metadata values are printable ASCII; HTTP/1.1 lets a browser send more.
      throw new ConnectError(`${name} holds characters gRPC metadata cannot carry`, Code.InvalidArgument);
    }
  }
  return md;
}

function callOptions(ctx: HandlerContext): CallOptions {
  const timeout = ctx.timeoutMs();
  return timeout === undefined ? {} : { deadline: Date.now() + timeout };
}

/** Application metadata from the gateway, onto the browser's response (binary values base64, as gRPC-Web wants). */
function copyMetadata(md: Metadata, target: Headers): void {
  for (const [key, values] of Object.entries(md.toJSON())) {
    if (key.startsWith(':') || key.startsWith('grpc-') || TRANSPORT_HEADERS.has(key)) continue;
    for (const v of values) target.append(key, typeof v === 'string' ? v : encodeBinaryHeader(v));
  }
}

