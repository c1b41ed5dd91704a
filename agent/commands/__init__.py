"""Requests from the station and their answers: clip, snapshot, cancel, ping, status."""
