#!/usr/bin/env bash
# Packs the packages the notebooks and the file-based apps reference (Mblm, Mblm.MLNet, Mblm.Examples, version 0.1.0)
# into the repository's nupkg/ folder, and drops any copy of that version from the NuGet cache so that the fresh one is
# used. Run from anywhere: bash notebooks/pack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf nupkg
for project in src/Mblm src/Mblm.MLNet examples/Shared; do
  dotnet pack "$project" -c Release -o nupkg -p:Version=0.1.0 -p:NuGetAudit=false | grep -E "error|Successfully created" || exit 1
done
cache=${NUGET_PACKAGES:-$HOME/.nuget/packages}
rm -rf "$cache/mblm/0.1.0" "$cache/mblm.mlnet/0.1.0" "$cache/mblm.examples/0.1.0"
