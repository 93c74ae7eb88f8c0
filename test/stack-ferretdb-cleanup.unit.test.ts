// `npm run stack:up` removes the SQLite files that test and load-test runs left
// in FerretDB's data folder (deploy/lib/mongo.sh, mongo_remove_run_files), and
// nothing else: the stack's own database and anything not a run's stay.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..');

/** Runs the stack's function on a state folder of its own; returns what it said and the files left. */
function cleanUp(files: string[], dirs: string[] = []): { stderr: string; status: number | null; left: string[] } {
  const stack = mkdtempSync(join(tmpdir(), 'chatflow-stack-'));
  try {
    const data = join(stack, 'data', 'ferretdb');
    mkdirSync(data, { recursive: true });
    for (const f of files) writeFileSync(join(data, f), 'x'.repeat(4096));
    for (const d of dirs) mkdirSync(join(data, d));
    const script = `set -euo pipefail; source "${ROOT}/deploy/lib/common.sh"; source "${ROOT}/deploy/lib/mongo.sh"; mongo_remove_run_files`;
    // Run from the temporary folder: a path gone wrong (the bug a newline in a name once caused) stays inside it.
    const run = spawnSync('bash', ['-c', script], { cwd: stack, env: { ...process.env, ROOT, CHATFLOW_STACK_DIR: stack, CHATFLOW_FERRETDB_BACKEND: 'sqlite' }, encoding: 'utf8' });
    return { stderr: run.stderr, status: run.status, left: readdirSync(data).sort() };
  } finally {
    rmSync(stack, { recursive: true, force: true });
  }
}

describe('stack:up: FerretDB files of earlier runs', () => {
  it("removes every run database's files (with their -wal and -shm) and keeps the stack's own and any other", () => {
    const runs = ['chatflow_test_1a2b.sqlite', 'chatflow_test_1a2b.sqlite-wal', 'chatflow_e2e_x9.sqlite', 'chatflow_e2e_x9.sqlite-shm', 'chatflow_lt_run7.sqlite'];
    const kept = ['chatflow.sqlite', 'chatflow.sqlite-wal', 'chatflow_tests.sqlite', 'chatflow_ltd.sqlite', 'mydb.sqlite', 'chatflow_test_notes.txt'];
    const { status, stderr, left } = cleanUp([...runs, ...kept], ['chatflow_test_dir.sqlite']);
    expect(status).toBe(0);
    expect(left).toEqual([...kept, 'chatflow_test_dir.sqlite'].sort());
    expect(stderr).toMatch(/ferretdb: removing 5 files of earlier test and load-test runs \(\d+(\.\d+)?K\)/);
  });

  it('removes files whose names hold spaces, newlines or a leading dash, and nothing beside them', () => {
    const odd = ['chatflow_lt_a b.sqlite', 'chatflow_lt_line\nbreak.sqlite', 'chatflow_test_-rf.sqlite'];
    const { status, left } = cleanUp([...odd, 'chatflow.sqlite', 'a b.sqlite', 'break.sqlite']);
    expect(status).toBe(0);
    expect(left).toEqual(['a b.sqlite', 'break.sqlite', 'chatflow.sqlite']);
  });

  it('says nothing and succeeds when no run left a file', () => {
    const { status, stderr, left } = cleanUp(['chatflow.sqlite']);
    expect(status).toBe(0);
    expect(stderr).toBe('');
    expect(left).toEqual(['chatflow.sqlite']);
  });
});
