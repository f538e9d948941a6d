"""The shipped model reproduces its measured validation accuracy from the compact file."""

import glob
import json
import os

import pytest

import checkpoint
from conftest import REPO, SHARED_GOODIMG, run

SHIPPED = [path for path in sorted(glob.glob(os.path.join(REPO, "saved", "model", "*.h5")))
           if os.path.exists(checkpoint.info_path(path)) and os.path.exists(path[:-3] + ".split.json")]


@pytest.mark.skipif(not os.path.isdir(SHARED_GOODIMG), reason="the real GoodImg set is not at ../shared/chars74k")
@pytest.mark.skipif(not SHIPPED, reason="no model is shipped in saved/model/")
@pytest.mark.parametrize("model_path", SHIPPED)
def test_shipped_model_reproduces_its_validation_accuracy(model_path, tmp_path):
    """In Keras exactly; through its LiteRT copy (int8 weights, the default) within 2 of the 1,541 images."""
    info = json.loads(open(checkpoint.info_path(model_path)).read())
    assert os.path.getsize(model_path) < 50e6 and info["weights_stored_as"] == "float16"
    for flags, tolerance in ((["--keras"], 0.5), ([], 2.5)):
        result = run("test.py", "--eval", "--json", "--model", model_path, "--data-dir", SHARED_GOODIMG, *flags,
                     cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert ("run by LiteRT" in result.stderr) == (not flags)
        report = json.loads(result.stdout)
        assert report["n"] == info["split"]["n_val"] == 1541
        assert report["accuracy"] == pytest.approx(info["metrics"]["val_accuracy"], abs=tolerance / 1541)
        assert report["accuracy_case_insensitive"] == pytest.approx(info["metrics"]["val_accuracy_ci"],
                                                                    abs=tolerance / 1541)


def strings_in(value):
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings_in(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return [value] if isinstance(value, str) else []


@pytest.mark.skipif(not SHIPPED, reason="no model is shipped in saved/model/")
@pytest.mark.parametrize("model_path", SHIPPED)
def test_shipped_json_holds_no_machine_paths_and_names_its_model_file(model_path):
    for path in (checkpoint.info_path(model_path), model_path[:-3] + ".split.json"):
        with open(path) as f:
            assert not [s for s in strings_in(json.load(f)) if os.path.isabs(s)], path
    assert checkpoint.read_info(model_path)["sha256"] == checkpoint.sha256(model_path)
