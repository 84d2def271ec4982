"""List the model versions of a Label Studio project, or activate one (roll back or forward).

    python versions.py list                                    # every project: what it is served
    python versions.py list --project 3                        # project 3's versions
    python versions.py activate --project 3 20261129-091500-3fa9c2d1
    python versions.py activate --project 3 base               # back to the base model
    python versions.py activate --base 20261120-080000-1a2b3c4d   # the base: every project that never trained

Every running server serves the activated version from its next request on, without a restart. The base
lineage is where a single-lineage install keeps its versions from before projects had lineages of their own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uie_backend import lineages, registry
from uie_backend.config import Settings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="a project's versions, newest first, with date, data size and dev "
                                               "F1; without --project, what every project is served")
    activate = commands.add_parser("activate", help="serve this version to the project (or as the base)")
    activate.add_argument("version")
    for command, required in ((listing, False), (activate, True)):
        which = command.add_mutually_exclusive_group(required=required)
        which.add_argument("--project", type=int, metavar="ID", help="the Label Studio project id")
        which.add_argument("--base", action="store_true", help="the base lineage (UIE_CHECKPOINT_DIR itself)")
    args = p.parse_args(argv)
    settings = Settings.from_env()
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


def _fail(message: str) -> int:
    print(f"versions.py: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
