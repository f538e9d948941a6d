"""train.py and test.py end to end, as a user runs them: one short training, then predictions and errors."""

import csv
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import augment
import checkpoint
import data
import model
import prepare
import test
import train
from conftest import REPO, TEST_IMAGE_SIZE, assert_user_error, run, script_env

SAMPLE = "/Sample008/img008-00002.png"  # a rendered '7' in the tiny dataset


def test_training_writes_model_json_history_figures_and_logs(trained):
    workdir, result = trained
    assert os.path.getsize(workdir / "saved" / "model" / "model_new.h5") > 1_000_000
    info = json.loads((workdir / "saved" / "model" / "model_new.json").read_text())
    assert info["class_names"] == data.CLASS_NAMES and info["image_size"] == int(TEST_IMAGE_SIZE)
    assert info["resize"] == data.DEFAULT_RESIZE and info["characters"] == data.CHARACTERS
    assert {"tensorflow", "keras", "numpy", "python"} <= set(info["versions"])
    assert {"val_accuracy", "val_accuracy_ci", "val_top5", "epoch"} <= set(info["metrics"])
    assert info["split"]["n_train"] + info["split"]["n_val"] == 62 * 4 and info["data"]["fingerprint"]
    assert info["timing"]["seconds_per_epoch"] > 0 and "train.py" in info["command"]
    with open(workdir / "saved" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(rows[0])
    for figure in ("loss.png", "val_loss.png", "acc.png", "val_acc.png", "training.png"):
        assert os.path.getsize(workdir / "imgs" / figure) > 1000
    assert glob.glob(str(workdir / "saved" / "logs" / "**" / "events.out.tfevents.*"), recursive=True)
    split = json.loads((workdir / "saved" / "split.json").read_text())
    assert len(split["val"]) == 62 and not set(split["train"]) & set(split["val"])
    assert split["seed"] == data.SEED and info["training"]["train_seed"] == 7  # another run, the same split
    assert info["training"]["label_smoothing"] == 0.1 and info["training"]["rotation"] == augment.ROTATION
    assert "Best epoch 1 of 1: validation accuracy" in result.stdout and "case-insensitive" in result.stdout
    assert "s per epoch" in result.stdout and "images/s" in result.stdout


def test_export_to_litert_and_savedmodel_then_predict_without_tensorflow(trained):
    """Early in the file: the tests after it predict with the LiteRT copy it writes, as users do by default."""
    workdir, _ = trained
    compact = workdir / "saved" / "model" / "compact_fp16.h5"
    result = run("export.py", "--check", "--float32", "--float16", compact, cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "model_new.h5 (trained here; pass --model" in result.stdout and "validation images of" in result.stdout
    assert "LiteRT gives the Keras model's class for 100.00%" in result.stdout
    assert (workdir / "saved" / "export" / "model_new" / "saved_model.pb").exists()
    full = workdir / "saved" / "model" / "model_new.h5"
    assert compact.stat().st_size < 0.55 * full.stat().st_size
    reports = [json.loads(run("test.py", "--eval", "--json", "--model", path, cwd=workdir).stdout)
               for path in (full, compact)]
    assert reports[0]["accuracy"] == reports[1]["accuracy"] and reports[0]["top5"] == reports[1]["top5"]
    assert json.loads((workdir / "saved" / "model" / "compact_fp16.split.json").read_text())["val"] == \
        json.loads((workdir / "saved" / "split.json").read_text())["val"]
    for path in compact.parent.glob("compact_fp16.*"):
        path.unlink()

    litert = json.loads((workdir / "saved" / "model" / "model_new.json").read_text())["litert"]
    assert litert["weights"] == "float32" and litert["agreement"]["same_class"] == 1.0
    lite = run("test.py", "-img", SAMPLE, "--top", "2", cwd=workdir)  # the LiteRT copy, by default
    keras_run = run("test.py", "-img", SAMPLE, "--top", "2", "--keras", cwd=workdir)
    assert lite.returncode == 0, lite.stderr
    assert "run by LiteRT, from model_new.tflite" in lite.stderr and "run by Keras" in keras_run.stderr
    assert [line.split()[:2] for line in lite.stdout.splitlines()] == \
        [line.split()[:2] for line in keras_run.stdout.splitlines()]

    imports = subprocess.run([sys.executable, "-X", "importtime", os.path.join(REPO, "test.py"), "-img", SAMPLE],
                             cwd=workdir, capture_output=True, text=True, env=script_env(workdir))
    assert imports.returncode == 0 and "ai_edge_litert" in imports.stderr
    assert not re.search(r"\| +(tensorflow|keras)$", imports.stderr, re.M)


def test_predict_prints_the_class_first(trained):
    workdir, _ = trained
    result = run("test.py", "-img", SAMPLE, cwd=workdir)
    assert result.returncode == 0, result.stderr
    name, char, confidence = result.stdout.split()
    assert name in data.CLASS_NAMES and char.strip("'") == data.character(name) and confidence.endswith("%")
    assert "model_new.h5" in result.stderr  # it says which model it used
    assert "oneDNN" not in result.stderr and "cuInit" not in result.stderr  # TensorFlow's start-up notices


def test_predict_several_images_a_folder_top_k_and_a_figure(trained, tmp_path):
    workdir, _ = trained
    folder = workdir / "English" / data.GOODIMG_SUBDIR / "Sample001"
    result = run("test.py", "-img", SAMPLE, str(folder), "--top", "3", "--save", tmp_path / "p.png", cwd=workdir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5 * 3
    assert [line.split()[0] for line in lines[1:3]] == ["2.", "3."]
    assert os.path.getsize(tmp_path / "p.png") > 1000


def test_eval_scores_exactly_the_validation_split(trained):
    workdir, _ = trained
    result = run("test.py", "--eval", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "on 62 images" in result.stdout
    for words in ("accuracy", "case-insensitive", "top-5", "Sample062"):
        assert words in result.stdout
    for figure in ("confusion.png", "errors.png"):
        assert os.path.getsize(workdir / "imgs" / figure) > 1000

    as_json = run("test.py", "--eval", "--json", cwd=workdir)
    report = json.loads(as_json.stdout)
    assert report["n"] == 62 and set(report["per_class"]) == set(data.CLASS_NAMES)
    info = json.loads((workdir / "saved" / "model" / "model_new.json").read_text())
    assert report["accuracy"] == pytest.approx(info["metrics"]["val_accuracy"], abs=1e-6)
    assert report["accuracy_case_insensitive"] >= report["accuracy"]
    assert 0 <= report["top5"] <= 1


def test_tta_scores_the_mean_answer_over_the_image_and_its_rotated_copies(trained):
    workdir, _ = trained
    net, info = model.load_model(str(workdir / "saved" / "model" / "model_new.h5"))

    def mean_over_views(images):
        views = [images] + [np.stack([test.rotated(image, angle) for image in images]) for angle in test.TTA_ANGLES]
        return np.mean([net.predict(view.astype(np.float32), verbose=0) for view in views], axis=0)

    result = run("test.py", "-img", SAMPLE, "--tta", "--keras", "--json", "--top", "62", cwd=workdir)
    assert result.returncode == 0, result.stderr
    answer = {guess["class"]: guess["probability"] for guess in json.loads(result.stdout)["predictions"][0]["top"]}
    image = data.fit_image(data.read_image(str(workdir / "English" / data.GOODIMG_SUBDIR) + SAMPLE),
                           info["image_size"], info["resize"])
    expected = mean_over_views(image[None])[0]
    assert [answer[name] for name in data.CLASS_NAMES] == pytest.approx(expected, abs=1e-5)
    assert not np.allclose(expected, net.predict(image[None].astype(np.float32), verbose=0)[0], atol=1e-4)

    result = run("test.py", "--eval", "--json", "--tta", "--keras", cwd=workdir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    root, entries = data.split_set(str(workdir / "saved" / "split.json"), str(workdir / "English"))
    images, labels, _ = data.decode_images(root, entries, info["image_size"], info["resize"], cache_dir=None,
                                           log=lambda m: None, progress=False)
    assert report["tta"] is True and report["n"] == len(labels) == 62
    assert report["accuracy"] == pytest.approx(np.mean(mean_over_views(images).argmax(1) == labels), abs=1e-6)


def test_tta_rotations_stay_within_training_and_fill_corners_from_the_edges():
    assert max(abs(angle) for angle in test.TTA_ANGLES) <= augment.ROTATION
    bar = np.zeros((32, 32, 3), np.uint8)
    bar[:, 15:17] = 255  # a vertical white bar on black
    turned = test.rotated(bar, 90)
    assert turned.shape == bar.shape
    assert turned[15:17, :].mean() > 200 and turned[:, 15:17].mean() < 60  # now horizontal
    assert test.rotated(np.full((32, 32, 3), 200, np.uint8), 12).min() == 200  # no black corners
    assert np.array_equal(test.rotated(bar, 0), bar)


def test_eval_of_a_folder_prints_only_json(trained, tiny_english, tmp_path):
    workdir, _ = trained
    other = tmp_path / "other"
    shutil.copytree(os.path.join(tiny_english, data.GOODIMG_SUBDIR), other)  # not decoded before: no cache
    result = run("test.py", "--eval", other, "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n"] == 62 * 4


def test_bad_images_are_one_line_each_and_the_good_ones_still_predicted(trained, tmp_path):
    workdir, _ = trained
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    good = workdir / "English" / data.GOODIMG_SUBDIR / SAMPLE.lstrip("/")
    (tmp_path / "truncated.png").write_bytes(good.read_bytes()[:100])
    os.mkdir(tmp_path / "folder")
    os.mkfifo(tmp_path / "folder" / "pipe.png")  # Pillow would wait on it forever
    result = run("test.py", "-img", tmp_path / "empty.png", tmp_path / "text.png", tmp_path / "truncated.png",
                 tmp_path / "missing.png", tmp_path / "folder", SAMPLE, cwd=workdir, timeout=120)
    assert_user_error(result, "empty.png")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 5 and any("missing.png" in line for line in errors)
    assert any("pipe.png: not a regular file" in line for line in errors)
    assert len(result.stdout.splitlines()) == 1 and result.stdout.split()[0] in data.CLASS_NAMES


def jpeg_with_corrupt_exif(path):
    """A readable JPEG whose EXIF block makes Pillow warn."""
    exif = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x05\x01\x0f\x00\x02\xff\xff\xff\xf0\x00\x00\x00\x00"
    Image.new("RGB", (16, 16), (200, 0, 0)).save(path, exif=exif)


def test_a_large_folder_in_batches_as_json_with_odd_names(trained, tmp_path):
    workdir, _ = trained
    folder = tmp_path / "many"
    shutil.copytree(workdir / "English" / data.GOODIMG_SUBDIR, folder)  # 248 images: several batches
    shutil.copy(folder / SAMPLE.lstrip("/"), folder / "new\nline.png")
    jpeg_with_corrupt_exif(folder / "exif.jpg")
    result = run("test.py", "-img", folder, "--json", "--top", "2", cwd=workdir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["predictions"]) == 250 and report["errors"] == []
    assert all(len(p["top"]) == 2 and p["top"][0]["probability"] >= p["top"][1]["probability"]
               for p in report["predictions"])
    assert str(folder / "new\nline.png") in [p["path"] for p in report["predictions"]]
    assert "Warning" not in result.stderr  # Pillow's note on the EXIF block stays inside

    result = run("test.py", "-img", folder / "new\nline.png", folder / "exif.jpg", "--save", tmp_path, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2 and "new\\nline.png" in result.stdout
    assert os.path.getsize(tmp_path / "predictions.png") > 1000  # --save to a folder writes inside it


@pytest.mark.parametrize("save, message", [("p.bogus", "ending in one of"),
                                           ("file.txt/p.png", "is a file, not a folder")])
def test_a_figure_that_cannot_be_saved_is_refused_before_any_work(tmp_path, save, message):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    result = run("test.py", "-img", SAMPLE, "--save", tmp_path / save, cwd=tmp_path)
    assert_user_error(result, message)
    assert "Model:" not in result.stderr and not result.stdout


def test_eval_with_split_files_missing_or_figures_unwritable(trained, tmp_path):
    workdir, _ = trained
    home = tmp_path / "home"
    shutil.copytree(workdir / "saved" / "model", home / "saved" / "model")
    shutil.copy(workdir / "saved" / "split.json", home / "saved" / "split.json")
    shutil.copytree(workdir / "English", home / "English")
    split = json.loads((home / "saved" / "split.json").read_text())
    os.remove(home / "English" / data.GOODIMG_SUBDIR / split["val"][0])
    result = run("test.py", "--eval", "--data-dir", home / "English", cwd=home)
    assert_user_error(result, "1 of the 62 validation images")

    (home / "imgs").write_text("a file where the figures would go")
    result = run("test.py", "--eval", "--data-dir", workdir / "English", cwd=home)
    assert_user_error(result, "cannot write the figure")
    assert "on 62 images" in result.stdout and "case-insensitive" in result.stdout  # the metrics came first


def test_no_model_yet(tmp_path, tiny_english):
    os.symlink(tiny_english, tmp_path / "English")
    missing = tmp_path / "saved" / "model" / "model_new.h5"
    assert_user_error(run("test.py", "-img", SAMPLE, "--model", missing, cwd=tmp_path), "no model at")
    assert_user_error(run("test.py", "--eval", "--model", missing, cwd=tmp_path), "no model at")
    assert_user_error(run("test.py", "-img", SAMPLE, "--model", tmp_path / "none.tflite", cwd=tmp_path), "no model at")
    os.makedirs(tmp_path / "exported")
    (tmp_path / "exported" / "saved_model.pb").write_bytes(b"")
    assert_user_error(run("test.py", "-img", SAMPLE, "--model", tmp_path / "exported", cwd=tmp_path),
                      "is a TensorFlow SavedModel (for serving), not a model file")


def test_models_that_do_not_fit(trained, tmp_path):
    workdir, _ = trained
    model_dir = workdir / "saved" / "model"
    (tmp_path / "junk.h5").write_text("not a model")
    info = json.loads((model_dir / "model_new.json").read_text())
    (tmp_path / "junk.json").write_text(json.dumps({k: v for k, v in info.items() if k != "sha256"}))
    assert_user_error(run("test.py", "-img", SAMPLE, "--model", tmp_path / "junk.h5", cwd=workdir), "cannot load")

    shutil.copy(model_dir / "model_new.h5", tmp_path / "nojson.h5")
    assert_user_error(run("test.py", "-img", SAMPLE, "--model", tmp_path / "nojson.h5", cwd=workdir), "missing")

    shutil.copy(model_dir / "model_new.h5", tmp_path / "other.h5")
    (tmp_path / "other.json").write_text(json.dumps({**info, "image_size": 64}))
    assert_user_error(run("test.py", "-img", SAMPLE, "--model", tmp_path / "other.h5", cwd=workdir), "shape")


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs"), (["--epochs", "-3"], "--epochs"), (["--batch-size", "0"], "--batch-size"),
    (["--val-fraction", "0"], "--val-fraction"), (["--val-fraction", "1"], "--val-fraction"),
    (["--image-size", "16"], "--image-size"), (["--resize", "crop"], "--resize"),
    (["--label-smoothing", "1"], "--label-smoothing"), (["--label-smoothing", "-0.1"], "--label-smoothing"),
    (["--weight-decay", "-0.1"], "--weight-decay"), (["--ema", "0.3"], "--ema"), (["--ema", "1"], "--ema"),
    (["--clip-norm", "-1"], "--clip-norm"), (["--mixup", "-0.2"], "--mixup"), (["--cutmix", "inf"], "--cutmix"),
    (["--no-augment", "--mixup", "0.2"], "--no-augment"), (["--no-augment", "--rotation", "30"], "--no-augment"),
    (["--rotation", "-5"], "--rotation"), (["--rotation", "120"], "--rotation"),
    (["--teacher-weight", "0.3"], "need --teacher"), (["--consistent-teacher"], "need --teacher"),
    (["--teacher", "t.h5", "--teacher-temperature", "0"], "--teacher-temperature"),
    (["--fonts"], "--fonts"), (["--zero-init-residual"], "needs --weights none"),
    (["--zero-init-residual", "--weights", "imagenet"], "needs --weights none"),
])
def test_bad_training_flags_stop_before_any_work(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(flags)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_batch_larger_than_the_dataset(tmp_path, tiny_english):
    result = run("train.py", "--data-dir", tiny_english, "--weights", "none", "--max-per-class", "2",
                 "--batch-size", "500", "--image-size", TEST_IMAGE_SIZE, cwd=tmp_path)
    assert_user_error(result, "--batch-size 500 is larger than the 62 training images")
    assert not os.path.exists(tmp_path / "saved" / "model")


def test_missing_dataset_folder(tmp_path):
    result = run("train.py", "--data-dir", tmp_path / "nowhere", "--weights", "none", cwd=tmp_path)
    assert_user_error(result, "no SampleNNN class folders")


def test_offline_synthetic_training_renders_fonts_and_trains(tmp_path):
    fonts = tmp_path / "more fonts"
    fonts.mkdir()
    extra = prepare.font_files()[0]
    shutil.copy(extra, fonts / "Extra-Font.ttf")
    result = run("train.py", "--data", "synthetic", "--synthetic-per-class", "3", "--weights", "none",
                 "--fonts", fonts, "--epochs", "1", "--image-size", TEST_IMAGE_SIZE, "--batch-size", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Training on 124 images, validating on 62 (62 classes)" in result.stdout
    assert len(os.listdir(tmp_path / "saved" / "synthetic" / "English" / data.GOODIMG_SUBDIR)) == 62
    assert (tmp_path / "saved" / "model" / "model_new.h5").exists()
    recipe = json.loads((tmp_path / "saved" / "synthetic" / "recipe.json").read_text())
    assert "Extra-Font.ttf" in recipe["fonts"] and os.path.basename(extra) in recipe["fonts"]
    assert_user_error(run("prepare.py", "--data", "synthetic", "--fonts", tmp_path / "nowhere", cwd=tmp_path),
                      "no such folder")


def test_averaged_weights_are_the_ones_validated_and_saved(trained, tmp_path, tiny_english):
    """With --ema the model saved is the moving average that validation scored, not the last weights: its
    loss on the validation images is the history's val_loss (with weight decay, strong and light augmentation,
    mixup, cutmix, a teacher, the contrast stretch and zero-initialized residual blocks on)."""
    teacher = trained[0] / "saved" / "model" / "model_new.h5"
    result = run("train.py", "--data-dir", tiny_english, "--weights", "none", "--epochs", "1", "--ema", "0.9",
                 "--weight-decay", "0.05", "--strong-augment", "--light-augment", "--mixup", "0.2", "--cutmix", "1",
                 "--teacher", teacher, "--stretch-contrast", "--zero-init-residual", "--image-size", TEST_IMAGE_SIZE,
                 "--batch-size", "16", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Teacher {teacher}: answering the 186 training images" in result.stdout
    info = json.loads((tmp_path / "saved" / "model" / "model_new.json").read_text())
    assert info["training"]["ema"] == 0.9 and info["training"]["strong_augment"] is True
    assert info["training"]["light_augment"] is True and info["training"]["zero_init_residual"] is True
    assert info["training"]["mixup"] == 0.2 and info["training"]["cutmix"] == 1.0
    assert info["training"]["teacher"] == [os.path.relpath(teacher, tmp_path)]  # no machine's absolute path
    assert info["training"]["teacher_weight"] == 0.5
    assert info["training"]["stretch_contrast"] is True and "contrast stretched" in info["preprocessing"]
    net, _ = model.load_model(str(tmp_path / "saved" / "model" / "model_new.h5"))
    assert model.stretches_contrast(net)
    root, entries = data.split_set(str(tmp_path / "saved" / "split.json"), tiny_english)
    images, labels, _ = data.decode_images(root, entries, int(TEST_IMAGE_SIZE), data.DEFAULT_RESIZE, cache_dir=None)
    probabilities = net.predict(images.astype(np.float32), verbose=0)
    loss = -np.mean(np.log(np.maximum(probabilities[np.arange(len(labels)), labels], model.SMALLEST_PROBABILITY)))
    assert loss == pytest.approx(info["metrics"]["val_loss"], rel=1e-3)


def test_a_consistent_teacher_answers_inside_the_training_step(trained, tmp_path, tiny_english):
    teacher = trained[0] / "saved" / "model" / "model_new.h5"
    result = run("train.py", "--data-dir", tiny_english, "--weights", "none", "--epochs", "1", "--teacher", teacher,
                 "--consistent-teacher", "--teacher-temperature", "4",
                 "--image-size", TEST_IMAGE_SIZE, "--batch-size", "16", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Teacher {teacher}: answering each augmented view of the training images" in result.stdout
    assert "answering the" not in result.stdout  # no answers computed once beforehand
    info = json.loads((tmp_path / "saved" / "model" / "model_new.json").read_text())
    assert info["training"]["consistent_teacher"] is True and info["training"]["teacher_temperature"] == 4


def teacher_and_split(trained):
    teacher = str(trained[0] / "saved" / "model" / "model_new.h5")
    split = data.load_split(str(trained[0] / "saved" / "split.json"))
    return teacher, split


def distillation_run(teachers, train_paths, val_paths, *flags):
    """train.distilled_targets for a dataset of these paths (random images), training and validation
    images interleaved."""
    paths = [path for pair in zip(train_paths, val_paths) for path in pair] + train_paths[len(val_paths):]
    labels = np.array([data.CLASS_NAMES.index(path.split("/")[0]) for path in paths])
    images = np.random.default_rng(0).integers(0, 256, (len(paths), 32, 32, 3), dtype=np.uint8)
    val_idx = np.array([paths.index(path) for path in val_paths])
    dataset = train.TrainingData("", images, labels, paths, np.setdiff1d(np.arange(len(paths)), val_idx), val_idx,
                                 "")
    args = train.parse_args([*(f for teacher in teachers for f in ("--teacher", teacher)),
                             "--image-size", TEST_IMAGE_SIZE, *flags])
    return dataset, train.distilled_targets(args, dataset)


def test_distillation_teaches_a_blend_of_the_label_and_the_teachers_softened_answer(trained):
    teacher, split = teacher_and_split(trained)
    dataset, targets = distillation_run([teacher, teacher], split["train"], split["val"], "--teacher-weight", "0.3",
                                        "--teacher-temperature", "2")
    train_rows, labels = targets[dataset.train_idx], dataset.labels[dataset.train_idx]
    answers = test.predict(model.load_model(teacher)[0], dataset.images[dataset.train_idx])
    softened = np.sqrt(answers) / np.sqrt(answers).sum(axis=1, keepdims=True)  # a softmax of logits / 2
    np.testing.assert_allclose(train_rows, 0.7 * np.eye(data.NUM_CLASSES)[labels] + 0.3 * softened, atol=1e-5)
    assert not targets[dataset.val_idx].any()


def test_a_teacher_that_trained_on_the_validation_images_is_refused(trained):
    teacher, split = teacher_and_split(trained)
    with pytest.raises(checkpoint.UserError, match="trained on 2 of this run's validation images"):
        distillation_run([teacher], split["train"][2:], split["val"] + split["train"][:2])


def test_a_teacher_whose_split_was_replaced_or_that_is_the_output_is_refused(trained, tmp_path):
    teacher, split = teacher_and_split(trained)
    copy = tmp_path / "teacher.h5"
    shutil.copy(teacher, copy)
    shutil.copy(checkpoint.info_path(teacher), checkpoint.info_path(str(copy)))
    (tmp_path / "teacher.split.json").write_text(json.dumps({**split, "seed": 5}))
    with pytest.raises(checkpoint.UserError, match="is not the split it trained on"):
        distillation_run([str(copy)], split["train"], split["val"])
    with pytest.raises(checkpoint.UserError, match="is this run's --output"):
        distillation_run([teacher], split["train"], split["val"], "--output", teacher)


@pytest.mark.parametrize("output", ["saved/model/model_new.h5", "model.h5", "runs/a/model.h5"])
def test_a_teachers_split_is_found_from_where_its_json_says(tmp_path, monkeypatch, output):
    """Wherever its project has moved, and from whatever folder train.py starts."""
    teacher = tmp_path / "moved" / output
    info = {"training": {"output": output}, "split": {"path": "saved/split.json"}}
    teacher.parent.mkdir(parents=True)
    monkeypatch.chdir(teacher.parent)
    with pytest.raises(checkpoint.UserError, match="is not where its JSON says"):
        train.teacher_split(str(teacher), info)
    split = tmp_path / "moved" / "saved" / "split.json"
    split.parent.mkdir(parents=True, exist_ok=True)
    split.write_text("{}")
    assert train.teacher_split(str(teacher), info) == str(split)
    beside = teacher.with_suffix(".split.json")
    beside.write_text("{}")
    assert train.teacher_split(str(teacher), info) == str(beside)


def network_reaches(host):
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(network_reaches("storage.googleapis.com"), reason="online: the ImageNet weights would download")
def test_imagenet_weights_offline_say_what_to_do(tmp_path, tiny_english):
    result = run("train.py", "--data-dir", tiny_english, "--epochs", "1", cwd=tmp_path,
                 env={"HOME": str(tmp_path), "KERAS_HOME": str(tmp_path / ".keras")})
    assert_user_error(result, "could not load the ImageNet weights")
    assert "--weights none" in result.stderr and "--data synthetic" in result.stderr
