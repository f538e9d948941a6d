"""The contract between train.py and test.py: where things live, and what a saved model consists of.

A model is three files side by side, whatever its format (.h5 for Keras, .tflite for LiteRT):

    saved/model/NAME.h5            the network; it takes RGB pixels 0-255 of image_size x image_size
    saved/model/NAME.json          class_names, characters, image_size, resize (how data.fit_image
                                   fits an image to the square input), how and on what it was trained
    saved/model/NAME.split.json    a shipped model's training/validation split (others use saved/split.json)

Every default path is relative to this repository (or to $CHARS74K_HOME when that is set), so the
scripts find the same English/, saved/ and imgs/ from whatever folder they are started.
This module imports neither TensorFlow nor Keras: test.py runs .tflite models with LiteRT alone.
"""

import argparse
import contextlib
import glob
import hashlib
import importlib.util
import json
import logging
import os
import sys
import tempfile

import numpy as np

REPO_DIR = os.path.dirname(os.path.abspath(__file__))
HOME = os.path.abspath(os.environ.get("CHARS74K_HOME", REPO_DIR))
DATA_DIR, SAVED_DIR, IMGS_DIR = (os.path.join(HOME, name) for name in ("English", "saved", "imgs"))
MODEL_DIR, CACHE_DIR, DOWNLOAD_DIR, SYNTHETIC_DIR, EXPORT_DIR, LOG_DIR, BACKUP_DIR = (
    os.path.join(SAVED_DIR, name) for name in ("model", "cache", "downloads", "synthetic", "export", "logs", "backup"))
DEFAULT_MODEL = os.path.join(MODEL_DIR, "model_new.h5")  # what train.py writes
SPLIT_PATH, HISTORY_PATH = os.path.join(SAVED_DIR, "split.json"), os.path.join(SAVED_DIR, "history.csv")
SHIPPED_MODEL_DIR = os.path.join(REPO_DIR, "saved", "model")  # the models that come with the repository

RESIZE_MODES = ("pad", "stretch")  # the values of a model's "resize": see data.fit_image


class UserError(Exception):
    """A problem the user can fix (a bad model, dataset or input): one line on stderr, exit status 2."""


class ModelError(UserError):
    """A model that cannot be built, found or loaded."""


# ---------------------------------------------------------------- files

@contextlib.contextmanager
def atomic_path(path):
    """A temporary path beside path to write to; renamed to path if the block succeeds, else removed.

    Readers see path absent, old or complete, never half-written, and no temporary file is left behind.
    """
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; these are ordinary outputs
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def unwritable(folder):
    """Why files cannot be written in folder (made when missing), or None."""
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"cannot write in {folder}: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write in {folder}: no permission in {existing}"
    return None


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path, value):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(value, f, indent=1)


def printable(path):
    """path as one line: control characters in a file name (a newline) written as escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in path)


def shown_path(path):
    """path as a user would type it from the current folder: relative when it lies below, else absolute."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def portable(path):
    """path relative to HOME (../shared/English beside it, English/ inside), so that JSON files hold no
    machine's absolute paths; absolute only where no relative path exists (another Windows drive)."""
    try:
        return os.path.relpath(path, HOME)
    except ValueError:
        return os.path.abspath(path)


def resolve(path):
    """A path from a JSON file (see portable) as a path usable from any folder."""
    return os.path.normpath(os.path.join(HOME, path))


# ---------------------------------------------------------------- the JSON beside every model

def info_path(model_path):
    """model.h5 and model.tflite share model.json."""
    return os.path.splitext(model_path)[0] + ".json"


def split_beside(model_path):
    """<model>.split.json: where a model that travels without its saved/ folder (a shipped one) keeps its split."""
    return os.path.splitext(model_path)[0] + ".split.json"


def split_of(model_path):
    """The split a model was measured on: <model>.split.json if it has one (shipped models), else saved/split.json."""
    beside = split_beside(model_path)
    return beside if os.path.exists(beside) else SPLIT_PATH


def write_info(model_path, info):
    write_json(info_path(model_path), info)


