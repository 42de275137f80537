"""How a result is measured and judged: scores of a batch of networks (:mod:`.score`), bootstrap intervals
(:mod:`.uncertainty`) and the claims a run checks, each judged on its interval (:mod:`.verdicts`).

Built on the paper's maths (:mod:`workbench.objective`), below training, the baselines and the reports, which all
use it. The package exports nothing itself: import from the module.
"""
