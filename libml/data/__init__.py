"""Data: record files, dataset names, the training and evaluation pipelines, augmentations, and
what the dataset commands compute (builders, splits, augmented copies, class filtering)."""
