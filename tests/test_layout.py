"""The project's shape: modules import without side effects, the light ones without TensorFlow, and the
scripts find the repository's files from whatever folder they are started."""

import json
import os
import subprocess
import sys

import pytest

import checkpoint
from conftest import REPO, assert_user_error, make_dataset, run

IMPORT_EFFECTS = """
import json, logging, os, sys
from PIL import Image
sys.path.insert(0, {repo!r})
{first}
before = (dict(os.environ), Image.MAX_IMAGE_PIXELS, os.fstat(2).st_ino, logging.getLogger("absl").level)
import {modules}
after = (dict(os.environ), Image.MAX_IMAGE_PIXELS, os.fstat(2).st_ino, logging.getLogger("absl").level)
heavy = sorted(m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules)
print(json.dumps({{"same": before == after, "heavy": heavy}}))
"""


def import_effects(modules, first=""):
    """Whether importing modules (after the statement first) changed the environment, Pillow's limit, file
    descriptor 2 or absl's log level, and which heavy frameworks are then imported."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CHARS74K_HOME")}
    code = IMPORT_EFFECTS.format(repo=REPO, modules=modules, first=first)
    result = subprocess.run([sys.executable, "-c", code],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_light_modules_import_without_tensorflow_or_side_effects():
    assert import_effects("checkpoint, data, prepare, test, train, export") == {"same": True, "heavy": []}


def test_model_changes_nothing_beyond_what_keras_itself_does():
    assert import_effects("model", first="import keras")["same"]  # TensorFlow sets variables of its own


def test_default_paths_are_the_repositorys_wherever_python_starts(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CHARS74K_HOME"}
    printed = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {REPO!r}); import checkpoint; "
                              "print(checkpoint.DEFAULT_MODEL, checkpoint.DATA_DIR, checkpoint.IMGS_DIR)"],
                             cwd=tmp_path, capture_output=True, text=True, env=env).stdout.split()
    assert printed == [os.path.join(REPO, "saved", "model", "model_new.h5"), os.path.join(REPO, "English"),
                       os.path.join(REPO, "imgs")]


@pytest.mark.skipif(os.path.exists(os.path.join(REPO, "saved", "model", "model_new.h5")),
                    reason="a trained model_new.h5 in the repository would be used instead of the shipped one")
@pytest.mark.skipif(not checkpoint.shipped_models(), reason="no model is shipped")
def test_test_py_started_from_another_folder_uses_the_repositorys_model(tmp_path):
    english = make_dataset(tmp_path / "data", per_class=1, classes=["Sample008"])
    image = os.path.join(english, "Img", "GoodImg", "Bmp", "Sample008", "img008-00001.png")
    env = {k: v for k, v in os.environ.items() if k not in ("CHARS74K_HOME", "DISPLAY")}
    result = subprocess.run([sys.executable, os.path.join(REPO, "test.py"), "-img", image], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"Model: {checkpoint.shipped_models()[0]} (the shipped model: none trained here yet)" in result.stderr
    assert result.stdout.split()[0].startswith("Sample")
    assert os.listdir(tmp_path) == ["data"]  # nothing written where it was started


def test_atomic_path_leaves_nothing_behind_when_writing_fails(tmp_path):
    target = tmp_path / "out" / "model.h5"
    with pytest.raises(RuntimeError):
        with checkpoint.atomic_path(str(target)) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("disk full")
    assert os.listdir(tmp_path / "out") == []
    with checkpoint.atomic_path(str(target)) as tmp:
        open(tmp, "w").write("whole")
    assert os.listdir(tmp_path / "out") == ["model.h5"] and target.read_text() == "whole"


@pytest.mark.parametrize("change, problem", [
    ({"image_size": "64"}, "image_size"), ({"image_size": 64.7}, "image_size"), ({"image_size": True}, "image_size"),
    ({"resize": "bogus"}, "resize"), ({"characters": "abc"}, "class_names"), ({"class_names": None}, "class_names"),
])
def test_malformed_model_json_is_one_clear_error(tmp_path, change, problem):
    from conftest import model_info

    path = tmp_path / "m.h5"
    checkpoint.write_info(str(path), {**model_info(64), **change})
    with pytest.raises(checkpoint.ModelError, match=problem):
        checkpoint.read_info(str(path))


def test_json_paths_are_relative_to_the_repository():
    inside = os.path.join(checkpoint.HOME, "English", "Img")
    assert checkpoint.portable(inside) == os.path.join("English", "Img")
    assert checkpoint.resolve(checkpoint.portable(inside)) == inside
    beside = os.path.join(os.path.dirname(checkpoint.HOME), "shared", "English")
    assert checkpoint.portable(beside) == os.path.join("..", "shared", "English")
    assert checkpoint.resolve(checkpoint.portable(beside)) == beside


@pytest.mark.skipif(not os.path.isdir(os.path.join(REPO, ".git")), reason="not a git checkout")
def test_run_outputs_are_ignored_by_git_and_the_shipped_files_are_not():
    def ignored(path):
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0

    for output in ("imgs/training.png", "imgs/confusion.png", "saved/model/model_new.tflite",
                   "saved/model/other.tflite", "saved/export/model_new/saved_model.pb", "saved/train.lock"):
        assert ignored(output), output
    for shipped in ("imgs/shipped/training.png", "saved/model/chars74k_resnet50_fp16.tflite",
                    "saved/model/chars74k_resnet50_fp16.h5"):
        assert not ignored(shipped), shipped


@pytest.mark.skipif(not checkpoint.shipped_models(), reason="no model is shipped")
def test_export_check_without_the_dataset_stops_before_writing_anything(tmp_path):
    shipped_copy = os.path.splitext(checkpoint.shipped_models()[0])[0] + ".tflite"
    before = os.stat(shipped_copy).st_mtime_ns if os.path.exists(shipped_copy) else None
    result = run("export.py", "--check", cwd=tmp_path)
    assert_user_error(result, "pass --data-dir")
    assert "the shipped model" in result.stdout
    assert (os.stat(shipped_copy).st_mtime_ns if os.path.exists(shipped_copy) else None) == before
    assert not os.path.exists(tmp_path / "saved" / "export")
