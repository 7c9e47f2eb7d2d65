"""Using a trained run: the servable SavedModel export and folder inference."""
