/**
 * Real speech and sight end to end, with the offline engines `npm run
 * speech:install` puts in .speech/ (CI installs them): a question spoken by
 * Piper is heard by the server's PocketSphinx and answered; a video made by
 * ffmpeg from a known picture and a spoken sentence is heard and its keyframe
 * is under the reply image.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { connected, metadataFor, metric, startTestApp, unary, type TestApp } from './harness';
import { describeWhen } from './engines';
import { findLocalEngines, findProgram } from '../src/speech/factory';
import { LocalSynthesizer, LocalTranscriber } from '../src/speech/local/adapters';
import { LocalSpeechEngine } from '../src/speech/local/engine';
import { collect } from '../src/speech/speech.contract';
import { normalizeWords, wordErrorRate } from '../src/speech/wer';
import type { ServerFrame } from '../src/gen/chatflow/v1/chat';
import { encodePng } from '../src/media/png';
import { parseWav } from './voice-signal';
import { Author } from '../src/gen/chatflow/v1/history';
import { SimulatedLlm } from '../src/llm/simulated';
import type { LlmProvider, LlmRequest } from '../src/llm/port';

const engines = findLocalEngines();
const ffmpeg = findProgram('ffmpeg');
const logger = pino({ level: 'silent' });
const QUESTION = 'what time is it in tokyo';

function transcriptOf(frames: ServerFrame[]): string {
  const f = frames.find((x) => x.frame?.$case === 'transcript')?.frame;
  if (f?.$case !== 'transcript') throw new Error('no Transcript frame');
  return f.transcript.text;
}

async function download(url: string): Promise<Buffer> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

describeWhen(!!engines && !!ffmpeg, 'speech and video end to end', 'needs `npm run speech:install` (Piper, PocketSphinx, ffmpeg)', () => {
  let t: TestApp;
  let dir: string;
  const tts = new LocalSpeechEngine(engines!.python, 'tts', logger);
  const stt = new LocalSpeechEngine(engines!.python, 'stt', logger);
  let spoken: Buffer;
  const asked: LlmRequest[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chatflow-speech-'));
    // The simulated model, with what it was asked kept (LLM_VISION: a video's keyframe goes to the model).
    const simulated = new SimulatedLlm({ delayScale: 0 });
    const llm: LlmProvider = { name: 'simulated', usesHistory: false, generate: (req, opts) => (asked.push(req), simulated.generate(req, opts)) };
    t = await startTestApp({ CHATFLOW_STT: 'local', CHATFLOW_TTS: 'local', LLM_VISION: 'true' }, { llm });
    spoken = (await collect(new LocalSynthesizer(tts).synthesize(`${QUESTION}?`))).wav;
  }, 180_000);
  afterAll(async () => {
    await t?.close();
    await Promise.all([tts.close(), stt.close()]);
    await rm(dir, { recursive: true, force: true });
  });

  it('hears a spoken question, answers what was said, streams the spoken reply, and keeps the transcript in history', async () => {
    const s = await connected(t, 'listener', { 'x-timezone': 'Asia/Tokyo' });
    const cm = s.send({ content: { $case: 'audio', audio: { mimeType: 'audio/wav', data: spoken, url: '', sizeBytes: spoken.length, durationMs: 0 } } });
    const r = await s.reply(cm, 120_000);
    // Piper samples its voice (a little different each time), so the words heard may differ by one.
    const heardFirst = transcriptOf(s.frames);
    expect(wordErrorRate(QUESTION, heardFirst)).toBeLessThanOrEqual(0.2);
    expect(r.text).toContain(`You said: "${heardFirst}"`);

    // The voice arrived in chunks before the BotResponse, then whole.
    const kinds = s.frames.map((f) => f.frame?.$case);
    const chunks = s.frames.flatMap((f) => (f.frame?.$case === 'voiceChunk' ? [f.frame.voiceChunk] : []));
    expect(chunks.length).toBeGreaterThan(2);
    expect(kinds.indexOf('voiceChunk')).toBeLessThan(kinds.indexOf('response'));
    expect(chunks.at(-1)!.last).toBe(true);
    chunks.slice(0, -1).forEach((c, i) => {
      expect(c.index).toBe(i);
      // Every chunk a playable WAV holding audio; all but the last audio chunk at least 300 ms (the last is
      // the synthesizer's tail, which can be a few samples: under 1 ms once rounded — CI saw it once).
      const wav = parseWav(c.audio!.data);
      expect(wav.dataLength).toBeGreaterThan(0);
      if (i < chunks.length - 2) expect(wav.durationMs).toBeGreaterThanOrEqual(300);
    });
    const voice = await download(r.voice!.url);
    const total = parseWav(voice).durationMs;
    expect(total).toBeGreaterThan(6000); // the whole reply, no 6 s cut
    // What the bot said, heard by an independent recognizer: it repeats the question.
    const heard = await new LocalTranscriber(stt).transcribe(voice, 'audio/wav');
    const words = new Set(normalizeWords(heard.text));
    expect(normalizeWords(QUESTION).filter((w) => words.has(w)).length).toBeGreaterThanOrEqual(5);
    console.log(`voice reply: ${chunks.length - 1} chunks, ${(total / 1000).toFixed(1)} s; reply WER ${wordErrorRate(r.text, heard.text).toFixed(2)}`);

    const md = await metadataFor(t, 'listener');
    const page = await unary(t.history.listMessages.bind(t.history), { conversationId: s.welcome().conversationId, pageSize: 10, pageToken: '', afterSeq: 0 }, md);
    const mine = page.messages.find((m) => m.author === Author.AUTHOR_CLIENT);
    expect(mine?.transcript).toBe(heardFirst);
    expect(await metric(t, 'chatflow_transcription_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(await metric(t, 'chatflow_synthesis_seconds_count')).toBeGreaterThanOrEqual(1);
    s.end();
  }, 180_000);

  it('hears a video made from a known picture and a spoken sentence, and draws the reply on its keyframe', async () => {
    // The picture: top half orange, bottom half teal, 640x360.
    const [w, h] = [640, 360];
    const rgb = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) rgb.set(y < h / 2 ? [230, 120, 20] : [20, 160, 150], (y * w + x) * 3);
    await writeFile(join(dir, 'picture.png'), encodePng(rgb, w, h));
    await writeFile(join(dir, 'speech.wav'), spoken);
    const mp4 = join(dir, 'clip.mp4');
    execFileSync(ffmpeg!, ['-v', 'error', '-y', '-loop', '1', '-i', join(dir, 'picture.png'), '-i', join(dir, 'speech.wav'), '-shortest', '-c:v', 'mpeg4', '-q:v', '2', '-pix_fmt', 'yuv420p', '-c:a', 'aac', mp4]);
    const video = execFileSync('cat', [mp4]);

    const s = await connected(t, 'filmer');
    const cm = s.send({ content: { $case: 'video', video: { mimeType: 'video/mp4', data: video, url: '', sizeBytes: video.length, durationMs: 0 } } });
    const r = await s.reply(cm, 120_000);
    const heard = transcriptOf(s.frames);
    expect(wordErrorRate(QUESTION, heard)).toBeLessThanOrEqual(0.2);
    expect(r.text).toContain(`You said: "${heard}"`);
    const png = await download(r.image!.url);
    const pixels = execFileSync(ffmpeg!, ['-v', 'error', '-i', 'pipe:0', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'], { input: png });
    const [iw, ih] = [480, 270];
    expect(pixels.length).toBe(iw * ih * 3);
    const at = (x: number, y: number) => [...pixels.subarray((y * iw + x) * 3, (y * iw + x) * 3 + 3)];
    const near = (got: number[], want: number[]) => got.every((v, i) => Math.abs(v - want[i]!) <= 16);
    // Right edge, outside the text panel: the keyframe's own colours, top and bottom.
    expect(near(at(iw - 3, 60), [230, 120, 20])).toBe(true);
    expect(near(at(iw - 3, ih - 30), [20, 160, 150])).toBe(true);
    // The model was given what was said and the keyframe (a PNG of it, untouched by the reply's text).
    const request = asked.find((q) => q.kind === 'video')!;
    expect(request.transcript).toBe(heard);
    const frame = execFileSync(ffmpeg!, ['-v', 'error', '-i', 'pipe:0', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'], { input: request.image!.data });
    const fx = (x: number, y: number) => [...frame.subarray((y * iw + x) * 3, (y * iw + x) * 3 + 3)];
    expect(near(fx(40, 60), [230, 120, 20])).toBe(true); // under the reply's text panel in the reply image, not here
    expect(near(fx(40, ih - 30), [20, 160, 150])).toBe(true);
    s.end();
  }, 180_000);
});
