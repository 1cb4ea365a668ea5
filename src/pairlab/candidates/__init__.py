"""Candidates beyond the in-batch ones: queues, synthesised negatives; each module registers under ``candidates``."""
