import { BinaryReader } from '@bufbuild/protobuf/wire';
import { ChatServiceService, ClientFrame, ConnectRequest, SendAck, SendRequest, ServerFrame } from '../gen/chatflow/v1/chat';
import { GetConversationRequest, HistoryServiceService, ListConversationsRequest, ListMessagesRequest } from '../gen/chatflow/v1/history';
import { encodeToBuffer, type Encodes } from '../encode';

/**
 * What protobuf decoding would hide: strings that are not valid UTF-8 (the
 * default decoder silently turns them into U+FFFD) and bytes that are not a
 * message at all (grpc-js would end the whole stream with INTERNAL). Frames
 * are decoded here instead; a flawed one is marked and the gateway answers it
 * with INVALID_ARGUMENT for that message only.
 */
export type WireFlaw = 'invalid-utf8' | 'undecodable';

const flaws = new WeakMap<object, WireFlaw>();

export function wireFlawOf(message: object): WireFlaw | undefined {
  return flaws.get(message);
}

export const WIRE_FLAW_MESSAGES: Record<WireFlaw, string> = {
  'invalid-utf8': 'a string field (a text, an id) is not valid UTF-8: strings must be UTF-8 encoded',
  undecodable: 'the bytes sent are not a valid protobuf message of the method\'s type',
};

const strict = new TextDecoder('utf-8', { fatal: true });
const lossy = new TextDecoder('utf-8');

interface Codec<T> {
  decode(input: BinaryReader): T;
  fromPartial(o: object): T;
}

export function decodeChecked<T extends object>(codec: Codec<T>, bytes: Uint8Array): T {
  let flaw: WireFlaw | undefined;
  let message: T;
  try {
    message = codec.decode(
      new BinaryReader(bytes, (b) => {
        try {
          return strict.decode(b);
        } catch {
          flaw = 'invalid-utf8';
          return lossy.decode(b);
        }
      }),
    );
  } catch {
    flaw = 'undecodable';
    message = codec.fromPartial({});
  }
  if (flaw) flaws.set(message, flaw);
  return message;
}

/** A service definition whose requests are decoded by decodeChecked (its handlers refuse a flawed one: wireFlawOf). */
function checked<S extends Record<string, object>>(definition: S, codecs: Record<keyof S, Codec<object>>, responses?: Record<keyof S, Encodes<never>>): S {
  const def: Record<string, unknown> = { ...definition };
  for (const key of Object.keys(codecs) as (keyof S & string)[]) {
    def[key] = {
      ...definition[key],
      requestDeserialize: (b: Buffer) => decodeChecked(codecs[key], b),
      ...(responses ? { responseSerialize: (m: never) => encodeToBuffer(responses[key], m) } : {}),
    };
  }
  return def as S;
}

/** The ChatService definition with its requests decoded by decodeChecked and its responses encoded with the shared writer (src/encode.ts). */
export function checkedChatService(): typeof ChatServiceService {
  return checked(ChatServiceService, { chat: ClientFrame, connect: ConnectRequest, send: SendRequest }, { chat: ServerFrame, connect: ServerFrame, send: SendAck });
}

/**
 * The HistoryService definition with its requests decoded by decodeChecked: grpc-js answered a request that is not
 * protobuf with INTERNAL ("Error deserializing request"), and read strings that are not UTF-8 as U+FFFD.
 */
export function checkedHistoryService(): typeof HistoryServiceService {
  return checked(HistoryServiceService, { listConversations: ListConversationsRequest, listMessages: ListMessagesRequest, getConversation: GetConversationRequest });
}
