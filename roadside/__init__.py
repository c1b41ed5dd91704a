"""Roadside: software for roadside camera boxes and the district station that receives them."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("roadside")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"
