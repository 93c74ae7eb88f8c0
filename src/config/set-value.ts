/**
 * The value of setting `name` as given: without the blanks around it (and the
 * carriage return an env file saved with Windows line endings leaves at each
 * line's end), `undefined` when unset or set but empty (`NAME=` in an env
 * file: the default applies, not an empty value or 0). The server and the CLI
 * read every setting through it, so `CHATFLOW_DATA_DIR=./data\r` is `./data`
 * for both. (No imports: the CLI and the image's health check read it
 * without loading the schema.)
 */
export function setValue(env: Record<string, string | undefined>, name: string): string | undefined {
  const v = env[name]?.trim();
  return v === '' ? undefined : v;
}
