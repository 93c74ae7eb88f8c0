import { decideDamage, MAX_WRITE_BYTES } from './embedded-file';

describe('decideDamage: what a bad record is', () => {
  const size = 100 * 1024 * 1024;
  it.each([
    ['the rest is at most one write and holds no valid record', { at: size - MAX_WRITE_BYTES, validRecordAfter: false }, 'torn-tail'],
    ['the rest is one byte more than one write', { at: size - MAX_WRITE_BYTES - 1, validRecordAfter: false }, 'damage'],
    ['a valid record follows, however close to the end', { at: size - 100, validRecordAfter: true }, 'damage'],
    ['10 MiB follow it (the reproduction of issue 9)', { at: size - 10 * 1024 * 1024, validRecordAfter: true }, 'damage'],
  ] as const)('given %s, then it is %s', (_, d, expected) => {
    expect(decideDamage({ ...d, size })).toBe(expected);
  });
});
