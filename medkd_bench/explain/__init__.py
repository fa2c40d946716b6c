"""Saliency: CAM builders for plugins, maps on a seeded sample, faithfulness, agreement and panels."""
