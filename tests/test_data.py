"""Loading, caching, splitting, augmenting and rendering: data.py on small real-format files."""

import io
import os
import warnings

import numpy as np
import pytest
from PIL import Image

import checkpoint
import data
import prepare
from conftest import SHARED_GOODIMG, make_dataset


def save(img, path, **kwargs):
    img.save(path, **kwargs)
    return str(path)


def glyph(mode="RGB", size=(20, 40)):
    """A dark bar on a light background: easy to check after resizing."""
    pixels = np.full((size[1], size[0], 3), 230, np.uint8)
    pixels[:, size[0] // 3: 2 * size[0] // 3] = 20
    return Image.fromarray(pixels).convert(mode)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGB", "RGBA", "1"])
def test_every_pillow_mode_loads_as_rgb_uint8(tmp_path, mode):
    image = data.load_image(save(glyph(mode), tmp_path / f"x-{mode}.png"), size=32)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert image[16, 16].max() < 100 and image[16, 2].min() > 150  # bar stays dark, background light


def test_16_bit_png_keeps_its_contrast(tmp_path):
    pixels = np.full((40, 20), 60000, np.uint16)
    pixels[:, 8:12] = 2000
    image = data.load_image(save(Image.fromarray(pixels), tmp_path / "deep.png"), size=32)
    assert image[16, 16, 0] < 20 and image[16, 10, 0] > 220


@pytest.mark.parametrize("bits", [10, 12])
def test_10_and_12_bit_data_in_a_16_bit_png_keeps_its_contrast(tmp_path, bits):
    top = 2 ** bits - 1
    pixels = np.full((40, 20), round(top * 0.9), np.uint16)
    pixels[:, 8:12] = round(top * 0.05)
    image = data.load_image(save(Image.fromarray(pixels), tmp_path / "deep.png"), size=32)
    assert image[16, 16, 0] < 30 and image[16, 10, 0] > 200  # was almost black, divided by 257


def test_32_bit_integers_keep_their_contrast(tmp_path):
    pixels = np.full((40, 20), 900_000, np.int32)
    pixels[:, 8:12] = 20_000
    image = data.load_image(save(Image.fromarray(pixels, mode="I"), tmp_path / "wide.tif"), size=32)
    assert image[16, 16, 0] < 30 and image[16, 10, 0] > 200  # was all white, clipped at 255


def test_float_image_with_nan_and_infinity_loads_without_warnings(tmp_path):
    pixels = np.full((40, 20), 0.9, np.float32)
    pixels[:, 8:12] = 0.1
    pixels[0, 0], pixels[0, 1] = np.nan, np.inf
    path = save(Image.fromarray(pixels, mode="F"), tmp_path / "float.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = data.load_image(path, size=32)
    assert image[16, 16, 0] < 60 and image[16, 10, 0] > 200


def test_a_fifo_is_refused_at_once_not_opened(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(data.UnreadableImage, match="not a regular file"):
        data.read_image(str(fifo))  # opening it would block until a writer came


def test_cmyk_jpeg_loads(tmp_path):
    path = save(glyph("CMYK"), tmp_path / "cmyk.jpg")
    assert Image.open(path).mode == "CMYK"
    assert data.load_image(path, size=32).shape == (32, 32, 3)


@pytest.mark.parametrize("size", [(1, 1), (3, 3), (3, 600), (648, 5), (536, 648)])
def test_any_size_fits(tmp_path, size):
    path = save(glyph(size=size), tmp_path / "s.png")
    for resize in checkpoint.RESIZE_MODES:
        assert data.load_image(path, size=32, resize=resize).shape == (32, 32, 3)


def test_pad_keeps_aspect_ratio_and_stretch_fills(tmp_path):
    path = save(glyph(size=(20, 40)), tmp_path / "tall.png")
    padded = data.load_image(path, 32, "pad")
    stretched = data.load_image(path, 32, "stretch")
    dark_columns = lambda image: int((image[16, :, 0] < 100).sum())
    assert dark_columns(stretched) == pytest.approx(2 * dark_columns(padded), abs=2)
    assert (padded[:, :4] > 200).all()  # the padding takes the background's colour


def write_bad_files(folder):
    png = io.BytesIO()
    glyph().save(png, format="PNG")
    (folder / "img-truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    (folder / "img-empty.png").write_bytes(b"")
    (folder / "img-text.png").write_text("not an image")


def test_unreadable_files_are_named_and_skipped(tmp_path):
    english = make_dataset(tmp_path, per_class=2, classes=["Sample001", "Sample002"])
    root = data.class_root(english)
    write_bad_files(tmp_path / root / "Sample001")
    messages = []
    images, labels, paths = data.decode_images(root, data.list_images(root), 32, cache_dir=None,
                                               log=messages.append)
    assert len(images) == len(labels) == len(paths) == 4
    assert "Skipped 3 unreadable images:" in messages
    for name in ("img-truncated.png", "img-empty.png", "img-text.png"):
        assert any(name in m for m in messages), messages


def test_no_readable_image_is_a_clear_error(tmp_path):
    folder = tmp_path / "Sample001"
    folder.mkdir()
    write_bad_files(folder)
    with pytest.raises(data.DatasetError, match="none of the 3 images"):
        data.decode_images(str(tmp_path), data.list_images(str(tmp_path)), 32, cache_dir=None, log=print)


def test_listing_finds_classes_and_notes_what_is_missing(tmp_path):
    english = make_dataset(tmp_path, per_class=3, classes=["Sample001", "Sample037"])
    root = data.class_root(english)
    os.makedirs(os.path.join(root, "Misc"))
    open(os.path.join(root, "Sample001", ".DS_Store"), "w").close()
    messages = []
    entries = data.list_images(root, max_per_class=2, log=messages.append)
    assert entries == [("Sample001/img001-00001.png", 0), ("Sample001/img001-00002.png", 0),
                       ("Sample037/img037-00001.png", 36), ("Sample037/img037-00002.png", 36)]
    assert any("Misc" in m for m in messages)
    assert any("60 of 62 classes have no images" in m for m in messages)


def test_dataset_is_found_from_english_or_its_class_folder(tmp_path):
    english = make_dataset(tmp_path, per_class=1, classes=["Sample001"])
    root = os.path.join(english, data.GOODIMG_SUBDIR)
    assert data.class_root(english) == root
    assert data.class_root(root) == root
    assert data.class_root(str(tmp_path)) == root
    with pytest.raises(data.DatasetError, match="no SampleNNN"):
        prepare.find_dataset(str(tmp_path / "elsewhere"))


def test_cache_is_used_then_rebuilt_when_files_or_size_change(tmp_path, monkeypatch):
    english = make_dataset(tmp_path, per_class=2, classes=["Sample001", "Sample002"])
    root, cache = data.class_root(english), str(tmp_path / "cache")
    entries = data.list_images(root)
    first = data.decode_images(root, entries, 32, cache_dir=cache)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although nothing changed")

    with monkeypatch.context() as m:
        m.setattr(data, "load_image", no_decoding)
        second = data.decode_images(root, entries, 32, cache_dir=cache)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[2] == second[2]

    assert data.decode_images(root, entries, 40, cache_dir=cache)[0].shape[1:] == (40, 40, 3)
    path = os.path.join(root, entries[0][0])
    glyph(size=(30, 30)).save(path)
    os.utime(path, ns=(1, 1))
    changed = data.decode_images(root, entries, 32, cache_dir=cache)[0]
    assert not np.array_equal(changed[0], first[0][0])
    assert len(os.listdir(cache)) == 3


def test_split_is_deterministic_stratified_and_disjoint():
    labels = np.repeat(np.arange(62), np.arange(62) % 7 + 2)
    train, val = data.stratified_split(labels, 0.2, seed=1)
    again_train, again_val = data.stratified_split(labels, 0.2, seed=1)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(val, again_val)
    assert not set(train) & set(val)
    assert sorted(np.concatenate([train, val])) == list(range(len(labels)))
    for label in range(62):
        n = (labels == label).sum()
        assert (labels[val] == label).sum() == max(1, round(n * 0.2))
        assert (labels[train] == label).sum() >= 1
    assert not np.array_equal(data.stratified_split(labels, 0.2, seed=2)[1], val)


def test_split_is_saved_and_read_back(tmp_path):
    paths = [f"Sample001/img001-{i:05d}.png" for i in range(10)]
    train, val = data.stratified_split(np.zeros(10, int), 0.2, seed=3)
    data.save_split(paths, train, val, str(tmp_path), 0.2, 3, path=str(tmp_path / "split.json"))
    split = data.load_split(str(tmp_path / "split.json"))
    assert split["val"] == [paths[i] for i in val] and len(split["train"]) == 8
    assert data.split_entries(split["val"]) == [(p, 0) for p in split["val"]]


def test_flip_targets_never_teach_a_wrong_label():
    targets = data.flip_targets()
    char = data.CHARACTERS.index
    assert targets[char("b")] == char("d") and targets[char("d")] == char("b")
    assert targets[char("p")] == char("q") and targets[char("q")] == char("p")
    assert targets[char("A")] == char("A") and targets[char("o")] == char("o")
    for never in "RFJLNSZ23479aegkr":
        assert targets[char(never)] == -1


def test_tensorflow_pipeline_batches_uint8_images_with_their_labels_as_input_and_target():
    images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(10, dtype=np.int32)
    batches = list(data.make_dataset(images, labels, 4, training=True))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    (x, x_labels), y = batches[0]
    assert x.dtype == np.uint8 and x.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(x_labels, y)
    np.testing.assert_array_equal(x.numpy(), images[y.numpy()])
    shuffled = np.concatenate([y for _, y in batches])
    assert sorted(shuffled) == list(range(10)) and list(shuffled) != list(range(10))
    in_order = list(data.make_dataset(images, labels, 4))
    np.testing.assert_array_equal(np.concatenate([x for (x, _), _ in in_order]), images)


def test_tensorflow_pipeline_keeps_each_images_target_distribution_beside_it():
    """Distillation's third input: shuffled with its image and label."""
    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    labels = np.arange(10, dtype=np.int32)
    targets = np.eye(10, 62, dtype=np.float32) * 0.5 + 0.5 / 62
    fit = data.fit_arguments((images, labels, targets), 4, (images, labels))
    for (x, x_labels, x_targets), y in fit["x"]:
        np.testing.assert_array_equal(x.numpy()[:, 0, 0, 0], y.numpy())
        np.testing.assert_array_equal(x_targets.numpy(), targets[y.numpy()])
    (_, *rest), _ = next(iter(fit["validation_data"]))
    assert len(rest) == 1  # validation: images and labels only


def test_synthetic_renders_every_class_in_the_official_layout(tmp_path):
    root = prepare.render_synthetic(str(tmp_path / "synthetic"), per_class=2, seed=5, log=lambda m: None)
    entries = data.list_images(root)
    assert len(entries) == 124 and {label for _, label in entries} == set(range(62))
    assert os.path.basename(entries[0][0]) == "img001-00001.png"
    images, _, _ = data.decode_images(root, entries, 32, cache_dir=None, log=lambda m: None)
    assert images.std() > 20  # real contrast, not blank tiles
    assert prepare.render_synthetic(str(tmp_path / "synthetic"), per_class=2, seed=5) == root  # reused


@pytest.mark.skipif(not os.path.isdir(SHARED_GOODIMG), reason="the real GoodImg set is not at ../shared/chars74k")
def test_real_goodimg_layout_is_found_whole():
    root = prepare.find_dataset(SHARED_GOODIMG)
    entries = data.list_images(root)
    counts = np.bincount([label for _, label in entries], minlength=data.NUM_CLASSES)
    assert len(entries) == 7705 and counts.min() >= 32 and counts.max() == 558
    seven = data.load_image(os.path.join(root, "Sample008", "img008-00019.png"))
    assert seven.shape == (64, 64, 3) and seven.std() > 10
