import { timestampDate } from '@bufbuild/protobuf/wkt';
import { chatErrorView } from './chat-error';
import type { Accepted, BotResponse, ChatError, Media, ResponseDelta, Transcript } from './gen/chatflow/v1/chat_pb';
import { Author, type HistoryMessage } from './gen/chatflow/v1/history_pb';
import type { MediaKind } from './media';
import { formatBytes } from '../../src/domain/format-bytes';

/** Builds an element with text content and attributes (never innerHTML: replies are untrusted text). */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

interface LocalMedia {
  kind: MediaKind;
  name: string;
  mimeType: string;
  size: number;
  /** An object URL for a preview of what was sent. */
  url: string;
}

const clock = (d: Date) => d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

/**
 * The conversation as an ordered list: the client's messages with their state
 * (sending, sent with its seq, failed), and the replies as they stream in.
 * The list is not a live region (a streamed reply would be read word by
 * word): `announce` says each reply once, when it is complete.
 * The list follows new content to the bottom unless the user scrolled up,
 * also when an image or player finishes loading and grows.
 */
export class MessageList {
  private readonly mine = new Map<string, HTMLLIElement>();
  private readonly cmidOf = new Map<string, string>();
  private readonly replies = new Map<string, HTMLLIElement>();
  private follow = true;

  constructor(
    readonly list: HTMLOListElement,
    private readonly announce: (text: string) => void = () => undefined,
  ) {
    const box = list.parentElement;
    box?.addEventListener('scroll', () => {
      this.follow = box.scrollHeight - box.scrollTop - box.clientHeight < 48;
    });
  }

  clear(): void {
    this.follow = true;
    this.list.replaceChildren();
    this.mine.clear();
    this.cmidOf.clear();
    this.replies.clear();
  }

  /** A message the user just sent (or is sending). */
  addMine(clientMessageId: string, content: { text?: string; media?: LocalMedia }): void {
    const li = el('li', { class: 'msg mine', 'data-cmid': clientMessageId });
    li.append(el('p', { class: 'who' }, `You · ${clock(new Date())}`));
    if (content.text !== undefined) li.append(el('p', { class: 'text' }, content.text));
    if (content.media) li.append(mediaPreview(content.media));
    const state = el('p', { class: 'state' }, 'Sending…');
    li.append(state);
    this.mine.set(clientMessageId, li);
    // What the user just sent is always shown, even if they had scrolled up.
    this.follow = true;
    this.followMedia(li);
    this.append(li);
  }

  accepted(a: Accepted): void {
    this.cmidOf.set(a.messageId, a.clientMessageId);
    const li = this.mine.get(a.clientMessageId);
    if (!li) return;
    li.dataset.messageId = a.messageId;
    li.classList.remove('failed');
    li.querySelector('.retry')?.remove();
    setState(li, `Sent · #${a.seq}`);
  }

  /** What the server heard in a voice or video message, under that message. */
  transcript(t: Transcript): void {
    const li = this.mine.get(this.cmidOf.get(t.messageId) ?? '');
    if (li) addTranscript(li, t.text);
  }

  delta(d: ResponseDelta): void {
    const li = this.reply(d.inReplyTo);
    if (li.dataset.done === '1') return;
    const text = li.querySelector('.text')!;
    text.textContent = (text.textContent ?? '') + d.textDelta;
    this.scroll();
  }

  response(r: BotResponse): void {
    const li = this.reply(r.inReplyTo);
    li.dataset.done = '1';
    li.dataset.messageId = r.messageId;
    li.querySelector('.text')!.textContent = r.text;
    if (r.time) li.querySelector('.who')!.textContent = `ChatFlow · ${clock(timestampDate(r.time))}`;
    if (r.voice?.url) li.append(voicePlayer(r.voice));
    if (r.image?.url) li.append(imageReply(r.image, r.text));
    li.append(el('p', { class: 'state' }, `Answered in ${formatMs(Number(r.processingMs))} · #${r.seq}`));
    li.setAttribute('aria-busy', 'false');
    const mine = this.mine.get(this.cmidOf.get(r.inReplyTo) ?? '');
    if (mine) setState(mine, `${mine.querySelector('.state')?.textContent?.split(' · Answered')[0] ?? 'Sent'} · Answered`);
    this.followMedia(li);
    this.scroll();
    this.announce(`ChatFlow replied: ${r.text}${r.voice?.url ? ' (with a voice reply)' : ''}${r.image?.url ? ' (with a picture)' : ''}`);
  }

  /**
   * A per-message problem. Refused before the log: in_reply_to is the
   * client_message_id, the message is "not sent". Failed in processing (it
   * has a seq): in_reply_to is the message id, the message was sent but not
   * answered. When the server says it may pass (retry_after_ms), `sendAgain`
   * gives what sends it again: under its own id when it was not taken, as a
   * new message when it failed (its id has its outcome); offered once the
   * server's wait is over.
   */
  error(e: ChatError, sendAgain: (clientMessageId: string, asNew: boolean) => (() => void) | undefined = () => undefined): void {
    const { text, sendAgainInMs } = chatErrorView(e);
    const clientMessageId = this.cmidOf.get(e.inReplyTo);
    if (clientMessageId === undefined) {
      if (this.mine.has(e.inReplyTo)) this.failed(e.inReplyTo, text, sendAgainInMs ? sendAgain(e.inReplyTo, false) : undefined);
      else this.system(`Error: ${text}`);
      return;
    }
    const li = this.reply(e.inReplyTo);
    li.dataset.done = '1';
    li.classList.add('failed');
    li.querySelector('.text')!.textContent = `No answer: ${text}`;
    li.setAttribute('aria-busy', 'false');
    li.querySelector('.retry')?.remove();
    const again = sendAgainInMs ? sendAgain(clientMessageId, true) : undefined;
    if (again) li.append(sendAgainButton(again, sendAgainInMs!));
    this.announce(`No answer: ${text}`);
    const mine = this.mine.get(clientMessageId);
    if (mine) setState(mine, `${mine.querySelector('.state')?.textContent ?? 'Sent'} · Not answered`);
    this.scroll();
  }

