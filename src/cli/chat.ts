import { createInterface } from 'node:readline';
import type { Metadata } from '@grpc/grpc-js';
import type { UserMessage } from '../gen/chatflow/v1/chat';
import { Conversation, HistoryMessage } from '../gen/chatflow/v1/history';
import { CliError, CONNECTION_OPTIONS, connectionFlags, intFlag, parse, UsageError, type ConnectionFlags } from './args';
import { ChatSession } from './chat-session';
import { chatClient, historyClient, identityMetadata } from './connection';
import { listConversations, listMessages } from './history';
import { kindFromExtension, mediaContent, type UploadKind } from './media';
import { formatConversation, formatHistoryMessage, Printer } from './render';
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
    'save-dir': { type: 'string' },
    send: { type: 'string', multiple: true },
    file: { type: 'string', multiple: true },
  });
  if (values.help) {
    process.stdout.write(CHAT_HELP + '\n');
    return 0;
  }
  const flags = connectionFlags(values);
  const resumeAfter = intFlag('resume-after', values['resume-after']);
  // Read every scripted input before connecting: a typo should not cost a session.
  const script: UserMessage['content'][] = (values.send ?? []).map((text) => ({ $case: 'text', text }));
  for (const path of values.file ?? []) {
    let kind: UploadKind;
    try {
      kind = kindFromExtension(path);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    script.push(await mediaContent(kind, path));
  }

  const identity = await identityMetadata(flags);
  const md = identity.clone();
  md.set('x-timezone', flags.timeZone);
  if (values.conversation) md.set('x-conversation-id', values.conversation);
  if (resumeAfter !== undefined) md.set('x-resume-after', String(resumeAfter));

  const interactive = script.length === 0;
  const printer = new Printer();
  const client = chatClient(flags.server);
  const session = new ChatSession(client, md, { server: flags.server, insecure: flags.insecure, saveDir: values['save-dir'] ?? './downloads', json: flags.json, timeZone: flags.timeZone, resumeAfter, interactive }, printer);
  const onSigint = () => (quitting ? session.cancel() : quit());
  let quitting = false;
  const quit = () => {
    if (quitting) return;
    quitting = true;
    if (session.outstanding > 0 && !flags.json) printer.line(`waiting for ${session.outstanding} repl${session.outstanding === 1 ? 'y' : 'ies'} (Ctrl-C to stop now)`);
    session.halfClose();
  };
  process.on('SIGINT', onSigint);
  try {
    if (interactive) return await runInteractive(session, printer, flags, identity, quit, onSigint);
    if (await session.welcomed) {
      await Promise.race([Promise.all(script.map((content) => session.send(content))), session.ended]);
      quit();
    }
    return await session.finish();
  } finally {
    process.off('SIGINT', onSigint);
    client.close();
  }
}

async function runInteractive(session: ChatSession, printer: Printer, flags: ConnectionFlags, identity: Metadata, quit: () => void, onSigint: () => void): Promise<number> {
  const terminal = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  const rl = createInterface({ input: process.stdin, output: terminal ? process.stdout : undefined, terminal, prompt: '> ' });
  if (terminal) printer.rl = rl;
  rl.on('SIGINT', onSigint);
  // Lines run one after another, after the Welcome; EOF (Ctrl-D, end of piped input) means /quit.
  let queue: Promise<unknown> = session.welcomed;
  let stopped = false;
  const enqueue = (job: () => Promise<void> | void) => {
    queue = queue.then(async () => {
      if (!stopped && session.welcome) await job();
    }).catch((e: Error) => printer.error(e instanceof CliError ? e.message : `failed: ${e.message}`));
  };
  rl.on('line', (line) => enqueue(() => command(line.trim())));
  rl.on('close', () => enqueue(quit));
  void session.welcomed.then((w) => w && terminal && rl.prompt());

  const command = async (line: string): Promise<void> => {
    const [word, ...rest] = line.split(/\s+/);
    const arg = line.slice(word!.length).trim().replace(/^(["'])(.*)\1$/, '$2');
    if (line === '') return void (terminal && rl.prompt());
    if (!line.startsWith('/')) return void session.send({ $case: 'text', text: line });
    switch (word) {
      case '/audio':
      case '/video':
      case '/image': {
        if (rest.length === 0) throw new CliError(`usage: ${word} <path>`);
        const content = await mediaContent(word.slice(1) as UploadKind, arg, session.welcome?.maxMediaBytes);
        return void session.send(content);
      }
      case '/history':
        return showHistory(flags, identity, printer, session.welcome!.conversationId);
      case '/conversations':
        return showHistory(flags, identity, printer);
      case '/ping':
        return session.ping();
      case '/quit':
      case '/exit':
        stopped = true;
        return quit();
      case '/help':
        return printer.line(INTERACTIVE_HELP);
      default:
        throw new CliError(`unknown command ${word}; /help lists them`);
    }
  };

  const code = await session.finish();
  stopped = true;
  rl.close();
  return code;
}

async function showHistory(flags: ConnectionFlags, md: Metadata, printer: Printer, conversationId?: string): Promise<void> {
  const client = historyClient(flags.server);
  const q = { client, md, server: flags.server, insecure: flags.insecure };
  const show = (text: string, obj: unknown) => printer.line(flags.json ? JSON.stringify(obj) : text);
  try {
    const n = conversationId
      ? await listMessages(q, conversationId, 0, (m) => show(formatHistoryMessage(m, flags.timeZone), HistoryMessage.toJSON(m)))
      : await listConversations(q, (c) => show(formatConversation(c, flags.timeZone), Conversation.toJSON(c)));
    if (n === 0 && !flags.json) printer.line(conversationId ? 'no messages yet' : 'no conversations yet');
  } finally {
    client.close();
  }
}
