import { LATE, orLate } from './late';

describe('orLate', () => {
  it('gives the value of work that settles in time, LATE otherwise, and a rejection in time as a rejection', async () => {
    expect(await orLate(Promise.resolve(7), 1_000)).toBe(7);
    expect(await orLate(new Promise<number>(() => undefined), 10)).toBe(LATE);
    await expect(orLate(Promise.reject(new Error('no')), 1_000)).rejects.toThrow('no');
  });
});
