"""Shared fixtures: small datasets in the official layout, and running the scripts as users do."""

import os
import random
import struct
import subprocess
import sys
import zlib

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import data  # noqa: E402
import prepare  # noqa: E402

SHARED_GOODIMG = os.path.join(REPO, "..", "shared", "chars74k", "English")
TEST_IMAGE_SIZE = "32"


def make_dataset(folder, per_class=3, classes=data.CLASS_NAMES, seed=0):
    """Rendered character crops as folder/English/Img/GoodImg/Bmp/SampleNNN/imgNNN-NNNNN.png."""
    rng = random.Random(seed)
    fonts = prepare.font_files()
    root = os.path.join(folder, "English", data.GOODIMG_SUBDIR)
    for name in classes:
        label = data.CLASS_NAMES.index(name)
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            image = prepare.render_character(data.CHARACTERS[label], rng.choice(fonts), rng)
            image.save(os.path.join(root, name, f"img{label + 1:03d}-{i + 1:05d}.png"))
    return os.path.join(folder, "English")


def png_claiming(width, height):
    """A tiny PNG file whose header claims width x height pixels (a decompression bomb)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
            + chunk(b"IEND", b""))


def script_env(home, **variables):
    """The environment of a script run by a test: its English/, saved/ and imgs/ in home, no screen."""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    return {**env, "CHARS74K_HOME": str(home), **variables}


def run(script, *args, cwd, timeout=600, env=None):
    """Run one of the project's scripts from cwd, as a user would from a shell, with its files in cwd
    (env: variables to add)."""
    return subprocess.run([sys.executable, os.path.join(REPO, script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=script_env(cwd, **(env or {})))


WITHOUT_TENSORFLOW = """
import runpy, sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)", name=name)

sys.meta_path.insert(0, NoTensorFlow())
sys.argv = sys.argv[1:]
sys.path.insert(0, {repo!r})
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    assert not [m for m in sys.modules if m.split(".")[0] == "tensorflow"]
"""


def without_tensorflow(script, *args):
    """The command that runs a script as if TensorFlow were not installed: importing it fails."""
    return [sys.executable, "-c", WITHOUT_TENSORFLOW.format(repo=REPO), os.path.join(REPO, script), *map(str, args)]


def run_without_tensorflow(script, *args, cwd, env=None):
    """run(), but as if TensorFlow were not installed."""
    return subprocess.run(without_tensorflow(script, *args), cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=script_env(cwd, **(env or {})))


def model_info(image_size):
    """The least JSON a model needs beside it (train.py writes more)."""
    return data.model_inputs(image_size, "pad")


def assert_user_error(result, fragment, code=2):
    """A clear one-line error on stderr, the expected exit code, and no traceback."""
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert any(fragment in line for line in errors), result.stderr


@pytest.fixture(scope="session")
def tiny_english(tmp_path_factory):
    """All 62 classes, 4 rendered crops each, in the official layout."""
    return make_dataset(tmp_path_factory.mktemp("tiny"), per_class=4)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_english):
    """A project folder after `python train.py` for one epoch on the tiny dataset (English/ linked)."""
    workdir = tmp_path_factory.mktemp("project")
    os.symlink(tiny_english, workdir / "English")
    result = run("train.py", "--weights", "none", "--epochs", "1", "--image-size", TEST_IMAGE_SIZE,
                 "--batch-size", "16", "--train-seed", "7", "--label-smoothing", "0.1", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir, result
