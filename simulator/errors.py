"""The simulator's public exception, and the root of every user error of the package.

`UserError` is what the command line catches: whatever raises one (the simulator, the device
agents or the orchestrator) is saying that something the user gave or asked for cannot be used,
in one line fit to show as it is; `mvpfarm` prints it and exits with status 2. It lives here, at
the bottom of the import order (simulator <- device_agents <- orchestrator), so that every layer
can raise it.
"""


class UserError(Exception):
    """Something the user gave or asked for cannot be used; the message is one line naming what
    is wrong and where."""


class ModelError(UserError, ValueError):
    """A model that cannot be read or profiled: missing, truncated, not a .tflite flatbuffer,
    or structurally inconsistent. The message is one line that names the file and the problem,
    fit to show a user as it is."""
