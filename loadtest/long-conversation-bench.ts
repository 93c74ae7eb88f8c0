/*
 * What the embedded read models' queries on one long conversation cost (they
 * run on the main thread's event loop, the worker thread's too): the last 11
 * messages a reply's history reads (an OpenAI-compatible model), a
 * ListMessages page from the start and from the end, a resume's replay page
 * of replies, in a conversation of `--messages` messages (two documents
 * each: the message and its reply), the messages collection kept in seq
 * order (`orderedBy`, as the projection declares it) and not, side by side.
 * Mean of `--runs` queries each, ms.
 *
 *   npx tsx loadtest/long-conversation-bench.ts [--messages 100000] [--runs 5]
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { MemoryReadStore } from '../src/readstore/memory';
import type { FindQuery } from '../src/readstore/port';
import type { MessageDoc } from '../projections/models';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { messages: { type: 'string', default: '100000' }, runs: { type: 'string', default: '5' } } });
  const messages = Number(values.messages);
  const runs = Number(values.runs);
  const docs = 2 * messages;
  const queries: [string, FindQuery<MessageDoc>][] = [
    ['a reply\'s history (last 11)', { where: { conversationId: 'long' }, sort: { field: 'seq', direction: -1 }, limit: 11 }],
    ['ListMessages, first page', { where: { conversationId: 'long' }, range: { field: 'seq', gt: 0 }, sort: { field: 'seq', direction: 1 }, limit: 101 }],
    ['ListMessages, last page', { where: { conversationId: 'long' }, range: { field: 'seq', gt: docs - 50 }, sort: { field: 'seq', direction: 1 }, limit: 101 }],
    ['resume replay, first page of replies', { where: { conversationId: 'long', author: 'bot' }, range: { field: 'seq', gt: 0 }, sort: { field: 'seq', direction: 1 }, limit: 256 }],
  ];
  console.log(`one conversation of ${messages.toLocaleString('en-US')} messages (${docs.toLocaleString('en-US')} documents), load ${loadavg().map((l) => l.toFixed(2)).join(' / ')}`);
  const results = new Map<string, number[]>();
  for (const ordered of [false, true]) {
    const store = new MemoryReadStore();
    const c = store.collection<MessageDoc>('messages', ['conversationId'], ordered ? 'seq' : undefined);
    for (let i = 0; i < docs; i++) {
      const doc = { _id: `m${i}`, conversationId: 'long', clientId: 'alice', author: i % 2 ? 'bot' : 'client', seq: i + 1, text: 'a message of an ordinary length' } as unknown as MessageDoc;
      await c.apply(doc._id, { stream: 'conversations/0', offset: i }, () => doc);
    }
    for (const [name, query] of queries) {
      await c.find(query);
      const started = process.hrtime.bigint();
      for (let r = 0; r < runs; r++) await c.find(query);
      const ms = Number(process.hrtime.bigint() - started) / 1e6 / runs;
      results.set(name, [...(results.get(name) ?? []), ms]);
    }
  }
  console.log('| query | kept in insertion order (before) | kept in seq order | ratio |\n| --- | --- | --- | --- |');
  for (const [name, [before, after]] of results) console.log(`| ${name} | ${before!.toFixed(2)} ms | ${after!.toFixed(3)} ms | ${(before! / after!).toFixed(0)}× |`);
}

void main();
