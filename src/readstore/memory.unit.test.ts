import { MemoryReadStore } from './memory';

interface Item {
  _id: string;
  owner: string;
  seq: number;
  tags?: { first: string };
  [k: string]: unknown;
}

describe('memory read store: evolves get the stored document itself', () => {
  it('with checkPurity (the projections\' tests), refuses an evolve that changes the document it is given, and keeps the document as it was', async () => {
    const c = new MemoryReadStore({ checkPurity: true }).collection<Item>('items', ['owner']);
    await c.apply('a', { stream: 's/0', offset: 1 }, () => ({ _id: 'a', owner: 'x', seq: 1 }));
    const impure = (d: Item | null): Item => {
      d!.seq = 99;
      return d!;
    };
    await expect(c.apply('a', { stream: 's/0', offset: 2 }, impure)).rejects.toThrow(TypeError);
    expect(await c.get('a')).toEqual({ _id: 'a', owner: 'x', seq: 1 });
    // The position was not taken either: the same event applied purely still counts.
    await c.apply('a', { stream: 's/0', offset: 2 }, (d) => ({ ...d!, seq: 2 }));
    expect(await c.get('a')).toEqual({ _id: 'a', owner: 'x', seq: 2 });
  });

  it('gives readers a copy: changing what get or find returned changes nothing stored', async () => {
    const c = new MemoryReadStore().collection<Item>('items', ['owner']);
    await c.apply('a', { stream: 's/0', offset: 1 }, () => ({ _id: 'a', owner: 'x', seq: 1, tags: { first: 't' } }));
    const got = (await c.get('a'))!;
    got.seq = 5;
    got.tags!.first = 'changed';
    const [found] = await c.find({ where: { owner: 'x' } });
    found!.owner = 'y';
    expect(await c.get('a')).toEqual({ _id: 'a', owner: 'x', seq: 1, tags: { first: 't' } });
    expect((await c.find({ where: { owner: 'x' } })).map((d) => d._id)).toEqual(['a']);
  });

  it('moves only the positions when an evolve returns the document unchanged, and indexes only changed fields', async () => {
    const c = new MemoryReadStore().collection<Item>('items', ['owner']);
    await c.apply('a', { stream: 's/0', offset: 1 }, () => ({ _id: 'a', owner: 'x', seq: 1 }));
    let calls = 0;
    const same = (d: Item | null) => {
      calls++;
      return d;
    };
    await c.apply('a', { stream: 's/0', offset: 2 }, same);
    await c.apply('a', { stream: 's/0', offset: 2 }, same);
    expect(calls).toBe(1);
    await c.applyMany('a', [
      { position: { stream: 's/0', offset: 3 }, evolve: (d) => ({ ...d!, seq: 3 }) },
      { position: { stream: 't/0', offset: 1 }, evolve: (d) => ({ ...d!, owner: 'y' }) },
    ]);
    expect(await c.find({ where: { owner: 'x' } })).toEqual([]);
    expect(await c.find({ where: { owner: 'y' } })).toEqual([{ _id: 'a', owner: 'y', seq: 3 }]);
    await c.apply('a', { stream: 's/0', offset: 4 }, () => null);
    expect(await c.find({ where: { owner: 'y' } })).toEqual([]);
    expect(await c.count()).toBe(0);
  });
});
