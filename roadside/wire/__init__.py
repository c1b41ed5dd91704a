"""The wire contract between boxes and the station: topics, messages, commands, transfers.

Imported by the box, the station and provisioning alike, and importing none of them;
docs/protocol.md explains it for people. Code reads long field names; the JSON on the wire
keeps its short keys (each field's alias), so payloads stay small on a 3G link.
"""
