"""The process and the machine under everything else: files written atomically and read safely (:mod:`.io`), where
outputs go (:mod:`.paths`), what this machine is (:mod:`.machine`), the thread and environment settings
(:mod:`.environment`), a pool of worker processes (:mod:`.parallel`) and progress bars (:mod:`.progress`).

Nothing here knows about networks, metanetworks or runs; every other layer may import it. The package exports
nothing itself: import from the module (``from workbench.system.io import atomic_write_text``).
"""
