"""The recipe's augmentation (rotation, contrast, the label-safe flip) inside the compiled training step.

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


class Augmented(keras.Model):
    """classifier(augment(images)) in training, classifier(images) otherwise; inputs (uint8 images, labels).

    augment=False trains on the images as they are; flip=False augments without flipping.
    """

    def __init__(self, classifier, augment=True, flip=True, rotation=ROTATION, contrast=CONTRAST, seed=data.SEED,
                 **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.augment, self.flip = augment, flip
        self.rotate = layers.RandomRotation(rotation, fill_mode="nearest", seed=seed)
        self.change_contrast = layers.RandomContrast(contrast, seed=seed + 1)
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
        probabilities = self.classifier(images, training=True)
        mirrored = ops.take(probabilities, ops.convert_to_tensor(self.mirror, dtype="int32"), axis=1)
        return ops.where(flipped[:, None], mirrored, probabilities)

    def flip_mask(self, labels):
        """Half of the images whose mirror image is a character, at random."""
        targets = ops.take(ops.convert_to_tensor(self.flip_targets, dtype="int32"), ops.cast(labels, "int32"))
        coin = keras.random.uniform(ops.shape(labels), seed=self.seed_generator)
        return (coin < 0.5) & (targets >= 0)
