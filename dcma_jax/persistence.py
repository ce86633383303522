"""Saving and loading fitted models, and checkpointing a fit as it runs. No pickle.

A saved model is a folder::

    manifest.json                  format and version, completeness, SHA-256 of every file
    spec.json                      readable model spec: nodes and generators (registry name,
                                   class, dataclass fields), graph, encodings, fit settings,
                                   fit report, package version
    data.msgpack                   the observed arrays (internal coding)
    params.msgpack                 point-fit parameters and fit diagnostics
    replicates/block_NNNNN.msgpack each block of bootstrap replicates: parameters, diagnostics
                                   and row counts
    crossfit.msgpack               with ``crossfit=K``: the one-step estimator's per-fold
                                   nuisance parameters and each row's fold

Arrays are written with ``flax.serialization`` (msgpack). Every file is written to a temporary
name and renamed, so a file that exists is whole; the manifest is rewritten after each file
and says whether the fit is complete. Loading checks the format version, every file's checksum,
that each generator class is defined in this process (a user's generator must be imported
first), and that parameter shapes match what the spec's generators create. Every problem raises
:class:`ModelFileError` with one line naming the folder and the problem.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from dcma_jax.data import MediationData, Variable
from dcma_jax.generators.base import Generator, init_params
from dcma_jax.graph import CausalGraph, Node
from dcma_jax.model import Model, float_dtype
from dcma_jax.training import FitInfo, TrainConfig

if TYPE_CHECKING:
    from dcma_jax.fitted import FitSettings, FittedMediation

FORMAT = "dcma_jax.fitted"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPEC = "spec.json"
DATA = "data.msgpack"
PARAMS = "params.msgpack"
BLOCKS = "replicates"
CROSSFIT = "crossfit.msgpack"
CROSSFIT_REPLICATES = "crossfit_replicates.msgpack"

__all__ = ["Checkpoint", "ModelFileError", "load", "save"]


class ModelFileError(ValueError):
    """A saved model that is missing, incomplete, corrupted or does not match its spec."""


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _block_name(i: int) -> str:
    return f"{BLOCKS}/block_{i:05d}.msgpack"


def _package_version() -> str:
    try:
        return importlib.metadata.version("dcma_jax")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "unknown"


# --------------------------------------------------------------------------------------------
# The readable spec
# --------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON value from numpy scalars and tuples."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _generator_fields(generator: Generator) -> dict[str, Any]:
    fields = {}
    for f in dataclasses.fields(generator):
        if not f.init or f.name in ("parent", "name"):
            continue
        value = _plain(getattr(generator, f.name))
        try:
            json.dumps(value)
        except TypeError:
            raise ModelFileError(
                f"cannot save {type(generator).__name__}: field {f.name!r} holds a "
                f"{type(value).__name__}, which has no JSON form"
            ) from None
        fields[f.name] = value
    return fields


def _variable_spec(var: Variable) -> dict:
    return {
        "name": var.name,
        "kind": var.kind,
        "center": float(var.center),
        "scale": float(var.scale),
        "levels": _plain(var.levels),
    }


def model_spec(model: Model, data: MediationData, settings: FitSettings) -> dict:
    """Everything but the arrays that defines a fit, as JSON (also its resume identity)."""
    nodes = [
        {
            "name": node.name,
            "kind": node.kind,
            "parents": list(node.parents),
            "generator": _generator_spec(generator),
        }
        for node, generator in zip(model.graph.nodes, model.generators, strict=True)
    ]
    return {
        "nodes": nodes,
        "treatment_levels": model.graph.treatment_levels,
        "num_covariates": model.num_covariates,
        "variables": {
            "treatment": _variable_spec(data.treatment_var),
            "mediators": [_variable_spec(v) for v in data.mediator_vars],
            "outcome": _variable_spec(data.outcome_var),
            "covariates": list(data.covariate_names),
        },
        "n": data.n,
        "data_sha256": _sha256(_data_bytes(data)),
        "fit": {
            "link": settings.link,
            "config": dataclasses.asdict(settings.config),
            "seed": settings.seed,
            "bootstrap": settings.bootstrap,
            "block_size": settings.block_size,
            "crossfit": settings.crossfit,
            "crossfit_bootstrap": settings.crossfit_bootstrap,
        },
    }


def _generator_spec(generator: Generator) -> dict:
    cls = type(generator)
    return {
        "registry_name": cls.registry_name,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "fields": _generator_fields(generator),
    }


def _data_bytes(data: MediationData) -> bytes:
    return serialization.msgpack_serialize(
        {
            "treatment": np.asarray(data.treatment, np.float64),
            "mediators": np.asarray(data.mediators, np.float64),
            "outcome": np.asarray(data.outcome, np.float64),
            "covariates": np.asarray(data.covariates, np.float64),
            "weights": np.asarray(data.weights, np.float64),
        }
    )


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out


def _generator_from_spec(entry: dict, where: str) -> Generator:
    spec = entry["generator"]
    qualified = spec["class"]
    classes = {f"{c.__module__}.{c.__qualname__}": c for c in _all_subclasses(Generator)}
    cls = classes.get(qualified)
    if cls is None:
        module = qualified.rpartition(".")[0]
        raise ModelFileError(
            f"{where}: node {entry['name']!r} uses generator class {qualified}, which is not "
            f"defined in this process; import {module} (where it is defined) before loading"
        )
    if entry["kind"] not in cls.kinds:
        raise ModelFileError(
            f"{where}: node {entry['name']!r} is {entry['kind']} but {cls.__name__} models "
            f"{', '.join(cls.kinds)} nodes"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in spec["fields"].items():
        if name not in fields:
            raise ModelFileError(f"{where}: {cls.__name__} has no field {name!r}")
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: cannot rebuild {cls.__name__}: {exc}") from None


def _variable(spec: dict) -> Variable:
    return Variable(
        spec["name"], spec["kind"], spec["center"], spec["scale"], tuple(spec["levels"])
    )


# --------------------------------------------------------------------------------------------
# Arrays
# --------------------------------------------------------------------------------------------


def _template(model: Model) -> tuple:
    """Per-node parameter shapes as the spec's generators create them (no computation)."""
    key = jax.random.key(0)
    return tuple(
        jax.eval_shape(
            lambda g=g, j=j: init_params(g, key, model.graph.context_dim(j, model.num_covariates))
        )
        for j, g in enumerate(model.generators)
    )


