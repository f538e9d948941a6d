"""The recipe's augmentation (rotation, contrast, the label-safe flip) inside the compiled training step.

strong=True adds what photographs of characters vary in and what keeps every label right: scale,
shift and shear, brightness, saturation and hue, inverted polarity (light on dark), blur and
sensor noise.

Augmented wraps the classifier for model.fit on ((images, labels), labels). It runs on any Keras
backend with keras.ops and keras.random, so on an accelerator the training images can stay on the
device and be augmented there, step after step, without a host round trip.

A horizontal flip changes some labels ('b' becomes 'd'), and a layer sees no labels. So Augmented
takes the labels as a second input, flips only images whose mirror is a character
(data.flip_targets), and reads the prediction of a flipped image through the mirror: the loss of a
mirrored 'b' against the label 'b' is the loss of that image against 'd'. Validation and prediction
see the classifier alone.
"""

import keras
from keras import layers, ops

import data

ROTATION = 0.05  # of a full turn: +-18 degrees
CONTRAST = 0.2
NOISE = 10.0  # the largest standard deviation of sensor noise, in 0-255 pixel units


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
    """classifier(augment(images)) in training, classifier(images) otherwise; inputs (uint8 images, labels).

    augment=False trains on the images as they are; flip=False augments without flipping; strong=True
    adds strong_layers.
    """

    def __init__(self, classifier, augment=True, flip=True, strong=False, rotation=ROTATION, contrast=CONTRAST,
                 seed=data.SEED, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.augment, self.flip = augment, flip
        self.rotate = layers.RandomRotation(rotation, fill_mode="nearest", seed=seed)
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
        self.mirror = [int(t) if t >= 0 else c for c, t in enumerate(targets)]  # the class a mirrored class reads as
        self.built = True  # every variable exists now: the classifier's and the random generators'

    def call(self, inputs, training=False):
        images, labels = inputs
        images = ops.cast(images, "float32")
        if not (training and self.augment):
            return self.classifier(images, training=training)
        flipped = self.flip_mask(labels) if self.flip else ops.zeros(ops.shape(labels), dtype="bool")
        images = ops.where(flipped[:, None, None, None], ops.flip(images, axis=2), images)
        images = self.change_contrast(self.rotate(images, training=True), training=True)
        for layer in self.strong:
            images = layer(images, training=True)
        if self.strong:
            images = ops.clip(self.add_noise(images), 0.0, 255.0)
        probabilities = self.classifier(images, training=True)
        mirrored = ops.take(probabilities, ops.convert_to_tensor(self.mirror, dtype="int32"), axis=1)
        return ops.where(flipped[:, None], mirrored, probabilities)

    def add_noise(self, images):
        """Gaussian noise of a random strength for each image, from none to NOISE."""
        strength = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), maxval=NOISE, seed=self.seed_generator)
        return images + strength * keras.random.normal(ops.shape(images), seed=self.seed_generator)

    def flip_mask(self, labels):
        """Half of the images whose mirror image is a character, at random."""
        targets = ops.take(ops.convert_to_tensor(self.flip_targets, dtype="int32"), ops.cast(labels, "int32"))
        coin = keras.random.uniform(ops.shape(labels), seed=self.seed_generator)
        return (coin < 0.5) & (targets >= 0)
