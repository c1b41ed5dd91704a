"""Seeing: the motion gate, the detector, the tracker and zones."""
