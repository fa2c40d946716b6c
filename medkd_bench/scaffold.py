"""``medkd-bench add-plugin``: scaffold a plugin that works at once, in the repository or as a package.

A contributor's first plugin should run before they change a line of it, so
the scaffold is a complete plugin (a timm model whose target layer was
checked on a real forward pass, a real synthetic dataset, a real grad-cam
explainer) plus a test that runs the conformance kit on it.

Two modes:

* repository (default): ``plugins/<kind>s/<module>.py`` and
  ``tests/plugins/test_<module>.py`` in the medkd-bench checkout, and an
  entry point line in its ``pyproject.toml``, the same way the built-ins are
  registered;
* ``--standalone DIR``: a pip-installable package ``DIR/medkd-<name>/``
  (``src/`` layout) declaring the same entry point.

Every check runs before the first write, and the writes are a transaction:
new files are created exclusively (never overwriting), ``pyproject.toml`` is
replaced atomically, and a failure midway removes what was written and
restores the file, so bad input leaves the tree exactly as it was. Code is
rendered from the Jinja2 templates in ``medkd_bench/templates/scaffold/``.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import importlib.util
import json
import keyword
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MedkdError
from .testing import NAME_PATTERN

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

KINDS = ("teacher", "student", "dataset", "explainer")
#: Small timm models that run at any input size (and fast on CPU): the defaults for ``--timm-model``.
DEFAULT_TIMM_MODELS = {"teacher": "resnet18", "student": "mobilenetv3_small_100"}
PROJECT_NAME = "medkd-bench"
ENTRY_POINT_GROUP = "medkd_bench"
#: The image size of the smoke runs and of the conformance kit: a scaffolded model must run at it.
PROBE_SIZE = 32
LAYER_PATH_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.\w+)*$")
TIMM_CITATION = "Wightman, PyTorch Image Models, 2019"
#: Papers of the architectures the defaults (and their close relatives) come from.
ARCHITECTURE_CITATIONS = (
    (re.compile(r"^resnet\d"), "He et al., Deep Residual Learning for Image Recognition, CVPR 2016, arXiv:1512.03385"),
    (re.compile(r"^mobilenetv3_"), "Howard et al., Searching for MobileNetV3, ICCV 2019, arXiv:1905.02244"),
    (re.compile(r"^efficientnet_b\d"), "Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional "
                                       "Neural Networks, ICML 2019, arXiv:1905.11946"),
    (re.compile(r"^convnext_"), "Liu et al., A ConvNet for the 2020s, CVPR 2022, arXiv:2201.03545"),
)
SPEC_CLASSES = {"teacher": "TeacherSpec", "student": "StudentSpec"}
#: Starting points for training from random weights on the embedded data (as the built-ins do).
TRAIN_SETTINGS = {
    "teacher": {"epochs": 6, "lr": 5e-4, "weight_decay": 0.05, "warmup_epochs": 1.0},
    "student": {"epochs": 10, "lr": 2e-3, "weight_decay": 0.05, "warmup_epochs": 1.0},
}
#: What a standalone package needs besides medkd-bench itself, by what its module imports.
STANDALONE_DEPENDENCIES = {
    "teacher": ["timm>=1.0.9"],
    "student": ["timm>=1.0.9"],
    "dataset": ["numpy>=1.26", "torch>=2.4"],
    "explainer": ["grad-cam>=1.5.4"],
}
#: Options a generated dataset test passes to keep the conformance check fast.
DATASET_TEST_OPTIONS = {"n_train": 12, "n_val": 6, "n_test": 6}


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
        return _display(path, self.cwd)


# ---- validation of the request --------------------------------------------------------------


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
    if not NAME_PATTERN.match(slug) or not module.isidentifier() or keyword.iskeyword(module):
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


def _project_name(pyproject: Path) -> str | None:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    name = data.get("project", {}).get("name") if isinstance(data.get("project"), dict) else None
    return re.sub(r"[-_.]+", "-", name).lower() if isinstance(name, str) else None


def find_repo_root(start: Path, explicit: Path | None = None) -> Path:
    """The medkd-bench checkout: ``explicit`` if given, else the first one at or above ``start``."""
    if explicit is not None:
        root = explicit.resolve()
        if _project_name(root / "pyproject.toml") != PROJECT_NAME:
            raise MedkdError(f"--repo-root {explicit}: no pyproject.toml of project {PROJECT_NAME!r} there")
        return root
    start = start.resolve()
    for directory in (start, *start.parents):
        if _project_name(directory / "pyproject.toml") == PROJECT_NAME:
            return directory
    raise MedkdError(
        f"not inside a medkd-bench checkout ({start} and its parents have no pyproject.toml of project "
        f"{PROJECT_NAME!r}): run from the repository, pass --repo-root DIR, or use --standalone DIR"
    )


def check_name_free(kind: str, name: PluginName) -> None:
    """Refuse a spec name or a plugin (entry-point) name that an installed plugin already uses.

    The registry refuses duplicates at load time, so a clash would break every
    command the moment the new plugin is installed; better to say so now.
    """
    from .plugins import load_registry

    registry = load_registry()
    if name.slug in registry.specs[kind]:
        owner = registry.owners[(kind, name.slug)]
        raise MedkdError(f"{kind} {name.slug!r} is already registered by plugin {owner!r}: choose another name")
    if name.slug in {p.name for p in registry.plugins}:
        raise MedkdError(f"plugin name {name.slug!r} is already taken by an installed plugin: choose another name")


# ---- timm models ------------------------------------------------------------------------------


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """A probe is one 32 px image: extra intra-op threads only add contention."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _feature_stages(model: Any) -> list[dict[str, Any]]:
    """timm's own list of feature stages (``feature_info``): module path and channel count."""
    info = getattr(model, "feature_info", None)
    try:
        return [dict(entry) for entry in info or [] if isinstance(entry, dict) and "module" in entry]
    except TypeError:
        return []


