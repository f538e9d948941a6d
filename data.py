"""Chars74K images on disk to arrays to batches: classes, reading and fitting, listing, the cache, the split.

The English "GoodImg" set unpacks to English/Img/GoodImg/Bmp/SampleNNN/imgNNN-NNNNN.png;
Sample001-010 are '0'-'9', Sample011-036 'A'-'Z', Sample037-062 'a'-'z'. Getting it (finding,
downloading, rendering fonts instead) is prepare.py's job.

TensorFlow is imported only by make_dataset (the input of the TensorFlow backend), so that reading
images (as test.py does for one prediction) stays light. The augmentation is augment.py's, inside the
model's training step.
"""

import hashlib
import io
import json
import os
import stat
import string
import warnings
import zlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

import checkpoint

CHARACTERS = string.digits + string.ascii_uppercase + string.ascii_lowercase
CLASS_NAMES = [f"Sample{i:03d}" for i in range(1, len(CHARACTERS) + 1)]
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 64
DEFAULT_RESIZE = "pad"  # measured against "stretch" on GoodImg: see RESULTS.md
VAL_FRACTION = 0.2
SEED = 1337

GOODIMG_SUBDIR = os.path.join("Img", "GoodImg", "Bmp")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
JUNK_FILES = {"Thumbs.db", "desktop.ini"}
MAX_IMAGE_PIXELS = 64_000_000  # larger images are refused as decompression bombs (a 12 MP photo is fine)
CACHE_FORMAT = 1  # bump when decoding changes, so old caches are rebuilt

# Horizontal flips that keep a label true: symmetric glyphs stay, mirror pairs swap.
MIRROR_SYMMETRIC = "08AHIMOTUVWXYilovwx"
MIRROR_PAIRS = {"b": "d", "d": "b", "p": "q", "q": "p"}


class DatasetError(checkpoint.UserError):
    """A problem with the dataset that the user can fix."""


class UnreadableImage(Exception):
    """An image file that cannot be decoded."""


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


def model_inputs(image_size=IMAGE_SIZE, resize=DEFAULT_RESIZE):
    """What a model needs in its JSON to read images as it was trained on them (checkpoint.py)."""
    return {"class_names": CLASS_NAMES, "characters": CHARACTERS, "image_size": image_size, "resize": resize}


def same_character_ignoring_case(labels, predicted):
    """For each image, whether the predicted class is the label's character in either case (-1: no answer)."""
    fold = case_fold_indices()
    return (predicted >= 0) & (fold[predicted] == fold[labels])


# ---------------------------------------------------------------- images

def to_rgb(img):
    """Any Pillow mode (L, LA, P, RGBA, CMYK, 16- and 32-bit integers, float) as 8-bit RGB."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = Image.fromarray(grey_levels_to_8_bit(np.asarray(img, dtype=np.float64), img.mode == "F"), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def grey_levels_to_8_bit(pixels, is_float):
    """Grey levels as 0-255. Floats: 0-1 scaled up, 0-255 kept, larger ranges scaled down to fit.
    Integers: by the bit depth that holds their largest value, so 10- or 12-bit data in a 16-bit
    file keeps its contrast. Negative values are shifted up; NaN and infinity become black."""
    finite = np.isfinite(pixels)
    pixels = np.where(finite, pixels, 0.0)
    low, high = (pixels[finite].min(), pixels[finite].max()) if finite.any() else (0.0, 0.0)
    if low < 0:
        pixels, high = pixels - low, high - low
    if is_float:
        scale = 255.0 if high <= 1.0 else min(1.0, 255.0 / high)
    else:
        scale = 255.0 / (2 ** max(8, int(np.ceil(np.log2(high + 1)))) - 1)
    return np.clip(pixels * scale, 0, 255).round().astype(np.uint8)


def read_image(path):
    """Open any image file as upright RGB (EXIF rotation applied, first frame of animations).

    Only regular files are opened: a FIFO, socket or device would block or never end."""
    shown = checkpoint.printable(path)
    try:
        kind = os.stat(path).st_mode
    except FileNotFoundError:
        raise UnreadableImage(f"{shown}: no such file") from None
    if stat.S_ISDIR(kind):
        raise UnreadableImage(f"{shown}: is a folder, not an image")
    if not stat.S_ISREG(kind):
        raise UnreadableImage(f"{shown}: not a regular file (a pipe, socket or device), not read")
    return decode_image(path, shown, empty=os.path.getsize(path) == 0)


def read_image_bytes(content, name):
    """An image's bytes (an upload) as upright RGB, read as read_image reads a file."""
    return decode_image(io.BytesIO(content), checkpoint.printable(name), empty=not content)


