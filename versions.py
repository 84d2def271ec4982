"""List the model versions of a Label Studio project, activate one (roll back or forward), or pre-annotate the
project with the version it is served.

    python versions.py list                                    # every project: what it is served
    python versions.py list --project 3                        # project 3's versions
    python versions.py activate --project 3 20261129-091500-3fa9c2d1
    python versions.py activate --project 3 base               # back to the base model
    python versions.py activate --base 20261120-080000-1a2b3c4d   # the base: every project that never trained
    python versions.py preannotate --project 3                 # store a prediction of its version in every task

Every running server serves the activated version from its next request on, without a restart. The base
lineage is where a single-lineage install keeps its versions from before projects had lineages of their own.
`preannotate` runs the background job of docs/preannotation.md here, in the foreground, through
LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (a server does the same after each activation, or on
`POST /preannotate?project=N`; with REDIS_URL it still runs here, holding the project's lock in Redis as
a worker's job does).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from redis import Redis

from uie_backend import lineages, registry
from uie_backend.config import Settings
from uie_backend.labelstudio import Connection
from uie_backend.preannotation import Preannotator
from uie_backend.redis_preannotation import RedisProjectLock


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="a project's versions, newest first, with date, data size and dev "
                                               "F1; without --project, what every project is served")
    activate = commands.add_parser("activate", help="serve this version to the project (or as the base)")
    activate.add_argument("version")
    preannotate = commands.add_parser("preannotate", help="predict every task of the project that lacks a prediction "
                                                          "of its served version, and store them in Label Studio")
    preannotate.add_argument("--project", type=int, metavar="ID", required=True, help="the Label Studio project id")
    for command, required in ((listing, False), (activate, True)):
        which = command.add_mutually_exclusive_group(required=required)
        which.add_argument("--project", type=int, metavar="ID", help="the Label Studio project id")
        which.add_argument("--base", action="store_true", help="the base lineage (UIE_CHECKPOINT_DIR itself)")
    args = p.parse_args(argv)
    settings = Settings.from_env()
    if args.command == "preannotate":
        return _preannotate(settings, args.project)
    try:
        root = settings.checkpoint_dir if args.base else (
            lineages.project_dir(settings, args.project) if args.project is not None else None)
    except ValueError as exc:
        return _fail(str(exc))
    if args.command == "activate":
        try:
            if args.base:
                registry.activate(args.version, root)
            else:
                lineages.activate(settings, args.project, args.version)
        except registry.VersionNotFound as exc:
            return _fail(str(exc))
        print(f"{'base' if args.base else f'project {args.project}'}: active {args.version}")
        return 0
    if root is None:
        _print_projects(settings)
    else:
        _print_versions(root)
    return 0


def _print_versions(root: Path) -> None:
    print("| active | version | created | tasks | dev F1 |")
    print("|---|---|---|---:|---:|")
    for v in map(registry.Version.to_dict, registry.list_versions(root)):
        f1 = "" if v["dev_f1"] is None else f"{v['dev_f1']:.4f}"
        print(f"| {'*' if v['active'] else ''} | {v['version']} | {v['created_at'] or ''} | {v['tasks'] or ''} | {f1} |")


def _print_projects(settings: Settings) -> None:
    try:
        base = lineages.base_source(settings).version
    except Exception as exc:  # a listing must still show the projects when the base is unusable
        base = f"none ({exc})"
    print(f"base (every project without versions of its own): {base}\n")
    print("| project | served version | versions |")
    print("|---:|---|---:|")
    for project in lineages.trained_projects(settings):
        root = lineages.project_dir(settings, project)
        active = registry.active_path(root)
        print(f"| {project} | {active.name if active else f'base: {base}'} | {len(registry.list_versions(root))} |")


def _preannotate(settings: Settings, project_id: int) -> int:
    """Run the project's pre-annotation job in this process and print its final status (0: it succeeded)."""
    if project_id < 0:
        return _fail(f"a Label Studio project id is a non-negative integer, not {project_id}")
    if not settings.label_studio_url or not settings.label_studio_api_key:
        return _fail("set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (a legacy token or a personal access token)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    connection = Connection(settings.label_studio_url, settings.label_studio_api_key)
    # with REDIS_URL, the project's lock in Redis keeps this run and the workers' jobs apart
    lock = (lambda p: RedisProjectLock(Redis.from_url(settings.redis_url), p)) if settings.redis_url else None
    jobs = Preannotator(settings, lambda _: connection, project_lock=lock)
    try:
        lineages.source_for(settings, project_id)
    except lineages.ModelUnavailable as exc:
        return _fail(str(exc))
    started = jobs.start(project_id, "versions.py preannotate")
    if started["state"] != "started":
        return _fail(f"project {project_id}: {started['detail']} (state {started['state']}, job {started.get('job')})")
    try:
        jobs.wait_idle(float("inf"))
    except KeyboardInterrupt:
        print("stopping at the next page…", file=sys.stderr)
        jobs.stop_all()
    status = jobs.status_of(project_id)
    print(json.dumps(status, ensure_ascii=False, indent=1))
    return 0 if status["state"] == "succeeded" else 1


def _fail(message: str) -> int:
    print(f"versions.py: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
