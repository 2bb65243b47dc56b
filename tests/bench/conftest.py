"""The benchmark is scripts run from bench/, not an installed package: its modules are imported from there."""

import sys

from ctrlgpt.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
