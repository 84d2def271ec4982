"""The recipe of the offline default model: a UIE trained from scratch on public Chinese NER corpora.

No pretrained weights can be downloaded here, so the model starts random (UIE's architecture and real
vocabulary, so it tokenises like uie-base) and learns from the corpora in ``../shared/data/ner`` (passed as
an argument: they are not shipped) and from text it fetches from PyPI, reads from ``recipes/text`` or
generates (:data:`SOURCES`). A config (``recipes/uie-zh-small.json``) names the model size, which file
teaches which labels, how labels map, and the hyper-parameters. Each corpus is only asked about the labels
it annotates: asking CLUENER for 时间, which it never marks, would teach the model that times are not 时间.
Checkpoints (each at its best pointer threshold), and the threshold folded into the best one, are selected
on a small slice held out of the training files; the evaluation sets are never trained on (nor any sentence
sharing text with them) or selected by. The run resumes from its last saved state when restarted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
import re
import shutil
from pathlib import Path

from .. import checkpoint, trainer
from . import common_voice, peoples_daily_1998, shop_titles, social_posts, synthetic
from ..config import REPO_ROOT
from ..data import doccano_to_examples, load_tasks, record_key, split_records, tasks_to_doccano
from ..jsonio import read_json, write_json
from .lac import LAC_LABELS
from ..metrics import SpanReport, score_spans, spans_from_doccano

log = logging.getLogger(__name__)

PART_SEED = 2026
BAR = 0.60  # the project's bar: overall span F1 on People's Daily dev
CONTAMINATION_NGRAM = 12
# candidates for fold_best_threshold, every 0.05: on uie-zh-medium's stage 3 the step of 0.1 chose 0.9 where
# about 0.86 scored better on the selection slice (0.8326 against 0.8312) and on People's Daily dev (0.687
# against 0.676); the extra candidates cost one decoding pass each, not a forward pass
THRESHOLDS = tuple(round(0.3 + 0.05 * i, 2) for i in range(14))  # 0.3 … 0.95
_NOT_CHINESE = re.compile(r"[^\u4e00-\u9fff]")
SOURCES = {"peoples-daily-1998": peoples_daily_1998, "common-voice-zh-cn": common_voice,
           "shop-titles": shop_titles}
WEAK = ("**Status: weak.** Overall span F1 on People's Daily dev is {f1:.3f}; the project's bar is 0.60 and its goal "
        "LAC's ({lac}). It finds the plain cases (common names, places, organisations, products, weather words) and "
        "misses or cuts others: serve it to get the loop going offline, and press Start Training early; it improves "
        "with each run (it is the starting point fine-tuning continues from).")
GOOD = ("**Status:** overall span F1 on People's Daily dev is {f1:.3f}, over the project's bar of 0.60; LAC, the goal, "
        "scores {lac} on the same sentences. Serve it to get the loop going offline and press Start Training early: "
        "it is the starting point fine-tuning continues from.")


def corpus_records(corpora: Path, spec: dict, label_map: dict[str, str]) -> list[dict]:
    """A corpus as doccano records, labels mapped and kept to the ones the spec teaches or tests.

    ``"file"`` names a Label Studio export under ``corpora``; ``"source"`` a corpus the recipe fetches itself
    (:data:`SOURCES`). With ``"teacher": "lac"`` LAC's annotations replace the corpus's own (silver data: its
    texts labelled in People's Daily's conventions); ``"teacher_labels"`` limits that to some labels, and a
    span of the corpus's own that overlaps one of LAC's is dropped (a place inside an organisation LAC found
    is part of that organisation), except in "X政府", which People's Daily's conventions do not call an
    organisation (:func:`_government`). Evaluation specs never have a teacher. ``"sentences": n`` keeps a
    seeded sample of n sentences (a large text source mixed in beside smaller corpora without outweighing them).
    """
    if "source" in spec:
        source = SOURCES[spec["source"]]
        if source.UNLABELLED and (spec.get("teacher") is None or "teacher_labels" in spec):
            raise ValueError(f"{spec['source']} is plain text: its spec needs a teacher for all its labels "
                             "(\"teacher\": \"lac\", no \"teacher_labels\"), or every sentence teaches 'nothing here'")
        records = source.records(source.fetch(REPO_ROOT / ".cache" / spec["source"]))
    else:
        records = tasks_to_doccano(load_tasks(corpora / spec["file"]))
    keep = set(spec["labels"])
    if spec.get("teacher") == "lac":
        taught = set(spec.get("teacher_labels", LAC_LABELS.values()))
        found = lac_spans([record["text"] for record in records])
        for record, spans in zip(records, found):
            spans = sorted((s for s in spans if s[0] in taught and not _government(record["text"], s)),
                           key=lambda s: s[1])
            own = [e for e in record["entities"] if label_map.get(e["label"], e["label"]) not in taught
                   and not any(start < e["end_offset"] and e["start_offset"] < end for _, start, end in spans)]
            record["entities"] = own + [{"label": label, "start_offset": start, "end_offset": end}
                                        for label, start, end in spans]
    elif spec.get("teacher"):
        raise ValueError(f"unknown teacher {spec['teacher']!r} (known: lac)")
    for record in records:
        mapped = [{**e, "label": label_map.get(e["label"], e["label"])} for e in record["entities"]]
        record["entities"] = [e for e in mapped if e["label"] in keep]
    if "part" in spec:
        first, second = split_records(records, (0.5, 0.5), seed=PART_SEED)
        records = first if spec["part"] == "train" else second
    if "sentences" in spec:
        # a seeded sample, drawn after the teacher so that LAC's cached labels of the whole corpus are reused
        chosen = sorted(random.Random(PART_SEED).sample(range(len(records)), min(spec["sentences"], len(records))))
        records = [records[i] for i in chosen]
    return records


def _government(text: str, span: tuple[str, int, int]) -> bool:
    """Whether LAC calls "X政府" an organisation. MSRA, which the recipe trains on, tags the place X and
    leaves 政府 out (57 times of 57), as People's Daily's NER sets do, so such a span is not taught: the
    corpus's own place tag, or nothing, stands."""
    label, start, end = span
    return label == "组织" and text[start:end].endswith("政府")


