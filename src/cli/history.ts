import type { Metadata } from '@grpc/grpc-js';
import { Conversation, HistoryMessage, type HistoryServiceClient, type ListConversationsResponse, type ListMessagesResponse } from '../gen/chatflow/v1/history';
import { CONNECTION_OPTIONS, connectionFlags, intFlag, parse, UsageError } from './args';
import { historyClient, identityMetadata, unary } from './connection';
import { formatConversation, historyFormatter } from './render';
import { HISTORY_HELP } from './usage';

export interface HistoryQuery {
  client: HistoryServiceClient;
  md: Metadata;
  server: string;
  insecure: boolean;
  tls: boolean;
  pageSize?: number;
}

/** Follows next_page_token until the last page; returns how many items were seen. */
async function allPages<T>(page: (pageToken: string) => Promise<{ items: T[]; next: string }>, each: (item: T) => void): Promise<number> {
  let pageToken = '';
  let n = 0;
  do {
    const { items, next } = await page(pageToken);
    items.forEach(each);
    n += items.length;
    pageToken = next;
  } while (pageToken);
  return n;
}

/** Every conversation of the caller, all pages. */
export function listConversations(q: HistoryQuery, each: (c: Conversation) => void): Promise<number> {
  return allPages(async (pageToken) => {
    const req = { pageSize: q.pageSize ?? 0, pageToken };
    const res = await unary<ListConversationsResponse>(q, (cb) => q.client.listConversations(req, q.md, cb));
    return { items: res.conversations, next: res.nextPageToken };
  }, each);
}

/** The messages of one conversation after `afterSeq`, oldest first, all pages. */
export function listMessages(q: HistoryQuery, conversationId: string, afterSeq: number, each: (m: HistoryMessage) => void): Promise<number> {
  return allPages(async (pageToken) => {
    const req = { conversationId, pageSize: q.pageSize ?? 0, pageToken, afterSeq };
    const res = await unary<ListMessagesResponse>(q, (cb) => q.client.listMessages(req, q.md, cb));
    return { items: res.messages, next: res.nextPageToken };
  }, each);
}

/** `chatflow history`: conversations, or the messages of one. */
export async function historyCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    ...CONNECTION_OPTIONS,
    conversation: { type: 'string' },
    'after-seq': { type: 'string' },
    'page-size': { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(HISTORY_HELP + '\n');
    return 0;
  }
  const flags = connectionFlags(values);
  const afterSeq = intFlag('after-seq', values['after-seq']);
  const pageSize = intFlag('page-size', values['page-size'], 1, 1000);
  if (afterSeq !== undefined && !values.conversation) throw new UsageError('--after-seq needs --conversation');
  const md = (await identityMetadata(flags)).metadata;
  const client = historyClient(flags);
  const q = { client, md, server: flags.server, insecure: flags.insecure, tls: flags.tls, pageSize };
  const json = (obj: unknown) => process.stdout.write(JSON.stringify(obj) + '\n');
  try {
    if (values.conversation) {
      const format = historyFormatter(flags.timeZone);
      const n = await listMessages(q, values.conversation, afterSeq ?? 0, (m) => (flags.json ? json(HistoryMessage.toJSON(m)) : console.log(format(m))));
      if (n === 0 && !flags.json) console.log('no messages');
    } else {
      const n = await listConversations(q, (c) => (flags.json ? json(Conversation.toJSON(c)) : console.log(formatConversation(c, flags.timeZone))));
      if (n === 0 && !flags.json) console.log('no conversations yet');
    }
  } finally {
    client.close();
  }
  return 0;
}
