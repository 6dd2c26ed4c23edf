"""Placeholder: being written."""
def load_generator(source, device="cpu"): raise NotImplementedError
