"""The link to an MQTT broker, as a box (``[mqtt]``) and the station (``[broker]``) configure it.

Both files name the broker the same way: host, port, TLS files, user name and password. Each
side extends this section with its own session settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from roadside.config.base import Section
from roadside.errors import ConfigError


class BrokerLink(Section):
    """Where the broker is and how to prove who we are to it."""

    # The table this section is read from, so messages name the key as the file spells it.
    SECTION: ClassVar[str] = "broker"
    # The sentence for a password file that cannot be read: {key}, {path}, {exc}.
    UNREADABLE_PASSWORD: ClassVar[str] = "{key}: cannot read it: {exc}"

    host: str = Field("localhost", min_length=1, description="Broker host name or address.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Broker port (default 1883, or 8883 with TLS)."
    )
    tls: bool = Field(
        False,
        description="Use TLS (implied by tls_ca/tls_cert); without tls_ca the system "
        "CA store checks the broker.",
    )
    tls_ca: str | None = Field(None, description="CA certificate(s) that signed the broker's.")
    tls_cert: str | None = Field(None, description="Our client certificate (PEM).")
    tls_key: str | None = Field(None, description="The client certificate's private key (PEM).")
    username: str | None = Field(None, min_length=1, description="Broker user name.")
    password: str | None = Field(None, description="Broker password (prefer password_file).")
    password_file: str | None = Field(
        None, description="File holding the broker password (first line)."
    )

    @property
    def uses_tls(self) -> bool:
        return self.tls or bool(self.tls_ca or self.tls_cert)

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.uses_tls else 1883)

    def read_password(self) -> str | None:
        """The password: the first line of ``password_file``, else ``password``."""
        if self.password_file is None:
            return self.password
        try:
            return Path(self.password_file).read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError) as exc:
            key = f"{self.SECTION}.password_file"
            raise ConfigError(
                self.UNREADABLE_PASSWORD.format(key=key, path=self.password_file, exc=exc)
            ) from None

    @model_validator(mode="after")
    def _consistent(self) -> BrokerLink:
        s = self.SECTION
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError(f"{s}.tls_cert and {s}.tls_key go together: set both or neither")
        if self.password is not None and self.password_file is not None:
            raise ValueError(f"{s}.password and {s}.password_file: set one, not both")
        if (self.password is not None or self.password_file) and not self.username:
            raise ValueError(f"{s}.password needs {s}.username")
        return self
