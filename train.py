"""Train the ResNet50 character recognizer on Chars74K GoodImg.

    python train.py                                     # the original recipe: 100 epochs, Adam, batch 32, 64x64
    python train.py --data-dir ../shared/chars74k/English --weights none --epochs 2
    python train.py --max-per-class 10 --epochs 1       # a quick run on a subset
    python train.py --data synthetic --weights none     # offline: rendered fonts, no ImageNet weights
    python train.py --resume                            # continue an interrupted run

Writes saved/model/model_new.h5 (best epoch by validation accuracy) with model_new.json beside it,
saved/split.json, saved/history.csv, the curves in imgs/ and (TensorFlow) TensorBoard logs in saved/logs/, all
beside this script (or in $CHARS74K_HOME), from whatever folder it is started.

Devices: on a GPU it trains in mixed precision with XLA (--no-mixed-precision, --no-xla); with several
GPUs it uses tf.distribute.MirroredStrategy (TensorFlow) or keras.distribution.DataParallel (JAX),
--batch-size per GPU. Several machines: run with KERAS_BACKEND=jax and, on each machine, the same command with
    KERAS_DISTRIBUTION_JOB_ADDRESSES=host0:port  KERAS_DISTRIBUTION_NUM_PROCESSES=N
    KERAS_DISTRIBUTION_PROCESS_ID=i    (0 on host0, the coordinator)
Each process trains on its own shard of the training images (listed in saved/shard-i.json) with
keras.distribution.DataParallel; the weights stay identical everywhere.
"""

import argparse
import contextlib
import csv
import dataclasses
import importlib
import json
import math
import os
import platform
import shutil
import signal
import sys
import time

import numpy as np

import checkpoint
import data
import prepare

# Defaults of the original project. Keras is imported in train(), through checkpoint.import_keras().
EPOCHS = 100
BATCH_SIZE = 32
LEARNING_RATE = 1e-3


NOT_GIVEN = object()
RUN_PATH = os.path.join(checkpoint.BACKUP_DIR, "run.json")  # the settings of the run being backed up
DEVICE_FLAGS = ("mixed_precision", "xla", "steps_per_execution", "backup_every")  # a resumed run may change these

image_size = checkpoint.checked(int, lambda value: value >= 32, "at least 32 (ResNet50's smallest input)")
fraction = checkpoint.checked(float, lambda value: 0 < value < 1, "between 0 and 1 (exclusive)")
smoothing = checkpoint.checked(float, lambda value: 0 <= value < 1, "at least 0 and below 1")
decay = checkpoint.checked(float, lambda value: 0 <= value < 1, "at least 0 and below 1")
clip_norm = checkpoint.checked(float, lambda value: value >= 0, "at least 0 (0: no clipping)")
beta_parameter = checkpoint.checked(float, lambda value: 0 <= value < math.inf, "at least 0 (0: off) and finite")
temperature = checkpoint.checked(float, lambda value: 0 < value < math.inf, "above 0 and finite")
degrees = checkpoint.checked(float, lambda value: 0 <= value <= 90,
                            "from 0 to 90 (further, 6 and 9, b and q, d and p, n and u turn into each other)")
