import { z } from 'zod';
import { SendAck, SendRequest } from '../gen/chatflow/v1/chat';
import { ChatFlowError } from '../domain/errors';
import { uncarryError, type CarriedError } from './status';

/**
 * What gateways say to each other over the bus about a session (a browser's
 * `Send` that reached another replica than its `Connect`, the probe of a
 * slot's holder, and a new connection of its client taking it over). The bus
 * is the operators' own, but a peer of another version, or anything else that publishes on a session's subject, must get a clear
 * error back, never an "unexpected error" or a crash.
 */
export type RoutedRequest = { kind: 'send'; clientId: string; request: SendRequest } | { kind: 'probe' } | { kind: 'yield'; clientId: string };
export type RoutedReply = { ack: string } | { held: true } | { yielded: true; unanswered: string[] } | CarriedError;

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'not base64');
const probeSchema = z.object({ probe: z.literal(true) });
const yieldSchema = z.object({ yield: z.literal(true), clientId: z.string().min(1) });
const sendSchema = z.object({ clientId: z.string().min(1), request: base64 });
const yieldReplySchema = z.object({ yielded: z.literal(true), unanswered: z.array(z.string().max(256)).max(10_000) });
const replySchema = z.union([
  z.object({ ack: base64 }),
  z.object({ held: z.literal(true) }),
  yieldReplySchema,
  z.object({ code: z.string(), message: z.string(), trailers: z.record(z.string(), z.string()).optional() }),
]);

export const PROBE_PAYLOAD = Buffer.from(JSON.stringify({ probe: true }));

export function encodeRoutedSend(clientId: string, request: SendRequest): Buffer {
  return Buffer.from(JSON.stringify({ clientId, request: Buffer.from(SendRequest.encode(request).finish()).toString('base64') }));
}

/** Asks the session's gateway to close it for a new connection of `clientId` (see ChatGateway.takeOver). */
export function encodeRoutedYield(clientId: string): Buffer {
  return Buffer.from(JSON.stringify({ yield: true, clientId }));
}

export function encodeRoutedReply(reply: RoutedReply): Buffer {
  return Buffer.from(JSON.stringify(reply));
}

/** The request a peer sent, or INVALID_ARGUMENT saying what is wrong with it. */
export function decodeRoutedRequest(payload: Uint8Array): RoutedRequest {
  const value = parseJson(payload);
  const has = (key: string) => typeof value === 'object' && value !== null && key in value;
  if (has('yield')) {
    const asked = yieldSchema.safeParse(value);
    if (!asked.success) throw new ChatFlowError('INVALID_ARGUMENT', `malformed request between gateways: ${describe(asked.error)}`);
    return { kind: 'yield', clientId: asked.data.clientId };
  }
  const parsed = (has('probe') ? probeSchema : sendSchema).safeParse(value);
  if (!parsed.success) throw new ChatFlowError('INVALID_ARGUMENT', `malformed request between gateways: ${describe(parsed.error)}`);
  if (!('request' in parsed.data)) return { kind: 'probe' };
  let request: SendRequest;
  try {
    request = SendRequest.decode(Buffer.from(parsed.data.request, 'base64'));
  } catch {
    throw new ChatFlowError('INVALID_ARGUMENT', 'malformed request between gateways: request is not a SendRequest');
  }
  if (!request.message && !request.ping) throw new ChatFlowError('INVALID_ARGUMENT', 'malformed request between gateways: the SendRequest has no message and no ping');
  return { kind: 'send', clientId: parsed.data.clientId, request };
}

/**
 * The acknowledgement the holding gateway gave, or the error it carried back.
 * An answer that is none of these is a peer out of step: UNAVAILABLE, send again.
 */
export function decodeRoutedReply(payload: Uint8Array): SendAck {
  const parsed = replySchema.safeParse(parseJson(payload));
  if (!parsed.success) throw new ChatFlowError('UNAVAILABLE', 'the gateway holding this session answered something unreadable; send again');
  const r = parsed.data;
  if ('held' in r || 'yielded' in r) throw new ChatFlowError('UNAVAILABLE', 'the gateway holding this session answered out of turn; send again');
  if ('ack' in r) {
    try {
      return SendAck.decode(Buffer.from(r.ack, 'base64'));
    } catch {
      throw new ChatFlowError('UNAVAILABLE', 'the gateway holding this session answered something unreadable; send again');
    }
  }
  throw uncarryError(r as CarriedError);
}

/** What a take-over's holder says its closed stream left unanswered; nothing from anything else (the claim decides). */
export function decodeYieldReply(payload: Uint8Array): string[] {
  const parsed = yieldReplySchema.safeParse(parseJson(payload));
  return parsed.success ? parsed.data.unanswered : [];
}

/** The payload as JSON; bytes that are not JSON read as `undefined`, which no schema accepts. */
function parseJson(payload: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch {
    return undefined;
  }
}

function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  return issue ? `${issue.path.join('.') || 'payload'}: ${issue.message}` : 'unreadable';
}
