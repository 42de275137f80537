"""What the metanetwork is compared with: SGD fine-tuning of every network at once (:mod:`.sgd`, on the batched
SGD-with-momentum engine of :mod:`.momentum`), SGD from the metanetwork's output (:mod:`.warmstart`) and the matched
compute comparison (:mod:`.amortization`).

Above training (the matched compute uses one-shot outputs); below the pipeline. The package exports nothing itself:
import from the module.
"""
