"""The profiler breakdown that RESULTS.md quotes, on the tiny dataset."""

import re

from conftest import TEST_IMAGE_SIZE, run


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