def decode_image(source, shown, empty):
    """A path or file object opened as upright RGB; raises UnreadableImage naming it as shown."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on odd EXIF or tags: the pixels are still read
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise Image.DecompressionBombError(f"{img.width}x{img.height} is over {MAX_IMAGE_PIXELS:,}")
                img.seek(0)
                img.load()
                img = ImageOps.exif_transpose(img)
                return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UnreadableImage(f"{shown}: too many pixels ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError, zlib.error) as e:
        reason = ("empty file" if empty else "not a format Pillow reads" if isinstance(e, UnidentifiedImageError)
                  else str(e) or type(e).__name__)
        raise UnreadableImage(f"{shown}: not a readable image ({reason})") from None


def fit_image(img, size=IMAGE_SIZE, resize=DEFAULT_RESIZE):
    """Resize an RGB image to size x size: "stretch" it, or "pad" it keeping its aspect ratio."""
    if resize == "stretch":
        return np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.uint8)
    if resize != "pad":
        raise ValueError(f"resize must be one of {checkpoint.RESIZE_MODES}, not {resize!r}")
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


# ---------------------------------------------------------------- listing

def class_root(data_dir):
    """The folder holding the SampleNNN folders, given an English/ folder, its parent or that folder itself."""
    for candidate in (data_dir, os.path.join(data_dir, GOODIMG_SUBDIR),
                      os.path.join(data_dir, "English", GOODIMG_SUBDIR)):
        if os.path.isdir(candidate) and any(name in CLASS_NAMES for name in os.listdir(candidate)):
            return candidate
    return None


def is_image_file(name):
    return not name.startswith(".") and name not in JUNK_FILES and name.lower().endswith(IMAGE_EXTENSIONS)


def inside(path, folder):
    return os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep)


def dataset_name(root):
    """A dataset's name for a figure's title: its path in the repository (English/..., saved/synthetic/...),
    else its path from its English/ folder on, else its last folders."""
    root = os.path.normpath(os.path.abspath(root))
    if root.startswith(checkpoint.HOME + os.sep):
        return os.path.relpath(root, checkpoint.HOME)
    parts = root.split(os.sep)
    return "/".join(parts[parts.index("English"):] if "English" in parts else parts[-3:])


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


# ---------------------------------------------------------------- decoding with a cache

def fingerprint(root, entries, size, resize):
    """A hash of the file list, sizes, modification times and decoding settings."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}:{size}:{resize}".encode())
    for relpath, label in entries:
        stat = os.stat(os.path.join(root, relpath))
        digest.update(f"{relpath}:{label}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def decode_images(root, entries, size=IMAGE_SIZE, resize=DEFAULT_RESIZE, cache_dir=checkpoint.CACHE_DIR, log=print,
                  progress=True):
    """Decode entries to (images uint8 [N,size,size,3], labels int32 [N], kept relative paths).

    Unreadable files are reported by name and skipped. The result is cached in cache_dir under
    the fingerprint of the files and settings, so a second run reads one file instead of every PNG.
    A progress bar on stderr (when it is a terminal) shows the decoding unless progress is False.
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

    images = np.zeros((len(entries), size, size, 3), dtype=np.uint8)
    kept, skipped = [], []
    log(f"Decoding {len(entries)} images from {root} at {size}x{size} ({resize})")
    for relpath, label in tqdm(entries, unit="image", disable=None if progress else True):
        try:
            images[len(kept)] = load_image(os.path.join(root, relpath), size, resize)
            kept.append((relpath, label))
        except UnreadableImage as e:
            skipped.append(str(e))
    report_skipped(skipped, log)
    if not kept:
        raise DatasetError(f"none of the {len(entries)} images in {root} could be read")
    images = images[: len(kept)]
    labels = np.array([label for _, label in kept], dtype=np.int32)
    paths = [relpath for relpath, _ in kept]
    if cache_path:
        with checkpoint.atomic_path(cache_path) as tmp:
            np.savez(tmp, images=images, labels=labels, paths=np.array(paths), skipped=np.array(skipped, dtype=str))
    return images, labels, paths


def report_skipped(skipped, log):
    if skipped:
        log(f"Skipped {len(skipped)} unreadable images:")
        for reason in skipped:
            log(f"  {reason}")


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


def save_split(paths, train_idx, val_idx, root, val_fraction, seed, path=checkpoint.SPLIT_PATH):
    split = {"data_dir": checkpoint.portable(root), "seed": seed, "val_fraction": val_fraction,
             "train": [paths[i] for i in train_idx], "val": [paths[i] for i in val_idx]}
    checkpoint.write_json(path, split)
    return split


def load_split(path=checkpoint.SPLIT_PATH):
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


def split_set(split_path, data_dir=None, part="val"):
    """(class root, entries) of a split's validation images (part "val") or training images ("train"): in
    data_dir if given, else where the split was made, else in English/."""
    split = load_split(split_path)
    candidates = [data_dir] if data_dir else [checkpoint.resolve(split["data_dir"]), checkpoint.DATA_DIR]
    root = next(filter(None, map(class_root, candidates)), None)
    if root is None:
        raise DatasetError(f"the images of {split_path} are not in {' or '.join(candidates)}: pass --data-dir")
    entries = split_entries(split[part])
    missing = [relpath for relpath, _ in entries if not os.path.isfile(os.path.join(root, relpath))]
    if missing:
        kind = {"val": "validation", "train": "training"}[part]
        raise DatasetError(f"{len(missing)} of the {len(entries)} {kind} images of {split_path} are not in "
                           f"{root} (first: {checkpoint.printable(missing[0])}): pass the --data-dir it was made "
                           "from, or score every image of a folder with --eval DIR")
    return root, entries


# ---------------------------------------------------------------- batches

def fit_arguments(train, batch_size, validation=None, seed=SEED):
    """model.fit's data arguments for ((uint8 images, labels), labels) batches, as augment.Augmented
    takes them, from (images, labels) arrays: shuffled training batches, and validation batches if given.
    A third training array, of target distributions (distillation), makes the inputs (images, labels, targets).

    TensorFlow: tf.data pipelines. Other backends: the arrays themselves, which Keras then holds in
    the backend's memory (an accelerator's, where there is one) and gathers each batch from there.
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        images, labels, *targets = train
        training = make_dataset(images, labels, batch_size, training=True, seed=seed,
                                targets=targets[0] if targets else None)
        arguments = {"x": training, "shuffle": False}  # it shuffles
        return {**arguments, "validation_data": make_dataset(*validation, batch_size)} if validation else arguments

    def held_by_backend(images, labels, *targets):
        images, labels, *targets = (keras.ops.convert_to_tensor(array) for array in (images, labels, *targets))
        return (images, labels, *targets), labels

    x, y = held_by_backend(*train)
    arguments = {"x": x, "y": y, "batch_size": batch_size, "shuffle": True}
    if validation:
        arguments.update(validation_data=held_by_backend(*validation), validation_batch_size=batch_size)
    return arguments


def make_dataset(images, labels, batch_size, training=False, seed=SEED, targets=None):
    """A tf.data pipeline of ((uint8 images, labels), labels) batches, or ((images, labels, targets), labels)
    with targets, shuffled when training, for augment.Augmented on the TensorFlow backend."""
    import tensorflow as tf

    labels = labels.astype(np.int32)
    inputs = (images, labels) if targets is None else (images, labels, targets)
    ds = tf.data.Dataset.from_tensor_slices((inputs, labels))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.autotune.enabled = False  # autotuning stalls model.fit for seconds at every epoch end
    return ds.batch(batch_size).prefetch(2).with_options(options)
