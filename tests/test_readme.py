"""The README's code sample runs and its gradcheck passes (so the first code a user copies never rots)."""

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_code_sample_runs():
    text = README.read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert blocks, "README.md has no ```python block"
    for block in blocks:
        namespace = {}
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own README
        assert namespace["sa"].gradcheck(namespace["warp"], [namespace["x"], namespace["theta"]]) is True
