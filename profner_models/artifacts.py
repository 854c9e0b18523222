"""Trained models on disk: ``save`` and ``load``, with JSON and safetensors only.

A model dir holds::

    config.json        the full config the model was built from, checked (names versioned,
                       defaults filled, what the data decided recorded: vector dims, vocab rows)
    labels.json        label list per head role
    model.safetensors  the weights
    vocab/...          the backbone's vocabularies (and gazetteer.txt when one is used)
    tokenizer/...      a transformer backbone's tokenizer files, if any
    vectors/...        an RNN backbone's vector space for unknown words (PCA, n-grams), if any
    norm/...           task resources (``Task.save_resources``): MEDDOPROF's NORM index
    meta.json          format, package and torch versions, metrics, source, the SHA-256 of
                       every other file; written last, so a dir whose save was cut short has
                       none and is refused

Nothing is ever unpickled: a corrupt or incomplete dir raises ``ModelDirError`` naming the file;
a file whose bytes changed after the save (a flipped bit, an edit) fails its SHA-256 check at
load. Dirs saved before the checksums (no ``sha256`` in meta.json) load unchecked.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from profner_models import __version__
from profner_models.config import ConfigError, deep_merge
from profner_models.digest import sha256
from profner_models.models import BackboneContext, JointModel, TrainedModel
from profner_models.tasks import task_of, validate
from profner_models.text.gazetteer import FILE_NAME as GAZETTEER_FILE
from profner_models.text.gazetteer import SIZE as GAZETTEER_SIZE
from profner_models.text.gazetteer import Gazetteer

FORMAT = 1
CONFIG, LABELS, WEIGHTS, META = "config.json", "labels.json", "model.safetensors", "meta.json"
GAZETTEER = f"vocab/{GAZETTEER_FILE}"
WHAT_IS_A_MODEL_DIR = ("a model dir is what `profner train --out`, `profner tune --export` and "
                       "`profner refit --out` write; `profner serve` also takes "
                       "runs:/<run_id>/model, models:/<name>/<version> and sweep:<name or dir>")


class ModelDirError(ValueError):
    """A model dir that cannot be loaded; the message names the file at fault."""


def save(model: TrainedModel, model_dir: str | Path, extra_meta: dict | None = None,
         weights: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``model`` as a model dir (the module docstring); ``meta.json`` last. ``weights``:
    a state dict to write instead of the network's current one (a kept earlier epoch)."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / META).unlink(missing_ok=True)
    recorded = {"model": {"backbone": model.network.backbone.recorded_config()}}
    _write_json(model_dir / CONFIG, deep_merge(model.config, recorded))
    _write_json(model_dir / LABELS, model.labels)
    files = model.network.backbone.save_resources(model_dir)
    if model.gazetteer is not None:
        (model_dir / GAZETTEER).parent.mkdir(parents=True, exist_ok=True)
        model.gazetteer.save(model_dir / GAZETTEER)
        files.append(GAZETTEER)
    files += task_of(model.config).save_resources(model, model_dir)
    state = {k: v.detach().cpu().contiguous()
             for k, v in (weights or model.network.state_dict()).items()}
    save_file(state, str(model_dir / WEIGHTS), metadata={"format": str(FORMAT)})
    meta = {
        "format": FORMAT,
        "package": "profner-hpo",
        "version": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "parameters": model.num_parameters,
        "metrics": model.metrics,
        "files": [CONFIG, LABELS, WEIGHTS, *files],
        "sha256": {name: sha256(model_dir / name) for name in [CONFIG, LABELS, WEIGHTS, *files]},
        **(extra_meta or {}),
    }
    _write_json(model_dir / META, meta)
    return model_dir


def load(model_dir: str | Path, keep_states: bool = False) -> TrainedModel:
    """Restore a saved model (eval mode, CPU). Raises ``ModelDirError`` naming the bad file.
    ``keep_states``: a frozen encoder reads and writes the states store its fit used
    (``BackboneContext.keep_states``): for scoring on the machine that trained it."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelDirError(f"{model_dir}: model dir not found ({WHAT_IS_A_MODEL_DIR})")
    if not any((model_dir / name).exists() for name in (META, CONFIG, WEIGHTS)):
        raise ModelDirError(f"{model_dir}: not a model dir, it holds no {META}, {CONFIG} or "
                            f"{WEIGHTS} ({WHAT_IS_A_MODEL_DIR})")
    meta = _read_json(model_dir / META)
    if meta.get("format") != FORMAT or meta.get("package") != "profner-hpo":
        raise ModelDirError(
            f"{model_dir / META}: model format {meta.get('format')!r} of package "
            f"{meta.get('package')!r} cannot be read by profner-hpo {__version__} (format {FORMAT})")
    if str(meta.get("version", "")).split(".")[0] != __version__.split(".")[0]:
        raise ModelDirError(f"{model_dir / META}: saved by profner-hpo {meta.get('version')}, "
                            f"incompatible with {__version__}")
    for name in meta.get("files", []):
        if not (model_dir / name).is_file():
            raise ModelDirError(f"{model_dir / name}: missing from the model dir")
    for name, expected in (meta.get("sha256") or {}).items():
        if sha256(model_dir / name) != expected:
            raise ModelDirError(f"{model_dir / name}: SHA-256 differs from the one in {META} "
                                "(the file changed after the save, or is corrupt)")
    try:  # a dir saved before versioned names and schemas: still checked, names mean .v1
        config = validate(_without_retired(_read_json(model_dir / CONFIG)))
    except ConfigError as error:
        raise ModelDirError(f"{model_dir / CONFIG}: {error}") from error
    task = task_of(config)
    labels = _read_json(model_dir / LABELS)
    gazetteer = None
    if config.get("data", {}).get("gazetteer") is not None:
        gazetteer = Gazetteer.load(model_dir / GAZETTEER)
    context = BackboneContext(model_dir=model_dir, keep_states=keep_states,
                              gazetteer_size=GAZETTEER_SIZE if gazetteer is not None else 0)
    try:
        network = JointModel(config, labels, context)
    except (KeyError, ValueError, TypeError) as error:
        raise ModelDirError(f"{model_dir / CONFIG}: cannot build the model ({error})") from error
    try:
        state = load_file(str(model_dir / WEIGHTS))
    except (SafetensorError, OSError) as error:
        raise ModelDirError(f"{model_dir / WEIGHTS}: unreadable weights ({error})") from error
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelDirError(f"{model_dir / WEIGHTS}: weights do not fit {CONFIG} ({error})") from error
    network.eval()
    model = TrainedModel(config, labels, network, gazetteer, dict(meta.get("metrics") or {}))
    try:
        task.load_resources(model, model_dir)
    except (OSError, ValueError, KeyError) as error:
        raise ModelDirError(str(error)) from error
    return model


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")


RETIRED = {"training": ("fail_at_epoch",)}
"""Keys older versions wrote into every config.json and the schemas no longer have (a test
hook, now the trial's ``faults`` block): dropped when such a dir is read."""


def _without_retired(config: dict) -> dict:
    for section, keys in RETIRED.items():
        for key in keys:
            if isinstance(config.get(section), dict):
                config[section].pop(key, None)
    return config


def _read_json(path: Path):
    if not path.is_file():
        raise ModelDirError(f"{path}: missing from the model dir")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelDirError(f"{path}: not valid JSON ({error})") from error
