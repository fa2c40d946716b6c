"""Distillation methods' host side: what a method's loss sees, and how the teacher's side is served."""
