"""Odd images, messy dataset folders and broken models: each is handled, none crashes."""

import json
import os
import time

import numpy as np
import pytest
from PIL import Image

import data
import prepare
from conftest import TEST_IMAGE_SIZE, assert_user_error, make_dataset, model_info, png_claiming, run


def test_decompression_bomb_is_refused_quickly(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(60000, 60000))
    start = time.perf_counter()
    with pytest.raises(data.UnreadableImage, match="too many pixels"):
        data.load_image(str(path))
    assert time.perf_counter() - start < 1


def test_exif_rotated_jpeg_is_turned_upright(tmp_path):
    wide = np.full((20, 60, 3), 255, np.uint8)
    wide[:, :10] = 0  # a dark band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(wide).save(path, exif=exif, quality=95)
    upright = data.read_image(str(path))
    assert upright.size == (20, 60)  # displayed tall
    assert np.asarray(upright)[:10].mean() < 60 and np.asarray(upright)[-10:].mean() > 200  # band now on top


def test_animated_gif_uses_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((0, 0, 0), (255, 255, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 2
    assert data.load_image(str(path), 32).max() < 10


def test_grayscale_alpha_and_palette_with_transparency(tmp_path):
    la = Image.new("LA", (10, 10), (0, 0))  # fully transparent: shows the white behind it
    la.save(tmp_path / "la.png")
    assert data.load_image(str(tmp_path / "la.png"), 32).min() == 255
    palette = Image.new("P", (10, 10), 1)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.save(tmp_path / "p.png")
    assert tuple(data.load_image(str(tmp_path / "p.png"), 32)[5, 5]) == (0, 0, 255)


def test_messy_dataset_folder(tmp_path):
    english = make_dataset(tmp_path / "data", per_class=2, classes=["Sample001", "Sample002", "Sample011"])
    root = data.class_root(english)
    outside = make_dataset(tmp_path / "elsewhere", per_class=1, classes=["Sample003"])
    os.symlink(os.path.join(data.class_root(outside), "Sample003"), os.path.join(root, "Sample003"))
    os.symlink(os.path.join(data.class_root(outside), "Sample003", "img003-00001.png"),
               os.path.join(root, "Sample001", "img001-99999.png"))
    for junk in (".DS_Store", "Thumbs.db", "notes.txt"):
        (tmp_path / root / "Sample001" / junk).write_text("junk")
    os.makedirs(os.path.join(root, ".hidden", "Sample001"))
    os.makedirs(os.path.join(root, "Extra"))
    messages = []
    entries = data.list_images(root, log=messages.append)
    assert sorted({relpath.split("/")[0] for relpath, _ in entries}) == ["Sample001", "Sample002", "Sample011"]
    assert len(entries) == 6
    assert any("Extra" in m and "not class folders" in m for m in messages)
    assert any("img001-99999.png" in m and "Sample003/" in m and "outside" in m for m in messages)
    assert any("59 of 62 classes have no images" in m and "Sample003 '2'" in m for m in messages)


def test_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(data.DatasetError, match="no SampleNNN class folders"):
        prepare.find_dataset(str(tmp_path))
    os.makedirs(tmp_path / "Sample001")
    with pytest.raises(data.DatasetError, match="no images found"):
        data.list_images(prepare.find_dataset(str(tmp_path)))


def test_training_on_a_partial_dataset_with_bad_files(tmp_path):
    english = make_dataset(tmp_path, per_class=3, classes=data.CLASS_NAMES[:5])
    bad = os.path.join(data.class_root(english), "Sample001", "img001-00009.png")
    with open(bad, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n broken")
    result = run("train.py", "--data-dir", english, "--weights", "none", "--epochs", "1", "--batch-size", "4",
                 "--image-size", TEST_IMAGE_SIZE, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "57 of 62 classes have no images" in result.stdout
    assert "Skipped 1 unreadable images" in result.stdout and "img001-00009.png" in result.stdout
    assert "Training on 10 images, validating on 5 (5 classes)" in result.stdout

    model_path = tmp_path / "saved" / "model" / "model_new.h5"
    half = tmp_path / "truncated.h5"
    half.write_bytes(model_path.read_bytes()[: model_path.stat().st_size // 2])
    info = json.loads(model_path.with_suffix(".json").read_text())
    del info["sha256"]  # else the JSON refuses the file before the loader reads it
    half.with_suffix(".json").write_text(json.dumps(info))
    good_image = os.path.join(data.class_root(english), "Sample002", "img002-00001.png")
    assert_user_error(run("test.py", "-img", good_image, "--model", half, cwd=tmp_path), "cannot load")

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(60000, 60000))
    result = run("test.py", "-img", bomb, good_image, cwd=tmp_path)
    assert_user_error(result, "too many pixels")
    assert result.stdout.split()[0] in data.CLASS_NAMES


def test_model_with_other_classes_is_refused(tmp_path):
    import keras

    import model as model_lib

    other = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    path = str(tmp_path / "ten.h5")
    model_lib.save_model(other, path, model_info(32))
    with pytest.raises(model_lib.ModelError, match="predicts 10 classes"):
        model_lib.load_model(path)
    with open(tmp_path / "ten.json", "w") as f:
        json.dump({"image_size": 32}, f)
    with pytest.raises(model_lib.ModelError, match="not a model description"):
        model_lib.load_model(path)


def test_a_model_that_would_run_code_is_refused(tmp_path):
    import keras

    import model as model_lib

    ran = str(tmp_path / "ran")
    hostile = keras.Sequential([keras.Input((32, 32, 3)),
                                keras.layers.Lambda(lambda x: x if open(ran, "w").close() is None else x),
                                keras.layers.Flatten(), keras.layers.Dense(62, activation="softmax")])
    os.remove(ran)
    path = str(tmp_path / "hostile.h5")
    hostile.save(path)
    with open(tmp_path / "hostile.json", "w") as f:
        json.dump(model_info(32), f)
    with pytest.raises(model_lib.ModelError, match="Lambda"):
        model_lib.load_model(path)
    assert not os.path.exists(ran)