momentum = checkpoint.checked(float, lambda value: value == 0 or 0.5 <= value < 1,
                             "0 (off), or at least 0.5 and below 1")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    prepare.add_data_arguments(parser)
    parser.add_argument("--max-per-class", type=checkpoint.positive_int, help="use at most N images of each class")
    parser.add_argument("--epochs", type=checkpoint.positive_int, default=EPOCHS)
    parser.add_argument("--batch-size", type=checkpoint.positive_int, default=BATCH_SIZE)
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE)
    parser.add_argument("--image-size", type=image_size, default=data.IMAGE_SIZE, help="side of the square input")
    parser.add_argument("--resize", choices=checkpoint.RESIZE_MODES, default=data.DEFAULT_RESIZE,
                        help="pad keeps the aspect ratio, stretch does not")
    parser.add_argument("--val-fraction", type=fraction, default=data.VAL_FRACTION)
    parser.add_argument("--seed", type=int, default=data.SEED, help="of the train/validation split")
    parser.add_argument("--train-seed", type=int,
                        help="of the initial weights, augmentation and batch order (default: --seed); another "
                             "value trains again on the same split, to measure the spread between runs")
    parser.add_argument("--label-smoothing", type=smoothing, default=0.0,
                        help="move this share of each target to the other classes (0: the original)")
    parser.add_argument("--weight-decay", type=decay, default=0.0,
                        help="AdamW's decoupled weight decay, not on batch normalization and biases (0: Adam, the "
                             "original)")
    parser.add_argument("--clip-norm", type=clip_norm, default=0.0,
                        help="scale each step's gradients down to this global norm when they are longer (0: never, "
                             "the original); it keeps Adam from the collapses it has from scratch (RESULTS.md)")
    parser.add_argument("--ema", type=momentum, default=0.0,
                        help="keep an exponential moving average of the weights with this momentum, and validate "
                             "and save the average (0: none); it remembers about 1/(1 - momentum) steps, so keep "
                             "that well under the run's steps (0.99: about 100)")
    parser.add_argument("--stretch-contrast", action="store_true",
                        help="stretch each image's pixels to the full range 0-255 inside the model (a layer of the "
                             "saved model, so test.py does it too): dim and faded photographs look like well-lit "
                             "ones (RESULTS.md)")
    parser.add_argument("--zero-init-residual", action="store_true",
                        help="with --weights none, start every residual block as its shortcut alone (its last "
                             "batch normalization's scale at zero), so the network starts shallow (RESULTS.md)")
    parser.add_argument("--weights", default="imagenet",
                        help="imagenet (Keras' download), none, or a weights file (ResNet50 backbone or a saved model)")
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="train without augmentation")
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="augment without label-safe flips")
    parser.add_argument("--rotation", type=degrees, metavar="DEGREES",
                        help="turn training images by up to this many degrees either way (default: the recipe's "
                             "18, augment.ROTATION)")
    parser.add_argument("--strong-augment", action="store_true",
                        help="also scale, shift, shear, colour, invert, blur and add noise (augment.py)")
    parser.add_argument("--light-augment", action="store_true",
                        help="also relight half of the training images: dimmer overall, and a shadow falling "
                             "across the crop in a random direction (augment.py)")
    parser.add_argument("--mixup", type=beta_parameter, default=0.0, metavar="ALPHA",
                        help="blend each training image with another by a weight from Beta(ALPHA, ALPHA), and their "
                             "labels alike (0: off, the original; 0.2 is usual)")
    parser.add_argument("--cutmix", type=beta_parameter, default=0.0, metavar="ALPHA",
                        help="paste a box of another training image into each, its area from Beta(ALPHA, ALPHA), "
                             "the labels mixed by area (0: off, the original; 1 is usual); with --mixup, each image "
                             "gets one of the two")
    parser.add_argument("--teacher", action="append", metavar="MODEL",
                        help="distil: teach each training image a blend of its label and the mean answer of the "
                             "teachers, models saved by train.py that did not train on this run's validation "
                             "images (repeat the flag for an ensemble)")
    parser.add_argument("--teacher-weight", type=fraction, default=0.5,
                        help="with --teacher, the teachers' share of each target")
    parser.add_argument("--teacher-temperature", type=temperature, default=1.0,
                        help="with --teacher, soften (above 1) the teachers' answers as a softmax of logits / T")
    parser.add_argument("--consistent-teacher", action="store_true",
                        help="with --teacher, the teachers answer every augmented view the student trains on, "
                             "inside the training step, instead of each training image once as it is (consistent "
                             "teaching; each teacher adds its forward pass to every step)")
    parser.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                        help="learning rate: constant (the original), or one warm-up epoch then cosine decay")
    parser.add_argument("--no-mixed-precision", dest="mixed_precision", action="store_false",
                        help="on a GPU, train in float32 instead of mixed bfloat16 (float16 on GPUs without "
                             "bfloat16); CPUs always use float32")
    parser.add_argument("--no-xla", dest="xla", action="store_false",
                        help="on a GPU with TensorFlow, do not compile with XLA (it slows CPUs down; JAX always "
                             "compiles)")
    parser.add_argument("--steps-per-execution", type=checkpoint.positive_int, default=1,
                        help="training steps per call into the compiled function (fewer host round trips)")
    parser.add_argument("--backup-every", type=checkpoint.positive_int, default=1, metavar="N",
                        help="back the run up for --resume every N epochs; a backup (about 300 MB, 100 more for "
                             "each teacher with --consistent-teacher) can take longer than a whole epoch on a GPU")
    parser.add_argument("--output", default=checkpoint.DEFAULT_MODEL, help="where to write the best model (.h5)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run from its last epoch")
    args = parser.parse_args(argv)
    parser.set_defaults(**{name: None if name == "teacher" else NOT_GIVEN for name in vars(args)})  # append: a list
    args.given = {name for name, value in vars(parser.parse_args(argv)).items() if value not in (NOT_GIVEN, None)}
    if not args.augment and (args.rotation is not None or args.strong_augment or args.light_augment or args.mixup
                             or args.cutmix):
        parser.error("--rotation, --strong-augment, --light-augment, --mixup and --cutmix shape the augmentation "
                     "that --no-augment turns off")
    if args.zero_init_residual and args.weights != "none" and not args.resume:  # --resume reads --weights from the run
        parser.error("--zero-init-residual initializes a network from scratch: it needs --weights none")
    teaching_flags = {"teacher_weight", "teacher_temperature", "consistent_teacher"}
    if not (args.teacher or args.resume) and teaching_flags & args.given:
        parser.error("--teacher-weight, --teacher-temperature and --consistent-teacher need --teacher")
    if args.train_seed is None:
        args.train_seed = args.seed
    args.output = os.path.abspath(args.output)  # the same file whatever folder a resumed run starts from
    args.data_dir = args.data_dir and os.path.abspath(args.data_dir)
    args.fonts = args.fonts and os.path.abspath(args.fonts)
    args.teacher = args.teacher and [os.path.abspath(path) for path in args.teacher]
    return args


