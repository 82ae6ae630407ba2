"""Remake flip-report.png and compare.png: the two HTML reports on fashion-mnist, shot in headless Chromium.

Run from the repository root with the project's environment and Chromium installed
(``apt-get install -y chromium``)::

    .venv/bin/python docs/images/make_screenshots.py

Each shot is the top of its page (down to the margin histograms, or to the pairwise tests), scaled
down and reduced to 256 colours so that the PNG stays under 300 KB.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
RUNS = Path("results/fashion-mnist/final")
WIDTH = 1180  # the page's 1100 px column and its margins
# (page, height of the part shot in CSS pixels, scale of the saved image)
SHOTS = {"flip-report": (3030, 0.75), "compare": (1370, 0.8)}


def report_commands(out: Path) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "modelupdate"]
    return {
        "flip-report": [*cli, "flip-report", "--data", "fashion-mnist", "--old", str(RUNS / "old.safetensors"),
                        "--new", str(RUNS / "elodi-s0.safetensors"), "--html", str(out / "flip-report.html")],
        "compare": [*cli, "compare", "--data", "fashion-mnist", "--old", str(RUNS / "old.safetensors"),
                    *(str(RUNS / f"{m}.safetensors") for m in ("ce-s0", "elodi-s0", "reference")),
                    "--html", str(out / "compare.html")],
    }


def main() -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no chromium here: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for name, command in report_commands(out).items():
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            height, scale = SHOTS[name]
            shot = out / f"{name}-full.png"
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--no-first-run", f"--user-data-dir={out / 'profile'}", f"--screenshot={shot}",
                            f"--window-size={WIDTH},{height}", (out / f"{name}.html").as_uri()],
                           check=True, capture_output=True)
            image = Image.open(shot).convert("RGB")
            image = image.resize((round(WIDTH * scale), round(height * scale)), Image.LANCZOS)
            image = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
            target = HERE / f"{name}.png"
            image.save(target, optimize=True)
            print(f"{target}: {target.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
