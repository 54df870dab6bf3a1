"""The encoder classifier: a closed-output task answered by MiniLM sentence embeddings and a linear head.

A task's output is closed when every answer is one of a small set: a label task (a handful of
short answers), or JSON whose schema allows only enums and booleans (e.g. `{category, priority}`),
or a choice of one tool with fixed arguments. The classes are the distinct answers the LLM gave
(JSON canonicalised); the input is the part of the request that changes (`user_text`), read two
ways side by side: its meaning (all-MiniLM-L6-v2 sentence embedding) and its words (TF-IDF of the
words and word pairs seen in two training calls or more: a store's name, "45 days", "Express",
which an embedding of the whole text blurs). The head is a multinomial logistic regression
(scikit-learn to fit, numpy to serve: `head.npz`). Confidence is the head's probability of the
chosen class, calibrated like every other kind on the held-out calls. A served answer is always
one the LLM itself gave, so it is valid by construction.

A classifier the flywheel builds learnt from calls whose PII was replaced by fake values: it
replaces a request's PII the same way before reading it (as a LoRA specialist does), so the words
it weighs are those it was trained on, and turns the fakes in its answer back into the caller's.

Classes seen fewer than twice cannot be learnt; a task whose answers are mostly such singletons
(free text, extraction) is unfit for this kind. Free text whose answers recur verbatim (an FAQ
answered from a handful of canned replies) is a closed set like any other: the classifier picks
one of the LLM's own replies, and the calibration serves it only where that pick scores at the
quality bar.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

from protege.specialist.artifact import write_manifest
from protege.specialist.examples import Example, as_examples
from protege.specialist.format import target_text
from protege.train.kinds import (
    BuildOptions,
    Responder,
    SpecialistKind,
    TaskData,
    pseudonymized_field,
    pseudonymizer_for,
    register_kind,
    sentence_embedder,
    user_text,
)

HEAD = "head.npz"
CLASSES = "classes.json"
MAX_CLASSES = 64
MIN_COVERED = 0.9
"""Share of training calls whose answer is a class seen at least twice, below which the task is not closed."""
MAX_TERMS = 20_000
_TOKEN = re.compile(r"\b\w\w+\b")


def _terms(text: str) -> list[str]:
    words = _TOKEN.findall(text.lower())
    return words + [f"{a} {b}" for a, b in pairwise(words)]


class WordFeatures:
    """TF-IDF over words and word pairs: sublinear counts times smoothed IDF, each row of unit length (what
    scikit-learn's `TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)` computes), in numpy so that
    serving needs no scikit-learn."""

    def __init__(self, terms: list[str], idf: Any):
        self.index = {t: i for i, t in enumerate(terms)}
        self.idf = idf

    @classmethod
    def fit(cls, texts: list[str]) -> WordFeatures:
        import numpy as np

        df = Counter(t for text in texts for t in set(_terms(text)))
        terms = sorted((t for t, c in df.items() if c >= 2), key=lambda t: (-df[t], t))[:MAX_TERMS]
        n = len(texts)
        return cls(terms, np.array([math.log((1 + n) / (1 + df[t])) + 1 for t in terms], np.float32))

    def transform(self, texts: list[str]) -> Any:
        import numpy as np

        out = np.zeros((len(texts), len(self.idf)), np.float32)
        for row, text in enumerate(texts):
            for term, count in Counter(_terms(text)).items():
                j = self.index.get(term)
                if j is not None:
                    out[row, j] = (1 + math.log(count)) * self.idf[j]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1)


def features(embedder: Any, words: WordFeatures, texts: list[str]) -> Any:
    """A request's inputs to the head: [sentence embedding | TF-IDF], each of unit length."""
    import numpy as np

    return np.hstack([embedder.embed(texts), words.transform(texts)])


def _closed_schema(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if "enum" in schema or "const" in schema or schema.get("type") == "boolean":
        return True
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return bool(props) and all(_closed_schema(p) for p in props.values())
    return False


def answer_class(message: dict, output_kind: str) -> str:
    """The class an answer falls in: its text (label), canonical JSON, or its canonical tool calls."""
    return target_text(message, "json" if output_kind == "json" else output_kind).strip()


class ClassifierResponder(Responder):
    model_name = "minilm-classifier"

    def __init__(self, folder: Path):
        import numpy as np

        from protege.specialist.artifact import load_specialist

        head = np.load(folder / HEAD)
        self.weights, self.bias = head["weights"], head["bias"]
        terms = head["terms"] if "terms" in head.files else []  # a head built before words were read: meaning only
        self.words = WordFeatures([str(t) for t in terms], head["idf"] if "idf" in head.files else np.zeros(0))
        self.classes = json.loads((folder / CLASSES).read_text())
        self.embedder = sentence_embedder()
        self.scrubber = pseudonymizer_for(load_specialist(folder).manifest)

    def respond(self, request: dict, scope: str | None = None) -> tuple[dict | None, float | None]:
        import numpy as np

        from protege.models.runtime import completion_dict

        session = None
        if self.scrubber is not None:
            request, session = self.scrubber.scrub_request(request)
        x = features(self.embedder, self.words, [user_text(request)])[0]
        logits = self.weights @ x + self.bias
        p = np.exp(logits - logits.max())
        p /= p.sum()
        best = int(p.argmax())
        message = self.classes[best]
        choices = [{"message": {"content": message.get("content"), "tool_calls": message.get("tool_calls")}}]
        if session is not None:
            choices = session.restore(choices)
        answer = choices[0]["message"]
        completion = completion_dict(self.model_name, answer.get("content"), answer.get("tool_calls"), "stop", 0, 1)
        return completion, float(p[best])


class EncoderClassifier(SpecialistKind):
    name = "classifier"
    rank = 1

    def unfit(self, task: TaskData) -> str | None:
        examples = as_examples(task.train)
        if task.output_kind == "json":
            schemas = [(((ex.request.get("response_format") or {}).get("json_schema") or {}).get("schema"))
                       for ex in examples]
            if not schemas or not all(_closed_schema(s) for s in schemas):
                return "the JSON schema has open fields (strings or numbers without an enum)"
        counts = Counter(answer_class(ex.answer, task.output_kind) for ex in examples)
        covered = sum(c for c in counts.values() if c >= 2) / max(1, len(examples))
        if len(counts) > MAX_CLASSES or covered < MIN_COVERED:
            return (f"{len(counts)} distinct answers, {covered:.0%} of calls in one seen twice or more: "
                    "not a closed set")
        return None

    def build(self, task: TaskData, folder: Path, options: BuildOptions) -> None:
        import numpy as np

        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError as e:
            raise ImportError("The classifier kind needs scikit-learn. Fix: pip install 'protege[train]'") from e
        examples: list[Example] = as_examples(task.train)
        labels = [answer_class(ex.answer, task.output_kind) for ex in examples]
        counts = Counter(labels)
        keep = [i for i, y in enumerate(labels) if counts[y] >= 2]
        names = sorted({labels[i] for i in keep})
        message_of = {labels[i]: {k: v for k, v in examples[i].answer.items() if k in ("role", "content", "tool_calls")}
                      for i in keep}
        texts = [user_text(examples[i].request) for i in keep]
        words = WordFeatures.fit(texts)
        x = features(sentence_embedder(), words, texts)
        y = np.array([names.index(labels[i]) for i in keep])
        folder.mkdir(parents=True, exist_ok=True)
        if len(names) == 1:  # one answer for everything: the head always says it, at the rate it held
            weights, bias = np.zeros((1, x.shape[1]), np.float32), np.zeros(1, np.float32)
        else:
            model = LogisticRegression(C=10.0, max_iter=2000, random_state=options.seed).fit(x, y)
            weights, bias = model.coef_.astype(np.float32), model.intercept_.astype(np.float32)
            if len(names) == 2:  # sklearn's binary head is one row: make it two logits
                weights, bias = np.vstack([-weights / 2, weights / 2]), np.array([-bias[0] / 2, bias[0] / 2])
        terms = sorted(words.index, key=words.index.get)
        np.savez(folder / HEAD, weights=weights, bias=bias, terms=np.array(terms, dtype=str), idf=words.idf)
        (folder / CLASSES).write_text(json.dumps([message_of[n] for n in names], ensure_ascii=False))
        write_manifest(folder, {
            "task": task.task_id, "kind": self.name, "output_kind": task.output_kind, "embedder": "all-MiniLM-L6-v2",
            "words": f"TF-IDF, {len(terms)} words and word pairs", "head": "logistic regression (C=10)",
            "classes": len(names),
            "splits": {"train": len(keep), "test": len(task.test), "dropped_singletons": len(examples) - len(keep)},
            **pseudonymized_field(options),
        })

    def open(self, folder: Path, pool: Any = None, heldout: bool = False) -> Responder:
        return ClassifierResponder(folder)


register_kind(EncoderClassifier)