def _check_timm_name(model_name: str) -> None:
    import timm

    if timm.is_model(model_name):
        return
    close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models()"
    raise MedkdError(f"--timm-model {model_name!r}: timm has no such model ({hint})")


def _target_module(model: Any, model_name: str, path: str) -> Any:
    try:
        return model.get_submodule(path)
    except AttributeError:
        children = ", ".join(name for name, _ in model.named_children())
        raise MedkdError(f"--target-layer {path!r}: timm model {model_name!r} has no such submodule "
                         f"(top level: {children})") from None


def _probe(model_name: str, target_layer: str | None) -> tuple[Any, bool, str, Any]:
    """Build the model with random weights and run one 32 px image through it.

    Convolutional models take any size; models with position-dependent parts
    (ViT, Swin) need ``img_size`` at build time, which is retried when the
    plain build fails on the probe. Returns the model, whether it needed
    ``img_size``, the target-layer path and that layer's output.
    """
    import timm
    import torch

    failure: Exception | None = None
    for accepts_img_size in (False, True):
        extra = {"img_size": PROBE_SIZE} if accepts_img_size else {}
        try:
            model = timm.create_model(model_name, pretrained=False, num_classes=2, **extra).eval()
        except Exception as exc:
            failure = failure or exc
            continue
        path = target_layer or _default_target(model, model_name)
        outputs: list[Any] = []
        handle = _target_module(model, model_name, path).register_forward_hook(
            lambda _module, _inputs, output, sink=outputs: sink.append(output))
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE))
        except Exception as exc:
            failure = failure or exc
            continue
        finally:
            handle.remove()
        return model, accepts_img_size, path, outputs[0] if outputs else None
    reason = (str(failure).strip().splitlines() or [""])[0]  # the CLI's errors are one line
    raise MedkdError(f"--timm-model {model_name!r} does not run on {PROBE_SIZE}x{PROBE_SIZE} images "
                     f"({type(failure).__name__}: {reason}); medkd-bench's tests and smoke runs use {PROBE_SIZE} px")


