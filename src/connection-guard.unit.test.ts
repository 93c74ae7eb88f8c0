import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { ConnectionBudget, connectionCap, guardConnections, openFileLimit, reportedEvents, RESERVED_DESCRIPTORS } from './connection-guard';

describe('connectionCap', () => {
  test('0 means 4 per client slot and 1,000 more; a number given is kept', () => {
    expect(connectionCap(0, 50, 1_048_576)).toEqual({ max: 1200, lowered: false });
    expect(connectionCap(0, 10_000, 1_048_576)).toEqual({ max: 41_000, lowered: false });
    expect(connectionCap(300, 50, 1_048_576)).toEqual({ max: 300, lowered: false });
    expect(connectionCap(300, 50, undefined)).toEqual({ max: 300, lowered: false });
  });

  test('lowered so that the listeners full leave the reserve of the open-file limit, never below 64', () => {
    expect(connectionCap(0, 10_000, 20_000)).toEqual({ max: 20_000 - RESERVED_DESCRIPTORS, lowered: true });
    expect(connectionCap(5000, 50, 4096)).toEqual({ max: 3072, lowered: true });
    expect(connectionCap(0, 50, 1024)).toEqual({ max: 64, lowered: true });
  });
});

describe('openFileLimit', () => {
  const limits = (soft: string) => `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                20000                files\n`;
  test('the soft limit, from /proc/self/limits', () => {
    expect(openFileLimit(() => limits('20000'))).toBe(20_000);
    expect(openFileLimit(() => limits('unlimited'))).toBeUndefined();
    expect(openFileLimit(() => 'nothing of the kind')).toBeUndefined();
    expect(openFileLimit(() => {
      throw new Error('ENOENT');
    })).toBeUndefined();
  });
});

describe('guardConnections', () => {
  let server: Server;
  let port: number;
  let told: string[];
  const sockets: Socket[] = [];
  const open = () =>
    new Promise<{ socket: Socket; closed: Promise<number> }>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      sockets.push(socket);
      const started = Date.now();
      const closed = new Promise<number>((r) => socket.on('close', () => r(Date.now() - started)));
      socket.on('error', () => undefined);
      socket.on('connect', () => resolve({ socket, closed }));
    });

  beforeEach(async () => {
    const mine: string[] = []; // this server's: the last one's late closes go to its own
    told = mine;
    const events = { opened: () => void mine.push('opened'), closed: () => void mine.push('closed'), dropped: () => void mine.push('dropped'), silent: () => void mine.push('silent'), flooded: () => void mine.push('flooded'), acceptFailed: () => void mine.push('accept failed') };
    server = createServer((socket) => socket.on('data', () => undefined));
    guardConnections(server, new ConnectionBudget({ max: 3, silentMs: 300 }), 4, events);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
  });
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await new Promise((r) => server.close(r));
  });

  test('a connection that sent fewer than its opening bytes is closed after silentMs; one that sent them stays', async () => {
    const [quiet, short, speaking] = await Promise.all([open(), open(), open()]);
    short.socket.write('ab');
    speaking.socket.write('abcd');
    expect(await quiet.closed).toBeGreaterThanOrEqual(250);
    expect(await short.closed).toBeGreaterThanOrEqual(250);
    await new Promise((r) => setTimeout(r, 200));
    expect(speaking.socket.destroyed).toBe(false);
    expect(told.filter((t) => t === 'silent')).toHaveLength(2);
  });

  test('an error once listening (an accept that failed) is told, not thrown: unheard, it would end the process', () => {
    server.emit('error', Object.assign(new Error('accept ENFILE'), { code: 'ENFILE' }));
    expect(told).toEqual(['accept failed']);
  });

  test('beyond max, a new connection is closed at once and told as dropped; a place that frees is taken again', async () => {
    const held = await Promise.all([open(), open(), open()]);
    for (const h of held) h.socket.write('hello');
    const fourth = await open();
    expect(await fourth.closed).toBeLessThan(250);
    expect(told).toContain('dropped');
    held[0]!.socket.destroy();
    await held[0]!.closed;
    await new Promise((r) => setTimeout(r, 50));
    const fifth = await open();
    fifth.socket.write('hello');
    await new Promise((r) => setTimeout(r, 400));
    expect(fifth.socket.destroyed).toBe(false);
    expect(told).toEqual(['opened', 'opened', 'opened', 'dropped', 'closed', 'opened']);
  });
});

describe('a budget shared by two listeners', () => {
  test('the second drops what the first leaves no room for; a place freed on either is taken on the other', async () => {
    const budget = new ConnectionBudget({ max: 2, silentMs: 60_000 });
    const told: string[] = [];
    const events = (name: string) => ({ opened: () => undefined, closed: () => undefined, dropped: () => void told.push(`dropped ${name}`), silent: () => undefined, flooded: () => undefined, acceptFailed: () => undefined });
    const servers = [createServer(), createServer()];
    servers.forEach((s, i) => guardConnections(s, budget, 1, events(String(i))));
    const ports = await Promise.all(servers.map((s) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)))));
    const dial = (port: number) =>
      new Promise<{ socket: Socket; closed: Promise<void> }>((resolve) => {
        const socket = connect(port, '127.0.0.1');
        socket.on('error', () => undefined);
        socket.resume();
        const closed = new Promise<void>((r) => socket.on('close', () => r()));
        socket.on('connect', () => resolve({ socket, closed }));
      });
    const first = [await dial(ports[0]!), await dial(ports[0]!)];
    await new Promise((r) => setTimeout(r, 50));
    expect(budget.open).toBe(2);
    const refused = await dial(ports[1]!);
    await refused.closed;
    expect(told).toEqual(['dropped 1']);
    first[0]!.socket.destroy();
    await new Promise((r) => setTimeout(r, 50));
    const taken = await dial(ports[1]!);
    await new Promise((r) => setTimeout(r, 50));
    expect(taken.socket.destroyed).toBe(false);
    expect(budget.open).toBe(2);
    for (const c of [...first, taken]) c.socket.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    await new Promise((r) => setTimeout(r, 50)); // the sockets' own close events
    expect(budget.open).toBe(0);
  });
});

describe('reportedEvents', () => {
  test('counts by listener, and warns at most every 10 s with the counts since the last warning', () => {
    const counted: string[] = [];
    const counter = (name: string) => ({ inc: (l: { listener: string }) => void counted.push(`${name}+${l.listener}`), dec: (l: { listener: string }) => void counted.push(`${name}-${l.listener}`) });
    const warned: unknown[] = [];
    let now = 0;
    const metrics = { connectionsOpen: counter('open'), connectionsDropped: counter('dropped'), connectionsSilent: counter('silent') } as never;
    const events = reportedEvents('grpc', { max: 10, silentMs: 1000 }, metrics, { warn: (o: unknown) => void warned.push(o) } as never, () => now);
    events.opened();
    events.dropped();
    events.silent();
    events.dropped();
    now = 10_000;
    events.silent();
    events.closed();
    expect(counted).toEqual(['open+grpc', 'dropped+grpc', 'silent+grpc', 'dropped+grpc', 'silent+grpc', 'open-grpc']);
    expect(warned).toEqual([
      expect.objectContaining({ listener: 'grpc', dropped: 1, silent: 0, acceptFailed: 0, maxConnections: 10 }),
      expect.objectContaining({ listener: 'grpc', dropped: 1, silent: 2 }),
    ]);
  });
});