def saved_with_info(save, model_path, info):
    """Write a model with save(temporary path) and its JSON, which records the model file's sha256.

    The JSON is renamed into place just before the model file: whatever stops the process leaves the
    old pair, the new pair, or a JSON whose sha256 names another file, which check_belongs refuses.
    """
    with atomic_path(model_path) as tmp:
        save(tmp)
        write_info(model_path, {**info, "sha256": sha256(tmp)})


def check_belongs(model_path, info):
    """Raise ModelError if the JSON describes another version of the model file than the one there."""
    if "sha256" in info and sha256(model_path) != info["sha256"]:
        raise ModelError(f"{info_path(model_path)} describes another version of {model_path} (a save cut short?): "
                         "train again, or restore both files together")


def read_info(model_path):
    """The JSON that train.py wrote beside a model, checked; raises ModelError if missing or malformed."""
    json_path = info_path(model_path)
    try:
        with open(json_path) as f:
            info = json.load(f)
    except FileNotFoundError:
        raise ModelError(f"{json_path} is missing: it holds the classes and image size of {model_path}") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"{json_path} is not a model description written by train.py ({e})") from None
    problem = info_problem(info)
    if problem:
        raise ModelError(f"{json_path} is not a model description written by train.py ({problem})")
    return info


def info_problem(info):
    """What is wrong with a model's JSON, or None."""
    if not isinstance(info, dict):
        return "not a JSON object"
    missing = [key for key in ("class_names", "characters", "image_size", "resize") if key not in info]
    if missing:
        return f"no {', '.join(missing)}"
    size, names, characters = info["image_size"], info["class_names"], info["characters"]
    if type(size) is not int or size < 1:
        return f"image_size must be a positive whole number, not {size!r}"
    if info["resize"] not in RESIZE_MODES:
        return f"resize must be one of {', '.join(RESIZE_MODES)}, not {info['resize']!r}"
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and isinstance(characters, str)
            and len(names) == len(characters) > 0):
        return "class_names must be a list of names, one for each of its characters"
    return None


def check_fits(model_path, info, input_shape, num_outputs):
    """Raise ModelError unless the model takes the JSON's image size and predicts one output per class."""
    size = info["image_size"]
    if tuple(input_shape) != (size, size, 3):
        raise ModelError(f"{model_path} takes inputs of shape {tuple(input_shape)}, but its JSON says {size}x{size}x3")
    if num_outputs != len(info["class_names"]):
        raise ModelError(f"{model_path} predicts {num_outputs} classes, but its JSON names "
                         f"{len(info['class_names'])}")


def shipped_models():
    return [path for path in sorted(glob.glob(os.path.join(SHIPPED_MODEL_DIR, "*.h5")))
            if os.path.exists(info_path(path))]


def choose_model(given=None):
    """(model path, why this one): the one given, else the newest trained here (saved/model/model_new.h5),
    else the model shipped with the repository."""
    shipped = shipped_models()
    if given:
        return given, "given with --model"
    if os.path.exists(DEFAULT_MODEL):
        return DEFAULT_MODEL, "trained here" + (f"; pass --model {shown_path(shipped[0])} for the shipped one"
                                                 if shipped else "")
    if shipped:
        return shipped[0], "the shipped model: none trained here yet"
    return DEFAULT_MODEL, "the default"


def top_classes(probabilities, top, info):
    """The top classes of one image's probabilities, best first, named from the model's JSON."""
    return [{"class": info["class_names"][label], "character": info["characters"][label],
             "probability": float(probabilities[label])} for label in np.argsort(probabilities)[::-1][:top]]


# ---------------------------------------------------------------- LiteRT

class LiteRTModel:
    """A .tflite model run by the LiteRT interpreter, with Keras' predict(images, batch_size) interface."""

    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

        try:
            with silenced_stderr():  # LiteRT announces its XNNPACK delegate on stderr
                self.interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"cannot load {path} as a LiteRT model: {str(e).splitlines()[0]}") from None
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
                with silenced_stderr():
                    self.interpreter.allocate_tensors()  # only when the batch shape changes
            self.interpreter.set_tensor(self.input["index"], batch)
            self.interpreter.invoke()
            results.append(self.interpreter.get_tensor(self.output["index"]).copy())
        return np.concatenate(results)


def load_litert(path):
    """(model, info) for a .tflite file and the JSON beside it; raises ModelError."""
    if not os.path.isfile(path):
        raise ModelError(f"no model at {path}: export one with `python export.py`")
    info = read_info(path)
    model = LiteRTModel(path)
    check_fits(path, info, model.input_shape, model.num_outputs)
    return model, info


