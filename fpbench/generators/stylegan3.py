"""Placeholder: being written."""
StyleGAN3Generator = None
