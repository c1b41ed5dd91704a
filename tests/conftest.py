"""The suite's fixtures live in the ``roadside.testing`` package, loaded here as a plugin."""

pytest_plugins = ["roadside.testing.fixtures"]