def _check_tree(where: str, what: str, restored: Any, template: Any, lead: tuple) -> Any:
    """``restored`` (a state dict) cast into ``template``'s structure, shapes checked."""
    want = serialization.to_state_dict(template)
    flat_want, _ = jax.tree_util.tree_flatten_with_path(want)
    flat_got, _ = jax.tree_util.tree_flatten_with_path(restored)
    if [p for p, _ in flat_want] != [p for p, _ in flat_got]:
        raise ModelFileError(
            f"{where}: {what} do not have the layout the spec's generators create "
            "(the spec and the parameters do not match)"
        )
    for (path, w), (_, g) in zip(flat_want, flat_got, strict=True):
        shape = (*lead, *w.shape)
        if tuple(np.shape(g)) != shape:
            name = jax.tree_util.keystr(path)
            raise ModelFileError(
                f"{where}: {what}{name} has shape {tuple(np.shape(g))} but the spec's generator "
                f"creates {shape} (the spec and the parameters do not match)"
            )
    dtype = float_dtype()
    cast = jax.tree.map(lambda v: jnp.asarray(v, dtype), restored)
    return serialization.from_state_dict(template, cast)


def _info_dict(infos: Any) -> list[dict]:
    return [
        {
            "epochs": np.asarray(i.epochs),
            "best_val_loss": np.asarray(i.best_val_loss),
            "diverged": np.asarray(i.diverged),
            "best_epoch": np.asarray(i.best_epoch),
        }
        for i in infos
    ]


def _infos(entries: Any, where: str, lead: tuple) -> tuple[FitInfo, ...]:
    try:
        infos = tuple(
            FitInfo(
                jnp.asarray(e["epochs"]),
                jnp.asarray(e["best_val_loss"]),
                jnp.asarray(e["diverged"]),
                # Files written before best_epoch was recorded: -1, unknown.
                jnp.asarray(e.get("best_epoch", np.full(np.shape(e["epochs"]), -1, np.int32))),
            )
            for e in (entries[str(i)] for i in range(len(entries)))
        )
    except (KeyError, TypeError):
        raise ModelFileError(f"{where}: the fit diagnostics are malformed") from None
    if any(tuple(np.shape(v)) != lead for i in infos for v in i):
        raise ModelFileError(f"{where}: the fit diagnostics do not have shape {lead}")
    return infos


