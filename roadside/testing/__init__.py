"""Tools for testing Roadside with real parts, shared by the tests, the benchmarks and the demo.

Nothing here runs on a box or at a station. Each module is one tool:

* ``broker``: a private mosquitto (own config, free port, own folder; start, stop, restart);
* ``badlink``: a bad cellular link in user space, a TCP proxy between a box and its broker;
* ``postgres``: a private PostgreSQL server for a test session, and scratch databases on it;
* ``ports``: free TCP ports and waiting for a listener;
* ``waiting``: polling for what other threads and processes do, never sleeping blindly;
* ``shared``: where the real model weights and footage are (``$ROADSIDE_SHARED``);
* ``configs``, ``messages``, ``clients``, ``recordings``: config documents, wire messages,
  MQTT clients for the station's or a box's side, and reading recordings back;
* ``fixtures``: the pytest plugin the test suite loads (``pytest_plugins``).

Only ``fixtures`` imports pytest; the others are plain modules a benchmark may use.
"""
