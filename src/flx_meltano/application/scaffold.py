"""``flx-meltano init``: the files that make an existing Meltano project a Dagster code location.

Each file comes from a generator (a function of the target directory's place in the project);
the default is a ``dg`` project whose component is the Meltano project; a new kind of code
location is one more entry in ``CODE_LOCATION_STYLES``. Nothing is written when any of the files
already exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from string import Template

from flx_meltano.errors import UsageError

DEFAULT_DIRECTORY = PurePosixPath("orchestrate/dagster")


class ScaffoldError(UsageError):
    """The code location files cannot be written: the message says which file or directory and why."""


@dataclass(frozen=True)
class GeneratedFile:
    """One file to write, relative to the project directory."""

    path: PurePosixPath
    content: str


def template(name: str) -> str:
    """The text of a file shipped in ``flx_meltano.templates``."""
    return resources.files("flx_meltano.templates").joinpath(name).read_text(encoding="utf-8")


def _definitions_py(directory: PurePosixPath) -> list[GeneratedFile]:
    """A definitions.py calling build_definitions on the project ``len(directory.parts)`` levels up."""
    text = Template(template("definitions.py.template")).substitute(depth=len(directory.parts))
    return [GeneratedFile(directory / "definitions.py", text)]


def _dg_project(directory: PurePosixPath) -> list[GeneratedFile]:
    """A dg project whose one component is the Meltano project ``len(directory.parts)`` levels up."""
    module = directory / LOCATION_MODULE
    defs_yaml = Template(template("defs.yaml.template")).substitute(
        up="/".join([".."] * len(directory.parts))
    )
    return [
        GeneratedFile(directory / "dg.toml", template("dg.toml")),
        GeneratedFile(module / "__init__.py", template("location_init.py.template")),
        GeneratedFile(module / "definitions.py", template("location_definitions.py.template")),
        GeneratedFile(module / "defs" / "__init__.py", template("defs_init.py.template")),
        GeneratedFile(module / "defs" / "meltano" / "defs.yaml", defs_yaml),
    ]


def _instance_files(directory: PurePosixPath) -> list[GeneratedFile]:
    """The Dagster instance settings and the gRPC workspace. dagster.yaml has a folder of its own:
    ``dg dev`` runs in ``directory`` and warns about a dagster.yaml there that is not DAGSTER_HOME's."""
    return [
        GeneratedFile(directory / INSTANCE_FILE, template("dagster.yaml")),
        GeneratedFile(directory / "workspace.yaml", template("workspace.yaml")),
    ]


LOCATION_MODULE = "meltano_location"
INSTANCE_FILE = PurePosixPath("instance/dagster.yaml")

# How the code location itself is declared, by name; every style also gets the instance files.
# "component": a dg project using MeltanoProjectComponent; "definitions": a definitions.py calling
# build_definitions.
CODE_LOCATION_STYLES: dict[str, Callable[[PurePosixPath], list[GeneratedFile]]] = {
    "component": _dg_project,
    "definitions": _definitions_py,
}
DEFAULT_STYLE = "component"


def code_location_file(directory: PurePosixPath, style: str = DEFAULT_STYLE) -> PurePosixPath:
    """The Python file that builds the code location (``dagster ... -f``) in ``style``."""
    if style == "component":
        return directory / LOCATION_MODULE / "definitions.py"
    return directory / "definitions.py"


def code_location_files(
    directory: PurePosixPath = DEFAULT_DIRECTORY, style: str = DEFAULT_STYLE
) -> list[GeneratedFile]:
    """The files ``init`` writes for ``style`` under ``directory`` (relative to the project)."""
    if directory.is_absolute() or ".." in directory.parts or not directory.parts:
        raise ScaffoldError(f"{directory}: give a directory inside the project, e.g. {DEFAULT_DIRECTORY}")
    generate = CODE_LOCATION_STYLES.get(style)
    if generate is None:
        known = ", ".join(CODE_LOCATION_STYLES)
        raise ScaffoldError(f"unknown code location style {style!r}: one of {known}")
    return [*generate(directory), *_instance_files(directory)]


def write_code_location(project_dir: Path, files: list[GeneratedFile]) -> list[Path]:
    """Write ``files`` into the project; refuse, writing nothing, if one exists. The paths written."""
    if not (project_dir / "meltano.yml").is_file():
        raise ScaffoldError(
            f"{project_dir}: no meltano.yml here; run flx-meltano init in a Meltano project "
            "(or set FLX_PROJECT_DIR)"
        )
    targets = [project_dir / Path(f.path) for f in files]
    existing = [str(f.path) for f, target in zip(files, targets, strict=True) if target.exists()]
    if existing:
        one = len(existing) == 1
        raise ScaffoldError(
            f"{', '.join(existing)} already exist{'s' if one else ''} in {project_dir}: nothing was "
            f"written (move {'it' if one else 'them'} away to generate {'it' if one else 'them'} again)"
        )
    written: list[Path] = []
    for file, target in zip(files, targets, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        # "x": a file that appeared since the check above is not overwritten either.
        with target.open("x", encoding="utf-8") as handle:
            handle.write(file.content)
        written.append(target)
    return written
