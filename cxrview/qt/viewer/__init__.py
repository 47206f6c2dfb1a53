"""The central image canvas and its overlay layers."""

from cxrview.qt.viewer.canvas import ImageCanvas
from cxrview.qt.viewer.layers import Measurement, MeasurementLayer, OverlayLayer

__all__ = ["ImageCanvas", "Measurement", "MeasurementLayer", "OverlayLayer"]
