import os

# tfmot and our models are Keras 2 (tf-keras); make tf.keras resolve to it too.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
