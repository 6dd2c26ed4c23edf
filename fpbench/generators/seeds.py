"""Placeholder: being written."""
def seeds_to_z(seeds, z_dim, device="cpu", dtype=None): raise NotImplementedError
