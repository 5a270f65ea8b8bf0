"""Adversarial training: the task, its losses, its judges (mode coverage, FID) and its pictures.

`GANTask` is re-exported here: checkpoints written before the layout change name
`lightsuite.tasks.gan.GANTask` as their task.
"""

from lightsuite.tasks.gan.task import GANTask

__all__ = ["GANTask"]
