import { ConnectError } from '@connectrpc/connect';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Author, type Conversation, type HistoryMessage } from './gen/chatflow/v1/history_pb';
import type { PageChatSession } from './session';
import { el } from './view';

/**
 * The history side panel: the caller's conversations (ListConversations),
 * then the messages of one (ListMessages, oldest first), and a button to
 * continue it in the main view.
 */
export class HistoryPanel {
  private readonly list: HTMLUListElement;
  private readonly detail: HTMLElement;
  private readonly status: HTMLElement;

  constructor(
    private readonly panel: HTMLElement,
    private readonly session: () => PageChatSession | undefined,
    private readonly onContinue: (conversation: Conversation, messages: HistoryMessage[]) => void,
  ) {
    this.list = panel.querySelector<HTMLUListElement>('#conversations')!;
    this.detail = panel.querySelector<HTMLElement>('#history-detail')!;
    this.status = panel.querySelector<HTMLElement>('#history-status')!;
  }

  async refresh(): Promise<void> {
    const s = this.session();
    this.detail.replaceChildren();
    if (!s) {
      this.say('Enter your client id and connect first.');
      return;
    }
    this.say('Loading conversations…');
    // The list shown until the answer comes is the last one: marked busy, so nobody (a screen reader, a test) takes it for the new one.
    this.list.setAttribute('aria-busy', 'true');
    try {
      const res = await s.history.listConversations({ pageSize: 50 }, { headers: s.headers() });
      this.list.replaceChildren();
      if (res.conversations.length === 0) return this.say('No conversations yet.');
      this.say(`${res.conversations.length} conversation${res.conversations.length === 1 ? '' : 's'}${res.nextPageToken ? ' (most recent)' : ''}.`);
      for (const c of res.conversations) {
        const started = c.createdAt ? timestampDate(c.createdAt).toLocaleString() : 'unknown time';
        const current = c.conversationId === s.conversationId ? ' (current)' : '';
        const b = el('button', { type: 'button', class: 'conversation-item', 'data-conversation-id': c.conversationId });
        b.append(el('span', { class: 'preview' }, c.preview || '(no preview)'), el('span', { class: 'meta' }, `${started} · ${c.messageCount} messages · ${c.timeZone}${current}`));
        b.addEventListener('click', () => void this.open(c));
        const li = el('li');
        li.append(b);
        this.list.append(li);
      }
    } catch (e) {
      this.say(`Could not load the history: ${ConnectError.from(e).rawMessage}`);
    } finally {
      this.list.setAttribute('aria-busy', 'false');
    }
  }

  private async open(c: Conversation): Promise<void> {
    const s = this.session();
    if (!s) return;
    this.detail.replaceChildren(el('p', { role: 'status' }, 'Loading messages…'));
    try {
      const messages = await fetchMessages(s, c.conversationId);
      const heading = el('h3', { tabindex: '-1' }, `Conversation of ${c.createdAt ? timestampDate(c.createdAt).toLocaleString() : '?'}`);
      const ol = el('ol', { class: 'history-messages' });
      for (const m of messages) {
        const who = m.author === Author.BOT ? 'ChatFlow' : 'You';
        const what = m.text || (m.audio ? 'voice message' : m.video ? 'video' : m.image ? 'image' : '');
        const li = el('li', { class: m.author === Author.BOT ? 'bot' : 'mine' });
        li.append(el('strong', {}, `${who}: `), document.createTextNode(what));
        if (m.voice?.url) li.append(document.createTextNode(' '), el('a', { href: m.voice.url, target: '_blank', rel: 'noopener' }, '(voice)'));
        if (m.image?.url) li.append(document.createTextNode(' '), el('a', { href: m.image.url, target: '_blank', rel: 'noopener' }, '(image)'));
        ol.append(li);
      }
      const cont = el('button', { type: 'button', class: 'continue' }, 'Continue this conversation');
      cont.addEventListener('click', () => this.onContinue(c, messages));
      this.detail.replaceChildren(heading, ol, cont);
      heading.focus();
    } catch (e) {
      this.detail.replaceChildren(el('p', { role: 'alert' }, `Could not load the messages: ${ConnectError.from(e).rawMessage}`));
    }
  }

  private say(text: string): void {
    this.status.textContent = text;
  }
}

/** The messages of a conversation, oldest first (up to 1,000). */
export async function fetchMessages(s: PageChatSession, conversationId: string): Promise<HistoryMessage[]> {
  const messages: HistoryMessage[] = [];
  let pageToken = '';
  do {
    const res = await s.history.listMessages({ conversationId, pageSize: 200, pageToken }, { headers: s.headers() });
    messages.push(...res.messages);
    pageToken = res.nextPageToken;
  } while (pageToken && messages.length < 1000);
  return messages;
}
