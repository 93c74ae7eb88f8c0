/**
 * ChatFlow in the browser: connects over gRPC-Web (ChatService.Connect +
 * Send, HistoryService) to the embedded endpoint or to Envoy, streams replies
 * as they are produced, sends text, files and voice recordings.
 */
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import type { ServerFrame, Welcome } from './gen/chatflow/v1/chat_pb';
import { clientIdProblem, forgetToken, hasToken, resolveIdentity } from './auth';
import { fetchMessages, HistoryPanel } from './history';
import { kindOf, mediaContent, mimeTypeOf, VoiceRecorder } from './media';
import { lastClientId, placeOf, rememberClientId, rememberPlace, type Place } from './resume';
import { PageChatSession, newId, type Content, type ConnState, type Notice } from './session';
import { readSettings } from './settings';
import { formatBytes } from '../../src/domain/format-bytes';
import { codePointLength } from '../../src/domain/code-points';
import { MessageList } from './view';
import { VoiceStream } from './voice-stream';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const settings = readSettings();
const form = $<HTMLFormElement>('connect-form');
const clientIdInput = $<HTMLInputElement>('client-id');
const zoneInput = $<HTMLInputElement>('time-zone');
const tokenInput = $<HTMLInputElement>('token');
const connectButton = $<HTMLButtonElement>('connect-button');
const statusLine = $<HTMLParagraphElement>('status');
const notice = $<HTMLDivElement>('notice');
const noticeText = $<HTMLSpanElement>('notice-text');
const noticeCountdown = $<HTMLSpanElement>('notice-countdown');
const noticeAction = $<HTMLButtonElement>('notice-action');
const composer = $<HTMLFormElement>('composer');
const input = $<HTMLTextAreaElement>('message-input');
const fileInput = $<HTMLInputElement>('file-input');
const attachButton = $<HTMLButtonElement>('attach-button');
const recordButton = $<HTMLButtonElement>('record-button');
const historyToggle = $<HTMLButtonElement>('history-toggle');
const historyPanel = $<HTMLElement>('history');

const announcer = $<HTMLParagraphElement>('announcer');
const messages = new MessageList($<HTMLOListElement>('messages'), (text) => (announcer.textContent = text));
const recorder = new VoiceRecorder();
/** What each message carried and how it was shown, to send it again (with the same id, or as a new message). */
const sent = new Map<string, { content: Content; shown: Parameters<MessageList['addMine']>[1] }>();
let session: PageChatSession | undefined;
let countdown: number | undefined;

// ---------------------------------------------------------------------------
// Defaults: the browser's own time zone, the last client id used here.

const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
zoneInput.value = browserZone;
const zoneList = $<HTMLDataListElement>('time-zones');
const supportedValuesOf = (Intl as unknown as { supportedValuesOf?: (k: string) => string[] }).supportedValuesOf;
for (const z of supportedValuesOf?.('timeZone') ?? [browserZone]) zoneList.append(new Option(z, z));
clientIdInput.value = lastClientId();
$('api-info').textContent = settings.apiUrl === window.location.origin ? 'this server (embedded gRPC-Web)' : settings.apiUrl;
$('token-optional').hidden = !settings.devTokens;
$('token-help').textContent = settings.devTokens
  ? 'Development server: leave it empty and a token is issued for the client id you enter. Or paste one.'
  : 'Needed to connect. In a terminal on the server\'s machine run: npm run client -- token <client-id>, and paste what it prints here.';
if (settings.refusedApi) showNotice({ kind: 'refused', text: `Ignored ?api=${settings.refusedApi}: this server only lets the page talk to ${settings.apiUrl}.` });
if (!VoiceRecorder.supported()) {
  recordButton.disabled = true;
  recordButton.title = 'Recording needs a browser with MediaRecorder, on https or localhost';
}

// ---------------------------------------------------------------------------
// Connection.

form.addEventListener('submit', (e) => {
  e.preventDefault();
  if (session && (session.state === 'connected' || session.state === 'connecting' || session.state === 'waiting')) {
    session.disconnect();
    return;
  }
  void start();
});

/** Resolves who we are and connects. */
async function start(): Promise<PageChatSession | undefined> {
  const clientId = clientIdInput.value.trim();
  const problem = clientIdProblem(clientId);
  if (problem) {
    showNotice({ kind: 'refused', text: problem });
    clientIdInput.focus();
    return undefined;
  }
  const zone = zoneInput.value.trim() || browserZone;
  let identity;
  try {
    identity = await resolveIdentity(clientId, tokenInput.value.trim(), settings.devTokens);
  } catch (err) {
    showNotice({ kind: 'auth', text: `Could not get a token: ${(err as Error).message}` });
    return undefined;
  }
  if (identity.clientId !== clientId) clientIdInput.value = identity.clientId;
  rememberClientId(identity.clientId);
  if (!session || session.identity.clientId !== identity.clientId) {
    session?.disconnect();
    messages.clear();
    sent.clear();
    session = new PageChatSession(settings.apiUrl, identity, zone, { state: onState, notice: showNotice, frame: onFrame, sendFailed: onSendFailed });
    // Back to where this browser was with this client id (a reload, or Connect after a disconnect).
    const place = placeOf(identity.clientId);
    if (place) {
      await resume(session, place);
      return session;
    }
  } else {
    session.identity = identity;
    session.timeZone = zone;
  }
  session.connect();
  return session;
}

