"""Predict characters with a trained model, or score it on labelled images.

    python test.py -img /Sample008/img008-00019.png    # a path under English/Img/GoodImg/Bmp: prints Sample008
    python test.py -img photo.png other.jpg --top 3    # any image files, the 3 best classes of each
    python test.py -img some/folder --save imgs/prediction.png
    python test.py --eval                               # the validation images of saved/split.json
                                                        # (of <model>.split.json for a shipped model)
    python test.py --eval ../other/English --json       # every image of a SampleNNN folder tree, as JSON
    python test.py --eval --tta                         # average each answer over rotated copies too

The model defaults to saved/model/model_new.h5, else the model shipped in saved/model/; a .tflite
model (python export.py) runs on LiteRT without loading TensorFlow. Its JSON
(written by train.py) gives the classes, image size and resizing, so predictions always match training.
Bad input gives one line on stderr and exit code 2; the other images given are still predicted.
"""

import argparse
import json
import os
import sys

import numpy as np
from PIL import Image
from tqdm import tqdm

import checkpoint
import data

ERRORS_SHOWN = 24
BATCH_SIZE = 64  # images read and predicted at a time
TTA_ANGLES = (-12, -6, 6, 12)  # degrees: --tta's rotated copies, within the recipe's rotation (augment.ROTATION)


class InputError(checkpoint.UserError):
    """Bad input from the command line."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-img", "--image", dest="images", action="extend", nargs="+", default=[],
                        help="image files or folders; a path that does not exist is looked up under "
                             "English/Img/GoodImg/Bmp, as in /Sample008/img008-00019.png")
    parser.add_argument("--eval", nargs="?", const="split", metavar="DIR",
                        help="score the validation images of the model's split (<model>.split.json for a shipped "
                             "model, else saved/split.json), or every image of DIR/SampleNNN")
    parser.add_argument("--model", help="a model saved by train.py (default: saved/model/model_new.h5, "
                                         "else the shipped one)")
    parser.add_argument("--keras", action="store_true",
                        help="run a Keras model in Keras even where export.py wrote a LiteRT copy of it")
    parser.add_argument("--data-dir", help="the dataset, for -img paths and --eval (default: English/, or for "
                                           "--eval the one the split was made from)")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average the answers on each image and on copies of it rotated "
                             f"by {', '.join(map(str, TTA_ANGLES))} degrees (5 times the work)")
    parser.add_argument("--top", type=int, default=1, metavar="K", help="list the K most likely classes")
    parser.add_argument("--save", metavar="FILE", help="save a figure of the image(s) with their predictions")
    parser.add_argument("--show", action="store_true", help="open that figure in a window")
    parser.add_argument("--json", action="store_true",
                        help="print the predictions, or the --eval metrics, as one JSON object")
    args = parser.parse_args(argv)
    if not args.images and not args.eval:
        parser.error("give -img IMAGE (one or more) or --eval")
    if args.top < 1:
        parser.error("--top must be at least 1")
    return args


def image_paths(given, data_dir):
    """Image files for each -img argument: files, folders (every image inside), or dataset paths."""
    root = data.class_root(data_dir) or os.path.join(data_dir, data.GOODIMG_SUBDIR)
    paths, missing = [], []
    for path in given:
        candidates = (path, os.path.join(root, path.lstrip("/\\")))
        found = next((c for c in candidates if os.path.exists(c)), None)
        if found is None:
            missing.append(f"{path}: no such file (looked also under {root})")
        elif os.path.isdir(found):
            inside = sorted(os.path.join(folder, name) for folder, _, names in os.walk(found)
                            for name in names if data.is_image_file(name))
            if not inside:
                missing.append(f"{path}: no images in this folder")
            paths += inside
        else:
            paths.append(found)
    return paths, missing


def print_predictions(paths, probabilities, top, info):
    """The class name, character and confidence of each image, best first."""
    for path, probs in zip(paths, probabilities):
        best, *others = checkpoint.top_classes(probs, top, info)
        suffix = f"  {checkpoint.printable(path)}" if len(paths) > 1 else ""
        print(f"{best['class']}  '{best['character']}'  {best['probability']:.2%}{suffix}")
        for rank, guess in enumerate(others, start=2):
            print(f"    {rank}. {guess['class']}  '{guess['character']}'  {guess['probability']:.2%}")


def print_json_predictions(paths, probabilities, top, info, model_path, problems):
    predictions = [{"path": path, "top": checkpoint.top_classes(probs, top, info)}
                   for path, probs in zip(paths, probabilities)]
    print(json.dumps({"model": model_path, "predictions": predictions, "errors": problems}))


def pyplot():
    import matplotlib

    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        matplotlib.use("Agg")  # no screen: draw to files only
    import matplotlib.pyplot as plt

    return plt


def prediction_figure(images, titles, columns=6):
    plt = pyplot()
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig, plt


def figure_path(save):
    """Where --save writes its figure, checked before any work: a folder gets predictions.png inside."""
    if os.path.isdir(save):
        save = os.path.join(save, "predictions.png")
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    extension = os.path.splitext(save)[1].lstrip(".").lower()
    if extension not in formats:
        raise InputError(f"--save {save}: give a file name ending in one of .{', .'.join(sorted(formats))}")
    problem = checkpoint.unwritable(os.path.dirname(os.path.abspath(save)))
    if problem:
        raise InputError(f"--save {save}: {problem}")
    return save


def save_figure(fig, path):
    """Write a figure through a temporary file (a failure leaves no half-written one); raises InputError."""
    try:
        with checkpoint.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format=os.path.splitext(path)[1].lstrip(".").lower())
    except OSError as e:
        raise InputError(f"cannot write the figure {path}: {e.strerror or e}") from None


def rotated(image, degrees):
    """The image turned by degrees (counter-clockwise), its corners filled from the nearest edge as in training."""
    border = image.shape[0] // 4
    padded = np.pad(image, ((border, border), (border, border), (0, 0)), mode="edge")
    turned = np.asarray(Image.fromarray(padded).rotate(degrees, resample=Image.BILINEAR))
    return turned[border: border + image.shape[0], border: border + image.shape[1]]


def predict(model, images, tta=False, verbose=0):
    """The model's probabilities for uint8 images; with tta, their mean over the images and their rotated copies."""
    views = [images]
    if tta:
        views += [np.stack([rotated(image, angle) for image in images]) for angle in TTA_ANGLES]
    return np.mean([model.predict(view.astype(np.float32), batch_size=BATCH_SIZE, verbose=verbose)
                    for view in views], axis=0)


