"""Files from the box to the station: chunked, windowed, resumable uploads over MQTT."""
