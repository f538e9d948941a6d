"""The JAX backend where TensorFlow is not installed (as on GPU machines set up with JAX alone). Training,
saving (.h5 and .keras), prediction and evaluation there: tests/test_distributed.py."""

import subprocess

import pytest

from conftest import script_env, without_tensorflow

pytest.importorskip("jax", reason="the JAX backend needs jax")


def test_without_tensorflow_the_scripts_choose_jax(tmp_path):
    which = tmp_path / "which.py"
    which.write_text("import checkpoint\nprint(checkpoint.import_keras().backend.backend())\n")
    env = {k: v for k, v in script_env(tmp_path).items() if k != "KERAS_BACKEND"}
    result = subprocess.run(without_tensorflow(which), cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["jax"]
