"""Meltano state ids, parsed and formatted."""

from __future__ import annotations

import re
from dataclasses import dataclass

from flx_meltano.domain.errors import InvalidStateId

_NAME = r"[A-Za-z0-9_.@-]+"
_STATE_ID = re.compile(rf"^(?P<env>{_NAME}):(?P<pair>{_NAME})(?::(?P<suffix>[^:\s]+))?$")


@dataclass(frozen=True, order=True)
class StateId:
    """Meltano's ``<environment>:<extractor>-to-<loader>[:<suffix>]``: one pipeline's identity."""

    environment: str
    extractor: str
    loader: str
    suffix: str | None = None

    @classmethod
    def parse(cls, text: str) -> StateId:
        """Parse a state id; raise InvalidStateId naming the text when it is malformed."""
        match = _STATE_ID.match(text.strip())
        if match is None or "-to-" not in match["pair"]:
            raise InvalidStateId(
                f"{text!r} is not a Meltano state id: expected <environment>:<extractor>-to-<loader>"
                "[:<suffix>]"
            )
        # Plugin names may themselves contain "-to-" only in theory; Meltano splits on the last one.
        extractor, _, loader = match["pair"].rpartition("-to-")
        if not extractor or not loader:
            raise InvalidStateId(f"{text!r} is not a Meltano state id: empty extractor or loader")
        return cls(match["env"], extractor, loader, match["suffix"])

    def __str__(self) -> str:
        base = f"{self.environment}:{self.extractor}-to-{self.loader}"
        return f"{base}:{self.suffix}" if self.suffix else base
