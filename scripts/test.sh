#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite on CPU, offline: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the report test opens grouprp inspect's HTML in a real headless Chromium; it is skipped (with the reason) where
# chromium cannot be installed
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && \
    apt-get install -y -q chromium >/dev/null 2>&1; }) || echo "scripts/test.sh: could not install chromium" >&2
fi
. .venv/bin/activate
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec python -m pytest -q -p no:cacheprovider "$@"
