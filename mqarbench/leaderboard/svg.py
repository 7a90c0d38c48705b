"""Inline SVG charts built at site-build time; every text node is escaped here."""

from __future__ import annotations

from markupsafe import Markup, escape

from mqarbench.leaderboard.boards import Score

# A light-to-dark blue scale for accuracy 0..100.
_LOW, _HIGH = (239, 246, 255), (30, 64, 175)
BLOCK_COLOURS = ("#1e40af", "#0891b2", "#f59e0b", "#dc2626", "#7c3aed", "#16a34a", "#db2777", "#525252")


def heat_colour(value: float) -> str:
    t = min(max(value / 100.0, 0.0), 1.0)
    r, g, b = (round(lo + (hi - lo) * t) for lo, hi in zip(_LOW, _HIGH))
    return f"#{r:02x}{g:02x}{b:02x}"


def _text(x: float, y: float, text: str, anchor: str = "middle", fill: str = "#1f2937",
          size: int = 12, weight: str = "normal", rotate: bool = False) -> str:
    transform = f' transform="rotate(-30 {x:.1f} {y:.1f})"' if rotate else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
            f'font-weight="{weight}" fill="{fill}"{transform}>{escape(text)}</text>')


def heatmap(rows: list[str], cols: list[str], scores: list[list[Score | None]], title: str) -> Markup:
    """Train (rows) x test (columns) accuracy heatmap; a missing cell is drawn as not run."""
    cell_w, cell_h, left, top = 78, 34, 96, 44
    width, height = left + cell_w * len(cols) + 8, top + cell_h * len(rows) + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             _text(left + cell_w * len(cols) / 2, 12, "test →", size=11, fill="#6b7280")]
    for j, col in enumerate(cols):
        parts.append(_text(left + cell_w * (j + 0.5), top - 10, col, size=11, weight="bold"))
    for i, row in enumerate(rows):
        y = top + cell_h * i
        parts.append(_text(left - 8, y + cell_h / 2 + 4, row, anchor="end", size=11, weight="bold"))
        for j, score in enumerate(scores[i]):
            x = left + cell_w * j
            if score is None:
                parts.append(f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                             f'fill="#f3f4f6" stroke="#d1d5db" stroke-dasharray="3 2"/>')
                parts.append(_text(x + cell_w / 2, y + cell_h / 2 + 4, "not run", size=10, fill="#9ca3af"))
                continue
            fill = heat_colour(score.mean)
            ink = "#ffffff" if score.mean > 55 else "#111827"
            label = f"{score.mean:.1f}" + (f" ±{score.std:.1f}" if score.n > 1 else "")
            parts.append(f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{fill}">'
                         f"<title>{escape(f'{row} → {cols[j]}: {score.text()}')}</title></rect>")
            parts.append(_text(x + cell_w / 2, y + cell_h / 2 + 4, label, fill=ink, size=12))
    parts.append(_text(8, top + cell_h * len(rows) + 16, "train ↓", anchor="start", size=11, fill="#6b7280"))
    parts.append("</svg>")
    return Markup("".join(parts))


def share_bars(bars: list[tuple[str, list[float] | None]], title: str) -> Markup:
    """Horizontal stacked bars: per training task, the share of answers taken from each block."""
    left, bar_w, bar_h, gap, top = 96, 320, 22, 10, 30
    n_blocks = max((len(s) for _, s in bars if s), default=4)
    height = top + (bar_h + gap) * len(bars) + 28
    width = left + bar_w + 16
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="bars" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>"]
    for b in range(n_blocks):
        x = left + b * bar_w / n_blocks
        parts.append(f'<rect x="{x:.1f}" y="6" width="10" height="10" fill="{BLOCK_COLOURS[b % 8]}"/>')
        parts.append(_text(x + 14, 15, f"block {b + 1}", anchor="start", size=10))
    for i, (label, shares) in enumerate(bars):
        y = top + (bar_h + gap) * i
        parts.append(_text(left - 8, y + bar_h / 2 + 4, label, anchor="end", size=11, weight="bold"))
        if not shares:
            parts.append(f'<rect x="{left}" y="{y}" width="{bar_w}" height="{bar_h}" fill="#f3f4f6" '
                         f'stroke="#d1d5db" stroke-dasharray="3 2"/>')
            parts.append(_text(left + bar_w / 2, y + bar_h / 2 + 4, "not run", size=10, fill="#9ca3af"))
            continue
        total, x = sum(shares) or 1.0, float(left)
        for b, share in enumerate(shares):
            w = bar_w * share / total
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                         f'fill="{BLOCK_COLOURS[b % 8]}"><title>{escape(f"{label}, block {b + 1}: {share:.1f}%")}'
                         f"</title></rect>")
            if w > 30:
                parts.append(_text(x + w / 2, y + bar_h / 2 + 4, f"{share:.0f}%", fill="#ffffff", size=10))
            x += w
    parts.append(_text(left, height - 8, "0%", anchor="start", size=10, fill="#6b7280"))
    parts.append(_text(left + bar_w, height - 8, "100% of answers", anchor="end", size=10, fill="#6b7280"))
    parts.append("</svg>")
    return Markup("".join(parts))
