import fc from 'fast-check';
import { Code, ConnectError } from '@connectrpc/connect';
import { decodeBase64Body, webModeOf } from './grpc-web-text';

async function decode(chunks: string[]): Promise<Buffer> {
  async function* source() {
    for (const c of chunks) yield Buffer.from(c, 'latin1');
  }
  const out: Uint8Array[] = [];
  for await (const b of decodeBase64Body(source())) out.push(b);
  return Buffer.concat(out);
}

/** Cuts `s` at the given fractions of its length. */
function cut(s: string, at: number[]): string[] {
  const points = [...new Set(at.map((f) => Math.floor(f * s.length)))].sort((a, b) => a - b);
  const parts: string[] = [];
  let from = 0;
  for (const p of points) {
    parts.push(s.slice(from, p));
    from = p;
  }
  parts.push(s.slice(from));
  return parts;
}

describe('decodeBase64Body (grpc-web-text requests)', () => {
  it('gives back the bytes, however the sender padded its pieces and the network cut the text', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 6 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 }),
        fc.boolean(),
        async (pieces, cuts, newlines) => {
          // Each piece encoded on its own (padding inside the body), optionally wrapped as MIME does.
          let text = pieces.map((p) => Buffer.from(p).toString('base64')).join('');
          if (newlines) text = text.replace(/(.{7})/g, '$1\r\n');
          expect(await decode(cut(text, cuts))).toEqual(Buffer.concat(pieces));
        },
      ),
    );
  });

  it.each([
    ['a character outside base64', ['AAAA*AAA'], /"\*", which base64 does not use/],
    ['a body that ends inside a group', ['AAAAAA'], /ends inside a group/],
    ['padding at the start of a group', ['AAAA=AAA'], /'=' inside a group/],
    ['a character after the padding of its group', ['AA=A'], /'=' inside a group/],
    ['bytes that are not text', ['AAAA\u00ff\u0000AA'], /"\u00ff"/],
  ])('refuses %s with INVALID_ARGUMENT, in words', async (_what, chunks, words) => {
    const err = await decode(chunks).then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toMatch(/^the request body is not base64/);
    expect(err?.rawMessage).toMatch(words);
  });
});

describe('webModeOf', () => {
  it.each([
    ['application/grpc-web', undefined, { textRequest: false, textResponse: false, json: false }],
    ['application/grpc-web+proto', 'application/grpc-web-text', { textRequest: false, textResponse: true, json: false }],
    ['application/grpc-web+json', undefined, { textRequest: false, textResponse: false, json: true }],
    ['Application/GRPC-Web+JSON; charset=utf-8', undefined, { textRequest: false, textResponse: false, json: true }],
    ['application/grpc-web-text', undefined, { textRequest: true, textResponse: true, json: false }],
    ['Application/GRPC-Web-Text+proto; charset=utf-8', undefined, { textRequest: true, textResponse: true, json: false }],
    ['application/grpc-web-text+json', undefined, undefined],
    ['application/grpc-web-texts', undefined, undefined],
    ['application/grpc', undefined, undefined],
    ['application/json', undefined, undefined],
    [undefined, undefined, undefined],
  ])('%s (accept %s): %j', (type, accept, mode) => {
    expect(webModeOf(type, accept)).toEqual(mode);
  });
});
