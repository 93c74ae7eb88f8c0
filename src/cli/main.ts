import { CliError, UsageError } from './args';
import { BACKUP_HELP, backupCommand } from './backup';
import { chatCommand } from './chat';
import { historyCommand } from './history';
import { LOG_HELP, logCommand } from './log';
import { tokenCommand } from './token';
import { CHAT_HELP, HISTORY_HELP, MAIN_HELP, synopsis, TOKEN_HELP } from './usage';

const COMMANDS: Record<string, { run: (argv: string[]) => Promise<number>; help: string }> = {
  token: { run: tokenCommand, help: TOKEN_HELP },
  chat: { run: chatCommand, help: CHAT_HELP },
  history: { run: historyCommand, help: HISTORY_HELP },
  log: { run: logCommand, help: LOG_HELP },
  backup: { run: backupCommand, help: BACKUP_HELP },
};

/** Runs one CLI invocation and returns its exit code (0 ok, 1 error, 2 usage). */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' && rest[0] ? COMMANDS[rest[0]] : undefined;
    (name === undefined ? process.stderr : process.stdout).write((topic?.help ?? MAIN_HELP) + '\n');
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) return usageError(`unknown command "${name}"`, synopsis(MAIN_HELP), 'chatflow');
  try {
    return await command.run(rest);
  } catch (e) {
    if (e instanceof UsageError) return usageError(e.message, synopsis(command.help), `chatflow ${name}`);
    if (e instanceof CliError) {
      process.stderr.write(`chatflow ${name}: ${e.message}\n`);
      return e.exitCode;
    }
    process.stderr.write(`chatflow ${name}: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 1;
  }
}

function usageError(message: string, usage: string, prefix: string): number {
  process.stderr.write(`${prefix}: ${message}\n${usage}\n`);
  return 2;
}

/** Entry point: exits once stdout has been flushed (open gRPC channels or stdin must not keep us alive). */
export function run(argv: string[]): void {
  void main(argv).then((code) => {
    process.stdout.write('', () => process.exit(code));
  });
}

if (require.main === module) run(process.argv.slice(2));
