#!/usr/bin/env bash
# Build KenLM's `lmplz` (n-gram estimation) and `build_binary` into VENV_DIR/bin.
#
#   bash deploy/build_kenlm.sh VENV_DIR
#
# Why: `pip install kenlm` gives the scoring module only; `winnow lm train` also needs lmplz to
# estimate its 5-gram models. Both programs are in the kenlm PyPI sdist (lm/builder), so we build
# them from that sdist -- the same source the Python module was built from -- with cmake and
# Debian's boost/zlib/bz2/lzma dev packages. No git clone, no hub download.
#
# Idempotent: exits early when both programs already exist and run. About 1-2 minutes on 2 cores.
# Environment: KENLM_MAX_ORDER (default 6, like the Python module), KENLM_JOBS (default nproc),
# KENLM_SDIST (a local kenlm-*.tar.gz to build from instead of fetching one with pip).
set -euo pipefail

VENV_DIR="${1:?usage: bash deploy/build_kenlm.sh VENV_DIR}"
VENV_DIR="$(cd "$VENV_DIR" && pwd)"
BIN="$VENV_DIR/bin"
if [[ -x "$BIN/pip" ]]; then PIP=("$BIN/pip"); elif [[ -x "$BIN/python" ]]; then PIP=("$BIN/python" -m pip);
else PIP=(python3 -m pip); fi
MAX_ORDER="${KENLM_MAX_ORDER:-6}"
JOBS="${KENLM_JOBS:-$(nproc 2>/dev/null || echo 2)}"

log() { echo "[build_kenlm] $*"; }

# lmplz --help exits 1 by design; recognise it by its banner instead.
lmplz_runs() { [[ "$("$BIN/lmplz" --help 2>&1 || true)" == *Kneser-Ney* ]]; }

if [[ -x "$BIN/lmplz" && -x "$BIN/build_binary" ]] && lmplz_runs; then
    log "lmplz and build_binary already in $BIN; nothing to do"
    exit 0
fi

# --- 1. Debian build dependencies (only what is missing) -----------------------------------
DEB_DEPS=(cmake g++ make libboost-program-options-dev libboost-system-dev libboost-thread-dev
          libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)
missing=()
for pkg in "${DEB_DEPS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    log "installing Debian build deps: ${missing[*]}"
    SUDO=""
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null || { log "need root or sudo to apt-get install ${missing[*]}"; exit 1; }
        SUDO="sudo"
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "Debian build deps present"
fi

# --- 2. the kenlm sdist ----------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/build_kenlm.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
if [[ -n "${KENLM_SDIST:-}" ]]; then
    cp "$KENLM_SDIST" "$WORK/"
else
    log "fetching the kenlm sdist with pip"
    # --no-binary kenlm (not :all:): only kenlm itself must be the sdist; its build requirements
    # (setuptools, wheel, cmake) may come as wheels, else pip compiles cmake from source (>10 min).
    "${PIP[@]}" download --quiet --no-deps --no-binary kenlm kenlm -d "$WORK"
fi
SDIST="$(ls "$WORK"/kenlm-*.tar.gz "$WORK"/kenlm-*.zip 2>/dev/null | head -n1 || true)"
[[ -n "$SDIST" ]] || { log "no kenlm sdist found in $WORK"; exit 1; }
log "unpacking $(basename "$SDIST")"
case "$SDIST" in
    *.zip) (cd "$WORK" && python3 -m zipfile -e "$SDIST" .) ;;
    *) tar -xzf "$SDIST" -C "$WORK" ;;
esac
SRC="$(find "$WORK" -maxdepth 1 -mindepth 1 -type d -name 'kenlm*' | head -n1)"
[[ -f "$SRC/lm/builder/lmplz_main.cc" ]] || { log "$SDIST has no lm/builder/lmplz_main.cc"; exit 1; }

# --- 3. build ---------------------------------------------------------------------------------
log "configuring (KENLM_MAX_ORDER=$MAX_ORDER)"
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER="$MAX_ORDER" \
      -DCOMPILE_TESTS=OFF -DENABLE_PYTHON=OFF -DENABLE_INTERPOLATE=OFF >"$WORK/cmake.log" 2>&1 \
    || { cat "$WORK/cmake.log"; log "cmake configure failed"; exit 1; }
log "compiling lmplz and build_binary with $JOBS jobs"
cmake --build "$WORK/build" --target lmplz build_binary -j "$JOBS" >"$WORK/make.log" 2>&1 \
    || { tail -n 60 "$WORK/make.log"; log "build failed"; exit 1; }

mkdir -p "$BIN"
for prog in lmplz build_binary; do
    install -m 0755 "$WORK/build/bin/$prog" "$BIN/$prog"
done
lmplz_runs || { log "$BIN/lmplz does not run"; exit 1; }
log "installed $BIN/lmplz and $BIN/build_binary"
