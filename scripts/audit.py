"""Offline known-vulnerability audit of pinned requirements against an OSV snapshot (scripts/audit.sh runs it).

No vulnerability service is reachable from the machines this is built and tested on, so pip-audit could not
run (issue 13). ``../shared/advisories/pypi-osv.jsonl.gz`` is an offline snapshot of the PyPA advisory
database (OSV records, CC-BY-4.0); its README says how to match, and this does exactly that: a pin is
affected when its version is listed in ``versions`` or lies in an ECOSYSTEM range (at or after an
``introduced``, before the next ``fixed`` or at or before a ``last_affected``), PEP 440 ordering, PEP 503
names, withdrawn records skipped.

Exit status: 0 when every finding is allow-listed (each is printed with its reason), 1 on a finding that is
not, 2 on a bad allow-list (an entry without a reason) or a requirements line that is not an exact pin.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

REPO = Path(__file__).resolve().parent.parent
ADVISORIES = REPO.parent / "shared" / "advisories" / "pypi-osv.jsonl.gz"
ALLOWLIST = REPO / "audit-allowlist.txt"


class AuditError(Exception):
    """The input cannot be audited as given: the message says which line."""


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    fixed: tuple[str, ...]
    summary: str

    def names(self) -> set[str]:
        return {self.id, *self.aliases}

    def describe(self) -> str:
        fixed = ", ".join(self.fixed) or "no fix listed"
        aliases = f" ({', '.join(self.aliases)})" if self.aliases else ""
        summary = " ".join(self.summary.split())[:120]
        return f"{self.package}=={self.version}: {self.id}{aliases}, fixed in {fixed}: {summary}"


def normalize(name: str) -> str:
    """PEP 503: ``Foo_Bar.baz`` and ``foo-bar-baz`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines (comments and blank lines skipped); anything else is refused, not skipped:
    an unpinned requirement cannot be audited."""
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip() or ";" in line or "[" in name:
            raise AuditError(f"{path.name}:{number}: {line!r} is not an exact pin (name==version)")
        pins[normalize(name.strip())] = version.strip()
    return pins


def read_allowlist(path: Path) -> dict[str, str]:
    """``ID # reason`` per line: the id (or an alias) of an advisory that cannot reach us, and why."""
    allowed = {}
    if not path.exists():
        return allowed
    for number, line in enumerate(path.read_text().splitlines(), 1):
        entry, sep, reason = line.partition("#")
        entry = entry.strip()
        if not entry:
            continue
        if not sep or not reason.strip():
            raise AuditError(f"{path.name}:{number}: {entry!r} has no reason (write: ID # why it cannot reach us)")
        allowed[entry] = reason.strip()
    return allowed


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def in_ranges(version: Version, ranges: list[dict]) -> bool:
    """OSV ECOSYSTEM ranges: events in version order, ``introduced`` opens, ``fixed``/``last_affected`` close."""
    for osv_range in ranges:
        if osv_range.get("type") != "ECOSYSTEM":
            continue
        events = []
        for event in osv_range.get("events", []):
            for kind, value in event.items():
                at = Version("0") if value == "0" else _version(value)
                if at is not None:
                    events.append((at, kind))
        affected = False
        for at, kind in sorted(events, key=lambda e: (e[0], e[1] != "introduced")):
            if kind == "introduced" and version >= at:
                affected = True
            elif kind == "fixed" and version >= at:
                affected = False
            elif kind == "last_affected" and version > at:
                affected = False
        if affected:
            return True
    return False


def findings(pins: dict[str, str], advisories: Path) -> list[Finding]:
    """Every advisory affecting a pin, in advisory-file order."""
    found = []
    with gzip.open(advisories, "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("withdrawn"):
                continue
            for affected in record.get("affected", []):
                package = normalize(affected.get("package", {}).get("name", ""))
                pinned = pins.get(package)
                version = _version(pinned) if pinned else None
                if version is None:
                    continue
                listed = {_version(v) for v in affected.get("versions", [])}
                if version in listed or in_ranges(version, affected.get("ranges", [])):
                    fixed = tuple(e["fixed"] for r in affected.get("ranges", []) if r.get("type") == "ECOSYSTEM"
                                  for e in r.get("events", []) if "fixed" in e)
                    found.append(Finding(package, pinned, record["id"], tuple(record.get("aliases", [])), fixed,
                                         (record.get("summary") or record.get("details") or "").strip()))
                    break
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requirements", nargs="+", type=Path, help="pinned requirement files (name==version)")
    parser.add_argument("--advisories", type=Path, default=ADVISORIES, help="OSV records, one JSON a line, gzip")
    parser.add_argument("--allowlist", type=Path, default=ALLOWLIST, help="ID # reason, one a line")
    args = parser.parse_args(argv)
    try:
        pins = {}
        for path in args.requirements:
            pins.update(read_pins(path))
        allowed = read_allowlist(args.allowlist)
    except (AuditError, OSError) as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 2
    if not args.advisories.exists():
        print(f"audit: no advisories at {args.advisories} (the offline snapshot, ../shared/advisories/)", file=sys.stderr)
        return 2
    found = findings(pins, args.advisories)
    refused = [f for f in found if not f.names() & allowed.keys()]
    for finding in found:
        if finding not in refused:
            entry = next(name for name in sorted(finding.names()) if name in allowed)
            print(f"allowed  {finding.describe()}\n         reason: {allowed[entry]}")
    for finding in refused:
        print(f"VULNERABLE  {finding.describe()}")
    used = {name for f in found for name in f.names()}
    for entry in sorted(allowed.keys() - used):
        print(f"note: allow-list entry {entry} matches no finding any more: remove it")
    print(f"audit: {len(pins)} pins, {len(found)} known vulnerabilities, {len(refused)} not allow-listed "
          f"({args.advisories.name})")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
