"""`protege eval TASK`: compare the base model, the specialist and the LLM on the task's held-out calls.

The CLI wraps `eval_task` (and prints `EvalReport.table()` or, with --json, `to_json()`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from protege.evaluate.harness import (
    Candidate,
    EvalReport,
    FewShotCandidate,
    ReferenceCandidate,
    RuntimeCandidate,
    evaluate,
)
from protege.evaluate.judge import Judge
from protege.specialist.artifact import EVAL_REPORT, load_specialist
from protege.specialist.examples import Example, task_examples

log = logging.getLogger(__name__)


def generation_budget(examples: Sequence[Example], tokenizer: Any, fmt: Any) -> int:
    """Most new tokens a candidate may write: 1.5x the longest reference answer, plus 16."""
    longest = max(len(tokenizer(fmt.target(ex.answer), add_special_tokens=False).input_ids) for ex in examples)
    return int(longest * 1.5) + 16


def evaluate_specialist(folder: str | Path, test: Sequence[Example], *, base: Any | None = None,
                        limit: int | None = 50, few_shot: bool = False, pool: Sequence[Example] = (),
                        device: str | None = None, on_example: Callable[[str, int, int], None] | None = None,
                        judge: Judge | None = None) -> EvalReport:
    """Evaluate a specialist folder on `test` and write the report into the folder as eval.json.

    A `judge` (`protege.evaluate.judge.LLMJudge`) grades free-text answers; its score is then the headline.
    """
    from protege.evaluate.runtimes import specialist_runtime
    from protege.specialist.base import load_base

    spec = load_specialist(folder)
    test = list(test)[:limit] if limit else list(test)
    if base is None:
        base = load_base(spec.base_model)
    fmt = spec.prompt_format
    if device is None:
        device = str(next(base.model.parameters()).device)
    runtime = specialist_runtime(base.model, base.tokenizer, model_id=spec.manifest["base_model"]["name"],
                                 device=device)
    runtime.add_specialist("specialist", spec.adapter_dir, fmt)
    budget = generation_budget(test, base.tokenizer, fmt)
    candidates: list[Candidate] = [RuntimeCandidate("base zero-shot", runtime, max_tokens=budget)]
    if few_shot and pool:
        candidates.append(FewShotCandidate("base few-shot (3 similar calls)", runtime, pool, k=3, max_tokens=budget))
    candidates += [RuntimeCandidate("specialist", runtime, adapter="specialist", max_tokens=budget),
                   ReferenceCandidate()]
    report = evaluate(test, candidates, task=spec.task, output_kind=spec.manifest.get("output_kind"),
                      on_example=on_example, judge=judge)
    (spec.folder / EVAL_REPORT).write_text(report.to_json())
    return report


def eval_task(task: str, *, specialist: str | Path | None = None, data: str | Path | None = None,
              records: Sequence[Any] | None = None, store_url: str | None = None, limit: int | None = 50,
              few_shot: bool = False, on_example: Callable[[str, int, int], None] | None = None,
              judge: Judge | None = None) -> EvalReport:
    """Evaluate TASK's specialist on its held-out calls: base zero-shot, specialist and LLM rows.

    The held-out calls are those the specialist's folder lists (never seen in training), read
    from `data`, `records` or the store. The report is written to the folder's eval.json. With a
    `judge`, free-text tasks are also graded by it (see `protege.evaluate.judge`).
    """
    spec = load_specialist(specialist or task)
    wanted = set(spec.manifest["splits"]["test_ids"])
    examples = [ex for ex in task_examples(task, records=records, data=data, store_url=store_url) if ex.id in wanted]
    if not examples:
        raise ValueError(f"none of the {len(wanted)} held-out calls of {spec.folder} were found in the data; pass "
                         "the data the specialist was trained from (--data FILE)")
    return evaluate_specialist(spec.folder, examples, limit=limit, few_shot=few_shot, on_example=on_example,
                               judge=judge)


def read_report(folder: str | Path) -> dict:
    return json.loads((Path(folder) / EVAL_REPORT).read_text())
