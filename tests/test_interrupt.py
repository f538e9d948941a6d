"""Interrupted training: SIGKILL then --resume, and Ctrl-C; the model file is never half-written."""

import csv
import os
import signal
import subprocess
import sys
import threading
import time

import h5py

from conftest import REPO, TEST_IMAGE_SIZE, run, script_env

EPOCHS = "3"
TRAIN_FLAGS = ["--weights", "none", "--image-size", TEST_IMAGE_SIZE, "--batch-size", "4", "--max-per-class", "3",
               "--epochs", EPOCHS]


def epochs_done(workdir):
    path = workdir / "saved" / "history.csv"
    if not path.exists():
        return 0
    with open(path) as f:
        return len(list(csv.DictReader(f)))


def start_training(workdir, *flags):
    """train.py as a terminal's foreground job, where Ctrl-C sends SIGINT. Python leaves SIGINT ignored in
    a process started ignoring it, as shells start background jobs (`pytest &`), and children inherit that."""
    ours = signal.signal(signal.SIGINT, signal.default_int_handler)  # the child starts with the default
    try:
        return subprocess.Popen([sys.executable, os.path.join(REPO, "train.py"), *TRAIN_FLAGS, *flags], cwd=workdir,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=script_env(workdir))
    finally:
        signal.signal(signal.SIGINT, ours)


def wait_for_epochs(process, workdir, n, timeout=300):
    deadline = time.time() + timeout
    while epochs_done(workdir) < n:
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "training made no progress"
        time.sleep(0.1)


class ModelFileWatcher(threading.Thread):
    """Opens the model file again and again: whenever it exists it must be a complete HDF5 model."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.running, self.checks, self.broken = path, True, 0, []

    def run(self):
        while self.running:
            try:
                with h5py.File(self.path, "r") as f:
                    if "model_weights" not in f or "model_config" not in f.attrs:
                        self.broken.append("incomplete model file")
                self.checks += 1
            except FileNotFoundError:
                pass
            except OSError as e:
                if os.path.exists(self.path):
                    self.broken.append(str(e))
            time.sleep(0.01)


def test_sigkill_mid_epoch_then_resume_continues_from_the_last_finished_epoch(tmp_path, tiny_english):
    os.symlink(tiny_english, tmp_path / "English")
    watcher = ModelFileWatcher(str(tmp_path / "saved" / "model" / "model_new.h5"))
    watcher.start()
    process = start_training(tmp_path)
    wait_for_epochs(process, tmp_path, 1)
    time.sleep(1.0)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.communicate()
    finished = epochs_done(tmp_path)
    split = (tmp_path / "saved" / "split.json").read_text()

    resumed = run("train.py", *TRAIN_FLAGS, "--resume", cwd=tmp_path)
    watcher.running = False
    watcher.join()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"Epoch {finished + 1}/{EPOCHS}" in resumed.stdout
    assert "Epoch 1/" not in resumed.stdout or finished == 0
    with open(tmp_path / "saved" / "history.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == list(range(int(EPOCHS)))
    assert (tmp_path / "saved" / "split.json").read_text() == split
    assert watcher.checks > 10 and watcher.broken == []


def test_ctrl_c_keeps_the_best_model_history_and_figures(tmp_path, tiny_english):
    os.symlink(tiny_english, tmp_path / "English")
    process = start_training(tmp_path, "--epochs", "50")
    wait_for_epochs(process, tmp_path, 1)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout + stderr
    assert "Interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert (tmp_path / "saved" / "model" / "model_new.h5").exists()
    assert (tmp_path / "imgs" / "training.png").exists()
    assert epochs_done(tmp_path) >= 1 and "Best epoch" in stdout