def corpus_name(spec: dict) -> str:
    """How the model card's table names a training corpus."""
    name = spec.get("file") or spec["source"]
    if "part" in spec:
        name += f" ({spec['part']} half)"
    if "sentences" in spec:
        name += f" (sample of {spec['sentences']})"
    if spec.get("repeat", 1) != 1:
        name += f" (×{spec['repeat']} an epoch)"
    if "teacher" in spec:
        taught = "/".join(spec.get("teacher_labels", [])) or "all labels"
        name += f" (silver: {taught} labelled by {spec['teacher'].upper()})"
    return name


def decontaminate(records: list[dict], evaluation_texts: set[str], length: int = CONTAMINATION_NGRAM) -> list[dict]:
    """``records`` without any that shares ``length`` consecutive Chinese characters with an evaluation text.

    Corpora from the same newspaper or site may hold a sentence an evaluation set holds too; training on it
    would flatter the scores. A shared run of 12 Chinese characters is rare between different sentences;
    other characters are left out of the comparison, or boilerplate such as Weibo's ``http://t.cn/`` links
    would match sentences that share nothing else.
    """
    def runs(text: str) -> set[str]:
        chinese = _NOT_CHINESE.sub("", text)
        return {chinese[i:i + length] for i in range(len(chinese) - length + 1)}

    seen = set().union(*map(runs, evaluation_texts))
    return [record for record in records if seen.isdisjoint(runs(record["text"]))]


