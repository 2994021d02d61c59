"""``lesionlite serve``: the on-device web page and JSON API (Flask; waitress when installed).

Flask is imported only when the server starts, so the ``lesionlite`` parser works without it.
"""
