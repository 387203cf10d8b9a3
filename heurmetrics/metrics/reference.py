"""The metric reference of ``docs/metrics.md``, rendered from the definitions (never hand-written).

``python -m heurmetrics.metrics.reference`` prints it; a test fails when the docs are stale.
"""

from __future__ import annotations

from heurmetrics.metrics import definitions as d

BEGIN = "<!-- BEGIN GENERATED: python -m heurmetrics.metrics.reference -->"
END = "<!-- END GENERATED -->"


def _buckets(spec: d.MetricSpec) -> str:
    if spec.buckets is not None and not spec.buckets:
        return " No bucket boundaries (`+Inf` only: sum and count)."
    return "" if spec.buckets is None else " Buckets: " + ", ".join(f"{b:g}" for b in spec.buckets) + "."


def render() -> str:
    lines = [
        BEGIN,
        "",
        "| series (PromQL) | type | labels | unit | from | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for spec in d.ALL_METRICS:
        labels = ", ".join(f"`{label}`" for label in spec.labels) or "—"
        lines.append(
            f"| `{spec.sample_name}` | {spec.kind} | {labels} | {spec.unit} | {spec.source} | "
            f"{spec.documentation}{_buckets(spec)} |"
        )
    lines += ["", "Design-note names and the families that report them:", ""]
    by_design: dict[str, list[str]] = {}
    for spec in d.ALL_METRICS:
        if spec.design_name:
            by_design.setdefault(spec.design_name, []).append(f"`{spec.sample_name}`")
    for design, names in by_design.items():
        lines.append(f"- `{design}` → {', '.join(names)}")
    lines += ["", END]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render())