def settings(args):
    """What a run was asked to do: every flag's value."""
    return {name: value for name, value in vars(args).items() if name not in ("resume", "given")}


@dataclasses.dataclass
class Devices:
    """Where training runs: build and compile the model inside scope(); batches are per replica."""
    scope: object = contextlib.nullcontext
    replicas: int = 1
    process: int = 0
    processes: int = 1
    jit_compile: bool = False
    accelerator: str = ""  # "" on CPUs, else the kind of GPU or TPU
    bfloat16: bool = False  # whether the accelerator computes in bfloat16


def setup_devices(xla=True, mixed_precision=True):
    """The Devices in view, with the dtype policy set for them.

    TensorFlow: MirroredStrategy over several GPUs. JAX: DataParallel over every device of every
    process (keras.distribution.initialize reads the KERAS_DISTRIBUTION_* variables). Mixed precision
    on accelerators only: bfloat16 where the chip has it (NVIDIA compute capability 8.0 and newer,
    TPUs), else float16, for which Keras scales the loss.
    """
    import keras

    if keras.backend.backend() == "jax":
        found = jax_devices()
    elif keras.backend.backend() == "tensorflow":
        found = tensorflow_devices(xla)
    else:
        found = Devices()
    if found.accelerator and mixed_precision:
        keras.config.set_dtype_policy("mixed_bfloat16" if found.bfloat16 else "mixed_float16")
    return found


def jax_devices():
    import jax
    import keras

    if int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")) > 1:
        keras.distribution.initialize()
    devices = jax.devices()
    if len(devices) > 1:
        keras.distribution.set_distribution(keras.distribution.DataParallel(
            devices=keras.distribution.list_devices(), auto_shard_dataset=False))
    first = devices[0]
    capability = tuple(int(n) for n in str(getattr(first, "compute_capability", "0.0")).split(".")[:2])
    return Devices(replicas=len(devices), process=jax.process_index(), processes=jax.process_count(),
                   jit_compile=True, accelerator="" if first.platform == "cpu" else first.device_kind,
                   bfloat16=first.platform == "tpu" or capability >= (8, 0))


def tensorflow_devices(xla):
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    details = tf.config.experimental.get_device_details(gpus[0]) if gpus else {}
    return Devices(strategy.scope, strategy.num_replicas_in_sync, jit_compile=bool(gpus) and xla,
                   accelerator=details.get("device_name", "GPU") if gpus else "",
                   bfloat16=details.get("compute_capability", (0, 0)) >= (8, 0))


def process_shard(train_idx, paths, process, processes):
    """This process's equal share of the training images (every process must take as many steps)."""
    if processes == 1:
        return train_idx
    shard = train_idx[process::processes][: len(train_idx) // processes]
    checkpoint.write_json(os.path.join(checkpoint.SAVED_DIR, f"shard-{process}.json"), [paths[i] for i in shard])
    print(f"Process {process} of {processes}: training on {len(shard)} of {len(train_idx)} images")
    return shard


def learning_rate(args, steps_per_epoch):
    import keras

    if args.schedule == "constant":
        return args.learning_rate
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, (args.epochs - 1) * steps_per_epoch),
        warmup_target=args.learning_rate, warmup_steps=steps_per_epoch)