def predict_files(model, info, paths, keep_images, progress, tta=False):
    """(paths read, their probabilities, their images if keep_images, problems), read and predicted a
    batch at a time so that a large folder never sits in memory at full size."""
    kept, probabilities, images, problems = [], [], [], []
    bar = tqdm(total=len(paths), unit="image", disable=None if progress else True, file=sys.stderr)
    for start in range(0, len(paths), BATCH_SIZE):
        pixels = []
        for path in paths[start: start + BATCH_SIZE]:
            try:
                image = data.read_image(path)
            except data.UnreadableImage as e:
                problems.append(str(e))
                print(f"error: {e}", file=sys.stderr)
                continue
            pixels.append(data.fit_image(image, info["image_size"], info["resize"]))
            kept.append(path)
            if keep_images:
                images.append(image)
        if pixels:
            probabilities.append(predict(model, np.stack(pixels), tta))
        bar.update(len(paths[start: start + BATCH_SIZE]))
    bar.close()
    return kept, np.concatenate(probabilities) if probabilities else np.zeros((0, 0)), images, problems


def run_predictions(args):
    save = args.save and figure_path(args.save)
    paths, problems = image_paths(args.images, args.data_dir or checkpoint.DATA_DIR)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not paths:
        return 2
    model, info, model_path, _ = checkpoint.open_chosen_model(args.model, args.keras)
    kept, probabilities, images, unreadable = predict_files(model, info, paths, bool(save or args.show),
                                                            progress=len(paths) > BATCH_SIZE, tta=args.tta)
    problems += unreadable
    if args.json:
        print_json_predictions(kept, probabilities, args.top, info, model_path, problems)
    else:
        print_predictions(kept, probabilities, args.top, info)
    if kept and (save or args.show):
        titles = [f"{info['class_names'][p.argmax()]} '{info['characters'][p.argmax()]}' {p.max():.0%}"
                  for p in probabilities]
        fig, plt = prediction_figure(images, titles)
        if save:
            save_figure(fig, save)
            print(f"Figure: {save}", file=sys.stderr)
        if args.show:
            plt.show()
    return 2 if problems else 0


# ---------------------------------------------------------------- evaluation

def eval_entries(args, model_path, info):
    """(class root, entries) to score: the model's validation split, or a whole folder."""
    if info["class_names"] != data.CLASS_NAMES:
        raise InputError(f"{model_path} predicts other classes than the {data.NUM_CLASSES} of Chars74K")
    if args.eval == "split":
        split_path = checkpoint.split_of(model_path)
        root, entries = data.split_set(split_path, args.data_dir)
        if info.get("split", {}).get("n_val") not in (None, len(entries)):
            print(f"warning: {split_path} is not the split this model was trained with", file=sys.stderr)
        print(f"Data: the {len(entries)} validation images of {split_path}, in {root}", file=sys.stderr)
        return root, entries
    root = data.class_root(args.eval)
    if root is None:
        raise InputError(f"{args.eval} holds no SampleNNN class folders")
    print(f"Data: every image of {root}", file=sys.stderr)
    return root, data.list_images(root, log=lambda m: print(m, file=sys.stderr))


