"""The offline dependency audit (scripts/audit.sh, scripts/audit.py) and the reasons of its allow-list.

The audit matches pins against ../shared/advisories/pypi-osv.jsonl.gz (beside the checkout, here and in CI).
It must catch a vulnerable pin, refuse an allow-list entry without a reason, and pass on this repository,
where every finding is allow-listed with a reason; the tests below back each reason a test can check.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import audit  # noqa: E402


def run_audit(tmp_path: Path, pins: str, allowlist: str = "", advisories: Path = audit.ADVISORIES):
    (tmp_path / "requirements.lock").write_text(pins)
    (tmp_path / "allow.txt").write_text(allowlist)
    return subprocess.run([sys.executable, str(REPO / "scripts" / "audit.py"), str(tmp_path / "requirements.lock"),
                           "--allowlist", str(tmp_path / "allow.txt"), "--advisories", str(advisories)],
                          capture_output=True, text=True)


def test_the_audit_catches_a_vulnerable_pin(tmp_path):
    done = run_audit(tmp_path, "numpy==1.26.4\nonnx==1.17.0\n")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "VULNERABLE  onnx==1.17.0: PYSEC-2026-103" in done.stdout
    assert "7 not allow-listed" in done.stdout
    assert run_audit(tmp_path, "onnx==1.22.0\n").returncode == 0  # the fixed release


def test_an_allow_listed_finding_is_printed_with_its_reason_and_one_without_a_reason_is_refused(tmp_path):
    pins = "Label_Studio.ML==1.0.9\n"  # any spelling of the name (PEP 503)
    allowed = run_audit(tmp_path, pins, "# comment\nCVE-2025-5173   # the file is not in the wheel\n")
    assert allowed.returncode == 0, allowed.stdout
    assert "allowed  label-studio-ml==1.0.9: PYSEC-2026-1505" in allowed.stdout
    assert "reason: the file is not in the wheel" in allowed.stdout
    refused = run_audit(tmp_path, pins, "PYSEC-2026-1505\n")
    assert refused.returncode == 2 and "has no reason" in refused.stderr
    assert run_audit(tmp_path, "onnx>=1.17\n").returncode == 2  # not a pin: cannot be audited


def test_this_repository_passes_its_audit():
    """What CI runs: every finding in requirements.lock and requirements-test.txt is allow-listed."""
    done = subprocess.run([str(REPO / "scripts" / "audit.sh")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 not allow-listed" in done.stdout and "matches no finding" not in done.stdout


def osv(id_: str, package: str, ranges=(), versions=(), **extra) -> dict:
    return {"id": id_, "aliases": [], "summary": id_, **extra,
            "affected": [{"package": {"ecosystem": "PyPI", "name": package},
                          "ranges": [{"type": "ECOSYSTEM", "events": list(r)} for r in ranges],
                          "versions": list(versions)}]}


@pytest.mark.parametrize("version, expected", [
    ("0.9", []), ("1.0", ["A"]), ("1.4", ["A"]), ("1.5", []), ("2.0", ["A"]), ("2.1", ["A"]), ("2.2", []),
    ("3.0", ["B"]), ("3.0.post1", []), ("5.0rc1", ["A"]), ("5.0", [])])
def test_osv_matching(tmp_path, version, expected):
    """Ranges in version order (introduced .. fixed, introduced .. last_affected), listed versions, PEP 503
    names; withdrawn records and other packages never match."""
    records = [osv("A", "pkg", ranges=[[{"introduced": "1.0"}, {"fixed": "1.5"}, {"introduced": "2.0"},
                                        {"last_affected": "2.1"}], [{"introduced": "5.0rc1"}, {"fixed": "5.0"}]]),
               osv("B", "PKG", versions=["3.0"]),
               osv("W", "pkg", ranges=[[{"introduced": "0"}]], withdrawn="2024-01-01T00:00:00Z"),
               osv("X", "other", ranges=[[{"introduced": "0"}]])]
    advisories = tmp_path / "osv.jsonl.gz"
    with gzip.open(advisories, "wt") as out:
        out.writelines(json.dumps(r) + "\n" for r in records)
    assert [f.id for f in audit.findings({"pkg": version}, advisories)] == expected


# --- the allow-list's reasons ---------------------------------------------------------------------------


def tracked_python() -> list[str]:
    """The repository's own Python files (not the venvs beside them)."""
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True)
    return listed.stdout.split()


def test_label_studio_ml_wheel_has_no_examples():
    """PYSEC-2026-1505 is in label_studio_ml/examples/yolo of the repository, not in the installed wheel."""
    assert importlib.util.find_spec("label_studio_ml") is not None
    assert importlib.util.find_spec("label_studio_ml.examples") is None


def test_paddles_wget_download_does_not_exist_and_nothing_here_draws_an_ir_graph():
    """PYSEC-2026-1756 (_wget_download) and PYSEC-2026-1754 (IrGraph.draw)."""
    from uie_backend import paddle_env

    paddle_env.load()
    download = importlib.import_module("paddle.utils.download")
    assert not hasattr(download, "_wget_download") and set(download._download_methods) == {"get"}
    sources = [REPO / name for name in tracked_python() if not name.startswith("tests/")]  # (hypothesis draws)
    assert sources and not [p for p in sources if "IrGraph" in p.read_text() or ".draw(" in p.read_text()]


def test_onnx_is_not_installed_nor_imported_and_pyarrow_reads_nothing(tmp_path):
    """onnx and paddle2onnx are left out of requirements.lock: nothing imports them (paddlenlp's ONNX paths also
    need onnxruntime, absent) while paddle and paddlenlp load, a model predicts and fine-tunes. pyarrow's
    advisory: datasets is imported (by paddlenlp itself) but no dataset is ever loaded, so no Arrow IPC file
    is read."""
    pinned = set(audit.read_pins(REPO / "requirements.lock"))
    assert not pinned & {"onnx", "onnxoptimizer", "paddle2onnx", "polygraphy", "onnxruntime"}
    script = f"""
import sys
from pathlib import Path
from uie_backend import checkpoint, trainer
from uie_backend.config import Settings
from uie_backend.lineages import ModelSource
from uie_backend.predictor import Predictor
model = Path({str(tmp_path)!r}) / "random"
checkpoint.build_random(model, seed=0)
settings = Settings.from_env({{"UIE_DEVICE": "cpu"}})
print(Predictor(ModelSource("v", model), settings).extract(["王五去了深圳。"], ["人名"]))
examples = [{{"content": "王五去了深圳。", "prompt": "人名", "result_list": [{{"text": "王五", "start": 0, "end": 2}}]}}]
config = trainer.TrainConfig(init_from=model, save_dir=Path({str(tmp_path)!r}) / "out", learning_rate=1e-3,
                             batch_size=2, max_seq_len=32, max_steps=2, eval_every=2, device="cpu")
trainer.train(config, examples, examples)
print("MODULES", sorted(m for m in sys.modules if m.split(".")[0] in ("onnx", "paddle2onnx", "onnxruntime")))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MODULES []" in done.stdout, done.stdout[-2000:]
    assert importlib.util.find_spec("onnxruntime") is None
    ours = [REPO / name for name in tracked_python() if not name.startswith("tests/")]
    uses = [p.name for p in ours if "datasets." in p.read_text() or "pyarrow" in p.read_text()
            or "load_dataset" in p.read_text()]
    assert uses == [], uses
