/** Delivers finished responses and deltas to the gateway that holds the client's stream. */
export interface Bus {
  publish(subject: string, payload: Uint8Array): Promise<void>;
  subscribe(subject: string, handler: (payload: Uint8Array) => void): Subscription;
  close(): Promise<void>;
}

export interface Subscription {
  unsubscribe(): void;
}

/** Subject for everything addressed to one client (safe for NATS whatever the client id). */
export function clientSubject(clientId: string): string {
  return `chatflow.client.${Buffer.from(clientId, 'utf8').toString('base64url')}`;
}
