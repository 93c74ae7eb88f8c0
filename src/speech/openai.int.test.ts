import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import pino from 'pino';
import { describeWhen } from '../../test/engines';
import { findLocalEngines } from './factory';
import { LocalSynthesizer, LocalTranscriber } from './local/adapters';
import { LocalSpeechEngine } from './local/engine';
import { OpenAiSynthesizer, OpenAiTranscriber } from './openai';
import { SpeechError } from './port';
import { collect, describeSynthesizer, describeTranscriber } from './speech.contract';

const engines = findLocalEngines();
// Named even when the engines are absent: a skipped suite's body still runs (describeWhen lists its tests as skipped).
const python = engines?.python ?? 'python3';
const logger = pino({ level: 'silent' });

/**
 * A self-hosted OpenAI-compatible audio server, started the way a user would
 * (`python speech_server.py --engine tts --port …`), independent of ChatFlow's
 * engine manager: the OpenAI adapters only know its URL.
 */
async function startServer(kind: 'tts' | 'stt'): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(python, [join(__dirname, 'local', 'speech_server.py'), '--engine', kind, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (l) => { const m = /^LISTENING (\d+)/.exec(l); if (m) resolve(m[1]!); });
    child.once('exit', (code) => reject(new Error(`speech server exited ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}/v1`, child };
}

describeWhen(!!engines, 'OpenAI-compatible speech adapters', 'needs `npm run speech:install` (the local engines serve the OpenAI audio API)', () => {
  const servers: ChildProcess[] = [];
  const reference = { stt: new LocalSpeechEngine(python, 'stt', logger), tts: new LocalSpeechEngine(python, 'tts', logger) };
  afterAll(async () => {
    for (const s of servers) s.kill('SIGTERM');
    await Promise.all([reference.stt.close(), reference.tts.close()]);
  });
  const serve = async (kind: 'tts' | 'stt') => {
    const s = await startServer(kind);
    servers.push(s.child);
    return s.url;
  };

  describeSynthesizer('OpenAI /v1/audio/speech', async () => new OpenAiSynthesizer({ baseUrl: await serve('tts'), apiKey: 'k', model: 'tts-1', voice: 'alloy', timeoutMs: 60_000 }), () => new LocalTranscriber(reference.stt));
  describeTranscriber('OpenAI /v1/audio/transcriptions', async () => new OpenAiTranscriber({ baseUrl: await serve('stt'), apiKey: 'k', model: 'whisper-1', timeoutMs: 60_000 }), () => new LocalSynthesizer(reference.tts));

  it('reports an unreachable server as a retryable SpeechError naming the cause', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const closed = `http://127.0.0.1:${(probe.address() as AddressInfo).port}/v1`;
    await new Promise((r) => probe.close(r));
    const stt = new OpenAiTranscriber({ baseUrl: closed, model: 'whisper-1', timeoutMs: 5000 });
    const err = await stt.transcribe(Buffer.from('x'), 'audio/wav').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpeechError);
    expect((err as SpeechError).retryable).toBe(true);
    expect((err as Error).message).toMatch(/^the speech recognizer is unreachable \(ECONNREFUSED\)$/);
    const tts = new OpenAiSynthesizer({ baseUrl: closed, model: 'tts-1', voice: 'alloy', timeoutMs: 5000 });
    const err2 = await collect(tts.synthesize('hello')).catch((e: unknown) => e);
    expect((err2 as SpeechError).retryable).toBe(true);
  });
});
