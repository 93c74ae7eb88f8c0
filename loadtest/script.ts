/**
 * Runs a tool's `main` when its file is the one node was started with (not when a test imports it): the process
 * exits 0 once it resolves, 1 with the error's message when it fails.
 */
export function runScript(mod: NodeModule, main: () => Promise<void>): void {
  if (require.main !== mod) return;
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}
