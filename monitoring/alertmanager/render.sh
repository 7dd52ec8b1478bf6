#!/usr/bin/env bash
# Render alertmanager.yml for a deployment, with the Telegram secret taken from a file.
#
#   TELEGRAM_ALERT_CHAT_ID=-1001234567890 ./render.sh [SOURCE] [DEST]
#
# SOURCE defaults to alertmanager.yml next to this script, DEST to /run/alertmanager/alertmanager.yml
# (keep DEST on tmpfs, outside the repository). Reads ALERTMANAGER_SECRETS_DIR (default
# /etc/alertmanager/secrets)/telegram_bot_token.
#
# Alertmanager >= 0.26 reads the token itself: the placeholder becomes `bot_token_file: <path>`
# and DEST holds no secret. On 0.25 (no bot_token_file) the token is written into DEST, created
# with mode 0600. The version comes from ALERTMANAGER_VERSION or `alertmanager --version`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="${1:-$here/alertmanager.yml}"
dest="${2:-/run/alertmanager/alertmanager.yml}"
secrets="${ALERTMANAGER_SECRETS_DIR:-/etc/alertmanager/secrets}"
token_file="$secrets/telegram_bot_token"
placeholder='"__TELEGRAM_BOT_TOKEN_FROM_FILE__"'

fail() { echo "render.sh: $*" >&2; exit 1; }

chat_id="${TELEGRAM_ALERT_CHAT_ID:-}"
[[ "$chat_id" =~ ^-?[0-9]+$ ]] || fail "TELEGRAM_ALERT_CHAT_ID='$chat_id' is not valid: expected a numeric chat id like -1001234567890"
[[ -r "$token_file" ]] || fail "$token_file is missing or unreadable: expected the bot token from @BotFather"

version="${ALERTMANAGER_VERSION:-}"
if [[ -z "$version" ]]; then
  for bin in alertmanager prometheus-alertmanager; do
    if command -v "$bin" >/dev/null; then
      version="$("$bin" --version 2>&1 | sed -n 's/.*version \([0-9][0-9.]*\).*/\1/p' | head -n1)"
      break
    fi
  done
fi
[[ "$version" =~ ^[0-9]+\.[0-9]+ ]] || fail "cannot tell the Alertmanager version: set ALERTMANAGER_VERSION (e.g. 0.27.0)"
minor="$(echo "$version" | cut -d. -f2)"
major="$(echo "$version" | cut -d. -f1)"

mkdir -p "$(dirname "$dest")"
umask 077
tmp="$(mktemp "$dest.XXXXXX")"
trap 'rm -f "$tmp"' EXIT

if (( major > 0 || minor >= 26 )); then
  # The token stays in its file; sed only writes the path (validated: no sed metacharacters).
  [[ "$token_file" =~ ^[A-Za-z0-9_./-]+$ ]] || fail "secrets path '$token_file' has unsupported characters"
  sed -e "s|bot_token: $placeholder|bot_token_file: $token_file|" \
      -e "s|chat_id: -1000000000000|chat_id: $chat_id|" "$src" > "$tmp"
else
  token="$(tr -d ' \r\n\t' < "$token_file")"
  [[ "$token" =~ ^[0-9]+:[A-Za-z0-9_-]+$ ]] || fail "$token_file does not hold a bot token (expected 123456789:AAE…)"
  sed -e "s|bot_token: $placeholder|bot_token: \"$token\"|" \
      -e "s|chat_id: -1000000000000|chat_id: $chat_id|" "$src" > "$tmp"
fi
grep -q '__TELEGRAM_BOT_TOKEN_FROM_FILE__' "$tmp" && fail "placeholder still present: $src changed?"
# Templates are referenced relative to the config file.
if [[ -d "$(dirname "$src")/templates" && "$(dirname "$src")" != "$(dirname "$dest")" ]]; then
  rm -rf "$(dirname "$dest")/templates"
  cp -r "$(dirname "$src")/templates" "$(dirname "$dest")/templates"
fi
mv "$tmp" "$dest"
trap - EXIT
echo "render.sh: wrote $dest (Alertmanager $version)"
