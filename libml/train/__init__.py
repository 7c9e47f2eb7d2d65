"""Training: the one loop, a run from its settings, its folder and checkpoints, replicas, precision, optimisers."""
