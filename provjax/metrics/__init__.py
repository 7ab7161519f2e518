"""Exact metrics, each tested against its reference implementation.

The bottom layer: these modules import nothing else from provjax, so any task,
system or benchmark can score with them without pulling in models or data.
"""
