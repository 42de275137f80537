"""Training one metanetwork and using it: the settings (:mod:`.train_config`), the training loop and one-shot
optimization (:mod:`.optimize`), checkpoints and resuming (:mod:`.checkpoints`), whether a trained metanetwork
transfers to another network (:mod:`.transfer`) and :class:`~.oneshot.OneShot` for a user's own network.

Above the paper's maths, the metanetworks and the zoo; below the baselines, the reports, the pipeline and the run
machinery, none of which it imports. The package exports nothing itself: import from the module.
"""
