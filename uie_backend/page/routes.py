"""The status page for people: what each project's model learnt, in a browser (``GET /`` asking for HTML).

Handlers stay short: dashboard.py gathers, the Jinja templates (``templates/``, autoescaped) show, and
activation goes through the same function as ``POST /versions/<v>/activate`` (server.py), so there is one
way to switch a project's model. Switching changes what annotators are given, so a button only shows a
confirmation form; the switch happens when that form is sent back with ``confirm=yes``, from this site
(browsers send ``Origin`` with a form POST: one from another site is refused, as basic auth alone would not
stop it). The page works offline: charts are inline SVG (svg.py), the only script is ``static/page.js``.
"""

from __future__ import annotations

from typing import Callable
from urllib.parse import urlsplit

from flask import Blueprint, Request, abort, redirect, render_template, request, send_file, url_for

from .. import registry
from . import dashboard
from ..config import Settings

TEXT_FILES = {".json": "application/json"}  # every other kept file is served as plain text, never as HTML


def wants_html(req: Request) -> bool:
    """A browser (``Accept: text/html,…``), not Label Studio or curl (``*/*``) nor a JSON client."""
    return req.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def index(settings: Settings) -> str:
    return render_template("index.html", projects=dashboard.projects(settings), base=dashboard.base_version(settings))


def blueprint(settings: Settings, activate: Callable[[int, str], dict]) -> Blueprint:
    """The page's routes; ``activate(project_id, version)`` is server.py's, shared with the JSON API."""
    pages = Blueprint("pages", __name__)
    pages.add_app_template_filter(score)

    @pages.get("/projects/<int:project_id>")
    def project(project_id: int):
        return render_template("project.html", project=dashboard.project(settings, project_id))

    @pages.post("/projects/<int:project_id>/versions/<version>/activate")
    def activate_version(project_id: int, version: str):
        if not _same_site(request):
            abort(403, "a version is switched only from this backend's own page")
        view = dashboard.project(settings, project_id)
        if version != "base" and version not in {v.id for v in view.versions}:
            raise registry.VersionNotFound(f"project {project_id} has no version {version!r}")
        if request.form.get("confirm") != "yes":
            return render_template("confirm.html", project=view, version=version)
        activate(project_id, version)
        return redirect(url_for("pages.project", project_id=project_id), code=303)

    @pages.get("/runs/<run_id>")
    def run(run_id: str):
        return render_template("run.html", run=dashboard.run(settings, run_id))

    @pages.get("/runs/<run_id>/files/<name>")
    def run_file(run_id: str, name: str):
        path = dashboard.run_file(settings, run_id, name)
        response = send_file(path, mimetype=TEXT_FILES.get(path.suffix, "text/plain"))
        response.headers["X-Content-Type-Options"] = "nosniff"  # a task's text is never run as a page
        return response

    @pages.errorhandler(dashboard.RunNotFound)
    @pages.errorhandler(registry.VersionNotFound)
    def not_found(exc: Exception) -> tuple[str, int]:
        return render_template("error.html", status=404, message=str(exc)), 404

    @pages.errorhandler(403)
    def forbidden(exc) -> tuple[str, int]:
        return render_template("error.html", status=403, message=exc.description), 403

    return pages


def score(value, signed: bool = False) -> str:
    """A score as the tables show it (0.8123); whatever else a hand-edited report holds, as it is."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:+.4f}" if signed else f"{value:.4f}"
    return "–" if value is None else str(value)


def _same_site(req: Request) -> bool:
    """A form sent from this backend's pages; a request without ``Origin`` (curl, a test client) passes."""
    origin = req.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == req.host
