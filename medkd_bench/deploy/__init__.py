"""Deployment formats: trained students exported and checked as a clinic would run them (ONNX Runtime)."""
