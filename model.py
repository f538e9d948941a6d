"""The recognizer: ResNet50 with a 62-way head, compiled, saved and loaded with Keras.

The model takes raw RGB pixels (0-255) at image_size x image_size; ImageNet's preprocessing (and,
when built with stretch_contrast, the contrast stretch before it) is a layer inside it, so a saved
model needs nothing else. Beside every model.h5 lies model.json
(checkpoint.py) with the class names, image size and resize mode that test.py must use.

    import model
    net = model.build_model(weights="none")
    net.summary()
"""

import os
import warnings

import keras
from keras import layers, ops

import checkpoint
import data
from checkpoint import ModelError

IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
DROPOUT = 0.3
SMALLEST_PROBABILITY = 1e-30  # a normal float32: its log, and the gradient through the softmax, stay exact


@keras.saving.register_keras_serializable(package="chars74k")
class ImageNetPreprocessing(layers.Layer):
    """keras.applications.resnet50.preprocess_input as a layer: RGB 0-255 to mean-centred BGR."""

    def call(self, inputs):
        return ops.flip(inputs, axis=-1) - ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=inputs.dtype)


@keras.saving.register_keras_serializable(package="chars74k")
class ContrastStretch(layers.Layer):
    """Each image's pixels stretched to the full range 0-255 (its darkest value to 0, its lightest to 255, the
    same for the three channels, so colours keep their hue): a dim or faded photograph and a well-lit one of the
    same character then look alike to the network. A uniform image becomes black."""

    def call(self, inputs):
        darkest = ops.min(inputs, axis=(1, 2, 3), keepdims=True)
        lightest = ops.max(inputs, axis=(1, 2, 3), keepdims=True)
        return (inputs - darkest) * (255.0 / ops.maximum(lightest - darkest, 1.0))


def backbone(image_size, weights):
    """ResNet50 without its top; weights 'imagenet', None, or a ResNet50 weights file."""
    try:
        return keras.applications.ResNet50(include_top=False, weights=weights,
                                           input_shape=(image_size, image_size, 3))
    except Exception as e:  # offline, Keras raises a plain Exception ("URL fetch failure")
        raise ModelError(
            f"could not load the ImageNet weights for ResNet50 ({e}). Train from scratch with "
            "--weights none, or pass --weights PATH to a local ResNet50 (no top) weights file "
            "or a model saved by train.py; fully offline: python train.py --data synthetic --weights none"
        ) from None


def build_model(num_classes=data.NUM_CLASSES, image_size=data.IMAGE_SIZE, weights="imagenet", dropout=DROPOUT,
                stretch_contrast=False, zero_init_residual=False):
    """[ContrastStretch ->] ResNet50 -> global average pooling -> dropout -> Dense(num_classes, softmax).

    weights: "imagenet", "none"/None, or a path to a weights file: either a ResNet50 without its
    top (as Keras ships them) or a whole model saved by train.py (to fine-tune it).
    zero_init_residual: from scratch only, start every residual block as its shortcut alone (start_as_identity).
    """
    weights = None if weights in (None, "none") else weights
    if zero_init_residual and weights is not None:
        raise ModelError("zero_init_residual initializes a network trained from scratch (weights none), "
                         f"not one that starts from {weights}")
    local_file = weights not in (None, "imagenet")
    if local_file and not os.path.isfile(weights):
        raise ModelError(f"weights file {weights} does not exist")
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    features = backbone(image_size, None if local_file else weights)
    x = ContrastStretch(name="contrast_stretch")(inputs) if stretch_contrast else inputs
    x = ImageNetPreprocessing(name="imagenet_preprocessing")(x)
    x = features(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32")(x)
    model = keras.Model(inputs, outputs, name="chars74k_resnet50")
    if local_file:
        load_weights_file(model, features, weights)
    if zero_init_residual:
        start_as_identity(features)
    return model


def start_as_identity(resnet):
    """Zero the scale of each residual block's last batch normalization (ResNet50's conv*_block*_3_bn): every
    block then adds nothing to its shortcut and the 50 layers start as a shallow network (Goyal et al. 2017,
    "Accurate, Large Minibatch SGD"; torchvision's zero_init_residual). RESULTS.md measures what it does to
    the epochs a deep random start can spend learning nothing."""
    for layer in resnet.layers:
        if layer.name.endswith("_3_bn"):
            layer.gamma.assign(ops.zeros_like(layer.gamma))


def load_weights_file(model, features, path):
    """Load a whole saved model's weights, else a ResNet50 backbone's."""
    errors = []
    for target in (model, features):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)  # Keras only warns when it skips layers it cannot match
                target.load_weights(path)
            return
        except Exception as e:  # h5py and Keras raise many kinds of errors on mismatched files
            errors.append(str(e).splitlines()[0] if str(e) else type(e).__name__)
    raise ModelError(f"{path} fits neither this model nor a ResNet50 backbone: {errors[-1]}")


