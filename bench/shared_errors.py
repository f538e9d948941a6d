"""Which validation images every network reads wrong, from the answers that bench/degraded.py saved.

    python bench/degraded.py --model a.h5 --keras --data-dir ... --probabilities a.npz    # once a network
    python bench/shared_errors.py a.npz b.npz c.npz
    python bench/shared_errors.py a.npz b.npz --set dim --json
    python bench/shared_errors.py a.npz b.npz c.npz --figure imgs/wrong_in_all.png --data-dir ../shared/chars74k/English

On one set of images (the clean validation images unless --set says otherwise): each network's errors,
the images that all of them get wrong and how many of those the first network reads as the same letter
in the other case, the share that at least one network reads right (what a perfect choice among them
would score), and the first network's commonest confusions. Images every network misses mark where one
network's accuracy is bounded by the images themselves rather than by the recipe. --figure draws them, as
the networks see them (the clean crops at the default input size), titled true -> read by the first network.
"""

import argparse
import collections
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import checkpoint  # noqa: E402
import data  # noqa: E402
import degraded  # noqa: E402  (beside this script)
import test  # noqa: E402

CONFUSIONS_SHOWN = 12


def answers(files, set_name):
    """(labels, the class each network reads [networks, images]) on one set."""
    if any(set_name not in f for f in files):
        raise checkpoint.UserError(f"not every file holds answers on the set {set_name!r}")
    return files[0]["labels"], np.array([f[set_name].argmax(axis=1) for f in files])


def shared_errors(labels, predicted, names, set_name):
    wrong = predicted != labels
    wrong_in_all = wrong.all(axis=0)
    first, first_wrong = predicted[0], wrong[0]
    by_case = first_wrong & data.same_character_ignoring_case(labels, first)
    confusions = collections.Counter((data.CHARACTERS[truth], data.CHARACTERS[read])
                                     for truth, read in zip(labels[first_wrong], first[first_wrong]))
    return {
        "set": set_name,
        "n": int(len(labels)),
        "errors": {name: int(count) for name, count in zip(names, wrong.sum(axis=1))},
        "wrong_in_all": int(wrong_in_all.sum()),
        "wrong_in_all_first_reads_other_case": int((wrong_in_all & by_case).sum()),
        "right_in_any": float(np.mean(~wrong_in_all)),
        "first_errors_other_case": int(by_case.sum()),
        "first_confusions": [[truth, read, count] for (truth, read), count in confusions.most_common(CONFUSIONS_SHOWN)],
    }


def report(result, as_json):
    if as_json:
        print(json.dumps(result))
        return 0
    print(f"{result['n']} images, set {result['set']}")
    for name, count in result["errors"].items():
        print(f"  {count:5d} wrong  {name}")
    print(f"  {result['wrong_in_all']:5d} wrong in all ({result['wrong_in_all_first_reads_other_case']} read by the "
          f"first as the other case); {result['right_in_any']:.2%} right in at least one")
    first = next(iter(result["errors"]))
    print(f"{first}: {result['first_errors_other_case']} of its errors are the other case; commonest confusions "
          "(true -> read):")
    print("  " + ", ".join(f"{truth}->{read} {count}" for truth, read, count in result["first_confusions"]))
    return 0


def plot_wrong_in_all(labels, predicted, paths, set_name, data_dir, path):
    """Draw the images every network reads wrong to path; returns how many."""
    missed = np.flatnonzero((predicted != labels).all(axis=0))
    root = data.class_root(data_dir)
    if root is None:
        raise checkpoint.UserError(f"--data-dir {data_dir} holds no SampleNNN class folders")
    try:
        images = [data.load_image(os.path.join(root, paths[i])) for i in missed]
    except data.UnreadableImage as e:
        raise checkpoint.UserError(f"{e} (is --data-dir the folder these answers were scored on?)") from None
    titles = [f"'{data.CHARACTERS[labels[i]]}' -> '{data.CHARACTERS[predicted[0, i]]}'" for i in missed]
    fig, _ = test.prediction_figure(images or [np.full((8, 8, 3), 255, np.uint8)], titles or ["none"], columns=10)
    fig.suptitle(f"The {len(missed)} images all {len(predicted)} networks read wrong ({set_name} set; clean crops "
                 "shown): true -> read by the first", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # room for the title above the first row's titles
    test.save_figure(fig, path)
    return len(missed)


def run(args):
    files = degraded.saved_answers(args.answers)
    figure = test.figure_path(args.figure) if args.figure else None
    labels, predicted = answers(files, args.set)
    result = shared_errors(labels, predicted, args.answers, args.set)
    if figure:
        drawn = plot_wrong_in_all(labels, predicted, files[0]["paths"], args.set, args.data_dir, figure)
        print(f"Drew the {drawn} images every network reads wrong to {figure}", file=sys.stderr)
    return report(result, args.json)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("answers", nargs="+", metavar="NPZ", help="files of bench/degraded.py --probabilities")
    parser.add_argument("--set", default="clean", choices=degraded.DEGRADATIONS,
                        help="the images to count on (default: clean)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--figure", metavar="PNG", help="draw the images every network reads wrong to this file")
    parser.add_argument("--data-dir", default=checkpoint.DATA_DIR,
                        help="with --figure: where the scored images are (default: English/)")
    args = parser.parse_args(argv)
    return checkpoint.run_script(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
