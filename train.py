"""Train the ResNet50 character recognizer on Chars74K GoodImg.

    python train.py                                     # the original recipe: 100 epochs, Adam, batch 32, 64x64
    python train.py --data-dir ../shared/chars74k/English --weights none --epochs 2
    python train.py --max-per-class 10 --epochs 1       # a quick run on a subset
    python train.py --data synthetic --weights none     # offline: rendered fonts, no ImageNet weights
    python train.py --resume                            # continue an interrupted run

Writes saved/model/model_new.h5 (best epoch by validation accuracy) with model_new.json beside it,
saved/split.json, saved/history.csv, TensorBoard logs in saved/logs/ and the curves in imgs/.

Devices: on a GPU it trains in mixed precision with XLA (--no-mixed-precision, --no-xla); with
several GPUs it uses tf.distribute.MirroredStrategy, --batch-size per GPU. Several machines: run
with KERAS_BACKEND=jax and, on each machine, the same command with
    KERAS_DISTRIBUTION_JOB_ADDRESSES=host0:port  KERAS_DISTRIBUTION_NUM_PROCESSES=N
    KERAS_DISTRIBUTION_PROCESS_ID=i    (0 on host0, the coordinator)
Each process trains on its own shard of the training images (listed in saved/shard-i.json) with
keras.distribution.DataParallel; the weights stay identical everywhere.
"""

import argparse
import contextlib
import csv
import json
import platform
import shutil
import os
import sys
import time

import data
import model as model_lib  # first: it imports Keras and TensorFlow quietly

import keras
import numpy as np
import tensorflow as tf

# Defaults of the original project.
EPOCHS = 100
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
MODEL_PATH = os.path.join(data.SAVED_DIR, "model", "model_new.h5")
HISTORY_PATH = os.path.join(data.SAVED_DIR, "history.csv")
LOG_DIR = os.path.join(data.SAVED_DIR, "logs")
BACKUP_DIR = os.path.join(data.SAVED_DIR, "backup")
IMGS_DIR = "imgs"
SYNTHETIC_PER_CLASS = 100


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text}")
    return value


def image_size(text):
    value = int(text)
    if value < 32:
        raise argparse.ArgumentTypeError(f"must be at least 32 (ResNet50's smallest input), not {text}")
    return value


def fraction(text):
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), not {text}")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=("goodimg", "synthetic"), default="goodimg",
                        help="Chars74K GoodImg (found or downloaded), or characters rendered from fonts")
    parser.add_argument("--data-dir", help="an English/ folder, or a folder of SampleNNN folders (default: English/)")
    parser.add_argument("--data-url", default=data.DATA_URL, help="where to download EnglishImg.tgz from")
    parser.add_argument("--synthetic-per-class", type=positive_int, default=SYNTHETIC_PER_CLASS,
                        help="rendered images per character with --data synthetic")
    parser.add_argument("--max-per-class", type=positive_int, help="use at most N images of each class")
    parser.add_argument("--epochs", type=positive_int, default=EPOCHS)
    parser.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE)
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE)
    parser.add_argument("--image-size", type=image_size, default=data.IMAGE_SIZE, help="side of the square input")
    parser.add_argument("--resize", choices=data.RESIZE_MODES, default=data.DEFAULT_RESIZE,
                        help="pad keeps the aspect ratio, stretch does not")
    parser.add_argument("--val-fraction", type=fraction, default=data.VAL_FRACTION)
    parser.add_argument("--seed", type=int, default=data.SEED)
    parser.add_argument("--weights", default="imagenet",
                        help="imagenet (Keras' download), none, or a weights file (ResNet50 backbone or a saved model)")
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="train without augmentation")
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="augment without label-safe flips")
    parser.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                        help="learning rate: constant (the original), or one warm-up epoch then cosine decay")
    parser.add_argument("--no-mixed-precision", dest="mixed_precision", action="store_false",
                        help="on a GPU, train in float32 instead of mixed float16 (CPUs always use float32)")
    parser.add_argument("--no-xla", dest="xla", action="store_false",
                        help="on a GPU with TensorFlow, do not compile with XLA (it slows CPUs down)")
    parser.add_argument("--output", default=MODEL_PATH, help="where to write the best model (.h5)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run from its last epoch")
    return parser.parse_args(argv)


