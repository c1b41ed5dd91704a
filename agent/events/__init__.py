"""From tracks to messages: events, per-class counts, and the sinks that take them."""
