"""Encoders and heads (multi-head, gated, whitening)."""
