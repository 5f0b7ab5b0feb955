#!/usr/bin/env bash
# Install the Debian tools the terminal tests and benchmarks need, when they are missing and we can.
set -u
missing=()
for tool in tmux ffmpeg sox; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
# the store tests start a throwaway PostgreSQL cluster with Debian's server binaries
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >/tmp/dasctl-system-deps.log 2>&1 \
    || echo "system-deps: could not install ${missing[*]} (see /tmp/dasctl-system-deps.log); tests that need them are skipped" >&2
else
  echo "system-deps: ${missing[*]} missing and not root: tests that need them are skipped" >&2
fi
exit 0
