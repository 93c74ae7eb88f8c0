// `npm run dev`: watch mode for development. The server runs from the
// TypeScript sources through `tsx watch` (restarted on every change under
// src/ and projections/) and the web page is rebundled on every change under
// gateway/web. Ctrl-C stops both (the server drains as usual).
import { spawn } from 'node:child_process';
import { watchWebBundle } from '../src/http/web-bundle';

async function main(): Promise<void> {
  const stopWeb = await watchWebBundle((errors) =>
    process.stderr.write(errors ? `[dev] web page: ${errors} build error(s)\n` : '[dev] web page bundled\n'),
  );
  const server = spawn(process.execPath, [require.resolve('tsx/cli'), 'watch', '--clear-screen=false', '--exclude', 'gateway/web/**', 'src/main.ts'], {
    stdio: 'inherit',
  });
  // A terminal's Ctrl-C reaches the whole group: the server gets it directly.
  // A signal sent to this process alone is passed on.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => server.kill(sig));
  server.on('exit', (code, signal) => {
    void stopWeb().finally(() => process.exit(code ?? (signal ? 1 : 0)));
  });
}

void main();
