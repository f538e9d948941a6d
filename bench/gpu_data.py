"""Carry GoodImg to a GPU machine that has no copy of it: pack here, unpack there (see bench/gpu.sh).

    python bench/gpu_data.py pack --data-dir ../shared/chars74k/English gpu/goodimg64.npz
    python bench/gpu_data.py unpack gpu/goodimg64.npz /tmp/English /tmp/peer.npz
    python bench/gpu_data.py fonts gpu/fonts

fonts: every font here that draws all 62 characters (prepare.font_files), cut down to those
characters (fontTools' subsetter: 66 MB of fonts become a few), for train.py --fonts there.

pack: the images decoded and padded to 64x64 (the model's input), their paths and the split of the
shipped model, compressed (53 MB instead of 130 MB of PNGs at their original sizes).
unpack: the 64x64 images as PNGs in the official layout, which train.py reads exactly as the
originals (padding a 64x64 image to 64x64 leaves it as it is), and the same split as
peer_pytorch.py's x_train, y_train, x_val, y_val.
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import checkpoint  # noqa: E402
import data  # noqa: E402
import prepare  # noqa: E402

SHIPPED_SPLIT = os.path.join(checkpoint.SHIPPED_MODEL_DIR, "chars74k_resnet50_fp16.split.json")


def pack(data_dir, output, split_path=SHIPPED_SPLIT):
    root = prepare.find_dataset(data_dir)
    images, labels, paths = data.decode_images(root, data.list_images(root), data.IMAGE_SIZE, data.DEFAULT_RESIZE)
    index = {path: i for i, path in enumerate(paths)}
    split = data.load_split(split_path)
    train, val = ([index[path] for path in split[part]] for part in ("train", "val"))
    np.savez_compressed(output, images=images, labels=labels, paths=np.array(paths), train=train, val=val)
    print(f"{output}: {len(images)} images, {len(train)} training and {len(val)} validation "
          f"({os.path.getsize(output) / 1e6:.1f} MB)")


def unpack(packed, english, peer_npz=None):
    with np.load(packed) as f:
        images, labels, paths, train, val = (f[k] for k in ("images", "labels", "paths", "train", "val"))
    root = os.path.join(english, data.GOODIMG_SUBDIR)
    for image, path in zip(images, paths):
        os.makedirs(os.path.join(root, os.path.dirname(str(path))), exist_ok=True)
        Image.fromarray(image).save(os.path.join(root, str(path)))
    if peer_npz:
        np.savez(peer_npz, x_train=images[train], y_train=labels[train], x_val=images[val], y_val=labels[val])
    print(f"{english}: {len(images)} images" + (f"; {peer_npz}: the split for peer_pytorch.py" if peer_npz else ""))


def subset_fonts(output):
    import logging

    from fontTools import subset

    logging.getLogger("fontTools").setLevel(logging.ERROR)  # a line for each table it drops
    os.makedirs(output, exist_ok=True)
    options = subset.Options()
    options.layout_features, options.name_IDs, options.notdef_outline = [], ["*"], True
    fonts = prepare.font_files()
    for path in fonts:
        font = subset.load_font(path, options)
        subsetter = subset.Subsetter(options)
        subsetter.populate(text=data.CHARACTERS)
        subsetter.subset(font)
        subset.save_font(font, os.path.join(output, os.path.basename(path)), options)
    size = sum(os.path.getsize(os.path.join(output, name)) for name in os.listdir(output))
    print(f"{output}: {len(fonts)} fonts cut down to the {len(data.CHARACTERS)} characters ({size / 1e6:.1f} MB)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack")
    packing.add_argument("--data-dir", required=True)
    packing.add_argument("--split", default=SHIPPED_SPLIT)
    packing.add_argument("output")
    unpacking = commands.add_parser("unpack")
    unpacking.add_argument("packed")
    unpacking.add_argument("english")
    unpacking.add_argument("peer_npz", nargs="?")
    commands.add_parser("fonts").add_argument("output")
    args = parser.parse_args()
    if args.command == "fonts":
        return checkpoint.run_script(lambda: subset_fonts(args.output))
    if args.command == "pack":
        return checkpoint.run_script(lambda: pack(args.data_dir, args.output, args.split))
    return checkpoint.run_script(lambda: unpack(args.packed, args.english, args.peer_npz))


if __name__ == "__main__":
    sys.exit(main())
