"""lesionlite training (workstation side): data index, lesion-grouped splits, models, training, reports."""
