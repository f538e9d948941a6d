"""Two training processes on 127.0.0.1 (JAX backend, CPU, no TensorFlow) train together as one data-parallel
job; MirroredStrategy on two logical CPUs (TensorFlow backend)."""

import json
import os
import socket
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import REPO, TEST_IMAGE_SIZE, run_without_tensorflow, script_env, without_tensorflow

pytest.importorskip("jax", reason="multi-process training runs on the JAX backend")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def saved_weights(path):
    arrays = {}
    with h5py.File(path, "r") as f:
        f["model_weights"].visititems(lambda name, obj: arrays.update({name: obj[()]})
                                      if isinstance(obj, h5py.Dataset) else None)
    return arrays


def test_two_processes_train_on_their_own_shards_to_identical_weights_without_tensorflow(tmp_path, tiny_english):
    port, processes = free_port(), []
    for i in range(2):
        workdir = tmp_path / f"host{i}"
        workdir.mkdir()
        os.symlink(tiny_english, workdir / "English")
        env = script_env(workdir, KERAS_BACKEND="jax", KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port}",
                         KERAS_DISTRIBUTION_NUM_PROCESSES="2", KERAS_DISTRIBUTION_PROCESS_ID=str(i))
        processes.append(subprocess.Popen(
            without_tensorflow("train.py", "--weights", "none", "--epochs", "1", "--image-size", TEST_IMAGE_SIZE,
                               "--batch-size", "4", "--max-per-class", "2"),
            cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output[-3000:]

    hosts = [tmp_path / "host0", tmp_path / "host1"]
    shards = [json.loads((host / "saved" / f"shard-{i}.json").read_text()) for i, host in enumerate(hosts)]
    split = json.loads((hosts[0] / "saved" / "split.json").read_text())
    assert len(shards[0]) == len(shards[1]) == len(split["train"]) // 2
    assert not set(shards[0]) & set(shards[1]) and set(shards[0]) | set(shards[1]) <= set(split["train"])
    assert "Process 1 of 2: training on 31 of 62 images" in outputs[1]

    first, second = (saved_weights(host / "saved" / "model" / "model_new.h5") for host in hosts)
    assert first.keys() == second.keys() and len(first) > 300
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    info = json.loads((hosts[0] / "saved" / "model" / "model_new.json").read_text())
    assert info["devices"]["backend"] == "jax" and info["devices"]["processes"] == 2
    assert "jax" in info["versions"] and "tensorflow" not in info["versions"]
    predicted_and_scored_on_jax_without_tensorflow(hosts[0], info)


KERAS_COPY = """
import sys
import checkpoint
checkpoint.import_keras()
import model
net, info = model.load_model(sys.argv[1])
model.save_model(net, sys.argv[2], info)
"""


def predicted_and_scored_on_jax_without_tensorflow(workdir, info):
    """test.py predicts with the .h5 that train.py wrote, and scores a .keras copy of it."""
    jax = {"KERAS_BACKEND": "jax"}
    predicted = run_without_tensorflow("test.py", "-img", "/Sample008/img008-00001.png", cwd=workdir, env=jax)
    assert predicted.returncode == 0 and predicted.stdout.startswith("Sample"), predicted.stderr[-3000:]
    (workdir / "save_as_keras.py").write_text(KERAS_COPY)
    copy = workdir / "saved" / "model" / "copy.keras"
    copied = run_without_tensorflow(workdir / "save_as_keras.py", workdir / "saved" / "model" / "model_new.h5", copy,
                                    cwd=workdir, env=jax)
    assert copied.returncode == 0, copied.stderr[-3000:]
    scored = run_without_tensorflow("test.py", "--eval", "--json", "--model", copy, cwd=workdir, env=jax)
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert json.loads(scored.stdout)["accuracy"] == pytest.approx(info["metrics"]["val_accuracy"], abs=1e-6)


MIRRORED_TRAIN = """
import sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, {repo!r})
import train

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
train.setup_devices = lambda *flags: train.Devices(strategy.scope, strategy.num_replicas_in_sync)
sys.exit(train.main(sys.argv[1:]))
"""


def test_mirrored_strategy_trains_with_the_batch_scaled_by_the_replicas(tmp_path, tiny_english):
    """What train.py does with several GPUs, on two logical CPUs (no GPU here): 2 replicas of batch 4."""
    os.symlink(tiny_english, tmp_path / "English")
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_TRAIN.format(repo=REPO), "--weights", "none", "--epochs", "1",
         "--image-size", TEST_IMAGE_SIZE, "--batch-size", "4", "--max-per-class", "2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=script_env(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Training on 62 images" in result.stdout
    assert "8/8" in result.stdout  # 62 images in global batches of 2 x 4, not 16 steps of 4

    info = json.loads((tmp_path / "saved" / "model" / "model_new.json").read_text())
    assert info["devices"]["replicas"] == 2
    predicted = subprocess.run([sys.executable, os.path.join(REPO, "test.py"), "-img", "/Sample008/img008-00001.png"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=300, env=script_env(tmp_path))
    assert predicted.returncode == 0 and predicted.stdout.startswith("Sample"), predicted.stderr
