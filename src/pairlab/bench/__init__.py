"""Benchmarks: ``pairlab bench loss`` (speed and memory of contrastive losses vs peers and the floor).

Modules: :mod:`~pairlab.bench.impls` (the implementations), :mod:`~pairlab.bench.runner` (one
subprocess per configuration, records), :mod:`~pairlab.bench.stubs` (inert torchvision for peers),
:mod:`~pairlab.bench.cli` (the command and its table).
"""
