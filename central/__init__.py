"""The station side: ingest of every box's messages, the store, and the officer command line."""
