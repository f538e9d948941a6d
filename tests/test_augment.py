"""augment.Augmented: the label-safe flip, rotation, contrast, mixup and cutmix inside the training step."""

import os
import subprocess
import sys

import numpy as np
import pytest

import augment
import data
import model as model_lib
from conftest import REPO

import keras
from keras import ops

CHAR = data.CHARACTERS.index


class BarSide(keras.layers.Layer):
    """A stand-in classifier: certain of 'b' when the image's left column is the brighter, else of 'd'."""

    def call(self, images):
        left = ops.mean(images[:, :, 0, 0], axis=1) > ops.mean(images[:, :, -1, 0], axis=1)
        one_hot = ops.convert_to_tensor(np.eye(data.NUM_CLASSES, dtype="float32")[[CHAR("b"), CHAR("d")]])
        return ops.where(left[:, None], one_hot[0], one_hot[1])


def bars_on_the_left(labels):
    images = np.zeros((len(labels), 8, 8, 3), np.uint8)
    images[:, :, 0] = 255
    return images, np.array(labels, np.int32)


def test_flip_mask_flips_half_of_the_mirrorable_and_never_the_others():
    labels = np.array([CHAR("b"), CHAR("A"), CHAR("R"), CHAR("7")] * 500, np.int32)
    flipped = ops.convert_to_numpy(augment.Augmented(BarSide()).flip_mask(ops.convert_to_tensor(labels)))
    for char in "bA":
        assert 0.4 < flipped[labels == CHAR(char)].mean() < 0.6
    for char in "R7":
        assert not flipped[labels == CHAR(char)].any()


def test_a_mirrored_b_is_taught_as_a_d():
    """The stand-in sees a 'd' in each flipped 'b', and that is what the target of each flipped 'b' says."""
    images, labels = bars_on_the_left([CHAR("b")] * 400)
    model = augment.Augmented(BarSide(), rotation=0.0, contrast=0.0, seed=3)
    answers, targets = (ops.convert_to_numpy(t) for t in model((images, labels), training=True))
    assert 0.4 < (answers.argmax(axis=1) == CHAR("d")).mean() < 0.6  # about half were flipped
    np.testing.assert_array_equal(targets, answers)  # one-hot targets, each the answer of a right classifier


def test_a_target_distribution_given_is_mirrored_with_its_image():
    """Distillation's targets (here 0.8 'b' and 0.2 'p'): a flipped 'b' is taught 0.8 'd' and 0.2 'q'."""
    images, labels = bars_on_the_left([CHAR("b")] * 200)
    given = np.zeros((200, data.NUM_CLASSES), np.float32)
    given[:, CHAR("b")], given[:, CHAR("p")] = 0.8, 0.2
    model = augment.Augmented(BarSide(), rotation=0.0, contrast=0.0, seed=3)
    answers, targets = (ops.convert_to_numpy(t) for t in model((images, labels, given), training=True))
    flipped = answers.argmax(axis=1) == CHAR("d")
    assert 0.3 < flipped.mean() < 0.7
    mirrored = np.zeros(data.NUM_CLASSES, np.float32)
    mirrored[CHAR("d")], mirrored[CHAR("q")] = 0.8, 0.2
    np.testing.assert_array_equal(targets[flipped], np.broadcast_to(mirrored, (flipped.sum(), data.NUM_CLASSES)))
    np.testing.assert_array_equal(targets[~flipped], given[~flipped])


def test_a_consistent_teacher_answers_the_view_the_student_sees():
    """Teachers inside the step see each image as flipped: a teacher right on every view teaches a flipped 'b' as
    a 'd' (the target, half label and half teacher, is the answer itself); had it seen the image as given, half
    of that target would say 'b'."""
    images, labels = bars_on_the_left([CHAR("b")] * 200)
    model = augment.Augmented(BarSide(), rotation=0.0, contrast=0.0, seed=3, teachers=[BarSide()])
    answers, targets = (ops.convert_to_numpy(t) for t in model((images, labels), training=True))
    assert 0.3 < (answers.argmax(axis=1) == CHAR("d")).mean() < 0.7
    np.testing.assert_allclose(targets, answers, atol=1e-6)


