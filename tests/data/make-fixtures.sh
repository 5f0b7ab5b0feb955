#!/usr/bin/env bash
# Regenerates the committed audio fixtures (needs espeak-ng and sox). The outputs are committed, so
# CI never runs this; it is here so anyone can see, and redo, how each file was made.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
text_a="My voice is my password. I am calling about my account, and I would like to check the balance \
of my savings and the last three payments, please. Thank you very much for your help today."
text_b="Good afternoon. This is the customer service line. Could you please confirm your full name, your \
date of birth and the first line of your address, so that I can find your records?"
espeak-ng -v en-us -s 160 -w "$tmp/a.wav" "$text_a"
espeak-ng -v en-gb+f3 -s 150 -w "$tmp/b.wav" "$text_b"
espeak-ng -v de -s 150 -w "$tmp/c.wav" "Guten Tag. Ich rufe wegen meines Kontos an und möchte gerne den Kontostand und die letzten Zahlungen prüfen. Vielen Dank für Ihre Hilfe."
espeak-ng -v en-us -s 170 -w "$tmp/short.wav" "Hello there."
# another speaker (a higher, female variant: about 208 Hz against A's 103 Hz) reading A's very words
espeak-ng -v en-us+f3 -s 160 -w "$tmp/d.wav" "$text_a"
# speaker A at the telephone rate, mono, 16-bit
sox "$tmp/a.wav" -r 8000 -b 16 -c 1 speech-a-8k-mono.wav
# speaker B at 16 kHz, mono, 16-bit
sox "$tmp/b.wav" -r 16000 -b 16 -c 1 speech-b-16k-mono.wav
# speaker D at 16 kHz, mono, 16-bit: the impostor who says exactly what A said
sox "$tmp/d.wav" -r 16000 -b 16 -c 1 speech-d-16k-mono.wav
# speaker C at 22.05 kHz, mono, 16-bit (espeak's native rate)
sox "$tmp/c.wav" -r 22050 -b 16 -c 1 speech-c-22k-mono.wav
# a call: speaker A on the left, speaker B on the right, 44.1 kHz stereo
sox "$tmp/a.wav" -r 44100 "$tmp/l.wav"; sox "$tmp/b.wav" -r 44100 "$tmp/r.wav"
sox -M "$tmp/l.wav" "$tmp/r.wav" -b 16 speech-ab-44k-stereo.wav
# not enough voice for an enrollment
sox "$tmp/short.wav" -r 16000 -b 16 -c 1 speech-short-16k-mono.wav
# a pure tone: loud, steady, no voice a person makes (the emulator calls it a spoof)
sox -n -r 8000 -b 16 -c 1 tone-440-8k-mono.wav synth 10 sine 440 vol 0.5
# silence is valid audio (the service will say there is no voice)
sox -n -r 8000 -b 16 -c 1 silence-8k-mono.wav trim 0 3
ls -l *.wav

# --- wav-headers/: what streaming writers and call recorders really write (tests/test_wav.py) --------
# Each is half a second of speaker A, so all of them together stay small. Pipes (`| cat`) are what make
# ffmpeg and sox leave their "unknown length" placeholders; where no tool writes a value (data size 0 or
# 0xFFFFFFFE, a 0 Hz rate) the header of a tool's output is patched, and the comment says so.
mkdir -p wav-headers; cd wav-headers
u32() { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) \
  $((($1 >> 16) & 255)) $((($1 >> 24) & 255)))"; }
