"""Plotly figures and ipywidgets explorers, one module per notebook topic: :mod:`.graph` (a network as its graph),
:mod:`.gauge` (gauge freedom), :mod:`.zoo` (zoo accuracy), :mod:`.training` (metanet training, ablation, results),
:mod:`.results` (accuracy vs time, warm start, break-even), :mod:`.widgets` (shared widget plumbing).

Every figure is a pure function of its inputs returning a ``plotly.graph_objects.Figure``; nothing here trains."""