def metrics(labels, probabilities):
    predicted = probabilities.argmax(axis=1)
    true_probability = probabilities[np.arange(len(labels)), labels][:, None]
    others_as_likely = (probabilities >= true_probability).sum(axis=1) - 1  # a tie counts against (model.top5_accuracy)
    per_class = {}
    for label, name in enumerate(data.CLASS_NAMES):
        mask = labels == label
        if mask.any():
            correct = int((predicted[mask] == label).sum())
            per_class[name] = {"character": data.CHARACTERS[label], "n": int(mask.sum()), "correct": correct,
                               "accuracy": correct / int(mask.sum())}
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "accuracy_case_insensitive": float(np.mean(data.same_character_ignoring_case(labels, predicted))),
        "top5": float(np.mean(others_as_likely < 5)),
        "n": int(len(labels)),
        "per_class": per_class,
    }


def print_report(report, model_path, root, tta):
    print(f"Model {model_path}{' with test-time augmentation' if tta else ''} on {report['n']} images of {root}")
    print(f"  accuracy          {report['accuracy']:.2%}")
    print(f"  case-insensitive  {report['accuracy_case_insensitive']:.2%}")
    print(f"  top-5             {report['top5']:.2%}")
    print(f"\n{'class':<10}{'char':>5}{'n':>6}{'correct':>9}{'accuracy':>10}")
    for name, row in report["per_class"].items():
        print(f"{name:<10}{row['character']:>5}{row['n']:>6}{row['correct']:>9}{row['accuracy']:>10.1%}")


def plot_confusion(labels, predicted, about):
    plt = pyplot()
    matrix = np.zeros((data.NUM_CLASSES, data.NUM_CLASSES))
    np.add.at(matrix, (labels, predicted), 1)
    rows = matrix.sum(axis=1, keepdims=True)
    matrix = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    fig, ax = plt.subplots(figsize=(13, 12))
    shown = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(data.NUM_CLASSES)
    ax.set_xticks(ticks, list(data.CHARACTERS), fontsize=7)
    ax.set_yticks(ticks, list(data.CHARACTERS), fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix (rows sum to 1)\n{about}")
    fig.colorbar(shown, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def plot_errors(images, labels, probabilities, about):
    """The most confident mistakes, each titled true -> predicted (confidence)."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(probabilities[wrong, predicted[wrong]])[::-1]][:ERRORS_SHOWN]
    titles = [f"'{data.CHARACTERS[labels[i]]}' -> '{data.CHARACTERS[predicted[i]]}' "
              f"{probabilities[i, predicted[i]]:.0%}" for i in worst]
    fig, _ = prediction_figure([images[i] for i in worst] or [np.full((8, 8, 3), 255, np.uint8)],
                               titles or ["no errors"])
    fig.suptitle(f"Most confident mistakes: true -> predicted\n{about}", fontsize=10)
    fig.tight_layout()
    return fig


def run_eval(args):
    model, info, model_path, _ = checkpoint.open_chosen_model(args.model, args.keras)
    root, entries = eval_entries(args, model_path, info)
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    images, labels, _ = data.decode_images(root, entries, info["image_size"], info["resize"], log=log,
                                           progress=not args.json)
    progress_bar = "auto" if sys.stdout.isatty() and not args.json else 0
    probabilities = predict(model, images, args.tta, verbose=progress_bar)
    report = metrics(labels, probabilities)
    if args.json:
        print(json.dumps({"model": model_path, "data_dir": root, "tta": args.tta, **report}))
    else:
        print_report(report, model_path, root, args.tta)
    about = (f"{os.path.basename(model_path)}{' (TTA)' if args.tta else ''} on {report['n']} images of "
             f"{data.dataset_name(root)}")
    figures = {os.path.join(checkpoint.IMGS_DIR, "confusion.png"): plot_confusion(labels, probabilities.argmax(1),
                                                                                  about),
               os.path.join(checkpoint.IMGS_DIR, "errors.png"): plot_errors(images, labels, probabilities, about)}
    for path, fig in figures.items():  # after the metrics: a figure that cannot be written loses nothing else
        save_figure(fig, path)
    print(f"\nFigures: {', '.join(figures)}", file=sys.stderr if args.json else sys.stdout)
    return 0


def main(argv=None):
    args = parse_args(argv)
    return checkpoint.run_script(lambda: run_eval(args) if args.eval else run_predictions(args))


if __name__ == "__main__":
    sys.exit(main())
