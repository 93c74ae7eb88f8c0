import pino from 'pino';
import type { Event } from '../gen/chatflow/v1/events';
import { EarlyNote } from '../gen/chatflow/bus/v1/early';
import { BusEarlyStart, EARLY_NOTE_MAX_UPLOAD_BYTES, EarlyNotes, earlySubject } from './early';
import { MemoryBus } from './memory';

const logger = pino({ level: 'silent' });
const settle = () => new Promise((r) => setTimeout(r, 5));
const received = (conversationId: string, messageId: string): Event => ({
  eventId: `e-${messageId}`, time: new Date(0), clientId: 'alice', conversationId, sessionId: 's1',
  payload: { $case: 'messageReceived', messageReceived: { messageId, clientMessageId: messageId, gatewayId: 'g1', timeZone: 'UTC', content: { $case: 'text', text: 'hi' } } },
});

/** Two conversations' partitions (as the log would pick them) and one worker's side following some of them. */
function setup() {
  const bus = new MemoryBus();
  const partitionOf = (_topic: string, conversationId: string) => (conversationId === 'c0' ? 0 : 1);
  const gateway = new BusEarlyStart(bus, { partitionOf }, 'chatflow.', logger);
  const told: string[] = [];
  const uploads: (Buffer | undefined)[] = [];
  const notes = new EarlyNotes(bus, 'chatflow.', {
    begin: (e, upload) => {
      told.push(`begin ${e.eventId}`);
      uploads.push(upload);
    },
    callOff: (id) => told.push(`callOff ${id}`),
  }, logger);
  return { bus, gateway, notes, told, uploads };
}

describe('early notes over the bus (a gateway on Kafka to the worker holding the partition)', () => {
  it("reach the worker that holds the message's partition, with the event and the upload's bytes, and only it", async () => {
    const { gateway, notes, told, uploads } = setup();
    notes.follow([1]);
    gateway.begin(received('c0', 'm0'));
    gateway.begin(received('c1', 'm1'), Buffer.from('RIFF voice'));
    gateway.callOff('m0', 'c0');
    gateway.callOff('m1', 'c1');
    await settle();
    expect(told).toEqual(['begin e-m1', 'callOff m1']);
    expect(uploads.map((u) => u?.toString())).toEqual(['RIFF voice']);
  });

  it('follow the partitions as they move (a rebalance), and none once closed', async () => {
    const { gateway, notes, told } = setup();
    notes.follow([0]);
    gateway.begin(received('c0', 'a'));
    await settle();
    notes.follow([1]);
    gateway.begin(received('c0', 'b'));
    gateway.begin(received('c1', 'c'));
    await settle();
    notes.close();
    gateway.begin(received('c1', 'd'));
    await settle();
    expect(told).toEqual(['begin e-a', 'begin e-c']);
  });

  it('a text carries no upload; an upload too large for one bus message is not sent (begun when the log hands it out)', async () => {
    const { gateway, notes, told, uploads } = setup();
    notes.follow([0]);
    gateway.begin(received('c0', 'text'));
    gateway.begin(received('c0', 'huge'), Buffer.alloc(EARLY_NOTE_MAX_UPLOAD_BYTES + 1));
    await settle();
    expect(told).toEqual(['begin e-text']);
    expect(uploads).toEqual([undefined]);
  });

  it('sends nothing while the bus has lost its server (its client would hold the notes and their uploads in memory)', async () => {
    const { bus, notes, told } = setup();
    let up = false;
    const gateway = new BusEarlyStart(Object.assign(bus, { connected: () => up }), { partitionOf: () => 0 }, 'chatflow.', logger);
    notes.follow([0]);
    gateway.begin(received('c0', 'down'), Buffer.from('RIFF'));
    gateway.callOff('down', 'c0');
    up = true;
    gateway.begin(received('c0', 'up'));
    await settle();
    expect(told).toEqual(['begin e-up']);
  });

  it('a worker with no room for early work drops begins unread, and still takes call-offs (work begun before)', async () => {
    const bus = new MemoryBus();
    const gateway = new BusEarlyStart(bus, { partitionOf: () => 0 }, 'chatflow.', logger);
    const told: string[] = [];
    let room = false;
    const decoded = jest.spyOn(EarlyNote, 'decode');
    const notes = new EarlyNotes(bus, 'chatflow.', { begin: (e) => told.push(`begin ${e.eventId}`), callOff: (id) => told.push(`callOff ${id}`), roomToBegin: () => room }, logger);
    notes.follow([0]);
    gateway.begin(received('c0', 'full'), Buffer.alloc(1_000));
    gateway.callOff('earlier', 'c0');
    await settle();
    expect(decoded).toHaveBeenCalledTimes(1); // the call-off only
    room = true;
    gateway.begin(received('c0', 'room'));
    await settle();
    expect(told).toEqual(['callOff earlier', 'begin e-room']);
    decoded.mockRestore();
  });

  it('bytes that are not a note are dropped; the worker side goes on', async () => {
    const { bus, gateway, notes, told } = setup();
    notes.follow([0]);
    await bus.publish(earlySubject('chatflow.', 0), Buffer.from([0xff, 0xff, 0xff]));
    gateway.begin(received('c0', 'after'));
    await settle();
    expect(told).toEqual(['begin e-after']);
  });

  it("keeps logs that share a bus apart by their topics' prefix", () => {
    expect(earlySubject('a.', 3)).not.toBe(earlySubject('b.', 3));
    expect(earlySubject('', 3)).toMatch(/^chatflow\.early\.[A-Za-z0-9_-]+\.3$/);
  });
});
