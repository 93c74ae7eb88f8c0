import pino from 'pino';
import { createSpeech, type SpeechConfig } from './factory';

const base: SpeechConfig = {
  stt: { mode: 'none', model: 'm' },
  tts: { mode: 'none', model: 'm', voice: 'v' },
  timeoutMs: 1000,
};

function logged() {
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) });
  return { logger, lines };
}

describe('createSpeech: video', () => {
  it('CHATFLOW_FFMPEG=none turns video splitting off, says so, and does not warn of a missing engine', async () => {
    const { logger, lines } = logged();
    const speech = createSpeech({ ...base, ffmpeg: 'none' }, logger);
    expect(speech.video).toBeUndefined();
    expect(speech.summary.video).toBe('none (CHATFLOW_FFMPEG=none): videos are answered without their sound or picture');
    expect(lines).toEqual([]);
    await speech.close();
  });

  it('a CHATFLOW_FFMPEG that is not a program is refused at start, naming the way to turn video off', () => {
    const { logger } = logged();
    expect(() => createSpeech({ ...base, ffmpeg: '/nonexistent/ffmpeg' }, logger)).toThrow(
      'CHATFLOW_FFMPEG=/nonexistent/ffmpeg is not an executable program (`none` turns video splitting off)',
    );
  });

  it('warns when no ffmpeg is found and none was asked for', async () => {
    const { logger, lines } = logged();
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const speech = createSpeech(base, logger);
      expect(speech.video).toBeUndefined();
      expect(speech.summary.video).toMatch(/^none \(ffmpeg not found\)/);
      expect(lines.join('')).toMatch(/speech engines missing/);
      await speech.close();
    } finally {
      process.env.PATH = path;
    }
  });
});
