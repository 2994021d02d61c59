"""lesionlite edge runtime: numpy, Pillow and a LiteRT interpreter; never TensorFlow."""
__version__ = "0.1.0"
