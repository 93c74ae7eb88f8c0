import { clearLine, cursorTo, type Interface } from 'node:readline';
import type { Media } from '../gen/chatflow/v1/chat';
import { Author, MessageStatus, type Conversation, type HistoryMessage } from '../gen/chatflow/v1/history';

/**
 * Writes lines for humans without garbling an interactive prompt: the prompt
 * is cleared before output and shown again after. Deltas are written inline
 * on a "bot:" line that stays open until something else is printed.
 */
export class Printer {
  private inline: string | undefined;
  rl?: Interface;

  constructor(private readonly out: NodeJS.WriteStream = process.stdout) {}

  line(text: string): void {
    this.closeInline();
    this.clearPrompt();
    this.out.write(text + '\n');
    this.rl?.prompt(true);
  }

  error(text: string): void {
    this.closeInline();
    this.clearPrompt();
    process.stderr.write(text + '\n');
    this.rl?.prompt(true);
  }

  /** Appends streamed text for `key` (a message id); starts a new "bot:" line when needed. */
  delta(key: string, text: string): void {
    if (this.inline !== key) {
      this.closeInline();
      this.clearPrompt();
      this.out.write('bot: ');
      this.inline = key;
    }
    this.out.write(text);
  }

  /** True when `key`'s inline line is still open (its reply text is already on screen). */
  isOpen(key: string): boolean {
    return this.inline === key;
  }

  /** The session is over: clear the prompt and stop showing it. */
  endPrompt(): void {
    this.clearPrompt();
    this.rl = undefined;
  }

  closeInline(): void {
    if (this.inline === undefined) return;
    this.inline = undefined;
    this.out.write('\n');
  }

  private clearPrompt(): void {
    if (this.rl && this.out.isTTY) {
      clearLine(this.out, 0);
      cursorTo(this.out, 0);
    }
  }
}

/** `2024-05-01 14:03:22` in the given zone. */
export function formatTime(d: Date | undefined, timeZone: string): string {
  if (!d) return '-';
  try {
    return d.toLocaleString('sv-SE', { timeZone, hour12: false });
  } catch {
    return d.toISOString();
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
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
  return `${c.conversationId}  ${count}, last seq ${c.lastSeq}, updated ${formatTime(c.updatedAt, timeZone)}${c.timeZone ? ` (${c.timeZone})` : ''}`;
}

export function formatHistoryMessage(m: HistoryMessage, timeZone: string): string {
  const who = m.author === Author.AUTHOR_BOT ? 'bot' : 'you';
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
