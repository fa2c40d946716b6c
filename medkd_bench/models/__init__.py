"""Helpers for plugins that build models: timm builders and target-layer pickers."""
