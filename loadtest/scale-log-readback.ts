/*
 * Reads a load-test run's Kafka topics back from the broker's segment files
 * (.stack/data/kafka/<prefix>conversations-<p>[.<id>-delete]/*.log): the run's
 * topics are deleted when it ends (`LOADTEST_KEEP_STACK_DATA` unset), but the
 * broker removes the files only later (at its next start), so a run can still
 * be checked against its log: every MessageReceived and its outcomes
 * (ResponseProduced, ProcessingFailed), how many messages have none or more
 * than one, and — for messages a report counted unanswered — whether the log
 * has their reply, and when it was logged.
 *
 *   npx tsx loadtest/scale-log-readback.ts <topic dir>… [--after 2026-11-23T04:34:25Z] [--ids m_a,m_b]
 *
 * Segments are Kafka record batches v2; ChatFlow produces them uncompressed.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Event } from '../src/gen/chatflow/v1/events';

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args.splice(i, 2)[1] : undefined;
};
const after = opt('after');
const ids = new Set((opt('ids') ?? '').split(',').filter(Boolean));

function zigzag(b: Buffer, o: { p: number }): number {
  let shift = 0, result = 0, byte: number;
  do {
    byte = b[o.p++]!;
    result += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return result % 2 === 0 ? result / 2 : -(result + 1) / 2;
}

/** Every event in a topic-partition directory's segments. */
function* events(dir: string): Generator<{ offset: number; event: Event }> {
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.log')).sort()) {
    const b = readFileSync(join(dir, f));
    for (let p = 0; p + 61 <= b.length; ) {
      const base = Number(b.readBigInt64BE(p));
      const len = b.readInt32BE(p + 8);
      if (len <= 0) break;
      const attrs = b.readInt16BE(p + 21);
      if ((attrs & 7) !== 0) throw new Error(`${dir}/${f}: a compressed batch (not written by ChatFlow)`);
      const count = b.readInt32BE(p + 57);
      const o = { p: p + 61 };
      for (let i = 0; i < count; i++) {
        const rlen = zigzag(b, o);
        const start = o.p;
        o.p++; // attributes
        zigzag(b, o); // timestamp delta
        const offDelta = zigzag(b, o);
        const klen = zigzag(b, o);
        o.p += Math.max(0, klen);
        const vlen = zigzag(b, o);
        const value = b.subarray(o.p, o.p + vlen);
        o.p = start + rlen;
        if ((attrs & 0x20) === 0) yield { offset: base + offDelta, event: Event.decode(value) };
      }
      p += 12 + len;
    }
  }
}

const received = new Map<string, { time: number; text?: string }>();
const outcomes = new Map<string, { time: number; kind: string }[]>();
let connected = 0, disconnected = 0;
for (const dir of args) {
  for (const { event } of events(dir)) {
    const p = event.payload;
    const time = event.time?.getTime() ?? 0;
    if (p?.$case === 'messageReceived') received.set(p.messageReceived.messageId, { time, text: p.messageReceived.content?.$case === 'text' ? p.messageReceived.content.text : undefined });
    else if (p?.$case === 'responseProduced' || p?.$case === 'processingFailed') {
      const id = p.$case === 'responseProduced' ? p.responseProduced.inReplyTo : p.processingFailed.inReplyTo;
      outcomes.set(id, [...(outcomes.get(id) ?? []), { time, kind: p.$case }]);
    } else if (p?.$case === 'clientConnected') connected++;
    else if (p?.$case === 'clientDisconnected') disconnected++;
  }
}
const none = [...received.keys()].filter((id) => !outcomes.has(id));
const twice = [...outcomes].filter(([, o]) => o.length > 1);
console.log(`${received.size} messages received; ${none.length} without an outcome, ${twice.length} with more than one; ${connected} ClientConnected, ${disconnected} ClientDisconnected`);
const lat = [...received].flatMap(([id, r]) => (outcomes.has(id) ? [outcomes.get(id)![0]!.time - r.time] : [])).sort((a, b) => a - b);
const q = (x: number) => lat[Math.min(lat.length - 1, Math.floor(x * lat.length))];
if (lat.length) console.log(`received → first outcome (event times): p50 ${q(0.5)} / p99 ${q(0.99)} / max ${lat[lat.length - 1]} ms`);
if (after) {
  const t = Date.parse(after);
  const late = [...outcomes.values()].filter((o) => o[0]!.time > t).length;
  console.log(`outcomes logged after ${after}: ${late}`);
}
for (const id of ids) {
  const r = received.get(id);
  const o = outcomes.get(id) ?? [];
  console.log(`${id}: ${r ? `received ${new Date(r.time).toISOString()}` : 'not in the log'}; ${o.length ? o.map((x) => `${x.kind} ${new Date(x.time).toISOString()}`).join(', ') : 'no outcome'}`);
}
for (const id of none.slice(0, 20)) console.log(`no outcome: ${id} (received ${new Date(received.get(id)!.time).toISOString()})`);
