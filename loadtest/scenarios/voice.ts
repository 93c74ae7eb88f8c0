// `voice`: the speech pipeline under a few concurrent speakers. Each user holds
// a Chat stream and, one message at a time, sends a spoken question (Piper's
// voice, made once at the start); the server transcribes it (PocketSphinx),
// answers and speaks the reply (Piper) in chunks. Measured per message: send →
// Transcript frame, send → first VoiceChunk (the latency a listener feels),
// send → BotResponse with the whole voice. Needs `npm run speech:install`; the
// runner starts the server with CHATFLOW_STT=local CHATFLOW_TTS=local.
import pino from 'pino';
import type { ServerFrame } from '../../src/gen/chatflow/v1/chat';
import { findLocalEngines } from '../../src/speech/factory';
import { LocalSynthesizer } from '../../src/speech/local/adapters';
import { LocalSpeechEngine } from '../../src/speech/local/engine';
import { collect } from '../../src/speech/speech.contract';
import { wordErrorRate } from '../../src/speech/wer';
import { Channels, openChat } from '../engine/connect';
import { emptyProgress, now } from '../engine/records';
import { round, summarize, type Summary } from '../stats';
import type { RunContext, ScenarioOutput } from './context';

export const VOICE_QUESTION = 'What time is it in Tokyo?';

export interface VoiceFigures {
  messages: number;
  failed: number;
  transcriptMs: Summary;
  firstChunkMs: Summary;
  replyMs: Summary;
  /** Mean word error rate of the transcripts against the question. */
  meanWer: number | null;
  questionSeconds: number;
}

export async function voice(ctx: RunContext): Promise<ScenarioOutput> {
  const { opts } = ctx;
  const engines = findLocalEngines();
  if (!engines) throw new Error('the voice scenario needs the offline speech engines: npm run speech:install');
  const tts = new LocalSpeechEngine(engines.python, 'tts', pino({ level: 'silent' }));
  const spoken = await collect(new LocalSynthesizer(tts).synthesize(VOICE_QUESTION)).finally(() => tts.close());
  const audio = { mimeType: 'audio/wav', data: spoken.wav, url: '', sizeBytes: spoken.wav.length, durationMs: Math.round(spoken.durationMs) };

  const channels = new Channels(ctx.target.grpc, opts.channels);
  await channels.warm();
  const progress = emptyProgress();
  progress.users = opts.users;
  const transcriptMs: number[] = [];
  const firstChunkMs: number[] = [];
  const replyMs: number[] = [];
  const wers: number[] = [];
  let failed = 0;
  let until = Infinity;
  let counting = false;

  const user = async (i: number) => {
    const o = await openChat(channels.pick(i), `lt-${ctx.runId}-voice-${i}`, opts.timeZone);
    progress.attempts++;
    if (!o.ok) {
      progress.refused++;
      return;
    }
    progress.connected++;
    const call = o.call;
    let waiter: ((f: ServerFrame) => void) | undefined;
    call.on('data', (f: ServerFrame) => waiter?.(f));
    call.resume();
    try {
      for (let n = 0; now() < until; n++) {
        const cmid = `v${i}-${n}`;
        const sent = now();
        let messageId = '';
        let firstChunk = 0;
        const outcome = await new Promise<'ok' | 'failed'>((resolve) => {
          const timer = setTimeout(() => resolve('failed'), 120_000);
          waiter = (f) => {
            const fr = f.frame;
            if (fr?.$case === 'accepted' && fr.accepted.clientMessageId === cmid) messageId = fr.accepted.messageId;
            else if (fr?.$case === 'transcript' && fr.transcript.messageId === messageId) {
              if (counting) transcriptMs.push(now() - sent);
              if (counting) wers.push(wordErrorRate(VOICE_QUESTION, fr.transcript.text));
            } else if (fr?.$case === 'voiceChunk' && fr.voiceChunk.inReplyTo === messageId && !firstChunk && fr.voiceChunk.audio) {
              firstChunk = now() - sent;
              if (counting) firstChunkMs.push(firstChunk);
            } else if ((fr?.$case === 'response' && fr.response.inReplyTo === messageId) || (fr?.$case === 'error' && (fr.error.inReplyTo === messageId || fr.error.inReplyTo === cmid))) {
              clearTimeout(timer);
              resolve(fr.$case === 'response' && fr.response.voice ? 'ok' : 'failed');
            }
          };
          call.write({ frame: { $case: 'message', message: { clientMessageId: cmid, content: { $case: 'audio', audio } } } });
          progress.sent++;
        });
        if (!counting) break; // the warm-up message
        if (outcome === 'ok') {
          replyMs.push(now() - sent);
          progress.answered++;
        } else {
          failed++;
          progress.failed++;
        }
        ctx.progress(progress);
      }
    } finally {
      call.end();
    }
  };
  try {
    // Warm-up (not counted): the server starts its engines at start-up, and loading Piper takes seconds.
    ctx.log('warm-up: one voice message, until the engines have loaded');
    await user(opts.users);
    counting = true;
    until = now() + opts.durationMs;
    await Promise.all(Array.from({ length: opts.users }, (_, i) => user(i)));
  } finally {
    channels.close();
  }

  const figures: VoiceFigures = {
    messages: replyMs.length + failed,
    failed,
    transcriptMs: summarize(transcriptMs),
    firstChunkMs: summarize(firstChunkMs),
    replyMs: summarize(replyMs),
    meanWer: wers.length ? round(wers.reduce((a, b) => a + b, 0) / wers.length, 3) : null,
    questionSeconds: round(spoken.durationMs / 1000, 2),
  };
  return {
    settings: { users: opts.users, durationS: opts.durationMs / 1000, delayScale: opts.delayScale, question: VOICE_QUESTION, questionSeconds: figures.questionSeconds, serverEnv: opts.serverEnv },
    figures: { voice: figures },
    checks: [{ name: 'failures', goal: '0', measured: String(failed), hit: failed === 0 }],
    notes: [
      `${opts.users} users, each sending the next spoken question (${figures.questionSeconds} s, Piper's en_US joe voice) as soon as the previous reply is whole; simulated model delay × ${opts.delayScale}.`,
      'Transcript = send → Transcript frame (PocketSphinx); first voice = send → first VoiceChunk (transcription + model + first sentence synthesized by Piper); reply = send → BotResponse with the whole voice.',
      'Each offline engine serves one request at a time, so with several users the engines queue: the figures show how latency grows with concurrent speakers on this machine.',
    ],
  };
}
