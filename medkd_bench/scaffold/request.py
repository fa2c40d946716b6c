"""What ``add-plugin`` was asked for, checked: kind, name, options; and the plan's data types."""

from __future__ import annotations

import keyword
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from medkd_bench.errors import MedkdError
from medkd_bench.specs import NAME_RULE

KINDS = ("teacher", "student", "dataset", "explainer", "method")


#: Small timm models that run at any input size (and fast on CPU): the defaults for ``--timm-model``.
DEFAULT_TIMM_MODELS = {"teacher": "resnet18", "student": "mobilenetv3_small_100"}


@dataclass(frozen=True)
class ScaffoldRequest:
    """What the user asked for, as given on the command line."""

    kind: str
    name: str
    standalone: Path | None = None
    repo_root: Path | None = None
    timm_model: str | None = None
    target_layer: str | None = None
    cwd: Path | None = None


@dataclass(frozen=True)
class PluginName:
    """The registered name (a slug with dashes) and the Python module name derived from it."""

    slug: str
    module: str


@dataclass(frozen=True)
class TimmChoice:
    """A timm model checked on a real forward pass, and where Score-CAM should look in it."""

    model: str
    target_layer: str
    target_reason: str
    accepts_img_size: bool
    nhwc: bool
    params_m: float


@dataclass(frozen=True)
class NewFile:
    path: Path
    text: str


@dataclass(frozen=True)
class FileEdit:
    path: Path
    old: str
    new: str


@dataclass
class ScaffoldResult:
    """What was (or, before :func:`apply`, will be) written, and what to run next."""

    kind: str
    name: PluginName
    mode: str
    root: Path
    entry_point: str
    files: list[NewFile] = field(default_factory=list)
    edits: list[FileEdit] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cwd: Path = field(default_factory=Path.cwd)

    @property
    def written(self) -> list[Path]:
        return [f.path for f in self.files]

    @property
    def edited(self) -> list[Path]:
        return [e.path for e in self.edits]

    def shown(self, path: Path) -> str:
        """``path`` as the user would type it from where they ran the command."""
        return display_path(path, self.cwd)


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise MedkdError(f"unknown plugin kind {kind!r} (choose from: {', '.join(KINDS)})")
    return kind


def normalise_name(given: str) -> PluginName:
    """``My_Teacher`` -> ``my-teacher`` / ``my_teacher``; anything path-like or odd is refused.

    The slug is what users type after ``--teachers`` and what the leaderboard
    shows; the module name must be an importable identifier, so a slug that
    starts with a digit or is a Python keyword is refused too.
    """
    slug = given.strip().lower().replace("_", "-")
    module = slug.replace("-", "_")
    if not NAME_RULE.match(slug) or not module.isidentifier() or keyword.iskeyword(module):
        raise MedkdError(
            f"invalid plugin name {given!r}: use a lowercase slug of letters, digits and single dashes "
            "that starts with a letter, such as 'resnet34' or 'my-teacher'"
        )
    return PluginName(slug, module)


def check_options(kind: str, request: ScaffoldRequest) -> None:
    if kind not in DEFAULT_TIMM_MODELS:
        for option, value in (("--timm-model", request.timm_model), ("--target-layer", request.target_layer)):
            if value is not None:
                raise MedkdError(f"{option} only applies to teacher and student plugins, not to a {kind}")
    if request.target_layer is not None and not LAYER_PATH_PATTERN.match(request.target_layer):
        raise MedkdError(f"--target-layer {request.target_layer!r}: expected a dotted submodule path such as "
                         "'layer4' or 'features.35'")
    if request.standalone is not None and request.repo_root is not None:
        raise MedkdError("--standalone and --repo-root exclude each other: a standalone package lives outside the repo")


LAYER_PATH_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.\w+)*$")


def display_path(path: Path, cwd: Path) -> str:
    """A path as the user should type it: relative to where they are when that is shorter."""
    try:
        rel = path.resolve().relative_to(cwd.resolve())
    except ValueError:
        return str(path)
    text = str(rel)
    return text if os.sep in text or text == "." else f".{os.sep}{text}"
