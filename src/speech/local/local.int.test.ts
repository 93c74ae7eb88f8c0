import pino from 'pino';
import { describeWhen } from '../../../test/engines';
import { findLocalEngines } from '../factory';
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
