"""Where the time of one training step goes, from TensorFlow's profiler: what a faster pipeline can win.

    python bench/profile_step.py --data-dir ../shared/chars74k/English
    python bench/profile_step.py --pipeline project --steps 10 --batch-size 64
    python bench/profile_step.py --pipeline project --xla        # or --steps-per-execution 8

Each pipeline (bench.py's project and baseline: same ResNet50, same batch size, from scratch) trains
three epochs of --steps steps in one fit: a warm-up, a timed one and one under tf.profiler. The
TensorFlow ops of the profiled steps are summed by kind: convolutions (forward and both gradients),
batch normalization, the Adam update, augmentation inside the model (the baseline's) and the rest.
The convolutions are the same work in both pipelines, so their share of the baseline's op time
bounds the speed-up that any change of pipeline can give.
"""

import argparse
import collections
import glob
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bench  # noqa: E402
import checkpoint  # noqa: E402
import data  # noqa: E402
import prepare  # noqa: E402

STEPS = 20
KINDS = ("convolution", "batch normalization", "Adam update", "augmentation in the model", "other")


def kind_of(op_name):
    """op_name is 'scope/.../name:OpType' as the profiler records it; Keras may suffix scopes with _1."""
    scope, _, op_type = op_name.rpartition(":")
    if "Conv2D" in op_type:
        return "convolution"
    if re.search(r"(^|/)adam(_\d+)?/", scope):
        return "Adam update"
    if re.search(r"_bn(_\d+)?/", scope):
        return "batch normalization"
    if re.search(r"(^|/)random_", scope):
        return "augmentation in the model"
    return "other"


def op_seconds_by_kind(logdir):
    """Seconds spent in TensorFlow ops, by kind, over the profiled steps (TensorFlow's compute threads)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1], "rb") as f:
        space.ParseFromString(f.read())
    host = next(plane for plane in space.planes if plane.name == "/host:CPU")
    seconds = collections.Counter({kind: 0.0 for kind in KINDS})
    for line in host.lines:
        if not line.name.startswith("tf_Compute"):
            continue
        events = sorted((e.offset_ps, e.duration_ps, host.event_metadata[e.metadata_id].name)
                        for e in line.events if e.duration_ps)  # without markers such as MemoryAllocation
        for (start, duration, name), following in zip(events, events[1:] + [(float("inf"), 0, "")]):
            encloses_the_next = following[0] < start + duration
            if ":" in name and "::" not in name and not encloses_the_next:  # an op, not the executor's own events
                seconds[kind_of(name)] += duration / 1e12
    return seconds


def profile_epoch(profiled, logdir):
    """A callback that traces epoch number `profiled` with tf.profiler into logdir."""
    import keras
    import tensorflow as tf

    return keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: tf.profiler.experimental.start(logdir) if epoch == profiled else None,
        on_epoch_end=lambda epoch, logs: tf.profiler.experimental.stop() if epoch == profiled else None)


def profile(args, pipeline, root):
    """(seconds per step unprofiled, {kind: op seconds per step}): three epochs of --steps steps in one
    fit: warm-up, timed, profiled."""
    model, ds = bench.compiled_pipeline(args, pipeline, root, jit_compile=args.xla,
                                        steps_per_execution=args.steps_per_execution)
    with tempfile.TemporaryDirectory() as logdir:
        seconds = bench.fit_timed(model, ds, 3, args.steps, [profile_epoch(2, logdir)])
        op_seconds = op_seconds_by_kind(logdir)
    return seconds[1] / args.steps, {kind: s / args.steps for kind, s in op_seconds.items()}


def report(pipeline, batch_size, step_seconds, per_step):
    print(f"\n{pipeline}: {step_seconds * 1000:.0f} ms per step unprofiled ({batch_size / step_seconds:.1f} images/s)")
    total = sum(per_step.values())
    if not per_step["convolution"]:
        print("  no TensorFlow convolution ops in the trace: with --xla the step runs as one compiled program")
        return
    print(f"  ops {total * 1000:.0f} ms per step profiled:")
    for kind in KINDS:
        print(f"  {kind:<27} {per_step[kind] * 1000:7.0f} ms  {per_step[kind] / total:6.1%}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="the dataset (default: English/)")
    parser.add_argument("--pipeline", choices=("project", "baseline", "both"), default="both")
    parser.add_argument("--steps", type=int, default=STEPS, help="profiled steps")
    parser.add_argument("--batch-size", type=int, default=bench.BATCH_SIZE)
    parser.add_argument("--image-size", type=int, default=data.IMAGE_SIZE)
    parser.add_argument("--xla", action="store_true", help="compile the training step with XLA (jit_compile)")
    parser.add_argument("--steps-per-execution", type=int, default=1, help="Keras steps_per_execution")
    args = parser.parse_args()
    args.max_per_class = None
    checkpoint.import_keras()
    root = prepare.find_dataset(args.data_dir)
    results = {}
    for pipeline in ("project", "baseline") if args.pipeline == "both" else (args.pipeline,):
        results[pipeline] = profile(args, pipeline, root)
        report(pipeline, args.batch_size, *results[pipeline])
    if "baseline" in results and results["baseline"][1]["convolution"]:
        step_seconds, per_step = results["baseline"]
        conv_share = per_step["convolution"] / sum(per_step.values())
        print(f"\nConvolutions take {conv_share:.1%} of the baseline's op time: with everything else free, "
              f"a pipeline could be at most {1 / conv_share:.2f}x the baseline.")


if __name__ == "__main__":
    main()
