"""Export a trained model for serving: a LiteRT .tflite copy and a TensorFlow SavedModel (TF Serving).

    python export.py --check                          # the default model: model_new.h5, else the shipped one
    python export.py --model saved/model/other.h5 --float32
    python export.py --float16 saved/model/chars74k_resnet50_fp16.h5   # a compact copy to ship

Writes <name>.tflite beside the model, recorded (with its sha256) in the model's <name>.json, and
saved/export/<name>/ (SavedModel, signature "serve"). The LiteRT copy stores its weights as int8 (dynamic
range quantization: 4x smaller than float32 and faster on CPUs, computing in float) unless --float32.
--check predicts the validation images of the model's own split with the Keras model and the LiteRT
copy, reports how often they give the same class, and records that in the JSON.

test.py and app.py run a model's LiteRT copy, when it is there and unchanged, with the LiteRT runtime
(ai-edge-litert) without importing TensorFlow, so a prediction starts in a fraction of a second.
"""

import argparse
import os
import shutil
import sys

import numpy as np

import checkpoint
import data


def export(model_path, float32=False, export_dir=checkpoint.EXPORT_DIR):
    """Write <name>.tflite beside the model (recorded in its JSON) and the SavedModel in export_dir/<name>;
    return both paths."""
    import tensorflow as tf

    import model as model_lib

    model, info = model_lib.load_model(model_path)
    name = os.path.splitext(os.path.basename(model_path))[0]
    tflite_path = os.path.splitext(model_path)[0] + ".tflite"
    saved_model_dir = os.path.join(export_dir, name)
    quantization = {} if float32 else {"optimizations": [tf.lite.Optimize.DEFAULT]}
    with checkpoint.silenced_stderr():  # the converter prints pages of MLIR notices
        model.export(saved_model_dir, format="tf_saved_model", verbose=False)
        with checkpoint.atomic_path(tflite_path) as tmp:
            model.export(tmp, format="litert", verbose=False, **quantization)
    checkpoint.write_info(model_path, {**info, "litert": {
        "file": os.path.basename(tflite_path), "sha256": checkpoint.sha256(tflite_path),
        "weights": "float32" if float32 else "int8"}})
    return tflite_path, saved_model_dir


def float16_copy(model_path, output):
    """Copy a Keras .h5 with its weights stored as float16 (half the size), with its JSON and split.

    Keras casts the weights back to float32 when it loads the file, so the copy loads like any
    model saved by train.py.
    """
    import h5py

    def save(tmp):
        with h5py.File(model_path, "r") as source, h5py.File(tmp, "w") as target:
            def copy(name, item):
                if isinstance(item, h5py.Dataset):
                    values = item[()]
                    target.create_dataset(name, data=values.astype(np.float16) if values.dtype == np.float32
                                          else values)
                else:
                    target.require_group(name)
                target[name].attrs.update(item.attrs)

            target.attrs.update(source.attrs)
            source.visititems(copy)

    info = checkpoint.read_info(model_path)
    kept = {key: value for key, value in info.items() if key != "litert"}  # the source's LiteRT copy is not the copy's
    checkpoint.saved_with_info(save, output, {**kept, "weights_stored_as": "float16",
                                              "exported_from": checkpoint.portable(model_path)})
    split_path = checkpoint.split_of(model_path)
    if os.path.exists(split_path):  # a shipped model keeps the split it was measured on
        shutil.copy(split_path, os.path.splitext(output)[0] + ".split.json")
    return output


def agreement(model_path, tflite_path, validation):
    """How often the Keras model and its LiteRT copy give the same class on (root, entries) of labelled images."""
    import model as model_lib

    root, entries = validation
    keras_model, info = model_lib.load_model(model_path)
    images, labels, _ = data.decode_images(root, entries, info["image_size"], info["resize"])
    images = images.astype(np.float32)
    expected = keras_model.predict(images, batch_size=64, verbose=0)
    actual = checkpoint.load_litert(tflite_path)[0].predict(images)
    return {"n": len(images), "same_class": float(np.mean(expected.argmax(1) == actual.argmax(1))),
            "max_probability_difference": float(np.abs(expected - actual).max()),
            "keras_accuracy": float(np.mean(expected.argmax(1) == labels)),
            "litert_accuracy": float(np.mean(actual.argmax(1) == labels))}


def export_and_check(args):
    """Write the float16 copy, LiteRT and SavedModel files asked for, and compare LiteRT with Keras."""
    model_path, why = checkpoint.choose_model(args.model)
    print(f"Model: {checkpoint.shown_path(model_path)} ({why})")
    if args.check:  # the data first: a missing dataset stops before any export
        split_path = checkpoint.split_of(model_path)
        validation = data.split_set(split_path, args.data_dir)
    checkpoint.import_keras()
    if args.float16:
        float16_copy(model_path, args.float16)
        print(f"float16 copy: {args.float16} ({os.path.getsize(args.float16) / 1e6:.1f} MB)")
    tflite_path, saved_model_dir = export(model_path, args.float32)
    print(f"LiteRT: {tflite_path} ({os.path.getsize(tflite_path) / 1e6:.1f} MB)")
    print(f"SavedModel: {saved_model_dir}")
    if args.check:
        result = agreement(model_path, tflite_path, validation)
        info = checkpoint.read_info(model_path)
        info["litert"]["agreement"] = {**result, "split": checkpoint.portable(split_path)}
        checkpoint.write_info(model_path, info)
        print(f"On the {result['n']} validation images of {split_path} in {validation[0]}, LiteRT gives the Keras "
              f"model's class for {result['same_class']:.2%} (largest probability difference "
              f"{result['max_probability_difference']:.2e}; accuracy Keras {result['keras_accuracy']:.2%}, "
              f"LiteRT {result['litert_accuracy']:.2%})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="default: saved/model/model_new.h5, else the shipped model")
    parser.add_argument("--float32", action="store_true",
                        help="keep the LiteRT copy's weights in float32 (exact; 4x larger than int8)")
    parser.add_argument("--check", action="store_true", help="compare LiteRT and Keras on the validation images")
    parser.add_argument("--data-dir", help="the dataset for --check (default: the one its split was made from)")
    parser.add_argument("--float16", metavar="OUTPUT.h5",
                        help="also write a copy of the .h5 with float16 weights (half the size), as shipped models are")
    args = parser.parse_args(argv)
    return checkpoint.run_script(lambda: export_and_check(args))


if __name__ == "__main__":
    sys.exit(main())
