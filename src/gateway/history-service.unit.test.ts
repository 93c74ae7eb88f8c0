import pino from 'pino';
import type { ListConversationsResponse } from '../gen/chatflow/v1/history';
import { MemoryReadStore } from '../readstore/memory';
import type { Collection, Doc } from '../readstore/port';
import type { ConversationDoc, MessageDoc, SessionDoc } from '../../projections/models';
import type { FrameFactory } from './frames';
import { historyService } from './history-service';

/*
 * ListConversations and read-your-writes: a browser sends its first message,
 * gets the reply (the worker does not wait for the projector), opens the
 * history, and its conversation was missing (the projector had not applied
 * the message yet; seen in CI, test/browser.e2e.test.ts).
 */
describe('HistoryService.ListConversations', () => {
  const store = new MemoryReadStore();
  const conversations = store.collection<ConversationDoc>('conversations', ['clientId']);
  const messages = store.collection<MessageDoc>('messages', ['conversationId']);
  const sessions = store.collection<SessionDoc>('sessions', ['clientId']);
  const conv = (id: string, seq: number, started: boolean): ConversationDoc => ({ _id: id, clientId: 'alice', createdAt: seq, updatedAt: seq, createdSeq: seq, lastSeq: seq, timeZone: 'UTC', ...(started ? { started: true as const } : {}) });
  let position = 0;
  const put = <D extends Doc>(c: Collection<D>, doc: D) => c.apply(doc._id, { stream: 't/0', offset: position++ }, () => doc);
  /** What the projector still has to apply when a caller waits for it. */
  let behind: (() => Promise<void>) | undefined;
  const settledCalls: number[] = [];
  const service = historyService(
    {
      auth: { identify: async () => 'alice' } as never,
      conversations,
      messages,
      sessions,
      frames: {} as FrameFactory,
      readYourWritesMs: 1_000,
      readModelsSettled: async (ms) => {
        settledCalls.push(ms);
        await behind?.();
        behind = undefined;
        return true;
      },
    },
    pino({ level: 'silent' }),
  );
  const list = (pageToken = '') =>
    new Promise<ListConversationsResponse>((resolve, reject) =>
      service.listConversations({ request: { pageSize: 10, pageToken }, metadata: { get: () => [] } } as never, (err, res) => (err ? reject(err) : resolve(res!))),
    );

  beforeAll(async () => {
    await put(conversations, conv('c-old', 1, true));
    await put(sessions, { _id: 's-old', clientId: 'alice', conversationId: 'c-old', gatewayId: 'g', timeZone: 'UTC', connectedAt: 1, open: false });
  });
  beforeEach(() => {
    settledCalls.length = 0;
  });

  it('lists without waiting when every conversation the caller has open is there', async () => {
    expect((await list()).conversations.map((c) => c.conversationId)).toEqual(['c-old']);
    expect(settledCalls).toEqual([]);
  });

  it('waits for the read models, then lists the conversation the caller is chatting in whose first message they had not applied', async () => {
    await put(conversations, conv('c-new', 5, false)); // connected: projected, not started
    await put(sessions, { _id: 's-new', clientId: 'alice', conversationId: 'c-new', gatewayId: 'g', timeZone: 'UTC', connectedAt: 5, open: true });
    behind = () => put(conversations, conv('c-new', 5, true)); // its first message, still in the log
    expect((await list()).conversations.map((c) => c.conversationId)).toEqual(['c-new', 'c-old']);
    expect(settledCalls).toEqual([1_000]);
  });

  it('waits on a first page only: a later one lists what the first did not', async () => {
    await put(sessions, { _id: 's-new', clientId: 'alice', conversationId: 'c-empty', gatewayId: 'g', timeZone: 'UTC', connectedAt: 6, open: true });
    await list(Buffer.from('v1:5').toString('base64url'));
    expect(settledCalls).toEqual([]);
  });
});