@dataclasses.dataclass
class TrainingData:
    """Decoded images of a dataset and their split (its file's contents in split)."""
    root: str
    images: np.ndarray
    labels: np.ndarray
    paths: list
    train_idx: np.ndarray
    val_idx: np.ndarray
    fingerprint: str  # of the files and the decoding settings


def load_data(args):
    """Decoded images and labels with a deterministic stratified split."""
    root = prepare.load(args, args.seed)
    entries = data.list_images(root, args.max_per_class)
    images, labels, paths = data.decode_images(root, entries, args.image_size, args.resize)
    train_idx, val_idx = data.stratified_split(labels, args.val_fraction, args.seed)
    if not len(val_idx):
        raise data.DatasetError("too few images for a validation set: every class needs at least 2")
    return TrainingData(root, images, labels, paths, train_idx, val_idx,
                        data.fingerprint(root, entries, args.image_size, args.resize))


def save_split(dataset, args):
    """saved/split.json: the relative paths of the training and validation images."""
    return data.save_split(dataset.paths, dataset.train_idx, dataset.val_idx, dataset.root, args.val_fraction,
                           args.seed)


class EpochTimer:
    """Wall time of each epoch, and of its training part (up to its last training step)."""

    def __init__(self):
        self.epoch_seconds, self.train_seconds = [], []

    def callback(self):
        import keras

        return keras.callbacks.LambdaCallback(on_epoch_begin=self.begin, on_train_batch_end=self.lap,
                                              on_epoch_end=self.end)

    def begin(self, epoch, logs=None):
        self.start = self.last_step = time.perf_counter()

    def lap(self, batch, logs=None):
        self.last_step = time.perf_counter()

    def end(self, epoch, logs=None):
        self.train_seconds.append(self.last_step - self.start)
        self.epoch_seconds.append(time.perf_counter() - self.start)

    def summary(self, n_train):
        median = lambda values: float(np.median(values)) if values else float("nan")
        return {"seconds_per_epoch": median(self.epoch_seconds),
                "train_images_per_s": n_train / median(self.train_seconds),
                "epochs_timed": len(self.epoch_seconds)}


class BestModelSaver:
    """Calls save(info) whenever validation accuracy improves, with that epoch's metrics in info."""

    def __init__(self, save, info, best_so_far=-1.0):
        self.save, self.info, self.best = save, info, best_so_far

    def callback(self):
        import keras

        return keras.callbacks.LambdaCallback(on_epoch_end=self.end)

    def end(self, epoch, logs=None):
        if logs["val_accuracy"] > self.best:
            self.best = logs["val_accuracy"]
            self.info["metrics"] = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
            self.save(self.info)


def previous_best(path):
    try:
        return checkpoint.read_info(path)["metrics"]["val_accuracy"]
    except (checkpoint.ModelError, KeyError):
        return -1.0


def history_rows(path=checkpoint.HISTORY_PATH):
    """(rows, header, number of damaged rows) of history.csv as written; a damaged row (a line cut short
    by a crash) is left out."""
    if not os.path.exists(path):
        return [], None, 0
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows, header = list(reader), reader.fieldnames  # the header is read lazily: inside, for an empty file
    complete = [row for row in rows if is_complete(row)]
    return complete, header, len(rows) - len(complete)


def is_complete(row):
    try:
        for value in row.values():
            float(value)
    except (TypeError, ValueError):  # a missing value is None, an extra one a list
        return False
    return True


def read_history(path=checkpoint.HISTORY_PATH):
    """The epochs of history.csv as numbers; damaged lines are skipped, with a word on stderr."""
    rows, _, damaged = history_rows(path)
    if damaged:
        print(f"Skipped {damaged} damaged lines of {path}", file=sys.stderr)
    return [{k: float(v) for k, v in row.items()} for row in rows]


