"""margin-tune's sweeps, tracking, reports and CLI around the trainables.

Importing the package asks a local Ray, should one start in this process, to stay on loopback
(see :mod:`pipeline.ray_network`); that has to happen before Ray's own first import.
"""

from pipeline.ray_network import prefer_loopback

prefer_loopback()
