import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type {
  GetConversationRequest, GetConversationResponse, HistoryServiceServer, ListConversationsRequest, ListConversationsResponse,
  ListMessagesRequest, ListMessagesResponse,
} from '../gen/chatflow/v1/history';
import { ChatFlowError } from '../domain/errors';
import { ownershipError } from '../domain/ownership';
import type { ConversationDoc } from '../../projections/models';
import type { GatewayDeps } from './deps';
import { conversationMessage } from './frames';
import { getter } from './chat-service';
import { toStatus } from './status';
import { WIRE_FLAW_MESSAGES, wireFlawOf } from './wire-check';

type Deps = Pick<GatewayDeps, 'auth' | 'conversations' | 'messages' | 'sessions' | 'frames' | 'readModelsSettled'> & { readYourWritesMs: number };

/** HistoryService: reads the projections only, and only the caller's own data. */
export function historyService(deps: Deps, logger: Logger): HistoryServiceServer {
  const unary =
    <Req, Res>(f: (clientId: string, req: Req) => Promise<Res>) =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      deps.auth
        .identify(getter(call.metadata))
        .then((clientId) => {
          const flaw = wireFlawOf(call.request as object);
          if (flaw) throw new ChatFlowError('INVALID_ARGUMENT', WIRE_FLAW_MESSAGES[flaw]);
          return f(clientId, call.request);
        })
        .then(
          (res) => callback(null, res),
          (err) => callback(toStatus(err, logger)),
        );
    };

  const owned = async (clientId: string, conversationId: string): Promise<ConversationDoc> => {
    if (!conversationId) throw new ChatFlowError('INVALID_ARGUMENT', 'conversation_id is required');
    let conv = await deps.conversations.get(conversationId);
    if (!conv) {
      // Read your writes: a conversation created a moment ago may not be projected yet.
      if (!(await deps.readModelsSettled(deps.readYourWritesMs))) throw new ChatFlowError('UNAVAILABLE', 'the history is catching up with recent events; retry shortly');
      conv = await deps.conversations.get(conversationId);
    }
    if (!conv) throw new ChatFlowError('NOT_FOUND', `conversation ${conversationId.slice(0, 128)} not found`);
    const denied = ownershipError('conversation', conv.clientId, clientId);
    if (denied) throw denied;
    return conv;
  };

  return {
    listConversations: unary<ListConversationsRequest, ListConversationsResponse>(async (clientId, req) => {
      const pageSize = pageSizeOf(req.pageSize, 20, 100);
      const before = req.pageToken ? decodeToken(req.pageToken) : undefined;
      const list = () =>
        deps.conversations.find({
          // Only conversations with a message: connecting alone leaves nothing to show.
          where: { clientId, started: true },
          range: before === undefined ? undefined : { field: 'createdSeq', lt: before },
          sort: { field: 'createdSeq', direction: -1 },
          limit: pageSize + 1,
        });
      // Read your writes: the conversation the caller is chatting in may have its first message in the log
      // and not yet in the read models. Waited for only then (a first page without an open session's conversation).
      let [docs, open] = await Promise.all([list(), before === undefined ? deps.sessions.find({ where: { clientId, open: true } }) : []]);
      const listed = new Set(docs.map((d) => d._id));
      if (open.some((session) => !listed.has(session.conversationId)) && (await deps.readModelsSettled(deps.readYourWritesMs))) docs = await list();
      const page = docs.slice(0, pageSize);
      const conversations = await Promise.all(page.map(async (d) => conversationMessage(d, await deps.messages.count({ conversationId: d._id }))));
      return { conversations, nextPageToken: docs.length > pageSize ? encodeToken(page[page.length - 1].createdSeq) : '' };
    }),

    listMessages: unary<ListMessagesRequest, ListMessagesResponse>(async (clientId, req) => {
      await owned(clientId, req.conversationId);
      const pageSize = pageSizeOf(req.pageSize, 100, 1000);
      if (req.afterSeq < 0) throw new ChatFlowError('INVALID_ARGUMENT', 'after_seq must not be negative');
      const after = req.pageToken ? decodeToken(req.pageToken) : req.afterSeq;
      const docs = await deps.messages.find({
        where: { conversationId: req.conversationId },
        range: { field: 'seq', gt: after },
        sort: { field: 'seq', direction: 1 },
        limit: pageSize + 1,
      });
      const page = withinPageBytes(docs.slice(0, pageSize));
      return {
        messages: await Promise.all(page.map((d) => deps.frames.historyMessage(d))),
        nextPageToken: docs.length > page.length ? encodeToken(page[page.length - 1].seq) : '',
      };
    }),

    getConversation: unary<GetConversationRequest, GetConversationResponse>(async (clientId, req) => {
      const conv = await owned(clientId, req.conversationId);
      return { conversation: conversationMessage(conv, await deps.messages.count({ conversationId: conv._id })) };
    }),
  };
}

/**
 * A page of ListMessages holds about this many bytes at most (its texts and transcripts, and a KiB more per
 * message for its ids, URLs and error): a page of 1,000 long texts would be 64 MB, over the 4 MiB that gRPC
 * clients take by default (their call failed RESOURCE_EXHAUSTED), and held whole by the server until its client
 * read it. The rest comes with next_page_token, as for page_size.
 */
export const PAGE_BYTES = 1024 * 1024;

/** The first messages of `docs` that fit in PAGE_BYTES (at least one). */
function withinPageBytes<D extends { text?: string; transcript?: string }>(docs: D[]): D[] {
  let bytes = 0;
  for (let i = 0; i < docs.length; i++) {
    bytes += Buffer.byteLength(docs[i]!.text ?? '') + Buffer.byteLength(docs[i]!.transcript ?? '') + 1024;
    if (bytes > PAGE_BYTES && i > 0) return docs.slice(0, i);
  }
  return docs;
}

function pageSizeOf(requested: number, dflt: number, max: number): number {
  if (requested < 0) throw new ChatFlowError('INVALID_ARGUMENT', 'page_size must not be negative');
  if (requested > max) throw new ChatFlowError('INVALID_ARGUMENT', `page_size must be at most ${max}`);
  return requested === 0 ? dflt : requested;
}

// Page tokens are opaque to clients: a position in the ordering, base64url-encoded.
function encodeToken(position: number): string {
  return Buffer.from(`v1:${position}`).toString('base64url');
}

function decodeToken(token: string): number {
  const m = /^v1:(\d{1,15})$/.exec(Buffer.from(token, 'base64url').toString());
  if (!m) throw new ChatFlowError('INVALID_ARGUMENT', 'page_token is not one this server issued');
  return Number(m[1]);
}
