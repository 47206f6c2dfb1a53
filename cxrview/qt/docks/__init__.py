"""Dock widgets around the canvas (file list, metadata)."""
