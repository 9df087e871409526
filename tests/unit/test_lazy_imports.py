"""What a function does not use, it does not import: Jinja only on the first page or mail rendered.

Jinja costs about 20 ms of a cold start on the Lambda runtime (python3.13 -I -S on the built layer:
18-31 ms in 7 runs, 2026-12-03). The admin API and the dispatcher import the page types through
the public notices, and never render a page.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

MODULES = ["optout.notices.admin", "optout.notices.dispatch", "optout.notices.public", "optout.notices.send"]


@pytest.mark.parametrize("module", MODULES)
def test_importing_a_use_case_does_not_import_jinja(module: str) -> None:
    # Given a clean interpreter, When the module is imported
    script = f"import sys, json, {module}; print(json.dumps(sorted(m for m in sys.modules if m.startswith('jinja2'))))"
    result = subprocess.run(  # our own interpreter running our own code
        [sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ), timeout=60, check=True
    )
    # Then Jinja is not loaded
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_rendering_a_page_loads_jinja_then() -> None:
    # The other side: the first page rendered does load it (so the test above cannot pass by accident)
    script = "import sys, optout.web.pages as p; p._environment(); print('jinja2' in sys.modules)"
    result = subprocess.run(  # our own interpreter running our own code
        [sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ), timeout=60, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "True"
