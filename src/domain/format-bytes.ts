/**
 * "9.1 MiB", "512 KiB", "37 bytes": sizes as people read them, the same in
 * error messages, model replies, the CLI and the page (which imports this
 * file too, so it imports nothing). With `distinctFrom`, adds precision so
 * the two never read the same ("8388609 bytes" next to a limit of "8 MiB").
 */
export function formatBytes(n: number, distinctFrom?: number): string {
  const units: Array<[number, string]> = [[1024 ** 3, 'GiB'], [1024 ** 2, 'MiB'], [1024, 'KiB']];
  for (const [size, unit] of units) {
    if (n >= size) {
      const text = `${(n / size).toFixed(1).replace(/\.0$/, '')} ${unit}`;
      if (distinctFrom !== undefined && distinctFrom !== n && text === formatBytes(distinctFrom)) return `${n} bytes`;
      return text;
    }
  }
  return `${n} bytes`;
}
