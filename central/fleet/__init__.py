"""Fleet operations from the station: each box's config (desired and reported) and software.

``roadside fleet`` (``cli.py``) is the command group; its commands live beside it, one module
per concern.
"""
