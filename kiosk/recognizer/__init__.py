"""The on-device recognizer: numpy frames in, decisions out. It knows nothing of cameras or screens."""
