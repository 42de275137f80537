"""What a run shows: its results tables (:mod:`.results`), findings (:mod:`.findings`), the report
(:mod:`.report`), the run's index page (:mod:`.index`, :mod:`.index_sections`), figure captions (:mod:`.captions`),
figure pages and thumbnails (:mod:`.figure_page`, :mod:`.thumbnails`) and notebook pages (:mod:`.notebook_page`).

It reads results and measures (:mod:`workbench.measure`), never trains; the pipeline and the run machinery call it.
The package exports nothing itself: import from the module.
"""
