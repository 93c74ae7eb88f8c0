import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describeWhen } from './engines';
import { connected, startTestApp, type TestApp } from './harness';

/**
 * The README's grpcurl and ghz lines (between the `grpc-tools` markers), run as
 * written against a live server: by reflection alone, no .proto given.
 */
const ROOT = resolve(__dirname, '..');
const BIN = join(process.env.CHATFLOW_STACK_DIR ?? join(ROOT, '.stack'), 'bin');
const README_ADDR = '127.0.0.1:50051';

export function readmeToolLines(readme: string): string[] {
  const block = /<!-- grpc-tools:start -->[\s\S]*?```sh\n([\s\S]*?)```[\s\S]*?<!-- grpc-tools:end -->/.exec(readme);
  if (!block) throw new Error('README.md has no grpc-tools block');
  return block[1]!
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => /^(grpcurl|ghz) /.test(l));
}

function run(line: string, env: Record<string, string>): Promise<{ code: number; out: string }> {
  return new Promise((res) =>
    execFile('bash', ['-c', line], { cwd: ROOT, env: { ...process.env, ...env, PATH: `${BIN}:${process.env.PATH}` }, timeout: 60_000 }, (err, stdout, stderr) =>
      res({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
    ),
  );
}

describeWhen(
  existsSync(join(BIN, 'grpcurl')) && existsSync(join(BIN, 'ghz')),
  "the README's grpcurl and ghz lines",
  'grpcurl and ghz not installed (bash deploy/install-grpcurl.sh; bash deploy/install-ghz.sh)',
  () => {
    let t: TestApp;
    let conversationId: string;
    beforeAll(async () => {
      t = await startTestApp();
      // alice has one conversation for the history calls to find.
      const s = await connected(t, 'alice');
      conversationId = s.welcome()!.conversationId;
      await s.reply(s.text('hello'));
      s.end();
      await s.status;
    });
    afterAll(async () => t?.close());

    const lines = readmeToolLines(readFileSync(join(ROOT, 'README.md'), 'utf8'));

    it('has the lines this test runs: list, describe, health, a HistoryService call and ghz', () => {
      expect(lines.some((l) => l.includes(' list'))).toBe(true);
      expect(lines.some((l) => l.includes('describe chatflow.v1.ChatService'))).toBe(true);
      expect(lines.some((l) => l.includes('grpc.health.v1.Health/Check'))).toBe(true);
      expect(lines.some((l) => l.startsWith('grpcurl') && l.includes('chatflow.v1.HistoryService/'))).toBe(true);
      expect(lines.some((l) => l.startsWith('ghz'))).toBe(true);
      expect(lines.every((l) => !l.includes('--proto') && !l.includes('-proto '))).toBe(true); // reflection alone
    });

    it.each(lines.map((l) => [l]))('%s', async (line) => {
      const token = await t.app.auth.mint('alice');
      const { code, out } = await run(line.split(README_ADDR).join(t.app.grpcAddress), { TOKEN: token, CONVERSATION_ID: conversationId });
      expect({ code, out }).toMatchObject({ code: 0 });
      if (line.includes(' list')) expect(out).toMatch(/chatflow\.v1\.ChatService[\s\S]*grpc\.health\.v1\.Health/);
      if (line.includes('describe chatflow.v1.ChatService')) expect(out).toContain('rpc Chat ( stream .chatflow.v1.ClientFrame ) returns ( stream .chatflow.v1.ServerFrame )');
      if (line.includes('Health/Check')) expect(out).toContain('"status": "SERVING"');
      if (line.includes('ListConversations') && line.startsWith('grpcurl')) expect(out).toContain(conversationId);
      if (line.includes('ListMessages')) expect(out).toContain('"author": "AUTHOR_BOT"');
      if (line.startsWith('ghz')) expect(out).toMatch(/\[OK\]\s+\d+ responses/);
    }, 90_000);
  },
);