def absent_label_examples(records: list[dict], labels: list[str], fraction: float, seed: int = PART_SEED) -> list[dict]:
    """Negative examples asking a real corpus for labels only the synthetic sentences teach.

    价格 and 天气 are otherwise asked only of generated sentences, where the answer is always there, so the
    model learns to answer them on any text (天气 on "国务院"). About ``fraction`` of the records, those
    with no sign of such a span (:func:`synthetic.may_mention`), ask one of ``labels`` and expect nothing.
    """
    examples = []
    for record in records:
        rng = random.Random(f"{seed}:{record_key(record)}")
        if rng.random() >= fraction:
            continue
        label = rng.choice(labels)
        if not synthetic.may_mention(label, record["text"]):
            examples.append({"content": record["text"], "result_list": [], "prompt": label})
    return examples


@functools.cache
def _lac():
    from . import lac

    return lac.Lac(lac.fetch(REPO_ROOT / ".cache" / "lac"))


def lac_spans(texts: list[str]) -> list[set[tuple[str, int, int]]]:
    """LAC's spans of ``texts``, kept in ``.cache/lac-spans`` under a hash of the texts and of LAC's sdist:
    every stage of a chain, and every resumed run, would label the same 45,000 sentences of 1998 again (1.5
    min here)."""
    from . import lac

    key = hashlib.sha256("\n".join([lac.SDIST_SHA256, *texts]).encode()).hexdigest()[:24]
    path = REPO_ROOT / ".cache" / "lac-spans" / f"{key}.json"
    kept = read_json(path)
    if isinstance(kept, list) and len(kept) == len(texts):
        return [{tuple(span) for span in spans} for spans in kept]
    found = _lac().spans(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, [sorted(spans) for spans in found])
    return found


def starting_point(config: dict, config_path: Path, corpora: Path, workdir: Path) -> Path:
    """Where training starts: a random model of ``config["model"]``'s shape, or, with ``"start_from"``, the
    best model of another recipe in the same folder, which is trained first (resumably) when it is not there.
    One command so reproduces a model trained in stages."""
    if "start_from" in config:
        earlier = Path(config_path).parent / f"{config['start_from']}.json"
        earlier_workdir = workdir.parent / config["start_from"]
        if not finished(earlier_workdir / "model_best"):
            log.info("recipe %s starts from recipe %s, which is trained first", config["name"], config["start_from"])
            run(earlier, corpora, None, earlier_workdir)
        return earlier_workdir / "model_best"
    base = workdir / "init"
    if not checkpoint.is_complete(base):
        checkpoint.build_random(base, **{k: v for k, v in config["model"].items()})
    return base


def finished(model: Path) -> bool:
    """Whether ``model`` is a recipe's finished model, scored and with its card (written last by ``run``).
    A stopped run leaves a best checkpoint too, which no later stage should start from."""
    return checkpoint.is_complete(model) and all((model / name).exists() for name in ("evaluation.json", "README.md"))


def fold_best_threshold(model_dir: Path, select_examples: list[dict], max_seq_len: int) -> dict:
    """Fold the pointer threshold that scores best on the selection slice into the model, once.

    Positive weighting (``positive_weight``) makes a model trained from scratch over-predict at 0.5; the
    best threshold is chosen on the selection slice (never on an evaluation set) and folded into the
    pointer heads, so that serving, the evaluation below and later fine-tunes all keep using 0.5.
    """
    meta = checkpoint.read_meta(model_dir)
    if "folded_threshold" in meta:  # a resumed run whose best checkpoint is already folded
        return meta["folded_threshold"]
    model, tokenizer = checkpoint.load(model_dir)
    items = [trainer.encode(e, tokenizer, max_seq_len) for e in trainer.split_long_examples(select_examples, max_seq_len)]
    reports = trainer.evaluate_at(model, items, THRESHOLDS)
    best = trainer.best_threshold(reports)
    trainer.fold_threshold(model, best)
    folded = {"threshold": best, "selection_f1": {str(t): round(r.overall.f1, 4) for t, r in reports.items()}}
    kept = {k: v for k, v in meta.items() if k not in ("version", "created_at")}
    checkpoint.save(model, tokenizer, model_dir, {**kept, "folded_threshold": folded})
    log.info("threshold %.2f folded into the pointer heads (selection F1 %s)", best, folded["selection_f1"])
    return folded


