"""MobileNetV3 tiny/small/large from plain, quantisable tf_keras layers.

Keras' own MobileNetV3 builds hard-swish from TFOpLambda ops, which tfmot cannot quantise,
and (since 2021) stops its head before the last-point 1x1 conv that FRILL's 38.5 MiB figure
includes. This file rebuilds the 2020-era network: the same block tables, channel rounding
and head, with hard-swish / hard-sigmoid as tiny custom layers that tfmot can annotate.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tf_keras import layers

BN_EPSILON = 1e-3
# Keras uses 0.999; distillation runs here are tens to hundreds of steps, and with 0.999 the moving
# statistics used at export would still be ~80% their initial (0, 1) values after 200 steps.
BN_MOMENTUM = 0.99
SE_RATIO = 0.25


@keras.utils.register_keras_serializable("frill")
class HardSwish(layers.Layer):
    """x * relu6(x + 3) / 6, written so the TFLite converter fuses it into HARD_SWISH."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


@keras.utils.register_keras_serializable("frill")
class HardSigmoid(layers.Layer):
    """relu6(x + 3) / 6: the squeeze-excite gate."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


@keras.utils.register_keras_serializable("frill")
class AddChannel(layers.Layer):
    """[B, H, W] -> [B, H, W, 1] via expand_dims: a static EXPAND_DIMS in TFLite, where Keras'
    Reshape emits SHAPE/STRIDED_SLICE/PACK ops that XNNPACK does not delegate."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.expand_dims(x, -1)


@keras.utils.register_keras_serializable("frill")
class FlattenStatic(layers.Layer):
    """Flatten with a constant target shape, for the same reason as AddChannel."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])


def make_divisible(value: float, divisor: int = 8) -> int:
    """Keras/slim channel rounding: nearest multiple of `divisor`, never more than 10% down."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class Block(NamedTuple):
    """One inverted residual block, as in the Keras MobileNetV3 stack tables."""

    expansion: float
    filters: int          # before the width multiplier
    kernel: int
    stride: int
    se: bool
    hswish: bool          # hard-swish (True) or ReLU (False)


_SMALL = (
    Block(1, 16, 3, 2, True, False),
    Block(72 / 16, 24, 3, 2, False, False),
    Block(88 / 24, 24, 3, 1, False, False),
    Block(4, 40, 5, 2, True, True),
    Block(6, 40, 5, 1, True, True),
    Block(6, 40, 5, 1, True, True),
    Block(3, 48, 5, 1, True, True),
    Block(3, 48, 5, 1, True, True),
    Block(6, 96, 5, 2, True, True),
    Block(6, 96, 5, 1, True, True),
    Block(6, 96, 5, 1, True, True),
)
_LARGE = (
    Block(1, 16, 3, 1, False, False),
    Block(4, 24, 3, 2, False, False),
    Block(3, 24, 3, 1, False, False),
    Block(3, 40, 5, 2, True, False),
    Block(3, 40, 5, 1, True, False),
    Block(3, 40, 5, 1, True, False),
    Block(6, 80, 3, 2, False, True),
    Block(2.5, 80, 3, 1, False, True),
    Block(2.3, 80, 3, 1, False, True),
    Block(2.3, 80, 3, 1, False, True),
    Block(6, 112, 3, 1, True, True),
    Block(6, 112, 3, 1, True, True),
    Block(6, 160, 5, 2, True, True),
    Block(6, 160, 5, 1, True, True),
    Block(6, 160, 5, 1, True, True),
)
# FRILL's custom tiny net: the Small stack without its second 48-channel block and its
# third 96-channel block (Small blocks 7 and 10).
_TINY = tuple(b for i, b in enumerate(_SMALL) if i not in (7, 10))

# depth -> (blocks, last-point channels of the head)
ARCHITECTURES: dict[str, tuple[tuple[Block, ...], int]] = {
    "tiny": (_TINY, 512),
    "small": (_SMALL, 1024),
    "large": (_LARGE, 1280),
}


Annotate = Callable[[layers.Layer], layers.Layer]


def _identity(layer: layers.Layer) -> layers.Layer:
    return layer


