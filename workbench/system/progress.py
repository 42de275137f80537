"""Progress bars that read well where they end up: a widget or terminal bar when someone watches, plain text lines
in an executed notebook that is read later as a file.

A notebook executed without a live frontend (``python -m workbench run``, papermill, nbconvert) is read later as a
file: a tqdm widget bar in it is frozen at its first state ("0%| 0/136"). :func:`batch_mode` tells the two
situations apart (``WORKBENCH_BATCH=1``/``0``, which the runner sets for its kernels; otherwise whether papermill,
nbconvert or nbclient started this kernel), and then :func:`progress_bar` (and every ``tqdm.auto`` bar once
:func:`use_text_progress` ran) writes plain text lines: none for the empty start, at most one per
:data:`BATCH_MININTERVAL` seconds, and one final summary line per bar.

Below every layer that shows progress (the training loop, the worker pool, the notebooks' helpers), so none of them
imports another for it.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

__all__ = ["BATCH_ENV", "BATCH_MININTERVAL", "batch_mode", "progress_bar", "use_text_progress"]

BATCH_ENV = "WORKBENCH_BATCH"
# processes whose kernels run notebooks without a frontend (the kernel's parent process command line)
BATCH_PARENTS = ("papermill", "nbconvert", "nbclient")
BATCH_MININTERVAL = 30.0  # seconds between two progress lines of one bar in a batch run


def batch_mode() -> bool:
    """Is this process executing notebooks with nobody watching (papermill, nbconvert, ``python -m workbench run``)?

    ``WORKBENCH_BATCH`` decides when set (``1``/``0``); otherwise a Jupyter kernel whose parent process is
    papermill, nbconvert or nbclient is in a batch run (the kernel then sets ``WORKBENCH_BATCH=1`` for the worker
    processes it starts). Everything else -- JupyterLab, a terminal, a test -- is not.
    """
    value = os.environ.get(BATCH_ENV, "").strip().lower()
    if value:
        return value not in ("0", "false", "no", "off")
    if "ipykernel" not in sys.modules:
        return False
    try:
        parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except (OSError, ValueError):  # not Linux: only WORKBENCH_BATCH tells
        return False
    if any(name in parent for name in BATCH_PARENTS):
        os.environ[BATCH_ENV] = "1"  # worker processes inherit it
        return True
    return False


class _Lines:
    """A file for :class:`TextProgress`: carriage returns dropped, whitespace-only writes ignored, to stderr."""

    def write(self, text: str) -> None:
        text = text.replace("\r", "")
        if text.strip():
            sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_TEXT_PROGRESS = None


def _text_progress_class():
    global _TEXT_PROGRESS
    if _TEXT_PROGRESS is not None:
        return _TEXT_PROGRESS
    from tqdm.std import tqdm as std_tqdm

    class TextProgress(std_tqdm):
        """tqdm for notebooks that are read as files: whole lines (no carriage returns, no cursor moves, no bar
        graphic), nothing for the empty start, at most one line per ``mininterval`` (at least
        :data:`BATCH_MININTERVAL` seconds), and always a final line (``leave`` is forced on) -- so the executed
        notebook records how long each loop took instead of a frozen "0%"."""

        KNOWN = "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%) [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
        UNKNOWN = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"

        def __init__(self, *args, **kwargs):
            self._ready, self._closing, self._last_line = False, False, time.monotonic()
            kwargs["mininterval"] = max(float(kwargs.get("mininterval") or 0), BATCH_MININTERVAL)
            kwargs["maxinterval"] = max(float(kwargs.get("maxinterval") or 0), kwargs["mininterval"])
            kwargs["leave"], kwargs["dynamic_ncols"], kwargs["position"] = True, False, None
            kwargs.setdefault("file", _Lines())
            kwargs.pop("bar_format", None)
            super().__init__(*args, **kwargs)
            self._ready = True

        def display(self, msg=None, pos=None):
            if not self._ready or (self.disable and not self._closing):  # close() disables before its display
                return True
            if not self._closing and (self.n == self.initial
                                      or time.monotonic() - self._last_line < self.mininterval):
                return True
            self.bar_format = self.KNOWN if self.total else self.UNKNOWN
            text = str(self) if msg is None else msg
            if text.strip():
                self.fp.write(text.lstrip(": ") + "\n")
                self.fp.flush()
                self._last_line = time.monotonic()
            return True

        def close(self):
            if not self.disable and not self._closing:
                self._closing = True
            super().close()

        def clear(self, nolock=False):  # nothing drawn in place, nothing to clear
            pass

        def moveto(self, n):  # no cursor movement in a file
            pass

    _TEXT_PROGRESS = TextProgress
    return TextProgress


def progress_bar(*args, **kwargs):
    """A tqdm progress bar: plain text lines in a batch run (:func:`batch_mode`), ``tqdm.auto`` otherwise (a
    widget bar in JupyterLab, a terminal bar in a shell)."""
    if batch_mode():
        return _text_progress_class()(*args, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(*args, **kwargs)


def use_text_progress() -> None:
    """Make every ``tqdm.auto`` bar of this process a text bar: ``tqdm.auto``/``tqdm.autonotebook`` for later
    imports, and the ``tqdm`` name already bound by imported ``workbench`` modules."""
    import tqdm.auto
    import tqdm.autonotebook
    from tqdm.std import tqdm as std_tqdm

    text = _text_progress_class()
    originals = {getattr(tqdm.auto, "tqdm", None), getattr(tqdm.autonotebook, "tqdm", None)} - {text}
    for module in (tqdm.auto, tqdm.autonotebook):
        module.tqdm = text
        module.trange = lambda *args, **kwargs: text(range(*args), **kwargs)
    for name, module in list(sys.modules.items()):
        if name == "workbench" or name.startswith("workbench."):
            bound = getattr(module, "tqdm", None)
            if bound in originals and isinstance(bound, type) and issubclass(bound, std_tqdm):
                module.tqdm = text