def _stages(meta: dict) -> list[str]:
    """The recipes a checkpoint went through (older checkpoints name only their own)."""
    return meta.get("stages") or ([meta["recipe"]] if "recipe" in meta else [])


def training_examples(config: dict, corpora: Path,
                      evaluation_texts: set[str]) -> tuple[list[dict], list[dict], dict[str, int]]:
    """What a recipe trains on; the selection slice held out of the same files (checkpoints and the folded
    threshold are chosen on it, never on an evaluation set); and how many sentences each corpus gave."""
    hp, label_map = config["training"], config.get("label_map", {})
    train_examples, select_examples, sizes = [], [], {}
    for spec in config["train"]:
        records = corpus_records(corpora, spec, label_map)
        clean = decontaminate(records, evaluation_texts)
        if len(clean) < len(records):
            log.info("%s: %d sentences dropped, they share text with an evaluation set",
                     corpus_name(spec), len(records) - len(clean))
        keep, held = split_records(clean, (1 - config["selection_fraction"], config["selection_fraction"]))
        # "repeat": a small corpus of another genre (Weibo posts) seen that many times an epoch, so that
        # 45k sentences of 1998 news do not teach its conventions away
        # "as_posts": that share of the training sentences dressed as social-media posts (social_posts.py);
        # the selection slice stays as the corpus wrote it
        taught = social_posts.dress_some(keep, spec["as_posts"], PART_SEED) if "as_posts" in spec else keep
        train_examples += doccano_to_examples(taught * spec.get("repeat", 1), spec["labels"],
                                              negative_ratio=hp["negative_ratio"])
        select_examples += doccano_to_examples(held, spec["labels"], negative_ratio=len(spec["labels"]))
        if "absent_labels" in spec:
            absent = spec["absent_labels"]
            train_examples += absent_label_examples(keep, absent["labels"], absent["fraction"])
            select_examples += absent_label_examples(held, absent["labels"], absent["fraction"])
        sizes[corpus_name(spec)] = len(keep)
    syn = config.get("synthetic")
    if syn:
        made = synthetic.sentences(syn["train_sentences"], syn["seed"])
        train_examples += doccano_to_examples(made, syn["labels"], negative_ratio=hp["negative_ratio"])
        sizes["synthetic 价格/天气"] = len(made)
    return train_examples, select_examples, sizes


def evaluation_scores(config: dict, evaluation: dict[str, list[dict]],
                      model: Path) -> tuple[dict[str, SpanReport], dict[str, SpanReport]]:
    """``model``'s scores on the recipe's evaluation sets (``evaluation``: their records by name) and the
    generated 价格/天气 sentences; and LAC's on the same sentences, where it knows every label a set is
    scored on. Apart from :func:`run` so that a checkpoint of an unfinished run can be scored the same way."""
    max_seq_len, scores, baselines = config["training"]["max_seq_len"], {}, {}
    for spec in config["evaluate"]:
        records = evaluation[spec["name"]]
        examples = doccano_to_examples(records, spec["labels"], negative_ratio=len(spec["labels"]))
        scores[spec["name"]] = trainer.evaluate_checkpoint(model, examples, max_seq_len, device="auto")
        if config.get("baseline") == "lac" and set(spec["labels"]) <= set(LAC_LABELS.values()):
            found = lac_spans([record["text"] for record in records])
            baselines[spec["name"]] = score_spans([spans_from_doccano(r) for r in records],
                                                  [{s for s in f if s[0] in spec["labels"]} for f in found])
    syn = config.get("synthetic")
    if syn:
        made = synthetic.sentences(syn["eval_sentences"], syn["seed"] + 1)
        scores["synthetic 价格/天气 (generated, not real text)"] = trainer.evaluate_checkpoint(
            model, doccano_to_examples(made, syn["labels"], negative_ratio=2), max_seq_len, device="auto")
    return scores, baselines


