#!/usr/bin/env bash
# The GPU figures of RESULTS.md in one run, on a machine with JAX, PyTorch and numpy but neither
# TensorFlow nor Keras (as the H100/H200 machines this project is measured on). Prepare, here:
#   python bench/gpu_data.py pack --data-dir ../shared/chars74k/English gpu/goodimg64.npz
#   cp ../shared/gpu/peer_pytorch.py gpu/
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       -d .whl keras==3.15.1 namex optree
# then run `bash bench/gpu.sh` there, with .whl/ and gpu/ carried (both ignored by git).
# Results go to $OUT (else gpu/out): gpu.txt, train.log and its model JSON, bench.json, peer.json.
# EPOCHS=1 STEPS=4 PEER_EPOCHS=1 make it a quick check, which runs on a CPU too.
source "$(dirname "$0")/gpu_setup.sh"
export CHARS74K_HOME="$work/home"

# 1. The recipe from scratch: 100 epochs, batch 32, Adam 1e-3; the wall time includes compilation.
start=$EPOCHREALTIME
python3 train.py --data-dir "$work/English" --weights none --epochs "${EPOCHS:-100}" \
    --steps-per-execution "${SPE:-8}" > "$out/train.log" 2>&1 || { tail -50 "$out/train.log"; exit 1; }
echo "train.py wall: $(python3 -c "print(round($EPOCHREALTIME - $start, 1))") s" >> "$out/train.log"
tail -4 "$out/train.log"
cp "$work/home/saved/model/model_new.json" "$out/model_new.json"

# 2. Steady-state training speed against the original's way on the same backend.
python3 bench.py --data-dir "$work/English" --training-only --json --steps "${STEPS:-96}" \
    --steps-per-execution "${SPE:-8}" | tee "$out/bench.json"

# 3. The PyTorch peer on the same data, same machine, same call.
if python3 -c "import torch, torchvision" 2>/dev/null; then
    python3 gpu/peer_pytorch.py "$work/peer.npz" --batch 32 --epochs "${PEER_EPOCHS:-4}" \
        --compile reduce-overhead | tee "$out/peer.json"
else
    echo "no torch/torchvision here: peer skipped" | tee "$out/peer.json"
fi