/** Shows the messages of a remembered conversation, then reconnects to it, replaying only what came after them. */
async function resume(s: PageChatSession, place: Place): Promise<void> {
  let shown: Awaited<ReturnType<typeof fetchMessages>>;
  try {
    shown = await fetchMessages(s, place.conversationId);
  } catch (e) {
    const code = ConnectError.from(e).code;
    if (code === Code.NotFound || code === Code.PermissionDenied) {
      // Gone (another server, wiped data) or not ours: start afresh rather than fail.
      rememberPlace(s.identity.clientId, undefined);
      s.connect();
    } else {
      // Not readable now (a token to renew, the server away): connecting says why, and resumes.
      s.continueConversation(place.conversationId, place.lastSeq);
    }
    return;
  }
  messages.clear();
  for (const m of shown) messages.addHistory(m);
  const seen = shown.reduce((max, m) => (m.seq > max ? m.seq : max), 0n);
  s.continueConversation(place.conversationId, seen);
}

/** Remembers the conversation and the last seq seen, for the next load of the page. */
function savePlace(): void {
  if (session?.conversationId) rememberPlace(session.identity.clientId, { conversationId: session.conversationId, lastSeq: session.lastSeq });
}

function onState(state: ConnState, welcome?: Welcome): void {
  document.body.dataset.state = state;
  const busy = state === 'connected' || state === 'connecting' || state === 'waiting';
  connectButton.textContent = busy ? 'Disconnect' : 'Connect';
  clientIdInput.readOnly = busy;
  zoneInput.readOnly = busy;
  tokenInput.readOnly = busy;
  statusLine.dataset.state = state;
  if (state === 'connected') savePlace();
  switch (state) {
    case 'connected': {
      const w = welcome!;
      const local = w.localTime ? w.localTime.slice(11, 16) : '';
      statusLine.textContent = `Connected as ${w.clientId} · ${w.timeZone}${local ? ` (local time ${local})` : ''}`;
      if (w.serverTime) statusLine.title = `server time ${timestampDate(w.serverTime).toISOString()} · conversation ${w.conversationId}`;
      break;
    }
    case 'connecting':
      statusLine.textContent = 'Connecting…';
      break;
    case 'waiting':
      statusLine.textContent = 'Not connected — will retry';
      break;
    case 'idle':
    case 'refused':
      statusLine.textContent = 'Not connected';
      break;
  }
}

function showNotice(n: Notice | undefined): void {
  window.clearInterval(countdown);
  countdown = undefined;
  noticeAction.hidden = true;
  if (!n) {
    notice.hidden = true;
    notice.dataset.kind = '';
    noticeText.textContent = '';
    noticeCountdown.textContent = '';
    return;
  }
  notice.hidden = false;
  notice.dataset.kind = n.kind;
  noticeText.textContent = n.text;
  noticeCountdown.textContent = '';
  if (n.retryAt !== undefined) {
    const verb = n.kind === 'full' ? 'retrying' : 'reconnecting';
    const tick = () => {
      const s = Math.max(0, Math.ceil((n.retryAt! - Date.now()) / 1000));
      noticeCountdown.textContent = ` — ${verb} in ${s} s`;
    };
    tick();
    countdown = window.setInterval(tick, 250);
    noticeAction.textContent = 'Retry now';
    noticeAction.hidden = false;
    noticeAction.onclick = () => session?.connect();
  } else if (n.kind === 'duplicate' || n.kind === 'idle') {
    noticeAction.textContent = 'Connect again';
    noticeAction.hidden = false;
    noticeAction.onclick = () => session?.connect();
  } else if (n.kind === 'auth' && session) {
    forgetToken(session.identity.clientId);
    tokenInput.focus();
  }
}

const voiceStream = new VoiceStream();

function onFrame(frame: ServerFrame): void {
  const f = frame.frame;
  if (f.case === 'accepted' || f.case === 'response' || f.case === 'error') savePlace();
  switch (f.case) {
    case 'accepted':
      return messages.accepted(f.value);
    case 'delta':
      return messages.delta(f.value);
    case 'transcript':
      return messages.transcript(f.value);
    case 'response':
      return messages.response(f.value);
    case 'error':
      return messages.error(f.value, sendAgain);
    case 'voiceChunk':
      return voiceStream.push(f.value);
    case 'welcome':
    case 'pong':
    case undefined:
      return;
  }
}

function onSendFailed(clientMessageId: string, text: string, retryable: boolean): void {
  messages.failed(clientMessageId, text, retryable ? sendAgain(clientMessageId, false) : undefined);
}

