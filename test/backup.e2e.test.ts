/**
 * `chatflow backup`: a copy of the embedded default's data dir taken while the
 * server runs under load, then a server started on the copy. The promise holds
 * across it: every message accepted before the backup began is in the copy,
 * with its media, and gets exactly one reply there.
 */
import { appendFile, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Author, type HistoryMessage } from '../src/gen/chatflow/v1/history';
import { backupDataDir } from '../src/cli/backup';
import { SimulatedLlm } from '../src/llm/simulated';
import { allMessages, ChatStream, connected, metadataFor, startTestApp, type TestApp } from './harness';
import { runCli as runCliAt } from './cli-runner';
import { synthesizeVoice } from './voice-signal';
import { describeWhen } from './engines';
import { mountSmallFs, smallFsSupport } from './small-fs';

jest.setTimeout(90_000);

/** The CLI as a user runs it; `backup` and `log` need no server (their data dir is in their arguments). */
const runCli = (args: string[]) => runCliAt(args, { dataDir: '/nonexistent', grpcAddress: '127.0.0.1:1' });

async function historyOf(t: TestApp, clientId: string, conversationId: string): Promise<HistoryMessage[]> {
  return allMessages(t.history, await metadataFor(t, clientId), conversationId);
}

describe('chatflow backup (the embedded default)', () => {
  const dirs: string[] = [];
  const newDir = async () => {
    const d = await mkdtemp(join(tmpdir(), 'chatflow-backup-'));
    dirs.push(d);
    return d;
  };
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('copies a running server under load: every message accepted before it began is in the copy, with its media, and answered once there', async () => {
    // Paced replies: many messages are accepted and not yet answered when the copy is taken.
    const a = await startTestApp({ CHATFLOW_SHUTDOWN_GRACE_MS: '50' }, { llm: new SimulatedLlm({ delayScale: 0.3, random: () => 0.5 }) });
    const copy = join(await newDir(), 'copy');
    const wav = synthesizeVoice('a voice note to keep').bytes;
    let streams: ChatStream[] = [];
    let before: string[][] = [];
    let sending = true;
    try {
      streams = await Promise.all(Array.from({ length: 4 }, (_, i) => connected(a, `keeper-${i}`)));
      const load = streams.map(async (s, i) => {
        for (let j = 0; sending && j < 400; j++) {
          if (j % 3 === 2) s.send({ content: { $case: 'audio', audio: { mimeType: 'audio/wav', data: Buffer.from(wav), sizeBytes: wav.length, url: '', durationMs: 0 } } });
          else s.text(`client ${i} message ${j}`);
          await new Promise((r) => setTimeout(r, 15));
        }
      });
      await Promise.all(streams.map((s) => s.until((f) => f.filter((x) => x.frame?.$case === 'accepted').length >= 15, 15_000, 'accepted')));
      // What the server acknowledged before the backup began: all of it must be in the copy.
      before = streams.map((s) => s.of('accepted').map((x) => x.accepted.messageId));
      const unanswered = before.flat().filter((id) => !streams.some((s) => s.of('response').some((r) => r.response.inReplyTo === id)));
      // Between each step of the copy, a voice message is accepted and answered, and its worker's offset saved (every
      // 200 ms): a copy whose media were taken before its log (an event naming an upload not copied) fails below.
      const between: string[] = [];
      const summary = await backupDataDir(a.dataDir, copy, {
        afterStep: async (step) => {
          const s = streams[0]!;
          const cm = s.send({ content: { $case: 'audio', audio: { mimeType: 'audio/wav', data: Buffer.from(wav), sizeBytes: wav.length, url: '', durationMs: 0 } } });
          await s.reply(cm, 20_000);
          await new Promise((r) => setTimeout(r, 400));
          between.push(step);
        },
      });
      expect(between).toEqual(['secret', 'offsets', 'log', 'media']);
      await new Promise((r) => setTimeout(r, 200)); // the load goes on after the copy
      sending = false;
      await Promise.all(load);
      expect(summary.records).toBeGreaterThan(60);
      expect(summary.mediaFiles).toBeGreaterThan(4);
      expect(summary.secret).toBe(true);
      expect(summary.groups).toBeGreaterThan(0);
      // Some were still unanswered when the copy began: the server on the copy must answer those.
      expect(unanswered.length).toBeGreaterThan(0);
    } finally {
      sending = false;
      for (const s of streams) s.cancel();
      await a.close();
    }

    // The copy's log checks clean, record by record (a record cut short while it was copied was left out).
    const check = await runCli(['log', 'check', '--data-dir', copy]);
    expect({ code: check.code, out: check.stdout }).toEqual({ code: 0, out: expect.stringMatching(/every record verified; nothing to repair/) });
    expect((await readdir(join(copy, 'media'), { recursive: true })).some((p) => p.split('/').includes('.tmp'))).toBe(false);
    expect((await stat(join(copy, 'secret'))).mode & 0o077).toBe(0);

    // A server on the copy: the same secret (the old tokens work), every accepted message there and answered once.
    const b = await startTestApp({}, { llm: new SimulatedLlm({ delayScale: 0, random: () => 0.5 }) }, copy);
    try {
      for (const [i, s] of streams.entries()) {
        const clientId = `keeper-${i}`;
        const conversationId = s.welcome()!.conversationId;
        let entries = await historyOf(b, clientId, conversationId);
        const answered = () => before[i]!.every((id) => entries.some((m) => m.author === Author.AUTHOR_BOT && m.inReplyTo === id));
        for (const end = Date.now() + 30_000; !answered() && Date.now() < end; ) {
          await new Promise((r) => setTimeout(r, 200));
          entries = await historyOf(b, clientId, conversationId);
        }
        for (const id of before[i]!) {
          expect({ id, messages: entries.filter((m) => m.messageId === id).length, replies: entries.filter((m) => m.author === Author.AUTHOR_BOT && m.inReplyTo === id).length }).toEqual({ id, messages: 1, replies: 1 });
        }
        // Every upload the copy names is there, served through its signed URL.
        const uploads = entries.filter((m) => m.audio?.url);
        expect(uploads.length).toBeGreaterThan(0);
        for (const m of uploads) expect({ id: m.messageId, status: (await fetch(m.audio!.url)).status }).toEqual({ id: m.messageId, status: 200 });
      }
      // The copy's worker takes up where its log ends: a new message on it is answered once.
      const fresh = await connected(b, 'after-restore');
      const reply = await fresh.reply(fresh.text('still there?'), 20_000);
      expect(reply.text).toMatch(/still there/);
      fresh.cancel();
    } finally {
      await b.close();
    }
  });

  it('leaves out a record cut short at the end of the log (one being written as it was read), and says so', async () => {
    const dataDir = await newDir();
    const a = await startTestApp({}, {}, dataDir);
    try {
      const s = await connected(a, 'torn');
      await s.reply(s.text('kept'));
      s.cancel();
    } finally {
      await a.close({ keepData: true });
    }
    // Half a record's header: what a copy reads while a write is under way.
    await appendFile(join(dataDir, 'log', 'events.log'), Buffer.from([0x10, 0x00]));
    const copy = join(await newDir(), 'copy');
    const summary = await backupDataDir(dataDir, copy);
    expect(summary.tornBytes).toBe(2);
    expect((await runCli(['log', 'check', '--data-dir', copy])).code).toBe(0);
  });

  it('refuses a destination that is not a new folder, or inside the data dir, or a folder with no log, in words', async () => {
    const a = await startTestApp();
    try {
      const full = await newDir();
      await writeFile(join(full, 'old-backup.txt'), 'x');
      const r1 = await runCli(['backup', '--data-dir', a.dataDir, '--to', full]);
      expect({ code: r1.code, err: r1.stderr }).toEqual({ code: 1, err: expect.stringMatching(/is not empty: give a new folder/) });
      const r2 = await runCli(['backup', '--data-dir', a.dataDir, '--to', join(a.dataDir, 'inside')]);
      expect({ code: r2.code, err: r2.stderr }).toEqual({ code: 1, err: expect.stringMatching(/cannot go inside the data dir it copies/) });
      const empty = await newDir();
      await mkdir(join(empty, 'x'));
      const r3 = await runCli(['backup', '--data-dir', join(empty, 'x'), '--to', join(await newDir(), 'copy')]);
      expect({ code: r3.code, err: r3.stderr }).toEqual({ code: 1, err: expect.stringMatching(/no event log at .*is .* a ChatFlow data dir\?/) });
      const r4 = await runCli(['backup', '--data-dir', a.dataDir]);
      expect({ code: r4.code, err: r4.stderr }).toEqual({ code: 2, err: expect.stringMatching(/say where the copy goes: --to <dir>/) });
      // And the command itself, on a running server: one line that says what was copied and how to restore.
      const ok = await runCli(['backup', '--data-dir', a.dataDir, '--to', join(await newDir(), 'copy')]);
      expect({ code: ok.code, out: ok.stdout }).toEqual({ code: 0, out: expect.stringMatching(/^Backed up .* in [\d.]+ s: \d+ events, every record verified; .*\nRestore: stop ChatFlow and start it with CHATFLOW_DATA_DIR=/) });
    } finally {
      await a.close();
    }
  });

  it('killed mid-copy, leaves a folder a server refuses to start on, in words; the next backup into it clears it and completes', async () => {
    // A backup is often a cron job: the machine reboots, the job is killed. Before, the folder it left held the log
    // without the media it names (or half of it), and a server started on it as if it were a backup.
    const dataDir = await newDir();
    const a = await startTestApp({}, {}, dataDir);
    let conversationId = '';
    try {
      const s = await connected(a, 'killed');
      conversationId = s.welcome()!.conversationId;
      await s.reply(s.text('kept'));
      s.cancel();
    } finally {
      await a.close({ keepData: true });
    }
    // Media enough that copying it (each file synced) takes long enough to be killed in it.
    const media = join(dataDir, 'media', 'bulk');
    await mkdir(media, { recursive: true });
    const chunk = Buffer.alloc(256 * 1024, 7);
    for (let i = 0; i < 400; i++) await writeFile(join(media, `f${i}`), chunk);
    const to = join(await newDir(), 'copy');
    const child = spawn(process.execPath, [join(__dirname, '..', 'bin', 'chatflow.js'), 'backup', '--data-dir', dataDir, '--to', to], { stdio: 'ignore' });
    const exited = new Promise((res) => child.on('exit', res));
    try {
      for (let t = Date.now(); ; ) {
        const copied = await readdir(join(to, 'media', 'bulk')).catch(() => []);
        if (copied.length >= 5) break;
        if (Date.now() - t > 30_000 || child.exitCode !== null) throw new Error(`the backup never got into its media (${copied.length} files copied)`);
        await new Promise((r) => setTimeout(r, 10));
      }
      // Held still half-way: a second backup into the same folder meanwhile is refused, and touches nothing.
      child.kill('SIGSTOP');
      const second = await runCli(['backup', '--data-dir', dataDir, '--to', to]);
      expect({ code: second.code, err: second.stderr }).toEqual({ code: 1, err: expect.stringContaining(`a backup into ${to} is under way (pid ${child.pid}): wait for it to finish`) });
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    expect((await readdir(join(to, 'media', 'bulk'))).length).toBeLessThan(400);
    const refusal = await startTestApp({}, {}, to).then(
      async (t) => void (await t.close({ keepData: true })),
      (err: Error) => err.message,
    );
    expect(refusal).toMatch(/is a backup that was interrupted .*not a usable copy/);
    const again = await runCli(['backup', '--data-dir', dataDir, '--to', to]);
    expect({ code: again.code, out: again.stdout }).toEqual({ code: 0, out: expect.stringMatching(/^The remains of an interrupted backup in .* were cleared first\.\nBacked up .*: 4 events, .* 400 media files/) });
    const b = await startTestApp({}, {}, to);
    try {
      expect((await historyOf(b, 'killed', conversationId)).map((m) => m.text)).toContain('kept');
    } finally {
      await b.close({ keepData: true });
    }
    expect((await readdir(join(to, 'media', 'bulk'))).length).toBe(400);
  });

  const smallFs = smallFsSupport();
  describeWhen(smallFs.ok, 'onto a disk that fills', smallFs.reason, () => {
    it('fails in words and leaves no partial copy that could pass for a backup', async () => {
      const dataDir = await newDir();
      const a = await startTestApp({}, {}, dataDir);
      try {
        const s = await connected(a, 'big-uploads');
        const wav = synthesizeVoice('a long voice note, '.repeat(40)).bytes;
        for (let i = 0; i < 6; i++) await s.reply(s.send({ content: { $case: 'audio', audio: { mimeType: 'audio/wav', data: Buffer.from(wav), sizeBytes: wav.length, url: '', durationMs: 0 } } }), 20_000);
        s.cancel();
      } finally {
        await a.close({ keepData: true });
      }
      const small = await mountSmallFs(2);
      try {
        const to = join(small.dir, 'copy');
        const r = await runCli(['backup', '--data-dir', dataDir, '--to', to]);
        expect({ code: r.code, err: r.stderr }).toEqual({ code: 1, err: expect.stringMatching(new RegExp(`cannot write the copy into ${to.replace(/[/.]/g, '\\$&')}: the disk is full; nothing was kept there`)) });
        expect(await readdir(small.dir)).toEqual(expect.not.arrayContaining(['copy']));
      } finally {
        await small.unmount();
      }
    });
  });
});
