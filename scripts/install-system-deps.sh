#!/usr/bin/env bash
# Installs the Debian servers the test suite starts on loopback, and wrk for `make bench-http`;
# a no-op when all are present.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v promtool >/dev/null || need+=(prometheus)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v wrk >/dev/null || need+=(wrk)  # the HTTP load of `make bench-http`
command -v callgrind_control >/dev/null || need+=(valgrind)  # `make bench-instructions`
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# The packages start their daemons; tests run their own instances on free ports.
for svc in redis-server prometheus prometheus-alertmanager postgresql; do
  (service "$svc" stop || true) >/dev/null 2>&1
done
exit 0
