import { hear, type SpeechEngines } from './hearing';
import { SpeechError, type Transcript, type VideoParts } from './port';

const signal = new AbortController().signal;
const observe = () => {};
const keyframe = { rgb: Buffer.alloc(3), width: 1, height: 1 };

function engines(transcript: Transcript | Error, parts?: VideoParts | Error): SpeechEngines {
  return {
    transcriber: { name: 'stt', transcribe: async () => (transcript instanceof Error ? Promise.reject(transcript) : transcript), close: async () => {} },
    video: parts && { name: 'split', split: async () => (parts instanceof Error ? Promise.reject(parts) : parts) },
  };
}

describe('hear', () => {
  const whole: Transcript = { text: 'hello there', words: [], engine: 'stt' };

  it('hears a voice message whole, with no note', async () => {
    expect(await hear(engines(whole), 'audio', Buffer.alloc(1), 'audio/wav', signal, observe)).toEqual({ transcript: whole });
  });

  it('says when the recognizer heard only the first part of a recording', async () => {
    const cut = { ...whole, cut: { heardMs: 120_000 } };
    expect(await hear(engines(cut), 'audio', Buffer.alloc(1), 'audio/wav', signal, observe)).toEqual({ transcript: cut, hearingNote: 'only its first 120 seconds were heard' });
  });

  it('says when a video\'s sound was kept only in part', async () => {
    const heard = await hear(engines(whole, { keyframe, audio: Buffer.alloc(1), durationMs: 600_000, soundCut: { keptMs: 120_000 } }), 'video', Buffer.alloc(1), 'video/mp4', signal, observe);
    expect(heard).toEqual({ keyframe, transcript: whole, hearingNote: 'only its first 120 seconds were heard' });
  });

  it('names what it could not do: no video decoder, a video without sound, a recording it cannot decode', async () => {
    const noVideo = await hear({ transcriber: engines(whole).transcriber }, 'video', Buffer.alloc(1), 'video/mp4', signal, observe);
    expect(noVideo.hearingNote).toBe('no video decoder (ffmpeg) is set up on this server, so I can neither hear nor see videos');
    const silent = await hear(engines(whole, { keyframe, durationMs: 1_000 }), 'video', Buffer.alloc(1), 'video/mp4', signal, observe);
    expect(silent).toEqual({ keyframe, hearingNote: 'the video has no sound' });
    const garbled = await hear(engines(new SpeechError('bad header', false)), 'audio', Buffer.alloc(1), 'audio/wav', signal, observe);
    expect(garbled).toEqual({ hearingNote: 'the recording could not be decoded (bad header)' });
  });

  it('lets an engine that is down fail the attempt (retried by the worker)', async () => {
    await expect(hear(engines(new SpeechError('down', true)), 'audio', Buffer.alloc(1), 'audio/wav', signal, observe)).rejects.toThrow('down');
  });
});
