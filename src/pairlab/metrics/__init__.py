"""Representation diagnostics and evaluation protocols, registered under kind ``metrics``.

Modules are discovered by :func:`pairlab.registry.discover`; import from the modules themselves
(e.g. ``from pairlab.metrics.knn import knn_accuracy``).
"""
