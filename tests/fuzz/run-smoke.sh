#!/usr/bin/env bash
# Smoke-runs one libFuzzer target: first replays every committed input under
# the corpus (regression cases included), then fuzzes a scratch copy for N s.
set -euo pipefail
bin=$1 corpus=$2 work=$3 secs=$4
mkdir -p "$corpus" "$work"
rm -rf "$work"/*
cp -r "$corpus"/. "$work"/ 2>/dev/null || true
"$bin" -runs=0 "$corpus"
exec "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/" "$work"