patch_u32() { u32 "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }  # FILE OFFSET VALUE
data_size_at() { echo $(( $(grep -obUa data "$1" | head -1 | cut -d: -f1) + 4 )); }
ff() { ffmpeg -v error -nostdin -i source.wav "$@"; }
sox ../speech-a-8k-mono.wav -b 16 source.wav trim 1 0.5                  # the clean reference (definite size)
ff -f wav - | cat > ffmpeg-pipe.wav                                      # RIFF and data size 0xFFFFFFFF
sox source.wav -t wav - trim 0 0.5 | cat > sox-pipe.wav                  # 0x7FFFF024 / 0x7FFFF000
cp ffmpeg-pipe.wav data-size-0.wav; patch_u32 data-size-0.wav "$(data_size_at data-size-0.wav)" 0
cp ffmpeg-pipe.wav data-size-fffffffe.wav
patch_u32 data-size-fffffffe.wav "$(data_size_at data-size-fffffffe.wav)" 0xFFFFFFFE
cp source.wav riff-size-0.wav; patch_u32 riff-size-0.wav 4 0             # a placeholder RIFF size, data exact
ff -rf64 always -f wav - | cat > ffmpeg-rf64-pipe.wav                    # RF64 whose ds64 sizes are all 0
ff -y -rf64 always ffmpeg-rf64.wav                                       # RF64 with its ds64 filled in
# two data chunks (no tool here writes them; some recorders append one per segment): the two halves
sox source.wav "$tmp/first.wav" trim 0 0.25; sox source.wav "$tmp/second.wav" trim 0.25
second_bytes=$(( $(stat -c %s "$tmp/second.wav") - 36 ))
{ printf 'RIFF'; u32 $(( $(stat -c %s "$tmp/first.wav") - 8 + second_bytes )); printf 'WAVE'
  tail -c +13 "$tmp/first.wav"; tail -c +37 "$tmp/second.wav"; } > two-data-chunks.wav
head -c 4044 source.wav > truncated.wav                                  # promises 0.5 s, holds 0.25 s
head -c -2 source.wav > one-sample-short.wav
cp source.wav rate-0.wav; patch_u32 rate-0.wav 24 0
cp source.wav rate-4ghz.wav; patch_u32 rate-4ghz.wav 24 4000000000
printf 'This is a text file, not a recording.\nSaved by Notepad as "Unicode".\n' | iconv -t UTF-16 > utf16.txt
# every codec dasctl decodes itself, as ffmpeg streams it (unknown length); sox's A-law has a fact chunk
for codec in u8 s24le s32le f32le f64le mulaw alaw; do ff -c:a "pcm_$codec" -f wav - | cat > "codec-$codec.wav"; done
ff -ac 2 -f wav - | cat > codec-s16le-stereo.wav
sox source.wav -e a-law alaw-sox.wav
sox source.wav -e ima-adpcm ima-adpcm.wav                                # a codec left to libsndfile
cd ..
ls -l wav-headers

# --- formats/: what contact-centre recorders, phones and screen recorders write (tests/test_formats.py) --
# Five seconds of the call (speaker A left, B right), encoded by ffmpeg; the 8 kHz telephone codecs from
# speaker A alone. FFmpeg has AMR-NB's encoder only in PyAV's wheels (libopencore), so that one file is
# written through PyAV; no encoder here writes AMR-WB or G.729 (FFmpeg only decodes them): no fixture.
mkdir -p formats; cd formats
fc() { ffmpeg -v error -nostdin -y -ss 1 -t 5 -i ../speech-ab-44k-stereo.wav "$@"; }
fa() { ffmpeg -v error -nostdin -y -ss 1 -t 5 -i ../speech-a-8k-mono.wav "$@"; }
video() { ffmpeg -v error -nostdin -y -f lavfi -i "color=c=gray:s=32x32:r=2:d=5" -ss 1 -t 5 \
  -i ../speech-ab-44k-stereo.wav -shortest "$@"; }
fc -c:a libmp3lame -b:a 48k call.mp3                          # MP3 with a Xing header (exact length)
fc -c:a aac -b:a 48k call.m4a                                 # AAC in MP4, moov after the data
fc -c:a aac -b:a 48k -movflags +faststart call-faststart.m4a  # ... moov first (streamable)
fc -c:a aac -b:a 48k -f adts call.aac                         # raw AAC (ADTS), what some phones write
fc -c:a libopus -b:a 32k call.opus                            # Opus in Ogg
fc -c:a libvorbis -q:a 1 call.ogg                             # Vorbis in Ogg
fc -c:a flac -ar 16000 call.flac                            # (16 kHz: a smaller file)
fc -c:a wmav2 -b:a 48k call.wma                               # WMA in ASF
fa -c:a libgsm -ar 8000 call.gsm                              # raw GSM 06.10 (no header: known by name)
video -c:v libx264 -preset ultrafast -c:a aac -b:a 48k call.mp4          # a screen recording of a call
video -c:v libx264 -preset ultrafast -c:a libopus -b:a 32k call.mkv
video -c:v libvpx -b:v 20k -c:a libvorbis -q:a 1 call.webm
ffmpeg -v error -nostdin -y -f lavfi -i "color=c=gray:s=32x32:r=2:d=2" -c:v libx264 -preset ultrafast \
  video-only.mp4                                              # no audio track at all
../../../.venv/bin/python - <<'PY'                              # AMR-NB, 12.2 kbit/s, through PyAV's FFmpeg
import av
with av.open("../speech-a-8k-mono.wav") as source, av.open("call.amr", "w", format="amr") as out:
    stream = out.add_stream("libopencore_amrnb", rate=8000, layout="mono")
    stream.bit_rate = 12200
    source.seek(1_000_000)  # from 1 s, as the others
    for frame in source.decode(audio=0):
        if frame.time is not None and frame.time >= 6:
            break
        frame.pts = None
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
PY
head -c 30000 call.m4a > truncated.m4a                        # cut off: its moov (at the end) is gone
head -c 12000 call-faststart.m4a > truncated-faststart.m4a    # moov first, the data stops at a third
head -c 10000 call.mp3 > truncated.mp3                        # the Xing header promises 5 s
python3 -c 'import random; random.seed(7); print(end=bytes(random.randrange(256) for _ in range(4000)).hex())' \
  | xxd -r -p > noise.mp3                                     # not audio, named as if it were
cd ..
ls -l formats
