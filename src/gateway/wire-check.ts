import { BinaryReader } from '@bufbuild/protobuf/wire';
import { ChatServiceService, ClientFrame, ConnectRequest, SendAck, SendRequest, ServerFrame } from '../gen/chatflow/v1/chat';
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
  'invalid-utf8': 'a text field is not valid UTF-8: texts must be UTF-8 encoded',
  undecodable: 'the frame is not a valid protobuf message of this type',
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

/** The ChatService definition with its requests decoded by decodeChecked and its responses encoded with the shared writer (src/encode.ts). */
export function checkedChatService(): typeof ChatServiceService {
  const codecs: Record<keyof typeof ChatServiceService, Codec<object>> = { chat: ClientFrame, connect: ConnectRequest, send: SendRequest };
  const responses: Record<keyof typeof ChatServiceService, Encodes<never>> = { chat: ServerFrame, connect: ServerFrame, send: SendAck };
  const def = { ...ChatServiceService } as Record<string, unknown>;
  for (const key of Object.keys(codecs) as (keyof typeof ChatServiceService)[]) {
    def[key] = {
      ...ChatServiceService[key],
      requestDeserialize: (b: Buffer) => decodeChecked(codecs[key], b),
      responseSerialize: (m: never) => encodeToBuffer(responses[key], m),
    };
  }
  return def as typeof ChatServiceService;
}
