"""model.py: shapes, the in-model preprocessing, weights from local files, saving and safe loading."""

import json
import os

import numpy as np
import pytest

import data
import model as model_lib
from conftest import model_info

import keras

SIZE = 32


@pytest.fixture(scope="module")
def built():
    return model_lib.build_model(image_size=SIZE, weights="none")


def test_shapes_and_layers(built):
    assert built.input_shape == (None, SIZE, SIZE, 3)
    assert built.output_shape == (None, data.NUM_CLASSES)
    probabilities = built.predict(np.zeros((2, SIZE, SIZE, 3), np.float32), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    kinds = {type(layer).__name__ for layer in built.layers}
    assert "Lambda" not in kinds
    assert {"ImageNetPreprocessing", "Functional", "GlobalAveragePooling2D", "Dropout", "Dense"} <= kinds


def test_preprocessing_layer_matches_keras_resnet50_preprocess_input():
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    expected = keras.applications.resnet50.preprocess_input(pixels.copy())
    actual = model_lib.ImageNetPreprocessing()(pixels)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(actual), expected, rtol=1e-5, atol=1e-4)


def test_label_smoothing_moves_a_share_of_each_target_to_the_other_classes():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    labels = np.array([0, 2])
    plain = model_lib.crossentropy(0.0)(labels, probabilities)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain), -np.log([0.7, 0.8]), rtol=1e-5)
    targets = np.full((2, 3), 0.1 / 3) + 0.9 * np.eye(3)[labels]
    smoothed = model_lib.crossentropy(0.1)(labels, probabilities)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(smoothed), -(targets * np.log(probabilities)).sum(1),
                               rtol=1e-5)


def test_a_mixed_target_costs_the_mix_of_its_labels_costs():
    """What a mixed image is taught (augment.Augmented.mix): 0.7 of class 0 and 0.3 of class 2, smoothed or not."""
    probabilities = np.array([[0.6, 0.1, 0.3]], np.float32)
    for smoothing in (0.0, 0.1):
        loss = model_lib.crossentropy(smoothing)
        mixed = loss(np.array([[0.7, 0.0, 0.3]], np.float32), probabilities)
        parts = 0.7 * loss(np.array([0]), probabilities) + 0.3 * loss(np.array([2]), probabilities)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(mixed), keras.ops.convert_to_numpy(parts), rtol=1e-5)


def test_a_confident_mistake_still_teaches():
    """The true class at 1e-9 (below Keras' 1e-7 clip): the gradient on the logits is still softmax - one-hot."""
    tf = pytest.importorskip("tensorflow")
    logits = tf.Variable([[20.0, 0.0, 0.0]])
    with tf.GradientTape() as tape:
        probabilities = tf.identity(keras.activations.softmax(logits))  # what the training step sees: no logits
        loss = model_lib.crossentropy(0.0)(np.array([1]), probabilities)
    expected = keras.ops.convert_to_numpy(probabilities) - np.eye(3)[[1]]
    np.testing.assert_allclose(tape.gradient(loss, logits).numpy(), expected, atol=1e-6)
    assert float(loss[0]) == pytest.approx(20.0, rel=1e-4)


def test_clipping_scales_each_step_down_to_the_global_norm():
    """Adam ignores a constant gradient scale but not a spike: with clip_norm 1 a step 1000 times longer moves
    the weights as its unit-length direction would, across all variables together."""
    def trained(clip_norm, steps):
        weights = [keras.Variable(np.zeros(2, np.float32)), keras.Variable(np.zeros(1, np.float32))]
        adam = model_lib.optimizer(1e-2, clip_norm=clip_norm)
        for gradients in steps:
            adam.apply([np.asarray(g, np.float32) for g in gradients], weights)
        return np.concatenate([w.numpy() for w in weights])

    short, spike = ([0.3, 0.0], [0.4]), ([0.0, 600.0], [800.0])  # global norms 0.5 and 1000
    clipped_spike = ([0.0, 0.6], [0.8])
    np.testing.assert_allclose(trained(1.0, [short, spike]), trained(0.0, [short, clipped_spike]), rtol=1e-6)
    assert not np.allclose(trained(0.0, [short, spike]), trained(0.0, [short, clipped_spike]), rtol=1e-3)


