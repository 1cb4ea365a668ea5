"""Adapters that put pairlab objectives where users already work (sentence-transformers, Lightning).

Each adapter imports its framework lazily, so ``import pairlab`` never needs it.
"""
