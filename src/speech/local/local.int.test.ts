import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import pino from 'pino';
import { describeWhen } from '../../../test/engines';
import { measuredProgram } from '../../../test/measured-program';
import { createSpeech, findLocalEngines, findProgram } from '../factory';
import { makePicture } from '../video.contract';
import { describeSynthesizer, describeTranscriber, LONG_REPLY, QUESTION, collect } from '../speech.contract';
import { LocalSynthesizer, LocalTranscriber } from './adapters';
import { LocalSpeechEngine } from './engine';

const engines = findLocalEngines();
// Named even when the engines are absent: a skipped suite's body still runs (describeWhen lists its tests as skipped).
const python = engines?.python ?? 'python3';
const logger = pino({ level: 'silent' });

describeWhen(!!engines, 'offline speech engines (Piper, PocketSphinx)', 'needs `npm run speech:install`', () => {
  // Each adapter under test gets its own engine process; the other kind checks it.
  const reference = { stt: new LocalSpeechEngine(python, 'stt', logger), tts: new LocalSpeechEngine(python, 'tts', logger) };
  afterAll(() => Promise.all([reference.stt.close(), reference.tts.close()]));

  describeSynthesizer('local Piper', async () => new LocalSynthesizer(new LocalSpeechEngine(python, 'tts', logger)), () => new LocalTranscriber(reference.stt));
  describeTranscriber('local PocketSphinx', async () => new LocalTranscriber(new LocalSpeechEngine(python, 'stt', logger)), () => new LocalSynthesizer(reference.tts));

  it('hears only the first --max-seconds of a long recording, and says so', async () => {
    const long = await collect(new LocalSynthesizer(reference.tts).synthesize(LONG_REPLY));
    expect(long.durationMs).toBeGreaterThan(6_000);
    const short = new LocalSpeechEngine(python, 'stt', logger, { maxSeconds: 2 });
    try {
      const heard = await new LocalTranscriber(short).transcribe(long.wav, 'audio/wav');
      expect(heard.cut).toEqual({ heardMs: 2_000 });
      expect(heard.words.every((w) => w.endMs <= 2_000)).toBe(true);
      const whole = await new LocalTranscriber(reference.stt).transcribe(long.wav, 'audio/wav');
      expect(whole.cut).toBeUndefined();
      expect(heard.text.split(' ').length).toBeLessThan(whole.text.split(' ').length / 3);
    } finally {
      await short.close();
    }
  }, 120_000);

  it('an engine whose parent is gone (its stdin closed, as when ChatFlow is SIGKILLed) exits by itself', async () => {
    const engine = new LocalSpeechEngine(python, 'stt', logger);
    try {
      await engine.url();
      const child = (engine as unknown as { child: import('node:child_process').ChildProcess }).child;
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.stdin!.end();
      await expect(exited).resolves.toBe(0);
    } finally {
      await engine.close();
    }
  }, 120_000);

  const ffmpeg = findProgram('ffmpeg');
  (ffmpeg ? it : it.skip)('hears a voice message in a container that also holds a huge picture without decoding the picture (ffmpeg took 480 MB for one of 12000×12000, 800 MB for 16000×16000), its ffmpeg under a data limit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chatflow-stt-picture-'));
    const path = process.env.PATH;
    const engine = new LocalSpeechEngine(python, 'stt', logger);
    try {
      // The spoken question with a 12000×12000 PNG picture beside it (~450 KB: a plain colour).
      const spoken = await collect(new LocalSynthesizer(reference.tts).synthesize(QUESTION));
      await writeFile(join(dir, 'q.wav'), spoken.wav);
      await writeFile(join(dir, 'p.mkv'), makePicture(ffmpeg!, 12_000, 12_000));
      execFileSync(ffmpeg!, ['-v', 'error', '-y', '-i', join(dir, 'p.mkv'), '-i', join(dir, 'q.wav'), '-map', '0:v', '-map', '1:a', '-c:v', 'copy', '-c:a', 'libopus', join(dir, 'both.mkv')]);
      // The engine's ffmpeg (found on the PATH), measured.
      const measured = await measuredProgram(ffmpeg!, dir, 'ffmpeg');
      process.env.PATH = `${dir}${delimiter}${path}`;
      const heard = await new LocalTranscriber(engine).transcribe(await readFile(join(dir, 'both.mkv')), 'audio/webm');
      expect(heard.text.toLowerCase()).toContain('time');
      const { peakKb, dataLimitBytes: dataLimit } = await measured.used();
      expect(peakKb).toBeLessThan(250_000);
      // And it runs under a data limit, as the video splitter's does (a crafted container can ask for GBs).
      expect(dataLimit).toBeGreaterThan(0);
      expect(dataLimit).toBeLessThanOrEqual(512 * 1024 * 1024);
    } finally {
      process.env.PATH = path;
      await engine.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('stopped while its engines load (a server whose port was taken exits at once), says nothing failed: the engines are stopped, not broken', async () => {
    const said: { level: string; msg: string }[] = [];
    const spy = pino({ level: 'info' }, { write: (line: string) => void said.push(JSON.parse(line) as { level: string; msg: string }) });
    const speech = createSpeech({ stt: { mode: 'local', model: '' }, tts: { mode: 'local', model: '', voice: '' }, timeoutMs: 10_000, ffmpeg: 'none' }, spy);
    await new Promise((r) => setTimeout(r, 200)); // the engines' processes are starting
    await speech.close();
    await new Promise((r) => setTimeout(r, 200));
    const loud = said.filter((l) => Number(l.level) >= 40).map((l) => l.msg);
    expect(loud).toEqual([]);
  }, 60_000);

  it('starts an engine again after it died', async () => {
    const engine = new LocalSpeechEngine(python, 'tts', logger);
    try {
      const synth = new LocalSynthesizer(engine);
      await collect(synth.synthesize('one'));
      const first = engine.pid!;
      process.kill(first, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 300));
      const out = await collect(synth.synthesize(QUESTION));
      expect(engine.pid).not.toBe(first);
      expect(out.durationMs).toBeGreaterThan(700);
    } finally {
      await engine.close();
    }
  }, 120_000);
});
