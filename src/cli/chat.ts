import { createInterface } from 'node:readline';
import { status, type Metadata } from '@grpc/grpc-js';
import type { UserMessage } from '../gen/chatflow/v1/chat';
import { Conversation, HistoryMessage } from '../gen/chatflow/v1/history';
import { CliError, CONNECTION_OPTIONS, connectionFlags, intFlag, parse, UsageError, type ConnectionFlags } from './args';
import { CliChatSession } from './chat-session';
import { chatClient, historyClient, identityMetadata, retryAfterMs } from './connection';
import { listConversations, listMessages } from './history';
import type { UploadKind } from '../domain/media-kind';
import { kindFromExtension, mediaContent, mediaFile, readMediaFile, tooLarge, type MediaFile } from './media';
import { LiveOutput, PlainOutput, type Output } from './output';
import { formatConversation, historyFormatter } from './render';
import { CHAT_HELP } from './usage';

const INTERACTIVE_HELP = `commands:
  <text>            send a text message
  /audio <path>     send an audio file (also /video, /image)
  /history          messages of this conversation
  /conversations    your conversations
  /ping             round trip to the server
  /quit             wait for outstanding replies, then leave`;

/** `chatflow chat`: interactive, or scripted with --send / --file. */
export async function chatCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    ...CONNECTION_OPTIONS,
    conversation: { type: 'string' },
    'resume-after': { type: 'string' },
    'replaces-session': { type: 'string' },
    'reconnect-for': { type: 'string' },
    'save-dir': { type: 'string' },
    send: { type: 'string', multiple: true },
    file: { type: 'string', multiple: true },
    'no-wait': { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(CHAT_HELP + '\n');
    return 0;
  }
  const flags = connectionFlags(values);
  const resumeAfter = intFlag('resume-after', values['resume-after']);
  const reconnectForS = intFlag('reconnect-for', values['reconnect-for']) ?? DEFAULT_RECONNECT_FOR_S;
  // Check every scripted input before connecting: a typo should not cost a session. Files are read once the server said how large they may be.
  const script: Array<UserMessage['content'] | MediaFile> = (values.send ?? []).map((text) => ({ $case: 'text', text }));
  for (const path of values.file ?? []) {
    let kind: UploadKind;
    try {
      kind = kindFromExtension(path);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    script.push(await mediaFile(kind, path));
  }

  const identity = await identityMetadata(flags);
  const md = identity.metadata.clone();
  md.set('x-timezone', flags.timeZone);
  if (values.conversation) md.set('x-conversation-id', values.conversation);
  if (resumeAfter !== undefined) md.set('x-resume-after', String(resumeAfter));
  if (values['replaces-session']) md.set('x-replaces-session', values['replaces-session']);

  const interactive = script.length === 0;
  const terminal = interactive && Boolean(process.stdin.isTTY && process.stdout.isTTY);
  // A run whose outcome a script reads: --send/--file, or lines piped in.
  const strict = !terminal;
  const output: Output = terminal && !flags.json ? new LiveOutput() : new PlainOutput();
  const client = chatClient(flags);
  const options = {
    server: flags.server, insecure: flags.insecure, tls: flags.tls, saveDir: values['save-dir'] ?? './downloads', json: flags.json, timeZone: flags.timeZone,
    resumeAfter, interactive, strict, authHint: identity.authHint, reconnectForMs: reconnectForS * 1000,
  };
  let session: CliChatSession | undefined;
  let quitting = false;
  const stopWaiting = new AbortController();
  const quit = () => {
    if (quitting || !session) return;
    quitting = true;
    if (session.outstanding > 0 && !flags.json) output.line(`waiting for ${session.outstanding} repl${session.outstanding === 1 ? 'y' : 'ies'} (Ctrl-C to stop now)`);
    session.halfClose();
  };
  const onSigint = () => {
    if (session?.welcome && !quitting) return quit();
    // Not in yet (connecting, or waiting for a slot), or a second Ctrl-C: stop now.
    stopWaiting.abort();
    session?.cancel();
  };
  process.on('SIGINT', onSigint);
  try {
    // Server full: wait for a slot as long as the server says (retry-after-ms), unless --no-wait.
    for (let attempt = 1; ; attempt++) {
      session = new CliChatSession(client, md, options, output);
      if (await session.welcomed) break;
      const s = await session.ended;
      if (s.code !== status.RESOURCE_EXHAUSTED || values['no-wait']) break;
      const ms = retryAfterMs(s) ?? DEFAULT_FULL_WAIT_MS;
      if (flags.json) output.line(JSON.stringify({ waiting: { code: s.code, name: status[s.code], details: s.details, retryAfterMs: ms, attempt } }));
      if (!(await countdown(output, ms, s.details, stopWaiting.signal))) {
        output.error('stopped while waiting for a slot');
        return 130;
      }
    }
    if (interactive) return await runInteractive(session, output, flags, identity.metadata, quit, onSigint, terminal);
    if (session.welcome) {
      const contents = await scriptContents(script, Number(session.welcome.maxMediaBytes)).catch((e: unknown) => {
        session!.cancel();
        throw e;
      });
      await Promise.race([Promise.all(contents.map((content) => session!.send(content))), session.ended]);
      quit();
    }
    return await session.finish();
  } finally {
    process.off('SIGINT', onSigint);
    client.close();
  }
}

