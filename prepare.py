"""Get the data: find Chars74K GoodImg, download and extract the official archive, or render fonts instead.

    python prepare.py                          # find English/ (or download it) and print a summary
    python prepare.py --data-dir ../shared/chars74k/English
    python prepare.py --data synthetic         # render the 62 characters from fonts (offline)

train.py calls the same functions, so running this first is optional: it only does the download
(about 130 MB) or the rendering ahead of time. The archive is cached in saved/downloads/.
"""

import argparse
import concurrent.futures
import glob
import json
import multiprocessing
import os
import random
import shutil
import sys
import tarfile
import tempfile
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from tqdm import tqdm

import checkpoint
import data

DATA_URL = os.environ.get("CHARS74K_URL", "https://info-ee.surrey.ac.uk/CVSSP/demos/chars74k/EnglishImg.tgz")
ARCHIVE_NAME = "EnglishImg.tgz"
SYNTHETIC_PER_CLASS = 100
NON_TEXT_FONTS = ("LastResort", "cmex10", "cmsy10")  # map letters to placeholder boxes or symbols


def add_data_arguments(parser):
    """The flags that choose the data, the same for prepare.py and train.py."""
    parser.add_argument("--data", choices=("goodimg", "synthetic"), default="goodimg",
                        help="Chars74K GoodImg (found or downloaded), or characters rendered from fonts")
    parser.add_argument("--data-dir", help="an English/ folder, or a folder of SampleNNN folders (default: English/)")
    parser.add_argument("--data-url", default=DATA_URL, help="where to download EnglishImg.tgz from")
    parser.add_argument("--synthetic-per-class", type=checkpoint.positive_int, default=SYNTHETIC_PER_CLASS,
                        help="rendered images per character with --data synthetic")
    parser.add_argument("--fonts", help="with --data synthetic, a folder of more .ttf/.otf fonts to render with "
                                        "(besides matplotlib's and the system's)")


def load(args, seed=data.SEED):
    """The class root of the data that the flags of add_data_arguments choose (seed: of the renders)."""
    if args.data == "synthetic":
        return render_synthetic(per_class=args.synthetic_per_class, seed=seed, font_dir=args.fonts)
    return find_dataset(args.data_dir, args.data_url)


def find_dataset(data_dir=None, url=DATA_URL):
    """The class root of the dataset: data_dir, else English/, else downloaded into English/."""
    if data_dir:
        root = data.class_root(data_dir)
        if root is None:
            raise data.DatasetError(f"no SampleNNN class folders found in {data_dir} "
                                    f"(expected {os.path.join(data_dir, data.GOODIMG_SUBDIR, 'SampleNNN')})")
        return root
    return data.class_root(checkpoint.DATA_DIR) or download_dataset(url)


# ---------------------------------------------------------------- download

def download_dataset(url=DATA_URL, dest=checkpoint.HOME, download_dir=checkpoint.DOWNLOAD_DIR):
    """Download the official EnglishImg.tgz (cached), extract it safely into dest and return its class root."""
    keras = checkpoint.import_keras()
    os.makedirs(download_dir, exist_ok=True)  # else get_file falls back to /tmp
    try:
        archive = keras.utils.get_file(ARCHIVE_NAME, origin=url, cache_subdir=os.path.abspath(download_dir))
    except Exception as e:  # get_file raises a plain Exception for every network failure
        raise data.DatasetError(
            f"could not download the Chars74K dataset from {url}: {e}. Instead, place the "
            f"dataset as {os.path.join(checkpoint.DATA_DIR, data.GOODIMG_SUBDIR, 'SampleNNN')}, pass "
            "--data-dir PATH, or train offline on rendered fonts with --data synthetic --weights none"
        ) from None
    try:
        return extract_dataset(archive, dest)
    except data.DatasetError:
        os.remove(archive)  # a bad archive must not be reused as if it were the real one
        raise


