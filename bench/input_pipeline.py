"""How fast each input pipeline alone delivers batches, with no model: what bench.py's speed-up can be at most.

    python bench/input_pipeline.py --data-dir ../shared/chars74k/English

project:  decoded cache -> tf.data shuffle, batch, prefetch (data.make_dataset; the augmentation runs in
          the training step, augment.py)
baseline: image_dataset_from_directory (decodes and resizes the PNGs), then the original's
          augmentation layers applied to each batch, as they run inside its model
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import checkpoint  # noqa: E402
import data  # noqa: E402
import prepare  # noqa: E402

BATCHES = 60


def images_per_s(batches, batch_size, work=lambda batch: None):
    iterator = iter(batches)
    work(next(iterator))  # the first batch builds the pipeline
    start = time.perf_counter()
    for _ in range(BATCHES):
        work(next(iterator))
    return BATCHES * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    keras = checkpoint.import_keras()
    root = prepare.find_dataset(args.data_dir)
    images, labels, _ = data.decode_images(root, data.list_images(root), progress=False)
    project = data.make_dataset(images, labels, args.batch_size, training=True).repeat()
    baseline = keras.utils.image_dataset_from_directory(
        root, class_names=data.CLASS_NAMES, image_size=(data.IMAGE_SIZE,) * 2, batch_size=args.batch_size,
        seed=data.SEED, verbose=False).repeat()
    augment = keras.Sequential([keras.layers.RandomRotation(0.05), keras.layers.RandomContrast(0.2),
                                keras.layers.RandomFlip("horizontal")])
    print(f"project pipeline: {images_per_s(project, args.batch_size):.0f} images/s")
    print(f"baseline decoding and resizing: {images_per_s(baseline, args.batch_size):.0f} images/s")
    print(f"baseline decoding, resizing and in-model augmentation: "
          f"{images_per_s(baseline, args.batch_size, lambda b: augment(b[0], training=True)):.0f} images/s")


if __name__ == "__main__":
    main()
