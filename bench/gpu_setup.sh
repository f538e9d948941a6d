# Sourced by bench/gpu.sh and bench/gpu_sweep.sh: on a GPU machine without TensorFlow or Keras, install
# the carried Keras wheels (WHEELS, default .whl), unpack the carried GoodImg (PACKED, default
# gpu/goodimg64.npz) into $work/English and $work/peer.npz, and note the GPU in $out/gpu.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT:-gpu/out}
work=$(mktemp -d)
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --target "$work/site" "${WHEELS:-.whl}"/*.whl
export PYTHONPATH="$work/site" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
python3 bench/gpu_data.py unpack "${PACKED:-gpu/goodimg64.npz}" "$work/English" "$work/peer.npz"
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || nproc) | tee "$out/gpu.txt"
