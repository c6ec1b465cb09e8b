"""The window's controllers: they start workers, follow them and change the shared state."""
