"""Point-and-shoot live camera classification for the Raspberry Pi (``lesionlite camera``).

Frame sources (picamera2, OpenCV, replay) feed a capture thread; the main thread classifies the
newest frame, smooths the label, gates on image quality and draws one overlay on whichever display
is available. A shot classifies a still and saves it with a JSON record. A decision aid, never a
diagnosis.
"""
