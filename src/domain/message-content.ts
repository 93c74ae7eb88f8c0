import { hash } from 'node:crypto';
import { codePointLength } from './code-points';


/**
 * What a client message says, reduced to a hash: a resend with the same
 * idempotency key must say the same thing. Text hashes its UTF-8; media hash
 * the kind and the SHA-256 of the bytes (the event keeps that SHA-256, so the
 * projection computes the same value from the log).
 */
export type ContentForHash = { text: string } | { mediaKind: string; sha256: string };

export function contentHash(c: ContentForHash): string {
  // One-shot hash of the same bytes as before ('text\0' + UTF-8, or kind + '\0' + hex digest): stored hashes stay valid.
  const input = 'text' in c ? `text\0${c.text}` : `${c.mediaKind}\0${c.sha256}`;
  // The first 22 characters, as a string of their own: `.slice` would keep the whole 43-character digest
  // alive behind a sliced string, and the read models and every session keep one hash per message.
  return Buffer.from(hash('sha256', input, 'base64url'), 'latin1').toString('latin1', 0, 22);
}

/**
 * The content hash of a client message as the read models keep it: a text's
 * is computed from its text when asked (the message document holds the text,
 * and hashing every message as it is projected cost ~1 % of the event loop
 * at saturation, for a value read only when a resend comes); a media
 * message's is stored (its bytes are not in the document). `undefined` for a
 * media message projected before hashes were stored: such a resend is taken
 * as the same message.
 */
export function storedContentHash(doc: { contentHash?: string; text?: string; media?: unknown }): string | undefined {
  if (doc.contentHash !== undefined) return doc.contentHash;
  return doc.text !== undefined && doc.media === undefined ? contentHash({ text: doc.text }) : undefined;
}

export type TextVerdict = { ok: true } | { ok: false; message: string };

/** The rules of a text message (its UTF-8 validity is checked when the frame is decoded). */
export function decideText(text: string, maxChars: number): TextVerdict {
  if (text.trim() === '') return { ok: false, message: 'the text is empty' };
  // Cheap bound first: a string has at least length/2 code points.
  if (text.length > maxChars) {
    const chars = codePointLength(text);
    if (chars > maxChars) return { ok: false, message: `the text is ${chars} characters; the limit is ${maxChars}` };
  }
  return { ok: true };
}
