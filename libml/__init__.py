"""realmix library: data, augmentation, losses, models and the shared training loop."""
