import type { ReadStore } from './port';

interface Item {
  _id: string;
  owner: string;
  seq: number;
  note?: string;
  [k: string]: unknown;
}

/**
 * The contract every ReadStore adapter (memory, MongoDB) must keep.
 * `other`, when given, is a second store on the same data (another connection,
 * as another projector process would have); without it the one store plays both.
 * A factory answering `racingWriters: false` says its engine cannot make concurrent
 * conditional writes atomic (FerretDB v1 without write tickets): the writers
 * then take turns instead of racing, which still exercises every conflict check
 * of the write path against a second connection's writes.
 */
export function describeReadStore(
  name: string,
  factory: () => Promise<{ store: ReadStore; other?: ReadStore; racingWriters?: boolean; cleanup(): Promise<void> }>,
): void {
  describe(`ReadStore contract: ${name}`, () => {
    let store: ReadStore;
    let other: ReadStore;
    let cleanup: () => Promise<void>;
    let racingWriters = true;
    let n = 0;
    const freshName = () => `items_${Date.now()}_${n++}`;
    const fresh = () => store.collection<Item>(freshName(), ['owner']);

    beforeEach(async () => {
      const f = await factory();
      ({ store, cleanup } = f);
      racingWriters = f.racingWriters ?? true;
      other = f.other ?? f.store;
    });
    afterEach(async () => cleanup?.());

    it('applies evolve to create, update and delete a document', async () => {
      const c = fresh();
      await c.apply('a', { stream: 's/0', offset: 1 }, () => ({ _id: 'a', owner: 'x', seq: 1 }));
      expect(await c.get('a')).toEqual({ _id: 'a', owner: 'x', seq: 1 });
      await c.apply('a', { stream: 's/0', offset: 2 }, (d) => ({ ...d!, seq: 2 }));
      expect((await c.get('a'))?.seq).toBe(2);
      await c.apply('a', { stream: 's/0', offset: 3 }, () => null);
      expect(await c.get('a')).toBeNull();
    });

    it('drops the named collections only; a handle taken before sees the empty collection, indexed, and takes new writes', async () => {
      const kept = fresh();
      const droppedName = freshName();
      const dropped = store.collection<Item>(droppedName, ['owner']);
      await kept.apply('k', { stream: 's/0', offset: 1 }, () => ({ _id: 'k', owner: 'x', seq: 1 }));
      await dropped.apply('d', { stream: 's/0', offset: 1 }, () => ({ _id: 'd', owner: 'x', seq: 1 }));
      await store.drop([droppedName]);
      expect(await dropped.get('d')).toBeNull();
      expect(await dropped.find({ where: { owner: 'x' } })).toEqual([]);
      expect(await kept.get('k')).toEqual({ _id: 'k', owner: 'x', seq: 1 });
      // Positions were dropped too: the rebuild applies the log from its start again.
      await dropped.apply('d', { stream: 's/0', offset: 1 }, () => ({ _id: 'd', owner: 'y', seq: 2 }));
      expect(await dropped.find({ where: { owner: 'y' } })).toEqual([{ _id: 'd', owner: 'y', seq: 2 }]);
    });

    it('ignores a position it already applied (replays are idempotent)', async () => {
      const c = fresh();
      const inc = (d: Item | null): Item => ({ _id: 'a', owner: 'x', seq: (d?.seq ?? 0) + 1 });
      await c.apply('a', { stream: 's/0', offset: 5 }, inc);
      await c.apply('a', { stream: 's/0', offset: 5 }, inc);
      await c.apply('a', { stream: 's/0', offset: 4 }, inc);
      expect((await c.get('a'))?.seq).toBe(1);
      // Another stream's offsets are independent.
      await c.apply('a', { stream: 't/0', offset: 1 }, inc);
      expect((await c.get('a'))?.seq).toBe(2);
    });

    it('applies several steps in one write, skipping those it already saw (batched projection)', async () => {
      const c = fresh();
      const inc = (d: Item | null): Item => ({ _id: 'a', owner: 'x', seq: (d?.seq ?? 0) + 1 });
      await c.apply('a', { stream: 's/0', offset: 2 }, inc);
      await c.applyMany('a', [
        { position: { stream: 's/0', offset: 1 }, evolve: inc },
        { position: { stream: 's/0', offset: 2 }, evolve: inc },
        { position: { stream: 's/0', offset: 3 }, evolve: inc },
        { position: { stream: 't/0', offset: 1 }, evolve: inc },
        { position: { stream: 's/0', offset: 4 }, evolve: inc },
      ]);
      expect((await c.get('a'))?.seq).toBe(4);
      // Replaying the same batch changes nothing.
      await c.applyMany('a', [{ position: { stream: 's/0', offset: 4 }, evolve: inc }, { position: { stream: 't/0', offset: 1 }, evolve: inc }]);
      expect((await c.get('a'))?.seq).toBe(4);
    });

    it('finds by equality, range, sort and limit', async () => {
      const c = fresh();
      for (let i = 1; i <= 6; i++) {
        await c.apply(`d${i}`, { stream: 's/0', offset: i }, () => ({ _id: `d${i}`, owner: i % 2 ? 'odd' : 'even', seq: i }));
      }
      const odd = await c.find({ where: { owner: 'odd' }, sort: { field: 'seq', direction: 1 } });
      expect(odd.map((d) => d.seq)).toEqual([1, 3, 5]);
      const page = await c.find({ where: { owner: 'even' }, range: { field: 'seq', gt: 2 }, sort: { field: 'seq', direction: 1 }, limit: 1 });
      expect(page.map((d) => d.seq)).toEqual([4]);
      const desc = await c.find({ range: { field: 'seq', lt: 6 }, sort: { field: 'seq', direction: -1 }, limit: 2 });
      expect(desc.map((d) => d.seq)).toEqual([5, 4]);
      expect(await c.count({ owner: 'odd' })).toBe(3);
      expect(await c.count()).toBe(6);
    });

    it('finds the same in a collection kept in order (orderedBy): documents that came out of order, moved, or changed index value', async () => {
      const c = store.collection<Item>(freshName(), ['owner'], 'seq');
      // 60 documents, their seqs a shuffle (a fixed one) with ties, in two owners; then some move (a new seq, a new owner, or both).
      const docs = new Map<string, Item>();
      let offset = 0;
      let x = 7;
      const next = () => (x = (x * 1103515245 + 12345) % 2 ** 31);
      const put = async (d: Item) => {
        docs.set(d._id, d);
        await c.apply(d._id, { stream: 's/0', offset: ++offset }, () => d);
      };
      for (let i = 0; i < 60; i++) await put({ _id: `d${i}`, owner: next() % 3 ? 'a' : 'b', seq: next() % 40, note: next() % 2 ? 'x' : 'y' });
      for (let i = 0; i < 60; i += 4) {
        const d = docs.get(`d${i}`)!;
        await put({ ...d, seq: i % 8 ? next() % 40 : d.seq, owner: i % 12 ? d.owner : d.owner === 'a' ? 'b' : 'a' });
      }
      await put({ _id: 'lone', owner: 'c', seq: 5 });
      const model = (owner: string, dir: 1 | -1, gt?: number, lt?: number, note?: string, limit?: number) => {
        const all = [...docs.values()]
          .filter((d) => d.owner === owner && (gt === undefined || d.seq > gt) && (lt === undefined || d.seq < lt) && (note === undefined || d.note === note))
          .map((d) => d.seq)
          .sort((a, b) => (a - b) * dir);
        return limit === undefined ? all : all.slice(0, limit);
      };
      for (const owner of ['a', 'b', 'c', 'nobody'])
        for (const dir of [1, -1] as const)
          for (const [gt, lt] of [[undefined, undefined], [10, undefined], [undefined, 30], [10, 30], [39, undefined], [undefined, 0], [20, 20]] as const)
            for (const note of [undefined, 'x'])
              for (const limit of [undefined, 1, 5]) {
                const found = await c.find({ where: { owner, ...(note ? { note } : {}) }, ...(gt !== undefined || lt !== undefined ? { range: { field: 'seq', gt, lt } } : {}), sort: { field: 'seq', direction: dir }, limit });
                expect({ owner, dir, gt, lt, note, limit, seqs: found.map((d) => d.seq) }).toEqual({ owner, dir, gt, lt, note, limit, seqs: model(owner, dir, gt, lt, note, limit) });
              }
    });

    it('keeps equality lookups right when an indexed field changes', async () => {
      const c = fresh();
      await c.apply('a', { stream: 's/0', offset: 1 }, () => ({ _id: 'a', owner: 'x', seq: 1 }));
      await c.apply('a', { stream: 's/0', offset: 2 }, (d) => ({ ...d!, owner: 'y' }));
      expect(await c.find({ where: { owner: 'x' } })).toEqual([]);
      expect((await c.find({ where: { owner: 'y' } })).map((d) => d._id)).toEqual(['a']);
    });

    it('applies concurrent writes to one document without losing any, from one store and from two', async () => {
      const name = freshName();
      const [mine, theirs] = [store.collection<Item>(name, ['owner']), other.collection<Item>(name, ['owner'])];
      const inc = (d: Item | null): Item => ({ _id: 'hot', owner: 'x', seq: (d?.seq ?? 0) + 1 });
      const writes = Array.from({ length: 20 }, (_, i) => () => (i % 2 ? theirs : mine).apply('hot', { stream: `s/${i}`, offset: 7 }, inc));
      if (racingWriters) await Promise.all(writes.map((w) => w()));
      else for (const w of writes) await w();
      expect((await mine.get('hot'))?.seq).toBe(20);
      // Every one of those positions is now seen: replaying them, even concurrently, changes nothing.
      const replays = Array.from({ length: 20 }, (_, i) => () => (i % 2 ? mine : theirs).apply('hot', { stream: `s/${i}`, offset: 7 }, inc));
      if (racingWriters) await Promise.all(replays.map((w) => w()));
      else for (const w of replays) await w();
      await mine.apply('hot', { stream: 's/3', offset: 6 }, inc);
      expect((await theirs.get('hot'))?.seq).toBe(20);
      await theirs.apply('hot', { stream: 's/3', offset: 8 }, inc);
      expect((await mine.get('hot'))?.seq).toBe(21);
    });

    it('keeps its bookkeeping out of the documents it returns', async () => {
      const c = fresh();
      await c.apply('a', { stream: 'conversations/0', offset: 1 }, () => ({ _id: 'a', owner: 'x', seq: 1 }));
      await c.apply('a', { stream: 'sessions.v2/1', offset: 1 }, (d) => ({ ...d!, seq: 2 }));
      expect(await c.get('a')).toEqual({ _id: 'a', owner: 'x', seq: 2 });
      expect(await c.find({ where: { owner: 'x' } })).toEqual([{ _id: 'a', owner: 'x', seq: 2 }]);
    });

    it('returns copies: mutating a result does not change the store', async () => {
      const c = fresh();
      await c.apply('a', { stream: 's/0', offset: 1 }, () => ({ _id: 'a', owner: 'x', seq: 1 }));
      const d = (await c.get('a'))!;
      d.seq = 99;
      expect((await c.get('a'))?.seq).toBe(1);
    });

    it('returns deep copies: nested objects and arrays of a result are the caller\'s own', async () => {
      const c = fresh();
      await c.apply('a', { stream: 's/0', offset: 1 }, () => ({ _id: 'a', owner: 'x', seq: 1, media: { key: 'k', sizeBytes: 1 }, tags: ['t'] }));
      const d = (await c.get('a')) as unknown as { media: { key: string }; tags: string[] };
      d.media.key = 'changed';
      d.tags.push('more');
      const [f] = (await c.find({ where: { owner: 'x' } })) as unknown as { media: { key: string } }[];
      f.media.key = 'changed too';
      expect(await c.get('a')).toEqual({ _id: 'a', owner: 'x', seq: 1, media: { key: 'k', sizeBytes: 1 }, tags: ['t'] });
    });
  });
}