def litert_copy(model_path, info):
    """The LiteRT copy of a Keras model that export.py wrote beside it and recorded in its JSON, if it is
    there unchanged (a model saved since has a JSON without it); else None."""
    entry = info.get("litert")
    path = os.path.splitext(model_path)[0] + ".tflite"
    if isinstance(entry, dict) and os.path.isfile(path) and entry.get("sha256") == sha256(path):
        return path
    return None


def open_model(model_path, use_keras=False):
    """(model, info, how it runs) for test.py and app.py: a .tflite, or a Keras model's LiteRT copy,
    runs on LiteRT without TensorFlow (a fraction of a second to start); others load in Keras."""
    if os.path.isdir(model_path):
        kind = ("a TensorFlow SavedModel (for serving)" if os.path.exists(os.path.join(model_path, "saved_model.pb"))
                else "a folder")
        raise ModelError(f"{model_path} is {kind}, not a model file: give the .h5, .keras or .tflite file that "
                         "train.py or export.py wrote")
    if not os.path.isfile(model_path):
        raise ModelError(f"no model at {model_path}: train one with `python train.py`, or pass --model PATH")
    if model_path.endswith(".tflite"):
        return (*load_litert(model_path), "LiteRT")
    copy = None if use_keras else litert_copy(model_path, read_info(model_path))
    if copy:
        model, info = load_litert(copy)
        return model, info, f"LiteRT, from {os.path.basename(copy)} ({litert_summary(info['litert'])})"
    import_keras()
    import model as model_lib

    model, info = model_lib.load_model(model_path)
    return model, info, ("Keras" if use_keras else
                         "Keras; `python export.py` writes a LiteRT copy that starts in a fraction of a second")


def open_chosen_model(given=None, use_keras=False):
    """(model, info, path, how it runs) of the model --model names, else the default one (choose_model),
    saying on stderr which, why, and how it runs."""
    path, why = choose_model(given)
    model, info, runtime = open_model(path, use_keras)
    print(f"Model: {printable(shown_path(path))} ({why}); run by {runtime}", file=sys.stderr)
    return model, info, path, runtime


def litert_summary(entry):
    agreement = entry.get("agreement")
    return f"{entry.get('weights', '?')} weights" + (
        f"; the Keras model's class on {agreement['same_class']:.2%} of {agreement['n']} validation images"
        if isinstance(agreement, dict) else "")


# ---------------------------------------------------------------- running the scripts

def run_script(work):
    """A script's exit status: work()'s (0 if it returns None); a UserError is one line on stderr and
    exit status 2, without a traceback."""
    try:
        return work() or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def checked(convert, is_valid, requirement):
    """An argparse type: the text converted, refused unless is_valid(value), saying what it must be."""
    def parse(text):
        value = convert(text)
        if not is_valid(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, not {text}")
        return value

    parse.__name__ = convert.__name__  # argparse names it in "invalid int value"
    return parse


positive_int = checked(int, lambda value: value > 0, "a positive whole number")


def installed(module):
    """Whether module can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # raised by finders that know it is missing
        return False


def import_keras():
    """Keras, imported without the start-up notices of TensorFlow (oneDNN, CUDA probing), which reach file
    descriptor 2 whatever the log settings, and without Keras' advice against .h5 (kept by design).

    Keras' backend is $KERAS_BACKEND's, else TensorFlow, or JAX where TensorFlow is not installed (as on
    GPU machines set up with JAX alone). The scripts call this before they first import model.py;
    importing a module changes nothing.
    """
    if "KERAS_BACKEND" not in os.environ and not installed("tensorflow"):
        os.environ["KERAS_BACKEND"] = "jax"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with silenced_stderr():
        import keras

        if keras.backend.backend() == "tensorflow":  # (JAX must not start before keras.distribution.initialize)
            keras.distribution.list_devices()  # TensorFlow looks for GPUs once, here
    logging.getLogger("absl").setLevel(logging.ERROR)
    return keras


@contextlib.contextmanager
def silenced_stderr():
    """Hide what C++ libraries write to file descriptor 2 (errors raised inside still propagate)."""
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)

