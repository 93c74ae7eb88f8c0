/**
 * The interactive CLI in a real terminal (tmux), as a person uses it: three
 * questions typed quickly, their replies streaming at the same time. The
 * screen must end up with three whole replies, each in one block under the
 * label of its question — not fragments of interleaved streams.
 *
 * The captured screen is saved to test-results/cli/.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startApp, type App } from '../app';
import { loadConfig } from '../config/config';
import { SimulatedLlm } from '../llm/simulated';
import { createLogger } from '../logging';
import { describeWhen } from '../../test/engines';

jest.setTimeout(60_000);

const ROOT = resolve(__dirname, '..', '..');
const RESULTS = join(ROOT, 'test-results', 'cli');
const hasTmux = spawnSync('tmux', ['-V']).status === 0;
// Its own server socket: never the tmux of whoever runs the tests.
const SOCKET = `chatflow-test-${process.pid}`;
const tmux = (...args: string[]) => execFileSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8' });
/** The visible screen and scrollback, wrapped lines joined (-J). */
const screen = () => tmux('capture-pane', '-p', '-J', '-S', '-200', '-t', 'cli');

async function until(what: string, pred: (s: string) => boolean, timeoutMs = 20_000, each?: (s: string) => void): Promise<string> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = screen();
    each?.(s);
    if (pred(s)) return s;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; screen:\n${s}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describeWhen(hasTmux, 'the interactive CLI in a terminal (tmux)', 'needs tmux (deploy/install-tmux.sh)', () => {
  let app: App;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cf-cli-tty-'));
    const env = { CHATFLOW_GRPC_ADDR: '127.0.0.1:0', CHATFLOW_HTTP_ADDR: '127.0.0.1:0', CHATFLOW_DATA_DIR: dir, LOG_LEVEL: 'silent' };
    // Every text reply streams over 2.7 s, word by word: three sent 0.3 s apart overlap.
    app = await startApp(loadConfig(env), createLogger('silent', { pretty: false }), { llm: new SimulatedLlm({ delayScale: 3, random: () => 0.9 }) });
    const cli = `${process.execPath} ${join(ROOT, 'bin', 'chatflow.js')} chat --client-id tty-user --tz UTC --server ${app.grpcAddress} --data-dir ${dir}`;
    tmux('new-session', '-d', '-s', 'cli', '-x', '160', '-y', '50', cli);
    tmux('set-option', '-t', 'cli', 'remain-on-exit', 'on');
  });

  afterAll(async () => {
    if (hasTmux) spawnSync('tmux', ['-L', SOCKET, 'kill-server']);
    await app?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('shows three overlapping replies as three whole blocks, each under the label of its question', async () => {
    await until('the welcome', (s) => s.includes('type a message, or /help'));
    const questions = ['what should I cook tonight?', 'tell me about the weather', 'one more question for you?'];
    for (const q of questions) {
      tmux('send-keys', '-t', 'cli', '-l', q);
      tmux('send-keys', '-t', 'cli', 'Enter');
      await new Promise((r) => setTimeout(r, 300));
    }
    // While they stream, the terminal shows replies being written in place (the ▍ mark), several at once.
    let streamingTogether = 0;
    const done = await until('three answered blocks', (s) => (s.match(/processed in \d+ ms\)/g) ?? []).length === 3, 20_000, (s) => {
      streamingTogether = Math.max(streamingTogether, (s.match(/▍/g) ?? []).length);
    });
    mkdirSync(RESULTS, { recursive: true });
    writeFileSync(join(RESULTS, 'three-overlapping-replies.txt'), done);
    expect(streamingTogether).toBeGreaterThanOrEqual(2);

    questions.forEach((q, i) => {
      const n = i + 1;
      const words = q.split(' ').length;
      const asked = q.endsWith('?') ? 'You asked' : 'You wrote';
      // The question line, its whole reply on the next line (joined from the terminal's wrapping), then its seq and time.
      const block = new RegExp(
        `^\\[${n}\\] you: "${q.replace(/\?/g, '\\?')}" \\(seq \\d+\\)\\n` +
          `\\[${n}\\] bot: Hello! ${asked}: "${q.replace(/\?/g, '\\?')}" \\(${words} words\\)\\. [^\\n]+ For you it is [^\\n]+ \\(UTC, UTC\\+00:00\\)\\.\\n` +
          ` {4}\\(seq \\d+, processed in \\d+ ms\\)$`,
        'm',
      );
      expect(done).toMatch(block);
    });
    // Nothing else: one bot line per question, no fragments, no leftover cursor marks.
    expect(done.match(/bot:/g)).toHaveLength(3);
    expect(done).not.toContain('▍');

    tmux('send-keys', '-t', 'cli', '-l', '/quit');
    tmux('send-keys', '-t', 'cli', 'Enter');
    const end = await until('the end of the session', (s) => s.includes('disconnected'));
    writeFileSync(join(RESULTS, 'three-overlapping-replies.txt'), end);
  });
});
