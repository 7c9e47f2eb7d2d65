"""Fully supervised baselines sharing RealMix's model and training loop."""
