#!/usr/bin/env bash
# Install the system packages Switchboard needs, only those missing (Debian/Ubuntu).
#   java + mvn : run the Kafka broker from Maven Central jars
#   postgresql : throwaway PostgreSQL clusters for tests and benchmarks
#   wrk        : HTTP load generator for bench/
#   dovecot    : a real IMAP server for the e-mail tests (throwaway instances, loopback)
#   openssl    : throwaway certificates for the TLS tests
#   chromium   : browser tests (tests/browser; Playwright drives this browser, no download)
set -euo pipefail

missing=()
command -v java >/dev/null || missing+=(default-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v wrk >/dev/null || missing+=(wrk)
command -v dovecot >/dev/null || [ -x /usr/sbin/dovecot ] || missing+=(dovecot-imapd)
command -v openssl >/dev/null || missing+=(openssl)
[ -x /usr/bin/chromium ] || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]} (install them with apt-get as root)" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
apt-get update -q >/dev/null
# The packages' post-install scripts try to start system services and may be refused: harmless,
# we start our own throwaway instances.
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
