"""How long a training step's gradients are: the global norm of the loss gradient of a saved model, batch by
batch over its training images (training mode, no augmentation), to see what --clip-norm X clips.

    python bench/gradient_norms.py --model saved/model/model_new.h5 --data-dir ../shared/chars74k/English

The batches are drawn with a fixed seed from the training images of the model's split (as test.py finds
it), at its image size and resize mode, with its label smoothing. TensorFlow computes the gradients
(Keras has no backend-neutral gradient call).
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import checkpoint  # noqa: E402
import data  # noqa: E402
import model as model_lib  # noqa: E402


def training_images(split_path, info, data_dir):
    """The decoded training images and labels of the model's split (log lines on stderr)."""
    root, entries = data.split_set(split_path, data_dir, part="train")
    images, labels, _ = data.decode_images(root, entries, info["image_size"], info["resize"], progress=False,
                                           log=lambda message: print(message, file=sys.stderr))
    return images, labels


def gradient_norms(net, images, labels, batch_size, batches, label_smoothing=0.0, seed=0):
    """The global norm of the training loss's gradient on each of `batches` random batches."""
    import tensorflow as tf

    if len(labels) < batch_size:
        raise SystemExit(f"error: --batch-size {batch_size} is more than the {len(labels)} training images")
    loss_of = model_lib.crossentropy(label_smoothing)
    order = np.random.default_rng(seed).permutation(len(labels))
    norms = []
    for start in range(0, min(batches * batch_size, len(order) - batch_size + 1), batch_size):
        pick = order[start:start + batch_size]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_of(labels[pick], net(images[pick].astype(np.float32), training=True)))
        norms.append(float(tf.linalg.global_norm(tape.gradient(loss, net.trainable_variables))))
    return np.array(norms)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model saved by train.py")
    parser.add_argument("--data-dir", help="the GoodImg set it trained on (default: where its split was made)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    keras = checkpoint.import_keras()
    if keras.backend.backend() != "tensorflow":
        raise SystemExit("error: bench/gradient_norms.py computes gradients with TensorFlow: KERAS_BACKEND=tensorflow")
    net, info = model_lib.load_model(args.model)
    images, labels = training_images(checkpoint.split_of(args.model), info, args.data_dir)
    norms = gradient_norms(net, images, labels, args.batch_size, args.batches,
                           info["training"].get("label_smoothing", 0.0))
    summary = {"model": args.model, "batches": len(norms), "batch_size": args.batch_size,
               "median": float(np.median(norms)), "min": float(norms.min()), "max": float(norms.max()),
               "share_above_1": float(np.mean(norms > 1))}
    print(json.dumps(summary) if args.json else
          f"{args.model}: global gradient norm over {len(norms)} batches of {args.batch_size}: median "
          f"{summary['median']:.3g}, min {summary['min']:.3g}, max {summary['max']:.3g}; above 1 in "
          f"{summary['share_above_1']:.0%} of batches")


if __name__ == "__main__":
    main()
