"""Built-in detectors. Each is registered under the `mlapi.detectors` entry-point group."""

from mlapi.detectors.base import Detector, Options

__all__ = ["Detector", "Options"]
