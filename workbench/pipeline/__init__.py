"""The glue between notebooks 03-07 and the command line (being split into one module per concept)."""
from .runs import *  # noqa: F401,F403
from .runs import ZOO_BATCH_SIZE, ZOO_CHECKPOINTS, __all__, _method_settings, load_model  # noqa: F401
