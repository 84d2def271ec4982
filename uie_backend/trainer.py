"""Fine-tuning UIE on prompt examples: the training loop, and the dev-set evaluation it keeps the best by.

Read it top to bottom: examples are encoded once (:func:`encode`), batches hold examples of similar
lengths and are padded only to their own longest (short annotation texts make this several times faster
than Taskflow's fixed 512), the loss is UIE's own (binary cross-entropy on the start and end pointers), and the best checkpoint by dev span
F1 is written atomically to ``<save_dir>/model_best``. Nothing here knows about Label Studio or HTTP.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import checkpoint, paddle_env
from .metrics import SpanReport, f1_standard_error, score_spans
from .jsonio import read_json, write_json
from .offsets import fix_unknown

log = logging.getLogger(__name__)

MAX_EVALUATIONS = 20  # dev evaluations per run when none is configured (TrainConfig.eval_every)


@dataclass
class TrainConfig:
    init_from: Path                     # checkpoint directory to start from
    save_dir: Path                      # model_best is written here
    learning_rate: float = 1e-5         # PaddleNLP's recipe for uie-base; 1e-6 (the tutorial's) hardly moves it
    batch_size: int = 16
    max_seq_len: int = 256
    num_epochs: float = 20              # a fraction is allowed: a refit repeats what selection chose
    max_steps: int = 0                  # 0: num_epochs decides
    min_steps: int = 0                  # at least this many steps, however few the examples (a handful of tasks)
    warmup_proportion: float = 0.1
    weight_decay: float = 0.01
    eval_every: int = 0                 # steps between dev evaluations; 0: once per epoch
    early_stopping_patience: int = 0    # evaluations without improvement before stopping; 0: never stop early
    seed: int = 1000
    device: str = "auto"
    threshold: float = 0.5
    # more pointer thresholds to score each dev evaluation at, the checkpoint kept by its best: a recipe folds
    # the threshold that scores best into the weights it ships, so a checkpoint is worth its score there, not
    # at 0.5 (where one trained with positive_weight over-predicts by a varying amount); () for Start Training
    select_thresholds: tuple[float, ...] = ()
    positive_weight: float = 1.0        # >1 weighs the rare pointer positions up (training from scratch)
    state_every_s: float = 0            # save a resumable state to save_dir/last this often (0: never)
    resume: bool = False                # continue from save_dir/last when it exists
    length_pool: int = 50               # batches' worth of examples sorted by length together (1: plain shuffle)
    # keep the latest checkpoint whose dev F1 is within this many standard errors of the best
    # (metrics.f1_standard_error), not the best itself; 0: the best, a tie going to the later. Start Training sets
    # it: on a dev split of a few tasks one span more is noise, and an early lucky evaluation chose too few
    # epochs for the refit to learn the annotated tasks (docs/decisions.md, "Epochs from a dev split of a few tasks")
    selection_slack_se: float = 0.0


@dataclass
class Progress:
    """What a status page or log line needs about a running fine-tune."""
    phase: str = ""                     # set by the caller when a run trains more than once (training.py)
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    loss: float = float("nan")
    best_f1: float = -1.0
    last_f1: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None


@dataclass
class TrainResult:
    version: str | None                 # of the best checkpoint saved; None if nothing was saved
    best_report: SpanReport | None
    initial_report: SpanReport | None
    steps: int
    seconds: float
    config: dict = field(default_factory=dict)
    best_epochs: float = 0.0            # passes over the training examples when the best checkpoint was saved
    # one point per evaluation (about one per epoch): step, epoch, mean training loss since the last point, dev F1
    # (None without dev examples); the status page draws the learning curve from it (report.json "history")
    history: list[dict] = field(default_factory=list)


@dataclass
class _RunRecord:
    """What a run knows beyond its weights and optimizer, saved with them so that a resumed run goes on, and
    reports the whole run, as an unbroken one would: its starting model, its learning curve, its best checkpoint
    and how long ago that was (early stopping)."""
    progress: Progress
    initial: SpanReport | None
    best: SpanReport | None = None
    best_step: int = 0
    stale_evals: int = 0                # evaluations since the best, for early stopping
    good_enough: float = -1.0           # the lowest dev F1 counted as the best's equal (selection_slack_se)
    version: str | None = None           # of the best checkpoint saved
    history: list[dict] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # since the last evaluation: one step's is too noisy to plot


_SAVED_AS_IS = ("best_step", "stale_evals", "good_enough", "version", "history", "losses")  # JSON as they are


# --- encoding -------------------------------------------------------------------------------------------

@dataclass
class Encoded:
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int]]      # char offsets into the content; (0, 0) for prompt and special tokens
    start_labels: list[float]
    end_labels: list[float]
    content: str
    prompt: str
    gold: set[tuple[str, int, int]]     # (prompt, start, end) char spans, for evaluation


def tokenize(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of ``text`` and each token's character offsets (``[UNK]`` ones corrected, offsets.py)."""
    enc = tokenizer(text=text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    return ids, fix_unknown(tokenizer.convert_ids_to_tokens(ids), enc["offset_mapping"], text)


def is_choice_prompt(prompt: str) -> bool:
    """``情感倾向[正向,负向]``: a classification prompt, answered by a span of the prompt itself."""
    return prompt.endswith("]") and "[" in prompt[:-1]


def encode(example: dict, tokenizer, max_seq_len: int,
           content_tokens: tuple[list[int], list[tuple[int, int]]] | None = None,
           prompt_tokens: tuple[list[int], list[tuple[int, int]]] | None = None) -> Encoded:
    """``[CLS] prompt [SEP] content [SEP]``, with the answer spans put on the start/end pointers.

    Content tokens get offsets into the content; a span whose characters were truncated away or that
    covers no token (whitespace only) has no pointer, but stays in ``gold`` so evaluation still counts it.
    The tokens of a classification prompt get PaddleNLP's negative offsets (character ``i`` of the prompt is
    ``i - len(prompt) - 1``), so that its answers, the options, are spans like any other; other prompts'
    tokens get (0, 0) and can never be an answer.
    ``content_tokens`` and ``prompt_tokens`` (from :func:`tokenize`) save tokenising a text again for each of
    its prompts, and a prompt again for each text (a third of serving time on DuEE's 65 prompts, bench/schema.py).
    """
    prompt = example["prompt"]
    prompt_ids, prompt_offsets = prompt_tokens or tokenize(tokenizer, prompt)
    if is_choice_prompt(prompt):
        shift = len(prompt) + 1
        prompt_offsets = [(start - shift, end - shift) for start, end in prompt_offsets]
    else:
        prompt_offsets = [(0, 0)] * len(prompt_ids)
    content_ids, content_offsets = content_tokens or tokenize(tokenizer, example["content"])
    room = max(0, max_seq_len - len(prompt_ids) - 3)
    content_ids, content_offsets = content_ids[:room], content_offsets[:room]
    ids = [tokenizer.cls_token_id, *prompt_ids, tokenizer.sep_token_id, *content_ids, tokenizer.sep_token_id]
    types = [0] * (len(prompt_ids) + 2) + [1] * (len(content_ids) + 1)
    offsets = [(0, 0), *prompt_offsets, (0, 0)] + [tuple(o) for o in content_offsets] + [(0, 0)]
    starts, ends = [0.0] * len(ids), [0.0] * len(ids)
    gold = set()
    for span in example["result_list"]:
        gold.add((prompt, span["start"], span["end"]))
        first = _token_at(offsets, span["start"])
        last = _token_at(offsets, span["end"] - 1)
        if first is not None and last is not None:
            starts[first], ends[last] = 1.0, 1.0
    return Encoded(ids, types, offsets, starts, ends, example["content"], prompt, gold)


def _token_at(offsets: Sequence[tuple[int, int]], char: int) -> int | None:
    for index, (start, end) in enumerate(offsets):
        if start <= char < end:
            return index
    return None


def split_long_examples(examples: Sequence[dict], max_seq_len: int) -> list[dict]:
    """Cut contents that cannot fit beside their prompt into consecutive windows.

    A window of ``max_seq_len - len(prompt) - 3`` characters always fits: every token covers at least one
    character. Spans that cross a window edge are dropped from both windows (they would teach the model a
    wrong boundary); the answers of a classification prompt lie in the prompt and go with every window.
    """
    out = []
    for ex in examples:
        width = max_seq_len - len(ex["prompt"]) - 3
        if width <= 0:
            raise ValueError(f"prompt {ex['prompt']!r} does not fit in max_seq_len={max_seq_len}")
        if len(ex["content"]) <= width:
            out.append(ex)
            continue
        for begin in range(0, len(ex["content"]), width):
            end = begin + width
            spans = [{"text": s["text"], "start": s["start"] - begin, "end": s["end"] - begin}
                     for s in ex["result_list"] if begin <= s["start"] and s["end"] <= end]
            spans += [s for s in ex["result_list"] if s["start"] < 0]
            out.append({"content": ex["content"][begin:end], "prompt": ex["prompt"], "result_list": spans})
    return out


def _batches(items: Sequence[Encoded], batch_size: int, rng: random.Random, pool: int) -> list[list[Encoded]]:
    """Shuffled batches; with ``pool`` > 1, of similar lengths.

    A batch is padded to its longest example, so a random batch of news sentences is less than half real
    tokens. Sorting each run of ``pool`` batches' worth of shuffled examples by length, then shuffling the
    batches, keeps the padding small while every batch still draws from across the data.
    """
    order = list(range(len(items)))
    rng.shuffle(order)
    runs = [order[begin:begin + batch_size * pool] for begin in range(0, len(order), batch_size * pool)]
    if pool > 1:
        runs = [sorted(run, key=lambda i: len(items[i].input_ids)) for run in runs]
    batches = [[items[i] for i in run[begin:begin + batch_size]] for run in runs for begin in range(0, len(run), batch_size)]
    if pool > 1:
        rng.shuffle(batches)
    return batches


def pad_batch(rows: Sequence[Sequence], width: int, value=0) -> np.ndarray:
    return np.array([list(row) + [value] * (width - len(row)) for row in rows])


def _to_tensors(batch: Sequence[Encoded], with_labels: bool):
    paddle = paddle_env.load().paddle
    width = max(len(e.input_ids) for e in batch)
    inputs = {
        "input_ids": paddle.to_tensor(pad_batch([e.input_ids for e in batch], width), dtype="int64"),
        "token_type_ids": paddle.to_tensor(pad_batch([e.token_type_ids for e in batch], width), dtype="int64"),
    }
    if not with_labels:
        return inputs
    labels = (paddle.to_tensor(pad_batch([e.start_labels for e in batch], width, 0.0), dtype="float32"),
              paddle.to_tensor(pad_batch([e.end_labels for e in batch], width, 0.0), dtype="float32"))
    return inputs, labels


# --- decoding and evaluation ----------------------------------------------------------------------------

def decode_spans(start_prob: Sequence[float], end_prob: Sequence[float], offsets: Sequence[tuple[int, int]],
                 content: str, threshold: float) -> list[tuple[int, int, float]]:
    """Pointer probabilities -> character spans ``(start, end, probability)``.

    Each start pointer takes the most probable end pointer between it and the next start pointer; the
    probability is start × end (Taskflow's definition). Taskflow instead gives each end the nearest free
    start, so when a model is unsure whether "周恩来" ends at 恩 or at 来 it answers "周恩" and drops 来: the
    rule here chose better on every evaluation set of the embedded model (People's Daily +0.006 F1, its
    TIME set +0.022, e-commerce +0.053; 人名 0.34 -> 0.45 on the TIME set). Edges are trimmed of whitespace
    because the tokenizer folds whitespace into the offsets of the following [UNK] token. Spans in a
    classification prompt have negative offsets (see :func:`encode`) and end in the prompt too.
    """
    starts = [i for i, (p, o) in enumerate(zip(start_prob, offsets)) if p > threshold and o != (0, 0)]
    ends = [i for i, (p, o) in enumerate(zip(end_prob, offsets)) if p > threshold and o != (0, 0)]
    spans = []
    for rank, start in enumerate(starts):
        before = starts[rank + 1] if rank + 1 < len(starts) else len(offsets)
        in_prompt = offsets[start][0] < 0
        candidates = [e for e in ends if start <= e < before and (offsets[e][0] < 0) == in_prompt]
        if not candidates:
            continue
        end = max(candidates, key=lambda e: end_prob[e])
        char_start, char_end = offsets[start][0], offsets[end][1]
        if in_prompt:  # an option of a classification prompt
            spans.append((char_start, char_end, float(start_prob[start] * end_prob[end])))
            continue
        while char_start < char_end and content[char_start].isspace():
            char_start += 1
        while char_end > char_start and content[char_end - 1].isspace():
            char_end -= 1
        if char_start < char_end:
            spans.append((char_start, char_end, float(start_prob[start] * end_prob[end])))
    return spans


Forward = Callable[[Sequence[Encoded]], tuple[np.ndarray, np.ndarray]]


def dygraph_forward(model) -> Forward:
    """Start/end pointer probabilities of a batch from the dygraph model (training, evaluation)."""
    paddle = paddle_env.load().paddle

    def forward(batch: Sequence[Encoded]):
        with paddle.no_grad():
            start_prob, end_prob = model(**_to_tensors(batch, with_labels=False))
        return start_prob.numpy(), end_prob.numpy()

    return forward


def predict_encoded(forward: Forward, items: Sequence[Encoded], batch_size: int,
                    threshold: float | Callable[[Encoded], float]):
    """Spans ``(start, end, probability)`` per encoded example, in input order.

    Examples are batched by length, so padding stays short. ``forward`` is the dygraph model
    (:func:`dygraph_forward`) or the static-graph one serving uses (``inference.StaticForward``);
    ``threshold`` may depend on the example (per-label thresholds at serving time).
    """
    threshold_of = threshold if callable(threshold) else (lambda _: threshold)
    order = sorted(range(len(items)), key=lambda i: len(items[i].input_ids))
    results: list = [None] * len(items)
    last_log = time.monotonic()
    for begin in range(0, len(order), batch_size):
        if time.monotonic() - last_log > 5:  # a big dev set on a big model: show it is moving
            last_log = time.monotonic()
            log.info("predicting: %d/%d examples", begin, len(order))
        indices = order[begin:begin + batch_size]
        batch = [items[i] for i in indices]
        start_prob, end_prob = forward(batch)
        for i, e, sp, ep in zip(indices, batch, start_prob, end_prob):
            results[i] = decode_spans(sp, ep, e.offsets, e.content, threshold_of(e))
    return results


def metric_span(prompt: str, start: int, end: int) -> tuple[str, int, int]:
    """A span as scored, labelled by its prompt; an option of a classification prompt also by the option
    (``情感倾向[正向,负向]:正向``), so that the scores per option (per class) can be read off the report."""
    if start >= 0:
        return prompt, start, end
    shift = len(prompt) + 1
    return f"{prompt}:{prompt[start + shift:end + shift]}", start, end


def evaluate(model, items: Sequence[Encoded], batch_size: int = 32, threshold: float = 0.5) -> SpanReport:
    """Span-level exact-match P/R/F1 per prompt label on encoded examples (the one metric, see metrics.py)."""
    return evaluate_at(model, items, [threshold], batch_size)[threshold]


def evaluate_at(model, items: Sequence[Encoded], thresholds: Sequence[float],
                batch_size: int = 32) -> dict[float, SpanReport]:
    """:func:`evaluate` at each of several pointer thresholds, from one forward pass over ``items``."""
    was_training = model.training
    model.eval()
    forward, outputs = dygraph_forward(model), {}

    def remembered(batch):  # predict_encoded batches the same way at every threshold
        key = tuple(id(e) for e in batch)
        if key not in outputs:
            outputs[key] = forward(batch)
        return outputs[key]

    gold = [{metric_span(*span) for span in e.gold} for e in items]
    reports = {}
    for threshold in thresholds:
        predicted = [_best_option(spans) if is_choice_prompt(e.prompt) else spans
                     for e, spans in zip(items, predict_encoded(remembered, items, batch_size, threshold))]
        reports[threshold] = score_spans(gold, [{metric_span(e.prompt, s, t) for s, t, _ in spans}
                                                for e, spans in zip(items, predicted)])
    if was_training:
        model.train()
    return reports


def _best_option(spans: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """A classification prompt scored as a single choice, the way serving answers one (regions._chosen): only
    its most probable option counts. Scoring every option above the threshold let a model that answered both
    正向 and 负向 to every review score "accuracy" 1.0 (its recall) on ChnSentiCorp while serving 负向 to all."""
    return [max(spans, key=lambda span: span[2])] if spans else []


def fold_threshold(model, threshold: float) -> None:
    """Shift both pointer heads so that probability > 0.5 now means what probability > ``threshold`` meant.

    A model trained with positive weighting over-predicts at 0.5; folding its best threshold into the
    weights keeps one threshold (0.5) for serving, evaluation and every later fine-tune.
    """
    shift = np.float32(np.log(threshold / (1 - threshold)))
    for head in (model.linear_start, model.linear_end):
        head.bias.set_value(head.bias.numpy() - shift)


# --- training -------------------------------------------------------------------------------------------

def train(config: TrainConfig, train_examples: Sequence[dict], dev_examples: Sequence[dict],
          on_progress: Callable[[Progress], None] | None = None, meta: dict | None = None) -> TrainResult:
    """Fine-tune ``config.init_from`` on UIE prompt examples; save the best by dev F1 to ``save_dir/model_best``.

    The starting model is evaluated on the dev examples too (``initial_report``), so the caller can decide
    whether the new model is worth serving.

    Started by ``paddle.distributed.launch`` (several GPUs, or CPU processes), every process trains on its
    share of each step's batches (the effective batch is ``batch_size`` × processes) with gradients averaged
    across them; only the first process evaluates, saves and reports, and the others follow its decisions.
    """
    env = paddle_env.load()
    paddle = env.paddle
    from paddlenlp.transformers import LinearDecayWithWarmup

    device = paddle_env.set_device(config.device)
    world, rank = paddle.distributed.get_world_size(), paddle.distributed.get_rank()
    lead = rank == 0
    random.seed(config.seed)
    np.random.seed(config.seed)
    paddle.seed(config.seed)

    model, tokenizer = checkpoint.load(config.init_from)
    train_items = [encode(e, tokenizer, config.max_seq_len) for e in split_long_examples(train_examples, config.max_seq_len)]
    dev_items = [encode(e, tokenizer, config.max_seq_len) for e in split_long_examples(dev_examples, config.max_seq_len)]
    if not train_items:
        raise ValueError("no training examples")

    steps_per_epoch = math.ceil(len(train_items) / (config.batch_size * world))
    total_steps = config.max_steps or max(1, config.min_steps, math.ceil(steps_per_epoch * config.num_epochs))
    # once per epoch, but at most MAX_EVALUATIONS times: a handful of tasks makes epochs of one step each
    eval_every = config.eval_every or max(steps_per_epoch, math.ceil(total_steps / MAX_EVALUATIONS))
    schedule = LinearDecayWithWarmup(config.learning_rate, total_steps, config.warmup_proportion)
    decay_params = [p.name for n, p in model.named_parameters() if not any(k in n for k in ("bias", "norm"))]
    optimizer = paddle.optimizer.AdamW(
        learning_rate=schedule, parameters=model.parameters(), weight_decay=config.weight_decay,
        apply_decay_param_fun=lambda name: name in decay_params)

    def pointer_loss(prob, target):
        weight = 1 + (config.positive_weight - 1) * target
        return paddle.nn.functional.binary_cross_entropy(prob, target, weight=weight)

    log.info("fine-tuning %s on %s: %d train / %d dev examples, %d steps (%d per epoch), lr %g, batch %d%s",
             config.init_from, device, len(train_items), len(dev_items), total_steps, steps_per_epoch,
             config.learning_rate, config.batch_size, f" in each of {world} processes" if world > 1 else "")
    forward = model
    if world > 1:
        paddle.distributed.init_parallel_env()
        forward = paddle.DataParallel(model)
    dev_items = dev_items if lead else []  # the others neither evaluate nor save
    state_dir = Path(config.save_dir) / "last"
    if config.resume and (state_dir / "progress.json").exists():
        # the starting model's score and the curve so far come from the state: scoring the starting model
        # again would cost a sitting minutes and report the wrong model
        run = _load_state(state_dir, model, optimizer, total_steps)
        log.info("resumed at step %d/%d (best dev F1 %.4f)", run.progress.step, total_steps, run.progress.best_f1)
    else:
        initial = _dev_report(model, dev_items, config)[0] if dev_items else None
        run = _RunRecord(Progress(total_steps=total_steps), initial)
        if initial:
            log.info("starting model: dev F1 %.4f", initial.overall.f1)
    progress, history, losses = run.progress, run.history, run.losses
    started = last_log = last_state = time.monotonic() - progress.elapsed_s
    model.train()

    while progress.step < total_steps:
        progress.epoch = progress.step // steps_per_epoch + 1
        # each epoch's order depends only on (seed, epoch): a resumed run sees the batches it would have
        order = random.Random(config.seed * 100_003 + progress.epoch)
        batches = _batches(train_items, config.batch_size, order, config.length_pool)
        # this process's share; every process takes steps_per_epoch batches (wrapping round), so none waits
        batches = [batches[(i * world + rank) % len(batches)] for i in range(steps_per_epoch)]
        for batch in batches[progress.step % steps_per_epoch:]:
            if config.resume:  # dropout's masks depend only on (seed, step): resumed, a run goes on exactly as an
                # unbroken one would (runs that never resume keep paddle's one stream, and their measured behaviour)
                paddle.seed(config.seed * 1_000_003 + progress.step)
            inputs, (start_ids, end_ids) = _to_tensors(batch, with_labels=True)
            start_prob, end_prob = forward(**inputs)
            loss = (pointer_loss(start_prob, start_ids) + pointer_loss(end_prob, end_ids)) / 2
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.clear_grad()

            progress.step += 1
            progress.loss = float(loss)
            losses.append(progress.loss)
            progress.elapsed_s = time.monotonic() - started
            progress.eta_s = progress.elapsed_s / progress.step * (total_steps - progress.step)
            evaluate_now = progress.step % eval_every == 0 or progress.step == total_steps
            if evaluate_now and dev_items:
                report, at = _dev_report(model, dev_items, config)
                progress.last_f1 = report.overall.f1
                top, keep = _judge(run, report, config.selection_slack_se)
                if keep:
                    run.version = checkpoint.save(model, tokenizer, Path(config.save_dir) / "model_best", {
                        **(meta or {}), "init_from": str(config.init_from), "train_config": _jsonable(config),
                        "step": progress.step, "dev": report.to_dict(), "dev_threshold": at})
                    log.info("step %d: dev F1 %.4f at %.2f (%s), saved %s", progress.step, report.overall.f1, at,
                             "best" if top else f"best {progress.best_f1:.4f}, within noise of it", run.version)
                    if config.state_every_s:  # a run resumed from an older state would not know this checkpoint,
                        # and would overwrite it with the next one it judged best, however much worse
                        last_state = time.monotonic()
                        _save_state(state_dir, model, optimizer, run)
                else:
                    log.info("step %d: dev F1 %.4f at %.2f (best %.4f)", progress.step, report.overall.f1, at,
                             progress.best_f1)
            if evaluate_now:
                history.append({"step": progress.step, "epoch": round(progress.step / steps_per_epoch, 2),
                                "loss": sum(losses) / len(losses), "dev_f1": progress.last_f1 if dev_items else None})
                losses.clear()
            if on_progress:
                on_progress(progress)
            if evaluate_now or time.monotonic() - last_log > 5:
                last_log = time.monotonic()
                log.info("step %d/%d epoch %d loss %.5f elapsed %.0fs eta %.0fs", progress.step, total_steps,
                         progress.epoch, progress.loss, progress.elapsed_s, progress.eta_s)
            if lead and config.state_every_s and time.monotonic() - last_state > config.state_every_s:
                last_state = time.monotonic()
                _save_state(state_dir, model, optimizer, run)
            stop = bool(config.early_stopping_patience) and run.stale_evals >= config.early_stopping_patience
            if world > 1 and evaluate_now:  # the first process decides for all of them
                decision = paddle.to_tensor([int(stop)])
                paddle.distributed.broadcast(decision, src=0)
                stop = bool(decision.item())
            if stop:
                log.info("early stopping: no dev improvement in %d evaluations", run.stale_evals)
                total_steps = progress.step
            if progress.step >= total_steps:
                break

    if world > 1:
        log.info("process %d of %d: %d steps, weights checksum %.6f", rank + 1, world, progress.step,
                 sum(float((p * p).sum()) for p in model.parameters()))
    if not dev_items and lead:  # nothing to select by: keep the final weights
        run.version = checkpoint.save(model, tokenizer, Path(config.save_dir) / "model_best", {
            **(meta or {}), "init_from": str(config.init_from), "train_config": _jsonable(config),
            "step": progress.step})
        run.best_step = progress.step
    return TrainResult(run.version, run.best, run.initial, progress.step, time.monotonic() - started, _jsonable(config),
                       best_epochs=run.best_step / steps_per_epoch, history=history)


def _judge(run: _RunRecord, report: SpanReport, slack_se: float) -> tuple[bool, bool]:
    """Whether a dev evaluation is the best so far, and whether its checkpoint is kept (and reported) in place
    of the one kept before. A tie goes to the later, longer-trained checkpoint (small dev sets plateau early),
    and so does a score within ``slack_se`` standard errors of the best (``TrainConfig.selection_slack_se``).
    Early stopping counts evaluations since the best, kept or not."""
    f1 = report.overall.f1
    top = run.best is None or f1 >= run.progress.best_f1
    if top:
        run.progress.best_f1, run.stale_evals = f1, 0
        run.good_enough = f1 - slack_se * f1_standard_error(report.overall)
    else:
        run.stale_evals += 1
    keep = top or f1 >= run.good_enough
    if keep:
        run.best, run.best_step = report, run.progress.step
    return top, keep


def best_threshold(reports: dict[float, SpanReport], preferred: float = 0.5) -> float:
    """The pointer threshold whose report scores best, F1 to four places, a tie going to ``preferred``: the
    one rule by which checkpoints are compared and a recipe's threshold is folded, so both choose alike."""
    return max(reports, key=lambda t: (round(reports[t].overall.f1, 4), t == preferred))


def _dev_report(model, dev_items: Sequence[Encoded], config: TrainConfig) -> tuple[SpanReport, float]:
    """The dev report a checkpoint is judged by, and the pointer threshold it was scored at (the best of
    ``config.threshold`` and ``config.select_thresholds``)."""
    reports = evaluate_at(model, dev_items, (config.threshold, *config.select_thresholds))
    at = best_threshold(reports, config.threshold)
    return reports[at], at


def _save_state(state_dir: Path, model, optimizer, run: _RunRecord) -> None:
    """Everything needed to continue this run after an interruption (weights, optimizer, schedule, step)."""
    paddle = paddle_env.load().paddle
    staging = state_dir.with_name(state_dir.name + ".incoming")
    staging.mkdir(parents=True, exist_ok=True)
    paddle.save(model.state_dict(), str(staging / "model_state.pdparams"))
    paddle.save(_by_structure(optimizer.state_dict(), model, to_structure=True), str(staging / "optimizer.pdopt"))
    write_json(staging / "progress.json", {
        "progress": asdict(run.progress), **{key: getattr(run, key) for key in _SAVED_AS_IS},
        **{key: getattr(run, key).to_dict() if getattr(run, key) else None for key in ("initial", "best")}})
    checkpoint.replace_dir(staging, state_dir)
    log.info("saved resumable state at step %d to %s", run.progress.step, state_dir)


def _by_structure(state: dict, model, to_structure: bool) -> dict:
    """Optimizer state keys use paddle's per-process parameter names (``embedding_8.w_0_moment1_0``); a new
    process numbers them differently, so they are saved under the model's structured names instead."""
    pairs = [(p.name, name) for name, p in model.named_parameters()]
    if not to_structure:
        pairs = [(structured, runtime) for runtime, structured in pairs]
    renamed = {}
    for key, value in state.items():
        for old, new in pairs:
            if key == old or key.startswith(old + "_"):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed


def _load_state(state_dir: Path, model, optimizer, total_steps: int) -> _RunRecord:
    paddle = paddle_env.load().paddle
    model.set_state_dict(paddle.load(str(state_dir / "model_state.pdparams")))
    optimizer.set_state_dict(_by_structure(paddle.load(str(state_dir / "optimizer.pdopt")), model, to_structure=False))
    saved = read_json(state_dir / "progress.json")
    reports = {key: SpanReport.from_dict(saved[key]) if saved.get(key) else None for key in ("initial", "best")}
    kept = {key: saved[key] for key in _SAVED_AS_IS if key in saved}  # a state saved before they were has none
    return _RunRecord(Progress(**{**saved["progress"], "total_steps": total_steps}), **reports, **kept)


def _jsonable(config: TrainConfig) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}


def evaluate_checkpoint(model_dir: Path, examples: Sequence[dict], max_seq_len: int = 512, batch_size: int = 32,
                        threshold: float = 0.5, device: str = "auto") -> SpanReport:
    """Span P/R/F1 of a checkpoint on UIE prompt examples (evaluate.py; comparing versions)."""
    paddle_env.set_device(device)
    model, tokenizer = checkpoint.load(model_dir)
    items = [encode(e, tokenizer, max_seq_len) for e in split_long_examples(examples, max_seq_len)]
    return evaluate(model, items, batch_size, threshold)