def case_insensitive_accuracy(y_true, y_pred):
    """Accuracy when 'c' and 'C' (and every other letter pair) count as the same answer."""
    fold = ops.convert_to_tensor(data.case_fold_indices())
    true = ops.take(fold, ops.cast(ops.reshape(y_true, (-1,)), "int32"))
    predicted = ops.take(fold, ops.cast(ops.argmax(y_pred, axis=-1), "int32"))
    return ops.cast(ops.equal(true, predicted), "float32")


def top5_accuracy(y_true, y_pred):
    """Whether the true class is among the 5 most likely, a tie counting against it. Keras' top-k metric counts
    every class tied with the 5th as a hit, and where a model is so sure that fewer than 5 probabilities are above
    exactly 0, every class is: an early epoch scored 99% top-5 at 4% accuracy."""
    y_pred = ops.cast(y_pred, "float32")
    labels = ops.cast(ops.reshape(y_true, (-1, 1)), "int32")
    true_probability = ops.take_along_axis(y_pred, labels, axis=-1)
    others_as_likely = ops.sum(ops.cast(y_pred >= true_probability, "int32"), axis=-1) - 1
    return ops.cast(others_as_likely < 5, "float32")


def crossentropy(label_smoothing):
    """Cross-entropy from the model's probabilities against class indices, or against target distributions (what
    augment.Augmented teaches a flipped or mixed image), optionally smoothed. Keras' own clips probabilities
    below at 1e-7, and where it cannot recover the logits from the softmax (always on JAX) a confident mistake,
    whose true class is below 1e-7, then gives no gradient at all; the floor here is SMALLEST_PROBABILITY."""
    def loss(y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        classes = y_pred.shape[-1]
        if len(y_true.shape) == 2 and y_true.shape[-1] == classes:
            targets = ops.cast(y_true, "float32")
        else:
            targets = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), classes)
        if label_smoothing:
            targets = targets * (1 - label_smoothing) + label_smoothing / classes
        return -ops.sum(targets * ops.log(ops.maximum(y_pred, SMALLEST_PROBABILITY)), axis=-1)

    return loss


def optimizer(learning_rate, weight_decay=0.0, ema=0.0, clip_norm=0.0):
    """Adam, or AdamW when weight_decay is given (not on batch normalization and biases); ema: the momentum of
    an exponential moving average of the weights (0: none), which validation and saving then use; clip_norm:
    the longest global norm of a step's gradients (0: no clipping)."""
    common = {"use_ema": bool(ema), "ema_momentum": ema or 0.99, "global_clipnorm": clip_norm or None}
    if not weight_decay:
        return keras.optimizers.Adam(learning_rate, **common)
    adamw = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay, **common)
    adamw.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return adamw


def compile_model(model, learning_rate, jit_compile=False, steps_per_execution=1, label_smoothing=0.0,
                  weight_decay=0.0, ema=0.0, clip_norm=0.0):
    """Adam (see optimizer) on class indices or target distributions (crossentropy), optionally smoothed;
    accuracy, case-insensitive accuracy and top-5. XLA only where asked: on CPUs it makes TensorFlow training
    several times slower (RESULTS.md)."""
    model.compile(
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
        optimizer=optimizer(learning_rate, weight_decay, ema, clip_norm),
        loss=crossentropy(label_smoothing),
        metrics=["accuracy",
                 keras.metrics.MeanMetricWrapper(case_insensitive_accuracy, name="accuracy_ci"),
                 keras.metrics.MeanMetricWrapper(top5_accuracy, name="top5")],
    )


def float32_copy(model):
    """The model in float32: one trained in mixed precision is rebuilt, so that it runs the same on CPUs."""
    if model.dtype_policy.name == "float32":
        return model
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = build_model(model.output_shape[-1], model.input_shape[1], weights="none",
                           stretch_contrast=stretches_contrast(model))
    finally:
        keras.config.set_dtype_policy(policy)
    copy.set_weights(model.get_weights())
    return copy


def stretches_contrast(model):
    return any(isinstance(layer, ContrastStretch) for layer in model.layers)


def save_model(model, path, info):
    """Save model.h5 (float32, without optimizer state) and model.json, as one step (checkpoint.saved_with_info)."""
    checkpoint.saved_with_info(lambda tmp: float32_copy(model).save(tmp, include_optimizer=False), path, info)


def load_model(path):
    """(model, info) from a model saved by train.py, in Keras safe mode; raises ModelError."""
    if not os.path.isfile(path):
        raise ModelError(f"no model at {path}: train one with `python train.py`, or pass --model PATH")
    info = checkpoint.read_info(path)
    checkpoint.check_belongs(path, info)
    try:
        with checkpoint.silenced_stderr():  # on other backends, Keras' .h5 reader imports TensorFlow if it can
            model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # h5py, Keras and the OS each raise their own errors on bad files
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"cannot load {path} as a Keras model: {reason}") from None
    checkpoint.check_fits(path, info, model.input_shape[1:], model.output_shape[-1])
    return model, info

