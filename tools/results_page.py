"""Build the book's results page (`book/results.md`) from `results/`.

The page opens with the headline numbers of each chapter beside the figures
quoted from other sources (a table and a chart), then the claims ledger (every
claim a chapter checked with ``annotated.plumbing.check_claim``, its verdict and
evidence, per recorded profile), then the detail tables, folded.

Every measured number comes from a JSON file written by
``annotated.plumbing.save_results`` (keys: chapter, profile, commit, device, date,
wall_time_s, torch, python, settings, metrics); every verdict from a claims ledger
``results/claims/<chapter>.<profile>.json`` (keys: chapter, profile, commit, date,
claims). The only numbers typed here are the anchors (``ANCHORS``): figures quoted
from course write-ups and published tutorials, each with its source. A file that
is not valid JSON, lacks a key, or names a chapter that is not in ``_toc.yml`` is
reported by name on the page (and by ``--check``), never skipped.

Usage::

    python tools/results_page.py            # print the page as Markdown
    python tools/results_page.py --check    # exit 1 if a results or claims file is broken
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chapters as book_chapters  # noqa: E402  (tools/chapters.py)

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ("chapter", "profile", "commit", "device", "date", "wall_time_s", "metrics")
PROFILES = ("full", "cpu", "smoke")  # display order: headline numbers first


@dataclass(frozen=True)
class Anchor:
    """A figure from outside this book, with what it measures and where it was published."""

    topic: str  # which chapter it belongs beside: seq2seq | transformer | vit
    model: str
    metric: str
    value: float
    unit: str
    data: str
    source: str
    url: str
    comparable: str  # what makes it comparable to our numbers, or not


SEED_000 = "course write-up A (shared/seeds/000_275750e159278998.txt)"
SEED_002 = "course write-up B (shared/seeds/002_fd078519cebb9cf2.txt)"
SEED_004 = "ViT annotation report (shared/seeds/004_cce54e0c3c320011.txt, Table 2)"
SEQ2SEQ_TUTORIAL = "https://github.com/bentrevett/pytorch-seq2seq"
COURSE_DATA = "Multi30k de→en (course split)"
PPL_NOTE = ("teacher-forced validation perplexity, like ours, but on the course's own split and "
            "vocabulary: compare the ordering of the models, not the values")

ANCHORS: tuple[Anchor, ...] = (
    Anchor("seq2seq", "RNN", "validation perplexity", 77.5293, "", COURSE_DATA,
           SEED_000, "", PPL_NOTE),
    Anchor("seq2seq", "RNN + attention", "validation perplexity", 26.1675, "", COURSE_DATA,
           SEED_000, "", PPL_NOTE),
    Anchor("seq2seq", "LSTM", "validation perplexity", 23.9794, "", COURSE_DATA,
           SEED_000, "", PPL_NOTE),
    Anchor("seq2seq", "LSTM + attention", "validation perplexity", 24.3877, "", COURSE_DATA,
           SEED_000, "", PPL_NOTE),
    Anchor("seq2seq", "RNN + attention", "validation perplexity", 35.9700, "", COURSE_DATA,
           SEED_002, "", PPL_NOTE + "; the same assignment run by a second student: attention helped less"),
    Anchor("seq2seq", "GRU encoder-decoder + additive attention (tutorial 4)", "test BLEU", 28.11, "",
           "Multi30k de→en test 2016",
           "bentrevett/pytorch-seq2seq, '4 - Packed Padded Sequences, Masking, Inference and BLEU' "
           "(printed 'BLEU score = 28.11' at commit 7faa64a; an earlier version printed 28.77)",
           SEQ2SEQ_TUTORIAL,
           "torchtext bleu_score on lowercased spaCy tokens (tokenised corpus BLEU), not sacreBLEU on "
           "detokenised text: compare with our tokenised BLEU, not our sacreBLEU"),
    Anchor("transformer", "encoder-only transformer (course default)", "validation perplexity", 18.8005, "",
           COURSE_DATA, SEED_000, "", PPL_NOTE),
    Anchor("transformer", "full encoder-decoder transformer (course default)", "validation perplexity",
           4.8847, "", COURSE_DATA, SEED_000, "",
           PPL_NOTE + "; the encoder-only model predicts target token t from source position t, which is "
           "why it cannot get close"),
    Anchor("transformer", "encoder-only transformer (course default)", "validation perplexity", 19.2228, "",
           COURSE_DATA, SEED_002, "", PPL_NOTE),
    Anchor("transformer", "full encoder-decoder transformer (course default)", "validation perplexity",
           4.9447, "", COURSE_DATA, SEED_002, "", PPL_NOTE),
    Anchor("transformer", "3-layer transformer (tutorial 6)", "test BLEU", 36.5, "",
           "Multi30k de→en test 2016",
           "bentrevett/pytorch-seq2seq, '6 - Attention is All You Need' (figure as quoted in issue 5; "
           "test perplexity 5.3 in the same notebook)", SEQ2SEQ_TUTORIAL,
           "torchtext bleu_score on lowercased spaCy tokens: compare with our tokenised BLEU"),
    Anchor("transformer", "3-layer transformer (tutorial 6)", "test perplexity", 5.3, "",
           "Multi30k de→en test 2016", "bentrevett/pytorch-seq2seq, '6 - Attention is All You Need'",
           SEQ2SEQ_TUTORIAL, "teacher-forced, its own vocabulary (min_freq 2, lowercased spaCy tokens)"),
    Anchor("vit", "small ViT trained from scratch (6.3 M parameters, 200 epochs, AutoAugment)",
           "test accuracy", 91.01, "%", "CIFAR-10 test (10,000 images)",
           "omihub777/ViT-CIFAR README (commit 0766c12); issue 6 quotes 90.9 %",
           "https://github.com/omihub777/ViT-CIFAR",
           "same metric and test images as ours, but the original pixels: ours are the offline "
           "copy's JPEG re-encoding (quality 75, chapter 6), for training and test; a far longer "
           "schedule than any profile here but `full`"),
    Anchor("vit", "ViT on 600 training images, 6 epochs", "validation accuracy", 20.51, "%",
           "CIFAR-10 (200-image validation subset)", SEED_004, "",
           "a 200-image subset: a ±3 % binomial error bar at 20 %; "
           "not comparable with full-test-set accuracy; our row is the mean of five seeds of "
           "its recipe (chapter 6)"),
)


@dataclass
class Loaded:
    records: list[dict] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file name, what is wrong)


def known_chapters(root: Path = ROOT) -> list[str]:
    """The names results may use: chapters and appendices (``tools/chapters.py``)."""
    return [page.name for page in book_chapters.pages(root, ("chapter", "appendix"))]


def owner_chapter(name: str, chapters: list[str]) -> str | None:
    """The book chapter a results name belongs to: itself, or `<chapter>_<part>` (e.g. a recipe search)."""
    if name in chapters:
        return name
    owners = [c for c in chapters if name.startswith(c + "_")]
    return max(owners, key=len) if owners else None


def load_results(results_dir: Path, chapters: list[str]) -> Loaded:
    """Read every results/*.json; collect the good records and, by file name, every problem."""
    out = Loaded()
    for path in sorted(results_dir.glob("*.json")) if results_dir.exists() else []:
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            out.problems.append((path.name, f"not valid JSON ({err})"))
            continue
        if not isinstance(record, dict):
            out.problems.append((path.name, f"holds a {type(record).__name__}, not a results object"))
            continue
        missing = [key for key in REQUIRED if key not in record]
        if missing:
            out.problems.append((path.name, f"lacks the key(s) {', '.join(missing)}"))
            continue
        parent = owner_chapter(record["chapter"], chapters) if isinstance(record["chapter"], str) else None
        if parent is None:
            out.problems.append((path.name, f"names the chapter {record['chapter']!r}, which is not in "
                                            f"_toc.yml (known: {', '.join(chapters)})"))
            continue
        if record["profile"] not in PROFILES:
            out.problems.append((path.name, f"names the unknown profile {record['profile']!r}"))
            continue
        if not isinstance(record["metrics"], dict) or not record["metrics"]:
            out.problems.append((path.name, "has no metrics"))
            continue
        expected = f"{record['chapter']}.{record['profile']}.json"
        if path.name != expected:
            out.problems.append((path.name, f"holds {record['chapter']}/{record['profile']} but should be "
                                            f"named {expected}"))
            continue
        record["_file"] = path.name
        record["_parent"] = parent
        out.records.append(record)
    return out


CLAIM_KEYS = {"claim": str, "holds": bool, "evidence": str, "source": str}


@dataclass
class Ledger:
    """The claims ledgers: one per (chapter, profile), and every broken file by name."""

    ledgers: list[dict] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # ("claims/<file>", why)


def _ledger_problem(record: object, name: str, chapters: list[str]) -> str | None:
    """What is wrong with one claims ledger, or None."""
    if not isinstance(record, dict):
        return f"holds a {type(record).__name__}, not a claims ledger"
    missing = [k for k in ("chapter", "profile", "claims") if k not in record]
    if missing:
        return f"lacks the key(s) {', '.join(missing)}"
    chapter = record["chapter"]
    if not isinstance(chapter, str) or owner_chapter(chapter, chapters) is None:
        return f"names the chapter {chapter!r}, which is not in _toc.yml"
    if record["profile"] not in PROFILES:
        return f"names the unknown profile {record['profile']!r}"
    if name != f"{chapter}.{record['profile']}.json":
        return f"holds {chapter}/{record['profile']} but should be named " \
               f"{chapter}.{record['profile']}.json"
    if not isinstance(record["claims"], list):
        return "its 'claims' is not a list"
    for i, entry in enumerate(record["claims"]):
        wrong = [k for k, kind in CLAIM_KEYS.items()
                 if not isinstance(entry, dict) or not isinstance(entry.get(k), kind)]
        if wrong:
            return f"claim #{i + 1} lacks (or mistypes) {', '.join(wrong)}"
    return None


def load_claims(results_dir: Path, chapters: list[str]) -> Ledger:
    """Read every results/claims/*.json; the good ledgers and, by file name, the broken."""
    out = Ledger()
    folder = results_dir / "claims"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        name = f"claims/{path.name}"
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            out.problems.append((name, f"not valid JSON ({err})"))
            continue
        why = _ledger_problem(record, path.name, chapters)
        if why is not None:
            out.problems.append((name, why))
            continue
        record["_file"] = name
        record["_parent"] = owner_chapter(record["chapter"], chapters)
        out.ledgers.append(record)
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fmt(value: object) -> str:
    """A table cell: 4 significant digits for floats, series and matrices summarised, text escaped."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, list):
        if value and all(isinstance(v, list) for v in value):
            return f"{len(value)} × {len(value[0])} matrix"
        if value and all(_is_number(v) for v in value):
            if len(value) > 20:  # a curve: where it ended
                return f"{fmt(value[-1])} (last of {len(value)})"
            return f"{fmt(min(value))} … {fmt(max(value))} ({len(value)} values)"
        return f"{len(value)} items"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _order(record: dict) -> tuple:
    return (record["chapter"], PROFILES.index(record["profile"]))


def problems_markdown(loaded: Loaded, ledger: Ledger | None = None) -> str:
    """A warning naming every results or claims file that was not used, and why."""
    problems = loaded.problems + (ledger.problems if ledger is not None else [])
    if not problems:
        return "All results files are well-formed and belong to chapters of this book."
    items = "\n".join(f"- `{name}`: {why}" for name, why in problems)
    return (":::{warning}\nThese results files were **not** used, because they are broken:\n\n"
            f"{items}\n:::")


def provenance_markdown(loaded: Loaded) -> str:
    """One row per results file: where and when its numbers were measured."""
    if not loaded.records:
        return ("No results have been recorded yet "
                "(run a chapter: it writes `results/<chapter>.<profile>.json`).")
    rows = []
    torches = sorted({str(r.get("torch", "?")) for r in loaded.records})
    for r in sorted(loaded.records, key=_order):
        wall = r.get("wall_time_s")
        device = fmt(r["device"]) + (f", torch {r.get('torch', '?')}" if len(torches) > 1 else "")
        rows.append([r["chapter"], f"`{r['profile']}`", f"`{r['commit']}`", device,
                     str(r["date"]).replace("T", " ")[:16], "–" if wall is None else f"{float(wall):,.1f}"])
    table = _table(["chapter", "profile", "commit", "device", "date (UTC)", "wall time (s)"], rows)
    return table + (f"\n\nAll measured with torch {torches[0]}." if len(torches) == 1 else "")


MAX_RECORD_ROWS = 20  # a longer list of records is summarised, not printed


def _is_flat(value: object) -> bool:
    """A dict of plain values (numbers, strings, series): one entity's metrics, e.g. one model's."""
    return isinstance(value, dict) and bool(value) and not any(isinstance(v, dict) for v in value.values())


def _is_records(value: object) -> bool:
    """A list of flat dicts: rows of a table (e.g. accuracy per training-set size)."""
    return isinstance(value, list) and bool(value) and all(_is_flat(v) for v in value)


def _entity_groups(entities: dict[str, dict]) -> list[dict[str, dict]]:
    """Entities that share most of their metric names go in one table (one column each)."""
    groups: list[dict[str, dict]] = []
    for name, metrics in entities.items():
        for group in groups:
            keys = set(next(iter(group.values())))
            if len(keys & set(metrics)) >= 0.5 * len(keys | set(metrics)):
                group[name] = metrics
                break
        else:
            groups.append({name: metrics})
    return groups


def _records_table(records: list[dict]) -> str:
    columns: list[str] = []
    for rec in records:
        columns += [c for c in rec if c not in columns]
    shown = records[:MAX_RECORD_ROWS]
    more = len(records) - len(shown)
    if len(columns) > 8 and len(shown) <= 8:  # wide and short: one column per record instead
        label = "name" if "name" in columns else None
        heads = [fmt(r[label]) if label else f"#{i + 1}" for i, r in enumerate(shown)]
        rows = [[f"`{c}`"] + [fmt(r[c]) if c in r else "–" for r in shown] for c in columns if c != label]
        table = _table([""] + heads, rows)
    else:
        table = _table([f"`{c}`" for c in columns], [[fmt(r[c]) if c in r else "–" for c in columns]
                                                     for r in shown])
    return table + (f"\n\n(and {more} more rows in the results file)" if more > 0 else "")


def metrics_markdown(metrics: dict, caption: str = "") -> list[str]:
    """Blocks of Markdown for a metrics dict: entities side by side, records as rows, nesting as captions.

    One model's (or one setting's) metrics form a column; models that share their metric names
    share a table, with one row per metric, so a table is as wide as the number of models, not
    the number of metrics. A nested dict gets its name as a caption and is laid out the same way;
    a list of records becomes a table of its own; plain values end in a metric/value table.
    """
    blocks: list[str] = []
    entities = {k: v for k, v in metrics.items() if _is_flat(v)}
    groups = _entity_groups(entities)
    singles = {k: v for k, v in metrics.items() if not isinstance(v, dict) and not _is_records(v)}
    prefix = f"{caption} / " if caption else ""
    for key, value in metrics.items():  # in the order the chapter wrote them
        if key in entities:
            group = next(g for g in groups if key in g)
            if key != next(iter(group)):
                continue  # the group was shown at its first member
            names: list[str] = []
            for entity in group.values():
                names += [m for m in entity if m not in names]
            if len(group) == 1:
                blocks += [f"*{prefix}{key}*:", _table(["metric", "value"],
                                                       [[f"`{n}`", fmt(value[n])] for n in names])]
            else:
                rows = [[f"`{n}`"] + [fmt(e[n]) if n in e else "–" for e in group.values()] for n in names]
                blocks += ([f"*{caption}*:"] if caption else []) + [
                    _table([""] + [f"**{g}**" for g in group], rows)]
        elif isinstance(value, dict):
            blocks += metrics_markdown(value, prefix + key)
        elif _is_records(value):
            blocks += [f"*{prefix}{key}*:", _records_table(value)]
    if singles:
        blocks += ([f"*{caption}*:"] if caption else []) + [
            _table(["metric", "value"], [[f"`{n}`", fmt(v)] for n, v in singles.items()])]
    return blocks


def chapter_markdown(loaded: Loaded, chapter: str) -> str:
    """The metrics of one chapter, one block per profile (smoke only when nothing larger ran)."""
    records = sorted((r for r in loaded.records if r.get("_parent", r["chapter"]) == chapter),
                     key=lambda r: (r["chapter"] != chapter, r["chapter"], PROFILES.index(r["profile"])))
    larger = {r["chapter"] for r in records if r["profile"] != "smoke"}
    records = [r for r in records if r["profile"] != "smoke" or r["chapter"] not in larger]
    if not records:
        return f"No results recorded for `{chapter}` yet."
    blocks = []
    for r in records:
        wall = r.get("wall_time_s")
        part = "" if r["chapter"] == chapter else f"`{r['chapter']}`, "
        blocks.append(f"{part}Profile `{r['profile']}` (commit `{r['commit']}`, {fmt(r['device'])}"
                      + ("" if wall is None else f", {float(wall):,.0f} s") + "):")
        blocks += metrics_markdown(r["metrics"])
    return "\n\n".join(blocks)


def topic_of(chapter: str) -> str | None:
    """Which anchors sit beside a chapter: by the words in its name."""
    name = chapter.lower()
    if "seq2seq" in name:
        return "seq2seq"
    if "transformer" in name:
        return "transformer"
    if "vit" in name and "inside" not in name and "analysis" not in name:
        return "vit"
    return None


def anchors_markdown(topic: str | None = None) -> str:
    """The published anchors and course figures (of one topic, or all), one list item each."""
    items = []
    for a in ANCHORS:
        if topic is not None and a.topic != topic:
            continue
        value = f"{a.value:g}{(' ' + a.unit) if a.unit else ''}"
        source = f"[{a.source}]({a.url})" if a.url else a.source
        items.append(f"- **{a.model}**: {a.metric} **{value}** on {a.data}. Source: {source}. "
                     f"*Comparable?* {a.comparable}.")
    return "\n".join(items)


def chapter_anchors_markdown(chapter: str) -> str:
    """The anchors that belong beside one chapter ('' when none do)."""
    topic = topic_of(chapter)
    return anchors_markdown(topic) if topic is not None else ""


@dataclass(frozen=True)
class Headline:
    """One number a reader looks for first: where it is in a results file, and its anchors."""

    results: str  # the results name (file results/<results>.<profile>.json)
    label: str
    path: tuple[str, ...]  # keys into the record's metrics
    unit: str  # "BLEU", "%", "perplexity", "×", ...
    scale: float = 1.0  # multiply the recorded value (a fraction) for display, e.g. 100
    anchors: tuple[tuple[str, str], ...] = ()  # (model, metric) of the ANCHORS beside it


TF_PPL = "validation perplexity"
HEADLINES: tuple[Headline, ...] = (
    Headline("01_attention_benchmark", "our multi-head attention, time / nn.MultiheadAttention",
             ("ratio_ours_vs_nn_multiheadattention",), "×"),
    Headline("02_translation", "bag-of-words baseline: test sacreBLEU",
             ("baseline_test_sacrebleu",), "BLEU"),
    Headline("02_translation", "bag-of-words baseline: test perplexity (teacher-forced)",
             ("baseline_test_ppl_teacher_forced",), "perplexity"),
    *(Headline("03_seq2seq", f"{name}: test sacreBLEU", (key, "sacreBLEU"), "BLEU")
      for key, name in (("rnn", "RNN"), ("rnn+attn", "RNN + attention"), ("lstm", "LSTM"),
                        ("lstm+attn", "LSTM + attention"))),
    Headline("03_seq2seq", "LSTM + attention: test BLEU on tokens",
             ("lstm+attn", "tokenised_BLEU"), "BLEU",
             anchors=(("GRU encoder-decoder + additive attention (tutorial 4)", "test BLEU"),)),
    *(Headline("03_seq2seq", f"{name}: validation perplexity", (key, "val_ppl_TF"), "perplexity",
               anchors=((name, TF_PPL),))
      for key, name in (("rnn", "RNN"), ("rnn+attn", "RNN + attention"), ("lstm", "LSTM"),
                        ("lstm+attn", "LSTM + attention"))),
    Headline("04_bptt", "hand-derived BPTT gradient: largest error vs autograd",
             ("max_abs_error_vs_autograd",), ""),
    Headline("05_transformer", "Transformer: test sacreBLEU (beam 5)",
             ("bleu", "Transformer (beam 5)", "sacrebleu"), "BLEU"),
    Headline("05_transformer", "Transformer: test BLEU on tokens (beam 5)",
             ("bleu", "Transformer (beam 5)", "tokenized_bleu"), "BLEU",
             anchors=(("3-layer transformer (tutorial 6)", "test BLEU"),)),
    Headline("05_transformer", "Transformer: validation perplexity",
             ("perplexity", "Transformer", "val_tf"), "perplexity",
             anchors=(("full encoder-decoder transformer (course default)", TF_PPL),)),
    Headline("05_transformer", "Transformer: test perplexity",
             ("perplexity", "Transformer", "test_tf"), "perplexity",
             anchors=(("3-layer transformer (tutorial 6)", "test perplexity"),)),
    Headline("05_transformer", "encoder-only: test sacreBLEU (greedy)",
             ("bleu", "encoder-only", "sacrebleu"), "BLEU"),
    Headline("05_transformer", "encoder-only: validation perplexity",
             ("perplexity", "encoder-only", "val_tf"), "perplexity",
             anchors=(("encoder-only transformer (course default)", TF_PPL),)),
    Headline("06_vit", "ViT: CIFAR-10 test accuracy", ("vit", "accuracy"), "%", 100,
             anchors=(("small ViT trained from scratch (6.3 M parameters, 200 epochs, "
                       "AutoAugment)", "test accuracy"),)),
    Headline("06_vit", "CNN: CIFAR-10 test accuracy", ("cnn", "accuracy"), "%", 100),
    Headline("06_vit", "ViT in the seed report's setting: accuracy",
             ("seed_report_setting_accuracy",), "%", 100,
             anchors=(("ViT on 600 training images, 6 epochs", "validation accuracy"),)),
)
HEADLINE_PROFILES = ("cpu", "full")  # smoke numbers mean nothing: never a headline


def headline_value(loaded: Loaded, headline: Headline, profile: str) -> float | None:
    """The recorded number of one headline in one profile (None when not recorded)."""
    for record in loaded.records:
        if record["chapter"] == headline.results and record["profile"] == profile:
            value = record["metrics"]
            for key in headline.path:
                value = value.get(key) if isinstance(value, dict) else None
            return float(value) * headline.scale if _is_number(value) else None
    return None


def headline_anchors(headline: Headline) -> list[Anchor]:
    return [a for a in ANCHORS if (a.model, a.metric) in headline.anchors]


def _short_source(anchor: Anchor) -> str:
    """The anchor's source in a few words (the full citation is in the list below)."""
    if anchor.source.startswith("course write-up"):
        return anchor.source.split(" (")[0]
    return anchor.source.split(",")[0].split(" (")[0].split(";")[0]


def _with_unit(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "×":
        return f"{value:.2f}×"
    if unit == "":
        return f"{value:.1e}"
    return f"{value:.1f}"


def headline_rows(loaded: Loaded, chapters: list[str]) -> list[dict]:
    """One row per headline with a recorded number: chapter, measure, cpu, full, anchors."""
    rows = []
    for h in HEADLINES:
        values = {p: headline_value(loaded, h, p) for p in HEADLINE_PROFILES}
        if all(v is None for v in values.values()):
            continue
        rows.append({"chapter": owner_chapter(h.results, chapters) or h.results,
                     "headline": h, **values, "anchors": headline_anchors(h)})
    return rows


def headline_markdown(loaded: Loaded, chapters: list[str]) -> str:
    """The page's first table: our numbers per profile beside the quoted figures."""
    rows = headline_rows(loaded, chapters)
    if not rows:
        return "No headline numbers have been recorded yet (no `cpu` or `full` results)."
    table = []
    for row in rows:
        h = row["headline"]
        ours = ["–" if row[p] is None else _with_unit(row[p], h.unit) for p in HEADLINE_PROFILES]
        quoted = "; ".join(f"{_with_unit(a.value, h.unit)} ({_short_source(a)})"
                           for a in row["anchors"]) or "–"
        table.append([row["chapter"], h.label, *ours, quoted])
    header = ["chapter", "measure", *(f"`{p}` run" for p in HEADLINE_PROFILES),
              "quoted from another source"]
    return _table(header, table)


def headline_frame(loaded: Loaded, chapters: list[str]) -> list[dict]:
    """The chart's data: BLEU and accuracy headlines, one row per (measure, who measured)."""
    data = []
    for row in headline_rows(loaded, chapters):
        h = row["headline"]
        if h.unit not in ("BLEU", "%"):
            continue
        measure = f"{row['chapter'][:2]} · {h.label}"
        for p in HEADLINE_PROFILES:
            if row[p] is not None:
                data.append({"measure": measure, "value": row[p], "unit": h.unit,
                             "by": f"this book, {p} run"})
        for a in row["anchors"]:
            data.append({"measure": measure, "value": a.value, "unit": h.unit,
                         "by": f"quoted: {_short_source(a)}"})
    return data


def headline_chart(loaded: Loaded, chapters: list[str]):
    """An altair bar chart of headline_frame: ours (per profile) beside the quoted figures."""
    import altair as alt
    import pandas as pd

    frame = pd.DataFrame(headline_frame(loaded, chapters))
    if frame.empty:
        return None
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("value:Q", title="BLEU, or accuracy (%)"),
        y=alt.Y("measure:N", sort=None, title=None, axis=alt.Axis(labelLimit=360)),
        yOffset=alt.YOffset("by:N"),
        color=alt.Color("by:N", title=None, legend=alt.Legend(orient="bottom", columns=2)),
        tooltip=["measure", "by", alt.Tooltip("value:Q", format=".1f"), "unit"],
    ).properties(width=360, title="Headline scores: this book beside quoted figures")


def full_runs_markdown(loaded: Loaded) -> str:
    """What `full` means here, and on which device each recorded full run ran (from the files)."""
    runs = sorted((r for r in loaded.records if r["profile"] == "full"), key=_order)
    text = ("A `full` run uses the full data sets and training schedules; it is not a claim "
            "about hardware.")
    if not runs:
        return text + " No `full` run has been recorded yet."
    where = "; ".join(f"`{r['chapter']}` on {fmt(r['device'])}" for r in runs)
    return text + f" The recorded `full` runs ran on: {where}."


VERDICTS = {True: "✓ holds", False: "✗ does not hold"}


def _verdict(entry: dict, profile: str) -> str:
    if entry["holds"]:
        return VERDICTS[True]
    if profile == "smoke":
        return "· does not hold (smoke: reported, not enforced)"
    return VERDICTS[False] + " (built with ANNOTATED_CLAIMS=warn)"


def _ledger_provenance(record: dict, loaded: Loaded | None) -> str:
    """A ledger's commit, and whether the results file of its run has the same one."""
    commit = record.get("commit")
    line = f"`{record['_file']}` (commit `{commit}`)"
    if loaded is None:
        return line
    runs = [r for r in loaded.records
            if r["chapter"] == record["chapter"] and r["profile"] == record["profile"]]
    if not runs:
        return line + ": no results file of this run"
    if runs[0]["commit"] != commit:
        return (line + f": **not the commit of its results file** (`{runs[0]['commit']}`); "
                "the claims were checked on another run than the numbers shown")
    return line + ": the commit of its results file"


def claims_markdown(ledger: Ledger, chapters: list[str], loaded: Loaded | None = None) -> str:
    """Every checked claim, by chapter: its verdict, evidence and source in each profile.

    Each chapter is one line (how many claims hold, each ledger's commit against its
    results file's when `loaded` is given) and a dropdown with the claims.
    """
    if not ledger.ledgers:
        return ("No claims ledger has been recorded yet (a chapter that calls `check_claim` "
                "writes `results/claims/<chapter>.<profile>.json`).")
    larger = {r["chapter"] for r in ledger.ledgers if r["profile"] != "smoke"}
    shown = [r for r in ledger.ledgers if r["profile"] != "smoke" or r["chapter"] not in larger]
    blocks = []
    for chapter in chapters:
        mine = sorted((r for r in shown if r["_parent"] == chapter),
                      key=lambda r: (r["chapter"], PROFILES.index(r["profile"])))
        claims: dict[str, list[tuple[str, dict]]] = {}
        for record in mine:
            for entry in record["claims"]:
                claims.setdefault(entry["claim"], []).append((record["profile"], entry))
        if not claims:
            continue
        held = sum(all(e["holds"] for _, e in seen) for seen in claims.values())
        files = "; ".join(_ledger_provenance(r, loaded) for r in mine)
        head = (f"**{chapter}**: {held} of {len(claims)} claims hold in every recorded "
                f"profile (ledgers: {files})")
        items = []
        for claim, seen in claims.items():
            items.append(f"- {fmt(claim)}")
            items += [f"  - `{p}`: {_verdict(e, p)} in {fmt(e['source'])}: {fmt(e['evidence'])}"
                      for p, e in seen]
        blocks.append(head + "\n\n" + folded(f"{chapter}: the {len(claims)} claims, with "
                                              "their evidence", "\n".join(items)))
    return "\n\n".join(blocks)


def page_chapters(loaded: Loaded, chapters: list[str]) -> list[str]:
    """Chapters with results or anchors, in book order."""
    with_results = {r.get("_parent", r["chapter"]) for r in loaded.records}
    return [c for c in chapters if c in with_results or topic_of(c) is not None]


def folded(title: str, body: str) -> str:
    """A dropdown (sphinx-design) that shows `title` and folds `body` away."""
    return f"::::{{dropdown}} {title}\n\n{body}\n\n::::"


def details_markdown(loaded: Loaded, chapters: list[str]) -> list[str]:
    """Each chapter's recorded metrics and its anchors, folded in a dropdown."""
    blocks = []
    for chapter in page_chapters(loaded, chapters):
        body = chapter_markdown(loaded, chapter)
        anchors = chapter_anchors_markdown(chapter)
        if anchors:
            body += "\n\nFigures quoted from other sources:\n\n" + anchors
        blocks.append(folded(f"{chapter}: every recorded metric", body))
    return blocks


def render(root: Path = ROOT, results_dir: Path | None = None) -> str:
    """The whole page body as one Markdown string (used by the CLI and the tests)."""
    chapters = known_chapters(root)
    folder = results_dir or root / "results"
    loaded, ledger = load_results(folder, chapters), load_claims(folder, chapters)
    parts = [problems_markdown(loaded, ledger), headline_markdown(loaded, chapters),
             full_runs_markdown(loaded), claims_markdown(ledger, chapters, loaded),
             provenance_markdown(loaded), *details_markdown(loaded, chapters)]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a results or claims file is broken")
    parser.add_argument("--results", type=Path, default=None, help="results folder (default: results/)")
    args = parser.parse_args(argv)
    results_dir = args.results or root / "results"
    if args.check:
        chapters = known_chapters(root)
        loaded, ledger = load_results(results_dir, chapters), load_claims(results_dir, chapters)
        problems = loaded.problems + ledger.problems
        for name, why in problems:
            print(f"{results_dir / name}: {why}", file=sys.stderr)
        print(f"{len(loaded.records)} results files and {len(ledger.ledgers)} claims ledgers OK, "
              f"{len(problems)} broken")
        return 1 if problems else 0
    print(render(root, results_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
