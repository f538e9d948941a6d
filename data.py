"""Chars74K data: classes, finding or downloading the images, decoding, splitting, tf.data.

The English "GoodImg" set unpacks to English/Img/GoodImg/Bmp/SampleNNN/imgNNN-NNNNN.png;
Sample001-010 are '0'-'9', Sample011-036 'A'-'Z', Sample037-062 'a'-'z'.

    python data.py                          # find (or download) the data and print a summary
    python data.py --data-dir ../shared/chars74k/English
    python data.py --data synthetic         # render the 62 characters from fonts instead

TensorFlow and Keras are imported only by the functions that need them, so that reading images
(as test.py does for one prediction) stays light.
"""

import argparse
import contextlib
import glob
import hashlib
import json
import os
import random
import shutil
import string
import sys
import tarfile
import tempfile
import warnings
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

CHARACTERS = string.digits + string.ascii_uppercase + string.ascii_lowercase
CLASS_NAMES = [f"Sample{i:03d}" for i in range(1, len(CHARACTERS) + 1)]
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 64
RESIZE_MODES = ("pad", "stretch")
DEFAULT_RESIZE = "pad"  # measured against "stretch" on GoodImg: see RESULTS.md
VAL_FRACTION = 0.2
SEED = 1337

DATA_DIR = "English"
DATA_URL = os.environ.get(
    "CHARS74K_URL", "https://info-ee.surrey.ac.uk/CVSSP/demos/chars74k/EnglishImg.tgz"
)
ARCHIVE_NAME = "EnglishImg.tgz"
GOODIMG_SUBDIR = os.path.join("Img", "GoodImg", "Bmp")
SAVED_DIR = "saved"
CACHE_DIR = os.path.join(SAVED_DIR, "cache")
SPLIT_PATH = os.path.join(SAVED_DIR, "split.json")
SYNTHETIC_DIR = os.path.join(SAVED_DIR, "synthetic")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
JUNK_FILES = {"Thumbs.db", "desktop.ini"}
NON_TEXT_FONTS = ("LastResort", "cmex10", "cmsy10")  # map letters to placeholder boxes or symbols

# Horizontal flips that keep a label true: symmetric glyphs stay, mirror pairs swap.
MIRROR_SYMMETRIC = "08AHIMOTUVWXYilovwx"
MIRROR_PAIRS = {"b": "d", "d": "b", "p": "q", "q": "p"}

# Decompression bombs: read_image refuses images of more pixels than this (a 12 MP photo is fine).
Image.MAX_IMAGE_PIXELS = 64_000_000
CACHE_FORMAT = 1  # bump when decoding changes, so old caches are rebuilt


class DatasetError(Exception):
    """A problem with the dataset that the user can fix; printed as one line."""


class UnreadableImage(Exception):
    """An image file that cannot be decoded."""


class ModelError(Exception):
    """A model that cannot be built, found or loaded; printed as one line."""


def character(class_name):
    return CHARACTERS[CLASS_NAMES.index(class_name)]


def flip_targets():
    """For each class index, the class of its mirror image, or -1 if it must not be flipped."""
    targets = []
    for char in CHARACTERS:
        if char in MIRROR_SYMMETRIC:
            targets.append(CHARACTERS.index(char))
        elif char in MIRROR_PAIRS:
            targets.append(CHARACTERS.index(MIRROR_PAIRS[char]))
        else:
            targets.append(-1)
    return np.array(targets, dtype=np.int32)


def case_fold_indices():
    """For each class index, one index shared by the upper and lower case of a letter."""
    return np.array([string.digits.find(c) if c.isdigit() else 10 + string.ascii_lowercase.index(c.lower())
                     for c in CHARACTERS], dtype=np.int32)


# ---------------------------------------------------------------- images

