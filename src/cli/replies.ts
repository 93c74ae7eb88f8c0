import type { Accepted, BotResponse, ChatError, UserMessage } from '../gen/chatflow/v1/chat';
import { formatBytes } from '../domain/format-bytes';

/**
 * The messages of one chat session and their replies, as the CLI shows them:
 * each message gets a label ([1], [2], …) and its reply is one block under the
 * same label, however the streams of several replies interleave.
 */
export interface Entry {
  /** The label: 1, 2, … in the order sent; 0 for a reply to a message of an earlier session (a replay). */
  n: number;
  clientMessageId?: string;
  messageId?: string;
  /** What was sent, on one line. */
  question: string;
  /** seq of the accepted message. */
  seq?: number;
  state: 'sending' | 'waiting' | 'answered' | 'failed';
  /** The reply so far (streamed), or all of it. */
  text: string;
  replySeq?: number;
  processingMs?: number;
  error?: string;
  /** Lines under the reply: saved media. */
  notes: string[];
  /** Its block was printed whole (until then a live terminal keeps drawing it, e.g. while media download). */
  printed?: boolean;
}

export class ReplyBoard {
  readonly entries: Entry[] = [];
  private readonly byKey = new Map<string, Entry>();
  private next = 1;

  add(clientMessageId: string, content: UserMessage['content']): Entry {
    const e: Entry = { n: this.next++, clientMessageId, question: describeContent(content), state: 'sending', text: '', notes: [] };
    this.entries.push(e);
    this.byKey.set(clientMessageId, e);
    return e;
  }

  accepted(a: Accepted): Entry | undefined {
    const e = this.byKey.get(a.clientMessageId);
    if (!e) return undefined;
    e.messageId = a.messageId;
    e.seq = a.seq;
    if (e.state === 'sending') e.state = 'waiting';
    this.byKey.set(a.messageId, e);
    return e;
  }

  delta(inReplyTo: string, text: string): Entry {
    const e = this.of(inReplyTo);
    if (e.state !== 'answered' && e.state !== 'failed') e.text += text;
    return e;
  }

  response(r: BotResponse): Entry {
    const e = this.of(r.inReplyTo);
    e.state = 'answered';
    e.text = r.text;
    e.replySeq = r.seq;
    e.processingMs = r.processingMs;
    return e;
  }

  /** in_reply_to is the client_message_id when refused before the log, the message id when processing failed. */
  error(err: ChatError): Entry {
    const e = this.of(err.inReplyTo);
    e.state = 'failed';
    // Failed in processing in a way that may pass: its id has its outcome, so it goes again as a new message.
    // (A refusal before the log that may pass says so in its words: send it again with the same id.)
    const again = err.seq && Number(err.retryAfterMs) > 0 ? `; it may pass: send it again (as a new message) in ${Math.ceil(Number(err.retryAfterMs) / 1000)} s` : '';
    e.error = `${err.code}: ${err.message}${again}`;
    if (err.seq) e.replySeq = err.seq;
    return e;
  }

  /** Messages whose block is not printed yet (waiting, streaming, saving media), oldest first. */
  open(): Entry[] {
    return this.entries.filter((e) => !e.printed);
  }

  /** Marks the block printed and returns it, whole. */
  finish(e: Entry): string {
    e.printed = true;
    return formatBlock(e);
  }

  private of(key: string): Entry {
    let e = this.byKey.get(key);
    if (!e) {
      // A reply to a message this session did not send (replayed with --resume-after).
      e = { n: 0, messageId: key, question: `an earlier message (${shortKey(key)})`, state: 'waiting', text: '', notes: [] };
      this.entries.push(e);
      this.byKey.set(key, e);
    }
    return e;
  }
}

const INDENT = '    ';

/**
 * One message and its reply as text lines. `live`: the reply is still
 * streaming (a cursor mark shows it is not complete).
 */
export function formatBlock(e: Entry, opts: { live?: boolean } = {}): string {
  const label = e.n > 0 ? `[${e.n}]` : '[earlier]';
  const lines: string[] = [];
  const sent = e.state === 'sending' ? ' (sending…)' : e.seq !== undefined ? ` (seq ${e.seq})` : '';
  lines.push(`${label} you: ${e.question}${sent}`);
  if (e.state === 'failed') {
    lines.push(`${label} error ${e.error ?? ''}`.trimEnd());
    if (e.text) lines.push(indent(`(reply so far: ${e.text})`));
  } else if (e.state === 'answered') {
    lines.push(`${label} bot: ${indent(e.text).trimStart()}`);
    lines.push(`${INDENT}(seq ${e.replySeq}, processed in ${e.processingMs} ms)`);
  } else if (e.state === 'waiting') {
    lines.push(`${label} bot: ${e.text ? indent(e.text).trimStart() : '…'}${opts.live && e.text ? ' ▍' : ''}`);
  }
  for (const note of e.notes) lines.push(INDENT + note);
  return lines.join('\n');
}

/** What a message carried, on one line: its text (shortened), or the kind and size of its media. */
export function describeContent(c: UserMessage['content']): string {
  if (!c) return '(empty)';
  if (c.$case === 'text') {
    const one = c.text.replace(/\s+/g, ' ').trim();
    if (!one) return '(empty text)';
    return one.length > 72 ? `"${one.slice(0, 71)}…"` : `"${one}"`;
  }
  const m = c.$case === 'audio' ? c.audio : c.$case === 'video' ? c.video : c.image;
  return `[${c.$case} ${m.mimeType}, ${formatBytes(m.sizeBytes || m.data.length)}]`;
}

function indent(text: string): string {
  return text.split('\n').map((l) => INDENT + l).join('\n');
}

function shortKey(id: string): string {
  return id.length > 13 ? `${id.slice(0, 8)}…` : id;
}