def setup_devices(args):
    """(scope factory, replicas, process, processes, jit_compile) for the devices in view.

    TensorFlow: MirroredStrategy over several GPUs. JAX: DataParallel over every device of every
    process (keras.distribution.initialize reads the KERAS_DISTRIBUTION_* variables). Mixed float16
    on accelerators only.
    """
    if keras.backend.backend() == "jax":
        if int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")) > 1:
            keras.distribution.initialize()
        import jax

        devices = jax.devices()
        if len(devices) > 1:
            keras.distribution.set_distribution(keras.distribution.DataParallel(
                devices=keras.distribution.list_devices(), auto_shard_dataset=False))
        on_accelerator = devices[0].platform != "cpu"
        scope, replicas = contextlib.nullcontext, len(devices)
        process, processes, jit_compile = jax.process_index(), jax.process_count(), True
    else:
        gpus = tf.config.list_physical_devices("GPU")
        strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
        on_accelerator = bool(gpus)
        scope, replicas = strategy.scope, strategy.num_replicas_in_sync
        process, processes, jit_compile = 0, 1, on_accelerator and args.xla
    if on_accelerator and args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    return scope, replicas, process, processes, jit_compile


def process_shard(train_idx, paths, process, processes):
    """This process's equal share of the training images (every process must take as many steps)."""
    if processes == 1:
        return train_idx
    shard = train_idx[process::processes][: len(train_idx) // processes]
    data.write_atomically(os.path.join(data.SAVED_DIR, f"shard-{process}.json"),
                          lambda f: json.dump([paths[i] for i in shard], f, indent=1), mode="w")
    print(f"Process {process} of {processes}: training on {len(shard)} of {len(train_idx)} images")
    return shard


def learning_rate(args, steps_per_epoch):
    if args.schedule == "constant":
        return args.learning_rate
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, (args.epochs - 1) * steps_per_epoch),
        warmup_target=args.learning_rate, warmup_steps=steps_per_epoch)


def load_data(args):
    """Decoded images and labels with a deterministic stratified split, saved as saved/split.json."""
    if args.data == "synthetic":
        root = data.render_synthetic(per_class=args.synthetic_per_class, seed=args.seed)
    else:
        root = data.find_dataset(args.data_dir, args.data_url)
    entries = data.list_images(root, args.max_per_class)
    images, labels, paths = data.decode_images(root, entries, args.image_size, args.resize)
    train_idx, val_idx = data.stratified_split(labels, args.val_fraction, args.seed)
    if not len(val_idx):
        raise data.DatasetError("too few images for a validation set: every class needs at least 2")
    split = data.save_split(paths, train_idx, val_idx, root, args.val_fraction, args.seed)
    return root, images, labels, paths, train_idx, val_idx, split


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch, and of its training part (before validation starts)."""

    def __init__(self):
        super().__init__()
        self.epoch_seconds, self.train_seconds = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_test_begin(self, logs=None):
        self.train_seconds.append(time.perf_counter() - self.start)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self.start)

    def summary(self, n_train):
        median = lambda values: float(np.median(values)) if values else float("nan")
        return {"seconds_per_epoch": median(self.epoch_seconds),
                "train_images_per_s": n_train / median(self.train_seconds),
                "epochs_timed": len(self.epoch_seconds)}


class BestModelSaver(keras.callbacks.Callback):
    """Saves the model whenever validation accuracy improves, atomically, with its JSON."""

    def __init__(self, path, info, best_so_far=-1.0):
        super().__init__()
        self.path, self.info, self.best = path, info, best_so_far

    def on_epoch_end(self, epoch, logs=None):
        if logs["val_accuracy"] > self.best:
            self.best = logs["val_accuracy"]
            self.info["metrics"] = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
            model_lib.save_model(self.model, self.path, self.info)


def previous_best(path):
    try:
        return data.read_model_info(path)["metrics"]["val_accuracy"]
    except (data.ModelError, KeyError):
        return -1.0


def read_history(path=HISTORY_PATH):
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def plot_history(history, imgs_dir=IMGS_DIR):
    """loss.png, val_loss.png, acc.png, val_acc.png and training.png (all curves) from history rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(imgs_dir, exist_ok=True)
    epochs = [int(row["epoch"]) + 1 for row in history]
    curves = {"loss": "training loss", "val_loss": "validation loss",
              "accuracy": "training accuracy", "val_accuracy": "validation accuracy"}
    files = {"loss": "loss.png", "val_loss": "val_loss.png", "accuracy": "acc.png", "val_accuracy": "val_acc.png"}
    for key, title in curves.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(epochs, [row[key] for row in history], marker=".")
        ax.set(title=title, xlabel="epoch", ylabel=key.replace("val_", ""))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(imgs_dir, files[key]), dpi=100)
        plt.close(fig)
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.plot(epochs, [row[metric] for row in history], marker=".", label="training")
        ax.plot(epochs, [row[f"val_{metric}"] for row in history], marker=".", label="validation")
        ax.set(title=metric, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(imgs_dir, "training.png"), dpi=100)
    plt.close(fig)