/** What sends the user's message again: under its own id when it was not taken, as a new message (`asNew`) when its id has an outcome. */
function sendAgain(clientMessageId: string, asNew: boolean): (() => void) | undefined {
  const mine = sent.get(clientMessageId);
  if (!mine) return undefined;
  return asNew ? () => void sendContent(mine.content, mine.shown) : () => session?.retry(clientMessageId, mine.content);
}

// ---------------------------------------------------------------------------
// Sending: text (Enter sends, Shift+Enter is a new line), files, recordings.

async function sendContent(content: Content, shown: Parameters<MessageList['addMine']>[1]): Promise<void> {
  const s = session ?? (await start());
  if (!s) return;
  const id = newId();
  sent.set(id, { content, shown });
  messages.addMine(id, shown);
  s.send(content, id);
}

composer.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = input.value;
  if (!text.trim()) return;
  // Counted as the server counts (code points: an emoji is one character); the text stays in the box to be shortened.
  const chars = codePointLength(text);
  if (settings.maxTextChars !== undefined && chars > settings.maxTextChars) {
    showNotice({ kind: 'info', text: `Your message is ${chars.toLocaleString('en-US')} characters; the limit is ${settings.maxTextChars.toLocaleString('en-US')}. Shorten it, or send it in parts.` });
    return;
  }
  if (notice.dataset.kind === 'info') showNotice(undefined);
  input.value = '';
  void sendContent({ case: 'text', value: text }, { text });
});

input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    composer.requestSubmit();
  }
});

attachButton.addEventListener('click', () => fileInput.click());

fileInput.addEventListener('change', () => {
  const files = [...(fileInput.files ?? [])];
  fileInput.value = '';
  for (const file of files) void sendFile(file, file.name);
});

async function sendFile(file: Blob, name: string, declared?: string): Promise<void> {
  const mimeType = declared ?? mimeTypeOf({ name, type: file.type });
  const kind = kindOf(mimeType);
  if (!kind) {
    showNotice({ kind: 'info', text: `${name}: only audio, video or image files can be sent.` });
    return;
  }
  const limit = session?.maxMediaBytes ?? 8 * 1024 * 1024;
  if (file.size > limit) {
    showNotice({ kind: 'info', text: `${name} is ${formatBytes(file.size)}; the limit is ${formatBytes(limit)}.` });
    return;
  }
  const content = await mediaContent(kind, mimeType, file);
  await sendContent(content, { media: { kind, name, mimeType, size: file.size, url: URL.createObjectURL(file) } });
}

recordButton.addEventListener('click', () => void toggleRecording());

async function toggleRecording(): Promise<void> {
  if (recorder.recording) {
    recordButton.setAttribute('aria-pressed', 'false');
    recordButton.textContent = 'Record voice';
    const { blob, mimeType } = await recorder.stop();
    await sendFile(blob, `recording.${mimeType.split('/')[1]}`, mimeType);
    return;
  }
  try {
    await recorder.start();
    recordButton.setAttribute('aria-pressed', 'true');
    recordButton.textContent = 'Stop and send';
  } catch (err) {
    showNotice({ kind: 'info', text: `Cannot record: ${(err as Error).message}` });
  }
}

// ---------------------------------------------------------------------------
// History panel.

const history = new HistoryPanel(historyPanel, () => session, (conversation, list) => {
  messages.clear();
  for (const m of list) messages.addHistory(m);
  session?.continueConversation(conversation.conversationId, list.reduce((max, m) => (m.seq > max ? m.seq : max), 0n));
  setHistoryOpen(false);
  input.focus();
});

function setHistoryOpen(open: boolean): void {
  historyPanel.hidden = !open;
  historyToggle.setAttribute('aria-expanded', String(open));
  if (open) {
    void history.refresh();
    $('history-title').focus();
  } else if (historyPanel.contains(document.activeElement)) {
    historyToggle.focus();
  }
}

historyToggle.addEventListener('click', () => setHistoryOpen(historyPanel.hidden));
$('history-close').addEventListener('click', () => setHistoryOpen(false));
$('history-refresh').addEventListener('click', () => void history.refresh());
$('new-conversation').addEventListener('click', () => {
  messages.clear();
  if (session) rememberPlace(session.identity.clientId, undefined);
  session?.newConversation();
  if (session && session.state !== 'idle' && session.state !== 'refused') session.connect();
  setHistoryOpen(false);
  input.focus();
});
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && !historyPanel.hidden) setHistoryOpen(false);
});

// Leaving the page closes the stream now, so the server frees the slot at once.
window.addEventListener('pagehide', () => session?.disconnect());

// A reload comes back to the conversation it showed, when this tab can still sign in without asking.
void (async () => {
  const clientId = clientIdInput.value;
  if (!clientId || clientIdProblem(clientId) || !placeOf(clientId)) return;
  if (!settings.devTokens && !hasToken(clientId)) return;
  await start();
})();
