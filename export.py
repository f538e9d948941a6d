"""Export a trained model for serving: a TensorFlow SavedModel (TF Serving) and a LiteRT .tflite file.

    python export.py                                  # saved/model/model_new.h5
    python export.py --model saved/model/other.h5 --check
    python export.py --float16 saved/model/chars74k_resnet50_fp16.h5   # a compact copy to ship
    python test.py -img /Sample008/img008-00019.png --model saved/model/model_new.tflite

Writes saved/model/<name>.tflite beside the .h5 (both use <name>.json) and saved/export/<name>/
(SavedModel, signature "serve"). --check predicts the validation images of saved/split.json with
both the Keras model and the LiteRT file and reports how often they agree.

test.py runs .tflite files with the LiteRT runtime (ai-edge-litert) through LiteRTModel below,
without importing TensorFlow, so a prediction starts in a fraction of a second.
"""

import argparse
import os
import shutil
import sys

import numpy as np

import data

EXPORT_DIR = os.path.join(data.SAVED_DIR, "export")


class LiteRTModel:
    """A .tflite model run by the LiteRT interpreter, with Keras' predict(images, batch_size) interface."""

    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

        try:
            with data.silenced_stderr():  # LiteRT announces its XNNPACK delegate on stderr
                self.interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise data.ModelError(f"cannot load {path} as a LiteRT model: {str(e).splitlines()[0]}") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_shape = tuple(int(d) for d in self.input["shape"][1:])
        self.num_outputs = int(self.output["shape"][-1])

    def predict(self, images, batch_size=64, verbose=0):
        results = []
        for start in range(0, len(images), batch_size):
            batch = np.ascontiguousarray(images[start: start + batch_size], dtype=np.float32)
            if tuple(self.interpreter.get_input_details()[0]["shape"]) != batch.shape:
                self.interpreter.resize_tensor_input(self.input["index"], batch.shape)
                with data.silenced_stderr():
                    self.interpreter.allocate_tensors()  # only when the batch shape changes
            self.interpreter.set_tensor(self.input["index"], batch)
            self.interpreter.invoke()
            results.append(self.interpreter.get_tensor(self.output["index"]).copy())
        return np.concatenate(results)


def load_litert(path):
    """(model, info) for a .tflite file and the JSON beside it; raises data.ModelError."""
    if not os.path.isfile(path):
        raise data.ModelError(f"no model at {path}: export one with `python export.py`")
    info = data.read_model_info(path)
    model = LiteRTModel(path)
    data.check_model_shape(path, info, model.input_shape, model.num_outputs)
    return model, info


def export(model_path, export_dir=EXPORT_DIR):
    """Write <name>.tflite beside the model and the SavedModel in export_dir/<name>; return both paths."""
    import model as model_lib

    model, _ = model_lib.load_model(model_path)
    name = os.path.splitext(os.path.basename(model_path))[0]
    tflite_path = os.path.splitext(model_path)[0] + ".tflite"
    saved_model_dir = os.path.join(export_dir, name)
    with data.silenced_stderr():  # the converter prints pages of MLIR notices
        model.export(saved_model_dir, format="tf_saved_model", verbose=False)
        tmp = os.path.join(os.path.dirname(tflite_path) or ".", f".tmp-{os.getpid()}-{name}.tflite")
        model.export(tmp, format="litert", verbose=False)
    os.replace(tmp, tflite_path)
    return tflite_path, saved_model_dir


def float16_copy(model_path, output):
    """Copy a Keras .h5 with its weights stored as float16 (half the size), with its JSON and split.

    Keras casts the weights back to float32 when it loads the file, so the copy loads like any
    model saved by train.py.
    """
    import h5py

    def copy(name, item):
        if isinstance(item, h5py.Dataset):
            values = item[()]
            target.create_dataset(name, data=values.astype(np.float16) if values.dtype == np.float32 else values)
        else:
            target.require_group(name)
        target[name].attrs.update(item.attrs)

    tmp = os.path.join(os.path.dirname(output) or ".", f".tmp-{os.getpid()}-{os.path.basename(output)}")
    with h5py.File(model_path, "r") as source, h5py.File(tmp, "w") as target:
        target.attrs.update(source.attrs)
        source.visititems(copy)
    os.replace(tmp, output)
    info = data.read_model_info(model_path)
    data.write_model_info(output, {**info, "weights_stored_as": "float16", "exported_from": model_path})
    if os.path.exists(data.SPLIT_PATH):  # a shipped model keeps the split it was measured on
        shutil.copy(data.SPLIT_PATH, os.path.splitext(output)[0] + ".split.json")
    return output


def agreement(model_path, tflite_path, data_dir=None):
    """How often the Keras model and the LiteRT file give the same class on the validation images."""
    import model as model_lib

    split = data.load_split()
    root = data.class_root(data_dir or split["data_dir"])
    if root is None:
        raise data.DatasetError(f"the dataset of {data.SPLIT_PATH} is not at {split['data_dir']}: pass --data-dir")
    keras_model, info = model_lib.load_model(model_path)
    images, labels, _ = data.decode_images(root, data.split_entries(split["val"]), info["image_size"], info["resize"])
    images = images.astype(np.float32)
    expected = keras_model.predict(images, batch_size=64, verbose=0)
    actual = load_litert(tflite_path)[0].predict(images)
    return {"n": len(images), "same_class": float(np.mean(expected.argmax(1) == actual.argmax(1))),
            "max_probability_difference": float(np.abs(expected - actual).max()),
            "keras_accuracy": float(np.mean(expected.argmax(1) == labels)),
            "litert_accuracy": float(np.mean(actual.argmax(1) == labels))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.path.join(data.SAVED_DIR, "model", "model_new.h5"))
    parser.add_argument("--check", action="store_true", help="compare LiteRT and Keras on the validation images")
    parser.add_argument("--data-dir", help="the dataset for --check (default: the one in saved/split.json)")
    parser.add_argument("--float16", metavar="OUTPUT.h5",
                        help="also write a copy of the .h5 with float16 weights (half the size), as shipped models are")
    args = parser.parse_args(argv)
    try:
        if args.float16:
            float16_copy(args.model, args.float16)
            print(f"float16 copy: {args.float16} ({os.path.getsize(args.float16) / 1e6:.1f} MB)")
        tflite_path, saved_model_dir = export(args.model)
        print(f"LiteRT: {tflite_path} ({os.path.getsize(tflite_path) / 1e6:.1f} MB)")
        print(f"SavedModel: {saved_model_dir}")
        if args.check:
            result = agreement(args.model, tflite_path, args.data_dir)
            print(f"On {result['n']} validation images LiteRT gives the Keras model's class for "
                  f"{result['same_class']:.2%} (largest probability difference {result['max_probability_difference']:.2e}; "
                  f"accuracy Keras {result['keras_accuracy']:.2%}, LiteRT {result['litert_accuracy']:.2%})")
    except (data.DatasetError, data.ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
