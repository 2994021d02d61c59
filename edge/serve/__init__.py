"""``lesionlite serve``: the on-device web page and JSON API (Flask; waitress when installed).

Flask is imported only when the server starts, so the ``lesionlite`` parser works without it.
"""

SAVE_LIMIT = 1000
"""Photos ``--save-dir`` keeps by default (``--save-limit``); beyond, the answers say they were not kept."""
SAVE_MIN_FREE = 512 * 2**20
"""Free space a kept photo must leave on the save folder's disk: the device's system needs room too."""
