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
