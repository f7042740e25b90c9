#!/usr/bin/env bash
# Installs the Python dependencies of sovc's test suite, generates the
# PyTorch -> ONNX reference models under tests/data/generated/, fetches
# NVIDIA's ptxas (from PyPI) into .deps/cuda for the cuda target's tests, and
# builds the riscv64 loader the rvv-qemu device runs under qemu-riscv64
# (.deps/rvv/sovc-rvv-loader, with Debian's riscv64 cross compiler).
#
#   .venv        pyenv python3 + onnx==1.22.0, numpy, onnxruntime
#                (ONNX conformance harness, scripts/check_exports.py)
#   .venv-torch  Debian's /usr/bin/python3 with --system-site-packages, so it
#                sees Debian's python3-torch 1.13.1 / python3-torchvision 0.14.1,
#                plus transformers==4.40.2 from PyPI (scripts/export_models.py)
#
# Idempotent: every step is skipped when its result is already there, so a
# second run takes a couple of seconds. Runs as root (CI does); falls back to
# sudo for apt-get otherwise.
#
# Environment knobs:
#   PYTHON=...            interpreter used for .venv (default: python3 on PATH)
#   SOVC_SKIP_EXPORT=1    install the environments only, do not export models
#   SOVC_FORCE_EXPORT=1   re-export the models even if the stamp is up to date
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1

PYTHON="${PYTHON:-python3}"
ONNX_VERSION="1.22.0"
TRANSFORMERS_VERSION="4.40.2"
NVCC_VERSION="12.9.86"
# g++ checks the emitted Tensix C++ (`g++ -fsyntax-only` against targets/tensix/include).
# qemu-user, the riscv64 cross gcc, its libc and binutils: the riscv64-rvv target's tests (the loader
# is built with the cross gcc; the assembler checks sovc's encodings; QEMU runs the code).
# spirv-tools: spirv-val checks the metal target's SPIR-V; libvulkan1 and mesa-vulkan-drivers
# (lavapipe, a software Vulkan GPU) run it on the vulkan device. clang-19: the C compiler for the
# macOS target when CI type-checks the metal device (a dependency's build script assembles a file),
# and the peer of the rvv instruction-count benchmark.
APT_PACKAGES=(python3-torch python3-torchvision python3-venv python3-pip g++
  qemu-user gcc-riscv64-linux-gnu libc6-dev-riscv64-cross binutils-riscv64-linux-gnu
  spirv-tools libvulkan1 mesa-vulkan-drivers clang-19)
# Pins for .venv-torch. Debian's torch 1.13.1 is built against numpy 1.x
# (Debian ships 1.24.2); a numpy 2 wheel pulled in by some dependency would break
# `import torch`, so keep numpy < 2. tokenizers/huggingface-hub/safetensors are
# pinned to versions known to work with transformers 4.40.2 so the environment
# does not drift with new releases.
TORCH_VENV_PIP=(
  "transformers==${TRANSFORMERS_VERSION}"
  "tokenizers==0.19.1"
  "huggingface-hub==0.36.2"
  "safetensors==0.8.0"
  "numpy<2"
)
GEN_DIR="tests/data/generated/models"
STAMP="$GEN_DIR/.stamp"

log() { echo "[setup-test-deps] $*"; }
SECONDS_START=$SECONDS
step_start() { STEP_T0=$(date +%s.%N); log "$*"; }
step_end() { log "  done in $(awk -v a="$STEP_T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -E "$@"
  else log "error: need root for: $*"; exit 1
  fi
}

# ---------------------------------------------------------- apt packages ----
# First, so that python3-venv is there even where python3 is Debian's own.
step_start "[1/7] Debian packages: ${APT_PACKAGES[*]}"
missing=()
for p in "${APT_PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "  apt-get update"
  as_root apt-get update -qq
  log "  apt-get install ${missing[*]}"
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "  already installed"
fi
step_end

# ---------------------------------------------------------------- .venv ----
# Prints the versions; succeeds iff .venv imports onnx==$ONNX_VERSION, numpy, onnxruntime.
venv_ok() {
  [ -x .venv/bin/python ] && .venv/bin/python - "$ONNX_VERSION" <<'EOF' 2>/dev/null
import sys, onnx, numpy, onnxruntime
print("onnx", onnx.__version__, "numpy", numpy.__version__, "onnxruntime", onnxruntime.__version__)
sys.exit(0 if onnx.__version__ == sys.argv[1] else 1)
EOF
}

step_start "[2/7] .venv (onnx==$ONNX_VERSION, numpy, onnxruntime)"
if versions="$(venv_ok)"; then
  log "  already set up: $versions"
else
  if [ -e .venv ] && ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
    log "  removing broken .venv"
    rm -rf .venv
  fi
  if [ ! -x .venv/bin/python ]; then
    log "  creating .venv with $(command -v "$PYTHON") ($("$PYTHON" --version 2>&1))"
    "$PYTHON" -m venv .venv
  fi
  log "  pip install onnx==$ONNX_VERSION numpy onnxruntime"
  .venv/bin/python -m pip install --quiet "onnx==$ONNX_VERSION" numpy onnxruntime
  versions="$(venv_ok)" || { log "error: .venv still cannot import onnx==$ONNX_VERSION/numpy/onnxruntime"; exit 1; }
  log "  installed: $versions"
fi
step_end