def test_teachers_answers_are_averaged_softened_and_blended_with_the_label():
    class Certain(keras.layers.Layer):
        """A stand-in teacher: 0.8 on one class and the rest shared evenly by the others."""

        def __init__(self, char):
            super().__init__()
            self.answer = np.full(data.NUM_CLASSES, 0.2 / (data.NUM_CLASSES - 1), np.float32)
            self.answer[CHAR(char)] = 0.8

        def call(self, images):
            return ops.broadcast_to(ops.convert_to_tensor(self.answer), (ops.shape(images)[0], data.NUM_CLASSES))

    images, labels = bars_on_the_left([CHAR("R")] * 4)
    teachers = [Certain("R"), Certain("K")]
    model = augment.Augmented(BarSide(), seed=3, teachers=teachers, teacher_weight=0.3, teacher_temperature=2)
    targets = ops.convert_to_numpy(model((images, labels), training=True)[1])
    mean = (teachers[0].answer + teachers[1].answer) / 2
    softened = np.sqrt(mean) / np.sqrt(mean).sum()  # a softmax of log(mean) / 2
    expected = 0.7 * np.eye(data.NUM_CLASSES)[CHAR("R")] + 0.3 * softened
    np.testing.assert_allclose(targets, np.broadcast_to(expected, targets.shape), atol=1e-6)
    assert not any(teacher.trainable for teacher in teachers)


def test_without_training_it_is_the_classifier_alone():
    images, labels = bars_on_the_left([CHAR("R")] * 4)
    model = augment.Augmented(BarSide())
    np.testing.assert_array_equal(ops.convert_to_numpy(model((images, labels), training=False)),
                                  ops.convert_to_numpy(BarSide()(ops.cast(images, "float32"))))


@pytest.mark.parametrize("augmenting", [True, False])
def test_rotation_and_contrast_change_the_pixels_only_when_augmenting(augmenting):
    class FirstPixels(keras.layers.Layer):
        """The classifier's input, as far as 62 numbers show it."""

        def call(self, images):
            return ops.reshape(images, (ops.shape(images)[0], -1))[:, : data.NUM_CLASSES]

    images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    labels = np.full(6, CHAR("R"), np.int32)  # never flipped: any change is rotation or contrast
    model = augment.Augmented(FirstPixels(), augment=augmenting)
    seen = ops.convert_to_numpy(model((images, labels), training=True)[0])
    assert seen.min() >= 0 and seen.max() <= 255
    assert np.array_equal(seen, images.reshape(6, -1)[:, : data.NUM_CLASSES]) != augmenting


def bar_angles(rotation, n=48):
    """How far (degrees) training turns a horizontal bar, once per image, with Augmented(rotation=rotation)."""
    class Pixels(keras.layers.Layer):
        def call(self, images):
            return ops.reshape(images[..., 0], (ops.shape(images)[0], -1))

    images = np.zeros((n, 32, 32, 3), np.uint8)
    images[:, 15:17, 8:24] = 255
    labels = np.full(n, CHAR("R"), np.int32)  # never flipped
    seen = ops.convert_to_numpy(augment.Augmented(Pixels(), rotation=rotation, contrast=0.0, seed=4)(
        (images, labels), training=True)[0]).reshape(n, 32, 32)
    y, x = np.mgrid[:32, :32] - 15.5
    mass = seen / seen.sum(axis=(1, 2), keepdims=True)
    xx, yy, xy = ((mass * a * b).sum(axis=(1, 2)) for a, b in ((x, x), (y, y), (x, y)))
    return np.degrees(0.5 * np.arctan2(2 * xy, xx - yy))


@pytest.mark.parametrize("rotation", [18, 60])
def test_rotation_turns_images_by_up_to_the_degrees_given(rotation):
    turned = np.abs(bar_angles(rotation))
    assert turned.max() <= rotation + 3 and turned.max() > 0.7 * rotation
    assert (bar_angles(0) == 0).all()


