"""The recipe's augmentation (rotation, contrast, the label-safe flip) inside the compiled training step.

strong=True adds what photographs of characters vary in and what keeps every label right: scale,
shift and shear, brightness, saturation and hue, inverted polarity (light on dark), blur and
sensor noise. light=True relights half of the images: a dimmer light overall, and light falling off
across the crop in a random direction (a shadow, a lamp to one side). mixup and cutmix (Beta
parameters, 0: off) blend each image with another of the batch, or paste a box of the other into it,
and teach the blend of their labels. With teachers (consistent teaching, Beyer et al. 2022, "Knowledge
distillation: a good teacher is patient and consistent"), each target is a blend of the label and the
teachers' answer on the very view the student sees, augmented and mixed, not on the image as it is.

Augmented wraps the classifier for model.fit on ((images, labels), labels), or ((images, labels,
targets), labels) where each training image has its own target distribution (distillation: a blend
of the label and teachers' answers) instead of its label alone. It runs on any Keras
backend with keras.ops and keras.random, so on an accelerator the training images can stay on the
device and be augmented there, step after step, without a host round trip.

A horizontal flip changes some labels ('b' becomes 'd'), and mixing blends them, but a layer sees
no labels. So Augmented takes the labels as a second input, flips only images whose mirror is a
character (data.flip_targets), and in training returns (probabilities, targets): what the
classifier answered and what it should have, a distribution over the classes (a mirrored 'b' is
taught as a 'd', and a given target distribution is mirrored alike). Its compute_loss and
compute_metrics use those targets. Validation and prediction see the classifier alone.
"""

import math

import keras
from keras import layers, ops

import data
from model import SMALLEST_PROBABILITY

ROTATION = 18  # degrees, either way
CONTRAST = 0.2
NOISE = 10.0  # the largest standard deviation of sensor noise, in 0-255 pixel units
LEAST_LIGHT = 0.3  # with light=True, the least share of the light an image keeps, overall and at a shadow's far edge


def taught(targets, answers, weight, temperature):
    """Distillation's targets: (1 - weight) of targets and weight of the teachers' mean answers (probabilities),
    softened by the temperature (a softmax of log(answers) / temperature)."""
    logits = ops.log(ops.maximum(answers, SMALLEST_PROBABILITY)) / temperature
    return (1 - weight) * targets + weight * ops.softmax(logits, axis=-1)


def strong_layers(seed):
    """The extra label-safe layers of strong augmentation, applied in this order after rotation and contrast
    (noise comes last, in Augmented.add_noise: keras.layers.GaussianNoise takes deviations up to 1 only)."""
    return [
        layers.RandomZoom((-0.1, 0.2), fill_mode="nearest", seed=seed + 3),  # 10% closer to 20% farther
        layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed + 4),
        layers.RandomShear(0.15, 0.15, fill_mode="nearest", seed=seed + 5),
        layers.RandomColorJitter(brightness_factor=0.2, saturation_factor=(0.2, 0.8), hue_factor=0.1, seed=seed + 6),
        layers.RandomInvert(factor=(0.5, 0.5), seed=seed + 7),  # GoodImg has both dark-on-light and light-on-dark
        layers.RandomGaussianBlur(factor=(0.0, 1.0), kernel_size=5, sigma=(0.1, 1.5), seed=seed + 8),
    ]


