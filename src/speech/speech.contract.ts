/**
 * One contract suite per speech port, run against every adapter (offline
 * engines, OpenAI-compatible clients). Nothing here can be faked: what a
 * synthesizer says is checked by a real recognizer, what a recognizer hears
 * comes from a real synthesizer.
 *
 * Word error rate thresholds, measured on this machine with Piper's en_US joe
 * voice and PocketSphinx's generic en-US model: the short question comes back
 * exactly (WER 0) in most runs and with one word wrong in some ("is up in
 * tokyo": Piper samples its voice, so every synthesis differs a little), the
 * three-sentence reply at 0.15–0.2 (PocketSphinx's general language model
 * mishears "hello" and a few short words). The suite allows 0.2 on the
 * question (one word of six) and 0.35 on the long reply: unintelligible audio
 * (tones, noise, a truncated voice) scores ≥ 0.9.
 */
import { encodeWav, wavFromPcm16 } from '../media/wav';
import { SpeechError, type PcmChunk, type Synthesizer, type Transcriber } from './port';
import { wordErrorRate } from './wer';

export const QUESTION = 'What time is it in Tokyo?';
export const LONG_REPLY =
  'You said: what time is it in Tokyo. For you it is ten past three in the afternoon on Sunday. ' +
  'I can also tell you the weather tomorrow, and I will keep talking until the whole reply is spoken, however long it is.';

export async function collect(chunks: AsyncIterable<PcmChunk>): Promise<{ wav: Buffer; chunks: number; durationMs: number; firstChunkAt: number; endAt: number }> {
  const started = Date.now();
  const parts: Buffer[] = [];
  let rate = 0;
  let firstChunkAt = 0;
  for await (const c of chunks) {
    if (!parts.length) firstChunkAt = Date.now() - started;
    parts.push(c.pcm);
    rate = c.sampleRate;
  }
  const pcm = Buffer.concat(parts);
  return { wav: wavFromPcm16(pcm, rate), chunks: parts.length, durationMs: (pcm.length / 2 / rate) * 1000, firstChunkAt, endAt: Date.now() - started };
}

const TIMEOUT = 120_000;

/** `reference` is a real recognizer that checks what the synthesizer under test said. */
export function describeSynthesizer(name: string, make: () => Promise<Synthesizer>, reference: () => Transcriber): void {
  describe(`Synthesizer contract: ${name}`, () => {
    let synth: Synthesizer;
    beforeAll(async () => (synth = await make()), TIMEOUT);
    afterAll(() => synth?.close());

    it('speaks a question a recognizer understands', async () => {
      const out = await collect(synth.synthesize(QUESTION));
      expect(out.durationMs).toBeGreaterThan(700);
      expect(out.durationMs).toBeLessThan(5000);
      const heard = await reference().transcribe(out.wav, 'audio/wav');
      const wer = wordErrorRate(QUESTION, heard.text);
      console.log(`[${name}] "${QUESTION}" → "${heard.text}" WER ${wer.toFixed(2)}`);
      expect(wer).toBeLessThanOrEqual(0.2);
    }, TIMEOUT);

    it('speaks a long reply whole, sentence by sentence, the first chunk before the last is made', async () => {
      const out = await collect(synth.synthesize(LONG_REPLY));
      expect(out.durationMs).toBeGreaterThan(8000); // no 6 s cut
      expect(out.chunks).toBeGreaterThan(1);
      const heard = await reference().transcribe(out.wav, 'audio/wav');
      const wer = wordErrorRate(LONG_REPLY, heard.text);
      console.log(`[${name}] long reply: ${out.chunks} chunks, ${(out.durationMs / 1000).toFixed(1)} s of audio, first after ${out.firstChunkAt} ms of ${out.endAt} ms; WER ${wer.toFixed(2)} ("${heard.text}")`);
      expect(wer).toBeLessThanOrEqual(0.35);
      expect(out.firstChunkAt).toBeLessThan(out.endAt);
    }, TIMEOUT);

    it('refuses empty text with a SpeechError that is not worth retrying', async () => {
      const err = await collect(synth.synthesize('   ')).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(SpeechError);
      expect((err as SpeechError).retryable).toBe(false);
    }, TIMEOUT);
  });
}

/** `reference` is a real synthesizer that makes the speech the recognizer under test must hear. */
export function describeTranscriber(name: string, make: () => Promise<Transcriber>, reference: () => Synthesizer): void {
  describe(`Transcriber contract: ${name}`, () => {
    let stt: Transcriber;
    let question: Buffer;
    beforeAll(async () => {
      stt = await make();
      question = (await collect(reference().synthesize(QUESTION))).wav;
    }, TIMEOUT);
    afterAll(() => stt?.close());

    it('hears a spoken question, with word timings in order', async () => {
      const t = await stt.transcribe(question, 'audio/wav');
      const wer = wordErrorRate(QUESTION, t.text);
      console.log(`[${name}] heard "${t.text}" WER ${wer.toFixed(2)}, ${t.words.length} timed words`);
      expect(wer).toBeLessThanOrEqual(0.2);
      expect(t.engine).toBeTruthy();
      expect(t.cut).toBeUndefined(); // heard whole
      for (let i = 1; i < t.words.length; i++) expect(t.words[i]!.startMs).toBeGreaterThanOrEqual(t.words[i - 1]!.startMs);
      if (t.words.length) expect(t.words.at(-1)!.endMs).toBeLessThanOrEqual(5000);
    }, TIMEOUT);

    it('hears nothing in silence', async () => {
      const t = await stt.transcribe(encodeWav(new Float32Array(16000), 16000), 'audio/wav');
      expect(t.text.split(/\s+/).filter(Boolean).length).toBeLessThanOrEqual(1);
    }, TIMEOUT);

    // A tap on the record button: too short to hold a word, and a WAV with no samples at all.
    // Both are audio, so both are heard as nothing, not refused and not an engine failure.
    it.each([
      ['a recording too short to hold a word (50 ms)', 800],
      ['a recording with no samples', 0],
    ])('hears nothing in %s', async (_what, samples) => {
      const t = await stt.transcribe(encodeWav(new Float32Array(samples), 16000), 'audio/wav');
      expect(t.text.trim()).toBe('');
      expect(t.words).toEqual([]);
    }, TIMEOUT);

    it('refuses bytes that are not audio with a SpeechError that is not worth retrying', async () => {
      const err = await stt.transcribe(Buffer.from('this is not audio at all'), 'audio/wav').then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(SpeechError);
      expect((err as SpeechError).retryable).toBe(false);
    }, TIMEOUT);
  });
}
