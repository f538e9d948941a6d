#!/usr/bin/env bash
# The accuracy sweep of RESULTS.md (bench/sweep.py) on one GPU machine with JAX, PyTorch and numpy but
# neither TensorFlow nor Keras. Prepare, here (gpu/ and .whl/ are ignored by git; carry both):
#   python bench/gpu_data.py pack --data-dir ../shared/chars74k/English gpu/goodimg64.npz
#   python bench/gpu_data.py fonts gpu/fonts
#   cp ../shared/gpu/peer_pytorch.py gpu/
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       -d .whl keras==3.15.1 namex optree
# then run `bash bench/gpu_sweep.sh` there. Results go to $OUT (else gpu/out). MINUTES (default 8) bounds
# the sweep; PACKED and SWEEP_FLAGS (e.g. "--only clip-s1 --parallel 1 --override --epochs 1") make a
# quick check of it, which runs on a CPU too.
source "$(dirname "$0")/gpu_setup.sh"
# MPS lets the runs' kernels share the GPU at once rather than take turns; without it if it does not work.
if command -v nvidia-cuda-mps-control >/dev/null && nvidia-cuda-mps-control -d; then
    trap 'echo quit | nvidia-cuda-mps-control' EXIT
    if python3 -c "import jax; print(jax.numpy.ones(3).sum())"; then
        echo "MPS on" | tee -a "$out/gpu.txt"
    else
        echo quit | nvidia-cuda-mps-control
        trap - EXIT
        echo "MPS failed: off" | tee -a "$out/gpu.txt"
    fi
fi
python3 bench/sweep.py --data-dir "$work/English" --fonts gpu/fonts --work "$work/runs" --out "$out" \
    --peer "$work/peer.npz" --minutes "${MINUTES:-8}" ${SWEEP_FLAGS:-} 2>&1 | tee "$out/sweep.log"
