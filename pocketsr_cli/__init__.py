"""pocketsr: batch-upscale folders of photographs with fast single-step super-resolution."""

__version__ = "0.1.0"
