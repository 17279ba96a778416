"""Quantisation-aware training for the whole student (every depth, with or without low-rank).

tfmot's default registry knows Conv2D(+BN), DepthwiseConv2D(+BN), Dense, ReLU, Add and the
pooling layers. Our own layers (hard-sigmoid, the low-rank blend, the log-mel frontend, the
reshapes) and Keras' Multiply are not in it; they get the configs below, which fake-quantise
only their output (or nothing, for reshapes). QAT students build hard-swish as
x * HardSigmoid(x) (students/mobilenet.py says why), so every tensor that crosses an op
boundary has a trained range and the converter emits a full-integer file.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow_model_optimization as tfmot
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras import quant_ops
from tf_keras import layers

from students.compression import LowRankBlend
from students.frontend import LogMel
from students.mobilenet import AddChannel, FlattenStatic, HardSigmoid, HardSwish

_quantizers = tfmot.quantization.keras.quantizers
_qkeras = tfmot.quantization.keras

# tfmot's activation ranges start at [-6, 6] and move with EMA decay 0.999: after the few
# hundred steps a student trains here they are still ~80% the initial range. The embedding
# (values ~0.1-1) then gets a quantisation step of ~0.04 and the int8 file loses much of what
# training learned. At 0.99 ranges settle within ~200 steps (the BN momentum, for the same
# reason, is 0.99 too).
RANGE_EMA_DECAY = 0.99


class FastMovingAverageQuantizer(_quantizers.MovingAverageQuantizer):
    """tfmot's MovingAverageQuantizer with EMA decay RANGE_EMA_DECAY instead of 0.999."""

    def __call__(self, inputs, training, weights, **kwargs):
        return quant_ops.MovingAvgQuantize(
            inputs, weights["min_var"], weights["max_var"], ema_decay=RANGE_EMA_DECAY,
            is_training=training, num_bits=self.num_bits, per_channel=self.per_axis,
            symmetric=self.symmetric, narrow_range=self.narrow_range)


@keras.utils.register_keras_serializable("frill")
class OutputQuantizeConfig(_qkeras.QuantizeConfig):
    """No weights or inner activations are quantised; the layer's output is (8-bit, per-tensor)."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [FastMovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                           narrow_range=False)]

    def get_config(self):
        return {}


@keras.utils.register_keras_serializable("frill")
class FrontendQuantizeConfig(OutputQuantizeConfig):
    """The log-mel frontend's output is the network's real input: like tfmot's own input
    quantisation, its range is the min/max of everything seen, not a moving average (which
    starts at +-6 and would clip log-mel values down at log(0.001) = -6.9)."""

    def get_output_quantizers(self, layer):
        return [_quantizers.AllValuesQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                               narrow_range=False)]


@keras.utils.register_keras_serializable("frill")
class NoQuantizeConfig(OutputQuantizeConfig):
    """Nothing quantised: for pure reshapes, whose int8 output shares the input's scale."""

    def get_output_quantizers(self, layer):
        return []


# Layers outside tfmot's registry, quantised at their output only, or not at all (reshapes).
_OUTPUT_ONLY = (HardSwish, HardSigmoid, LowRankBlend, layers.Multiply)
_RESHAPES = (AddChannel, FlattenStatic)


def annotate(layer: keras.layers.Layer) -> keras.layers.Layer:
    """Mark a new layer for QAT, with our config where tfmot's registry has none.

    Annotating while building (rather than annotating a finished float model) saves one
    whole-model clone per QAT student.
    """
    if isinstance(layer, LogMel):
        return _qkeras.quantize_annotate_layer(layer, FrontendQuantizeConfig())
    if isinstance(layer, _OUTPUT_ONLY):
        return _qkeras.quantize_annotate_layer(layer, OutputQuantizeConfig())
    if isinstance(layer, _RESHAPES):
        return _qkeras.quantize_annotate_layer(layer, NoQuantizeConfig())
    return _qkeras.quantize_annotate_layer(layer)


def quantize(annotated: keras.Model) -> keras.Model:
    """quantize_apply: a new model with fake-quant wrappers on every annotated layer.

    Unannotated layers (the training-only projection) stay float: it is never exported, and
    quantising it would only add noise in the teacher's target space.
    """
    with _qkeras.quantize_scope(custom_objects()):
        model = _qkeras.quantize_apply(annotated)
    _faster_ranges(model)
    return model


def _faster_ranges(model: keras.Model) -> int:
    """Switch every MovingAverageQuantizer that tfmot built into `model` to the fast EMA.

    tfmot makes most quantizers inside quantize_apply (its Conv+BN transforms create their own
    configs), so the built wrappers are the only hook. Same variables and inference behaviour;
    only the training-time range update rate changes. (A model re-created from its config,
    e.g. by clone_model, gets tfmot's 0.999 again.) Returns how many were switched.
    """
    switched = 0
    for layer in model.layers:
        quantizers = [*(getattr(layer, "_output_quantizers", None) or []),
                      *(a.quantizer for a in getattr(layer, "_quantize_activations", []))]
        for quantizer in quantizers:
            if type(quantizer) is _quantizers.MovingAverageQuantizer:
                quantizer.__class__ = FastMovingAverageQuantizer
                switched += 1
    return switched


def custom_objects() -> dict:
    """What Keras needs to rebuild a quantized student (clone, load)."""
    return {"OutputQuantizeConfig": OutputQuantizeConfig, "NoQuantizeConfig": NoQuantizeConfig,
            "FrontendQuantizeConfig": FrontendQuantizeConfig, "HardSwish": HardSwish,
            "HardSigmoid": HardSigmoid, "LowRankBlend": LowRankBlend, "LogMel": LogMel,
            "AddChannel": AddChannel, "FlattenStatic": FlattenStatic}