def test_backbone_weights_load_from_a_local_file(tmp_path, built):
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    path = str(tmp_path / "resnet50_notop.weights.h5")
    backbone.save_weights(path)
    loaded = model_lib.build_model(image_size=SIZE, weights=path)
    for expected, actual in zip(backbone.weights, loaded.get_layer("resnet50").weights):
        np.testing.assert_array_equal(expected.numpy(), actual.numpy())


def test_whole_model_weights_load_for_fine_tuning(tmp_path, built):
    path = str(tmp_path / "pretrained.weights.h5")
    built.save_weights(path)
    loaded = model_lib.build_model(image_size=SIZE, weights=path)
    np.testing.assert_array_equal(built.get_layer("predictions").weights[0].numpy(),
                                  loaded.get_layer("predictions").weights[0].numpy())


def test_bad_weights_files_are_clear_errors(tmp_path):
    with pytest.raises(model_lib.ModelError, match="does not exist"):
        model_lib.build_model(image_size=SIZE, weights=str(tmp_path / "missing.h5"))
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = str(tmp_path / "other.weights.h5")
    other.save_weights(path)
    with pytest.raises(model_lib.ModelError, match="fits neither"):
        model_lib.build_model(image_size=SIZE, weights=path)


def test_saved_model_reloads_in_safe_mode_with_its_json(tmp_path, built):
    path = str(tmp_path / "model" / "m.h5")
    info = model_info(SIZE)
    model_lib.save_model(built, path, info)
    assert sorted(os.listdir(tmp_path / "model")) == ["m.h5", "m.json"]
    loaded, loaded_info = model_lib.load_model(path)
    assert {k: v for k, v in loaded_info.items() if k != "sha256"} == info
    x = np.random.default_rng(1).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), built.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_a_json_of_another_save_of_the_model_is_refused(tmp_path, built):
    path = str(tmp_path / "m.h5")
    model_lib.save_model(built, path, model_info(SIZE))
    earlier_json = (tmp_path / "m.json").read_text()
    bias = built.layers[-1].bias.numpy()
    built.layers[-1].bias.assign(bias + 1)  # the next best epoch
    model_lib.save_model(built, path, model_info(SIZE))
    built.layers[-1].bias.assign(bias)
    (tmp_path / "m.json").write_text(earlier_json)  # as if the save had stopped between the two renames
    with pytest.raises(model_lib.ModelError, match="describes another version of"):
        model_lib.load_model(path)


def test_mismatched_json_is_refused(tmp_path, built):
    path = str(tmp_path / "m.h5")
    model_lib.save_model(built, path, model_info(64))
    with pytest.raises(model_lib.ModelError, match="inputs of shape"):
        model_lib.load_model(path)
    with open(tmp_path / "m.json", "w") as f:
        json.dump({**model_info(SIZE), "class_names": data.CLASS_NAMES[:10], "characters": data.CHARACTERS[:10]}, f)
    with pytest.raises(model_lib.ModelError, match="classes"):
        model_lib.load_model(path)


def test_case_insensitive_accuracy_folds_letter_case():
    char = data.CHARACTERS.index
    y_true = np.array([char("c"), char("C"), char("0"), char("o")])
    y_pred = np.eye(data.NUM_CLASSES)[[char("C"), char("C"), char("O"), char("O")]]
    scores = keras.ops.convert_to_numpy(model_lib.case_insensitive_accuracy(y_true, y_pred))
    np.testing.assert_array_equal(scores, [1, 1, 0, 1])


def test_top5_counts_a_tie_against_the_true_class_in_training_and_in_test_py():
    import test

    probabilities = np.zeros((3, data.NUM_CLASSES), np.float32)
    probabilities[:2, :6] = [0.3, 0.25, 0.2, 0.15, 0.06, 0.04]  # classes 0-5 ranked in order, the rest exactly 0
    probabilities[2, :3] = [0.9, 0.09, 0.01]  # overconfident: the 5th place is a tie of 59 classes at exactly 0
    labels = np.array([4, 5, 40])  # fifth, sixth, and one of the tie (a hit for Keras' top-k metric)
    assert keras.ops.convert_to_numpy(keras.metrics.sparse_top_k_categorical_accuracy(labels, probabilities))[2] == 1
    scores = keras.ops.convert_to_numpy(model_lib.top5_accuracy(labels, probabilities))
    np.testing.assert_array_equal(scores, [1, 0, 0])
    assert test.metrics(labels, probabilities)["top5"] == pytest.approx(1 / 3)


