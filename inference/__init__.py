"""Using a trained run: predictions (``load_classifier``), CAVPT attention maps, the learned
prompt in words."""

from inference.classifier import Classifier, Predictions, SavedClasses, load_classifier

__all__ = ["Classifier", "Predictions", "SavedClasses", "load_classifier"]
