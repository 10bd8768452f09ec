"""``grace-rl report``: a self-contained HTML page; rendered in headless Chromium when it is installed."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from grace_rl.cli import main as cli_main
from grace_rl.inspection.log import load_run
from grace_rl.inspection.report import build_report, split_metrics

METRICS = [
    {"step": 1, "loss": 0.5, "reward": 0.1, "grace/contrastive": -1.0, "epoch": 0.5},
    {"step": 2, "loss": 0.4, "reward": 0.3, "grace/contrastive": -0.5, "epoch": 1.0},
    {"step": 2, "train_runtime": 12.5, "train_loss": 0.45},
]
HOSTILE = 'ends the data </script><script>document.title="pwned"</script> & <b>bold</b>'


def write_run(path: Path, steps: int = 3, group: int = 2, metrics: list[dict] | None = None) -> Path:
    """``steps`` x prompts p0, p1 x ``group`` rollouts; reward = step + g / 10; rollout (1, p0, 0) is hostile text."""
    path.mkdir(parents=True, exist_ok=True)
    lines = []
    for step in range(1, steps + 1):
        for p in range(2):
            for g in range(group):
                rationale = HOSTILE if (step, p, g) == (1, 0, 0) else f"rationale s{step} p{p} g{g}"
                reward = step + g / 10
                rec = {"step": step, "prompt_id": f"p{p}", "prompt": f"text {p}", "rationale": rationale}
                rec |= {"rewards": {"contrastive": reward, "truncation": -float(g == 0)}, "reward": reward}
                lines.append(json.dumps(rec | {"advantage": g / 10 - (group - 1) / 20}))
    (path / "rationales.jsonl").write_text("\n".join(lines) + "\n")
    if metrics is not None:
        (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    return path


def embedded_rows(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="rows-data">(.*?)</script>', page, re.S)
    assert match, "no data script in the page"
    return json.loads(match.group(1))


def plot_uris(page: str) -> list[str]:
    return re.findall(r'<img class="plot" alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)


def test_page_is_self_contained_with_plots_and_all_rows(tmp_path):
    page, note = build_report(load_run(write_run(tmp_path / "run", metrics=METRICS)))
    assert note == "all 12 rollouts" and "Table holds all 12 rollouts; paginated, 50 rows per page" in page
    uris = plot_uris(page)
    assert len(uris) == 2  # rollouts by step + trainer metrics
    for uri in uris:
        assert base64.b64decode(uri)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "http://" not in page and "https://" not in page
    data = embedded_rows(page)
    assert data["terms"] == ["contrastive", "truncation"] and len(data["rows"]) == 12
    first = data["rows"][0]
    assert first["r"] == HOSTILE and first["tr"] is True and first["t"] == [1.0, -1.0] and first["len"] == 6
    assert page.count("</script>") == 2  # the hostile rationale cannot close the data element
    assert "logged once" in page and "train_runtime" in page  # single-point metrics go to a table


def test_missing_metrics_is_said_and_large_logs_are_sampled(tmp_path):
    run = load_run(write_run(tmp_path / "run", steps=10, group=5))  # 100 rollouts, no metrics.jsonl
    page, note = build_report(run, max_rows=40, page_size=25)
    assert note.startswith("a sample of 40 of 100 rollouts") and "a sample of 40 of 100 rollouts" in page
    assert "No metrics.jsonl in this run directory" in page and len(plot_uris(page)) == 1
    rows = embedded_rows(page)["rows"]
    assert len(rows) == 40 and max(r["rw"] for r in rows) == pytest.approx(10.4)
    assert min(r["rw"] for r in rows) == pytest.approx(1.0)
    assert "const PAGE_SIZE = 25;" in page


def test_split_metrics_orders_and_separates_single_points():
    series = {"grace/x": ([1, 2], [0.0, 1.0]), "loss": ([1, 2], [1.0, 0.5]), "train_runtime": ([2], [3.0])}
    assert split_metrics(series) == (["loss", "grace/x"], ["train_runtime"])
    assert split_metrics({"loss": ([1], [1.0])}) == (["loss"], [])  # a one-step run still gets its plot


def test_cli_report(tmp_path, capsys):
    out = tmp_path / "sub" / "r.html"
    assert cli_main(["report", str(write_run(tmp_path / "run")), "-o", str(out), "--max-rows", "5"]) == 0
    assert "the table holds a sample of 5 of 12 rollouts" in capsys.readouterr().out
    assert len(embedded_rows(out.read_text())["rows"]) == 5


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--virtual-time-budget=5000",
]


PROBE_JS = """
const $ = (id) => document.getElementById(id), seen = [];
const set = (id, value, event) => { $(id).value = value; $(id).dispatchEvent(new Event(event)); };
const rows = () => $("status").textContent.match(/(\\d+ of \\d+) rows/)[1];
set("f-step", "2", "change"); seen.push(rows());
set("f-text", "S3", "input"); seen.push(rows());
set("f-text", "rationale s2 P1", "input"); seen.push(rows());
set("f-text", "", "input"); set("f-step", "", "change"); seen.push(rows());
document.body.dataset.probe = seen.join(" | ");
"""


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (Debian: apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    from PIL import Image

    out = tmp_path / "r.html"
    assert cli_main(["report", str(write_run(tmp_path / "run", metrics=METRICS)), "-o", str(out)]) == 0
    url = out.resolve().as_uri()
    cmd = [_chromium(), *CHROMIUM_FLAGS]
    dom = subprocess.run([*cmd, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-rows-rendered="12"' in body  # the inline JS ran and filled the table
    assert 'data-plots-loaded="2"' in body  # both embedded PNGs decoded
    assert "pwned" not in dom.split("</title>")[0]  # the hostile rationale stayed text
    # drive the filters like a user would: step 2, then search "S3" (no hit in step 2), then page size 25
    probe = tmp_path / "probe.html"
    probe.write_text(out.read_text().replace("</body>", f"<script>{PROBE_JS}</script></body>"))
    dom = subprocess.run([*cmd, "--dump-dom", probe.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-probe="4 of 12 | 0 of 12 | 2 of 12 | 12 of 12"' in dom.stdout
    shot = tmp_path / "shot.png"
    flags = [f"--screenshot={shot}", "--window-size=1280,2000"]
    subprocess.run([*cmd, *flags, url], capture_output=True, timeout=120, check=True)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2000)
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 50  # text, plots and table, not a blank page
    # matplotlib's default line colour (tab:blue, #1f77b4) is on screen: a plot is in the first 2000 px
    assert any(abs(r - 0x1F) < 12 and abs(g - 0x77) < 12 and abs(b - 0xB4) < 12 for _, (r, g, b) in colours)
