"""Shipped model bundles (data only): each folder holds model.tflite, labels.txt, metadata.json;
``reference/`` holds a bare ImageNet model for latency ratios only (``lesionlite bench --reference``)."""
