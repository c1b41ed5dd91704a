"""Fleet operations from the station: `roadside fleet` (software updates, status)."""
