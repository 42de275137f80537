"""Model zoos (being split into one module per concept; see container.py for now)."""
from .container import *  # noqa: F401,F403  (temporary: the next commit lists the names)
from .container import _read_layout  # noqa: F401
