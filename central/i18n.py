"""The station's languages: English messages in the code, Vietnamese in a gettext catalog.

``central/locale/vi/LC_MESSAGES/roadside.po`` is read with Babel when first needed (no compile
step to forget). The language in force is a context variable: the console sets it for each
request (the officer's cookie, else ``web.language``), the officer command line once from
$ROADSIDE_LANG or the usual $LANGUAGE / $LC_ALL / $LC_MESSAGES / $LANG. Without Babel (a box's
install) every message stays English.

Messages use ``%(name)s`` placeholders: ``_("Box %(box)s is offline") % {"box": name}``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, tzinfo
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

LANGUAGES = ("vi", "en")
SOURCE_LANGUAGE = "en"
DOMAIN = "roadside"
LOCALE_DIR = Path(__file__).with_name("locale")
ENV_LANG = "ROADSIDE_LANG"

_current: ContextVar[str] = ContextVar("roadside_language", default=SOURCE_LANGUAGE)


def catalog_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def catalog(language: str) -> dict[str, str | tuple[str, ...]]:
    """msgid -> translation (a tuple of plural forms for plural messages); fuzzy and empty
    entries are left out, so they show in English rather than wrong."""
    if language == SOURCE_LANGUAGE:
        return {}
    try:
        from babel.messages.pofile import read_po
    except ModuleNotFoundError:
        log.warning("messages in %r need Babel: pip install 'roadside[web]'", language)
        return {}
    with catalog_path(language).open("rb") as f:
        cat = read_po(f, locale=language, domain=DOMAIN)
    out: dict[str, str | tuple[str, ...]] = {}
    for msg in cat:
        if not msg.id or msg.fuzzy:
            continue
        text = msg.string
        if isinstance(msg.id, tuple | list):
            forms = tuple(text) if isinstance(text, tuple | list) else ()
            if forms and all(forms):
                out[msg.id[0]] = forms
        elif isinstance(text, str) and text:
            out[msg.id] = text
    return out


def language() -> str:
    return _current.get()


def use(lang: str) -> None:
    """Speak ``lang`` from here on in this context (a request, the command line)."""
    _current.set(lang if lang in LANGUAGES else SOURCE_LANGUAGE)


@contextmanager
def speaking(lang: str) -> Iterator[None]:
    token = _current.set(lang if lang in LANGUAGES else SOURCE_LANGUAGE)
    try:
        yield
    finally:
        _current.reset(token)


def gettext(message: str) -> str:
    found = catalog(_current.get()).get(message)
    return found if isinstance(found, str) else message


def ngettext(singular: str, plural: str, n: int) -> str:
    found = catalog(_current.get()).get(singular)
    if isinstance(found, tuple):
        # Vietnamese has one form; a language with more would need the catalog's rule.
        return found[0] if len(found) == 1 or n == 1 else found[1]
    return singular if n == 1 else plural


_ = gettext


def N_(message: str) -> str:
    """Marks a message for the catalog where it is defined; translated where it is shown."""
    return message


def language_from_env(environ: dict[str, str] | None = None) -> str:
    """The command line's language: $ROADSIDE_LANG, else the locale variables, else English."""
    env = os.environ if environ is None else environ
    for var in (ENV_LANG, "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var, "")
        for part in value.split(":"):
            code = part.split("_")[0].split(".")[0].lower()
            if code in LANGUAGES:
                return code
        if value and var != ENV_LANG:
            return SOURCE_LANGUAGE  # the first locale variable set decides, as in gettext
    return SOURCE_LANGUAGE


def show_datetime(epoch: float | None, zone: tzinfo, seconds: bool = False) -> str:
    """dd/mm/yyyy HH:MM in the station's zone: how officers write dates."""
    if epoch is None:
        return "-"
    fmt = "%d/%m/%Y %H:%M:%S" if seconds else "%d/%m/%Y %H:%M"
    return datetime.fromtimestamp(epoch, zone).strftime(fmt)


def show_age(seconds: float) -> str:
    """How long ago, at a glance, in the language in force."""
    s = max(0, int(seconds))
    if s < 60:
        return _("%(n)d s") % {"n": s}
    if s < 3600:
        return _("%(n)d min") % {"n": s // 60}
    if s < 86400:
        return _("%(h)d h %(m)02d min") % {"h": s // 3600, "m": (s % 3600) // 60}
    return _("%(d)d days %(h)d h") % {"d": s // 86400, "h": (s % 86400) // 3600}


def show_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"
