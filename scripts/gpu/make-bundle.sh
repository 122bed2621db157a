#!/usr/bin/env bash
# Builds the GPU-check bundle (about 31 MiB) for a GPU machine that has PyTorch (with CUDA) but no .NET and no network:
#
#   bash scripts/gpu/make-bundle.sh [PROJECT_CHECKOUT] [OUT_DIR]      (defaults: this checkout, ./gpu-bundle; ~3.5 min)
#
# Contents: the .NET runtime of this machine; the mblm CLI of the committed HEAD published framework-dependent with -p:MblmTorchBackend=external
# (no libtorch: the device's PyTorch supplies it through MBLM_LIBTORCH_DIR); GpuProbe; the golden cases of ../shared/golden;
# p1-2d-tt.yaml; train.txt (the project's own sources); and, when the Python reference is set up here
# (../shared/reference-harness, $REFENV/site), the reference's pure-Python source (mblm, MEGABYTE_pytorch, einops) and the
# harness stubs, so that device-check.sh can time the reference on the same GPU. An OUT_DIR inside the checkout is added
# to .git/info/exclude. Fails above CAP_MIB (default 60).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAIN=$(cd "${1:-$HERE/../..}" && pwd)
REPO=$MAIN
SHARED=${SHARED:-$MAIN/../shared}
mkdir -p "${2:-$MAIN/gpu-bundle}"; OUT=$(cd "${2:-$MAIN/gpu-bundle}" && pwd)
REFENV=${REFENV:-/tmp/refenv}
CAP_MIB=${CAP_MIB:-60}
WORK=$(mktemp -d /tmp/gpu-bundle.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

echo "make-bundle: main=$MAIN repo=$REPO out=$OUT work=$WORK"
command -v dotnet >/dev/null || { echo "dotnet not found" >&2; exit 1; }
command -v xz >/dev/null || { echo "xz not found (apt-get install xz-utils)" >&2; exit 1; }

# 1. Framework-dependent, RID-specific publish (natives land in the root; the project's target patches the shim).
# -p:MblmTorchBackend=external: no libtorch in the publish (it would shadow the device's); the GLIBCXX-patched glue stays.
# Built from the committed HEAD in a folder of its own, so the checkout's default (CPU) build outputs are untouched.
mkdir -p "$WORK/src"
git -C "$MAIN" archive --format=tar HEAD | tar -x -C "$WORK/src"
dotnet publish "$WORK/src/src/Mblm.Cli" -c Release -r linux-x64 --self-contained false -o "$WORK/pub" -nologo -v q \
  -p:MblmTorchBackend=external -p:DebugType=none -p:GenerateDocumentationFile=false > "$WORK/publish.log" 2>&1 || { cat "$WORK/publish.log"; exit 1; }

# 2. The probe (TorchSharp only, no libtorch package), published the same way; only its own three files are kept.
cp -r "$HERE/probe" "$WORK/probe-src"
rm -rf "$WORK/probe-src/bin" "$WORK/probe-src/obj"
dotnet publish "$WORK/probe-src" -c Release -r linux-x64 --self-contained false -o "$WORK/probe-pub" -nologo -v q \
  -p:DebugType=none > "$WORK/probe.log" 2>&1 || { cat "$WORK/probe.log"; exit 1; }
cmp -s "$WORK/probe-pub/TorchSharp.dll" "$WORK/pub/TorchSharp.dll" || { echo "probe and app TorchSharp.dll differ" >&2; exit 1; }

# 3. App folder: everything except libtorch (the device's PyTorch supplies it) and debug files.
mkdir -p "$WORK/app"
for f in "$WORK/pub"/*; do
  n=$(basename "$f")
  case "$n" in
    libtorch*.so|libc10*.so|libgomp-*.so*|libshm.so|libjitbackend_test.so|libnnapi_backend.so|libbackend_with_compiler.so|libaoti_custom_ops.so|libtorchbind_test.so)
      echo "make-bundle: the external publish still holds $n" >&2; exit 1 ;;
    *.dbg|*.pdb|*.xml) ;;
    cpu|cuda-*) ;;  # TorchSharp's NuGet-cache fallback folders must never travel
    *) cp -a "$f" "$WORK/app/" ;;
  esac
done
cp "$WORK/probe-pub/GpuProbe.dll" "$WORK/probe-pub/GpuProbe.deps.json" "$WORK/probe-pub/GpuProbe.runtimeconfig.json" "$WORK/app/"
VERNEED=$(readelf -V "$WORK/app/libLibTorchSharp.so")  # (no grep -q in a pipe: pipefail + SIGPIPE)
grep -q 'GLIBCXX_3.4.32  Flags: WEAK' <<<"$VERNEED" \
  || { echo "libLibTorchSharp.so in the publish is not patched (GLIBCXX_3.4.32 not weak)" >&2; exit 1; }

# 4. Runtime: the host, hostfxr and the shared framework the app rolls forward to (highest 10.x here).
DOTNET_ROOT_HERE=$(dirname "$(readlink -f "$(command -v dotnet)")")
RT_VER=$(dotnet --list-runtimes | awk '$1=="Microsoft.NETCore.App"{print $2}' | sort -V | tail -n 1)
FXR_VER=$(ls "$DOTNET_ROOT_HERE/host/fxr" | sort -V | tail -n 1)
[ -n "$RT_VER" ] || { echo "no Microsoft.NETCore.App runtime found" >&2; exit 1; }

rm -rf "$OUT"; mkdir -p "$OUT/cases"
tar -C "$WORK/app" -cf - . | xz -9 -T0 > "$OUT/app.tar.xz"
tar -C "$DOTNET_ROOT_HERE" -cf - dotnet "host/fxr/$FXR_VER" "shared/Microsoft.NETCore.App/$RT_VER" | xz -9 -T0 > "$OUT/dotnet-runtime.tar.xz"

# 5. Inputs: golden cases, the benchmark config, training bytes (the project's own sources and docs, ~0.4 MB).
for c in "$SHARED"/golden/v*/; do cp -r "$c" "$OUT/cases/"; done
# The reference (pure Python) for a side-by-side step on the device, when the harness is set up here.
if [ -d "$REFENV/site/mblm" ] && [ -d "$SHARED/reference-harness/stubs" ]; then
  mkdir -p "$WORK/ref"
  cp -r "$REFENV/site/mblm" "$REFENV/site/MEGABYTE_pytorch" "$REFENV/site/einops" "$REFENV/site/mblm-0.4.0.dist-info" "$WORK/ref/"
  cp -r "$SHARED/reference-harness/stubs/." "$WORK/ref/"
  find "$WORK/ref" -name __pycache__ -prune -exec rm -rf {} +
  tar -C "$WORK/ref" -cf - . | xz -9 -T0 > "$OUT/reference.tar.xz"
else
  echo "make-bundle: no reference source ($REFENV/site/mblm or $SHARED/reference-harness/stubs missing): the device check will skip the reference"
fi
cp "$MAIN/examples/configs/p1-2d-tt.yaml" "$OUT/cases/"
find "$MAIN/src" "$MAIN/docs" "$MAIN/README.md" -type f \( -name '*.cs' -o -name '*.md' \) -print0 | sort -z \
  | xargs -0 cat | head -c 3000000 > "$OUT/cases/train.txt"

# 6. Manifest and size cap.
{
  echo "built: $(date -u +%FT%TZ) on $(uname -n)"
  echo "main commit: $(git -C "$MAIN" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "dotnet runtime: Microsoft.NETCore.App $RT_VER, hostfxr $FXR_VER"
  echo "TorchSharp: 0.107.0 (libLibTorchSharp.so built against libtorch 2.10.0)"
  (cd "$OUT" && find . -type f ! -name MANIFEST.txt -print0 | sort -z | xargs -0 sha256sum)
  du -ab "$OUT" | tail -n 1
} > "$OUT/MANIFEST.txt"
TOTAL=$(du -sb "$OUT" | cut -f1)
echo "make-bundle: $(ls -la "$OUT" | awk 'NR>1{print $5, $9}' | tr '\n' ' ')"
echo "make-bundle: total $((TOTAL / 1024 / 1024)) MiB ($TOTAL bytes), cap $CAP_MIB MiB"
[ "$TOTAL" -le $((CAP_MIB * 1024 * 1024)) ] || { echo "bundle over the cap" >&2; exit 1; }

# 7. Keep it out of git without touching tracked files.
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
  rel=$(realpath --relative-to="$REPO" "$OUT")
  case "$rel" in ../*) ;; *)
    ex="$(git -C "$REPO" rev-parse --absolute-git-dir)/info/exclude"
    mkdir -p "$(dirname "$ex")"
    grep -qxF "/$rel/" "$ex" 2>/dev/null || echo "/$rel/" >> "$ex"
    echo "make-bundle: /$rel/ is in $ex" ;;
  esac
fi