  failed(clientMessageId: string, text: string, onRetry?: () => void): void {
    const li = this.mine.get(clientMessageId);
    if (!li) return this.system(text);
    li.classList.add('failed');
    setState(li, `Not sent — ${text}`);
    li.querySelector('.retry')?.remove();
    if (onRetry) {
      const b = el('button', { type: 'button', class: 'retry' }, 'Retry');
      b.addEventListener('click', () => {
        b.remove();
        li.classList.remove('failed');
        setState(li, 'Sending…');
        onRetry();
      });
      li.append(b);
    }
  }

  system(text: string): void {
    this.append(el('li', { class: 'msg system' }, text));
  }

  /** A message from HistoryService (continuing a conversation). */
  addHistory(m: HistoryMessage): void {
    const bot = m.author === Author.BOT;
    const li = el('li', { class: `msg ${bot ? 'bot' : 'mine'}` });
    const when = m.time ? clock(timestampDate(m.time)) : '';
    li.append(el('p', { class: 'who' }, `${bot ? 'ChatFlow' : 'You'}${when ? ` · ${when}` : ''}`));
    if (m.text) li.append(el('p', { class: 'text' }, m.text));
    if (bot) {
      if (m.voice?.url) li.append(voicePlayer(m.voice));
      if (m.image?.url) li.append(imageReply(m.image, m.text));
    } else {
      for (const [kind, media] of [['audio', m.audio], ['video', m.video], ['image', m.image]] as const) {
        if (media?.url) li.append(mediaPreview({ kind, name: 'sent earlier', mimeType: media.mimeType, size: Number(media.sizeBytes), url: media.url }));
      }
      if (m.transcript) addTranscript(li, m.transcript);
    }
    li.append(el('p', { class: 'state' }, m.error ? `Failed — ${m.error.message}` : `#${m.seq}`));
    if (!bot) {
      this.cmidOf.set(m.messageId, m.clientMessageId);
      this.mine.set(m.clientMessageId, li);
    } else {
      li.dataset.done = '1';
      this.replies.set(m.inReplyTo, li);
    }
    this.followMedia(li);
    this.append(li);
  }

  /** The bubble of the reply to a message, created on its first delta. */
  private reply(inReplyTo: string): HTMLLIElement {
    let li = this.replies.get(inReplyTo);
    if (li) return li;
    li = el('li', { class: 'msg bot', 'aria-busy': 'true', 'data-in-reply-to': inReplyTo });
    li.append(el('p', { class: 'who' }, 'ChatFlow'), el('p', { class: 'text' }));
    this.replies.set(inReplyTo, li);
    this.append(li);
    return li;
  }

  private append(li: HTMLLIElement): void {
    this.list.append(li);
    this.scroll();
  }

  private scroll(): void {
    const box = this.list.parentElement;
    if (box && this.follow) box.scrollTop = box.scrollHeight;
  }

  /** Images and players change height when they load: scroll again then (after, not before). */
  private followMedia(li: HTMLLIElement): void {
    for (const m of li.querySelectorAll('img, video, audio')) {
      m.addEventListener(m.tagName === 'IMG' ? 'load' : 'loadedmetadata', () => this.scroll(), { once: true });
    }
  }
}

function setState(li: HTMLLIElement, text: string): void {
  let s = li.querySelector<HTMLParagraphElement>('.state');
  if (!s) {
    s = el('p', { class: 'state' });
    li.append(s);
  }
  s.textContent = text;
}

function voicePlayer(voice: Media): HTMLElement {
  const figure = el('figure', { class: 'voice' });
  const audio = el('audio', { controls: '', preload: 'metadata', src: voice.url, 'aria-label': 'Voice reply' });
  figure.append(audio, el('figcaption', {}, `Voice reply${voice.durationMs ? ` · ${formatMs(Number(voice.durationMs))}` : ''}`));
  return figure;
}

function imageReply(image: Media, text: string): HTMLElement {
  return el('img', { class: 'reply-image', src: image.url, alt: `Picture for the reply: ${text.slice(0, 120)}`, loading: 'lazy' });
}

function mediaPreview(m: LocalMedia): HTMLElement {
  const figure = el('figure', { class: `attachment ${m.kind}` });
  const label = `${m.kind === 'audio' ? 'Voice message' : m.kind === 'video' ? 'Video' : 'Image'}: ${m.name} (${formatBytes(m.size)})`;
  if (m.kind === 'image') figure.append(el('img', { src: m.url, alt: label }));
  else figure.append(el(m.kind, { controls: '', preload: 'metadata', src: m.url, 'aria-label': label }));
  figure.append(el('figcaption', {}, label));
  return figure;
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** "Send again", enabled once the server's retry_after_ms has passed (before, the text says when); used once. */
function sendAgainButton(onClick: () => void, afterMs: number): HTMLButtonElement {
  const b = el('button', { type: 'button', class: 'retry', disabled: '' }, 'Send again');
  window.setTimeout(() => b.removeAttribute('disabled'), afterMs);
  b.addEventListener('click', () => {
    b.remove();
    onClick();
  });
  return b;
}

function addTranscript(li: HTMLLIElement, text: string): void {
  li.querySelector('.transcript')?.remove();
  li.insertBefore(el('p', { class: 'transcript' }, text ? `Heard: “${text}”` : 'Heard no words'), li.querySelector('.state'));
}
