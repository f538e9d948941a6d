"""How steadily runs trained: from each history.csv that train.py wrote, the best and last validation
accuracy and the collapses, epochs whose training accuracy fell well below the epoch before's.

    python bench/collapses.py saved/history.csv
    python bench/collapses.py bench/results/h100-2026-11-28-sweep1/*/history.csv --json

Training accuracy is measured on the augmented training batches in training mode, so a fall there is
the optimizer losing ground, not a quirk of evaluation (batch-norm statistics, a hard validation set).
"""

import argparse
import itertools
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import train  # noqa: E402

FALL = 0.03  # a fall of training accuracy that counts as a collapse (3 points)


def read_history(path):
    """The finished epochs of a history.csv (train.py's reader: a damaged line is left out), as numbers."""
    rows, _, _ = train.history_rows(path)
    rows = [{key: float(value) for key, value in row.items()} for row in rows]
    return [row for row in rows if "accuracy" in row and "val_accuracy" in row]


def steadiness(rows, fall=FALL):
    """Best and last validation accuracy, the epochs (1-based) whose training accuracy fell by fall or more
    from the epoch before, and the deepest that training accuracy ever stood below its best so far (a slow
    slide over several epochs counts there)."""
    collapses = [(int(now["epoch"]) + 1, before["accuracy"] - now["accuracy"])
                 for before, now in zip(rows, rows[1:]) if before["accuracy"] - now["accuracy"] >= fall]
    best = max(rows, key=lambda row: row["val_accuracy"])
    peaks = itertools.accumulate((row["accuracy"] for row in rows), max)
    return {"epochs": len(rows), "best_val_accuracy": best["val_accuracy"], "best_epoch": int(best["epoch"]) + 1,
            "last_val_accuracy": rows[-1]["val_accuracy"], "last_accuracy": rows[-1]["accuracy"],
            "collapses": len(collapses), "largest_fall": max((drop for _, drop in collapses), default=0.0),
            "deepest_below_peak": max(peak - row["accuracy"] for peak, row in zip(peaks, rows)),
            "collapse_epochs": [epoch for epoch, _ in collapses]}


def run_name(path):
    """The folder that holds the history (a sweep's run name), else the file's name."""
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return folder if os.path.basename(path) == "history.csv" else os.path.basename(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("histories", nargs="+", help="history.csv files written by train.py")
    parser.add_argument("--fall", type=float, default=FALL, help="the fall of training accuracy that counts")
    parser.add_argument("--json", action="store_true", help="one JSON line per run")
    args = parser.parse_args(argv)
    print("" if args.json else f"{'run':<24} {'epochs':>6} {'best val':>9} {'at':>4} {'last val':>9} "
                                f"{'last train':>10} {'collapses':>9} {'largest':>8} {'below peak':>10}", end="" if args.json else "\n")
    for path in args.histories:
        rows = read_history(path)
        if not rows:
            raise SystemExit(f"error: {path} holds no finished epoch")
        result = {"run": run_name(path), **steadiness(rows, args.fall)}
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{result['run']:<24} {result['epochs']:>6} {result['best_val_accuracy']:>9.2%} "
                  f"{result['best_epoch']:>4} {result['last_val_accuracy']:>9.2%} {result['last_accuracy']:>10.2%} "
                  f"{result['collapses']:>9} {result['largest_fall']:>8.2%} {result['deepest_below_peak']:>10.2%}")


if __name__ == "__main__":
    main()