class Augmented(keras.Model):
    """(classifier(augment(images)), targets) in training, classifier(images) otherwise; inputs (uint8 images,
    labels) or (uint8 images, labels, target distributions).

    augment=False trains on the images as they are; flip=False augments without flipping; rotation: the
    largest turn in degrees, either way; strong=True adds strong_layers; light=True: see relit; mixup,
    cutmix: see mix; teachers (frozen here), teacher_weight, teacher_temperature: see taught.
    """

    def __init__(self, classifier, augment=True, flip=True, strong=False, light=False, mixup=0.0, cutmix=0.0,
                 rotation=ROTATION, contrast=CONTRAST, seed=data.SEED, teachers=(), teacher_weight=0.5,
                 teacher_temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.teachers = list(teachers)
        for teacher in self.teachers:
            teacher.trainable = False
        self.teacher_weight, self.teacher_temperature = teacher_weight, teacher_temperature
        self.augment, self.flip, self.light = augment, flip, light
        self.mixup, self.cutmix = mixup, cutmix
        self.rotate = layers.RandomRotation(rotation / 360, fill_mode="nearest", seed=seed)
        self.change_contrast = layers.RandomContrast(contrast, seed=seed + 1)
        self.strong = strong_layers(seed) if strong else []
        if keras.backend.backend() == "jax":
            # Keras marks its geometric layers as not compilable for TensorFlow's sake (its image transform op
            # has no XLA kernel), and one such layer makes model.fit run the whole step op by op. On JAX they
            # are jax.numpy code and compile.
            for layer in (self.rotate, *self.strong):
                layer.supports_jit = True
        self.seed_generator = keras.random.SeedGenerator(seed + 2)
        targets = data.flip_targets()
        self.flip_targets = targets.tolist()
        self.mirror = [int(t) if t >= 0 else c for c, t in enumerate(targets)]  # a permutation: b<->d, p<->q
        self.built = True  # every variable exists now: the classifier's and the random generators'

    def call(self, inputs, training=False):
        images, labels, *targets = inputs
        images = ops.cast(images, "float32")
        if not training:
            return self.classifier(images, training=False)
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        targets = self.distributions(targets[0]) if targets else ops.one_hot(labels, data.NUM_CLASSES)
        if self.augment:
            images, targets = self.augmented(images, labels, targets)
            if self.mixup or self.cutmix:
                images, targets = self.mix(images, targets)
        if self.teachers:
            answers = ops.mean(ops.stack([ops.cast(teacher(images, training=False), "float32")
                                          for teacher in self.teachers]), axis=0)
            targets = taught(targets, ops.stop_gradient(answers), self.teacher_weight, self.teacher_temperature)
        return self.classifier(images, training=True), targets

    @staticmethod
    def distributions(targets):
        """Given targets in float32, summing to 1 again: under a mixed precision policy Keras hands a model its
        float inputs in 16 bits."""
        targets = ops.cast(targets, "float32")
        return targets / ops.sum(targets, axis=-1, keepdims=True)

    def augmented(self, images, labels, targets):
        """The images flipped (half of those that may be, their targets then mirrored: 'b' becomes 'd'), rotated,
        contrasted, relit when light, and, when strong, changed by strong_layers and noise; and their targets."""
        if self.flip:
            flipped = self.flip_mask(labels)
            images = ops.where(flipped[:, None, None, None], ops.flip(images, axis=2), images)
            mirrored = ops.take(targets, ops.convert_to_tensor(self.mirror, dtype="int32"), axis=1)
            targets = ops.where(flipped[:, None], mirrored, targets)
        images = self.change_contrast(self.rotate(images, training=True), training=True)
        if self.light:
            images = self.relit(ops.cast(images, "float32"))
        for layer in self.strong:
            images = layer(images, training=True)
        images = ops.cast(images, "float32")  # under a mixed precision policy the layers answer in float16/bfloat16
        if self.strong:
            images = ops.clip(self.add_noise(images), 0.0, 255.0)
        return images, targets

    def relit(self, images):
        """Half of the images, at random, under other light: all of it scaled by a gain, and falling off linearly
        across the crop in a random direction to a share of it at the far edge; gain and share each uniform
        between LEAST_LIGHT and 1, so the far edge keeps 9-100% of the light. No noise is added: bench/degraded.py's
        dim (a uniform 25%) and shadow (to 15% across the crop) sets, with their sensor noise, stay unseen."""
        batch, height, width = ops.shape(images)[0], ops.shape(images)[1], ops.shape(images)[2]

        def uniform(low, high):
            return keras.random.uniform((batch,), low, high, seed=self.seed_generator)[:, None, None]

        gain, far_edge, angle = uniform(LEAST_LIGHT, 1.0), uniform(LEAST_LIGHT, 1.0), uniform(0.0, 2 * math.pi)
        rows, columns = ops.arange(height, dtype="float32")[:, None], ops.arange(width, dtype="float32")[None, :]
        along = columns * ops.cos(angle) + rows * ops.sin(angle)
        nearest = ops.min(along, axis=(1, 2), keepdims=True)
        along = (along - nearest) / (ops.max(along, axis=(1, 2), keepdims=True) - nearest)  # lit edge 0, far edge 1
        light = gain * (1 - (1 - far_edge) * along)
        chosen = keras.random.uniform((batch,), seed=self.seed_generator)[:, None, None] < 0.5
        return images * ops.where(chosen, light, 1.0)[..., None]

    def mix(self, images, targets):
        """Each image mixed with its partner, the image at the same place from the other end of the (shuffled)
        batch: blended with a weight from Beta(mixup, mixup), or with a box of the partner pasted in whose area
        follows Beta(cutmix, cutmix); with both, each image one of the two at random. The targets mix by
        the share each image keeps."""
        partners, partner_targets = ops.flip(images, axis=0), ops.flip(targets, axis=0)
        batch = ops.shape(images)[0]
        if self.mixup:
            kept = keras.random.beta((batch,), self.mixup, self.mixup, seed=self.seed_generator)
            blended = kept[:, None, None, None] * images + (1 - kept[:, None, None, None]) * partners
        if self.cutmix:
            box = self.box_masks(ops.shape(images), self.cutmix)
            pasted = ops.where(box[..., None], partners, images)
            pasted_kept = 1 - ops.mean(ops.cast(box, "float32"), axis=(1, 2))
        if self.mixup and self.cutmix:
            pick_cutmix = keras.random.uniform((batch,), seed=self.seed_generator) < 0.5
            blended = ops.where(pick_cutmix[:, None, None, None], pasted, blended)
            kept = ops.where(pick_cutmix, pasted_kept, kept)
        elif self.cutmix:
            blended, kept = pasted, pasted_kept
        return blended, kept[:, None] * targets + (1 - kept[:, None]) * partner_targets

    def box_masks(self, shape, alpha):
        """For each image, a boolean height x width mask of a box covering about 1 - Beta(alpha, alpha) of the image
        around a uniformly random centre, cut off at the image's edges."""
        batch, height, width = shape[0], shape[1], shape[2]
        side = ops.sqrt(1 - keras.random.beta((batch,), alpha, alpha, seed=self.seed_generator))
        centre_y, centre_x = (keras.random.uniform((batch,), seed=self.seed_generator) for _ in range(2))
        rows = ops.arange(height, dtype="float32")[None, :, None] / height
        columns = ops.arange(width, dtype="float32")[None, None, :] / width

        def within(positions, centre):
            return ops.abs(positions - centre[:, None, None]) < side[:, None, None] / 2

        return within(rows, centre_y) & within(columns, centre_x)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """In training, the loss against the targets call returned (not the labels given)."""
        if isinstance(y_pred, (tuple, list)):
            y_pred, y = y_pred
        return super().compute_loss(x, y, y_pred, sample_weight, training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """In training, the metrics against the larger part of each target (a flipped 'b' is right as a 'd')."""
        if isinstance(y_pred, (tuple, list)):
            y_pred, targets = y_pred
            y = ops.argmax(targets, axis=-1)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def add_noise(self, images):
        """Gaussian noise of a random strength for each image, from none to NOISE."""
        strength = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), maxval=NOISE, seed=self.seed_generator)
        return images + strength * keras.random.normal(ops.shape(images), seed=self.seed_generator)

    def flip_mask(self, labels):
        """Half of the images whose mirror image is a character, at random."""
        targets = ops.take(ops.convert_to_tensor(self.flip_targets, dtype="int32"), ops.cast(labels, "int32"))
        coin = keras.random.uniform(ops.shape(labels), seed=self.seed_generator)
        return (coin < 0.5) & (targets >= 0)