def to_rgb(img):
    """Any Pillow mode (L, LA, P, RGBA, CMYK, 16-bit, float) as 8-bit RGB."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        pixels = np.asarray(img, dtype=np.float64)
        if img.mode == "F" and pixels.max(initial=0) <= 1.0:
            pixels = pixels * 255.0
        elif pixels.max(initial=0) > 255:
            pixels = pixels / 257.0
        img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def read_image(path):
    """Open any image file as upright RGB (EXIF rotation applied, first frame of animations)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.seek(0)
                img.load()
                img = ImageOps.exif_transpose(img)
                return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UnreadableImage(f"{path}: too many pixels ({e})") from None
    except FileNotFoundError:
        raise UnreadableImage(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnreadableImage(f"{path}: is a folder, not an image") from None
    except (OSError, ValueError, SyntaxError, EOFError, zlib.error) as e:
        reason = "empty file" if os.path.isfile(path) and os.path.getsize(path) == 0 else str(e) or type(e).__name__
        raise UnreadableImage(f"{path}: not a readable image ({reason})") from None


def fit_image(img, size=IMAGE_SIZE, resize=DEFAULT_RESIZE):
    """Resize an RGB image to size x size: "stretch" it, or "pad" it keeping its aspect ratio."""
    if resize == "stretch":
        return np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.uint8)
    if resize != "pad":
        raise ValueError(f"resize must be one of {RESIZE_MODES}, not {resize!r}")
    width, height = img.size
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    glyph = img.resize(new_size, Image.BILINEAR)
    pixels = np.asarray(img)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    canvas = Image.new("RGB", (size, size), tuple(int(v) for v in border.mean(axis=0).round()))
    canvas.paste(glyph, ((size - new_size[0]) // 2, (size - new_size[1]) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def load_image(path, size=IMAGE_SIZE, resize=DEFAULT_RESIZE):
    """One image file as a (size, size, 3) uint8 array; raises UnreadableImage."""
    return fit_image(read_image(path), size, resize)


# ---------------------------------------------------------------- finding the dataset

def class_root(data_dir):
    """The folder holding the SampleNNN folders, given an English/ folder or that folder itself."""
    for candidate in (data_dir, os.path.join(data_dir, GOODIMG_SUBDIR),
                      os.path.join(data_dir, DATA_DIR, GOODIMG_SUBDIR)):
        if os.path.isdir(candidate) and any(name in CLASS_NAMES for name in os.listdir(candidate)):
            return candidate
    return None


def is_image_file(name):
    return not name.startswith(".") and name not in JUNK_FILES and name.lower().endswith(IMAGE_EXTENSIONS)


def inside(path, folder):
    return os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep)


def list_images(root, max_per_class=None, log=print):
    """(relative path, label) of every image under root/SampleNNN, sorted; notes what is odd."""
    entries, empty, outside = [], [], []
    unknown = sorted(name for name in os.listdir(root)
                     if name not in CLASS_NAMES and not name.startswith(".") and name not in JUNK_FILES)
    for label, name in enumerate(CLASS_NAMES):
        folder = os.path.join(root, name)
        files = []
        if os.path.isdir(folder) and not inside(folder, root):
            outside.append(f"{name}/")
        elif os.path.isdir(folder):
            for file in sorted(os.listdir(folder)):
                path = os.path.join(folder, file)
                if not is_image_file(file) or not os.path.isfile(path):
                    continue
                if not inside(path, root):
                    outside.append(f"{name}/{file}")
                    continue
                files.append(f"{name}/{file}")
        files = files[:max_per_class] if max_per_class else files
        if not files:
            empty.append(name)
        entries += [(file, label) for file in files]
    if unknown:
        log(f"Ignored {len(unknown)} entries that are not class folders: {', '.join(unknown[:10])}")
    if outside:
        log(f"Ignored {len(outside)} links that point outside {root}: {', '.join(outside[:10])}")
    if not entries:
        raise DatasetError(f"no images found in {root} (expected SampleNNN folders of images)")
    if empty:
        log(f"Note: {len(empty)} of {NUM_CLASSES} classes have no images: "
            + ", ".join(f"{name} '{character(name)}'" for name in empty))
    return entries


def find_dataset(data_dir=None, url=DATA_URL):
    """The class root of the dataset: data_dir, else English/, else downloaded into English/."""
    if data_dir:
        root = class_root(data_dir)
        if root is None:
            raise DatasetError(f"no SampleNNN class folders found in {data_dir} "
                               f"(expected {os.path.join(data_dir, GOODIMG_SUBDIR, 'SampleNNN')})")
        return root
    return class_root(DATA_DIR) or download_dataset(url)


# ---------------------------------------------------------------- download

def download_dataset(url=DATA_URL, dest=".", cache_dir=SAVED_DIR):
    """Download the official EnglishImg.tgz (cached), extract it safely and return its class root."""
    import keras

    os.makedirs(os.path.join(cache_dir, "downloads"), exist_ok=True)  # else get_file falls back to /tmp
    try:
        archive = keras.utils.get_file(ARCHIVE_NAME, origin=url, cache_dir=os.path.abspath(cache_dir),
                                       cache_subdir="downloads")
    except Exception as e:  # get_file raises a plain Exception for every network failure
        raise DatasetError(
            f"could not download the Chars74K dataset from {url}: {e}. Instead, place the "
            f"dataset as {os.path.join(DATA_DIR, GOODIMG_SUBDIR, 'SampleNNN')}, pass "
            "--data-dir PATH, or train offline on rendered fonts with --data synthetic --weights none"
        ) from None
    try:
        return extract_dataset(archive, dest)
    except DatasetError:
        os.remove(archive)  # a bad archive must not be reused as if it were the real one
        raise


def extract_dataset(archive, dest="."):
    """Extract the archive's English/ folder into dest, refusing links and entries that escape."""
    os.makedirs(dest, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".English-partial-", dir=dest)
    try:
        try:
            with tarfile.open(archive) as tar:
                members = tar.getmembers()
                for member in members:
                    if not (member.isfile() or member.isdir()):
                        raise DatasetError(f"refusing {archive}: entry {member.name!r} is a link or special file")
                    if os.path.isabs(member.name) or not inside(os.path.join(staging, member.name), staging):
                        raise DatasetError(f"refusing {archive}: entry {member.name!r} would land outside {dest}")
                tar.extractall(staging, members, filter="data")
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise DatasetError(f"{archive} is not a complete tar.gz archive ({e})") from None
        root = class_root(os.path.join(staging, DATA_DIR))
        found = [name for name in CLASS_NAMES if root and glob.glob(os.path.join(root, name, "*.png"))]
        if len(found) != NUM_CLASSES:
            raise DatasetError(f"{archive} does not hold {DATA_DIR}/{GOODIMG_SUBDIR}/SampleNNN folders "
                               f"of PNG images for all {NUM_CLASSES} classes (found {len(found)})")
        target = os.path.join(dest, DATA_DIR)
        if os.path.exists(target):
            raise DatasetError(f"{target} already exists; move it away or pass --data-dir")
        os.replace(os.path.join(staging, DATA_DIR), target)
        return class_root(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- decoding with a cache

def fingerprint(root, entries, size, resize):
    """A hash of the file list, sizes, modification times and decoding settings."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}:{size}:{resize}".encode())
    for relpath, label in entries:
        stat = os.stat(os.path.join(root, relpath))
        digest.update(f"{relpath}:{label}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def decode_images(root, entries, size=IMAGE_SIZE, resize=DEFAULT_RESIZE, cache_dir=CACHE_DIR, log=print,
                  progress=True):
    """Decode entries to (images uint8 [N,size,size,3], labels int32 [N], kept relative paths).

    Unreadable files are reported by name and skipped. The result is cached in cache_dir under
    the fingerprint of the files and settings, so a second run reads one file instead of every PNG.
    A progress bar on stdout shows the decoding unless progress is False.
    """
    key = fingerprint(root, entries, size, resize)
    cache_path = os.path.join(cache_dir, f"images-{size}px-{resize}-{key[:16]}.npz") if cache_dir else None
    if cache_path and os.path.exists(cache_path):
        try:
            with np.load(cache_path) as cached:
                images, labels, paths, skipped = (cached[k] for k in ("images", "labels", "paths", "skipped"))
            report_skipped(list(skipped), log)
            return images, labels, list(paths)
        except (OSError, ValueError, KeyError, zlib.error):
            log(f"Cache {cache_path} is damaged; decoding again")

    from keras.utils import Progbar

    images = np.zeros((len(entries), size, size, 3), dtype=np.uint8)
    kept, skipped = [], []
    log(f"Decoding {len(entries)} images from {root} at {size}x{size} ({resize})")
    bar = Progbar(len(entries), unit_name="image", verbose=1 if progress else 0)
    for i, (relpath, label) in enumerate(entries):
        try:
            images[len(kept)] = load_image(os.path.join(root, relpath), size, resize)
            kept.append((relpath, label))
        except UnreadableImage as e:
            skipped.append(str(e))
        bar.update(i + 1)
    report_skipped(skipped, log)
    if not kept:
        raise DatasetError(f"none of the {len(entries)} images in {root} could be read")
    images = images[: len(kept)]
    labels = np.array([label for _, label in kept], dtype=np.int32)
    paths = [relpath for relpath, _ in kept]
    if cache_path:
        write_atomically(cache_path, lambda f: np.savez(f, images=images, labels=labels,
                                                        paths=np.array(paths), skipped=np.array(skipped, dtype=str)))
    return images, labels, paths


def report_skipped(skipped, log):
    if skipped:
        log(f"Skipped {len(skipped)} unreadable images:")
        for reason in skipped:
            log(f"  {reason}")


@contextlib.contextmanager
def silenced_stderr():
    """Hide what C++ libraries write to file descriptor 2 (errors raised inside still propagate)."""
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def write_atomically(path, write, mode="wb"):
    """Write a file through a temporary one in the same folder, renamed into place when complete."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; these are ordinary outputs
        os.replace(tmp, path)
    except BaseException:
        os.remove(tmp)
        raise


# ---------------------------------------------------------------- the JSON beside every model

def info_path(model_path):
    """model.h5 and model.tflite share model.json: classes, image size and resizing they expect."""
    return os.path.splitext(model_path)[0] + ".json"


def write_model_info(model_path, info):
    write_atomically(info_path(model_path), lambda f: json.dump(info, f, indent=1), mode="w")


def read_model_info(model_path):
    """The JSON that train.py wrote beside a model; raises ModelError if missing or malformed."""
    json_path = info_path(model_path)
    try:
        with open(json_path) as f:
            info = json.load(f)
        int(info["image_size"]), info["resize"], list(info["class_names"])
        return info
    except FileNotFoundError:
        raise ModelError(f"{json_path} is missing: it holds the classes and image size of {model_path}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{json_path} is not a model description written by train.py ({e})") from None


def check_model_shape(model_path, info, input_shape, num_outputs):
    """Raise ModelError unless the model takes the JSON's image size and predicts the 62 classes."""
    size = int(info["image_size"])
    if tuple(input_shape) != (size, size, 3):
        raise ModelError(f"{model_path} takes inputs of shape {tuple(input_shape)}, but its JSON says {size}x{size}x3")
    if num_outputs != len(info["class_names"]) or info["class_names"] != CLASS_NAMES:
        raise ModelError(f"{model_path} predicts {num_outputs} classes, not the {NUM_CLASSES} "
                         "Chars74K classes this project knows")


# ---------------------------------------------------------------- split

def stratified_split(labels, val_fraction=VAL_FRACTION, seed=SEED):
    """Deterministic per-class split: (train indices, val indices), every class in both if it can be."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(len(members) * val_fraction))
        if len(members) >= 2:
            n_val = min(max(n_val, 1), len(members) - 1)
        val += members[:n_val].tolist()
        train += members[n_val:].tolist()
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(val), dtype=np.int64)


def save_split(paths, train_idx, val_idx, root, val_fraction, seed, path=SPLIT_PATH):
    split = {"data_dir": os.path.abspath(root), "seed": seed, "val_fraction": val_fraction,
             "train": [paths[i] for i in train_idx], "val": [paths[i] for i in val_idx]}
    write_atomically(path, lambda f: json.dump(split, f, indent=1), mode="w")
    return split


def load_split(path=SPLIT_PATH):
    if not os.path.exists(path):
        raise DatasetError(f"no split at {path}: train a model first (python train.py)")
    with open(path) as f:
        return json.load(f)


def split_entries(relpaths):
    """(relative path, label) entries from relative paths such as 'Sample008/img008-00019.png'."""
    entries = []
    for relpath in relpaths:
        name = relpath.split("/")[0]
        if name not in CLASS_NAMES:
            raise DatasetError(f"{relpath} is not in a SampleNNN class folder")
        entries.append((relpath, CLASS_NAMES.index(name)))
    return entries


# ---------------------------------------------------------------- tf.data

def augmenter(rotation=0.05, contrast=0.2, flip=True, seed=SEED):
    """A batch function (images, labels) -> (images, labels): rotation, contrast, label-safe flip."""
    import keras
    import tensorflow as tf

    rotate = keras.layers.RandomRotation(rotation, fill_mode="nearest", seed=seed)
    change_contrast = keras.layers.RandomContrast(contrast, seed=seed)
    targets = tf.constant(flip_targets())

    def augment(images, labels):
        if flip:
            images, labels = label_safe_flip(images, labels, targets, tf)
        images = rotate(images, training=True)
        images = change_contrast(images, training=True)
        return images, labels

    return augment


def label_safe_flip(images, labels, targets, tf):
    """Mirror half of the flippable images and give each its mirror class (b<->d, p<->q)."""
    target = tf.gather(targets, labels)
    flip = (tf.random.uniform(tf.shape(labels)) < 0.5) & (target >= 0)
    images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    return images, tf.where(flip, target, labels)


def make_dataset(images, labels, batch_size, training=False, augment=None, seed=SEED):
    """A tf.data pipeline of float32 0-255 images: shuffled and augmented when training."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
    if augment is not None:
        ds = ds.map(augment, num_parallel_calls=os.cpu_count())
    options = tf.data.Options()
    options.autotune.enabled = False  # autotuning stalls model.fit for seconds at every epoch end
    return ds.prefetch(2).with_options(options)


# ---------------------------------------------------------------- synthetic renders

def font_files():
    """TrueType/OpenType fonts from matplotlib and the system that draw all 62 characters."""
    import matplotlib
    from fontTools.ttLib import TTFont

    candidates = glob.glob(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "*.ttf"))
    for pattern in ("/usr/share/fonts/**/*.ttf", "/usr/share/fonts/**/*.otf"):
        candidates += glob.glob(pattern, recursive=True)
    fonts = {}
    for path in sorted(candidates):
        name = os.path.basename(path)
        if name in fonts or name.startswith(NON_TEXT_FONTS):
            continue
        try:
            cmap = TTFont(path, lazy=True, fontNumber=0).getBestCmap() or {}
        except Exception:  # fontTools raises many kinds of errors on odd font files
            continue
        if all(ord(c) in cmap for c in CHARACTERS):
            fonts[name] = path
    return sorted(fonts.values())


def random_colours(rng):
    """Text and background colours at least a little apart in brightness."""
    while True:
        text, background = (tuple(rng.randrange(256) for _ in range(3)) for _ in range(2))
        if abs(sum(text) - sum(background)) > 3 * 60:
            return text, background


def render_character(char, font_path, rng):
    """One character crop: random font size, colours, rotation, margin, blur and noise."""
    font = ImageFont.truetype(font_path, rng.randint(24, 72))
    text, background = random_colours(rng)
    canvas = Image.new("RGB", (200, 200), background)
    ImageDraw.Draw(canvas).text((100, 100), char, font=font, fill=text, anchor="mm")
    canvas = canvas.rotate(rng.uniform(-12, 12), resample=Image.BILINEAR, fillcolor=background)
    ink = np.abs(np.asarray(canvas, dtype=np.int16) - np.array(background)).sum(axis=2) > 40
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    margin = [int(rng.uniform(0, 0.25) * max(height, width)) for _ in range(4)]
    crop = canvas.crop((cols[0] - margin[0], rows[0] - margin[1], cols[-1] + 1 + margin[2], rows[-1] + 1 + margin[3]))
    crop = crop.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))
    pixels = np.asarray(crop, dtype=np.float32)
    pixels += np.random.default_rng(rng.randrange(2**32)).normal(0, rng.uniform(0, 12), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def render_synthetic(out_dir=SYNTHETIC_DIR, per_class=100, seed=SEED, log=print):
    """Render per_class crops of each character into out_dir in the official layout; reuse them if done."""
    fonts = font_files()
    if not fonts:
        raise DatasetError("no fonts with all 62 characters found (matplotlib ships some: is it installed?)")
    recipe = {"per_class": per_class, "seed": seed, "fonts": [os.path.basename(f) for f in fonts]}
    root = os.path.join(out_dir, DATA_DIR, GOODIMG_SUBDIR)
    recipe_path = os.path.join(out_dir, "recipe.json")
    if os.path.exists(recipe_path):
        with open(recipe_path) as f:
            if json.load(f) == recipe:
                return root
    shutil.rmtree(out_dir, ignore_errors=True)
    log(f"Rendering {per_class} images of each of {NUM_CLASSES} characters with {len(fonts)} fonts into {out_dir}")
    rng = random.Random(seed)
    for label, name in enumerate(CLASS_NAMES):
        os.makedirs(os.path.join(root, name))
        for i in range(per_class):
            image = render_character(CHARACTERS[label], rng.choice(fonts), rng)
            image.save(os.path.join(root, name, f"img{label + 1:03d}-{i + 1:05d}.png"))
    with open(recipe_path, "w") as f:
        json.dump(recipe, f, indent=1)
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=("goodimg", "synthetic"), default="goodimg")
    parser.add_argument("--data-dir", help="an English/ folder, or a folder of SampleNNN folders")
    args = parser.parse_args()
    try:
        root = render_synthetic() if args.data == "synthetic" else find_dataset(args.data_dir)
        entries = list_images(root)
    except DatasetError as e:
        sys.exit(f"error: {e}")
    counts = np.bincount([label for _, label in entries], minlength=NUM_CLASSES)
    print(f"{len(entries)} images in {root}, {np.count_nonzero(counts)} classes, "
          f"{counts.min()}-{counts.max()} images a class")


if __name__ == "__main__":
    main()
