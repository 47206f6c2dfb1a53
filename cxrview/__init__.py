"""cxrview: offline chest X-ray review and annotation."""

__version__ = "0.1.0"
