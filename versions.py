"""List the model versions in the registry, or activate one (roll back or forward).

    python versions.py list
    python versions.py activate 20261129-091500-3fa9c2d1

Every running server serves the activated version from its next request on, without a restart.
"""

from __future__ import annotations

import argparse
import sys

from uie_backend import registry
from uie_backend.config import Settings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="all versions, newest first, with date, data size and dev F1")
    activate = commands.add_parser("activate", help="serve this version")
    activate.add_argument("version")
    args = p.parse_args(argv)
    checkpoint_dir = Settings.from_env().checkpoint_dir
    if args.command == "activate":
        try:
            registry.activate(args.version, checkpoint_dir)
        except registry.VersionNotFound as exc:
            print(f"versions.py: error: {exc}", file=sys.stderr)
            return 2
        print(f"active: {args.version}")
        return 0
    print("| active | version | created | tasks | dev F1 |")
    print("|---|---|---|---:|---:|")
    for v in map(registry.Version.to_dict, registry.list_versions(checkpoint_dir)):
        f1 = "" if v["dev_f1"] is None else f"{v['dev_f1']:.4f}"
        print(f"| {'*' if v['active'] else ''} | {v['version']} | {v['created_at'] or ''} | {v['tasks'] or ''} | {f1} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