def extract_dataset(archive, dest):
    """Extract the archive's English/ folder into dest, refusing links and entries that escape."""
    os.makedirs(dest, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".English-partial-", dir=dest)
    try:
        try:
            with tarfile.open(archive) as tar:
                members = tar.getmembers()
                for member in members:
                    if not (member.isfile() or member.isdir()):
                        raise data.DatasetError(f"refusing {archive}: entry {member.name!r} is a link or special file")
                    if os.path.isabs(member.name) or not data.inside(os.path.join(staging, member.name), staging):
                        raise data.DatasetError(f"refusing {archive}: entry {member.name!r} would land outside {dest}")
                tar.extractall(staging, members, filter="data")
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise data.DatasetError(f"{archive} is not a complete tar.gz archive ({e})") from None
        root = data.class_root(os.path.join(staging, "English"))
        found = [name for name in data.CLASS_NAMES if root and glob.glob(os.path.join(root, name, "*.png"))]
        if len(found) != data.NUM_CLASSES:
            raise data.DatasetError(f"{archive} does not hold English/{data.GOODIMG_SUBDIR}/SampleNNN folders "
                                    f"of PNG images for all {data.NUM_CLASSES} classes (found {len(found)})")
        target = os.path.join(dest, "English")
        if os.path.exists(target):
            raise data.DatasetError(f"{target} already exists; move it away or pass --data-dir")
        os.replace(os.path.join(staging, "English"), target)
        return data.class_root(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- synthetic renders

def font_files(font_dir=None):
    """TrueType/OpenType fonts from matplotlib, the system and font_dir that draw all 62 characters."""
    import matplotlib
    from fontTools.ttLib import TTFont

    if font_dir and not os.path.isdir(font_dir):
        raise data.DatasetError(f"--fonts {font_dir}: no such folder")
    candidates = glob.glob(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "*.ttf"))
    for folder in ["/usr/share/fonts"] + ([font_dir] if font_dir else []):
        for extension in ("ttf", "otf"):
            candidates += glob.glob(os.path.join(folder, "**", f"*.{extension}"), recursive=True)
    fonts = {}
    for path in sorted(candidates):
        name = os.path.basename(path)
        if name in fonts or name.startswith(NON_TEXT_FONTS):
            continue
        try:
            cmap = TTFont(path, lazy=True, fontNumber=0).getBestCmap() or {}
        except Exception:  # fontTools raises many kinds of errors on odd font files
            continue
        if all(ord(c) in cmap for c in data.CHARACTERS):
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


def render_synthetic(out_dir=checkpoint.SYNTHETIC_DIR, per_class=SYNTHETIC_PER_CLASS, seed=data.SEED, font_dir=None,
                     log=print):
    """Render per_class crops of each character into out_dir in the official layout, the classes in parallel;
    reuse them if done."""
    fonts = font_files(font_dir)
    if not fonts:
        raise data.DatasetError("no fonts with all 62 characters found (matplotlib ships some: is it installed?)")
    recipe = {"per_class": per_class, "seed": seed, "seeding": "per class",
              "fonts": [os.path.basename(f) for f in fonts]}
    root = os.path.join(out_dir, "English", data.GOODIMG_SUBDIR)
    recipe_path = os.path.join(out_dir, "recipe.json")
    if os.path.exists(recipe_path):
        with open(recipe_path) as f:
            if json.load(f) == recipe:
                return root
    shutil.rmtree(out_dir, ignore_errors=True)
    log(f"Rendering {per_class} images of each of {data.NUM_CLASSES} characters with {len(fonts)} fonts into {out_dir}")
    jobs = [(root, label, per_class, fonts, seed * data.NUM_CLASSES + label) for label in range(data.NUM_CLASSES)]
    spawn = multiprocessing.get_context("spawn")  # train.py renders after Keras started its threads: no fork
    with concurrent.futures.ProcessPoolExecutor(min(os.cpu_count() or 1, 16), mp_context=spawn) as pool:
        list(tqdm(pool.map(render_class, jobs), total=len(jobs), unit="class", desc="Rendering", file=sys.stderr,
                  disable=None))
    checkpoint.write_json(recipe_path, recipe)
    return root


def render_class(job):
    """Render one character's images (a job of render_synthetic: its own seed, so that classes can run in parallel)."""
    root, label, per_class, fonts, seed = job
    rng = random.Random(seed)
    name = data.CLASS_NAMES[label]
    os.makedirs(os.path.join(root, name))
    for i in range(per_class):
        image = render_character(data.CHARACTERS[label], rng.choice(fonts), rng)
        image.save(os.path.join(root, name, f"img{label + 1:03d}-{i + 1:05d}.png"))


def summarize(args):
    """Find, download or render the dataset and print how many images each class has."""
    root = load(args)
    entries = data.list_images(root)
    counts = np.bincount([label for _, label in entries], minlength=data.NUM_CLASSES)
    print(f"{len(entries)} images in {root}, {np.count_nonzero(counts)} classes, "
          f"{counts.min()}-{counts.max()} images a class")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    return checkpoint.run_script(lambda: summarize(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
