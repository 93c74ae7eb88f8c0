// The embedded projector's cost per message, alone: the read models' evolve,
// MemoryReadStore and the runner's batching, on a message and its reply, as
// saturate feeds them (50 conversations, batches of 256), in one process with
// nothing else running. Each --server-dir's build (dist/) is loaded side by
// side and the rounds alternate between them, so two commits compare in one
// run (the first round of each warms the JIT).
//
//   npx tsx loadtest/projection-bench.ts [--messages 100000] [--rounds 4] [--server-dir DIR]...
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { EventLog, LoggedEvent } from '../src/eventlog/port';
import { ensureBuilt, REPO } from './target/process';

export interface ProjectionRound {
  dir: string;
  round: number;
  /** Per message (a message and its reply: two events). */
  wallUs: number;
  cpuUs: number;
  /** Documents in the messages collection afterwards (2 per message). */
  documents: number;
}

type Dist = {
  runner: typeof import('../projections/runner');
  memory: typeof import('../src/readstore/memory');
  events: typeof import('../src/gen/chatflow/v1/events');
  ids: typeof import('../src/domain/ids');
  models: typeof import('../projections/models');
};

function load(dir: string): Dist {
  const at = (p: string) => require(resolve(dir, 'dist', p)); // eslint-disable-line @typescript-eslint/no-require-imports
  return { runner: at('projections/runner'), memory: at('src/readstore/memory'), events: at('src/gen/chatflow/v1/events'), ids: at('src/domain/ids'), models: at('projections/models') };
}

const CONVERSATIONS = 50;
const BATCH = 256;

function events(d: Dist, n: number) {
  const out: LoggedEvent[] = [];
  const seqs = new Array<number>(CONVERSATIONS).fill(0);
  for (let i = 0; i < n; i++) {
    const c = i % CONVERSATIONS;
    const conversationId = `conv-${c}-0123456789abcdef`;
    const clientId = `client-${c}`;
    const messageId = d.ids.messageIdFor(clientId, conversationId, `cm-${i}`);
    const time = new Date(1_700_000_000_000 + i);
    const seq = (seqs[c] += 2);
    const message = d.events.Event.fromPartial({ conversationId, clientId, time, payload: { $case: 'messageReceived', messageReceived: { messageId, clientMessageId: `cm-${i}`, gatewayId: 'gw', timeZone: 'UTC', content: { $case: 'text', text: `hello number ${i}, how are you today?` } } } });
    const reply = d.events.Event.fromPartial({ conversationId, clientId, time, payload: { $case: 'responseProduced', responseProduced: { messageId: d.ids.responseIdFor(messageId), inReplyTo: messageId, text: `${'A simulated answer of about the length saturate sees. '.repeat(4)}${i}`, processingMs: 1, workerId: 'wk', model: 'simulated' } } });
    out.push({ topic: 'conversations', partition: 0, offset: 2 * i, seq: seq - 1, event: message }, { topic: 'conversations', partition: 0, offset: 2 * i + 1, seq, event: reply });
  }
  return out;
}

export async function benchProjections(opts: { messages: number; rounds: number; dirs: string[] }): Promise<ProjectionRound[]> {
  for (const dir of opts.dirs) await ensureBuilt(dir);
  const targets = opts.dirs.map((dir) => ({ dir, d: load(dir) }));
  const prepared = targets.map((t) => ({ ...t, events: events(t.d, opts.messages) }));
  const rounds: ProjectionRound[] = [];
  for (let round = 0; round < opts.rounds; round++) {
    for (const { dir, d, events: evs } of prepared) {
      const store = new d.memory.MemoryReadStore();
      // The runner as the projector role runs it (its queue and batches), fed by a log that hands out BATCH events at a time.
      let handle!: (e: LoggedEvent, signal: AbortSignal) => Promise<void>;
      const log = { consume: async (o: { handle: typeof handle }) => ((handle = o.handle), { stop: async () => {} }) } as unknown as EventLog;
      const runner = new d.runner.ProjectionRunner(log, store, { fromBeginning: true });
      await runner.start();
      const signal = new AbortController().signal;
      const cpu = process.cpuUsage();
      const wall = performance.now();
      for (let i = 0; i < evs.length; i += BATCH) await Promise.all(evs.slice(i, i + BATCH).map((e) => handle(e, signal)));
      const used = process.cpuUsage(cpu);
      const wallUs = ((performance.now() - wall) * 1000) / opts.messages;
      const documents = await store.collection(d.models.COLLECTIONS.messages).count();
      rounds.push({ dir, round, wallUs, cpuUs: (used.user + used.system) / opts.messages, documents });
    }
  }
  return rounds;
}

if (require.main === module) {
  const { values } = parseArgs({
    options: { messages: { type: 'string', default: '100000' }, rounds: { type: 'string', default: '4' }, 'server-dir': { type: 'string', multiple: true } },
  });
  const dirs = (values['server-dir'] ?? [REPO]).map((d) => resolve(d));
  benchProjections({ messages: Number(values.messages), rounds: Number(values.rounds), dirs })
    .then((rounds) => {
      console.log('| checkout | round | µs per message (wall) | µs per message (CPU) | documents |');
      console.log('| --- | --- | --- | --- | --- |');
      for (const r of rounds) console.log(`| ${r.dir} | ${r.round} | ${r.wallUs.toFixed(2)} | ${r.cpuUs.toFixed(2)} | ${r.documents} |`);
    })
    .catch((err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    });
}
