"""`grouprp inspect`: what the data becomes, in one self-contained HTML file (or JSON for scripts).

The pipeline runs exactly as `prepare` runs it (same workers, same repeats and genre cap), keeping the rendered
text of every example; the report holds the accounting, histograms of example length and turns, genre shares,
posts per character, the entries left out and why, and a browsable list of examples in which the trained text is
highlighted and every span a detector flagged, trimmed or removed is marked with its reason. The HTML has no
external resources: inline CSS, inline SVG, and a few lines of inline script to filter the examples.
"""

from __future__ import annotations

import html
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from grouprp.config import Config
from grouprp.modes import get_mode
from grouprp.prepare import data_fingerprint, dry_run, load_tokenizer
from grouprp.quality.review import DETECTORS

MAX_LISTED = 500  # entries left out and characters, at most, in the report's tables


def collect(cfg: Config, tokenizer=None, examples: int = 200, source: str = "") -> dict[str, Any]:
    """The report's data: the manifest, the figures, and up to `examples` examples (those with something marked
    first, then the rest in input order) with their trained spans and marks in example-text positions."""
    tokenizer = tokenizer or load_tokenizer(cfg)
    mode = get_mode(cfg)
    rows, left_out = [], []

    def take(outcome) -> None:
        if not outcome.rows:
            left_out.append({"id": outcome.key, "reason": outcome.drop})
        for number, row in enumerate(outcome.rows):
            rows.append((outcome.key, number == len(outcome.rows) - 1, outcome.genres, row))

    summary, manifest = dry_run(cfg, tokenizer, mode, data_fingerprint(cfg, tokenizer, mode), on_outcome=take)
    left_out += [{"id": key, "reason": "max_genre_share"} for key in sorted(summary.capped)]
    rows = [r for r in rows if r[0] not in summary.capped]
    posts: dict[str, Counter] = defaultdict(Counter)
    built = []
    for key, last, genres, row in rows:
        entry = row.entry
        if entry is not None:
            for turn in entry.turns[entry.context:]:
                posts[turn.character][turn.role] += 1
        built.append(_example(key, last, genres, row, mode, len(built)))
    marked = [e for e in built if e["marks"]]
    chosen = marked[:examples // 2 or examples]
    chosen_ids = {id(e) for e in chosen}
    chosen += [e for e in built if id(e) not in chosen_ids][:max(0, examples - len(chosen))]
    chosen.sort(key=lambda e: e["order"])
    characters = sorted(posts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    return {
        "config": source,
        "manifest": manifest,
        "histograms": {
            "tokens_per_example": _histogram(summary.lengths, 0, cfg.data.sequence_len, 24),
            "turns_per_example": _histogram(summary.turns, 0, max(summary.turns, default=1), None),
        },
        "characters": [{"name": name, "model_posts": c["model"], "user_posts": c["user"]}
                       for name, c in characters[:MAX_LISTED]],
        "characters_total": len(characters),
        "left_out": left_out[:MAX_LISTED],
        "left_out_total": len(left_out),
        "examples_total": len(built),
        "examples": chosen,
    }


def _example(key: str, last: bool, genres, row, mode, order: int) -> dict[str, Any]:
    example = row.example
    marks = _marks(example.text, row.entry, last, getattr(mode, "format", None)) if row.entry is not None else []
    return {"id": row.id, "thread": key, "user": row.user, "genres": list(genres), "order": order,
            "tokens": len(row.tokens) if row.tokens is not None else None,
            "trained_tokens": row.tokens.trained if row.tokens is not None else None,
            "turns": row.turns, "characters": row.characters, "text": example.text,
            "trained": [list(span) for span in example.trained], "marks": marks}


def _marks(text: str, entry, last: bool, fmt) -> list[dict[str, Any]]:
    """What the quality pass and the cleaning did in this example, in example-text positions: flagged spans
    (start < end), and text taken out (start == end, with `text`): trimmed from a post, or whole posts removed."""
    out, cursor, starts = [], 0, []
    for turn in entry.turns:
        found = text.find(f"{turn.character}: {turn.text}", cursor)
        if found < 0:
            starts.append(None)
            continue
        at = found + len(turn.character) + 2
        block = text.rfind(fmt.open, cursor, found) if fmt is not None and getattr(fmt, "open", "") else -1
        starts.append(block if block >= 0 else found)
        for mark in turn.marks:
            out.append({"start": at + mark.start, "end": at + mark.end, "reason": mark.reason, "action": mark.action,
                        "kind": mark.kind, "text": mark.text, "character": turn.character})
        cursor = at + len(turn.text)
    first, end = entry.start + entry.context, entry.start + len(entry.turns)
    for post in entry.removed:
        if not (first <= post.before < end or (last and post.before == end)):
            continue
        local = post.before - entry.start
        position = starts[local] if local < len(starts) and starts[local] is not None else len(text)
        out.append({"start": position, "end": position, "reason": post.reason, "action": "removed", "kind": "",
                    "text": post.text, "character": post.character})
    return sorted(out, key=lambda m: (m["start"], m["end"]))


def _histogram(values, low: float, high: float, bins: Optional[int]) -> dict[str, Any]:
    """Counts of `values` in equal bins over [low, high] (integer bins of one when `bins` is None)."""
    values = np.asarray(values, dtype=np.float64)
    if bins is None:
        high = max(int(high), 1)
        edges = np.arange(low, high + 2) - 0.5 if high - low < 60 else np.linspace(low, high, 41)
    else:
        edges = np.linspace(low, max(high, 1), bins + 1)
    counts, edges = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    shown = (edges[0] + 0.5, edges[-1] - 0.5) if bins is None and high - low < 60 else (edges[0], edges[-1])
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
            "range": [float(shown[0]), float(shown[1])]}


def write(data: dict[str, Any], path: Path, as_json: bool = False) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n" if as_json else render_html(data), encoding="utf-8")


# --- HTML ---------------------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;padding:1em 2em;
color:#1d1d1f;background:#fff}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #eee}
td.n{text-align:right;font-variant-numeric:tabular-nums}.grid{display:flex;flex-wrap:wrap;gap:2em}
pre.ex{white-space:pre-wrap;word-wrap:break-word;font:13px/1.4 ui-monospace,Menlo,Consolas,monospace;
background:#fafafa;padding:.7em;border:1px solid #eee}.t{background:#d7f5dc}.f{border-bottom:2px solid #e0421b;
background:#fff0d9}.t.f{background:#e8f0c0}del{background:#fde2e2;color:#8a1c1c;text-decoration:line-through}
del:before{content:"[" attr(data-label) "] ";font-weight:bold;text-decoration:none}details{margin:.3em 0}
summary{cursor:pointer}.tag{display:inline-block;padding:0 6px;margin-right:4px;border-radius:8px;
background:#eee;font-size:12px}.bar{fill:#4a7fd4}.legend span{margin-right:1.5em}button{margin:0 4px 4px 0}
#errors{color:#b00}
"""

_SCRIPT = """
(function(){
  var buttons=document.querySelectorAll('button[data-filter]');
  function show(filter){
    document.querySelectorAll('details.example').forEach(function(d){
      var reasons=(d.getAttribute('data-reasons')||'').split(' ');
      d.hidden=!(filter==='all'||(filter==='marked'&&reasons[0]!=='')||reasons.indexOf(filter)>=0);
    });
  }
  buttons.forEach(function(b){b.addEventListener('click',function(){show(b.getAttribute('data-filter'));});});
  show('all');
  document.documentElement.setAttribute('data-ready','1');
  document.documentElement.setAttribute('data-ready-ms',String(Math.round(performance.now())));
})();
"""

_ONERROR = ("window.addEventListener('error',function(e){var p=document.getElementById('errors');"
            "if(p){p.textContent+=String(e.message)+'\\n';}document.documentElement.setAttribute('data-errors','1');"
            "});")


def render_html(data: dict[str, Any]) -> str:
    m = data["manifest"]
    parts = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
             "<meta name=viewport content='width=device-width,initial-scale=1'>",
             f"<title>grouprp data report</title><style>{_CSS}</style><script>{_ONERROR}</script></head><body>",
             "<h1>grouprp data report</h1>", "<pre id=errors></pre>",
             f"<p>{_e(data['config'])} &middot; {m['examples']:,} examples, {m['tokens']:,} tokens "
             f"({m['trained_tokens']:,} trained) &middot; template {_e(m['template'])}, sequence_len "
             f"{m['sequence_len']:,} &middot; fingerprint {_e(m['fingerprint'])}</p>"]
    parts += _accounting(m)
    if "quality" in m:
        parts += _quality(m["quality"])
    parts.append("<h2>Sizes</h2><div class=grid>")
    parts.append(_svg_histogram("tokens per example", data["histograms"]["tokens_per_example"]))
    parts.append(_svg_histogram("turns per example", data["histograms"]["turns_per_example"]))
    parts.append("</div>")
    parts += _characters(data)
    parts += _left_out(data)
    parts += _examples(data)
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(rows: list[tuple], header: tuple = ()) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td class=n>{v:,}</td>" if isinstance(v, (int, float)) and not isinstance(
            v, bool) else f"<td>{_e(v)}</td>" for v in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _accounting(m: dict) -> list[str]:
    out = ["<h2>Accounting</h2>",
           f"<p id=accounting>{m['entries_in']:,} entries in: {m['entries_kept']:,} kept, "
           f"{sum(m['dropped'].values()):,} dropped.</p><div class=grid>"]
    for title, key in (("entries dropped", "dropped"), ("posts removed", "posts_removed"),
                       ("posts changed", "posts_changed"), ("windows dropped", "windows_dropped"),
                       ("input left out", "left_out")):
        rows = [(reason, count) for reason, count in m.get(key, {}).items()]
        out.append(f"<div><b>{title}</b>{_table(rows) if rows else '<p>none</p>'}</div>")
    out.append("</div>")
    return out


def _quality(q: dict) -> list[str]:
    rows = []
    for name in DETECTORS:
        d = q[name]
        what = [f"{k} {v:,}" for k, v in d["kinds"].items()]
        if name == "duplicates":
            what.append(f"{d['threads_found']:,} repeated threads ({d['threads_exact']:,} exact), "
                        f"{d['threads_dropped']:,} dropped")
        removed = d.get("posts_removed")
        rows.append((name, d["mode"], d["posts_found"], "-" if removed is None else removed, d["posts_trimmed"],
                     ", ".join(what)))
    out = ["<h2>Data quality</h2>",
           _table(rows, ("detector", "mode", "posts found", "posts removed", "posts trimmed", "what"))]
    genres = q["genres"]
    out.append("<h3>Genres (main genre of each thread kept)</h3>")
    out.append(_svg_bars(genres["shares"]))
    if genres.get("left_out"):
        out.append(f"<p>max_genre_share {genres['max_share']}: left out "
                   + ", ".join(f"{_e(g)} {n:,}" for g, n in genres["left_out"].items()) + "; shares before: "
                   + ", ".join(f"{_e(g)} {v:.1%}" for g, v in genres["shares_before_cap"].items()) + "</p>")
    if genres["tagged"]:
        out.append("<p>threads tagged (any genre): " + ", ".join(f"{_e(g)} {n:,}" for g, n in genres[
            "tagged"].items()) + "</p>")
    return out


def _svg_histogram(title: str, hist: dict) -> str:
    counts, edges = hist["counts"], hist["edges"]
    width, height, pad = 420, 160, 28
    top = max(counts, default=0) or 1
    bar = (width - 2 * pad) / max(len(counts), 1)
    out = [f"<figure><figcaption>{_e(title)}</figcaption><svg xmlns='http://www.w3.org/2000/svg' width={width} "
           f"height={height + 20} role=img aria-label='{_e(title)}'>"]
    for i, count in enumerate(counts):
        h = (height - pad) * count / top
        x = pad + i * bar
        out.append(f"<rect class=bar x={x:.1f} y={height - h:.1f} width={max(bar - 1, 1):.1f} height={h:.1f}>"
                   f"<title>{edges[i]:,.0f}\u2013{edges[i + 1]:,.0f}: {count:,}</title></rect>")
    low, high = hist["range"]
    out.append(f"<text x={pad} y={height + 14} font-size=11>{low:,.0f}</text>")
    out.append(f"<text x={width - pad} y={height + 14} font-size=11 text-anchor=end>{high:,.0f}</text>")
    out.append(f"<text x=2 y=12 font-size=11>{top:,}</text></svg></figure>")
    return "".join(out)


def _svg_bars(shares: dict[str, float]) -> str:
    if not shares:
        return "<p>no threads</p>"
    row, width = 18, 420
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width={width + 260} height={row * len(shares) + 4} "
           f"role=img aria-label='genre shares'>"]
    for i, (genre, share) in enumerate(shares.items()):
        y = i * row
        out.append(f"<text x=0 y={y + 13} font-size=12>{_e(genre)}</text>"
                   f"<rect class=bar x=140 y={y + 3} width={width * share:.1f} height={row - 6}></rect>"
                   f"<text x={145 + width * share:.1f} y={y + 13} font-size=12>{share:.1%}</text>")
    out.append("</svg>")
    return "".join(out)


def _characters(data: dict) -> list[str]:
    rows = [(c["name"], c["model_posts"], c["user_posts"]) for c in data["characters"]]
    more = data["characters_total"] - len(rows)
    return ["<h2>Posts per character</h2><details><summary>"
            f"{data['characters_total']:,} characters (posts kept in examples, as the model and as the user)"
            "</summary>", _table(rows, ("character", "model posts", "user posts")),
            f"<p>and {more:,} more</p>" if more > 0 else "", "</details>"]


def _left_out(data: dict) -> list[str]:
    rows = [(d["id"], d["reason"]) for d in data["left_out"]]
    more = data["left_out_total"] - len(rows)
    return ["<h2>Entries left out</h2><details><summary>"
            f"{data['left_out_total']:,} entries with no example, and why</summary>",
            _table(rows, ("id", "reason")), f"<p>and {more:,} more</p>" if more > 0 else "", "</details>"]


def _examples(data: dict) -> list[str]:
    reasons = sorted({m["reason"] for e in data["examples"] for m in e["marks"]})
    out = [f"<h2>Examples</h2><p>{len(data['examples']):,} of {data['examples_total']:,} examples shown (those with "
           "something marked first). <span class=t>trained text</span> is highlighted; "
           "<span class=f>flagged text</span> is underlined with its reason on hover; text taken out is struck "
           "through with its reason.</p><p>",
           "<button data-filter=all>all</button><button data-filter=marked>with marks</button>"]
    out += [f"<button data-filter='{_e(r)}'>{_e(r)}</button>" for r in reasons]
    out.append("</p>")
    for example in data["examples"]:
        marks = example["marks"]
        found = sorted({m["reason"] for m in marks})
        tags = "".join(f"<span class=tag>{_e(r)}</span>" for r in found)
        genres = ", ".join(example["genres"]) or "untagged"
        out.append(f"<details class=example data-id='{_e(example['id'])}' data-reasons='{_e(' '.join(found))}'>"
                   f"<summary>{tags}{_e(example['id'])} &middot; user {_e(example['user'])} &middot; "
                   f"{example['tokens'] or 0:,} tokens, {example['turns']} turns &middot; {_e(genres)}</summary>"
                   f"<pre class=ex>{_segments(example)}</pre></details>")
    return out


def _segments(example: dict) -> str:
    """The example's text cut at every boundary of a trained span or a mark; each piece a span whose classes say
    what it is (t: trained, f: flagged), and the text taken out inserted as <del> where it was."""
    text = example["text"]
    trained = example["trained"]
    flags = [m for m in example["marks"] if m["end"] > m["start"]]
    inserts = defaultdict(list)
    for m in example["marks"]:
        if m["end"] == m["start"]:
            inserts[m["start"]].append(m)
    cuts = {0, len(text), *inserts}
    for s, e in trained:
        cuts.update((s, e))
    for m in flags:
        cuts.update((m["start"], m["end"]))
    cuts = sorted(c for c in cuts if 0 <= c <= len(text))
    out = []
    for a, b in zip(cuts, cuts[1:] + [None]):
        for m in inserts.get(a, ()):
            label = f"{m['action']}: {m['reason']}" + (f" ({m['kind']})" if m["kind"] else "")
            who = f"{m['character']}: " if m["action"] == "removed" else ""
            out.append(f"<del data-reason='{_e(m['reason'])}' data-label='{_e(label)}'>{_e(who + m['text'])}</del>")
        if b is None or a == b:
            continue
        piece = _e(text[a:b])
        classes, titles = [], []
        if any(s <= a and b <= e for s, e in trained):
            classes.append("t")
        over = [m for m in flags if m["start"] <= a and b <= m["end"]]
        if over:
            classes.append("f")
            titles = [f"{m['reason']}" + (f" ({m['kind']})" if m["kind"] else "") for m in over]
        if classes:
            title = f" title='{_e('; '.join(titles))}'" if titles else ""
            reasons = f" data-reasons='{_e(' '.join(m['reason'] for m in over))}'" if over else ""
            out.append(f"<span class='{' '.join(classes)}'{title}{reasons}>{piece}</span>")
        else:
            out.append(piece)
    return "".join(out)
