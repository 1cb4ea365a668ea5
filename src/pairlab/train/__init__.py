"""The training job: configuration, loop, checkpoints, evaluation and the ``pairlab train | eval`` commands.

``from pairlab.train.loop import train``; ``from pairlab.train.config import TrainConfig, load_config``.
"""
