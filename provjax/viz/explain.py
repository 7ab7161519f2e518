"""What each system's figures on an analyze page mean, in one plain sentence each.

`section(key, slot)` turns one system's JSON slot of `provjax analyze` (a
plain dict: no system package is imported here) into a page section, its
sentences and pictures, and the headline figure for the index page.
"""

from __future__ import annotations

from pathlib import Path

NO_INDEX = "no --index gallery given: this needs a trusted gallery made by `provjax index build`"

TITLES = {
    "provenance": "Provenance (SImProv)",
    "forgery": "Forgery (TruFor)",
    "attribution": "Attribution (RepMix)",
    "copy": "Copy candidates (CopyNCE)",
}


def _name(path: str | None) -> str:
  return Path(path).name if path else "(no path)"


def _provenance(slot: dict) -> tuple[dict, str]:
  near, verdict = slot["nearest"], slot["verdict"]
  name = _name(near["path"])
  probs = (
      f"P(benign) {near['p_benign']:.2f}, P(manipulated) {near['p_manipulated']:.2f}, "
      f"P(distinct) {near['p_distinct']:.2f}"
  )
  if verdict == "distinct":
    found = (
        f"Verdict distinct: no gallery original is this image's source; the nearest, {name}, "
        f"has {probs}."
    )
  else:
    how = "only benign changes" if verdict == "benign" else "its content edited"
    found = f"Verdict {verdict}: a copy of the gallery original {name} with {how} ({probs})."
  lines = [found]
  if near.get("missing"):
    lines.append("The original's file is gone since indexing: its stored thumbnail is shown.")
  lines.append(
      "Edit heatmap: red where the comparator finds the image edited relative to that "
      "original (outlined in yellow where it reaches 0.5)."
  )
  section = {
      "lines": lines,
      "pictures": [{"src": slot["heatmap_png"], "caption": "image | gallery original | edits"}],
  }
  return section, f"provenance: {verdict}" + ("" if verdict == "distinct" else f" ({name})")


def _forgery(slot: dict) -> tuple[dict, str]:
  score = slot["score"]
  lines = [
      f"Integrity score {score:.2f}: TruFor's probability that the image was manipulated "
      "(0 = pristine, 1 = manipulated).",
      "Left to right: the image, the localization map (red where TruFor thinks pixels were "
      "forged) and the confidence map (white where the map can be trusted).",
  ]
  picture = {"src": slot["overlay_png"], "caption": "image | localization map | confidence map"}
  return {"lines": lines, "pictures": [picture]}, f"integrity score {score:.2f}"


def _attribution(slot: dict) -> tuple[dict, str]:
  p_real, source = slot["p_real"], slot["source"]
  if slot["is_synthetic"]:
    line = (
        f"Synthetic, attributed to {source}: P(real) {p_real:.2f} is below the release's "
        "threshold; the bars give RepMix's probability of each class."
    )
    figure = f"synthetic ({source})"
  else:
    line = (
        f"Real, P(real) {p_real:.2f}: RepMix's probability that a camera, not one of the "
        "zoo's image generators, made the image; the bars give each class."
    )
    figure = f"real (P(real) {p_real:.2f})"
  bars = sorted(slot["probabilities"].items(), key=lambda kv: -kv[1])
  return {"lines": [line], "bars": bars}, figure


def _copy(slot: dict) -> tuple[dict, str]:
  best = slot["candidates"][0]
  name = _name(best["path"])
  lines = [
      f"Copy score {best['score']:.2f} for {name}: cosine similarity of CopyNCE descriptors "
      f"(1 = the same picture), the best of {slot['references']} gallery originals.",
      "Candidates, best first: "
      + ", ".join(f"{_name(c['path'])} ({c['score']:.2f})" for c in slot["candidates"])
      + ".",
  ]
  if slot["skipped"]:
    lines.append(
        f"{slot['skipped']} gallery originals were left out: their files are gone or changed "
        "since indexing."
    )
  picture = {"src": slot["picture_png"], "caption": "the candidates' gallery thumbnails, scored"}
  return {"lines": lines, "pictures": [picture]}, f"copy: {name} ({best['score']:.2f})"


EXPLAIN = {
    "provenance": _provenance,
    "forgery": _forgery,
    "attribution": _attribution,
    "copy": _copy,
}


def section(key: str, slot: dict | None) -> tuple[dict, str]:
  """One system's page section (plain sentences + pictures) and its index headline."""
  if slot is None:
    return {"title": TITLES[key], "missing": NO_INDEX}, f"{key}: no gallery"
  if "missing" in slot:
    return {"title": TITLES[key], "missing": slot["missing"]}, f"{key}: not available"
  if "error" in slot:
    return {"title": TITLES[key], "missing": f"failed: {slot['error']}"}, f"{key}: failed"
  body, figure = EXPLAIN[key](slot)
  return {"title": TITLES[key], **body}, figure
