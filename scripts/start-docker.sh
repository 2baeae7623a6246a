#!/usr/bin/env bash
# Makes sure a Docker daemon answers: installs Debian's docker.io when missing, starts dockerd in the
# background when none runs. Prints `started` on its last line when it started the daemon itself (so the
# caller knows to stop it), `running` when one was already there.
set -euo pipefail
if docker info >/dev/null 2>&1; then echo running; exit 0; fi
if ! command -v dockerd >/dev/null; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >&2
fi
nohup dockerd >/tmp/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then echo started; exit 0; fi
  sleep 0.5
done
echo "start-docker: dockerd did not answer within 30 s; see /tmp/dockerd.log" >&2
tail -20 /tmp/dockerd.log >&2
exit 1