def run(config_path: Path, corpora: Path, out_dir: Path | None, workdir: Path) -> dict:
    """Train (or resume) the model of ``config_path``, evaluate it, and write it with its model card to
    ``out_dir`` (None: leave it in ``workdir/model_best``, e.g. as the start of a later stage)."""
    config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    hp, label_map = config["training"], config.get("label_map", {})
    workdir.mkdir(parents=True, exist_ok=True)
    base = starting_point(config, config_path, corpora, workdir)

    evaluation = {spec["name"]: corpus_records(corpora, spec, label_map) for spec in config["evaluate"]}
    evaluation_texts = {record["text"] for records in evaluation.values() for record in records}
    train_examples, select_examples, sizes = training_examples(config, corpora, evaluation_texts)
    log.info("recipe %s: %d training examples from %s", config["name"], len(train_examples), sizes)

    train_config = trainer.TrainConfig(
        init_from=base, save_dir=workdir, learning_rate=hp["learning_rate"], batch_size=hp["batch_size"],
        max_seq_len=hp["max_seq_len"], num_epochs=hp["num_epochs"], eval_every=hp["eval_every"],
        warmup_proportion=hp["warmup_proportion"], seed=hp["seed"], positive_weight=hp["positive_weight"],
        state_every_s=hp["state_every_s"], resume=True, device="auto", select_thresholds=THRESHOLDS)
    result = trainer.train(train_config, train_examples, select_examples,
                           meta={"recipe": config["name"], "source": "trained from scratch", "corpora": sizes,
                                 "stages": [*_stages(checkpoint.read_meta(base)), config["name"]],
                                 "fine_tune_learning_rate": hp["fine_tune_learning_rate"]})
    seconds = result.seconds  # training time across resumptions, not just this invocation

    model = workdir / "model_best"
    folded = fold_best_threshold(model, select_examples, hp["max_seq_len"])
    scores, baselines = evaluation_scores(config, evaluation, model)

    summary = {"recipe": config["name"], "steps": result.steps, "train_seconds": round(seconds),
               "folded_threshold": folded,
               "steps_per_s": round(result.steps / max(seconds, 1e-9), 2),
               "examples_per_s": round(result.steps * hp["batch_size"] / max(seconds, 1e-9), 1),
               "training_examples": len(train_examples), "corpora": sizes,
               "scores": {name: report.to_dict() for name, report in scores.items()},
               "lac_scores": {name: report.to_dict() for name, report in baselines.items()}}
    # every stage's scores and card stay beside its model: an earlier stage, run only as the start of a later
    # one, is a model that may be shipped on its own
    write_json(model / "evaluation.json", summary)
    write_card(config, model)
    if out_dir is not None:
        ship(model, out_dir)
    return summary