def test_strong_augmentation_varies_each_image_within_the_pixel_range():
    class Seen(keras.layers.Layer):
        """The classifier's input, as far as 62 numbers show it."""

        def call(self, images):
            return ops.reshape(images, (ops.shape(images)[0], -1))[:, : data.NUM_CLASSES]

    images = np.repeat(np.random.default_rng(1).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8), 8, axis=0)
    labels = np.full(8, CHAR("R"), np.int32)
    recipe, strong = (ops.convert_to_numpy(augment.Augmented(Seen(), strong=s, rotation=0.0, contrast=0.0)(
        (images, labels), training=True)[0]) for s in (False, True))
    original = images.reshape(8, -1)[:, : data.NUM_CLASSES]
    np.testing.assert_array_equal(recipe, original)  # no rotation or contrast: nothing else changes
    assert strong.min() >= 0 and strong.max() <= 255
    assert len({row.tobytes() for row in strong}) == 8  # eight copies of one image, eight different results
    assert np.abs(strong - original).mean() > 5


class Pixels(keras.layers.Layer):
    """A stand-in classifier that answers with the images it is given."""

    def call(self, images):
        return images


def one_grey_level_each(n):
    """n images, each of one grey level, labelled with n different characters that are never flipped."""
    levels = np.linspace(0, 250, n).astype(np.uint8)
    images = np.broadcast_to(levels[:, None, None, None], (n, 16, 16, 3)).copy()
    return images, np.array([CHAR(c) for c in "CEFGJKLNPRSZ"[:n]], np.int32)


def mixed(images, labels, **mixing):
    model = augment.Augmented(Pixels(), rotation=0.0, contrast=0.0, seed=5, **mixing)
    pixels, targets = model((images, labels), training=True)
    return ops.convert_to_numpy(pixels), ops.convert_to_numpy(targets)


