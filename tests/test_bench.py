"""bench/: the profiler breakdown that RESULTS.md quotes, the degraded check, the collapse count, the GPU sweep."""

import argparse
import hashlib
import json
import os
import re
import sys
import tarfile

import numpy as np
import pytest

import data
import train
from conftest import REPO, TEST_IMAGE_SIZE, run

sys.path.insert(0, os.path.join(REPO, "bench"))
import collapses  # noqa: E402
import degraded  # noqa: E402
import shared_errors  # noqa: E402
import sweep  # noqa: E402


def test_profile_step_attributes_the_step_to_convolutions_and_bounds_the_speedup(tmp_path, tiny_english):
    result = run("bench/profile_step.py", "--data-dir", tiny_english, "--steps", "2", "--batch-size", "8",
                 "--image-size", TEST_IMAGE_SIZE, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for pipeline in ("project", "baseline"):
        section = result.stdout.split(f"\n{pipeline}:")[1]
        shares = dict(re.findall(r"^  (\S.*?)\s+\d+ ms\s+([\d.]+)%$", section, re.M)[:5])
        assert set(shares) == {"convolution", "batch normalization", "Adam update", "augmentation in the model",
                               "other"}, section
        assert abs(sum(map(float, shares.values())) - 100) < 0.5
        assert float(shares["convolution"]) > 20 and float(shares["batch normalization"]) > 1
        assert float(shares["Adam update"]) > 1
    assert float(re.search(r"at most ([\d.]+)x the baseline", result.stdout).group(1)) > 1


def test_degraded_sets_are_the_same_each_time_and_each_changes_the_images():
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    first, second = degraded.degraded_sets(images), degraded.degraded_sets(images)
    assert list(first) == list(degraded.DEGRADATIONS) and first["clean"] is not None
    for name, made in first.items():
        np.testing.assert_array_equal(made, second[name])
        assert made.shape == images.shape and made.dtype == np.uint8
        assert np.array_equal(made, images) == (name == "clean"), name


def test_the_mean_of_degraded_sets_leaves_out_the_sets_that_came_later():
    labels = np.arange(4) % data.NUM_CLASSES
    right, wrong = np.eye(data.NUM_CLASSES)[labels], np.eye(data.NUM_CLASSES)[labels + 1]
    result = degraded.scores(labels, {name: wrong if name == "shadow" else right for name in degraded.DEGRADATIONS})
    assert result["mean of degraded"]["accuracy"] == 1 and result["shadow"]["accuracy"] == 0
    assert list(result)[-2:] == ["mean of degraded", "shadow"]


def test_stretching_gives_a_dim_image_back_its_contrast():
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    images[:, 0, 0], images[:, 0, 1] = 0, 255
    dim = degraded.DEGRADATIONS["dim"](images, np.random.default_rng(0))
    assert np.abs(dim.astype(int) - images).mean() > 60
    assert np.abs(degraded.stretched(dim).astype(int) - images).mean() < 20  # what is left: noise, 4x brighter
    np.testing.assert_array_equal(degraded.stretched(images), images)


def test_degraded_check_scores_the_validation_split_and_ensembles_saved_answers(trained, tmp_path):
    workdir, _ = trained
    answers = tmp_path / "answers.npz"
    result = run("bench/degraded.py", "--json", "--probabilities", answers, cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    scored = json.loads(result.stdout)
    assert scored["n"] == 62 and set(scored["sets"]) == {*degraded.DEGRADATIONS, "mean of degraded"}
    evaluated = json.loads(run("test.py", "--eval", "--json", cwd=workdir).stdout)
    assert scored["sets"]["clean"]["accuracy"] == evaluated["accuracy"]
    with np.load(answers) as saved:
        assert set(saved) == {*degraded.DEGRADATIONS, "labels", "paths"}
        assert saved["clean"].shape == (62, data.NUM_CLASSES)


def test_gradient_norms_of_a_saved_model_on_its_training_images(trained):
    workdir, _ = trained
    result = run("bench/gradient_norms.py", "--model", workdir / "saved" / "model" / "model_new.h5",
                 "--data-dir", workdir / "English", "--batch-size", "8", "--batches", "3", "--json", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["batches"] == 3 and 0 < summary["min"] <= summary["median"] <= summary["max"] < 1e6


def test_an_ensemble_scores_the_mean_of_the_answers(tmp_path, capsys):
    """Each of two models gets one of two images right; their mean gets both."""
    answers = {"a": [[0.6, 0.4], [0.6, 0.4]], "b": [[0.45, 0.55], [0.1, 0.9]]}
    for name, rows in answers.items():
        probabilities = np.pad(np.array(rows, np.float16), ((0, 0), (0, data.NUM_CLASSES - 2)))
        np.savez(tmp_path / f"{name}.npz", labels=np.array([0, 1]),
                 paths=np.array(["Sample001/0.png", "Sample002/1.png"]),
                 **{set_name: probabilities for set_name in degraded.DEGRADATIONS})
    for files, accuracy in (([tmp_path / "a.npz"], 0.5), ([tmp_path / "b.npz"], 0.5),
                            ([tmp_path / "a.npz", tmp_path / "b.npz"], 1.0)):
        assert degraded.main(["--ensemble", *map(str, files), "--json"]) == 0
        scored = json.loads(capsys.readouterr().out)
        assert scored["model"] == f"ensemble of {len(files)}" and scored["sets"]["all"]["accuracy"] == accuracy
    with np.load(tmp_path / "b.npz") as b:
        np.savez(tmp_path / "other split.npz", **{**b, "paths": np.array(["Sample001/9.png", "Sample002/1.png"])})
    assert degraded.main(["--ensemble", str(tmp_path / "a.npz"), str(tmp_path / "other split.npz")]) == 2
    assert "different images" in capsys.readouterr().err


def test_shared_errors_counts_the_images_every_network_misses(tmp_path, capsys):
    """Three images, an 'S', an 's' and a '0': both networks read the 'S' as 's'; the first also reads the '0' as
    'O', the second the 's' as 'S'. One image is wrong in both (by case), two of three are right in one."""
    index = {character: i for i, character in enumerate(data.CHARACTERS)}
    labels = np.array([index["S"], index["s"], index["0"]])
    for name, read in (("a", "ssO"), ("b", "sS0")):
        probabilities = np.eye(data.NUM_CLASSES, dtype=np.float16)[[index[c] for c in read]]
        np.savez(tmp_path / f"{name}.npz", labels=labels, paths=np.array(["S/0.png", "s/1.png", "0/2.png"]),
                 **{set_name: probabilities for set_name in degraded.DEGRADATIONS})
    assert shared_errors.main([str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--json"]) == 0
    counted = json.loads(capsys.readouterr().out)
    assert counted["errors"] == {str(tmp_path / "a.npz"): 2, str(tmp_path / "b.npz"): 2}
    assert counted["wrong_in_all"] == 1 and counted["wrong_in_all_first_reads_other_case"] == 1
    assert counted["right_in_any"] == pytest.approx(2 / 3) and counted["first_errors_other_case"] == 1
    assert sorted(counted["first_confusions"]) == [["0", "O", 1], ["S", "s", 1]]


def test_shared_errors_draws_the_images_every_network_misses(tmp_path, tiny_english, capsys):
    """Two networks on three real-format crops: both read the first wrong, so the figure holds that one."""
    from PIL import Image

    root = data.class_root(tiny_english)
    entries = data.list_images(root, log=lambda m: None)[:3]
    labels = np.array([label for _, label in entries])
    for name, wrong in (("a", [0, 1]), ("b", [0, 2])):
        read = labels.copy()
        read[wrong] = (read[wrong] + 1) % data.NUM_CLASSES
        np.savez(tmp_path / f"{name}.npz", labels=labels, paths=np.array([path for path, _ in entries]),
                 **{set_name: np.eye(data.NUM_CLASSES, dtype=np.float16)[read] for set_name in degraded.DEGRADATIONS})
    answers = [str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]
    figure = tmp_path / "wrong_in_all.png"
    assert shared_errors.main([*answers, "--figure", str(figure), "--data-dir", tiny_english, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["wrong_in_all"] == 1 and "Drew the 1 images" in captured.err
    assert Image.open(figure).size[0] > 100
    figure.unlink()
    assert shared_errors.main([*answers, "--figure", str(figure), "--data-dir", str(tmp_path)]) == 2
    assert "holds no SampleNNN class folders" in capsys.readouterr().err and not figure.exists()
    assert shared_errors.main([*answers, "--figure", str(tmp_path / "wrong.txt1")]) == 2
    assert "give a file name ending in" in capsys.readouterr().err


def test_collapses_are_the_falls_of_training_accuracy(tmp_path, capsys):
    """A history as train.py's CSVLogger writes it: epoch 3 loses 10 points of training accuracy, epoch 4 one."""
    run_dir = tmp_path / "base-s1"
    run_dir.mkdir()
    rows = [(0, 0.20, 0.10), (1, 0.50, 0.40), (2, 0.40, 0.45), (3, 0.39, 0.30), (4, 0.70, 0.60)]
    (run_dir / "history.csv").write_text("epoch,accuracy,loss,val_accuracy,val_loss\n" + "".join(
        f"{epoch},{accuracy},1.0,{val},1.0\n" for epoch, accuracy, val in rows))
    collapses.main([str(run_dir / "history.csv"), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["run"] == "base-s1" and result["epochs"] == 5 and result["collapse_epochs"] == [3]
    assert result["best_val_accuracy"] == 0.60 and result["best_epoch"] == 5
    assert result["largest_fall"] == pytest.approx(0.10) and result["deepest_below_peak"] == pytest.approx(0.11)
    collapses.main([str(run_dir / "history.csv"), "--fall", "0.005"])
    assert re.search(r"base-s1 +5 +60\.00% +5 +60\.00% +70\.00% +2 +10\.00% +11\.00%", capsys.readouterr().out)


def test_every_sweep_run_is_a_valid_train_py_command():
    args = argparse.Namespace(data_dir="D", fonts="F", work="W", peer="P", override=[])
    for name, (flags, start_from) in sweep.RUNS.items():
        command = sweep.command_of(name, args)
        parsed = train.parse_args(command[2:])
        assert parsed.output == os.path.abspath(os.path.join("W", name, "model.h5"))
        assert (parsed.data == "synthetic") == (parsed.fonts == os.path.abspath("F")) == (parsed.data_dir is None)
        assert start_from is None or parsed.weights == os.path.join("W", start_from, "model.h5")
        assert all(list(sweep.RUNS).index(needed) < list(sweep.RUNS).index(name) for needed in sweep.needs(name))
        teachers = [os.path.abspath(os.path.join("W", teacher, "model.h5")) for teacher in sweep.TEACHERS.get(name, [])]
        assert (parsed.teacher or []) == teachers
        assert not teachers or parsed.teacher_temperature == 4  # RESULTS.md: T = 1 teaches little beyond the labels
    assert sweep.command_of("peer", args)[:3] == ["python", "gpu/peer_pytorch.py", "P"]


def test_a_sweep_trains_scores_and_packs_its_best_model(tmp_path, tiny_english):
    """One run of the GPU sweep, cut down to a CPU: its line, its archives and its model in parts that join."""
    out = tmp_path / "out"
    result = run("bench/sweep.py", "--data-dir", tiny_english, "--fonts", tmp_path, "--work", tmp_path / "runs",
                 "--out", out, "--only", "clip-adamw-s1", "--override", "--epochs", "1", "--batch-size", "16",
                 "--image-size", TEST_IMAGE_SIZE, "--max-per-class", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    line = json.loads((out / "results.jsonl").read_text())
    assert line["name"] == "clip-adamw-s1" and line["status"] == "done"
    assert "--weight-decay 0.05" in line["command"] and "--clip-norm 1.0" in line["command"]
    assert line["best"]["epoch"] == 1 and set(line["degraded"]) == {*degraded.DEGRADATIONS, "mean of degraded"}
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = tar.getnames()
        info = json.load(tar.extractfile("best/best_fp16.json"))
    assert {"clip-adamw-s1/train.log", "clip-adamw-s1/saved/history.csv", "clip-adamw-s1/model.json"} <= set(names)
    parts = sorted(out.glob("best_fp16.h5.part*"))
    assert parts and all(part.stat().st_size < 16 * 2**20 for part in parts)
    joined = b"".join(part.read_bytes() for part in parts)
    assert hashlib.sha256(joined).hexdigest() == info["sha256"] and info["weights_stored_as"] == "float16"