def ship(model: Path, out_dir: Path) -> None:
    """Copy a recipe's model with its scores and card to ``out_dir`` (``models/<name>``: what the repo ships)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in checkpoint.REQUIRED_FILES + (checkpoint.META_FILE, "evaluation.json", "README.md"):
        shutil.copy2(model / name, out_dir / name)


def write_card(config: dict, model: Path) -> None:
    """Write ``model``'s card from its ``evaluation.json`` and the recipe, so that a card can be rewritten
    (history, serving cost) without evaluating the model again."""
    summary = read_json(model / "evaluation.json")
    scores = {name: SpanReport.from_dict(report) for name, report in summary["scores"].items()}
    baselines = {name: SpanReport.from_dict(report) for name, report in summary["lac_scores"].items()}
    size_mb = (model / checkpoint.WEIGHTS_FILE).stat().st_size / 2**20
    (model / "README.md").write_text(model_card(config, summary, scores, baselines, size_mb), encoding="utf-8")


def model_card(config: dict, summary: dict, scores: dict[str, SpanReport], baselines: dict[str, SpanReport],
               size_mb: float) -> str:
    headline = scores.get("People's Daily dev")
    lac = baselines.get("People's Daily dev")
    status = (GOOD if headline.overall.f1 >= BAR else WEAK).format(
        f1=headline.overall.f1, lac=f"{lac.overall.f1:.3f}" if lac else "~0.76") if headline else ""
    lines = [f"# {config['name']}: the offline default model", "",
             "A UIE (ERNIE encoder, "
             f"{config['model']['num_layers']} layers × {config['model']['hidden_size']} hidden, UIE's 40k vocabulary) "
             "trained **from scratch** on public Chinese NER corpora, so that the backend gives real "
             "pre-annotations on a machine without internet. It is an offline fallback, not a replacement for "
             "pretrained UIE: with internet, `UIE_MODEL=uie-base` starts from a far stronger model.", "",
             status,
             "",
             "**Ask it its own label names.** It knows 人名, 地名, 组织 (and the other labels below), not `PER`, "
             "`LOC`, `ORG`: on People's Daily dev through `/predict` (`bench/label_prompts.py`, one run with "
             "uie-zh-small) span F1 was 0.610 with labels 人名/地名/组织, 0.610 with `PER/LOC/ORG` given "
             "`predicted_values=\"人名\"` etc., and 0.115 with bare `PER/LOC/ORG`. A team with other label names "
             "maps them in the config or with `UIE_LABEL_PROMPTS` (README, \"Label names and the prompts UIE is "
             "asked\").", "",
             f"Reproduce: `python finetune.py --from_scratch --config recipes/{config['name']}.json "
             f"--corpora ../shared/data/ner --save_dir models/{config['name']}` (resumes when restarted).", "",
             "## Training data (not shipped; each names its source)", "",
             "| file | sentences used |", "|---|---:|"]
    lines += [f"| `{name}` | {count} |" for name, count in summary["corpora"].items()]
    lines += ["", "Sources: see `../shared/data/ner/README.md` (CLUENER2020; MSRA (SIGHAN 2006); Weibo NER "
              "(Peng & Dredze 2015, He & Sun 2016); People's Daily with TIME (shibing624/nerpy); E-commerce NER "
              "(Jie et al. 2019)). 价格 and 天气 come from the seeded generator `uie_backend/offline_model/synthetic.py`.",
              *[f"`{spec['source']}`: {SOURCES[spec['source']].SOURCE}." for spec in config["train"] if "source" in spec],
              "", f"**Licences.** {config.get('licence', 'not stated by the recipe.')}", "",
              f"Training (this stage): {summary['steps']} steps in {summary['train_seconds']} s "
              f"({summary['steps_per_s']} steps/s, {summary['examples_per_s']} examples/s) on "
              "the CPU of a 2-core machine; hyper-parameters in the recipe file. The pointer threshold that "
              f"scored best on the selection slice, {summary['folded_threshold']['threshold']}, is folded into the "
              "pointer heads (`recipe.fold_best_threshold`), so the model is served at the usual 0.5.", "",
              *[f"- {note}" for note in config.get("history", [])], "",
              "What Start Training buys on a domain it never saw: [learning_curve.md](learning_curve.md) "
              "(`bench/learning_curve.py`).", "",
              "## Serving cost", "",
              f"{size_mb:.0f} MB of weights. " + config.get(
                  "serving", "Not measured for this shape: `bench/serving.py --size ...` measures it against "
                             "the others, side by side (`bench/RESULTS.md`)."), "",
              "## Quality (span-level exact match; evaluation sets never trained on)", ""]
    for name, report in scores.items():
        lines += [f"### {name}", "", report.to_markdown(), ""]
        if name in baselines:
            lines += ["LAC (Baidu's lexical analysis, `uie_backend/offline_model/lac.py`) on the same sentences:", "",
                      baselines[name].to_markdown(), ""]
    return "\n".join(lines)
