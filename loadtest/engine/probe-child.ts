// A probe process of the load generator: one more client, on a connection of
// its own, in a process that holds nothing else. The scale scenario's runner
// holds 10,000 streams and 1 % of them chat; a connection attempt timed there
// waits for that process's event loop too. This one's time to refusal is the
// server's and the transport's (its own loop delay is reported beside it).
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Channels, openChat, type ChatCall, type OpenOutcome } from './connect';
import { lateness, monitorLoop, type LoopDelay } from './loop-delay';

/** An attempt as it crosses processes: the call itself stays in the probe process. */
export type ProbeOutcome = { ok: true; start: number; end: number } | Extract<OpenOutcome, { ok: false }>;

type ToProbe = { type: 'open'; endpoints: string[]; timeZone: string } | { type: 'probe'; clientId: string } | { type: 'close' };
type FromProbe = { type: 'ready' } | { type: 'outcome'; outcome: ProbeOutcome } | { type: 'closed'; loopDelayMs: LoopDelay } | { type: 'failed'; error: string };

/** The runner's side: a forked probe process, asked for one attempt at a time. */
export class ProbeProcess {
  private readonly child: ChildProcess;
  private waiting?: { type: FromProbe['type']; resolve: (m: FromProbe) => void; reject: (e: Error) => void };

  constructor() {
    this.child = fork(__filename, [], { execArgv: ['--require', 'tsx/cjs'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: FromProbe) => {
      const w = this.waiting;
      if (!w) return;
      this.waiting = undefined;
      if (m.type === 'failed') w.reject(new Error(`probe process failed: ${m.error}`));
      else if (m.type === w.type) w.resolve(m);
      else w.reject(new Error(`probe process said '${m.type}', expected '${w.type}'`));
    });
    this.child.on('exit', (code) => this.waiting?.reject(new Error(`probe process exited (${code})`)));
  }

  /** Connects a channel to each endpoint (the attempts take them in turn). */
  async open(endpoints: string[], timeZone: string): Promise<void> {
    await this.ask({ type: 'open', endpoints, timeZone }, 'ready');
  }

  async probe(clientId: string): Promise<ProbeOutcome> {
    const m = await this.ask({ type: 'probe', clientId }, 'outcome');
    return (m as Extract<FromProbe, { type: 'outcome' }>).outcome;
  }

  /** Ends the process: its event-loop delay over its life. */
  async close(): Promise<LoopDelay> {
    const m = await this.ask({ type: 'close' }, 'closed');
    return (m as Extract<FromProbe, { type: 'closed' }>).loopDelayMs;
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill();
  }

  private ask(m: ToProbe, answer: FromProbe['type']): Promise<FromProbe> {
    if (this.waiting) return Promise.reject(new Error('one question at a time'));
    return new Promise((resolve, reject) => {
      this.waiting = { type: answer, resolve, reject };
      this.child.send(m);
    });
  }
}

/** The probe process itself. */
function serve(): void {
  const loop = monitorLoop();
  let channels: Channels | undefined;
  let timeZone = 'UTC';
  let probes = 0;
  const held: ChatCall[] = [];
  const send = (m: FromProbe) => process.send!(m);
  process.on('message', (m: ToProbe) => {
    const run = async (): Promise<void> => {
      if (m.type === 'open') {
        channels = new Channels(m.endpoints, 1);
        timeZone = m.timeZone;
        await channels.warm();
        send({ type: 'ready' });
        return;
      }
      if (m.type === 'probe') {
        const o = await openChat(channels!.pick(probes++), m.clientId, timeZone);
        // Admitted past the cap (a miss the report shows): held like any client, so the count stays honest.
        if (o.ok) held.push(o.call);
        send({ type: 'outcome', outcome: o.ok ? { ok: true, start: o.start, end: o.end } : o });
        return;
      }
      for (const c of held) c.cancel();
      channels?.close();
      process.send!({ type: 'closed', loopDelayMs: lateness(loop) } satisfies FromProbe, () => process.exit(0));
    };
    run().catch((err: Error) => {
      send({ type: 'failed', error: String(err?.stack ?? err) });
      process.exit(1);
    });
  });
}

if (require.main === module) serve();
