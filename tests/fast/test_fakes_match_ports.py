"""Every member of every port is on its fake, with the same parameters (names, kinds, defaults)."""

from __future__ import annotations

import inspect

import pytest

from flx_meltano.application import ports
from tests import fakes

PAIRS = [
    (ports.ExecutionRepository, fakes.InMemoryExecutionRepository),
    (ports.PipelineRepository, fakes.InMemoryPipelineRepository),
    (ports.SnapshotRepository, fakes.InMemorySnapshotRepository),
    (ports.ExecutionLogRepository, fakes.InMemoryLogRepository),
    (ports.MeltanoRunRepository, fakes.InMemoryMeltanoRunRepository),
    (ports.UnitOfWork, fakes.InMemoryUnitOfWork),
    (ports.StateStore, fakes.InMemoryStateStore),
    (ports.LaunchedRun, fakes.ReplayedRun),
    (ports.Adapters, fakes.FakeAdapters),
]
UNIT_OF_WORK_REPOSITORIES = ("executions", "pipelines", "snapshots", "logs", "meltano_runs")


def members(protocol: type) -> dict[str, object]:
    """What a Protocol declares itself (methods, properties, attributes), without typing's own."""
    names = {n for n in vars(protocol) if not n.startswith("_") or n in ("__enter__", "__exit__")}
    names |= set(getattr(protocol, "__annotations__", {}))
    return {n: vars(protocol).get(n) for n in sorted(names)}


def parameters(function: object) -> list[tuple[str, object, object]]:
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


@pytest.mark.parametrize(("protocol", "fake"), PAIRS, ids=lambda c: c.__name__)
def test_the_fake_has_every_member_of_its_port_with_the_same_parameters(protocol, fake):
    declared = members(protocol)
    assert declared, f"{protocol.__name__} declares nothing?"
    for name, member in declared.items():
        if inspect.isfunction(member):
            assert inspect.isfunction(getattr(fake, name, None)), f"{fake.__name__} lacks {name}()"
            assert parameters(getattr(fake, name)) == parameters(member), f"{fake.__name__}.{name}"
        elif isinstance(member, property):
            ours = getattr(fake, name, None)
            in_fields = name in getattr(fake, "__dataclass_fields__", {})
            made_on_enter = fake is fakes.InMemoryUnitOfWork and name in UNIT_OF_WORK_REPOSITORIES
            assert isinstance(ours, property) or in_fields or made_on_enter, f"{fake.__name__} lacks {name}"
        else:  # a plain attribute (LaunchedRun.cancelled): set by the fake's __init__
            assert name in inspect.getsource(fake.__init__), f"{fake.__name__} never sets {name}"


def test_an_entered_unit_of_work_has_every_repository():
    with fakes.InMemoryStore().unit_of_work() as uow:
        for name in UNIT_OF_WORK_REPOSITORIES:
            assert getattr(uow, name).data is uow._data, name
