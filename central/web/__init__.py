"""The officers' console: a server-rendered web app in Vietnamese (English selectable).

Starlette routes (``routes/``) render Jinja2 templates (``templates/``); a little plain
JavaScript (``static/console.js``) follows clip transfers and the live view over server-sent
events. Footage requests go through the same ``BoxRequest`` as the officer command line and
are audited under the logged-in officer's account. Needs the ``web`` extra.
"""

from __future__ import annotations

import importlib.util

from roadside.errors import RoadsideError

WEB_MODULES = ("starlette", "jinja2", "uvicorn", "multipart", "babel", "argon2")


def require_web_extra() -> None:
    """One line naming what to install when the console's libraries are missing."""
    missing = [m for m in WEB_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise RoadsideError(f"the console needs {', '.join(missing)}: pip install 'roadside[web]'")
