"""Interrupted training: SIGTERM then --resume, Ctrl-C, what --resume refuses, two runs in one folder; the
model file is never half-written."""

import csv
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import h5py

import data
import train
from conftest import REPO, TEST_IMAGE_SIZE, assert_user_error, run, script_env

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


def backed_up_epochs(workdir):
    """The epochs done that the last complete backup holds (Keras writes its metadata after the weights)."""
    try:
        return json.loads((workdir / "saved" / "backup" / "training_metadata.json").read_text())["epoch"]
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def wait_for_epochs(process, workdir, n, timeout=300, done=epochs_done):
    deadline = time.time() + timeout
    while done(workdir) < n:
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


def test_sigterm_then_resume_with_the_run_settings_a_damaged_backup_and_history(tmp_path, tiny_english):
    """SIGTERM mid-epoch (SIGKILL and power loss leave the same files, without the figures), then --resume;
    the model file is complete whenever it exists."""
    shutil.copytree(tiny_english, tmp_path / "English")
    watcher = ModelFileWatcher(str(tmp_path / "saved" / "model" / "model_new.h5"))
    watcher.start()
    process = start_training(tmp_path)
    wait_for_epochs(process, tmp_path, 2, done=backed_up_epochs)  # on a busy machine, later than its history row
    time.sleep(0.5)  # into the third epoch
    process.send_signal(signal.SIGTERM)  # as timeout, Docker, Slurm and systemd stop a job
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stdout + stderr
    assert "Stopped by SIGTERM" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert "Best epoch" in stdout and (tmp_path / "imgs" / "training.png").exists()
    split = (tmp_path / "saved" / "split.json").read_text()

    assert_user_error(run("train.py", "--resume", "--max-per-class", "2", cwd=tmp_path),
                      "--max-per-class 2 (the run has 3)")
    run_json = tmp_path / "saved" / "backup" / "run.json"
    recorded = json.loads(run_json.read_text())
    del recorded["settings"]["ema"]  # as a run recorded before --ema existed
    run_json.write_text(json.dumps(recorded))
    assert_user_error(run("train.py", "--resume", "--ema", "0.99", cwd=tmp_path), "--ema 0.99 (the run has 0.0)")
    extra = tmp_path / "English" / data.GOODIMG_SUBDIR / "Sample001" / "img001-00000.png"  # among the first 3
    shutil.copy(extra.with_name("img001-00001.png"), extra)
    assert_user_error(run("train.py", "--resume", cwd=tmp_path), "changed since the interrupted run")
    extra.unlink()
    for image in (tmp_path / "English").rglob("*.png"):
        os.utime(image)  # the same images extracted again: new file times, the same split

    (tmp_path / "saved" / "backup" / "latest.weights.h5").write_bytes(b"cut short")
    with open(tmp_path / "saved" / "history.csv", "a") as f:
        f.write("2,0.03,")  # a line cut short
    resumed = run("train.py", "--resume", cwd=tmp_path)  # no flags: the run's own
    watcher.running = False
    watcher.join()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Resuming after epoch 1, the last one backed up that could be read: epoch 2 is trained again" \
        in resumed.stderr
    assert "Epoch 2/3" in resumed.stdout and "Epoch 1/" not in resumed.stdout
    with open(tmp_path / "saved" / "history.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1, 2]
    assert (tmp_path / "saved" / "split.json").read_text() == split
    assert watcher.checks > 10 and watcher.broken == []


def test_every_nth_epoch_saves_after_epochs_n_2n_and_so_on():
    saved = []
    save = train.every_nth_epoch(lambda epoch, logs=None: saved.append(epoch), 3)
    for epoch in range(7):
        save(epoch, {})
    assert saved == [2, 5]  # 0-based: after the third and the sixth epoch


def test_backups_every_second_epoch_resume_after_the_last_one(tmp_path, tiny_english):
    os.symlink(tiny_english, tmp_path / "English")
    process = start_training(tmp_path, "--backup-every", "2")
    seen = set()
    deadline = time.time() + 300
    while backed_up_epochs(tmp_path) < 2:
        seen.add(backed_up_epochs(tmp_path))
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "training made no progress"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # during the third epoch
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stdout + stderr
    assert seen == {0} and backed_up_epochs(tmp_path) == 2  # nothing was backed up after the first epoch

    resumed = run("train.py", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Epoch 3/3" in resumed.stdout and "Epoch 2/" not in resumed.stdout
    with open(tmp_path / "saved" / "history.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1, 2]


def test_a_second_training_in_the_same_folder_is_refused_at_once(tmp_path):
    os.makedirs(tmp_path / "saved")
    with open(tmp_path / "saved" / "train.lock", "a+") as lock:  # held as a running train.py holds it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("12345")
        lock.flush()
        result = run("train.py", "--weights", "none", cwd=tmp_path)
    assert_user_error(result, "another train.py (process 12345) is training in")


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path):
    assert_user_error(run("train.py", "--output", "model", cwd=tmp_path), "give a file name ending in .h5")
    os.makedirs(tmp_path / "saved")
    (tmp_path / "saved" / "model").write_text("a file where the models go")
    result = run("train.py", "--weights", "none", cwd=tmp_path)
    assert_user_error(result, "is a file, not a folder")
    assert "Decoding" not in result.stdout


def test_a_stop_in_the_first_epoch_reads_the_empty_history_as_no_epoch(tmp_path):
    """Keras' CSVLogger creates history.csv empty as training starts; SIGTERM or Ctrl-C before the first epoch
    ends makes train.py read it to summarize the run, which must say that no epoch finished, not fail."""
    path = tmp_path / "history.csv"
    path.write_text("")
    assert train.history_rows(str(path)) == ([], None, 0)
    assert train.read_history(str(path)) == []
