"""A check beside GoodImg's validation accuracy: the same validation images made worse, as photographs
of characters from other sources are (blurred, noisy, small, JPEG-compressed, dim, all at once, in
the shadow).

    python bench/degraded.py --data-dir ../shared/chars74k/English        # the model test.py would use
    python bench/degraded.py --model saved/model/x.h5 --data-dir ... --json --probabilities x.npz
    python bench/degraded.py --ensemble a.npz b.npz c.npz                  # average the probabilities saved
    python bench/degraded.py --tta --data-dir ...                          # with test.py's test-time augmentation
    python bench/degraded.py --stretch-contrast --data-dir ...             # each image's contrast stretched first

Each degradation is applied to the 64x64 input the model sees, with a fixed seed, so every model meets
the same degraded images. --probabilities keeps the model's answers on every set, and --ensemble
scores the average of several such files (an ensemble, reported apart from single networks).
--stretch-contrast stretches every image as train.py --stretch-contrast models do inside (model.ContrastStretch),
to see what a model trained without that layer would gain from it at test time.
"""

import argparse
import io
import json
import os
import sys

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import checkpoint  # noqa: E402
import data  # noqa: E402
import test  # noqa: E402

SEED = 0


def blur(image, rng, radius=1.5):
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))


def noise(image, rng, sigma=20.0):
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def low_resolution(image, rng, side=16):
    small = Image.fromarray(image).resize((side, side), Image.BILINEAR)
    return np.asarray(small.resize(image.shape[1::-1], Image.BILINEAR))


def jpeg(image, rng, quality=10):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def dim(image, rng, gain=0.25):
    """Low light: a quarter of the light, and the sensor noise that comes with it."""
    return noise((image * gain).astype(np.uint8), rng, sigma=4.0)


def shadow(image, rng, darkest=0.15):
    """Light falling off across the crop in a random direction (a shadow, a lamp to one side), to a share
    `darkest` of it at the far edge, with low-light noise: uneven, where dim is uniform."""
    height, width = image.shape[:2]
    angle = rng.uniform(0, 2 * np.pi)
    rows, columns = np.mgrid[0:height, 0:width]
    along = columns * np.cos(angle) + rows * np.sin(angle)
    along = (along - along.min()) / (along.max() - along.min())
    light = 1 - (1 - darkest) * along
    return noise((image * light[..., None]).astype(np.uint8), rng, sigma=4.0)


def everything(image, rng):
    """Milder versions of each, one after the other."""
    image = low_resolution(blur(image, rng, 0.8), rng, side=24)
    image = (128 + (image.astype(np.float32) - 128) * 0.6).astype(np.uint8)  # faded contrast
    return jpeg(noise(image, rng, sigma=10.0), rng, quality=30)


DEGRADATIONS = {"clean": lambda image, rng: image, "blur": blur, "noise": noise, "low resolution": low_resolution,
                "jpeg": jpeg, "dim": dim, "all": everything, "shadow": shadow}
# The sets that "mean of degraded" averages: shadow came later (2026-11-29) and is reported beside the mean, not in
# it, so that the mean stays comparable with the files of models scored before it.
IN_THE_MEAN = ("blur", "noise", "low resolution", "jpeg", "dim", "all")


def degraded_sets(images, seed=SEED):
    """{name: images} for each of DEGRADATIONS, the same for every call."""
    sets = {}
    for name, degrade in DEGRADATIONS.items():
        rng = np.random.default_rng(seed)
        sets[name] = np.stack([degrade(image, rng) for image in images])
    return sets


def stretched(images):
    """The images as a model.ContrastStretch layer sees them, rounded back to uint8."""
    import keras

    import model

    pixels = keras.ops.convert_to_numpy(model.ContrastStretch()(images.astype(np.float32)))
    return np.round(pixels).astype(np.uint8)


def scores(labels, probabilities):
    """{set: (accuracy, case-insensitive accuracy)} of {set: probabilities}, and their mean over IN_THE_MEAN after
    those sets (the sets outside it after the mean)."""
    result = {}
    for name, p in probabilities.items():
        report = test.metrics(labels, p)
        result[name] = {key: report[key] for key in ("accuracy", "accuracy_case_insensitive")}
    mean = {key: float(np.mean([result[name][key] for name in IN_THE_MEAN]))
            for key in ("accuracy", "accuracy_case_insensitive")}
    beside_the_mean = {name: result.pop(name) for name in list(result) if name not in ("clean", *IN_THE_MEAN)}
    return {**result, "mean of degraded": mean, **beside_the_mean}


def evaluate(args):
    model, info, model_path, _ = checkpoint.open_chosen_model(args.model, args.keras)
    root, entries = test.eval_entries(argparse.Namespace(eval="split", data_dir=args.data_dir), model_path, info)
    images, labels, _ = data.decode_images(root, entries, info["image_size"], info["resize"],
                                           log=lambda m: print(m, file=sys.stderr))
    sets = degraded_sets(images)
    if args.stretch_contrast:
        sets = {name: stretched(images) for name, images in sets.items()}
    probabilities = {name: test.predict(model, images, args.tta) for name, images in sets.items()}
    if args.probabilities:
        np.savez_compressed(args.probabilities, labels=labels, paths=np.array([path for path, _ in entries]),
                            **{name: p.astype(np.float16) for name, p in probabilities.items()})  # plenty to average
    shown = (checkpoint.shown_path(model_path) + (" with test-time augmentation" if args.tta else "")
             + (", each image's contrast stretched first" if args.stretch_contrast else ""))
    return report(shown, len(labels), scores(labels, probabilities), args.json)


def saved_answers(paths):
    """The files that --probabilities saved, refused unless they answer the same images in the same order."""
    files = [np.load(path) for path in paths]
    if any(not np.array_equal(f["paths"], files[0]["paths"]) for f in files):
        raise checkpoint.UserError("the files hold answers on different images: give files of one split")
    return files


def ensemble(args):
    files = saved_answers(args.ensemble)
    labels = files[0]["labels"]
    probabilities = {name: np.mean([f[name].astype(np.float32) for f in files], axis=0) for name in DEGRADATIONS
                     if all(name in f for f in files)}  # files saved before a set existed lack it
    return report(f"ensemble of {len(files)}", len(labels), scores(labels, probabilities), args.json)


def report(model, n, result, as_json):
    if as_json:
        print(json.dumps({"model": model, "n": n, "sets": result}))
        return 0
    print(f"{model} on {n} validation images")
    print(f"{'set':<18}{'accuracy':>10}{'ignoring case':>15}")
    for name, row in result.items():
        print(f"{name:<18}{row['accuracy']:>10.2%}{row['accuracy_case_insensitive']:>15.2%}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model (default: the one test.py would use)")
    parser.add_argument("--data-dir", help="where the split's images are (default: where it was made)")
    parser.add_argument("--keras", action="store_true", help="run the Keras model even if it has a LiteRT copy")
    parser.add_argument("--tta", action="store_true", help="average over rotated copies of each image (test.py --tta)")
    parser.add_argument("--stretch-contrast", action="store_true",
                        help="stretch each image's pixels to 0-255 before the model (model.ContrastStretch)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--probabilities", help="save the answers on every set to this .npz, for --ensemble")
    parser.add_argument("--ensemble", nargs="+", metavar="NPZ", help="score the average of saved answers instead")
    args = parser.parse_args(argv)
    return checkpoint.run_script(lambda: ensemble(args) if args.ensemble else evaluate(args))


if __name__ == "__main__":
    sys.exit(main())
