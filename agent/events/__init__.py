"""From tracks to messages: events, per-class counts, the sinks that take them and the
fan-out that hands each message to every sink."""
