/**
 * gRPC-Web's text mode (`application/grpc-web-text`, grpc/grpc
 * doc/PROTOCOL-WEB.md): the same frames as `application/grpc-web`, base64
 * both ways. Google's grpc-web library uses it by default, and needs it for
 * server streaming (Connect); Envoy's grpc_web filter serves it, so the
 * embedded endpoint does too. Connect's protocol code speaks the binary mode
 * only: a text call is turned into a binary one on its way in (its body
 * decoded as it arrives, so the size bounds read the real frames) and its
 * answer back into text on its way out (each chunk encoded on its own, padded:
 * the protocol lets padding close any chunk).
 */
import type { UniversalServerRequest, UniversalServerResponse } from '@connectrpc/connect/protocol';
import { Code, ConnectError } from '@connectrpc/connect';

const BINARY_TYPE = 'application/grpc-web+proto';
const TEXT_TYPE = 'application/grpc-web-text+proto';

/** What the endpoint speaks, in the words of its refusal to anything else. */
export const SPOKEN_TYPES = `${BINARY_TYPE} (or +json, requests up to 64 KiB) and ${TEXT_TYPE}`;

/** How a request wants to be read and answered; `undefined` when its content type is not gRPC-Web. */
export interface WebMode {
  /** The body is base64. */
  textRequest: boolean;
  /** The answer is to be base64 (a text request, or an `Accept` that asks for text). */
  textResponse: boolean;
  /** The messages are JSON (`+json`, binary mode only), not protobuf. */
  json: boolean;
}

const WEB_TYPE = /^application\/grpc-web(-text)?(?:\+(proto|json))?\s*(?:;|$)/i;

export function webModeOf(contentType: string | undefined, accept: string | undefined): WebMode | undefined {
  const m = WEB_TYPE.exec(contentType ?? '');
  if (!m) return undefined;
  const textRequest = m[1] !== undefined;
  // Text mode carries protobuf only (the protocol names +proto and +thrift).
  if (textRequest && m[2]?.toLowerCase() === 'json') return undefined;
  return { textRequest, textResponse: textRequest || /application\/grpc-web-text/i.test(accept ?? ''), json: m[2]?.toLowerCase() === 'json' };
}

const NOT_BASE64 = /[^A-Za-z0-9+/=]/;
const WHITESPACE = /[\t\n\r ]/g;

/**
 * Decodes a base64 body as it arrives. Padding may close any 4-character group, not only the last one (a client
 * that encodes each piece it flushes); whitespace is ignored. Anything else fails INVALID_ARGUMENT, in words.
 */
export async function* decodeBase64Body(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let rest = '';
  for await (const chunk of chunks) {
    const text = rest + viewOf(chunk).toString('latin1').replace(WHITESPACE, '');
    const whole = text.length - (text.length % 4);
    rest = text.slice(whole);
    if (whole > 0) yield decodeGroups(text.slice(0, whole));
  }
  if (rest !== '') throw notBase64(`it ends inside a group of 4 characters ('${rest}')`);
}

/** Whole 4-character groups, any of them padded. */
function decodeGroups(s: string): Uint8Array {
  const bad = NOT_BASE64.exec(s);
  if (bad) throw notBase64(`it has ${JSON.stringify(bad[0])}, which base64 does not use`);
  const pieces: Buffer[] = [];
  let from = 0;
  for (let pad = s.indexOf('='); pad !== -1; pad = s.indexOf('=', from)) {
    const end = pad - (pad % 4) + 4;
    // '=' may stand at the 3rd and 4th place of a group only, and only up to its end.
    if (pad % 4 < 2 || s.slice(pad, end) !== '='.repeat(end - pad)) throw notBase64(`it has '=' inside a group`);
    pieces.push(Buffer.from(s.slice(from, end), 'base64'));
    from = end;
  }
  if (from === 0) return Buffer.from(s, 'base64');
  if (from < s.length) pieces.push(Buffer.from(s.slice(from), 'base64'));
  return Buffer.concat(pieces);
}

/** The chunk's bytes as a Buffer, not copied. */
const viewOf = (chunk: Uint8Array) => Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);

function notBase64(why: string): ConnectError {
  return new ConnectError(`the request body is not base64 (${TEXT_TYPE}): ${why}`, Code.InvalidArgument);
}

async function* encodeBase64Body(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for await (const chunk of chunks) if (chunk.length > 0) yield Buffer.from(viewOf(chunk).toString('base64'), 'latin1');
}

/** A text request as the binary one Connect reads: its content type binary, its body decoded as it arrives. */
export function binaryRequest(req: UniversalServerRequest, mode: WebMode): UniversalServerRequest {
  if (!mode.textRequest) return req;
  const header = new Headers(req.header);
  header.set('content-type', BINARY_TYPE);
  header.delete('content-length');
  return { ...req, header, body: decodeBase64Body(req.body as AsyncIterable<Uint8Array>) };
}

/** Connect's binary answer as text, when the caller asked for text; anything but a gRPC-Web answer (a 4xx) as it is. */
export function textResponse(res: UniversalServerResponse, mode: WebMode): UniversalServerResponse {
  if (!mode.textResponse || !res.header?.get('content-type')?.startsWith('application/grpc-web')) return res;
  const header = new Headers(res.header);
  header.set('content-type', TEXT_TYPE);
  header.delete('content-length');
  return { ...res, header, body: res.body && encodeBase64Body(res.body) };
}

/** The content type of a refusal made before Connect reads the call (trailers only, no body): the mode asked for. */
export function refusalType(mode: WebMode, requested: string | undefined): string {
  return mode.textResponse ? TEXT_TYPE : (requested ?? BINARY_TYPE);
}