def _default_target(model: Any, model_name: str) -> str:
    stages = _feature_stages(model)
    if not stages:
        raise MedkdError(f"timm model {model_name!r} lists no feature stages: pass --target-layer PATH "
                         "(the dotted path of its last convolutional stage)")
    return str(stages[-1]["module"])


def choose_timm_model(kind: str, model_name: str | None, target_layer: str | None) -> TimmChoice:
    """Resolve ``--timm-model``/``--target-layer`` into a model the generated spec can rely on.

    The default target layer is the last stage of timm's ``feature_info``:
    the deepest feature map that still has spatial extent, which is where
    CAM methods look. Its output must be a 4-D map; channels-last stages
    (Swin) get grad-cam's reshape transform.
    """
    model_name = model_name or DEFAULT_TIMM_MODELS[kind]
    _check_timm_name(model_name)
    with _one_thread():
        model, accepts_img_size, path, output = _probe(model_name, target_layer)
    shape = tuple(output.shape) if hasattr(output, "shape") else None
    if shape is None or len(shape) != 4:
        raise MedkdError(f"target layer {path!r} of timm model {model_name!r} emits {shape or type(output).__name__}, "
                         "not an (N, C, H, W) feature map: pick a convolutional stage with --target-layer")
    channels = {s["module"]: s.get("num_chs") for s in _feature_stages(model)}.get(path)
    nhwc = channels is not None and shape[1] != channels and shape[3] == channels
    reason = "chosen with --target-layer" if target_layer else "the deepest stage in timm's feature_info"
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    return TimmChoice(model_name, path, reason, accepts_img_size, nhwc, params_m)


def _citation(model_name: str) -> str:
    for pattern, paper in ARCHITECTURE_CITATIONS:
        if pattern.match(model_name):
            return f"{paper}; implementation: timm {model_name} ({TIMM_CITATION})"
    return f"timm {model_name} ({TIMM_CITATION}); the architecture's paper: add it here"


