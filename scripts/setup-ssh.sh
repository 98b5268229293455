#!/usr/bin/env bash
# Install the OpenSSH client and server that ssh targets and tests/targets/test_ssh.py use.
# Idempotent and quiet: a second run does nothing. Needs root (apt-get) only when something is missing.
# No system sshd is started: the tests start their own on 127.0.0.1 with throwaway keys.
#   bash scripts/setup-ssh.sh
set -euo pipefail

missing=()
{ command -v ssh && command -v scp && command -v ssh-keygen; } >/dev/null || missing+=(openssh-client)
{ command -v sshd || [[ -x /usr/sbin/sshd ]]; } >/dev/null || missing+=(openssh-server)

if (( ${#missing[@]} )); then
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "setup-ssh: missing ${missing[*]}; as root run: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup-ssh: installing ${missing[*]}" >&2
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  # apt's chatter goes to a log that is shown only when the install fails.
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
  fi
fi

# sshd run as root refuses to start without its privilege-separation directory (/run is emptied at boot).
if [[ $(id -u) == 0 ]]; then
  mkdir -p /run/sshd
fi
