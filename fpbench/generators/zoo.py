"""Placeholder: being written."""
ZOO = {}
