import { formatBytes } from './format-bytes';

const MiB = 1024 * 1024;

describe('formatBytes', () => {
  it('uses the largest sensible unit', () => {
    expect(formatBytes(37)).toBe('37 bytes');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(8 * MiB)).toBe('8 MiB');
    expect(formatBytes(3 * 1024 * MiB)).toBe('3 GiB');
  });
  it('falls back to exact bytes when rounding would hide the difference', () => {
    expect(formatBytes(8 * MiB + 10, 8 * MiB)).toBe('8388618 bytes');
    expect(formatBytes(9 * MiB, 8 * MiB)).toBe('9 MiB');
  });
});
