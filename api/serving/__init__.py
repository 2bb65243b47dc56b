"""What the API serves: the loaded versions and their hot-swap, generation and its batching, sentiment."""