def test_a_mixed_precision_model_is_saved_in_float32(tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = model_lib.build_model(image_size=SIZE, weights="none")
    finally:
        keras.config.set_dtype_policy("float32")
    assert mixed.get_layer("resnet50").dtype_policy.name == "mixed_float16"
    path = str(tmp_path / "m.h5")
    model_lib.save_model(mixed, path, model_info(SIZE))
    loaded, _ = model_lib.load_model(path)
    assert {layer.dtype_policy.name for layer in loaded.get_layer("resnet50").layers} == {"float32"}
    x = np.random.default_rng(2).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), mixed.predict(x, verbose=0), atol=2e-2)


def test_a_contrast_stretching_model_sees_a_dim_faded_photograph_as_the_well_lit_one(tmp_path):
    """Saved, reloaded, and in the float32 copy that save_model writes: the stretch is part of the model."""
    stretching = model_lib.build_model(image_size=SIZE, weights="none", stretch_contrast=True)
    well_lit = np.random.default_rng(3).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    well_lit[:, 0, 0], well_lit[:, 0, 1] = 0, 255
    dim_and_faded = 20 + 0.25 * well_lit
    stretched = keras.ops.convert_to_numpy(stretching.get_layer("contrast_stretch")(dim_and_faded))
    np.testing.assert_allclose(stretched, well_lit, atol=1e-3)
    path = str(tmp_path / "m.h5")
    model_lib.save_model(stretching, path, model_info(SIZE))
    loaded, _ = model_lib.load_model(path)
    assert model_lib.stretches_contrast(loaded) and not model_lib.stretches_contrast(model_lib.float32_copy(
        model_lib.build_model(image_size=SIZE, weights="none")))
    np.testing.assert_allclose(loaded.predict(dim_and_faded, verbose=0), loaded.predict(well_lit, verbose=0),
                               atol=1e-5)
    np.testing.assert_allclose(loaded.predict(well_lit, verbose=0), stretching.predict(well_lit, verbose=0),
                               rtol=1e-5, atol=1e-6)
    uniform = keras.ops.convert_to_numpy(loaded.get_layer("contrast_stretch")(np.full((1, 4, 4, 3), 90.0)))
    assert np.all(uniform == 0)


def test_zero_init_residual_starts_every_block_as_its_shortcut():
    """Inside each stage a block's output is then its input (already past a ReLU); a pretrained start is refused."""
    net = model_lib.build_model(image_size=SIZE, weights="none", zero_init_residual=True)
    resnet = net.get_layer("resnet50")
    stages = ((2, 3), (3, 4), (4, 6), (5, 3))  # ResNet50's stages and their blocks
    ends = [f"conv{stage}_block{block}_out" for stage, blocks in stages for block in range(1, blocks + 1)]
    probe = keras.Model(resnet.input, [resnet.get_layer(name).output for name in ends])
    pixels = np.random.default_rng(4).normal(0, 50, (2, SIZE, SIZE, 3)).astype(np.float32)
    outputs = dict(zip(ends, (keras.ops.convert_to_numpy(x) for x in probe(pixels, training=True))))
    for stage, blocks in stages:
        first = outputs[f"conv{stage}_block1_out"]
        assert first.std() > 0
        for block in range(2, blocks + 1):
            np.testing.assert_array_equal(outputs[f"conv{stage}_block{block}_out"], first)
    plain = model_lib.build_model(image_size=SIZE, weights="none").get_layer("resnet50")
    first, third = keras.Model(plain.input, [plain.get_layer(f"conv2_block{block}_out").output for block in (1, 3)])(
        pixels, training=True)
    assert not np.allclose(keras.ops.convert_to_numpy(first), keras.ops.convert_to_numpy(third))
    with pytest.raises(model_lib.ModelError, match="from scratch"):
        model_lib.build_model(image_size=SIZE, weights="imagenet", zero_init_residual=True)
