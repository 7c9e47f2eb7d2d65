"""Import stub for `wandb`: semilearn 0.3.2 imports it at start-up, the harness never calls it (../../usb.py)."""
