/** A read-model document. `_id` is the document key. */
export interface Doc {
  _id: string;
  [field: string]: unknown;
}

export type Scalar = string | number | boolean;

export interface FindQuery<D extends Doc> {
  /** Equality on fields. */
  where?: Partial<Record<keyof D & string, Scalar>>;
  /** Range on one numeric field, exclusive bounds. */
  range?: { field: keyof D & string; gt?: number; lt?: number };
  sort?: { field: keyof D & string; direction: 1 | -1 };
  limit?: number;
}

/** Position of an event in the log, used to make projection writes idempotent. */
export interface Position {
  /** topic/partition the offset belongs to, e.g. "conversations/0". */
  stream: string;
  offset: number;
}

export interface Collection<D extends Doc> {
  get(id: string): Promise<D | null>;
  find(query: FindQuery<D>): Promise<D[]>;
  count(where?: FindQuery<D>['where']): Promise<number>;
  /**
   * Applies `evolve` to the document at `id` unless this document already saw
   * `position` (or a later one of the same stream): replays are no-ops.
   * `evolve` returning null deletes the document. `evolve` is pure: it must
   * not change the document it is given (the memory store gives it the stored
   * one, frozen) and hands over what it returns to the store.
   */
  apply(id: string, position: Position, evolve: (doc: D | null) => D | null): Promise<void>;
  /**
   * Several events for one document, in log order, in one write: each step is
   * skipped if the document already saw its position, as with apply().
   */
  applyMany(id: string, steps: readonly ApplyStep<D>[]): Promise<void>;
}

export interface ApplyStep<D extends Doc> {
  position: Position;
  evolve: (doc: D | null) => D | null;
}

export interface ReadStore {
  /**
   * Whether documents outlive the process (MongoDB): projections then resume
   * where they stopped. A store that starts empty (memory) is rebuilt from the
   * start of the log.
   */
  readonly persistent: boolean;
  /**
   * `indexes` lists the fields queried with `where` (created at start). `orderedBy` names the field the queries on
   * them sort by (a conversation's messages, by `seq`): a store may keep each index in that order, so that a page of
   * a long conversation costs its page, not the whole conversation. Results are the same without it.
   */
  collection<D extends Doc>(name: string, indexes?: readonly (keyof D & string)[], orderedBy?: keyof D & string): Collection<D>;
  /** Empties the named collections (a projector rebuilding its read models from the log); handles taken before stay usable. */
  drop(names: readonly string[]): Promise<void>;
  close(): Promise<void>;
}