def plot_history(history, about, imgs_dir=checkpoint.IMGS_DIR):
    """loss.png, val_loss.png, acc.png, val_acc.png and training.png (all curves) from history rows, each
    titled with about (the model and its data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    os.makedirs(imgs_dir, exist_ok=True)
    epochs = [int(row["epoch"]) + 1 for row in history]
    curves = {"loss": "training loss", "val_loss": "validation loss",
              "accuracy": "training accuracy", "val_accuracy": "validation accuracy"}
    files = {"loss": "loss.png", "val_loss": "val_loss.png", "accuracy": "acc.png", "val_accuracy": "val_acc.png"}
    for key, title in curves.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(epochs, [row[key] for row in history], marker=".")
        ax.set(title=f"{title}\n{about}", xlabel="epoch", ylabel=key.replace("val_", ""))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(imgs_dir, files[key]), dpi=100)
        plt.close(fig)
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.plot(epochs, [row[metric] for row in history], marker=".", label="training")
        ax.plot(epochs, [row[f"val_{metric}"] for row in history], marker=".", label="validation")
        ax.set(title=metric, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(about)
    fig.tight_layout()
    fig.savefig(os.path.join(imgs_dir, "training.png"), dpi=100)
    plt.close(fig)


def run_info(args, dataset, devices):
    """The model's JSON (checkpoint.py): what test.py needs, and how and on what the model was trained."""
    import keras

    backend = keras.backend.backend()
    training = settings(args)
    training.update(output=checkpoint.portable(args.output),
                    data_dir=args.data_dir and checkpoint.portable(args.data_dir),
                    teacher=args.teacher and [checkpoint.portable(path) for path in args.teacher])
    return {
        **data.model_inputs(args.image_size, args.resize),
        "preprocessing": "RGB uint8 pixels 0-255, resized by data.fit_image; "
                         + ("each image's contrast stretched to 0-255, then " if args.stretch_contrast else "")
                         + "ImageNet caffe preprocessing, as the model's first layers",
        "data": {"source": args.data, "dir": checkpoint.portable(dataset.root), "n_images": len(dataset.images),
                 "fingerprint": dataset.fingerprint},
        "split": {"path": checkpoint.portable(checkpoint.SPLIT_PATH), "seed": args.seed,
                  "val_fraction": args.val_fraction, "n_train": len(dataset.train_idx),
                  "n_val": len(dataset.val_idx)},
        "training": training,
        "versions": {"python": platform.python_version(), "keras": keras.__version__, "numpy": np.__version__,
                     backend: importlib.import_module(backend).__version__},
        "command": " ".join(["python", os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "devices": {"backend": backend, "replicas": devices.replicas, "processes": devices.processes,
                    "dtype_policy": keras.config.dtype_policy().name, "jit_compile": devices.jit_compile},
    }


def check_outputs(args):
    """Refuse, before any work, a run whose model, history or figures could not be written."""
    if os.path.splitext(args.output)[1].lower() != ".h5":
        raise checkpoint.UserError(f"--output {args.output}: give a file name ending in .h5")
    for folder in (os.path.dirname(os.path.abspath(args.output)), checkpoint.SAVED_DIR, checkpoint.IMGS_DIR):
        problem = checkpoint.unwritable(folder)
        if problem:
            raise checkpoint.UserError(problem)


@contextlib.contextmanager
def only_run_in(folder):
    """Hold folder for this process: a second train.py writing the same history, split and backup would
    spoil them, so it is refused at once (an OS lock, released however the process ends)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "train.lock"), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise checkpoint.UserError(f"another train.py (process {lock.read().strip() or '?'}) is training in "
                                       f"{folder}: wait for it, or give this run its own folder with "
                                       "CHARS74K_HOME=...") from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def resumed_run(args):
    """The interrupted run's record, its settings adopted into args: flags not given now keep the run's
    values, and a flag given with another value is refused, since the split, the inputs and the
    schedule of the epochs done depend on them. None if no run was recorded."""
    try:
        with open(RUN_PATH) as f:
            run = json.load(f)
        recorded = run["settings"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise checkpoint.UserError(f"{RUN_PATH} is damaged ({e}): start over without --resume") from None
    recorded = {**settings(parse_args([])), **recorded}  # a run recorded before a flag existed had its default
    changed = [f"--{name.replace('_', '-')} {getattr(args, name)} (the run has {value})"
               for name, value in recorded.items()
               if name in args.given and name not in DEVICE_FLAGS and getattr(args, name) != value]
    if changed:
        raise checkpoint.UserError(f"--resume continues the interrupted run as it began, but {', '.join(changed)}: "
                                   "give its flags or none, or start over without --resume")
    for name, value in recorded.items():
        if name not in args.given:
            setattr(args, name, value)
    return run


def start_or_resume(args, run, dataset):
    """Keep the backup and history of the run being resumed; else forget them and record this run."""
    if run and split_changed(dataset):
        raise data.DatasetError(f"the images in {dataset.root} changed since the interrupted run began, and its "
                                "split would now validate on images it trained on: start over without --resume")
    if args.resume and run is None and os.path.exists(os.path.join(checkpoint.BACKUP_DIR, "training_metadata.json")):
        return  # a backup from before runs were recorded: resumed as it is
    if args.resume and run:
        return
    if args.resume:
        print(f"Nothing to resume in {checkpoint.BACKUP_DIR}: starting from the first epoch")
    shutil.rmtree(checkpoint.BACKUP_DIR, ignore_errors=True)
    if os.path.exists(checkpoint.HISTORY_PATH):
        os.remove(checkpoint.HISTORY_PATH)
    checkpoint.write_json(RUN_PATH, {"settings": settings(args)})


def split_changed(dataset):
    """Whether the images now split otherwise than in saved/split.json, which the interrupted run wrote when it
    began: compared by name, so that a dataset copied or extracted again (new file times) resumes."""
    try:
        began = data.load_split()
        return (began["train"], began["val"]) != ([dataset.paths[i] for i in dataset.train_idx],
                                                  [dataset.paths[i] for i in dataset.val_idx])
    except (data.DatasetError, OSError, ValueError, KeyError):
        return True


def history_restored(trainer):
    """A callback for after BackupAndRestore: keep the history of the epochs the backup restored and no
    more, since the epochs after it are trained again (with --backup-every N, or when the last backup
    cannot be read and Keras falls back to the one before) and would otherwise appear twice."""
    import keras

    def trim(logs=None):
        restored = trainer._initial_epoch or 0  # where BackupAndRestore restarts
        rows, header, _ = history_rows()
        if len(rows) > restored:
            again = f"epoch {len(rows)} is" if len(rows) == restored + 1 else f"epochs {restored + 1}-{len(rows)} are"
            where = (f"Resuming after epoch {restored}, the last one backed up that could be read" if restored
                     else "No backup was made yet")
            print(f"{where}: {again} trained again (the best model so far stays unless they beat it)",
                  file=sys.stderr)
        if header:
            with checkpoint.atomic_path(checkpoint.HISTORY_PATH) as tmp, open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, header)
                writer.writeheader()
                writer.writerows(rows[:restored])

    return keras.callbacks.LambdaCallback(on_train_begin=trim)


@contextlib.contextmanager
def swapped_in(averaged):
    """The moving average of the weights in the model for a while (SwapEMAWeights swaps them in for validation
    the same way); nothing when averaged is None."""
    if averaged:
        averaged.on_test_begin()
    try:
        yield
    finally:
        if averaged:
            averaged.on_test_end()


def held_from_signals(save):
    """save(epoch, logs) with Ctrl-C and SIGTERM held back until it is done: Keras first copies the last
    backup to its second, then writes the new one, and a stop in the copy would leave the second cut short."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        return save

    def held(epoch, logs=None):
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            save(epoch, logs)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)  # a signal that came meanwhile arrives now

    return held


def every_nth_epoch(save, n):
    """save(epoch, logs) after every nth epoch (not specially after the last: Keras deletes the backup when
    training ends)."""
    def maybe_save(epoch, logs=None):
        if (epoch + 1) % n == 0:
            save(epoch, logs)

    return maybe_save


class Terminated(KeyboardInterrupt):
    """SIGTERM (sent by timeout, Docker, Slurm, systemd), raised where Ctrl-C raises KeyboardInterrupt."""


def raise_terminated(signum, frame):
    raise Terminated


def distilled_targets(args, dataset):
    """Each image's target for distillation (training images only): augment.taught of its label and the teachers'
    answers on it, as it is."""
    import augment
    import test as test_lib
    from keras import ops

    images, labels = dataset.images[dataset.train_idx], dataset.labels[dataset.train_idx]
    with without_distribution():
        teachers = checked_teachers(args, dataset, f"answering the {len(images)} training images")
        answers = [test_lib.predict(teacher, images) for teacher in teachers]
    taught = augment.taught(np.eye(data.NUM_CLASSES, dtype=np.float32)[labels], np.mean(answers, axis=0),
                            args.teacher_weight, args.teacher_temperature)
    targets = np.zeros((len(dataset.images), data.NUM_CLASSES), np.float32)  # rows of validation images unused
    targets[dataset.train_idx] = ops.convert_to_numpy(taught)
    return targets


def checked_teachers(args, dataset, task):
    """The --teacher models, loaded, each refused by check_teacher where it cannot teach this run; says what each
    will do (task)."""
    import model as model_lib

    teachers = []
    for path in args.teacher:
        teacher, info = model_lib.load_model(path)
        check_teacher(path, info, args, dataset)
        print(f"Teacher {path}: {task}")
        teachers.append(teacher)
    return teachers


@contextlib.contextmanager
def without_distribution():
    """Keras' distribution off (several JAX processes): each process wants the teachers' answers whole."""
    import keras

    distribution = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(distribution)


def check_teacher(path, info, args, dataset):
    """Refuse a teacher that is this run's own output, that takes other inputs or classes, or that trained on
    this run's validation images (it would pass their labels on)."""
    if os.path.abspath(path) == args.output:
        raise checkpoint.UserError(f"--teacher {path} is this run's --output, which training overwrites")
    if (info["image_size"], info["resize"], info["class_names"]) != (args.image_size, args.resize, data.CLASS_NAMES):
        raise checkpoint.UserError(f"--teacher {path} takes {info['image_size']} px images ({info['resize']}) of "
                                   f"{len(info['class_names'])} classes; this run {args.image_size} px ({args.resize}) "
                                   f"of {data.NUM_CLASSES}")
    if info["data"]["source"] != args.data:
        return  # rendered fonts and GoodImg photographs share file names, not images
    split_path = teacher_split(path, info)
    split = data.load_split(split_path)
    recorded = info["split"]
    if (split.get("seed"), split.get("val_fraction"), len(split.get("train", []))) != \
            (recorded["seed"], recorded["val_fraction"], recorded["n_train"]):
        raise checkpoint.UserError(f"--teacher {path}: {split_path} is not the split it trained on (another run "
                                   f"has replaced it): put its own in {checkpoint.split_beside(path)}")
    seen = {dataset.paths[i] for i in dataset.val_idx} & set(split["train"])
    if seen:
        raise checkpoint.UserError(f"--teacher {path} trained on {len(seen)} of this run's validation images "
                                   f"(first: {sorted(seen)[0]}): it would teach their labels")


def teacher_split(path, info):
    """The split a teacher trained on: <model>.split.json (shipped models), else the split file its JSON records,
    found from where the model lies now (the JSON records both paths relative to its project's folder)."""
    beside = checkpoint.split_beside(path)
    if os.path.exists(beside):
        return beside
    output, split = info["training"].get("output"), info["split"].get("path")
    if output and split and not os.path.isabs(output) and not output.startswith(os.pardir):
        project = os.path.join(os.path.dirname(path), os.path.relpath(os.curdir, os.path.dirname(output) or os.curdir))
        if os.path.exists(os.path.join(project, split)):
            return os.path.normpath(os.path.join(project, split))
    raise checkpoint.UserError(f"--teacher {path}: its split, which says which images it trained on, is not where "
                               f"its JSON says (put a copy in {beside})")


def train(args):
    run = resumed_run(args) if args.resume else None  # before anything reads the flags it may set
    check_outputs(args)
    with only_run_in(checkpoint.SAVED_DIR):
        return train_alone(args, run)


def train_alone(args, run):
    keras = checkpoint.import_keras()
    import augment
    import model as model_lib

    if args.rotation is None:  # the model's JSON records the rotation it trained with, not "the default"
        args.rotation = augment.ROTATION if args.augment else 0
    keras.utils.set_random_seed(args.train_seed)
    devices = setup_devices(args.xla, args.mixed_precision)
    with devices.scope():
        model = model_lib.build_model(image_size=args.image_size, weights=args.weights,
                                      stretch_contrast=args.stretch_contrast,
                                      zero_init_residual=args.zero_init_residual)
    dataset = load_data(args)
    if args.batch_size > len(dataset.train_idx):
        raise data.DatasetError(f"--batch-size {args.batch_size} is larger than the {len(dataset.train_idx)} "
                                "training images")
    # The teachers are checked against the splits they trained on before this run's split replaces theirs.
    targets = [distilled_targets(args, dataset)] if args.teacher and not args.consistent_teacher else []
    with devices.scope():
        teachers = (checked_teachers(args, dataset, "answering each augmented view of the training images")
                    if args.teacher and args.consistent_teacher else [])
        trainer = augment.Augmented(model, augment=args.augment, flip=args.flip, strong=args.strong_augment,
                                    light=args.light_augment, mixup=args.mixup, cutmix=args.cutmix,
                                    rotation=args.rotation, seed=args.train_seed, teachers=teachers,
                                    teacher_weight=args.teacher_weight, teacher_temperature=args.teacher_temperature)
    start_or_resume(args, run, dataset)
    save_split(dataset, args)
    print(f"Training on {len(dataset.train_idx)} images, validating on {len(dataset.val_idx)} "
          f"({len(np.unique(dataset.labels))} classes)")
    train_idx = process_shard(dataset.train_idx, dataset.paths, devices.process, devices.processes)
    batch_size = args.batch_size * devices.replicas // devices.processes  # this process's part of the global batch

    steps_per_epoch = -(-len(train_idx) // batch_size)
    with devices.scope():
        model_lib.compile_model(trainer, learning_rate(args, steps_per_epoch), jit_compile=devices.jit_compile,
                                steps_per_execution=args.steps_per_execution, label_smoothing=args.label_smoothing,
                                weight_decay=args.weight_decay, ema=args.ema, clip_norm=args.clip_norm)

    timer = EpochTimer()
    averaged = keras.callbacks.SwapEMAWeights() if args.ema else None  # validation sees the average

    def save(info):
        with swapped_in(averaged):
            model_lib.save_model(model, args.output, info)

    saver = BestModelSaver(save, run_info(args, dataset, devices), previous_best(args.output) if args.resume else -1.0)
    backup = keras.callbacks.BackupAndRestore(checkpoint.BACKUP_DIR, double_checkpoint=True)
    # It restores first, but backs an epoch up last, after the epoch's model and history row: a stop in
    # between then resumes at that epoch again instead of past an epoch whose row or model is missing.
    save_backup, backup.on_epoch_end = backup.on_epoch_end, lambda epoch, logs=None: None
    callbacks = [
        backup,
        *([averaged] if averaged else []),
        history_restored(trainer),
        saver.callback(),
        keras.callbacks.CSVLogger(checkpoint.HISTORY_PATH, append=True),
        timer.callback(),
    ]
    if keras.backend.backend() == "tensorflow":  # it writes through tf.summary
        callbacks.append(keras.callbacks.TensorBoard(checkpoint.LOG_DIR, write_graph=False, profile_batch=0))
    callbacks.append(keras.callbacks.LambdaCallback(
        on_epoch_end=held_from_signals(every_nth_epoch(save_backup, args.backup_every))))
    stopped_by = None
    train_set = dataset.images[train_idx], dataset.labels[train_idx], *(rows[train_idx] for rows in targets)
    val_set = dataset.images[dataset.val_idx], dataset.labels[dataset.val_idx]
    previous_handler = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        trainer.fit(**data.fit_arguments(train_set, batch_size, val_set, args.train_seed), epochs=args.epochs,
                    callbacks=callbacks, verbose="auto" if sys.stdout.isatty() else 2)  # a line an epoch in a log
    except KeyboardInterrupt as e:
        stopped_by = signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    about = f"{os.path.basename(args.output)} trained on {data.dataset_name(dataset.root)}"
    return finish(args.output, timer.summary(len(train_idx)), about, stopped_by)


def finish(output, timing, about, stopped_by=None):
    """Figures, the timing in the model's JSON and a summary, also after Ctrl-C or SIGTERM; the exit status."""
    history = read_history() if os.path.exists(checkpoint.HISTORY_PATH) else []
    if history:
        plot_history(history, about)
    if os.path.exists(output):
        checkpoint.write_info(output, {**checkpoint.read_info(output), "timing": timing})
    summarize(history, timing, output)
    if stopped_by:
        reason = "Interrupted" if stopped_by == signal.SIGINT else f"Stopped by {signal.Signals(stopped_by).name}"
        print(f"{reason}. The best model so far is in {output}; continue with `python train.py --resume`",
              file=sys.stderr)
        return 128 + stopped_by
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
    print(f"Model: {output}; history: {checkpoint.HISTORY_PATH}; "
          f"curves: {os.path.join(checkpoint.IMGS_DIR, 'training.png')}")


def main(argv=None):
    args = parse_args(argv)
    return checkpoint.run_script(lambda: train(args))


if __name__ == "__main__":
    sys.exit(main())
