"""The run machinery: params files (:mod:`.params`, :mod:`.params_file`, :mod:`.params_rules`), running the
notebooks (:mod:`.runner`), checking and estimating a run before it starts (:mod:`.preflight`, :mod:`.estimate`,
:mod:`.calibration`) and the commands without Jupyter (:mod:`.train_command`, :mod:`.zoo_commands`,
:mod:`.network_file`, :mod:`.ship`).

The top layer below the entry points (``python -m workbench``, :mod:`workbench.notebook`): it may import every
other layer, and none imports it. The package exports nothing itself: import from the module.
"""