/** The script's messages, files read; none when a file is larger than the server takes (all or nothing: a script is sent whole). */
async function scriptContents(script: Array<UserMessage['content'] | MediaFile>, maxMediaBytes: number): Promise<UserMessage['content'][]> {
  const isFile = (item: UserMessage['content'] | MediaFile): item is MediaFile => item !== undefined && 'path' in item;
  const files = script.filter(isFile);
  const refusals = files.map((file) => tooLarge(file, maxMediaBytes)).filter((why) => why !== undefined);
  if (refusals.length > 0) throw new CliError(`${refusals.join('; ')}: nothing was sent`);
  return Promise.all(script.map((item) => (isFile(item) ? readMediaFile(item, maxMediaBytes) : item)));
}

/** How long a session whose connection is lost keeps trying to come back, by default (--reconnect-for). */
const DEFAULT_RECONNECT_FOR_S = 120;

/** When the server is full and names no wait (it normally sends retry-after-ms). */
const DEFAULT_FULL_WAIT_MS = 2000;

/** Shows "server full — retrying in N s" until the wait is over; false when Ctrl-C stopped it. */
async function countdown(output: Output, ms: number, details: string, signal: AbortSignal): Promise<boolean> {
  const until = Date.now() + ms;
  const why = details ? `server full (${details.replace(/\.$/, '')})` : 'server full';
  while (!signal.aborted) {
    const left = until - Date.now();
    if (left <= 0) break;
    output.status(`${why} — retrying in ${Math.ceil(left / 1000)} s (Ctrl-C to stop; --no-wait gives up at once)`);
    await new Promise<void>((r) => {
      const timer = setTimeout(r, Math.min(1000, left));
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        r();
      }, { once: true });
    });
  }
  output.status(undefined);
  return !signal.aborted;
}

async function runInteractive(session: CliChatSession, output: Output, flags: ConnectionFlags, identity: Metadata, quit: () => void, onSigint: () => void, terminal: boolean): Promise<number> {
  const prompt = '> ';
  const rl = createInterface({ input: process.stdin, output: terminal ? process.stdout : undefined, terminal, prompt });
  const live = output instanceof LiveOutput ? output : undefined;
  if (live) live.rl = rl;
  rl.on('SIGINT', onSigint);
  // Lines run one after another; EOF (Ctrl-D, end of piped input) means /quit.
  let queue: Promise<unknown> = Promise.resolve();
  let stopped = false;
  const enqueue = (job: () => Promise<void> | void) => {
    queue = queue.then(async () => {
      if (!stopped && session.welcome) await job();
    }).catch((e: Error) => output.error(e instanceof CliError ? e.message : `failed: ${e.message}`));
  };
  rl.on('line', (line) => {
    live?.enterPressed(line, prompt);
    enqueue(() => command(line.trim()));
  });
  rl.on('close', () => enqueue(quit));
  if (terminal) rl.prompt();

  const command = async (line: string): Promise<void> => {
    const [word, ...rest] = line.split(/\s+/);
    const arg = line.slice(word!.length).trim().replace(/^(["'])(.*)\1$/, '$2');
    if (line === '') return;
    if (!line.startsWith('/')) return void session.send({ $case: 'text', text: line });
    if (live) output.line(`${prompt}${line}`);
    switch (word) {
      case '/audio':
      case '/video':
      case '/image': {
        if (rest.length === 0) throw new CliError(`usage: ${word} <path>`);
        const content = await mediaContent(word.slice(1) as UploadKind, arg, session.welcome?.maxMediaBytes);
        return void session.send(content);
      }
      case '/history':
        return showHistory(flags, identity, output, session.welcome!.conversationId);
      case '/conversations':
        return showHistory(flags, identity, output);
      case '/ping':
        return session.ping();
      case '/quit':
      case '/exit':
        stopped = true;
        return quit();
      case '/help':
        return output.line(INTERACTIVE_HELP);
      default:
        throw new CliError(`unknown command ${word}; /help lists them`);
    }
  };

  const code = await session.finish();
  stopped = true;
  rl.close();
  return code;
}

async function showHistory(flags: ConnectionFlags, md: Metadata, printer: Output, conversationId?: string): Promise<void> {
  const client = historyClient(flags);
  const q = { client, md, server: flags.server, insecure: flags.insecure, tls: flags.tls };
  const show = (text: string, obj: unknown) => printer.line(flags.json ? JSON.stringify(obj) : text);
  const format = historyFormatter(flags.timeZone);
  try {
    const n = conversationId
      ? await listMessages(q, conversationId, 0, (m) => show(format(m), HistoryMessage.toJSON(m)))
      : await listConversations(q, (c) => show(formatConversation(c, flags.timeZone), Conversation.toJSON(c)));
    if (n === 0 && !flags.json) printer.line(conversationId ? 'no messages yet' : 'no conversations yet');
  } finally {
    client.close();
  }
}
