#!/usr/bin/env bash
# `make demo`: the whole main job on the local emulator, in a throwaway config dir (.demo/), so the
# user's real configuration and tokens are never touched. Installs nothing (make already did).
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=.venv/bin
DEMO_DIR=.demo
RECORDING=tests/data/speech-a-8k-mono.wav

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
export DASCTL_CONFIG_DIR="$PWD/$DEMO_DIR/config"
unset DASCTL_PROFILE DASCTL_URL DASCTL_TOKEN DASCTL_CLIENT_ID DASCTL_CLIENT_SECRET 2>/dev/null || true

PORT=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN/dasctl" serve --host 127.0.0.1 --port "$PORT" >"$DEMO_DIR/emulator.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 100); do
    if "$BIN/python" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$SERVER" 2>/dev/null; then
        echo "demo: the emulator did not start:" >&2
        cat "$DEMO_DIR/emulator.log" >&2
        exit 1
    fi
    sleep 0.1
done
export DASCTL_URL="http://127.0.0.1:$PORT"

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ] && [ "${TERM:-}" != dumb ]; then
    step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
else
    step() { printf '\n$ %s\n' "$*"; }
fi

step "dasctl serve --port $PORT   # the local das-Peak Streaming emulator, in the background"
sed -n '1,3p' "$DEMO_DIR/emulator.log"

step "dasctl login --profile local"
# the built-in local profile knows the emulator's demo client: no input, nothing secret stored
"$BIN/dasctl" login --profile local </dev/null

# first what a refusal looks like, so that the demo ends on the enrollment
step "dasctl register tests/data/tone-440-8k-mono.wav --speed 0   # a pure tone is not a live voice"
set +e
"$BIN/dasctl" register tests/data/tone-440-8k-mono.wav --profile local --speed 0 --quiet 2>"$DEMO_DIR/spoof.err"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "-> exit code 5, as expected: the service refused a recording that is not a live voice."
else
    echo "demo: expected exit code 5 for the tone, got $status:" >&2
    cat "$DEMO_DIR/spoof.err" >&2
    exit 1
fi

step "dasctl register $RECORDING --profile local --output $DEMO_DIR/credential.json"
"$BIN/dasctl" register "$RECORDING" --profile local --output "$DEMO_DIR/credential.json" \
    --keep-audio "$DEMO_DIR/collected.wav"

step "the credential record"
"$BIN/python" - "$DEMO_DIR/credential.json" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
credential = record["credential"]
print(f"credential  {credential[:48]}... ({len(credential)} characters)")
print(f"model hash  {record['model_hash']}")
print(f"created     {record['created']}")
PY

step "dasctl credentials list   # das-Peak keeps no credentials: dasctl's store does"
"$BIN/dasctl" credentials list

SPEAKER=$(basename "$RECORDING" .wav)
step "dasctl verify $RECORDING --start 1 --speaker $SPEAKER --speed 0   # a later call, the same voice"
"$BIN/dasctl" verify "$RECORDING" --start 1 --speaker "$SPEAKER" --speed 0 --quiet

echo
echo "Done: speaker $SPEAKER is enrolled and verified. Its credential, model hash and enrollment audio are"
echo "kept in the credential store ($DEMO_DIR/config/store.db: \`dasctl credentials history $SPEAKER\`),"
echo "the credential record also in $DEMO_DIR/credential.json (mode 0600), the voice the service heard in"
echo "$DEMO_DIR/collected.wav."
