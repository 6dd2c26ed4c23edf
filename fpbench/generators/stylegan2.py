"""Placeholder: being written."""
StyleGAN2Generator = None
