"""mvpfarm's simulator: bytes of a .tflite model in, plain data out.

Pure by design: it never imports TensorFlow (nor the orchestrator), so a simulator
worker starts in a fraction of a second.

    from simulator import profile_model, ModelError
    record = profile_model(open("model.tflite", "rb").read(), accelerator="mvp")
"""
from simulator.errors import ModelError

__all__ = ["ModelError", "profile_model", "read_model"]


def __getattr__(name):
    # Lazy so that `import simulator` stays cheap for tools that only need the record types.
    if name == "profile_model":
        from simulator.profiler import profile_model
        return profile_model
    if name == "read_model":
        from simulator.tflite_reader import read_model
        return read_model
    raise AttributeError(name)
