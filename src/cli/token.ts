import { dataDirOf, parse, parseTtl, UsageError } from './args';
import { mintLocalToken } from './connection';
import { TOKEN_HELP } from './usage';

/** `chatflow token <client-id>`: prints a bearer token on stdout (nothing else, for `$(...)`). */
export async function tokenCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ttl: { type: 'string' }, 'data-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, true);
  if (values.help) {
    process.stdout.write(TOKEN_HELP + '\n');
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'missing <client-id>' : 'expected exactly one <client-id>');
  const ttl = values.ttl === undefined ? 24 * 3600 : parseTtl(values.ttl);
  const dataDir = dataDirOf(values['data-dir']);
  const token = await mintLocalToken(positionals[0]!, dataDir, ttl);
  process.stdout.write(token + '\n');
  return 0;
}