# ---------------------------------------------------------- .venv-torch ----
step_start "[3/7] .venv-torch (Debian torch + transformers==$TRANSFORMERS_VERSION)"
# Prints the versions; succeeds iff .venv-torch imports torch, torchvision and
# transformers==$TRANSFORMERS_VERSION (with the model classes the export uses).
torch_venv_ok() {
  [ -x .venv-torch/bin/python ] && .venv-torch/bin/python - "$TRANSFORMERS_VERSION" <<'EOF' 2>/dev/null
import sys, numpy, torch, torchvision, transformers
from transformers import BertModel, GPT2Model
print("torch", torch.__version__, "torchvision", torchvision.__version__,
      "transformers", transformers.__version__, "numpy", numpy.__version__)
sys.exit(0 if transformers.__version__ == sys.argv[1] else 1)
EOF
}

if versions="$(torch_venv_ok)"; then
  log "  already set up: $versions"
else
  if [ -e .venv-torch ] && ! .venv-torch/bin/python -c 'import sys' >/dev/null 2>&1; then
    log "  removing broken .venv-torch"
    rm -rf .venv-torch
  fi
  if [ ! -x .venv-torch/bin/python ]; then
    log "  creating .venv-torch with /usr/bin/python3 ($(/usr/bin/python3 --version 2>&1)) --system-site-packages"
    /usr/bin/python3 -m venv --system-site-packages .venv-torch
  fi
  log "  pip install ${TORCH_VENV_PIP[*]}"
  .venv-torch/bin/python -m pip install --quiet "${TORCH_VENV_PIP[@]}"
  if ! versions="$(torch_venv_ok)"; then
    log "error: .venv-torch cannot import torch/torchvision/transformers==$TRANSFORMERS_VERSION:"
    .venv-torch/bin/python -c 'import torch, torchvision, transformers; from transformers import BertModel, GPT2Model' || true
    exit 1
  fi
  log "  installed: $versions"
fi
step_end

# --------------------------------------------------------------- export ----
step_start "[4/7] export PyTorch models to ONNX ($GEN_DIR)"
script_hash="$(sha256sum scripts/export_models.py | cut -d' ' -f1)"
export_up_to_date() {
  [ -f "$STAMP" ] || return 1
  [ "$(head -n1 "$STAMP")" = "sha256 $script_hash" ] || return 1
  local n=0 m
  while read -r m; do
    [ -f "$GEN_DIR/$m/model.onnx" ] && [ -f "$GEN_DIR/$m/manifest.json" ] || return 1
    n=$((n + 1))
  done < <(tail -n +2 "$STAMP")
  [ "$n" -gt 0 ]
}
if [ "${SOVC_SKIP_EXPORT:-0}" = 1 ]; then
  log "  skipped (SOVC_SKIP_EXPORT=1)"
elif [ "${SOVC_FORCE_EXPORT:-0}" != 1 ] && export_up_to_date; then
  log "  up to date ($(($(wc -l < "$STAMP") - 1)) models, stamp matches scripts/export_models.py)"
else
  log "  running .venv-torch/bin/python scripts/export_models.py"
  .venv-torch/bin/python scripts/export_models.py --out "$GEN_DIR" --stamp-hash "$script_hash"
fi
step_end

# ---------------------------------------------------------------- ptxas ----
# NVIDIA's PTX assembler from PyPI (the CUDA toolkit is not needed): the cuda target's tests assemble
# every emitted kernel with it. Extracted from the wheel into .deps/cuda (no GPU or driver involved).
step_start "[5/7] ptxas (nvidia-cuda-nvcc-cu12==$NVCC_VERSION) in .deps/cuda"
PTXAS=".deps/cuda/nvidia/cuda_nvcc/bin/ptxas"
if [ -x "$PTXAS" ] && "$PTXAS" --version | grep -q "V$NVCC_VERSION"; then
  log "  up to date ($("$PTXAS" --version | tail -n1))"
else
  rm -rf .deps/cuda .deps/cuda-wheel
  mkdir -p .deps/cuda .deps/cuda-wheel
  .venv/bin/pip download --quiet --no-deps "nvidia-cuda-nvcc-cu12==$NVCC_VERSION" -d .deps/cuda-wheel
  .venv/bin/python -m zipfile -e .deps/cuda-wheel/*.whl .deps/cuda
  chmod +x "$PTXAS"
  rm -rf .deps/cuda-wheel
  log "  $("$PTXAS" --version | tail -n1)"
fi
step_end

# ------------------------------------------------------------ rvv loader ----
# The static riscv64 program that runs a riscv64-rvv artifact's kernels under qemu-riscv64.
step_start "[6/7] sovc-rvv-loader in .deps/rvv"
LOADER=".deps/rvv/sovc-rvv-loader"
LOADER_SRC="runtime/rvv-loader/loader.c"
if [ -x "$LOADER" ] && [ "$LOADER" -nt "$LOADER_SRC" ]; then
  log "  up to date"
else
  mkdir -p .deps/rvv
  riscv64-linux-gnu-gcc -O2 -static -march=rv64gc -o "$LOADER" "$LOADER_SRC"
  log "  built $LOADER ($(qemu-riscv64 --version | head -n1))"
fi
step_end

# ------------------------------------------------------------ macOS std ----
# The standard library for aarch64-apple-darwin, so CI can type-check the macOS-only metal device.
step_start "[7/7] rustup target aarch64-apple-darwin"
if rustup target list --installed 2>/dev/null | grep -qx aarch64-apple-darwin; then
  log "  already installed"
else
  rustup target add aarch64-apple-darwin
fi
step_end

log "all done in $((SECONDS - SECONDS_START))s"
log "check the exports against onnxruntime with: .venv/bin/python scripts/check_exports.py"
