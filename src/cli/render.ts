import { formatBytes } from '../domain/format-bytes';
import type { Media } from '../gen/chatflow/v1/chat';
import { Author, MessageStatus, type Conversation, type HistoryMessage } from '../gen/chatflow/v1/history';

/** `2024-05-01 14:03:22` in the given zone. */
export function formatTime(d: Date | undefined, timeZone: string): string {
  if (!d) return '-';
  try {
    return d.toLocaleString('sv-SE', { timeZone, hour12: false });
  } catch {
    return d.toISOString();
  }
}

export function describeMedia(kind: string, m: Media | undefined): string | undefined {
  if (!m) return undefined;
  const size = m.sizeBytes ? `, ${formatBytes(m.sizeBytes)}` : '';
  const duration = m.durationMs ? `, ${(m.durationMs / 1000).toFixed(1)} s` : '';
  return `[${kind} ${m.mimeType || '?'}${size}${duration}]`;
}

export function shortId(id: string): string {
  return id.length > 13 ? `${id.slice(0, 8)}…` : id;
}

export function formatConversation(c: Conversation, timeZone: string): string {
  const count = `${c.messageCount} message${c.messageCount === 1 ? '' : 's'}`;
  const first = c.preview ? `"${c.preview}", ` : '';
  return `${c.conversationId}  ${first}${count}, last seq ${c.lastSeq}, updated ${formatTime(c.updatedAt, timeZone)}${c.timeZone ? ` (${c.timeZone})` : ''}`;
}

/**
 * History lines, oldest first: `#12 … you: hello`, then `#14 … bot (reply to #12): …`.
 * Remembers the seq of each client message it formatted, so a reply names the
 * message it answers (by its id when that message came before the listed range).
 */
export function historyFormatter(timeZone: string): (m: HistoryMessage) => string {
  const seqOf = new Map<string, number>();
  return (m) => {
    const bot = m.author === Author.AUTHOR_BOT;
    if (!bot) seqOf.set(m.messageId, m.seq);
    const answered = bot && m.inReplyTo ? ` (reply to ${seqOf.has(m.inReplyTo) ? `#${seqOf.get(m.inReplyTo)}` : `message ${shortId(m.inReplyTo)}`})` : '';
    return formatHistoryMessage(m, timeZone, answered);
  };
}

function formatHistoryMessage(m: HistoryMessage, timeZone: string, answered: string): string {
  const who = m.author === Author.AUTHOR_BOT ? `bot${answered}` : 'you';
  const parts = [
    m.text || undefined,
    describeMedia('audio', m.audio),
    describeMedia('video', m.video),
    describeMedia('image', m.image),
    describeMedia('voice', m.voice),
  ].filter(Boolean);
  let line = `#${m.seq} ${formatTime(m.time, timeZone)} ${who}: ${parts.join(' ') || '(empty)'}`;
  if (m.author === Author.AUTHOR_BOT && m.processingMs) line += ` (${m.processingMs} ms)`;
  if (m.status === MessageStatus.MESSAGE_STATUS_PENDING) line += ' (waiting for a reply)';
  if (m.status === MessageStatus.MESSAGE_STATUS_FAILED || m.error) {
    line += ` (failed: ${m.error?.code ?? 'ERROR'}${m.error?.message ? ` ${m.error.message}` : ''})`;
  }
  return line;
}
