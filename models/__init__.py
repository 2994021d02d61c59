"""Shipped model bundles (data only): each folder holds model.tflite, labels.txt, metadata.json."""
