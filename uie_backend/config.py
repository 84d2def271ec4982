"""Every setting of the backend, read from the environment in one place.

Each field's metadata holds its environment variable and a one-line meaning; the README's configuration
table is generated from it (``python -m uie_backend.config``), so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .label_prompts import load as load_label_prompts

REPO_ROOT = Path(__file__).resolve().parent.parent
# the offline model the repository ships (its card: README.md there); the one place that names it
EMBEDDED_MODEL = REPO_ROOT / "models" / "uie-zh-medium"
ACTIVATION_POLICIES = ("if-not-worse", "always", "never-auto")


def _setting(env: str, default, help: str):
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    checkpoint_dir: Path = _setting(
        "UIE_CHECKPOINT_DIR", REPO_ROOT / "checkpoint",
        "Where models live; the served model is `<dir>/model_best`.")
    named_model: str = _setting(
        "UIE_MODEL", "",
        "A PaddleNLP UIE model to serve when `model_best` does not exist, e.g. `uie-base` (downloaded by "
        "PaddleNLP: needs internet once). Empty: the embedded offline model.")
    default_model: Path = _setting(
        "UIE_DEFAULT_MODEL", EMBEDDED_MODEL,
        "The embedded offline model, served when there is neither `model_best` nor `UIE_MODEL`.")
    data_dir: Path = _setting(
        "UIE_DATA_DIR", REPO_ROOT / "data",
        "Where each training run keeps the exact data it used (`runs/<id>/`).")
    device: str = _setting("UIE_DEVICE", "auto", "`cpu`, `gpu`, `gpu:N`, or `auto` (GPU when there is one).")
    batch_size: int = _setting("UIE_BATCH_SIZE", 16, "Texts per forward pass at prediction time.")
    max_seq_len: int = _setting("UIE_MAX_SEQ_LEN", 512, "Tokens per model window (prompt + text).")
    position_prob: float = _setting(
        "UIE_THRESHOLD", 0.5, "Minimum start and end probability for a predicted span.")
    label_thresholds: str = _setting(
        "UIE_LABEL_THRESHOLDS", "", "Per-label thresholds overriding `UIE_THRESHOLD`, e.g. `人名=0.6,价格=0.3`.")
    label_prompts: str = _setting(
        "UIE_LABEL_PROMPTS", "", "The prompt UIE is asked for a label, relation or choice value that names none "
        "(`predicted_values`, which wins): a JSON object or the path of a JSON file, e.g. "
        "`{\"PER\":\"人名\",\"LOC\":\"地名\",\"ORG\":\"组织\"}`; predictions come back under the value. A "
        "project's own entries, under `projects`, win over these for it: `{\"PER\":\"人名\",\"projects\":"
        "{\"3\":{\"PER\":\"人物\"}}}`. A file is read on every request; broken at run time, its last good "
        "mapping stays in use (a warning).")
    max_regions: int = _setting("UIE_MAX_REGIONS", 0, "At most this many regions per task, best first (0: no cap).")
    window_overlap: int = _setting(
        "UIE_WINDOW_OVERLAP", 64, "Characters shared by consecutive windows of a long text (longest entity kept whole).")
    engine: str = _setting(
        "UIE_ENGINE", "fast", "`fast`: Paddle Inference on the static graph, batches padded only as needed; `taskflow`: "
        "PaddleNLP's Taskflow (the reference path).")
    num_threads: int = _setting("UIE_NUM_THREADS", 0, "CPU threads for inference (0: half the cores).")
    train_epochs: int = _setting("UIE_TRAIN_EPOCHS", 20, "Fine-tuning epochs on Start Training.")
    train_learning_rate: float = _setting(
        "UIE_TRAIN_LR", 0.0, "Fine-tuning learning rate; 0: the starting model's own recommendation "
        "(`fine_tune_learning_rate` in its uie_meta.json), else 1e-5 (PaddleNLP's for uie-base).")
    train_min_steps: int = _setting(
        "UIE_TRAIN_MIN_STEPS", 100, "Fine-tuning steps at least, however few the annotated tasks (20 epochs of 3 "
        "tasks are 20 steps, too few to learn them).")
    train_batch_size: int = _setting("UIE_TRAIN_BATCH_SIZE", 16, "Examples per fine-tuning step.")
    train_max_seq_len: int = _setting("UIE_TRAIN_MAX_SEQ_LEN", 256, "Tokens per training example.")
    max_body_mb: int = _setting("UIE_MAX_BODY_MB", 64, "Largest request body accepted, in MB (413 beyond).")
    max_config_kb: int = _setting(
        "UIE_MAX_CONFIG_KB", 256, "Largest labeling config accepted, in KB (413 beyond; real ones are a few KB).")
    max_labels: int = _setting(
        "UIE_MAX_LABELS", 256, "Most prompts a labeling config asks of every text, its labels and one per "
        "`<Choices>` (413 beyond): each is a model input for every text, so predicting takes time in proportion "
        "(relation predicates are asked only of the entities found and do not count).")
    max_text_chars: int = _setting(
        "UIE_MAX_TEXT_CHARS", 100_000, "Longest text of a task `/predict` predicts, in characters (beyond: an empty "
        "prediction and an error naming the task; the others are predicted): "
        "about 230 model windows; 1 MB of text would take minutes.")
    max_tasks: int = _setting(
        "UIE_MAX_TASKS", 2000, "Most tasks in one `/predict` (413 beyond: select fewer for Retrieve Predictions); "
        "how many fit in Label Studio's 100 s depends on the model (`bench/RESULTS.md`).")
    predict_timeout_s: float = _setting(
        "UIE_PREDICT_TIMEOUT", 90.0, "Seconds a `/predict` may compute before it stops with a 503 (Label Studio "
        "gives up after 100 s); checked between slices of 8 batches (0: no limit).")
    redis_url: str = _setting(
        "REDIS_URL", "", "Run training and pre-annotation jobs on this Redis (RQ queues `uie-training` and "
        "`uie-preannotation`, workers: `make worker`), for several replicas sharing `UIE_CHECKPOINT_DIR` and "
        "`UIE_DATA_DIR`. Empty: jobs run beside the server.")
    train_timeout_s: int = _setting(
        "UIE_TRAIN_TIMEOUT", 24 * 3600, "Seconds a queued training job may run before its worker stops it "
        "(with `REDIS_URL`).")
    auto_train_every: int = _setting(
        "UIE_AUTO_TRAIN_EVERY", 0, "Train after every N new annotations of a project (0: only on Start Training).")
    auto_train_delay: float = _setting(
        "UIE_AUTO_TRAIN_DELAY", 30.0, "Seconds to wait after the Nth annotation, so a burst of saves is one run.")
    activation_policy: str = _setting(
        "UIE_ACTIVATION_POLICY", "if-not-worse",
        "When a trained model is served: `if-not-worse` (dev F1 not below the active model's by more than "
        "one standard error: on a few dev tasks one span is noise), `always`, "
        "or `never-auto` (only by `versions.py activate` / `POST /versions/<id>/activate`).")
    train_from: str = _setting(
        "UIE_TRAIN_FROM", "", "A checkpoint directory that is every project's base: served until the project "
        "trains, and fine-tuned by each of its runs. Empty: `model_best`, else `UIE_MODEL`, else the embedded model.")
    max_loaded_models: int = _setting(
        "UIE_MAX_LOADED_MODELS", 4, "Model versions kept loaded per server process (projects served the same "
        "version share one); the least recently used is unloaded first.")
    ask_all_predicates: bool = _setting(
        "UIE_ASK_ALL_PREDICATES", False, "`true`: a model that has learnt no relations (the base, before a "
        "project's first training) asks every `<Relation>` of every entity it finds: one forward pass per "
        "(entity, predicate), the expensive case. Trained models ask what the project's annotations taught "
        "them.")
    negative_ratio: int = _setting("UIE_NEGATIVE_RATIO", 5, "Negative prompts per positive one in training data.")
    preannotate_on_activation: bool = _setting(
        "UIE_PREANNOTATE", True, "`true`: whenever a project's new version is activated (Start Training, "
        "`POST /versions/<id>/activate`), predict in the background every task of the project that lacks a "
        "prediction of it, and store them in Label Studio (`docs/preannotation.md`); `false`: only on "
        "`POST /preannotate` or `versions.py preannotate`.")
    preannotate_page: int = _setting(
        "UIE_PREANNOTATE_PAGE", 200, "Tasks per page of the background pre-annotation, listed, predicted and "
        "stored together (at most three pages in memory); Label Studio recounts the whole project for every page "
        "stored, so fewer, larger pages cost it less.")
    label_studio_retry_s: float = _setting(
        "UIE_LABEL_STUDIO_RETRY_S", 120.0, "Seconds the pre-annotation job keeps retrying a failing Label Studio "
        "call (unreachable, timeouts, 5xx, 401/403; pauses of 1, 2, 4 … 30 s) before it stops with the error.")
    label_studio_url: str = _setting(
        "LABEL_STUDIO_URL", "", "Label Studio address for pulling annotations and storing pre-annotations (default: "
        "the `hostname` sent to /setup).")
    label_studio_api_key: str = _setting(
        "LABEL_STUDIO_API_KEY", "", "Token for pulling annotations and storing pre-annotations: legacy token or "
        "personal access token "
        "(default: the `access_token` sent to /setup).")
    basic_auth_user: str = _setting("BASIC_AUTH_USER", "", "Require HTTP basic auth with this user (off when empty).")
    basic_auth_pass: str = _setting("BASIC_AUTH_PASS", "", "Password for `BASIC_AUTH_USER`.")
    ppnlp_home: Path = _setting(
        "PPNLP_HOME", REPO_ROOT / ".paddlenlp", "PaddleNLP's cache folder (downloaded models, if online).")

    @property
    def model_best(self) -> Path:
        return self.checkpoint_dir / "model_best"

    def thresholds(self) -> dict[str, float]:
        """``UIE_LABEL_THRESHOLDS`` parsed: label -> pointer probability threshold."""
        parsed = {}
        for item in filter(None, (part.strip() for part in self.label_thresholds.split(","))):
            label, sep, value = item.rpartition("=")
            try:
                if not sep or not label.strip():
                    raise ValueError
                parsed[label.strip()] = float(value)
            except ValueError:
                raise ValueError(f"UIE_LABEL_THRESHOLDS: {item!r} is not `label=number`") from None
        return parsed

    def prompts(self, project_id: int | None = None) -> dict[str, str]:
        """``UIE_LABEL_PROMPTS`` for ``project_id``: label value -> the prompt UIE is asked, the project's own
        entries over the global ones (label_prompts.py; None: the global ones only).

        A file is read again on every call, so an edit applies from the next request; one that has become
        unreadable or invalid since it was last read well keeps its last good mapping (a warning, not a 500)."""
        return load_label_prompts(self.label_prompts).for_project(project_id)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Build the settings from ``environ`` (default ``os.environ``); bad values fail loudly at start-up."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"])
            kind = type(f.default)
            if raw is None or (raw == "" and kind is not str):  # UIE_MODEL="" means "no fallback model"
                continue
            try:
                if kind is bool:
                    values[f.name] = _boolean(raw)
                    continue
                values[f.name] = Path(raw).expanduser() if issubclass(kind, Path) else kind(raw)
            except ValueError:
                raise ValueError(f"{f.metadata['env']}={raw!r} is not a valid {kind.__name__}") from None
        settings = cls(**values)
        if settings.train_from == "active":  # the old default's name: fine-tune what projects are served
            settings = dataclasses.replace(settings, train_from="")
        for name in ("max_loaded_models", "max_body_mb", "max_config_kb", "max_labels", "max_text_chars", "max_tasks",
                     "preannotate_page"):
            if getattr(settings, name) < 1:  # 0 would refuse every request, not lift the limit
                raise ValueError(f"{cls.__dataclass_fields__[name].metadata['env']} must be at least 1")
        settings.prompts()  # parse now too: a bad file fails at start-up (later, its last good mapping serves)
        settings.thresholds()  # parse now: a typo fails at start-up, not at the first prediction
        if settings.engine not in ("fast", "taskflow"):
            raise ValueError("UIE_ENGINE must be `fast` or `taskflow`")
        if settings.activation_policy not in ACTIVATION_POLICIES:
            raise ValueError(f"UIE_ACTIVATION_POLICY must be one of {', '.join(ACTIVATION_POLICIES)}")
        if bool(settings.basic_auth_user) != bool(settings.basic_auth_pass):
            raise ValueError("set both BASIC_AUTH_USER and BASIC_AUTH_PASS, or neither")
        return settings


def _boolean(raw: str) -> bool:
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(Settings):
        default = f.default
        if isinstance(default, Path):
            default = default.relative_to(REPO_ROOT) if default.is_relative_to(REPO_ROOT) else default
        rows.append(f"| `{f.metadata['env']}` | `{default}` | {f.metadata['help']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
