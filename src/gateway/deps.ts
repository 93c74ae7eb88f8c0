import type { Config } from '../config/config';
import type { ConnectionRegistry } from '../connections/port';
import type { EventLog } from '../eventlog/port';
import type { Event } from '../gen/chatflow/v1/events';
import type { Bus } from '../bus/port';
import type { MediaStore } from '../media/port';
import type { Collection } from '../readstore/port';
import type { Metrics } from '../metrics';
import type { TokenAuthority } from '../auth/tokens';
import type { ConversationDoc, MessageDoc, SessionDoc } from '../../projections/models';
import type { FrameFactory } from './frames';

/** Everything the gateway needs, passed in (no globals): engines behind ports, time and ids as functions. */
export interface GatewayDeps {
  config: Config;
  gatewayId: string;
  log: EventLog;
  registry: ConnectionRegistry;
  bus: Bus;
  media: MediaStore;
  auth: TokenAuthority;
  conversations: Collection<ConversationDoc>;
  messages: Collection<MessageDoc>;
  sessions: Collection<SessionDoc>;
  frames: FrameFactory;
  metrics: Metrics;
  /** The wall clock (see src/clock.ts): event times, a Welcome's server time. */
  clock: () => number;
  /** A steady clock (steadyClock): deadlines, timeouts and durations, which a step of the wall clock must not move. */
  steady: () => number;
  /**
   * The connection registry's time: its leases' stamps and expiries, and the
   * lease keeper's trust. The steady clock when the registry lives in this
   * process (memory: only it reads them); the wall clock when gateways share
   * it (MongoDB: each judges the others' stamps on its own clock).
   */
  leaseClock: () => number;
  newId: () => string;
  /**
   * Read-your-writes: resolves true once the read models reflect every event
   * the log held when called, false if `timeoutMs` passed first.
   */
  readModelsSettled(timeoutMs: number): Promise<boolean>;
  /** Why new messages and connections are refused now (this process's heap is nearly full, see HeapGuard), or undefined. */
  heapFull?(): string | undefined;
  /**
   * The worker of this process, on a log only this process appends to (the
   * embedded log): told of each message once checked, with its upload's
   * bytes, so its work begins while they are stored and its event appended
   * (Worker.begin), and of one that was not stored after all, so that work
   * is called off (Worker.callOff).
   */
  early?: EarlyStart;
}

/** See GatewayDeps.early. */
export interface EarlyStart {
  begin(event: Event, upload?: Buffer): void;
  /** `conversationId`: the message's, which says where its worker is on a log that partitions by conversation. */
  callOff(messageId: string, conversationId: string): void;
}

/**
 * What a session needs: the gateway's deps without the registry — a session
 * gives its slot back through `releaseSlot` (the gateway's lease keeper, which
 * gives it back later if the store cannot take it now).
 */
export type SessionDeps = Omit<GatewayDeps, 'registry'> & {
  releaseSlot(sessionId: string): Promise<unknown>;
};
