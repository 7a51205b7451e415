"""Keep secret values out of what flx writes: forwarded log lines, stored errors, metadata."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from flx_meltano.domain.plugins import Plugin

MASK = "********"
MIN_SECRET_LENGTH = 4  # shorter values (e.g. a dummy password "x") would mask ordinary text
# Names that hold secrets even where meltano.yml forgets to mark them sensitive (settings or env vars).
SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?|SQLALCHEMY_URL)", re.IGNORECASE
)


def looks_secret(name: str) -> bool:
    """Whether a setting or variable name says it holds a secret."""
    return SECRET_NAME.search(name) is not None


def setting_env_var(plugin: Plugin, setting: str) -> str:
    """Meltano's environment variable for a plugin setting (``TAP_X_API_KEY`` for ``api_key``)."""
    return re.sub(r"[^A-Za-z0-9]", "_", f"{plugin.name}_{setting}").upper()


def _url_password(value: str) -> str | None:
    try:
        return urlsplit(value).password if "://" in value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Redactor:
    """Replaces every known secret value in a text with a mask."""

    secrets: tuple[str, ...] = ()

    @classmethod
    def for_plugins(cls, plugins: Iterable[Plugin], env: Mapping[str, str]) -> Redactor:
        """Secrets of these plugins' sensitive settings, and of secret-looking variables in ``env``."""
        environment = {**os.environ, **env}
        values: set[str] = set()
        for plugin in plugins:
            for name in plugin.secret_setting_names:
                literal = plugin.config.get(name)
                if isinstance(literal, str) and not literal.startswith("$"):
                    values.add(literal)
                setting = next(s for s in plugin.settings if s.name == name)
                for var in filter(None, (setting.env, setting_env_var(plugin, name))):
                    if environment.get(var):
                        values.add(environment[var])
        for key, value in environment.items():
            if looks_secret(key) and value:
                values.add(value)
        for value in list(values) + list(environment.values()):
            password = _url_password(value)
            if password:
                values.add(password)
        # Longest first, so a URL is masked whole before its password alone.
        return cls(tuple(sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text
