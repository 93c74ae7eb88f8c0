/**
 * A gateway whose heap is nearly full (the embedded read models keep every
 * message in memory) refuses new messages and connections with
 * RESOURCE_EXHAUSTED, saying why, instead of collecting without end and then
 * crashing; what it accepted is still answered, resends are still
 * acknowledged, history still reads, and it takes new work again once its
 * heap is below the line. The heap is a stand-in whose readings and full
 * collections the test decides (test/stand-in-heap.ts).
 */
import { codeName, connected, metadataFor, metric, openChat, startTestApp, unary, type TestApp } from './harness';
import { StandInHeap } from './stand-in-heap';

describe('a nearly full heap', () => {
  const heap = new StandInHeap();
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ CHATFLOW_HEAP_REFUSE_PERCENT: '85' }, { heap });
  });
  afterAll(async () => t.close());

  it('refuses new messages and connections with RESOURCE_EXHAUSTED, keeps serving what it has, and takes work again below the line', async () => {
    const s = await connected(t, 'heap-client');
    const first = s.text('stored before the heap filled');
    await s.reply(first);
    expect(await metric(t, 'chatflow_heap_refusing')).toBe(0);

    heap.collectTo(90);
    expect(await metric(t, 'chatflow_heap_refusing')).toBe(1);
    // Still serving (what it has), and saying why it takes nothing new.
    const health = await fetch(`${t.app.httpUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ heap: expect.stringMatching(/nearly full/) });
    // A new message: refused in the stream, which stays open.
    const refused = s.text('one message too many');
    await s.until((f) => f.some((x) => x.frame?.$case === 'error'), 5_000, 'the refusal');
    const e = s.of('error')[0]!.error;
    expect(e.code).toBe('RESOURCE_EXHAUSTED');
    expect(e.inReplyTo).toBe(refused);
    expect(e.message).toMatch(/memory is nearly full \(3\.6 GiB of 4 GiB/);
    expect(e.message).toMatch(/already accepted are still answered/);
    // A resend of the stored message adds nothing: still acknowledged as a duplicate.
    s.text('stored before the heap filled', first);
    await s.until((f) => f.filter((x) => x.frame?.$case === 'accepted').length === 2, 5_000, 'the duplicate');
    expect(s.of('accepted')[1]!.accepted).toMatchObject({ clientMessageId: first, duplicate: true });
    // A new connection: refused before it takes a slot.
    const other = await openChat(t, 'heap-newcomer');
    const st = await other.status;
    expect(codeName(st.code)).toBe('RESOURCE_EXHAUSTED');
    expect(st.details).toMatch(/no new messages or connections/);
    expect(await metric(t, 'chatflow_admissions_refused_total{reason="memory_full"}')).toBe(1);
    // History still reads.
    const md = await metadataFor(t, 'heap-client');
    const page = await unary(t.history.listMessages.bind(t.history), { conversationId: s.welcome()!.conversationId, pageSize: 10, pageToken: '', afterSeq: 0 }, md);
    expect(page.messages.map((m) => m.text)).toContain('stored before the heap filled');

    // Still above the resume line (80 %): still refusing.
    heap.collectTo(82);
    s.text('still too many');
    await s.until((f) => f.filter((x) => x.frame?.$case === 'error').length === 2, 5_000, 'the second refusal');

    heap.collectTo(60);
    expect(await metric(t, 'chatflow_heap_refusing')).toBe(0);
    await s.reply(s.text('taken again'));
    const next = await connected(t, 'heap-newcomer');
    next.cancel();
    s.end();
    expect(codeName((await s.status).code)).toBe('OK');
  });
});
