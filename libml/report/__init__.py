"""What a run reports: evaluation, metrics, TensorBoard scalars, pictures and HParams, events read back."""
