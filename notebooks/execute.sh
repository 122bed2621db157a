#!/usr/bin/env bash
# Executes the notebooks and writes them back with their outputs (what is committed): packs the packages they reference
# first (pack.sh). Run from anywhere: bash notebooks/execute.sh [NAME ...]   (default: every notebook)
set -euo pipefail
cd "$(dirname "$0")"
bash pack.sh
dotnet tool restore > /dev/null
names=("$@")
[ ${#names[@]} -gt 0 ] || names=($(ls *.ipynb | sed 's/\.ipynb$//'))
for name in "${names[@]}"; do
  tmp=$(mktemp --suffix=.ipynb)
  echo "executing $name.ipynb"
  if ! dotnet repl --run "$name.ipynb" --exit-after-run --output-format ipynb --output-path "$tmp" < /dev/null > /dev/null; then
    echo "$name.ipynb: a cell failed; the committed file is left as it was (outputs in $tmp)"; exit 1
  fi
  mv "$tmp" "$name.ipynb" && chmod 644 "$name.ipynb"
done
