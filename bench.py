"""Benchmark training and inference against the original project's pipeline, on the real GoodImg.

    python bench.py                                   # dataset at English/ (or --data-dir), medians of 3
    python bench.py --data-dir ../shared/chars74k/English --json
    python bench.py --steps 10 --repeats 2            # a quick look

Training (each pipeline in its own process, same ResNet50, same batch size, from scratch, trained as
train.py trains on the devices in view: mixed precision and XLA on accelerators):
  project   train.py's: the decoded images in memory (TensorFlow: tf.data with prefetch; other backends:
            the arrays in the backend's memory, on the accelerator where there is one), augmentation
            and the label-safe flip inside the compiled step (augment.py)
  baseline  the original's: on TensorFlow, keras.utils.image_dataset_from_directory decoding and
            resizing the PNGs every epoch, no cache, no prefetch; on other backends (no tf.data),
            model.fit on host arrays; augmentation layers inside the model in both
Each reports steady-state images/s (medians over --repeats timed runs of --steps steps, after a
warm-up run) and its peak memory. Inference: Keras batch throughput of a saved model, LiteRT batch
throughput, and the cold latency of one `python test.py -img ...` process (LiteRT and Keras), against
the original's way (keras.models.load_model of the .h5 and model.predict on one image).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import checkpoint
import data
import prepare

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 30
REPEATS = 3
BATCH_SIZE = 32
CLI_RUNS = 5

ORIGINAL_PREDICT = """
import sys, numpy as np, keras
from PIL import Image
sys.path.insert(0, {here!r}); import model  # registers the preprocessing layer the .h5 refers to
m = keras.models.load_model({model!r})
img = np.asarray(Image.open({image!r}).convert("RGB").resize(({size}, {size})), dtype=np.float32)
print(int(m.predict(img[None], verbose=0).argmax()))
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="the dataset (default: English/)")
    parser.add_argument("--max-per-class", type=int, help="benchmark on a subset")
    parser.add_argument("--steps", type=int, default=STEPS, help="training steps per timed run")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed runs of each measurement")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--image-size", type=int, default=data.IMAGE_SIZE)
    parser.add_argument("--steps-per-execution", type=int, default=1, help="as train.py's")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--training-only", action="store_true",
                        help="skip the inference measurements (they export with TensorFlow)")
    parser.add_argument("--worker", choices=("project", "baseline"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def peak_memory_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def decoded(args, root, resize=data.DEFAULT_RESIZE):
    entries = data.list_images(root, args.max_per_class, log=lambda m: None)
    images, labels, _ = data.decode_images(root, entries, args.image_size, resize, log=lambda m: None, progress=False)
    return images, labels


def project_pipeline(args, root, classifier):
    import augment

    return augment.Augmented(classifier), data.fit_arguments(decoded(args, root), args.batch_size)


def baseline_pipeline(args, root, classifier):
    """The original: augmentation inside the model; decoding and resizing the PNGs every epoch, no
    prefetch (TensorFlow), or host arrays (other backends)."""
    import keras

    augmented = keras.Sequential([keras.Input(classifier.input_shape[1:]), keras.layers.RandomRotation(0.05),
                                  keras.layers.RandomContrast(0.2), keras.layers.RandomFlip("horizontal"), classifier])
    if keras.backend.backend() != "tensorflow":
        images, labels = decoded(args, root, resize="stretch")  # as image_dataset_from_directory resizes
        return augmented, {"x": images.astype("float32"), "y": labels, "batch_size": args.batch_size, "shuffle": True}
    if args.max_per_class:
        raise SystemExit("the baseline reads whole folders: run it without --max-per-class")
    ds = keras.utils.image_dataset_from_directory(root, class_names=data.CLASS_NAMES, image_size=(args.image_size,) * 2,
                                                  batch_size=args.batch_size, seed=data.SEED, verbose=False)
    return augmented, {"x": ds.repeat()}


def compiled_pipeline(args, pipeline, root, **compile_options):
    """(model, fit arguments) of one pipeline: a fresh ResNet50 on the devices in view, compiled as
    train.py compiles it (compile_options override)."""
    import model as model_lib
    import train

    devices = train.setup_devices()
    with devices.scope():
        classifier = model_lib.build_model(image_size=args.image_size, weights="none")
        model, fit_arguments = (project_pipeline if pipeline == "project" else baseline_pipeline)(args, root, classifier)
        options = {"jit_compile": devices.jit_compile, "steps_per_execution": args.steps_per_execution}
        model_lib.compile_model(model, 1e-3, **{**options, **compile_options})
    return model, fit_arguments


def fit_timed(model, fit_arguments, epochs, steps, callbacks=()):
    """Wall seconds of each epoch of one fit (a new fit per epoch would also time tf.data's start-up)."""
    import keras

    seconds = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    model.fit(**fit_arguments, epochs=epochs, steps_per_epoch=steps, callbacks=[Timer(), *callbacks], verbose=0)
    return seconds


def train_worker(args):
    """Runs in its own process: steady-state training images/s of one pipeline, and peak memory."""
    model, fit_arguments = compiled_pipeline(args, args.worker, prepare.find_dataset(args.data_dir))
    seconds = fit_timed(model, fit_arguments, args.repeats + 1, args.steps)
    rates = [args.steps * args.batch_size / s for s in seconds[1:]]  # the first run warms up (tracing)
    print(json.dumps({"images_per_s": statistics.median(rates), "runs": rates, "peak_memory_mb": peak_memory_mb()}))


def run_worker(args, pipeline):
    command = [sys.executable, os.path.abspath(__file__), "--worker", pipeline, "--steps", str(args.steps),
               "--repeats", str(args.repeats), "--batch-size", str(args.batch_size),
               "--image-size", str(args.image_size), "--steps-per-execution", str(args.steps_per_execution)]
    command += ["--data-dir", args.data_dir] if args.data_dir else []
    command += ["--max-per-class", str(args.max_per_class)] if args.max_per_class else []
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the {pipeline} benchmark failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def timed(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def inference(args, root, workdir):
    """Batch throughput (Keras, LiteRT) and cold CLI latency (LiteRT, Keras, the original's way)."""
    import numpy as np

    import export
    import model as model_lib

    model_path = os.path.join(workdir, "model.h5")
    model = model_lib.build_model(image_size=args.image_size, weights="none")
    model_lib.save_model(model, model_path, data.model_inputs(args.image_size))
    tflite_path, _ = export.export(model_path, export_dir=workdir)
    entries = data.list_images(root, args.max_per_class, log=lambda m: None)[:1024]
    images = data.decode_images(root, entries, args.image_size, log=lambda m: None, progress=False)[0].astype(np.float32)
    keras_model = model_lib.load_model(model_path)[0]
    keras_model.predict(images[:64], verbose=0)  # trace once
    litert = checkpoint.load_litert(tflite_path)[0]
    image = os.path.abspath(os.path.join(root, entries[0][0]))

    def cli(*command):
        return timed(lambda: subprocess.run(command, check=True, capture_output=True, cwd=workdir), CLI_RUNS)

    return {
        "infer_images_per_s": len(images) / timed(lambda: keras_model.predict(images, batch_size=64, verbose=0),
                                                  args.repeats),
        "litert_infer_images_per_s": len(images) / timed(lambda: litert.predict(images), args.repeats),
        "cli_latency_s": cli(sys.executable, os.path.join(HERE, "test.py"), "-img", image, "--model", tflite_path),
        "cli_latency_keras_s": cli(sys.executable, os.path.join(HERE, "test.py"), "-img", image, "--model", model_path,
                                   "--keras"),
        "baseline_cli_latency_s": cli(sys.executable, "-c", ORIGINAL_PREDICT.format(
            here=HERE, model=model_path, image=image, size=args.image_size)),
        "tflite_mb": os.path.getsize(tflite_path) / 1e6,
    }


def devices():
    import keras

    found = keras.distribution.list_devices()
    return f"Keras {keras.backend.backend()} backend on {len(found)} x {found[0]}, {os.cpu_count()} CPU cores"


def main(argv=None):
    args = parse_args(argv)
    checkpoint.import_keras()
    if args.worker:
        return train_worker(args)
    root = prepare.find_dataset(args.data_dir)
    project = run_worker(args, "project")
    baseline = run_worker(args, "baseline")
    n_train = round(len(data.list_images(root, args.max_per_class, log=lambda m: None)) * (1 - data.VAL_FRACTION))
    infer = {}
    if not args.training_only:
        with tempfile.TemporaryDirectory() as workdir:
            infer = inference(args, root, workdir)
    result = {
        "train_images_per_s": project["images_per_s"],
        "baseline_train_images_per_s": baseline["images_per_s"],
        "train_speedup": project["images_per_s"] / baseline["images_per_s"],
        "seconds_per_epoch": n_train / project["images_per_s"],
        "baseline_seconds_per_epoch": n_train / baseline["images_per_s"],
        "peak_memory_mb": project["peak_memory_mb"],
        "baseline_peak_memory_mb": baseline["peak_memory_mb"],
        "train_runs": project["runs"], "baseline_train_runs": baseline["runs"],
        **infer,
        "batch_size": args.batch_size, "image_size": args.image_size, "steps": args.steps, "repeats": args.repeats,
        "device": devices(),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"Device: {result['device']}; batch {args.batch_size}, {args.image_size}x{args.image_size}, "
          f"medians of {args.repeats} runs of {args.steps} steps")
    print(f"Training   project {result['train_images_per_s']:.1f} images/s ({result['seconds_per_epoch']:.0f} s/epoch, "
          f"{result['peak_memory_mb']:.0f} MB peak)  baseline {result['baseline_train_images_per_s']:.1f} images/s "
          f"({result['baseline_seconds_per_epoch']:.0f} s/epoch, {result['baseline_peak_memory_mb']:.0f} MB peak)  "
          f"speed-up {result['train_speedup']:.2f}x")
    if args.training_only:
        return 0
    print(f"Inference  Keras {result['infer_images_per_s']:.0f} images/s, LiteRT {result['litert_infer_images_per_s']:.0f} "
          f"images/s")
    print(f"CLI        test.py with .tflite {result['cli_latency_s']:.2f} s, with .h5 {result['cli_latency_keras_s']:.2f} s, "
          f"original way {result['baseline_cli_latency_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
