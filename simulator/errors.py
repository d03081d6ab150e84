"""The one exception type of the simulator's public API."""


class ModelError(ValueError):
    """A model that cannot be read or profiled: missing, truncated, not a .tflite flatbuffer,
    or structurally inconsistent. The message is one line that names the file and the problem,
    fit to show a user as it is."""