def _state(params: Any, infos: Any, counts: Any = None) -> bytes:
    state = {
        "params": [serialization.to_state_dict(p) for p in params],
        "infos": _info_dict(infos),
    }
    if counts is not None:
        state["counts"] = np.asarray(counts, np.int32)
    return serialization.msgpack_serialize(serialization.to_state_dict(state))


def _restore(where: str, raw: bytes, template: tuple, lead: tuple, n: int | None = None):
    try:
        state = serialization.msgpack_restore(raw)
        nodes = state["params"]
        entries = [nodes[str(j)] for j in range(len(nodes))]
    except Exception:
        raise ModelFileError(f"{where}: cannot be read as a parameter file") from None
    if len(entries) != len(template):
        raise ModelFileError(
            f"{where}: holds parameters for {len(entries)} nodes, the spec has {len(template)}"
        )
    params = tuple(
        _check_tree(where, f"node {j} parameters", e, t, lead)
        for j, (e, t) in enumerate(zip(entries, template, strict=True))
    )
    infos = _infos(state.get("infos", {}), where, lead)
    if n is None:
        return params, infos
    counts = np.asarray(state.get("counts"))
    if counts.shape != (*lead, n):
        raise ModelFileError(
            f"{where}: row counts have shape {counts.shape}, expected {(*lead, n)}"
        )
    return params, infos, jnp.asarray(counts, float_dtype())


# --------------------------------------------------------------------------------------------
# The folder
# --------------------------------------------------------------------------------------------


