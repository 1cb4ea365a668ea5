"""Datasets (each a small loader of an installed package's files) and view augmentations."""