class _Builder:
    """Builds the network; `annotate` wraps each new layer (tfmot annotation for QAT)."""

    def __init__(self, annotate: Annotate | None):
        self.qat = annotate is not None
        self.a = annotate or _identity

    def hard_swish(self, x: tf.Tensor, name: str) -> tf.Tensor:
        """One fused HardSwish layer (float), or x * HardSigmoid(x) as two layers (QAT).

        Both compute the same function. The split form is for QAT: the int8 TFLite HARD_SWISH
        kernel is not delegated to XNNPACK (ai-edge-litert 2.3), so each one cuts the graph
        into another partition (tiny alpha 1.0: 16 partitions, 0.55 ms vs 0.23 ms split).
        With the gate fake-quantised as its own layer, the converter emits int8
        ADD(+RELU6)/MUL/MUL instead, which XNNPACK runs.
        """
        if self.qat:
            gate = self.a(HardSigmoid(name=name + "/gate"))(x)
            return self.a(layers.Multiply(name=name + "/hswish"))([x, gate])
        return HardSwish(name=name + "/hswish")(x)

    def activation(self, x: tf.Tensor, hswish: bool, name: str) -> tf.Tensor:
        return self.hard_swish(x, name) if hswish else self.a(layers.ReLU(name=name + "/relu"))(x)

    def conv_bn(self, x: tf.Tensor, filters: int, kernel: int, stride: int,
                name: str) -> tf.Tensor:
        x = self.a(layers.Conv2D(filters, kernel, strides=stride, padding="same",
                                 use_bias=False, name=name))(x)
        return self.a(layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
                                                name=name + "/bn"))(x)

    def squeeze_excite(self, x: tf.Tensor, channels: int, name: str) -> tf.Tensor:
        a = self.a
        s = a(layers.GlobalAveragePooling2D(keepdims=True, name=name + "/pool"))(x)
        s = a(layers.Conv2D(make_divisible(channels * SE_RATIO), 1, name=name + "/squeeze"))(s)
        s = a(layers.ReLU(name=name + "/relu"))(s)
        s = a(layers.Conv2D(channels, 1, name=name + "/excite"))(s)
        s = a(HardSigmoid(name=name + "/hsigmoid"))(s)
        return a(layers.Multiply(name=name + "/mul"))([x, s])

    def inverted_residual(self, x: tf.Tensor, block: Block, alpha: float,
                          index: int) -> tf.Tensor:
        name = f"block{index}"
        in_channels = x.shape[-1]
        filters = make_divisible(block.filters * alpha)
        expanded = make_divisible(in_channels * block.expansion)
        shortcut = x
        if index > 0:  # Keras' first block has no expansion conv (its expansion is 1)
            x = self.conv_bn(x, expanded, 1, 1, name + "/expand")
            x = self.activation(x, block.hswish, name + "/expand")
        # 'same' padding instead of Keras' explicit ZeroPadding2D: identical parameter count,
        # one op fewer, and nothing here depends on ImageNet-weight alignment.
        x = self.a(layers.DepthwiseConv2D(block.kernel, strides=block.stride, padding="same",
                                          use_bias=False, name=name + "/depthwise"))(x)
        x = self.a(layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
                                             name=name + "/depthwise/bn"))(x)
        x = self.activation(x, block.hswish, name + "/depthwise")
        if block.se:
            x = self.squeeze_excite(x, expanded, name + "/se")
        x = self.conv_bn(x, filters, 1, 1, name + "/project")
        if block.stride == 1 and in_channels == filters:
            x = self.a(layers.Add(name=name + "/add"))([shortcut, x])
        return x


def mobilenet_v3(x: tf.Tensor, depth: str, alpha: float,
                 annotate: Annotate | None = None) -> tf.Tensor:
    """Backbone + paper-era head: [B, H, W, 1] -> [B, H/32, W/32, last-point channels].

    Head (Keras 2.3, which FRILL used): 1x1 conv to 6x the last block's channels (BN,
    hard-swish), then a 1x1 conv with bias to the last-point channels and hard-swish,
    both before pooling. Last-point channels grow with alpha only when alpha > 1.
    annotate: for QAT, wraps every layer as it is created (students.qat.annotate); it also
    switches hard-swish to its split form (see `_Builder.hard_swish`).
    """
    if depth not in ARCHITECTURES:
        raise ValueError(f"depth={depth!r} is not valid; choose one of {list(ARCHITECTURES)}")
    blocks, last_point = ARCHITECTURES[depth]
    net = _Builder(annotate)
    x = net.conv_bn(x, 16, 3, 2, "stem")  # the stem is 16 channels at every alpha, as in Keras
    x = net.hard_swish(x, "stem")
    for index, block in enumerate(blocks):
        x = net.inverted_residual(x, block, alpha, index)
    x = net.conv_bn(x, make_divisible(x.shape[-1] * 6), 1, 1, "head/conv")
    x = net.hard_swish(x, "head/conv")
    if alpha > 1.0:
        last_point = make_divisible(last_point * alpha)
    x = net.a(layers.Conv2D(last_point, 1, use_bias=True, name="head/last_point"))(x)
    return net.hard_swish(x, "head/last_point")