def run_info(args, root, images, split, versions):
    return {
        "class_names": data.CLASS_NAMES,
        "characters": data.CHARACTERS,
        "image_size": args.image_size,
        "resize": args.resize,
        "preprocessing": "RGB uint8 pixels 0-255, resized by data.fit_image; ImageNet caffe "
                         "preprocessing is the model's first layer",
        "data": {"source": args.data, "dir": os.path.abspath(root), "n_images": int(len(images)),
                 "fingerprint": data.fingerprint(root, data.split_entries(split["train"] + split["val"]),
                                                 args.image_size, args.resize)},
        "split": {"path": data.SPLIT_PATH, "seed": args.seed, "val_fraction": args.val_fraction,
                  "n_train": len(split["train"]), "n_val": len(split["val"])},
        "training": {k: v for k, v in vars(args).items() if k not in ("resume",)},
        "versions": versions,
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }


def train(args):
    keras.utils.set_random_seed(args.seed)
    scope, replicas, process, processes, jit_compile = setup_devices(args)
    with scope():
        model = model_lib.build_model(image_size=args.image_size, weights=args.weights)
    root, images, labels, paths, train_idx, val_idx, split = load_data(args)
    if args.batch_size > len(train_idx):
        raise data.DatasetError(f"--batch-size {args.batch_size} is larger than the {len(train_idx)} training images")
    print(f"Training on {len(train_idx)} images, validating on {len(val_idx)} ({len(np.unique(labels))} classes)")
    train_idx = process_shard(train_idx, paths, process, processes)
    batch_size = args.batch_size * replicas // processes  # this process's part of the global batch

    augment = data.augmenter(flip=args.flip, seed=args.seed) if args.augment else None
    train_ds = data.make_dataset(images[train_idx], labels[train_idx], batch_size, training=True,
                                 augment=augment, seed=args.seed)
    val_ds = data.make_dataset(images[val_idx], labels[val_idx], batch_size)
    with scope():
        model_lib.compile_model(model, learning_rate(args, len(train_ds)), jit_compile=jit_compile)

    versions = {"python": platform.python_version(), "tensorflow": tf.__version__,
                "keras": keras.__version__, "numpy": np.__version__}
    info = run_info(args, root, images, split, versions)
    info["devices"] = {"backend": keras.backend.backend(), "replicas": replicas, "processes": processes,
                       "dtype_policy": keras.mixed_precision.global_policy().name, "jit_compile": jit_compile}

    if not args.resume:
        shutil.rmtree(BACKUP_DIR, ignore_errors=True)
        if os.path.exists(HISTORY_PATH):
            os.remove(HISTORY_PATH)
    elif not os.path.exists(os.path.join(BACKUP_DIR, "training_metadata.json")):
        print(f"Nothing to resume in {BACKUP_DIR}: starting from the first epoch")
    timer = EpochTimer()
    callbacks = [
        keras.callbacks.BackupAndRestore(BACKUP_DIR, double_checkpoint=True),
        BestModelSaver(args.output, info, previous_best(args.output) if args.resume else -1.0),
        keras.callbacks.CSVLogger(HISTORY_PATH, append=True),
        keras.callbacks.TensorBoard(LOG_DIR, write_graph=False, profile_batch=0),
        timer,
    ]
    interrupted = False
    try:
        model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, callbacks=callbacks,
                  shuffle=False)  # train_ds shuffles itself
    except KeyboardInterrupt:
        interrupted = True
    history = read_history() if os.path.exists(HISTORY_PATH) else []
    if history:
        plot_history(history)
    timing = timer.summary(len(train_idx))
    if os.path.exists(args.output):
        info = data.read_model_info(args.output)
        info["timing"] = timing
        data.write_model_info(args.output, info)
    summarize(history, timing, args.output)
    if interrupted:
        print(f"Interrupted. The best model so far is in {args.output}; continue with `python train.py --resume`",
              file=sys.stderr)
        return 130
    return 0


def summarize(history, timing, output):
    if not history:
        print("No epoch finished.")
        return
    best = max(history, key=lambda row: row["val_accuracy"])
    print(f"\nBest epoch {int(best['epoch']) + 1} of {len(history)}: validation accuracy {best['val_accuracy']:.2%} "
          f"(case-insensitive {best['val_accuracy_ci']:.2%}, top-5 {best['val_top5']:.2%})")
    print(f"Speed: {timing['seconds_per_epoch']:.1f} s per epoch, {timing['train_images_per_s']:.1f} training "
          f"images/s (medians over the {timing['epochs_timed']} epochs of this run)")
    print(f"Model: {output}; history: {HISTORY_PATH}; curves: {IMGS_DIR}/training.png")


def main(argv=None):
    args = parse_args(argv)
    try:
        return train(args)
    except (data.DatasetError, data.ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
