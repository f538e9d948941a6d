"""Tesseract 5 as a peer: single-character mode (--psm 10) on our validation images.

    python bench/tesseract.py                       # a training's saved/split.json, engine LSTM
    python bench/tesseract.py --oem 0 --oem 1 --json
    python bench/tesseract.py --split saved/model/chars74k_resnet50_fp16.split.json   # a fresh clone: the shipped split

Needs the tesseract command (Debian: apt-get install tesseract-ocr). Each original crop is given to
`tesseract IMAGE stdout --psm 10 --oem N`, restricted to the 62 characters; the first character of
its answer is its prediction (no answer counts as wrong). Accuracy is computed as test.py --eval
computes ours: case-sensitive and case-insensitive top-1 on the same images.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import checkpoint  # noqa: E402
import data  # noqa: E402

ENGINES = {0: "legacy", 1: "LSTM", 2: "legacy + LSTM"}


def tesseract(path, oem):
    return subprocess.run(["tesseract", path, "stdout", "--psm", "10", "--oem", str(oem),
                           "-c", f"tessedit_char_whitelist={data.CHARACTERS}"], capture_output=True, text=True)


def recognize(path, oem):
    answer = [c for c in tesseract(path, oem).stdout if c in data.CHARACTERS]
    return answer[0] if answer else None


def engine_problem(path, oem):
    """None if this engine runs here, else Tesseract's reason (Debian ships LSTM-only models)."""
    result = tesseract(path, oem)
    return None if result.returncode == 0 else (result.stderr.strip().splitlines() or ["failed"])[-1]


def score(root, entries, oem, workers=os.cpu_count()):
    labels = np.array([label for _, label in entries])
    with ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(lambda entry: recognize(os.path.join(root, entry[0]), oem), entries))
    predicted = np.array([data.CHARACTERS.index(a) if a else -1 for a in answers])
    return {"engine": ENGINES[oem], "oem": oem, "n": len(labels),
            "accuracy": float(np.mean(predicted == labels)),
            "accuracy_case_insensitive": float(np.mean(data.same_character_ignoring_case(labels, predicted))),
            "no_answer": float(np.mean(predicted < 0))}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default=checkpoint.SPLIT_PATH)
    parser.add_argument("--data-dir", help="the dataset (default: the one recorded in the split)")
    parser.add_argument("--oem", type=int, action="append", choices=sorted(ENGINES),
                        help="Tesseract engine(s): 0 legacy, 1 LSTM, 2 both (default 1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not shutil.which("tesseract"):
        sys.exit("error: tesseract is not installed (Debian: apt-get install tesseract-ocr)")
    try:
        root, entries = data.split_set(args.split, args.data_dir)
    except data.DatasetError as e:
        sys.exit(f"error: {e}")
    version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    for oem in args.oem or [1]:
        problem = engine_problem(os.path.join(root, entries[0][0]), oem)
        if problem:
            print(f"{version}, engine {ENGINES[oem]} (--oem {oem}) cannot run here: {problem}", file=sys.stderr)
            continue
        result = {"tesseract": version, **score(root, entries, oem)}
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{version}, engine {result['engine']} (--oem {oem}), {result['n']} images: accuracy "
                  f"{result['accuracy']:.2%}, case-insensitive {result['accuracy_case_insensitive']:.2%}, "
                  f"no answer {result['no_answer']:.2%}")


if __name__ == "__main__":
    main()