def test_mixup_blends_each_image_with_its_partner_and_the_labels_by_the_same_weight():
    images, labels = one_grey_level_each(12)
    pixels, targets = mixed(images, labels, mixup=0.4)
    own, partner = images[:, 0, 0, 0].astype(float), images[::-1, 0, 0, 0].astype(float)
    kept = targets[np.arange(12), labels]
    np.testing.assert_allclose(targets.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(targets[np.arange(12), labels[::-1]], 1 - kept, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pixels[:, 5, 7, 1], kept * own + (1 - kept) * partner, rtol=1e-4, atol=1e-3)
    assert (pixels == pixels[:, :1, :1, :1]).all()  # a blend, uniform as its images
    assert len(np.unique(kept.round(3))) > 6  # a weight of its own for each image


def test_cutmix_pastes_a_box_of_the_partner_and_labels_by_area():
    images, labels = one_grey_level_each(12)
    pixels, targets = mixed(images, labels, cutmix=1.0)
    own, partner = images[:, :, :, 0], images[::-1, :, :, 0]
    from_partner = pixels[..., 0] == partner
    assert ((pixels[..., 0] == own) | from_partner).all()
    np.testing.assert_allclose(targets[np.arange(12), labels[::-1]], from_partner.mean(axis=(1, 2)), atol=1e-6)
    for box in from_partner[from_partner.any(axis=(1, 2))]:
        rows, columns = box.any(axis=1), box.any(axis=0)
        assert box[np.ix_(rows, columns)].all() and box.sum() == rows.sum() * columns.sum()  # one rectangle
    assert from_partner.any(axis=(1, 2)).sum() > 6


def test_with_mixup_and_cutmix_each_image_gets_one_of_the_two_and_the_targets_follow_it():
    images, labels = one_grey_level_each(12)
    pixels, targets = mixed(images, labels, mixup=1.0, cutmix=1.0)
    own, partner = images[:, 0, 0, 0].astype(float), images[::-1, 0, 0, 0].astype(float)
    kept = targets[np.arange(12), labels]
    blended = (pixels == pixels[:, :1, :1, :1]).all(axis=(1, 2, 3)) & (pixels[:, 0, 0, 0] != own)
    pasted = ~(pixels == pixels[:, :1, :1, :1]).all(axis=(1, 2, 3))
    assert blended.any() and pasted.any()
    np.testing.assert_allclose(pixels[blended, 0, 0, 0], (kept * own + (1 - kept) * partner)[blended], atol=1e-3)
    np.testing.assert_allclose(kept[pasted], (pixels[pasted, ..., 0] == own[pasted, None, None]).mean(axis=(1, 2)),
                               atol=1e-6)


def test_the_loss_and_metrics_of_a_training_step_use_the_targets():
    """A classifier right about every flipped and unflipped 'b' loses nothing and scores 100%, though half of what
    it answers is not the label it was given."""
    images, labels = bars_on_the_left([CHAR("b")] * 64)
    model = augment.Augmented(BarSide(), rotation=0.0, contrast=0.0, seed=3)
    model_lib.compile_model(model, 1e-3)
    answers = model((images, labels), training=True)
    assert float(model.compute_loss((images, labels), labels, answers)) == pytest.approx(0.0, abs=1e-6)
    metrics = model.compute_metrics((images, labels), labels, answers)
    assert float(metrics["accuracy"]) == 1.0 and float(metrics["accuracy_ci"]) == 1.0


def test_strong_and_light_augmentation_and_mixing_work_under_mixed_precision():
    """A GPU's default policy: the augmentation layers then answer in float16, and noise or mixing in float32
    must not meet them unconverted (TensorFlow does not promote dtypes)."""
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        images, labels = one_grey_level_each(12)
        pixels, _ = mixed(images, labels, mixup=0.2, cutmix=1.0, strong=True, light=True)
    finally:
        keras.config.set_dtype_policy(policy)
    assert np.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 255


def test_on_jax_the_training_step_compiles():
    """Keras marks its geometric layers as not compilable (for TensorFlow); on JAX one such layer would make
    model.fit run every step op by op."""
    check = ("import augment, model; from keras.src.trainers.trainer import model_supports_jit; "
             "print(model_supports_jit(augment.Augmented(model.build_model(image_size=32, weights='none'), "
             "strong=True)))")
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "KERAS_BACKEND": "jax"})
    assert result.stdout.strip().splitlines()[-1:] == ["True"], result.stderr


def test_light_augmentation_dims_half_the_images_and_shades_them_across_in_a_random_direction():
    images = np.full((64, 16, 16, 3), 200, np.uint8)
    labels = np.full(64, CHAR("R"), np.int32)
    pixels, targets = mixed(images, labels, light=True, flip=False)
    np.testing.assert_array_equal(targets, ops.convert_to_numpy(ops.one_hot(labels, data.NUM_CLASSES)))
    grey = pixels[..., 0]
    np.testing.assert_allclose(pixels, np.repeat(grey[..., None], 3, axis=-1))  # the light's colour is kept
    relit = ~np.all(grey == 200, axis=(1, 2))
    assert 16 <= relit.sum() <= 48
    brightest, darkest = grey[relit].max(axis=(1, 2)), grey[relit].min(axis=(1, 2))
    assert np.all(brightest <= 200) and np.all(darkest >= augment.LEAST_LIGHT * brightest - 1e-3)
    assert brightest.min() < 0.5 * 200 and (darkest / brightest).min() < 0.5  # dimmer, and shaded across the crop
    darkest_corners = [np.unravel_index(np.argmin(image), image.shape) for image in grey[relit]]
    lit_corners = [np.unravel_index(np.argmax(image), image.shape) for image in grey[relit]]
    assert set(darkest_corners) <= {(0, 0), (0, 15), (15, 0), (15, 15)} and len(set(darkest_corners)) >= 3
    assert all(lit == (15 - dark[0], 15 - dark[1]) for lit, dark in zip(lit_corners, darkest_corners))  # opposite