# ---- rendering --------------------------------------------------------------------------------


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("medkd_bench", "templates/scaffold"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    # JSON literals (strings, numbers, flat dicts) are valid Python and TOML: values are never spliced in raw.
    env.filters["pyliteral"] = json.dumps
    env.filters["pywrap"] = _wrapped_python_string
    env.filters["tomlstr"] = json.dumps
    return env


def _wrapped_python_string(text: str, indent: int, width: int = 76) -> str:
    """A long string as implicitly concatenated literals on successive lines (as the built-ins write citations)."""
    chunks: list[str] = []
    current = ""
    for word in text.split(" "):
        if current and len(current) + 1 + len(word) > width:
            chunks.append(current + " ")
            current = word
        else:
            current = f"{current} {word}" if current else word
    chunks.append(current)
    return ("\n" + " " * indent).join(json.dumps(chunk) for chunk in chunks)


def render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def _model_imports(kind: str, choice: TimmChoice) -> list[str]:
    """``from medkd_bench import ...`` names in ruff/isort order (classes, then functions)."""
    classes = sorted([SPEC_CLASSES[kind], "TrainSettings"])
    functions = ["hookimpl", "last_module", "timm_builder", "timm_pretrained_builder"]
    if choice.nhwc:
        functions.append("nhwc_to_nchw")
    return classes + sorted(functions)


def plugin_source(kind: str, name: PluginName, choice: TimmChoice | None, standalone: bool) -> str:
    """The plugin module for ``kind``; ``standalone`` only changes import grouping (for ruff/isort)."""
    if kind in DEFAULT_TIMM_MODELS:
        assert choice is not None
        return render(
            "model.py.j2", kind=kind, name=name.slug, timm_model=choice.model,
            imports=_model_imports(kind, choice), hook=f"register_{kind}s",
            spec_class=SPEC_CLASSES[kind],
            accepts_img_size=choice.accepts_img_size,
            target_layer=choice.target_layer, target_reason=choice.target_reason, nhwc=choice.nhwc,
            citation=_citation(choice.model),
            description=f"timm {choice.model}, {choice.params_m:.1f}M parameters; random initial weights "
                        "unless --pretrained.",
            train=TRAIN_SETTINGS[kind],
        )
    if kind == "dataset":
        return render("dataset.py.j2", name=name.slug, standalone=standalone,
                      citation="Synthetic shapes generated by the plugin itself (scaffolded by medkd-bench "
                               "add-plugin); replace with the dataset's paper")
    return render("explainer.py.j2", name=name.slug, cam_class="GradCAM", standalone=standalone,
                  citation="Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via "
                           "Gradient-based Localization, ICCV 2017, arXiv:1610.02391")


def plugin_test_source(kind: str, name: PluginName, standalone: bool, plugin_module: str = "") -> str:
    """The plugin's own test: registration plus the conformance kit (plus the entry point when standalone)."""
    return render(
        "test_plugin.py.j2", kind=kind, name=name.slug, module=name.module, standalone=standalone,
        check=f"check_{kind}_spec", registry_attr=f"{kind}s", dataset_options=DATASET_TEST_OPTIONS,
        kind_dir=f"{kind}s", plugin_filename=f"{name.module}.py", plugin_module=plugin_module,
    )


# ---- pyproject.toml -----------------------------------------------------------------------------

_TABLE_HEADER = re.compile(
    r'^\s*\[\s*project\s*\.\s*"?entry-points"?\s*\.\s*"?medkd_bench"?\s*\]\s*(#.*)?$')
_ANY_HEADER = re.compile(r"^\s*\[")


def add_entry_point(text: str, name: str, target: str, where: str) -> str:
    """``text`` with ``name = "target"`` added to ``[project.entry-points.medkd_bench]``.

    The line goes after the table's last entry, so comments and layout are
    kept; a missing table is appended. The result is parsed with tomllib and
    must equal the original plus exactly that entry, else nothing is changed.
    """
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MedkdError(f"{where}: not valid TOML ({exc})") from exc
    table = before.get("project", {}).get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
    if name in table:
        raise MedkdError(f"{where}: entry point {name!r} already exists ({name} = {table[name]!r})")
    newline = "\r\n" if "\r\n" in text else "\n"
    entry = f"{name} = {json.dumps(target)}{newline}"
    lines = text.splitlines(keepends=True)
    header = next((i for i, line in enumerate(lines) if _TABLE_HEADER.match(line)), None)
    if header is None:
        separator = "" if not text or text.endswith("\n") else newline
        new_text = f"{text}{separator}{newline}[project.entry-points.{ENTRY_POINT_GROUP}]{newline}{entry}"
    else:
        end = next((j for j in range(header + 1, len(lines)) if _ANY_HEADER.match(lines[j])), len(lines))
        last = max(j for j in range(header, end) if lines[j].strip() and not lines[j].lstrip().startswith("#"))
        if not lines[last].endswith(("\n", "\r")):
            lines[last] += newline
        lines.insert(last + 1, entry)
        new_text = "".join(lines)
    expected = copy.deepcopy(before)
    expected.setdefault("project", {}).setdefault("entry-points", {}).setdefault(ENTRY_POINT_GROUP, {})[name] = target
    try:
        after = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError:
        after = None
    if after != expected:
        # No brackets in the message: the CLI prints errors as rich markup.
        raise MedkdError(f"{where}: cannot add the entry point automatically; add `{name} = \"{target}\"` to its "
                         f"project.entry-points.{ENTRY_POINT_GROUP} table by hand")
    return new_text


# ---- plans --------------------------------------------------------------------------------------


def _display(path: Path, cwd: Path) -> str:
    """A path as the user should type it: relative to where they are when that is shorter."""
    try:
        rel = path.resolve().relative_to(cwd.resolve())
    except ValueError:
        return str(path)
    text = str(rel)
    return text if os.sep in text or text == "." else f".{os.sep}{text}"


def _explainer_option() -> str:
    """``run``'s option that selects explainers (``--explainers``, or ``--explainer`` in older versions)."""
    from .cli import run

    names = {param.name for param in run.params}
    return "--explainers" if "explainers" in names else "--explainer"


def _run_option(kind: str, slug: str) -> str:
    if kind == "explainer":
        return f"{_explainer_option()} {slug}"
    return {"teacher": f"--teachers {slug}", "student": f"--students {slug}", "dataset": f"--datasets {slug}"}[kind]


def _refuse_existing(*paths: Path) -> None:
    for path in paths:
        if path.exists() or path.is_symlink():
            raise MedkdError(f"{path} already exists: choose another name or remove it first")


def plan_repo(kind: str, name: PluginName, choice: TimmChoice | None, root: Path, cwd: Path) -> ScaffoldResult:
    """Plugin module, its test and the entry point, inside the checkout at ``root``."""
    kind_dir = root / "plugins" / f"{kind}s"
    if not kind_dir.is_dir():
        raise MedkdError(f"{kind_dir} is missing: is {root} a medkd-bench checkout?")
    plugin_path = kind_dir / f"{name.module}.py"
    test_path = root / "tests" / "plugins" / f"test_{name.module}.py"
    _refuse_existing(plugin_path, test_path)
    tests_dir = root / "tests"
    clash = next(iter(sorted(tests_dir.rglob(test_path.name))), None) if tests_dir.is_dir() else None
    if clash is not None:  # pytest imports test modules by file name: two of the same name collide
        raise MedkdError(f"{clash} already exists: choose another name (pytest needs unique test file names)")
    target = f"plugins.{kind}s.{name.module}"
    pyproject = root / "pyproject.toml"
    old = pyproject.read_bytes().decode("utf-8")
    new = add_entry_point(old, name.slug, target, str(pyproject))
    result = ScaffoldResult(kind, name, "repo", root, f'{name.slug} = "{target}"', cwd=cwd)
    result.files = [NewFile(plugin_path, plugin_source(kind, name, choice, standalone=False)),
                    NewFile(test_path, plugin_test_source(kind, name, standalone=False))]
    result.edits = [FileEdit(pyproject, old, new)]
    steps = [] if root == cwd.resolve() else [f"cd {root}"]
    result.next_steps = steps + [
        "pip install -e .",
        "medkd-bench plugins",
        f"python -m pytest -q tests/plugins/{test_path.name}",
        f"medkd-bench run {_run_option(kind, name.slug)} --matrix quick",
    ]
    result.notes = ["re-run `pip install -e .` so the new entry point is picked up (until then, pass "
                    f"--plugin plugins/{kind}s/{plugin_path.name})"]
    return result


def plan_standalone(kind: str, name: PluginName, choice: TimmChoice | None, base: Path, cwd: Path) -> ScaffoldResult:
    """A pip-installable package ``base/medkd-<name>/`` with the plugin, its test, README and entry point."""
    if not base.is_dir():
        raise MedkdError(f"--standalone {base}: no such directory")
    distribution = name.slug if name.slug.startswith("medkd-") else f"medkd-{name.slug}"
    package = distribution.replace("-", "_")
    root = base / distribution
    _refuse_existing(root)
    if importlib.util.find_spec(package) is not None:
        raise MedkdError(f"a module named {package!r} is already importable: choose another name")
    plugin_module = f"{package}.plugin"
    summary = f"medkd-bench {kind} plugin {name.slug!r}" + (f" (timm {choice.model})" if choice else "")
    context = dict(distribution=distribution, package=package, name=name.slug, kind=kind, summary=summary,
                   plugin_module=plugin_module, run_option=_run_option(kind, name.slug),
                   dependencies=["medkd-bench>=0.1.0", *STANDALONE_DEPENDENCIES[kind]])
    result = ScaffoldResult(kind, name, "standalone", root, f'{name.slug} = "{plugin_module}"', cwd=cwd)
    result.files = [
        NewFile(root / "pyproject.toml", render("standalone/pyproject.toml.j2", **context)),
        NewFile(root / "README.md", render("standalone/README.md.j2", **context)),
        NewFile(root / ".gitignore", render("standalone/gitignore.j2", **context)),
        NewFile(root / "src" / package / "__init__.py", render("standalone/__init__.py.j2", **context)),
        NewFile(root / "src" / package / "plugin.py", plugin_source(kind, name, choice, standalone=True)),
        NewFile(root / "tests" / "test_plugin.py", plugin_test_source(kind, name, True, plugin_module)),
    ]
    shown = _display(root, cwd)
    result.next_steps = [
        f"pip install {shown}",
        f"python -m pytest -q {os.path.join(shown, 'tests')}",
        "medkd-bench plugins",
        f"medkd-bench run {_run_option(kind, name.slug)} --matrix quick",
    ]
    result.notes = [f"publish it with `python -m build {shown}` and `twine upload`; users then just pip install it"]
    return result


# ---- writing ------------------------------------------------------------------------------------


class _Transaction:
    """Exclusive creates and atomic replaces, undone in reverse order if anything fails."""

    def __init__(self) -> None:
        self.created_files: list[Path] = []
        self.created_dirs: list[Path] = []
        self.replaced: list[tuple[Path, str]] = []

    def make_dirs(self, directory: Path) -> None:
        missing: list[Path] = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            d.mkdir()
            self.created_dirs.append(d)

    def create(self, path: Path, text: str) -> None:
        self.make_dirs(path.parent)
        with path.open("x", encoding="utf-8", newline="") as handle:  # "x": never overwrite
            self.created_files.append(path)
            handle.write(text)

    def replace(self, edit: FileEdit) -> None:
        if edit.path.read_bytes().decode("utf-8") != edit.old:
            raise MedkdError(f"{edit.path} changed while scaffolding: run add-plugin again")
        tmp = edit.path.with_name(f".{edit.path.name}.medkd-tmp")
        tmp.write_bytes(edit.new.encode("utf-8"))
        try:
            shutil.copymode(edit.path, tmp)
            os.replace(tmp, edit.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.replaced.append((edit.path, edit.old))

    def rollback(self) -> None:
        for path, old in reversed(self.replaced):
            path.write_bytes(old.encode("utf-8"))
        for path in reversed(self.created_files):
            path.unlink(missing_ok=True)
        for directory in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                directory.rmdir()


def apply(result: ScaffoldResult) -> None:
    """Write the planned files, then the edits; on any failure leave the tree as it was."""
    transaction = _Transaction()
    try:
        for new_file in result.files:
            transaction.create(new_file.path, new_file.text)
        for edit in result.edits:
            transaction.replace(edit)
    except BaseException as exc:
        transaction.rollback()
        if isinstance(exc, OSError):
            culprit = exc.filename or "a file"
            raise MedkdError(f"writing {culprit} failed ({exc.strerror or exc}); nothing was written") from exc
        raise


def scaffold(request: ScaffoldRequest, write: bool = True) -> ScaffoldResult:
    """Check everything, plan every file, then (unless ``write`` is false) write them all or none."""
    kind = check_kind(request.kind)
    name = normalise_name(request.name)
    check_options(kind, request)
    cwd = (request.cwd or Path.cwd()).resolve()
    # The checkout first: running outside it is the commonest mistake, and the checks below are slower.
    root = None if request.standalone is not None else find_repo_root(cwd, request.repo_root)
    check_name_free(kind, name)
    choice = choose_timm_model(kind, request.timm_model, request.target_layer) if kind in DEFAULT_TIMM_MODELS else None
    if root is not None:
        result = plan_repo(kind, name, choice, root, cwd)
    else:
        assert request.standalone is not None
        result = plan_standalone(kind, name, choice, request.standalone, cwd)
    if choice is not None:
        result.notes.insert(0, f"timm {choice.model} ({choice.params_m:.1f}M parameters); Score-CAM target layer "
                               f"{choice.target_layer!r} ({choice.target_reason})")
    if name.slug != request.name:
        result.notes.insert(0, f"registered as {name.slug!r} (module {name.module})")
    if write:
        apply(result)
    return result