class _Folder:
    """A model folder with its manifest: checked reads, atomic writes."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory)
        self.where = f"model {self.path}"

    def manifest(self) -> dict | None:
        file = self.path / MANIFEST
        if not file.exists():
            return None
        try:
            manifest = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise ModelFileError(f"{self.where}: {MANIFEST} is not valid JSON") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ModelFileError(f"{self.where}: {MANIFEST} is not a dcma_jax model manifest")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelFileError(
                f"{self.where}: format version {version} is not supported by this dcma_jax "
                f"(it reads version {FORMAT_VERSION})"
            )
        if not isinstance(manifest.get("files"), dict):
            raise ModelFileError(f"{self.where}: {MANIFEST} lists no files")
        return manifest

    def read(self, manifest: dict, name: str) -> bytes:
        expected = manifest["files"].get(name)
        if expected is None:
            raise ModelFileError(f"{self.where}: {MANIFEST} does not list {name}")
        try:
            data = (self.path / name).read_bytes()
        except FileNotFoundError:
            raise ModelFileError(f"{self.where}: {name} is missing") from None
        if _sha256(data) != expected:
            raise ModelFileError(
                f"{self.where}: {name} does not match its checksum in {MANIFEST} "
                "(the file was changed or truncated)"
            )
        return data

    def write(self, manifest: dict, name: str, data: bytes) -> None:
        _write_atomic(self.path / name, data)
        manifest["files"][name] = _sha256(data)
        _write_atomic(self.path / MANIFEST, json.dumps(manifest, indent=1).encode())


def _new_manifest(complete: bool = False) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": _package_version(),
        "complete": complete,
        "files": {},
    }


def _spec_document(spec: dict, report: dict | None = None) -> bytes:
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **spec}
    if report is not None:
        doc["report"] = report
    return json.dumps(doc, indent=1).encode()


def save(fitted: FittedMediation, directory: str | Path) -> Path:
    """Writes ``fitted`` to ``directory`` (created if needed; an existing model is replaced).

    Returns:
      The folder.
    """
    from dcma_jax.inference import block_ranges

    folder = _Folder(directory)
    spec = model_spec(fitted.model, fitted.data, fitted.settings)
    manifest = _new_manifest()
    folder.write(manifest, DATA, _data_bytes(fitted.data))
    folder.write(manifest, PARAMS, _state(fitted.params, _point_infos(fitted)))
    ranges = block_ranges(fitted.bootstrap, fitted.settings.block_size)
    for i, (rows, infos) in enumerate(zip(ranges, _replicate_infos(fitted), strict=True)):
        part = slice(*rows)
        block = jax.tree.map(lambda v, part=part: v[part], fitted.replicate_params)
        counts = fitted.replicate_counts[part]
        folder.write(manifest, _block_name(i), _state(block, infos, counts))
    _finish(folder, manifest, spec, fitted)
    return folder.path


def _point_infos(fitted: FittedMediation) -> tuple[FitInfo, ...]:
    r = fitted.report
    best = r.best_epochs or (-1,) * len(r.epochs)
    return tuple(
        FitInfo(np.int32(e), np.float64(v), np.bool_(False), np.int32(b))
        for e, v, b in zip(r.epochs, r.best_val_loss, best, strict=True)
    )


def _replicate_infos(fitted: FittedMediation) -> list[tuple[FitInfo, ...]]:
    from dcma_jax.inference import block_ranges

    r = fitted.report
    # The report keeps one divergence flag per replicate (any node): every node's block gets
    # it, so a fit resumed from these files drops the same replicates.
    diverged = ~fitted.kept_replicates
    out = []
    for start, stop in block_ranges(fitted.bootstrap, fitted.settings.block_size):
        out.append(
            tuple(
                FitInfo(
                    np.asarray(e[start:stop], np.int32),
                    np.full(stop - start, np.nan),
                    diverged[start:stop],
                    np.full(stop - start, -1, np.int32),  # the report keeps no best epochs
                )
                for e in r.replicate_epochs
            )
        )
    return out


def _crossfit_state(cf: Any) -> bytes:
    state = {
        "params": [serialization.to_state_dict(p) for p in cf.params],
        "classifier": serialization.to_state_dict(cf.classifier),
        "folds": np.asarray(cf.folds, np.int32),
    }
    if cf.propensity is not None:
        state["propensity"] = serialization.to_state_dict(cf.propensity)
    return serialization.msgpack_serialize(serialization.to_state_dict(state))


def _finish(folder: _Folder, manifest: dict, spec: dict, fitted: FittedMediation) -> None:
    report = dataclasses.asdict(fitted.report)
    if fitted.crossfit is not None:
        generator = fitted.crossfit.propensity_generator
        spec = {**spec, "crossfit": {"generator": _generator_spec(generator)}}
        folder.write(manifest, CROSSFIT, _crossfit_state(fitted.crossfit))
    if fitted.crossfit_replicates is not None:
        folder.write(manifest, CROSSFIT_REPLICATES, _crossfit_state(fitted.crossfit_replicates))
    folder.write(manifest, SPEC, _spec_document(spec, _plain_tree(report)))
    manifest["complete"] = True
    _write_atomic(folder.path / MANIFEST, json.dumps(manifest, indent=1).encode())


def _plain_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain_tree(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain_tree(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return _plain(value)


def _read_spec(folder: _Folder, manifest: dict) -> dict:
    try:
        spec = json.loads(folder.read(manifest, SPEC))
        spec["nodes"], spec["variables"], spec["fit"]  # noqa: B018 - presence check
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise ModelFileError(f"{folder.where}: {SPEC} is not a valid model spec") from None
    return spec


def _model_from_spec(spec: dict, where: str) -> Model:
    try:
        nodes = [Node(e["name"], e["kind"], tuple(e["parents"])) for e in spec["nodes"]]
        graph = CausalGraph(tuple(nodes[:-1]), nodes[-1], int(spec["treatment_levels"]))
        generators = tuple(_generator_from_spec(e, where) for e in spec["nodes"])
        return Model(graph, generators, int(spec["num_covariates"]))
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: {SPEC} describes no valid model ({exc})") from None


def _data_from_spec(spec: dict, raw: bytes, where: str) -> MediationData:
    if _sha256(raw) != spec.get("data_sha256"):
        raise ModelFileError(f"{where}: {DATA} is not the data the spec was fitted to")
    try:
        arrays = serialization.msgpack_restore(raw)
        v = spec["variables"]
        return MediationData(
            treatment=np.asarray(arrays["treatment"], np.float64),
            mediators=np.asarray(arrays["mediators"], np.float64),
            outcome=np.asarray(arrays["outcome"], np.float64),
            covariates=np.asarray(arrays["covariates"], np.float64),
            weights=np.asarray(arrays["weights"], np.float64),
            treatment_var=_variable(v["treatment"]),
            mediator_vars=tuple(_variable(m) for m in v["mediators"]),
            outcome_var=_variable(v["outcome"]),
            covariate_names=tuple(v["covariates"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: {DATA} does not match the spec ({exc})") from None


def _settings_from_spec(spec: dict, where: str) -> FitSettings:
    from dcma_jax.fitted import FitSettings

    try:
        f = spec["fit"]
        return FitSettings(
            f["link"],
            TrainConfig(**f["config"]),
            int(f["seed"]),
            int(f["bootstrap"]),
            int(f["block_size"]),
            int(f.get("crossfit", 0)),
            bool(f.get("crossfit_bootstrap", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: {SPEC} has no valid fit settings ({exc})") from None


def load(directory: str | Path) -> FittedMediation:
    """Reads a model written by :func:`save` or a finished checkpointed fit.

    Raises:
      ModelFileError: a missing, unfinished, corrupted or inconsistent model folder; one line
        naming the folder and the problem.
    """
    from dcma_jax.fitted import FitReport, FittedMediation
    from dcma_jax.inference import block_ranges, stack_blocks

    folder = _Folder(directory)
    if not folder.path.is_dir():
        problem = "is not a folder" if folder.path.exists() else "no such folder"
        raise ModelFileError(f"{folder.where}: {problem}")
    manifest = folder.manifest()
    if manifest is None:
        raise ModelFileError(f"{folder.where}: {MANIFEST} is missing (not a saved model)")
    if not manifest.get("complete"):
        raise ModelFileError(
            f"{folder.where}: the fit is unfinished; rerun the same fit (dcma fit ... --save "
            f"{folder.path}) to resume it"
        )
    spec = _read_spec(folder, manifest)
    model = _model_from_spec(spec, folder.where)
    data = _data_from_spec(spec, folder.read(manifest, DATA), folder.where)
    settings = _settings_from_spec(spec, folder.where)
    template = _template(model)
    raw = folder.read(manifest, PARAMS)
    params, _ = _restore(f"{folder.where}: {PARAMS}", raw, template, ())
    replicate_params = counts = None
    blocks = block_ranges(settings.bootstrap, settings.block_size) if settings.bootstrap else []
    parts = []
    for i, (start, stop) in enumerate(blocks):
        name = _block_name(i)
        raw = folder.read(manifest, name)
        parts.append(_restore(f"{folder.where}: {name}", raw, template, (stop - start,), data.n))
    if parts:
        replicate_params, _, counts = stack_blocks(parts)
    try:
        saved = spec["report"]
        fields = {k: _report_value(v) for k, v in saved.items() if k != "selection"}
        report = FitReport(**fields, selection=_selection_value(saved.get("selection", [])))
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(f"{folder.where}: {SPEC} has no valid fit report") from None
    crossfit = replicates = None
    if settings.crossfit:
        folds = settings.crossfit
        crossfit = _crossfit(folder, manifest, spec, model, data, template, CROSSFIT, (folds,))
    if settings.crossfit_bootstrap:
        lead = (settings.bootstrap, settings.crossfit)
        replicates = _crossfit(
            folder, manifest, spec, model, data, template, CROSSFIT_REPLICATES, lead
        )
    return FittedMediation(
        params, replicate_params, counts, model, data, settings, report, crossfit, replicates
    )


def _crossfit(
    folder: _Folder,
    manifest: dict,
    spec: dict,
    model: Model,
    data: MediationData,
    template: tuple,
    name: str,
    lead: tuple[int, ...],
) -> Any:
    """Cross-fitted nuisances from file ``name``, shapes checked against the spec.

    ``lead``: their leading axes, ``(folds,)`` or ``(replicates, folds)``.
    """
    from dcma_jax.robust import CrossFit

    where = f"{folder.where}: {name}"
    folds = lead[-1]
    try:
        entry = {"name": "propensity", "kind": "binary", **spec["crossfit"]}
        state = serialization.msgpack_restore(folder.read(manifest, name))
        nodes = [state["params"][str(j)] for j in range(len(state["params"]))]
        fold_of = np.asarray(state["folds"], np.int32)
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(f"{where}: missing or malformed cross-fitted nuisances") from None
    generator = _generator_from_spec(entry, where)
    shape = (*lead[:-1], data.n)
    if len(nodes) != len(template) or fold_of.shape != shape or fold_of.max() != folds - 1:
        raise ModelFileError(f"{where}: does not match the spec ({folds} folds, {data.n} rows)")
    params = tuple(
        _check_tree(where, f"node {j} parameters", e, t, lead)
        for j, (e, t) in enumerate(zip(nodes, template, strict=True))
    )

    def restored(name: str, width: int) -> Any:
        if name not in state:
            raise ModelFileError(f"{where}: holds no {name} parameters")
        shape = jax.eval_shape(lambda: init_params(generator, jax.random.key(0), width))
        return _check_tree(where, f"{name} parameters", state[name], shape, lead)

    p, k = model.num_covariates, model.graph.num_mediators
    propensity = restored("propensity", p) if p else None
    classifier = restored("classifier", k + p)
    return CrossFit(params, propensity, classifier, jnp.asarray(fold_of), generator, generator)


def _report_value(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_report_value(v) for v in value)
    if isinstance(value, str):
        return float(value)
    return value


def _selection_value(entries: list) -> tuple:
    """``FitReport.selection`` from JSON: names stay strings, scores are floats (``"inf"`` too)."""
    return tuple(
        (str(node), str(family), tuple((str(f), float(v), float(e)) for f, v, e in scores))
        for node, family, scores in entries
    )


# --------------------------------------------------------------------------------------------
# Checkpointing a fit
# --------------------------------------------------------------------------------------------


class Checkpoint:
    """The folder a running fit writes to after each stage, and resumes from.

    Use :meth:`open`; :func:`dcma_jax.fitted.fit` calls the rest.
    """

    def __init__(self, folder: _Folder, manifest: dict, spec: dict, model: Model, n: int):
        self._folder, self._manifest, self._spec = folder, manifest, spec
        self._template = _template(model)
        self._n = n

    @classmethod
    def open(
        cls, directory: str | Path, model: Model, data: MediationData, settings: FitSettings
    ) -> Checkpoint:
        """Opens ``directory`` for a fit, resuming the fit already there if it is the same.

        Raises:
          ModelFileError: the folder holds something else (another model, other files).
        """
        folder = _Folder(directory)
        spec = model_spec(model, data, settings)
        if folder.path.exists() and not folder.path.is_dir():
            raise ModelFileError(f"{folder.where}: exists and is not a folder")
        manifest = folder.manifest()
        if manifest is None:
            if folder.path.exists() and any(folder.path.iterdir()):
                raise ModelFileError(
                    f"{folder.where}: the folder is not empty and holds no model; "
                    "choose an empty or new folder"
                )
            manifest = _new_manifest()
            folder.write(manifest, SPEC, _spec_document(spec))
            folder.write(manifest, DATA, _data_bytes(data))
            return cls(folder, manifest, spec, model, data.n)
        saved = _read_spec(folder, manifest)
        saved.pop("report", None)
        if {k: v for k, v in saved.items() if k not in ("format", "format_version")} != spec:
            differ = sorted(k for k in spec if saved.get(k) != spec[k])
            raise ModelFileError(
                f"{folder.where}: holds a model with other {', '.join(differ)}; "
                "use another folder (or delete this one) to fit a different model"
            )
        manifest["complete"] = False
        return cls(folder, manifest, spec, model, n=data.n)

    def point(self) -> tuple[tuple, tuple[FitInfo, ...]] | None:
        """The saved point fit, or ``None``."""
        if PARAMS not in self._manifest["files"]:
            return None
        raw = self._folder.read(self._manifest, PARAMS)
        return _restore(f"{self._folder.where}: {PARAMS}", raw, self._template, ())

    def blocks(self, num_blocks: int) -> list[tuple[tuple, tuple[FitInfo, ...]]]:
        """The finished replicate blocks, in order (a prefix of all ``num_blocks``)."""
        from dcma_jax.inference import block_ranges

        s = self._spec["fit"]
        ranges = block_ranges(s["bootstrap"], s["block_size"])[:num_blocks]
        out = []
        for i, (start, stop) in enumerate(ranges):
            name = _block_name(i)
            if name not in self._manifest["files"]:
                break
            raw = self._folder.read(self._manifest, name)
            where = f"{self._folder.where}: {name}"
            params, infos, _ = _restore(where, raw, self._template, (stop - start,), self._n)
            out.append((params, infos))
        return out

    def write_point(self, params: tuple, infos: tuple[FitInfo, ...]) -> None:
        self._folder.write(self._manifest, PARAMS, _state(params, infos))

    def write_block(self, i: int, block: tuple, counts: jax.Array) -> None:
        params, infos = block
        self._folder.write(self._manifest, _block_name(i), _state(params, infos, counts))

    def finish(self, fitted: FittedMediation) -> None:
        """Writes the spec with the fit report and marks the model complete."""
        _finish(self._folder, self._manifest, self._spec, fitted)
