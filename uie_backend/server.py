"""The HTTP API Label Studio talks to (see docs/label-studio-protocol in the README for the whole table).

Routes stay thin: parse and validate the request, call the model class or the job runner, answer JSON.
Label Studio's time limits shape it: ``/health`` and ``/setup`` never load a model (1 s and 3 s limits),
``/webhook`` never trains (1 s for annotation events, 100 s for Start Training), and ``/predict`` always
returns exactly one prediction per task (Label Studio silently drops an answer of the wrong length).
Every error is a JSON object ``{"error": ..., "detail": ...}`` with a 4xx status when the request is at fault.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, request
from label_studio_tools.core.utils.exceptions import LabelStudioXMLSyntaxErrorSentryIgnored
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from . import bodies, checkpoint, limits, lineages, predictor, redis_jobs, registry
from .page import routes as pages
from .autotrain import COUNTED_ACTIONS, AutoTrainer
from .preannotation import NotConnected, Preannotator
from .config import Settings
from .data import DataError
from .jobs import JobRunner
from .labelconfig import LabelConfigError, Schema
from .labelstudio import Connection
from .redis_jobs import QueueUnavailable, RedisJobRunner
from .redis_preannotation import QueuedPreannotator
from .training import ProjectRequired, TrainingRequest

log = logging.getLogger(__name__)


class BadRequest(Exception):
    status = 400


def create_app(model_class, settings: Settings | None = None) -> Flask:
    """The Flask app serving ``model_class`` (a ``LabelStudioMLBase`` subclass such as ``UIEBackend``)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__, static_folder="page/static", template_folder="page/templates")
    app.json.ensure_ascii = False  # Chinese labels stay readable in answers and logs
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_mb * 1024 * 1024  # larger bodies: 413
    app.wsgi_app = bodies.draining(app.wsgi_app)  # an answer even to a body nobody reads (bodies.py)
    _announce_model(settings)
    jobs = _job_runner(settings)
    auto = AutoTrainer(settings.auto_train_every, settings.auto_train_delay,
                       lambda project_id, config: _submit_training(jobs, settings, config, project_id),
                       count=jobs.count_annotation)
    app.extensions["uie_jobs"] = jobs
    preannotator = (QueuedPreannotator if settings.redis_url else Preannotator)(
        settings, lambda project_id: _label_studio(jobs, settings, project_id))
    if isinstance(jobs, JobRunner):  # (a Redis worker's run queues the pre-annotation itself: redis_jobs.py)
        jobs.on_activated = preannotator.after_activation
    app.extensions["uie_preannotation"] = preannotator
    _resume_preannotation(preannotator, None)  # jobs a restart cut short, where LABEL_STUDIO_URL/_API_KEY are set

    def body() -> dict:
        if request.content_length is None and len(request.get_data(cache=True)) >= app.config["MAX_CONTENT_LENGTH"]:
            raise RequestEntityTooLarge()  # chunked: werkzeug stops reading at the limit, leaving cut JSON (a 400)
        try:
            data = request.get_json(force=True, silent=True)
        except RecursionError:  # the stdlib parser recurses per nesting level
            raise BadRequest("request body is nested too deeply") from None
        if not isinstance(data, dict):
            raise BadRequest("request body must be a JSON object")
        return data

    def model_for(label_config: Any, project_id: int | None) -> tuple[Any, Schema]:
        """The model for ``label_config``, and the config's schema as ``project_id`` asks it."""
        if label_config is None:
            raise BadRequest("label_config is missing")
        schema = limits.label_config(label_config, settings, project_id)  # before label-studio-ml's parser
        try:
            return model_class(label_config=label_config, project_id=project_id, schema=schema), schema
        except LabelConfigError:
            raise
        except (ValueError, LabelStudioXMLSyntaxErrorSentryIgnored) as exc:
            # label-studio-ml's own parser (lxml on the str) refuses some configs ours reads, e.g. one with an
            # encoding declaration or a declaration after whitespace: those were 500s (tests/test_fuzz.py)
            raise BadRequest(f"label config cannot be read by label-studio-ml: {exc}") from None

    @app.before_request
    def require_basic_auth():
        if not settings.basic_auth_user or _is_unauthenticated_webhook():
            return None
        auth = request.authorization
        user_ok = auth is not None and hmac.compare_digest((auth.username or "").encode(),
                                                           settings.basic_auth_user.encode())
        pass_ok = auth is not None and hmac.compare_digest((auth.password or "").encode(),
                                                           settings.basic_auth_pass.encode())
        if not (user_ok and pass_ok):
            response = jsonify(error="unauthorized", detail="this backend requires HTTP basic auth")
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Basic realm="uie-backend"'
            return response
        return None

    @app.get("/")
    @app.get("/health")
    def health():
        if request.path == "/" and pages.wants_html(request):  # a browser: the status page (page/routes.py)
            return pages.index(settings)
        try:
            training = jobs.status()["is_training"]
        except QueueUnavailable as exc:  # /health answers while Redis is down: serving does not need it
            log.warning("%s", exc)
            training = None
        # model_version: what a project that has not trained is served (each project's own: /setup, /versions)
        return jsonify(status="UP", model_version=_served_version(settings, None),
                       models_loaded=predictor.loaded_versions(settings), training=training)

    @app.post("/setup")
    def setup():
        data = body()
        project_id = _project_id(data.get("project"))
        limits.label_config(data.get("schema"), settings, project_id)
        connection = _setup_connection(data)
        # a /setup that names no address and token (a health probe, a test) must not forget Label Studio's
        if project_id is not None and (connection["hostname"] or connection["access_token"]):
            try:
                jobs.remember_setup(project_id, connection)
            except QueueUnavailable as exc:  # /setup must answer (3 s); training will say what is wrong
                log.warning("%s", exc)
            _resume_preannotation(preannotator, project_id)  # cut short by a restart: its token is known now
        return jsonify(model_version=_served_version(settings, project_id))

    @app.post("/predict")
    def predict():
        data = body()
        tasks = data.get("tasks")
        if not isinstance(tasks, list):
            raise BadRequest("'tasks' must be a list of Label Studio tasks")
        params = data.get("params") if isinstance(data.get("params"), dict) else {}
        project_id = _project_id(data.get("project"))
        started = time.perf_counter()
        if not tasks:
            return jsonify(results=[], model_version=_served_version(settings, project_id))
        model, schema = model_for(data.get("label_config"), project_id)
        _check_label_lengths(schema, settings)
        limits.prediction(tasks, settings)
        deadline = time.monotonic() + settings.predict_timeout_s if settings.predict_timeout_s > 0 else None
        results, errors = model.predict_with_errors(tasks, context=params.get("context"), deadline=deadline,
                                                    project_id=project_id)
        log.info("predicted %d tasks in %.3f s (%d with errors)", len(tasks), time.perf_counter() - started, len(errors))
        answer = {"results": results, "model_version": results[0]["model_version"]}
        if errors:
            answer["errors"] = [e.to_dict() for e in errors]
        return jsonify(answer)

    @app.post("/webhook")
    def webhook():
        data = body()
        action = data.get("action")
        project = data.get("project")
        if (settings.auto_train_every and action in COUNTED_ACTIONS and isinstance(project, dict)
                and isinstance(project.get("label_config"), str) and _project_id(project.get("id")) is not None):
            limits.config_size(project["label_config"], settings)  # kept until the run: not parsed now (1 s)
            scheduled = auto.annotation_event(_project_id(project["id"]), project["label_config"])
            return jsonify(status="auto-training scheduled" if scheduled else "counted", action=action), 200
        if action != "START_TRAINING":
            return jsonify(status="ignored", action=action), 200
        if not isinstance(project, dict) or "label_config" not in project or "id" not in project:
            raise BadRequest("START_TRAINING needs project.id and project.label_config")
        limits.label_config(project["label_config"], settings, _project_id(project["id"]))
        return _training_started(
            _submit_training(jobs, settings, project["label_config"], _project_id(project["id"])))

    @app.post("/train")
    def train():
        data = body()
        tasks = data.get("annotations")
        if not isinstance(tasks, list) or not tasks:
            raise BadRequest("'annotations' must be a non-empty list of annotated tasks")
        if not all(isinstance(task, dict) for task in tasks):
            # accepted before, then the job failed with "AttributeError: 'int' object has no attribute 'get'"
            raise BadRequest("each of 'annotations' must be a Label Studio task object")
        limits.label_config(data.get("label_config"), settings, _project_id(data.get("project")))
        return _training_started(
            _submit_training(jobs, settings, data["label_config"], _project_id(data.get("project")), tasks))

    @app.route("/versions", methods=["GET", "POST"])
    def versions():
        """A project's versions (Label Studio sends its project in a JSON body, even on GET; or ?project=N)."""
        project_id = _requested_project(required=False)
        if project_id is None:
            return jsonify(versions=[], model_version=_served_version(settings, None),
                           projects=lineages.trained_projects(settings),
                           detail="name a project (?project=N) to list its versions")
        listed = registry.list_versions(lineages.project_dir(settings, project_id))
        return jsonify(project=project_id, versions=[v.id for v in listed], details=[v.to_dict() for v in listed],
                       model_version=_served_version(settings, project_id), base=_served_version(settings, None))

    @app.post("/versions/<version>/activate")
    def activate_version(version: str):
        """Roll a project back (or forward) to any of its versions, or to the base (``base``); every server
        process follows."""
        return jsonify(activate(_requested_project(required=True), version))

    def activate(project_id: int, version: str) -> dict:
        """The one way a request switches a project's version: this route and the status page's button."""
        activated = lineages.activate(settings, project_id, version)
        log.info("project %s: version %s activated by request", project_id, version)
        preannotator.after_activation(project_id, _served_version(settings, project_id))
        if activated is None:  # back to the base
            return {"project": project_id, "version": lineages.BASE, "model_version": _served_version(settings, None)}
        return {**activated.to_dict(), "project": project_id}

    app.register_blueprint(pages.blueprint(settings, activate))

    @app.post("/preannotate")
    def preannotate():
        """Store a prediction of the project's served version for each of its tasks lacking one, in the
        background (preannotation.py); ``GET /preannotation`` shows how far it got."""
        project_id = _requested_project(required=True)
        lineages.source_for(settings, project_id)  # no model to predict with: a 503 now, not a failed job
        return jsonify(preannotator.start(project_id, "requested")), 202

    @app.get("/preannotation")
    def preannotation_status():
        """Each project's last pre-annotation job: state, done/total, tasks/s, ETA, the tasks skipped and why."""
        project_id = _requested_project(required=False)
        return jsonify(jobs=preannotator.statuses(project_id))

    @app.get("/training")
    @app.get("/is_training")
    def training_status():
        return jsonify(jobs.status())

    def _requested_project(required: bool) -> int | None:
        data = body() if request.get_data(cache=True).strip() else None  # (a chunked body has no content_length)
        raw = request.args.get("project") or (data.get("project") if isinstance(data, dict) else None)
        project_id = _project_id(raw)
        if project_id is None and (required or raw is not None):
            raise BadRequest("name the Label Studio project: ?project=N, or {\"project\": N} in a JSON body")
        return project_id

    @app.errorhandler(BadRequest)
    @app.errorhandler(NotConnected)
    @app.errorhandler(LabelConfigError)
    @app.errorhandler(DataError)
    def bad_request(exc: Exception):
        return _error(400, "bad request", str(exc))

    @app.errorhandler(limits.LimitExceeded)
    def over_a_limit(exc: Exception):
        return _error(413, "too large", str(exc))

    @app.errorhandler(registry.VersionNotFound)
    def unknown_version(exc: Exception):
        return _error(404, "not found", str(exc))

    @app.errorhandler(lineages.ModelUnavailable)
    def no_model(exc: Exception):
        return _error(503, "model unavailable", str(exc))

    @app.errorhandler(QueueUnavailable)
    def no_queue(exc: Exception):
        log.error("%s", exc)
        return _error(503, "training queue unavailable", str(exc))

    @app.errorhandler(predictor.PredictionTimeout)
    def too_slow(exc: Exception):
        log.warning("%s", exc)
        return _error(503, "prediction time limit", str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _error(exc.code or 500, exc.name.lower(), exc.description)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error(500, "internal error", f"{type(exc).__name__}: {exc}")

    return app


def _job_runner(settings: Settings) -> JobRunner | RedisJobRunner:
    """Jobs on Redis when several replicas share the work (``REDIS_URL``), else beside this server."""
    if settings.redis_url:
        log.info("training jobs go to the Redis queue %r", redis_jobs.QUEUE)
        return RedisJobRunner(settings)
    return JobRunner(settings)


def _resume_preannotation(preannotator: Preannotator, project_id: int | None) -> None:
    """Resume interrupted pre-annotation jobs; start-up and /setup go on whatever happens (it is logged)."""
    try:
        preannotator.resume_interrupted(project_id)
    except (OSError, QueueUnavailable) as exc:  # UIE_DATA_DIR unwritable, Redis away: the server still starts
        log.warning("pre-annotation not resumed: %s", exc)


def _label_studio(jobs: JobRunner | RedisJobRunner, settings: Settings, project_id: int) -> Connection | None:
    """The connection the project's pre-annotation writes through: ``LABEL_STUDIO_URL``/``_API_KEY``, else what
    its ``/setup`` gave; None when neither is known. With Redis away, what /setup gave cannot be read: that is
    QueueUnavailable (a 503), not "never connected" (a 400 telling the user to connect what is connected)."""
    known = {} if settings.label_studio_url and settings.label_studio_api_key else jobs.setup_of(project_id)
    url = settings.label_studio_url or known.get("hostname")
    token = settings.label_studio_api_key or known.get("access_token")
    return Connection(url, token) if url and token else None


def _announce_model(settings: Settings) -> None:
    """Say at start-up which model will be served, and where to put one when there is none."""
    try:
        source = lineages.base_source(settings)
    except (lineages.ModelUnavailable, checkpoint.CheckpointError) as exc:
        # an incomplete base checkpoint crashed the start-up (tests/test_faults.py): start, answer /predict
        # with 503, and let `versions.py activate --base` put a good version back
        log.warning("%s", exc)
        return
    trained = len(lineages.trained_projects(settings))
    if source.path is None:
        log.warning("no fine-tuned model in %s: serving PaddleNLP's %r, which PaddleNLP downloads on first use "
                    "(needs internet).", settings.model_best, source.name)
    else:
        log.info("base model (served to every project until it trains): %s (version %s); %d projects have "
                 "versions of their own", source.path, source.version, trained)


def _submit_training(jobs: JobRunner | RedisJobRunner, settings: Settings, label_config: str,
                     project_id: int | None, tasks: list | None = None) -> dict:
    """Queue a training run with the Label Studio address and token this project's /setup gave us."""
    if project_id is None:
        raise ProjectRequired("'project' must name the Label Studio project (its id, or Label Studio's "
                              "\"id.timestamp\"): training changes what that project is served, and no other")
    known = jobs.setup_of(project_id)
    return jobs.submit(TrainingRequest(
        label_config=label_config, project_id=project_id, tasks=tasks,
        label_studio_url=settings.label_studio_url or known.get("hostname"),
        label_studio_token=settings.label_studio_api_key or known.get("access_token"),
    ))


def _training_started(job: dict):
    status = "queued after the running job" if job.get("follow_up_queued") else "training started"
    return jsonify(status=status, **job), 201


def _is_unauthenticated_webhook() -> bool:
    """Label Studio's automatic project webhooks carry no basic auth; they are let in but only acknowledged.

    Anything that acts (START_TRAINING) must authenticate, so an outsider can at most get an "ignored".
    """
    if request.path != "/webhook":
        return False
    try:
        data = request.get_json(force=True, silent=True)
    except RecursionError:
        return True  # let it in: body() answers 400
    return not (isinstance(data, dict) and data.get("action") == "START_TRAINING")


def _project_id(value: Any) -> int | None:
    """Label Studio sends ``"2.1795936584"`` (id.created_at) to /setup and /predict, and ``2`` in webhooks."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None  # -1 reached lineages' ValueError, a 500 (test_fuzz)
    if isinstance(value, str) and value.split(".", 1)[0].isdigit():
        try:
            return int(value.split(".", 1)[0])
        except ValueError:  # "²" (isdigit, yet not int()) or over int()'s 4300-digit limit: was a 500 (test_fuzz)
            return None
    return None


def _setup_connection(data: dict) -> dict:
    """The Label Studio address and token /setup gives, checked: the training job fetches from this address.

    A hostname with a query or fragment let the caller pick the whole URL fetched (``http://host/any?x=``
    swallowed the ``/api/projects/N/export`` suffix) and see the start of its answer in the job's error; a
    non-string crashed the job with an AttributeError (tests/test_security.py). Label Studio sends a plain
    ``http(s)://host[:port][/prefix]``.
    """
    hostname, token = data.get("hostname") or "", data.get("access_token") or ""
    if not isinstance(hostname, str) or not isinstance(token, str):
        raise BadRequest("'hostname' and 'access_token' must be strings")
    if hostname:
        try:
            url = urlsplit(hostname)
            plain = (url.scheme in ("http", "https") and bool(url.hostname) and not url.username
                     and not url.password and "?" not in hostname and "#" not in hostname)  # even an empty one
        except ValueError:
            plain = False
        if not plain:
            raise BadRequest("'hostname' must be Label Studio's http(s) address, with no credentials, query or "
                             "fragment (or set LABEL_STUDIO_URL)")
    return {"hostname": hostname, "access_token": token}


def _check_label_lengths(schema: Schema, settings: Settings) -> None:
    """A label's prompt shares every model window with the text (predictor.Predictor.extract): one that leaves
    no room for text made windows.cut raise ValueError, a 500 (tests/test_fuzz.py). A 400 instead."""
    prompts = [*schema.prompts, *(c.prompt() for c in schema.choices)]
    for label in prompts:
        if settings.max_seq_len - len(label) - 3 <= 0:
            raise BadRequest(f"label {label[:20]!r}… is {len(label)} characters long: no text fits beside it in "
                             f"UIE_MAX_SEQ_LEN={settings.max_seq_len} tokens")


def _served_version(settings: Settings, project_id: int | None) -> str:
    """The version ``project_id`` is served (the base for None), without loading it: /health, /setup."""
    try:
        return lineages.source_for(settings, project_id).version
    except Exception as exc:  # /health and /setup must answer even without a model; the reason is logged
        log.warning("no active model: %s", exc)
        return "none"


def _error(status: int, error: str, detail: str) -> tuple[Response, int]:
    return jsonify(error=error, detail=detail), status
